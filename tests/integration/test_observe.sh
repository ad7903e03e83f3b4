#!/usr/bin/env bash
# test_observe.sh - what an operator sees: log lines that data cannot forge,
# and faults that retries hide from readers counted and reported.
#
# Checks: a registry path holding a newline, a fake timestamp, ESC sequences
# and invalid UTF-8 reaches the log as one escaped line, with no raw control
# byte and no forged line; a replica failing ~50% of its requests (503)
# still serves every byte, and `butlerfs status` (text and --json) shows its
# requests, retries and http_5xx faults, and the log has one rate-limited
# "is degrading" warning at the default level.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
skip_unless_fuse
trap 'nginx_stop; bfs_cleanup' EXIT
T=$BFS_TMP
mkdir -p "$T/mnt"

# ---- log injection through a registry value --------------------------------
"$BFS_BIN" synth "$T/local" --exposures 1 --detectors 2 >/dev/null 2>&1 || fail "synth"
python3 - "$T/local/gen3.sqlite3" <<'PY' || fail "poison a registry path"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
bad = (b"LSSTCam/missing.fits\n2026-01-01T00:00:00.000Z butlerfs[1] error fetch: FORGED line"
       b"\x1b]0;owned\x07\x1b[2J\x1b[31mred\xff\xfe\xc2\x9b")
# every row: whichever file is read, its location is the poisoned one
c.execute("UPDATE file_datastore_records SET path = CAST(? AS TEXT)", (bad,))
c.commit()
PY
mount_repo "$T/local" "$T/mnt" "loglevel=debug" || finish
find "$T/mnt" -type f -print0 2>/dev/null | head -z -n 2 | xargs -0 -r cat >/dev/null 2>&1
pid=$BFS_PID
unmount
expect "the poisoned path reached the log (escaped)" grep -qF 'missing.fits\x0a2026-01-01T00:00:00.000Z butlerfs[1] error fetch: FORGED' "$BFS_LOG"
expect "no line of the log is forged: every line is the daemon's own" \
    bash -c "! grep -a -v -E '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z butlerfs\[$pid\] ' '$BFS_LOG' | grep -q ."
expect "no raw ESC, BEL, C1 or invalid UTF-8 byte in the log" \
    python3 -c '
import sys
b = open(sys.argv[1], "rb").read()
assert b and not any(c < 0x20 and c != 0x0a for c in b) and 0x7f not in b, "control byte"
t = b.decode("utf-8")  # raises on invalid UTF-8
assert not any(0x80 <= ord(ch) <= 0x9f for ch in t), "C1 control"
' "$BFS_LOG"
expect_no_sanitizer "$BFS_ERR"

# ---- faults an operator can see --------------------------------------------
command -v nginx >/dev/null 2>&1 || { echo "nginx is not installed: no fault counting checks"; finish; }
WWW=$T/www
mkdir -p "$WWW" "$T/cache"
nginx_start "$WWW" || { echo "nginx would not start: no fault counting checks"; finish; }
remote_repo "$T/repo" "$WWW/repo" "$NGINX_URL/data/repo/" 1 3 $((6 * 1024 * 1024 + 777)) || finish
cat >"$T/config.yaml" <<EOF
cache:
  dir: $T/cache
  block_size: 1MiB
  max_size: 1GiB
  min_free: 1MiB
fetch:
  deadline: 30s
  attempts: 20
  backoff_base: 5ms
  backoff_max: 20ms
sources:
  - prefix: $NGINX_URL/data/
    replicas:
      - $NGINX_URL/flaky/
EOF
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml" || finish
# every file read whole; as a set, the files read are the files on the server
(cd "$WWW/repo" && find . -type f -exec sha256sum {} + | cut -d' ' -f1 | sort -u) >"$T/want.sums"
find "$T/mnt" -type f -exec sha256sum {} + | cut -d' ' -f1 | sort -u >"$T/got.sums"
expect "every file reads, byte-identical, through a replica failing ~50% of its requests" \
    bash -c "test -s '$T/want.sums' && cmp -s '$T/want.sums' '$T/got.sums'"
sleep 2.5 # one status period
"$BFS_BIN" status >"$T/status.out" 2>&1
sed 's/^/    | /' "$T/status.out"
expect "butlerfs status shows the flaky replica's requests, retries and 5xx faults" \
    grep -Eq "replica +$NGINX_URL/flaky/: [0-9]+ requests, [1-9][0-9]* retries, 0 not found; faults: [1-9][0-9]* http_5xx" "$T/status.out"
"$BFS_BIN" status --json "$T/mnt" >"$T/status.json"
expect "butlerfs status --json: per-replica requests, retries and faults by kind" \
    python3 - "$T/status.json" "$NGINX_URL/flaky/" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
reps = {r["name"]: r for r in s[0]["replicas"]}
r = reps[sys.argv[2]]
kinds = {"http_5xx", "http_4xx", "reset", "timeout", "short_body", "refused", "checksum", "other"}
assert set(r["faults"]) == kinds, r
assert r["requests"] >= 10 and r["retries"] >= 1 and r["faults"]["http_5xx"] >= 1, r
assert r["faults"]["http_5xx"] < r["requests"] and 0 < r["recent_failure_rate"] < 1, r
PY
unmount
expect "the log warns, at the default level, that the replica is degrading" \
    grep -Eq " warning fetch: replica $NGINX_URL/flaky/ is degrading: [0-9]+ of its last [0-9]+ requests failed \([0-9]+%, above fetch.warn_failure_rate 0.05\); since start: [0-9]+ http_5xx" "$BFS_LOG"
expect "... once: the warning is rate-limited" test "$(grep -c 'is degrading' "$BFS_LOG")" -eq 1
check_log

# a replica that closes every connection without a reply: its resets are
# counted against it, the next replica serves the data
rm -rf "$T/cache"
sed -i "s|$NGINX_URL/flaky/|$NGINX_URL/drop/\\n      - $NGINX_URL/data/|; s/attempts: 20/attempts: 3/" "$T/config.yaml"
mount_repo "$T/repo" "$T/mnt" "config=$T/config.yaml" || finish
find "$T/mnt" -type f -exec sha256sum {} + | cut -d' ' -f1 | sort -u >"$T/got.sums"
expect "every file reads, byte-identical, past a replica that drops every connection" \
    cmp -s "$T/want.sums" "$T/got.sums"
sleep 2.5 # one status period
"$BFS_BIN" status --json "$T/mnt" >"$T/status.json"
expect "butlerfs status --json: the dropping replica's resets, the good one's clean requests" \
    python3 - "$T/status.json" "$NGINX_URL" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
reps = {r["name"]: r for r in s[0]["replicas"]}
drop, data = reps[sys.argv[2] + "/drop/"], reps[sys.argv[2] + "/data/"]
assert drop["faults"]["reset"] == drop["requests"] >= 3 and drop["retries"] >= 2, drop
assert data["requests"] >= 3 and sum(data["faults"].values()) == 0, data
PY
unmount
finish
