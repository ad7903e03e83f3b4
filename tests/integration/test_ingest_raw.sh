#!/usr/bin/env bash
# test_ingest_raw.sh - raw ingest: a FITS file copied into a RUN's own
# directory of an -o rw mount gets its dataId and exposure record from its
# headers (writers/translate.c), as the Python Butler's raw ingest does.
#
# Checks, into a repository made by `butlerfs init` (no instrument yet):
# mkdir -p of LSSTCam/raw/all; cp of synthetic LSSTCam raws under any name
# succeeds; LSSTCam is registered from butlerfs's camera description (205
# detectors, 276 filters); each raw shows at its dataId path with the written
# bytes; its dataset id equals the one the synthetic repository gave the same
# file (deterministic UUIDv5 over type, run and dataId); the exposure rows
# hold the header's values.  Refused, quarantined with the reason, nothing
# outside the datastore: a camera butlerfs does not know (ENOENT), a RAFTBAY
# of '../x' (ENOENT, no such detector), a non-FITS file (EINVAL), a checksum
# that does not match (EINVAL) unless `checksums: advisory`; a refused name
# can be written again at once (a retry after a failed close); a header
# byte that is not printable ASCII (EINVAL); a name that is not UTF-8, at
# create or rename (EILSEQ); a raw at a dataId path its headers do not give
# (EINVAL), while one at its own is ingested as in the RUN's directory, also
# at a path made before the raw type existed; a raw
# into a repository of universe 1 (the lsstCam fixture) is ENOTSUP.  rsync (a
# temporary name renamed after its close) works.  A tile-compressed raw
# (fpack) is ingested as .fits.fz with the uncompressed raw's dataId.  The
# same dataId written under another extension is compared with the
# registered file: the same bytes a duplicate, other bytes EEXIST.  A dataId level listed
# before a raw is written lists it right after close.  With the
# fixtures present: the real LSSTComCam raw of ../shared/fixtures is ingested
# and its exposure row equals the one the Python Butler wrote for it.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
command -v python3 >/dev/null || skip "python3 not installed"
T=$BFS_TMP
"$BFS_BIN" synth "$T/src" --exposures 2 --detectors 2 --fits >/dev/null 2>&1 || fail "synth"
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
mkdir -p "$T/mnt"
q() { sqlite3 "$1/gen3.sqlite3" "$2"; }

printf 'ingest:\n  staging: [%s]\n' "$T/staging" >"$T/stage.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/stage.yaml" || finish
expect "mkdir -p of a new RUN collection" mkdir -p "$T/mnt/LSSTCam/raw/all"
# a dataId path made before the raw dataset type exists (a script's mkdir -p)
EARLY="$T/mnt/LSSTCam/raw/all/raw/instrument=LSSTCam/detector=$(q "$T/src" "SELECT min(detector) FROM dataset_tags_00000001")/exposure=$(q "$T/src" "SELECT min(exposure) FROM dataset_tags_00000001")"
mkdir -p "$EARLY"
n=0
for f in $(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort); do
    n=$((n + 1))
    cp "$f" "$T/mnt/LSSTCam/raw/all/upload$n.fits" 2>"$T/err.txt" ||
        { fail "cp of synthetic raw $n into the RUN's directory: $(cat "$T/err.txt")"; bfs_show_log; }
done
expect "four raws copied" test "$n" = 4
expect "a raw at a dataId path made before the raw type existed is taken (a duplicate), create_dataset_types off" \
    cp "$(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort | head -1)" "$EARLY/"
expect "ls of the RUN's directory shows the names just written (the inbox)" \
    bash -c "ls '$T/mnt/LSSTCam/raw/all' | grep -c '^upload[1-4].fits\$' | grep -qx 4"
expect "... and ls -l their sizes (mode 644: a name that may be written again, docs/ingest.md)" \
    bash -c "ls -l '$T/mnt/LSSTCam/raw/all' | grep -q '^-rw-r--r-- .* $(stat -c %s "${f}") .* upload4.fits\$'"
