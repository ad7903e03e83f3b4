#!/usr/bin/env bash
# scripts/demo_write.sh BIN DIR - the third part of the tour: a writable
# mount (-o rw).  A raw copied into a RUN's directory is ingested at close:
# its dataId and exposure record come from its headers, it is listed at once,
# hard-linked into a staging tree and announced by an event line; a damaged
# file is refused by cp's own exit status and kept in quarantine with the
# reason.  Run by scripts/demo.
set -euo pipefail
BIN=$1 DIR=$2
REPO=$DIR/write-repo SRC=$DIR/write-src MNT=$DIR/write-mnt STAGE=$DIR/write-staging
CFG=$DIR/write-config.yaml LOG=$DIR/write-butlerfs.log
cleanup() {
    set +e
    mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u "$MNT"
}
trap cleanup EXIT
rm -rf "$REPO" "$SRC" "$STAGE"
mkdir -p "$MNT"

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
fusermount3 -u "$MNT"
echo
echo "   Kill the daemon at any moment and mount again: every upload is finished or quarantined."
echo "   See docs/ingest.md for the state machine and the header rules."
