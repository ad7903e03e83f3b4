#!/usr/bin/env bash
# test_ingest_randomkill.sh - kill -9 of an -o rw daemon at random moments
# while cp writes a 64 MiB file into it, then a clean remount.
#
# Checks, after every kill: the spool is empty (every upload was finished
# by the remount), the run holds at most one dataset, a registered dataset's
# bytes read back equal to what was written, and no file sits in the run's
# datastore directory without its registry row (nothing half-done).
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
T=$BFS_TMP
ROUNDS=${BFS_KILL_ROUNDS:-12}
"$BFS_BIN" synth "$T/repo" --exposures 1 --detectors 1 >/dev/null 2>&1 || fail "synth"
mkdir -p "$T/mnt"
DB=$T/repo/gen3.sqlite3
R=$(sqlite3 "$DB" "SELECT exposure || ' ' || detector FROM dataset_tags_00000001 LIMIT 1")
EXP=${R% *}; DET=${R#* }
head -c $((64 << 20)) /dev/urandom >"$T/big.dat"
count() { sqlite3 "$DB" "SELECT count(*) FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name = '$1'" 2>/dev/null || echo 0; }

bad=0 registered=0
for i in $(seq "$ROUNDS"); do
    mount_repo "$T/repo" "$T/mnt" rw || finish
    d="$T/mnt/rk/$i/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP"
    mkdir -p "$d" || fail "round $i: mkdir -p"
    cp "$T/big.dat" "$d/big.dat" 2>/dev/null &
    cpid=$!
    sleep "0.$(printf "%03d" $((RANDOM % 120)))"  # a cp of 64 MiB takes ~0.1 s here
    kill -9 "$BFS_PID"
    wait "$cpid" 2>/dev/null
    fusermount3 -u "$T/mnt" 2>/dev/null || fusermount3 -uz "$T/mnt" 2>/dev/null
    mount_repo "$T/repo" "$T/mnt" rw || finish
    n=$(count "rk/$i")
    files=$(find "$T/repo/rk/$i" -type f 2>/dev/null | wc -l)
    spool=$(find "$T/repo/.butlerfs/spool" -type f | wc -l)
    ok=1
    [ "$spool" = 0 ] || { echo "round $i: $spool files left in the spool"; ok=0; }
    [ "$n" -le 1 ] || { echo "round $i: $n datasets"; ok=0; }
    [ "$files" = "$n" ] || { echo "round $i: $files datastore files, $n registered"; ok=0; }
    if [ "$n" = 1 ]; then
        registered=$((registered + 1))
        cmp -s "$T/big.dat" "$(find "$T/mnt/rk/$i/raw" -type f | head -1)" || { echo "round $i: bytes differ"; ok=0; }
    fi
    [ "$ok" = 1 ] || bad=$((bad + 1))
    unmount
done
echo "$ROUNDS kills: $registered rounds registered the file, $((ROUNDS - registered)) quarantined it or never began"
expect "after $ROUNDS random kills nothing is half-done: spool empty, at most one dataset, no unregistered file, bytes equal" \
    test "$bad" = 0
expect "some files were handed over before the kill and finished by the remount, or quarantined" \
    test "$(find "$T/repo/.butlerfs/quarantine" -name '*.reason' 2>/dev/null | wc -l)" -gt 0 -o "$registered" -gt 0
expect_no_sanitizer
finish