expect "LSSTCam was registered with its 205 detectors" test "$(q "$T/repo" "SELECT count(*) FROM detector WHERE instrument='LSSTCam'")" = 205
expect "... and its 276 physical filters" test "$(q "$T/repo" "SELECT count(*) FROM physical_filter WHERE instrument='LSSTCam'")" = 276
expect "two exposure records" test "$(q "$T/repo" "SELECT count(*) FROM exposure")" = 2
expect "four raw datasets in LSSTCam/raw/all" test "$(q "$T/repo" "SELECT count(*) FROM dataset d JOIN collection c ON c.collection_id = d.run_id JOIN dataset_type t ON t.id = d.dataset_type_id WHERE c.name = 'LSSTCam/raw/all' AND t.name = 'raw'")" = 4
ids_src=$(q "$T/src" "SELECT lower(hex(id)) FROM dataset ORDER BY 1")
ids_new=$(q "$T/repo" "SELECT lower(hex(id)) FROM dataset ORDER BY 1")
expect "dataset ids equal those the synthetic repository gave the same raws (UUIDv5)" test "$ids_src" = "$ids_new"
cols="id, obs_id, physical_filter, day_obs, \"group\", seq_num, observation_type, observation_reason, target_name, science_program, exposure_time"
expect "exposure rows hold the headers' values" test "$(q "$T/src" "SELECT $cols FROM exposure ORDER BY id")" = "$(q "$T/repo" "SELECT $cols FROM exposure ORDER BY id")"
sleep 1.2 # the tree refreshes its catalog once a second
src1=$(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort | head -1)
det=$(q "$T/src" "SELECT detector FROM dataset_tags_00000001 ORDER BY detector LIMIT 1")
exp=$(q "$T/src" "SELECT exposure FROM dataset_tags_00000001 ORDER BY exposure LIMIT 1")
F=$(find "$T/mnt/LSSTCam/raw/all/raw/instrument=LSSTCam/detector=$det/exposure=$exp" -type f 2>/dev/null | head -1)
expect "a raw shows at its dataId path" test -n "$F"
expect "... with the bytes written" cmp "$src1" "$F"
want=$(q "$T/repo" "SELECT e.day_obs || '/' || f.band || '/' || e.physical_filter || '/' || e.obs_id || '/raw_LSSTCam_' || f.band || '_' || e.physical_filter || '_' || e.obs_id || '_' || d.full_name || '_LSSTCam_raw_all.fits' FROM exposure e JOIN physical_filter f ON f.instrument = e.instrument AND f.name = e.physical_filter JOIN detector d ON d.instrument = e.instrument AND d.id = $det WHERE e.id = $exp")
expect "the file lies where daf_butler's default file template puts it (LSSTCam/raw/all/raw/$want)" \
    test -n "$(q "$T/repo" "SELECT 1 FROM file_datastore_records WHERE path = 'LSSTCam/raw/all/raw/$want'")"
expect "each file record holds the BLAKE2b-512 of the stored bytes (daf_butler's checksum)" python3 - "$T/repo" <<'PY'
import hashlib, sqlite3, sys
repo = sys.argv[1]
rows = sqlite3.connect(f"{repo}/gen3.sqlite3").execute("SELECT path, checksum FROM file_datastore_records").fetchall()
assert rows
for path, ck in rows:
    assert ck == hashlib.blake2b(open(f"{repo}/{path}", "rb").read()).hexdigest(), path
PY
expect "the formatter recorded is the camera's raw formatter" test "$(q "$T/repo" "SELECT DISTINCT formatter FROM file_datastore_records")" = "lsst.obs.lsst.rawFormatter.LsstCamRawFormatter"

day=$(date -u -d '12 hours ago' +%Y-%m-%d)
stored=$(find "$T/repo/LSSTCam" -type f -name '*.fits' | head -1)
expect "each raw is hard-linked into the staging tree as <tree>/<day>/<file>" \
    test "$(stat -c %i "$stored")" = "$(stat -c %i "$T/staging/$day/$(basename "$stored")" 2>/dev/null)"
expect "an event line per raw with the keys operators rely on" python3 - "$T/repo/.butlerfs/events.jsonl" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
raws = [e for e in ev if e.get("dataset_type") == "raw"]
assert len(raws) == 5, raws  # the four, and the one again at its dataId path (a duplicate)
for e in raws:
    for k in ("status", "description", "instrument", "obs_id", "raft", "sensor", "dataset_id", "dataId", "path", "latency_ms"):
        assert k in e, (k, e)
    assert e["status"] == 0 and e["instrument"] == "LSSTCam" and e["obs_id"].startswith("MC_O_"), e
    assert set(e["dataId"]) == {"instrument", "detector", "exposure"}, e
    assert isinstance(e["latency_ms"], int) and e["latency_ms"] < 60000, e
