#!/usr/bin/env bash
# test_pg_faults.sh - a mount whose registry is PostgreSQL under faults:
#   - the pool's server connections killed (pg_terminate_backend): the next
#     lookup reconnects by itself and succeeds;
#   - the server stopped (an outage): a lookup that needs the registry
#     fails within the bound (connect + statement timeout + slack), with a
#     log line, not a hang; a file read before keeps reading the same; the
#     server started again: lookups succeed without a remount;
#   - the server frozen (SIGSTOP: nothing answered): a lookup returns within
#     the bound, and lookups work again after SIGCONT;
#   - before anything is mounted, one clear sentence each for: a wrong
#     password, an unreachable port, a missing namespace, a namespace that
#     holds no Butler registry; the password in none of them, and the
#     mountpoint left unmounted.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/pg.sh"
trap 'pg_thaw 2>/dev/null; pg_stop; bfs_cleanup' EXIT

skip_unless_fuse
pg_start_or_skip
export PGPASSWORD=$PG_PASSWORD

# a small repository (3 exposures x 4 detectors) copied into PostgreSQL
"$BFS_BIN" synth "$BFS_TMP/src" --exposures 3 --detectors 4 --payload 4096 >/dev/null || { fail "synth"; finish; }
"$BFS_BIN" copy-registry "$BFS_TMP/src" "$BFS_TMP/repo" --db "$PG_URL" --namespace faults >"$BFS_TMP/copy.out" 2>&1 ||
    { cat "$BFS_TMP/copy.out" >&2; fail "copy-registry"; finish; }
# tight bounds for the test: connect 2 s, statement 3 s
printf 'registry:\n  connect_timeout: 2s\n  statement_timeout: 3s\n  connections: 2\n' >"$BFS_TMP/bfs.yaml"
mnt=$BFS_TMP/mnt
mkdir -p "$mnt"
mount_repo "$BFS_TMP/repo" "$mnt" "config=$BFS_TMP/bfs.yaml,dir_timeout=1,negative_timeout=0,listing_ttl=1" || finish
log=$BFS_LOG
base=$mnt/LSSTCam/raw/all/raw/instrument=LSSTCam
mapfile -t exps < <(cd "$base" && ls -d detector=* 2>/dev/null)
expect "the mount lists the detectors (${#exps[@]})" [ "${#exps[@]}" -eq 4 ]
# a file read now, to be read again during the outage
first=$(find "$base/${exps[0]}" -type f | head -1)
sum0=$(sha256sum <"$first" | cut -d' ' -f1)

# 1. the pool's connections killed
killed=$(pg_psql -At -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '$PG_USER'")
echo "terminated $killed server connections"
n=$(find "$base/${exps[1]}" -type f | wc -l)
expect "after the server killed the pool's connections, a new lookup works ($n files)" [ "$n" -ge 1 ]

# elapsed_ms CMD...: run CMD, print its run time in ms; its status in $rc
rc=0
elapsed_ms() { local t0; t0=$(date +%s%N); "$@" >/dev/null 2>&1; rc=$?; echo $(( ($(date +%s%N) - t0) / 1000000 )); }

# 2. an outage
pg_down || fail "pg_down"
sleep 1.2   # past entry_timeout: the next lookups go to the daemon
ms=$(elapsed_ms stat "$base/exposure=999999")
expect "during the outage a lookup of a new name fails within 12 s ($ms ms)" [ "$ms" -lt 12000 ]
expect "during the outage that lookup fails" bash -c "! stat '$base/exposure=999998' >/dev/null 2>&1"
ms=$(elapsed_ms ls "$base/${exps[2]}")
expect "during the outage a listing returns within 12 s ($ms ms)" [ "$ms" -lt 12000 ]
sum1=$(sha256sum <"$first" 2>/dev/null | cut -d' ' -f1)
expect "during the outage, a file read before still reads the same" [ "$sum1" = "$sum0" ]
pg_up || fail "pg_up"
ok=0
for _ in $(seq 20); do
    [ "$(find "$base" -type f 2>/dev/null | wc -l)" -eq 12 ] && { ok=1; break; }
    sleep 0.5
done
expect "after the server is back, the whole tree (12 files) without a remount" [ $ok -eq 1 ]
expect "the outage left a line in the log" grep -Eqi "registry|postgres|connect" "$log"

# 3. a frozen server
sleep 1.2
pg_freeze
ms=$(elapsed_ms ls "$base/${exps[3]}")
ms2=$(elapsed_ms stat "$base/exposure=999997")
pg_thaw
expect "against a frozen server a listing returns within 12 s ($ms ms)" [ "$ms" -lt 12000 ]
expect "against a frozen server a lookup returns within 12 s ($ms2 ms)" [ "$ms2" -lt 12000 ]
sleep 1.2
ok=0
for _ in $(seq 20); do
    [ "$(find "$base" -type f 2>/dev/null | wc -l)" -eq 12 ] && { ok=1; break; }
    sleep 0.5
done
expect "after the server thaws, lookups work" [ $ok -eq 1 ]
unmount
expect "the mount's log holds no password" bash -c "! grep -qF -- '$PG_PASSWORD' '$log'"
expect_no_sanitizer "$log" "$BFS_ERR"

# 4. refused before mounting, one sentence each
refused() { # LABEL REPO PATTERN [VAR=VALUE...]
    local label=$1 repo=$2 pat=$3 out st m
    shift 3
    m=$(mktemp -d "$BFS_TMP/m.XXXXXX")
    out=$(env "$@" timeout 30 "$BFS_BIN" mount "$repo" "$m" -f 2>&1)
    st=$?
    expect "$label: refused (status $st)" [ $st -ne 0 ]
    expect "$label: not mounted" bash -c "! mountpoint -q '$m'"
    expect "$label: in one sentence ('$out')" [ "$(printf '%s\n' "$out" | grep -c .)" -le 2 ]
    expect "$label: the sentence names the cause" grep -Eqi "$pat" <<<"$out"
    if grep -qF -- "$PG_PASSWORD" <<<"$out"; then fail "$label: the password is in it"; else pass "$label: no password in it"; fi
}
refused "wrong password" "$BFS_TMP/repo" "password|authentication" PGPASSWORD=not-the-password
mkdir -p "$BFS_TMP/badport"
sed "s|:$PG_PORT/|:1/|" "$BFS_TMP/repo/butler.yaml" >"$BFS_TMP/badport/butler.yaml"
refused "unreachable port" "$BFS_TMP/badport" "connect|refused|reach"
mkdir -p "$BFS_TMP/badns"
sed "s|namespace: 'faults'|namespace: 'nosuch'|" "$BFS_TMP/repo/butler.yaml" >"$BFS_TMP/badns/butler.yaml"
refused "missing namespace" "$BFS_TMP/badns" "namespace|nosuch"
pg_psql -q -c "CREATE SCHEMA empty AUTHORIZATION $PG_USER; CREATE TABLE empty.t (x int)" >/dev/null
mkdir -p "$BFS_TMP/notbutler"
sed "s|namespace: 'faults'|namespace: 'empty'|" "$BFS_TMP/repo/butler.yaml" >"$BFS_TMP/notbutler/butler.yaml"
refused "a namespace without a Butler registry" "$BFS_TMP/notbutler" "butler|registry|schema"
finish
