#!/usr/bin/env bash
# test_replica_rename.sh - rsync's rename of a replica or a sidecar that is
# WAITING survives kill -9 (docs/transfer.md, "Replica ingest", crash
# story): rsync writes .NAME.XXXXXX, closes it (it goes WAITING under that
# name) and renames it to NAME; the rename is answered only once the upload's
# intent holds the new name.  So after kill -9 and a remount the upload
# waits under NAME, and the partner written then pairs with it: the dataset
# is registered under the sidecar's id (on the code before, the remount knew
# it by its temporary name only: it never paired, and was quarantined after
# ingest.replica_wait).  Both ways round: the replica renamed and waiting,
# then its sidecar; the sidecar renamed and waiting, then its replica.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
replica_fixture
printf 'ingest:\n  replica_wait: 1h\n' >"$T/cfg.yaml"
R=$T/mnt/.replicas
hexid="CASE typeof(id) WHEN 'blob' THEN lower(hex(id)) ELSE lower(replace(id, '-', '')) END"
# registered FILE: the dataset of FILE's sidecar is in the repository, under its id
registered()
{
    local id
    id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ref"]["id"].replace("-", ""))' "$1.butler.json")
    test "$(q "$T/repo" "SELECT count(*) FROM dataset WHERE $hexid = '$id'")" = 1
}

# first written (under a temporary name), closed, renamed; kill -9; remount;
# then the partner
f=${FILES[0]}
b=$(basename "$f")
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
cp "$f" "$R/.$b.Xy12Zq" || fail "cp of a replica under a temporary name"
mv "$R/.$b.Xy12Zq" "$R/$b" || fail "rename of the waiting replica"
kill_daemon
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
expect "after kill -9 and a remount the renamed replica waits under its new name" test -e "$R/$b"
expect "... not under its temporary one" test ! -e "$R/.$b.Xy12Zq"
# its time is its bytes' (rsync compares size and time to skip a file), not 1970
expect "... with the time it was written, not the epoch" test "$(stat -c %Y "$R/$b")" -gt $(($(date +%s) - 3600))
expect "its sidecar written now pairs with it (close 0)" cp "$f.butler.json" "$R/"
expect "... and the dataset is registered under the sidecar's id" registered "$f"

f=${FILES[1]}
b=$(basename "$f")
cp "$f.butler.json" "$R/.$b.butler.json.Ab3dE9" || fail "cp of a sidecar under a temporary name"
mv "$R/.$b.butler.json.Ab3dE9" "$R/$b.butler.json" || fail "rename of the waiting sidecar"
kill_daemon
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
expect "after kill -9 and a remount the renamed sidecar waits under its new name" test -e "$R/$b.butler.json"
expect "its replica written now pairs with it (close 0)" cp "$f" "$R/"
expect "... and the dataset is registered under the sidecar's id" registered "$f"
expect "two datasets in all" test "$(q "$T/repo" "SELECT count(*) FROM dataset")" = 2
expect "nothing is quarantined" test -z "$(find "$T/repo/.butlerfs/quarantine" -type f 2>/dev/null)"
expect "no spool file is left" test -z "$(ls "$T/repo/.butlerfs/spool")"
unmount
expect_no_sanitizer
finish
