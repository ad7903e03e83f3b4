#!/usr/bin/env bash
# test_faults.sh - a real mount of a remote (HTTP) repository read through a
# fault-injecting proxy (tests/tools/faultproxy.py in front of nginx).
#
# Checks: with 10 % of requests failing (503, reset mid-body, 2 s stall,
# truncated body; about 256 MiB in 1 MiB blocks, four readers at once) every
# byte read equals the datastore file's, no read fails, the whole read ends
# within a bound and no single read(2) takes as long as the deadline; the
# proxy injected every kind; a file whose every request fails (a rule) fails
# with EIO within the deadline, and only that file.  butlerfs status counts
# every injected fault by kind and replica (503, reset, truncation; checksum
# failures in the flip case).
# The flip case (BFS_TEST_FLIP=0 leaves it out): with registry checksums and 30 % of
# replies carrying one inverted byte, a file read either fails (EIO, at the
# latest at its end, where the whole-file checksum is checked) or returns the
# right bytes, on every pass: never wrong bytes and no error; once the server
# is clean again every file reads whole and right at the first try.
# BFS_FAULT_SEED=N changes the proxy's random sequence (default 10).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
. "$(dirname "$0")/faultproxy.sh"
skip_unless_fuse
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || skip "nginx is not installed"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
trap 'faultproxy_stop; nginx_stop; bfs_cleanup' EXIT
READCMP=$BFS_LIB_DIR/../tools/readcmp.py

T=$BFS_TMP
WWW=$T/www
mkdir -p "$WWW" "$T/mnt" "$T/cache"
nginx_start "$WWW" || skip "nginx would not start"
SEED=${BFS_FAULT_SEED:-10}
faultproxy_start "$NGINX_URL" --rate 0.1 --faults 503,reset,stall,truncate --stall-seconds 2 \
    --seed "$SEED" || fail "the fault proxy did not start"
echo "fault proxy on $FAULTPROXY_URL, seed $SEED"

# 16 files of 16 MiB + a bit: about 256 MiB, each on the server only
remote_repo "$T/repo" "$WWW/repo" "$FAULTPROXY_URL/data/repo/" 4 4 $((16 * 1024 * 1024 + 4097)) || finish
DEADLINE=30
cat >"$T/config.yaml" <<EOF
cache:
  dir: $T/cache
  block_size: 1MiB
  max_size: 2GiB
  min_free: 1MiB
fetch:
  memory_budget: 64MiB
  # 10 % faults: 8 attempts make a block that fails every one (1e-8) unlikely
  attempts: 8
  backoff_base: 10ms
  backoff_max: 100ms
  connect_timeout: 2s
  request_timeout: 10s
  deadline: ${DEADLINE}s
  replica_retry: 1s
EOF

mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml,xattr" || finish
# MOUNTED<TAB>SOURCE for every file: the source is the datastore file on the server
(cd "$T/mnt" && find LSSTCam -type f | sort) | while read -r f; do
    loc=$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.butler.location").decode())' "$T/mnt/$f")
    printf '%s\t%s\n' "$T/mnt/$f" "$WWW/repo/$loc"
done >"$T/pairs"
expect "sixteen remote files listed" test "$(wc -l <"$T/pairs")" -eq 16

# the mixed faults: every byte right, nothing fails, bounded time
t0=$(date +%s)
timeout 110 python3 "$READCMP" --jobs 4 --json "$T/mixed.json" "$T/pairs" >/dev/null
rc=$?
secs=$(($(date +%s) - t0))
cat "$T/mixed.json" 2>/dev/null
stats=$(faultproxy_stats)
echo "proxy: $stats"
expect "10 % faults: all 16 files read whole and byte-identical in $secs s (readcmp exit $rc)" test "$rc" -eq 0
expect "... ending within the bound (110 s)" test "$rc" -ne 124
expect "... no single read(2) took as long as the deadline (${DEADLINE} s)" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["wrong_bytes"] == 0 and r["bytes_read"] == r["bytes_expected"] >= 256 << 20, r
assert r["max_read_s"] < float(sys.argv[2]), r' "$T/mixed.json" "$DEADLINE"
expect "the proxy injected every kind of fault (503, reset, stall, truncate)" python3 -c '
import json, sys
f = json.loads(sys.argv[1])["faults"]
assert all(f[k] >= 1 for k in ("503", "reset", "stall", "truncate")) and f["flip"] == 0, f' "$stats"
expect "no error-level line in the daemon log after faults that all recovered" \
    bash -c "! grep -Eq '$BFS_ERROR_LINE' '$BFS_LOG'"
