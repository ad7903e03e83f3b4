#!/usr/bin/env bash
# test_retention_mount.sh - an -o rw mount runs local retention by itself
# (transfer.retention_interval; docs/transfer.md, "Local retention") against
# nginx WebDAV on loopback: raws of a collection a destination takes are
# uploaded (done), looked up and listed through the mount while younger
# than the rule's age, and then removed by the mount's own periodic passes
# (rows, files), and at once from the mount: a path the kernel had looked
# up no longer stats and the dataId directory's listing is empty, though
# file_timeout is a day, dir_timeout 10 s and listing_ttl 60 s (the pass
# drops them from the tree's and the kernel's caches).  Kept: a raw of a collection no
# destination takes, and a raw whose destination refuses every upload (a
# dry run beside the mount says why); a destination whose instruments rule
# does not take them gets no job and does not hold them back; `butlerfs
# status --json` counts the removals and the last pass's;
# `butlerfs queue` without REPO reads the one writable mount's queue and asks
# for REPO when two or none are running; a `butlerfs retention` run started
# while a pass holds the lock is told so; the configuration check refuses an
# interval without rules.  A journal left by a run killed mid-batch is
# finished by the mount's first pass, which finds no dataset under a rule
# yet.  A pass stops at its cap (BFS_RETENTION_PASS_MAX) and the next one
# takes the rest.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
skip_unless_fuse
trap 'nginx_stop; bfs_cleanup' EXIT
T=$BFS_TMP
archive_fixture 2
cat >"$T/bfs.yaml" <<YAML
transfer:
  destinations:
    - name: dbb
      uri: $NGINX_URL/data/archive/
      collections: ["LSSTCam/raw/*"]
      instruments: [LSSTCam, LSSTComCam]
    - name: auxtel
      uri: $NGINX_URL/data/auxtel/
      collections: ["LSSTCam/raw/*"]
      instruments: ["LATISS"]
    - name: refusing
      uri: $NGINX_URL/fail503/
      collections: ["LSSTCam/held"]
  request_timeout: 5s
  backoff_max: 1s
  retention:
    - collections: ["LSSTCam/*"]
      age: 8s
  retention_interval: 1s
YAML
nremoved() { grep -c 'retention: removed 1 dataset ' "$BFS_LOG"; }

mkdir -p "$T/repo/.butlerfs"
echo "{\"datasets\": [$(orphan_entry LSSTCam/raw/all/orphan/x.fits)]}" >"$T/repo/.butlerfs/retention.journal"
# a pass takes one dataset at most: the second raw waits for the next pass
export BFS_RETENTION_PASS_MAX=1
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml,listing_ttl=60" || finish
# retention_until PYEXPR: poll `butlerfs status --json` (5 s at most) until
# PYEXPR holds of its "retention" object r; the last reply in $T/status.json
retention_until()
{
    for _ in $(seq 25); do
        "$BFS_BIN" status --json "$T/mnt" >"$T/status.json" 2>/dev/null
        python3 -c "import json,sys; r = json.load(open(sys.argv[1]))[0]['retention']; assert $1" \
            "$T/status.json" 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}
# the first pass, 1 s after the start, finds the journal and no dataset yet
expect "the mount's first pass ends (an empty registry under the rules)" retention_until "r['passes'] >= 1"
kill -0 "$BFS_PID" 2>/dev/null || { fail "the daemon died in its first pass"; bfs_show_log; finish; }
expect "the first pass finished the interrupted run's journal: its orphan file is gone" \
    test ! -e "$T/repo/LSSTCam/raw/all/orphan/x.fits"
expect "... and so is the journal" test ! -e "$T/repo/.butlerfs/retention.journal"
expect "... which the pass's log line says" \
    grep -q "retention: removed 0 datasets (1 files, .*; finished 1 of an interrupted run's journal$" "$BFS_LOG"
mkdir -p "$T/mnt/LSSTCam/raw/all" "$T/mnt/LSSTCam/kept" "$T/mnt/LSSTCam/held"
cp "${RAWS[0]}" "${RAWS[1]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp into LSSTCam/raw/all"
# (age 8s: the look-ups below are made before any raw is due, even on a
# loaded machine) the kernel and
# the daemon now hold their entries and file lists (file_timeout: a day;
# the dataId directory's files: listing_ttl 60 s)
listed() { find "$T/mnt/LSSTCam/raw/all/raw" -name '*.fits' 2>/dev/null | wc -l; }
mapfile -t SEEN < <(find "$T/mnt/LSSTCam/raw/all/raw" -name '*.fits')
expect "the mount lists both raws before the pass removes them" test "${#SEEN[@]}" = 2
stat "${SEEN[@]}" >/dev/null || fail "stat of the listed raws"
cp "${RAWS[2]}" "$T/mnt/LSSTCam/kept/" || fail "cp into LSSTCam/kept"
cp "${RAWS[3]}" "$T/mnt/LSSTCam/held/" || fail "cp into LSSTCam/held"
# a pass runs every second and takes one dataset: the two transferred raws
# go in two passes once their jobs are done
for _ in $(seq 150); do [ "$(nremoved)" -ge 2 ] && break; sleep 0.2; done
expect "the mount removed the two transferred raws by itself, one per pass" test "$(nremoved)" = 2
expect "... no pass removed more than one" bash -c "! grep -q 'retention: removed [2-9][0-9]* datasets' '$BFS_LOG'"
for p in "${SEEN[@]}"; do
    expect "... at once gone from a path the kernel had looked up ($(basename "$p"))" bash -c "! stat '$p' 2>/dev/null"
    expect "... and from its dataId directory's listing" bash -c "! ls '$(dirname "$p")' 2>/dev/null | grep -q ."
