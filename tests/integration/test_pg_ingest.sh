#!/usr/bin/env bash
# test_pg_ingest.sh - the write side on PostgreSQL (issue 13): a repository
# made by `butlerfs init --db` (through PgBouncer, transaction pooling)
# mounted -o rw ingests as an SQLite repository made by `butlerfs init`
# does, and two daemons ingesting into one PostgreSQL repository at once
# both succeed.
#
# Part 1, the same files into both engines: synthetic LSSTCam raws (raw
# ingest: the camera, exposure, day_obs and group records, the raw dataset
# type and its tag table are made), one of them again (an identical
# duplicate: close returns 0), one path-ingested file, a non-FITS file
# (EINVAL, quarantined with the same reason), a raw whose exposure record
# differs (EEXIST, the reason naming the column).  Then the two mounted trees
# are equal (path, size, bytes), and the registries hold the same rows:
# dataset ids (deterministic UUIDv5, equal to those synth gave the same
# raws), tag rows (dataId), exposure and day_obs records with their
# timespans (int8range on PostgreSQL), file records.
#
# Part 1b: the PostgreSQL repository's export (files and sidecars) ingested
# as replicas into another PostgreSQL repository: the same ids, and the
# exposure and day_obs records with their timespans from the sidecars.
#
# Part 1c: the lsstCam fixture (the Python Butler's; ingest_date a
# TIMESTAMP) copied into PostgreSQL takes a path-ingested raw as its SQLite
# original does.
#
# Part 2, two mounts of one PostgreSQL repository (two repository
# directories, each with its own spool and lock, one namespace and one
# datastore root, as two nodes would have), starting from an empty
# registry: each gets raws of the same exposures, some of them the same
# files, all copied at once.  Every close returns 0 (a file the other mount
# registered first is the identical-duplicate outcome), no dataset id is
# there twice, every distinct raw is registered once, and each mount lists
# all of them.  The daemons' logs hold no error line and no sanitizer report.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/pg.sh"
trap 'pg_stop; bfs_cleanup' EXIT

skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
pg_test_servers bouncer
# libpq's own convention; the password is never on a command line
export PGPASSWORD=$PG_PASSWORD
T=$BFS_TMP
sq() { sqlite3 "$1/gen3.sqlite3" "$2"; }
pq() { pg_psql -At -F '|' -c "SET search_path TO $1; $2"; }

# ---- part 1: the same files into SQLite and PostgreSQL ----------------------
"$BFS_BIN" synth "$T/src" --exposures 2 --detectors 3 --fits >/dev/null 2>&1 || fail "synth"
"$BFS_BIN" init "$T/sq" >/dev/null 2>&1 || fail "butlerfs init (SQLite)"
if ! "$BFS_BIN" init --db "$PGBOUNCER_URL" --namespace ing "$T/pg" >"$T/init.out" 2>&1; then
    cat "$T/init.out" >&2
    fail "butlerfs init --db (PostgreSQL through PgBouncer)"
    finish
fi
mkdir -p "$T/mnt-sq" "$T/mnt-pg"
mount_repo "$T/sq" "$T/mnt-sq" rw || finish
pid_sq=$BFS_PID log_sq=$BFS_LOG err_sq=$BFS_ERR
mount_repo "$T/pg" "$T/mnt-pg" rw || finish
pid_pg=$BFS_PID log_pg=$BFS_LOG err_pg=$BFS_ERR

raws=$(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort)
n_raws=$(wc -l <<<"$raws")
for side in sq pg; do
    m=$T/mnt-$side
    expect "$side: mkdir of a new RUN collection" mkdir -p "$m/LSSTCam/raw/all"
    ok=0 n=0
    for f in $raws; do
        n=$((n + 1))
        cp "$f" "$m/LSSTCam/raw/all/upload$n.fits" 2>"$T/err.txt" && ok=$((ok + 1)) ||
            echo "$side: cp of raw $n: $(cat "$T/err.txt")" >&2
    done
    expect "$side: every raw ingested ($ok of $n_raws; close returned 0)" [ "$ok" = "$n_raws" ]
    expect "$side: the same raw again is an identical duplicate (close returns 0)" \
        cp "$(head -1 <<<"$raws")" "$m/LSSTCam/raw/all/again.fits"
    printf 'not a FITS file\n' >"$T/text.txt"
    cp "$T/text.txt" "$m/LSSTCam/raw/all/notes.txt" 2>"$T/err.txt"
    expect "$side: a non-FITS file is refused (EINVAL)" grep -q "Invalid argument" "$T/err.txt"
