#!/usr/bin/env bash
# test_prefetch.sh - `butlerfs prefetch` warms the cache for a selection, and
# `butlerfs cache` manages it.  The data are on nginx behind a bearer token.
#
# Checks: prefetch of a dataId selection exits 0 with a summary; a mount
# with the server hung (SIGSTOP) then reads exactly the prefetched files,
# byte-identical, and fails with EIO within the deadline for a file that was
# not prefetched; a second prefetch of the same selection needs no server;
# a bad selection exits non-zero with one clear message; --from FILE and
# --from - work; cache stats|verify|evict --to 0|clear behave; the token
# appears in no log or output.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
skip_unless_fuse
command -v nginx >/dev/null 2>&1 || skip "nginx is not installed"
trap 'nginx_cont; nginx_stop; bfs_cleanup' EXIT

T=$BFS_TMP
WWW=$T/www
mkdir -p "$WWW" "$T/mnt"    # the cache directory is created by the first prefetch
nginx_start "$WWW" || skip "nginx would not start"
NGINX_STOPPED=""
nginx_hang() { kill -STOP "$NGINX_PID"; NGINX_STOPPED=$NGINX_PID; }
nginx_cont() { [ -n "${NGINX_STOPPED:-}" ] && kill -CONT "$NGINX_STOPPED" 2>/dev/null; NGINX_STOPPED=""; return 0; }

PAYLOAD=$((2 * 1024 * 1024 + 777))
remote_repo "$T/repo" "$WWW/repo" "$NGINX_URL/data/repo/" 2 3 $PAYLOAD || finish

# nginx.sh's /auth/ location wants exactly this token
TOKEN=sekrit-token
code=$(curl -s -o /dev/null -w '%{http_code}' "$NGINX_URL/auth/repo/")
expect "nginx /auth/ refuses a request without the token ($code)" test "$code" = 401
printf '%s\n' "$TOKEN" >"$T/token"
chmod 600 "$T/token"

cat >"$T/config.yaml" <<EOF2
cache:
  dir: $T/cache
  block_size: 1MiB
  max_size: 1GiB
  min_free: 1MiB
fetch:
  token_file: $T/token
  deadline: 4s
  attempts: 2
  backoff_base: 10ms
  backoff_max: 50ms
  connect_timeout: 1s
  request_timeout: 1s
  replica_retry: 0
sources:
  - prefix: $NGINX_URL/data/
    replicas:
      - $NGINX_URL/auth/
EOF2
DEADLINE=4

