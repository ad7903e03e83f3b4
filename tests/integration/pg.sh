# shellcheck shell=bash
# pg.sh - a throw-away PostgreSQL server, and PgBouncer in front of it, on
# loopback for tests of the PostgreSQL registry engine (issue 13).  Sourced.
#
#     . "$BFS_SRC/tests/integration/pg.sh"
#     trap 'pgbouncer_stop; pg_stop' EXIT
#     pg_start || skip "..."            # 77: not installed, 1: would not start
#     pgbouncer_start || skip "..."
#     PGPASSWORD=$PG_PASSWORD psql "host=127.0.0.1 port=$PGBOUNCER_PORT user=$PG_USER dbname=$PG_DATABASE"
#
# pg_start [DIR]  initdb a cluster in a new temp dir (under DIR, else TMPDIR)
#                 and start the server in the foreground of a background job:
#                 TCP on 127.0.0.1:$PG_PORT (a free port, retried when taken)
#                 and a unix socket in $PG_SOCKET_DIR.  Makes the role $PG_USER
#                 (LOGIN, password $PG_PASSWORD: random, stored as SCRAM) and
#                 the database $PG_DATABASE owned by it, with the btree_gist
#                 extension (daf_butler's calibration tables need it for their
#                 exclusion constraints).  TCP clients authenticate with
#                 scram-sha-256; the unix socket (in a private dir) trusts,
#                 for the test's own set-up as the superuser $PG_SUPERUSER.
#                 Exports PG_BINDIR PG_DIR PG_PID PG_PORT PG_HOST PG_SOCKET_DIR
#                 PG_SUPERUSER PG_USER PG_PASSWORD PG_DATABASE PG_URL (the URL
#                 without the password: postgresql://butler@127.0.0.1:PORT/butler).
#                 Returns 77 when the binaries are missing (PG_BINDIR, default
#                 the newest /usr/lib/postgresql/*/bin) or no unprivileged user
#                 can run them, 1 when the server would not start (its log is
#                 printed).
# pg_start_or_skip [bouncer]   for a test sourced with lib.sh: pg_start,
#                 skipping the test (77) when the server cannot run here;
#                 with "bouncer" also pgbouncer_start, failing the test when it
#                 would not start.
# pg_psql ARGS    psql as the superuser over the socket, ON_ERROR_STOP set,
#                 to the test database unless ARGS name another (-d).
# pgbouncer_start PgBouncer in transaction pooling mode on 127.0.0.1:
#                 $PGBOUNCER_PORT in front of the server (over TCP, so SCRAM
#                 runs on both legs), auth_type scram-sha-256 with an auth file
#                 holding $PG_USER and $PG_PASSWORD, database $PG_DATABASE.
#                 Pool size PGBOUNCER_POOL_SIZE (default 20).  Exports
#                 PGBOUNCER_PID PGBOUNCER_PORT PGBOUNCER_DIR PGBOUNCER_URL.
#                 Returns 77 when pgbouncer is not installed, 1 when it would
#                 not start.
# pg_down         stop the server (fast shutdown) and keep its data dir,
#                 port and PgBouncer: an outage.  pg_up starts it again on
#                 the same port (PG_PID is the new server).  Both work from
#                 a child shell too (a C test: bash -c '. pg.sh; pg_down'),
#                 given the exported PG_* variables and PG_ADOPT=1: the server's pid is
#                 read from its postmaster.pid.
# pg_freeze, pg_thaw   SIGSTOP / SIGCONT the server and all its processes
#                 (postmaster and backends, by pid): a server that accepts
#                 connections but never answers.
# pgbouncer_stop, pg_stop   stop by process id (SIGTERM, then SIGKILL after
#                 5 s), wait, remove the temp dir; idempotent.  pg_stop also
#                 stops PgBouncer.
#
# PostgreSQL and PgBouncer both refuse to run as root.  As root the server
# runs as the user PG_RUN_USER (default postgres, which Debian's package
# makes, else nobody) through setpriv, which execs in place so $! is the
# server's own pid; the temp dir is chown'ed to that user.  As anyone else
# they run as the caller.  Set PG_OWNER_PID to have a watchdog stop both
# when that process dies (for C tests, which cannot run a shell trap when
# they crash).  Facts this relies on: ../shared/docs/test-servers.md.

