#!/usr/bin/env bash
# test_locations.sh - a registry row cannot point the mount outside the
# datastore (issue 10, defects 3 and 4), on real mounts.
#
# Local: file:///PATH and /PATH outside the datastore root are refused alike
# (EACCES, one log line naming allowed_roots), existing or not, /etc/shadow
# included, as is a symlink in the datastore that leads out; listing the
# directory under allowed_roots: serves them, and nothing else.
# Remote (nginx, skipped without it): with root http://HOST/auth/sec/ and a
# bearer token, a row %2e%2e/OUTSIDE.fits (which nginx would normalise to
# /auth/OUTSIDE.fits and serve) and an absolute URI outside the root are
# refused: the server never sees a request for them, the token goes to the
# root only, and appears in no log.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 is not installed"
trap 'nginx_stop; bfs_cleanup' EXIT

T=$BFS_TMP
mkdir -p "$T/mnt" "$T/outside" "$T/cache"

# set_row REPO SENSOR LOCATION [FILE_SIZE]: the registry row of the raw of
# R01_<SENSOR> gets LOCATION (and FILE_SIZE, unchanged when omitted)
set_row()
{
    local size=${4:+, file_size = $4}
    sqlite3 "$1/gen3.sqlite3" "UPDATE file_datastore_records SET path = '$3'$size WHERE path LIKE '%R01_$2_%'" ||
        fail "update of the registry row R01_$2"
}

# leaf MNT LOCATION: the mounted file whose user.butler.location is LOCATION
leaf()
{
    python3 - "$1" "$2" <<'PY'
import os, sys
mnt, loc = sys.argv[1], sys.argv[2].encode()
for d, _, files in os.walk(mnt):
    for f in files:
        p = os.path.join(d, f)
        if os.getxattr(p, "user.butler.location", follow_symlinks=False) == loc:
            print(p)
            sys.exit(0)
sys.exit(1)
PY
}

# refused MNT LOCATION: reading the file of LOCATION fails with EACCES
refused()
{
    local f
    f=$(leaf "$1" "$2") || { echo "no file with location $2" >&2; return 1; }
    ! cat "$f" >"$T/out" 2>"$T/err" && grep -q "Permission denied" "$T/err"
}

# reads MNT LOCATION TEXT: the file of LOCATION reads back as TEXT
reads()
{
    local f
    f=$(leaf "$1" "$2") || { echo "no file with location $2" >&2; return 1; }
    [ "$(cat "$f")" = "$3" ]
}

# ---- local: file://, absolute paths and symlinks ---------------------------

"$BFS_BIN" synth "$T/repo" --exposures 1 --detectors 6 --payload 1000 >/dev/null 2>&1 || fail "synth"
printf secret >"$T/outside/secret.fits"
LINKED=$(sqlite3 "$T/repo/gen3.sqlite3" "SELECT path FROM file_datastore_records WHERE path LIKE '%R01_S11_%'")
KEPT=$(sqlite3 "$T/repo/gen3.sqlite3" "SELECT path FROM file_datastore_records WHERE path LIKE '%R01_S12_%'")
set_row "$T/repo" S00 "file://$T/outside/secret.fits" 6
set_row "$T/repo" S01 "$T/outside/secret.fits" 6
set_row "$T/repo" S02 "file:///etc/shadow"
set_row "$T/repo" S10 "/etc/shadow"
rm -f "$T/repo/$LINKED"
ln -s "$T/outside/secret.fits" "$T/repo/$LINKED"
sqlite3 "$T/repo/gen3.sqlite3" "UPDATE file_datastore_records SET file_size = 6 WHERE path = '$LINKED'"
: >"$T/empty.yaml"

mount_repo "$T/repo" "$T/mnt" "config=$T/empty.yaml,xattr" || finish
expect "a relative location inside the datastore reads" test "$(wc -c <"$(leaf "$T/mnt" "$KEPT")")" -eq 1000
expect "file:// outside the datastore root is refused (EACCES)" refused "$T/mnt" "file://$T/outside/secret.fits"
expect "an absolute path outside the datastore root is refused (EACCES)" refused "$T/mnt" "$T/outside/secret.fits"
expect "file:///etc/shadow is refused (EACCES)" refused "$T/mnt" "file:///etc/shadow"
expect "/etc/shadow is refused (EACCES), as file:///etc/shadow is" refused "$T/mnt" "/etc/shadow"
expect "a symlink in the datastore leading out of it is refused (EACCES)" refused "$T/mnt" "$LINKED"
expect "one log line per refused open (5), each naming allowed_roots" \
    test "$(grep -c "refusing datastore location .*allowed_roots" "$BFS_LOG")" -eq 5
