# nginx.sh - a throw-away nginx on 127.0.0.1 for tests of the remote readers.
#
# Source it, start a server on a directory, and stop it from your trap:
#
#     . "$BFS_SRC/tests/integration/nginx.sh"
#     trap nginx_stop EXIT
#     nginx_start "$docroot" || exit 77      # 77: no nginx here -> skip
#     curl "$NGINX_URL/data/file.fits"        # NGINX_URL=http://127.0.0.1:$NGINX_PORT
#
# nginx_start sets NGINX_PORT, NGINX_URL, NGINX_PID and NGINX_DIR (the
# server's own temp dir: nginx.conf, error.log, access.log).  It returns 77
# when nginx is not installed and 1 when it would not start (the error log
# is printed).  nginx_stop is idempotent, so calling it from a trap and
# again by hand is fine.  Set NGINX_OWNER_PID before nginx_start to have a
# watchdog stop the server when that process dies (used by the C tests,
# which cannot run a shell trap when they crash).
#
# HTTPS (optional): nginx_make_certs DIR makes a throw-away CA and server
# certificates in DIR (returns 77 when openssl is not installed); with
# Locations: /data/ (WebDAV), /fail503/, /drop/, /slow/ (20 kB/s), /stall/,
# /flaky/ (503 for half the requests), /norange/, /auth/ (bearer token), /wan/
# (each request held to NGINX_WAN_RATE, default 100m bytes/s: one TCP stream
# across a long fat pipe).
#
# NGINX_TLS_DIR=DIR set at nginx_start every location below is served over
# HTTPS too, on two more ports:
#   NGINX_HTTPS_PORT, NGINX_HTTPS_URL  certificate for IP:127.0.0.1 and DNS:localhost
#   NGINX_HTTPS_NAME_PORT              certificate for DNS:localhost only, so
#                                      https://127.0.0.1:PORT is the wrong host name
# Clients trust them with DIR/ca.pem.
#
# NGINX_LOG_FORMAT='...' set at nginx_start: the access log's format (nginx
# variables, e.g. '$request $status range=$http_range'); default "combined".
#
# Locations (every one serves DOCROOT unless it injects a fault):
#   /data/      DOCROOT with WebDAV PUT/DELETE/MKCOL/COPY/MOVE (parents created
#               by PUT), PROPFIND/OPTIONS when dav-ext is installed, JSON listings
#   /fail503/   always 503                  /drop/   always 444 (connection closed)
#   /hook/      204 to anything (a webhook that accepts every POST)
#   /slow/      DOCROOT at 20 KB/s          /stall/  sleeps 30 s, then a tiny body
#   /flaky/     ~50 % of requests 503, the rest DOCROOT
#   /auth/      DOCROOT, but 401 unless "Authorization: Bearer sekrit-token"
#   /norange/   DOCROOT, ignoring Range (always 200 with the whole file)
#
# Why it looks like this (see shared/docs/test-servers.md): "daemon off;
# master_process off" keeps the one process root, otherwise PUTs fail with
# 500; every temp path is overridden so nothing touches /var/lib/nginx; the
# body temp dir sits next to DOCROOT (same filesystem) so a PUT appears
# atomically by rename; nginx cannot listen on port 0, so we pick ports and
# retry on "Address already in use".

nginx_stop() {
    if [ -n "${NGINX_WATCHDOG_PID:-}" ]; then
        kill "$NGINX_WATCHDOG_PID" 2>/dev/null
        wait "$NGINX_WATCHDOG_PID" 2>/dev/null
        NGINX_WATCHDOG_PID=
    fi
    if [ -n "${NGINX_PID:-}" ]; then
        kill "$NGINX_PID" 2>/dev/null
        local i
        for i in $(seq 50); do
            kill -0 "$NGINX_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$NGINX_PID" 2>/dev/null
        wait "$NGINX_PID" 2>/dev/null
        NGINX_PID=
    fi
    if [ -n "${NGINX_DIR:-}" ] && [ -d "$NGINX_DIR" ]; then
        rm -rf "$NGINX_DIR"
    fi
    NGINX_DIR=
    return 0
}