# PG_ADOPT=1: a child shell of the test that started the servers (pg_down,
# pg_up, pg_freeze, pg_thaw from a C test) keeps the exported PG_*; else
# nothing inherited is taken for ours (pg_stop removes PG_DIR).
if [ "${PG_ADOPT:-}" != 1 ]; then
    PG_PID=""
    PG_DIR=""
    PGBOUNCER_PID=""
fi
PG_WATCHDOG_PID=""

# The directory of the newest installed PostgreSQL's binaries, or nothing.
_pg_bindir()
{
    if [ -n "${PG_BINDIR:-}" ]; then
        echo "$PG_BINDIR"
        return
    fi
    local d best="" v bestv=0
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/postgres" ] || continue
        v=$(basename "$(dirname "$d")")
        case $v in *[!0-9]*) continue ;; esac
        [ "$v" -gt "$bestv" ] && { bestv=$v; best=$d; }
    done
    echo "$best"
}

# _pg_as CMD...: run CMD as the server's user (setpriv execs: no extra
# process).
_pg_as()
{
    if [ -n "${_PG_SETPRIV:-}" ]; then
        setpriv --reuid="$_PG_UID" --regid="$_PG_GID" --clear-groups -- "$@"
    else
        "$@"
    fi
}

# _pg_exec CMD...: the same, replacing the calling (sub)shell, so that
# "_pg_exec CMD &" leaves $! the pid of CMD itself.
_pg_exec()
{
    if [ -n "${_PG_SETPRIV:-}" ]; then
        exec setpriv --reuid="$_PG_UID" --regid="$_PG_GID" --clear-groups -- "$@"
    else
        exec "$@"
    fi
}

# A port nobody listens on now (a later bind may still lose the race: the
# callers retry on "Address already in use").
_pg_free_port()
{
    local port
    for _ in $(seq 50); do
        port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return 0; }
    done
    return 1
}

# _pg_wait_gone PID SECONDS: true once PID is gone (reaped if our child).
_pg_wait_gone()
{
    local pid=$1 n=$(( $2 * 20 ))
    for _ in $(seq "$n"); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.05
    done
    return 1
}

# _pg_kill PID: SIGTERM, then SIGKILL after 5 s; wait for it.
_pg_kill()
{
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    _pg_wait_gone "$pid" 5 && return 0
    kill -KILL "$pid" 2>/dev/null
    _pg_wait_gone "$pid" 5
}

# _pg_alive PID: the process runs (exists and is no zombie).
_pg_alive()
{
    kill -0 "$1" 2>/dev/null || return 1
    case $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) in
        Z|X) return 1 ;;
    esac
    return 0
}

# The running server's pid: from its postmaster.pid (pg_up may have started
# it from another shell), else PG_PID; nothing when none runs.
_pg_server_pid()
{
    local pid=""
    [ -n "${PG_DIR:-}" ] && [ -r "$PG_DIR/data/postmaster.pid" ] && pid=$(head -1 "$PG_DIR/data/postmaster.pid")
    if [ -n "$pid" ] && _pg_alive "$pid"; then
        echo "$pid"
    elif [ -n "${PG_PID:-}" ] && _pg_alive "$PG_PID"; then
        echo "$PG_PID"
    fi
}

# _pg_launch PORT LOG: start the server in the background on PORT; sets
# PG_PID.
_pg_launch()
{
    # durability is not what these tests are about: no fsync
    _pg_exec "$PG_BINDIR/postgres" -D "$PG_DIR/data" -p "$1" -k "$PG_SOCKET_DIR" \
        -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
        -c full_page_writes=off -c max_connections="${PG_MAX_CONNECTIONS:-100}" \
        -c shared_buffers=32MB -c password_encryption=scram-sha-256 \
        </dev/null >>"$2" 2>&1 &
    PG_PID=$!
}

pg_down()
{
    local pid
    pid=$(_pg_server_pid)
    [ -n "$pid" ] || return 0
    kill -CONT "$pid" $(ps -o pid= --ppid "$pid") 2>/dev/null
    kill -INT "$pid" 2>/dev/null
    for _ in $(seq 200); do
        _pg_alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.05
    done
    echo "pg_down: the server ($pid) did not stop within 10 s" >&2
    return 1
}

