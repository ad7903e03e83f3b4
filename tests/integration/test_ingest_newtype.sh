#!/usr/bin/env bash
# test_ingest_newtype.sh - path ingest of a dataset type the repository does
# not have (ingest.create_dataset_types, docs/ingest.md).
#
# Checks: without the key, a file at RUN/<new type>/<dim>=<value>/... is
# refused (EACCES) and no type appears; with it, mkdir -p and a write there
# create the type (dimensions from the path, storage class from the file's
# extension), register the dataset, and the file lists and reads back at once
# under the type's own directory; a second file of the type goes through the
# real type's directory; a path that lacks a required dimension (detector
# without instrument) and a file of an extension with no storage class are
# refused with EINVAL and a log line naming the fix (and leave no RUN
# registered for them); default_storage_class
# then admits it; a path whose dimensions differ from the type's is
# refused; a dataId with no exposure or detector record is refused (ENOENT) at its create
# with a reason naming the record; after a remount, read-only, everything is there; the type's row
# has the dimension group and storage class the Butler would give it;
# directories made with mkdir -p before the type's first file stay, below
# the type's own directory, and take their files (189 of them, written at
# once); rsync -a of a tree of a
# new type works (its temporary names keep the extension).
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
T=$BFS_TMP
"$BFS_BIN" synth "$T/repo" --exposures 1 --detectors 2 >/dev/null 2>&1 || fail "synth"
DB=$T/repo/gen3.sqlite3
EXP=$(sqlite3 "$DB" "SELECT exposure FROM dataset_tags_00000001 LIMIT 1")
mkdir -p "$T/mnt"
types() { sqlite3 "$DB" "SELECT name FROM dataset_type ORDER BY name" | tr '\n' ' '; }

# not allowed by default
mount_repo "$T/repo" "$T/mnt" rw || finish
P="$T/mnt/run1/mycat/instrument=LSSTCam/detector=1/exposure=$EXP"
mkdir -p "$P"
echo "a: 1" 2>"$T/err0" >"$P/c.yaml"
expect "without create_dataset_types, a file of an unknown type is refused (EACCES)" grep -q "Permission denied" "$T/err0"
expect "... and no type is made" test "$(types)" = "raw "
expect "... nor a RUN named after the path" test "$(sqlite3 "$DB" "SELECT count(*) FROM collection WHERE name LIKE '%=%'")" = 0
unmount

cat >"$T/cfg.yaml" <<YAML
ingest:
  create_dataset_types: true
YAML
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
P="$T/mnt/run2/mycat/instrument=LSSTCam/detector=1/exposure=$EXP"
mkdir -p "$P"
expect "a YAML file at a new type's dataId path is ingested (close returns 0)" \
    bash -c "echo 'a: 1' >'$P/c.yaml'"
expect "the type exists" test "$(types)" = "mycat raw "
expect "its storage class comes from the extension" \
    test "$(sqlite3 "$DB" "SELECT storage_class FROM dataset_type WHERE name = 'mycat'")" = StructuredDataDict
expect "its dimensions are raw's (instrument, detector, exposure: the same group)" \
    test "$(sqlite3 "$DB" "SELECT count(DISTINCT dimensions_key) FROM dataset_type")" = 1
F=$(find "$P" -type f | head -1)
expect "the file lists at once under its dataId" test -n "$F"
expect "... and reads back" test "$(cat "$F" 2>/dev/null)" = "a: 1"
expect "ls of the RUN shows the type" bash -c "ls '$T/mnt/run2' | grep -qx mycat"
P2="$T/mnt/run2/mycat/instrument=LSSTCam/detector=2/exposure=$EXP"
mkdir -p "$P2"
expect "a second file of the type, through the type's real directory" bash -c "echo 'b: 2' >'$P2/d.yaml'"
expect "two datasets of mycat" \
    test "$(sqlite3 "$DB" "SELECT count(*) FROM dataset d JOIN dataset_type t ON t.id = d.dataset_type_id WHERE t.name = 'mycat'")" = 2