# nginx_log_settled: wait (at most 3 s) until the access log has stopped
# growing.  nginx writes a request's line after its response has gone, so a
# client can be done before the line is there: call this before reading the
# log after a client ran.
nginx_log_settled() {
    local last=-1 size
    for _ in $(seq 30); do
        size=$(stat -c %s "$NGINX_DIR/access.log" 2>/dev/null || echo 0)
        [ "$size" = "$last" ] && return 0
        last=$size
        sleep 0.1
    done
    return 0
}

# nginx_make_certs DIR: DIR/ca.pem (and ca.key), DIR/server.{pem,key} for
# IP:127.0.0.1 and DNS:localhost, DIR/localhost.{pem,key} for DNS:localhost
# only; EC keys, valid for two days.
nginx_make_certs() {
    local dir=$1 name san
    command -v openssl >/dev/null 2>&1 || { echo "nginx_make_certs: openssl not installed" >&2; return 77; }
    mkdir -p "$dir" || return 1
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 2 \
        -subj "/CN=butlerfs test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>"$dir/openssl.log" || {
        cat "$dir/openssl.log" >&2; return 1; }
    for name in server:IP:127.0.0.1,DNS:localhost localhost:DNS:localhost; do
        san=${name#*:}
        name=${name%%:*}
        openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 2 \
            -subj "/CN=$name" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
            -addext "subjectAltName=$san" -addext "basicConstraints=critical,CA:FALSE" \
            -addext "extendedKeyUsage=serverAuth" \
            -keyout "$dir/$name.key" -out "$dir/$name.pem" 2>"$dir/openssl.log" || {
            cat "$dir/openssl.log" >&2; return 1; }
    done
}

# Write the config for DOCROOT listening on PORT (and PORT+1, PORT+2 for
# HTTPS when NGINX_TLS_DIR is set) into NGINX_DIR/nginx.conf.
_nginx_conf() {
    local docroot=$1 port=$2 dir=$NGINX_DIR tls=${NGINX_TLS_DIR:-} mod dav_ext=
    {
        for mod in ngx_http_echo_module ngx_http_dav_ext_module; do
            if [ -f "/usr/lib/nginx/modules/$mod.so" ]; then
                echo "load_module /usr/lib/nginx/modules/$mod.so;"
                [ "$mod" = ngx_http_dav_ext_module ] && dav_ext=1
            fi
        done
        cat <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log info;
events { worker_connections 256; }
http {
$( [ -n "${NGINX_LOG_FORMAT:-}" ] && printf "    log_format custom '%s';\n" "$NGINX_LOG_FORMAT" )
    access_log $dir/access.log${NGINX_LOG_FORMAT:+ custom};
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    client_max_body_size 0;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 10000;

    split_clients "\${request_id}" \$flaky_fail {
        50% "1";
        *   "";
    }

$( [ -n "$tls" ] && cat <<TLS
    map \$server_port \$tls_cert {
        $((port + 2)) localhost;
        default server;
    }
TLS
)
    server {
        listen 127.0.0.1:$port;
        server_name localhost;
$( [ -n "$tls" ] && cat <<TLS
        listen 127.0.0.1:$((port + 1)) ssl;
        listen 127.0.0.1:$((port + 2)) ssl;
        ssl_certificate $tls/\$tls_cert.pem;
        ssl_certificate_key $tls/\$tls_cert.key;
TLS
)

        location /data/ {
            alias $docroot/;
            dav_methods PUT DELETE MKCOL COPY MOVE;
            $( [ -n "$dav_ext" ] && echo 'dav_ext_methods PROPFIND OPTIONS;' )
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            autoindex on;
            autoindex_format json;
        }
        location /fail503/ { return 503; }
        location /hook/    { return 204; }
        location /drop/    { return 444; }
        # a long fat pipe: each request (TCP stream) is held to a rate, as
        # window/RTT limits one stream across an ocean; benchmarks only
        location /wan/ {
            alias $docroot/;
            limit_rate ${NGINX_WAN_RATE:-100m};
        }
        location /slow/ {
            alias $docroot/;
            limit_rate 20k;
        }
        location /stall/ {
            echo_sleep 30;
            echo "late";
        }
        location /flaky/ {
            if (\$flaky_fail) { return 503; }
            alias $docroot/;
        }
        location /norange/ {
            alias $docroot/;
            max_ranges 0;
        }
        location /auth/ {
            if (\$http_authorization != "Bearer sekrit-token") { return 401; }
            alias $docroot/;
        }
    }
}
EOF
    } >"$dir/nginx.conf"
}

