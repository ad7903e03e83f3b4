#!/usr/bin/env bash
# test_ingest_randomkill.sh - kill -9 of an -o rw daemon at random moments
# while cp writes one of three files, in turn: a 64 MiB file at a raw dataId
# path (stored as it is), a raw FITS into a RUN's own directory (validation,
# header translation, dimension records), or that raw at its own dataId path
# (translated, then compared with the path), then a clean remount.
#
# Checks, after every kill: the spool is empty (every upload was finished
# by the remount), the run holds at most one dataset, a cp that exited 0
# has its dataset registered, a registered dataset's bytes read back equal
# to what was written, a file not registered is quarantined as a prefix of
# what was written, and no file sits in the run's datastore directory
# without its registry row (nothing half-done).
#
# With BFS_RK_PG=1 (test_pg_randomkill.sh) the registry is PostgreSQL behind
# PgBouncer (transaction pooling): a kill mid-transaction leaves the server
# to roll it back when the client's connection goes.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
T=$BFS_TMP
ROUNDS=${BFS_KILL_ROUNDS:-15}
"$BFS_BIN" synth "$T/src" --exposures 1 --detectors 1 --fits >/dev/null 2>&1 || fail "synth"
mkdir -p "$T/mnt"
R=$(sqlite3 "$T/src/gen3.sqlite3" "SELECT exposure || ' ' || detector FROM dataset_tags_00000001 LIMIT 1")
EXP=${R% *}; DET=${R#* }
head -c $((64 << 20)) /dev/urandom >"$T/big.dat"
cp "$(find "$T/src/LSSTCam" -type f -name '*.fits' | head -1)" "$T/raw.fits"
if [ "${BFS_RK_PG:-}" = 1 ]; then
    . "$here/pg.sh"
    trap 'pg_stop; bfs_cleanup' EXIT
    pg_test_servers bouncer
    export PGPASSWORD=$PG_PASSWORD # libpq's convention: never on a command line
    "$BFS_BIN" copy-registry "$T/src" "$T/repo" --db "$PGBOUNCER_URL" --namespace rk --root "$T/repo" \
        >"$T/copy.out" 2>&1 || { cat "$T/copy.out" >&2; fail "copy-registry into PostgreSQL"; finish; }
    sql() { pg_psql -At -c "SET search_path TO rk; $1"; }
else
    mv "$T/src" "$T/repo"
    sql() { sqlite3 "$T/repo/gen3.sqlite3" "$1"; }
fi
count() { sql "SELECT count(*) FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name = '$1'" 2>/dev/null || echo 0; }

bad=0 registered=0 quarantined=0
for i in $(seq "$ROUNDS"); do
    mount_repo "$T/repo" "$T/mnt" rw || finish
    case $((i % 3)) in
    1) run=rk/$i src=$T/big.dat d="$T/mnt/$run/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP" ;;
    2) run=rkraw/$i src=$T/raw.fits d="$T/mnt/$run" ;;
    0) run=rkpath/$i src=$T/raw.fits d="$T/mnt/$run/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP" ;;
    esac
    mkdir -p "$d" || fail "round $i: mkdir -p"
    cp "$src" "$d/$(basename "$src")" 2>/dev/null &
    cpid=$!
    sleep "0.$(printf "%03d" $((RANDOM % 120)))"  # a cp of 64 MiB takes ~0.1 s here
    kill -9 "$BFS_PID"
    wait "$cpid" 2>/dev/null
    cp_status=$?
    fusermount3 -u "$T/mnt" 2>/dev/null || fusermount3 -uz "$T/mnt" 2>/dev/null
    mount_repo "$T/repo" "$T/mnt" rw || finish
    n=$(count "$run")
    files=$(find "$T/repo/$run" -type f 2>/dev/null | wc -l)
    spool=$(find "$T/repo/.butlerfs/spool" -type f | wc -l)
    ok=1
    [ "$spool" = 0 ] || { echo "round $i: $spool files left in the spool:" $(ls "$T/repo/.butlerfs/spool"); ok=0; }
    [ "$n" -le 1 ] || { echo "round $i: $n datasets"; ok=0; }
    [ "$files" = "$n" ] || { echo "round $i: $files datastore files, $n registered"; ok=0; }
    # a writer told 0 was promised its dataset: it must be registered now
    [ "$cp_status" != 0 ] || [ "$n" = 1 ] || { echo "round $i: cp exited 0 but nothing is registered"; ok=0; }
    # a file handed over and not registered is in quarantine, whole or as cut
    qn=$(grep -lx "run: $run" "$T/repo/.butlerfs/quarantine"/*/*.reason 2>/dev/null | wc -l)
    [ "$n" = 1 ] || [ "$qn" -le 1 ] || { echo "round $i: $qn quarantined copies"; ok=0; }
    if [ "$n" = 0 ] && [ "$qn" = 1 ]; then
        q=$(grep -lx "run: $run" "$T/repo/.butlerfs/quarantine"/*/*.reason)
        quarantined=$((quarantined + 1))
        cmp -s -n "$(stat -c %s "${q%.reason}.data")" "$src" "${q%.reason}.data" ||
            { echo "round $i: the quarantined bytes are not a prefix of what was written"; ok=0; }
    fi
    if [ "$n" = 1 ]; then
        registered=$((registered + 1))
        cmp -s "$src" "$(find "$T/mnt/$run/raw" -type f | head -1)" || { echo "round $i: bytes differ"; ok=0; }
        # a raw FITS is translated wherever it was written: the camera's formatter
        if [ "$src" = "$T/raw.fits" ]; then
            f=$(sql "SELECT formatter FROM file_datastore_records r JOIN dataset d ON d.id = r.dataset_id JOIN collection c ON c.collection_id = d.run_id WHERE c.name = '$run'")
            case $f in *LsstCamRawFormatter) ;; *) echo "round $i: $run's raw has formatter '$f'"; ok=0 ;; esac
        fi
    fi
    [ "$ok" = 1 ] || bad=$((bad + 1))
    unmount
done
echo "$ROUNDS kills: $registered rounds registered the file, $quarantined quarantined it, $((ROUNDS - registered - quarantined)) never began"
expect "after $ROUNDS random kills nothing is half-done: spool empty, at most one dataset, no unregistered file, bytes equal" \
    test "$bad" = 0
expect "some files were handed over before the kill and finished by the remount, or quarantined" \
    test "$(find "$T/repo/.butlerfs/quarantine" -name '*.reason' 2>/dev/null | wc -l)" -gt 0 -o "$registered" -gt 0
expect_no_sanitizer
finish
