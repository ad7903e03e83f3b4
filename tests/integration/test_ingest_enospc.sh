#!/usr/bin/env bash
# test_ingest_enospc.sh - a full disk (issue 11, "Bad input and crashes"):
# the writer gets ENOSPC and no registry row is written; the bytes that did
# arrive are quarantined, never registered as a whole file.
#
# The repository lives on a small tmpfs (needs root; skipped otherwise).
# Checks: cp of a file larger than the free space fails with "No space left
# on device"; no dataset row is written; the partial bytes are in
# quarantine with a reason naming the failed write; once space is free
# again, the same cp succeeds and registers the dataset.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
[ "$(id -u)" = 0 ] || skip "mounting a small tmpfs needs root"
T=$BFS_TMP
mkdir -p "$T/small" "$T/mnt"
mount -t tmpfs -o size=24m tmpfs "$T/small" 2>/dev/null || skip "cannot mount a tmpfs here"
trap 'fusermount3 -uz "$T/mnt" 2>/dev/null; umount -l "$T/small" 2>/dev/null; bfs_cleanup' EXIT
"$BFS_BIN" synth "$T/small/repo" --exposures 1 --detectors 2 >/dev/null 2>&1 || fail "synth"
DB=$T/small/repo/gen3.sqlite3
EXP=$(sqlite3 "$DB" "SELECT exposure FROM dataset_tags_00000001 LIMIT 1")
count() { sqlite3 "$DB" "SELECT count(*) FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name = 'full'"; }
head -c $((16 << 20)) /dev/urandom >"$T/ballast"
head -c $((10 << 20)) /dev/urandom >"$T/big.dat"

mount_repo "$T/small/repo" "$T/mnt" rw || finish
cp "$T/ballast" "$T/small/ballast" # fill the disk: what is left is less than big.dat
D="$T/mnt/full/raw/instrument=LSSTCam/detector=0/exposure=$EXP"
mkdir -p "$D"
cp "$T/big.dat" "$D/big.dat" 2>"$T/err.txt"
rc=$?
expect "cp into a full disk fails" test "$rc" -ne 0
expect "... with ENOSPC" grep -q "No space left on device" "$T/err.txt"
expect "no registry row is written" test "$(count)" = 0
expect "the partial bytes are in quarantine, with the reason" \
    grep -rqs "a write into it failed (No space left on device)" "$T/small/repo/.butlerfs/quarantine"
rm -f "$T/small/ballast" "$T/small/repo/.butlerfs/quarantine"/*/*.data
expect "with space again, the same cp succeeds" cp "$T/big.dat" "$D/big.dat"
expect "... and registers the dataset" test "$(count)" = 1
unmount
expect_no_sanitizer
finish
