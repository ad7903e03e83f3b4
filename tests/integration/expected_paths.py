#!/usr/bin/env python3
"""expected_paths.py - the path oracle for a butlerfs mount (docs/paths.md).

Reads a daf_butler repository's SQLite registry with the standard library
only, independently of the C code, and prints one tab-separated line per
file the mount must show:

    <path below the mountpoint> TAB <datastore file> TAB <st_size or ?>
        TAB <dataset id> TAB <1 if the datastore file exists, else 0>

Usage: expected_paths.py REPO
"""
import calendar
import json
import os
import re
import sqlite3
import sys
import time

RUN, TAGGED, CHAINED, CALIBRATION = 1, 2, 3, 4
NULL_COMPONENT = "__NULL_STRING__"
DAY_NS = 86400 * 10**9
END_UNBOUNDED_NS = 4102444800000000000
COMPRESSION = {"gz", "fz", "bz2", "xz", "zst", "Z"}

# TAI-UTC in seconds from each UTC date on (IERS bulletin C).
LEAPS = [
    ((1972, 1, 1), 10), ((1972, 7, 1), 11), ((1973, 1, 1), 12), ((1974, 1, 1), 13),
    ((1975, 1, 1), 14), ((1976, 1, 1), 15), ((1977, 1, 1), 16), ((1978, 1, 1), 17),
    ((1979, 1, 1), 18), ((1980, 1, 1), 19), ((1981, 7, 1), 20), ((1982, 7, 1), 21),
    ((1983, 7, 1), 22), ((1985, 7, 1), 23), ((1988, 1, 1), 24), ((1990, 1, 1), 25),
    ((1991, 1, 1), 26), ((1992, 7, 1), 27), ((1993, 7, 1), 28), ((1994, 7, 1), 29),
    ((1996, 1, 1), 30), ((1997, 7, 1), 31), ((1999, 1, 1), 32), ((2006, 1, 1), 33),
    ((2009, 1, 1), 34), ((2012, 7, 1), 35), ((2015, 7, 1), 36), ((2017, 1, 1), 37),
]
LEAPS_TAI = [(calendar.timegm((y, m, d, 0, 0, 0)) + off, off) for (y, m, d), off in LEAPS]


def tai_ns_to_utc_string(ns):
    tai_s = ns // 10**9
    offset = 10  # before 1972 the offset drifted; 10 s is close enough there
    for start_tai, off in LEAPS_TAI:
        if tai_s >= start_tai:
            offset = off
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(tai_s - offset))


def bound(ns, is_end):
    if (not is_end and ns < DAY_NS) or (is_end and ns >= END_UNBOUNDED_NS):
        return "unbounded"
    return tai_ns_to_utc_string(ns)


def escape(name):
    """One safe path component (docs/paths.md, Escaping)."""
    if name == "":
        return "%00"
    if name == ".":
        return "%2E"
    if name == "..":
        return "%2E%2E"
    out = []
    for ch in name:
        o = ord(ch)
        if ch in "/%" or o < 0x20 or o == 0x7F:
            out.append("%%%02X" % o)
        else:
            out.append(ch)
    return "".join(out)


def extension(location):
    base = location.rsplit("/", 1)[-1]
    parts = base.split(".")
    if len(parts) < 2 or parts[0] == "" and len(parts) == 2:
        return ""
    if parts[-1] in COMPRESSION and len(parts) >= 3:
        return "." + parts[-2] + "." + parts[-1]
    return "." + parts[-1]


