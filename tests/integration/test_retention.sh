#!/usr/bin/env bash
# test_retention.sh - local retention (docs/transfer.md, "Local retention")
# against nginx WebDAV on loopback: raws ingested through an -o rw mount
# with a destination are uploaded (done); one more is parked (its
# destination refuses), one is ingested with no transfer at all.  Every
# dataset is then made 2 days old (its ingest_date in the registry), one
# transferred raw made young again.  `butlerfs retention --dry-run` lists
# only the old transferred ones and changes nothing; the real run removes
# their registry rows, files and done records and keeps the young, parked
# and untransferred ones; a rerun is a no-op; a mount shows what is left.
# A journal left by an interrupted run is finished by the next run, which
# never unlinks outside the datastore root.  A configuration whose
# destination takes none of the datasets removes nothing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
skip_unless_fuse
trap 'nginx_stop; bfs_cleanup' EXIT
T=$BFS_TMP
archive_fixture 2
[ -f "$DB" ] || DB=$(find "$T/repo" -maxdepth 1 -name '*.sqlite3' | head -1)
cat >"$T/bfs.yaml" <<YAML
transfer:
  destinations:
    - name: dbb
      uri: $NGINX_URL/data/archive/
      collections: ["LSSTCam/*"]
  request_timeout: 5s
  backoff_max: 1s
  max_attempts: 1
  retention:
    - collections: ["LSSTCam/raw/*"]
      age: 1d
