#!/usr/bin/env bash
# test_quarantine.sh - `butlerfs quarantine` lists what a writable mount
# refused, and `quarantine retry` writes it into the mount again
# (docs/ingest.md, "Quarantine").
#
# Checks: each refused file is listed with its errno, where it was written
# (a raw in its RUN, a file in a nested RUN) and its reason; --json gives
# the same; after the cause is fixed (a header corrections file) a retry by
# the start of the id ingests the raw and removes the entry; a retry of
# bytes refused for what they are is refused again, the old entry goes and
# the mount's new one holds the same bytes; ids that name nothing are
# refused; a retry stopped by SIGTERM finishes its file first; a retry whose
# mount's daemon is killed mid-file keeps the entry, and the next mount drops
# the cut copy rather than quarantine it beside the entry; without a running
# mount the list still reads and a retry says the mount is needed.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
command -v python3 >/dev/null || skip "python3 not installed"
T=$BFS_TMP
"$BFS_BIN" synth "$T/src" --exposures 2 --detectors 1 --fits >/dev/null 2>&1 || fail "synth"
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
mkdir -p "$T/mnt" "$T/corr"
q() { sqlite3 "$1/gen3.sqlite3" "$2"; }
refused() { ! "$@" 2>/dev/null; }
rc_of() { "$@" >/dev/null 2>&1; echo $?; }
mapfile -t OBS < <(q "$T/src" "SELECT obs_id FROM exposure ORDER BY id")
raw0=$(find "$T/src/LSSTCam/raw/all" -name "*${OBS[0]}*.fits" | head -1)
[ -f "$raw0" ] || fail "no synthetic raw"
printf -- '- not\n- a mapping\n' >"$T/corr/LSSTCam-${OBS[0]}.yaml"
printf 'ingest:\n  corrections: [%s]\n' "$T/corr" >"$T/cfg.yaml"
head -c 20000 /dev/urandom >"$T/junk.fits"

expect "a repository never mounted -o rw has an empty quarantine (exit 0)" \
    grep -q ": 0 files, 0 B" <("$BFS_BIN" quarantine "$T/repo")
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
mkdir -p "$T/mnt/LSSTCam/raw/all" "$T/mnt/u/op/raws"
expect "a raw with a broken corrections file is refused" refused cp "$raw0" "$T/mnt/LSSTCam/raw/all/"
expect "bytes that are not FITS are refused" refused cp "$T/junk.fits" "$T/mnt/u/op/raws/"

# the close is answered once the refusal is durable; the move into the
# quarantine directory follows a moment later
for _ in $(seq 50); do
    [ "$(find "$T/repo/.butlerfs/quarantine" -name '*.reason' | wc -l)" = 2 ] && break
    sleep 0.1
done
"$BFS_BIN" quarantine >"$T/list.txt" 2>&1
expect "quarantine without a repository lists the running mount's" grep -q "2 files" "$T/list.txt"
expect "... the raw where it was written, with its errno" grep -q "EINVAL  *LSSTCam/raw/all/$(basename "$raw0")" "$T/list.txt"
expect "... and its reason, naming the corrections file" grep -q "LSSTCam-${OBS[0]}.yaml" "$T/list.txt"
expect "... the junk in its nested RUN" grep -q "u/op/raws/junk.fits" "$T/list.txt"
status_names_quarantine() # the status file is rewritten every 2 s
{
    for _ in $(seq 50); do
        "$BFS_BIN" status "$T/mnt" | grep -q "quarantine   $T/repo/.butlerfs/quarantine (butlerfs quarantine lists" &&
            return 0
        sleep 0.1
    done
    return 1
}
expect "butlerfs status points at the quarantine" status_names_quarantine

"$BFS_BIN" quarantine --json "$T/repo" >"$T/list.json"
pyq() { python3 -c "import json,sys; d=json.load(open('$T/list.json')); $1"; }
expect "--json: two entries" test "$(pyq 'print(d["count"])')" = 2
raw_id=$(pyq 'print([e["id"] for e in d["entries"] if e["path"].startswith("LSSTCam/")][0])')
junk_id=$(pyq 'print([e["id"] for e in d["entries"] if e["path"].startswith("u/op/")][0])')
expect "--json: the errno and the run of each" test "$(pyq 'print(",".join(sorted(e["errno"] + ":" + e["run"] for e in d["entries"])))')" = "EINVAL:LSSTCam/raw/all,EINVAL:u/op/raws"
junk_data=$(pyq "print([e['data'] for e in d['entries'] if e['id'] == '$junk_id'][0])")
expect "--json: the data path holds the bytes refused" cmp "$T/junk.fits" "$junk_data"

