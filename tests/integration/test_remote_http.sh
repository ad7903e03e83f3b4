#!/usr/bin/env bash
# test_remote_http.sh - datasets whose bytes live on an HTTP/WebDAV server
# (nginx on loopback), read lazily through the verified block cache.
#
# Checks: byte-identical reads (sequential, random offsets, many readers at
# once); a header read moves at most one cache block; cache hits after a
# remount with the server stopped; a corrupted cache block is detected and
# fetched again; failover past a failing replica (503) and a local summit
# cache replica; failure within the deadline when every replica stalls; a
# bearer token never appears in any log; HTTPS with a site CA (fetch.ca_file)
# reads byte-identical data, and without it the refused certificate is not
# retried (skipped when openssl is not installed); the registry's whole-file
# checksum is checked; with -o direct_io reads are byte-identical, keep nothing
# in the kernel page cache, and private mappings work.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
skip_unless_fuse
command -v nginx >/dev/null 2>&1 || skip "nginx is not installed"
trap 'nginx_stop; bfs_cleanup' EXIT

T=$BFS_TMP
WWW=$T/www
mkdir -p "$WWW" "$T/mnt" "$T/cache"
nginx_make_certs "$T/tls"
case $? in
    0) export NGINX_TLS_DIR=$T/tls ;;
    77) echo "openssl is not installed: no https checks" ;;
    *) fail "nginx_make_certs" ;;
esac
nginx_start "$WWW" || skip "nginx would not start"

# A repository whose datastore root is the server: build it locally, move
# the data files to the server's document root, point butler.yaml at it.
remote_repo "$T/repo" "$WWW/repo" "$NGINX_URL/data/repo/" 2 3 $((9 * 1024 * 1024 + 12345)) || finish

remote_config "$T/config.yaml" "$T/cache" 20s

RAW=LSSTCam/raw/all/raw/instrument=LSSTCam

