#!/usr/bin/env bash
# test_ingest_amps.sh - a raw cut at an HDU boundary is refused, and its
# complete retry is ingested.
#
# A writer killed after some of a raw's amplifier HDUs leaves a valid FITS
# file (every HDU it wrote is whole, checksums included).  Raw ingest counts
# the amplifier HDUs against the detector's (16 for an LSSTCam science
# sensor; translate.h), so such a file is refused with EINVAL, quarantined
# with the reason "incomplete raw: N of 16 amplifier HDUs (detector R01_S00,
# ITL)", an event line with status 1 and a log line, and nothing is
# registered: no dataset, no exposure record.  The complete file written
# afterwards under the same name (and so the same dataId) is ingested.
# Cut points: after the primary only (0 amplifiers), after 9 and after 15
# (cp).  A writer that SIGKILLs itself right after writing 9 is refused
# before the count (the kernel's close of a killed writer: ECANCELED, "the
# writer was killed", test_ingest_killed.sh).  With
# `ingest.check_amplifiers: false` a cut raw is ingested as it is.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
command -v python3 >/dev/null || skip "python3 not installed"
T=$BFS_TMP
"$BFS_BIN" synth "$T/src" --exposures 2 --detectors 1 --fits >/dev/null 2>&1 || fail "synth"
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
mkdir -p "$T/mnt"
q() { sqlite3 "$T/repo/gen3.sqlite3" "$1"; }
mapfile -t raws < <(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort)
expect "synth made two raws (detector 0, R01_S00, an ITL sensor)" test "${#raws[@]}" = 2

# cut SRC DST AMPS: the first 1 + AMPS HDUs of SRC (the primary and AMPS
# amplifiers), cut where the next HDU's header would start
cut_at() { python3 - "$@" <<'PY'
import sys
src, dst, amps = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = open(src, 'rb').read()
ends, pos = [], 0
while pos < len(b):  # each HDU: header blocks up to END, then its data blocks
    cards = {}
    while True:
        block = b[pos:pos + 2880]
        pos += 2880
        lines = [block[i:i + 80].decode() for i in range(0, 2880, 80)]
        for c in lines:
            if c[8:10] == '= ':
                cards.setdefault(c[:8].strip(), c[10:].split('/')[0].strip())
        if any(c.startswith('END ') for c in lines):
            break
    naxis = int(cards['NAXIS'])
    n = 0
    if naxis:
        n = abs(int(cards['BITPIX'])) // 8
        for k in range(1, naxis + 1):
            n *= int(cards['NAXIS%d' % k])
    pos += (n + 2879) // 2880 * 2880
    ends.append(pos)
assert len(ends) == 17 and ends[-1] == len(b), (len(ends), ends[-1], len(b))
open(dst, 'wb').write(b[:ends[amps]])
PY
}
for amps in 0 9 15; do
    cut_at "${raws[0]}" "$T/cut$amps.fits" "$amps" || fail "cutting the raw after $amps amplifiers"
done
cut_at "${raws[1]}" "$T/other9.fits" 9 || fail "cutting the second raw"
if command -v fitsverify >/dev/null; then
    expect "each cut file is a valid FITS file (fitsverify): only the count can tell" \
        bash -c "for f in '$T'/cut*.fits; do fitsverify -q -e \"\$f\" >/dev/null || exit 1; done"
fi

mount_repo "$T/repo" "$T/mnt" rw || finish
mkdir -p "$T/mnt/LSSTCam/raw/all"
R=$T/mnt/LSSTCam/raw/all/MC_O_20250415_000001_R01_S00.fits
for amps in 0 9 15; do
    cp "$T/cut$amps.fits" "$R" 2>"$T/err.txt"
    expect "a raw cut after $amps amplifiers: cp fails with EINVAL ($(cat "$T/err.txt"))" \
        grep -q "Invalid argument" "$T/err.txt"
    expect "... and its name is not listed" bash -c "! ls '$T/mnt/LSSTCam/raw/all' | grep -qx '$(basename "$R")'"
