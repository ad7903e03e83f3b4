#!/usr/bin/env python3
"""hs_check.py - check a raw stored through a mount against the Header
Service document merged into it (test_ingest_hs_real.sh).

Usage: hs_check.py DOC SENSOR RAW STORED [EVENTS OBSID]

DOC is a Header Service document (a mapping of extension names to lists of
{keyword, value, comment}), SENSOR the raw's sensor as the document spells
it ("R01S01"), RAW the file copied into the mount, STORED the file the
datastore holds.  Reads both FITS files with the standard library only,
independently of the C code, and checks:

  - every card of the document's blocks for SENSOR (PRIMARY,
    PRIMARY_<SENSOR>, <SENSOR>_PRIMARY, <SENSOR>_<EXTNAME>) that is not
    commentary or structural is in STORED, in the HDU of that block, with
    the document's value (a null value: the keyword with an undefined
    value); blocks count in the merge's order (PRIMARY, the sensor's primary
    block, the others), a later value of a keyword winning.
    A null value for a keyword whose type the FITS standard fixes (OBJECT,
    RADESYS, ...) cannot be written: that card is as RAW has it (or absent);
  - the structural cards of every HDU (SIMPLE, BITPIX, NAXIS*, EXTEND,
    XTENSION, PCOUNT, GCOUNT, EXTNAME) are those of RAW, and STORED has RAW's
    HDUs in RAW's order;
  - with EVENTS (the repository's events.jsonl): the last event of OBSID has
    status 0 and a header_service field "merged: ..." that counts as many
    blocks merged as the document has for SENSOR, none without an HDU, and
    as many invalid entries as the null values of standard-typed keywords.

Prints one line per mismatch and a summary; exits 0 when all hold, 1
otherwise.
"""
import json
import math
import re
import sys

import yaml

STRUCTURAL = re.compile(r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|XTENSION|PCOUNT|GCOUNT|EXTNAME)$")
# cards the merge leaves alone besides those (hdrsvc.h): sums, scaling, tables
NOT_MERGED = re.compile(r"^(CHECKSUM|DATASUM|BSCALE|BZERO|BLANK|CONTINUE|END|TFIELDS|THEAP|"
                        r"(TTYPE|TFORM|TUNIT|TDIM|TNULL|TSCAL|TZERO|ZIMAGE|ZBITPIX|ZNAXIS|ZTILE|"
                        r"ZCMPTYPE|ZNAME|ZVAL|ZQUANTIZ|ZDITHER0?|ZSIMPLE|ZEXTEND|ZTENSION|ZPCOUNT|"
                        r"ZGCOUNT|ZHECKSUM|ZDATASUM|ZBLANK|ZSCALE|ZZERO)\d*)$")

# keywords whose value type the FITS standard (4.0, section 4.4.2, and the
# WCS papers) fixes, so that they cannot have an undefined value
STANDARD_TYPED = re.compile(r"^(DATE|DATE-OBS|DATE-BEG|DATE-END|DATE-AVG|ORIGIN|TELESCOP|INSTRUME|"
                            r"OBSERVER|OBJECT|AUTHOR|REFERENC|BUNIT|RADESYS|RADECSYS|TIMESYS|"
                            r"EQUINOX|EPOCH|MJD-OBS|MJD-BEG|MJD-END|MJD-AVG|DATAMAX|DATAMIN|EXTVER|"
                            r"EXTLEVEL|(CTYPE|CUNIT|CRVAL|CRPIX|CDELT|CROTA)\d+)$")


def parse_value(text):
    """A FITS value field: (type, value); type 'C', 'L', 'N' (number), 'U'."""
    t = text.strip()
    if t.startswith("'"):
        out, i = [], 1
        while i < len(t):
            if t[i] == "'":
                if i + 1 < len(t) and t[i + 1] == "'":
                    out.append("'")
                    i += 2
                    continue
                break
            out.append(t[i])
            i += 1
        return "C", "".join(out).rstrip()
    t = t.split("/", 1)[0].strip()
    if not t:
        return "U", None
    if t in ("T", "F"):
        return "L", t == "T"
    return "N", float(t.replace("D", "E"))


def read_hdus(path):
    """A list of HDUs, each a list of (keyword, (type, value)) in order."""
    data = open(path, "rb").read()
    hdus, pos = [], 0
    while pos + 2880 <= len(data):
        cards, kw = [], {}
        while True:
            block = data[pos:pos + 2880]
            pos += 2880
            done = False
            for i in range(0, 2880, 80):
                card = block[i:i + 80].decode("ascii")
                key = card[:8].rstrip()
                if key == "END":
                    done = True
                    break
                if card[8:10] == "= ":
                    v = parse_value(card[10:])
                    cards.append((key, v))
                    kw.setdefault(key, v)
            if done:
                break
        hdus.append(cards)
        naxis = int(kw.get("NAXIS", ("N", 0))[1])
        size = 0
        if naxis:
            size = 1
            for n in range(1, naxis + 1):
                size *= int(kw["NAXIS%d" % n][1])
            size *= abs(int(kw["BITPIX"][1])) // 8
        size += int(kw.get("PCOUNT", ("N", 0))[1])
        pos += (size + 2879) // 2880 * 2880
    return hdus


