#!/usr/bin/env bash
# bench/ab_ingest.sh - two butlerfs binaries (before and after a change)
# compared on the writer's critical path: each run makes a fresh synthetic
# repository, mounts it -o rw and writes F files of 32 MiB one after another
# (1 MiB writes, close until registered) to full dataId paths; the binaries
# alternate, R runs each, so the machine's drift hits both alike.  Prints
# the median time per file of each run, then the median of the runs.
#
# Usage: bench/ab_ingest.sh BIN_A BIN_B [--runs R (3)] [--files F (20)]
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,10p' "$0"; exit 2; }
A=$1 B=$2; shift 2
RUNS=3 FILES=20
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
for b in "$A" "$B"; do [ -x "$b" ] || { echo "no binary at $b" >&2; exit 1; }; done

one() { # one BIN: median ms per file of one run
  local bin=$1 w
  w=$(mktemp -d /var/tmp/bfs-ab.XXXXXX)
  "$bin" synth "$w/repo" --exposures 1 --detectors "$FILES" >/dev/null 2>&1
  mkdir "$w/mnt"
  "$bin" mount "$w/repo" "$w/mnt" -o "rw,log=$w/log"
  local exp
  exp=$(sqlite3 "$w/repo/gen3.sqlite3" "SELECT exposure FROM dataset_tags_00000001 LIMIT 1")
  python3 - "$w/mnt" "$exp" "$FILES" <<'PY' || true
import os, statistics, sys, time
mnt, exp, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = os.urandom(32 << 20)
ts = []
for i in range(n):
    d = f"{mnt}/ab/run/raw/instrument=LSSTCam/detector={i}/exposure={exp}"
    os.makedirs(d, exist_ok=True)
    t0 = time.monotonic()
    fd = os.open(d + "/f.dat", os.O_WRONLY | os.O_CREAT, 0o644)
    for off in range(0, len(data), 1 << 20):
        os.write(fd, data[off:off + (1 << 20)])
    os.close(fd)
    ts.append(1000 * (time.monotonic() - t0))
print(f"{statistics.median(ts):.1f}")
PY
  fusermount3 -u "$w/mnt"
  rm -rf "$w"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ra=() rb=()
for r in $(seq "$RUNS"); do
  ra+=("$(one "$A")"); rb+=("$(one "$B")")
  echo "run $r: A ${ra[-1]} ms, B ${rb[-1]} ms per 32 MiB file"
done
ma=$(printf '%s\n' "${ra[@]}" | median); mb=$(printf '%s\n' "${rb[@]}" | median)
echo "machine: $(nproc) cores $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
printf "median of %d runs: A %.1f ms, B %.1f ms per file (B / A %.2f)\n" "$RUNS" "$ma" "$mb" "$(echo "$mb / $ma" | bc -l)"
