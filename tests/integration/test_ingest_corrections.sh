#!/usr/bin/env bash
# test_ingest_corrections.sh - per-observation header corrections (obs_lsst's
# corrections/<instrument>-<obsid>.yaml, applied as astro_metadata_translator's
# fix_header applies them: to the header the translation reads, before the
# translator's own fixes; docs/ingest.md).
#
# Checks: with ingest.corrections naming a directory that holds a file for
# the raw's OBSID, the exposure record carries the corrected value (OBJECT ->
# target_name) while the stored file keeps its own header; the event names
# the file; a directory from $METADATA_CORRECTIONS_PATH is searched too; a
# corrections file that is not a mapping refuses the raw (EINVAL) with the
# file named.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
T=$BFS_TMP
"$BFS_BIN" synth "$T/src" --exposures 3 --detectors 1 --fits >/dev/null 2>&1 || fail "synth"
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
mkdir -p "$T/mnt" "$T/corr" "$T/envcorr"
q() { sqlite3 "$1/gen3.sqlite3" "$2"; }
mapfile -t OBS < <(q "$T/src" "SELECT obs_id FROM exposure ORDER BY id")
mapfile -t RAWS < <(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort)
raw_of() { for f in "${RAWS[@]}"; do case "$f" in *"$1"*) echo "$f"; return; esac; done; }
printf 'OBJECT: corrected by a file\n' >"$T/corr/LSSTCam-${OBS[0]}.yaml"
printf 'OBJECT: corrected from the environment\n' >"$T/envcorr/LSSTCam-${OBS[1]}.yaml"
printf -- '- not\n- a mapping\n' >"$T/corr/LSSTCam-${OBS[2]}.yaml"
printf 'ingest:\n  corrections: [%s]\n' "$T/corr" >"$T/cfg.yaml"

export METADATA_CORRECTIONS_PATH=$T/envcorr
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
mkdir -p "$T/mnt/LSSTCam/raw/all"
f0=$(raw_of "${OBS[0]}") f1=$(raw_of "${OBS[1]}") f2=$(raw_of "${OBS[2]}")
expect "a raw with a corrections file is ingested" cp "$f0" "$T/mnt/LSSTCam/raw/all/"
expect "its exposure record carries the corrected value" \
    test "$(q "$T/repo" "SELECT target_name FROM exposure WHERE obs_id = '${OBS[0]}'")" = "corrected by a file"
stored=$(find "$T/repo/LSSTCam" -name "*${OBS[0]}*" -type f | head -1)
expect "... while the stored file is the bytes written" cmp "$f0" "$stored"
expect "the event names the corrections file" grep -q "\"header_corrections\":\"$T/corr/LSSTCam-${OBS[0]}.yaml\"" "$T/repo/.butlerfs/events.jsonl"
expect "a corrections directory from \$METADATA_CORRECTIONS_PATH is searched too" cp "$f1" "$T/mnt/LSSTCam/raw/all/"
expect "... and applied" \
    test "$(q "$T/repo" "SELECT target_name FROM exposure WHERE obs_id = '${OBS[1]}'")" = "corrected from the environment"
cp "$f2" "$T/mnt/LSSTCam/raw/all/" 2>"$T/err.txt"
expect "a corrections file that is not a mapping refuses the raw (EINVAL)" grep -q "Invalid argument" "$T/err.txt"
expect "... naming the file" grep -rqs "LSSTCam-${OBS[2]}.yaml" "$T/repo/.butlerfs/quarantine"
unmount
expect_no_sanitizer
finish
