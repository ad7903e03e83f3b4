#!/usr/bin/env bash
# test_faultproxy.sh - the fault-injecting proxy (tests/tools/faultproxy.py)
# itself, with curl: clean replies and Range requests pass through unchanged;
# each fault kind, set by a rule, looks as it should on the wire (503; a reset
# mid-body; a stall that still delivers every byte; a short body under a kept
# Content-Length; one inverted byte with status and length kept); the control
# endpoint switches modes; a 10 % mix injects every kind it is given; the
# stats file counts what curl saw.  Writes (--methods all): a PUT cut
# mid-body by a reset or a stall the client gives up on leaves nothing at
# the server; a truncated reply to a PUT or MOVE fails at the client though
# the server did it; a flipped PUT stores one byte inverted; a truncated
# HEAD fails; counts per method.  --rate-limit holds a PUT and a GET to the
# rate.  No FUSE needed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
. "$(dirname "$0")/faultproxy.sh"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || skip "nginx is not installed"
command -v curl >/dev/null 2>&1 || skip "curl is not installed"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
trap 'faultproxy_stop; nginx_stop; bfs_cleanup' EXIT

T=$BFS_TMP
mkdir -p "$T/www"
head -c $((3 * 1024 * 1024 + 123)) /dev/urandom >"$T/www/big.bin"
head -c 1000 /dev/urandom >"$T/www/small.bin"
SIZE=$(stat -c %s "$T/www/big.bin")
nginx_start "$T/www" || skip "nginx would not start"
faultproxy_start "$NGINX_URL" --stall-seconds 1.5 --seed 7 \
    --rule 'fault=503=503' --rule 'fault=reset=reset' --rule 'fault=stall=stall' \
    --rule 'fault=truncate=truncate' --rule 'fault=flip=flip' --rule 'fault=once=503*1' ||
    fail "the proxy did not start"
U=$FAULTPROXY_URL/data/big.bin

# get QUERY [curl args]: body to $T/out, "HTTP_CODE SIZE CURL_EXIT SECONDS" on stdout
get() {
    local q=$1 rc out code size secs
    shift
    out=$(curl -s -o "$T/out" -w '%{http_code} %{size_download} %{time_total}' "$@" "$U$q")
    rc=$?
    read -r code size secs <<<"$out"
    echo "$code $size $rc $secs"
}
ndiff() { cmp -l "$1" "$2" 2>/dev/null | wc -l; }

read -r code size rc _ < <(get "")
expect "a clean GET passes through (200, $size bytes, curl exit $rc)" test "$code $size $rc" = "200 $SIZE 0"
expect "... byte-identical" cmp -s "$T/out" "$T/www/big.bin"
read -r code size rc _ < <(get "" -r 1000000-1999999)
expect "a Range request passes through ($code, $size bytes)" test "$code $size $rc" = "206 1000000 0"
expect "... with the range's bytes" cmp -s "$T/out" <(tail -c +1000001 "$T/www/big.bin" | head -c 1000000)
h=$(curl -s -I -r 0-99 "$U" | tr -d '\r')
expect "... and its Content-Range" grep -q "^Content-Range: bytes 0-99/$SIZE$" <<<"$h"
expect "a HEAD passes through with the Content-Length" grep -q "^Content-Length: $SIZE$" <<<"$(curl -s -I "$U" | tr -d '\r')"

read -r code size rc _ < <(get "?fault=503")
expect "503: the status is 503 ($code)" test "$code" = 503
read -r code size rc _ < <(get "?fault=reset")
expect "reset: status 200 ($code), then the connection is reset mid-body (curl exit $rc, 56 = recv failure)" \
    test "$code $rc" = "200 56"
expect "... after part of the body ($size of $SIZE bytes)" test "$size" -lt "$SIZE"
read -r code size rc secs < <(get "?fault=stall")
expect "stall: the whole body arrives, late ($code, $size bytes, ${secs}s)" \
    bash -c "[ '$code $size $rc' = '200 $SIZE 0' ] && awk 'BEGIN{exit !($secs >= 1.5)}'"
