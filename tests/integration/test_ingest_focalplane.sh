#!/usr/bin/env bash
# test_ingest_focalplane.sh - raws built with cfitsio from every LSST camera
# header dump of ../shared/fixtures/headers (tests/tools/hdr2fits) are copied
# into an -o rw mount of a `butlerfs init` repository: each lands at the
# dataId obs_lsst gives its header, passes fitsverify, and reads back through
# the mount byte for byte.  Then a focal plane: the 2025 LSSTCam header made
# into 189 science-detector raws (RAFTBAY/CCDSLOT varied), all copied at
# once: every cp exits 0, 189 datasets of one exposure, one exposure record,
# and fitsverify passes on every one of the 189 stored files.
# Skips without the fixtures.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
H=$BFS_SHARED/fixtures/headers
[ -r "$H/lsstCam-MC_O_20250609_000578_R01_S01.yaml" ] || skip "fixture headers absent"
[ -x "${BFS_HDR2FITS:-}" ] || skip "hdr2fits not built"
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
T=$BFS_TMP
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
q() { sqlite3 "$T/repo/gen3.sqlite3" "$1"; }
mkdir -p "$T/mnt" "$T/fits"
mount_repo "$T/repo" "$T/mnt" rw || finish

# header file, instrument, exposure id, detector (obs_lsst's tests/test_translator.py)
cat >"$T/list.txt" <<'LIST'
lsstCam-MC_C_20190319_000001_R10_S02 LSSTCam 3019031900001 29
lsstCam-MC_O_20250609_000578_R01_S01 LSSTCam 2025060900578 1
lsstCam_MC_C_20231125_000600_R12_S10 LSSTCam 2023112500600 48
comCam-CC_C_20190530_000001_R22_S00 LSSTComCam 3019053000001 0
comCam-CC_O_20241108_000266_R22_S00 LSSTComCam 2024110800266 0
latiss-AT_O_20220405_000348 LATISS 2022040500348 0
latiss-AT_O_20230321_000053 LATISS 2023032100053 0
latiss-AT_O_20240624_000106_R00_S00 LATISS 2024062400106 0
LIST
while read -r file inst exp det; do
    "$BFS_HDR2FITS" "$H/$file.yaml" "$T/fits/$file.fits" || { fail "hdr2fits $file"; continue; }
    mkdir -p "$T/mnt/$inst/raw/all"
    cp "$T/fits/$file.fits" "$T/mnt/$inst/raw/all/" 2>"$T/err.txt" ||
        { fail "cp of $file: $(cat "$T/err.txt")"; tail -2 "$BFS_LOG"; continue; }
    path=$(q "SELECT r.path FROM file_datastore_records r JOIN dataset d ON d.id = r.dataset_id JOIN exposure e ON e.instrument = '$inst' AND e.id = $exp WHERE r.path LIKE '%' || e.obs_id || '%' AND r.path LIKE '%raw%'" | head -1)
    expect "$file: ingested as $inst exposure $exp" test -n "$path"
    expect "$file: ... detector $det" test "$(q "SELECT count(*) FROM dataset_tags_00000001 WHERE instrument = '$inst' AND exposure = $exp AND detector = $det")" = 1
    if command -v fitsverify >/dev/null; then
        expect "$file: fitsverify passes on the stored file" fitsverify -q -e "$T/repo/$path"
    fi
done <"$T/list.txt"
sleep 1.2 # the tree reloads its catalog once a second
back=0
while read -r file inst exp det; do
    F=$(find "$T/mnt/$inst/raw/all/raw/instrument=$inst/detector=$det/exposure=$exp" -type f 2>/dev/null | head -1)
    [ -n "$F" ] && cmp -s "$T/fits/$file.fits" "$F" && back=$((back + 1))
done <"$T/list.txt"
expect "each of the 8 raws reads back through the mount at its dataId path, byte for byte" test "$back" = 8

