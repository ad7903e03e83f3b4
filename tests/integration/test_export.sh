#!/usr/bin/env bash
# test_export.sh - `butlerfs export` (issue 12): dataset files copied out
# with their sidecars (docs/transfer.md, "Sidecars" and "Export").  No mount.
#
# Checks: every file is byte-identical to the datastore's; every sidecar is
# JSON with the dataset's id (against the registry), run, dataId, size,
# adler32 (zlib) and md5 (hashlib), and its dimension records; a second
# export skips everything; --dry-run writes nothing; a PATH with an alias
# selects one detector; a conflicting existing file is refused (exit 1) and
# left as it was; a missing sidecar next to an identical file is written; the
# datastore root as DIR is refused; usage errors exit 2.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 is not installed"

T=$BFS_TMP
R=$T/repo
"$BFS_BIN" synth "$R" --exposures 1 --detectors 2 --fits >"$T/synth.log" 2>&1 || {
    cat "$T/synth.log" >&2
    fail "synth"
    finish
}
ROOT=$R # the synthesized repository's datastore root is the repository itself

"$BFS_BIN" export "$R" --collection 'LSSTCam/*' --to "$T/out" >"$T/e1.out" 2>"$T/e1.err"
expect "export exits 0" test $? -eq 0
expect "summary counts 2 files" grep -q "^exported 2 files .* 0 skipped (already there), 0 errors" "$T/e1.out"

# the registry's view: id, run, dataset type, path, size
sqlite3 -separator '|' "$R/gen3.sqlite3" \
    "SELECT CASE typeof(d.id) WHEN 'blob' THEN lower(hex(d.id)) ELSE lower(replace(d.id, '-', '')) END,
            c.name, t.name, r.path, r.file_size
     FROM dataset d JOIN collection c ON c.collection_id = d.run_id
     JOIN dataset_type t ON t.id = d.dataset_type_id
     JOIN file_datastore_records r ON r.dataset_id = d.id" >"$T/registry.txt"
expect "the registry has 2 datasets" test "$(wc -l <"$T/registry.txt")" -eq 2

python3 - "$T/registry.txt" "$ROOT" "$T/out" >"$T/check.log" 2>&1 <<'PY'
import hashlib, json, os, sys, zlib
rows, root, out = sys.argv[1], sys.argv[2], sys.argv[3]
bad = 0
def no(msg):
    global bad
    bad += 1
    print("FAIL:", msg)
for line in open(rows):
    did, run, dtype, path, size = line.rstrip("\n").split("|")
    src, dst = os.path.join(root, path), os.path.join(out, path)
    data = open(dst, "rb").read()
    if data != open(src, "rb").read():
        no(f"{path}: not byte-identical")
    sc = json.load(open(dst + ".butler.json"))
    ref = sc["ref"]
    if ref["id"].replace("-", "") != did or len(ref["id"]) != 36:
        no(f"{path}: id {ref['id']} != {did}")
    if ref["run"] != run or ref["component"] is not None:
        no(f"{path}: run {ref['run']}")
    dt = ref["datasetType"]
    if dt["name"] != dtype or dt["dimensions"] != ["instrument", "detector", "exposure"] \
            or dt["isCalibration"] is not False or dt["storageClass"] != "Exposure":
        no(f"{path}: datasetType {dt}")
    ids = ref["dataId"]["dataId"]
    if ids.get("instrument") != "LSSTCam" or not isinstance(ids.get("detector"), int) \
            or not isinstance(ids.get("exposure"), int) or not isinstance(ids.get("physical_filter"), str):
        no(f"{path}: dataId {ids}")
    recs = ref["dataId"]["records"]
    for el in ("instrument", "detector", "exposure", "physical_filter", "day_obs", "group", "band"):
        if recs.get(el, {}).get("definition") != el:
            no(f"{path}: no {el} record")
    exp = recs["exposure"]["record"]
    if exp["id"] != ids["exposure"] or not isinstance(exp["timespan"], list) or len(exp["timespan"]) != 2 \
            or not isinstance(exp["has_simulated"], bool):
        no(f"{path}: exposure record {exp}")
    if recs["detector"]["record"]["id"] != ids["detector"]:
        no(f"{path}: detector record")
    if sc["size"] != len(data) or sc["size"] != int(size):
        no(f"{path}: size {sc['size']}")
    if sc["adler32"] != "%08x" % zlib.adler32(data):
        no(f"{path}: adler32 {sc['adler32']}")
    if sc["md5"] != hashlib.md5(data).hexdigest():
        no(f"{path}: md5 {sc['md5']}")
    if sc["path"] != path or not sc["formatter"]:
        no(f"{path}: path/formatter")