# nginx_start DOCROOT: start nginx serving DOCROOT; see the top of this file.
nginx_start() {
    local docroot port attempt i
    docroot=$(cd "$1" 2>/dev/null && pwd -P) || { echo "nginx_start: no directory $1" >&2; return 1; }
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { echo "nginx_start: nginx not installed" >&2; return 77; }
    local bin
    bin=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
    nginx_stop
    # Next to DOCROOT when we may write there (same filesystem for atomic
    # PUTs), else in TMPDIR.
    NGINX_DIR=$(mktemp -d "$(dirname "$docroot")/.nginx.XXXXXX" 2>/dev/null) ||
        NGINX_DIR=$(mktemp -d "${TMPDIR:-/tmp}/nginx.XXXXXX") || return 1
    for attempt in $(seq 20); do
        port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        _nginx_conf "$docroot" "$port"
        : >"$NGINX_DIR/error.log"
        "$bin" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/error.log" \
            </dev/null >>"$NGINX_DIR/stdout.log" 2>&1 &
        NGINX_PID=$!
        for i in $(seq 100); do
            if grep -q "Address already in use" "$NGINX_DIR/error.log" 2>/dev/null; then
                break
            fi
            if ! kill -0 "$NGINX_PID" 2>/dev/null; then
                break
            fi
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                NGINX_PORT=$port
                NGINX_URL=http://127.0.0.1:$port
                if [ -n "${NGINX_TLS_DIR:-}" ]; then
                    NGINX_HTTPS_PORT=$((port + 1))
                    NGINX_HTTPS_URL=https://127.0.0.1:$NGINX_HTTPS_PORT
                    NGINX_HTTPS_NAME_PORT=$((port + 2))
                    export NGINX_HTTPS_PORT NGINX_HTTPS_URL NGINX_HTTPS_NAME_PORT
                fi
                export NGINX_PORT NGINX_URL NGINX_PID NGINX_DIR
                if [ -n "${NGINX_OWNER_PID:-}" ]; then
                    # Stop nginx (and clean up) if the owner dies without doing it.
                    ( trap '' HUP
                      while kill -0 "$NGINX_OWNER_PID" 2>/dev/null && kill -0 "$NGINX_PID" 2>/dev/null; do
                          sleep 1
                      done
                      kill "$NGINX_PID" 2>/dev/null
                      sleep 1
                      rm -rf "$NGINX_DIR" ) </dev/null >/dev/null 2>&1 &
                    NGINX_WATCHDOG_PID=$!
                fi
                return 0
            fi
            sleep 0.05
        done
        if grep -q "Address already in use" "$NGINX_DIR/error.log" 2>/dev/null; then
            kill "$NGINX_PID" 2>/dev/null
            wait "$NGINX_PID" 2>/dev/null
            NGINX_PID=
            continue
        fi
        echo "nginx_start: nginx did not start; its log:" >&2
        cat "$NGINX_DIR/error.log" "$NGINX_DIR/stdout.log" >&2 2>/dev/null
        nginx_stop
        return 1
    done
    echo "nginx_start: no free port after 20 attempts" >&2
    nginx_stop
    return 1
}
