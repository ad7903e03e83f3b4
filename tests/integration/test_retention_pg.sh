#!/usr/bin/env bash
# test_retention_pg.sh - local retention (docs/transfer.md, "Local
# retention") on a PostgreSQL registry, where dataset ids are uuid: the
# paged walk (pages of 1024 datasets, the next page after the last uuid of
# the one before) over 1134 synthetic raws judges each dataset once, and a
# run removes exactly those with a done record (every other one, so each
# page holds some of both), their files and done records, in batches, and
# keeps the rest; a second run removes nothing.  No mount and no upload: the
# done records are written here as the transfer queue would have.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
trap 'pg_stop; bfs_cleanup' EXIT
command -v python3 >/dev/null || skip "python3 not installed"
pg_test_servers
export PGPASSWORD=$PG_PASSWORD # libpq's own convention; never on a command line
T=$BFS_TMP
N=1134 # 6 exposures x 189 detectors: two pages
"$BFS_BIN" synth "$T/src" --exposures 6 --detectors 189 --payload 16 >/dev/null 2>&1 || fail "synth"
"$BFS_BIN" copy-registry "$T/src" "$T/pg" --db "$PG_URL" --namespace ret >"$T/copy.out" 2>&1 ||
    { cat "$T/copy.out" >&2; fail "copy-registry"; finish; }
cat >"$T/bfs.yaml" <<YAML
transfer:
  destinations:
    - name: dbb
      uri: http://127.0.0.1:9/never/
      collections: ["LSSTCam/*"]
  retention:
    - collections: ["LSSTCam/raw/*"]
      age: 0
YAML
pq() { pg_psql -At -c "SET search_path TO ret; $1"; }
nfiles() { find "$T/src/LSSTCam" -type f | wc -l; }
summary() { python3 -c "import json,sys; s = json.load(open(sys.argv[1]))['summary']; print(' '.join(str(s[k]) for k in sys.argv[2:]))" "$@"; }

"$BFS_BIN" retention "$T/pg" --config "$T/bfs.yaml" --dry-run --json >"$T/dry.json" 2>"$T/dry.err" ||
    fail "dry run: $(cat "$T/dry.err")"
expect "a dry run over $N uuid-keyed datasets judges each once (two pages), none transferred" \
    test "$(summary "$T/dry.json" examined not_transferred eligible)" = "$N $N 0"

mapfile -t IDS < <(pq "SELECT replace(id::text, '-', '') FROM dataset ORDER BY id")
mkdir -p "$T/pg/.butlerfs/queue/done"
for ((i = 0; i < ${#IDS[@]}; i += 2)); do echo '{}' >"$T/pg/.butlerfs/queue/done/${IDS[$i]}.dbb.json"; done
half=$((N / 2))
"$BFS_BIN" retention "$T/pg" --config "$T/bfs.yaml" --json >"$T/run.json" 2>"$T/run.err" ||
    fail "retention: $(cat "$T/run.err")"
expect "the run removes the $half datasets with a done record (in batches) and keeps the $half others" \
    test "$(summary "$T/run.json" examined removed files_removed not_transferred errors)" = "$N $half $half $half 0"
expect "... from the registry" test "$(pq 'SELECT count(*) FROM dataset')" = "$half"
expect "... exactly the ones without a done record are left" \
    test "$(pq "SELECT replace(id::text, '-', '') FROM dataset ORDER BY id" | tr '\n' ' ')" = \
         "$(for ((i = 1; i < ${#IDS[@]}; i += 2)); do printf '%s ' "${IDS[$i]}"; done)"
expect "... their files are gone, the others' stay" test "$(nfiles)" = "$half"
expect "... and their done records" test "$(find "$T/pg/.butlerfs/queue/done" -name '*.json' | wc -l)" = 0
"$BFS_BIN" retention "$T/pg" --config "$T/bfs.yaml" --json >"$T/again.json" 2>/dev/null
expect "a second run removes nothing" test "$(summary "$T/again.json" examined removed)" = "$half 0"
finish
