# shellcheck shell=bash
# memload.sh - the memory workload of issue 10 (defect 6), shared by
# tests/integration/test_memory.sh (small) and bench/bench_remote.sh (full).
#
#   mem_rounds ROUNDS READERS FILE...: ROUNDS rounds; in each, READERS
#     readers at once, reader i reading FILE[(round + i) % nfiles] whole in
#     1 MiB reads.  Each reader first drops the file's pages from the kernel
#     page cache (POSIX_FADV_DONTNEED: the mount keeps its page cache across
#     opens), so every round reaches the daemon.  Returns non-zero when a
#     read fails.
#   rss_kib PID: the process's resident set now (VmRSS), in KiB
#   hwm_kib PID: its peak resident set so far (VmHWM), in KiB
#   idle_rss_kib PID SECONDS BOUND_KIB: sample VmRSS every second for at
#     most SECONDS; print the first sample at or below BOUND_KIB (or the last
#     one) and the seconds it took, as "KIB SECONDS".

mem_read_one()
{
    python3 - "$1" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
while os.read(fd, 1 << 20):
    pass
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)
PY
}

mem_rounds()
{
    local rounds=$1 readers=$2 r i rc=0
    shift 2
    local files=("$@") pids=()
    for ((r = 0; r < rounds; r++)); do
        pids=()
        for ((i = 0; i < readers; i++)); do
            mem_read_one "${files[$(((r + i) % ${#files[@]}))]}" & pids+=($!)
        done
        for i in "${pids[@]}"; do wait "$i" || rc=1; done
    done
    return $rc
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

idle_rss_kib()
{
    local pid=$1 secs=$2 bound=$3 t kib
    for ((t = 0; t <= secs; t++)); do
        kib=$(rss_kib "$pid")
        [ "$kib" -le "$bound" ] && break
        [ "$t" -lt "$secs" ] && sleep 1
    done
    echo "$kib $((t > secs ? secs : t))"
}
