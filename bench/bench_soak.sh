#!/usr/bin/env bash
# bench/bench_soak.sh - a soak of the remote read path through a flaky network:
# a butlerfs mount whose datastore root is a fault-injecting proxy
# (tests/tools/faultproxy.py) in front of nginx on loopback.
#
#   faults: --gib GiB (default 4) of --file-mib MiB files, each byte fetched
#     once through --rate (default 10 %) faults: 503s, resets mid-body, stalls
#     of --stall seconds (default 5), truncated bodies; --jobs readers at once
#     (default 4) compare every byte with the datastore file.  Reported: wrong
#     bytes, files that failed (and with which errno), throughput, the
#     longest single read(2) against fetch.deadline, the daemon's peak RSS
#     (VmHWM) and its RSS once idle (polled for up to --idle-wait s, default
#     60, until under 64 MiB) as ratios to fetch.memory_budget, the faults the
#     proxy injected and the daemon's own counts (butlerfs status --json).
#   flips: --flip-gib GiB (default 2) of the same files, half of them with
#     their BLAKE2b-512 in the registry (as the Butler records it) and half
#     without, read through the same faults plus flipped bytes (status and
#     length kept), on a fresh cache: pass 1, pass 2 on the same mount (what
#     the block and page caches kept), pass 3 with the proxy clean.  Wrong
#     bytes are counted, not hidden: all those read(2) returned, and those in
#     files that then read to the end without an error (nothing flagged them;
#     a file with a registry checksum may return wrong bytes before its
#     whole-file check fails at the end with EIO, as designed).
#
# Usage: bench/bench_soak.sh [--reps R] [--gib G] [--flip-gib G] [--file-mib M] [--rate P]
#                            [--stall S] [--jobs J] [--budget SIZE] [--idle-wait S] [--seed N] [--keep]
# Env:   BFS_BIN (default build/fs/butlerfs), BENCH_DIR (default a new dir under /var/tmp)
# The faults phase runs R times (default 1) on a fresh mount and cache each
# time; its figures are medians, its wrong bytes and failures are totals.
# The configuration is the defaults (docs/config.md) with the cache in
# BENCH_DIR and memory_budget SIZE (default 256MiB).  Needs nginx, python3,
# sqlite3, /dev/fuse.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BFS_BIN:-$here/build/fs/butlerfs}
REPS=1 GIB=4 FLIP_GIB=2 FILE_MIB=64 RATE=0.1 STALL=5 JOBS=4 BUDGET=256MiB IDLE_WAIT=60 SEED=1 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift 2 ;;
    --gib) GIB=$2; shift 2 ;;
    --flip-gib) FLIP_GIB=$2; shift 2 ;;
    --file-mib) FILE_MIB=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --stall) STALL=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --idle-wait) IDLE_WAIT=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n "2,33p" "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no butlerfs binary at $BIN (build first, or set BFS_BIN)" >&2; exit 1; }
for tool in python3 sqlite3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
[ -e /dev/fuse ] || { echo "no /dev/fuse here" >&2; exit 1; }
# shellcheck disable=SC1091  # nginx_start/stop, faultproxy_start/stop/set/stats
. "$here/tests/integration/nginx.sh"
# shellcheck disable=SC1091
. "$here/tests/integration/faultproxy.sh"
READCMP=$here/tests/tools/readcmp.py

WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/bfs-bench-soak.XXXXXX)}
WWW=$WORK/www MNT=$WORK/mnt LOG=$WORK/butlerfs.log CFG=$WORK/config.yaml CACHE=$WORK/cache
REPO=$WORK/repo OUT=$WORK/results
mkdir -p "$WWW" "$MNT" "$OUT"
pid='' sampler=''
cleanup() {
  set +e
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
  mountpoint -q "$MNT" 2>/dev/null && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null; }
  [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  faultproxy_stop
  nginx_stop
  if [ "$KEEP" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mount_fs() {
  : >"$LOG"
  "$BIN" mount "$REPO" "$MNT" -f -o log="$LOG",config="$CFG",xattr & pid=$!
  for _ in $(seq 200); do mountpoint -q "$MNT" && return 0; sleep 0.05; done
  echo "mount did not come up; log:" >&2; cat "$LOG" >&2; exit 1
}
unmount_fs() { fusermount3 -u "$MNT"; wait "$pid" 2>/dev/null || true; pid=; }
rss_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# the repository: files of FILE_MIB MiB (+ a bit, so blocks do not line up)
# whose bytes live only on the server; the datastore root is the proxy
nginx_start "$WWW" || { echo "nginx would not start" >&2; exit 1; }
faultproxy_start "$NGINX_URL" --seed "$SEED" --stall-seconds "$STALL" || { echo "the proxy would not start" >&2; exit 1; }
nfiles=$(( (GIB * 1024 + FILE_MIB - 1) / FILE_MIB ))
det=8 exp=$(( (nfiles + 7) / 8 ))
"$BIN" synth "$REPO" --exposures "$exp" --detectors "$det" --payload $((FILE_MIB * 1024 * 1024 + 4097)) >/dev/null
mv "$REPO/LSSTCam" "$WWW/"
sed -i "s|^  root: <butlerRoot>|  root: $FAULTPROXY_URL/data/|" "$REPO/butler.yaml"
cat >"$CFG" <<EOF
cache:
  dir: $CACHE
  max_size: $((GIB * 2 + 2))GiB
fetch:
  memory_budget: $BUDGET
EOF
budget_bytes=$(python3 -c '
import re, sys
m = re.fullmatch(r"(\d+)(KiB|MiB|GiB)?", sys.argv[1])
print(int(m[1]) * {None: 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m[2]])' "$BUDGET")
deadline_s=60 # fetch.deadline's default

mount_fs
(cd "$MNT" && find LSSTCam -type f | sort) | while read -r f; do
  loc=$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.butler.location").decode())' "$MNT/$f")
  printf '%s\t%s\n' "$MNT/$f" "$WWW/$loc"
done >"$WORK/pairs.all"
unmount_fs
head -n "$nfiles" "$WORK/pairs.all" >"$WORK/pairs"
total_bytes=$(cut -f2 "$WORK/pairs" | xargs stat -c %s | awk '{s += $1} END {printf "%.0f", s}')
echo "soak: $nfiles files, $((total_bytes >> 20)) MiB, $RATE faults (503, reset, stall ${STALL}s, truncate), $JOBS readers, budget $BUDGET"

# one_run NAME PAIRS...: fresh cache and mount, each PAIRS file read in turn
# (as pass NAME.1, NAME.2, ...); RSS sampled; idle RSS polled after the
# last pass unless NOIDLE=1; results in $OUT/NAME.*
one_run() {
  local name=$1 i=0 p t0 rss idle_s
  shift
  rm -rf "$CACHE"
  faultproxy_set "zero=1"
  mount_fs
  ( while kill -0 "$pid" 2>/dev/null; do rss_kib "$pid" VmRSS; sleep 0.5; done ) >"$OUT/$name.rss" 2>/dev/null &
  sampler=$!
  for p in "$@"; do
    i=$((i + 1))
    [ -n "${BEFORE_PASS[$i]:-}" ] && faultproxy_set "${BEFORE_PASS[$i]}"
    python3 "$READCMP" --jobs "$JOBS" --json "$OUT/$name.$i.json" "$p" >/dev/null || true
  done
  rss_kib "$pid" VmHWM >"$OUT/$name.peak"
  faultproxy_stats >"$OUT/$name.proxy"
  "$BIN" status --json "$MNT" >"$OUT/$name.status" 2>/dev/null || echo '[{}]' >"$OUT/$name.status"
  if [ "${NOIDLE:-0}" != 1 ]; then
    t0=$(date +%s)
    while :; do
      rss=$(rss_kib "$pid" VmRSS)
      idle_s=$(($(date +%s) - t0))
      [ "$rss" -lt 65536 ] || [ "$idle_s" -ge "$IDLE_WAIT" ] && break
      sleep 2
    done
    echo "$rss $idle_s" >"$OUT/$name.idle"
  fi
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; sampler=
  unmount_fs
  # what an operator saw: the daemon's log lines at its default level, by level
  awk '{print $3}' "$LOG" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep = ", "}' >"$OUT/$name.log"
}

# the faults phase, R times
faultproxy_set "clear_rules=1&rate=$RATE&faults=503,reset,stall,truncate"
for r in $(seq "$REPS"); do
  echo "faults phase, run $r of $REPS ..."
  BEFORE_PASS=()
  one_run "faults$r" "$WORK/pairs"
  cat "$OUT/faults$r.1.json"
done

# the flips phase: registry checksums for half of the files
nflip=$(( (FLIP_GIB * 1024 + FILE_MIB - 1) / FILE_MIB ))
head -n "$nflip" "$WORK/pairs" >"$WORK/pairs.flip"
awk 'NR % 2 == 1' "$WORK/pairs.flip" >"$WORK/pairs.flip.sum"
awk 'NR % 2 == 0' "$WORK/pairs.flip" >"$WORK/pairs.flip.nosum"
while IFS=$'\t' read -r _ src; do
  sum=$(python3 -c 'import hashlib,sys; print(hashlib.blake2b(open(sys.argv[1],"rb").read()).hexdigest())' "$src")
  sqlite3 "$REPO/gen3.sqlite3" "UPDATE file_datastore_records SET checksum = '$sum' WHERE path = '${src#"$WWW/"}'"
done <"$WORK/pairs.flip.sum"
echo "flips phase: $nflip files ($(wc -l <"$WORK/pairs.flip.sum") with registry checksums) ..."
faultproxy_set "rate=$RATE&faults=503,reset,stall,truncate,flip"
BEFORE_PASS=([3]="rate=$RATE&faults=503,reset,stall,truncate,flip" [5]="rate=0")
# passes: 1-2 = pass 1 (with and without checksums), 3-4 = pass 2, 5-6 = pass 3 (clean)
NOIDLE=1 one_run flips "$WORK/pairs.flip.sum" "$WORK/pairs.flip.nosum" \
  "$WORK/pairs.flip.sum" "$WORK/pairs.flip.nosum" "$WORK/pairs.flip.sum" "$WORK/pairs.flip.nosum"

# the summary
python3 - "$OUT" "$REPS" "$budget_bytes" "$deadline_s" "$BUDGET" <<'PY'
import glob, json, os, statistics, sys
out, reps, budget, deadline, budget_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
J = lambda p: json.load(open(p))
MiB = 1 << 20
def med(xs): return statistics.median(xs)
def errs(rs):
    e = {}
    for r in rs:
        for k, v in r["errors"].items():
            e[k] = e.get(k, 0) + v
    n = sum(r["short_files"] for r in rs)
    if n: e["short"] = n
    return ", ".join(f"{v} {k}" for k, v in sorted(e.items())) or "0"
runs = [J(f"{out}/faults{r}.1.json") for r in range(1, reps + 1)]
proxies = [J(f"{out}/faults{r}.proxy") for r in range(1, reps + 1)]
peaks = [int(open(f"{out}/faults{r}.peak").read()) * 1024 for r in range(1, reps + 1)]
idles = [open(f"{out}/faults{r}.idle").read().split() for r in range(1, reps + 1)]
idle_rss = [int(i[0]) * 1024 for i in idles]
idle_s = [int(i[1]) for i in idles]
stat = [J(f"{out}/faults{r}.status") for r in range(1, reps + 1)]
rows = []
row = lambda k, v: rows.append((k, v))
gib = med([r["bytes_read"] for r in runs]) / (1 << 30)
row("bytes read per run", f"{gib:.2f} GiB in {runs[0]['files']} files, every byte compared")
row("throughput (median)", f"{med([r['bytes_read'] / MiB / r['seconds'] for r in runs]):.0f} MiB/s, "
    f"{med([r['seconds'] for r in runs]):.0f} s a run")
faults = {k: med([p["faults"][k] for p in proxies]) for k in ("503", "reset", "stall", "truncate", "flip")}
row("faults injected (median)", f"{med([p['faults_total'] for p in proxies]):.0f} of "
    f"{med([p['requests'] for p in proxies]):.0f} requests: " + ", ".join(f"{v:.0f} {k}" for k, v in faults.items() if k != "flip"))
row("wrong bytes (total)", str(sum(r["wrong_bytes"] for r in runs)))
row("failed reads (total)", errs(runs))
ml = med([r["max_read_s"] for r in runs])
row("longest single read (median of runs)", f"{ml:.2f} s = {ml / deadline:.3f} x deadline ({deadline:.0f} s); worst {max(r['max_read_s'] for r in runs):.2f} s")
row("peak RSS (median)", f"{med(peaks) / MiB:.0f} MiB = {med(peaks) / budget:.2f} x memory_budget ({budget_s}); worst {max(peaks) / MiB:.0f} MiB")
row("idle RSS (median)", f"{med(idle_rss) / MiB:.0f} MiB = {med(idle_rss) / budget:.2f} x memory_budget, after {med(idle_s):.0f} s idle"
    + (" (under 64 MiB)" if max(idle_rss) < 64 * MiB else " (not under 64 MiB)"))
logs = [open(f"{out}/faults{r}.log").read().strip() or "none" for r in range(1, reps + 1)]
row("daemon log lines (default level), each run", "; ".join(logs))
f0 = (stat[-1] or [{}])[0].get("fetch", {}) if isinstance(stat[-1], list) else {}
row("daemon's counts (last run)", ", ".join(f"{k} {v}" for k, v in f0.items()
                                            if k not in ("memory_used", "memory_budget", "bytes_from_servers")))
w = max(len(k) for k, _ in rows)
print("\n## soak: faults phase (" + ("median of %d runs" % reps if reps > 1 else "one run") + ")\n")
print(f"| {'figure':<{w}} | value |\n| {'-' * w} | ----- |")
for k, v in rows:
    print(f"| {k:<{w}} | {v} |")

P = lambda i: J(f"{out}/flips.{i}.json")
fp = J(f"{out}/flips.proxy")
print(f"\n## soak: flips phase (10 % faults incl. flips; {fp['faults']['flip']} flips of {fp['requests']} requests)\n")
print("| pass | registry checksum | files | wrong bytes | ... in files read without error | files with wrong bytes | failed reads |")
print("| ---- | ----------------- | ----- | ----------- | ------------------------------- | ---------------------- | ------------ |")
names = {1: "1 (faults)", 2: "2 (same mount)", 3: "3 (server clean)"}
for p in (1, 2, 3):
    for j, what in ((0, "yes"), (1, "no")):
        r = P(2 * (p - 1) + 1 + j)
        print(f"| {names[p]} | {what} | {r['files']} | {r['wrong_bytes']} | {r['wrong_bytes_silent']} | {r['files_wrong']} | {errs([r])} |")
PY
echo
echo "results and logs: $OUT (kept with --keep)"