# a focal plane: one exposure, 189 science detectors, all at once
src=$H/lsstCam-MC_O_20250609_000578_R01_S01.yaml
mkdir -p "$T/fp"
q "SELECT raft || ' ' || name_in_raft FROM detector WHERE instrument = 'LSSTCam' AND purpose = 'SCIENCE' ORDER BY id" >"$T/dets.txt"
expect "189 science detectors known" test "$(wc -l <"$T/dets.txt")" = 189
while read -r raft slot; do
    "$BFS_HDR2FITS" "$src" "$T/fp/${raft}_$slot.fits" "RAFTBAY=$raft" "CCDSLOT=$slot" || fail "hdr2fits $raft $slot"
done <"$T/dets.txt"
mkdir -p "$T/mnt/LSSTCam/raw/fp"
t0=$(date +%s.%N)
pids=()
for f in "$T"/fp/*.fits; do
    cp "$f" "$T/mnt/LSSTCam/raw/fp/" 2>>"$T/fp-err.txt" &
    pids+=($!)
done
bad=0
for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
t1=$(date +%s.%N)
expect "189 cps at once into the mount all exit 0" test "$bad" = 0
[ "$bad" = 0 ] || head -5 "$T/fp-err.txt"
expect "... 189 datasets of exposure 2025060900578 in LSSTCam/raw/fp" \
    test "$(q "SELECT count(*) FROM dataset_tags_00000001 t JOIN collection c ON c.collection_id = t.collection_id WHERE c.name = 'LSSTCam/raw/fp' AND t.exposure = 2025060900578")" = 189
expect "... and one exposure record" test "$(q "SELECT count(*) FROM exposure WHERE id = 2025060900578")" = 1
if command -v fitsverify >/dev/null; then
    q "SELECT DISTINCT r.path FROM file_datastore_records r JOIN dataset_tags_00000001 t ON t.dataset_id = r.dataset_id
       JOIN collection c ON c.collection_id = t.collection_id WHERE c.name = 'LSSTCam/raw/fp' AND t.exposure = 2025060900578" >"$T/fp-paths.txt"
    v0=$(date +%s.%N)
    # one process for all (189 processes take 40 times longer); with -q it
    # prints one line per file, "verification OK: NAME" or "... FAILED: ..."
    (cd "$T/repo" && xargs -d '\n' fitsverify -q -e <"$T/fp-paths.txt" >"$T/fp-verify.txt" 2>&1)
    echo "focal plane: fitsverify on $(wc -l <"$T/fp-paths.txt") stored files took $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $v0 }") s"
    expect "fitsverify passes on all 189 stored focal-plane files" \
        test "$(wc -l <"$T/fp-paths.txt") $(grep -c '^verification OK: ' "$T/fp-verify.txt")" = "189 189"
    grep -v '^verification OK: ' "$T/fp-verify.txt" | head -20
fi
sleep 1.2
back=0
while read -r id name; do
    F=$(find "$T/mnt/LSSTCam/raw/fp/raw/instrument=LSSTCam/detector=$id/exposure=2025060900578" -type f 2>/dev/null | head -1)
    [ -n "$F" ] && cmp -s "$T/fp/$name.fits" "$F" && back=$((back + 1))
done < <(q "SELECT id || ' ' || raft || '_' || name_in_raft FROM detector WHERE instrument = 'LSSTCam' AND purpose = 'SCIENCE' ORDER BY id")
expect "all 189 focal-plane raws read back through the mount at their dataId paths, byte for byte" test "$back" = 189
python3 - "$T/repo/.butlerfs/events.jsonl" "$t0" "$t1" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"LSSTCam/raw/fp"' in l]
lat = sorted(e["latency_ms"] for e in ev if e.get("latency_ms") is not None)
if lat:
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"focal plane: {len(ev)} events, close->event p50 {p(0.5)} ms, p99 {p(0.99)} ms, "
          f"wall {float(sys.argv[3]) - float(sys.argv[2]):.2f} s (informational; bench/ measures speed)")
PY
unmount
check_log
expect_no_sanitizer
finish
