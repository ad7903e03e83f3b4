#!/usr/bin/env bash
# test_remote_s3.sh - datasets whose bytes live in an S3 bucket (s3rver on
# loopback), read lazily through the verified block cache with SigV4 requests.
#
# Checks, for a repository whose datastore root is s3://BUCKET/repo/: every
# file lists and reads byte-identical (several readers at once), a header
# read is correct, `butlerfs cache stats` shows the blocks, and a remount
# with s3rver stopped is served from the cache.  Then the same for a
# repository whose file records hold absolute s3:// URIs (the datastore root
# a local directory without data): refused until sources: names their prefix,
# then served.  The secret key (and any SigV4 signature)
# never appears in a daemon log or stderr.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/s3rver.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 is not installed"
trap 's3rver_stop; bfs_cleanup' EXIT

T=$BFS_TMP
BUCKET=bfs-s3-test
mkdir -p "$T/mnt"      # the cache directories are created by the mounts
s3rver_start "$BUCKET" || skip "s3rver is not available (node/npm or the npm registry)"
# s3rver checks only the access key (S3RVER), never the signature: a
# distinctive secret lets us look for it in the logs.
SECRET=bfsSecretKey-7f3a9c1e-DoNotLog
export AWS_SECRET_ACCESS_KEY=$SECRET

# A repository whose datastore root is the bucket: build it locally, upload
# the data files, keep a local copy to compare with, point butler.yaml at it.
"$BFS_BIN" synth "$T/repo" --exposures 2 --detectors 3 --payload $((3 * 1024 * 1024 + 4321)) >/dev/null 2>&1 \
    || { fail "synth"; finish; }
up=0
while IFS= read -r rel; do
    s3_put "$T/repo/$rel" "repo/$rel" || up=1
done < <(cd "$T/repo" && find LSSTCam -type f)
expect "data files uploaded to s3rver" test $up -eq 0
mv "$T/repo/LSSTCam" "$T/local"     # the reference copy; the repo has no data now
cp -a "$T/repo" "$T/repo_abs"       # for the absolute-URI variant below
sed -i "s|^  root: <butlerRoot>|  root: s3://$BUCKET/repo/|" "$T/repo/butler.yaml"
grep -q "root: s3://$BUCKET/repo/" "$T/repo/butler.yaml" || { fail "rewrite datastore root"; finish; }

remote_config "$T/config.yaml" "$T/cache" 10s
sed "s|dir: $T/cache\$|dir: $T/cache2|" "$T/config.yaml" >"$T/config2.yaml"
# absolute URIs receive the S3 keys only when the configuration names them
cat >>"$T/config2.yaml" <<EOF2
sources:
  - prefix: s3://$BUCKET/repo/
    replicas:
      - s3://$BUCKET/repo/
EOF2

RAW=LSSTCam/raw/all/raw/instrument=LSSTCam

# location (xattr) of a mounted file
location() {
    python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.butler.location").decode())' "$1"
}