RAW=LSSTCam/raw/all/raw/instrument=LSSTCam
C=$T/config.yaml
n_out=0
# prefetch ARGS...: run it, stdout to $T/pf.N.out, stderr to $T/pf.N.err
prefetch() {
    n_out=$((n_out + 1))
    PF_OUT=$T/pf.$n_out.out
    PF_ERR=$T/pf.$n_out.err
    "$BFS_BIN" prefetch "$T/repo" "$@" --config "$C" >"$PF_OUT" 2>"$PF_ERR"
}
# mounted files of a detector, and their datastore files (sets DET_FILES, SRC)
declare -A SRC
files_of() {
    local mnt=$1 det=$2 f loc
    mapfile -t DET_FILES < <(cd "$mnt" && find "$RAW/detector=$det" -type f | sort)
    while IFS=$'\t' read -r f loc; do
        SRC[$f]=$WWW/repo/$loc
    done < <(cd "$mnt" && python3 -c '
import os, sys
for f in sys.argv[1:]:
    print(f + "\t" + os.getxattr(f, "user.butler.location").decode())' "${DET_FILES[@]}")
}
# same_files MNT FILE...: each byte-identical to its datastore file
same_files() {
    local mnt=$1 f bad=0
    shift
    for f in "$@"; do
        cmp -s "$mnt/$f" "${SRC[$f]}" || { echo "differs or unreadable: $f" >&2; bad=1; }
    done
    return $bad
}

# ---- prefetch one detector --------------------------------------------------
t0=$(date +%s)
prefetch "$RAW/detector=1"
rc=$?
expect "prefetch detector=1 exits 0 (rc $rc)" test $rc -eq 0
cat "$PF_OUT"
expect "prefetch prints a summary: 2 files, $((2 * PAYLOAD)) bytes, 0 failed" \
    grep -Eq "^prefetch: 2 files, [0-9.]+ MiB read \($((2 * PAYLOAD)) B\); .* received from servers \([0-9]+ B\).*, 0 failed$" "$PF_OUT"
fetched=$(sed -n 's/.*received from servers (\([0-9]*\) B).*/\1/p' "$PF_OUT")
expect "the first prefetch fetched the bytes from the server ($fetched)" test "${fetched:-0}" -ge $((2 * PAYLOAD))
nginx_log_settled
expect "requests carried the token (nginx served 206/200 on /auth/)" \
    grep -Eq '"GET /auth/repo/[^ ]* HTTP/1.1" 20[06] ' "$NGINX_DIR/access.log"

# ---- server hung: the prefetched files read, the others fail with EIO -------
nginx_hang
# a second prefetch of the same selection needs no server at all
prefetch "$RAW/detector=1"
rc=$?
expect "prefetch again with the server hung exits 0 (rc $rc)" test $rc -eq 0
expect "... and fetched nothing" grep -Eq "; 0 B received from servers \(0 B\), [1-9][0-9]* blocks taken from the cache;" "$PF_OUT"

mount_repo "$T/repo" "$T/mnt" "config=$C,xattr,loglevel=debug" || finish
files_of "$T/mnt" 1
D1=("${DET_FILES[@]}")
expect "two files for detector=1" test "${#D1[@]}" -eq 2
expect "server hung: the prefetched files read byte-identical" same_files "$T/mnt" "${D1[@]}"
expect "file sizes intact" test "$(stat -c %s "$T/mnt/${D1[0]}")" -eq $PAYLOAD
check_log

mount_repo "$T/repo" "$T/mnt" "config=$C,xattr" || finish
files_of "$T/mnt" 0
D0=("${DET_FILES[@]}")
t0=$(date +%s%N)
if timeout 60 cat "$T/mnt/${D0[0]}" >/dev/null 2>"$T/cat.err"; then
    fail "a file that was not prefetched read with the server hung?"
else
    secs=$(( ($(date +%s%N) - t0) / 1000000000 ))
    expect "not prefetched: fails within the deadline ($secs s, deadline $DEADLINE s)" test "$secs" -le $((DEADLINE + 2))
    expect "not prefetched: the error is EIO ($(cat "$T/cat.err"))" grep -q "Input/output error" "$T/cat.err"
fi
# the prefetched ones still read in the same mount
expect "server hung: prefetched files still read in the same mount" same_files "$T/mnt" "${D1[@]}"
unmount
if grep -Eq "$BFS_SANITIZER" "$BFS_LOG" "$BFS_ERR"; then fail "sanitizer report"; bfs_show_log; fi
nginx_cont

# ---- bad selections -------------------------------------------------------
for bad in "$RAW/detector=99" "NoSuchCollection/raw" "LSSTCam/raw/all/nosuchtype"; do
    prefetch "$bad"
    rc=$?
    nl=$(grep -c . "$PF_ERR")
    expect "prefetch '$bad' exits non-zero (rc $rc)" test $rc -ne 0
    expect "... with one message naming the path ($(head -1 "$PF_ERR"))" \
        bash -c "[ $nl -eq 1 ] && grep -qF -- '$bad' '$PF_ERR' && grep -q '^butlerfs: prefetch: ' '$PF_ERR'"
done
# a cache that cannot be used: prefetch would keep nothing, so it fails at once
sed "s|^  dir: .*|  dir: /proc/no-cache-here|" "$C" >"$T/nocache.yaml"
grep -q "dir: /proc/no-cache-here" "$T/nocache.yaml" || fail "could not write $T/nocache.yaml"
"$BFS_BIN" prefetch "$T/repo" --config "$T/nocache.yaml" "$RAW" >"$T/pf.nocache.out" 2>"$T/pf.nocache.err"
rc=$?
expect "prefetch with an unusable cache exits 1 ($rc): $(tail -n 1 "$T/pf.nocache.err")" \
    bash -c "[ $rc -eq 1 ] && grep -q 'cache cannot be used' '$T/pf.nocache.err'"
expect "... and fetches nothing" test ! -s "$T/pf.nocache.out"
for j in 0 abc 1000; do
    "$BFS_BIN" prefetch "$T/repo" --jobs "$j" "$RAW" >/dev/null 2>"$T/pf.jobs.err"
    rc=$?
    expect "prefetch --jobs $j is a usage error (rc $rc): $(head -n 1 "$T/pf.jobs.err")" \
        bash -c "[ $rc -eq 2 ] && grep -q -- '--jobs must be a number from 1 to 256' '$T/pf.jobs.err'"
done
"$BFS_BIN" prefetch "$T/repo" --config "$C" >"$T/pf.none.out" 2>"$T/pf.none.err"
rc=$?
expect "prefetch with no path exits non-zero (rc $rc) with one message" \
    bash -c "[ $rc -ne 0 ] && [ \$(grep -c . '$T/pf.none.err') -eq 1 ]"
prefetch --from "$T/no-such-list"
rc=$?
expect "prefetch --from a missing file exits non-zero (rc $rc) with one message ($(head -1 "$PF_ERR"))" \
    bash -c "[ $rc -ne 0 ] && [ \$(grep -c . '$PF_ERR') -eq 1 ] && grep -q 'no-such-list' '$PF_ERR'"

# ---- --from FILE and --from - -----------------------------------------------
printf '# detector 2, both exposures\n\n  %s\n' "$RAW/detector=2" >"$T/list"
prefetch --from "$T/list"
rc=$?
expect "prefetch --from FILE exits 0 (rc $rc)" test $rc -eq 0
expect "... 2 files" grep -Eq "^prefetch: 2 files, .* read \($((2 * PAYLOAD)) B\); .*, 0 failed$" "$PF_OUT"
n_out=$((n_out + 1))
printf '%s\n' "$RAW/detector=0/exposure=2025041500001" |
    "$BFS_BIN" prefetch "$T/repo" --from - --config "$C" >"$T/pf.$n_out.out" 2>"$T/pf.$n_out.err"
rc=$?
expect "prefetch --from - exits 0 (rc $rc)" test $rc -eq 0
expect "... 1 file" grep -Eq "^prefetch: 1 files?, .* read \($PAYLOAD B\); .*, 0 failed$" "$T/pf.$n_out.out"

nginx_hang
mount_repo "$T/repo" "$T/mnt" "config=$C,xattr" || finish
files_of "$T/mnt" 2
D2=("${DET_FILES[@]}")
expect "server hung: the files prefetched --from FILE read byte-identical" same_files "$T/mnt" "${D2[@]}"
files_of "$T/mnt" 0
expect "server hung: the file prefetched --from - reads byte-identical" \
    same_files "$T/mnt" "$RAW/detector=0/exposure=2025041500001/$(basename "$(cd "$T/mnt" && ls "$RAW/detector=0/exposure=2025041500001"/*)")"
check_log
nginx_cont

# ---- butlerfs cache stats|verify|evict|clear ------------------------------
cache() { "$BFS_BIN" cache --dir "$T/cache" "$@"; }
cache stats >"$T/stats.out" 2>&1
rc=$?
cat "$T/stats.out"
stat_of() { awk -v k="$1" '$1 == k {print $2}' "$T/stats.out"; }
blocks=$(stat_of blocks) objects=$(stat_of objects) records=$(stat_of records)
# 5 files of 2 MiB + 777 bytes at 1 MiB blocks: 3 blocks each, and one object
# record each (pinned size and version: in the index, not a block)
expect "cache stats exits 0 and shows 15 blocks ($blocks) of 5 objects ($objects), 5 records ($records)" \
    test $rc -eq 0 -a "${blocks:-0}" -eq 15 -a "${objects:-0}" -eq 5 -a "${records:-0}" -eq 5
misses=$(sed -n 's/^hit rate.*hits, \([0-9]*\) misses.*/\1/p' "$T/stats.out")
# every block fetched is a miss, block 0 too (it came with the GET that
# pinned the new object): at least the 15 blocks stored
expect "cache stats counts the fetched blocks as misses ($misses >= 15)" test "${misses:-0}" -ge 15
cache verify >"$T/verify.out" 2>&1
rc=$?
cat "$T/verify.out"
expect "cache verify exits 0, all blocks checked, none bad" \
    bash -c "[ $rc -eq 0 ] && grep -Eq '^checked $blocks blocks: 0 bad; .*; $blocks blocks remain' '$T/verify.out'"
# a corrupted block (same length, one byte changed): verify drops it, says
# so and exits 1; a second verify finds the cache sound; the data is
# fetched again, byte-identical
victim=$(find "$T/cache/blocks" -type f -name '*-*-*' | sort | head -1)
printf 'X' | dd of="$victim" bs=1 seek=100 conv=notrunc status=none
cache verify >"$T/verify.out" 2>&1
rc=$?
cat "$T/verify.out"
expect "cache verify of a corrupted block exits 1 and reports 1 bad of $blocks" \
    bash -c "[ $rc -eq 1 ] && grep -Eq '^checked $blocks blocks: 1 bad; ' '$T/verify.out' &&
             grep -q '1 bad blocks were dropped' '$T/verify.out'"
expect "... and removed the block file" test ! -e "$victim"
cache verify >"$T/verify.out" 2>&1
expect "a second verify exits 0 with $((blocks - 1)) blocks, none bad" \
    bash -c "[ $? -eq 0 ] && grep -Eq '^checked $((blocks - 1)) blocks: 0 bad; ' '$T/verify.out'"
prefetch "$RAW/detector=1" "$RAW/detector=2" "$RAW/detector=0/exposure=2025041500001"
expect "prefetch after verify fetched the dropped block again" \
    bash -c "[ $? -eq 0 ] && grep -Eq 'received from servers \([1-9][0-9]* B\)' '$PF_OUT'"
cache stats >"$T/stats.out" 2>&1
expect "... so the cache holds $blocks blocks again" test "$(stat_of blocks)" = "$blocks"
cache evict --to 0 >"$T/evict.out" 2>&1
rc=$?
cat "$T/evict.out"
expect "cache evict --to 0 exits 0 and reports every block removed" \
    bash -c "[ $rc -eq 0 ] && grep -Eq '^removed $blocks blocks .*; 0 B in 0 blocks remain' '$T/evict.out'"
cache stats >"$T/stats.out" 2>&1
expect "after evict --to 0 stats show 0 bytes" grep -Eq '^size +0 B of' "$T/stats.out"
expect "after evict --to 0 stats show 0 blocks" grep -Eq '^blocks +0 \(' "$T/stats.out"
expect "... and keep the 5 object records ($(stat_of records))" test "$(stat_of records)" = 5
expect "no block files left after evict" test -z "$(find "$T/cache/blocks" -type f 2>/dev/null | head -1)"

prefetch "$RAW/detector=1"
expect "prefetch after evict exits 0" test $? -eq 0
expect "... and fetched from the server again" grep -Eq "received from servers \([1-9][0-9]* B\)" "$PF_OUT"
cache clear >"$T/clear.out" 2>&1
rc=$?
cat "$T/clear.out"
expect "cache clear exits 0 and reports the records removed" \
    bash -c "[ $rc -eq 0 ] && grep -q '^removed 5 object records' '$T/clear.out'"
cache stats >"$T/stats.out" 2>&1
expect "after clear stats show 0 bytes in 0 blocks, 0 records" \
    bash -c "grep -Eq '^size +0 B of' '$T/stats.out' && grep -Eq '^blocks +0 \(' '$T/stats.out' &&
             grep -Eq '^records +0 ' '$T/stats.out'"
for sub in stats verify clear "evict --to 0"; do
    "$BFS_BIN" cache --dir "$T/nocache" $sub >"$T/stats.none" 2>&1
    expect "cache --dir MISSING $sub exits 1, says so and creates nothing" \
        bash -c "[ $? -eq 1 ] && grep -q 'no cache at .*no such directory' '$T/stats.none' && [ ! -e '$T/nocache' ]"
done
mkdir "$T/notcache"
"$BFS_BIN" cache --dir "$T/notcache" clear >"$T/stats.none" 2>&1
expect "cache --dir of a directory that is not a cache exits 1 and says why" \
    bash -c "[ $? -eq 1 ] && grep -q 'no index.lmdb there' '$T/stats.none' && [ -z \"\$(ls -A '$T/notcache')\" ]"
HOME="$T/home" XDG_CACHE_HOME="$T/xdg" "$BFS_BIN" cache stats >"$T/stats.none" 2>&1
expect "cache stats with no cache made yet (default directory) exits 0 and says so" \
    bash -c "[ $? -eq 0 ] && grep -q 'no cache at $T/xdg/butlerfs' '$T/stats.none' && [ ! -e '$T/xdg' ]"
"$BFS_BIN" cache --dir "$T/cache" frobnicate >/dev/null 2>&1
expect "cache with an unknown command exits non-zero" test $? -ne 0

# ---- secrets and sanitizers -------------------------------------------------
expect_no_secret "$TOKEN" "bearer token" "$T"/daemon.*.log "$T"/daemon.*.stderr "$T"/pf.*
expect_no_sanitizer "$T"/daemon.*.log "$T"/daemon.*.stderr "$T"/pf.*.err
finish
