#!/usr/bin/env bash
# test_pg_equivalence.sh - every fixture repository ($BFS_SHARED/fixtures/
# repos) copied into PostgreSQL with `butlerfs copy-registry`, then mounted
# from both engines: the two trees are the same, every path, type, size
# and byte (a file whose datastore file is missing fails on both sides).
# Half the repositories are mounted through PgBouncer (transaction pooling),
# half straight to the server.  Also: the copy has daf_butler's PostgreSQL
# form (uuid ids, an int8range timespan, one exclusion constraint per
# calibration table); a second copy into the same namespace is refused in
# one sentence and changes nothing; butler.yaml, the logs and `ps` never
# hold the password; `init --db` makes an empty repository that mounts.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/pg.sh"
trap 'pg_stop; bfs_cleanup' EXIT

skip_unless_fuse
repos_dir=$BFS_SHARED/fixtures/repos
[ -d "$repos_dir" ] || skip "no fixture repositories at $repos_dir"
pg_test_servers bouncer
# libpq's own convention; the password is never on a command line
export PGPASSWORD=$PG_PASSWORD

i=0
for repo in "$repos_dir"/*/; do
    repo=${repo%/}
    name=$(basename "$repo")
    [ -f "$repo/butler.yaml" ] || continue
    i=$((i + 1))
    ns=fx_$(echo "$name" | tr -c 'a-zA-Z0-9\n' _ | tr 'A-Z' 'a-z')
    url=$PG_URL via=direct
    if [ $((i % 2)) -eq 0 ]; then url=$PGBOUNCER_URL via=PgBouncer; fi
    dst=$BFS_TMP/$name.pg
    if ! "$BFS_BIN" copy-registry "$repo" "$dst" --db "$url" --namespace "$ns" >"$BFS_TMP/$name.copy" 2>&1; then
        cat "$BFS_TMP/$name.copy" >&2
        fail "$name: copy-registry into $ns ($via) failed"
        continue
    fi
    pass "$name: copied into namespace $ns ($via)"
    expect "$name: butler.yaml holds no password" bash -c "! grep -qF -- '$PG_PASSWORD' '$dst/butler.yaml'"
    expect "$name: copy output holds no password" bash -c "! grep -qF -- '$PG_PASSWORD' '$BFS_TMP/$name.copy'"

    # daf_butler's PostgreSQL form
    n_uuid=$(pg_psql -At -c "SELECT count(*) FROM information_schema.columns WHERE table_schema = '$ns' AND data_type = 'uuid'")
    n_span=$(pg_psql -At -c "SELECT count(*) FROM information_schema.columns WHERE table_schema = '$ns' AND column_name = 'timespan' AND udt_name = 'int8range'")
    n_excl=$(pg_psql -At -c "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = '$ns' AND c.contype = 'x'")
    n_calibs=$(sqlite3 "$repo/gen3.sqlite3" "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'dataset_calibs_%'" 2>/dev/null || echo "?")
    n_rows_sqlite=$(sqlite3 "$repo/gen3.sqlite3" "SELECT count(*) FROM dataset" 2>/dev/null || echo "?")
    n_rows_pg=$(pg_psql -At -c "SELECT count(*) FROM \"$ns\".dataset")
    expect "$name: dataset ids are uuid ($n_uuid columns)" [ "${n_uuid:-0}" -ge 3 ]
    expect "$name: timespans are int8range ($n_span columns)" [ "${n_span:-0}" -ge 2 ]
    expect "$name: one exclusion constraint per calibration table ($n_excl of $n_calibs)" [ "$n_excl" = "$n_calibs" ]
    expect "$name: every dataset row copied ($n_rows_pg of $n_rows_sqlite)" [ "$n_rows_pg" = "$n_rows_sqlite" ]

    mnt_s=$BFS_TMP/$name.mnt-sqlite mnt_p=$BFS_TMP/$name.mnt-pg
    mkdir -p "$mnt_s" "$mnt_p"
    mount_repo "$repo" "$mnt_s" || continue
    log_s=$BFS_LOG
    mount_repo "$dst" "$mnt_p" || { unmount "$mnt_s"; continue; }
    log_p=$BFS_LOG
    expect_same_trees "$name: the PostgreSQL mount ($via) equals the SQLite mount" "$mnt_s" "$mnt_p" \
        "$BFS_TMP/$name.tree"
    expect "$name: the tree is not empty" [ "$TREE_FILES" -gt 0 ]
    check_log
    BFS_PID=""
    unmount "$mnt_s"
    expect "$name: the mount's log holds no password" bash -c "! grep -qF -- '$PG_PASSWORD' '$log_p'"
    [ -n "$log_s" ]

    # a second copy into the same namespace: one sentence, nothing changed
    if out=$("$BFS_BIN" copy-registry "$repo" "$BFS_TMP/$name.again" --db "$url" --namespace "$ns" 2>&1); then
        fail "$name: a second copy into $ns succeeded"
    else
        expect "$name: a second copy is refused ('$out')" bash -c "grep -q 'already holds a Butler registry' <<<'$out'"
    fi
    n_after=$(pg_psql -At -c "SELECT count(*) FROM \"$ns\".dataset")
    expect "$name: the refused copy changed nothing" [ "$n_after" = "$n_rows_pg" ]
done
expect "at least one fixture repository was compared" [ "$i" -gt 0 ]

# init --db: an empty repository in PostgreSQL that mounts (and holds the
# same tables as init's SQLite one)
if "$BFS_BIN" init --db "$PGBOUNCER_URL" --namespace fresh "$BFS_TMP/fresh" >"$BFS_TMP/init.out" 2>&1; then
    pass "init --db made an empty repository"
    "$BFS_BIN" init "$BFS_TMP/fresh-sqlite" >/dev/null
    t_pg=$(pg_psql -At -c "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'fresh'")
    t_sq=$(sqlite3 "$BFS_TMP/fresh-sqlite/gen3.sqlite3" "SELECT count(*) FROM sqlite_master WHERE type = 'table'")
    expect "init --db: the same tables as init ($t_pg, $t_sq)" [ "$t_pg" = "$t_sq" ]
    mkdir -p "$BFS_TMP/fresh.mnt"
    if mount_repo "$BFS_TMP/fresh" "$BFS_TMP/fresh.mnt"; then
        expect "init --db: the empty repository mounts and lists nothing" \
            bash -c "[ -z \"\$(ls -A '$BFS_TMP/fresh.mnt')\" ]"
        check_log
    fi
else
    cat "$BFS_TMP/init.out" >&2
    fail "init --db failed"
fi
out=$("$BFS_BIN" init --db "$PG_URL" --namespace fresh "$BFS_TMP/fresh2" 2>&1)
expect "init --db into a used namespace is refused ('$out')" bash -c "grep -q 'already holds' <<<'$out'"
finish
