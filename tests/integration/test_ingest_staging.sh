#!/usr/bin/env bash
# test_ingest_staging.sh - staging hard links that fail are reported and
# completed later, never dropped silently (docs/ingest.md, "Staging").
#
# Two staging trees; in the second, the day's directory is blocked (a
# regular file where <tree>/<YYYY-MM-DD> should be), so its link fails: the
# writer's close is still 0 (the dataset is registered), the first tree has
# its link, the event line says which tree was not staged and why, the log
# warns, and the upload's intent stays.  Unblocked while mounted, the
# retry (ingest.staging_retry) makes the link.  Blocked again for a second
# raw: the intent keeps the registration's night, and the next mount makes
# the missing links at start, under that night, and retries while mounted
# those that still fail then.  Last, with
# ingest.allow_remove: a raw removed in the mount before its links were all
# made is no longer retried, and its intent goes.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v python3 >/dev/null || skip "python3 not installed"
T=$BFS_TMP
"$BFS_BIN" synth "$T/src" --exposures 1 --detectors 3 --fits >/dev/null 2>&1 || fail "synth"
mapfile -t RAWS < <(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort)
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
mkdir -p "$T/mnt" "$T/oods" "$T/archive"
printf 'ingest:\n  staging: [%s, %s]\n  staging_retry: 1s\n' "$T/oods" "$T/archive" >"$T/cfg.yaml"
day=$(date -u -d '-12 hours' +%F)
: >"$T/archive/$day"   # a file where the day's directory belongs

mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
mkdir -p "$T/mnt/LSSTCam/raw/all"
expect "the raw is ingested although one staging link fails (close 0)" cp "${RAWS[0]}" "$T/mnt/LSSTCam/raw/all/"
stored=$(find "$T/repo/LSSTCam" -type f -name '*.fits' | head -1)
name=$(basename "$stored")
expect "the first tree has its link (same inode)" \
    test "$(stat -c %i "$stored")" = "$(stat -c %i "$T/oods/$day/$name" 2>/dev/null)"
expect "the event says the second tree was not staged, and why" python3 -c "
import json, sys
e = [json.loads(l) for l in open(sys.argv[1])][-1]
assert e['status'] == 0 and e['outcome'] == 'ingested', e
assert e['staging'].startswith('not staged: ' + sys.argv[2]) and 'Not a directory' in e['staging'], e
assert 'a staging link failed' in e['description'], e
" "$T/repo/.butlerfs/events.jsonl" "$T/archive"
expect "the log warns, naming the tree" grep -q "cannot link .* into staging tree $T/archive" "$BFS_LOG"
expect "the upload's intent stays for the next mount" test -n "$(ls "$T/repo/.butlerfs/spool"/*.intent 2>/dev/null)"
status_until "$T/mnt" "$T/s.json" '"staging_failed": *1'
expect "status --json counts the staging failure" python3 -c "
import json, sys
i = json.load(open(sys.argv[1]))[0]['ingest']
assert (i['ingested'], i['staging_failed']) == (1, 1), i
" "$T/s.json"
expect "... and butlerfs status says it in words" \
    bash -c "'$BFS_BIN' status '$T/mnt' | grep -q '1 not fully staged'"

# unblocked while mounted: the running mount makes the link by itself
rm "$T/archive/$day"
for _ in $(seq 100); do
    [ "$(stat -c %i "$T/archive/$day/$name" 2>/dev/null)" = "$(stat -c %i "$stored")" ] &&
        [ -z "$(ls "$T/repo/.butlerfs/spool"/*.intent 2>/dev/null)" ] && break
    sleep 0.2
done
expect "unblocked while mounted, the retry makes the missing link (ingest.staging_retry)" \
    test "$(stat -c %i "$stored")" = "$(stat -c %i "$T/archive/$day/$name" 2>/dev/null)"
expect "... and the intent is gone" test -z "$(ls "$T/repo/.butlerfs/spool"/*.intent 2>/dev/null)"
status_until "$T/mnt" "$T/s.json" '"staging_failed": *0'
expect "... and status counts nothing not fully staged" grep -q '"staging_failed": *0' "$T/s.json"
expect "... and the log says it is fully staged now" grep -q "is fully staged now" "$BFS_LOG"

