#!/usr/bin/env bash
# bench/bench_transfer.sh - the transfer queue's drain (docs/transfer.md) as
# a ratio against `curl -T` of the same files to the same server, in one run.
#
#   baseline: curl -T of each file, one after another, to nginx WebDAV on
#             loopback (what a simple script would do);
#   queue:    the same files ingested through an -o rw mount while the
#             destination is stopped (SIGSTOP), so they all wait in the queue;
#             then the destination resumes and the drain is timed until every
#             job is done.  Once with verify: size (PUT + MOVE + HEAD) and once
#             with verify: readback (the object read back and compared), each
#             with the configured concurrency.
#   ceiling of readback: curl -T, then GET and cmp of each file, one after
#             another: the promise of verify: readback done by hand;
#   long fat pipe: both again through the fault proxy (tests/tools/faultproxy.py,
#             no faults) holding each connection to --wan-rate bytes/s in each
#             direction, as window/RTT holds one TCP stream across a long
#             link (nginx's limit_rate, the read side's /wan/, limits replies
#             only, not request bodies): curl -T one after another gets one
#             stream, the queue one per worker.  --wan-rate 0 skips it.
#
# Usage: bench/bench_transfer.sh [--files N] [--mib M] [--concurrency C] [--reps R] [--keep]
#                                [--wan-rate BYTES_PER_SECOND (default 100000000)]
# Env:   BFS_BIN (default build/fs/butlerfs), BENCH_DIR (default a new dir under /var/tmp)
# Each figure is the median of R runs (default 3).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BFS_BIN:-$here/build/fs/butlerfs}
FILES=40 MIB=16 CONC=4 REPS=3 KEEP=0 WAN_RATE=100000000
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift 2 ;;
    --mib) MIB=$2; shift 2 ;;
    --concurrency) CONC=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --wan-rate) WAN_RATE=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no butlerfs binary at $BIN (build first, or set BFS_BIN)" >&2; exit 1; }
