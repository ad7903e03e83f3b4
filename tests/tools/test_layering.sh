#!/usr/bin/env bash
# test_layering: the include fence of docs/architecture.md holds on the tree,
# and the checker does catch a wrong include (a copy of the tree with four
# planted violations must fail, naming each).
set -uo pipefail
src=${BFS_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
check="$src/tests/tools/check_layering.py"

if ! out=$(python3 "$check" "$src" 2>&1); then
    echo "FAIL: the tree breaks its layering:"
    echo "$out"
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for d in common registry fetchers writers fs; do
    mkdir -p "$tmp/$d"
    cp "$src/$d"/*.[ch] "$tmp/$d/"
done
printf '#include <sqlite3.h>\n' >>"$tmp/fs/names.c"
printf '#include <sqlite3.h>\n' >>"$tmp/registry/catalog.c"
printf '#include "registry_i.h"\n' >>"$tmp/writers/synth.c"
printf '#include "tree.h"\n' >>"$tmp/fetchers/cache.c"
out=$(python3 "$check" "$tmp" 2>&1)
rc=$?
fail=0
[ $rc -eq 1 ] || { echo "FAIL: planted violations gave exit $rc, not 1"; fail=1; }
for want in "fs/names.c:.*sqlite3" "registry/catalog.c:.*sqlite3" "writers/synth.c:.*internal to registry" \
            "fetchers/cache.c:.*may not include fs/tree.h"; do
    grep -q "$want" <<<"$out" || { echo "FAIL: no report matching '$want'"; fail=1; }
done
[ $fail -eq 0 ] || { echo "$out"; exit 1; }
echo "ok: layering holds, and planted violations are caught"
