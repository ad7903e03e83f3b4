#!/usr/bin/env bash
# test_ingest_remove.sh - rm of a dataset's file in a writable mount
# (ingest.allow_remove; docs/ingest.md, "Removing datasets").
#
# Checks: without allow_remove rm is EPERM and nothing changes; with it, rm
# of a dataset whose transfer is not done is EBUSY (a destination that
# refuses connections keeps its job pending) and the dataset stays; in a
# collection no destination takes, rm removes the registry rows and the
# datastore file, the name leaves the listing, and the same dataId can be
# written again; a read-only collection is EROFS (cp and rm); a
# directory is refused; a staging tree on another file system is refused at
# mount time.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
T=$BFS_TMP
"$BFS_BIN" synth "$T/repo" --exposures 1 --detectors 2 --fits >/dev/null 2>&1 || fail "synth"
mkdir -p "$T/mnt"
count() { sqlite3 "$T/repo/gen3.sqlite3" "SELECT count(*) FROM dataset d JOIN collection c ON c.collection_id = d.run_id WHERE c.name = '$1'"; }
SRC=$(find "$T/repo/LSSTCam" -name '*.fits' | sort | head -1)
R=$(sqlite3 "$T/repo/gen3.sqlite3" "SELECT exposure || ' ' || detector FROM dataset_tags_00000001 LIMIT 1")
EXP=${R% *}; DET=${R#* }
path() { echo "$T/mnt/$1/raw/instrument=LSSTCam/detector=$DET/exposure=$EXP"; }
one_file() { find "$(path "$1")" -type f -name '*.fits' | head -1; }

# the RUN ro/x, written before it was made read-only
mount_repo "$T/repo" "$T/mnt" rw || finish
mkdir -p "$(path ro/x)" && cp "$SRC" "$(path ro/x)/first.fits" || fail "cp into ro/x"
unmount
printf 'ingest:\n  readonly_collections: ["ro/*"]\n' >"$T/off.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/off.yaml" || finish
mkdir -p "$(path u/keep)" && cp "$SRC" "$(path u/keep)/a.fits" || fail "cp into u/keep"
F=$(one_file u/keep)
rm "$F" 2>"$T/err"
expect "without ingest.allow_remove rm is refused (EPERM)" grep -q "Operation not permitted" "$T/err"
mkdir -p "$(path ro/new)" 2>"$T/err.mk"
expect "mkdir of a new collection a read-only glob matches is refused (EROFS)" \
    grep -q "cannot create directory.*ro/new.*Read-only file system" "$T/err.mk"
expect "... and the log says why" \
    grep -q "cannot create directory /ro/new in the mount (Read-only file system): a read-only collection" "$BFS_LOG"
mkdir "$(path ro/x)/../../detector=$((DET + 1))" 2>"$T/err.mk2"
expect "... and so is a directory below a read-only RUN (a partial dataId)" \
    grep -q "Read-only file system" "$T/err.mk2"
cp "$SRC" "$(path ro/x)/a.fits" 2>"$T/err.ro"
expect "a read-only collection (ingest.readonly_collections) refuses a file with EROFS" \
    grep -q "Read-only file system" "$T/err.ro"
expect "... and registers nothing more" test "$(count ro/x)" = 1
expect "... and says so in the log and in an event line (outcome refused, EROFS)" python3 - "$T/repo/.butlerfs/events.jsonl" "$BFS_LOG" <<'PY'
import json, sys
ev = [e for e in map(json.loads, open(sys.argv[1])) if e.get("run") == "ro/x" and e.get("outcome") != "ingested"]
assert len(ev) == 1, ev
e = ev[0]
assert e["status"] == 1 and e["outcome"] == "refused" and e["errno"] == "EROFS" and e["name"] == "a.fits", e
assert e["upload"] is None and e["path"] is None, e  # no bytes were taken: no spool id
assert "read-only collection" in e["description"], e
assert "refused a.fits in ro/x: a read-only collection" in open(sys.argv[2]).read()
PY
expect "... and the dataset stays" test "$(count u/keep)" = 1
unmount

cat >"$T/on.yaml" <<'YAML'
ingest:
  allow_remove: true
  readonly_collections: ["u/keep"]
transfer:
  destinations:
    - {name: nowhere, uri: "http://127.0.0.1:9/archive/", collections: ["u/sent/*"]}
  backoff_max: 1s
YAML
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/on.yaml" || finish
rm "$(one_file u/keep)" 2>"$T/err"
expect "in a read-only collection rm is EROFS" grep -q "Read-only file system" "$T/err"
mkdir -p "$(path u/sent/1)" && cp "$SRC" "$(path u/sent/1)/a.fits" || fail "cp into u/sent/1"
rm "$(one_file u/sent/1)" 2>"$T/err"
expect "a dataset whose transfer is not done is kept (EBUSY)" grep -q "Device or resource busy" "$T/err"
expect "... still registered" test "$(count u/sent/1)" = 1
expect "... and the log says why" grep -q "its transfer to nowhere is not done yet" "$BFS_LOG"
mkdir -p "$(path u/mine)" && cp "$SRC" "$(path u/mine)/a.fits" || fail "cp into u/mine"
F=$(one_file u/mine)
rel=$(sqlite3 "$T/repo/gen3.sqlite3" "SELECT r.path FROM file_datastore_records r JOIN dataset d ON d.id = r.dataset_id JOIN collection c ON c.collection_id = d.run_id WHERE c.name = 'u/mine'")
expect "the datastore file exists before" test -f "$T/repo/$rel"
expect "with allow_remove rm of a dataset no destination takes succeeds" rm "$F"
expect "... its registry rows are gone" test "$(count u/mine)" = 0
expect "... no file record is left" \
    test "$(sqlite3 "$T/repo/gen3.sqlite3" "SELECT count(*) FROM file_datastore_records WHERE path = '$rel'")" = 0
expect "... its datastore file is gone" test ! -e "$T/repo/$rel"
expect "... the name left the listing" test -z "$(one_file u/mine)"
expect "... the log says so" grep -q "removed dataset .* of u/mine" "$BFS_LOG"
expect "the same dataId can be written again" cp "$SRC" "$(path u/mine)/b.fits"
expect "... and is registered" test "$(count u/mine)" = 1
rm -r "$(path u/mine)" 2>"$T/err"
expect "a dataId directory is not removed" test -d "$(path u/mine)"
unmount
# a staging tree must take hard links: one on another file system is refused at mount time
if [ -d /dev/shm ] && [ "$(stat -c %d /dev/shm)" != "$(stat -c %d "$T/repo")" ]; then
    shm=$(mktemp -d /dev/shm/bfs-stage.XXXXXX)
    printf 'ingest:\n  staging: ["%s"]\n' "$shm" >"$T/shm.yaml"
    "$BFS_BIN" mount "$T/repo" "$T/mnt" -o "rw,config=$T/shm.yaml" >"$T/shm.out" 2>&1
    expect "a staging tree on another file system is refused at mount time, in one sentence" \
        grep -q "staging tree $shm is on another file system than the datastore" "$T/shm.out"
    expect "... and nothing was mounted" bash -c "! mountpoint -q '$T/mnt'"
    # refused files are renamed from the spool into the quarantine: never copied
    printf 'ingest:\n  quarantine: "%s"\n' "$shm/q" >"$T/shm.yaml"
    "$BFS_BIN" mount "$T/repo" "$T/mnt" -o "rw,config=$T/shm.yaml" >"$T/shm.out" 2>&1
    expect "a quarantine on another file system than the spool is refused at mount time, in one sentence" \
        grep -q "quarantine directory $shm/q is on another file system than the spool" "$T/shm.out"
    expect "... and nothing was mounted" bash -c "! mountpoint -q '$T/mnt'"
    printf 'ingest:\n  events: "%s"\n' "$T/repo/gen3.sqlite3/events.jsonl" >"$T/ev.yaml"
    "$BFS_BIN" mount "$T/repo" "$T/mnt" -o "rw,config=$T/ev.yaml" >"$T/ev.out" 2>&1
    expect "an events file that cannot be opened is refused at mount time" \
        grep -q "cannot open the events file $T/repo/gen3.sqlite3/events.jsonl" "$T/ev.out"
    expect "... and nothing was mounted" bash -c "! mountpoint -q '$T/mnt'"
    rm -rf "$shm"
fi
expect_no_sanitizer
finish