PY
if command -v fitsverify >/dev/null; then
    expect "fitsverify passes every stored raw" \
        bash -c "for f in \$(find '$T/repo/LSSTCam' -type f -name '*.fits'); do fitsverify -q -e \"\$f\" >/dev/null || exit 1; done"
fi

# rsync writes a temporary ".name.XXXXXX", closes it (the ingest) and renames it
if command -v rsync >/dev/null; then
    src2=$(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort | tail -1)
    expect "rsync of a raw into the RUN's directory succeeds" rsync "$src2" "$T/mnt/LSSTCam/raw/all/"
    expect "... its name shows after rsync's rename" stat "$T/mnt/LSSTCam/raw/all/$(basename "$src2")"
    expect "... and the datastore names carry no temporary suffix" \
        bash -c "test -z \"\$(find '$T/repo/LSSTCam' -type f ! -name '*.fits')\""
    mv "$T/mnt/LSSTCam/raw/all/$(basename "$src2")" "$T/mnt/elsewhere.fits" 2>"$T/err.txt"
    expect "a rename into another directory is refused" test -s "$T/err.txt"
fi

# refusals: one bytes-edited copy per fault (same length: the cards stay 80 bytes)
# overwrite the bytes from where `at` starts with `new` (a card keeps its 80 bytes)
edit() { python3 - "$src1" "$1" "$2" "$3" <<'PY'
import sys
src, dst, at, new = sys.argv[1:]
b = bytearray(open(src, 'rb').read())
i = b.find(at.encode())
assert i >= 0, at
b[i:i + len(new)] = new.encode()
open(dst, 'wb').write(bytes(b))
PY
}
edit "$T/hsc.fits" "INSTRUME= '" "INSTRUME= 'HSC     '"
edit "$T/raft.fits" "RAFTBAY = '" "RAFTBAY = '../x    '"
cp "$T/hsc.fits" "$T/mnt/LSSTCam/raw/all/hsc.fits" 2>"$T/err.txt"
expect "an edited header fails the checksum check (EINVAL)" grep -q "Invalid argument" "$T/err.txt"
printf 'not a FITS file\n' >"$T/text.txt"
cp "$T/text.txt" "$T/mnt/LSSTCam/raw/all/notes.txt" 2>"$T/err.txt"
expect "a non-FITS file in a RUN's directory fails (EINVAL)" grep -q "Invalid argument" "$T/err.txt"
# a refused file's name is free again at once: the writer fixes it and retries
head -c 10000 "$src1" >"$T/cut.fits"
cp "$T/cut.fits" "$T/mnt/LSSTCam/raw/all/retry.fits" 2>"$T/err.txt"
expect "a truncated raw fails (EINVAL)" grep -q "Invalid argument" "$T/err.txt"
expect "... and its name is not listed (its bytes are in quarantine)" \
    bash -c "! ls '$T/mnt/LSSTCam/raw/all' | grep -qx retry.fits"
expect "cp of the whole file to the same name right away succeeds (the same bytes as upload1: a duplicate)" \
    cp "$src1" "$T/mnt/LSSTCam/raw/all/retry.fits"
expect "... and the name is listed now" bash -c "ls '$T/mnt/LSSTCam/raw/all' | grep -qx retry.fits"
unmount

printf 'ingest:\n  checksums: advisory\n' >"$T/bfs.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
cp "$T/hsc.fits" "$T/mnt/LSSTCam/raw/all/hsc.fits" 2>"$T/err.txt"
expect "with checksums advisory, a camera butlerfs does not know fails (ENOENT)" grep -q "No such file" "$T/err.txt"
cp "$T/raft.fits" "$T/mnt/LSSTCam/raw/all/raft.fits" 2>"$T/err.txt"
expect "a RAFTBAY of '../x...' is no detector (ENOENT)" grep -q "No such file" "$T/err.txt"
# a byte FITS forbids in a header (not printable ASCII) would reach the
# dataId, the event's JSON and the intent record: refused, also with the
# checksums advisory, and never left half-done in the spool
python3 - "$src1" "$T/byte.fits" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
i = b.find(b"OBSID   = '")
assert i >= 0
b[i + 13] = 0xff
open(sys.argv[2], 'wb').write(bytes(b))
PY
cp "$T/byte.fits" "$T/mnt/LSSTCam/raw/all/byte.fits" 2>"$T/err.txt"
expect "a header byte that is not printable ASCII fails (EINVAL)" grep -q "Invalid argument" "$T/err.txt"
expect "... the quarantine names the card and the byte" \
    bash -c "cat '$T'/repo/.butlerfs/quarantine/*/*.reason | grep -q 'header card [0-9]* (OBSID   ) holds the byte 0xff'"
