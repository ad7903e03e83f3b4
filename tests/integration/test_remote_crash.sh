#!/usr/bin/env bash
# test_remote_crash.sh - the crash story of the remote block cache (nginx on
# loopback, a bearer-token replica).
#
#   (a) kill -9 of the mount daemon in the middle of a large sequential read,
#       lazy unmount of the dead mount, remount: the file reads byte-identical
#       and `butlerfs cache verify` finds no bad block (orphans at most);
#   (b) kill -9 of `butlerfs prefetch` mid-run, prefetch again: it completes
#       and every file reads back identical with the server hung;
#   (c) two mounts of one repository sharing one cache directory, reading
#       (partly the same) files at once: all byte-identical, verify clean;
#   (d) eight concurrent `head -c 100000` of one uncached file through one
#       mount cause exactly one GET;
#   the bearer token appears in no daemon log or prefetch output.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
skip_unless_fuse
command -v nginx >/dev/null 2>&1 || skip "nginx is not installed"
trap 'nginx_cont; nginx_stop; bfs_cleanup' EXIT

T=$BFS_TMP
WWW=$T/www
# the cache directories are left to the mounts to create: `butlerfs cache`
# run on an existing empty directory would create the cache with its own
# default block size (4 MiB), which is then fixed
mkdir -p "$WWW" "$T/mnt" "$T/mnt2"
# log the Range header of each request, for (d)
NGINX_LOG_FORMAT='$request $status $body_bytes_sent range=$http_range'
nginx_start "$WWW" || skip "nginx would not start"
echo probe >"$WWW/probe"
# nginx writes the log line after the response has gone: poll for it
expect "nginx logs the Range header" \
    bash -c "curl -s -r 0-1 '$NGINX_URL/data/probe' >/dev/null &&
             for i in \$(seq 50); do grep -q 'range=bytes=0-1' '$NGINX_DIR/access.log' && exit 0; sleep 0.1; done; exit 1"
NGINX_STOPPED=""
nginx_hang() { kill -STOP "$NGINX_PID"; NGINX_STOPPED=$NGINX_PID; }
nginx_cont() { [ -n "${NGINX_STOPPED:-}" ] && kill -CONT "$NGINX_STOPPED" 2>/dev/null; NGINX_STOPPED=""; return 0; }

SIZE=$((64 * 1024 * 1024))
remote_repo "$T/repo" "$WWW/repo" "$NGINX_URL/data/repo/" 2 2 $SIZE || finish
TOKEN=sekrit-token          # what nginx.sh's /auth/ location wants
printf '%s\n' "$TOKEN" >"$T/token"
chmod 600 "$T/token"

# 64 KiB blocks: a 64 MiB file is 1024 blocks (1024 index commits), so a
# kill lands between, and during, many block writes.
write_config() {   # FILE CACHE_DIR BLOCK_SIZE
    cat >"$1" <<EOF2
cache:
  dir: $2
  block_size: $3
  max_size: 2GiB
  min_free: 1MiB
fetch:
  token_file: $T/token
  deadline: 10s
  attempts: 2
  backoff_base: 10ms
  backoff_max: 50ms
  connect_timeout: 1s
  request_timeout: 2s
sources:
  - prefix: $NGINX_URL/data/
    replicas:
      - $NGINX_URL/auth/
EOF2
}
C=$T/config.yaml
write_config "$C" "$T/cache" 64KiB
write_config "$T/config1m.yaml" "$T/cache1m" 1MiB