pg_up()
{
    [ -n "$(_pg_server_pid)" ] && return 0
    _pg_pick_user || return $?
    local log=$PG_DIR/postgres.log
    _pg_launch "$PG_PORT" "$log"
    for _ in $(seq 200); do
        _pg_alive "$PG_PID" || break
        if "$PG_BINDIR/pg_isready" -q -h "$PG_SOCKET_DIR" -p "$PG_PORT" -t 1 2>/dev/null; then
            export PG_PID
            return 0
        fi
        sleep 0.05
    done
    echo "pg_up: the server did not start again; its log:" >&2
    tail -20 "$log" >&2
    return 1
}

# The server's processes: the postmaster and its children.
_pg_all_pids()
{
    local pid
    pid=$(_pg_server_pid)
    [ -n "$pid" ] && echo "$pid" $(ps -o pid= --ppid "$pid")
}

pg_freeze()
{
    local pids
    pids=$(_pg_all_pids)
    [ -n "$pids" ] && kill -STOP $pids
}

pg_thaw()
{
    local pids
    pids=$(_pg_all_pids)
    [ -n "$pids" ] && kill -CONT $pids
}

pg_start_or_skip()
{
    pg_start 2>"$BFS_TMP/pg_start.err"
    case $? in
        0) ;;
        77) skip "$(head -1 "$BFS_TMP/pg_start.err")" ;;
        *) cat "$BFS_TMP/pg_start.err" >&2; skip "PostgreSQL would not start here (its log is above)" ;;
    esac
    [ "${1:-}" = bouncer ] || return 0
    pgbouncer_start 2>"$BFS_TMP/pgbouncer_start.err" || {
        cat "$BFS_TMP/pgbouncer_start.err" >&2
        fail "PgBouncer would not start"
        finish
    }
}

pg_psql()
{
    PGCONNECT_TIMEOUT=5 "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" \
        -U "$PG_SUPERUSER" -d "$PG_DATABASE" "$@"
}

pgbouncer_stop()
{
    if [ -n "${PGBOUNCER_PID:-}" ]; then
        _pg_kill "$PGBOUNCER_PID"
        PGBOUNCER_PID=""
    fi
    if [ -n "${PGBOUNCER_DIR:-}" ]; then
        rm -rf -- "$PGBOUNCER_DIR"
        PGBOUNCER_DIR=""
    fi
    return 0
}

pg_stop()
{
    pgbouncer_stop
    if [ -n "${PG_WATCHDOG_PID:-}" ]; then
        kill "$PG_WATCHDOG_PID" 2>/dev/null
        wait "$PG_WATCHDOG_PID" 2>/dev/null
        PG_WATCHDOG_PID=""
    fi
    local cur
    cur=$(_pg_server_pid)
    [ -n "$cur" ] && PG_PID=$cur
    if [ -n "${PG_PID:-}" ]; then
        kill -CONT "$PG_PID" $(ps -o pid= --ppid "$PG_PID") 2>/dev/null
        # SIGTERM is PostgreSQL's "smart" shutdown, which waits for clients
        # to leave; SIGINT ("fast") ends their sessions.  Its children exit
        # with the postmaster.
        kill -INT "$PG_PID" 2>/dev/null
        if ! _pg_wait_gone "$PG_PID" 10; then
            kill -QUIT "$PG_PID" 2>/dev/null
            _pg_wait_gone "$PG_PID" 5 || { kill -KILL "$PG_PID" 2>/dev/null; _pg_wait_gone "$PG_PID" 5; }
        fi
        PG_PID=""
    fi
    if [ -n "${PG_DIR:-}" ]; then
        rm -rf -- "$PG_DIR"
        PG_DIR=""
    fi
    return 0
}

# The server's user when we are root: sets _PG_SETPRIV _PG_UID _PG_GID.
_pg_pick_user()
{
    _PG_SETPRIV=""
    [ "$(id -u)" -eq 0 ] || return 0
    command -v setpriv >/dev/null 2>&1 || { echo "pg_start: running as root and setpriv (util-linux) is missing" >&2; return 77; }
    local u
    for u in ${PG_RUN_USER:-postgres nobody}; do
        if id -u "$u" >/dev/null 2>&1 && [ "$(id -u "$u")" -ne 0 ]; then
            _PG_UID=$(id -u "$u")
            _PG_GID=$(id -g "$u")
            _PG_SETPRIV=1
            return 0
        fi
    done
    echo "pg_start: running as root and no unprivileged user (${PG_RUN_USER:-postgres nobody}) to run PostgreSQL as" >&2
    return 77
}

