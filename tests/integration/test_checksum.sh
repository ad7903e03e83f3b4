#!/usr/bin/env bash
# test_checksum.sh - a server that corrupts one byte in transit (status and
# length kept) against the registry's whole-file checksum (issue 10,
# defects 1 and 2), through a real mount and the kernel's page cache.
#
# Checks: while the server corrupts, every `cat` of the file fails (the
# first with EIO at its end, and the second and third too: none is served
# the pages the first one left in the kernel's cache); once the server is
# clean, `cat` gives the right bytes.  A partial read while the server
# corrupts (its bad block lands in the daemon's cache and the kernel's)
# does not make a later whole read fail or return the wrong bytes once the
# server is clean.
#
# The server is a small Python HTTP/1.1 server (ranges, ETag, keep-alive)
# that inverts the byte at FLIP_AT of a file in every ranged reply that
# carries it while its control file holds a non-zero count (-1: for ever).
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 is not installed"

T=$BFS_TMP
WWW=$T/www
mkdir -p "$WWW" "$T/mnt" "$T/cache"
FLIP_AT=$((1536 * 1024)) # in the second 1 MiB block

cat >"$T/server.py" <<'PY'
import os, re, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
root, ctl, flip_at, portfile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
lock = threading.Lock()

def flip_now():
    with lock:
        n = int(open(ctl).read().strip() or 0)
        if n > 0:
            open(ctl, "w").write(str(n - 1))
        return n != 0

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def head(self, code, size, extra=()):
        self.send_response(code)
        self.send_header("Content-Length", str(size))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
    def target(self):
        if not self.path.startswith("/data/") or ".." in self.path:
            return None
        p = os.path.join(root, self.path[len("/data/"):])
        return p if os.path.isfile(p) else None
    def do_HEAD(self):
        p = self.target()
        if not p:
            return self.head(404, 0)
        st = os.stat(p)
        self.head(200, st.st_size, [("ETag", '"%x-%x"' % (st.st_size, int(st.st_mtime))), ("Accept-Ranges", "bytes")])
    def do_GET(self):
        p = self.target()
        if not p:
            return self.head(404, 0)
        data = open(p, "rb").read()
        st = os.stat(p)
        etag = ("ETag", '"%x-%x"' % (st.st_size, int(st.st_mtime)))
        m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if not m:
            self.head(200, len(data), [etag])
            return self.wfile.write(data)
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else len(data) - 1
        if a >= len(data) or b < a:
            return self.head(416, 0, [("Content-Range", "bytes */%d" % len(data))])
        b = min(b, len(data) - 1)
        body = bytearray(data[a:b + 1])
        if a <= flip_at <= b and flip_now():
            body[flip_at - a] ^= 0xFF
        self.head(206, len(body), [etag, ("Content-Range", "bytes %d-%d/%d" % (a, b, len(data)))])
        self.wfile.write(body)

s = ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
open(portfile + ".tmp", "w").write(str(s.server_address[1]))
os.rename(portfile + ".tmp", portfile)
s.serve_forever()
PY

# A repository of two files of 3 MiB and a bit: build it locally, move the
# data files to the server's root, point butler.yaml at it (remote_repo
# needs the URL first: the server is started on the files afterwards).
echo 0 >"$T/flips"
"$BFS_BIN" synth "$T/repo" --exposures 2 --detectors 1 --payload $((3 * 1024 * 1024 + 12345)) >/dev/null 2>&1 \
    || { fail "synth"; finish; }
mkdir -p "$WWW/repo"
mv "$T/repo/LSSTCam" "$WWW/repo/"
mapfile -t ROWS < <(sqlite3 "$T/repo/gen3.sqlite3" "SELECT path FROM file_datastore_records ORDER BY path")
[ "${#ROWS[@]}" -eq 2 ] || { fail "two datastore rows, got ${#ROWS[@]}"; finish; }
A=${ROWS[0]} B=${ROWS[1]}
b2() { python3 -c 'import hashlib,sys; print(hashlib.blake2b(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }
for row in "$A" "$B"; do
    sqlite3 "$T/repo/gen3.sqlite3" "UPDATE file_datastore_records SET checksum = '$(b2 "$WWW/repo/$row")' WHERE path = '$row'"
done

python3 "$T/server.py" "$WWW" "$T/flips" "$FLIP_AT" "$T/port" 2>"$T/server.err" &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null; bfs_cleanup' EXIT
for _ in $(seq 50); do [ -s "$T/port" ] && break; sleep 0.1; done
[ -s "$T/port" ] || { fail "the test server did not start: $(cat "$T/server.err")"; finish; }
URL=http://127.0.0.1:$(cat "$T/port")
sed -i "s|^  root: <butlerRoot>|  root: $URL/data/repo/|" "$T/repo/butler.yaml"
grep -q "root: $URL/data/repo/" "$T/repo/butler.yaml" || { fail "rewrite of the datastore root"; finish; }

remote_config "$T/config.yaml" "$T/cache" 10s

mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml,xattr" || finish
# the mounted file of a datastore row
mounted_of()
{
    local f
    while IFS= read -r f; do
        [ "$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.butler.location").decode())' "$f")" = "$1" ] \
            && { echo "$f"; return 0; }
    done < <(find "$T/mnt" -type f)
    return 1
}
FA=$(mounted_of "$A") && FB=$(mounted_of "$B") || { fail "the mounted files of $A and $B"; finish; }
sha() { sha256sum | cut -d' ' -f1; }
WANT_A=$(sha <"$WWW/repo/$A") WANT_B=$(sha <"$WWW/repo/$B")

# cat_ok FILE WANT: cat succeeds with the right bytes; cat_never_wrong FILE
# WANT: cat fails, or gives the right bytes (never the wrong ones, exit 0)
cat_result() # prints ok, wrong or failed
{
    local got
    if got=$(cat "$1" | sha); then
        [ "$got" = "$2" ] && echo ok || echo wrong
    else
        echo failed
    fi
}

# defect 1: the server corrupts A for ever; no cat returns its bytes with success
echo -1 >"$T/flips"
for i in 1 2 3; do
    r=$(cat_result "$FA" "$WANT_A")
    expect "cat $i of a file a server corrupts fails ($r)" test "$r" = failed
done
expect "the mismatch is logged" grep -q "does not match the registry's checksum" "$BFS_LOG"
# the server is clean again: the right bytes
echo 0 >"$T/flips"
r=$(cat_result "$FA" "$WANT_A")
expect "cat after the server heals gives the right bytes ($r)" test "$r" = ok
r=$(cat_result "$FA" "$WANT_A")
expect "and again, from the cache ($r)" test "$r" = ok

# defect 2: a partial read of B while the server corrupts it (the bad block
# lands in both caches), then the server is clean: a whole read succeeds
# with the right bytes
echo -1 >"$T/flips"
dd if="$FB" of="$T/part.bin" bs=4096 skip=$((FLIP_AT / 4096)) count=1 status=none
expect "the partial read was served the corrupted byte (the setup)" \
    test "$(sha <"$T/part.bin")" != "$(dd if="$WWW/repo/$B" bs=4096 skip=$((FLIP_AT / 4096)) count=1 status=none | sha)"
echo 0 >"$T/flips"
r=$(cat_result "$FB" "$WANT_B")
expect "a whole read after the server heals gives the right bytes, no error ($r)" test "$r" = ok

unmount
expect_no_sanitizer "$T"/daemon.*.log "$T"/daemon.*.stderr
finish