done
# a path-ingested file: a raw of the first exposure at a dataId path of a new RUN
first=$(head -1 <<<"$raws")
det=$(sq "$T/src" "SELECT detector FROM dataset_tags_00000001 ORDER BY exposure, detector LIMIT 1")
exp=$(sq "$T/src" "SELECT exposure FROM dataset_tags_00000001 ORDER BY exposure, detector LIMIT 1")
for side in sq pg; do
    d=$T/mnt-$side/u/me/run1/raw/instrument=LSSTCam/detector=$det/exposure=$exp
    expect "$side: mkdir -p of a dataId path in a new RUN" mkdir -p "$d"
    expect "$side: cp of a raw to the dataId path (path ingest)" cp "$first" "$d/x.fits"
done
# a raw of the same exposure whose header gives another exposure record (a
# changed OBJECT): refused on both engines (EEXIST), the reason naming the
# column that differs (the probes that find it run on PostgreSQL too)
if [ -x "${BFS_HDR2FITS:-}" ]; then
    head -c 57600 "$first" >"$T/first.hdr"
    "$BFS_HDR2FITS" "$T/first.hdr" "$T/changed.fits" OBJECT=somewhere_else >/dev/null || fail "hdr2fits"
    for side in sq pg; do
        mkdir -p "$T/mnt-$side/u/me/run2"
        cp "$T/changed.fits" "$T/mnt-$side/u/me/run2/changed.fits" 2>"$T/err.txt"
        expect "$side: a raw whose exposure record differs from the repository's is refused (EEXIST)" \
            grep -q "File exists" "$T/err.txt"
        expect "$side: ... its reason names the column that differs (target_name)" \
            bash -c "grep -rhq \"differs from this file's headers in: target_name\$\" '$T/$side/.butlerfs/quarantine'"
    done
fi
sleep 1.5 # the trees refresh their catalogs once a second

expect_same_trees "the PostgreSQL mount lists what the SQLite mount lists" "$T/mnt-sq" "$T/mnt-pg" "$T/tree"
expect "... which holds the raws and the path-ingested file" [ "$TREE_FILES" -ge $((n_raws + 1)) ]

# the registries' rows
cmp_rows()   # WHAT SQLITE_SQL PG_SQL
{
    local a b
    a=$(sq "$T/sq" "$2" 2>&1)
    b=$(pq ing "$3" 2>&1)
    if [ "$a" = "$b" ] && [ -n "$a" ]; then
        pass "$1: the same rows ($(wc -l <<<"$a"))"
    else
        fail "$1: the rows differ"
        diff <(echo "$a") <(echo "$b") | head -10 >&2
    fi
}
cmp_rows "dataset ids and runs" \
    "SELECT d.id, c.name FROM dataset d JOIN collection c ON c.collection_id = d.run_id ORDER BY 1, 2" \
    "SELECT replace(d.id::text, '-', ''), c.name FROM dataset d JOIN collection c ON c.collection_id = d.run_id ORDER BY 1, 2"
# synth's ids are daf_butler's 16-byte blobs, init's 32 hex digits
hexid="CASE WHEN typeof(id) = 'blob' THEN lower(hex(id)) ELSE id END"
ids_src=$(sq "$T/src" "SELECT $hexid FROM dataset ORDER BY 1")
ids_pg=$(pq ing "SELECT replace(d.id::text, '-', '') FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name = 'LSSTCam/raw/all' ORDER BY 1")
expect "the raws' ids on PostgreSQL are those synth gave them (UUIDv5)" [ "$ids_src" = "$ids_pg" ]
cmp_rows "tag rows (dataIds)" \
    "SELECT dataset_id, collection_id, instrument, detector, exposure FROM dataset_tags_00000001 ORDER BY 1, 2" \
    "SELECT replace(dataset_id::text, '-', ''), collection_id, instrument, detector, exposure FROM dataset_tags_00000001 ORDER BY 1, 2"