pg_start()
{
    local base=${1:-${TMPDIR:-/tmp}} rc port log
    pg_stop
    PG_BINDIR=$(_pg_bindir)
    if [ -z "$PG_BINDIR" ] || [ ! -x "$PG_BINDIR/initdb" ] || [ ! -x "$PG_BINDIR/postgres" ] ||
        [ ! -x "$PG_BINDIR/psql" ]; then
        echo "pg_start: PostgreSQL is not installed (no initdb/postgres/psql under /usr/lib/postgresql/*/bin; Debian package postgresql)" >&2
        return 77
    fi
    _pg_pick_user
    rc=$?
    [ $rc -eq 0 ] || return $rc
    PG_DIR=$(mktemp -d "$base/pg.XXXXXX") || return 1
    chmod 700 "$PG_DIR"
    mkdir -m 700 "$PG_DIR/sock"
    [ -n "$_PG_SETPRIV" ] && chown -R "$_PG_UID:$_PG_GID" "$PG_DIR"
    if ! _pg_as test -w "$PG_DIR/sock"; then
        echo "pg_start: the server's user (uid ${_PG_UID:-$(id -u)}) cannot reach $PG_DIR; set TMPDIR to a directory it can traverse" >&2
        rm -rf -- "$PG_DIR"; PG_DIR=""
        return 77
    fi
    PG_SUPERUSER=postgres
    log=$PG_DIR/initdb.log
    # trust for the socket only at first; pg_hba.conf is written below
    if ! _pg_as "$PG_BINDIR/initdb" -D "$PG_DIR/data" -U "$PG_SUPERUSER" -A trust -E UTF8 \
        --locale=C --no-sync --no-instructions >"$log" 2>&1; then
        echo "pg_start: initdb failed:" >&2
        cat "$log" >&2
        pg_stop
        return 1
    fi
    cat >"$PG_DIR/data/pg_hba.conf" <<EOF
# TYPE  DATABASE USER ADDRESS       METHOD
local   all      all                trust
host    all      all  127.0.0.1/32  scram-sha-256
EOF
    PG_SOCKET_DIR=$PG_DIR/sock
    log=$PG_DIR/postgres.log
    for _ in $(seq 10); do
        port=$(_pg_free_port) || break
        : >"$log"
        [ -n "$_PG_SETPRIV" ] && chown "$_PG_UID:$_PG_GID" "$log"
        _pg_launch "$port" "$log"
        for _ in $(seq 200); do
            kill -0 "$PG_PID" 2>/dev/null || break
            if [ -S "$PG_SOCKET_DIR/.s.PGSQL.$port" ] &&
                "$PG_BINDIR/pg_isready" -q -h "$PG_SOCKET_DIR" -p "$port" -t 1 2>/dev/null; then
                PG_PORT=$port
                break 2
            fi
            sleep 0.05
        done
        if kill -0 "$PG_PID" 2>/dev/null; then
            echo "pg_start: the server did not accept connections within 10 s; its log:" >&2
            cat "$log" >&2
            pg_stop
            return 1
        fi
        wait "$PG_PID" 2>/dev/null
        PG_PID=""
        grep -q "Address already in use" "$log" && continue
        echo "pg_start: the server would not start; its log:" >&2
        cat "$log" >&2
        pg_stop
        return 1
    done
    if [ -z "${PG_PORT:-}" ] || [ -z "$PG_PID" ]; then
        echo "pg_start: no free port for the server" >&2
        pg_stop
        return 1
    fi
    PG_HOST=127.0.0.1
    PG_USER=${PG_USER:-butler}
    PG_DATABASE=${PG_DATABASE:-butler}
    # random, hex only (nothing to quote in SQL, an ini file or a URL)
    PG_PASSWORD=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    PG_URL=postgresql://$PG_USER@$PG_HOST:$PG_PORT/$PG_DATABASE
    export PG_BINDIR PG_DIR PG_PID PG_PORT PG_HOST PG_SOCKET_DIR PG_SUPERUSER PG_USER \
        PG_PASSWORD PG_DATABASE PG_URL
    # the password goes in on stdin, never in a command line
    if ! pg_psql -d postgres >"$PG_DIR/setup.log" 2>&1 <<EOF
CREATE ROLE "$PG_USER" LOGIN PASSWORD '$PG_PASSWORD';
CREATE DATABASE "$PG_DATABASE" OWNER "$PG_USER";
\\connect "$PG_DATABASE"
CREATE EXTENSION btree_gist;
EOF
    then
        echo "pg_start: setting up the role and database failed:" >&2
        cat "$PG_DIR/setup.log" >&2
        pg_stop
        return 1
    fi
    if [ -n "${PG_OWNER_PID:-}" ]; then
        ( trap '' HUP
          # (not while the server runs: pg_down/pg_up restart it)
          while kill -0 "$PG_OWNER_PID" 2>/dev/null && [ -d "$PG_DIR/data" ]; do
              sleep 1
          done
          PG_PID=$(_pg_server_pid)
          [ -n "$PGBOUNCER_PID" ] && kill -TERM "$PGBOUNCER_PID" 2>/dev/null
          [ -f "$PG_DIR/pgbouncer/pgbouncer.pid" ] && kill -TERM "$(cat "$PG_DIR/pgbouncer/pgbouncer.pid")" 2>/dev/null
          [ -n "$PG_PID" ] && kill -CONT "$PG_PID" && kill -INT "$PG_PID" 2>/dev/null
          sleep 2
          rm -rf -- "$PG_DIR" ) </dev/null >/dev/null 2>&1 &
        PG_WATCHDOG_PID=$!
    fi
    return 0
}

