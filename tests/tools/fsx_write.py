#!/usr/bin/env python3
"""fsx_write.py - write one file with random operations against a model.

Usage: fsx_write.py PATH SEED MODE MODEL_OUT

Opens PATH for reading and writing (created, truncated) and applies a
random sequence of operations, chosen by SEED, to it and to an in-memory
model of what the file must hold:

  write     pwrite of 1 B .. 256 KiB at a random offset, often past the end
            (a hole the file system must read back as zeros)
  truncate  ftruncate to a random size, smaller or larger
  read      pread of a random range, compared with the model (a short read
            only at the model's end)
  stat      fstat's size, compared with the model's
  writev    pwritev of 2-4 pieces at a random offset
  append    a write through the descriptor with O_APPEND set (fcntl)
  fallocate posix_fallocate of a random range (zeros past the end; none
            inside the file)
  dup       the next few operations go through a dup'd descriptor

MODE is one of:
  mixed     all of the above
  sparse    writes far apart with big holes, then reads
  shrink    a large file written in order, then cut and rewritten many times
  threads   4 threads pwrite disjoint stripes in random order at once, while
            the main thread reads back ranges already written

Every mismatch exits 2 with a line saying what and where.  At the end the
file is closed: a failing close raises (exit 3).  The model's bytes go to
MODEL_OUT, and "SIZE BLAKE2B512HEX" is printed, for the caller to compare
with what the file system stored.
"""
import fcntl
import hashlib
import os
import random
import sys
import threading

KIB = 1024
MIB = 1024 * KIB


def die(msg):
    print("fsx: " + msg, file=sys.stderr)
    sys.exit(2)


class Fsx:
    def __init__(self, path, rng):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.model = bytearray()
        self.rng = rng
        self.nops = 0
        self.via_dup = 0
        self.dupfd = -1

    def cur(self):
        if self.via_dup > 0:
            self.via_dup -= 1
            return self.dupfd
        return self.fd

    def write(self, off, n):
        data = self.rng.randbytes(n)
        got = os.pwrite(self.cur(), data, off)
        if got != n:
            die("op %d: pwrite of %d at %d wrote %d" % (self.nops, n, off, got))
        if off > len(self.model):
            self.model.extend(bytes(off - len(self.model)))
        self.model[off:off + n] = data

    def truncate(self, size):
        os.ftruncate(self.cur(), size)
        if size < len(self.model):
            del self.model[size:]
        else:
            self.model.extend(bytes(size - len(self.model)))

    def read(self, off, n):
        got = os.pread(self.cur(), n, off)
        want = bytes(self.model[off:off + n])
        if got != want:
            at = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
            die("op %d: pread of %d at %d: %d bytes, want %d; first difference at %d" %
                (self.nops, n, off, len(got), len(want), off + at))

    def stat(self):
        size = os.fstat(self.cur()).st_size
        if size != len(self.model):
            die("op %d: fstat size %d, want %d" % (self.nops, size, len(self.model)))

    def step(self, limit):
        r = self.rng
        self.nops += 1
        op = r.random()
        end = len(self.model)
        if op < 0.50:
            n = r.choice((1, 7, 512, 4096, 4099, 65536, 131072, r.randint(1, 256 * KIB)))
            off = r.randint(0, min(limit - n, end + 128 * KIB))
            self.write(off, n)
        elif op < 0.60:
            self.truncate(r.randint(0, min(limit, end + 256 * KIB)))
        elif op < 0.85:
            off = r.randint(0, end + 4096)
            self.read(off, r.randint(1, 256 * KIB))
        elif op < 0.90:
            self.stat()
        elif op < 0.93:
            pieces = [r.randbytes(r.randint(1, 64 * KIB)) for _ in range(r.randint(2, 4))]
            n = sum(len(p) for p in pieces)
            off = r.randint(0, min(limit - n, end + 4096))
            got = os.pwritev(self.cur(), pieces, off)
            if got != n:
                die("op %d: pwritev of %d at %d wrote %d" % (self.nops, n, off, got))
            if off > end:
                self.model.extend(bytes(off - end))
            self.model[off:off + n] = b"".join(pieces)
        elif op < 0.95:
            fd = self.cur()
            n = r.randint(1, 32 * KIB)
            if end + n <= limit:
                data = r.randbytes(n)
                flags = fcntl.fcntl(fd, fcntl.F_GETFL)
                fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_APPEND)
                try:
                    got = os.write(fd, data)
                finally:
                    fcntl.fcntl(fd, fcntl.F_SETFL, flags)
                if got != n:
                    die("op %d: append of %d wrote %d" % (self.nops, n, got))
                self.model.extend(data)
        elif op < 0.97:
            off = r.randint(0, end + 64 * KIB)
            n = r.randint(1, 64 * KIB)
            if off + n <= limit:
                os.posix_fallocate(self.cur(), off, n)
                if off + n > end:
                    self.model.extend(bytes(off + n - end))
        else:
            if self.dupfd < 0:
                self.dupfd = os.dup(self.fd)
            self.via_dup = r.randint(1, 5)

    def finish(self, out):
        if not self.model:
            self.write(0, 4096)  # an empty file is not a dataset
        self.stat()
        self.read(0, len(self.model) + 1)
        if self.dupfd >= 0:
            os.close(self.dupfd)  # the first close seals the file: it must succeed too
            self.dupfd = -1
        try:
            os.close(self.fd)
        except OSError as e:
            print("fsx: close failed: %s" % e, file=sys.stderr)
            sys.exit(3)
        with open(out, "wb") as f:
            f.write(self.model)
        print(len(self.model), hashlib.blake2b(bytes(self.model), digest_size=64).hexdigest())