# read_all MNT PREFIX: every file of MNT under $RAW read at once and compared
# with the local reference copy; PREFIX is stripped from each location.
# Sets FILES and READ_SECS (the time of the reads alone: python starts
# slowly on a loaded machine).  Returns non-zero when a file differs.
read_all() {
    local mnt=$1 prefix=$2 f loc bad=0 pids=() i t0
    local -A LOC
    mapfile -t FILES < <(cd "$mnt" && find "$RAW" -type f | sort)
    [ "${#FILES[@]}" -eq 6 ] || { echo "expected 6 files, got ${#FILES[@]}" >&2; return 1; }
    while IFS=$'\t' read -r f loc; do
        LOC[$f]=$loc
    done < <(cd "$mnt" && python3 -c '
import os, sys
for f in sys.argv[1:]:
    print(f + "\t" + os.getxattr(f, "user.butler.location").decode())' "${FILES[@]}")
    t0=$(date +%s%N)
    for f in "${FILES[@]}"; do
        loc=${LOC[$f]:-}
        loc=${loc#"$prefix"}
        [ -n "$loc" ] && [ -f "$T/local/${loc#LSSTCam/}" ] || { echo "no reference for $f ($loc)" >&2; return 1; }
        ( cmp -s "$mnt/$f" "$T/local/${loc#LSSTCam/}" || { echo "differs: $f" >&2; exit 1; } ) &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || bad=1; done
    READ_SECS=$(( ($(date +%s%N) - t0) / 1000000000 ))
    return $bad
}

# ---- variant 1: datastore root s3://BUCKET/repo/ ---------------------------
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml,xattr,loglevel=debug" || finish
expect "root s3://: six files listed, each byte-identical (read concurrently)" read_all "$T/mnt" ""
f0=${FILES[0]}
loc0=$(location "$T/mnt/$f0")
expect "root s3://: the location is relative ($loc0)" test "${loc0#s3://}" = "$loc0"
expect "root s3://: header read (2880 bytes) correct" \
    cmp -s <(head -c 2880 "$T/mnt/$f0") <(head -c 2880 "$T/local/${loc0#LSSTCam/}")
expect "root s3://: file size from the registry" \
    test "$(stat -c %s "$T/mnt/$f0")" -eq $((3 * 1024 * 1024 + 4321))
check_log

"$BFS_BIN" cache --dir "$T/cache" stats >"$T/stats.out" 2>&1
cat "$T/stats.out"
blocks=$(awk '$1 == "blocks" {print $2}' "$T/stats.out")
objects=$(awk '$1 == "objects" {print $2}' "$T/stats.out")
records=$(awk '$1 == "records" {print $2}' "$T/stats.out")
# 6 files of 3 MiB + 4321 bytes at 1 MiB blocks: 4 blocks each, and one
# object record each (its pinned size and ETag, not a block)
expect "cache stats shows the 24 data blocks ($blocks) of 6 objects ($objects), 6 records ($records)" \
    test "${blocks:-0}" -eq 24 -a "${objects:-0}" -eq 6 -a "${records:-0}" -eq 6

# remount with s3rver stopped: everything comes from the cache
s3rver_pid=$S3RVER_PID
kill -STOP "$s3rver_pid"        # a hung server: any network use would fail the deadline
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml,xattr,loglevel=debug" || finish
expect "root s3://: with s3rver stopped every file reads from the cache" read_all "$T/mnt" ""
# request_timeout is 5 s: a request to the stopped server would take that long
expect "root s3://: ... without waiting on the server (${READ_SECS} s)" test "$READ_SECS" -lt 5
check_log
kill -CONT "$s3rver_pid"

# ---- variant 2: absolute s3:// URIs in file_datastore_records.path --------
sqlite3 "$T/repo_abs/gen3.sqlite3" \
    "UPDATE file_datastore_records SET path = 's3://$BUCKET/repo/' || path;" ||
    { fail "rewrite file_datastore_records.path"; finish; }
n_abs=$(sqlite3 "$T/repo_abs/gen3.sqlite3" \
    "SELECT count(*) FROM file_datastore_records WHERE path LIKE 's3://$BUCKET/repo/LSSTCam/%';")
expect "six records rewritten to absolute s3:// URIs ($n_abs)" test "$n_abs" -eq 6
mount_repo "$T/repo_abs" "$T/mnt" "config=$T/config.yaml,xattr" || finish
f0=$(cd "$T/mnt" && find "$RAW" -type f | sort | head -1)
if cat "$T/mnt/$f0" >/dev/null 2>"$T/abs.err"; then
    fail "an absolute s3:// URI the configuration does not name was read"
else
    expect "absolute s3:// URIs the configuration does not name are refused (EACCES)" \
        grep -q "Permission denied" "$T/abs.err"
fi
expect "... with a log line saying to map them under sources:" grep -q "refusing datastore location s3://.*sources:" "$BFS_LOG"
check_log
mount_repo "$T/repo_abs" "$T/mnt" "config=$T/config2.yaml,xattr,loglevel=debug" || finish
expect "absolute s3:// URIs: six files listed, each byte-identical" \
    read_all "$T/mnt" "s3://$BUCKET/repo/"
f0=${FILES[0]}
loc0=$(location "$T/mnt/$f0")
expect "absolute s3:// URIs: header read correct" \
    cmp -s <(head -c 2880 "$T/mnt/$f0") <(head -c 2880 "$T/local/${loc0#"s3://$BUCKET/repo/LSSTCam/"}")
check_log
"$BFS_BIN" cache --dir "$T/cache2" stats >"$T/stats2.out" 2>&1
blocks=$(awk '$1 == "blocks" {print $2}' "$T/stats2.out")
expect "absolute s3:// URIs: cache stats shows 24 blocks ($blocks)" test "${blocks:-0}" -eq 24

s3rver_stop
mount_repo "$T/repo_abs" "$T/mnt" "config=$T/config2.yaml,xattr" || finish
expect "absolute s3:// URIs: with s3rver gone every file reads from the cache" \
    read_all "$T/mnt" "s3://$BUCKET/repo/"
check_log

# ---- secrets ---------------------------------------------------------------
if grep -qF -- "$SECRET" "$T"/daemon.*.log "$T"/daemon.*.stderr 2>/dev/null; then
    fail "the S3 secret key appears in a daemon log"
else
    pass "the S3 secret key appears in no daemon log"
fi
if grep -Eqi 'Signature=|X-Amz-Signature|AWS4-HMAC-SHA256 Credential' "$T"/daemon.*.log "$T"/daemon.*.stderr 2>/dev/null; then
    fail "a SigV4 signature or Authorization header appears in a daemon log"
else
    pass "no SigV4 signature or Authorization header in any daemon log"
fi
expect "the debug log shows S3 requests were made (the check above looked at something)" \
    grep -q "s3:" "$T/daemon.1.log"

if grep -Eq "$BFS_SANITIZER" "$T"/daemon.*.log "$T"/daemon.*.stderr 2>/dev/null; then
    fail "sanitizer report in a daemon log"
else
    pass "no sanitizer report"
fi
finish