for c in sqlite3 curl python3; do command -v "$c" >/dev/null || { echo "bench_transfer needs $c" >&2; exit 1; }; done
# shellcheck source=../tests/integration/nginx.sh
. "$here/tests/integration/nginx.sh"
# shellcheck source=../tests/integration/faultproxy.sh
. "$here/tests/integration/faultproxy.sh"
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/bfs-bench-transfer.XXXXXX)}
MNT=$WORK/mnt SRC=$WORK/src WWW=$WORK/www
mkdir -p "$MNT" "$SRC" "$WWW"
cleanup() {
  set +e # a failing step here must not turn a finished run's exit status into 1
  kill -CONT "${NGINX_PID:-0}" 2>/dev/null
  mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; }
  faultproxy_stop
  nginx_stop
  [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

nginx_start "$WWW" || { echo "nginx would not start" >&2; exit 1; }
if [ "$WAN_RATE" != 0 ]; then
  faultproxy_start "$NGINX_URL" --rate-limit "$WAN_RATE" || { echo "the proxy would not start" >&2; exit 1; }
fi
echo "== $FILES files of $MIB MiB, concurrency $CONC, $REPS repetitions"
"$BIN" synth "$WORK/repo" --exposures 1 --detectors "$FILES" >/dev/null
DB=$WORK/repo/gen3.sqlite3
EXP=$(sqlite3 "$DB" "SELECT exposure FROM dataset_tags_00000001 LIMIT 1")
mapfile -t DETS < <(sqlite3 "$DB" "SELECT DISTINCT detector FROM dataset_tags_00000001 ORDER BY detector")
for i in $(seq 0 $((FILES - 1))); do head -c $((MIB << 20)) /dev/urandom >"$SRC/f$i.dat"; done
sync

curl_pass() { # curl_pass RUN BASE_URL: seconds for curl -T of every file, one after another
  local t0 t1 i
  t0=$(now)
  for i in $(seq 0 $((FILES - 1))); do
    curl -sf -T "$SRC/f$i.dat" "$2/data/curl/$1/f$i.dat" -o /dev/null --create-dirs
  done
  t1=$(now)
  echo "$t1 - $t0" | bc
}

# curl_check_pass RUN BASE_URL: seconds for curl -T of every file, each then
# read back (curl GET) and compared with cmp, one after another: what
# `verify: readback` promises, done by hand (its ceiling on one stream)
curl_check_pass() {
  local t0 t1 i
  t0=$(now)
  for i in $(seq 0 $((FILES - 1))); do
    curl -sf -T "$SRC/f$i.dat" "$2/data/curl/$1/f$i.dat" -o /dev/null --create-dirs
    curl -sf "$2/data/curl/$1/f$i.dat" | cmp -s - "$SRC/f$i.dat" || { echo "read-back of f$i.dat differs" >&2; exit 1; }
  done
  t1=$(now)
  echo "$t1 - $t0" | bc
}

queue_pass() { # queue_pass RUN VERIFY BASE_URL: seconds from the destination's return to an empty queue
  local run=$1 verify=$2 t0 t1
  cat >"$WORK/bfs.yaml" <<YAML
transfer:
  destinations:
    - {name: dbb, uri: "$3/data/archive/", collections: ["bench/*"]}
  concurrency: $CONC
  verify: $verify
  backoff_max: 1s
YAML
  "$BIN" mount "$WORK/repo" "$MNT" -o "rw,config=$WORK/bfs.yaml,log=$WORK/butlerfs.log"
  kill -STOP "$NGINX_PID"
  for i in $(seq 0 $((FILES - 1))); do
    d="$MNT/$run/raw/instrument=LSSTCam/detector=${DETS[$i]}/exposure=$EXP"
    mkdir -p "$d"
    cp "$SRC/f$i.dat" "$d/"
  done
  sleep 1.5 # every worker has a job in flight against the stopped server
  t0=$(now)
  kill -CONT "$NGINX_PID"
  while :; do
    state=$("$BIN" queue --json "$WORK/repo" | python3 -c 'import json,sys; q = json.load(sys.stdin); print(q["pending"] + q["inflight"], q["parked"])')
    [ "${state% *}" = 0 ] && break
    [ "${state#* }" = 0 ] || { echo "jobs parked: see $WORK/butlerfs.log" >&2; exit 1; }
    sleep 0.05
  done
  t1=$(now)
  fusermount3 -u "$MNT"
  echo "$t1 - $t0" | bc
}

declare -a cu cc qs qr wanc ws wr
for r in $(seq "$REPS"); do
  cu+=("$(curl_pass "c$r" "$NGINX_URL")")
  cc+=("$(curl_check_pass "k$r" "$NGINX_URL")")
  qs+=("$(queue_pass "bench/s$r" size "$NGINX_URL")")
  qr+=("$(queue_pass "bench/r$r" readback "$NGINX_URL")")
  if [ "$WAN_RATE" != 0 ]; then
    wanc+=("$(curl_pass "w$r" "$FAULTPROXY_URL")")
    ws+=("$(queue_pass "bench/ws$r" size "$FAULTPROXY_URL")")
    wr+=("$(queue_pass "bench/wr$r" readback "$FAULTPROXY_URL")")
  fi
done
mb=$((FILES * MIB))
K=$(printf '%s\n' "${cc[@]}" | median); C=$(printf '%s\n' "${cu[@]}" | median); S=$(printf '%s\n' "${qs[@]}" | median); R=$(printf '%s\n' "${qr[@]}" | median)
echo
echo "machine: $(nproc) cores $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r)"
printf "%d files x %d MiB to nginx WebDAV on loopback, median of %d\n" "$FILES" "$MIB" "$REPS"
printf "  curl -T, one after another:        %.2f s (%.0f MiB/s)\n" "$C" "$(echo "$mb / $C" | bc -l)"
printf "  queue drain, verify size:          %.2f s (%.0f MiB/s): ratio %.2f (target >= 0.9)\n" \
  "$S" "$(echo "$mb / $S" | bc -l)" "$(echo "$C / $S" | bc -l)"
printf "  queue drain, verify readback:      %.2f s (%.0f MiB/s): ratio %.2f\n" \
  "$R" "$(echo "$mb / $R" | bc -l)" "$(echo "$C / $R" | bc -l)"
printf "  ceiling of readback: curl -T + GET + cmp, one after another: %.2f s: ratio to curl -T %.2f, drain to it %.2f\n" \
  "$K" "$(echo "$C / $K" | bc -l)" "$(echo "$K / $R" | bc -l)"
if [ "$WAN_RATE" != 0 ]; then
  WC=$(printf '%s\n' "${wanc[@]}" | median); WS=$(printf '%s\n' "${ws[@]}" | median); WR=$(printf '%s\n' "${wr[@]}" | median)
  printf "through a link held to %s B/s per connection and direction (the proxy; long fat pipe):\n" "$WAN_RATE"
  printf "  curl -T, one after another:        %.2f s (%.0f MiB/s)\n" "$WC" "$(echo "$mb / $WC" | bc -l)"
  printf "  queue drain, verify size:          %.2f s (%.0f MiB/s): ratio %.2f (expect ~%d, the concurrency)\n" \
    "$WS" "$(echo "$mb / $WS" | bc -l)" "$(echo "$WC / $WS" | bc -l)" "$CONC"
  printf "  queue drain, verify readback:      %.2f s (%.0f MiB/s): ratio %.2f\n" \
    "$WR" "$(echo "$mb / $WR" | bc -l)" "$(echo "$WC / $WR" | bc -l)"
fi
echo "runs (s): curl ${cu[*]}; curl+check ${cc[*]}; size ${qs[*]}; readback ${qr[*]}${wanc:+; wan curl ${wanc[*]}; wan size ${ws[*]}; wan readback ${wr[*]}}"
