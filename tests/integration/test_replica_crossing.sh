#!/usr/bin/env bash
# test_replica_crossing.sh - a replica and its sidecar closed at the same
# moment (their seals on two workers, each finding the other not WAITING
# yet): the pair is refused (checksum mismatch), and one of the two closes
# must say so (docs/transfer.md: the close of the second returns the pair's
# outcome); no pair may have both closes return 0.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
T=$BFS_TMP
"$BFS_BIN" synth "$T/src" --exposures 1 --detectors 1 --fits >/dev/null 2>&1 || fail "synth"
"$BFS_BIN" export "$T/src" LSSTCam/raw/all --to "$T/out" >/dev/null 2>&1 || fail "export"
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
mkdir -p "$T/mnt"
f=$(find "$T/out" -type f -name '*.fits' | head -1)
b=$(basename "$f")
cp "$f" "$T/bad.fits"
printf 'X' | dd of="$T/bad.fits" bs=1 seek=100 conv=notrunc 2>/dev/null
printf 'ingest:\n  replica_wait: 1h\n  workers: 4\n' >"$T/cfg.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
R=$T/mnt/.replicas
both_ok=0
for i in $(seq 1 15); do
    cp "$T/bad.fits" "$R/$b" & p1=$!
    cp "$f.butler.json" "$R/$b.butler.json" & p2=$!
    wait $p1; r1=$?
    wait $p2; r2=$?
    [ $r1 = 0 ] && [ $r2 = 0 ] && both_ok=$((both_ok + 1))
    # let a pair both sides accepted finish (or wait) before the next
    sleep 0.2
    for k in 1 2 3 4 5 6 7 8 9 10; do [ -e "$R/$b" ] || [ -e "$R/$b.butler.json" ] || break; sleep 0.2; done
    [ -e "$R/$b" ] || [ -e "$R/$b.butler.json" ] && break
done
expect "no refused pair had both closes return 0 ($both_ok of $i did)" test "$both_ok" = 0
unmount
expect_no_sanitizer
finish