expect "... and nothing is left in the spool" test -z "$(ls -A "$T/repo/.butlerfs/spool")"
# names are JSON text in the intent and the event: a name that is not UTF-8
# is refused as file systems that take only UTF-8 names refuse it (EILSEQ)
bad=$(printf 'bad\xffname.fits')
cp "$src1" "$T/mnt/LSSTCam/raw/all/$bad" 2>"$T/err.txt"
expect "a name that is not valid UTF-8 is refused (EILSEQ)" grep -q "Invalid or incomplete multibyte" "$T/err.txt"
expect "... and the log says why" grep -q 'refused a file named bad\\xffname.fits in LSSTCam/raw/all: the name is not valid UTF-8' "$BFS_LOG"
cp "$src1" "$T/mnt/LSSTCam/raw/all/.tmp.fits"
mv "$T/mnt/LSSTCam/raw/all/.tmp.fits" "$T/mnt/LSSTCam/raw/all/$bad" 2>"$T/err.txt"
expect "... and so is a rename to it (EILSEQ)" grep -q "Invalid or incomplete multibyte" "$T/err.txt"
mkdir -p "$T/mnt/LSSTCam/raw/badname"
cp "$src1" "$T/mnt/LSSTCam/raw/badname/$bad" 2>/dev/null
expect "... and a refused name in a new RUN's directory registers no RUN" \
    test "$(q "$T/repo" "SELECT count(*) FROM collection WHERE name = 'LSSTCam/raw/badname'")" = 0
expect "nothing was placed outside the runs' directories" \
    bash -c "! find '$T/repo' -name '*raw_*' | grep -v '^$T/repo/LSSTCam/raw/all/raw/' | grep -q ."