YAML
sed "s|$NGINX_URL/data/archive/|$NGINX_URL/fail503/|" "$T/bfs.yaml" >"$T/bad.yaml"
qfield() { "$BFS_BIN" queue --json "$T/repo" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

# four raws transferred (done), one parked, one never queued
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
mkdir -p "$T/mnt/LSSTCam/raw/all"
for i in 0 1 2 3; do cp "${RAWS[$i]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp $i"; done
for _ in $(seq 150); do [ "$(qfield done)" = 4 ] && break; sleep 0.2; done
unmount
expect "four raws are transferred (4 done)" test "$(qfield done)" = 4
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bad.yaml" || finish
cp "${RAWS[4]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp 4"
for _ in $(seq 100); do [ "$(qfield parked)" = 1 ] && break; sleep 0.2; done
unmount
expect "one raw's transfer is parked" test "$(qfield parked)" = 1
printf 'ingest: {}\n' >"$T/none.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/none.yaml" || finish
cp "${RAWS[5]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp 5"
unmount
expect "six datasets and six files" test "$(repo_sql 'SELECT count(*) FROM dataset')$(repo_raws)" = 66

# every dataset two days old, but the fourth transferred one (by ingest order) young again
repo_sql "UPDATE dataset SET ingest_date = ingest_date - 2 * 86400 * 1000000000" >/dev/null
mapfile -t IDS < <(repo_sql "SELECT id FROM dataset ORDER BY ingest_date")
repo_sql "UPDATE dataset SET ingest_date = ingest_date + 2 * 86400 * 1000000000 WHERE id = '${IDS[3]}'" >/dev/null
mapfile -t OLD_PATHS < <(for id in "${IDS[@]:0:3}"; do repo_sql "SELECT path FROM file_datastore_records WHERE dataset_id = '$id'"; done)

"$BFS_BIN" retention "$T/repo" --config "$T/bfs.yaml" --dry-run --json >"$T/dry.json" 2>"$T/dry.err" ||
    fail "retention --dry-run: $(cat "$T/dry.err")"
expect "the dry run lists exactly the three old transferred datasets" python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
ids = sorted(x['id'] for x in d['datasets'])
assert d['dry_run'] and ids == sorted(sys.argv[2:5]), ids
assert not any(x['removed'] for x in d['datasets'])
s = d['summary']
assert (s['examined'], s['eligible'], s['too_young'], s['not_transferred'], s['parked'], s['removed']) == (6, 3, 1, 2, 1, 0), s
" "$T/dry.json" "${IDS[@]:0:3}"
expect "... and removes nothing (six datasets, six files)" test "$(repo_sql 'SELECT count(*) FROM dataset')$(repo_raws)" = 66
"$BFS_BIN" retention "$T/repo" --config "$T/bfs.yaml" --dry-run >"$T/dry.txt" 2>/dev/null
cat "$T/dry.txt"
expect "... in words: 'would remove' per file and in the summary" \
    bash -c "test \$(grep -c '^would remove LSSTCam/' '$T/dry.txt') = 3 && grep -q '^  would remove    3' '$T/dry.txt'"

"$BFS_BIN" retention "$T/repo" --config "$T/bfs.yaml" >"$T/run.txt" 2>"$T/run.err" || fail "retention: $(cat "$T/run.err")"
cat "$T/run.txt"
expect "the real run removes the three (summary)" grep -q '^  removed         3 (3 files' "$T/run.txt"
expect "... their registry rows are gone (dataset, file records, tags, locations)" test "$(repo_sql "
    SELECT (SELECT count(*) FROM dataset WHERE id IN ('${IDS[0]}', '${IDS[1]}', '${IDS[2]}'))
         + (SELECT count(*) FROM file_datastore_records WHERE dataset_id IN ('${IDS[0]}', '${IDS[1]}', '${IDS[2]}'))
         + (SELECT count(*) FROM dataset_location WHERE dataset_id IN ('${IDS[0]}', '${IDS[1]}', '${IDS[2]}'))")" = 0
tags=$(repo_sql "SELECT tag_association_table FROM dataset_type WHERE name = 'raw'")
expect "... and their tag rows (cascade)" test "$(repo_sql "SELECT count(*) FROM $tags")" = 3
expect "... their files are gone" bash -c "for p in ${OLD_PATHS[*]}; do test ! -e '$T/repo/'\$p || exit 1; done"
expect "... the young, parked and untransferred ones stay (3 datasets, 3 files)" \
    test "$(repo_sql 'SELECT count(*) FROM dataset')$(repo_raws)" = 33
expect "... their done records are forgotten; the young one's stays" \
    test "$(ls "$T/repo/.butlerfs/queue/done" | wc -l)$(ls "$T/repo/.butlerfs/queue/done" | grep -c "${IDS[3]}")" = 11
expect "... the archive still holds the removed ones' objects" \
    test "$(find "$T/www/archive" -type f -name '*.fits' | wc -l)" = 4
expect "... and no journal is left" test ! -e "$T/repo/.butlerfs/retention.journal"
"$BFS_BIN" retention "$T/repo" --config "$T/bfs.yaml" >"$T/rerun.txt" 2>/dev/null
expect "a rerun removes nothing" grep -q '^  removed         0 (0 files' "$T/rerun.txt"
mount_repo "$T/repo" "$T/mnt" || finish
expect "a mount shows the three left" test "$(find "$T/mnt/LSSTCam/raw/all/raw" -name '*.fits' | wc -l)" = 3
unmount

# a configuration whose destination takes no raw: nothing would go
sed 's|collections: \["LSSTCam/\*"\]|collections: ["LSSTCam/*"]\n      dataset_types: [bias]|' "$T/bfs.yaml" >"$T/nodest.yaml"
repo_sql "UPDATE dataset SET ingest_date = ingest_date - 4 * 86400 * 1000000000" >/dev/null
"$BFS_BIN" retention "$T/repo" --config "$T/nodest.yaml" --dry-run --json >"$T/nodest.json" 2>/dev/null
expect "datasets no destination takes are never removed" python3 -c "
import json, sys
s = json.load(open(sys.argv[1]))['summary']
assert (s['eligible'], s['no_destination']) == (0, 3), s" "$T/nodest.json"
repo_sql "UPDATE dataset SET ingest_date = ingest_date + 4 * 86400 * 1000000000" >/dev/null

# an interrupted run: its journal names a dataset gone from the registry
# whose file is still there (kill -9 between the commit and the unlink),
# and a path that climbs out of the root; the next run removes the first
# file and leaves the outside one
echo outside >"$T/outside.fits"
ln -s "$T" "$T/repo/LSSTCam/raw/all/escape"
cat >"$T/repo/.butlerfs/retention.journal" <<JSON
{"datasets": [$(orphan_entry LSSTCam/raw/all/orphan/x.fits),
              {"id": "00000000000000000000000000000002", "paths": ["../outside.fits", "LSSTCam/raw/all/escape/outside.fits"], "destinations": ["dbb"]},
              {"id": "${IDS[3]}", "paths": ["$(repo_sql "SELECT path FROM file_datastore_records WHERE dataset_id = '${IDS[3]}'")"], "destinations": ["dbb"]}]}
JSON
"$BFS_BIN" retention "$T/repo" --config "$T/bfs.yaml" --dry-run >"$T/jdry.txt" 2>/dev/null
expect "a dry run reports the interrupted run and leaves its journal" \
    bash -c "grep -q 'interrupted run 3 datasets left to finish' '$T/jdry.txt' && test -e '$T/repo/.butlerfs/retention.journal'"
"$BFS_BIN" retention "$T/repo" --config "$T/bfs.yaml" >"$T/jrun.txt" 2>"$T/jrun.err"
cat "$T/jrun.txt"
expect "the next run finishes the journal: the orphan file is removed" test ! -e "$T/repo/LSSTCam/raw/all/orphan/x.fits"
expect "... nothing outside the datastore root is touched (../, or through a symbolic link)" test -e "$T/outside.fits"
expect "... a dataset it lists that is still registered keeps its file" test "$(repo_raws)" = 3
expect "... and the journal is gone" test ! -e "$T/repo/.butlerfs/retention.journal"
"$BFS_BIN" retention "$T/repo" --config "$T/none.yaml" >/dev/null 2>"$T/norules.err"
rc=$?
expect "retention without rules exits 1 and says so" \
    bash -c "test $rc = 1 && grep -q 'no transfer: retention: rules' '$T/norules.err'"
expect_no_sanitizer
finish
