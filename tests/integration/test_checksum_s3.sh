#!/usr/bin/env bash
# test_checksum_s3.sh - without a registry checksum, a whole read of an S3
# object is checked against its ETag when that is the object's MD5 (issue
# 10, defect 2): s3rver on loopback.
#
# Checks: files read whole byte-identical (their ETags match); a file whose
# stored bytes are changed behind s3rver's back (same size, ETag kept, as a
# server corrupting data would serve it) fails with EIO at its end, says
# so in the log, and a second cat fails too rather than returning the
# wrong bytes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/s3rver.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 is not installed"
trap 's3rver_stop; bfs_cleanup' EXIT

T=$BFS_TMP
BUCKET=bfs-ck-test
mkdir -p "$T/mnt"
s3rver_start "$BUCKET" || skip "s3rver is not available (node/npm or the npm registry)"

"$BFS_BIN" synth "$T/repo" --exposures 2 --detectors 1 --payload $((2 * 1024 * 1024 + 4321)) >/dev/null 2>&1 \
    || { fail "synth"; finish; }
up=0
while IFS= read -r rel; do
    s3_put "$T/repo/$rel" "repo/$rel" || up=1
done < <(cd "$T/repo" && find LSSTCam -type f)
expect "data files uploaded to s3rver" test $up -eq 0
mv "$T/repo/LSSTCam" "$T/local"
sed -i "s|^  root: <butlerRoot>|  root: s3://$BUCKET/repo/|" "$T/repo/butler.yaml"
sqlite3 "$T/repo/gen3.sqlite3" "UPDATE file_datastore_records SET checksum = NULL"
mapfile -t ROWS < <(sqlite3 "$T/repo/gen3.sqlite3" "SELECT path FROM file_datastore_records ORDER BY path")
[ "${#ROWS[@]}" -eq 2 ] || { fail "two datastore rows, got ${#ROWS[@]}"; finish; }
GOOD=${ROWS[0]} BAD=${ROWS[1]}

# s3rver's stored copy of BAD: the file under its data dir with BAD's bytes
stored=""
while IFS= read -r f; do
    cmp -s "$f" "$T/local/${BAD#LSSTCam/}" 2>/dev/null && { stored=$f; break; }
    cmp -s "$f" "$T/local/$BAD" 2>/dev/null && { stored=$f; break; }
done < <(find "$S3RVER_DIR/data" -type f -size +1M)
[ -n "$stored" ] || skip "cannot find s3rver's stored copy of an object"
python3 - "$stored" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(1500000)
    b = f.read(1)
    f.seek(1500000)
    f.write(bytes([b[0] ^ 0xFF]))
PY

remote_config "$T/config.yaml" "$T/cache" 10s

mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml,xattr" || finish
mounted_of()
{
    local f
    while IFS= read -r f; do
        [ "$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.butler.location").decode())' "$f")" = "$1" ] \
            && { echo "$f"; return 0; }
    done < <(find "$T/mnt" -type f)
    return 1
}
FG=$(mounted_of "$GOOD") && FB=$(mounted_of "$BAD") || { fail "the mounted files of $GOOD and $BAD"; finish; }
sha() { sha256sum | cut -d' ' -f1; }
expect "a file matching its ETag reads byte-identical" \
    test "$(cat "$FG" | sha)" = "$(sha <"$T/local/${GOOD#LSSTCam/}" 2>/dev/null || sha <"$T/local/$GOOD")"
for i in 1 2; do
    if cat "$FB" >/dev/null 2>"$T/cat.err"; then
        fail "cat $i of an object that does not match its ETag succeeded"
    else
        expect "cat $i of an object that does not match its ETag is EIO" grep -q "Input/output error" "$T/cat.err"
    fi
done
expect "the mismatch is logged" grep -q "does not match its S3 ETag (MD5" "$BFS_LOG"
unmount
expect_no_sanitizer "$T"/daemon.*.log "$T"/daemon.*.stderr
finish
