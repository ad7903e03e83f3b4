#!/usr/bin/env python3
"""check_layering.py [ROOT] - enforce the module layering of docs/architecture.md.

CMake cannot fence includes: every library's headers live in /usr/include and a
static library hands its PRIVATE link dependencies on to whoever links it. So
this script reads the #include lines of every source file and checks them
against one table:

  * a folder includes project headers only from itself and the folders below it
    (fs -> writers -> registry / fetchers -> common);
  * a header whose name ends in _i.h is internal: only its own folder includes it;
  * a foreign library's headers appear only in the folders (or files) that the
    table names, e.g. sqlite3 only in registry/db_sqlite.c, libfuse only in fs/ops.[ch],
    fs/ops_write.c and fs/main.c.

Prints one line per violation, "file:line: why", and exits 1 if there is any.
"""
import os
import re
import sys

FOLDERS = ("common", "registry", "fetchers", "writers", "fs")

# folder -> the project folders it may include from (itself always allowed)
MAY_USE = {
    "common": set(),
    "registry": {"common"},
    "fetchers": {"common"},
    "writers": {"registry", "fetchers", "common"},
    "fs": {"writers", "registry", "fetchers", "common"},
}

# foreign library -> (header prefixes, folders or folder/file names allowed)
FOREIGN = {
    "libyaml": (("yaml.h",), {"common"}),
    "sqlite3": (("sqlite3.h",), {"registry/db_sqlite.c"}),  # the engine seam, registry/db.h
    "libpq": (("libpq-fe.h", "postgresql/"), {"registry"}),
    "jansson": (("jansson.h",), {"registry", "writers", "fs"}),
    "libcurl": (("curl/",), {"fetchers"}),
    "lmdb": (("lmdb.h",), {"fetchers"}),
    "libxml2": (("libxml/",), {"fetchers/listing.c"}),
    "xxhash": (("xxhash.h", "xxh_"), {"fetchers"}),
    "openssl": (("openssl/",), {"registry", "fetchers", "writers/sidecar.c"}),
    "zlib": (("zlib.h",), {"writers/sidecar.c"}),
    "cfitsio": (("fitsio.h", "fitsio2.h", "longnam.h"), {"writers/fits.c"}),
    "libfuse": (("fuse", "fuse3/"), {"fs/ops.c", "fs/ops.h", "fs/ops_write.c", "fs/main.c", "fs/mount.c", "fs/mount.h"}),
}

# project headers that carry a foreign library with them
CARRIERS = {"ops.h": "libfuse"}

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def sources(root):
    for folder in FOLDERS:
        d = os.path.join(root, folder)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith((".c", ".h")):
                yield folder, name, os.path.join(d, name)


def allowed(where, folder, name):
    return folder in where or f"{folder}/{name}" in where


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..")
    files = list(sources(root))
    if not files:
        print(f"check_layering: no sources under {root}", file=sys.stderr)
        return 2
    home = {}
    for folder, name, _ in files:
        if name.endswith(".h"):
            home.setdefault(name, folder)
    bad = 0
    for folder, name, path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                kind, header = m.groups()
                why = None
                if kind == '"':
                    base = os.path.basename(header)
                    owner = home.get(base)
                    if owner is None:
                        why = f'"{header}" is no project header'
                    elif owner != folder and owner not in MAY_USE[folder]:
                        why = f"{folder}/ may not include {owner}/{base}"
                    elif base.endswith("_i.h") and owner != folder:
                        why = f"{owner}/{base} is internal to {owner}/"
                    elif base in CARRIERS:
                        lib = CARRIERS[base]
                        if not allowed(FOREIGN[lib][1], folder, name):
                            why = f"{base} brings {lib}, which {folder}/{name} may not use"
                else:
                    for lib, (prefixes, where) in FOREIGN.items():
                        if header.startswith(prefixes) and not allowed(where, folder, name):
                            why = f"{folder}/{name} may not use {lib} (<{header}>)"
                            break
                if why:
                    rel = os.path.relpath(path, root)
                    print(f"{rel}:{lineno}: {why}")
                    bad += 1
    if bad:
        print(f"check_layering: {bad} include(s) break the layering "
              "of docs/architecture.md", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