expect "retry of an id that names nothing exits 1" test "$(rc_of "$BFS_BIN" quarantine retry 0000000000)" = 1
expect "retry with neither ids nor --all is a usage error (2)" test "$(rc_of "$BFS_BIN" quarantine retry "$T/repo")" = 2

# the cause fixed: the raw goes in
printf 'OBJECT: fixed by the operator\n' >"$T/corr/LSSTCam-${OBS[0]}.yaml"
"$BFS_BIN" quarantine retry "$T/repo" "${raw_id:0:8}" >"$T/retry.txt" 2>&1
expect "retry of the raw after its cause is fixed succeeds" grep -q "ingested as LSSTCam/raw/all/" "$T/retry.txt"
expect "... its exposure is registered with the correction" \
    test "$(q "$T/repo" "SELECT target_name FROM exposure WHERE obs_id = '${OBS[0]}'")" = "fixed by the operator"
expect "... the stored file is the bytes first written" \
    cmp "$raw0" "$(find "$T/repo/LSSTCam" -name "*${OBS[0]}*" -type f | head -1)"
expect "... and its entry is gone" test -z "$(find "$T/repo/.butlerfs/quarantine" -name "$raw_id.*")"

# bytes refused for what they are: refused again, kept once
"$BFS_BIN" quarantine retry "$junk_id" >"$T/retry2.txt" 2>&1
rc=$?
expect "retry of junk exits 1" test "$rc" = 1
expect "... says it was refused again, and why" grep -q "refused again (EINVAL): .*FITS" "$T/retry2.txt"
expect "... the old entry is gone" test -z "$(find "$T/repo/.butlerfs/quarantine" -name "$junk_id.*")"
new_id=$(sed -n 's/^ *quarantined anew as \([0-9a-f]*\)$/\1/p' "$T/retry2.txt")
expect "... the new entry is named" test -n "$new_id"
new_data=$(find "$T/repo/.butlerfs/quarantine" -name "${new_id:-none}*.data" | head -1)
expect "... and holds the same bytes" cmp "$T/junk.fits" "${new_data:-/nonexistent}"
expect "... at the same path" grep -qx "path: u/op/raws/junk.fits" "${new_data%.data}.reason"

# a retry told to stop mid-file finishes that file first: the mount never
# gets a cut copy, and one copy of the bytes stays in the quarantine
head -c $((192 << 20)) /dev/urandom >"$T/big.fits"
cp "$T/big.fits" "$T/mnt/u/op/raws/" 2>/dev/null
big_id=$("$BFS_BIN" quarantine --json "$T/repo" | python3 -c "import json,sys; print([e['id'] for e in json.load(sys.stdin)['entries'] if e['path'].endswith('/big.fits')][0])")
"$BFS_BIN" quarantine retry "$big_id" >"$T/retry4.txt" 2>&1 &
pid=$!
# mid-file: once the mount has some of its bytes (not before the command
# has begun, which a loaded machine can make later than any fixed sleep)
for _ in $(seq 2000); do
    [ -n "$(find "$T/repo/.butlerfs/spool" -name '*.data' -size +1M 2>/dev/null)" ] && break
    sleep 0.005
done
kill -TERM "$pid" 2>/dev/null
signalled=$?
wait "$pid"
rc=$?
expect "a retry sent SIGTERM mid-file ends by it (status 143)" test "$signalled" = 0 -a "$rc" = 143
expect "... after the file: refused again" grep -q "refused again (EINVAL)" "$T/retry4.txt"
big_new=$(sed -n 's/^ *quarantined anew as \([0-9a-f]*\)$/\1/p' "$T/retry4.txt")
big_data=$(find "$T/repo/.butlerfs/quarantine" -name "${big_new:-none}*.data" | head -1)
expect "... the new entry holds every byte" cmp "$T/big.fits" "${big_data:-/nonexistent}"
expect "... and the old one is gone" test -z "$(find "$T/repo/.butlerfs/quarantine" -name "$big_id.*")"
rm -f "$big_data" "${big_data%.data}.reason" "$T/big.fits"

