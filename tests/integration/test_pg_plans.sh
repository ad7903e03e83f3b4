#!/usr/bin/env bash
# test_pg_plans.sh - the plans PostgreSQL picks for a mount's listing
# queries read no dataset_tags_* table from end to end.  bench/explain_pg.sh
# runs its workload (the instrument level, one detector, one exposure, 200
# dataset directories, ls -lR of one detector) on a registry of 20 000
# datasets in one RUN, the case where the statistics say every row
# matches; no statement shape may seq-scan a tags table (a probe that the
# planner expected to meet a row at once, and that read the whole table
# when there was none).  Not checked: the file listing of one detector or
# exposure may hash `dataset` or the records table here, the planner's
# break-even choice for an answer that is 1/189 of the table
# (docs/performance.md, bench/explain_pg.sh).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/pg.sh"

skip_unless_fuse
bindir=$(_pg_bindir)
[ -n "$bindir" ] || skip "PostgreSQL is not installed"
[ -f "$(dirname "$bindir")/lib/auto_explain.so" ] || skip "PostgreSQL's auto_explain is not installed"
command -v sqlite3 >/dev/null 2>&1 || skip "the sqlite3 command is not installed"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"

out=$BFS_TMP/explain.out
# explain_pg.sh works in a new dir under /var/tmp (the server's user must
# reach it) and removes it when done
BFS_BIN=$BFS_BIN PG_BINDIR=$bindir \
    bash "$BFS_SRC/bench/explain_pg.sh" --datasets 20000 >"$out" 2>&1
rc=$?
if [ $rc -ne 0 ] || ! grep -q "statement shapes" "$out"; then
    cat "$out" >&2
    fail "bench/explain_pg.sh ran (exit $rc)"
    finish
fi
scans=$(grep -v '^synth' "$out" | grep -A1 -E 'SEQ SCAN.*dataset_tags_' || true)
if [ -n "$scans" ]; then
    echo "$scans" >&2
    fail "statement shapes with a sequential scan of a tags table (above)"
else
    pass "no statement shape scans a tags table ($(grep -c 'SEQ SCAN' "$out") shapes scan another big table)"
fi
finish
