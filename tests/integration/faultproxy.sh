# shellcheck shell=bash
# faultproxy.sh - a fault-injecting proxy (tests/tools/faultproxy.py) on
# 127.0.0.1 in front of a test server, for tests and benchmarks.
#
# Source it, start the proxy in front of a server, stop it from your trap:
#
#     . "$BFS_SRC/tests/integration/nginx.sh"
#     . "$BFS_SRC/tests/integration/faultproxy.sh"
#     trap 'faultproxy_stop; nginx_stop' EXIT
#     nginx_start "$docroot" || exit 77
#     faultproxy_start "$NGINX_URL" --rate 0.1 --stall-seconds 2 || exit 77
#     curl "$FAULTPROXY_URL/data/file.fits"     # 10 % of requests fail somehow
#     faultproxy_set 'rate=0'                    # all clean from now on
#     faultproxy_count reset                     # resets injected so far
#
# Writes (PUT, MOVE, POST, DELETE, PROPFIND, ...) pass through unharmed unless
# --methods names them (--methods all: every request is fair game); and
# --rate-limit B holds each connection to B bytes/s each way (a long fat pipe).
#
# faultproxy_start UPSTREAM [faultproxy.py options] sets FAULTPROXY_PORT,
# FAULTPROXY_URL, FAULTPROXY_PID, FAULTPROXY_DIR (its temp dir) and
# FAULTPROXY_STATS (its JSON stats file, kept up to date within 0.5 s and
# written in full when it stops).  It returns 77 when python3 is missing and
# 1 when the proxy would not start (its output is printed).
# faultproxy_stop is idempotent; it keeps FAULTPROXY_STATS's content in
# FAULTPROXY_FINAL_STATS (a variable) since the temp dir goes away.
# faultproxy_set QUERY changes the mode at run time (see the proxy's set?...),
# faultproxy_stats prints the current counts as JSON, faultproxy_count KIND
# prints one count: 503, reset, stall, truncate, flip, or requests, clean.

FAULTPROXY_PY=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)/faultproxy.py

faultproxy_stop() {
    if [ -n "${FAULTPROXY_PID:-}" ]; then
        kill "$FAULTPROXY_PID" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$FAULTPROXY_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$FAULTPROXY_PID" 2>/dev/null
        wait "$FAULTPROXY_PID" 2>/dev/null
        FAULTPROXY_PID=
    fi
    if [ -n "${FAULTPROXY_DIR:-}" ] && [ -d "$FAULTPROXY_DIR" ]; then
        # shellcheck disable=SC2034  # read by the sourcing script
        FAULTPROXY_FINAL_STATS=$(cat "$FAULTPROXY_STATS" 2>/dev/null)
        rm -rf "$FAULTPROXY_DIR"
    fi
    FAULTPROXY_DIR=
    return 0
}

# faultproxy_start UPSTREAM_URL [OPTIONS...]: see the top of this file.
faultproxy_start() {
    local upstream=$1
    shift
    command -v python3 >/dev/null 2>&1 || { echo "faultproxy_start: python3 not installed" >&2; return 77; }
    faultproxy_stop
    FAULTPROXY_DIR=$(mktemp -d "${TMPDIR:-/tmp}/faultproxy.XXXXXX") || return 1
    FAULTPROXY_STATS=$FAULTPROXY_DIR/stats.json
    python3 "$FAULTPROXY_PY" --upstream "$upstream" --port-file "$FAULTPROXY_DIR/port" \
        --stats "$FAULTPROXY_STATS" --log "$FAULTPROXY_DIR/faults.log" "$@" \
        </dev/null >"$FAULTPROXY_DIR/output.log" 2>&1 &
    FAULTPROXY_PID=$!
    for _ in $(seq 100); do
        if [ -s "$FAULTPROXY_DIR/port" ]; then
            FAULTPROXY_PORT=$(cat "$FAULTPROXY_DIR/port")
            FAULTPROXY_URL=http://127.0.0.1:$FAULTPROXY_PORT
            export FAULTPROXY_PORT FAULTPROXY_URL FAULTPROXY_PID FAULTPROXY_DIR FAULTPROXY_STATS
            return 0
        fi
        kill -0 "$FAULTPROXY_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "faultproxy_start: the proxy did not start; its output:" >&2
    cat "$FAULTPROXY_DIR/output.log" >&2
    faultproxy_stop
    return 1
}

# faultproxy_set QUERY: e.g. 'rate=0.1&faults=503,reset&stall=2'; prints nothing,
# fails when the proxy refuses the query.
faultproxy_set() {
    curl -sf -o /dev/null "$FAULTPROXY_URL/_faultproxy/set?$1"
}

faultproxy_stats() {
    curl -sf "$FAULTPROXY_URL/_faultproxy/stats"
}

# faultproxy_count KIND: a fault kind's count, or a top-level count (requests, clean)
faultproxy_count() {
    faultproxy_stats | python3 -c '
import json, sys
s, k = json.load(sys.stdin), sys.argv[1]
print(s["faults"][k] if k in s["faults"] else s[k])' "$1"
}
