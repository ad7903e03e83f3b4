# shellcheck shell=bash
# s3rver.sh - an S3 server on loopback for tests (sourced).
#
# s3rver 3.7.1 (npm) serves path-style S3 on 127.0.0.1.  It requires
# x-amz-content-sha256 on SigV4 requests and checks that the access key is
# S3RVER, but it never verifies SigV4 signatures: signing itself is checked
# against AWS's published vectors in tests/unit/test_s3.c.
#
#   s3rver_install         install s3rver into $S3RVER_NPM_DIR once (default
#                          ~/.cache/butlerfs-test/npm); 1 when npm or the
#                          registry is unavailable (callers skip with 77)
#   s3rver_start [BUCKET]  start it on a free port with a temp data dir and
#                          BUCKET (default butlerfs-test); exports
#                          S3RVER_PID S3RVER_PORT S3RVER_ENDPOINT S3RVER_BUCKET
#                          S3RVER_DIR and the AWS environment of the client
#                          (keys S3RVER/S3RVER, AWS_ENDPOINT_URL, us-east-1)
#                          With S3RVER_LOG_REQUESTS=1 it logs each request
#                          (and each bucket listing: "Fetched bucket") to
#                          $S3RVER_DIR/s3rver.log
#   s3_put FILE KEY [BUCKET]  upload FILE as KEY (a plain key, encoded here)
#   s3rver_stop            stop it (by pid) and remove its data dir
#
# Callers' EXIT traps call s3rver_stop.  When S3RVER_WATCH_PID is set, a
# watchdog stops the server once that process is gone (for a C test that
# starts the server through this file and might crash before its teardown).

: "${S3RVER_VERSION:=3.7.1}"
if [ -z "${S3RVER_NPM_DIR:-}" ]; then
    if [ -n "${HOME:-}" ] && [ -d "$HOME" ]; then
        S3RVER_NPM_DIR=$HOME/.cache/butlerfs-test/npm
    else
        S3RVER_NPM_DIR=${TMPDIR:-/tmp}/butlerfs-test-$(id -u)/npm
    fi
fi
S3RVER_PID=""
S3RVER_WATCHDOG=""
S3RVER_DIR=""

s3rver_install()
{
    S3RVER_BIN=$S3RVER_NPM_DIR/node_modules/.bin/s3rver
    if [ -x "$S3RVER_BIN" ] &&
        grep -q "\"version\": \"$S3RVER_VERSION\"" "$S3RVER_NPM_DIR/node_modules/s3rver/package.json" 2>/dev/null; then
        return 0
    fi
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "s3rver: node and npm are needed (Debian packages nodejs npm)" >&2
        return 1
    fi
    mkdir -p -- "$S3RVER_NPM_DIR" || return 1
    echo "s3rver: installing s3rver@$S3RVER_VERSION into $S3RVER_NPM_DIR" >&2
    if ! timeout 240 npm install --prefix "$S3RVER_NPM_DIR" --no-audit --no-fund \
        --loglevel=error "s3rver@$S3RVER_VERSION" >"$S3RVER_NPM_DIR/install.log" 2>&1; then
        echo "s3rver: npm install failed, see $S3RVER_NPM_DIR/install.log" >&2
        return 1
    fi
    [ -x "$S3RVER_BIN" ]
}

s3rver_start()
{
    local bucket=${1:-butlerfs-test} log i
    s3rver_install || return 1
    S3RVER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/s3rver.XXXXXX") || return 1
    log=$S3RVER_DIR/s3rver.log
    mkdir "$S3RVER_DIR/data"
    # -p 0: the kernel picks the port, s3rver prints it; no race with other tests.
    local quiet=--silent node_options=${NODE_OPTIONS:-}
    [ "${S3RVER_LOG_REQUESTS:-}" = 1 ] && quiet=
    # s3rver makes ListObjectsV2 continuation tokens with DES, which a Node
    # on OpenSSL 3 offers only with the legacy provider (else every truncated
    # listing is a 500)
    node --openssl-legacy-provider -e 0 >/dev/null 2>&1 &&
        node_options="--openssl-legacy-provider${node_options:+ $node_options}"
    NODE_OPTIONS=$node_options "$S3RVER_BIN" $quiet -d "$S3RVER_DIR/data" -a 127.0.0.1 -p 0 \
        --configure-bucket "$bucket" </dev/null >"$log" 2>&1 &
    S3RVER_PID=$!
    S3RVER_PORT=""
    for i in $(seq 100); do
        S3RVER_PORT=$(sed -n 's/^S3rver listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
        [ -n "$S3RVER_PORT" ] && break
        kill -0 "$S3RVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$S3RVER_PORT" ]; then
        echo "s3rver: did not start:" >&2
        cat "$log" >&2
        s3rver_stop
        return 1
    fi
    if [ -n "${S3RVER_WATCH_PID:-}" ]; then
        (
            while kill -0 "$S3RVER_WATCH_PID" 2>/dev/null && kill -0 "$S3RVER_PID" 2>/dev/null; do
                sleep 1
            done
            kill "$S3RVER_PID" 2>/dev/null
            rm -rf -- "$S3RVER_DIR"
        ) </dev/null >/dev/null 2>&1 &
        S3RVER_WATCHDOG=$!
    fi
    S3RVER_ENDPOINT=http://127.0.0.1:$S3RVER_PORT
    S3RVER_BUCKET=$bucket
    export S3RVER_PID S3RVER_PORT S3RVER_ENDPOINT S3RVER_BUCKET S3RVER_DIR
    export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
    export AWS_ENDPOINT_URL=$S3RVER_ENDPOINT AWS_REGION=us-east-1
    unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL_S3 AWS_DEFAULT_REGION
}

# Percent-encode a key for a path-style URL ('/' kept).
s3_key_encode()
{
    local LC_ALL=C s=$1 out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [A-Za-z0-9._~/-]) out+=$c ;;
            *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

s3_put()
{
    local file=$1 key=$2 bucket=${3:-$S3RVER_BUCKET} code
    code=$(curl -sS -o /dev/null -w '%{http_code}' \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -T "$file" \
        "$S3RVER_ENDPOINT/$bucket/$(s3_key_encode "$key")") || return 1
    [ "$code" = 200 ] || { echo "s3_put $key: HTTP $code" >&2; return 1; }
}

s3rver_stop()
{
    if [ -n "$S3RVER_WATCHDOG" ]; then
        kill "$S3RVER_WATCHDOG" 2>/dev/null
        wait "$S3RVER_WATCHDOG" 2>/dev/null
        S3RVER_WATCHDOG=""
    fi
    if [ -n "$S3RVER_PID" ]; then
        kill "$S3RVER_PID" 2>/dev/null
        for _ in $(seq 20); do
            kill -0 "$S3RVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$S3RVER_PID" 2>/dev/null
        wait "$S3RVER_PID" 2>/dev/null
        S3RVER_PID=""
    fi
    if [ -n "$S3RVER_DIR" ]; then
        rm -rf -- "$S3RVER_DIR"
        S3RVER_DIR=""
    fi
    return 0
}