ecols="instrument, id, day_obs, \"group\", physical_filter, obs_id, observation_type, observation_reason, seq_num, seq_start, seq_end, target_name, science_program, sky_angle, azimuth"
cmp_rows "exposure records with their timespans" \
    "SELECT $ecols, printf('%.6f %.6f', exposure_time, dark_time), has_simulated, can_see_sky, timespan_begin, timespan_end FROM exposure ORDER BY id" \
    "SELECT $ecols, round(exposure_time::numeric, 6) || ' ' || round(dark_time::numeric, 6), CAST(has_simulated AS int), CAST(can_see_sky AS int), lower(timespan), upper(timespan) FROM exposure ORDER BY id"
cmp_rows "day_obs records" \
    "SELECT instrument, id, timespan_begin, timespan_end FROM day_obs ORDER BY 1, 2" \
    "SELECT instrument, id, lower(timespan), upper(timespan) FROM day_obs ORDER BY 1, 2"
cmp_rows "group records" "SELECT instrument, name FROM \"group\" ORDER BY 1, 2" \
    "SELECT instrument, name FROM \"group\" ORDER BY 1, 2"
cmp_rows "file records" \
    "SELECT dataset_id, path, formatter, storage_class, component, checksum, file_size FROM file_datastore_records ORDER BY 1" \
    "SELECT replace(dataset_id::text, '-', ''), path, formatter, storage_class, component, checksum, file_size FROM file_datastore_records ORDER BY 1"
cmp_rows "dataset types" "SELECT name, storage_class, tag_association_table FROM dataset_type ORDER BY 1" \
    "SELECT name, storage_class, tag_association_table FROM dataset_type ORDER BY 1"
cmp_rows "detectors registered from the camera description" "SELECT count(*) FROM detector" \
    "SELECT count(*) FROM detector"
n_uuid=$(pg_psql -At -c "SELECT data_type FROM information_schema.columns WHERE table_schema = 'ing' AND table_name = 'dataset_tags_00000001' AND column_name = 'dataset_id'")
expect "the new tag table has daf_butler's PostgreSQL form (dataset_id $n_uuid)" [ "$n_uuid" = uuid ]
# (the reason files are named by upload id, random: their lines are compared sorted)
r_sq=$(cat "$T"/sq/.butlerfs/quarantine/*/*.reason 2>/dev/null | sed "s|$T/sq||g" | sort)
r_pg=$(cat "$T"/pg/.butlerfs/quarantine/*/*.reason 2>/dev/null | sed "s|$T/pg||g" | sort)
expect "the refused files are quarantined with the same reasons on both" \
    bash -c "[ -n \"\$1\" ] && [ \"\$1\" = \"\$2\" ]" _ "$r_sq" "$r_pg"

# the export's sidecars: dataId, ids and the dimension records (the exposure
# and day_obs timespans read from PostgreSQL's int8range) as from SQLite
for side in sq pg; do
    "$BFS_BIN" export "$T/$side" --collection 'LSSTCam/*' --to "$T/out-$side" >"$T/exp-$side.out" 2>&1 ||
        { fail "$side: butlerfs export"; cat "$T/exp-$side.out" >&2; }
done
n_side=$(find "$T/out-sq" -name '*.butler.json' | wc -l)
if [ "$n_side" -gt 0 ] && diff -r "$T/out-sq" "$T/out-pg" >"$T/exp.diff"; then
    pass "export from PostgreSQL writes the files and sidecars SQLite's does ($n_side sidecars)"
else
    fail "the exports differ ($n_side sidecars from SQLite)"
    head -20 "$T/exp.diff" >&2
fi
expect "... whose records hold the exposure's and day_obs's timespans" python3 - "$T/out-pg" <<'PY'
import json, pathlib, sys
for p in pathlib.Path(sys.argv[1]).rglob("*.butler.json"):
    rec = json.load(open(p))["ref"]["dataId"]["records"]
    for el in ("exposure", "day_obs"):
        b, e = rec[el]["record"]["timespan"]
        assert 1.7e18 < b < e < 1.8e18, (p, el, b, e)
PY

# check_log unmounts the last mount made: each in turn, explicitly
for side in sq pg; do
    eval "BFS_PID=\$pid_$side BFS_LOG=\$log_$side BFS_ERR=\$err_$side"
    unmount "$T/mnt-$side"
    check_log
done

