#!/usr/bin/env bash
# bench/bench_ingest.sh - writing through an -o rw mount (path ingest), as
# ratios against the same copies to the same local disk, in one run.
#
#   cp of one focal plane (N files of M MiB, one per detector, one exposure)
#   into full dataId paths of the mount, one cp after another, vs cp of the
#   same files into a directory on the datastore's disk;
#   the same focal plane with all N cps at once;
#   a ceiling row for both: local cp + b2sum + sync of each file, the work a
#   close in the mount promises (checksum known, bytes durable) on the same disk;
#   two references, one after another: each promise alone, done by standard
#   tools (OpenSSL BLAKE2b-512 of bytes in the page cache; the faster of
#   O_DIRECT writes + fsync and page-cache writes + fdatasync).  They were
#   taken as bounds until 2026-12-06, when the mount beat the durable one:
#   the tools take fresh pages (or wait for each O_DIRECT request) and the
#   mount, dropping each ingested file's pages, reuses them;
#   per-file cp time (its close returns once the dataset is registered), p50/p99;
#   the daemon's peak RSS (VmHWM) over the run;
#   raw ingest (headers translated, the Header Service document merged,
#   records registered) of synthetic FITS raws of ~1 MiB copied into a RUN's
#   directory, each one's Header Service document already in the configured
#   header_service.dir: close -> event latency (the event's latency_ms: from
#   the writer's close to the event line), one writer (L raws one after
#   another, p50/p99, target p99 < 50 ms) and a focal plane of L raws of one
#   exposure at once (default 189).
#
# Usage: bench/bench_ingest.sh [--files N] [--mib M] [--reps R] [--raws L] [--keep]
# Env:   BFS_BIN (default build/fs/butlerfs), BENCH_DIR (default a new dir under /var/tmp)
# Each figure is the median of R runs (default 3); each run ingests into a new RUN.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BFS_BIN:-$here/build/fs/butlerfs}
FILES=189 MIB=32 REPS=3 RAWS=189 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift 2 ;;
    --mib) MIB=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --raws) RAWS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no butlerfs binary at $BIN (build first, or set BFS_BIN)" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "bench_ingest needs the sqlite3 CLI" >&2; exit 1; }
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/bfs-bench-ingest.XXXXXX)}
MNT=$WORK/mnt SRC=$WORK/src
mkdir -p "$MNT" "$SRC"
pid=
cleanup() {
  [ -n "$pid" ] && { fusermount3 -u "$MNT" 2>/dev/null || true; }
  [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

echo "== building a repository with $FILES detectors and $FILES files of $MIB MiB"
"$BIN" synth "$WORK/repo" --exposures 1 --detectors "$FILES" >/dev/null
DB=$WORK/repo/gen3.sqlite3
EXP=$(sqlite3 "$DB" "SELECT exposure FROM dataset_tags_00000001 LIMIT 1")
mapfile -t DETS < <(sqlite3 "$DB" "SELECT DISTINCT detector FROM dataset_tags_00000001 ORDER BY detector")
for i in $(seq 0 $((FILES - 1))); do head -c $((MIB << 20)) /dev/urandom >"$SRC/f$i.dat"; done
sync

# the Header Service documents of the raw-latency section wait in this directory
mkdir -p "$WORK/hs"
printf 'ingest:\n  header_service: {dir: %s, wait: 10s}\n' "$WORK/hs" >"$WORK/bfs.yaml"
"$BIN" mount "$WORK/repo" "$MNT" -o rw,config="$WORK/bfs.yaml",log="$WORK/butlerfs.log"
pid=$(pgrep -n -f "butlerfs mount $WORK/repo")

# one copy: cp; for "ceiling", cp with the promises a close in the mount
# makes (the BLAKE2b-512 of the bytes known, and the bytes durable): cp, b2sum
# of the copy (page cache), sync of the file.  Two references, each one
# promise alone, by standard tools: "hash", OpenSSL's BLAKE2b-512 of the source
# (bytes in the page cache, no copy; the mount hashes with the same code);
# "direct", the bytes written with O_DIRECT in 4 MiB requests and fsync'd (no
# page cache on the way); "synced", written through the page cache in 4 MiB
# writes, then fdatasync (what the mount does).  Which of the two is faster
# depends on the disk (on the virtio disk of 2026-12-04 the second, by 20 %):
# the durable reference is the faster one.
copy() {
  case "$1" in
    hash) openssl dgst -blake2b512 "$2" >/dev/null ;;
    direct) dd if="$2" of="$3/$(basename "$2")" bs=4M oflag=direct conv=fsync status=none ;;
    synced) dd if="$2" of="$3/$(basename "$2")" bs=4M conv=fdatasync status=none ;;
    *) cp "$2" "$3/"
       if [ "$1" = ceiling ]; then b2sum "$3/$(basename "$2")" >/dev/null; sync "$3/$(basename "$2")"; fi ;;
  esac
}