expect "... byte-identical" cmp -s "$T/out" "$T/www/big.bin"
read -r code size rc _ < <(get "?fault=truncate")
expect "truncate: status 200, a short body (curl exit $rc, 18 = partial file)" test "$code $rc" = "200 18"
expect "... of $size bytes under Content-Length $SIZE" test "$size" -lt "$SIZE"
expect "... whose bytes are a prefix of the file" cmp -s "$T/out" <(head -c "$size" "$T/www/big.bin")
read -r code size rc _ < <(get "?fault=flip")
expect "flip: status, length and exit kept ($code, $size bytes, exit $rc)" test "$code $size $rc" = "200 $SIZE 0"
expect "... exactly one byte differs ($(ndiff "$T/out" "$T/www/big.bin"))" test "$(ndiff "$T/out" "$T/www/big.bin")" -eq 1
read -r code size rc _ < <(get "?fault=flip" -r 500-1499)
expect "flip in a Range reply: 206 and the range's length kept ($code, $size)" test "$code $size $rc" = "206 1000 0"
expect "... one byte of the range differs" \
    test "$(cmp -l "$T/out" <(tail -c +501 "$T/www/big.bin" | head -c 1000) | wc -l)" -eq 1
read -r code _ _ _ < <(get "?fault=once")
read -r code2 _ _ _ < <(get "?fault=once")
expect "a rule with *1 fires once ($code, then $code2)" test "$code $code2" = "503 200"
h=$(curl -s -I "$FAULTPROXY_URL/data/small.bin?fault=reset")
expect "a reset of a reply without a body closes before any reply" test -z "$h"

# control endpoint: every request faulted, then none
faultproxy_set 'rate=1&faults=503' || fail "set rate=1"
codes=$(for _ in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code}\n' "$FAULTPROXY_URL/data/small.bin"; done | sort -u)
expect "rate=1 faults=503: every reply is 503" test "$codes" = 503
faultproxy_set 'rate=0' || fail "set rate=0"
codes=$(for _ in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code}\n' "$FAULTPROXY_URL/data/small.bin"; done | sort -u)
expect "rate=0: every reply is 200" test "$codes" = 200
expect "a bad mode is refused (400)" \
    test "$(curl -s -o /dev/null -w '%{http_code}' "$FAULTPROXY_URL/_faultproxy/set?faults=bogus")" = 400

faultproxy_set 'zero=1' || fail "set zero=1"
expect "zero=1 sets the counts to 0" test "$(faultproxy_count requests)" -eq 0

# a mix at 20 %: every kind appears, and the counts match what curl saw
faultproxy_set 'clear_rules=1&rate=0.2&faults=503,reset,stall,truncate,flip&stall=0.05' || fail "set the mix"
before=$(faultproxy_stats)
n503=0 nshort=0 nflip=0 nok=0
for _ in $(seq 150); do
    out=$(curl -s -o "$T/out" -w '%{http_code} %{size_download}' "$FAULTPROXY_URL/data/small.bin")
    rc=$?
    read -r code size <<<"$out"
    if [ "$code" = 503 ]; then n503=$((n503 + 1))
    elif [ "$rc" != 0 ] || [ "$size" -lt 1000 ]; then nshort=$((nshort + 1))
    elif ! cmp -s "$T/out" "$T/www/small.bin"; then nflip=$((nflip + 1))
    else nok=$((nok + 1)); fi
done
faultproxy_stop
echo "curl saw: $n503 503s, $nshort short or reset, $nflip flipped, $nok clean"
python3 - "$before" "$FAULTPROXY_FINAL_STATS" "$n503" "$nshort" "$nflip" <<'PY' && pass "the stats file counts every kind, as curl saw them" || fail "stats file"
import json, sys
b, a = json.loads(sys.argv[1]), json.loads(sys.argv[2])
d = {k: a["faults"][k] - b["faults"][k] for k in a["faults"]}
print("stats file:", d, "requests", a["requests"] - b["requests"])
assert all(d[k] > 0 for k in ("503", "reset", "stall", "truncate", "flip")), d
assert d["503"] == int(sys.argv[3]), (d, sys.argv[3])
assert d["reset"] + d["truncate"] == int(sys.argv[4]), (d, sys.argv[4])
assert d["flip"] == int(sys.argv[5]), (d, sys.argv[5])
assert a["requests"] - b["requests"] == 150, a
PY

# writes: every method faulted by a rule of its own, the body cut, held or changed
faultproxy_start "$NGINX_URL" --methods all --stall-seconds 2 \
    --rule 'PUT /reset\.bin$=reset' --rule 'PUT /stall\.bin$=stall*1' --rule 'PUT /stall2\.bin$=stall' \
    --rule 'PUT /trunc\.bin$=truncate' --rule 'PUT /flip\.bin$=flip' --rule 'PUT /503\.bin$=503' \
    --rule 'MOVE /trunc\.bin$=truncate' --rule 'HEAD /trunc\.bin$=truncate' ||
    fail "the proxy did not start for writes"
