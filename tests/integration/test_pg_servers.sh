#!/usr/bin/env bash
# test_pg_servers.sh - the PostgreSQL and PgBouncer test servers of pg.sh
# (issue 13's harness) work as the registry engine's tests will need them.
#
# Checks: the server runs as an unprivileged user and listens on 127.0.0.1
# and its socket; the test role authenticates with its password (SCRAM) and
# a wrong one is refused; through PgBouncer (transaction pooling) a
# transaction commits and one rolled back leaves nothing; btree_gist is
# installed; an exclusion constraint on (collection, dataset type, int8range
# timespan) as daf_butler's calibration tables have is created and refuses
# overlapping validity ranges; SET LOCAL statement_timeout bounds a read-only
# transaction and ends with it; stopping leaves no process behind.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
trap 'pg_stop; bfs_cleanup' EXIT

t0=$(date +%s%N)
# the server's user must reach its dir: not under $BFS_TMP (0700, ours)
pg_test_servers bouncer
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "servers up in ${ms} ms (PostgreSQL :$PG_PORT, PgBouncer :$PGBOUNCER_PORT)"
expect "both servers start within 10 s" [ "$ms" -lt 10000 ]

# psql through PgBouncer as the test role, password from the environment
# (never on a command line)
bouncer()
{
    PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 "$PG_BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=$PGBOUNCER_PORT user=$PG_USER dbname=$PG_DATABASE" "$@"
}
direct()
{
    PGCONNECT_TIMEOUT=5 "$PG_BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=$PG_PORT user=$PG_USER dbname=$PG_DATABASE" "$@"
}

# --- the server ---
owner=$(ps -o user= -p "$PG_PID" | tr -d ' ')
if [ "$(id -u)" -eq 0 ]; then
    expect "as root, the server runs as an unprivileged user ($owner)" [ "$owner" != root ]
else
    expect "the server runs as the caller" [ "$owner" = "$(id -un)" ]
fi
expect "the server listens on its unix socket" [ -S "$PG_SOCKET_DIR/.s.PGSQL.$PG_PORT" ]
out=$(PGPASSWORD=$PG_PASSWORD direct -c "SELECT current_user || ' ' || inet_server_addr()" 2>&1)
expect "the test role logs in over TCP with its password ($out)" [ "$out" = "$PG_USER 127.0.0.1/32" ]
out=$(PGPASSWORD=wrong-$PG_PASSWORD direct -c "SELECT 1" 2>&1)
case $out in
    *"password authentication failed"*) pass "a wrong password is refused by the server" ;;
    *) fail "a wrong password: $out" ;;
esac
out=$(PGPASSWORD="" PGPASSFILE=/dev/null direct -w -c "SELECT 1" 2>&1)
case $out in
    *"no password supplied"*|*"password authentication failed"*) pass "TCP without a password is refused" ;;
    *) fail "TCP without a password: $out" ;;
esac
method=$(pg_psql -A -t -c "SELECT substr(rolpassword, 1, 13) FROM pg_authid WHERE rolname = '$PG_USER'")
expect "the password is stored as SCRAM ($method)" [ "$method" = "SCRAM-SHA-256" ]

# --- through PgBouncer ---
out=$(bouncer -c "SELECT 1" 2>&1)
expect "PgBouncer answers ($out)" [ "$out" = 1 ]
out=$(PGPASSWORD=wrong-$PG_PASSWORD "$PG_BINDIR/psql" -X -q -A -t -w \
    "host=127.0.0.1 port=$PGBOUNCER_PORT user=$PG_USER dbname=$PG_DATABASE" -c "SELECT 1" 2>&1)
case $out in
    *"password authentication failed"*|*"SASL authentication failed"*) pass "PgBouncer refuses a wrong password" ;;
    *) fail "PgBouncer and a wrong password: $out" ;;
esac
mode=$(grep -E '^pool_mode' "$PGBOUNCER_DIR/pgbouncer.ini")
expect "PgBouncer pools by transaction ($mode)" [ "$mode" = "pool_mode = transaction" ]

