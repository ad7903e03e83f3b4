#!/usr/bin/env bash
# bench/bench_mount.sh - metadata and sequential-read speed of a butlerfs mount,
# printed as ratios against a baseline measured in the same run.
#
#   find / ls -lR over a synthetic repository of ~100 000 datasets through the
#   mount, vs the same directory tree on the local disk;
#   sequential cat of large files through the mount, vs cat of the datastore
#   files directly;
#   the daemon's RSS after a cold find over repositories of each size given
#   to --rss-datasets (default: the --datasets one), vs the 100 MiB target of
#   the node cap (-o max_nodes, default), with that find's time.
#
# Usage: bench/bench_mount.sh [--datasets N] [--big-mib M] [--reps R] [--keep]
#                             [--rss-datasets "N1 N2 ..."] [--rss-only] [--mount-opts O]
# Env:   BFS_BIN (default build/fs/butlerfs), BENCH_DIR (default a new dir under /var/tmp)
# Each figure is the median of R runs (default 5).  "cold" = a fresh mount
# (empty kernel caches for the mount); the native tree is always warm: the
# kernel's dentry cache cannot be dropped without root and a quiet machine.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BFS_BIN:-$here/build/fs/butlerfs}
DATASETS=100000 BIG_MIB=512 REPS=5 KEEP=0 RSS_SIZES= RSS_ONLY=0 MOPTS=
while [ $# -gt 0 ]; do
  case "$1" in
    --rss-datasets) RSS_SIZES=$2; shift 2 ;;
    --rss-only) RSS_ONLY=1; shift ;;
    --mount-opts) MOPTS=$2; shift 2 ;;
    --datasets) DATASETS=$2; shift 2 ;;
    --big-mib) BIG_MIB=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no butlerfs binary at $BIN (build first, or set BFS_BIN)" >&2; exit 1; }
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/bfs-bench.XXXXXX)}
MNT=$WORK/mnt NATIVE=$WORK/native LOG=$WORK/butlerfs.log
mkdir -p "$MNT" "$NATIVE"
pid=
cleanup() {
  mountpoint -q "$MNT" 2>/dev/null && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null; }
  [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true
  [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mount_fs() { # [OPTS [REPO]]
  "$BIN" mount "${2:-$WORK/repo}" "$MNT" -f -o log="$LOG" ${1:+-o "$1"} & pid=$!
  for _ in $(seq 100); do mountpoint -q "$MNT" && return 0; sleep 0.05; done
  echo "mount did not come up; log:" >&2; cat "$LOG" >&2; exit 1
}
unmount_fs() { fusermount3 -u "$MNT"; wait "$pid" 2>/dev/null || true; pid=; }
timed() { local t0 t1; t0=$(now); "$@" >/dev/null 2>&1; t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f\n", b-a}'; }

det=189; exps=$(( (DATASETS + det - 1) / det ))
TREE=LSSTCam/raw/all
if [ "$RSS_ONLY" = 0 ]; then
echo "== building a synthetic repository: $exps exposures x $det detectors in $WORK/repo"
"$BIN" synth "$WORK/repo" --exposures "$exps" --detectors "$det" --payload 512 >/dev/null
echo "== adding 4 large files of $BIG_MIB MiB (run LSSTCam/raw/big)"
"$BIN" synth "$WORK/repo" --run LSSTCam/raw/big --day-obs 20250416 --exposures 4 --detectors 1 \
  --payload $((BIG_MIB * 1024 * 1024)) >/dev/null

mount_fs
echo "== mirroring the mounted tree on local disk (baseline)"
(cd "$MNT" && find "$TREE" -type d) | (cd "$NATIVE" && xargs -d '\n' mkdir -p)
(cd "$MNT" && find "$TREE" -type f) | (cd "$NATIVE" && xargs -d '\n' touch)
entries=$(find "$NATIVE/$TREE" | wc -l)
unmount_fs

declare -A R
for op in find lslR; do
  case $op in find) cmd=(find) ;; lslR) cmd=(ls -lR) ;; esac
  cold=() warm=() nat=()
  for _ in $(seq "$REPS"); do
    mount_fs
    cold+=("$(timed "${cmd[@]}" "$MNT/$TREE")")
    warm+=("$(timed "${cmd[@]}" "$MNT/$TREE")")
    unmount_fs
    nat+=("$(timed "${cmd[@]}" "$NATIVE/$TREE")")
  done
  R[$op.cold]=$(printf '%s\n' "${cold[@]}" | median)
  R[$op.warm]=$(printf '%s\n' "${warm[@]}" | median)
  R[$op.native]=$(printf '%s\n' "${nat[@]}" | median)
done

mount_fs xattr
mapfile -t big < <(cd "$MNT" && find LSSTCam/raw/big -type f | sort)
declare -A SRC
for f in "${big[@]}"; do   # the datastore file behind each mounted file, from its xattr
  SRC[$f]=$WORK/repo/$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.butler.location").decode())' "$MNT/$f")
done
unmount_fs
mnt_t=() dir_t=()
for _ in $(seq "$REPS"); do
  for f in "${big[@]}"; do
    cat "${SRC[$f]}" >/dev/null   # both sides read from the page cache
    mount_fs
    mnt_t+=("$(timed cat "$MNT/$f")")
    unmount_fs
    dir_t+=("$(timed cat "${SRC[$f]}")")
  done
done
R[cat.mount]=$(printf '%s\n' "${mnt_t[@]}" | median)
R[cat.direct]=$(printf '%s\n' "${dir_t[@]}" | median)

# mount start-up: the big repository vs a one-dataset one
"$BIN" synth "$WORK/tiny" --exposures 1 --detectors 1 --payload 512 >/dev/null 2>&1
mount_time() {
  local t0 t1
  t0=$(now)
  "$BIN" mount "$1" "$MNT" -f -o log="$LOG" & pid=$!
  while ! mountpoint -q "$MNT"; do sleep 0.002; done
  t1=$(now)
  unmount_fs
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f\n", b-a}'
}
big_t=() tiny_t=()
for _ in $(seq "$REPS"); do
  big_t+=("$(mount_time "$WORK/repo")")
  tiny_t+=("$(mount_time "$WORK/tiny")")
done
R[mount.big]=$(printf '%s\n' "${big_t[@]}" | median)
R[mount.tiny]=$(printf '%s\n' "${tiny_t[@]}" | median)

fi

# RSS after a cold find, per repository size (the node cap bounds it)
: "${RSS_SIZES:=$DATASETS}"
declare -A RSS RSST RSSN
for n in $RSS_SIZES; do
  e=$(( (n + det - 1) / det )) repo=$WORK/repo
  if [ "$RSS_ONLY" = 1 ] || [ "$n" != "$DATASETS" ]; then
    repo=$WORK/repo-$n
    [ -d "$repo" ] || { echo "== building $e exposures x $det detectors in $repo"; "$BIN" synth "$repo" --exposures "$e" --detectors "$det" --payload 512 >/dev/null; }
  fi
  r=() tt=() nn=()
  for _ in $(seq "$REPS"); do
    mount_fs "$MOPTS" "$repo"
    tt+=("$(timed find "$MNT/$TREE")")
    sleep 2.5  # the status file is rewritten every 2 s
    r+=("$(awk '/VmRSS/{printf "%.1f\n", $2/1024}' "/proc/$pid/status")")
    sf=${XDG_RUNTIME_DIR:+$XDG_RUNTIME_DIR/butlerfs}/mount.$pid.json
    [ -f "$sf" ] || sf=/tmp/butlerfs-$(id -u)/mount.$pid.json
    nn+=("$(python3 -c 'import json,sys; print((json.load(open(sys.argv[1])).get("nodes") or {}).get("live", -1))' "$sf" 2>/dev/null || echo -1)")
    unmount_fs
  done
  RSS[$n]=$(printf '%s\n' "${r[@]}" | median)
  RSST[$n]=$(printf '%s\n' "${tt[@]}" | median)
  RSSN[$n]=$(printf '%s\n' "${nn[@]}" | median)
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
mibs() { awk -v s="$1" -v m="$BIG_MIB" 'BEGIN{printf "%.0f", m/s}'; }
echo
echo "machine: $(nproc) cores, $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ //'), $(free -g | awk '/Mem/{print $2}') GiB, kernel $(uname -r)"
printf '%-34s %10s %10s %8s\n' "measure" "butlerfs" "baseline" "ratio"
if [ "$RSS_ONLY" = 0 ]; then
echo "repository: $((exps * det)) datasets; tree $TREE: $entries entries; medians of $REPS runs"
printf '%-34s %9.3fs %9.3fs %8s\n' "find, cold mount vs native" "${R[find.cold]}" "${R[find.native]}" "$(ratio "${R[find.cold]}" "${R[find.native]}")x"
printf '%-34s %9.3fs %9.3fs %8s\n' "find, warm mount vs native" "${R[find.warm]}" "${R[find.native]}" "$(ratio "${R[find.warm]}" "${R[find.native]}")x"
printf '%-34s %9.3fs %9.3fs %8s\n' "ls -lR, cold mount vs native" "${R[lslR.cold]}" "${R[lslR.native]}" "$(ratio "${R[lslR.cold]}" "${R[lslR.native]}")x"
printf '%-34s %9.3fs %9.3fs %8s\n' "ls -lR, warm mount vs native" "${R[lslR.warm]}" "${R[lslR.native]}" "$(ratio "${R[lslR.warm]}" "${R[lslR.native]}")x"
printf '%-34s %9.3fs %9.3fs %8s\n' "mount, $((exps * det)) vs 1 dataset" "${R[mount.big]}" "${R[mount.tiny]}" "$(ratio "${R[mount.big]}" "${R[mount.tiny]}")x"
printf '%-34s %7s MiB/s %5s MiB/s %8s\n' "cat ${BIG_MIB} MiB, mount vs direct" "$(mibs "${R[cat.mount]}")" "$(mibs "${R[cat.direct]}")" "$(ratio "${R[cat.direct]}" "${R[cat.mount]}")"
fi
for n in $RSS_SIZES; do
  printf '%-34s %6.1f MiB %6s MiB %8s\n' "RSS after find, $n datasets" "${RSS[$n]}" 100 "$(ratio "${RSS[$n]}" 100)"
  printf '%-34s %9.3fs %10s %8s\n' "  (that find; live nodes after)" "${RSST[$n]}" "${RSSN[$n]}" ""
done
echo "(time ratios: lower is better, 1.00 = as fast as the baseline; throughput ratio: mount/direct, 1.00 = as fast;"
echo " RSS: the daemon's after a cold find of $TREE, against the 100 MiB target; mount options: ${MOPTS:-defaults})"
