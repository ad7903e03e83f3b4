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
# a raw with a CCD the repository lacks is refused naming that detector; a
# raw cut at an HDU boundary, short of the extensions its NEXTEND announces,
# is refused (EINVAL) and the whole file then ingested under the same name.
# Then, when ../shared/fixtures/headers holds them, raws built from the two
# real DECam header dumps (each the primary and the CCD S1 extension of one
# exposure; tests/tools/hdr2fits @dump): each lands at the dataId
# astro_metadata_translator's tests/test_decam.py gives those headers
# (exposure, detector 25, physical_filter, day_obs), passes fitsverify, and
# reads back byte for byte through the mount.
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
     ('DECam', 1, 'S29', '29', 'S', 'SCIENCE'), ('DECam', 2, 'S30', '30', 'S', 'SCIENCE'),
     ('DECam', 25, 'S1', '1', 'S', 'SCIENCE');
   INSERT INTO physical_filter (instrument, name, band) VALUES ('DECam', 'r DECam SDSS c0002 6415.0 1480.0', 'r'),
     ('DECam', 'g DECam SDSS c0001 4720.0 1520.0', 'g'), ('DECam', 'z DECam SDSS c0004 9260.0 1520.0', 'z');" ||
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
# a raw whose primary header counts its extensions (NEXTEND, as DECam's
# do), cut exactly where its last extension begins: every HDU left is whole
{ cat "$T/decam.yaml"; echo "NEXTEND: 3"; } >"$T/decam_n.yaml"
"$H2F" "$T/decam_n.yaml" "$T/c4d_n.fits" EXPNUM=271002 OBSID=ct4m20140101t010500 @1:S29 @2:S30 @63:FS1 ||
    fail "hdr2fits"
python3 - "$T/c4d_n.fits" "$T/c4d_cut.fits" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
last = max(i for i in range(2880, len(data), 2880) if data[i:i + 9] == b"XTENSION=")
open(sys.argv[2], "wb").write(data[:last])
PY
cp "$T/c4d_cut.fits" "$T/mnt/DECam/raw/all/c4d_n.fits" 2>"$T/err.txt"
expect "a raw cut at an HDU boundary, short of its NEXTEND, is refused (EINVAL)" grep -q "Invalid argument" "$T/err.txt"
expect "... the reason says so" bash -c "grep -rqs 'NEXTEND announces 3 extensions, the file ends after 2' '$T/repo/.butlerfs/quarantine'"
expect "... and the whole file then goes in under the same name" cp "$T/c4d_n.fits" "$T/mnt/DECam/raw/all/c4d_n.fits"

# the real header dumps: file, exposure, detector, physical_filter, day_obs
# (astro_metadata_translator tests/test_decam.py: exposure_id, detector_num,
# physical_filter, observing_day)
H=$BFS_SHARED/fixtures/headers
if [ -r "$H/fitsheader-decam.yaml" ] && [ -r "$H/fitsheader-decam-raw_dec050441_25.yaml" ]; then
    while IFS='|' read -r file exp det filter day; do
        "$H2F" "$H/$file.yaml" "$T/$file.fits" @dump || { fail "hdr2fits @dump $file"; continue; }
        cp "$T/$file.fits" "$T/mnt/DECam/raw/all/" 2>"$T/err.txt" ||
            { fail "cp of $file: $(cat "$T/err.txt")"; tail -2 "$BFS_LOG"; continue; }
        expect "$file: one raw dataset, exposure $exp detector $det" \
            test "$(q "SELECT count(*) FROM dataset_tags_00000001 WHERE instrument = 'DECam' AND exposure = $exp AND detector = $det")" = 1
        expect "$file: ... its exposure has physical_filter '$filter' and day_obs $day" \
            test "$(q "SELECT physical_filter || '|' || day_obs FROM exposure WHERE instrument = 'DECam' AND id = $exp")" = "$filter|$day"
        path=$(q "SELECT r.path FROM file_datastore_records r JOIN dataset_tags_00000001 t ON t.dataset_id = r.dataset_id WHERE t.exposure = $exp AND t.detector = $det")
        if command -v fitsverify >/dev/null; then
            expect "$file: fitsverify passes on the stored file" fitsverify -q -e "$T/repo/${path:-nonexistent}"
        fi
        sleep 1.2 # the tree reloads its catalog once a second
        F=$(find "$T/mnt/DECam/raw/all/raw/instrument=DECam/detector=$det/exposure=$exp" -type f 2>/dev/null | head -1)
        expect "$file: reads back byte for byte at its dataId path" cmp "$T/$file.fits" "${F:-/nonexistent}"
    done <<'LIST'
fitsheader-decam-raw_dec050441_25|177764|25|g DECam SDSS c0001 4720.0 1520.0|20130212
fitsheader-decam|229388|25|z DECam SDSS c0004 9260.0 1520.0|20130831
LIST
else
    echo "skipping the real DECam header dumps: $H lacks them"
fi
unmount
expect_no_sanitizer
finish
