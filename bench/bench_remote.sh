#!/usr/bin/env bash
# bench/bench_remote.sh - remote reads through a butlerfs mount whose datastore
# root is an HTTP server (nginx on loopback), as ratios against baselines
# measured in the same run.
#
#   cold read: sequential cat of a 256 MiB file through a fresh mount with an
#     empty block cache, vs curl -s -o /dev/null of the same URL, and vs curl
#     -o FILE on the cache's file system (the download a pre-copy step makes:
#     both end with the bytes on local disk);
#   warm read: the same file again through a FRESH mount (kernel page cache of
#     the mount empty, block cache full), vs cat of a local copy;
#   ceiling: the same file through a mount of the same registry whose
#     datastore is the server's document root on local disk (no network, no
#     block cache; spliced from the page cache), vs curl -o /dev/null: what
#     any read through FUSE can reach here;
#   -o direct_io: the cold and warm reads again with the kernel page cache
#     bypassed, and a quarter of the file read with dd bs=2880 (cfitsio's
#     record size) on a fresh mount, vs the same dd without direct_io;
#   header reads: head -c 2880 of 100 files of ~8 MiB, fresh mount, empty
#     cache: body bytes nginx sent (its access log) per header read, vs 2880
#     and vs one cache block;
#   prefetch: butlerfs prefetch of a collection of 1000 files of ~1 MiB, empty
#     cache, vs curl of the same URLs with xargs -P 8 (to /dev/null, and saved
#     as files on the cache's file system: the pre-copy step prefetch replaces);
#   long fat pipe: the cold read again through nginx's /wan/ location, where
#     each request (one TCP stream) is held to --wan-rate bytes/s as
#     window/RTT holds one stream between continents, vs curl of the same URL;
#   memory: --mem-rounds rounds (default 12) of 5 parallel readers over the
#     four large files (1 GiB at the default size), fresh mount, empty cache,
#     each reader dropping the mount's page cache of its file first
#     (tests/integration/memload.sh): the daemon's peak RSS (VmHWM) and its
#     RSS once idle (the first sample under 64 MiB within 60 s, else the
#     60 s one), as ratios to memory_budget (256 MiB by default); with the
#     default 4 MiB blocks, and again with 1 MiB blocks.
#
# Usage: bench/bench_remote.sh [--reps R] [--keep] [--big-mib M] [--hdr-files N] [--pf-files N]
#                              [--wan-rate RATE (nginx syntax, default 100m)] [--mem-rounds N]
# Env:   BFS_BIN (default build/fs/butlerfs), BENCH_DIR (default a new dir under /var/tmp)
# Each figure is the median of R runs (default 5).  Needs nginx, curl, /dev/fuse.
# The configuration is the defaults (docs/config.md) with the cache in BENCH_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BFS_BIN:-$here/build/fs/butlerfs}
REPS=5 KEEP=0 BIG_MIB=256 HDR_FILES=100 PF_FILES=1000 WAN_RATE=100m MEM_ROUNDS=12
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --big-mib) BIG_MIB=$2; shift 2 ;;
    --hdr-files) HDR_FILES=$2; shift 2 ;;
    --pf-files) PF_FILES=$2; shift 2 ;;
    --wan-rate) WAN_RATE=$2; shift 2 ;;
    --mem-rounds) MEM_ROUNDS=$2; shift 2 ;;
    -h|--help) sed -n "2,34p" "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no butlerfs binary at $BIN (build first, or set BFS_BIN)" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is not installed" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "no /dev/fuse here" >&2; exit 1; }
# shellcheck disable=SC1091  # nginx_start, nginx_stop; NGINX_URL, NGINX_DIR
. "$here/tests/integration/nginx.sh"
# shellcheck disable=SC1091  # mem_rounds, hwm_kib, idle_rss_kib
. "$here/tests/integration/memload.sh"

WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/bfs-bench-remote.XXXXXX)}
WWW=$WORK/www MNT=$WORK/mnt LOG=$WORK/butlerfs.log CFG=$WORK/config.yaml CACHE=$WORK/cache
mkdir -p "$WWW" "$MNT" "$WORK/local"
pid=
cleanup() {
  set +e   # nginx_stop's kill of an exited server fails; cleanup must go on
  mountpoint -q "$MNT" 2>/dev/null && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null; }
  [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  nginx_stop
  if [ "$KEEP" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
med() { printf '%s\n' "$@" | median; }
mount_fs() {
  "$BIN" mount "${REPO:-$WORK/repo}" "$MNT" -f -o log="$LOG",config="$CFG"${1:+,$1} & pid=$!
  for _ in $(seq 200); do mountpoint -q "$MNT" && return 0; sleep 0.05; done
  echo "mount did not come up; log:" >&2; cat "$LOG" >&2; exit 1
}
unmount_fs() { fusermount3 -u "$MNT"; wait "$pid" 2>/dev/null || true; pid=; }
# timed CMD...: print CMD's wall time; a failing CMD stops the benchmark (a
# failed baseline would otherwise look very fast)
timed() {
  local t0 t1 rc=0
  t0=$(now); "$@" >/dev/null 2>&1 || rc=$?; t1=$(now)
  [ "$rc" = 0 ] || { echo "failed (exit $rc): $*" >&2; exit 1; }
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f\n", b-a}'
}
empty_cache() { rm -rf "$CACHE"; }
clear_log() { : >"$NGINX_DIR/access.log"; }
# body bytes / requests nginx logged since clear_log (combined format: $10 = body bytes)
log_bytes() { awk '{s += $10} END {printf "%.0f\n", s}' "$NGINX_DIR/access.log"; }
log_reqs() { awk 'END {print NR}' "$NGINX_DIR/access.log"; }

command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { echo "nginx is not installed" >&2; exit 1; }
export NGINX_WAN_RATE=$WAN_RATE
nginx_start "$WWW" || { echo "nginx would not start" >&2; exit 1; }

BIG_RUN=LSSTCam/raw/big HDR_RUN=LSSTCam/raw/hdr PF_RUN=LSSTCam/raw/pf
HDR_BYTES=$((8 * 1024 * 1024 + 12345)) PF_BYTES=$((1024 * 1024 + 4321))
pf_det=$(( PF_FILES < 100 ? PF_FILES : 100 )); pf_exp=$(( (PF_FILES + pf_det - 1) / pf_det ))
echo "== building the repository in $WORK/repo: 4 x $BIG_MIB MiB, $HDR_FILES x ~8 MiB, $((pf_exp * pf_det)) x ~1 MiB"
"$BIN" synth "$WORK/repo" --run $BIG_RUN --day-obs 20250416 --exposures 4 --detectors 1 \
  --payload $((BIG_MIB * 1024 * 1024)) >/dev/null 2>&1
"$BIN" synth "$WORK/repo" --run $HDR_RUN --day-obs 20250417 --exposures "$HDR_FILES" --detectors 1 \
  --payload $HDR_BYTES >/dev/null 2>&1
"$BIN" synth "$WORK/repo" --run $PF_RUN --day-obs 20250418 --exposures "$pf_exp" --detectors "$pf_det" \
  --payload $PF_BYTES >/dev/null 2>&1
# the data files go to the server; butler.yaml's datastore root points at it
mkdir -p "$WWW/repo"
mv "$WORK/repo/LSSTCam" "$WWW/repo/"
sed -i "s|^  root: <butlerRoot>|  root: $NGINX_URL/data/repo/|" "$WORK/repo/butler.yaml"
grep -q "root: $NGINX_URL/data/repo/" "$WORK/repo/butler.yaml" || { echo "could not rewrite the datastore root" >&2; exit 1; }
cat >"$CFG" <<EOF
# every key but the cache directory at its default (docs/config.md)
cache:
  dir: $CACHE
EOF

# the mounted large files and their URLs (from user.butler.location)
mount_fs xattr
mapfile -t big < <(cd "$MNT" && find $BIG_RUN -type f | sort)
mapfile -t hdr < <(cd "$MNT" && find $HDR_RUN -type f | sort)
mapfile -t bigloc < <(cd "$MNT" && python3 -c '
import os, sys
for p in sys.argv[1:]:
    print(os.getxattr(p, "user.butler.location").decode())' "${big[@]}")
unmount_fs
if [ "${#big[@]}" != 4 ] || [ "${#hdr[@]}" != "$HDR_FILES" ]; then
  echo "unexpected file counts: ${#big[@]} big, ${#hdr[@]} header" >&2; exit 1
fi
mapfile -t pfurl < <(cd "$WWW" && find repo/$PF_RUN -type f | sort | sed "s|^|$NGINX_URL/data/|")
[ "${#pfurl[@]}" = $((pf_exp * pf_det)) ] || { echo "found ${#pfurl[@]} prefetch files" >&2; exit 1; }
printf '%s\n' "${pfurl[@]}" >"$WORK/pf.urls"
for i in 0 1 2 3; do cp "$WWW/repo/${bigloc[$i]}" "$WORK/local/big$i"; done
# the same registry with the server's document root as a local datastore:
# the mount's own ceiling (no network, no block cache: reads spliced from
# the page cache)
cp -a "$WORK/repo" "$WORK/repo-local"
sed -i "s|^  root: .*|  root: $WWW/repo/|" "$WORK/repo-local/butler.yaml"

# the default block size (the configuration above sets none)
BLOCK=$((4 * 1024 * 1024))

declare -A R
# --- a/b: cold and warm sequential reads of a large file --------------------
echo "== cold/warm sequential reads ($REPS reps)"
cold=() curlt=() curldl=() warm=() loc=() cold_moved=() small=() dcold=() dwarm=() dsmall=() ceil=()
SMALL_N=$(( BIG_MIB * 1048576 / 4 / 2880 ))             # a quarter of the file in 2880-byte reads
for r in $(seq "$REPS"); do
  i=$(( (r - 1) % 4 ))
  f=$MNT/${big[$i]} url=$NGINX_URL/data/repo/${bigloc[$i]}
  cat "$WWW/repo/${bigloc[$i]}" >/dev/null          # the server reads from its page cache
  empty_cache; mount_fs; clear_log
  cold+=("$(timed cat "$f")")
  unmount_fs; cold_moved+=("$(log_bytes)")
  curlt+=("$(timed curl -sf -o /dev/null "$url")")
  curldl+=("$(timed curl -sf -o "$WORK/download" "$url")"); rm -f "$WORK/download"
  mount_fs                                           # fresh mount, full block cache
  clear_log
  warm+=("$(timed cat "$f")")
  unmount_fs
  [ "$(log_bytes)" = 0 ] || echo "   note: the warm read moved $(log_bytes) bytes from the server" >&2
  mount_fs; small+=("$(timed dd if="$f" of=/dev/null bs=2880 count=$SMALL_N)"); unmount_fs
  # the same with -o direct_io: cold, warm, small reads
  empty_cache; mount_fs direct_io; dcold+=("$(timed cat "$f")"); unmount_fs
  mount_fs direct_io; dwarm+=("$(timed cat "$f")"); unmount_fs
  mount_fs direct_io; dsmall+=("$(timed dd if="$f" of=/dev/null bs=2880 count=$SMALL_N)"); unmount_fs
  cat "$WORK/local/big$i" >/dev/null                 # the local copy from the page cache
  loc+=("$(timed cat "$WORK/local/big$i")")
  REPO=$WORK/repo-local mount_fs; ceil+=("$(timed cat "$f")"); unmount_fs
done
R[cold]=$(med "${cold[@]}") R[curl]=$(med "${curlt[@]}") R[curldl]=$(med "${curldl[@]}")
R[warm]=$(med "${warm[@]}") R[local]=$(med "${loc[@]}") R[ceil]=$(med "${ceil[@]}")
R[cold.moved]=$(med "${cold_moved[@]}")
R[small]=$(med "${small[@]}") R[dcold]=$(med "${dcold[@]}") R[dwarm]=$(med "${dwarm[@]}") R[dsmall]=$(med "${dsmall[@]}")

# --- c: header reads ----------------------------------------------------------
echo "== header reads: head -c 2880 of $HDR_FILES files ($REPS reps)"
hb=() hr=() ht=()
for _ in $(seq "$REPS"); do
  empty_cache; mount_fs; clear_log
  t0=$(now)
  for f in "${hdr[@]}"; do head -c 2880 "$MNT/$f" >/dev/null; done
  t1=$(now)
  unmount_fs; sleep 0.3                              # every request the reads started is logged
  hb+=("$(log_bytes)") hr+=("$(log_reqs)")
  ht+=("$(awk -v a="$t0" -v b="$t1" -v n="$HDR_FILES" 'BEGIN{printf "%.5f\n", (b-a)/n}')")
done
R[hdr.bytes]=$(med "${hb[@]}") R[hdr.reqs]=$(med "${hr[@]}") R[hdr.time]=$(med "${ht[@]}")
R[hdr.per]=$(awk -v b="${R[hdr.bytes]}" -v n="$HDR_FILES" 'BEGIN{printf "%.0f", b/n}')

# --- d: prefetch --------------------------------------------------------------
NPF=${#pfurl[@]}
echo "== prefetch of $NPF files ($REPS reps)"
(cd "$WWW" && find repo/$PF_RUN -type f -exec cat {} + >/dev/null)   # server page cache
per=$(( (NPF + 7) / 8 ))
curl_batch() {   # one curl per chunk of URLs (connections reused), 8 at once
  # shellcheck disable=SC2016  # $@ and $u belong to the inner sh
  xargs -P 8 -n "$per" sh -c 'for u; do set -- "$@" -o /dev/null "$u"; shift; done; exec curl -sf "$@"' _ <"$WORK/pf.urls"
}
curl_files() {   # the same, each file saved on the cache's file system: a pre-copy step
  rm -rf "$WORK/dl"; mkdir -p "$WORK/dl"
  xargs -P 8 -n "$per" curl -sf --remote-name-all --output-dir "$WORK/dl" <"$WORK/pf.urls"
}
pt=() pm=() pr=() c1=() cb=() cf=()
for _ in $(seq "$REPS"); do
  empty_cache; clear_log
  pt+=("$(timed "$BIN" prefetch "$WORK/repo" --config "$CFG" $PF_RUN)")
  pm+=("$(log_bytes)") pr+=("$(log_reqs)")
  c1+=("$(timed sh -c "xargs -P 8 -n 1 curl -sf -o /dev/null <'$WORK/pf.urls'")")
  cb+=("$(timed curl_batch)")
  cf+=("$(timed curl_files)")
  [ "$(ls "$WORK/dl" | wc -l)" = "$NPF" ] || { echo "curl saved $(ls "$WORK/dl" | wc -l) of $NPF files" >&2; exit 1; }
  rm -rf "$WORK/dl"
  [ "$(log_bytes)" = $((4 * NPF * PF_BYTES)) ] ||   # prefetch + the three curl baselines
    { echo "prefetch and curl moved $(log_bytes) bytes, expected $((4 * NPF * PF_BYTES))" >&2; exit 1; }
done
R[pf]=$(med "${pt[@]}") R[pf.moved]=$(med "${pm[@]}") R[pf.reqs]=$(med "${pr[@]}")
R[pf.curl1]=$(med "${c1[@]}") R[pf.curlb]=$(med "${cb[@]}") R[pf.curlf]=$(med "${cf[@]}")

# --- e: a long fat pipe: every request held to WAN_RATE -------------------------
echo "== long fat pipe: cold read of $BIG_MIB MiB, each request held to $WAN_RATE B/s ($REPS reps)"
CFG_WAN=$WORK/config-wan.yaml
{ cat "$CFG"; printf 'sources:\n  - prefix: %s/data/\n    replicas:\n      - %s/wan/\n' "$NGINX_URL" "$NGINX_URL"; } >"$CFG_WAN"
wan=() wcurl=()
for r in $(seq "$REPS"); do
  i=$(( (r - 1) % 4 ))
  empty_cache
  "$BIN" mount "$WORK/repo" "$MNT" -f -o log="$LOG",config="$CFG_WAN" & pid=$!
  for _ in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
  wan+=("$(timed cat "$MNT/${big[$i]}")")
  unmount_fs
  wcurl+=("$(timed curl -sf -o /dev/null "$NGINX_URL/wan/repo/${bigloc[$i]}")")
done
R[wan]=$(med "${wan[@]}") R[wan.curl]=$(med "${wcurl[@]}")

# --- f: memory: peak and idle RSS against memory_budget ------------------------
BUDGET=$((256 * 1024 * 1024))   # the default (the configuration sets none)
kib_b() { awk -v k="$1" 'BEGIN{printf "%.0f", k*1024}'; }
# mem_runs TAG CONFIG: the workload REPS times, fresh mount and empty cache
# each time; R[mem.TAG.peak], R[mem.TAG.idle] (bytes), R[mem.TAG.secs]
mem_runs() {
  local mpeak=() midle=() msecs=() kib secs
  for _ in $(seq "$REPS"); do
    empty_cache; CFG=$2 mount_fs
    mem_rounds "$MEM_ROUNDS" 5 "${big[@]/#/$MNT/}" || { echo "a memory-workload read failed" >&2; exit 1; }
    mpeak+=("$(hwm_kib "$pid")")
    read -r kib secs < <(idle_rss_kib "$pid" 60 $((64 * 1024)))
    midle+=("$kib") msecs+=("$secs")
    unmount_fs
  done
  R[mem.$1.peak]=$(kib_b "$(med "${mpeak[@]}")") R[mem.$1.idle]=$(kib_b "$(med "${midle[@]}")")
  R[mem.$1.secs]=$(med "${msecs[@]}")
}
echo "== memory: $MEM_ROUNDS rounds of 5 parallel readers over 4 x $BIG_MIB MiB, 4 MiB and 1 MiB blocks ($REPS reps)"
CFG_1M=$WORK/config-1m.yaml
printf 'cache:\n  dir: %s\n  block_size: 1MiB\n' "$CACHE" >"$CFG_1M"
mem_runs 4m "$CFG"
mem_runs 1m "$CFG_1M"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
mibs() { awk -v s="$1" -v m="$2" 'BEGIN{printf "%.0f", m/s}'; }
# rate_row LABEL KEY BASE MIB: a throughput row, R[KEY] against R[BASE] for MIB MiB
rate_row() {
  printf '%-44s %8s MiB/s %8s MiB/s %8s\n' "$1" "$(mibs "${R[$2]}" "$4")" "$(mibs "${R[$3]}" "$4")" \
    "$(ratio "${R[$3]}" "${R[$2]}")"
}
pf_mib=$(awk -v n="$NPF" -v b="$PF_BYTES" 'BEGIN{print n*b/1048576}')
echo
echo "machine: $(nproc) cores, $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ //'), $(free -g | awk '/Mem/{print $2}') GiB, kernel $(uname -r), $(nginx -v 2>&1 | sed 's|.*/||;s/^/nginx /'), $(curl --version | awk 'NR==1{print "curl", $2}'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server: nginx on 127.0.0.1; config: defaults (block ${BLOCK} B, readahead 64MiB, parallel 4), cache in $CACHE; medians of $REPS runs"
printf '%-44s %14s %14s %8s\n' "measure" "butlerfs" "baseline" "ratio"
rate_row "cold read ${BIG_MIB} MiB, mount vs curl" cold curl "$BIG_MIB"
rate_row "cold read vs curl -o FILE (a download)" cold curldl "$BIG_MIB"
rate_row "warm read ${BIG_MIB} MiB, fresh mount vs local cat" warm local "$BIG_MIB"
rate_row "-o direct_io: cold read vs curl" dcold curl "$BIG_MIB"
rate_row "-o direct_io: cold read vs curl -o FILE" dcold curldl "$BIG_MIB"
rate_row "-o direct_io: warm read vs local cat" dwarm local "$BIG_MIB"
rate_row "ceiling: local datastore file via mount vs curl" ceil curl "$BIG_MIB"
small_mib=$(awk -v n="$SMALL_N" 'BEGIN{print n*2880/1048576}')
rate_row "-o direct_io: 2880-byte reads vs default" dsmall small "$small_mib"
printf '%-44s %8.2f MiB %8.2f MiB %8s\n' "cold read: bytes from server vs file size" \
  "$(awk -v b="${R[cold.moved]}" 'BEGIN{print b/1048576}')" "$BIG_MIB" "$(ratio "${R[cold.moved]}" $((BIG_MIB * 1048576)))"
printf '%-44s %10s B %12s B %8s\n' "header read: bytes moved per read vs 2880" \
  "${R[hdr.per]}" 2880 "$(ratio "${R[hdr.per]}" 2880)x"
printf '%-44s %10s B %12s B %8s\n' "header read: bytes moved per read vs 1 block" \
  "${R[hdr.per]}" "$BLOCK" "$(ratio "${R[hdr.per]}" "$BLOCK")"
printf '%-44s %12s %14s %8s\n' "header read: requests per read, ms per read" \
  "$(ratio "${R[hdr.reqs]}" "$HDR_FILES")" "$(awk -v t="${R[hdr.time]}" 'BEGIN{printf "%.1f ms", t*1000}')" ""
printf '%-44s %6.0f files/s %6.0f files/s %8s\n' "prefetch $NPF x 1 MiB vs curl, xargs -P 8 -n 1" \
  "$(awk -v t="${R[pf]}" -v n="$NPF" 'BEGIN{print n/t}')" "$(awk -v t="${R[pf.curl1]}" -v n="$NPF" 'BEGIN{print n/t}')" \
  "$(ratio "${R[pf.curl1]}" "${R[pf]}")"
rate_row "prefetch vs curl, xargs -P 8 -n $per (reuse)" pf pf.curlb "$pf_mib"
rate_row "prefetch vs curl to files, -n $per (pre-copy)" pf pf.curlf "$pf_mib"
printf '%-44s %10.2f %14s %8s\n' "prefetch: bytes from server / data, reqs/file" \
  "$(ratio "${R[pf.moved]}" "$((NPF * PF_BYTES))")" "$(ratio "${R[pf.reqs]}" "$NPF")" ""
rate_row "long fat pipe ($WAN_RATE B/s a stream) vs curl" wan wan.curl "$BIG_MIB"
# mem_row LABEL KEY: an RSS row, R[KEY] bytes against the memory budget
mem_row() {
  printf '%-44s %10.0f MiB %10.0f MiB %8s\n' "$1" "$(awk -v b="${R[$2]}" 'BEGIN{print b/1048576}')" \
    "$((BUDGET / 1048576))" "$(ratio "${R[$2]}" "$BUDGET")"
}
for b in 4m 1m; do
  mem_row "peak RSS, $MEM_ROUNDS x 5 readers, block ${b^^}, vs budget" "mem.$b.peak"
  mem_row "idle RSS after ${R[mem.$b.secs]} s, block ${b^^}, vs budget" "mem.$b.idle"
done
echo "(throughput ratios: butlerfs/baseline, 1.00 = as fast; byte ratios: moved/needed, lower is better;"
echo " RSS ratios: RSS/memory_budget, bound 1 + (16 MiB + 2 MiB x (threads + 2 x parallel))/budget = 1.25)"