W=$FAULTPROXY_URL/data/w
mkdir -p "$T/www/w"
# put NAME [curl args]: "HTTP_CODE CURL_EXIT" for a PUT of big.bin to w/NAME
put() {
    local n=$1 out
    shift
    out=$(curl -s -o /dev/null -w '%{http_code}' "$@" -T "$T/www/big.bin" "$W/$n")
    echo "$out $?"
}
expect "a clean PUT passes through (201, curl exit 0)" test "$(put clean.bin)" = "201 0"
expect "... byte-identical at the server" cmp -s "$T/www/w/clean.bin" "$T/www/big.bin"
expect "PUT, 503: the status is 503" test "$(put 503.bin)" = "503 0"
expect "... and the server was not asked" test ! -e "$T/www/w/503.bin"
read -r _ rc < <(put reset.bin)
expect "PUT, reset: the connection is reset mid-body (curl exit $rc: 55 send or 56 receive failure)" \
    test "$rc" = 55 -o "$rc" = 56
read -r _ rc < <(put stall.bin -m 1)
expect "PUT, a stall longer than the client's timeout: curl times out (exit $rc)" test "$rc" = 28
sleep 2.5 # the stall ends: the proxy finds the client gone
expect "... and neither cut request left an object" test ! -e "$T/www/w/reset.bin" -a ! -e "$T/www/w/stall.bin"
read -r code rc < <(put stall2.bin -m 6)
expect "PUT, a stall shorter than the client's timeout: slow but correct ($code, exit $rc)" test "$code $rc" = "201 0"
expect "... byte-identical" cmp -s "$T/www/w/stall2.bin" "$T/www/big.bin"
read -r _ rc < <(put trunc.bin)
expect "PUT, truncate: the reply is cut (curl exit $rc, 52 = empty reply)" test "$rc" = 52
expect "... though the server stored the object whole" cmp -s "$T/www/w/trunc.bin" "$T/www/big.bin"
expect "PUT, flip: accepted (201 0)" test "$(put flip.bin)" = "201 0"
expect "... the server stores exactly one byte inverted" test "$(ndiff "$T/www/w/flip.bin" "$T/www/big.bin")" -eq 1
rc=$(curl -s -o /dev/null -X MOVE -H "Destination: $W/moved.bin" "$W/trunc.bin"; echo $?)
expect "MOVE, truncate: the reply is cut (curl exit $rc)" test "$rc" = 52
expect "... though the server moved it" test -e "$T/www/w/moved.bin" -a ! -e "$T/www/w/trunc.bin"
code=$(curl -s -o /dev/null -w "%{http_code}" -X MOVE -H "Destination: $W/trunc.bin" "$W/moved.bin")
expect "a clean MOVE passes through, its Destination rewritten for the server ($code)" \
    test -e "$T/www/w/trunc.bin" -a \( "$code" = 201 -o "$code" = 204 \)
rc=$(curl -s -I -o /dev/null "$W/trunc.bin"; echo $?)
expect "HEAD, truncate: the status line is cut (curl exit $rc)" test "$rc" = 52
python3 - "$(faultproxy_stats)" <<'PY' && pass "the stats count each fault under its method" || fail "per-method stats"
import json, sys
m = json.loads(sys.argv[1])["methods"]
print({k: {c: n for c, n in v.items() if n} for k, v in m.items()})
want = {"PUT": {"requests": 7, "503": 1, "reset": 1, "stall": 2, "truncate": 1, "flip": 1, "clean": 1},
        "MOVE": {"requests": 2, "truncate": 1, "clean": 1}, "HEAD": {"requests": 1, "truncate": 1}}
for meth, counts in want.items():
    for c, n in counts.items():
        assert m[meth][c] == n, (meth, c, m[meth])
PY
faultproxy_stop

# --rate-limit: each connection held to 2 MB/s, in both directions
faultproxy_start "$NGINX_URL" --rate-limit 2000000 || fail "the proxy did not start with --rate-limit"
W=$FAULTPROXY_URL/data/w
within() { python3 -c "import sys; c, t = sys.argv[2].split(); sys.exit(not (c == sys.argv[1] and 1.4 <= float(t) < 4))" "$@"; }
out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -T "$T/www/big.bin" "$W/limited.bin")
expect "--rate-limit 2000000: a PUT of $SIZE bytes takes 1.4 to 4 s (status, seconds: $out)" within 201 "$out"
out=$(curl -s -o "$T/out" -w '%{http_code} %{time_total}' "$W/limited.bin")
expect "... and its GET too ($out)" within 200 "$out"
expect "... byte-identical" cmp -s "$T/out" "$T/www/big.bin"
faultproxy_stop
finish
