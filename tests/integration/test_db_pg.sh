#!/usr/bin/env bash
# test_db_pg.sh - the PostgreSQL engine (registry/db_pg.c) against real
# servers: runs tests/unit/test_db_pg.c (built as test_db_pg) twice, once
# connecting to PostgreSQL directly and once through PgBouncer in
# transaction pooling mode, both started by pg.sh.  The C test stops,
# freezes and restarts the server itself through pg.sh's pg_down/pg_up/
# pg_freeze/pg_thaw; between the runs the server is made to run again.
# Skips (77) where the servers cannot start, as test_pg_servers does.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
trap 'pg_thaw 2>/dev/null; pg_stop; bfs_cleanup' EXIT

bin=${BFS_TEST_DB_PG:-$BFS_SRC/build/tests/test_db_pg}
[ -x "$bin" ] || skip "test_db_pg was not built ($bin)"

pg_test_servers bouncer
export BFS_PG_SH=$BFS_LIB_DIR/pg.sh

for mode in direct bouncer; do
    port=$PG_PORT
    [ $mode = bouncer ] && port=$PGBOUNCER_PORT
    out=$BFS_TMP/test_db_pg.$mode.out
    BFS_PG_MODE=$mode BFS_PG_TEST_PORT=$port "$bin" >"$out" 2>&1
    rc=$?
    cat "$out"
    if [ $rc -eq 0 ] && ! grep -q "Sanitizer\|runtime error:" "$out"; then
        pass "test_db_pg, $mode"
    else
        fail "test_db_pg, $mode (exit $rc)"
    fi
    # whatever the C test left: the server running, not frozen
    pg_thaw 2>/dev/null
    pg_up || { fail "the server did not run again after the $mode run"; break; }
done
grep -h "LATENCY" "$BFS_TMP"/test_db_pg.*.out
finish
