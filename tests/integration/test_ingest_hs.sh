#!/usr/bin/env bash
# test_ingest_hs.sh - the Header Service merge in raw ingest: with
# ingest.header_service.dir set, the per-image YAML document of a raw's OBSID
# is merged into the file before it is stored (PRIMARY and the sensor's own
# block into HDU 1, the sensor's Segment block into that HDU, structural
# keywords untouched), the translation sees the merged cards (the exposure's
# target_name comes from the document's OBJECT), the stored file passes
# fitsverify, and the event says what happened.  A document that arrives
# late is waited for; one that never arrives does not stop the ingest (the
# file is stored as written, the event and the log say so).  The document
# here is synthetic; test_ingest_hs_real.sh merges the real Header Service
# documents of ../shared/fixtures/headerservice through a mount.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
command -v python3 >/dev/null || skip "python3 not installed"
T=$BFS_TMP
"$BFS_BIN" synth "$T/src" --exposures 3 --detectors 4 --fits >/dev/null 2>&1 || fail "synth"
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
mkdir -p "$T/mnt" "$T/hs"
mapfile -t ALL < <(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort)
# one raw of each exposure, and the other three sensors of the third
RAWS=("${ALL[0]}" "${ALL[4]}" "${ALL[8]}") MORE=("${ALL[9]}" "${ALL[10]}" "${ALL[11]}")
card() { head -c 28800 "$1" | fold -w 80 | grep -a -m1 "^$2 *=" | sed "s/^$2 *= *//; s/ *\/.*//; s/'//g; s/ *$//"; }
q() { sqlite3 "$T/repo/gen3.sqlite3" "$1"; }
doc() { # doc RAW: the Header Service document of that raw
    local sensor
    sensor=$(card "$1" RAFTBAY)$(card "$1" CCDSLOT)
    cat <<YAML
PRIMARY:
- keyword: OBJECT
  value: merged-target
  comment: from the Header Service
- keyword: HSTEST
  value: 42
  comment: an integer the camera did not write
- keyword: NAXIS
  value: 7
  comment: structural, never merged
${sensor}_PRIMARY:
- keyword: HSSENSOR
  value: 1.5
  comment: the sensor's own block
${sensor}_Segment10:
- keyword: HSAMP
  value: true
  comment: an amplifier block
R99S99_PRIMARY:
- keyword: HSOTHER
  value: 1
  comment: another sensor's block, ignored
YAML
}
obs1=$(card "${RAWS[0]}" OBSID) obs2=$(card "${RAWS[1]}" OBSID) obs3=$(card "${RAWS[2]}" OBSID)
doc "${RAWS[0]}" >"$T/hs/$obs1.header"
printf 'ingest:\n  header_service:\n    dir: %s\n    wait: 3s\n' "$T/hs" >"$T/bfs.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
mkdir -p "$T/mnt/LSSTCam/raw/all"
expect "a raw whose document is there is ingested" cp "${RAWS[0]}" "$T/mnt/LSSTCam/raw/all/"
path=$(q "SELECT r.path FROM file_datastore_records r JOIN dataset_tags_00000001 t ON t.dataset_id = r.dataset_id JOIN exposure e ON e.id = t.exposure WHERE e.obs_id = '$obs1'")
stored=$T/repo/$path
expect "the stored file holds the document's new keyword (HSTEST = 42)" test "$(card "$stored" HSTEST)" = 42
expect "... and its value for a keyword the camera wrote (OBJECT)" test "$(card "$stored" OBJECT)" = merged-target
expect "... and the sensor's own block (HSSENSOR)" test -n "$(card "$stored" HSSENSOR)"
expect "... but not another sensor's block" test -z "$(card "$stored" HSOTHER)"
expect "... and structural keywords untouched (NAXIS of the primary is 0)" test "$(card "$stored" NAXIS)" = 0
expect "... and the amplifier block in Segment10's HDU" bash -c "fold -w 80 '$stored' | grep -aq '^HSAMP   =                    T'"
if command -v fitsverify >/dev/null; then
    expect "the merged file passes fitsverify (checksums restamped)" fitsverify -q -e "$stored"
