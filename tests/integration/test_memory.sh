#!/usr/bin/env bash
# test_memory.sh - the daemon's resident memory stays within the memory
# budget plus its documented fixed overhead, and goes back down when idle
# (issue 10, defect 6; docs/config.md, memory_budget).
#
# The workload (memload.sh), smaller than the benchmark's: 3 rounds of 5
# parallel readers over 5 files of 64 MiB on an HTTP server, with a 64 MiB
# budget and 1 MiB blocks.  The first round fetches, the others read the
# block cache (mapped blocks, read ahead up to 64 MiB per file).
# Checks: every read succeeds; peak RSS (VmHWM) <= budget + 16 MiB + 2 MiB
# per thread (16 FUSE threads, 2 x parallel = 8 fetch workers); RSS under
# 64 MiB within 30 s of the end (the spares' idle timer is 10 s).
# Skipped under sanitizers: ASan's shadow memory and quarantine inflate RSS.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
. "$(dirname "$0")/memload.sh"
skip_unless_fuse
command -v nginx >/dev/null 2>&1 || skip "nginx is not installed"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
if grep -qaE '__asan_init|__tsan_init' "$BFS_BIN"; then
    skip "a sanitizer build: RSS is not comparable"
fi
trap 'nginx_stop; bfs_cleanup' EXIT

T=$BFS_TMP
mkdir -p "$T/www" "$T/mnt"
nginx_start "$T/www" || skip "nginx would not start"
remote_repo "$T/repo" "$T/www/repo" "$NGINX_URL/data/repo/" 5 1 $((64 * 1024 * 1024)) || finish

BUDGET_MIB=64 THREADS=16 PARALLEL=4
cat >"$T/config.yaml" <<EOF2
cache:
  dir: $T/cache
  block_size: 1MiB
fetch:
  memory_budget: ${BUDGET_MIB}MiB
  parallel: $PARALLEL
EOF2
BOUND_KIB=$(((BUDGET_MIB + 16 + 2 * (THREADS + 2 * PARALLEL)) * 1024))
IDLE_KIB=$((64 * 1024))

mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml,threads=$THREADS" || finish
mapfile -t FILES < <(find "$T/mnt/LSSTCam" -type f | sort)
expect "five remote files listed" test "${#FILES[@]}" -eq 5

t0=$SECONDS
expect "3 rounds of 5 parallel readers read every file" mem_rounds 3 5 "${FILES[@]}"
echo "workload: $((SECONDS - t0)) s"
peak=$(hwm_kib "$BFS_PID")
echo "peak RSS $((peak / 1024)) MiB, bound $((BOUND_KIB / 1024)) MiB (budget $BUDGET_MIB MiB)"
expect "peak RSS within budget + overhead" test "$peak" -le "$BOUND_KIB"
read -r idle secs < <(idle_rss_kib "$BFS_PID" 30 "$IDLE_KIB")
echo "idle RSS $((idle / 1024)) MiB after $secs s"
expect "idle RSS under 64 MiB within 30 s" test "$idle" -le "$IDLE_KIB"

check_log
finish