reasons=$(cat "$T"/repo/.butlerfs/quarantine/*/*.reason)
expect "the quarantine says why: INSTRUME named" grep -q "INSTRUME = 'HSC'" <<<"$reasons"
expect "... RAFTBAY named" grep -q "RAFTBAY/CCDSLOT" <<<"$reasons"
expect "... the checksum named" grep -qi "sum" <<<"$reasons"
expect "... not FITS named" grep -q "not a FITS file" <<<"$reasons"
expect "still four datasets" test "$(q "$T/repo" "SELECT count(*) FROM dataset")" = 4

# a tile-compressed raw (fpack: Rice, the amplifiers in compressed BINTABLEs)
if command -v fpack >/dev/null; then
    fpack -O "$T/fz.fits.fz" "$src1"
    mkdir -p "$T/mnt/LSSTCam/raw/fz"
    expect "cp of a .fits.fz raw into a RUN's directory succeeds" cp "$T/fz.fits.fz" "$T/mnt/LSSTCam/raw/fz/"
    fzpath=$(q "$T/repo" "SELECT r.path FROM file_datastore_records r JOIN dataset d ON d.id = r.dataset_id JOIN collection c ON c.collection_id = d.run_id WHERE c.name = 'LSSTCam/raw/fz'")
    expect "... stored as .fits.fz with the bytes written ($fzpath)" \
        bash -c "[[ '$fzpath' == *.fits.fz ]] && cmp '$T/fz.fits.fz' '$T/repo/$fzpath'"
    expect "... with the dataId of the uncompressed raw" \
        test "$(q "$T/repo" "SELECT t.exposure || '/' || t.detector FROM dataset_tags_00000001 t JOIN collection c ON c.collection_id = t.collection_id WHERE c.name = 'LSSTCam/raw/fz'")" = "$exp/$det"
    sleep 1.2
    expect "... and reads back through the mount" \
        cmp "$T/fz.fits.fz" "$(find "$T/mnt/LSSTCam/raw/fz/raw" -type f -name '*.fits.fz' | head -1)"
fi

# the same dataId under another extension: the registered file decides, not the new name
expect "cp of a raw again under another extension succeeds (the same bytes: a duplicate)" \
    cp "$src1" "$T/mnt/LSSTCam/raw/all/again.fit"
expect "... and no second copy was placed" test -z "$(find "$T/repo/LSSTCam" -type f -name '*.fit')"
expect "... its event says duplicate" \
    bash -c "tail -1 '$T/repo/.butlerfs/events.jsonl' | grep -q '\"outcome\": *\"duplicate\"'"
size=$(stat -c %s "$src1")
python3 - "$src1" "$T/pix.fits" "$size" <<'PY'
import sys
src, dst, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = bytearray(open(src, 'rb').read())
b[size - 3000] ^= 0x01  # a pixel of the last amplifier: a DATASUM (advisory here) no longer matches
open(dst, 'wb').write(bytes(b))
PY
cp "$T/pix.fits" "$T/mnt/LSSTCam/raw/all/other.fit" 2>"$T/err.txt"
expect "other bytes at a registered dataId, under another extension, fail (EEXIST)" grep -q "File exists" "$T/err.txt"
expect "... and no second copy was placed" test -z "$(find "$T/repo/LSSTCam" -type f -name '*.fit')"
expect "... the quarantine says the dataset is registered with different bytes" \
    grep -q "registered already, with different bytes" $T/repo/.butlerfs/quarantine/*/*.reason
cp "$T/pix.fits" "$T/mnt/LSSTCam/raw/all/other.fits" 2>"$T/err.txt"
expect "other bytes at a registered dataId under the same extension fail (EEXIST)" grep -q "File exists" "$T/err.txt"
nds=$(q "$T/repo" "SELECT count(*) FROM dataset")
expect "no dataset added by the refusals, each with one file record" \
    test "$nds/$(q "$T/repo" "SELECT count(*) FROM file_datastore_records")" = "$nds/$nds" -a "$nds" -le 5

# a raw written at a dataId path: its headers decide, as in the RUN's own
# directory, and the path must say the same
wrong="$T/mnt/LSSTCam/raw/bypath/raw/instrument=LSSTCam/detector=$((det + 1))/exposure=$exp"
right="$T/mnt/LSSTCam/raw/bypath/raw/instrument=LSSTCam/detector=$det/exposure=$exp"
mkdir -p "$wrong" "$right"
cp "$src1" "$wrong/" 2>"$T/err.txt"
expect "a raw at a dataId path its headers do not give is refused (EINVAL)" grep -q "Invalid argument" "$T/err.txt"
expect "... the reason gives both dataIds" \
    grep -q "which give detector=$det, exposure=$exp, instrument=LSSTCam (.*), not detector=$((det + 1)), exposure=$exp, instrument=LSSTCam as its path says" "$BFS_LOG"
expect "... and nothing is registered in that RUN" \
    test "$(q "$T/repo" "SELECT count(*) FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name = 'LSSTCam/raw/bypath'")" = 0
expect "a raw at its own dataId path is ingested" cp "$src1" "$right/"
expect "... with its camera's raw formatter, as in the RUN's own directory" \
    test "$(q "$T/repo" "SELECT r.formatter FROM file_datastore_records r JOIN dataset d ON d.id = r.dataset_id JOIN collection c ON c.collection_id = d.run_id WHERE c.name = 'LSSTCam/raw/bypath'")" = lsst.obs.lsst.rawFormatter.LsstCamRawFormatter

# the real LSSTComCam raw the Python Butler ingested into the comCam fixture
REAL=$BFS_SHARED/fixtures/repos/comCam/raw/2019-05-30/3019053000001/3019053000001-R22-S00-det000.fits
if [ -r "$REAL" ]; then
    mkdir -p "$T/mnt/LSSTComCam/raw/all"
    cp "$REAL" "$T/mnt/LSSTComCam/raw/all/" 2>"$T/err.txt" ||
        { cat "$T/err.txt"; tail -3 "$BFS_LOG"; }
    expect "the real LSSTComCam raw (gzip-wrapped FITS) is ingested" test ! -s "$T/err.txt"
    cols="id, physical_filter, obs_id, exposure_time, dark_time, observation_type, observation_reason, day_obs, seq_num, target_name, science_program, timespan_begin, timespan_end"
    expect "its exposure row equals the one the Python Butler wrote" \
        test "$(q "$BFS_SHARED/fixtures/repos/comCam" "SELECT $cols FROM exposure")" = "$(q "$T/repo" "SELECT $cols FROM exposure WHERE instrument = 'LSSTComCam'")"
    expect "LSSTComCam was registered with its 9 detectors" test "$(q "$T/repo" "SELECT count(*) FROM detector WHERE instrument='LSSTComCam'")" = 9
    # the Python Butler's raw ingest gave it a UUIDv5 over (raw, LSSTComCam/raw/all, dataId)
    py_id=$(q "$BFS_SHARED/fixtures/repos/comCam" "SELECT d.id FROM dataset d JOIN dataset_type t ON t.id = d.dataset_type_id WHERE t.name = 'raw'")
    our_id=$(q "$T/repo" "SELECT CASE typeof(d.id) WHEN 'blob' THEN lower(hex(d.id)) ELSE d.id END FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name = 'LSSTComCam/raw/all'")
    expect "its dataset id equals the one the Python Butler gave it ($py_id)" test -n "$py_id" -a "${py_id//-/}" = "${our_id//-/}"
else
    echo "fixtures absent: the real-raw checks are skipped"
fi
# a dataId level listed before a raw is written into the RUN's directory
# lists it right after close (the kernel keeps listings until dir_timeout
# unless the daemon drops them)
mkdir -p "$T/mnt/LSSTCam/raw/fresh"
mapfile -t PAIR < <(q "$T/src" "SELECT r.path FROM file_datastore_records r JOIN dataset_tags_00000001 t ON t.dataset_id = r.dataset_id WHERE t.detector = $det ORDER BY t.exposure")
cp "$T/src/${PAIR[0]}" "$T/mnt/LSSTCam/raw/fresh/" || fail "cp of a raw into LSSTCam/raw/fresh"
sleep 1.2
L="$T/mnt/LSSTCam/raw/fresh/raw/instrument=LSSTCam/detector=$det"
n_before=$(ls "$L" | wc -l)
cp "$T/src/${PAIR[1]}" "$T/mnt/LSSTCam/raw/fresh/" || fail "cp of a second raw into LSSTCam/raw/fresh"
n_after=$(ls "$L" | wc -l)
expect "a dataId level listed before a raw of a new exposure was written lists it right after close ($n_before -> $n_after)" \
    test "$n_before" = 1 -a "$n_after" = 2
unmount

# an existing repository of universe 7 written by the Python Butler (prompt_processing)
PP=$BFS_SHARED/fixtures/repos/prompt_processing_central
if [ -r "$PP/gen3.sqlite3" ]; then
    cp -r "$PP" "$T/pp"
    before="$(q "$T/pp" "SELECT count(*) FROM detector")|$(q "$T/pp" "SELECT count(*) FROM physical_filter")"
    mount_repo "$T/pp" "$T/mnt" rw || finish
    mkdir -p "$T/mnt/LSSTCam/raw/all"
    expect "a raw copied into the prompt_processing repository (universe 7) is ingested" \
        cp "$src1" "$T/mnt/LSSTCam/raw/all/"
    expect "... with its exposure record" test "$(q "$T/pp" "SELECT count(*) FROM exposure WHERE id = $exp")" = 1
    expect "... under the repository's own raw dataset type" \
        test "$(q "$T/pp" "SELECT count(*) FROM dataset_type WHERE name = 'raw'")" = 1
    expect "... the repository's camera records untouched" \
        test "$(q "$T/pp" "SELECT count(*) FROM detector")|$(q "$T/pp" "SELECT count(*) FROM physical_filter")" = "$before"
    id=$(q "$T/src" "SELECT lower(hex(dataset_id)) FROM dataset_tags_00000001 WHERE exposure = $exp AND detector = $det")
    expect "... and the same dataset id as in the synthetic repository" \
        test "$(q "$T/pp" "SELECT count(*) FROM dataset WHERE lower(hex(id)) = '$id'")" = 1
    unmount
fi

# a repository of a universe older than raw ingest writes (the lsstCam
# fixture, universe 1): a raw is refused with the reason, never left in the
# spool; a raw at a dataId path keeps the path's dataId there
OLD=$BFS_SHARED/fixtures/repos/lsstCam
if [ -r "$OLD/gen3.sqlite3" ]; then
    cp -r "$OLD" "$T/old"
    chmod -R u+w "$T/old"
    mount_repo "$T/old" "$T/mnt" rw || finish
    mkdir -p "$T/mnt/u/test/raws"
    cp "$src1" "$T/mnt/u/test/raws/" 2>"$T/err.txt"
    expect "a raw into a repository of universe 1 is refused (ENOTSUP)" grep -q "Operation not supported" "$T/err.txt"
    expect "... the reason names the universes raw ingest writes" \
        bash -c "cat '$T'/old/.butlerfs/quarantine/*/*.reason | grep -q 'universe 6 and later, and this repository.s is daf_butler v1'"
    expect "... and nothing is left in the spool" test -z "$(ls -A "$T/old/.butlerfs/spool")"
    unmount
fi
check_log
expect_no_sanitizer
finish
