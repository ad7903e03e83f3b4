#!/usr/bin/env bash
# test_ingest_crash.sh - the crash story of ingest (writers/ingest.c): the
# daemon is killed (SIGKILL, through the BFS_INGEST_KILL_AT test hook) right
# after it wrote each state of an upload's intent record; a new -o rw mount
# must finish what was left before it serves.
#
# Checks, for every state: after the remount the dataset is registered
# exactly once (or, for a writer that never closed and for bad bytes,
# quarantined with a reason), its bytes read back equal to what was written,
# no intent record or spool file is left, and the event log holds a line
# for it; and the staging tree holds its hard link (the links are made
# after REGISTERED, so a kill there leaves them to the remount).  A
# half-made copy left in the spool (a kill inside a durable write) is
# removed by the next mount.  A dataset's own file written again (a copy
# run twice) and killed at each state leaves the dataset as it was, and
# the new bytes as a duplicate or in quarantine.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
T=$BFS_TMP
"$BFS_BIN" synth "$T/repo" --exposures 1 --detectors 1 --fits >/dev/null 2>&1 || fail "synth"
mkdir -p "$T/mnt" "$T/stage"
printf 'ingest:\n  staging: [%s]\n' "$T/stage" >"$T/cfg.yaml"
count() { sqlite3 "$T/repo/gen3.sqlite3" "SELECT count(*) FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name = '$1'"; }
R=$(sqlite3 "$T/repo/gen3.sqlite3" "SELECT exposure || ' ' || detector FROM dataset_tags_00000001 LIMIT 1" 2>/dev/null)
EXP=${R% *}; DET=${R#* }
[ -n "$EXP" ] && [ -n "$DET" ] || fail "no synthetic raw"
SRC=$(find "$T/repo/LSSTCam" -name '*.fits' | head -1)
cp "$SRC" "$T/raw.fits"
head -c 5000 "$T/raw.fits" >"$T/cut.fits"

# crash STATE FILE [TARGET]: write FILE into run crash/STATE (or to TARGET,
# a path below the mount) with the daemon set to die after writing STATE,
# then remount cleanly
crash()
{
    local state=$1 file=$2 target=${3:-} d
    BFS_INGEST_KILL_AT=$state mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || return 1
    if [ -z "$target" ]; then
        d="$T/mnt/crash/$state/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP"
        mkdir -p "$d" || fail "$state: mkdir -p of the dataId path"
        target=$d/x.fits
    fi
    cp "$file" "$T/mnt/${target#"$T/mnt/"}" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$BFS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$BFS_PID" 2>/dev/null && fail "$state: the daemon did not stop at the hook"
    fusermount3 -u "$T/mnt" 2>/dev/null || fusermount3 -uz "$T/mnt" 2>/dev/null
    mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || return 1
}

left_in_spool() { find "$T/repo/.butlerfs/spool" -type f | wc -l; }

for state in SEALED PREPARED PLACED REGISTERED ANNOUNCED; do
    crash "$state" "$T/raw.fits" || finish
    expect "killed after $state: the dataset is registered exactly once after the remount" \
        test "$(count "crash/$state")" = 1
    expect "killed after $state: its bytes read back" \
        bash -c "cmp '$T/raw.fits' \"\$(find '$T/mnt/crash/$state/raw' -type f | head -1)\""
    expect "killed after $state: nothing is left in the spool" test "$(left_in_spool)" = 0
    stored=$(find "$T/repo/crash/$state" -type f -name '*.fits' | head -1)
    expect "killed after $state: the staging tree holds its link (same inode)" \
        test -n "$(find "$T/stage" -type f -samefile "$stored" 2>/dev/null)"
    expect "killed after $state: an event names it" \
        grep -q "\"run\":\"crash/$state\".*\"outcome\":\"ingested\"\|\"outcome\":\"ingested\".*\"run\":\"crash/$state\"" \
        "$T/repo/.butlerfs/events.jsonl"
    unmount
done

for state in OPEN QUARANTINED; do
    crash "$state" "$T/cut.fits" || finish
    expect "killed after $state: nothing is registered" test "$(count "crash/$state")" = 0
    expect "killed after $state: nothing is left in the spool" test "$(left_in_spool)" = 0
    expect "killed after $state: the bytes are in quarantine with a reason" \
        bash -c "grep -l 'crash/$state' '$T/repo/.butlerfs/quarantine'/*/*.reason | grep -q ."
    unmount
done
expect "the remount said what it finished" grep -q "left in state" "$T"/daemon.*.log

# a dataset's own file written again (a copy run twice: a new upload at its
# dataId, compared at the close) and the daemon killed at each state: after
# the remount the dataset is as it was, once, nothing is left in the spool,
# and the bytes written again end as a duplicate (the same bytes) or in
# quarantine with the reason (other bytes of that dataId)
"$BFS_BIN" synth "$T/other" --exposures 1 --detectors 1 --fits --payload 3000000 >/dev/null 2>&1 ||
    fail "synth of a raw of the same dataId with other bytes"
OTHER=$(find "$T/other/LSSTCam" -name '*.fits' | head -1)
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
A="$T/mnt/crash/again/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP"
mkdir -p "$A" && cp "$T/raw.fits" "$A/x.fits" || fail "the dataset to write again"
DS=$(find "$A" -type f -name '*.fits' ! -name x.fits | head -1)
unmount
dups() { grep -c '"run":"crash/again".*"outcome":"duplicate"\|"outcome":"duplicate".*"run":"crash/again"' "$T/repo/.butlerfs/events.jsonl"; }
for state in SEALED PREPARED PLACED REGISTERED ANNOUNCED; do
    before=$(dups)
    crash "$state" "$T/raw.fits" "$DS" || finish
    expect "its own name written again, killed after $state: still one dataset, its bytes unchanged" \
        test "$(count crash/again)" = 1 -a "$(cmp "$T/raw.fits" "$DS" 2>&1)" = ""
    expect "... nothing is left in the spool" test "$(left_in_spool)" = 0
    expect "... and the bytes written again ended as a duplicate (its event)" test "$(dups)" -gt "$before"
    unmount
done
for state in SEALED PREPARED; do
    crash "$state" "$OTHER" "$DS" || finish
    expect "its own name written with other bytes, killed after $state: the dataset unchanged" \
        test "$(count crash/again)" = 1 -a "$(cmp "$T/raw.fits" "$DS" 2>&1)" = ""
    expect "... nothing is left in the spool" test "$(left_in_spool)" = 0
    expect "... and the other bytes are in quarantine with the reason" python3 - "$T/repo/.butlerfs/quarantine" "$OTHER" <<'PY'
import glob, sys
want = open(sys.argv[2], "rb").read()
hits = [r for r in glob.glob(sys.argv[1] + "/*/*.reason")
        if "crash/again" in open(r).read() and open(r[:-len(".reason")] + ".data", "rb").read() == want]
assert hits, "no quarantined copy of the other bytes names crash/again"
PY
    unmount
done

# a kill inside a durable write leaves its half-made copy ("U.intent.tmp",
# or "U.data.merge" and "U.data.plain" of a Header Service merge) beside the real files: the
# next mount removes it, and keeps the bytes of an upload it belongs to
sp=$T/repo/.butlerfs/spool
echo '{"state":' >"$sp/0123456789abcdef0123456789abcdef.intent.tmp"
echo 'SIMPLE' >"$sp/0123456789abcdef0123456789abcdef.data.merge"
echo 'SIMPLE' >"$sp/0123456789abcdef0123456789abcdef.data.plain"
echo 'not ours' >"$sp/notes.txt"
mount_repo "$T/repo" "$T/mnt" rw || finish
expect "a remount removes the half-made copies an earlier daemon left in the spool" \
    test ! -e "$sp/0123456789abcdef0123456789abcdef.intent.tmp" -a ! -e "$sp/0123456789abcdef0123456789abcdef.data.merge" \
    -a ! -e "$sp/0123456789abcdef0123456789abcdef.data.plain"
expect "... and leaves a file it did not make" test -e "$sp/notes.txt"
expect "... and says so in its log" grep -q "an earlier daemon stopped writing" "$T"/daemon.*.log
rm -f "$sp/notes.txt"
unmount
expect_no_sanitizer
finish
