#!/usr/bin/env python3
"""faultproxy.py - a loopback HTTP reverse proxy that injects faults.

It stands between butlerfs and a test server (nginx or s3rver on 127.0.0.1)
and passes every request through: reads (GET, HEAD; Range headers included,
so 206 replies and their Content-Range reach the client unchanged) and writes
(PUT, POST, MOVE, COPY, DELETE, MKCOL, PROPFIND, OPTIONS; request bodies are
streamed to the server, a Destination header is rewritten to name it).  Per
request it may instead inject one fault.  On a read:

  503       a "503 Service Unavailable" reply; the server is not asked
  reset     status, headers and part of the body, then a TCP reset (RST)
  stall     status, headers and part of the body, then a pause of
            --stall-seconds, then the rest: a slow but correct reply
  truncate  status, headers (Content-Length kept) and part of the body, then
            a clean close (FIN): a short body
  flip      the whole reply with one body byte inverted; status and length
            kept, so only a checksum can tell
A fault that needs a body (reset, truncate, flip, stall) on a reply without
one (HEAD, empty file) becomes: reset = the connection reset before any
reply, stall = the pause before the reply, truncate = part of the status
line, then a FIN (clients such as libcurl take a reply whose status line
arrived whole as complete, headers cut or not), flip = no fault.

On a write (any other method):

  503       the body is read, a 503 reply; the server is not asked
  reset     part of the body is read (none without one), then a TCP reset;
            the server sees a request cut short, or none
  stall     part of the body is read (none without one), then a pause of
            --stall-seconds; a client still waiting then gets the request
            forwarded (slow but correct), one that gave up (closed) gets
            nothing forwarded: a stalled link, the request never arrives
  truncate  the request is forwarded whole (the server does it), then the
            reply is cut: headers and part of the body, or without a body
            part of the status line, then a FIN
  flip      the body is forwarded with one byte inverted (no fault without
            a body): the server stores other bytes than were sent

Which request gets which fault:
  --rule [METHOD ]REGEX=KIND[*N]
                          requests whose path (query string included) matches
                          REGEX (and whose method is METHOD, when given) get
                          KIND (or "none"), only the first N matches when *N
                          is given; the first matching rule that has matches
                          left decides.  Rules come first.
  --rate P --faults K,..  otherwise, with probability P, one of the kinds K
                          (uniformly); --seed makes the sequence repeatable.
  --methods M,..|all      the methods faults apply to (default GET,HEAD:
                          writes pass through unharmed), except that a rule
                          of kind 503 applies to every method: how a test
                          makes one S3 UploadPart fail ("partNumber=2=503*1").

--rate-limit B holds each connection to B bytes per second in each direction
(request bodies read from the client, reply bodies sent to it; a token
bucket of one 256 KiB chunk): one TCP stream across a long fat pipe, where
window/RTT limits each stream.

Counts of requests, clean replies and each fault injected, in total and per
method ("methods": {"PUT": {"requests": .., "clean": .., "503": .., ...}}),
go to --stats (JSON, rewritten at most twice a second and on exit).  The
control endpoint /_faultproxy/ answers: stats (the same JSON), and
set?rate=P&faults=K,..&methods=M,..&stall=S&rule=[METHOD ]REGEX=KIND[*N]&
clear_rules=1&zero=1 (change the mode at run time; rules given replace the
current ones; zero=1 sets every count to 0).  SIGTERM and SIGINT stop the
proxy after writing the stats.

Usage: faultproxy.py --upstream http://127.0.0.1:PORT [--listen 127.0.0.1:0]
           [--port-file FILE] [--stats FILE] [--log FILE] [--rate P]
           [--faults 503,reset,stall,truncate,flip] [--methods M,..|all]
           [--stall-seconds S] [--seed N] [--rule [METHOD ]REGEX=KIND[*N]]...
           [--rate-limit BYTES_PER_SECOND]
Python 3 standard library only.
"""

import argparse
import http.client
import json
import os
import random
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = ("503", "reset", "stall", "truncate", "flip")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
              "te", "trailer", "trailers", "transfer-encoding", "upgrade", "expect"}
READS = ("GET", "HEAD")
WRITES = ("PUT", "POST", "MOVE", "COPY", "DELETE", "MKCOL", "PROPFIND", "OPTIONS")
CHUNK = 256 * 1024
CONTROL = "/_faultproxy/"


def parse_kinds(text):
    kinds = [k for k in (text or "").split(",") if k]
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown fault kind {k!r} (want {', '.join(KINDS)})")
    return kinds


