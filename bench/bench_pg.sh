#!/usr/bin/env bash
# bench/bench_pg.sh - the PostgreSQL registry engine against SQLite, in one
# run, on loopback servers (tests/integration/pg.sh: PostgreSQL and PgBouncer
# in transaction pooling).
#
#   rows 1-4, one repository of ~N datasets (synthetic raws), copied into
#   PostgreSQL with copy-registry, mounted from SQLite, from PostgreSQL
#   directly and through PgBouncer: mount start-up, cold `find`, cold
#   `ls -lR`, and 1000 random `stat`s of dataset paths on a fresh mount
#   (p50/p99 per stat); each as a ratio to SQLite;
#   row 5, --mounts M (default 50) mounts at once (separate processes, as
#   worker nodes) through PgBouncer, each listing its own exposures and
#   statting 40 random dataset paths: p50/p99 lookup latency over all of
#   them, and the server's peak connection count (pg_stat_activity,
#   sampled every 0.1 s), next to the bound M x connections.
#
# Usage: bench/bench_pg.sh [--datasets N] [--reps R] [--mounts M] [--keep]
# Env:   BFS_BIN (default build/fs/butlerfs), BENCH_DIR (default a new dir under /var/tmp)
# Each figure is the median of R runs (default 3).  "cold" = a fresh mount.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BFS_BIN:-$here/build/fs/butlerfs}
DATASETS=100000 REPS=3 MOUNTS=50 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --datasets) DATASETS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --mounts) MOUNTS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no butlerfs binary at $BIN (build first, or set BFS_BIN)" >&2; exit 1; }
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/bfs-bench-pg.XXXXXX)}
chmod 755 "$WORK"
MNT=$WORK/mnt
mkdir -p "$MNT"
. "$here/tests/integration/pg.sh"
cleanup() {
  for m in "$WORK"/m*; do mountpoint -q "$m" 2>/dev/null && { fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m"; }; done
  pg_stop
  [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
pct() { sort -g | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100+0.999); if(i<1)i=1; print a[i]}'; }
mount_at() { # REPO MNT: echo seconds until mounted
  local t0 t1; t0=$(now)
  "$BIN" mount "$1" "$2" -f -o log="$WORK/log.$(basename "$2")" </dev/null >/dev/null 2>&1 &
  for _ in $(seq 400); do mountpoint -q "$2" && break; sleep 0.01; done
  mountpoint -q "$2" || { echo "mount of $1 did not come up" >&2; cat "$WORK/log.$(basename "$2")" >&2; exit 1; }
  t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f\n", b-a}'
}
# the daemons run detached from this shell (mount_at is called in $(...)),
# so no `wait`: that would also wait for the servers pg.sh started
unmount_at() {
  fusermount3 -u "$1" 2>/dev/null || fusermount3 -uz "$1"
  for _ in $(seq 100); do mountpoint -q "$1" || return 0; sleep 0.05; done
}
timed() { local t0 t1; t0=$(now); "$@" >/dev/null 2>&1; t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f\n", b-a}'; }
# stat each path of file $2 below $1, one after the other: ms per stat
stat_each() { python3 - "$1" "$2" <<'PY'
import os, sys, time
root, lst = sys.argv[1], sys.argv[2]
for p in open(lst).read().split("\n"):
    if not p: continue
    t = time.perf_counter(); os.stat(os.path.join(root, p)); print("%.3f" % ((time.perf_counter() - t) * 1e3))
PY
}

pg_start "$WORK" >/dev/null 2>"$WORK/pg.err" || { cat "$WORK/pg.err" >&2; exit 1; }
pgbouncer_start >/dev/null 2>&1 || { echo "PgBouncer would not start" >&2; exit 1; }
export PGPASSWORD=$PG_PASSWORD
det=189; exps=$(( (DATASETS + det - 1) / det ))
echo "== building a synthetic repository: $exps exposures x $det detectors"
"$BIN" synth "$WORK/repo" --exposures "$exps" --detectors "$det" --payload 64 >/dev/null
t=$(timed "$BIN" copy-registry "$WORK/repo" "$WORK/repo-pg" --db "$PG_URL" --namespace bench)
[ -f "$WORK/repo-pg/butler.yaml" ] || { "$BIN" copy-registry "$WORK/repo" "$WORK/repo-pg" --db "$PG_URL" --namespace bench2; exit 1; }
sed "s|$PG_URL|$PGBOUNCER_URL|" "$WORK/repo-pg/butler.yaml" >"$WORK/bouncer.yaml"
mkdir -p "$WORK/repo-bouncer" && mv "$WORK/bouncer.yaml" "$WORK/repo-bouncer/butler.yaml"
n=$(sqlite3 "$WORK/repo/gen3.sqlite3" "SELECT count(*) FROM dataset")
echo "== copy-registry of $n datasets: $t s"

TREE=LSSTCam/raw/all
mount_at "$WORK/repo" "$MNT" >/dev/null
(cd "$MNT" && find "$TREE" -type f) | shuf -n 1000 --random-source=<(yes) >"$WORK/paths"
unmount_at "$MNT"

declare -A R
for eng in sqlite pg bouncer; do
  case $eng in sqlite) repo=$WORK/repo ;; pg) repo=$WORK/repo-pg ;; bouncer) repo=$WORK/repo-bouncer ;; esac
  up=() fi=() ls=() st50=() st99=()
  for _ in $(seq "$REPS"); do
    up+=("$(mount_at "$repo" "$MNT")"); fi+=("$(timed find "$MNT/$TREE")"); unmount_at "$MNT"
    mount_at "$repo" "$MNT" >/dev/null; ls+=("$(timed ls -lR "$MNT/$TREE")"); unmount_at "$MNT"
    mount_at "$repo" "$MNT" >/dev/null; stat_each "$MNT" "$WORK/paths" >"$WORK/st"; unmount_at "$MNT"
    st50+=("$(pct 50 <"$WORK/st")"); st99+=("$(pct 99 <"$WORK/st")")
  done
  R[$eng.up]=$(printf '%s\n' "${up[@]}" | median); R[$eng.find]=$(printf '%s\n' "${fi[@]}" | median)
  R[$eng.ls]=$(printf '%s\n' "${ls[@]}" | median)
  R[$eng.st50]=$(printf '%s\n' "${st50[@]}" | median); R[$eng.st99]=$(printf '%s\n' "${st99[@]}" | median)
