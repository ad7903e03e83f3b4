#!/usr/bin/env python3
"""Write the seed corpora of tests/fuzz (tests/fuzz/corpus/<harness>/).

    tests/fuzz/make_corpus.py [REPO]

REPO: a repository made by 'butlerfs init' (its butler.yaml and stored
dimension universe become seeds); without it those two seeds are kept as
they are.  Seeds are small, hand-made and cover each parser's grammar; the
fuzzer finds the rest.  Nothing is copied from ../shared/fixtures.
"""
import hashlib
import json
import os
import sqlite3
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def put(harness, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def config():
    with open(os.path.join(HERE, "..", "..", "docs", "butlerfs.example.yaml")) as f:
        put("fuzz_config", f.read())
    put("fuzz_config", "cache:\n  max_size: 20GiB\n  block_size: 1MiB\nfetch:\n"
        "  parallel: 8\n  deadline: 2m\n  tls_verify: no\n")
    put("fuzz_config", "sources:\n  - prefix: s3://rubin-summit/\n    replicas:\n"
        "      - /summit/cache/\n      - https://mirror.example.org/summit/\n"
        "      - s3://rubin-summit/\n")
    put("fuzz_config", "sources:\n  - prefix: file://localhost/data\n    replicas: [~/x, file:///y]\n"
        "  - prefix: https://h/a/\n    replicas: [https://h/a/]\n")
    put("fuzz_config", "fetch:\n  low_speed_limit: 1 kB\n  backoff_base: 500ms\n"
        "  request_timeout: 1h\n  s3_profile: rubin\n")


def butler_yaml(repo):
    if repo:
        with open(os.path.join(repo, "butler.yaml")) as f:
            text = f.read()
        put("fuzz_butler_yaml", text)
        put("fuzz_butler_yaml", text.replace("root: <butlerRoot>", "root: s3://bucket/repo"))
        put("fuzz_butler_yaml", text.replace("root: <butlerRoot>", "root: https://h/data/sec"))
        put("fuzz_butler_yaml", text.replace("root: <butlerRoot>", "root: file://<butlerRoot>/d"))
    put("fuzz_butler_yaml", "registry:\n  db: sqlite:///gen3.sqlite3\ndatastore:\n  root: data\n")
    put("fuzz_butler_yaml", "registry: {db: 'postgresql://h/db'}\n")


def universe(repo):
    if repo:
        db = sqlite3.connect(os.path.join(repo, "gen3.sqlite3"))
        (text,) = db.execute("SELECT value FROM butler_attributes"
                             " WHERE name = 'config:dimensions.json'").fetchone()
        put("fuzz_universe", text)
    put("fuzz_universe", '{"version": 2, "namespace": "x", "skypix": {"htm": {"max_level": 3}},'
        ' "elements": {"instrument": {"keys": [{"name": "name", "type": "string"}]},'
        ' "detector": {"requires": ["instrument"], "keys": [{"name": "id", "type": "int"},'
        ' {"name": "full_name", "type": "string"}]},'
        ' "visit_detector_region": {"requires": ["visit", "detector"]},'
        ' "visit": {"requires": ["instrument"], "implies": ["physical_filter"],'
        ' "keys": [{"name": "id", "type": "int"}], "storage": {"view_of": "exposure"}}}}')


def names():
    for s in ["R22_S11", "i/39", "tags/50%", ".", "..", "", "%2E%2E", "%00", "a%2Fb",
              "x\ny\x1b[31m", "caf\xc3\xa9", "raw.fits.fz", "a.tar.gz", "%41%zz", "exposure=%30"]:
        put("fuzz_names", s.encode("latin-1"))


def http_head():
    def case(off, length, chunk, flags, reply):
        put("fuzz_http_head", struct.pack("<IHBB", off, length - 1, chunk - 1, flags) + reply)
    case(0, 16, 255, 0, b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-15/100\r\n"
         b"Content-Length: 16\r\nETag: \"abc\"\r\n\r\n0123456789abcdef")
    case(0, 16, 7, 1, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 206 Partial Content\r\n"
         b"Content-Range: bytes 0-15/*\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n"
         b"0123456789abcdef")
    case(0, 64, 255, 0, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
    case(4096, 16, 255, 0, b"HTTP/2 200\r\ncontent-length: 10\r\n\r\n0123456789")
    case(0, 16, 255, 0, b"HTTP/1.1 503 Slow Down\r\nContent-Length: 5\r\n\r\nbusy!")
    case(0, 16, 255, 0, b"HTTP/1.1 302 Found\r\nLocation: http://x/\r\n\r\n"
         b"HTTP/1.1 206 Partial\nContent-Range: bytes 0-15/16\n\n0123456789abcdef")


def listing():
    def case(flags, chunk, reply):
        put("fuzz_listing", bytes([flags, chunk - 1]) + reply)
    dav = (b'<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">'
           b'<D:response><D:href>/data/d/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/>'
           b'</D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>'
           b'<D:response><D:href>http://h/data/d/a%20b.fits</D:href><D:propstat><D:prop><D:resourcetype/>'
           b'<D:getcontentlength>2880</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status>'
           b'</D:propstat></D:response>'
           b'<D:response><D:href>/data/d/gone</D:href><D:status>HTTP/1.1 404 Not Found</D:status>'
           b'</D:response></D:multistatus>\n')
    case(0, 256, dav)
    case(0, 7, dav)
    case(2, 256, b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY e "x">]><D:multistatus xmlns:D="DAV:">'
         b'<D:response><D:href>/&e;</D:href></D:response></D:multistatus>')
    s3 = (b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/'
          b'2006-03-01/"><Name>b</Name><Prefix>d/</Prefix><IsTruncated>true</IsTruncated>'
          b'<Contents><Key>d/a+b%2B.fits</Key><Size>2880</Size></Contents>'
          b'<CommonPrefixes><Prefix>d/sub/</Prefix></CommonPrefixes><EncodingType>url</EncodingType>'
          b'<NextContinuationToken>abc=</NextContinuationToken></ListBucketResult>')
    case(1, 256, s3)
    case(3, 13, s3.replace(b"d/", b""))


def s3_config():
    creds = ("[default]\naws_access_key_id = AKIDEXAMPLE\n"
             "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n"
             "[rubin]\naws_access_key_id=AK2\naws_secret_access_key=SK2\n"
             "aws_session_token = tok\n")
    config = ("[default]\nregion = us-west-2\n[profile rubin]\nregion=eu-west-1\n"
              "endpoint_url = https://s3.example.org:9000/base\n"
              "s3 =\n  endpoint_url = http://localhost:9000\n")
    put("fuzz_s3_config", creds + "\n%%\n" + config + "\n%%\n\n%%\nLSSTCam/raw/a%20b.fits")
    put("fuzz_s3_config", creds + "\n%%\n" + config + "\n%%\nrubin\n%%\ndir/x+y~z.fits")
    put("fuzz_s3_config", "[nope]\nx=y\n\n%%\n\n%%\nnope\n%%\nk")


def registry():
    sql = [
        "SELECT 1",
        "UPDATE collection SET type = 3 WHERE name = 'A'",
        "UPDATE collection SET type = 9",
        "DELETE FROM collection_chain WHERE position = 0",
        "UPDATE collection_chain SET child = 999",
        "UPDATE file_datastore_records SET path = '../../etc/passwd'",
        "UPDATE file_datastore_records SET path = 'a\nb\x1b[31m', checksum = 'zz', file_size = -5",
        "UPDATE dataset SET ingest_date = '2025-01-01 00:00:00'",
        "UPDATE dataset SET ingest_date = 'x'",
        "UPDATE butler_attributes SET value = '{}' WHERE name = 'config:dimensions.json'",
        "UPDATE dataset_type SET tag_association_table = 'nope'",
        "UPDATE dataset_type SET dimensions_key = 424242",
        "DELETE FROM dimension_graph_definition WHERE dimension_name = 'detector'",
        "UPDATE detector SET full_name = 'R22_S00'",
        "UPDATE exposure SET obs_id = NULL",
        "DROP TABLE collection_summary_dataset_type",
        "PRAGMA writable_schema = ON; UPDATE sqlite_master SET sql = 'CREATE TABLE x(y)'"
        " WHERE name = 'run'",
    ]
    for s in sql:
        put("fuzz_registry", s)
    # page damage: the header's page size, a byte of page 2, a byte deep in the file
    put("fuzz_registry", b"\0" + bytes([16, 0, 0, 0x7f, 0x00, 0x10, 0x00, 0xff,
                                         0x64, 0x20, 0x01, 0x40]))


def sidecar():
    """Export sidecars (writers/sidecar.c, docs/transfer.md "Sidecars")."""
    ref = {"id": "84cb0107-04eb-5dad-a023-cc027e09552f", "run": "LSSTCam/raw/all", "component": None,
           "datasetType": {"name": "raw", "storageClass": "Exposure",
                           "dimensions": ["instrument", "detector", "exposure"],
                           "parentStorageClass": None, "isCalibration": False},
           "dataId": {"dataId": {"instrument": "LSSTCam", "detector": 94, "exposure": 2025041500060,
                                 "physical_filter": "r_57", "band": "r"},
                      "records": {"band": {"definition": "band", "record": {"name": "r"}},
                                  "exposure": {"definition": "exposure",
                                               "record": {"instrument": "LSSTCam", "id": 2025041500060,
                                                          "timespan": [1744760737650000000,
                                                                       1744760738598700000]}}}}}
    doc = {"ref": ref, "size": 1111680, "adler32": "e568e492", "md5": "9a5d9d4850a0b89e7317cf2e43aceb4d",
           "checksum": "ab" * 64, "formatter": "lsst.obs.lsst.rawFormatter.LsstCamRawFormatter",
           "path": "LSSTCam/raw/all/raw/20250415/MC_O_20250415_000060/raw.fits"}
    put("fuzz_sidecar", json.dumps(doc, indent=2) + "\n")
    doc["ref"]["datasetType"]["isCalibration"] = True
    doc["ref"]["dataId"]["records"] = None
    del doc["checksum"]
    put("fuzz_sidecar", json.dumps(doc))


if __name__ == "__main__":
    repo = sys.argv[1] if len(sys.argv) > 1 else None
    config()
    butler_yaml(repo)
    universe(repo)
    names()
    http_head()
    listing()
    s3_config()
    registry()
    sidecar()