# the daemon killed while a retry writes: the command says the mount went
# away and keeps the entry; the next mount drops the cut copy it was given
# (the entry holds every byte) instead of quarantining it beside the entry
head -c $((256 << 20)) /dev/urandom >"$T/big2.fits"
cp "$T/big2.fits" "$T/mnt/u/op/raws/" 2>/dev/null
big2_id=$("$BFS_BIN" quarantine --json "$T/repo" | python3 -c "import json,sys; print([e['id'] for e in json.load(sys.stdin)['entries'] if e['path'].endswith('/big2.fits')][0])")
"$BFS_BIN" quarantine retry "$big2_id" >"$T/retry5.txt" 2>&1 &
pid=$!
for _ in $(seq 2000); do
    [ -n "$(find "$T/repo/.butlerfs/spool" -name '*.data' -size +8M 2>/dev/null)" ] && break
    sleep 0.005
done
kill_daemon
wait "$pid"
rc=$?
expect "a retry whose mount's daemon is killed mid-file fails (1)" test "$rc" = 1
expect "... saying the mount went away and the entry stays" grep -q "entry stays: the mount went away" "$T/retry5.txt"
expect "... the spool holds the cut copy" test -n "$(find "$T/repo/.butlerfs/spool" -name '*.data' -size +8M)"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
expect "the next mount drops the cut copy, naming the entry that holds its bytes" \
    grep -q "dropped upload .*quarantine retry.*$big2_id.data holds every byte" "$BFS_LOG"
expect "... the spool is empty" test -z "$(find "$T/repo/.butlerfs/spool" -type f)"
expect "... and big2.fits has one entry, the first, with every byte" \
    test "$("$BFS_BIN" quarantine --json "$T/repo" | python3 -c "import json,sys; print(' '.join(e['id'] + ':' + str(e['size']) for e in json.load(sys.stdin)['entries'] if e['path'].endswith('/big2.fits')))")" = "$big2_id:$((256 << 20))"
"$BFS_BIN" quarantine retry "${big2_id:0:12}" >"$T/retry6.txt" 2>&1
expect "a retry of it after the remount is refused again (junk)" grep -q "refused again (EINVAL)" "$T/retry6.txt"
expect "... and leaves no marker behind" test -z "$(find "$T/repo/.butlerfs/quarantine" -name '*.retrying')"
big2_new=$(sed -n 's/^ *quarantined anew as \([0-9a-f]*\)$/\1/p' "$T/retry6.txt")
big2_data=$(find "$T/repo/.butlerfs/quarantine" -name "${big2_new:-none}*.data" | head -1)
expect "... its new entry holds every byte" cmp "$T/big2.fits" "${big2_data:-/nonexistent}"
rm -f "$big2_data" "${big2_data%.data}.reason" "$T/big2.fits"
unmount

"$BFS_BIN" quarantine "$T/repo" >"$T/list2.txt" 2>&1
expect "without a mount the list still reads (REPO's default directory)" grep -q "1 file," "$T/list2.txt"
# a restart that finished a quarantine the next day: bytes and reason on two days
Q=$T/repo/.butlerfs/quarantine old=0123456789abcdef0123456789abcdef
mkdir -p "$Q/2020-01-01" "$Q/2020-01-02"
cp "$T/junk.fits" "$Q/2020-01-01/$old.data"
printf 'an old refusal\nrun: LSSTCam/raw/all\ndataset type: raw\nname: old.fits\n' >"$Q/2020-01-02/$old.reason"
"$BFS_BIN" quarantine --json "$T/repo" >"$T/list.json"
expect "an entry whose bytes and reason are on two days is one entry" test "$(pyq 'print(d["count"])')" = 2
expect "... with its bytes, its reason, and the path rebuilt for a raw" \
    test "$(pyq "e=[e for e in d['entries'] if e['id'] == '$old'][0]; print(e['size'], e['reason'], e['path'])")" = \
    "20000 an old refusal LSSTCam/raw/all/old.fits"
"$BFS_BIN" quarantine --since 2026-01-01 --json "$T/repo" >"$T/list.json"
expect "--since leaves out the older days" test "$(pyq 'print(d["count"])')" = 1
"$BFS_BIN" quarantine retry "$T/repo" --all >"$T/retry3.txt" 2>&1
rc=$?
expect "without a mount a retry fails" test "$rc" = 1
expect "... saying the mount is needed" grep -q "no writable mount of .* is running" "$T/retry3.txt"
expect_no_sanitizer
finish
