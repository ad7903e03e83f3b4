#!/usr/bin/env bash
# test_transfer_randomkill.sh - kill -9 of an -o rw daemon at random moments
# while its transfer queue uploads 16 MiB files to nginx WebDAV, repeated;
# then a clean mount drains what is left.
#
# Checks, after the last round: every ingested file is at its final name in
# the archive, byte for byte (so no half-written object sits at a final
# name), exactly once (no object stored under another name), no temporary
# object is left, and every job is done (none pending, in flight or parked).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
skip_unless_fuse
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || skip "nginx is not installed"
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
command -v python3 >/dev/null || skip "python3 not installed"
trap 'nginx_stop; bfs_cleanup' EXIT
T=$BFS_TMP
ROUNDS=${BFS_KILL_ROUNDS:-8}
mkdir -p "$T/www/archive" "$T/mnt"
nginx_start "$T/www" || skip "nginx would not start"
"$BFS_BIN" synth "$T/repo" --exposures 1 --detectors 16 >/dev/null 2>&1 || fail "synth"
DB=$T/repo/gen3.sqlite3
EXP=$(sqlite3 "$DB" "SELECT exposure FROM dataset_tags_00000001 LIMIT 1")
mapfile -t DETS < <(sqlite3 "$DB" "SELECT DISTINCT detector FROM dataset_tags_00000001 ORDER BY detector")
cat >"$T/bfs.yaml" <<YAML
transfer:
  destinations:
    - {name: dbb, uri: "$NGINX_URL/data/archive/", collections: ["rk/*"]}
  concurrency: 2
  backoff_max: 1s
  max_attempts: 200
YAML
for i in $(seq "$ROUNDS"); do
    head -c $((16 << 20)) /dev/urandom >"$T/f$i.dat"
    mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
    d="$T/mnt/rk/$i/raw/instrument=LSSTCam/detector=${DETS[$((i % 16))]}/exposure=$EXP"
    mkdir -p "$d"
    cp "$T/f$i.dat" "$d/" || fail "round $i: cp"
    sleep "0.$(printf "%03d" $((RANDOM % 60)))"  # an upload of 16 MiB + its read-back: ~0.05-0.1 s here
    kill -9 "$BFS_PID"
    wait "$BFS_PID" 2>/dev/null
    fusermount3 -u "$T/mnt" 2>/dev/null || fusermount3 -uz "$T/mnt" 2>/dev/null || true
done
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
echo "rounds whose kill left jobs for the next mount: $(grep -l 'transfers pending from before' "$T"/daemon.*.log | wc -l) of $ROUNDS"
for _ in $(seq 150); do
    q=$("$BFS_BIN" queue --json "$T/repo" | python3 -c 'import json,sys; q = json.load(sys.stdin); print(q["pending"] + q["inflight"] + q["parked"], q["done"])')
    [ "${q% *}" = 0 ] && break
    sleep 0.2
done
expect "after $ROUNDS kill -9s and a clean mount, every job is done ($q)" test "$q" = "0 $ROUNDS"
n=0
while read -r rel; do
    n=$((n + 1))
    cmp -s "$T/repo/$rel" "$T/www/archive/$rel" || fail "differs or missing in the archive: $rel"
done < <(sqlite3 "$DB" "SELECT r.path FROM file_datastore_records r JOIN dataset d ON d.id = r.dataset_id JOIN collection c ON c.collection_id = d.run_id WHERE c.name LIKE 'rk/%'")
expect "every ingested file ($n) is in the archive at its final name, byte for byte" test "$n" = "$ROUNDS"
expect "... exactly once (no object under another name)" \
    test "$(find "$T/www/archive" -type f ! -name '*.butlerfs-*' | wc -l)" = "$ROUNDS"
expect "... and no temporary object is left" test -z "$(find "$T/www/archive" -name '*.butlerfs-*')"
unmount
check_log
expect_no_sanitizer
finish
