#!/usr/bin/env bash
# test_transfer_s3.sh - the transfer queue to an S3 destination (s3rver on
# loopback): raws ingested through an -o rw mount are uploaded with a signed
# PutObject straight to their final key (S3 shows an object only once it is
# complete), read back and compared, and counted done; the objects equal
# the datastore files.  `butlerfs catchup` lists the bucket (ListObjectsV2,
# paged: BFS_LIST_MAX_KEYS=2 forces pages of two keys) instead of asking for
# each object, queues exactly what is missing, --check-sizes finds an
# object cut short, and a second run queues nothing twice.  Skips (77) when
# s3rver cannot be installed or run.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/s3rver.sh"
skip_unless_fuse
command -v python3 >/dev/null || skip "python3 not installed"
command -v curl >/dev/null || skip "curl not installed"
trap 's3rver_stop; bfs_cleanup' EXIT
T=$BFS_TMP
S3RVER_LOG_REQUESTS=1 s3rver_start dbb || skip "s3rver is not available (node/npm or the npm registry)"
"$BFS_BIN" synth "$T/src" --exposures 1 --detectors 3 --fits >/dev/null 2>&1 || fail "synth"
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
mkdir -p "$T/mnt"
cat >"$T/bfs.yaml" <<YAML
transfer:
  destinations:
    - {name: s3, uri: "s3://$S3RVER_BUCKET/archive/", collections: ["LSSTCam/*"]}
  request_timeout: 5s
  backoff_max: 1s
YAML
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
mkdir -p "$T/mnt/LSSTCam/raw/all"
for f in $(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort); do
    cp "$f" "$T/mnt/LSSTCam/raw/all/" || fail "cp $f"
done
for _ in $(seq 100); do
    q=$("$BFS_BIN" queue --json "$T/repo" | python3 -c 'import json,sys; q = json.load(sys.stdin); print(q["done"], q["pending"] + q["inflight"] + q["parked"])')
    [ "$q" = "3 0" ] && break
    sleep 0.2
done
expect "three raws uploaded to S3 and verified by reading them back ($q)" test "$q" = "3 0"
n=0
while read -r f; do
    rel=${f#"$T/repo/"}
    curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
        "$S3RVER_ENDPOINT/$S3RVER_BUCKET/archive/$(s3_key_encode "$rel")" -o "$T/got" &&
        cmp -s "$f" "$T/got" && n=$((n + 1))
done < <(find "$T/repo/LSSTCam" -type f -name '*.fits')
expect "each object in the bucket equals its datastore file (3)" test "$n" = 3
unmount

# catch-up by listing: three objects in one directory, plus three more keys
# there that the registry does not know, in pages of two keys
mapfile -t RELS < <(cd "$T/repo" && find LSSTCam -type f -name '*.fits' | sort)
dir=$(dirname "${RELS[0]}")
for i in 1 2 3; do s3_put "$T/got" "archive/$dir/zz_unknown_$i.fits" || fail "s3_put"; done
s3log=$S3RVER_DIR/s3rver.log
catchup() { # OUT [ARGS...]: run catchup with 2-key pages, its ListObjectsV2 calls in OUT.lists
    local out=$1 mark
    shift
    mark=$(wc -l <"$s3log")
    BFS_LIST_MAX_KEYS=2 "$BFS_BIN" catchup "$T/repo" --collection 'LSSTCam/*' --config "$T/bfs.yaml" "$@" \
        >"$out" 2>"$out.err"
    tail -n +"$((mark + 1))" "$s3log" >"$out.log"
    grep -c 'Fetched bucket "dbb"' "$out.log" >"$out.lists"
    cat "$out"
    grep '^butlerfs' "$out.err"
}
catchup "$T/c1.txt"
expect "catchup finds the three objects present" grep -q "^  present      3" "$T/c1.txt"
expect "... by listing the bucket in pages of two (6 keys: 3 ListObjectsV2 requests, no HEAD)" \
    bash -c "grep -Eq '^checked 3 files in 1 directories \(3 requests\): 0 missing, queued 0' '$T/c1.txt' &&
             test \$(cat '$T/c1.txt.lists') = 3 && ! grep -qi 'HEAD' '$T/c1.txt.log'"
expect "... by prefix and with a continuation token" \
    bash -c "grep -q '\"prefix\":\"archive/$dir/\"' '$T/c1.txt.log' && grep -q 'continuation-token' '$T/c1.txt.log'"
curl -sf -X DELETE --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    "$S3RVER_ENDPOINT/$S3RVER_BUCKET/archive/$(s3_key_encode "${RELS[0]}")" || fail "delete an object"
head -c 1000 "$T/repo/${RELS[1]}" >"$T/short"
s3_put "$T/short" "archive/${RELS[1]}" || fail "s3_put short"
catchup "$T/c2.txt"
expect "a deleted object is queued, and only it" \
    bash -c "grep -Eq '^checked 3 files .*: 1 missing, queued 1, 1 size mismatches' '$T/c2.txt' &&
             test \$(ls '$T/repo/.butlerfs/queue/pending' | wc -l) = 1 &&
             grep -qF '${RELS[0]}' '$T/repo/.butlerfs/queue/pending/'*"
catchup "$T/c3.txt" --check-sizes
expect "--check-sizes queues the object cut short too" \
    bash -c "grep -Eq '^checked 3 files .*: 1 missing, queued 1, 1 size mismatches' '$T/c3.txt' &&
             grep -q '^  queued before 1' '$T/c3.txt' && test \$(ls '$T/repo/.butlerfs/queue/pending' | wc -l) = 2"
catchup "$T/c4.txt" --check-sizes
expect "a second run queues nothing twice" \
    bash -c "grep -q '^  queued       0' '$T/c4.txt' && grep -q '^  queued before 2' '$T/c4.txt'"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
for _ in $(seq 100); do
    q=$("$BFS_BIN" queue --json "$T/repo" | python3 -c 'import json,sys; q = json.load(sys.stdin); print(q["pending"] + q["inflight"] + q["parked"])')
    [ "$q" = 0 ] && break
    sleep 0.2
done
unmount
catchup "$T/c5.txt" --check-sizes
expect "after the next mount uploads them, catchup finds all present" grep -q "^  present      3" "$T/c5.txt"
check_log
expect_no_sanitizer
finish