sys.exit(1 if bad else 0)
PY
expect "files identical, sidecars hold id, run, dataId, records, size, adler32, md5" test $? -eq 0
cat "$T/check.log"
expect "no temporary file is left" test -z "$(find "$T/out" -name '*.tmp')"

before=$(cd "$T/out" && find . -type f -exec stat -c '%n %Y %s' {} + | sort)
"$BFS_BIN" export "$R" --collection 'LSSTCam/*' --to "$T/out" >"$T/e2.out" 2>"$T/e2.err"
expect "second export exits 0" test $? -eq 0
expect "second export skips both" grep -q "^exported 0 files .* 2 skipped" "$T/e2.out"
expect "second export changed nothing" test "$before" = "$(cd "$T/out" && find . -type f -exec stat -c '%n %Y %s' {} + | sort)"

"$BFS_BIN" export "$R" LSSTCam/raw/all/raw/instrument=LSSTCam/detector=R01_S00 --to "$T/dry" --dry-run >"$T/d.out" 2>&1
expect "dry run exits 0" test $? -eq 0
expect "dry run lists one file" grep -q "^would export 1 files" "$T/d.out"
expect "dry run writes nothing" test ! -e "$T/dry"

"$BFS_BIN" export "$R" LSSTCam/raw/all/raw/instrument=LSSTCam/detector=R01_S00 --to "$T/one" >"$T/p.out" 2>&1
expect "PATH with an alias exports one file" grep -q "^exported 1 files" "$T/p.out"
expect "... and its sidecar" test "$(find "$T/one" -name '*.butler.json' | wc -l)" -eq 1

# a conflicting file: refused, left alone
f=$(find "$T/one" -name '*.fits' | head -1)
printf 'other bytes' >"$f"
"$BFS_BIN" export "$R" LSSTCam/raw/all --to "$T/one" >"$T/c.out" 2>"$T/c.err"
expect "a conflict exits 1" test $? -eq 1
expect "the conflict is named" grep -q "exists with other content; not overwritten" "$T/c.err"
expect "the conflicting file is untouched" test "$(cat "$f")" = "other bytes"
expect "the other file was exported" grep -q "^exported 1 files .* 1 errors" "$T/c.out"

# an identical file whose sidecar is missing (a crash between the two)
g=$(find "$T/out" -name '*.fits' | head -1)
rm "$g.butler.json"
"$BFS_BIN" export "$R" --collection 'LSSTCam/*' --to "$T/out" >"$T/s.out" 2>&1
expect "a missing sidecar is written" test -s "$g.butler.json"
expect "... and counted" grep -q "^exported 1 files (0 B, 0 B) .* 1 skipped" "$T/s.out"

"$BFS_BIN" export "$R" --collection '*' --to "$R/inside" >/dev/null 2>"$T/r.err"
expect "DIR inside the datastore root is refused" test $? -eq 1
expect "... with a message" grep -q "inside the datastore root" "$T/r.err"
"$BFS_BIN" export "$R" --to "$T/x" >/dev/null 2>&1
expect "nothing selected is a usage error" test $? -eq 2
"$BFS_BIN" export "$R" --collection '*' >/dev/null 2>&1
expect "no --to is a usage error" test $? -eq 2
"$BFS_BIN" export --help | grep -q "PATH               a path as below a mountpoint"
expect "--help says what PATH means" test $? -eq 0
expect "no sanitizer report" bash -c "! grep -l 'Sanitizer' '$T'/*.err '$T'/*.out"
finish
