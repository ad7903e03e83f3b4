#!/usr/bin/env bash
# test_pg_faults.sh - a mount whose registry is PostgreSQL under faults:
#   - the pool's server connections killed (pg_terminate_backend): the next
#     lookup reconnects by itself and succeeds;
#   - the server stopped (an outage): a lookup that needs the registry
#     fails with EIO within the bound (connect + statement timeout + slack),
#     with a log line, not a hang; what the kernel already holds (an entry
#     looked up before, a file's bytes) keeps working; the server started
#     again: lookups succeed without a remount;
#   - the server frozen (SIGSTOP: connections accepted, nothing answered):
#     a lookup fails within the bound, and works again after SIGCONT;
#   - before anything is mounted, one clear sentence each for: a wrong
#     password, an unreachable port, a missing namespace, a namespace that
#     holds no Butler registry; the password in none of them, and the
#     mountpoint left unmounted.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/pg.sh"
trap 'pg_thaw 2>/dev/null; pg_stop; bfs_cleanup' EXIT

skip_unless_fuse
pg_start 2>"$BFS_TMP/pg_start.err"
case $? in
    0) ;;
    77) skip "$(head -1 "$BFS_TMP/pg_start.err")" ;;
    *) cat "$BFS_TMP/pg_start.err" >&2; skip "PostgreSQL would not start here (its log is above)" ;;
esac
export PGPASSWORD=$PG_PASSWORD

# a small repository (3 exposures x 4 detectors, real bytes) copied into PostgreSQL
"$BFS_BIN" synth "$BFS_TMP/src" --exposures 3 --detectors 4 --payload 4096 >/dev/null || { fail "synth"; finish; }
"$BFS_BIN" copy-registry "$BFS_TMP/src" "$BFS_TMP/repo" --db "$PG_URL" --namespace faults >"$BFS_TMP/copy.out" 2>&1 ||
    { cat "$BFS_TMP/copy.out" >&2; fail "copy-registry"; finish; }
# tight bounds for the test: connect 2 s, statement 3 s
cat >"$BFS_TMP/bfs.yaml" <<EOF
registry:
  connect_timeout: 2s
  statement_timeout: 3s
  connections: 2