def same(doc_value, card):
    t, v = card
    if doc_value is None:
        return t == "U"
    if isinstance(doc_value, bool):
        return t == "L" and v == doc_value
    if isinstance(doc_value, (int, float)):
        return t == "N" and math.isclose(v, float(doc_value), rel_tol=1e-14, abs_tol=0.0)
    return t == "C" and v == str(doc_value).rstrip()


def main():
    doc_path, sensor, raw_path, stored_path = sys.argv[1:5]
    doc = yaml.safe_load(open(doc_path))
    raw, stored = read_hdus(raw_path), read_hdus(stored_path)
    bad = []
    names = [next((v for k, v in h if k == "EXTNAME"), ("C", ""))[1] for h in stored]
    checked, blocks, refused = 0, 0, 0
    # the merge order: PRIMARY, the sensor's primary block, then the others
    # in document order; a later value of a keyword wins
    order = []
    for n, (block, entries) in enumerate(doc.items()):
        if block == "PRIMARY":
            order.append((0, n, block, entries, 0))
        elif block in ("PRIMARY_" + sensor, sensor + "_PRIMARY"):
            order.append((1, n, block, entries, 0))
        elif block.startswith(sensor + "_"):
            ext = block[len(sensor) + 1:]
            if ext not in names:
                bad.append("%s: no HDU named %s in the stored file" % (block, ext))
                continue
            order.append((2, n, block, entries, names.index(ext)))
        # else another sensor's block
    want = {}  # (hdu, keyword) -> (block, the document's value, or RAW for the raw's card)
    RAW = object()
    for _, _, block, entries, hdu in sorted(order, key=lambda o: o[:2]):
        blocks += 1
        for e in entries or []:
            key = e.get("keyword")
            if key is None or key in ("COMMENT", "HISTORY"):
                continue
            key = key.upper() if len(key) <= 8 else key
            if STRUCTURAL.match(key) or NOT_MERGED.match(key):
                continue
            checked += 1
            if e.get("value") is None and STANDARD_TYPED.match(key):
                refused += 1  # not written: an earlier value, or the raw's, stays
                want.setdefault((hdu, key), (block, RAW))
            else:
                want[(hdu, key)] = (block, e.get("value"))
    for (hdu, key), (block, value) in want.items():
        card = next((v for k, v in stored[hdu] if k == key), None)
        if value is RAW:
            had = next((v for k, v in raw[hdu] if k == key), None) if hdu < len(raw) else None
            if card != had:
                bad.append("%s: %s (null, standard-typed) in HDU %d is %r, the raw had %r"
                           % (block, key, hdu + 1, card, had))
        elif card is None:
            bad.append("%s: %s missing from HDU %d" % (block, key, hdu + 1))
        elif not same(value, card):
            bad.append("%s: %s in HDU %d is %r, the document says %r"
                       % (block, key, hdu + 1, card[1], value))
    if len(raw) != len(stored):
        bad.append("the raw has %d HDUs, the stored file %d" % (len(raw), len(stored)))
    for i, (r, s) in enumerate(zip(raw, stored)):
        rs = [c for c in r if STRUCTURAL.match(c[0])]
        ss = [c for c in s if STRUCTURAL.match(c[0])]
        if rs != ss:
            bad.append("HDU %d: structural cards %r became %r" % (i + 1, rs, ss))
    if len(sys.argv) > 6:
        obsid = sys.argv[6]
        events = [e for e in map(json.loads, open(sys.argv[5])) if e.get("obs_id") == obsid]
        hs = (events[-1].get("header_service") or "") if events else ""
        if not events or events[-1].get("status") != 0:
            bad.append("the last event of %s: %r" % (obsid, events[-1] if events else None))
        if not hs.startswith("merged: "):
            bad.append("the event's header_service does not say merged: %r" % hs)
        for needle in (" %d invalid;" % refused, " %d blocks merged, 0 without an HDU" % blocks):
            if needle not in hs:
                bad.append("the event's header_service lacks %r: %r" % (needle, hs))
    for b in bad:
        print(b)
    print("%d document cards (%d keywords) in %d blocks checked, structural cards of %d HDUs compared: "
          "%d mismatches" % (checked, len(want), blocks, len(stored), len(bad)))
    sys.exit(1 if bad or not checked else 0)


if __name__ == "__main__":
    main()