expect "... and no other line about them" test "$(grep -c "secret\|shadow\|S11" "$BFS_LOG")" -eq 5
expect "file:///etc/shadow and /etc/shadow are logged alike" \
    test "$(grep -c "refusing datastore location /etc/shadow: it is outside" "$BFS_LOG")" -eq 2
expect "the refusal of a symlink says so" grep -q "refusing datastore location .*symbolic link.*allowed_roots" "$BFS_LOG"
check_log

cat >"$T/allowed.yaml" <<EOF
allowed_roots:
  - $T/outside
EOF
mount_repo "$T/repo" "$T/mnt" "config=$T/allowed.yaml,xattr" || finish
expect "with allowed_roots: file:// under it reads" reads "$T/mnt" "file://$T/outside/secret.fits" secret
expect "with allowed_roots: an absolute path under it reads" reads "$T/mnt" "$T/outside/secret.fits" secret
expect "with allowed_roots: a symlink into it reads" reads "$T/mnt" "$LINKED" secret
expect "with allowed_roots: file:///etc/shadow is still refused" refused "$T/mnt" "file:///etc/shadow"
expect "with allowed_roots: /etc/shadow is still refused" refused "$T/mnt" "/etc/shadow"
check_log

# ---- remote: percent-encoded dot segments and absolute URIs ----------------

command -v nginx >/dev/null 2>&1 || { echo "nginx is not installed: no remote checks"; finish; }
WWW=$T/www
mkdir -p "$WWW"
nginx_start "$WWW" || { fail "nginx would not start"; finish; }
remote_repo "$T/rrepo" "$WWW/sec" "$NGINX_URL/auth/sec/" 1 3 1000 || finish
printf outside >"$WWW/OUTSIDE.fits"
printf 'sekrit-token\n' >"$T/token"
chmod 600 "$T/token"
cat >"$T/remote.yaml" <<EOF
cache:
  dir: $T/cache
  min_free: 1MiB
fetch:
  token_file: $T/token
  deadline: 10s
  attempts: 2
EOF
GOOD=$(sqlite3 "$T/rrepo/gen3.sqlite3" "SELECT path FROM file_datastore_records WHERE path LIKE '%R01_S02_%'")
set_row "$T/rrepo" S00 "%2e%2e/OUTSIDE.fits" 7
set_row "$T/rrepo" S01 "$NGINX_URL/auth/OUTSIDE.fits" 7

mount_repo "$T/rrepo" "$T/mnt" "config=$T/remote.yaml,xattr" || finish
expect "a file under the root reads (the token goes there)" test "$(wc -c <"$(leaf "$T/mnt" "$GOOD")")" -eq 1000
expect "%2e%2e/OUTSIDE.fits is refused (EACCES)" refused "$T/mnt" "%2e%2e/OUTSIDE.fits"
expect "an absolute URI outside the root is refused (EACCES)" refused "$T/mnt" "$NGINX_URL/auth/OUTSIDE.fits"
expect "each refusal is one log line" test "$(grep -c "refusing datastore location\|OUTSIDE" "$BFS_LOG")" -eq 2
check_log
ACCESS=$NGINX_DIR/access.log
nginx_log_settled
expect "the server logged the read under the root" grep -q "GET /auth/sec/" "$ACCESS"
if grep -q "OUTSIDE" "$ACCESS"; then
    fail "the server saw a request for OUTSIDE.fits: $(grep OUTSIDE "$ACCESS" | head -2)"
else
    pass "the server never saw a request for OUTSIDE.fits"
fi
# the attack is real: the server serves the escaped path from outside the root
expect "nginx itself normalises sec/%2e%2e/ and serves OUTSIDE.fits" \
    test "$(curl -s --path-as-is -H "Authorization: Bearer sekrit-token" "$NGINX_URL/auth/sec/%2e%2e/OUTSIDE.fits")" = outside
expect_no_secret "sekrit-token" "bearer token" "$T"/daemon.*.log "$T"/daemon.*.stderr
expect_no_sanitizer "$T"/daemon.*.log "$T"/daemon.*.stderr
finish
