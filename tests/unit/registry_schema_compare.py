#!/usr/bin/env python3
"""Compare the schema of a registry made by bfs_registry_init with a
registry the Python Butler made (a fixture), table by table.

usage: registry_schema_compare.py NEW_DB REFERENCE_DB [NEW_TABLE=REF_TABLE ...]

Every table of REFERENCE_DB except dataset_tags_*/dataset_calibs_* (they
exist only once dataset types are registered) must exist in NEW_DB with the
same columns (order, declared type, NOT NULL, default, primary key), indexes
(name, uniqueness, origin, columns), foreign keys, CHECK and UNIQUE
constraint names; NEW_DB must have no other static table.  Each
NEW_TABLE=REF_TABLE pair compares a dynamic table under another name.
butler_attributes rows must be equal, and the two dimension universes equal
once "doc" members are dropped.  SQL text formatting is ignored.

Exit 0 when equal, 1 with a report of every difference otherwise.
"""
import json
import re
import sqlite3
import sys

DYNAMIC = re.compile(r"^dataset_(tags|calibs)_\d+$")


def tables(db):
    return {r[0]: r[1] for r in db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")}


def describe(db, table, sql, rename):
    """A comparable description of table; rename maps names in it."""
    def ren(s):
        return s.replace(rename[0], rename[1]) if rename else s

    q = '"%s"' % table.replace('"', '""')
    cols = [tuple(r) for r in db.execute("PRAGMA table_xinfo(%s)" % q)]
    idx = set()
    for seq, name, unique, origin, partial in db.execute("PRAGMA index_list(%s)" % q):
        icols = tuple(r[2] for r in db.execute('PRAGMA index_info("%s")' % name))
        idx.add((ren(name), unique, origin, partial, icols))
    fks = {}
    for fid, seq, target, frm, to, on_update, on_delete, match in db.execute(
            "PRAGMA foreign_key_list(%s)" % q):
        fks.setdefault(fid, [target, [], [], on_update, on_delete, match])
        fks[fid][1].append(frm)
        fks[fid][2].append(to)
    fks = {(f[0], tuple(f[1]), tuple(f[2]), f[3], f[4], f[5]) for f in fks.values()}
    text = " ".join(sql.split())
    checks = set(ren(n) for n in re.findall(r"CONSTRAINT (\S+) CHECK ", text))
    check_bodies = set(re.findall(r"CHECK (\(length\(\"\w+\"\)<=\d+ AND length\(\"\w+\"\)>=1\))", text))
    uniques = set((ren(n), c) for n, c in re.findall(r"CONSTRAINT (\S+) UNIQUE \(([^)]*)\)", text))
    fk_names = set(ren(n) for n in re.findall(r"CONSTRAINT (\S+) FOREIGN KEY", text))
    return {"columns": cols, "indexes": idx, "foreign keys": fks, "checks": checks,
            "check bodies": check_bodies, "uniques": uniques, "foreign key names": fk_names}


def strip_docs(v):
    if isinstance(v, dict):
        return {k: strip_docs(x) for k, x in v.items() if k != "doc"}
    if isinstance(v, list):
        return [strip_docs(x) for x in v]
    return v


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    new = sqlite3.connect("file:%s?mode=ro" % argv[1], uri=True)
    ref = sqlite3.connect("file:%s?mode=ro" % argv[2], uri=True)
    pairs = [a.split("=", 1) for a in argv[3:]]
    new_t, ref_t = tables(new), tables(ref)
    problems = []

    want = sorted(t for t in ref_t if not DYNAMIC.match(t))
    have = sorted(t for t in new_t if not DYNAMIC.match(t))
    for t in sorted(set(want) - set(have)):
        problems.append("missing table %s" % t)
    for t in sorted(set(have) - set(want)):
        problems.append("extra table %s" % t)

    todo = [(t, t, None) for t in want if t in new_t]
    for n, r in pairs:
        if n not in new_t or r not in ref_t:
            problems.append("cannot compare %s with %s: table missing" % (n, r))
        else:
            todo.append((n, r, (n, r)))
    for n, r, rename in todo:
        a = describe(new, n, new_t[n], rename)
        b = describe(ref, r, ref_t[r], None)
        for k in a:
            if a[k] != b[k]:
                if isinstance(a[k], set):
                    problems.append("%s %s: new has extra %s, lacks %s"
                                    % (n, k, sorted(a[k] - b[k]), sorted(b[k] - a[k])))
                else:
                    problems.append("%s %s:\n  new %s\n  ref %s" % (n, k, a[k], b[k]))

    attrs = [dict(db.execute("SELECT name, value FROM butler_attributes")) for db in (new, ref)]
    u = [strip_docs(json.loads(x.pop("config:dimensions.json", "null"))) for x in attrs]
    if attrs[0] != attrs[1]:
        problems.append("butler_attributes differ:\n  new %s\n  ref %s" % (attrs[0], attrs[1]))
    if u[0] != u[1]:
        for k in sorted(set(u[0] or {}) | set(u[1] or {})):
            if (u[0] or {}).get(k) != (u[1] or {}).get(k):
                problems.append("universe %r differs:\n  new %s\n  ref %s"
                                % (k, json.dumps((u[0] or {}).get(k), sort_keys=True),
                                   json.dumps((u[1] or {}).get(k), sort_keys=True)))
    om = [sorted(db.execute("SELECT table_name FROM opaque_meta")) for db in (new, ref)]
    if om[0] != om[1]:
        problems.append("opaque_meta differs: new %s ref %s" % (om[0], om[1]))

    for p in problems:
        print(p)
    print("%d tables compared, %d differences" % (len(todo), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
