#!/usr/bin/env bash
# test_ingest_pagecache.sh - ingest.page_cache (docs/config.md): with the
# default (drop) a file's pages leave the page cache once it is ingested, so
# a stream of images reuses pages instead of growing the cache; with keep
# they stay, for a reader on the same machine right after.
#
# Checks: with the default, 8 MiB written at a dataId path are registered,
# and once the upload is done (its intent gone) none of the placed file's
# pages is resident (fincore), while its bytes still read back whole; with
# page_cache: keep the placed file's pages stay resident; a bad value
# refuses the mount in one sentence naming file, line and key.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v fincore >/dev/null || skip "fincore (util-linux) not installed"
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
T=$BFS_TMP
"$BFS_BIN" synth "$T/repo" --exposures 1 --detectors 2 >/dev/null 2>&1 || fail "synth"
mkdir -p "$T/mnt"
DB=$T/repo/gen3.sqlite3
EXP=$(sqlite3 "$DB" "SELECT exposure FROM dataset_tags_00000001 LIMIT 1")
DET=$(sqlite3 "$DB" "SELECT detector FROM dataset_tags_00000001 LIMIT 1")
head -c $((8 << 20)) /dev/urandom >"$T/f.dat"

# resident bytes of the one file under the datastore's RUN directory $1
resident() {
    local f
    f=$(find "$T/repo/$1" -type f -name '*.dat' | head -1)
    [ -n "$f" ] && fincore -n -b -o RES "$f" | tr -d ' '
}
write_one() { # RUN
    local d="$T/mnt/$1/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP"
    mkdir -p "$d" && cp "$T/f.dat" "$d/"
}

mount_repo "$T/repo" "$T/mnt" rw || finish
expect "cp of 8 MiB to a dataId path succeeds" write_one drop/run
expect "... and the upload finishes (no intent left in the spool)" spool_settled "$T/repo" 5
expect "with the default (page_cache: drop) none of the placed file's pages is resident" \
    test "$(resident drop/run)" = 0
expect "... and its bytes read back whole" \
    cmp "$T/f.dat" "$(find "$T/repo/drop/run" -type f -name '*.dat' | head -1)"
unmount

printf 'ingest:\n  page_cache: keep\n' >"$T/keep.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/keep.yaml" || finish
expect "with page_cache: keep, cp succeeds" write_one keep/run
spool_settled "$T/repo" 5
sleep 0.5
expect "... and the placed file's pages stay resident" test "$(resident keep/run)" -gt 0
unmount

printf 'ingest:\n  page_cache: later\n' >"$T/bad.yaml"
"$BFS_BIN" mount "$T/repo" "$T/mnt" -f -o "rw,config=$T/bad.yaml" </dev/null >"$T/bad.err" 2>&1
expect "a bad page_cache value refuses the mount, naming file, line and key" \
    grep -q "bad.yaml:2: ingest.page_cache must be drop or keep" "$T/bad.err"
expect_no_sanitizer
finish
