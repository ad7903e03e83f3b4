#!/usr/bin/env bash
# test_pg_tls.sh - a PostgreSQL registry over TLS, as libpq's sslmode and
# sslrootcert in registry.db's query ask: the server has a certificate for
# "localhost" from a test CA; with sslmode=verify-full and that CA the mount
# lists the tree; with another CA, or a host name the certificate does not
# name, it is refused in one sentence before anything is mounted; with
# sslmode=require the connection is encrypted (pg_stat_ssl says so).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/pg.sh"
trap 'pg_stop; bfs_cleanup' EXIT

skip_unless_fuse
command -v openssl >/dev/null 2>&1 || skip "openssl is not installed"
# the server's user must read its key: a dir of its own, outside $BFS_TMP (0700)
tls=$(mktemp -d "${TMPDIR:-/tmp}/bfs-pg-tls.XXXXXX")
trap 'pg_stop; rm -rf "$tls"; bfs_cleanup' EXIT
mkcert() { # DIR NAME CN
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$3 test CA" \
        -keyout "$1/$2-ca.key" -out "$1/$2-ca.pem" >/dev/null 2>&1 &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$3" -keyout "$1/$2.key" -out "$1/$2.csr" >/dev/null 2>&1 &&
    openssl x509 -req -in "$1/$2.csr" -CA "$1/$2-ca.pem" -CAkey "$1/$2-ca.key" -CAcreateserial \
        -days 2 -extfile <(printf 'subjectAltName=DNS:%s\n' "$3") -out "$1/$2.pem" >/dev/null 2>&1
}
mkcert "$tls" server localhost || skip "openssl could not make a test certificate"
mkcert "$tls" other localhost || skip "openssl could not make a second test CA"
chmod 755 "$tls"
chmod 600 "$tls/server.key"
if [ "$(id -u)" -eq 0 ]; then
    u=${PG_RUN_USER:-postgres}
    id -u "$u" >/dev/null 2>&1 || u=nobody
    chown "$u" "$tls/server.key" "$tls/server.pem"
fi
export PG_EXTRA_ARGS="-c ssl=on -c ssl_cert_file=$tls/server.pem -c ssl_key_file=$tls/server.key"
pg_test_servers
export PGPASSWORD=$PG_PASSWORD

"$BFS_BIN" synth "$BFS_TMP/src" --exposures 2 --detectors 3 --payload 1024 >/dev/null || { fail "synth"; finish; }
url="postgresql://$PG_USER@localhost:$PG_PORT/$PG_DATABASE?sslmode=verify-full&sslrootcert=$tls/server-ca.pem"
if ! "$BFS_BIN" copy-registry "$BFS_TMP/src" "$BFS_TMP/repo" --db "$url" --namespace tls >"$BFS_TMP/copy.out" 2>&1; then
    cat "$BFS_TMP/copy.out" >&2
    fail "copy-registry over TLS (verify-full)"
    finish
fi
pass "copy-registry over TLS with sslmode=verify-full"
expect "butler.yaml keeps sslmode and sslrootcert" grep -q "sslmode=verify-full" "$BFS_TMP/repo/butler.yaml"

mnt=$BFS_TMP/mnt
mkdir -p "$mnt"
if mount_repo "$BFS_TMP/repo" "$mnt"; then
    n=$(find "$mnt" -type f | wc -l)
    expect "verify-full with the server's CA: the mount lists the tree ($n files)" [ "$n" -eq 6 ]
    ssl=$(pg_psql -At -c "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = '$PG_USER' AND s.ssl")
    expect "the mount's connection is encrypted (pg_stat_ssl: $ssl)" [ "${ssl:-0}" -ge 1 ]
    check_log
fi

refused() { # LABEL URL PATTERN
    local m out st
    m=$(mktemp -d "$BFS_TMP/m.XXXXXX")
    mkdir -p "$m.repo"
    sed "s|^  db: .*|  db: '${2//&/\\&}'|" "$BFS_TMP/repo/butler.yaml" >"$m.repo/butler.yaml"
    out=$(timeout 30 "$BFS_BIN" mount "$m.repo" "$m" -f 2>&1)
    st=$?
    expect "$1: refused (status $st)" [ $st -ne 0 ]
    expect "$1: not mounted" bash -c "! mountpoint -q '$m'"
    expect "$1: in one sentence ('$out')" [ "$(printf '%s\n' "$out" | grep -c .)" -le 2 ]
    expect "$1: the sentence names the cause" grep -Eqi "$3" <<<"$out"
}
refused "another CA" "postgresql://$PG_USER@localhost:$PG_PORT/$PG_DATABASE?sslmode=verify-full&sslrootcert=$tls/other-ca.pem" \
    "certificate|verify"
refused "a host name the certificate does not name" \
    "postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DATABASE?sslmode=verify-full&sslrootcert=$tls/server-ca.pem" \
    "certificate|host name|match"
finish
