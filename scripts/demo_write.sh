#!/usr/bin/env bash
# scripts/demo_write.sh BIN DIR - the third part of the tour: a writable
# mount (-o rw).  A raw copied into a RUN's directory is ingested at close:
# its dataId and exposure record come from its headers, it is listed at once,
# hard-linked into a staging tree and announced by an event line; a damaged
# file is refused by cp's own exit status and kept in quarantine with the
# reason; with nginx installed, the file also reaches a WebDAV server (the
# Data Backbone's stand-in) through the transfer queue, across an outage.
# Run by scripts/demo.
set -euo pipefail
BIN=$1 DIR=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO=$DIR/write-repo SRC=$DIR/write-src MNT=$DIR/write-mnt STAGE=$DIR/write-staging
CFG=$DIR/write-config.yaml LOG=$DIR/write-butlerfs.log WWW=$DIR/write-dbb
# shellcheck source=../tests/integration/nginx.sh
. "$here/tests/integration/nginx.sh"
cleanup() {
    set +e
    kill -CONT "${NGINX_PID:-0}" 2>/dev/null
    mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u "$MNT"
    nginx_stop
}
trap cleanup EXIT
rm -rf "$REPO" "$SRC" "$STAGE" "$WWW"
mkdir -p "$MNT" "$WWW"
DBB=
if nginx_start "$WWW" >/dev/null 2>&1; then
    DBB=$NGINX_URL/data/
fi

say() { printf '\n%s\n' "$*"; }
show() { printf '\n$ %s\n' "$1"; bash -c "set +o pipefail; $1"; }

say "8. Writing: a raw copied into the mount is ingested when it is closed"
"$BIN" synth "$SRC" --exposures 1 --detectors 2 --fits >/dev/null 2>&1
"$BIN" init "$REPO" >/dev/null
cat >"$CFG" <<EOF
# files ingested through the mount are also hard-linked here (docs/config.md, ingest:)
ingest:
  staging: [$STAGE]
EOF
if [ -n "$DBB" ]; then
    cat >>"$CFG" <<EOF
# and uploaded to the Data Backbone (here: nginx WebDAV on loopback; docs/transfer.md)
transfer:
  destinations:
    - {name: dbb, uri: "$DBB", collections: ["LSSTCam/*"]}
  request_timeout: 3s
  backoff_max: 2s
EOF
fi
echo "   An empty repository made by 'butlerfs init', mounted writable with a staging tree:"
"$BIN" mount "$REPO" "$MNT" -o "rw,config=$CFG,log=$LOG"
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.05; done
raw=$(find "$SRC/LSSTCam/raw/all" -name '*.fits' | sort | head -1)
cp "$raw" "$DIR/MC_O_20250415_000001_R01_S00.fits"
show "mkdir -p '$MNT/LSSTCam/raw/all'"
show "cp '$DIR/MC_O_20250415_000001_R01_S00.fits' '$MNT/LSSTCam/raw/all/' && echo 'cp: exit 0 (validated, registered)'"
echo "   (close() returned only once the file was validated, translated and registered)"
sleep 1.1 # the tree reloads the registry's catalog once a second
show "ls '$MNT/LSSTCam/raw/all/raw/instrument=LSSTCam/detector=0/exposure=2025041500001/'"
echo "   (the dataId came from the headers: INSTRUME, DAYOBS, SEQNUM, CONTRLLR, RAFTBAY, CCDSLOT)"
show "sqlite3 -header '$REPO/gen3.sqlite3' 'SELECT id, obs_id, physical_filter, observation_type, day_obs, seq_num FROM exposure'"
echo "   (LSSTCam's instrument, 205 detectors and 276 filters were registered from butlerfs's own camera description)"
show "find '$STAGE' -type f"
show "tail -1 '$REPO/.butlerfs/events.jsonl' | python3 -m json.tool | head -20"

say "9. A damaged file is refused, and kept"
head -c 20000 "$raw" >"$DIR/broken.fits"
show "cp '$DIR/broken.fits' '$MNT/LSSTCam/raw/all/' || echo \"cp: exit \$? (the writer is told)\""
show "cat '$REPO'/.butlerfs/quarantine/*/*.reason"
echo "   (its bytes are in $REPO/.butlerfs/quarantine, never deleted)"

if [ -n "$DBB" ]; then
    say "10. The Data Backbone: every ingested file is uploaded and verified by a durable queue"
    sleep 1
    show "find '$WWW' -name '*.fits'"
    echo "   (PUT to a temporary name, MOVE onto the final one, then read back and compared)"
    show "'$BIN' queue '$REPO'"
    echo
    echo "   An outage: the server stops answering (SIGSTOP), and a new raw is written."
    kill -STOP "$NGINX_PID"
    raw2=$(find "$SRC/LSSTCam/raw/all" -name '*.fits' | sort | tail -1)
    show "time cp '$raw2' '$MNT/LSSTCam/raw/all/'"
    echo "   (the write is not slowed by the outage: the upload waits in the queue)"
    sleep 4
    show "'$BIN' queue '$REPO'"
    kill -CONT "$NGINX_PID"
    echo
    echo "   The server is back: the queue drains by itself."
    for _ in $(seq 50); do
        [ "$("$BIN" queue --json "$REPO" | python3 -c 'import json,sys; q=json.load(sys.stdin); print(q["pending"]+q["inflight"])')" = 0 ] && break
        sleep 0.2
    done
    show "'$BIN' queue '$REPO'"
    show "find '$WWW' -name '*.fits' | wc -l"
fi
fusermount3 -u "$MNT"
echo
echo "   Kill the daemon at any moment and mount again: every upload is finished or quarantined."
echo "   See docs/ingest.md for the state machine and the header rules."
