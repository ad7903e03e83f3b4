#!/usr/bin/env python3
"""faultproxy.py - a loopback HTTP reverse proxy that injects faults.

It stands between butlerfs and a test server (nginx on 127.0.0.1) and passes
GET and HEAD requests through, Range headers included, so 206 replies and
their Content-Range reach the client unchanged.  Per request it may instead
inject one fault:

  503       a "503 Service Unavailable" reply; the server is not asked
  reset     status, headers and part of the body, then a TCP reset (RST)
  stall     status, headers and part of the body, then a pause of
            --stall-seconds, then the rest: a slow but correct reply
  truncate  status, headers (Content-Length kept) and part of the body, then
            a clean close (FIN): a short body
  flip      the whole reply with one body byte inverted; status and length
            kept, so only a checksum can tell

Which request gets which fault:
  --rule REGEX=KIND[*N]   requests whose path (query string included) matches
                          REGEX get KIND (or "none"), only the first N
                          matches when *N is given; the first matching rule
                          that has matches left decides.  Rules come first.
  --rate P --faults K,..  otherwise, with probability P, one of the kinds K
                          (uniformly); --seed makes the sequence repeatable.
Writes (PUT, POST, MOVE, DELETE) pass through unharmed, except that a rule
of kind 503 applies to them too (the body is read, the server not asked):
how a test makes one S3 UploadPart fail ("partNumber=2=503*1").
A fault that needs a body (reset, truncate, flip, stall) on a reply without
one (HEAD, empty file) becomes: reset = the connection reset before any
reply, stall = the pause before the reply, truncate and flip = no fault.

Counts of requests, clean replies and each fault injected go to --stats
(JSON, rewritten at most twice a second and on exit).  The control endpoint
/_faultproxy/ answers: stats (the same JSON), and set?rate=P&faults=K,..&
stall=S&rule=REGEX=KIND[*N]&clear_rules=1&zero=1 (change the mode at run
time; rules given replace the current ones; zero=1 sets every count to 0).  SIGTERM and SIGINT stop the proxy
after writing the stats.

Usage: faultproxy.py --upstream http://127.0.0.1:PORT [--listen 127.0.0.1:0]
           [--port-file FILE] [--stats FILE] [--log FILE] [--rate P]
           [--faults 503,reset,stall,truncate,flip] [--stall-seconds S]
           [--seed N] [--rule REGEX=KIND[*N]]...
Python 3 standard library only.
"""

import argparse
import http.client
import json
import os
import random
import re
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
              "te", "trailer", "trailers", "transfer-encoding", "upgrade"}
CHUNK = 256 * 1024
CONTROL = "/_faultproxy/"


def parse_kinds(text):
    kinds = [k for k in (text or "").split(",") if k]
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown fault kind {k!r} (want {', '.join(KINDS)})")
    return kinds


def parse_rule(text):
    """REGEX=KIND[*N] -> [compiled regex, kind, matches left or None]."""
    pattern, sep, action = text.rpartition("=")
    if not sep or not pattern:
        raise ValueError(f"rule {text!r} is not REGEX=KIND[*N]")
    kind, _, count = action.partition("*")
    if kind != "none" and kind not in KINDS:
        raise ValueError(f"rule {text!r}: unknown fault kind {kind!r}")
    return [re.compile(pattern), kind, int(count) if count else None]