# a dataId the repository has no dimension record for: ENOENT, the reason names the record
P4="$T/mnt/run2/mycat/instrument=LSSTCam/detector=2/exposure=$((EXP + 7))"
mkdir -p "$P4"
echo 'c: 3' >"$T/e.yaml"
cp "$T/e.yaml" "$P4/" 2>"$T/err4" # cp reports the close's error (a shell's redirection does not)
expect "a file at a dataId whose exposure has no record is refused at its create (ENOENT), before any byte" \
    grep -q "cannot create regular file.*No such file" "$T/err4"
expect "... and the log names the missing record" grep -q "no record of exposure $((EXP + 7)) of LSSTCam" "$BFS_LOG"
expect "... and an event line says refused" \
    bash -c "grep '\"outcome\":\"refused\"' '$T/repo/.butlerfs/events.jsonl' | grep -q 'no record of exposure $((EXP + 7))'"
P5="$T/mnt/run7/mycat/instrument=LSSTCam/detector=9999/exposure=$EXP"
mkdir -p "$P5"
cp "$T/e.yaml" "$P5/" 2>"$T/err5"
expect "... one whose detector has none, the same, naming the detector" \
    bash -c "grep -q 'cannot create regular file.*No such file' '$T/err5' && grep -q 'no record of detector 9999 of LSSTCam' '$BFS_LOG'"
expect "... and its new RUN was not registered for it" \
    test "$(sqlite3 "$DB" "SELECT count(*) FROM collection WHERE name = 'run7'")" = 0
expect "... and nothing was quarantined: no bytes were taken" \
    test "$(find "$T/repo/.butlerfs/quarantine" -name '*.reason' 2>/dev/null | wc -l)" = 0
status_until "$T/mnt" "$T/s.json" '"refused": *2'
expect "status counts the two refused at create, none quarantined" python3 - "$T/s.json" <<'PY'
import json, sys
i = json.load(open(sys.argv[1]))[0]["ingest"]
assert (i["refused"], i["quarantined"]) == (2, 0), i
PY
expect "... and says it in words" bash -c "'$BFS_BIN' status '$T/mnt' | grep -q ' 0 quarantined, 2 refused at create,'"
mkdir -p "$T/mnt/run2/bad/detector=1"
echo x 2>"$T/err1" >"$T/mnt/run2/bad/detector=1/x.yaml"
expect "a path without a required dimension is refused (EINVAL)" grep -q "Invalid argument" "$T/err1"
expect "... and the log says which" grep -q "its path gives detector but not instrument" "$BFS_LOG"
mkdir -p "$T/mnt/run2/blob/instrument=LSSTCam/detector=1"
echo x 2>"$T/err2" >"$T/mnt/run2/blob/instrument=LSSTCam/detector=1/x.bin"
expect "an extension with no storage class is refused (EINVAL)" grep -q "Invalid argument" "$T/err2"
expect "... and the log names the key to set" grep -q "set ingest.default_storage_class" "$BFS_LOG"
mkdir -p "$T/mnt/run9/blob/instrument=LSSTCam/detector=1"
echo x 2>/dev/null >"$T/mnt/run9/blob/instrument=LSSTCam/detector=1/x.bin"
expect "... and a type that cannot be made leaves no empty RUN registered for it" \
    test "$(sqlite3 "$DB" "SELECT count(*) FROM collection WHERE name = 'run9'")" = 0
mkdir -p "$T/mnt/run3/mycat/instrument=LSSTCam/detector=1"
echo x 2>"$T/err3" >"$T/mnt/run3/mycat/instrument=LSSTCam/detector=1/x.yaml"
expect "a path whose dimensions differ from the type's is refused" test -s "$T/err3"
expect "no type was made by the refusals" test "$(types)" = "mycat raw "
unmount

cat >"$T/cfg2.yaml" <<YAML
ingest:
  create_dataset_types: true
  default_storage_class: Blob