def value_str(v):
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def read_butler_yaml(repo):
    """Datastore root and records table from butler.yaml (simple line parse)."""
    root, table = "<butlerRoot>", "file_datastore_records"
    section = None
    with open(os.path.join(repo, "butler.yaml"), encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not line.startswith((" ", "\t")):
                section = line.split(":", 1)[0].strip()
                continue
            m = re.match(r"\s+(\w+):\s*(\S.*)?$", line)
            if not m or section != "datastore":
                continue
            if m.group(1) == "root" and m.group(2):
                root = m.group(2).strip().strip("'\"")
            elif m.group(1) == "table" and m.group(2):
                table = m.group(2).strip().strip("'\"")
    root = root.replace("<butlerRoot>", os.path.realpath(repo))
    if root.startswith("file://"):
        root = root[len("file://"):]
    return root, table


def universe_order(db):
    row = db.execute(
        "SELECT value FROM butler_attributes WHERE name = 'config:dimensions.json'").fetchone()
    u = json.loads(row[0])
    deps = {}
    for name, elem in u["elements"].items():
        if not elem.get("keys"):
            continue  # join-only element, not a dimension
        deps[name] = set(elem.get("requires", [])) | set(elem.get("implies", []))
    for system, spec in u.get("skypix", {}).items():
        if isinstance(spec, dict) and "max_level" in spec:
            for level in range(int(spec["max_level"]) + 1):
                deps["%s%d" % (system, level)] = set()
    order, placed = [], set()
    while len(placed) < len(deps):
        layer = sorted(n for n, d in deps.items()
                       if n not in placed and all(x in placed or x not in deps for x in d))
        if not layer:  # a cycle: cannot happen in a valid universe
            layer = sorted(n for n in deps if n not in placed)
        order.extend(layer)
        placed.update(layer)
    return {name: i for i, name in enumerate(order)}


def main():
    repo = sys.argv[1]
    root, records_table = read_butler_yaml(repo)
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(repo, "gen3.sqlite3"), uri=True)
    rank = universe_order(db)

    graphs = {}
    for gid, dim in db.execute("SELECT dimension_graph_id, dimension_name FROM dimension_graph_definition"):
        graphs.setdefault(gid, []).append(dim)

    types = {}
    for tid, name, key, tags, calibs in db.execute(
            "SELECT id, name, dimensions_key, tag_association_table, calibration_association_table "
            "FROM dataset_type"):
        dims = sorted(graphs.get(key, []), key=lambda d: (rank.get(d, 1 << 30), d))
        types[tid] = {"name": name, "dims": dims, "tags": tags, "calibs": calibs}

    records = {}
    for ds, comp, path, size in db.execute(
            'SELECT dataset_id, component, path, file_size FROM "%s"' % records_table):
        records.setdefault(ds, []).append((None if comp in (None, NULL_COMPONENT) else comp, path, size))

    colls = {cid: (name, ctype) for cid, name, ctype in
             db.execute("SELECT collection_id, name, type FROM collection")}
    chains = {}
    for parent, child in db.execute(
            "SELECT parent, child FROM collection_chain ORDER BY parent, position"):
        chains.setdefault(parent, []).append(child)

    def flatten(cid, seen):
        out = []
        for child in chains.get(cid, []):
            if child in seen:
                continue
            seen.add(child)
            if colls[child][1] == CHAINED:
                out.extend(flatten(child, seen))
            else:
                out.append(child)
        return out

    # members[(collection, type)] = {dataId tuple: [(dataset id, timespan or None)]}
    members = {}
    for tid, t in types.items():
        cols = "".join(', "%s"' % d for d in t["dims"])
        if t["tags"]:
            for row in db.execute('SELECT collection_id, dataset_id%s FROM "%s" WHERE dataset_type_id = ?'
                                  % (cols, t["tags"]), (tid,)):
                key = tuple(value_str(v) for v in row[2:])
                members.setdefault((row[0], tid), {}).setdefault(key, []).append((row[1], None))
        if t["calibs"]:
            for row in db.execute('SELECT collection_id, dataset_id, timespan_begin, timespan_end%s '
                                  'FROM "%s" WHERE dataset_type_id = ?' % (cols, t["calibs"]), (tid,)):
                key = tuple(value_str(v) for v in row[4:])
                members.setdefault((row[0], tid), {}).setdefault(key, []).append(
                    (row[1], (int(row[2]), int(row[3]))))

    def contents(cid, tid):
        """{dataId: [(dataset id, timespan)]} visible in one collection, datasets with files only."""
        if colls[cid][1] == CHAINED:
            found = {}
            for child in flatten(cid, {cid}):
                for key, entries in contents(child, tid).items():
                    found.setdefault(key, entries)  # find-first per full dataId
            return found
        return {key: [e for e in entries if e[0] in records]
                for key, entries in members.get((cid, tid), {}).items()
                if any(e[0] in records for e in entries)}

    names = [name for name, _ in colls.values()]
    out = []
    for cid, (cname, _) in sorted(colls.items(), key=lambda kv: kv[1][0]):
        prefix = cname + "/"
        child_parts = {n[len(prefix):].split("/", 1)[0] for n in names if n.startswith(prefix)}
        coll_dir = "/".join(escape(p) for p in cname.split("/"))
        for tid, t in sorted(types.items(), key=lambda kv: kv[1]["name"]):
            found = contents(cid, tid)
            if not found:
                continue
            tdir = escape(t["name"])
            if t["name"] in child_parts:
                tdir = escape(t["name"] + "@type")
            by_dir = {}
            for key, entries in found.items():
                d = "/".join([coll_dir, tdir] + ["%s=%s" % (dim, escape(v))
                                                 for dim, v in zip(t["dims"], key)])
                for ds, span in entries:
                    for comp, path, size in records[ds]:
                        stem = t["name"] + ("." + comp if comp else "") + "".join("_" + v for v in key)
                        if span is not None:
                            stem += "_valid-%s-%s" % (bound(span[0], False), bound(span[1], True))
                        by_dir.setdefault(d, []).append([stem, extension(path), ds, path, size])
            for d, files in by_dir.items():
                counts = {}
                for f in files:
                    counts[f[0] + f[1]] = counts.get(f[0] + f[1], 0) + 1
                for stem, ext, ds, path, size in files:
                    name = stem + ("_" + ds[:8] if counts[stem + ext] > 1 else "") + ext
                    if "://" in path:
                        location = path[len("file://"):] if path.startswith("file://") else path
                    else:
                        location = path if path.startswith("/") else os.path.join(root, path)
                    exists = "://" not in location and os.path.isfile(location)
                    if size is None or int(size) < 0:
                        size = os.stat(location).st_size if exists else "?"
                    out.append("\t".join([d + "/" + escape(name), location, str(size), ds,
                                          "1" if exists else "0"]))
    out.sort()
    dup = [p for p, q in zip(out, out[1:]) if p.split("\t")[0] == q.split("\t")[0]]
    if dup:
        sys.exit("expected_paths.py: oracle produced a path twice: " + dup[0])
    sys.stdout.write("".join(line + "\n" for line in out))


if __name__ == "__main__":
    main()