class State:
    """The mode (rate, kinds, rules) and the counts, under one lock."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.rate = args.rate
        self.kinds = parse_kinds(args.faults)
        self.stall = args.stall_seconds
        self.rules = [parse_rule(r) for r in args.rule]
        self.stats_path = args.stats
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.counts = self.zero_counts()
        self.dirty = True

    @staticmethod
    def zero_counts():
        return {"requests": 0, "clean": 0, "upstream_errors": 0, "client_gone": 0,
                "bytes_sent": 0, "faults": {k: 0 for k in KINDS}}

    def choose(self, path):
        """The fault for a request of path, or None; counts the request."""
        with self.lock:
            self.counts["requests"] += 1
            self.dirty = True
            for rule in self.rules:
                if rule[0].search(path) and (rule[2] is None or rule[2] > 0):
                    if rule[2] is not None:
                        rule[2] -= 1
                    return None if rule[1] == "none" else rule[1]
            if self.kinds and self.rate > 0 and self.rng.random() < self.rate:
                return self.rng.choice(self.kinds)
            return None

    def cut(self, length):
        """Where a fault hits a body of length bytes: inside it when it can."""
        with self.lock:
            return self.rng.randrange(1, length) if length >= 2 else 0

    def done(self, kind, path, detail="", sent=0):
        """Count a reply: kind is the fault injected, or None (clean)."""
        with self.lock:
            self.counts["bytes_sent"] += sent
            if kind is None:
                self.counts["clean"] += 1
            else:
                self.counts["faults"][kind] += 1
            self.dirty = True
        if kind is not None and self.log:
            self.log.write(f"{time.strftime('%H:%M:%S')} {kind} {path} {detail}\n")

    def choose_write(self, path):
        """For a write: "503" when a 503 rule with matches left matches path."""
        with self.lock:  # (a write passed through is not counted, as before)
            for rule in self.rules:
                if rule[1] == "503" and rule[0].search(path) and (rule[2] is None or rule[2] > 0):
                    if rule[2] is not None:
                        rule[2] -= 1
                    self.counts["requests"] += 1
                    self.dirty = True
                    return "503"
            return None

    def bump(self, key):
        with self.lock:
            self.counts[key] += 1
            self.dirty = True

    def snapshot(self):
        with self.lock:
            snap = json.loads(json.dumps(self.counts))
            snap["faults_total"] = sum(snap["faults"].values())
            snap["mode"] = {"rate": self.rate, "faults": self.kinds, "stall_seconds": self.stall,
                            "rules": [f"{r[0].pattern}={r[1]}" + (f"*{r[2]}" if r[2] is not None else "")
                                      for r in self.rules]}
            return snap

    def set_mode(self, query):
        """Apply a set?... query; raises ValueError on a bad one."""
        q = urllib.parse.parse_qs(query, keep_blank_values=True)
        rate = float(q["rate"][-1]) if "rate" in q else None
        kinds = parse_kinds(q["faults"][-1]) if "faults" in q else None
        stall = float(q["stall"][-1]) if "stall" in q else None
        rules = [parse_rule(r) for r in q.get("rule", [])]
        if rate is not None and not 0 <= rate <= 1:
            raise ValueError("rate must be within 0..1")
        with self.lock:
            if rate is not None:
                self.rate = rate
            if kinds is not None:
                self.kinds = kinds
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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy"
    upstream = None  # one keep-alive connection to the server per client connection

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.proxy(True)

    def do_HEAD(self):
        self.proxy(False)

    # Writes (WebDAV uploads) pass through unharmed: faults are for replies
    # to reads.  The body is read whole (test files are small), and a MOVE's
    # Destination is rewritten to name the server, as the server expects.
    def do_PUT(self):
        self.passthrough()

    def do_MOVE(self):
        self.passthrough()

    def do_DELETE(self):
        self.passthrough()

    def do_POST(self):
        self.passthrough()

    def passthrough(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        if self.server.state.choose_write(self.path) == "503":
            data = b"faultproxy: 503 injected\n"
            self.send_response(503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.server.state.done("503", self.path)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = self.server.up_netloc
        if "Destination" in headers:
            d = urllib.parse.urlsplit(headers["Destination"])
            headers["Destination"] = urllib.parse.urlunsplit(d._replace(netloc=self.server.up_netloc))
        conn = http.client.HTTPConnection(self.server.up_host, self.server.up_port, timeout=120)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.server.state.bump("upstream_errors")
            data, resp = f"faultproxy: the server failed: {e}\n".encode(), None
        finally:
            conn.close()
        self.send_response_only(resp.status if resp else 502, resp.reason if resp else "Bad Gateway")
        for k, v in (resp.getheaders() if resp else []):
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

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
        kind = state.choose(self.path)
        if kind == "503":
            data = b"faultproxy: 503 injected\n"
            self.send_response(503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if with_body:
                self.wfile.write(data)
            state.done("503", self.path)
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
            if kind in ("truncate", "flip"):
                kind = None
            if kind == "reset":
                resp.read()
                self.reset_client()
                state.done("reset", self.path, "before the reply")
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
        state.done(kind, self.path, f"at {cut} of {length}" if kind else "", sent)

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
    ap.add_argument("--rule", action="append", default=[], help="REGEX=KIND[*N], repeatable")
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
