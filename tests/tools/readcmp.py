#!/usr/bin/env python3
"""readcmp.py - read files through a mount and compare every byte with their sources.

Usage: readcmp.py [--jobs N] [--chunk BYTES] [--json FILE] PAIRS
PAIRS is a file of lines "MOUNTED<TAB>SOURCE".  N threads (default 4) each
read whole files with read(2) calls of BYTES (default 1 MiB) and compare each
chunk with the same range of SOURCE.  A read that fails stops that file; its
errno is counted.  Prints (and writes to FILE) one JSON object:

  files, bytes_read, bytes_expected, wrong_bytes (bytes returned by a
  successful read(2) that differ from the source), wrong_bytes_silent (those
  of them in files that then read to the end without an error: wrong data
  nothing flagged; a file checked whole at its end returns its bytes first and
  fails at the end), files_wrong, short_files (files whose reads ended early
  without an error), errors {errno name: count}, failed [files], max_read_s
  (the longest single read(2) call), max_read_file, seconds

Exits 0 when every file read whole and identical, 1 otherwise.
"""

import argparse
import errno
import json
import os
import sys
import threading
import time


def count_diff(a, b):
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return 0
    return sum(1 for x, y in zip(a[:n], b[:n]) if x != y)


def read_one(mounted, source, chunk, res, lock):
    size = os.path.getsize(source)
    got = wrong = 0
    slowest = 0.0
    err = None
    with open(source, "rb") as ref:
        try:
            fd = os.open(mounted, os.O_RDONLY)
        except OSError as e:
            err = e.errno
            fd = None
        try:
            while fd is not None:
                t0 = time.monotonic()
                try:
                    data = os.read(fd, chunk)
                except OSError as e:
                    slowest = max(slowest, time.monotonic() - t0)
                    err = e.errno
                    break
                slowest = max(slowest, time.monotonic() - t0)
                if not data:
                    break
                wrong += count_diff(data, ref.read(len(data)))
                got += len(data)
        finally:
            if fd is not None:
                os.close(fd)
    with lock:
        res["files"] += 1
        res["bytes_read"] += got
        res["bytes_expected"] += size
        res["wrong_bytes"] += wrong
        if err is None:
            res["wrong_bytes_silent"] += wrong
        res["files_wrong"] += 1 if wrong else 0
        if err is not None:
            name = errno.errorcode.get(err, str(err))
            res["errors"][name] = res["errors"].get(name, 0) + 1
            res["failed"].append(mounted)
        elif got != size:
            res["short_files"] += 1
            res["failed"].append(mounted)
        if slowest > res["max_read_s"]:
            res["max_read_s"], res["max_read_file"] = slowest, mounted


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=1 << 20)
    ap.add_argument("--json")
    ap.add_argument("pairs")
    args = ap.parse_args()
    with open(args.pairs) as f:
        todo = [tuple(line.rstrip("\n").split("\t", 1)) for line in f if line.strip()]
    res = {"files": 0, "bytes_read": 0, "bytes_expected": 0, "wrong_bytes": 0, "wrong_bytes_silent": 0, "files_wrong": 0,
           "short_files": 0, "errors": {}, "failed": [], "max_read_s": 0.0, "max_read_file": None}
    lock = threading.Lock()
    it = iter(todo)

    def worker():
        while True:
            with lock:
                pair = next(it, None)
            if pair is None:
                return
            read_one(pair[0], pair[1], args.chunk, res, lock)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res["seconds"] = round(time.monotonic() - t0, 3)
    res["max_read_s"] = round(res["max_read_s"], 3)
    out = json.dumps(res, sort_keys=True)
    print(out)
    if args.json:
        with open(args.json, "w") as f:
            f.write(out + "\n")
    ok = res["wrong_bytes"] == 0 and not res["failed"] and res["files"] == len(todo)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
