#!/usr/bin/env bash
# test_ingest_hs_real.sh - the Header Service merge through a real -o rw
# mount with the real Header Service documents of
# ../shared/fixtures/headerservice (test_ingest_hs.sh uses a synthetic one):
#
#  - LATISS AT_O_20190531_000001: the raw is built with cfitsio (hdr2fits)
#    from the exposure's real FITS header blocks (AT_O_20190531_000001.header:
#    its primary cards, which name no RAFTBAY/CCDSLOT, with ORIGIN, CCDTEMP
#    and FILTER changed and 16 bare amplifier HDUs), and curated_example.yml
#    is its document, as <OBSID>.yml;
#  - LSSTComCam CC_O_20200521_000008, detector R22 S11 of the 9 the document
#    covers: the raw is built from the document's PRIMARY block (as a
#    PropertyList dump) with ORIGIN changed, RAFTBAY/CCDSLOT set and bare
#    amplifier HDUs, and CC_O_20200521_000008.header is its document.
#
# The repository's LATISS is registered first by a plain mount's ingest of
# a 2024 LATISS raw (../shared/fixtures/headers), and the physical filter the
# 2019 document names, FILTER~GRATING r~R400, which obs_lsst (and so
# butlerfs's camera description) does not define, is then added to the
# registry with sqlite3, as an operator would register it: without it the raw
# is quarantined (ENOENT), as the Python Butler's ingest would refuse it.
#
# Each raw is copied in with cp, and: cp exits 0; the dataset is registered
# with the dataId obs_lsst gives (instrument, exposure = DAYOBS * 100000 +
# SEQNUM of an OCS image, detector: LATISS's only one, 0, and the ComCam
# detector of that RAFTBAY/CCDSLOT), and the exposure record has the
# document's OBSID, day_obs and seq_num, and for LATISS FILTER~GRATING as its
# physical_filter (the raw had FILTER = 'unset'); hs_check.py, reading the
# values from the document itself: every non-commentary, non-structural card
# of the sensor's blocks is in the stored file with the document's value, in
# the HDU of its block (null: an undefined value, except for keywords the FITS
# standard types, such as the ComCam document's null OBJECT and RADESYS,
# which stay as written and count as invalid), the structural cards of every
# HDU are the raw's, and the event says the document was merged with as many
# blocks as the document has for that sensor (for LATISS, whose raw names no
# sensor: the document's only one, R01S01); fitsverify passes on the stored
# file.  Skips without the fixtures.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
skip_unless_hdr2fits
HS=$BFS_SHARED/fixtures/headerservice
for f in curated_example.yml AT_O_20190531_000001.header CC_O_20200521_000008.header; do
    [ -r "$HS/$f" ] || skip "Header Service fixture $f absent"
done
LATISS_2024=$BFS_SHARED/fixtures/headers/latiss-AT_O_20240624_000106_R00_S00.yaml
[ -r "$LATISS_2024" ] || skip "fixture headers absent"
python3 -c 'import yaml' 2>/dev/null || skip "python3 with PyYAML not installed"
T=$BFS_TMP
CHECK=$BFS_LIB_DIR/hs_check.py
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
mkdir -p "$T/mnt" "$T/hs" "$T/raw"
q() { sqlite3 "$T/repo/gen3.sqlite3" "$1"; }
# docval DOC BLOCK KEY: the value of KEY in BLOCK of the document
docval() {
    python3 - "$@" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
print(next(e["value"] for e in doc[sys.argv[2]] if e["keyword"] == sys.argv[3]))
PY
}

# LATISS: the raw from the exposure's real header cards
lat_doc=$HS/curated_example.yml
lat_obs=$(docval "$lat_doc" PRIMARY OBSID)
"$H2F" "$HS/AT_O_20190531_000001.header" "$T/raw/$lat_obs.fits" ORIGIN=camera CCDTEMP=unset FILTER=unset ||
    fail "hdr2fits $lat_obs"
cp "$lat_doc" "$T/hs/$lat_obs.yml"

# ComCam: the raw from the document's PRIMARY block, one of its 9 sensors
cc_doc=$HS/CC_O_20200521_000008.header
cc_obs=$(docval "$cc_doc" PRIMARY OBSID)
cc_raft=R22 cc_slot=S11
python3 - "$cc_doc" >"$T/cc_dump.yaml" <<'PY' || fail "ComCam dump"
import sys, yaml
kind = {bool: "Bool", int: "Int", float: "Double", str: "String"}
rows = [[e["keyword"], kind[type(e["value"])], e["value"], e["comment"]]
        for e in yaml.safe_load(open(sys.argv[1]))["PRIMARY"]
        if e["keyword"] not in (None, "COMMENT", "HISTORY") and e["value"] is not None]
