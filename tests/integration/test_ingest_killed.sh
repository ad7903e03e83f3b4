#!/usr/bin/env bash
# test_ingest_killed.sh - a writer killed mid-file never gets its file
# ingested (docs/ingest.md, "What a writer sees").
#
# The kernel closes a killed process's descriptors for it, and each close
# reaches the daemon as a FLUSH, like a close(2).  The daemon asks /proc
# whether the caller is exiting by a signal: then the file is quarantined
# (ECANCELED, the reason naming the signal), whatever its format, instead of
# being registered cut.  Checks: a file at a dataId path (not FITS: nothing
# else could tell it is cut) whose writer is killed by SIGKILL, by SIGTERM's
# default action and by abort() is not registered, and its bytes are in the
# quarantine with the reason; a writer that exits with its file still open
# (os._exit, the kernel closing it) gets its file ingested; a raw killed
# halfway is quarantined and the whole raw then goes in under the same name;
# the event lines say status 1 for the killed ones; `quarantine retry
# --all` skips their entries (their bytes may be cut) and --force retries one.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
command -v python3 >/dev/null || skip "python3 not installed"
T=$BFS_TMP
"$BFS_BIN" synth "$T/repo" --exposures 1 --detectors 4 >/dev/null 2>&1 || fail "synth"
"$BFS_BIN" synth "$T/src" --exposures 2 --detectors 1 --fits >/dev/null 2>&1 || fail "synth"
DB=$T/repo/gen3.sqlite3
EXP=$(sqlite3 "$DB" "SELECT exposure FROM dataset_tags_00000001 LIMIT 1")
mapfile -t DETS < <(sqlite3 "$DB" "SELECT DISTINCT detector FROM dataset_tags_00000001 ORDER BY detector")
[ ${#DETS[@]} -ge 4 ] || fail "synth made fewer than 4 detectors"
RAW=$(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort | tail -1) # the second exposure: new to repo
mkdir -p "$T/mnt"
printf 'ingest:\n  create_dataset_types: true\n  default_storage_class: Blob\n' >"$T/cfg.yaml"
dir_of() { echo "$T/mnt/kt/blob/instrument=LSSTCam/detector=$1/exposure=$EXP"; }
# tagged TYPE RUN WHERE: the datasets of TYPE in RUN whose dataId matches WHERE
tagged() {
    sqlite3 "$DB" "SELECT count(*) FROM dataset_tags_00000001 g JOIN dataset_type t ON t.id = g.dataset_type_id
        JOIN collection c ON c.collection_id = g.collection_id WHERE t.name = '$1' AND c.name = '$2' AND $3"
}
blobs() { tagged blob kt "g.detector = $1"; } # the blob datasets at detector $1
# writer HOW PATH: write 299 780 bytes, then end as HOW says, the file open
writer() {
    python3 - "$1" "$2" <<'PY'
import os, signal, sys
how, path = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, bytes(range(256)) * 1171 + b"tail")
if how == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
elif how == "term":
    os.kill(os.getpid(), signal.SIGTERM)
elif how == "abort":
    os.abort()
os._exit(0)  # "exit": the kernel closes the file
PY
}
# quarantined PATH REGEX: the quarantine lists a file written at a path
# containing PATH, whose line and reason match REGEX
quarantined() { "$BFS_BIN" quarantine "$T/repo" 2>/dev/null | grep -A1 -- "$1" | tr '\n' ' ' | grep -q -- "$2"; }

mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
for d in "${DETS[@]:0:4}"; do mkdir -p "$(dir_of "$d")"; done
i=0
for how in kill term abort; do
    d=${DETS[$i]}
    writer "$how" "$(dir_of "$d")/$how.bin" 2>/dev/null
    rc=$?
    sig=$(kill -l $((rc - 128)) 2>/dev/null)
    expect "a writer ended by SIG$sig mid-file (status $rc): its file is not registered" test "$(blobs "$d")" = 0
    expect "... its bytes are quarantined, ECANCELED, the reason naming SIG$sig" \
        quarantined "/$how.bin" "ECANCELED.*killed by SIG$sig"
    i=$((i + 1))
done
expect "the quarantined bytes are what was written before the kill" \
    test "$(find "$T/repo/.butlerfs/quarantine" -name '*.data' -size 299780c | wc -l)" = 3
d=${DETS[3]}
writer exit "$(dir_of "$d")/exit.bin"
expect "a writer that exits with its file open (the kernel closes it) gets it ingested" test "$(blobs "$d")" = 1
F=$(find "$(dir_of "$d")" -type f | head -1)
expect "... with every byte" test "$(stat -c %s "${F:-/nonexistent}")" = 299780

# a raw cut by a kill, in its RUN's directory, then written whole
mkdir -p "$T/mnt/LSSTCam/raw/all"
python3 - "$RAW" "$T/mnt/LSSTCam/raw/all/$(basename "$RAW")" <<'PY'
import os, signal, sys
data = open(sys.argv[1], "rb").read()
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, data[:len(data) // 2])
os.kill(os.getpid(), signal.SIGKILL)
PY
EXP2=$(sqlite3 "$T/src/gen3.sqlite3" "SELECT max(id) FROM exposure")
raws() { tagged raw LSSTCam/raw/all "g.exposure = $EXP2"; }
expect "a raw whose writer is killed halfway is not registered" test "$(raws)" = 0
expect "... it is quarantined as killed" quarantined "$(basename "$RAW")" "ECANCELED.*killed by SIGKILL"
expect "... its event names the image (obs_id, raft, sensor from the header it has)" python3 - "$T/repo/.butlerfs/events.jsonl" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
raw = [e for e in ev if e["errno"] == "ECANCELED" and e["run"] == "LSSTCam/raw/all"]
assert len(raw) == 1 and raw[0]["obs_id"] and raw[0]["raft"] and raw[0]["sensor"], raw
PY
expect "the whole raw then goes in under the same name" cp "$RAW" "$T/mnt/LSSTCam/raw/all/"
expect "... and is registered" test "$(raws)" = 1
expect "the event lines of the four killed files say status 1" \
    test "$(grep -c '"status": *1.*killed by SIG' "$T/repo/.butlerfs/events.jsonl")" = 4
# their bytes may be cut: a retry of everything leaves them alone ...
"$BFS_BIN" quarantine retry "$T/repo" --all >"$T/retry.txt" 2>&1
rc=$?
expect "quarantine retry --all skips the four files whose writer was killed (exit 1)" \
    test "$rc" = 1 -a "$(grep -c 'skipped: its writer never finished it' "$T/retry.txt")" = 4
expect "... and they stay in the quarantine" test "$(find "$T/repo/.butlerfs/quarantine" -name '*.data' | wc -l)" = 4
# ... until the operator says they are whole
kill_id=$("$BFS_BIN" quarantine --json "$T/repo" | python3 -c "import json,sys; print([e['id'] for e in json.load(sys.stdin)['entries'] if e['path'].endswith('/kill.bin')][0])")
expect "retry --force of one ingests it" "$BFS_BIN" quarantine retry --force "$T/repo" "$kill_id"
expect "... at its dataId" test "$(blobs "${DETS[0]}")" = 1
unmount
expect_no_sanitizer
finish
