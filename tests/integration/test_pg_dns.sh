#!/usr/bin/env bash
# test_pg_dns.sh - PostgreSQL host names are looked up within the registry's
# connect_timeout (issue 13: "a lookup during the outage fails within a
# bounded time"; libpq alone waits out the resolver: timeout x attempts x
# name servers).  A dead name server is simulated without touching the
# machine's: a UDP/TCP socket on a loopback address that reads and never
# answers, named by a resolv.conf bind-mounted over /etc/resolv.conf in a
# private mount namespace (unshare -m; root only) where butlerfs runs.
#   - a registry whose host name only that server could answer: the mount is
#     refused in one sentence naming connect_timeout and the host, within
#     connect_timeout (2 s) + slack, not after the resolver's 10 s.
#     The host is given by the URL, by PGHOST, by a service file;
#   - a host name /etc/hosts answers (localhost) still works there, through
#     the looked-up address (libpq's hostaddr beside host), given by the URL
#     or by a service file, and so do an IP literal and a host name beside
#     the user's own hostaddr (PGHOSTADDR: kept, nothing looked up);
#   - with the machine's resolver, a host list whose first name does not
#     exist and whose second is localhost works (the failed name is
#     skipped, as libpq does), and a daemonized mount (it forks after the
#     registry was opened once) looks localhost up again when it reconnects.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/pg.sh"
dns_pid=""
trap '[ -n "$dns_pid" ] && kill "$dns_pid" 2>/dev/null; pg_stop; bfs_cleanup' EXIT

[ "$(id -u)" -eq 0 ] || skip "needs root (a mount namespace with its own /etc/resolv.conf)"
command -v unshare >/dev/null 2>&1 || skip "unshare is not installed"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed (the silent name server)"
command -v getent >/dev/null 2>&1 || skip "getent is not installed"
unshare -m true 2>/dev/null || skip "unshare -m is not permitted here"
skip_unless_fuse

# the silent name server, on a loopback address of its own
for _ in 1 2 3 4 5; do
    ns=127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))
    python3 - "$ns" >"$BFS_TMP/ns.out" 2>&1 <<'PY' &
import socket, sys, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((sys.argv[1], 53))
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((sys.argv[1], 53))
t.listen(16)
print("ready", flush=True)
time.sleep(600)
PY
    dns_pid=$!
    for _ in $(seq 50); do
        grep -q ready "$BFS_TMP/ns.out" 2>/dev/null && break
        kill -0 "$dns_pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q ready "$BFS_TMP/ns.out" && break
    kill "$dns_pid" 2>/dev/null
    dns_pid=""