def parse_methods(text):
    """M,.. or "all" -> a set of methods, or None for every one."""
    if text == "all":
        return None
    methods = {m.strip().upper() for m in (text or "").split(",") if m.strip()}
    for m in methods:
        if m not in READS + WRITES:
            raise ValueError(f"unknown method {m!r} (want all, or of {', '.join(READS + WRITES)})")
    return methods


def parse_rule(text):
    """[METHOD ]REGEX=KIND[*N] -> [compiled regex, kind, matches left or None, method or None]."""
    method = None
    m = re.match(r"([A-Z]+) (.*)$", text, re.S)
    if m and m.group(1) in READS + WRITES:
        method, text = m.group(1), m.group(2)
    pattern, sep, action = text.rpartition("=")
    if not sep or not pattern:
        raise ValueError(f"rule {text!r} is not [METHOD ]REGEX=KIND[*N]")
    kind, _, count = action.partition("*")
    if kind != "none" and kind not in KINDS:
        raise ValueError(f"rule {text!r}: unknown fault kind {kind!r}")
    return [re.compile(pattern), kind, int(count) if count else None, method]


def rule_text(r):
    return (f"{r[3]} " if r[3] else "") + f"{r[0].pattern}={r[1]}" + (f"*{r[2]}" if r[2] is not None else "")


class Bucket:
    """A token bucket: take(n) sleeps until n more bytes fit within rate
    bytes per second (no limit when rate is 0); it holds one chunk at most,
    so an idle connection gains no burst beyond that."""

    def __init__(self, rate):
        self.rate = rate
        self.cap = max(1.0, min(float(CHUNK), rate / 100.0))
        self.tokens = self.cap
        self.last = time.monotonic()

    def take(self, n):
        if not self.rate:
            return
        now = time.monotonic()
        self.tokens = min(self.cap, self.tokens + (now - self.last) * self.rate) - n
        self.last = now
        if self.tokens < 0:
            time.sleep(-self.tokens / self.rate)


