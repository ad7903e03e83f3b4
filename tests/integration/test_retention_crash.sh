#!/usr/bin/env bash
# test_retention_crash.sh - the crash story of local retention
# (docs/transfer.md, "How it goes") when the mount's own thread is the one
# killed (kill -9 mid-pass, through the test hook BFS_RETENTION_KILL_AT),
# against nginx WebDAV on loopback.
#
# Killed after the registry transaction (step 2): the dataset is out of the
# registry, its file and done record still there, the journal lists it.  The
# next mount's first pass finishes the journal: file and done record gone,
# journal gone, the log says so.  Killed after the journal was written but
# before the transaction (step 1): the registry is as it was; the next
# mount's first pass finishes the journal without removing anything of the
# still registered dataset, then removes it as usual.  Either way nothing is
# left half-removed: no file without a record, no record without its file.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
skip_unless_fuse
trap 'nginx_stop; bfs_cleanup' EXIT
T=$BFS_TMP
archive_fixture 1
cat >"$T/bfs.yaml" <<YAML
transfer:
  destinations:
    - {name: dbb, uri: "$NGINX_URL/data/archive/", collections: ["LSSTCam/raw/*"]}
  backoff_max: 1s
  retention:
    - {collections: ["LSSTCam/*"], age: 0}
  retention_interval: 1s
YAML
J=$T/repo/.butlerfs/retention.journal
ndone() { find "$T/repo/.butlerfs/queue/done" -name '*.json' 2>/dev/null | wc -l; }
# wait_dead: the daemon killed itself (at most 30 s)
wait_dead() { for _ in $(seq 150); do kill -0 "$BFS_PID" 2>/dev/null || return 0; sleep 0.2; done; return 1; }

# ---- killed after step 2: out of the registry, file still there ----
BFS_RETENTION_KILL_AT=registry mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
mkdir -p "$T/mnt/LSSTCam/raw/all"
cp "${RAWS[0]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp 0"
expect "the daemon is killed in its first pass that removes (after the registry transaction)" wait_dead
kill_daemon
expect "... the dataset is out of the registry" test "$(repo_sql 'SELECT count(*) FROM dataset')" = 0
expect "... its file, done record and the journal are still there" \
    test "$(repo_raws) $(ndone) $([ -s "$J" ] && echo journal)" = "1 1 journal"
id=$(basename "$(find "$T/repo/.butlerfs/queue/done" -name '*.json' | head -1)" | cut -d. -f1)
file=$(basename "$(find "$T/repo/LSSTCam" -name '*.fits' | head -1)")
expect "... the journal lists it: its id (that of its done record) and its file" \
    bash -c "test -n '$id' && grep -q '\"$id\"' '$J' && grep -q '$file' '$J'"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
for _ in $(seq 100); do [ ! -e "$J" ] && [ "$(repo_raws)" = 0 ] && break; sleep 0.2; done
expect "the next mount's first pass finishes the journal: file, done record and journal gone" \
    test "$(repo_raws) $(ndone) $([ -e "$J" ] && echo journal)" = "0 0 "
for _ in $(seq 25); do grep -q "of an interrupted run's journal" "$BFS_LOG" && break; sleep 0.2; done
expect "... and says so" grep -q "retention: removed 0 datasets .*; finished 1 of an interrupted run's journal" \
    "$BFS_LOG"
unmount
check_log

# ---- killed after step 1: the journal lists a dataset still registered ----
BFS_RETENTION_KILL_AT=journal mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
cp "${RAWS[1]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp 1"
expect "the daemon is killed in its first pass that removes (after the journal, before the transaction)" wait_dead
kill_daemon
expect "... the registry is as it was: the dataset, its file and done record, and the journal" \
    test "$(repo_sql 'SELECT count(*) FROM dataset') $(repo_raws) $(ndone) $([ -s "$J" ] && echo journal)" = "1 1 1 journal"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
for _ in $(seq 100); do [ ! -e "$J" ] && [ "$(repo_raws)" = 0 ] && break; sleep 0.2; done
expect "the next mount's first pass finishes the journal, then removes the dataset as usual" \
    test "$(repo_sql 'SELECT count(*) FROM dataset') $(repo_raws) $(ndone) $([ -e "$J" ] && echo journal)" = "0 0 0 "
for _ in $(seq 25); do grep -q 'retention: removed 1 dataset ' "$BFS_LOG" && break; sleep 0.2; done
expect "... (the log line of a removal, nothing finished from the journal)" \
    bash -c "grep -q 'retention: removed 1 dataset ' '$BFS_LOG' && ! grep -q 'interrupted run' '$BFS_LOG'"
unmount
check_log
expect_no_sanitizer
finish