done
[ -n "$dns_pid" ] || skip "could not bind a silent name server on a loopback address"
rc=$BFS_TMP/resolv.conf
printf 'nameserver %s\noptions timeout:5 attempts:2\n' "$ns" >"$rc"
# dead_dns CMD...: run CMD with that resolv.conf
dead_dns() { unshare -m sh -c 'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$rc" "$@"; }
name=bfs-dns-test-$RANDOM.invalid
if dead_dns timeout 2 getent ahosts "$name" >/dev/null 2>&1 || [ $? -ne 124 ]; then
    skip "the bind-mounted resolv.conf does not make name lookups hang here"
fi
pass "with the silent name server, getent ahosts $name hangs"

pg_test_servers
export PGPASSWORD=$PG_PASSWORD
"$BFS_BIN" synth "$BFS_TMP/src" --exposures 2 --detectors 2 --payload 1024 >/dev/null || { fail "synth"; finish; }
"$BFS_BIN" copy-registry "$BFS_TMP/src" "$BFS_TMP/repo" --db "postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DATABASE" \
    --namespace dns >"$BFS_TMP/copy.out" 2>&1 || { cat "$BFS_TMP/copy.out" >&2; fail "copy-registry"; finish; }
export XDG_CONFIG_HOME=$BFS_TMP/xdg
mkdir -p "$XDG_CONFIG_HOME/butlerfs"
printf 'registry:\n  connect_timeout: 2s\n  idle_close: 1s\n' >"$XDG_CONFIG_HOME/butlerfs/config.yaml"
# repo_at LABEL URL: a copy of the repository whose registry URL is URL
repo_at() {
    mkdir -p "$BFS_TMP/$1"
    sed "s|^  db: .*|  db: '${2//&/\\&}'|" "$BFS_TMP/repo/butler.yaml" >"$BFS_TMP/$1/butler.yaml"
    echo "$BFS_TMP/$1"
}
elapsed_ms() { local t0; t0=$(date +%s%N); "$@"; rc_=$?; ms=$(( ($(date +%s%N) - t0) / 1000000 )); return $rc_; }

# refused_fast LABEL URL [VAR=VALUE...]: with the dead name server, a mount of
# a repository whose registry is URL is refused in one sentence naming
# connect_timeout and the host, within connect_timeout + slack
refused_fast() {
    local label=$1 repo m out st
    repo=$(repo_at "$1" "$2")
    shift 2
    m=$BFS_TMP/$label.mnt
    mkdir -p "$m"
    elapsed_ms dead_dns env "$@" timeout 60 "$BFS_BIN" mount "$repo" "$m" -f >"$BFS_TMP/$label.out" 2>&1
    st=$rc_
    out=$(cat "$BFS_TMP/$label.out")
    echo "$label: status $st after $ms ms: $out"
    expect "$label: refused (status $st)" bash -c "[ $st -ne 0 ] && [ $st -ne 124 ]"
    expect "$label: not mounted" bash -c "! mountpoint -q '$m'"
    expect "$label: refused within connect_timeout (2 s) + 2 s, not the resolver's 10 s ($ms ms)" [ "$ms" -lt 4000 ]
    expect "$label: in one sentence" [ "$(printf '%s\n' "$out" | grep -c .)" -le 2 ]
    expect "$label: the sentence names connect_timeout" grep -q "connect_timeout" <<<"$out"
    expect "$label: the sentence names the host" grep -qF "$name" <<<"$out"
}

# 1. a host name only the dead name server could answer: in the URL, in
# PGHOST, in a service file
refused_fast dead "postgresql://$PG_USER@$name:$PG_PORT/$PG_DATABASE"
refused_fast pghost "postgresql://$PG_USER@/$PG_DATABASE?port=$PG_PORT" PGHOST="$name"
printf '[dead]\nhost=%s\nport=%s\n[local]\nhost=localhost\nport=%s\n' "$name" "$PG_PORT" "$PG_PORT" \
    >"$BFS_TMP/pg_service.conf"
export PGSERVICEFILE=$BFS_TMP/pg_service.conf
refused_fast service "postgresql://$PG_USER@/$PG_DATABASE?service=dead"

# 2. names the dead name server is not asked for
lists() { # LABEL URL [RUNNER]: export --dry-run reads the registry (under RUNNER)
    local repo
    repo=$(repo_at "$1" "$2")
    elapsed_ms ${3:-} timeout 60 "$BFS_BIN" export "$repo" --collection '*' --to "$BFS_TMP/$1.out" --dry-run \
        >"$BFS_TMP/$1.log" 2>&1
    expect "$1: the registry is read${3:+ with a dead name server} (status $rc_, $ms ms)" [ "$rc_" -eq 0 ]
    [ "$rc_" -eq 0 ] || cat "$BFS_TMP/$1.log" >&2
}
lists localhost "postgresql://$PG_USER@localhost:$PG_PORT/$PG_DATABASE" dead_dns
lists literal "postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DATABASE" dead_dns
lists service-local "postgresql://$PG_USER@/$PG_DATABASE?service=local" dead_dns
# a hostaddr of the user's is kept: nothing is looked up, libpq connects there
lists hostaddr "postgresql://$PG_USER@$name:$PG_PORT/$PG_DATABASE" "dead_dns env PGHOSTADDR=127.0.0.1"
# 3. a host list (with the machine's own resolver): a name that does not
# exist is skipped, the next host is used
lists list "postgresql://$PG_USER@/$PG_DATABASE?host=no-such-host-$RANDOM.invalid,localhost&port=$PG_PORT"
# 4. a daemonized mount: the daemon forks after the registry was opened once
# (a lookup machinery whose threads do not survive fork(), as glibc's
# getaddrinfo_a, would leave every later lookup hanging until the deadline)
repo=$(repo_at daemon "postgresql://$PG_USER@localhost:$PG_PORT/$PG_DATABASE")
m=$BFS_TMP/daemon.mnt
mkdir -p "$m"
BFS_MOUNTS+=("$m")
if "$BFS_BIN" mount "$repo" "$m" -o "log=$BFS_TMP/daemon.log" >"$BFS_TMP/daemon.out" 2>&1; then
    sleep 2.5 # past idle_close (1 s): the next lookups connect (and look localhost up) again
    n=$(timeout 20 find "$m" -type f | wc -l)
    expect "a daemonized mount whose registry host is localhost lists the tree after reconnecting ($n files)" \
        [ "$n" -eq 4 ]
    fusermount3 -u "$m"
else
    cat "$BFS_TMP/daemon.out" >&2
    fail "a daemonized mount whose registry host is localhost"
fi
# (a lookup thread still blocked when the refused mount exits, above, is no report either)
expect_no_sanitizer "$BFS_TMP"/*.out "$BFS_TMP"/*.log
finish