class State:
    """The mode (rate, kinds, rules) and the counts, under one lock."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.rate = args.rate
        self.kinds = parse_kinds(args.faults)
        self.methods = parse_methods(args.methods)
        self.stall = args.stall_seconds
        self.rate_limit = args.rate_limit
        self.rules = [parse_rule(r) for r in args.rule]
        self.stats_path = args.stats
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.counts = self.zero_counts()
        self.dirty = True

    @staticmethod
    def zero_counts():
        return {"requests": 0, "clean": 0, "upstream_errors": 0, "client_gone": 0,
                "bytes_sent": 0, "bytes_received": 0, "faults": {k: 0 for k in KINDS}, "methods": {}}

    def method_counts(self, method):
        """The per-method counts (made on first use); under the lock."""
        return self.counts["methods"].setdefault(
            method, dict({"requests": 0, "clean": 0}, **{k: 0 for k in KINDS}))

    def choose(self, method, path):
        """The fault for a request (method, path), or None; counts the request.
        Faults apply to the methods of --methods, and a 503 rule to all."""
        with self.lock:
            self.counts["requests"] += 1
            self.method_counts(method)["requests"] += 1
            self.dirty = True
            faulty = self.methods is None or method in self.methods
            for rule in self.rules:
                if ((faulty or rule[1] == "503") and (rule[3] is None or rule[3] == method)
                        and rule[0].search(path) and (rule[2] is None or rule[2] > 0)):
                    if rule[2] is not None:
                        rule[2] -= 1
                    return None if rule[1] == "none" else rule[1]
            if faulty and self.kinds and self.rate > 0 and self.rng.random() < self.rate:
                return self.rng.choice(self.kinds)
            return None

    def cut(self, length):
        """Where a fault hits a body of length bytes: inside it when it can."""
        with self.lock:
            return self.rng.randrange(1, length) if length >= 2 else 0

    def done(self, kind, method, path, detail="", sent=0, received=0):
        """Count a reply: kind is the fault injected, or None (clean)."""
        with self.lock:
            self.counts["bytes_sent"] += sent
            self.counts["bytes_received"] += received
            if kind is None:
                self.counts["clean"] += 1
                self.method_counts(method)["clean"] += 1
            else:
                self.counts["faults"][kind] += 1
                self.method_counts(method)[kind] += 1
            self.dirty = True
        if kind is not None and self.log:
            self.log.write(f"{time.strftime('%H:%M:%S')} {kind} {method} {path} {detail}\n")

    def bump(self, key):
        with self.lock:
            self.counts[key] += 1
            self.dirty = True

    def snapshot(self):
        with self.lock:
            snap = json.loads(json.dumps(self.counts))
            snap["faults_total"] = sum(snap["faults"].values())
            snap["mode"] = {"rate": self.rate, "faults": self.kinds, "stall_seconds": self.stall,
                            "methods": "all" if self.methods is None else sorted(self.methods),
                            "rate_limit": self.rate_limit, "rules": [rule_text(r) for r in self.rules]}
            return snap

    def set_mode(self, query):
        """Apply a set?... query; raises ValueError on a bad one."""
        q = urllib.parse.parse_qs(query, keep_blank_values=True)
        rate = float(q["rate"][-1]) if "rate" in q else None
        kinds = parse_kinds(q["faults"][-1]) if "faults" in q else None
        methods = parse_methods(q["methods"][-1]) if "methods" in q else False
        stall = float(q["stall"][-1]) if "stall" in q else None
        rules = [parse_rule(r) for r in q.get("rule", [])]
        if rate is not None and not 0 <= rate <= 1:
            raise ValueError("rate must be within 0..1")
        with self.lock:
            if rate is not None:
                self.rate = rate
            if kinds is not None:
                self.kinds = kinds
            if methods is not False:
                self.methods = methods
            if stall is not None:
                self.stall = stall
            if "clear_rules" in q or rules:
                self.rules = rules
            if "zero" in q:
                self.counts = self.zero_counts()
            self.dirty = True

    def write_stats(self, force=False):
        if not self.stats_path:
            return
        with self.lock:
            if not (self.dirty or force):
                return
            self.dirty = False
        snap = self.snapshot()
        tmp = f"{self.stats_path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(snap, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.stats_path)


class ClientGone(Exception):
    """The client closed or reset its connection during a request."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy"
    timeout = 120  # a client silent this long (mid-request or idle) is dropped
    upstream = None  # one keep-alive connection to the server per client connection for reads

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        rate = self.server.state.rate_limit
        self.inbound, self.outbound = Bucket(rate), Bucket(rate)  # per connection, each direction

    def do_GET(self):
        self.proxy(True)

    def do_HEAD(self):
        self.proxy(False)

    def do_PUT(self):
        self.forward()

    do_POST = do_MOVE = do_COPY = do_DELETE = do_MKCOL = do_PROPFIND = do_OPTIONS = do_PUT

    def reply_plain(self, code, text):
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self, view):
        """Read up to len(view) request-body bytes, held to --rate-limit;
        ClientGone at the end of the stream."""
        self.inbound.take(len(view))
        n = self.rfile.readinto(view)
        if not n:
            raise ClientGone("the request body ended early")
        return n

    def drain(self, n):
        """Read and drop n bytes of the request body."""
        buf = memoryview(bytearray(min(CHUNK, n) or 1))
        while n > 0:
            n -= self.read_body(buf[:min(CHUNK, n)])

    def client_gone(self):
        """Whether the client closed or reset its connection (it sends nothing
        more on a request whose body has been read, so readable = closed)."""
        try:  # (select, not MSG_DONTWAIT: a socket with a timeout would wait for it)
            if not select.select([self.connection], [], [], 0)[0]:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def upstream_request(self, length):
        """A new connection to the server with this request's line and headers sent."""
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        conn = http.client.HTTPConnection(self.server.up_host, self.server.up_port, timeout=120)
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            if k.lower() == "host":
                v = self.server.up_netloc
            elif k.lower() == "destination":
                d = urllib.parse.urlsplit(v)
                v = urllib.parse.urlunsplit(d._replace(netloc=self.server.up_netloc))
            elif k.lower() == "content-length":
                continue
            conn.putheader(k, v)
        if not any(k.lower() == "host" for k, _ in headers):
            conn.putheader("Host", self.server.up_netloc)
        if length or self.command in ("PUT", "POST"):
            conn.putheader("Content-Length", str(length))
        conn.endheaders()
        return conn

    def forward(self):
        """A write (any method but GET and HEAD), with its fault: see the top
        of this file.  The body is streamed to the server as it arrives."""
        state = self.server.state
        te = self.headers.get("Transfer-Encoding", "identity").lower()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if te != "identity" or length < 0:
            self.close_connection = True
            self.reply_plain(411, "faultproxy: a request body needs a Content-Length\n")
            return
        kind = state.choose(self.command, self.path)
        if kind == "flip" and not length:
            kind = None
        cut = state.cut(length) if kind in ("reset", "stall", "flip") else length
        conn, received = None, 0
        try:
            if kind == "503":
                self.drain(length)
                self.reply_plain(503, "faultproxy: 503 injected\n")
                state.done("503", self.command, self.path, received=length)
                return
            if kind == "reset":
                self.drain(cut)
                self.reset_client()
                state.done("reset", self.command, self.path, f"after {cut} of {length} body bytes",
                           received=cut)
                return
            if kind == "stall" and not length:
                time.sleep(state.stall)
                if self.client_gone():
                    raise ClientGone("gone during the stall")
            try:
                conn = self.upstream_request(length)
            except OSError as e:
                self.drain(length)
                state.bump("upstream_errors")
                self.reply_plain(502, f"faultproxy: the server failed: {e}\n")
                return
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            upstream_error = None
            while received < length:
                want = min(CHUNK, length - received)
                if kind == "stall" and received < cut:
                    want = min(want, cut - received)
                n = self.read_body(view[:want])
                if kind == "flip" and received <= cut < received + n:
                    buf[cut - received] ^= 0xFF
                if kind == "stall" and received + n == length and self.client_gone():
                    raise ClientGone("gone during the stall")  # the last bytes never reach the server
                if upstream_error is None:
                    try:
                        conn.send(view[:n])
                    except OSError as e:  # the server gave up: the body is still read
                        upstream_error = e
                received += n
                if kind == "stall" and received == cut:
                    time.sleep(state.stall)
            try:
                if upstream_error is not None:
                    raise upstream_error
                resp = conn.getresponse()
                status, reason, data = resp.status, resp.reason, resp.read()
                headers = [(k, v) for k, v in resp.getheaders()
                           if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
            except (OSError, http.client.HTTPException) as e:
                state.bump("upstream_errors")
                status, reason, headers = 502, "Bad Gateway", [("Content-Type", "text/plain")]
                data = f"faultproxy: the server failed: {e}\n".encode()
            head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
            head = (head + f"Content-Length: {len(data)}\r\n\r\n").encode("latin-1")
            out, detail = head + data, f"at {cut} of {length} body bytes" if kind else ""
            sent = len(out)
            self.outbound.take(sent)
            if kind == "truncate":
                detail, sent = self.cut_reply(out)
            else:
                self.wfile.write(out)
            state.done(kind, self.command, self.path, detail, sent=sent, received=received)
        except (ClientGone, OSError) as e:
            # the client went away (a timeout after a stall, a cancelled request):
            # the server's connection is closed with the request incomplete
            state.bump("client_gone")
            self.close_connection = True
            if kind == "stall":
                state.done("stall", self.command, self.path, f"the client left: {e}", received=received)
        finally:
            if conn is not None:
                conn.close()

    def control(self):
        state = self.server.state
        url = urllib.parse.urlsplit(self.path)
        what = url.path[len(CONTROL):]
        code = 200
        try:
            if what == "set":
                state.set_mode(url.query)
                body = state.snapshot()
            elif what == "stats":
                body = state.snapshot()
            else:
                code, body = 404, {"error": f"no control {what!r}: stats or set"}
        except (ValueError, re.error) as e:
            code, body = 400, {"error": str(e)}
        data = (json.dumps(body, sort_keys=True) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def drop_upstream(self):
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    def ask_upstream(self, method):
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = self.server.up_netloc
        for attempt in (1, 2):  # a kept-alive connection the server has closed: once more
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection(self.server.up_host, self.server.up_port,
                                                           timeout=120)
            try:
                self.upstream.request(method, self.path, headers=headers)
                return self.upstream.getresponse()
            except (OSError, http.client.HTTPException):
                self.drop_upstream()
                if attempt == 2:
                    raise
        return None

    def cut_reply(self, data):
        """Send the first bytes of data (a whole reply) and close (FIN): a
        truncated reply; without a body, within the status line.  Returns the
        detail for the log."""
        end = data.find(b"\r\n\r\n") + 4
        cut = self.server.state.cut(len(data) - end) + end if len(data) > end else self.server.state.cut(
            data.find(b"\r\n") + 2)
        self.close_connection = True
        self.wfile.write(data[:cut])
        try:
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return f"reply cut at {cut} of {len(data)} bytes", cut

    def reset_client(self):
        """Close the client's connection with a TCP reset (SO_LINGER 0)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def proxy(self, with_body):
        state = self.server.state
        if self.path.startswith(CONTROL):
            self.control()
            return
        kind = state.choose(self.command, self.path)
        if kind == "503":
            data = b"faultproxy: 503 injected\n"
            self.send_response(503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if with_body:
                self.wfile.write(data)
            state.done("503", self.command, self.path)
            return
        try:
            resp = self.ask_upstream(self.command)
        except (OSError, http.client.HTTPException) as e:
            state.bump("upstream_errors")
            data = f"faultproxy: the server failed: {e}\n".encode()
            self.send_response(502)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data if with_body else b"")
            return
        try:
            self.relay(resp, kind, with_body)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            state.bump("client_gone")  # the client went away (a cancelled request)
            self.drop_upstream()
            self.close_connection = True
            if kind == "stall":  # a stall the client gave up on (its timeout): injected all the same
                state.done("stall", self.command, self.path, "the client left")

    def relay(self, resp, kind, with_body):
        state, stall = self.server.state, self.server.state.stall
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
        length = resp.getheader("Content-Length")
        body = None
        if length is None:  # chunked or close-delimited: buffer it (small listings)
            body = resp.read() if with_body else b""
            length = len(body)
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(length)))
        length = int(length)
        if not with_body or length == 0:
            if kind == "flip":
                kind = None
            if kind == "truncate":
                resp.read()
                detail, sent = self.cut_reply(f"HTTP/1.1 {resp.status} {resp.reason}\r\n\r\n".encode("latin-1"))
                state.done("truncate", self.command, self.path, detail, sent)
                return
            if kind == "reset":
                resp.read()
                self.reset_client()
                state.done("reset", self.command, self.path, "before the reply")
                return
            if kind == "stall":
                time.sleep(stall)
        cut = state.cut(length) if kind in ("reset", "stall", "truncate", "flip") else length
        self.send_response_only(resp.status, resp.reason)
        for k, v in headers:
            self.send_header(k, v)
        if resp.will_close:
            self.close_connection = True
        self.end_headers()
        sent = 0
        if with_body and length:
            sent = self.stream(resp, body, length, cut, kind, stall)
        else:
            resp.read()
        if resp.will_close:
            self.drop_upstream()
        state.done(kind, self.command, self.path, f"at {cut} of {length}" if kind else "", sent)

    def stream(self, resp, body, length, cut, kind, stall):
        """Send the body, applying kind at byte cut; returns the bytes sent."""
        stop = cut if kind in ("reset", "truncate") else length
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        sent = 0
        while sent < stop:
            want = min(CHUNK, stop - sent)
            if kind == "stall" and sent < cut:
                want = min(want, cut - sent)
            if body is not None:
                n = len(body[sent:sent + want])
                view[:n] = body[sent:sent + want]
            else:
                n = resp.readinto(view[:want])
            if n <= 0:
                raise ConnectionResetError("the server's body ended early")
            if kind == "flip" and sent <= cut < sent + n:
                buf[cut - sent] ^= 0xFF
            self.outbound.take(n)
            self.wfile.write(view[:n])
            sent += n
            if kind == "stall" and sent == cut:
                time.sleep(stall)
        if kind in ("reset", "truncate"):
            self.drop_upstream()  # the rest of its reply is never read
            if kind == "reset":
                self.reset_client()
            else:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        return sent


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="http://HOST:PORT of the real server")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free one)")
    ap.add_argument("--port-file", help="write the port listened on here once listening")
    ap.add_argument("--stats", help="JSON file of counts")
    ap.add_argument("--log", help="one line per fault injected")
    ap.add_argument("--rate", type=float, default=0.0, help="probability of a fault per request")
    ap.add_argument("--faults", default="503,reset,stall,truncate", help="kinds drawn from at --rate")
    ap.add_argument("--stall-seconds", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--rule", action="append", default=[], help="[METHOD ]REGEX=KIND[*N], repeatable")
    ap.add_argument("--methods", default="GET,HEAD", help="methods faults apply to (M,.. or all)")
    ap.add_argument("--rate-limit", type=float, default=0.0,
                    help="bytes per second per connection, each direction (0: none)")
    args = ap.parse_args()
    try:
        state = State(args)
    except (ValueError, re.error) as e:
        ap.error(str(e))
    up = urllib.parse.urlsplit(args.upstream)
    if up.scheme != "http" or not up.hostname:
        ap.error("--upstream must be http://HOST:PORT")
    host, _, port = args.listen.rpartition(":")
    server = Server((host or "127.0.0.1", int(port)), Handler)
    server.state = state
    server.up_host, server.up_port = up.hostname, up.port or 80
    server.up_netloc = up.netloc
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{server.server_address[1]}\n")
        os.replace(tmp, args.port_file)

    stopping = threading.Event()

    def stop(_signum, _frame):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    def flusher():
        while not stopping.wait(0.5):
            state.write_stats()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=flusher, daemon=True).start()
    state.write_stats(force=True)
    server.serve_forever(poll_interval=0.2)
    state.write_stats(force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