# ---- part 1b: the exported files as replicas into another PostgreSQL repository
# (records from the sidecars: the timespan pair written as the int8range)
if "$BFS_BIN" init --db "$PGBOUNCER_URL" --namespace rep "$T/rep" >"$T/init-rep.out" 2>&1; then
    mkdir -p "$T/mnt-rep"
    mount_repo "$T/rep" "$T/mnt-rep" rw || finish
    ok=0 n=0
    while IFS= read -r f; do
        n=$((n + 1))
        cp "$f" "$T/mnt-rep/.replicas/" && cp "$f.butler.json" "$T/mnt-rep/.replicas/" && ok=$((ok + 1))
    done < <(find "$T/out-pg" -name '*.fits' | sort)
    expect "replica ingest into PostgreSQL: every pair's close returned 0 ($ok of $n)" [ "$ok" = "$n" ]
    expect "... under the exporting repository's ids" \
        [ "$(pq rep "SELECT replace(id::text, '-', '') FROM dataset ORDER BY 1")" = \
          "$(pq ing "SELECT replace(d.id::text, '-', '') FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name LIKE 'LSSTCam/%' ORDER BY 1")" ]
    expect "... with the exposure and day_obs records and their timespans" \
        [ "$(pq rep "SELECT id, obs_id, timespan FROM exposure UNION ALL SELECT id, NULL, timespan FROM day_obs ORDER BY 1")" = \
          "$(pq ing "SELECT id, obs_id, timespan FROM exposure UNION ALL SELECT id, NULL, timespan FROM day_obs ORDER BY 1")" ]
    unmount "$T/mnt-rep"
    check_log
else
    cat "$T/init-rep.out" >&2
    fail "butlerfs init --db (namespace rep)"
fi

# ---- part 1c: a repository of the Python Butler (ingest_date a TIMESTAMP,
# an older universe) copied into PostgreSQL takes a path-ingested file as
# its SQLite original does
fx=$BFS_SHARED/fixtures/repos/lsstCam
if [ -f "$fx/butler.yaml" ]; then
    cp -r "$fx" "$T/fx-sq"
    mkdir -p "$T/fx-root" "$T/mnt-fx-sq" "$T/mnt-fx-pg"
    "$BFS_BIN" copy-registry "$fx" "$T/fx-pg" --db "$PGBOUNCER_URL" --namespace fx --root "$T/fx-root" \
        >"$T/fx-copy.out" 2>&1 || { cat "$T/fx-copy.out" >&2; fail "copy-registry of the lsstCam fixture"; }
    mount_repo "$T/fx-sq" "$T/mnt-fx-sq" rw || finish
    pid_fs=$BFS_PID log_fs=$BFS_LOG err_fs=$BFS_ERR
    mount_repo "$T/fx-pg" "$T/mnt-fx-pg" rw || finish
    pid_fp=$BFS_PID log_fp=$BFS_LOG err_fp=$BFS_ERR
    for side in sq pg; do
        d=$T/mnt-fx-$side/u/test/run1/raw/instrument=LSSTCam/detector=1/exposure=3019031900001
        mkdir -p "$d"
        expect "fixture $side: a path-ingested raw at an existing exposure's dataId" cp "$first" "$d/x.fits"
    done
    expect "fixture: the same dataset id on both" \
        [ "$(sq "$T/fx-sq" "SELECT $hexid FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name = 'u/test/run1'")" = \
          "$(pq fx "SELECT replace(d.id::text, '-', '') FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name = 'u/test/run1'")" ]
    expect "fixture: ingest_date written as a TIMESTAMP (UTC, now)" \
        [ "$(pq fx "SELECT count(*) FROM dataset WHERE ingest_date > now() AT TIME ZONE 'UTC' - interval '5 minutes'")" = 1 ]
    sleep 1.2
    expect_same_trees "fixture: the new RUN lists the same from both" "$T/mnt-fx-sq/u/test/run1" \
        "$T/mnt-fx-pg/u/test/run1" "$T/fx-tree"
    for side in fs fp; do
        eval "BFS_PID=\$pid_$side BFS_LOG=\$log_$side BFS_ERR=\$err_$side"
        [ $side = fs ] && unmount "$T/mnt-fx-sq" || unmount "$T/mnt-fx-pg"
        check_log
    done
fi

# ---- part 2: two mounts of one PostgreSQL repository at once -----------------
"$BFS_BIN" synth "$T/src2" --exposures 2 --detectors 8 --first-seq 50 --fits >/dev/null 2>&1 || fail "synth 2"
if ! "$BFS_BIN" init --db "$PGBOUNCER_URL" --namespace two "$T/a" >"$T/init2.out" 2>&1; then
    cat "$T/init2.out" >&2
    fail "butlerfs init --db (namespace two)"
    finish
