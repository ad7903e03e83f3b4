#!/usr/bin/env bash
# test_ingest_guider.sh - LSSTCam guider files (obs_lsst's ingest_guider): a
# file named like "..._R00_SG0_guider.fits" written in a RUN's directory is a
# guider_raw of an exposure already registered (docs/ingest.md).
#
# Checks: the raw is ingested first (its exposure registered); without
# ingest.create_dataset_types the guider file is refused (ENOENT: no dataset
# type guider_raw), the reason says which key; with it, the guider file is
# ingested as guider_raw {instrument, detector 189 (R00_SG0), exposure} of
# storage class Stamps with obs_base's FitsGenericFormatter, and reads back at
# its dataId path; a guider file of an OBSID the repository does not have is
# refused (ENOENT, OBSID named); one whose RAFTBAY/CCDSLOT is a science
# detector is refused (EINVAL, "not a GUIDER detector").
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
skip_unless_hdr2fits
T=$BFS_TMP
"$BFS_BIN" synth "$T/src" --exposures 1 --detectors 1 --fits >/dev/null 2>&1 || fail "synth"
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
mkdir -p "$T/mnt"
q() { sqlite3 "$1/gen3.sqlite3" "$2"; }
OBS=$(q "$T/src" "SELECT obs_id FROM exposure")
EXP=$(q "$T/src" "SELECT id FROM exposure")
RAW=$(find "$T/src/LSSTCam/raw/all" -name '*.fits' | head -1)
guider() { # guider OUT OBSID RAFTBAY CCDSLOT
    printf 'INSTRUME: lsstCam\nTELESCOP: Simonyi Survey Telescope\nOBSID: %s\nRAFTBAY: %s\nCCDSLOT: %s\nDAQPART: guider\nIMGTYPE: UNKNOWN\n' \
        "$2" "$3" "$4" >"$T/g.yaml"
    "$H2F" "$T/g.yaml" "$1" || fail "hdr2fits"
}
guider "$T/${OBS}_R00_SG0_guider.fits" "$OBS" R00 SG0
guider "$T/MC_O_20991231_000001_R00_SG0_guider.fits" MC_O_20991231_000001 R00 SG0
guider "$T/${OBS}_R22_SG1_guider.fits" "$OBS" R22 S11

mount_repo "$T/repo" "$T/mnt" rw || finish
mkdir -p "$T/mnt/LSSTCam/raw/all"
expect "the exposure's raw first" cp "$RAW" "$T/mnt/LSSTCam/raw/all/"
cp "$T/${OBS}_R00_SG0_guider.fits" "$T/mnt/LSSTCam/raw/all/" 2>"$T/err.txt"
expect "without create_dataset_types a guider file is refused (ENOENT)" grep -q "No such file" "$T/err.txt"
expect "... and the reason names the key" grep -rqs "ingest.create_dataset_types" "$T/repo/.butlerfs/quarantine"
unmount

printf 'ingest:\n  create_dataset_types: true\n' >"$T/cfg.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
expect "with it, the guider file is ingested" cp "$T/${OBS}_R00_SG0_guider.fits" "$T/mnt/LSSTCam/raw/all/"
expect "as guider_raw of storage class Stamps" \
    test "$(q "$T/repo" "SELECT storage_class FROM dataset_type WHERE name = 'guider_raw'")" = Stamps
expect "of detector 189 (R00_SG0) and the raw's exposure" \
    test "$(q "$T/repo" "SELECT t.detector || ' ' || t.exposure FROM dataset d JOIN dataset_type y ON y.id = d.dataset_type_id JOIN dataset_tags_00000001 t ON t.dataset_id = d.id WHERE y.name = 'guider_raw'")" = "189 $EXP"
expect "with obs_base's FitsGenericFormatter" \
    test "$(q "$T/repo" "SELECT count(*) FROM file_datastore_records WHERE formatter = 'lsst.obs.base.formatters.fitsGeneric.FitsGenericFormatter'")" = 1
sleep 1.2
F=$(find "$T/mnt/LSSTCam/raw/all/guider_raw" -type f 2>/dev/null | head -1)
expect "it reads back at its dataId path" cmp "$T/${OBS}_R00_SG0_guider.fits" "${F:-/nonexistent}"
cp "$T/MC_O_20991231_000001_R00_SG0_guider.fits" "$T/mnt/LSSTCam/raw/all/" 2>"$T/err.txt"
expect "a guider file of an OBSID the repository lacks is refused (ENOENT)" grep -q "No such file" "$T/err.txt"
expect "... naming the OBSID" grep -rqs "MC_O_20991231_000001" "$T/repo/.butlerfs/quarantine"
cp "$T/${OBS}_R22_SG1_guider.fits" "$T/mnt/LSSTCam/raw/all/" 2>"$T/err.txt"
expect "a guider file of a science detector is refused (EINVAL)" grep -q "Invalid argument" "$T/err.txt"
expect "... as not a GUIDER detector" grep -rqs "not a GUIDER detector" "$T/repo/.butlerfs/quarantine"
unmount
expect_no_sanitizer
finish
