#!/usr/bin/python3
"""Smoke test of the test peers: every path of the test protocol, every server.

Purpose: checks that raw_server.py, py_server.py, node_server.js and the C demo
server (`broker demo-server`) all speak the same path-based protocol
(tests/peers/README.md), over ws:// and wss://, and exit 0 on SIGTERM. It is
part of the test suite; the last line is `N passed, N failed` and the exit
status is 1 when anything failed. Layer: tests only; uses Debian's
python3-websockets client (10.x legacy API) and the standard library.

Usage: /usr/bin/python3 tests/peers/smoke.py [--servers raw,py,node,c,c-deflate]
       [--c-cmd "build/broker demo-server"] [--no-tls] [-v]
A server whose runtime is missing (node_modules/ws, the C binary) is reported
as skipped, not failed.
"""

import argparse
import asyncio
import json
import os
import random
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatusCode

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3"
PATTERN = bytes(i % 251 for i in range(251))
CHECK_TIMEOUT = 15.0  # seconds per check


def pattern(size):
    return (PATTERN * (size // 251 + 1))[:size]


class Fail(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Fail(what)


def close_code(exc):
    """Close code as seen by the client: received one, else sent one, else 1006."""
    if exc.rcvd is not None:
        return exc.rcvd.code
    if exc.sent is not None:
        return exc.sent.code
    return 1006


class Peer:
    """A running server process and how to reach it."""

    def __init__(self, name, argv, tls_files):
        self.name = name
        self.argv = list(argv)
        if tls_files:
            self.argv += ["--tls", tls_files[0], tls_files[1]]
        self.scheme = "wss" if tls_files else "ws"
        self.proc = None
        self.port = None

    def start(self):
        self.proc = subprocess.Popen(self.argv + ["--port", "0"], stdout=subprocess.PIPE,
                                     cwd=ROOT, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("LISTENING "):
            self.proc.kill()
            raise Fail("no LISTENING line (got %r)" % line)
        self.port = int(line.split()[1])

    def url(self, path):
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def stop(self):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


class Ctx:
    def __init__(self, peer, ssl_ctx):
        self.peer = peer
        self.ssl = ssl_ctx

    def connect(self, path, **kw):
        kw.setdefault("max_size", 64 << 20)
        kw.setdefault("ping_interval", None)
        kw.setdefault("open_timeout", 5)
        if self.ssl is not None:
            kw["ssl"] = self.ssl
        return websockets.connect(self.peer.url(path), **kw)


async def recv(ws, timeout=5.0):
    return await asyncio.wait_for(ws.recv(), timeout)


async def expect_closed(ws, code, reason=None):
    try:
        msg = await recv(ws)
    except ConnectionClosed as exc:
        got = close_code(exc)
        expect(got == code, "close code %s, wanted %s" % (got, code))
        if reason is not None:
            expect(exc.rcvd is not None and exc.rcvd.reason == reason,
                   "close reason %r, wanted %r" % (exc.rcvd and exc.rcvd.reason, reason))
        return
    raise Fail("expected close %d, got message %r" % (code, msg[:40]))


# ---- checks for every server ----------------------------------------------
async def t_echo(c, compression):
    async with c.connect("/echo", compression=compression) as ws:
        for msg in ["hello", "", "é" * 1000, b"\x00\x01\xff", b"", pattern(200000),
                    "x" * 70000]:
            await ws.send(msg)
            got = await recv(ws)
            expect(type(got) is type(msg) and got == msg,
                   "echo mismatch for %s of %d" % (type(msg).__name__, len(msg)))


async def t_echo_deflate(c):
    await t_echo(c, "deflate")


async def t_echo_plain(c):
    await t_echo(c, None)


async def t_chat(c):
    async with c.connect("/chat") as a, c.connect("/chat") as b:
        for ws in (a, b):
            await ws.send(json.dumps({"type": "join", "room": "r1"}))
            got = json.loads(await recv(ws))
            expect(got == {"type": "joined", "room": "r1"}, "joined reply %r" % got)
        await a.send(json.dumps({"type": "message", "room": "r1", "text": "hi"}))
        ma = json.loads(await recv(a))
        mb = json.loads(await recv(b))
        expect(ma == mb, "broadcast differs: %r vs %r" % (ma, mb))
        expect(ma.get("type") == "message" and ma.get("room") == "r1" and
               ma.get("text") == "hi" and isinstance(ma.get("from"), int), "message %r" % ma)
        await b.send(json.dumps({"type": "message", "room": "r1", "text": "yo"}))
        ma2 = json.loads(await recv(a))
        expect(ma2["text"] == "yo" and ma2["from"] != ma["from"], "second sender %r" % ma2)
        await b.send(json.dumps({"type": "message", "room": "other", "text": "nobody"}))
        await b.send("not json {")
        await a.send(json.dumps({"type": "join", "room": 7}))
        expect(json.loads(await recv(a)) == {"type": "joined", "room": 7}, "numeric room")


async def t_prices(c):
    async with c.connect("/prices?interval=20&count=5") as ws:
        t0 = time.monotonic()
        await ws.send(json.dumps({"action": "subscribe", "symbols": ["BTC-USD", "ETH-USD"]}))
        got = [json.loads(await recv(ws)) for _ in range(5)]
        syms = [g["symbol"] for g in got]
        expect(syms == ["BTC-USD", "ETH-USD"] * 2 + ["BTC-USD"], "symbols %r" % syms)
        expect(all(isinstance(g["value"], (int, float)) for g in got), "values %r" % got)
        expect(time.monotonic() - t0 >= 0.035, "updates came too fast")
        await expect_closed(ws, 1000, "done")


async def t_headers(c):
    async with c.connect("/headers?a=1", extra_headers={"X-Test": "42"},
                         subprotocols=["chat.v2"]) as ws:
        h = json.loads(await recv(ws))
        expect(h.get("x-test") == "42", "x-test header %r" % h.get("x-test"))
        expect(h.get("_path") == "/headers?a=1", "_path %r" % h.get("_path"))
        expect(h.get("_subprotocol") == "chat.v2", "_subprotocol %r" % h.get("_subprotocol"))
        expect("sec-websocket-key" in h and "host" in h, "missing headers: %r" % sorted(h))


async def t_subproto(c):
    for offer, want in ([["foo", "graphql-ws", "chat.v2"], "graphql-ws"],
                        [["chat.v2"], "chat.v2"], [["foo"], ""], [None, ""]):
        if offer == ["foo"] and c.peer.name.startswith("c"):
            # lws 4.1 cannot proceed without a subprotocol once the client
            # offered some; the C server refuses with 400 (README.md).
            try:
                async with c.connect("/subproto", subprotocols=offer):
                    raise Fail("C server accepted an unsupported subprotocol")
            except InvalidStatusCode as exc:
                expect(exc.status_code == 400, "status %d" % exc.status_code)
            continue
        async with c.connect("/subproto", subprotocols=offer) as ws:
            got = await recv(ws)
            expect(got == want, "offer %r selected %r, wanted %r" % (offer, got, want))
            expect((ws.subprotocol or "") == want, "header said %r" % ws.subprotocol)


async def t_close(c):
    async with c.connect("/close?code=4001&reason=bye&n=3") as ws:
        for i in range(3):
            expect(await recv(ws) == "m%d" % (i + 1), "message m%d" % (i + 1))
        await expect_closed(ws, 4001, "bye")
    async with c.connect("/close") as ws:
        await expect_closed(ws, 1000, "")


async def t_close_1005(c):
    async with c.connect("/close?code=1005") as ws:
        await expect_closed(ws, 1005)


async def blast(c, n, size, kind):
    want = pattern(size) if kind == "binary" else "x" * size
    async with c.connect("/blast?n=%d&size=%d&type=%s" % (n, size, kind)) as ws:
        for i in range(n):
            got = await recv(ws)
            if got != want:
                raise Fail("blast message %d differs (len %d)" % (i, len(got)))
        expect(await recv(ws) == "END", "no END")


async def t_blast(c):
    await blast(c, 2000, 100, "binary")
    await blast(c, 300, 3000, "text")
    await blast(c, 5, 0, "text")


async def t_count(c):
    async with c.connect("/count") as ws:
        for m in ["abc", b"12345", "é", b"", "x" * 1000]:
            await ws.send(m)
        await ws.send("REPORT")
        got = await recv(ws)
        expect(got == "count=5 bytes=1010", "report %r" % got)


async def t_invalid_utf8(c):
    async with c.connect("/invalid_utf8") as ws:
        expect(await recv(ws) == "ok", "first message")
        await expect_closed(ws, 1007)


async def t_big(c):
    async with c.connect("/big?size=3000000") as ws:
        got = await recv(ws)
        expect(got == pattern(3000000), "big message differs")


async def t_ping(c):
    async with c.connect("/ping") as ws:
        expect(await recv(ws) == "pong:srv", "no pong report")


async def t_unknown_path(c):
    try:
        async with c.connect("/nope"):
            raise Fail("upgrade on an unknown path accepted")
    except InvalidStatusCode as exc:
        expect(exc.status_code == 404, "status %d" % exc.status_code)


async def t_echo_pipelined(c):
    """Many sizes around frame/buffer boundaries, all sent before reading."""
    sizes = [0, 1, 125, 126, 1023, 1024, 1025, 4096, 65535, 65536, 70000, 300000]
    for compression in ("deflate", None):
        async with c.connect("/echo", compression=compression) as ws:
            msgs = []
            for i, n in enumerate(sizes * 3):
                msgs.append(pattern(n) if i % 2 else ("%d" % (i % 10)) * n)
            for m in msgs:
                await ws.send(m)
            for i, m in enumerate(msgs):
                got = await recv(ws)
                expect(got == m, "pipelined echo %d (%d bytes, %s)" % (i, len(m), compression))


async def t_fragmented_in(c):
    """Messages the client sends in several frames come back whole."""
    async with c.connect("/echo", compression=None) as ws:
        await ws.send(["ab", "cd", "", "é" * 3000])
        expect(await recv(ws) == "abcd" + "é" * 3000, "fragmented text")
        await ws.send([pattern(1000), b"", pattern(70000)])
        expect(await recv(ws) == pattern(1000) + pattern(70000), "fragmented binary")


async def t_client_invalid_utf8(c):
    """A text message that is not UTF-8 makes the server close with 1007."""
    async with c.connect("/echo", compression=None) as ws:
        await ws.write_frame(True, 0x1, b"ok\xed\xa0\x80")
        try:
            got = await recv(ws)
        except ConnectionClosed as exc:
            expect(exc.rcvd is not None and exc.rcvd.code == 1007, "close %r" % exc.rcvd)
            return
        raise Fail("server echoed invalid UTF-8: %r" % got)


async def t_blast_many(c):
    await blast(c, 10000, 16, "binary")


async def t_many_clients(c):
    async def one(i):
        async with c.connect("/echo") as ws:
            await ws.send("c%d" % i)
            expect(await recv(ws) == "c%d" % i, "client %d" % i)
    await asyncio.gather(*(one(i) for i in range(20)))


async def t_garbage(c):
    """Junk before and after the upgrade must not hurt the server."""
    rnd = random.Random(7)
    heads = [bytes(rnd.randrange(256) for _ in range(300)) + b"\r\n\r\n",
             b"GET /echo HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
             b"GET /echo HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", b"\r\n\r\n"]
    for head in heads:
        r, w = await asyncio.open_connection("127.0.0.1", c.peer.port)
        w.write(head)
        try:
            await asyncio.wait_for(r.read(65536), 0.5)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        w.close()
    for i in range(20):
        ws = await c.connect("/echo", compression=None, close_timeout=0.2)
        ws.transport.write(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 400))))
        try:
            await asyncio.wait_for(ws.wait_closed(), 0.5)
        except asyncio.TimeoutError:
            pass
        ws.transport.abort()
    async with c.connect("/echo") as ws2:
        await ws2.send("alive")
        expect(await recv(ws2) == "alive", "server died")


async def t_abrupt_client(c):
    """A client that vanishes mid-message must not hurt the server."""
    ws = await c.connect("/echo", compression=None)
    ws.transport.write(b"\x81\xfe\x10\x00\x00\x00\x00\x00abc")
    ws.transport.abort()
    await asyncio.sleep(0.1)
    async with c.connect("/echo") as ws2:
        await ws2.send("alive")
        expect(await recv(ws2) == "alive", "server died")


COMMON = [t_echo_deflate, t_echo_plain, t_echo_pipelined, t_fragmented_in, t_client_invalid_utf8, t_blast_many, t_chat, t_prices, t_headers, t_subproto, t_close,
          t_blast, t_count, t_invalid_utf8, t_big, t_ping, t_unknown_path, t_many_clients,
          t_abrupt_client, t_garbage, t_close_1005]
TLS_CHECKS = [t_echo_deflate, t_subproto, t_big, t_close]


# ---- raw_server only ------------------------------------------------------
async def t_rsv(c):
    async with c.connect("/rsv") as ws:
        await ws.send("hello" * 100)
        got = await recv(ws)
        expect(got.startswith("rsv1=1 opcode=1 ") and got.endswith(" fin=1 data_len=500"),
               "compressed report %r" % got)
    async with c.connect("/rsv", compression=None) as ws:
        await ws.send(b"\x01" * 300)
        got = await recv(ws)
        expect(got == "rsv1=0 opcode=2 len=300 fin=1 data_len=300", "plain report %r" % got)


async def t_drop(c):
    async with c.connect("/drop?n=2") as ws:
        expect(await recv(ws) == "m1" and await recv(ws) == "m2", "messages before drop")
        await expect_closed(ws, 1006)


async def t_slow_handshake(c):
    try:
        async with c.connect("/slow_handshake?delay=200", open_timeout=0.5,
                             close_timeout=0.1):
            pass
    except asyncio.TimeoutError:
        return
    raise Fail("slow handshake completed within 0.5 s")


async def t_never_read(c):
    async with c.connect("/never_read?hold=3000", compression=None, close_timeout=0.2) as ws:
        chunk = b"z" * (1 << 20)

        async def flood():
            for _ in range(64):
                await ws.send(chunk)
        try:
            await asyncio.wait_for(flood(), 1.5)
        except asyncio.TimeoutError:
            ws.transport.abort()
            return
    raise Fail("64 MiB went into a server that never reads")


async def t_raw_bytes(c):
    async with c.connect("/raw?hex=8102" + b"hi".hex()) as ws:
        expect(await recv(ws) == "hi", "raw frame")


async def t_bad_handshakes(c):
    try:
        async with c.connect("/echo?status=503"):
            raise Fail("status 503 accepted")
    except InvalidStatusCode as exc:
        expect(exc.status_code == 503, "status %d" % exc.status_code)
    try:
        async with c.connect("/echo?accept=bad"):
            raise Fail("bad Sec-WebSocket-Accept accepted")
    except InvalidHandshake:
        pass


async def t_fragmented(c):
    async with c.connect("/echo?frag=1000", compression=None) as ws:
        await ws.send(pattern(5500))
        expect(await recv(ws) == pattern(5500), "fragmented echo")


async def t_arbitrary_close(c):
    """Codes a peer must not send (1004, 1006, 999) still go out as given."""
    for code in (1004, 1006, 999):
        async with c.connect("/close?code=%d" % code, close_timeout=0.5) as ws:
            try:
                await recv(ws)
            except ConnectionClosed as exc:
                sent = exc.sent.code if exc.sent else None
                expect(sent == 1002, "client answered close %d with %r" % (code, sent))


RAW_ONLY = [t_rsv, t_drop, t_slow_handshake, t_never_read, t_raw_bytes, t_bad_handshakes,
            t_fragmented, t_arbitrary_close]
EXTRA = {"raw": RAW_ONLY, "c": [t_arbitrary_close], "c-deflate": [t_arbitrary_close]}


# ---- driver ---------------------------------------------------------------
def make_cert(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def server_argv(name, c_cmd):
    if name == "raw":
        return [PY, os.path.join(HERE, "raw_server.py")]
    if name == "py":
        return [PY, os.path.join(HERE, "py_server.py")]
    if name == "node":
        if not shutil.which("node") or not os.path.isdir(os.path.join(HERE, "node_modules", "ws")):
            return None
        return ["node", os.path.join(HERE, "node_server.js")]
    extra = ["--deflate"] if name == "c-deflate" else []
    if c_cmd:
        return shlex.split(c_cmd) + extra
    build = os.environ.get("BUILD", os.path.join(ROOT, "build"))
    for cand in ([os.path.join(build, "broker"), "demo-server"],
                 [os.path.join(ROOT, "build", "h_peers", "demo_server")]):
        if os.access(cand[0], os.X_OK):
            return cand + extra
    return None


class Results:
    def __init__(self, verbose):
        self.passed = 0
        self.failed = 0
        self.verbose = verbose

    def record(self, label, err):
        if err is None:
            self.passed += 1
            if self.verbose:
                print("ok   %s" % label, flush=True)
        else:
            self.failed += 1
            print("FAIL %s: %s" % (label, err), flush=True)


async def run_checks(res, label, ctx, checks):
    for check in checks:
        t0 = time.monotonic()
        err = None
        try:
            await asyncio.wait_for(check(ctx), CHECK_TIMEOUT)
        except Fail as exc:
            err = str(exc)
        except Exception as exc:  # any other failure of the check counts too
            err = "%s: %s" % (type(exc).__name__, exc)
        res.record("%s %s (%.2fs)" % (label, check.__name__[2:], time.monotonic() - t0), err)


async def run_server(res, name, argv, tls_files, ssl_ctx):
    label = name + ("/tls" if tls_files else "")
    peer = Peer(name, argv, tls_files)
    try:
        peer.start()
    except (Fail, OSError) as exc:
        res.record("%s start" % label, str(exc))
        return
    ctx = Ctx(peer, ssl_ctx if tls_files else None)
    checks = TLS_CHECKS if tls_files else COMMON + EXTRA.get(name, [])
    await run_checks(res, label, ctx, checks)
    status = peer.stop()
    res.record("%s exit on SIGTERM" % label, None if status == 0 else "status %r" % status)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--servers", default="raw,py,node,c,c-deflate")
    ap.add_argument("--c-cmd", help='command of the C server, e.g. "build/broker demo-server"')
    ap.add_argument("--no-tls", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    res = Results(args.verbose)
    with tempfile.TemporaryDirectory() as tmp:
        tls_files = None if args.no_tls else make_cert(tmp)
        ssl_ctx = None
        if tls_files:
            ssl_ctx = ssl.create_default_context(cafile=tls_files[0])
        for name in args.servers.split(","):
            argv = server_argv(name, args.c_cmd)
            if argv is None:
                print("skip %s: runtime or binary not found" % name, flush=True)
                continue
            await run_server(res, name, argv, None, None)
            if tls_files:
                await run_server(res, name, argv, tls_files, ssl_ctx)
    print("%d passed, %d failed" % (res.passed, res.failed), flush=True)
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