RAW=LSSTCam/raw/all/raw/instrument=LSSTCam
declare -A SRC
# map_files MNT: FILES (sorted mounted paths) and SRC[path] = datastore file
map_files() {
    local f loc
    mapfile -t FILES < <(cd "$1" && find "$RAW" -type f | sort)
    while IFS=$'\t' read -r f loc; do
        SRC[$f]=$WWW/repo/$loc
    done < <(cd "$1" && python3 -c '
import os, sys
for f in sys.argv[1:]:
    print(f + "\t" + os.getxattr(f, "user.butler.location").decode())' "${FILES[@]}")
}
same() { cmp -s "$1/$2" "${SRC[$2]}" || { echo "differs or unreadable: $1/$2" >&2; return 1; }; }
cache() { "$BFS_BIN" cache --dir "$T/cache" "$@"; }
stat_field() { cache stats | awk -v k="$1" '$1 == k {print $2}'; }
dropped_total() { cache stats | sed -n 's/.*dropped as corrupt or missing: \([0-9]*\).*/\1/p'; }
# kill_daemon: SIGKILL the last daemon, detach its dead mount, reap it
kill_daemon() {
    kill -KILL "$BFS_PID" 2>/dev/null
    wait "$BFS_PID" 2>/dev/null
    fusermount3 -uz -- "$1" 2>/dev/null
    BFS_PID=""
}
# verify_clean WHAT: verify the cache; pass when it drops no recorded block
# (orphan files of a killed writer may be removed)
verify_clean() {
    local d0 d1 out rc
    d0=$(dropped_total)
    out=$(cache verify 2>&1 | tail -1)
    rc=$?
    d1=$(dropped_total)
    echo "verify: $out"
    expect "$1: cache verify exits 0 ($out)" test $rc -eq 0
    expect "$1: verify found no bad block (dropped counter $d0 -> $d1)" test "${d0:-x}" = "${d1:-y}"
    expect "$1: nothing left for a second verify to drop" \
        bash -c "'$BFS_BIN' cache --dir '$T/cache' verify 2>&1 | tail -1 | grep -q ': 0 bad; removed 0 leftover'"
}

# ---- (a) kill -9 of the daemon mid-read ------------------------------------
mount_repo "$T/repo" "$T/mnt" "config=$C,xattr" || finish
map_files "$T/mnt"
expect "four 64 MiB remote files" test "${#FILES[@]}" -eq 4
A=${FILES[0]}
# kill when the reader has 1, 16 or 40 MiB (read-ahead is then fetching
# and storing blocks further on); at most 20 s each
mid=0
for mib in 1 16 40; do
    [ -n "$BFS_PID" ] || mount_repo "$T/repo" "$T/mnt" "config=$C" || finish
    cache clear >/dev/null 2>&1
    : >"$T/a.out"
    cat "$T/mnt/$A" >"$T/a.out" 2>/dev/null &
    cpid=$!
    for _ in $(seq 2000); do
        [ "$(stat -c %s "$T/a.out")" -ge $((mib * 1024 * 1024)) ] && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.01
    done
    kill_daemon "$T/mnt"
    got=$(stat -c %s "$T/a.out")
    wait "$cpid" 2>/dev/null
    echo "kill -9 at >= $mib MiB: the reader had $got of $SIZE bytes"
    [ "$got" -gt 0 ] && [ "$got" -lt "$SIZE" ] && mid=$((mid + 1))
    cp "$BFS_LOG" "$T/killed.$mib.log"
done
expect "the kill -9 landed in the middle of the read ($mid of 3 times)" test $mid -ge 2
expect "the cache has 64 KiB blocks (as configured)" bash -c "'$BFS_BIN' cache --dir '$T/cache' stats | grep -Eq '^blocks .*\(64.0 KiB each at most\)'"
blocks=$(stat_field blocks)
echo "after the kills: ${blocks:-?} blocks cached"
mount_repo "$T/repo" "$T/mnt" "config=$C,loglevel=debug" || finish
expect "(a) after kill -9 and remount the file reads byte-identical" same "$T/mnt" "$A"
expect "(a) no cached block was found bad while reading" bash -c "! grep -q 'dropped cached block' '$BFS_LOG'"
check_log
verify_clean "(a)"
nginx_hang
mount_repo "$T/repo" "$T/mnt" "config=$C" || finish
expect "(a) with the server hung the file reads byte-identical from the cache" same "$T/mnt" "$A"
check_log
nginx_cont

# ---- (b) kill -9 of prefetch mid-run ----------------------------------------
cache clear >/dev/null 2>&1
"$BFS_BIN" prefetch "$T/repo" "$RAW" --jobs 4 --config "$C" >"$T/pf.1.out" 2>"$T/pf.1.err" &
ppid=$!
sleep 0.3
if kill -0 "$ppid" 2>/dev/null; then
    kill -KILL "$ppid"
    wait "$ppid" 2>/dev/null
    pass "(b) prefetch killed with SIGKILL while running ($(stat_field blocks) blocks cached)"
else
    wait "$ppid"
    fail "(b) prefetch finished within 0.3 s: the kill did not land mid-run"
fi
"$BFS_BIN" prefetch "$T/repo" "$RAW" --jobs 4 --config "$C" >"$T/pf.2.out" 2>"$T/pf.2.err"
rc=$?
cat "$T/pf.2.out"
expect "(b) prefetch again exits 0 (rc $rc)" test $rc -eq 0
expect "(b) ... all four files, none failed" \
    grep -Eq "^prefetch: 4 files, .* read \($((4 * SIZE)) B\); .*, 0 failed$" "$T/pf.2.out"
expect "(b) ... the blocks of the killed run were reused" \
    grep -Eq ", [1-9][0-9]* blocks taken from the cache;" "$T/pf.2.out"
verify_clean "(b)"
nginx_hang
mount_repo "$T/repo" "$T/mnt" "config=$C" || finish
ok=1
for f in "${FILES[@]}"; do same "$T/mnt" "$f" || ok=0; done
expect "(b) with the server hung all four files read byte-identical" test $ok -eq 1
check_log
nginx_cont

# ---- (c) two mounts sharing one cache directory ------------------------------
cache clear >/dev/null 2>&1
mount_repo "$T/repo" "$T/mnt" "config=$C" || finish
P1=$BFS_PID L1=$BFS_LOG E1=$BFS_ERR
mount_repo "$T/repo" "$T/mnt2" "config=$C" || finish
P2=$BFS_PID L2=$BFS_LOG E2=$BFS_ERR
# mnt reads files 0 and 1, mnt2 reads 1 and 2 (file 1 by both processes)
pids=()
(same "$T/mnt" "${FILES[0]}") & pids+=($!)
(same "$T/mnt" "${FILES[1]}") & pids+=($!)
(same "$T/mnt2" "${FILES[1]}") & pids+=($!)
(same "$T/mnt2" "${FILES[2]}") & pids+=($!)
bad=0
for p in "${pids[@]}"; do wait "$p" || bad=1; done
expect "(c) two mounts, one cache: concurrent reads all byte-identical" test $bad -eq 0
check_log                               # mnt2 (the last mount)
BFS_PID=$P1 BFS_LOG=$L1 BFS_ERR=$E1
BFS_MOUNTS+=("$T/mnt")                  # so check_log unmounts mnt
check_log
verify_clean "(c)"
nginx_hang
mount_repo "$T/repo" "$T/mnt" "config=$C" || finish
ok=1
for f in "${FILES[0]}" "${FILES[1]}" "${FILES[2]}"; do same "$T/mnt" "$f" || ok=0; done
expect "(c) with the server hung the three files read from the shared cache" test $ok -eq 1
check_log
nginx_cont

# ---- (d) concurrent readers of one block: one fetch --------------------------
# 1 MiB blocks, an empty cache: the first 100000 bytes are block 0.
D=${FILES[3]}
Dname=$(basename "${SRC[$D]}")
mount_repo "$T/repo" "$T/mnt" "config=$T/config1m.yaml" || finish
# one reader first (another uncached file): a 100 kB read is block 0 only
S=${FILES[2]}
Sname=$(basename "${SRC[$S]}")
: >"$NGINX_DIR/access.log"
head -c 100000 "$T/mnt/$S" >"$T/s.out"
sleep 0.3 # read-ahead, if any, starts
nginx_log_settled
expect "(d) one reader: the first 100000 bytes are right" cmp -s "$T/s.out" <(head -c 100000 "${SRC[$S]}")
gets=$(grep -c "^GET [^ ]*$Sname " "$NGINX_DIR/access.log")
echo "(d) one reader, $Sname: $(grep "^GET [^ ]*$Sname " "$NGINX_DIR/access.log" | sed 's/.*range=//' | tr '\n' ' ')"
expect "(d) one reader of 100 kB caused one GET, no read-ahead ($gets)" test "$gets" -eq 1
# eight at once
: >"$NGINX_DIR/access.log"
pids=()
for i in 1 2 3 4 5 6 7 8; do
    head -c 100000 "$T/mnt/$D" >"$T/d.$i" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
sleep 0.3 # read-ahead, if any, starts
nginx_log_settled
ok=1
for i in 1 2 3 4 5 6 7 8; do cmp -s "$T/d.$i" <(head -c 100000 "${SRC[$D]}") || ok=0; done
expect "(d) eight concurrent readers got the right 100000 bytes" test $ok -eq 1
gets=$(grep -c "^GET [^ ]*$Dname " "$NGINX_DIR/access.log")
heads=$(grep -c "^HEAD [^ ]*$Dname " "$NGINX_DIR/access.log")
gets0=$(grep -c "^GET [^ ]*$Dname .* range=bytes=0-" "$NGINX_DIR/access.log")
expect "(d) eight concurrent readers of block 0 caused exactly one GET of block 0 ($gets0)" test "$gets0" -eq 1
echo "(d) requests for $Dname: $heads HEAD, $gets GET: $(grep "^GET [^ ]*$Dname " "$NGINX_DIR/access.log" | sed 's/.*range=//' | tr '\n' ' ')"
expect "(d) ... and no other GET: read-ahead adds nothing for 100 kB reads ($gets GETs in all)" test "$gets" -eq 1
check_log

# ---- secrets and sanitizers ---------------------------------------------------
expect_no_secret "$TOKEN" "bearer token" "$T"/daemon.*.log "$T"/daemon.*.stderr "$T"/killed.*.log "$T"/pf.*
expect_no_sanitizer "$T"/daemon.*.log "$T"/daemon.*.stderr "$T"/pf.*.err
finish