# one pass: cp every file (serial or parallel) to DEST_OF(i); prints seconds
pass() {
  local mode=$1 kind=$2 run=$3 t0 t1
  sync # every pass starts with no dirty pages of the one before (untimed)
  t0=$(now)
  for i in $(seq 0 $((FILES - 1))); do
    if [ "$kind" = mount ]; then
      d="$MNT/$run/raw/instrument=LSSTCam/detector=${DETS[$i]}/exposure=$EXP"
    else
      d="$WORK/repo/native-$run/$i"
    fi
    mkdir -p "$d"
    if [ "$mode" = serial ]; then
      s=$(now); copy "$kind" "$SRC/f$i.dat" "$d"; e=$(now)
      echo "$e - $s" | bc >>"$WORK/percp.$kind"
    else
      copy "$kind" "$SRC/f$i.dat" "$d" &
    fi
  done
  wait
  t1=$(now)
  echo "$t1 - $t0" | bc
  # the bytes go (untimed), so a full focal plane of 189 x 32 MiB needs
  # room for one pass only; the mount's rows stay registered
  if [ "$kind" = mount ]; then rm -rf "${WORK:?}/repo/$run"; else rm -rf "${WORK:?}/repo/native-$run"; fi
}

: >"$WORK/percp.mount"; : >"$WORK/percp.native"; : >"$WORK/percp.ceiling"
: >"$WORK/percp.hash"; : >"$WORK/percp.direct"; : >"$WORK/percp.synced"
declare -a sm sn pm pn sc pc sh sd sy
for r in $(seq "$REPS"); do
  sn+=("$(pass serial native "s$r")"); sm+=("$(pass serial mount "bench/s$r")")
  sc+=("$(pass serial ceiling "cs$r")")
  sh+=("$(pass serial hash "hs$r")"); sd+=("$(pass serial direct "ds$r")"); sy+=("$(pass serial synced "ys$r")")
  pn+=("$(pass parallel native "p$r")"); pm+=("$(pass parallel mount "bench/p$r")")
  pc+=("$(pass parallel ceiling "cp$r")")
  n=$(sqlite3 "$DB" "SELECT count(*) FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name IN ('bench/s$r', 'bench/p$r')")
  [ "$n" = $((2 * FILES)) ] || { echo "run $r: $n datasets registered, want $((2 * FILES))" >&2; exit 1; }
