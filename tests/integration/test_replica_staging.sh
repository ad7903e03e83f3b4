#!/usr/bin/env bash
# test_replica_staging.sh - a replica from another site is staged like any
# ingested file (docs/ingest.md, "Staging"), and a replica removed before its
# staging links were all made stops being retried, its sidecar with it.
#
# The staging tree's day directory is blocked (a regular file where
# <tree>/<YYYY-MM-DD> belongs), so the pair's link fails: the sidecar's close
# is still 0 (registered), and the intents stay, the replica's and the
# sidecar's it holds.  The dataset is then removed in the mount
# (ingest.allow_remove): the next retry finds it gone and ends both intents,
# and status counts nothing not fully staged.  The sidecar's own intent
# ends at the registration, in both orders of the pair (it is not held
# until the links are made).  A second pair, the sidecar first, is staged
# by the retry once the tree is unblocked.  A third pair whose daemon is
# killed right after its registration, the tree blocked, is finished by
# the remount: the sidecar ends, the replica is staged once unblocked.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v python3 >/dev/null || skip "python3 not installed"
replica_fixture 3
mkdir -p "$T/oods"
printf 'ingest:\n  staging: [%s]\n  staging_retry: 1s\n  allow_remove: true\n' "$T/oods" >"$T/cfg.yaml"
day=$(date -u -d '-12 hours' +%F)
: >"$T/oods/$day" # a file where the day's directory belongs
intents() { find "$T/repo/.butlerfs/spool" -name '*.intent' 2>/dev/null | wc -l; }

mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
R=$T/mnt/.replicas
f=${FILES[0]}
expect "a replica and its sidecar whose staging link fails are ingested (close 0)" \
    bash -c "cp '$f' '$R/' && cp '$f.butler.json' '$R/'"
expect "... registered" test "$(q "$T/repo" "SELECT count(*) FROM dataset")" = 1
expect "... the event says the tree was not staged" python3 -c "
import json, sys
e = [json.loads(l) for l in open(sys.argv[1])][-1]
assert e['status'] == 0 and 'staging' in e, e
" "$T/repo/.butlerfs/events.jsonl"
expect "... the replica's intent stays for the retries, its sidecar's is gone (registered)" test "$(intents)" = 1
inmount=$(find "$T/mnt/LSSTCam/raw/all/raw" -type f | head -1)
expect "the replica's dataset is removed in the mount (ingest.allow_remove)" rm "$inmount"
for _ in $(seq 50); do
    [ "$(intents)" = 0 ] && break
    sleep 0.2
done
expect "the retry sees it removed and ends every intent of the pair" test "$(intents)" = 0
expect "... and the log says why" grep -q "was removed before all its staging links were made" "$BFS_LOG"
status_until "$T/mnt" "$T/s.json" '"staging_failed": *0'
expect "... and status counts nothing not fully staged" grep -q '"staging_failed": *0' "$T/s.json"

# the other order, the sidecar first: the replica's close is the pair's
f=${FILES[1]}
expect "the sidecar first, then its replica whose link fails: both closes 0" \
    bash -c "cp '$f.butler.json' '$R/' && cp '$f' '$R/'"
# the replica's writer is told at the registration; its worker then ends the sidecar
for _ in $(seq 50); do
    [ "$(intents)" = 1 ] && break
    sleep 0.2
done
expect "... the replica's intent stays, its sidecar's is gone (found $(intents))" test "$(intents)" = 1
rm "$T/oods/$day"
for _ in $(seq 50); do
    [ "$(intents)" = 0 ] && break
    sleep 0.2
done
stored=$(find "$T/repo/LSSTCam" -type f -name '*.fits' | head -1) # the first one's file was removed
expect "unblocked, the retry stages it: a hard link of the stored file" \
    test -n "$stored" -a "$(stat -c %i "$stored" 2>/dev/null)" = "$(stat -c %i "$T/oods/$day/$(basename "$stored")" 2>/dev/null)"
expect "... leaving no intent" test "$(intents)" = 0
expect "... and no quarantine" test -z "$(find "$T/repo/.butlerfs/quarantine" -type f 2>/dev/null)"

# a kill -9 right after a replica's registration, the tree blocked again:
# the remount finishes the sidecar (it does not wait for a partner that is
# registered already, nor is it quarantined after replica_wait), keeps the
# replica's intent while its link fails, and makes the link while mounted
# once the tree is unblocked
unmount
rm -rf "${T:?}/oods/$day" && : >"$T/oods/$day"
f=${FILES[2]}
BFS_INGEST_KILL_AT=REGISTERED mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
cp "$f.butler.json" "$R/" 2>/dev/null
cp "$f" "$R/" 2>/dev/null
for _ in $(seq 50); do kill -0 "$BFS_PID" 2>/dev/null || break; sleep 0.1; done
expect "a replica's daemon killed right after its registration (the test hook)" bash -c "! kill -0 $BFS_PID 2>/dev/null"
kill_daemon "$T/mnt"
expect "... leaves the intents of the pair" test "$(intents)" -ge 1
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
for _ in $(seq 50); do
    [ "$(intents)" = 1 ] && break
    sleep 0.2
done
expect "the remount with the tree still blocked keeps only the replica's intent (found $(intents))" test "$(intents)" = 1
expect "... its dataset registered once" \
    test "$(q "$T/repo" "SELECT count(*) FROM dataset")" = 2
expect "... and quarantines nothing" test -z "$(find "$T/repo/.butlerfs/quarantine" -type f 2>/dev/null)"
rm "$T/oods/$day"
for _ in $(seq 50); do
    [ "$(intents)" = 0 ] && break
    sleep 0.2
done
linked=$(find "$T/oods/$day" -type f 2>/dev/null)
expect "unblocked, the remounted daemon's retry stages the recovered replica (a hard link of a stored file), leaving no intent" \
    test "$(echo "$linked" | grep -c .)" = 1 -a -n "$(find "$T/repo/LSSTCam" -samefile "$linked" 2>/dev/null)" \
    -a "$(intents)" = 0
unmount
expect_no_sanitizer
finish