out=$(bouncer 2>&1 <<'EOF'
CREATE TABLE t (id int PRIMARY KEY, v text);
BEGIN;
INSERT INTO t VALUES (1, 'one'), (2, 'two');
COMMIT;
BEGIN;
INSERT INTO t VALUES (3, 'three');
ROLLBACK;
SELECT string_agg(v, ',' ORDER BY id) FROM t;
EOF
)
expect "a transaction commits through PgBouncer and a rollback leaves nothing ($out)" [ "$out" = "one,two" ]

out=$(bouncer -c "SELECT extversion FROM pg_extension WHERE extname = 'btree_gist'" 2>&1)
expect "btree_gist is installed in the test database ($out)" [ -n "$out" ]

# daf_butler's calibration association table: one dataset of a type per
# collection and data ID at any time, as an exclusion constraint over the
# validity range (int8range of TAI nanoseconds)
out=$(bouncer 2>&1 <<'EOF'
CREATE TABLE calib (
    dataset_type_id bigint NOT NULL,
    collection_id bigint NOT NULL,
    dataset_id uuid NOT NULL,
    detector bigint NOT NULL,
    validity int8range NOT NULL,
    EXCLUDE USING gist (dataset_type_id WITH =, collection_id WITH =, detector WITH =,
                        validity WITH &&)
);
INSERT INTO calib VALUES (1, 1, gen_random_uuid(), 10, int8range(0, 100));
INSERT INTO calib VALUES (1, 1, gen_random_uuid(), 10, int8range(100, 200));
INSERT INTO calib VALUES (1, 1, gen_random_uuid(), 11, int8range(50, 150));
SELECT count(*) FROM calib;
EOF
)
expect "an exclusion constraint with btree_gist over int8range is created ($out)" [ "$out" = 3 ]
out=$(bouncer -c "INSERT INTO calib VALUES (1, 1, gen_random_uuid(), 10, int8range(150, 250))" 2>&1)
case $out in
    *"conflicting key value violates exclusion constraint"*) pass "an overlapping validity range is refused" ;;
    *) fail "an overlapping validity range: $out" ;;
esac

# (transaction pooling gives no session state across transactions, so the
# engine sets its limits inside each one:)
# a statement timeout set with SET LOCAL stays inside its transaction
out=$(bouncer 2>&1 <<'EOF'
BEGIN READ ONLY;
SET LOCAL statement_timeout = '100ms';
SELECT pg_sleep(1);
ROLLBACK;
EOF
)
case $out in
    *"canceling statement due to statement timeout"*) pass "SET LOCAL statement_timeout bounds a read-only transaction" ;;
    *) fail "statement_timeout: $out" ;;
esac
out=$(bouncer -c "SELECT current_setting('statement_timeout')" 2>&1)
expect "and does not outlive it ($out)" [ "$out" = 0 ]
out=$(bouncer 2>&1 <<'EOF'
BEGIN READ ONLY;
INSERT INTO t VALUES (9, 'nine');
EOF
)
case $out in
    *"read-only transaction"*) pass "a read-only transaction refuses a write" ;;
    *) fail "write in a read-only transaction: $out" ;;
esac

# --- stopping ---
children=$(ps -o pid= --ppid "$PG_PID" | tr -d ' ' | tr '\n' ' ')
bouncer_pid=$PGBOUNCER_PID
server_pid=$PG_PID
dir=$PG_DIR
t0=$(date +%s%N)
pg_stop
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
left=""
for p in $server_pid $bouncer_pid $children; do
    kill -0 "$p" 2>/dev/null && left+=" $p($(ps -o comm= -p "$p"))"
done
expect "stopping (${ms} ms) leaves no process behind (server, PgBouncer, ${children:-no }children)${left:+: left$left}" [ -z "$left" ]
expect "and removes the temp dir" [ ! -e "$dir" ]
pg_stop
pass "pg_stop again is harmless"

finish