# blocked again, for the next mount: the second raw keeps its intent
mv "$T/archive/$day" "$T/archive/first" && : >"$T/archive/$day"
expect "a raw whose link fails again is ingested (close 0)" cp "${RAWS[1]}" "$T/mnt/LSSTCam/raw/all/"
stored=$(find "$T/repo/LSSTCam" -type f -name '*.fits' -newer "$T/s.json" | head -1)
name=$(basename "$stored")
unmount
intent=$(ls "$T/repo/.butlerfs/spool"/*.intent | head -1)
expect "the intent holds the staging day of the registration" \
    python3 -c "import json, sys; assert json.load(open(sys.argv[1]))['stage_day'] == sys.argv[2]" "$intent" "$day"
# a restart on a later night links under the registration's night, beside
# the links made then: here that night is made to be 2020-01-02 (and the
# first tree's link is gone too, so both are made again)
then=2020-01-02
python3 -c "
import json, sys
j = json.load(open(sys.argv[1])); j['stage_day'] = sys.argv[2]
open(sys.argv[1], 'w').write(json.dumps(j))" "$intent" "$then"
rm "$T/oods/$day/$name"

rm "$T/archive/$day"
: >"$T/archive/$then" # still blocked at the restart, under that night
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
# the kernel's mount shows before the daemon's start-up recovery ends; its
# first answer comes after it
ls "$T/mnt" >/dev/null
expect "the next mount makes the link it can at start (the first tree's)" \
    test "$(stat -c %i "$stored")" = "$(stat -c %i "$T/oods/$then/$name" 2>/dev/null)"
expect "... the other still failing, its intent stays" test -n "$(ls "$T/repo/.butlerfs/spool"/*.intent 2>/dev/null)"
rm "$T/archive/$then"
spool_settled "$T/repo" 20
expect "unblocked, the mount's retry makes the link the restart could not, under the registration's night" \
    test "$(stat -c %i "$stored")" = "$(stat -c %i "$T/archive/$then/$name" 2>/dev/null)"
expect "... in both trees, none under today's" \
    bash -c "test \"\$(stat -c %i '$stored')\" = \"\$(stat -c %i '$T/oods/$then/$name')\" && ! test -e '$T/archive/$day/$name'"
expect "... and writes the event again, staged" python3 -c "
import json, sys
e = [json.loads(l) for l in open(sys.argv[1])][-1]
assert e['status'] == 0 and 'staging' not in e, e
" "$T/repo/.butlerfs/events.jsonl"
expect "... and the intent is gone" test -z "$(ls "$T/repo/.butlerfs/spool"/*.intent 2>/dev/null)"
unmount

# removed before it was fully staged: nothing left to stage, no more tries
printf 'ingest:\n  staging: [%s, %s]\n  staging_retry: 1s\n  allow_remove: true\n' "$T/oods" "$T/archive" >"$T/cfg.yaml"
: >"$T/archive/$day"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
expect "a third raw whose link fails is ingested (close 0)" cp "${RAWS[2]}" "$T/mnt/LSSTCam/raw/all/"
det=$(python3 -c "import json, sys; print([json.loads(l) for l in open(sys.argv[1])][-1]['dataId']['detector'])" \
    "$T/repo/.butlerfs/events.jsonl")
inmount=$(find "$T/mnt/LSSTCam/raw/all/raw/instrument=LSSTCam/detector=$det" -type f | head -1)
expect "... and removed in the mount (ingest.allow_remove)" rm "$inmount"
spool_settled "$T/repo" 10
expect "the retry sees the dataset removed and drops the intent" \
    test -z "$(ls "$T/repo/.butlerfs/spool"/*.intent 2>/dev/null)"
expect "... and the log says why" grep -q "was removed before all its staging links were made" "$BFS_LOG"
status_until "$T/mnt" "$T/s.json" '"staging_failed": *0'
expect "... and status counts nothing not fully staged" grep -q '"staging_failed": *0' "$T/s.json"
rm "$T/archive/$day"
unmount

# an events file whose directory a clean-up removed while mounted: the
# directory is made again, and the line is not lost; the same for the spool
printf 'ingest:\n  staging: [%s]\n  events: %s\n' "$T/oods" "$T/ev/events.jsonl" >"$T/cfg.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
rm -r "$T/ev"
cp "${RAWS[0]}" "$T/mnt/LSSTCam/raw/all/again.fits"
expect "an event line is written although its directory was removed under the mount" \
    grep -q '"name":"again.fits"' "$T/ev/events.jsonl"
expect "... and the log says the directory was made again" grep -q "the directory of $T/ev/events.jsonl was gone" "$BFS_LOG"
rm -r "$T/repo/.butlerfs/spool"
expect "a file is taken although the spool was removed under the mount (close 0)" \
    cp "${RAWS[1]}" "$T/mnt/LSSTCam/raw/all/again2.fits"
expect "... the spool is made again, private, and the log says so" \
    bash -c "test \"\$(stat -c %a '$T/repo/.butlerfs/spool')\" = 700 && grep -q 'the spool .* was gone; made again' '$BFS_LOG'"
unmount
expect_no_sanitizer
finish