done
# a writer killed right after its ninth amplifier: the kernel closes the file
python3 - "$T/cut9.fits" "$R" <<'PY'
import os, signal, sys
data = open(sys.argv[1], 'rb').read()
f = open(sys.argv[2], 'wb')
f.write(data)
f.flush()                          # the bytes reach the mount; no close
os.kill(os.getpid(), signal.SIGKILL)
PY
expect "the writer killed after 9 amplifiers died by SIGKILL (status 137)" test $? = 137
reasons() { cat "$T"/repo/.butlerfs/quarantine/*/*.reason 2>/dev/null; }
for _ in $(seq 100); do
    reasons | grep -q "killed by SIGKILL" && break
    sleep 0.1
done
expect "... its file is quarantined as its writer's kill (ECANCELED), not counted" \
    bash -c "for r in '$T'/repo/.butlerfs/quarantine/*/*.reason; do
        grep -q 'killed by SIGKILL' \"\$r\" && grep -qx 'errno: ECANCELED' \"\$r\" &&
        cmp -s \"\${r%.reason}.data\" '$T/cut9.fits' && exit 0; done; exit 1"
for amps in 0 9 15; do
    expect "the quarantine says why: 'incomplete raw: $amps of 16 amplifier HDUs (detector R01_S00, ITL)'" \
        grep -qF "incomplete raw: $amps of 16 amplifier HDUs (detector R01_S00, ITL)" <<<"$(reasons)"
    expect "... next to the bytes as written" bash -c "for r in '$T'/repo/.butlerfs/quarantine/*/*.reason; do
        grep -qF 'incomplete raw: $amps of' \"\$r\" && cmp -s \"\${r%.reason}.data\" '$T/cut$amps.fits' && exit 0; done; exit 1"
done
expect "three event lines with status 1, EINVAL, naming the count and the image (obs_id, raft, sensor)" python3 - "$T/repo/.butlerfs/events.jsonl" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
bad = [e for e in ev if 'incomplete raw' in e['description']]
assert len(bad) == 3 and len(ev) == 4, ev
assert all(e['status'] == 1 and e['errno'] == 'EINVAL' and e['outcome'] == 'quarantined' for e in bad), bad
# each names the image (translated before the count), to match it with the retry
assert all(e.get('obs_id') and e.get('raft') and e.get('sensor') for e in bad), bad
PY
expect "three log lines say so" test "$(grep -c 'quarantined .*incomplete raw: [0-9]* of 16 amplifier HDUs' "$BFS_LOG")" = 3
expect "nothing was registered: no dataset" test "$(q "SELECT count(*) FROM dataset")" = 0
expect "... no exposure record" test "$(q "SELECT count(*) FROM exposure")" = 0
expect "... no file in the datastore" test -z "$(find "$T/repo/LSSTCam" -type f 2>/dev/null)"

# the writer retries with the whole file, under the same name
expect "the complete raw written afterwards under the same name is ingested" cp "${raws[0]}" "$R"
expect "... one dataset" test "$(q "SELECT count(*) FROM dataset")" = 1
expect "... one exposure record" test "$(q "SELECT count(*) FROM exposure")" = 1
exp=$(q "SELECT id FROM exposure")
sleep 1.2 # the tree refreshes its catalog once a second
F=$(find "$T/mnt/LSSTCam/raw/all/raw/instrument=LSSTCam/detector=0/exposure=$exp" -type f 2>/dev/null | head -1)
expect "... its dataId path holds the complete bytes" cmp "${raws[0]}" "$F"
check_log

# the escape hatch: the count is not checked
printf 'ingest:\n  check_amplifiers: false\n' >"$T/off.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/off.yaml" || finish
expect "with check_amplifiers: false, a raw cut after 9 amplifiers is ingested" \
    cp "$T/other9.fits" "$T/mnt/LSSTCam/raw/all/"
expect "... as a second dataset" test "$(q "SELECT count(*) FROM dataset")" = 2
check_log

printf 'ingest:\n  check_amplifiers: maybe\n' >"$T/bad.yaml"
timeout 10 "$BFS_BIN" mount "$T/repo" "$T/mnt" -f -o "rw,config=$T/bad.yaml" </dev/null >/dev/null 2>"$T/err.txt"
expect "a bad check_amplifiers value is refused at mount, with file:line ($(cat "$T/err.txt"))" \
    grep -q "bad.yaml:2: ingest.check_amplifiers must be true or false" "$T/err.txt"
expect_no_sanitizer
finish
