#!/usr/bin/env bash
# test_transfer_s3.sh - the transfer queue to an S3 destination (s3rver on
# loopback): raws ingested through an -o rw mount are uploaded with a signed
# PutObject straight to their final key (S3 shows an object only once it is
# complete), read back and compared, and counted done; the objects equal
# the datastore files; a file above transfer.multipart_threshold goes up by a
# multipart upload.  `butlerfs catchup` lists the bucket (ListObjectsV2,
# paged: BFS_LIST_MAX_KEYS=2 forces pages of two keys) instead of asking for
# each object, queues exactly what is missing, --check-sizes finds an
# object cut short, and a second run queues nothing twice.  Skips (77) when
# s3rver cannot be installed or run.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/s3rver.sh"
. "$(dirname "$0")/faultproxy.sh"
skip_unless_fuse
command -v python3 >/dev/null || skip "python3 not installed"
command -v curl >/dev/null || skip "curl not installed"
trap 'faultproxy_stop; s3rver_stop; bfs_cleanup' EXIT
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

# Multipart: a 12 MiB dataset (thresholds made small) goes up in 5 MiB parts
# (5, 5, 2: s3rver does not enforce the 5 MiB minimum, but the parts keep it
# anyway).  It is queued by `butlerfs catchup` (a synthetic repository,
# not a FITS ingest) and drained by a mount of that repository.
"$BFS_BIN" synth "$T/big" --exposures 1 --detectors 1 --payload $((12 * 1024 * 1024 + 4321)) >/dev/null 2>&1 ||
    fail "synth of the 12 MiB dataset"
cat >"$T/mp.yaml" <<YAML
transfer:
  destinations:
    - {name: s3, uri: "s3://$S3RVER_BUCKET/big/", collections: ["LSSTCam/*"]}
  request_timeout: 20s
  backoff_max: 1s
  multipart_threshold: 8MiB
  multipart_part_size: 5MiB
YAML
sed 's/multipart_part_size: 5MiB/multipart_part_size: 1MiB/' "$T/mp.yaml" >"$T/small.yaml"
"$BFS_BIN" catchup "$T/big" --collection 'LSSTCam/*' --config "$T/small.yaml" >"$T/small.txt" 2>&1
expect "a part size below S3's 5 MiB minimum is refused with file:line" \
    grep -q "small.yaml:7: transfer.multipart_part_size must be a size from 5MiB" "$T/small.txt"
"$BFS_BIN" catchup "$T/big" --collection 'LSSTCam/*' --config "$T/mp.yaml" >"$T/catchup.txt" 2>&1 ||
    { cat "$T/catchup.txt"; fail "catchup of the 12 MiB dataset"; }
mkdir -p "$T/mnt2"
mount_repo "$T/big" "$T/mnt2" "rw,config=$T/mp.yaml" || finish
for _ in $(seq 150); do
    q=$("$BFS_BIN" queue --json "$T/big" | python3 -c 'import json,sys; q = json.load(sys.stdin); print(q["done"], q["pending"] + q["inflight"] + q["parked"])')
    [ "$q" = "1 0" ] && break
    sleep 0.2
