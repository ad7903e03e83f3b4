#!/usr/bin/env bash
# test_ingest_decam.sh - DECam multi-extension raws (issue 11): one file, one
# raw dataset per science CCD, all sharing the file, when the repository
# already holds DECam's instrument, detector and filter records; refused
# with that reason otherwise (writers/translate_decam.h, docs/ingest.md).
#
# Checks, with a DECam raw built here (primary header of a 2013 exposure,
# CCD extensions S29 (CCDNUM 1), S30 (2) and the guide CCD FS1 (63)): into a
# repository without DECam records, cp fails with ENOENT and the reason
# names the missing record; once the records are there (inserted as `butler
# register-instrument` would have), cp succeeds, two raw datasets (CCDs 1
# and 2, not the guide CCD) point at one file, the exposure row holds the
# header's values, the file record's formatter is obs_decam's, both read back
# byte for byte at their dataId paths, and one event line says 2 datasets;
# a raw with a CCD the repository lacks is refused naming that detector.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
skip_unless_hdr2fits
T=$BFS_TMP
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
mkdir -p "$T/mnt"
q() { sqlite3 "$T/repo/gen3.sqlite3" "$1"; }
cat >"$T/decam.yaml" <<'YAML'
TELESCOP: CTIO 4.0-m telescope
INSTRUME: DECam
EXPREQ: 90.0
EXPTIME: 90.0
DARKTIME: 91.5
OBSID: ct4m20140101t010203
DATE-OBS: '2014-01-01T01:02:03.5'
TIMESYS: UTC
EXPNUM: 271000
OBJECT: field 7
OBSTYPE: object
PROPID: 2013B-0440
FILTER: r DECam SDSS c0002 6415.0 1480.0
TELRA: '06:00:00.000'
TELDEC: '-30:00:00.00'
ZD: 20.5
AZ: -10.0
YAML
"$H2F" "$T/decam.yaml" "$T/c4d.fits" @1:S29 @2:S30 @63:FS1 || fail "hdr2fits"
"$H2F" "$T/decam.yaml" "$T/c4d_5.fits" EXPNUM=271001 OBSID=ct4m20140101t010400 @1:S29 @5:S25 || fail "hdr2fits"

mount_repo "$T/repo" "$T/mnt" rw || finish
mkdir -p "$T/mnt/DECam/raw/all"
cp "$T/c4d.fits" "$T/mnt/DECam/raw/all/" 2>"$T/err.txt"
expect "without DECam's records in the repository, the raw is refused (ENOENT)" grep -q "No such file" "$T/err.txt"
expect "... and the reason names the missing record" grep -rqs "DECam" "$T/repo/.butlerfs/quarantine"
unmount

# the records `butler register-instrument REPO lsst.obs.decam.DarkEnergyCamera` writes (some of them)
q "INSERT INTO instrument (name, visit_max, visit_system, exposure_max, detector_max, class_name)
   VALUES ('DECam', 33554432, 0, 33554432, 64, 'lsst.obs.decam.DarkEnergyCamera');
   INSERT INTO detector (instrument, id, full_name, name_in_raft, raft, purpose) VALUES
     ('DECam', 1, 'S29', '29', 'S', 'SCIENCE'), ('DECam', 2, 'S30', '30', 'S', 'SCIENCE');
   INSERT INTO physical_filter (instrument, name, band) VALUES ('DECam', 'r DECam SDSS c0002 6415.0 1480.0', 'r');" ||
    fail "cannot insert DECam's records"
mount_repo "$T/repo" "$T/mnt" rw || finish
expect "with DECam's records, cp of the multi-extension raw succeeds" cp "$T/c4d.fits" "$T/mnt/DECam/raw/all/"
expect "two raw datasets, CCDs 1 and 2 (the guide CCD is not one)" \
    test "$(q "SELECT group_concat(detector, ' ') FROM (SELECT detector FROM dataset_tags_00000001 ORDER BY detector)")" = "1 2"
expect "... sharing one file" test "$(q "SELECT count(DISTINCT path) || ' ' || count(*) FROM file_datastore_records")" = "1 2"
expect "the exposure row holds the header's values" \
    test "$(q "SELECT id, obs_id, physical_filter, observation_type, exposure_time FROM exposure")" = "271000|ct4m20140101t010203|r DECam SDSS c0002 6415.0 1480.0|science|90.0"
expect "the formatter is obs_decam's raw formatter" \
    test "$(q "SELECT DISTINCT formatter FROM file_datastore_records")" = "lsst.obs.decam.rawFormatter.DarkEnergyCameraRawFormatter"
sleep 1.2
for det in 1 2; do
    F=$(find "$T/mnt/DECam/raw/all/raw/instrument=DECam/detector=$det" -type f 2>/dev/null | head -1)
    expect "CCD $det reads back the whole file at its dataId path" cmp "$T/c4d.fits" "${F:-/nonexistent}"
done
expect "one event line for the file, saying 2 datasets" \
    grep -q '"datasets":2' "$T/repo/.butlerfs/events.jsonl"
cp "$T/c4d_5.fits" "$T/mnt/DECam/raw/all/" 2>"$T/err.txt"
expect "a raw with a CCD the repository lacks is refused (ENOENT)" grep -q "No such file" "$T/err.txt"
expect "... naming that detector" bash -c "grep -rqs 'detector.*5\|5.*detector' '$T/repo/.butlerfs/quarantine'"
unmount
expect_no_sanitizer
finish
