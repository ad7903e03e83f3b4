#!/usr/bin/env bash
# test_transfer_faults.sh - the transfer queue (docs/transfer.md) against a
# destination that fails: nginx WebDAV behind the fault proxy
# (tests/tools/faultproxy.py, --methods all), which answers ~10 % of every
# request (PUT, MOVE, HEAD, the read-back GETs) with a fault drawn from 503,
# a connection reset (a PUT's after part of its body), a stall longer than
# the client's request timeout, a truncated reply (after the server did the
# request) and a flipped byte (a PUT's body: the server stores other bytes);
# and, so that every kind is seen on every method whatever the draw, the
# first requests of each method get one fault of each kind.  20 raws are
# ingested through an -o rw mount with a 1 s request timeout and a 1 s
# backoff cap.  Every job ends done (none parked) within a bound, every
# object is byte-identical at its final name, no temporary object is left
# (even after the proxy's stalls have ended), and no attempt failed but by
# a fault the proxy counted (the attempts in the event lines).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
. "$(dirname "$0")/faultproxy.sh"
skip_unless_fuse
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || skip "nginx is not installed"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
command -v curl >/dev/null 2>&1 || skip "curl is not installed"
trap 'faultproxy_stop; nginx_stop; bfs_cleanup' EXIT
T=$BFS_TMP
N=20 STALL=2 BOUND=50
mkdir -p "$T/www/archive" "$T/mnt"
nginx_start "$T/www" || skip "nginx would not start"
# the forced faults: on each method, one of each kind that can hit it (a
# flip needs a body: not on MOVE or HEAD)
rules=()
for k in 503 reset stall truncate flip; do rules+=(--rule "PUT .=$k*1" --rule "GET .=$k*1"); done
for k in 503 reset stall truncate; do rules+=(--rule "MOVE .=$k*1" --rule "HEAD .=$k*1"); done
FORCED=$(( ${#rules[@]} / 2 ))
faultproxy_start "$NGINX_URL" --methods all --rate 0.1 --faults 503,reset,stall,truncate,flip \
    --stall-seconds "$STALL" --seed 12 "${rules[@]}" || fail "the fault proxy did not start"
"$BFS_BIN" synth "$T/src" --exposures 5 --detectors 4 --fits >/dev/null 2>&1 || fail "synth"
mapfile -t RAWS < <(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort)
[ "${#RAWS[@]}" = "$N" ] || fail "synth made ${#RAWS[@]} raws, not $N"
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
cat >"$T/bfs.yaml" <<YAML
transfer:
  destinations:
    - name: faulty
      uri: $FAULTPROXY_URL/data/archive/
      collections: ["LSSTCam/*"]
  concurrency: 4
  request_timeout: 1s
  backoff_max: 1s
  max_attempts: 30
  verify: readback
YAML
qstate() { "$BFS_BIN" queue --json "$T/repo" | python3 -c '
import json, sys
q = json.load(sys.stdin)
print(q["done"], q["pending"] + q["inflight"], q["parked"])'; }

mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
mkdir -p "$T/mnt/LSSTCam/raw/all"
t0=$(date +%s.%N)
for f in "${RAWS[@]}"; do cp "$f" "$T/mnt/LSSTCam/raw/all/" || fail "cp $(basename "$f")"; done
state=
for _ in $(seq $((BOUND * 5))); do
    state=$(qstate)
    [ "${state% *}" = "$N 0" ] && break
    [ "${state##* }" = 0 ] || break # parked: no point waiting
    sleep 0.2
done
secs=$(echo "$(date +%s.%N) - $t0" | bc)
read -r done_n open_n parked_n <<<"$state"
expect "with faults on ~10 % of requests, all $N uploads are done ($done_n done, $open_n open) in ${secs} s (bound ${BOUND} s)" \
    test "$done_n $open_n" = "$N 0"
expect "... none parked ($parked_n)" test "$parked_n" = 0
sleep $((STALL + 1)) # a request the proxy held is over: forwarded or dropped
unmount
stats=$(faultproxy_stats)
faultproxy_stop

n=0
bad=
while read -r f; do
    rel=${f#"$T/repo/"}
    cmp -s "$f" "$T/www/archive/$rel" || bad+=" $rel"
    n=$((n + 1))
done < <(find "$T/repo/LSSTCam" -type f -name '*.fits')
expect "every object is byte-identical at its final name ($n files;${bad:- none} differ or missing)" \
    test "$n" = "$N" -a -z "$bad"
expect "... the archive holds nothing else: no temporary object left" \
    test "$(find "$T/www/archive" -type f | wc -l)" = "$N" -a -z "$(find "$T/www/archive" -name '*.butlerfs-*')"

python3 - "$stats" "$FORCED" <<'PY' && pass "the proxy injected every kind on every method, beyond the forced ones" || fail "faults injected"
import json, sys
s, forced = json.loads(sys.argv[1]), int(sys.argv[2])
m = s["methods"]
print("proxy:", s["requests"], "requests,", s["faults_total"], "faults:", s["faults"],
      {k: {c: n for c, n in v.items() if n} for k, v in m.items()})
want = {"PUT": ("503", "reset", "stall", "truncate", "flip"), "GET": ("503", "reset", "stall", "truncate", "flip"),
        "MOVE": ("503", "reset", "stall", "truncate"), "HEAD": ("503", "reset", "stall", "truncate")}
for meth, kinds in want.items():
    for k in kinds:
        assert m[meth][k] >= 1, (meth, k, m[meth])
assert s["faults_total"] > forced, ("no fault drawn at the rate", s["faults_total"], forced)
PY

# no attempt failed but by a fault: the event lines' attempts (1 + the
# failed ones) against the proxy's count.  Not equal: libcurl sends a
# request again by itself when a reused connection dies before any reply
# byte (a reset before a HEAD's reply, a status line cut early), so such a
# fault may cost no attempt
python3 - "$stats" "$T/repo/.butlerfs/events.jsonl" "$N" <<'PY' && pass "no attempt failed but by a fault" || fail "attempts against faults"
import json, sys
s = json.loads(sys.argv[1])
ev = [json.loads(l) for l in open(sys.argv[2]) if '"transfer":"done"' in l]
assert len(ev) == int(sys.argv[3]), len(ev)
failed = sum(e["attempts"] - 1 for e in ev)
print(f"{failed} failed attempts over {len(ev)} jobs (most {max(e['attempts'] for e in ev)}), "
      f"{s['faults_total']} faults injected")
assert 1 <= failed <= s["faults_total"], (failed, s["faults_total"])
PY
check_log
expect_no_sanitizer "$BFS_ERR"
finish