yaml.safe_dump(rows, sys.stdout)
PY
"$H2F" "$T/cc_dump.yaml" "$T/raw/${cc_obs}_${cc_raft}_$cc_slot.fits" ORIGIN=camera \
    "RAFTBAY=$cc_raft" "CCDSLOT=$cc_slot" || fail "hdr2fits $cc_obs"
cp "$cc_doc" "$T/hs/$cc_obs.header"

# the repository's LATISS, and the 2019 physical filter
"$H2F" "$LATISS_2024" "$T/raw/latiss2024.fits" || fail "hdr2fits $LATISS_2024"
mount_repo "$T/repo" "$T/mnt" rw || finish
mkdir -p "$T/mnt/LATISS/raw/all"
expect "a 2024 LATISS raw registers LATISS" cp "$T/raw/latiss2024.fits" "$T/mnt/LATISS/raw/all/"
unmount
lat_filter=$(docval "$lat_doc" PRIMARY FILTER)~$(docval "$lat_doc" PRIMARY GRATING)
q "INSERT INTO physical_filter (instrument, name, band) VALUES ('LATISS', '$lat_filter', '$(docval "$lat_doc" PRIMARY FILTER)')" ||
    fail "registering $lat_filter"

printf 'ingest:\n  header_service:\n    dir: %s\n    wait: 2s\n' "$T/hs" >"$T/bfs.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish

# check_raw INSTRUMENT DOC OBSID SENSOR DETECTOR RAW: DETECTOR is an SQL
# expression (the detector table is there once the instrument's first raw is)
check_raw() {
    local inst=$1 doc=$2 obs=$3 sensor=$4 det=$5 raw=$6 day seq exp path stored
    mkdir -p "$T/mnt/$inst/raw/all"
    expect "$obs: cp into the mount exits 0" cp "$raw" "$T/mnt/$inst/raw/all/"
    det=$(q "SELECT $det")
    [ -n "$det" ] || det=NULL
    day=$(docval "$doc" PRIMARY DAYOBS) seq=$(docval "$doc" PRIMARY SEQNUM)
    expect "$obs: an OCS image (controller O), so its exposure id is DAYOBS * 100000 + SEQNUM" \
        test "$(cut -d_ -f2 <<<"$obs")" = O
    exp=$((10#$day * 100000 + 10#$seq))
    expect "$obs: registered as $inst exposure $exp detector $det" \
        test "$(q "SELECT count(*) FROM dataset_tags_00000001 WHERE instrument = '$inst' AND exposure = $exp AND detector = $det")" = 1
    expect "$obs: ... whose exposure record has the document's OBSID, DAYOBS and SEQNUM" \
        test "$(q "SELECT obs_id || ' ' || day_obs || ' ' || seq_num FROM exposure WHERE instrument = '$inst' AND id = $exp")" = "$obs $day $seq"
    path=$(q "SELECT r.path FROM file_datastore_records r JOIN dataset_tags_00000001 t ON t.dataset_id = r.dataset_id WHERE t.instrument = '$inst' AND t.exposure = $exp AND t.detector = $det")
    stored=$T/repo/$path
    expect "$obs: the stored file is there" test -n "$path" -a -f "$stored"
    expect "$obs: the document's cards for $sensor are in the stored file, structural cards are the raw's, the event says merged" \
        python3 "$CHECK" "$doc" "$sensor" "$raw" "$stored" "$T/repo/.butlerfs/events.jsonl" "$obs"
    if command -v fitsverify >/dev/null; then
        expect "$obs: fitsverify passes on the stored file" fitsverify -q -e "$stored"
    fi
}

check_raw LATISS "$lat_doc" "$lat_obs" R01S01 0 "$T/raw/$lat_obs.fits"
expect "$lat_obs: the translation saw the merged FILTER and GRATING (physical_filter $lat_filter)" \
    test "$(q "SELECT physical_filter FROM exposure WHERE obs_id = '$lat_obs'")" = "$lat_filter"
check_raw LSSTComCam "$cc_doc" "$cc_obs" "$cc_raft$cc_slot" \
    "id FROM detector WHERE instrument = 'LSSTComCam' AND raft = '$cc_raft' AND name_in_raft = '$cc_slot'" \
    "$T/raw/${cc_obs}_${cc_raft}_$cc_slot.fits"
unmount
check_log
expect_no_sanitizer
finish