done
expect "a 12 MiB dataset uploaded by multipart and verified by reading it back ($q)" test "$q" = "1 0"
big=$(find "$T/big/LSSTCam" -type f | head -1)
rel=${big#"$T/big/"}
curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    "$S3RVER_ENDPOINT/$S3RVER_BUCKET/big/$(s3_key_encode "$rel")" -o "$T/got.big"
expect "... the object equals the 12 MiB file byte for byte" cmp -s "$big" "$T/got.big"
# s3rver has no ListMultipartUploads (GET bucket?uploads is NotImplemented)
# nor AbortMultipartUpload; it keeps each upload in progress as a directory
# of its data dir (<bucket>/._S3rver_uploads/<UploadId>/), removed by Complete.
uploads="$S3RVER_DIR/data/$S3RVER_BUCKET/._S3rver_uploads"
expect "... it went up as a multipart upload (s3rver made its uploads directory)" test -d "$uploads"
expect "... and no multipart upload is left in progress" test -z "$(ls -A "$uploads" 2>/dev/null)"
unmount
check_log

# A part that fails is sent again alone: the fault proxy (in front of
# s3rver) answers the first UploadPart of part 2 with a 503; the upload
# still succeeds in the job's first attempt, and the object is whole.
# drain_via_proxy NAME: queue $T/big's dataset for the destination NAME of
# $T/NAME.yaml (catchup), then mount through the fault proxy until NAME's
# transfer is done (or 30 s)
drain_via_proxy() {
    local c=$1
    "$BFS_BIN" catchup "$T/big" --collection 'LSSTCam/*' --config "$T/$c.yaml" >"$T/catchup-$c.txt" 2>&1 ||
        { cat "$T/catchup-$c.txt"; fail "catchup to $c"; }
    AWS_ENDPOINT_URL=$FAULTPROXY_URL mount_repo "$T/big" "$T/mnt2" "rw,loglevel=info,config=$T/$c.yaml" || finish
    for _ in $(seq 150); do
        grep -q "\"transfer\":\"done\".*\"destination\":\"$c\"" "$T/big/.butlerfs/events.jsonl" 2>/dev/null && break
        sleep 0.2
    done
}
if faultproxy_start "$S3RVER_ENDPOINT" --rule 'partNumber=2&uploadId=503*1'; then
    sed -e 's/name: s3,/name: retry,/' -e 's#/big/#/retry/#' "$T/mp.yaml" >"$T/retry.yaml"
    drain_via_proxy retry
    expect "an UploadPart answered 503 was sent again alone: done in the job's first attempt" \
        grep -q '"transfer":"done".*"destination":"retry".*"attempts":1' "$T/big/.butlerfs/events.jsonl"
    expect "... the proxy did inject that one 503" test "$(faultproxy_count 503)" = 1
    curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
        "$S3RVER_ENDPOINT/$S3RVER_BUCKET/retry/$(s3_key_encode "$rel")" -o "$T/got.retry"
    expect "... and the object equals the file byte for byte" cmp -s "$big" "$T/got.retry"
    expect "... no multipart upload left in progress" test -z "$(ls -A "$uploads" 2>/dev/null)"
    unmount
    check_log
else
    echo "skipped: the fault proxy did not start (python3)"
fi
# verify: size checks the ETag S3 computed from the bytes it stored.  The
# proxy inverts one byte of the first PutObject's body (a server storing
# other bytes than were sent: no Content-MD5 on a single PutObject, and
# s3rver does not check an UNSIGNED-PAYLOAD): the size is right, the ETag
# is not the file's MD5, so that attempt fails and the next one is done.
# Then a clean multipart upload with verify: size: its "<md5 of the parts'
# MD5s>-3" ETag must equal what the file gives.
faultproxy_stop
if faultproxy_start "$S3RVER_ENDPOINT" --methods PUT --rule "PUT /$S3RVER_BUCKET/etag/=flip*1"; then
    sed -e 's/name: s3,/name: etag,/' -e 's#/big/#/etag/#' -e 's/multipart_threshold: 8MiB/multipart_threshold: 64MiB/' \
        "$T/mp.yaml" >"$T/etag.yaml"
    echo "  verify: size" >>"$T/etag.yaml"
    sed -e 's/name: etag,/name: etagmp,/' -e 's#/etag/#/etagmp/#' -e 's/multipart_threshold: 64MiB/multipart_threshold: 8MiB/' \
        "$T/etag.yaml" >"$T/etagmp.yaml"
    for c in etag etagmp; do
        drain_via_proxy "$c"
        unmount
    done
    expect "a PutObject whose stored bytes differ (one byte flipped on the way) is caught by its ETag" \
        grep -q 'has ETag .*the server stored other bytes' "$T"/daemon.*.log
    expect "... the proxy did flip that one body" test "$(faultproxy_count flip)" = 1
    expect "... and the next attempt is done" \
        grep -q '"transfer":"done".*"destination":"etag".*"attempts":2' "$T/big/.butlerfs/events.jsonl"
    curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
        "$S3RVER_ENDPOINT/$S3RVER_BUCKET/etag/$(s3_key_encode "$rel")" -o "$T/got.etag"
    expect "... and the object equals the file byte for byte" cmp -s "$big" "$T/got.etag"
    expect "a multipart upload is verified by its composite ETag, done in its first attempt" \
        grep -q '"transfer":"done".*"destination":"etagmp".*"attempts":1' "$T/big/.butlerfs/events.jsonl"
    check_log
else
    echo "skipped: the fault proxy did not start (python3)"
fi
expect_no_sanitizer
finish