done

echo
echo "machine: $(nproc) cores $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//;s/ [0-9.]*GHz//'), $(awk '/MemTotal/{printf "%d GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r | cut -d- -f1)"
echo "registry of $n datasets; median of $REPS; ratio = engine / SQLite"
row() { # LABEL KEY UNIT
  printf '  %-28s sqlite %8s %s   postgresql %8s (%5.2fx)   pgbouncer %8s (%5.2fx)\n' "$1" "${R[sqlite.$2]}" "$3" \
    "${R[pg.$2]}" "$(awk -v a="${R[pg.$2]}" -v b="${R[sqlite.$2]}" 'BEGIN{print (b>0)?a/b:0}')" \
    "${R[bouncer.$2]}" "$(awk -v a="${R[bouncer.$2]}" -v b="${R[sqlite.$2]}" 'BEGIN{print (b>0)?a/b:0}')"
}
row "mount start-up" up s
row "cold find" find s
row "cold ls -lR" ls s
row "1000 random stat, p50" st50 ms
row "1000 random stat, p99" st99 ms

# row 5: many mounts at once through PgBouncer
echo "== $MOUNTS mounts at once through PgBouncer"
exp_dirs=$(cd "$WORK" && awk -F/ '{print $4"/"$5"/"$6}' paths | sort -u | head -"$MOUNTS")
for i in $(seq "$MOUNTS"); do mkdir -p "$WORK/m$i"; done
mpids=()
for i in $(seq "$MOUNTS"); do mount_at "$WORK/repo-bouncer" "$WORK/m$i" >/dev/null & mpids+=($!); done
wait "${mpids[@]}"
peak_file=$WORK/peak; echo 0 >"$peak_file"
( while :; do c=$(pg_psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE usename = '$PG_USER'" 2>/dev/null || echo 0)
    p=$(cat "$peak_file"); [ "${c:-0}" -gt "$p" ] && echo "$c" >"$peak_file"; sleep 0.1; done ) & sampler=$!
wpids=()
for i in $(seq "$MOUNTS"); do
  ( d=$(sed -n "${i}p" <<<"$exp_dirs"); ls -l "$WORK/m$i/$TREE/${d:-.}" >/dev/null 2>&1
    shuf -n 40 "$WORK/paths" >"$WORK/p$i"; stat_each "$WORK/m$i" "$WORK/p$i" >"$WORK/lat$i" ) & wpids+=($!)
done
wait "${wpids[@]}"
kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
cat "$WORK"/lat* >"$WORK/lat"
conns=$(awk '/^ *connections:/{print $2}' "$WORK/repo-bouncer/butler.yaml" 2>/dev/null); conns=${conns:-4}
printf '  %d mounts, %d lookups: p50 %s ms, p99 %s ms; server connections peak %s (PgBouncer pool %s; without it up to %d)\n' \
  "$MOUNTS" "$(wc -l <"$WORK/lat")" "$(pct 50 <"$WORK/lat")" "$(pct 99 <"$WORK/lat")" "$(cat "$peak_file")" \
  "${PGBOUNCER_POOL_SIZE:-20}" "$((MOUNTS * conns))"
upids=()
for i in $(seq "$MOUNTS"); do unmount_at "$WORK/m$i" & upids+=($!); done
wait "${upids[@]}"