YAML
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg2.yaml" || finish
P3="$T/mnt/run2/blob/instrument=LSSTCam/detector=1"
mkdir -p "$P3"
expect "with default_storage_class, the file of an unknown extension is ingested" bash -c "echo x >'$P3/x.bin'"
expect "... as that storage class" \
    test "$(sqlite3 "$DB" "SELECT storage_class FROM dataset_type WHERE name = 'blob'")" = Blob
# a script that makes all its directories first: the first file makes the
# type, whose directory then holds the other directories made before it
for d in 1 2; do mkdir -p "$T/mnt/run4/tree/instrument=LSSTCam/detector=$d/exposure=$EXP"; done
expect "mkdir -p of two dataId directories of a new type, then a file in the first" \
    cp "$T/e.yaml" "$T/mnt/run4/tree/instrument=LSSTCam/detector=1/exposure=$EXP/"
expect "... the second directory is still there, below the type's own" \
    test -d "$T/mnt/run4/tree/instrument=LSSTCam/detector=2/exposure=$EXP"
expect "... and takes its file" cp "$T/e.yaml" "$T/mnt/run4/tree/instrument=LSSTCam/detector=2/exposure=$EXP/"
expect "... two datasets of the type" \
    test "$(sqlite3 "$DB" "SELECT count(*) FROM dataset d JOIN dataset_type t ON t.id = d.dataset_type_id WHERE t.name = 'tree'")" = 2
# rsync -a of a tree of a new type: it makes every directory first, then
# writes each file under a temporary name (".c.yaml.Ab3dE9") and renames it
if command -v rsync >/dev/null; then
    for d in 1 2; do
        mkdir -p "$T/src/synced/instrument=LSSTCam/detector=$d/exposure=$EXP"
        echo "d: $d" >"$T/src/synced/instrument=LSSTCam/detector=$d/exposure=$EXP/c.yaml"
    done
    expect "rsync -a of a tree of a new type into a new RUN exits 0" rsync -a "$T/src/" "$T/mnt/run5/"
    expect "... the type's storage class comes from the extension under rsync's temporary name" \
        test "$(sqlite3 "$DB" "SELECT storage_class FROM dataset_type WHERE name = 'synced'")" = StructuredDataDict
    expect "... both files are datasets" test "$(find "$T/mnt/run5/synced" -type f | wc -l)" = 2
    expect "... and rsync -a again exits 0 (the same bytes)" rsync -a "$T/src/" "$T/mnt/run5/"
fi
unmount

mount_repo "$T/repo" "$T/mnt" || finish
expect "after a remount (read-only), the files of the created types read back" \
    test "$(find "$T/mnt/run2" -type f | wc -l)" = 3
unmount

# a focal plane of a new type: mkdir -p of 189 dataId directories, then
# 189 writers at once; the first file makes the type, and every directory
# made before it (not just the first 64) stays below the type's own
"$BFS_BIN" synth "$T/fp" --exposures 1 --detectors 189 >/dev/null 2>&1 || fail "synth of 189 detectors"
FEXP=$(sqlite3 "$T/fp/gen3.sqlite3" "SELECT id FROM exposure LIMIT 1")
mount_repo "$T/fp" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
for d in $(seq 0 188); do mkdir -p "$T/mnt/fprun/fpcat/instrument=LSSTCam/detector=$d/exposure=$FEXP"; done
pids=()
for d in $(seq 0 188); do
    cp "$T/e.yaml" "$T/mnt/fprun/fpcat/instrument=LSSTCam/detector=$d/exposure=$FEXP/" 2>>"$T/fp.err" &
    pids+=($!)
done
wait "${pids[@]}" # not the daemon, also this shell's child
expect "189 writers at once into 189 directories made before their new type: every cp exits 0" \
    test ! -s "$T/fp.err"
expect "... and 189 datasets of the type" \
    test "$(sqlite3 "$T/fp/gen3.sqlite3" "SELECT count(*) FROM dataset d JOIN dataset_type t ON t.id = d.dataset_type_id WHERE t.name = 'fpcat'")" = 189
unmount
expect_no_sanitizer
finish