fi
expect "the file record's checksum is that of the merged file" python3 -c "
import hashlib, sqlite3, sys
ck = sqlite3.connect(sys.argv[1]).execute('SELECT checksum FROM file_datastore_records WHERE path = ?', (sys.argv[2],)).fetchone()[0]
assert ck == hashlib.blake2b(open(sys.argv[3], 'rb').read()).hexdigest()" "$T/repo/gen3.sqlite3" "$path" "$stored"
# a second later: a merge that stamped the time (a CHECKSUM card's comment
# says when it was updated) would give other bytes
cp "$stored" "$T/stored1.fits"
sleep 1.1
expect "the same raw copied again (the document merged again) is a duplicate, not EEXIST" \
    cp "${RAWS[0]}" "$T/mnt/LSSTCam/raw/all/"
expect "... its event says duplicate, and the stored file is unchanged" bash -c "
    tail -1 '$T/repo/.butlerfs/events.jsonl' | grep -q '\"outcome\": *\"duplicate\"' && cmp -s '$stored' '$T/stored1.fits'"
expect "the translation saw the merged header (target_name from the document)" \
    test "$(q "SELECT target_name FROM exposure WHERE obs_id = '$obs1'")" = merged-target
expect "the event says the document was merged" python3 - "$T/repo/.butlerfs/events.jsonl" "$obs1" <<'PY'
import json, sys
e = [e for e in map(json.loads, open(sys.argv[1])) if e.get("obs_id") == sys.argv[2]][-1]
assert e["status"] == 0 and e["header_service"].startswith("merged"), e
PY

# a document that arrives while the ingest waits for it
(sleep 1; doc "${RAWS[1]}" >"$T/hs/$obs2.header.tmp" && mv "$T/hs/$obs2.header.tmp" "$T/hs/$obs2.header") &
late=$!
expect "a raw whose document arrives 1 s later is ingested" cp "${RAWS[1]}" "$T/mnt/LSSTCam/raw/all/"
wait "$late"
expect "... with the document merged" test "$(q "SELECT target_name FROM exposure WHERE obs_id = '$obs2'")" = merged-target

# a document that never arrives: stored as written, after the wait
t0=$(date +%s)
expect "a raw whose document never arrives is still ingested" cp "${RAWS[2]}" "$T/mnt/LSSTCam/raw/all/"
secs=$(($(date +%s) - t0))
expect "... after waiting about the configured 3 s (took ${secs} s)" test "$secs" -ge 2 -a "$secs" -le 10
expect "... unmerged (its own OBJECT kept)" test "$(q "SELECT target_name FROM exposure WHERE obs_id = '$obs3'")" != merged-target
expect "... and the event says why" python3 - "$T/repo/.butlerfs/events.jsonl" "$obs3" <<'PY'
import json, sys
e = [e for e in map(json.loads, open(sys.argv[1])) if e.get("obs_id") == sys.argv[2]][-1]
assert e["status"] == 0 and e["header_service"].startswith("not merged"), e
PY
expect "... and the log" grep -q "stored without its Header Service document" "$BFS_LOG"
# the other sensors of that image do not wait again, each behind the
# workers: the wait runs from the image's first raw
t0=$(date +%s%N)
pids=()
for f in "${MORE[@]}"; do cp "$f" "$T/mnt/LSSTCam/raw/all/" & pids+=($!); done
more_ok=1
for p in "${pids[@]}"; do wait "$p" || more_ok=0; done
ms=$((($(date +%s%N) - t0) / 1000000))
expect "the image's other three sensors are ingested" test "$more_ok" = 1
expect "... without a second wait of 3 s (took ${ms} ms)" test "$ms" -lt 2500
expect "... and all four sensors of the image are registered" \
    test "$(q "SELECT count(*) FROM dataset_tags_00000001 t JOIN exposure e ON e.id = t.exposure WHERE e.obs_id = '$obs3'")" = 4
unmount
check_log
expect_no_sanitizer
finish