fi
# the second node: its own directory (spool, lock), the same registry and datastore
mkdir -p "$T/b"
sed "s|^  root: .*|  root: '$T/a'|" "$T/a/butler.yaml" >"$T/b/butler.yaml"
grep -q "root: '$T/a'" "$T/b/butler.yaml" || fail "the second repository directory names the first's datastore"
mkdir -p "$T/mnt-a" "$T/mnt-b"
mount_repo "$T/a" "$T/mnt-a" rw || finish
pid_a=$BFS_PID log_a=$BFS_LOG err_a=$BFS_ERR
mount_repo "$T/b" "$T/mnt-b" rw || finish
pid_b=$BFS_PID log_b=$BFS_LOG err_b=$BFS_ERR
mkdir -p "$T/mnt-a/LSSTCam/raw/all" "$T/mnt-b/LSSTCam/raw/all" 2>"$T/err.txt"
expect "both mounts make the RUN (one of them finds it made)" \
    bash -c "[ -d '$T/mnt-a/LSSTCam/raw/all' ] && [ -d '$T/mnt-b/LSSTCam/raw/all' ]"

# detectors 0-5 of each exposure to a, 2-7 to b: 2-5 go to both
mapfile -t all < <(find "$T/src2/LSSTCam/raw/all" -name '*.fits' | sort)
n_all=${#all[@]}
: >"$T/results"
k=0 cps=()
for f in "${all[@]}"; do
    k=$((k + 1))
    det2=$(( (k - 1) % 8 ))
    for side in a b; do
        if { [ $side = a ] && [ $det2 -le 5 ]; } || { [ $side = b ] && [ $det2 -ge 2 ]; }; then
            ( cp "$f" "$T/mnt-$side/LSSTCam/raw/all/f$k.fits" 2>"$T/err.$side.$k" &&
                  echo "0 $side $k" || echo "1 $side $k $(cat "$T/err.$side.$k")" ) >>"$T/results" &
            cps+=($!)
        fi
    done
done
wait "${cps[@]}" # not the daemons, which are jobs of this shell too
n_tried=$(wc -l <"$T/results")
n_ok=$(grep -c '^0 ' "$T/results")
expect "every copy into either mount returned 0 ($n_ok of $n_tried)" [ "$n_ok" = "$n_tried" ]
grep '^1 ' "$T/results" | head -5 >&2
rows=$(pq two "SELECT count(*), count(DISTINCT id) FROM dataset")
expect "each of the $n_all raws is registered once, no id twice ($rows)" [ "$rows" = "$n_all|$n_all" ]
ids_src=$(sq "$T/src2" "SELECT $hexid FROM dataset ORDER BY 1")
ids_pg=$(pq two "SELECT replace(id::text, '-', '') FROM dataset ORDER BY 1")
expect "... with the ids synth gave them" [ "$ids_src" = "$ids_pg" ]
expect "one record per exposure" [ "$(pq two "SELECT count(*) FROM exposure")" = 2 ]
expect "one raw dataset type, one tag table" \
    [ "$(pq two "SELECT count(*), count(DISTINCT tag_association_table) FROM dataset_type")" = "1|1" ]
expect "one file record per dataset" [ "$(pq two "SELECT count(*) FROM file_datastore_records")" = "$n_all" ]
for side in a b; do
    n=0
    for _ in $(seq 30); do # each mount's listing follows the registry within its TTL
        n=$(find "$T/mnt-$side/LSSTCam/raw/all/raw" -type f -name '*.fits' 2>/dev/null | wc -l)
        [ "$n" = "$n_all" ] && break
        sleep 0.5
    done
    expect "mount $side lists all $n_all raws ($n)" [ "$n" = "$n_all" ]
done
expect "the datastore holds each raw once" \
    [ "$(find "$T/a/LSSTCam" -type f -name '*.fits' | wc -l)" = "$n_all" ]
# a deadlock is retried (-EBUSY) but should not happen: say so when one did
grep -h "deadlock\|serializ" "$log_a" "$log_b" | cut -c1-300 >&2
for side in a b; do
    eval "BFS_PID=\$pid_$side BFS_LOG=\$log_$side BFS_ERR=\$err_$side"
    unmount "$T/mnt-$side"
    check_log
done
expect_no_sanitizer "$T"/daemon.*.log "$T"/daemon.*.stderr
finish