sleep 2.5 # the status file is rewritten every 2 s
"$BFS_BIN" status --json "$T/mnt" >"$T/status.json" 2>/dev/null
"$BFS_BIN" status "$T/mnt" >"$T/status.txt" 2>/dev/null
grep "replica" "$T/status.txt"
expect "butlerfs status counts each fault the proxy injected, by kind (503 as http_5xx, resets, truncations)" \
    python3 - "$T/status.json" "$stats" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))[0]
proxy = json.loads(sys.argv[2])["faults"]
reps = [r for r in st["replicas"] if r["faults"]]
assert reps, st["replicas"]
f = {k: sum(r["faults"].get(k, 0) for r in reps) for k in ("http_5xx", "reset", "short_body", "timeout")}
# every 503 the proxy sent is one http_5xx; every reset and truncation that
# reached the daemon one reset or short_body.  A read-ahead request the
# daemon drops (its file closed) may end before its fault reaches it: the
# proxy counted it, the daemon never saw it (a TSan run missed 1 of 18), so
# resets and truncations are counted exactly up to two such, never more
assert f["http_5xx"] == proxy["503"] >= 1, (f, proxy)
seen, sent = f["reset"] + f["short_body"], proxy["reset"] + proxy["truncate"]
assert sent >= 2 and sent - 2 <= seen <= sent, (f, proxy)
assert sum(r["retries"] for r in reps) >= f["http_5xx"], reps
PY
expect "... and the human status lists them per replica" grep -Eq "replica .*faults: .*http_5xx" "$T/status.txt"
unmount

# EIO where designed: every request for one file fails; that read fails
# within the deadline, and a read of another file still works
rm -rf "$T/cache"
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml" || finish
bad=$(sed -n 1p "$T/pairs" | cut -f2) good=$(sed -n 2p "$T/pairs")
faultproxy_set "rate=0&rule=/$(basename "$bad")\$=503" || fail "set the rule"
t0=$(date +%s)
if timeout $((DEADLINE + 20)) cat "$(sed -n 1p "$T/pairs" | cut -f1)" >/dev/null 2>"$T/cat.err"; then
    fail "a file whose every request fails read without error"
else
    secs=$(($(date +%s) - t0))
    expect "a file whose every request fails: EIO" grep -q "Input/output error" "$T/cat.err"
    expect "... within the deadline (${secs} s of ${DEADLINE} s)" test "$secs" -le "$DEADLINE"
fi
sleep 1.5 # replica_retry
printf '%s\n' "$good" >"$T/pairs.good"
expect "another file read afterwards is byte-identical" \
    bash -c "timeout 60 python3 '$READCMP' '$T/pairs.good' >/dev/null"
unmount

# flips (issue 10, defects 1-2): with registry
# checksums, never a wrong byte with success; healed once the server is clean
if [ "${BFS_TEST_FLIP:-1}" = 1 ]; then
    command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 is not installed"
    head -4 "$T/pairs" >"$T/pairs.flip"
    while IFS=$'\t' read -r _ src; do
        sum=$(python3 -c 'import hashlib,sys; print(hashlib.blake2b(open(sys.argv[1],"rb").read()).hexdigest())' "$src")
        sqlite3 "$T/repo/gen3.sqlite3" "UPDATE file_datastore_records SET checksum = '$sum' WHERE path = '${src#"$WWW/repo/"}'"
    done <"$T/pairs.flip"
    rm -rf "$T/cache"
    faultproxy_set "clear_rules=1&rate=0.3&faults=flip" || fail "set flips"
    mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml" || finish
    for pass in 1 2 3; do
        timeout 110 python3 "$READCMP" --jobs 2 --json "$T/flip$pass.json" "$T/pairs.flip" >/dev/null
        expect "flips, pass $pass: no file with a wrong byte reads to its end without an error ($(cat "$T/flip$pass.json"))" \
            python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); assert r["wrong_bytes_silent"] == 0, r' "$T/flip$pass.json"
    done
    echo "proxy: $(faultproxy_stats)"
    sleep 2.5 # the status file is rewritten every 2 s
    expect "butlerfs status counts the whole-file checksum failures of the flips" python3 -c '
import json, subprocess, sys
st = json.loads(subprocess.run([sys.argv[1], "status", "--json", sys.argv[2]], capture_output=True).stdout)[0]
n = sum(r["faults"].get("checksum", 0) for r in st["replicas"])
assert n >= 1, st["replicas"]' "$BFS_BIN" "$T/mnt"
    faultproxy_set "rate=0" || fail "set clean"
    timeout 110 python3 "$READCMP" --jobs 2 --json "$T/healed.json" "$T/pairs.flip" >/dev/null
    rc=$?
    expect "server clean again: every file reads whole and right at the first try ($(cat "$T/healed.json"))" \
        test "$rc" -eq 0
    unmount
else
    echo "flip case left out (BFS_TEST_FLIP=0)"
fi

expect_no_sanitizer "$T"/daemon.*.log "$T"/daemon.*.stderr
finish