done
hwm_fp=$(awk '/VmHWM/{print int($2/1024)}' "/proc/$pid/status")
# raw ingest latency: synthetic raws of another day (their exposures are
# new), two exposures of RAWS detectors: the first one after another, the
# second a focal plane at once; each exposure's Header Service document
# (PRIMARY cards and every sensor's block) is written before its raws
"$BIN" synth "$WORK/rawsrc" --day-obs 20250416 --exposures 2 --detectors "$RAWS" --fits >/dev/null
python3 - "$WORK/rawsrc" "$WORK/hs" "$WORK" <<'PY'
import collections, glob, os, sys
def cards(path):
    with open(path, "rb") as f:
        head = f.read(2880 * 40)
    out = {}
    for i in range(0, len(head), 80):
        c = head[i:i + 80].decode("ascii", "replace")
        if c.startswith("END "):
            break
        if c[8:10] == "= ":
            out[c[:8].strip()] = c[10:].split("/")[0].strip().strip("'").strip()
    return out
sensors = collections.defaultdict(set)
for p in glob.glob(os.path.join(sys.argv[1], "**", "*.fits"), recursive=True):
    h = cards(p)
    sensors[h["OBSID"]].add(h["RAFTBAY"] + h["CCDSLOT"])
paths = collections.defaultdict(list)
for p in glob.glob(os.path.join(sys.argv[1], "**", "*.fits"), recursive=True):
    paths[cards(p)["OBSID"]].append(p)
for k, obsid in enumerate(sorted(paths)[:2]):  # the raws of each exposure, for the two rows
    with open(os.path.join(sys.argv[3], f"raw{k + 1}.txt"), "w") as f:
        f.write("\n".join(sorted(paths[obsid])) + "\n")
for obsid, ss in sensors.items():
    lines = ["PRIMARY:"]
    for k in range(40):  # a Header Service document carries tens of PRIMARY cards
        lines += [f"- keyword: HSKEY{k:03d}", f"  value: {k * 1.5}", "  comment: from the Header Service"]
    for sn in sorted(ss):
        lines += [f"{sn}_PRIMARY:", "- keyword: HSTEMP", "  value: -100.5", "  comment: the sensor's temperature"]
    with open(os.path.join(sys.argv[2], obsid + ".yaml"), "w") as f:
        f.write("\n".join(lines) + "\n")
PY
mapfile -t RAW1 <"$WORK/raw1.txt"
mapfile -t RAW2 <"$WORK/raw2.txt"
mkdir -p "$MNT/bench/raw-serial" "$MNT/bench/raw-parallel"
# untimed, as before each pass: the focal-plane passes' gigabytes of dirty
# pages are written back first, so the latency rows time the ingest, not
# that writeback (runs back to back without it: p99 56-67 ms, with: 20-25)
sync
for f in "${RAW1[@]}"; do cp "$f" "$MNT/bench/raw-serial/"; done
for f in "${RAW2[@]}"; do cp "$f" "$MNT/bench/raw-parallel/" & done
wait
merged=$(grep -c '"header_service":"merged' "$WORK/repo/.butlerfs/events.jsonl" || true)
lat() { python3 - "$WORK/repo/.butlerfs/events.jsonl" "$1" <<'PY'
import json, sys
lat = sorted(e["latency_ms"] for e in map(json.loads, open(sys.argv[1]))
             if e.get("run") == sys.argv[2] and e.get("status") == 0 and e.get("latency_ms") is not None)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else -1
print(f"n {len(lat)} p50 {q(0.5)} ms p99 {q(0.99)} ms")
PY
}
LAT_S=$(lat bench/raw-serial) LAT_P=$(lat bench/raw-parallel)
hwm=$(awk '/VmHWM/{print int($2/1024)}' "/proc/$pid/status")
mb=$((FILES * MIB))
S_N=$(printf '%s\n' "${sn[@]}" | median); S_M=$(printf '%s\n' "${sm[@]}" | median)
P_N=$(printf '%s\n' "${pn[@]}" | median); P_M=$(printf '%s\n' "${pm[@]}" | median)
S_C=$(printf '%s\n' "${sc[@]}" | median); P_C=$(printf '%s\n' "${pc[@]}" | median)
S_H=$(printf '%s\n' "${sh[@]}" | median); S_DD=$(printf '%s\n' "${sd[@]}" | median)
S_DY=$(printf '%s\n' "${sy[@]}" | median)
S_D=$(printf '%s\n%s\n' "$S_DD" "$S_DY" | sort -n | head -1)
p() { sort -n "$1" | awk -v q="$2" '{a[NR]=$1} END {i=int(NR*q); if (i<1) i=1; printf "%.1f", a[i]*1000}'; }
echo
echo "machine: $(nproc) cores $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r)"
printf "focal plane, %d files x %d MiB, median of %d\n" "$FILES" "$MIB" "$REPS"
printf "  cp one after another: mount %.2f s (%.0f MiB/s), local disk %.2f s (%.0f MiB/s): ratio %.2f (target >= 0.8)\n" \
  "$S_M" "$(echo "$mb / $S_M" | bc -l)" "$S_N" "$(echo "$mb / $S_N" | bc -l)" "$(echo "$S_N / $S_M" | bc -l)"