pgbouncer_start()
{
    local bin port log
    if [ -z "${PG_PID:-}" ]; then
        echo "pgbouncer_start: start PostgreSQL first (pg_start)" >&2
        return 1
    fi
    bin=$(command -v pgbouncer 2>/dev/null || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; })
    if [ -z "$bin" ]; then
        echo "pgbouncer_start: PgBouncer is not installed (Debian package pgbouncer)" >&2
        return 77
    fi
    pgbouncer_stop
    PGBOUNCER_DIR=$PG_DIR/pgbouncer
    mkdir -m 700 "$PGBOUNCER_DIR" || return 1
    # plain text: PgBouncer then speaks SCRAM to the client and to the server
    ( umask 077; printf '"%s" "%s"\n' "$PG_USER" "$PG_PASSWORD" >"$PGBOUNCER_DIR/userlist.txt" )
    log=$PGBOUNCER_DIR/pgbouncer.log
    for _ in $(seq 10); do
        port=$(_pg_free_port) || break
        cat >"$PGBOUNCER_DIR/pgbouncer.ini" <<EOF
[databases]
$PG_DATABASE = host=127.0.0.1 port=$PG_PORT dbname=$PG_DATABASE

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $PGBOUNCER_DIR/userlist.txt
pool_mode = transaction
default_pool_size = ${PGBOUNCER_POOL_SIZE:-20}
max_client_conn = 1000
server_lifetime = 3600
server_idle_timeout = 60
# retry a server login 1 s after a failed one (default 15 s): the tests
# restart the server
server_login_retry = 1
logfile = $log
pidfile = $PGBOUNCER_DIR/pgbouncer.pid
EOF
        : >"$log"
        [ -n "$_PG_SETPRIV" ] && chown -R "$_PG_UID:$_PG_GID" "$PGBOUNCER_DIR"
        _pg_exec "$bin" -q "$PGBOUNCER_DIR/pgbouncer.ini" </dev/null >>"$PGBOUNCER_DIR/stderr.log" 2>&1 &
        PGBOUNCER_PID=$!
        for _ in $(seq 200); do
            kill -0 "$PGBOUNCER_PID" 2>/dev/null || break
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                PGBOUNCER_PORT=$port
                PGBOUNCER_URL=postgresql://$PG_USER@127.0.0.1:$port/$PG_DATABASE
                export PGBOUNCER_PID PGBOUNCER_PORT PGBOUNCER_DIR PGBOUNCER_URL
                return 0
            fi
            sleep 0.05
        done
        if kill -0 "$PGBOUNCER_PID" 2>/dev/null; then
            echo "pgbouncer_start: PgBouncer did not listen within 10 s; its log:" >&2
            cat "$log" "$PGBOUNCER_DIR/stderr.log" >&2
            pgbouncer_stop
            return 1
        fi
        wait "$PGBOUNCER_PID" 2>/dev/null
        PGBOUNCER_PID=""
        grep -q "Address already in use" "$log" "$PGBOUNCER_DIR/stderr.log" && continue
        echo "pgbouncer_start: PgBouncer would not start; its log:" >&2
        cat "$log" "$PGBOUNCER_DIR/stderr.log" >&2
        pgbouncer_stop
        return 1
    done
    echo "pgbouncer_start: no free port for PgBouncer" >&2
    pgbouncer_stop
    return 1
}