done
expect "... and from the mount's listings" test "$(listed)" = 0
expect "two datasets are left: the raw no destination takes and the raw whose transfer is not done" \
    test "$(repo_sql "SELECT group_concat(name, ' ') FROM (SELECT c.name FROM dataset d JOIN collection c
                 ON c.collection_id = d.run_id ORDER BY c.name)")" = "LSSTCam/held LSSTCam/kept"
expect "... their files are left in the datastore (two), the others' gone" test "$(repo_raws)" = 2
expect "... the two removed were uploaded first" test "$(find "$T/www/archive" -name '*.fits' | wc -l)" = 2
expect "... and not to the destination whose instruments rule (LATISS) does not take LSSTCam raws" \
    test "$(find "$T/www" -path '*auxtel*' -name '*.fits' | wc -l)" = 0
expect "... the kept raw still reads back" \
    bash -c "cmp '${RAWS[2]}' \"\$(find '$T/mnt/LSSTCam/kept/raw' -type f | head -1)\""
"$BFS_BIN" retention "$T/repo" --config "$T/bfs.yaml" --dry-run --json >"$T/dry.json" 2>/dev/null
expect "a dry run beside the mount sees why they stay: one not transferred, one going nowhere" python3 -c "
import json, sys
s = json.load(open(sys.argv[1]))['summary']
assert (s['examined'], s['eligible'], s['not_transferred'], s['no_destination']) == (2, 0, 1, 1), s
" "$T/dry.json"
retention_until "r['removed'] == 2"
expect "butlerfs status counts the mount's removals (2), its passes and the last one's" python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))[0]['retention']
assert r['removed'] == 2 and r['passes'] >= 2 and r['last_pass'] > 0 and r['last_removed'] in (0, 1), r
assert r.get('last_error') is None, r
" "$T/status.json"
expect "... and so does its text, with the last pass's age and removals" \
    bash -c "'$BFS_BIN' status '$T/mnt' | grep -Eq 'retention +2 datasets removed in [0-9]+ passes, the last [0-9]+ s ago \(it removed [01]\)'"
expect "the log says what a pass removed, and that a pass at its cap left the rest for the next" \
    grep -q 'retention: removed 1 dataset .*; the rest waits for the next pass$' "$BFS_LOG"
# butlerfs queue without REPO: the one running writable mount's repository
"$BFS_BIN" queue --json >"$T/q1.json" 2>"$T/q1.err"
"$BFS_BIN" queue --json "$T/repo" >"$T/q2.json"
expect "butlerfs queue without REPO reads the running writable mount's queue" python3 -c "
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a['done'] == b['done'] and a['pending'] == b['pending'] and a['parked'] == b['parked'], (a, b)
" "$T/q1.json" "$T/q2.json"
# a second writable mount (a status file whose lock this shell holds, as a
# daemon holds its own): queue names both and asks for REPO
st=$XDG_RUNTIME_DIR/butlerfs
printf '{"version": 1, "mountpoint": "%s", "repository": "%s", "ingest": {}}\n' "$T/other-mnt" "$T/other-repo" \
    >"$st/mount.$$.json"
exec 8>"$st/mount.$$.lock"
flock 8
rc=0
"$BFS_BIN" queue --json >"$T/q4.out" 2>"$T/q4.err" || rc=$?
expect "... with two writable mounts running it exits 2 and prints no queue" test "$rc" = 2 -a ! -s "$T/q4.out"
expect "... and names both repositories and asks for REPO" sh -c \
    'grep -q "2 writable mounts are running; name the repository" "$1" && grep -q "^  $2 (mounted on $3)" "$1" &&
     grep -q "^  $4 (mounted on $5)" "$1"' sh "$T/q4.err" "$T/repo" "$T/mnt" "$T/other-repo" "$T/other-mnt"
exec 8>&-
rm -f "$st/mount.$$.json" "$st/mount.$$.lock"
# the CLI while the mount's thread may hold the lock: never two runs at once
exec 9>"$T/repo/.butlerfs/retention.lock"
flock 9
"$BFS_BIN" retention "$T/repo" --config "$T/bfs.yaml" >"$T/cli.out" 2>&1
expect "a CLI run while another run holds the lock is refused in one sentence" \
    grep -q 'another retention run of this repository is in progress' "$T/cli.out"
exec 9>&-
unmount

printf 'transfer:\n  retention_interval: 1h\n' >"$T/norules.yaml"
"$BFS_BIN" mount "$T/repo" "$T/mnt" -o "rw,config=$T/norules.yaml" >"$T/norules.out" 2>&1
expect "an interval without retention rules is refused with file:line" \
    grep -q 'norules.yaml:2: transfer.retention_interval needs retention: rules' "$T/norules.out"
mountpoint -q "$T/mnt" && fusermount3 -u "$T/mnt"
"$BFS_BIN" queue >"$T/q3.out" 2>&1
expect "... and with no writable mount running it asks for REPO in one sentence" \
    grep -q "no writable butlerfs mount is running; name the repository" "$T/q3.out"
expect_no_sanitizer
finish