[ "$REPS" -gt 1 ] && printf "    each run: local %s s; mount %s s\n" "$(printf '%.2f ' "${sn[@]}" | sed 's/ $//')" \
  "$(printf '%.2f ' "${sm[@]}" | sed 's/ $//')"
printf "  all cps at once:      mount %.2f s (%.0f MiB/s), local disk %.2f s (%.0f MiB/s): ratio %.2f\n" \
  "$P_M" "$(echo "$mb / $P_M" | bc -l)" "$P_N" "$(echo "$mb / $P_N" | bc -l)" "$(echo "$P_N / $P_M" | bc -l)"
printf "  ceiling (local cp + b2sum + sync of each file: a mount close's promises, without FUSE or registry):\n"
printf "    one after another %.2f s: ratio to local cp %.2f, mount to ceiling %.2f\n" \
  "$S_C" "$(echo "$S_N / $S_C" | bc -l)" "$(echo "$S_C / $S_M" | bc -l)"
printf "    all at once %.2f s: ratio to local cp %.2f, mount to ceiling %.2f\n" \
  "$P_C" "$(echo "$P_N / $P_C" | bc -l)" "$(echo "$P_C / $P_M" | bc -l)"
printf "  references, one file after another (each promise alone, by standard tools):\n"
printf "    BLAKE2b-512 only (openssl, bytes in page cache) %.2f s: local cp / it %.2f, it / mount %.2f\n" \
  "$S_H" "$(echo "$S_N / $S_H" | bc -l)" "$(echo "$S_H / $S_M" | bc -l)"
printf "    durable write only %.2f s (the faster of O_DIRECT 4 MiB + fsync %.2f s and 4 MiB writes + fdatasync %.2f s):\n" \
  "$S_D" "$S_DD" "$S_DY"
printf "      local cp / it %.2f, it / mount %.2f\n" "$(echo "$S_N / $S_D" | bc -l)" "$(echo "$S_D / $S_M" | bc -l)"
printf "  one cp (write + close until registered): mount p50 %s ms p99 %s ms; local p50 %s ms p99 %s ms\n" \
  "$(p "$WORK/percp.mount" 0.5)" "$(p "$WORK/percp.mount" 0.99)" "$(p "$WORK/percp.native" 0.5)" "$(p "$WORK/percp.native" 0.99)"
printf "  daemon peak RSS: %d MiB over the focal-plane passes, %d MiB over the whole run (target < 100 MiB)\n" "$hwm_fp" "$hwm"
printf "  raw ingest, close -> event (synthetic FITS raws of ~1 MiB, Header Service documents present: %s of %d merged):\n" \
  "$merged" $(( ${#RAW1[@]} + ${#RAW2[@]} ))
printf "    one writer, %d raws one after another: %s (target p99 < 50 ms)\n" "${#RAW1[@]}" "$LAT_S"
printf "    a focal plane of %d raws at once: %s\n" "${#RAW2[@]}" "$LAT_P"