def mixed(f):
    for _ in range(600):
        f.step(6 * MIB)


def sparse(f):
    r = f.rng
    for _ in range(40):
        n = r.randint(1, 64 * KIB)
        f.write(r.randint(0, 48 * MIB - n), n)
        f.nops += 1
    for _ in range(60):
        f.read(r.randint(0, 48 * MIB), r.randint(1, 512 * KIB))
        f.nops += 1
    f.stat()


def shrink(f):
    r = f.rng
    for off in range(0, 8 * MIB, MIB):
        f.write(off, MIB)
    for _ in range(30):
        f.truncate(r.randint(0, len(f.model)))
        end = r.randint(len(f.model), 8 * MIB)
        for off in range(len(f.model), end, 96 * KIB):
            f.write(off, min(96 * KIB, end - off))
        f.read(r.randint(0, len(f.model)), 128 * KIB)
        f.nops += 1


def threads(f):
    stripe, nthreads, piece = 2 * MIB, 4, 32 * KIB
    f.truncate(0)
    f.model = bytearray(f.rng.randbytes(stripe * nthreads))
    done = [0] * nthreads
    errors = []

    def writer(k):
        rng = random.Random(f.rng.random() + k)
        offs = list(range(k * stripe, (k + 1) * stripe, piece))
        rng.shuffle(offs)
        for off in offs:
            n = os.pwrite(f.fd, f.model[off:off + piece], off)
            if n != piece:
                errors.append("thread %d: pwrite at %d wrote %d" % (k, off, n))
                return
        done[k] = 1

    ts = [threading.Thread(target=writer, args=(k,)) for k in range(nthreads)]
    for t in ts:
        t.start()
    while any(t.is_alive() for t in ts):
        k = f.rng.randrange(nthreads)
        if done[k]:
            f.read(k * stripe + f.rng.randrange(stripe - 4096), 4096)
    for t in ts:
        t.join()
    if errors:
        die(errors[0])
    f.stat()


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(1)
    path, seed, mode, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    modes = {"mixed": mixed, "sparse": sparse, "shrink": shrink, "threads": threads}
    if mode not in modes:
        die("unknown mode " + mode)
    f = Fsx(path, random.Random(seed))
    modes[mode](f)
    f.finish(out)


if __name__ == "__main__":
    main()