# reads_match FILE...: every mounted FILE reads back with its datastore file's sha256
reads_match()
{
    local f
    for f in "$@"; do
        cat "$T/mnt/$f" | sha256sum | cut -d' ' -f1 | cmp -s - "$T/$(basename "$f").sum" || return 1
    done
}
# resident_pages FILE most|none: FILE's pages in the kernel page cache, by
# cachestat(2) (Linux >= 6.5; it maps nothing), else by mincore(2) through a
# private mapping (which, with direct_io, empties the cache first)
resident_pages()
{
    python3 - "$@" <<'PY'
import ctypes, mmap, os, sys
path, want = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
size = os.path.getsize(path)
pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
with open(path, "rb") as f:
    rng = (ctypes.c_uint64 * 2)(0, 0)          # off, len (0: to the end)
    st = (ctypes.c_uint64 * 5)()               # nr_cache, nr_dirty, ...
    if libc.syscall(451, f.fileno(), rng, st, 0) == 0:   # __NR_cachestat
        n, how = st[0], "cachestat"
    else:
        how = "mincore"
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as m:
            vec = ctypes.create_string_buffer(pages)
            addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
            if libc.mincore(addr, size, vec) != 0:
                sys.exit("mincore: " + os.strerror(ctypes.get_errno()))
            n = sum(b & 1 for b in vec.raw)
print(f"{n} of {pages} pages resident ({how})", file=sys.stderr)
sys.exit(0 if (n == 0 if want == "none" else n >= pages // 2) else 1)
PY
}
# full_reads FILE SRC: every pread at random offsets returns exactly what is
# asked up to the end (direct_io hands a short reply to the reader as it is)
full_reads()
{
    python3 - "$@" <<'PY'
import os, random, sys
mnt, src = sys.argv[1], sys.argv[2]
ref = open(src, "rb").read()
random.seed(11)
fd = os.open(mnt, os.O_RDONLY)
for i in range(300):
    n = random.choice([1, 2880, 65537, (1 << 20) + 1, 8 << 20, random.randrange(1, 4 << 20)])
    off = random.randrange(0, len(ref) + 10)
    got = os.pread(fd, n, off)
    if got != ref[off:off + n]:
        sys.exit(f"pread({n}, {off}) gave {len(got)} bytes, want {len(ref[off:off + n])}")
PY
}
# writes need a local datastore: -o rw on this one is refused before mounting
"$BFS_BIN" mount "$T/repo" "$T/mnt" -o "rw,config=$T/config.yaml" >"$T/rw.out" 2>&1
expect "-o rw on a repository whose datastore root is remote is refused in one sentence" \
    grep -q "\-o rw needs a repository whose datastore root is a local directory" "$T/rw.out"
expect "... and nothing was mounted" bash -c "! mountpoint -q '$T/mnt'"
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml,xattr" || finish
mapfile -t FILES < <(cd "$T/mnt" && find "$RAW" -type f | sort)
expect "six remote files listed" test "${#FILES[@]}" -eq 6
f0=${FILES[0]}
# the datastore file behind each mounted file, and its checksum
declare -A SRC
for f in "${FILES[@]}"; do
    SRC[$f]=$WWW/repo/$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.butler.location").decode())' "$T/mnt/$f")
    sha256sum "${SRC[$f]}" | cut -d' ' -f1 >"$T/$(basename "$f").sum"
done

# header read: at most one block (1 MiB) of body bytes may cross the network
: >"$NGINX_DIR/access.log"
head -c 2880 "$T/mnt/$f0" >"$T/head.bin"
nginx_log_settled
moved=$(awk '{s += $10} END {print s + 0}' "$NGINX_DIR/access.log")
expect "header read moved $moved bytes (at most one 1 MiB block)" test "$moved" -le $((1024 * 1024))
# the first open of a file is one request: the GET of its first block pins it
reqs=$(grep -c . "$NGINX_DIR/access.log") heads=$(grep -c '"HEAD ' "$NGINX_DIR/access.log")
expect "a header read of a file never opened before is one request ($reqs, $heads HEAD)" test "$reqs" -eq 1 -a "$heads" -eq 0
expect "header bytes correct" cmp -s "$T/head.bin" <(head -c 2880 "${SRC[$f0]}")

# every file byte-identical, several readers at once
pids=()
for f in "${FILES[@]}"; do
    (cat "$T/mnt/$f" | sha256sum | cut -d' ' -f1 >"$T/$(basename "$f").got") & pids+=($!)
done
wait "${pids[@]}"
ok=1
for f in "${FILES[@]}"; do
    cmp -s "$T/$(basename "$f").got" "$T/$(basename "$f").sum" || { ok=0; fail "content of $f differs"; }
done
[ $ok = 1 ] && pass "six files read concurrently, each byte-identical to its datastore file"

# random offsets (python reads at odd offsets and lengths, compares)
python3 - "$T/mnt/$f0" "${SRC[$f0]}" <<'PY' && pass "random-offset reads match" || fail "random-offset reads differ"
import random, sys
mnt, src = sys.argv[1], sys.argv[2]
ref = open(src, "rb").read()
random.seed(7)
with open(mnt, "rb") as f:
    for _ in range(200):
        off = random.randrange(0, len(ref))
        n = random.randrange(1, 3 * 1024 * 1024)
        f.seek(off)
        if f.read(n) != ref[off:off + n]:
            sys.exit(1)
PY
expect "after a read the kernel page cache holds the file" resident_pages "$T/mnt/$f0" most
unmount

# -o direct_io: the same bytes, nothing kept in the kernel page cache (every
# read reaches the daemon, from the block cache here), private mappings work
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml,direct_io" || finish
expect "every file reads byte-identical with direct_io" reads_match "${FILES[@]}"
expect "with direct_io a read leaves nothing in the kernel page cache" resident_pages "$T/mnt/$f0" none
expect "with direct_io every pread returns all it asks for up to the end" full_reads "$T/mnt/$f0" "${SRC[$f0]}"
python3 - "$T/mnt/$f0" "${SRC[$f0]}" <<'PY' && pass "direct_io: private mmap reads the file's bytes; shared mmap works or fails with ENODEV" || fail "direct_io: mmap"
import errno, mmap, sys
mnt, src = sys.argv[1], sys.argv[2]
ref = open(src, "rb").read()
with open(mnt, "rb") as f:
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as m:
        if m[:] != ref:
            sys.exit("private mapping differs")
    try:
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m[:] != ref:
                sys.exit("shared mapping differs")
    except OSError as e:
        if e.errno != errno.ENODEV:
            raise
PY
unmount
# a local repository's files (replies spliced from the datastore files) too:
# the mounted files' checksums are the datastore files' checksums
"$BFS_BIN" synth "$T/local" --exposures 1 --detectors 2 --payload 3000001 >/dev/null 2>&1 || fail "synth of $T/local"
mkdir -p "$T/lmnt"
mount_repo "$T/local" "$T/lmnt" "direct_io" || finish
sums() { find "$1" -name '*.fits' -type f -exec sha256sum {} + | cut -d' ' -f1 | sort; }
sums "$T/lmnt" >"$T/lmnt.sums"
sums "$T/local/LSSTCam" >"$T/local.sums"
expect "direct_io: two local files read byte-identical" test "$(wc -l <"$T/lmnt.sums")" -eq 2
expect "direct_io: local files match their datastore files" cmp -s "$T/lmnt.sums" "$T/local.sums"
lf=$(find "$T/lmnt" -name '*.fits' -type f | head -1)
expect "direct_io: a local file leaves nothing in the kernel page cache" resident_pages "$lf" none
lsum=$(sha256sum "$lf" | cut -d' ' -f1)
lsrc=$(find "$T/local/LSSTCam" -type f -exec sha256sum {} + | awk -v s="$lsum" '$1 == s {print $2; exit}')
expect "direct_io: every pread of a local file returns all it asks for" full_reads "$lf" "$lsrc"
unmount

# corrupt one cached block: detected, dropped, fetched again
blk=$(find "$T/cache" -path '*blocks*' -type f -size +100k | head -1)
if [ -n "$blk" ]; then
    printf 'X' | dd of="$blk" bs=1 seek=1000 conv=notrunc status=none
    mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml" || finish
    expect "after corrupting a cached block every file still reads correctly" reads_match "${FILES[@]}"
    expect "the corrupt block was reported" grep -q "dropped cached block" "$BFS_LOG"
    unmount
else
    fail "no cached block file found under $T/cache"
fi

# remount with the server stopped: everything read before is served from the cache
nginx_stop
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml" || finish
expect "every cached file readable with the server down" reads_match "${FILES[@]}"
unmount
nginx_start "$WWW" || skip "nginx would not restart"
sed -i "s|root: http://127.0.0.1:[0-9]*/data/repo/|root: $NGINX_URL/data/repo/|" "$T/repo/butler.yaml"

# failover: the first replica answers 503, a summit cache directory lacks the
# file, the last replica is the real server
rm -rf "$T/cache"
mkdir -p "$T/summit"
cat >>"$T/config.yaml" <<EOF2
sources:
  - prefix: $NGINX_URL/data/
    replicas:
      - file://$T/summit/
      - $NGINX_URL/fail503/
      - $NGINX_URL/data/
EOF2
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml" || finish
: >"$NGINX_DIR/access.log"
expect "read through failover past a 503 replica" reads_match "$f0"
nginx_log_settled
n503=$(grep -c '/fail503/' "$NGINX_DIR/access.log")
# the failing replica is skipped once it failed, though the good one is on
# the same server: not tried again for each of the file's 10 blocks
expect "the 503 replica was given up after a few requests ($n503)" test "$n503" -le 5
expect "the log says why the replica is skipped" grep -q "fail503/ is failing (server errors); skipping it for 30 s" "$BFS_LOG"
# a file present in the summit cache is served from there
cp -a "$WWW/repo" "$T/summit/"
f1=${FILES[1]}
expect "summit cache replica serves its copy" reads_match "$f1"
unmount

# a local replica listed after a failing remote one is still tried
sed -i '/^sources:/,$d' "$T/config.yaml"
cat >>"$T/config.yaml" <<EOF2
sources:
  - prefix: $NGINX_URL/data/
    replicas:
      - $NGINX_URL/fail503/
      - file://$T/summit/
EOF2
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml" || finish
expect "a local replica after a failing remote one serves the file" reads_match "$f1"
unmount

# a host that never answers (connections time out: a listener whose accept
# queue is full drops every SYN) serving two replicas: the first connect
# timeout marks the host, so its second replica is never tried
python3 - 120 >"$T/blackhole.port" <<'PYEOF' &
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
port = s.getsockname()[1]
held = []
for _ in range(4):  # fill the accept queue; nothing is ever accepted
    c = socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1", port))
    except BlockingIOError: pass
    held.append(c)
print(port, flush=True)
time.sleep(float(sys.argv[1]))
PYEOF
BH_PID=$!
trap 'kill "$BH_PID" 2>/dev/null; nginx_stop; bfs_cleanup' EXIT
for _ in $(seq 50); do [ -s "$T/blackhole.port" ] && break; sleep 0.1; done
[ -s "$T/blackhole.port" ] || fail "the blackhole listener did not start"
BH=http://127.0.0.1:$(cat "$T/blackhole.port")
rm -rf "$T/cache"
sed -i '/^sources:/,$d; s/connect_timeout: 2s/connect_timeout: 1s/' "$T/config.yaml"
cat >>"$T/config.yaml" <<EOF2
sources:
  - prefix: $NGINX_URL/data/
    replicas:
      - $BH/a/
      - $BH/b/
      - $NGINX_URL/data/
EOF2
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml,loglevel=debug" || finish
t0=$(date +%s%N)
expect "reads past a host that never answers are byte-identical" reads_match "${FILES[2]}"
ms=$((($(date +%s%N) - t0) / 1000000))
# butlerfs status: the mount, its traffic, and the host being skipped
sleep 2.5 # one status period
"$BFS_BIN" status >"$T/status.out" 2>&1
expect "butlerfs status names the mount and says the dead host is skipped, and why" \
    bash -c "grep -q '^$T/mnt: repository ' '$T/status.out' &&
             grep -Eq 'skipping +host $BH for [0-9]+ s more \(no connection within connect_timeout\)' '$T/status.out'"
sed 's/^/    | /' "$T/status.out"
"$BFS_BIN" status --json "$T/mnt" >"$T/status.json"
expect "butlerfs status --json MNT: bytes from servers, blocks, the skipped host" python3 - "$T/status.json" "$BH" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s) == 1, s
f = s[0]["fetch"]
assert f["bytes_from_servers"] >= 9 * 1024 * 1024 and f["blocks_fetched"] >= 9, f
assert f["cache_misses"] >= 9 and f["memory_budget"] > 0, f
assert [(k["kind"], k["name"]) for k in s[0]["skipped"]] == [("host", sys.argv[2])], s[0]["skipped"]
PY
expect "the status file is private (mode 600)" test "$(stat -c %a "$XDG_RUNTIME_DIR"/butlerfs/mount.*.json)" = 600
"$BFS_BIN" status "$T/repo" >/dev/null 2>&1
expect "butlerfs status of a directory with no mount exits 1" test $? -eq 1
unmount
expect "unmounting removed the status file" test -z "$(ls "$XDG_RUNTIME_DIR/butlerfs")"
na=$(grep -c "$BH/a/" "$BFS_LOG")
nb=$(grep -c "$BH/b/" "$BFS_LOG")
echo "dead host: read in $ms ms; log lines naming replica a: $na, b: $nb"
expect "the dead host's first replica was tried ($na log lines)" test "$na" -ge 1
expect "its second replica was never tried: the host was skipped ($nb log lines)" test "$nb" -eq 0
# the pinning GET's connect timeout marked the host: no HEAD there after it
expect "one connect timeout (1 s), not one per attempt and request: read in $ms ms" test "$ms" -lt 2500
expect "the log says the host is skipped, and why" \
    grep -q "host $BH is failing (no connection within connect_timeout); skipping every replica there for 30 s" "$BFS_LOG"
kill "$BH_PID" 2>/dev/null
wait "$BH_PID" 2>/dev/null
sed -i 's/connect_timeout: 1s/connect_timeout: 2s/' "$T/config.yaml"

# a replica that fails half of its requests (503): retries with backoff get every block
rm -rf "$T/cache"
sed -i '/^sources:/,$d; s/attempts: 2/attempts: 20/' "$T/config.yaml"
cat >>"$T/config.yaml" <<EOF2
sources:
  - prefix: $NGINX_URL/data/
    replicas:
      - $NGINX_URL/flaky/
EOF2
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml" || finish
expect "reads through a replica failing ~50% of requests are byte-identical" reads_match "${FILES[@]:0:3}"
unmount
sed -i "s/attempts: 20/attempts: 2/" "$T/config.yaml"

# bounded failure: every replica stalls; the read fails with EIO within the deadline
rm -rf "$T/cache" "$T/summit"
sed -i '/^sources:/,$d; s/deadline: 20s/deadline: 3s/; s/request_timeout: 5s/request_timeout: 1s/' "$T/config.yaml"
cat >>"$T/config.yaml" <<EOF2
sources:
  - prefix: $NGINX_URL/data/
    replicas:
      - $NGINX_URL/stall/
EOF2
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml" || finish
t0=$(date +%s)
if timeout 30 cat "$T/mnt/${FILES[2]}" >/dev/null 2>"$T/cat.err"; then
    fail "read with every replica stalling succeeded?"
else
    t1=$(date +%s)
    expect "stalled read failed within 10 s ($((t1 - t0)) s)" test $((t1 - t0)) -le 10
    expect "stalled read reports EIO" grep -q "Input/output error" "$T/cat.err"
fi
unmount

# bearer token: reads through /auth/ work, and the token appears in no log
rm -rf "$T/cache"
printf 'sekrit-token\n' >"$T/token"
chmod 600 "$T/token"
sed -i '/^sources:/,$d; s/deadline: 3s/deadline: 20s/; s/request_timeout: 1s/request_timeout: 5s/' "$T/config.yaml"
cat >>"$T/config.yaml" <<EOF2
  token_file: $T/token
sources:
  - prefix: $NGINX_URL/data/
    replicas:
      - $NGINX_URL/auth/
EOF2
# token_file belongs to fetch: move it under fetch:
python3 - "$T/config.yaml" <<'PY'
import sys
p = sys.argv[1]
lines = open(p).read().splitlines()
tok = [l for l in lines if l.strip().startswith("token_file:")]
lines = [l for l in lines if not l.strip().startswith("token_file:")]
i = lines.index("fetch:")
lines.insert(i + 1, "  " + tok[0].strip())
open(p, "w").write("\n".join(lines) + "\n")
PY
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml,loglevel=debug" || finish
expect "read through a bearer-token replica" reads_match "$f0"
sleep 2.5 # one status period
cp "$XDG_RUNTIME_DIR"/butlerfs/mount.*.json "$T/status.token.json"
"$BFS_BIN" status >"$T/status.token.out" 2>&1
# a daemon killed with -9 leaves its status file: status says it is gone and removes it
kill -KILL "$BFS_PID"
wait "$BFS_PID" 2>/dev/null
"$BFS_BIN" status >"$T/status.dead.out" 2>&1
expect "butlerfs status says a killed daemon is gone, and how to detach its mount" \
    grep -q "pid $BFS_PID) is gone; .*fusermount3 -uz $T/mnt" "$T/status.dead.out"
expect "... and removed its status file" test -z "$(ls "$XDG_RUNTIME_DIR/butlerfs")"
fusermount3 -uz "$T/mnt" 2>/dev/null
BFS_PID=""
expect_no_secret "sekrit-token" "bearer token" "$T"/daemon.*.log "$T"/daemon.*.stderr "$T"/status.*

# https with the test CA as fetch.ca_file: every file byte-identical.  Without
# it the certificate is refused (EACCES), which is not retried: one TLS
# handshake for the open, however many attempts are allowed.
if [ -n "${NGINX_HTTPS_URL:-}" ]; then
    rm -rf "$T/cache"
    sed -i "/^sources:/,\$d; /token_file:/d; /^fetch:/a\\  ca_file: $T/tls/ca.pem" "$T/config.yaml"
    cat >>"$T/config.yaml" <<EOF2
sources:
  - prefix: $NGINX_URL/data/
    replicas:
      - $NGINX_HTTPS_URL/data/
EOF2
    mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml" || finish
    expect "every file read over https with ca_file is byte-identical" reads_match "${FILES[@]}"
    unmount
    rm -rf "$T/cache" # else the open is answered from the cache's record of the object
    sed '/ca_file:/d; s/attempts: 2/attempts: 4/' "$T/config.yaml" >"$T/config-noca.yaml"
    mount_repo "$T/repo" "$T/mnt" "config=$T/config-noca.yaml" || finish
    refused() { grep -c "alert unknown ca" "$NGINX_DIR/error.log"; }
    before=$(refused)
    if cat "$T/mnt/$f0" >/dev/null 2>"$T/cat.err"; then
        fail "read over https without the CA succeeded?"
    else
        sleep 0.3
        n=$(($(refused) - before))
        expect "a refused certificate is not retried ($n handshakes, 4 attempts allowed)" test "$n" -eq 1
        expect "the daemon log says to set fetch.ca_file" grep -q "fetch.ca_file" "$BFS_LOG"
    fi
    unmount
fi

# the registry's whole-file checksum (BLAKE2b-512 hex, as the Butler records
# it): a matching file reads whole; a file whose checksum does not match fails
# with EIO at its end and is reported; its blocks leave the cache
rm -rf "$T/cache"
sed -i '/^sources:/,$d; /ca_file:/d' "$T/config.yaml"
set_checksum() { # set_checksum FILE HEX: the registry row of mounted FILE
    sqlite3 "$T/repo/gen3.sqlite3" "UPDATE file_datastore_records SET checksum = '$2' WHERE path = '${SRC[$1]#"$WWW/repo/"}'"
}
b2() { python3 -c 'import hashlib,sys; print(hashlib.blake2b(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }
fg=${FILES[3]} fb=${FILES[4]}
set_checksum "$fg" "$(b2 "${SRC[$fg]}")"
set_checksum "$fb" "$(b2 "${SRC[$fg]}")" # another file's: a mismatch
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml" || finish
expect "a file matching its registry checksum reads byte-identical" reads_match "$fg"
if cat "$T/mnt/$fb" >"$T/bad.out" 2>"$T/cat.err"; then
    fail "a file that does not match its registry checksum read without error"
else
    expect "the mismatch is EIO" grep -q "Input/output error" "$T/cat.err"
    expect "the mismatch is logged" grep -q "does not match the registry's checksum" "$BFS_LOG"
    got=$(stat -c %s "$T/bad.out") size=$(stat -c %s "${SRC[$fb]}")
    expect "the read failed before the end ($got of $size bytes)" test "$got" -lt "$size"
fi
unmount
cached=$(find "$T/cache" -path '*blocks*' -type f | wc -l)
want=$(( ($(stat -c %s "${SRC[$fg]}") + 1048575) / 1048576 )) # object records are in the index, not files
expect "only the good file's blocks stay cached ($cached files, want $want)" test "$cached" -eq "$want"
# prefetch reads the bad file whole too: it fails, says which file, exits 1
pfdir=$(dirname "$fb")
if "$BFS_BIN" prefetch "$T/repo" --config "$T/config.yaml" "$pfdir" >"$T/pf.out" 2>"$T/pf.err"; then
    fail "prefetch of a file that does not match its registry checksum succeeded"
else
    expect "prefetch names the bad file and says EIO" grep -q "$(basename "$fb").*Input/output error" "$T/pf.err"
fi

sqlite3 "$T/repo/gen3.sqlite3" "UPDATE file_datastore_records SET checksum = NULL"

# no sanitizer report in any daemon's output
expect_no_sanitizer "$T"/daemon.*.log "$T"/daemon.*.stderr
finish
