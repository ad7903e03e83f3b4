#!/usr/bin/env bash
# bench/explain_pg.sh - the plans of a mount's registry queries on a
# PostgreSQL registry of N datasets (default 1 000 000).
#
# A synthetic repository (N raws: N/189 exposures x 189 detectors) is copied
# into PostgreSQL (copy-registry); the server runs with auto_explain, which
# logs the plan and the actual time of every statement.  A mount then does
# what users do, each on a fresh mount:
#   ls of the instrument level (the detectors), ls of one detector (all its
#   exposures), ls of one exposure across detectors (the other dimension
#   order), stat of 200 random dataset paths, and ls -lR of one detector.
# The script prints one line per distinct statement shape: how often it
# ran, its median and worst server time, its plan's top node, and any Seq
# Scan on a table that grows with the datasets (dataset, dataset_tags_*,
# dataset_calibs_*, file_datastore_records, dataset_location).  Such a scan
# is a missing index for that listing shape.
#
# Usage: bench/explain_pg.sh [--datasets N] [--keep]
# Env:   BFS_BIN (default build/fs/butlerfs), BENCH_DIR (default a new dir under /var/tmp)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BFS_BIN:-$here/build/fs/butlerfs}
DATASETS=1000000 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --datasets) DATASETS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no butlerfs binary at $BIN (build first, or set BFS_BIN)" >&2; exit 1; }
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/bfs-explain-pg.XXXXXX)}
chmod 755 "$WORK"
MNT=$WORK/mnt
mkdir -p "$MNT"
. "$here/tests/integration/pg.sh"
cleanup() {
  mountpoint -q "$MNT" 2>/dev/null && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; }
  pg_stop
  [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PG_EXTRA_ARGS="-c shared_preload_libraries=auto_explain -c auto_explain.log_min_duration=0
  -c auto_explain.log_analyze=on -c auto_explain.log_timing=off -c auto_explain.log_format=json"
export PG_EXTRA_ARGS
pg_start "$WORK" >/dev/null 2>"$WORK/pg.err" || { cat "$WORK/pg.err" >&2; exit 1; }
export PGPASSWORD=$PG_PASSWORD
det=189; exps=$(( (DATASETS + det - 1) / det ))
echo "== $exps exposures x $det detectors, copied into PostgreSQL"
t0=$(date +%s)
"$BIN" synth "$WORK/repo" --exposures "$exps" --detectors "$det" --payload 16 >/dev/null
t1=$(date +%s)
"$BIN" copy-registry "$WORK/repo" "$WORK/repo-pg" --db "$PG_URL" --namespace explain 2>/dev/null >/dev/null
t2=$(date +%s)
pg_psql -q -c "ANALYZE" >/dev/null
echo "   synth $((t1 - t0)) s, copy-registry $((t2 - t1)) s"

log=$PG_DIR/postgres.log
TREE=LSSTCam/raw/all/raw/instrument=LSSTCam
run() { # one workload step on a fresh mount
  "$BIN" mount "$WORK/repo-pg" "$MNT" -o log="$WORK/mount.log"
  ( cd "$MNT" && eval "$1" ) >/dev/null 2>&1 || true
  fusermount3 -u "$MNT"
}
: >"$log.mark"; start=$(wc -c <"$log")
run "ls $TREE"
run "ls $TREE/detector=5"
exp=$(cd "$WORK/repo" && sqlite3 gen3.sqlite3 "SELECT id FROM exposure ORDER BY id LIMIT 1 OFFSET $((exps / 2))")
run "ls $TREE/exposure=$exp"
run "ls $TREE/exposure=$exp/detector=7"
paths=$(sqlite3 "$WORK/repo/gen3.sqlite3" "SELECT 'detector=' || detector || '/exposure=' || exposure FROM dataset_tags_00000001 ORDER BY random() LIMIT 200" | sed "s|^|$TREE/|" | tr '\n' ' ')
run "for p in $paths; do ls \$p >/dev/null; done"
run "ls -lR $TREE/detector=9 | tail -1"
tail -c +$((start + 1)) "$log" >"$WORK/plans.log"

echo
echo "machine: $(nproc) cores $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r | cut -d- -f1), $(psql --version | cut -d' ' -f3- | head -1)"
python3 - "$WORK/plans.log" "$DATASETS" <<'PY'
import json, re, sys, statistics
text = open(sys.argv[1], errors="replace").read()
big = re.compile(r"^(dataset|dataset_tags_\d+|dataset_calibs_\d+|file_datastore_records|dataset_location)$")
shapes = {}
# auto_explain's JSON plans follow "plan:" on a LOG line; they end at the next LOG line
for m in re.finditer(r"duration: ([0-9.]+) ms  plan:\n(.*?)(?=\n\S.*?LOG:|\Z)", text, re.S):
    try:
        doc = json.loads(m.group(2))
    except ValueError:
        continue
    q = " ".join(doc.get("Query Text", "").split())
    if q.upper().startswith(("BEGIN", "SET ", "COMMIT", "ROLLBACK")):
        continue
    shape = re.sub(r"\$\d+", "?", q)
    seq = set()
    def walk(node):
        if node.get("Node Type") == "Seq Scan" and big.match(node.get("Relation Name", "")):
            seq.add("%s(%d rows)" % (node["Relation Name"], node.get("Actual Rows", 0)))
        for c in node.get("Plans", []):
            walk(c)
    walk(doc["Plan"])
    s = shapes.setdefault(shape, {"ms": [], "top": doc["Plan"]["Node Type"], "seq": set()})
    s["ms"].append(float(m.group(1)))
    s["seq"] |= seq
print("registry of %s datasets; per statement shape: runs, median / worst server ms, plan top, seq scans of big tables" % sys.argv[2])
bad = 0
for shape, s in sorted(shapes.items(), key=lambda kv: -max(kv[1]["ms"])):
    flag = ("SEQ SCAN " + ", ".join(sorted(s["seq"]))) if s["seq"] else "indexed"
    bad += bool(s["seq"])
    print("  %5d  %8.2f / %8.2f ms  %-16s %s\n         %s" % (len(s["ms"]), statistics.median(s["ms"]), max(s["ms"]),
          s["top"], flag, shape if len(shape) <= 160 else shape[:100] + " ... " + shape[-55:]))
print("%d statement shapes, %d with a sequential scan of a big table" % (len(shapes), bad))
PY
