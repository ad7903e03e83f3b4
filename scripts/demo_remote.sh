#!/usr/bin/env bash
# scripts/demo_remote.sh BIN DIR - the second half of the tour: the same kind
# of repository with its data files on an HTTP/WebDAV server (nginx on
# 127.0.0.1, as a stand-in for the Data Backbone).  Shows that listings touch
# no data, a header read moves one block, a whole file streams in, and a
# second mount reads it with the server stopped.  Run by scripts/demo.
set -euo pipefail
BIN=$1 DIR=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../tests/integration/nginx.sh
. "$here/tests/integration/nginx.sh"

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "(nginx is not installed: skipping the remote-data part of the tour)"
    exit 0
fi

REPO=$DIR/remote-repo WWW=$DIR/remote-www MNT=$DIR/remote-mnt CACHE=$DIR/remote-cache
CFG=$DIR/remote-config.yaml LOG=$DIR/remote-butlerfs.log
cleanup() {
    set +e
    mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u "$MNT"
    nginx_stop
}
trap cleanup EXIT
rm -rf "$REPO" "$WWW" "$CACHE"
mkdir -p "$WWW" "$MNT"

say() { printf '\n%s\n' "$*"; }
# show 'COMMAND LINE': print it, then run it with bash (pipes allowed; a
# reader that stops early, like head, is not an error)
show() { printf '\n$ %s\n' "$1"; bash -c "set +o pipefail; $1"; }
requests() { grep -c . "$NGINX_DIR/access.log" || true; }
body_bytes() { awk '{s += $10} END {printf "%d", s}' "$NGINX_DIR/access.log"; }
mount_it() {
    "$BIN" mount "$REPO" "$MNT" -o "config=$CFG,log=$LOG"
    for _ in $(seq 100); do mountpoint -q "$MNT" && return 0; sleep 0.05; done
    echo "the mount did not come up; see $LOG" >&2
    return 1
}

say "6. Remote data: the datastore on an HTTP server"
nginx_start "$WWW" || { echo "(nginx would not start: skipping the remote-data part)"; exit 0; }
"$BIN" synth "$REPO" --exposures 2 --detectors 3 --fits >/dev/null 2>&1
"$BIN" synth "$REPO" --run LSSTCam/raw/big --day-obs 20250416 --exposures 1 --detectors 1 \
    --payload $((256 * 1024 * 1024)) >/dev/null 2>&1
mv "$REPO/LSSTCam" "$WWW/"
sed -i "s|^  root: <butlerRoot>|  root: $NGINX_URL/data/|" "$REPO/butler.yaml"
cat >"$CFG" <<EOF
# the cache of remote blocks (docs/config.md); everything else at its default
cache:
  dir: $CACHE
EOF
echo "   6 FITS raws and one 256 MiB file now live only on $NGINX_URL/data/; butler.yaml's datastore root points there:"
show "grep 'root:' '$REPO/butler.yaml'"
mount_it
: >"$NGINX_DIR/access.log"
RAW=LSSTCam/raw/all/raw/instrument=LSSTCam
show "ls '$MNT/$RAW/detector=0/'"
show "ls -l '$MNT/$RAW/detector=0/exposure=2025041500001/'"
echo "   (listing and stat come from the registry: the server saw $(requests) requests)"

f=$(find "$MNT/$RAW" -type f | sort | head -1)
: >"$NGINX_DIR/access.log"
show "head -c 2880 '$f' | fold -w 80 | head -4"
echo "   (a header read: $(requests) request, $(body_bytes) bytes from the server: one cache block)"

big=$(find "$MNT/LSSTCam/raw/big" -type f | head -1)
: >"$NGINX_DIR/access.log"
t0=$(date +%s.%N)
show "cat '$big' >/dev/null"
t1=$(date +%s.%N)
echo "   (the whole 256 MiB file: $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s, $(requests) ranged GETs, up to 4 at once with read-ahead)"
show "sha256sum '$big' | cut -c1-16"
sleep 2 # the daemon rewrites its status every 2 s
show "'$BIN' status '$MNT'"
echo "   (what a running mount is doing; --json for monitoring)"
fusermount3 -u "$MNT"

say "7. The cache outlives the mount and the server"
nginx_stop || true
echo "   (nginx is stopped now)"
mount_it
show "sha256sum '$big' | cut -c1-16"
echo "   (the same bytes, from the cache, with the server down)"
fusermount3 -u "$MNT"
show "'$BIN' cache --config '$CFG' stats"
echo
echo "   Warm the cache for a batch job before it starts:"
echo "     butlerfs prefetch $REPO --config $CFG LSSTCam/raw/all/raw/instrument=LSSTCam"
echo "   See docs/config.md for replicas (summit cache, mirrors, S3) and docs/performance.md."
