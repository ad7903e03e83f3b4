#!/usr/bin/env bash
# test_replica_ingest.sh - replicas from another site, each with its sidecar
# (docs/transfer.md, "Replica ingest"): `butlerfs export` at the source, cp
# into MNT/.replicas at the destination.
#
# Checks, into a repository made by `butlerfs init` (no instrument, no
# dataset type, no RUN): the file first, then its sidecar: the file's close
# returns 0 (waiting), the sidecar's close returns the pair's outcome (0);
# the sidecar first, then the file: the same, the other way round; each
# dataset is registered under exactly the sidecar's id, run and dataId, with
# the dimension records and dataset type the sidecar carries; the bytes read
# back through the mount; the sidecars leave no dataset and no spool file.
# Refused into quarantine, with a reason naming what differs: a file whose
# bytes differ from its sidecar's checksums (EBADMSG), a sidecar that is not
# JSON (EINVAL). A file whose sidecar never comes is quarantined after
# ingest.replica_wait. kill -9 with a file WAITING, remount: the sidecar
# written then pairs with it. mkdir inside .replicas is refused.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
replica_fixture
expect "four files exported, each with its sidecar" \
    test "${#FILES[@]}" = 4 -a "$(find "$T/out" -name '*.butler.json' | wc -l)" = 4
printf 'ingest:\n  replica_wait: 3s\n' >"$T/cfg.yaml"

mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
R=$T/mnt/.replicas
expect "an -o rw mount has the replica directory" test -d "$R"
f=${FILES[0]}
expect "a replica first: its close returns 0 (accepted, waiting for its sidecar)" cp "$f" "$R/"
expect "... it is listed in the replica directory" test -e "$R/$(basename "$f")"
expect "... and nothing is registered yet" test "$(q "$T/repo" "SELECT count(*) FROM dataset")" = 0
expect "its sidecar second: the close returns the pair's outcome (0)" cp "$f.butler.json" "$R/"
f=${FILES[1]}
expect "a sidecar first (0), then its replica (0)" bash -c "cp '$f.butler.json' '$R/' && cp '$f' '$R/'"
hexid="CASE typeof(id) WHEN 'blob' THEN lower(hex(id)) ELSE lower(replace(id, '-', '')) END"
ids_src=$(q "$T/src" "SELECT $hexid FROM dataset ORDER BY 1")
ids_new=$(q "$T/repo" "SELECT $hexid FROM dataset ORDER BY 1")
n_new=$(echo "$ids_new" | grep -c .)
n_common=$(comm -12 <(echo "$ids_src") <(echo "$ids_new") | grep -c .)
expect "two datasets, under the source's ids" test "$n_new" = 2 -a "$n_common" = 2
expect "in the source's run" test "$(q "$T/repo" "SELECT DISTINCT c.name FROM dataset d JOIN collection c ON c.collection_id = d.run_id")" = LSSTCam/raw/all
expect "with the dataset type the sidecar describes" \
    test "$(q "$T/repo" "SELECT name || ' ' || storage_class FROM dataset_type")" = "$(q "$T/src" "SELECT name || ' ' || storage_class FROM dataset_type WHERE name = 'raw'")"
expect "the exposure record came with the sidecar" \
    test "$(q "$T/repo" "SELECT id, obs_id FROM exposure")" = "$(q "$T/src" "SELECT id, obs_id FROM exposure")"
sleep 1.2
n=$(find "$T/mnt/LSSTCam/raw/all" -type f 2>/dev/null | wc -l)
expect "both read back through the mount at their dataId paths" test "$n" = 2
sums_out=$(find "$T/out" -name '*.fits' -exec md5sum {} + | cut -d' ' -f1 | sort)
sums_mnt=$(find "$T/mnt/LSSTCam/raw/all" -type f -exec md5sum {} + | cut -d' ' -f1 | sort)
expect "... byte for byte" test "$(comm -13 <(echo "$sums_out") <(echo "$sums_mnt") | grep -c .)" = 0
expect "no spool file is left" test -z "$(ls "$T/repo/.butlerfs/spool")"

# refusals
f=${FILES[2]}
cp "$f" "$T/bad.fits"
printf 'X' | dd of="$T/bad.fits" bs=1 seek=100 conv=notrunc 2>/dev/null
cp "$T/bad.fits" "$R/$(basename "$f")"
cp "$f.butler.json" "$R/" 2>"$T/err.txt"
expect "a replica whose bytes differ from its sidecar's checksums is refused (EBADMSG)" grep -q "Bad message" "$T/err.txt"
expect "... into quarantine, with the reason" grep -rqs "adler32\|MD5" "$T/repo/.butlerfs/quarantine"
expect "... and a corrected copy can be written again at once" \
    bash -c "cp '$f' '$R/' && cp '$f.butler.json' '$R/'"
f=${FILES[3]}
cp "$f" "$R/"
echo 'not json' >"$T/junk.json"
cp "$T/junk.json" "$R/$(basename "$f").butler.json" 2>"$T/err.txt"
expect "a sidecar that is not JSON is refused (EINVAL)" grep -q "Invalid argument" "$T/err.txt"
mkdir "$R/sub" 2>"$T/err.txt"
expect "mkdir inside the replica directory is refused" grep -q "Permission denied" "$T/err.txt"
cp "$T/bad.fits" "$R/lonely.fits"
sleep 4
ls "$R" >/dev/null # a listing lets the mount see what has waited too long
sleep 1
expect "a replica whose sidecar never comes is quarantined after replica_wait" \
    grep -q "did not arrive within ingest.replica_wait" "$BFS_LOG"
expect "three datasets in all" test "$(q "$T/repo" "SELECT count(*) FROM dataset")" = 3
unmount

# kill -9 with a replica WAITING: the next mount keeps it, and pairs it
printf 'ingest:\n  replica_wait: 1h\n' >"$T/cfg2.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg2.yaml" || finish
cp "$f" "$R/" || fail "cp of a replica"
kill_daemon
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg2.yaml" || finish
expect "after kill -9 and a remount the waiting replica is still listed" test -e "$R/$(basename "$f")"
expect "... and its sidecar, written now, pairs with it" cp "$f.butler.json" "$R/"
expect "four datasets in all" test "$(q "$T/repo" "SELECT count(*) FROM dataset")" = 4
unmount
expect_no_sanitizer
finish
