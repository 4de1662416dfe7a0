#!/usr/bin/python3
"""Protocol conformance server: scripted cases in the manner of the Autobahn
client suite, judged on the wire.

Purpose: drive a WebSocket *client* (our broker, steered by a Lua script that
echoes every message) through RFC 6455 / RFC 7692 edge cases. Each case sends
exact bytes (any header bits, lengths, masks, fragmentation, interleaved
control frames, invalid UTF-8 split anywhere, deflate streams with any window
and takeover setting, broken handshake responses) and records what the client
sends back: frames unmasked and reassembled into messages, pongs, the close
frame with its code, the end of TCP. A case is then judged pass, non-strict or
fail against what the RFCs require (the same outcome classes Autobahn uses).

Layer: tests only; Python standard library only. Independent of
tests/peers/raw_server.py on purpose: nothing here is shared with the peers
that other tests use.

Paths (one WebSocket connection each):
  /cases    sends one text message: JSON [{"n":, "id":, "opts":, "connect":}]
            (opts: the websocket.connect options the client must use for case
            n; connect: "ok" or "fail", what websocket.connect must return),
            then closes with 1000.
  /case/N   runs case N.
  /report   sends the results so far as one JSON text message, then closes.
Anything else: 404.

Usage:
  conformance_server.py --port 0 --results FILE   serve; prints `LISTENING
      <port>`; writes the results JSON to FILE after every case and on
      SIGTERM/SIGINT (then exits 0).
  conformance_server.py --list                    prints the case table.
  conformance_server.py --summarize RESULTS LOG [--verbose]
      merges the server's verdicts with the client's log (lines `case N
      connected` / `case N connect failed: MESSAGE`), prints one line per
      failed or non-strict case, the per-group table and `N passed, N
      failed`; exit status 1 when any case failed or is missing.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import time
import zlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
OK, NON_STRICT, FAILED = "pass", "non-strict", "fail"
RANK = {OK: 0, NON_STRICT: 1, FAILED: 2}
MAX_REQUEST = 16384  # bytes of request head we read
CLOSE_WAIT = 2.0  # seconds we wait for the client's close frame / TCP end
TAIL = b"\x00\x00\xff\xff"

GROUPS = {
    "1": "framing",
    "2": "pings/pongs",
    "3": "reserved bits",
    "4": "opcodes",
    "5": "fragmentation",
    "6": "UTF-8",
    "7": "close handling",
    "9": "limits/large messages",
    "12": "permessage-deflate data",
    "13": "permessage-deflate parameters",
    "H": "handshake rejections",
}


# ---------------------------------------------------------------- wire helpers


def xor_mask(data, key):
    """Applies a 4-byte WebSocket mask (big-integer XOR: fast in CPython)."""
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def frame(op, payload=b"", fin=True, rsv=0, mask=None, length=None, len_form=None):
    """Wire bytes of one frame. rsv: 3-bit value (RSV1 = 4). mask: 4 bytes to
    send a masked frame (a server must not). length: the length field to
    announce (default: the payload's). len_form: 7, 16 or 64 to force the
    length encoding (non-minimal forms)."""
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (op & 0x0F)
    n = len(payload) if length is None else length
    form = len_form or (7 if n < 126 else 16 if n < 65536 else 64)
    mbit = 0x80 if mask else 0
    if form == 7:
        head = struct.pack("!BB", b0, mbit | n)
    elif form == 16:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        return head + mask + xor_mask(payload, mask)
    return head + payload


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    return struct.pack("!H", code) + reason


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def pattern_text(n, seed=0):
    """n bytes of varied printable ASCII."""
    base = bytes(32 + (i * 7 + seed) % 95 for i in range(997))
    return (base * (n // len(base) + 1))[:n]


def pattern_bin(n, seed=0):
    base = bytes((i * 31 + seed) & 0xFF for i in range(1021))
    return (base * (n // len(base) + 1))[:n]


def random_bin(n, seed):
    return random.Random(seed).randbytes(n)


def utf8_text(n, seed=0):
    """About n bytes of valid UTF-8 with 1- to 4-byte characters, cut at a
    character boundary."""
    chars = "aκόσμε€𤭢ü ä\u00a2\U0001f600z"
    s = "".join(chars[(i * 5 + seed) % len(chars)] for i in range(n))
    b = s.encode()[:n]
    return b.decode("utf-8", "ignore").encode()


def words_text(n, seed=0):
    rnd = random.Random(seed)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"frame", b"deflate", b"window", b"lua",
             b"broker", b"echo", b"message", b"socket"]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + b" "
    return bytes(out[:n])


# ---------------------------------------------------------------- event helpers

def T(payload):
    """Expected echo of a text message."""
    return ("message", "text", payload if isinstance(payload, bytes) else payload.encode())


def B(payload):
    return ("message", "binary", payload)


def P(payload=b""):
    """Expected pong."""
    return ("pong", payload)


def A(name):
    """A mark: the server reached this point while the client was still open."""
    return ("mark", name)


def project(evs, kind):
    """Messages (kind "message") or pongs, each with the marks."""
    return [e for e in evs if e[0] == "mark" or (e[0] == "message") == (kind == "message")]


def same(evs, exp):
    """RFC 6455 orders messages among themselves and pongs among themselves,
    not a pong relative to an echo (the broker answers pings at once, echoes
    take a round trip through the script): compare the two sequences apart,
    each with the marks that record what we had sent by then."""
    return all(project(evs, k) == project(exp, k) for k in ("message", "pong"))


def show(ev):
    if ev[0] == "message":
        p = ev[2]
        body = p[:24].hex() + ("..." if len(p) > 24 else "")
        return "%s(%d bytes %s)" % (ev[1], len(p), body)
    if ev[0] == "pong":
        return "pong(%s)" % ev[1][:16].hex()
    return "%s(%s)" % ev[:2]


# ---------------------------------------------------------------- the cases

class Case:
    """One test case. run(c) is a coroutine that sets expectations with
    c.expect(...) and sends; handshake(c), when given, replaces the whole
    exchange (for handshake faults)."""

    def __init__(self, cid, desc, run=None, opts=None, connect="ok", timeout=5.0, ext=None,
                 pmd=None, offer=None, handshake=None, note=None, extra_head=b"",
                 after_head=b"", raw_head=None, want_comp=None, fail_match=None):
        self.cid = cid  # Autobahn-style id, "6.4.1"
        self.group = cid.split(".")[0]
        self.desc = desc  # what is sent and what must happen
        self.run = run  # async def run(c) for normal cases
        self.opts = opts or {}  # websocket.connect options for the client
        self.connect = connect  # "ok" or "fail": what websocket.connect must return
        self.timeout = timeout  # seconds to wait for the expected outcome
        self.ext = ext  # Sec-WebSocket-Extensions value we answer with (None: none)
        self.pmd = pmd  # deflate settings when ext accepts permessage-deflate
        self.offer = offer  # substring the client's extension offer must contain
        self.handshake = handshake  # async def handshake(c) replacing the exchange
        self.note = note  # why a case is judged as it is (shown in reports)
        self.extra_head = extra_head  # extra header lines in our 101 response
        self.after_head = after_head  # bytes written together with the 101 response
        self.raw_head = raw_head  # fn(conn) -> the whole 101 response, replacing ours
        self.want_comp = want_comp  # echoes that must come compressed (None: not checked)
        self.fail_match = fail_match  # regex the connect error must match (connect="fail")
        self.n = 0  # 1-based number (path /case/N)


CASES = []


def add(*a, **kw):
    c = Case(*a, **kw)
    c.n = len(CASES) + 1
    CASES.append(c)
    return c


def echo_case(cid, desc, msgs, sender, **kw):
    """A case whose only expectation is the echo of msgs (then we close 1000)."""

    async def run(c):
        c.expect([T(p) if t == "text" else B(p) for t, p in msgs])
        await sender(c)

    return add(cid, desc, run, **kw)


# ---- group 1: framing

def g1():
    sizes = [0, 125, 126, 127, 128, 65535, 65536]
    for kind, sub in (("text", 1), ("binary", 2)):
        for i, n in enumerate(sizes):
            p = pattern_text(n) if kind == "text" else pattern_bin(n)

            async def send(c, p=p, kind=kind):
                await c.send_frame(OP_TEXT if kind == "text" else OP_BINARY, p)

            echo_case("1.%d.%d" % (sub, i + 1), "%s message of %d bytes in one frame" % (kind, n),
                      [(kind, p)], send)
        p = pattern_text(65536) if kind == "text" else pattern_bin(65536)

        async def send_chopped(c, p=p, kind=kind):
            await c.send_raw(frame(OP_TEXT if kind == "text" else OP_BINARY, p), chop=997)

        echo_case("1.%d.8" % sub, "%s message of 65536 bytes, written in 997-byte TCP chunks" % kind,
                  [(kind, p)], send_chopped)

    async def masked(c):
        c.expect([], close=("client", {1002}))
        await c.send_raw(frame(OP_TEXT, b"masked", mask=b"\x01\x02\x03\x04"))
        await c.send_frame(OP_PING, b"after")

    add("1.3.1", "a masked frame from the server -> fail 1002, no pong for the ping after it",
        masked)

    async def hugelen(c):
        c.expect([], close=("client", {1002, 1009}))
        await c.send_raw(frame(OP_BINARY, b"", length=1 << 63, len_form=64))

    add("1.3.2", "64-bit length with the most significant bit set -> fail (1002 or 1009)",
        hugelen)

    async def nonminimal(c):
        c.expect([T("short"), B(b"\x01\x02")])
        await c.send_raw(frame(OP_TEXT, b"short", len_form=16))
        await c.send_raw(frame(OP_BINARY, b"\x01\x02", len_form=64))

    add("1.3.3", "lengths in a longer form than needed (16/64-bit for 5/2 bytes) are accepted",
        nonminimal, note="RFC 6455 5.2 obliges the sender to use the minimal form but asks "
        "nothing of the receiver; accepting is what Autobahn's echo expectation needs")

    async def zero_frames(c):
        c.expect([T("abc")])
        await c.send_frame(OP_TEXT, b"", fin=False)
        await c.send_frame(OP_CONT, b"", fin=False)
        await c.send_frame(OP_CONT, b"abc", fin=False)
        await c.send_frame(OP_CONT, b"", fin=True)

    add("1.3.4", "text message made of empty frames around one 3-byte frame", zero_frames)


# ---- group 2: pings and pongs

def g2():
    async def ping_case(c, payloads, chop=None, gap=0.0):
        c.expect([P(p) for p in payloads])
        for p in payloads:
            await c.send_raw(frame(OP_PING, p), chop=chop)
            if gap:
                await asyncio.sleep(gap)

    async def c21(c):
        await ping_case(c, [b""])

    async def c22(c):
        await ping_case(c, [b"Hello, world!"])

    async def c23(c):
        await ping_case(c, [b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"])

    async def c24(c):
        await ping_case(c, [pattern_bin(125)])

    async def c25(c):
        c.expect([], close=("client", {1002}))
        await c.send_raw(frame(OP_PING, pattern_bin(126)))

    async def c26(c):
        await ping_case(c, [pattern_bin(125)], chop=1)

    async def c27(c):
        c.expect([])
        await c.send_frame(OP_PONG, b"")

    async def c28(c):
        c.expect([])
        await c.send_frame(OP_PONG, b"unsolicited pong payload")

    async def c29(c):
        c.expect([P(b"ping payload")])
        await c.send_frame(OP_PONG, b"unsolicited pong payload")
        await c.send_frame(OP_PING, b"ping payload")

    async def c210(c):
        await ping_case(c, [b"payload-%d" % i for i in range(10)])

    async def c211(c):
        await ping_case(c, [b"payload-%d" % i for i in range(10)], chop=1, gap=0.001)

    async def c212(c):
        c.expect([P(b"p%d" % i) for i in range(5)] + [T(b"between pings")])
        data = b"".join(frame(OP_PING, b"p%d" % i) for i in range(3))
        data += frame(OP_TEXT, b"between ", fin=False) + frame(OP_PING, b"p3")
        data += frame(OP_PING, b"p4") + frame(OP_CONT, b"pings")
        await c.send_raw(data)

    add("2.1", "ping without payload -> pong without payload", c21)
    add("2.2", "ping with a text payload -> pong with it", c22)
    add("2.3", "ping with a binary payload -> pong with it", c23)
    add("2.4", "ping with 125 bytes -> pong with them", c24)
    add("2.5", "ping with 126 bytes (control frame too long) -> fail 1002", c25)
    add("2.6", "ping with 125 bytes written one byte at a time -> pong", c26)
    add("2.7", "unsolicited pong without payload -> nothing", c27)
    add("2.8", "unsolicited pong with payload -> nothing", c28)
    add("2.9", "unsolicited pong, then ping -> one pong for the ping", c29)
    add("2.10", "10 pings in one write -> 10 pongs in order", c210)
    add("2.11", "10 pings written byte by byte with 1 ms gaps -> 10 pongs in order", c211)
    add("2.12", "5 pings, two of them inside a fragmented text message, one write -> 5 pongs and "
        "the echo", c212)


# ---- group 3: reserved bits

def g3():
    async def r31(c):
        c.expect([], close=("client", {1002}))
        await c.send_frame(OP_TEXT, b"Hello, world!", rsv=4)

    def echo_then(rsv, op, payload, chop=None, sync=False):
        async def run(c):
            c.expect([T("Hello, world!")], non_strict=[[]], close=("client", {1002}))
            data = [frame(OP_TEXT, b"Hello, world!"), frame(op, payload, rsv=rsv),
                    frame(OP_PING, b"")]
            if sync:
                await c.send_raw(data[0])
                await c.wait_for_events(1, 1.0)
                await c.send_raw(data[1] + data[2], chop=chop)
            else:
                await c.send_raw(b"".join(data), chop=chop)

        return run

    async def r36(c):
        c.expect([], close=("client", {1002}))
        await c.send_frame(OP_PING, b"Hello, world!", rsv=6)

    async def r37(c):
        c.expect([], close=("client", {1002}))
        await c.send_raw(frame(OP_CLOSE, close_payload(1000), rsv=7))

    add("3.1", "text with RSV=1 (no extension) -> fail 1002", r31)
    add("3.2", "text, text with RSV=2, ping in one write -> echo of the first (or not), fail "
        "1002, no pong", echo_then(2, OP_TEXT, b"Hello, world!"))
    add("3.3", "same with RSV=3, the bad frame sent after the echo came back", echo_then(
        3, OP_TEXT, b"Hello, world!", sync=True))
    add("3.4", "same with RSV=4, written one byte at a time", echo_then(
        4, OP_TEXT, b"Hello, world!", chop=1))
    add("3.5", "binary with RSV=5 after a good text -> fail 1002",
        echo_then(5, OP_BINARY, b"\x00\xff\xfe\xfd"))
    add("3.6", "ping with RSV=6 -> fail 1002, no pong", r36)
    add("3.7", "close with RSV=7 -> fail 1002", r37)


# ---- group 4: reserved opcodes

def g4():
    def bad_op(op, payload, with_text):
        async def run(c):
            if with_text:
                c.expect([T("Hello, world!")], non_strict=[[]], close=("client", {1002}))
                await c.send_raw(frame(OP_TEXT, b"Hello, world!") + frame(op, payload) +
                                 frame(OP_PING, b""))
            else:
                c.expect([], close=("client", {1002}))
                await c.send_raw(frame(op, payload))

        return run

    for sub, ops in ((1, [3, 4, 5, 6, 7]), (2, [11, 12, 13, 14, 15])):
        for i, op in enumerate(ops):
            payload = b"" if i == 0 else b"reserved opcode payload"
            with_text = i >= 2
            add("4.%d.%d" % (sub, i + 1), "frame with reserved opcode %d%s -> fail 1002%s" % (
                op, " and payload" if payload else "",
                ", after an echoed text; no pong for the ping after it" if with_text else ""),
                bad_op(op, payload, with_text))


# ---- group 5: fragmentation

def g5():
    async def f51(c):
        c.expect([], close=("client", {1002}))
        await c.send_raw(frame(OP_PING, b"frag", fin=False) + frame(OP_CONT, b"mented"))

    async def f52(c):
        c.expect([], close=("client", {1002}))
        await c.send_raw(frame(OP_PONG, b"frag", fin=False) + frame(OP_CONT, b"mented"))

    def two_frags(chop, ping):
        async def run(c):
            c.expect(([P(b"ping in between")] if ping else []) + [T("fragment1fragment2")])
            data = frame(OP_TEXT, b"fragment1", fin=False)
            if ping:
                data += frame(OP_PING, b"ping in between")
            data += frame(OP_CONT, b"fragment2")
            await c.send_raw(data, chop=chop)

        return run

    def orphan_cont(fin, chop):
        async def run(c):
            c.expect([], close=("client", {1002}))
            data = frame(OP_CONT, b"non-continuation payload", fin=fin)
            data += frame(OP_TEXT, b"Hello, world!")
            await c.send_raw(data, chop=chop)

        return run

    async def f515(c):
        c.expect([T("fragment1fragment2")], non_strict=[[]], close=("client", {1002}))
        await c.send_raw(frame(OP_TEXT, b"fragment1", fin=False) + frame(OP_CONT, b"fragment2") +
                         frame(OP_CONT, b"fragment3", fin=False) + frame(OP_TEXT, b"fragment4"))

    def f516_17(first_fin):
        async def run(c):
            c.expect([], close=("client", {1002}))
            await c.send_raw(frame(OP_CONT, b"fragment1", fin=first_fin) +
                             frame(OP_TEXT, b"fragment2", fin=False) + frame(OP_CONT, b"fragment3"))

        return run

    async def f518(c):
        c.expect([], close=("client", {1002}))
        await c.send_raw(frame(OP_TEXT, b"fragment1", fin=False) + frame(OP_TEXT, b"fragment2"))

    def f519(chop):
        async def run(c):
            c.expect([P(b"pongme 1!"), A("wait"), P(b"pongme 2!"),
                      T("fragment1fragment2fragment3fragment4fragment5")])
            await c.send_raw(frame(OP_TEXT, b"fragment1", fin=False), chop=chop)
            await c.send_raw(frame(OP_CONT, b"fragment2", fin=False), chop=chop)
            await c.send_raw(frame(OP_PING, b"pongme 1!"), chop=chop)
            await c.wait_for_events(1, 1.0)
            c.mark("wait")
            await c.send_raw(frame(OP_CONT, b"fragment3", fin=False), chop=chop)
            await c.send_raw(frame(OP_PING, b"pongme 2!"), chop=chop)
            await c.send_raw(frame(OP_CONT, b"fragment4", fin=False), chop=chop)
            await c.send_raw(frame(OP_CONT, b"fragment5"), chop=chop)

        return run

    async def f521(c):
        c.expect([], close=("client", {1002}))
        await c.send_raw(frame(OP_TEXT, b"frag", fin=False) + frame(OP_BINARY, b"other"))

    async def f522(c):
        c.expect([B(b"\x01\x02\x03\x04\x05\x06")])
        await c.send_raw(frame(OP_BINARY, b"\x01\x02", fin=False) + frame(OP_CONT, b"\x03\x04", fin=False) +
                         frame(OP_CONT, b"\x05\x06"))

    async def f523(c):
        c.expect([], close=("client", {1002}))
        await c.send_raw(frame(OP_TEXT, b"frag", fin=False) +
                         frame(OP_CLOSE, close_payload(1000), fin=False))

    add("5.1", "ping in 2 fragments -> fail 1002", f51)
    add("5.2", "pong in 2 fragments -> fail 1002", f52)
    add("5.3", "text in 2 fragments -> one echo", two_frags(None, False))
    add("5.4", "text in 2 fragments, written in 3-byte TCP chunks", two_frags(3, False))
    add("5.5", "text in 2 fragments, written byte by byte", two_frags(1, False))
    add("5.6", "text in 2 fragments with a ping between -> pong, then the echo",
        two_frags(None, True))
    add("5.7", "same, written in 3-byte chunks", two_frags(3, True))
    add("5.8", "same, written byte by byte", two_frags(1, True))
    add("5.9", "continuation (fin) without a message in progress -> fail 1002",
        orphan_cont(True, None))
    add("5.10", "same, written in 3-byte chunks", orphan_cont(True, 3))
    add("5.11", "same, written byte by byte", orphan_cont(True, 1))
    add("5.12", "continuation (not fin) without a message in progress -> fail 1002",
        orphan_cont(False, None))
    add("5.13", "same, written in 3-byte chunks", orphan_cont(False, 3))
    add("5.14", "same, written byte by byte", orphan_cont(False, 1))
    add("5.15", "complete fragmented text, then a stray continuation -> echo (or not), fail 1002",
        f515)
    add("5.16", "continuation, then a fragmented text -> fail 1002 at the first frame",
        f516_17(False))
    add("5.17", "final continuation, then a fragmented text -> fail 1002", f516_17(True))
    add("5.18", "text fragment followed by a new text frame -> fail 1002", f518)
    add("5.19", "text in 5 fragments with 2 pings between and a pause -> pongs at once, echo",
        f519(None))
    add("5.20", "same, every frame written in 3-byte chunks", f519(3))
    add("5.21", "binary frame while a text message is in progress -> fail 1002", f521)
    add("5.22", "binary in 3 fragments -> one echo", f522)
    add("5.23", "fragmented close (fin clear) inside a text message -> fail 1002", f523)


# ---- group 6: UTF-8

def utf8_vectors():
    """(description, [(valid, bytes)]) in the categories of Markus Kuhn's
    UTF-8 decoder stress test, written out here."""
    groups = []
    good = "κόσμε".encode()
    groups.append(("valid sequences", [(True, b"hello$world"), (True, b"hello\xc2\xa2world"),
                                       (True, b"hello\xe2\x82\xacworld"),
                                       (True, b"hello\xf0\xa4\xad\xa2world"), (True, good)]))
    pre = []
    for i in range(1, len(good) + 1):
        s = good[:i]
        try:
            s.decode("utf-8")
            pre.append((True, s))
        except UnicodeDecodeError:
            pre.append((False, s))
    groups.append(("all prefixes of a valid multi-byte string", pre))
    groups.append(("first sequence of each length", [
        (True, b"\x00"), (True, b"\xc2\x80"), (True, b"\xe0\xa0\x80"), (True, b"\xf0\x90\x80\x80"),
        (False, b"\xf8\x88\x80\x80\x80"), (False, b"\xfc\x84\x80\x80\x80\x80")]))
    groups.append(("last sequence of each length", [
        (True, b"\x7f"), (True, b"\xdf\xbf"), (True, b"\xef\xbf\xbf"), (True, b"\xf4\x8f\xbf\xbf"),
        (False, b"\xf7\xbf\xbf\xbf"), (False, b"\xfb\xbf\xbf\xbf\xbf"),
        (False, b"\xfd\xbf\xbf\xbf\xbf\xbf")]))
    groups.append(("boundary code points", [
        (True, b"\xed\x9f\xbf"), (True, b"\xee\x80\x80"), (True, b"\xef\xbf\xbd"),
        (True, b"\xf4\x8f\xbf\xbf"), (False, b"\xf4\x90\x80\x80")]))
    cont = [(False, bytes([0x80, 0xbf, 0x80, 0xbf, 0x80, 0xbf][:k])) for k in range(1, 7)]
    cont.insert(1, (False, b"\xbf"))
    cont.append((False, bytes(range(0x80, 0xc0))))
    groups.append(("unexpected continuation bytes", cont))
    lonely = []
    for lo, hi in ((0xc0, 0xe0), (0xe0, 0xf0), (0xf0, 0xf8), (0xf8, 0xfc), (0xfc, 0xfe)):
        lonely.append((False, b"".join(bytes([b, 0x20]) for b in range(lo, hi))))
    groups.append(("lonely start bytes followed by a space", lonely))
    missing = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80", b"\xfc\x80\x80\x80\x80",
               b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    groups.append(("sequences missing their last byte", [(False, s) for s in missing]))
    groups.append(("concatenated incomplete sequences", [(False, b"".join(missing))]))
    groups.append(("impossible bytes", [(False, b"\xfe"), (False, b"\xff"),
                                        (False, b"\xfe\xfe\xff\xff")]))
    groups.append(("overlong slash", [
        (False, b"\xc0\xaf"), (False, b"\xe0\x80\xaf"), (False, b"\xf0\x80\x80\xaf"),
        (False, b"\xf8\x80\x80\x80\xaf"), (False, b"\xfc\x80\x80\x80\x80\xaf")]))
    groups.append(("maximum overlong forms", [
        (False, b"\xc1\xbf"), (False, b"\xe0\x9f\xbf"), (False, b"\xf0\x8f\xbf\xbf"),
        (False, b"\xf8\x87\xbf\xbf\xbf"), (False, b"\xfc\x83\xbf\xbf\xbf\xbf")]))
    groups.append(("overlong NUL", [
        (False, b"\xc0\x80"), (False, b"\xe0\x80\x80"), (False, b"\xf0\x80\x80\x80"),
        (False, b"\xf8\x80\x80\x80\x80"), (False, b"\xfc\x80\x80\x80\x80\x80")]))
    groups.append(("single UTF-16 surrogates", [(False, bytes([0xed, a, b])) for a, b in (
        (0xa0, 0x80), (0xad, 0xbf), (0xae, 0x80), (0xaf, 0xbf), (0xb0, 0x80), (0xbe, 0x80),
        (0xbf, 0xbf))]))
    hi_s = [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf"]
    lo_s = [b"\xed\xb0\x80", b"\xed\xbf\xbf"]
    groups.append(("paired UTF-16 surrogates", [(False, h + l) for h in hi_s for l in lo_s]))
    nonchar = [(True, b"\xef\xbf\xbe"), (True, b"\xef\xbf\xbf")]
    for lead in (0xf0, 0xf1, 0xf2, 0xf3, 0xf4):
        for second in (0x8f, 0x9f, 0xaf, 0xbf):
            if lead == 0xf4 and second != 0x8f:
                continue
            if lead == 0xf0 and second == 0x8f:
                continue  # overlong
            for last in (0xbe, 0xbf):
                nonchar.append((True, bytes([lead, second, 0xbf, last])))
    groups.append(("non-characters (valid UTF-8)", nonchar))
    groups.append(("specials (valid)", [(True, bytes([0xef, 0xbf, b])) for b in range(0xb9, 0xc0)]))
    return groups


def g6():
    async def e611(c):
        c.expect([T(b"")])
        await c.send_frame(OP_TEXT, b"")

    async def e612(c):
        c.expect([T(b"")])
        await c.send_raw(frame(OP_TEXT, b"", fin=False) + frame(OP_CONT, b"", fin=False) +
                         frame(OP_CONT, b""))

    async def e613(c):
        c.expect([T(b"middle")])
        await c.send_raw(frame(OP_TEXT, b"", fin=False) + frame(OP_CONT, b"middle", fin=False) +
                         frame(OP_CONT, b""))

    add("6.1.1", "empty text message", e611)
    add("6.1.2", "text message of 3 empty fragments", e612)
    add("6.1.3", "text of fragments empty, 'middle', empty", e613)

    hello = "Hello-µ@ßöäüàá-UTF-8!!".encode()
    good = "κόσμε".encode()

    async def e621(c):
        c.expect([T(hello)])
        await c.send_frame(OP_TEXT, hello)

    async def e622(c):
        c.expect([T(hello)])
        await c.send_raw(frame(OP_TEXT, hello[:12], fin=False) + frame(OP_CONT, hello[12:]))

    def per_byte(p):
        async def run(c):
            c.expect([T(p)])
            data = b"".join(frame(OP_TEXT if i == 0 else OP_CONT, p[i:i + 1], fin=i == len(p) - 1)
                            for i in range(len(p)))
            await c.send_raw(data)

        return run

    add("6.2.1", "valid UTF-8 in one frame", e621)
    add("6.2.2", "valid UTF-8 in 2 fragments split at a code point boundary", e622)
    add("6.2.3", "valid UTF-8 in 1-byte fragments (code points split across frames)",
        per_byte(hello))
    add("6.2.4", "valid 2-byte UTF-8 in 1-byte fragments", per_byte(good * 3))

    bad = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"

    async def e631(c):
        c.expect([], close=("client", {1007}))
        await c.send_frame(OP_TEXT, bad)

    async def e632(c):
        c.expect([], close=("client", {1007}))
        data = b"".join(frame(OP_TEXT if i == 0 else OP_CONT, bad[i:i + 1], fin=i == len(bad) - 1)
                        for i in range(len(bad)))
        await c.send_raw(data)

    add("6.3.1", "invalid UTF-8 (a surrogate) in one frame -> fail 1007", e631)
    add("6.3.2", "same in 1-byte fragments -> fail 1007", e632)

    part1 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
    rest = b"edited"

    def fast_frames(p1, p2, p3):
        async def run(c):
            c.expect([A("A")], non_strict=[[A("A"), A("B")]], close=("client", {1007}))
            await c.send_frame(OP_TEXT, p1, fin=False)
            if not await c.wait_quiet(0.3):
                return
            c.mark("A")
            await c.send_frame(OP_CONT, p2, fin=False)
            if not await c.wait_quiet(0.5):
                return
            c.mark("B")
            await c.send_frame(OP_CONT, p3)

        return run

    def fast_chunks(p1, p2, p3):
        async def run(c):
            c.expect([A("A")], non_strict=[[A("A"), A("B")]], close=("client", {1007}))
            whole = frame(OP_TEXT, p1 + p2 + p3)
            k1 = len(whole) - len(p2) - len(p3)
            await c.send_raw(whole[:k1])
            if not await c.wait_quiet(0.3):
                return
            c.mark("A")
            await c.send_raw(whole[k1:k1 + len(p2)])
            if not await c.wait_quiet(0.5):
                return
            c.mark("B")
            await c.send_raw(whole[k1 + len(p2):])

        return run

    async def e645(c):
        c.expect([], non_strict=[[A("A")]], close=("client", {1007}))
        await c.send_frame(OP_TEXT, b"ok so far \xff", fin=False)
        if not await c.wait_quiet(0.5):
            return
        c.mark("A")
        await c.send_frame(OP_CONT, b"rest")

    add("6.4.1", "3 fragments, the 2nd completes an invalid code point (U+110000): fail 1007 "
        "before the 3rd is sent", fast_frames(part1, b"\xf4\x90\x80\x80", rest))
    add("6.4.2", "3 fragments: the 1st ends in a lead byte F4, the 2nd begins with 90 (invalid "
        "after F4): fail 1007 before the 3rd", fast_frames(part1 + b"\xf4", b"\x90\x80\x80", rest))
    add("6.4.3", "one frame written in 3 TCP chunks, the 2nd has the invalid code point: fail "
        "1007 before the rest of the frame arrives", fast_chunks(part1, b"\xf4\x90\x80\x80", rest))
    add("6.4.4", "same, the 2nd chunk is only the one invalid byte 90 after F4",
        fast_chunks(part1 + b"\xf4", b"\x90", b"\x80\x80" + rest))
    add("6.4.5", "invalid byte in the first fragment of a longer message: fail 1007 before the "
        "next fragment", e645)

    sub = 5
    for desc, vecs in utf8_vectors():
        for j, (valid, p) in enumerate(vecs):
            if valid:
                async def run(c, p=p):
                    c.expect([T(p)])
                    await c.send_frame(OP_TEXT, p)
            else:
                async def run(c, p=p):
                    c.expect([], close=("client", {1007}))
                    await c.send_frame(OP_TEXT, p)
            add("6.%d.%d" % (sub, j + 1), "%s: %s %s" % (
                desc, "valid, echoed:" if valid else "invalid -> fail 1007:", p[:16].hex()), run)
        sub += 1

    # The same invalid vectors split in two fragments at every offset that
    # cuts into the bad sequence: detection must not depend on frame borders.
    splits = [b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\xaf", b"\xc0\x80", b"ab\xc2"]
    for j, s in enumerate(splits):
        async def run(c, s=s):
            c.expect([], close=("client", {1007}))
            data = b"pre" + s + b"post"
            k = 3 + len(s) // 2 + 1
            await c.send_raw(frame(OP_TEXT, data[:k], fin=False) + frame(OP_CONT, data[k:]))
        add("6.%d.%d" % (sub, j + 1), "invalid %s split across 2 fragments -> fail 1007" % s.hex(),
            run)


# ---- group 7: close handling

def g7():
    async def c711(c):
        c.expect([T("Hello World!")])
        await c.send_frame(OP_TEXT, b"Hello World!")

    async def c712(c):
        c.expect([], close=("server", {1000}))
        await c.send_raw(frame(OP_CLOSE, close_payload(1000)) * 2)
        c.closed_by_us()

    async def c713(c):
        c.expect([], close=("server", {1000}))
        await c.send_raw(frame(OP_CLOSE, close_payload(1000)) + frame(OP_PING, b"after close"))
        c.closed_by_us()

    async def c714(c):
        c.expect([], close=("server", {1000}))
        await c.send_raw(frame(OP_CLOSE, close_payload(1000)) + frame(OP_TEXT, b"after close"))
        c.closed_by_us()

    async def c715(c):
        c.expect([], close=("server", {1000}))
        await c.send_raw(frame(OP_TEXT, b"fragment1", fin=False) +
                         frame(OP_CLOSE, close_payload(1000)) + frame(OP_CONT, b"fragment2"))
        c.closed_by_us()

    async def c716(c):
        big = pattern_text(262144)
        c.expect([T(big), T(b"Hello World!")], non_strict=[[T(big)], []],
                 close=("server", {1000}))
        await c.send_raw(frame(OP_TEXT, big) + frame(OP_TEXT, b"Hello World!") +
                         frame(OP_CLOSE, close_payload(1000)) + frame(OP_PING, b""))
        c.closed_by_us()

    add("7.1.1", "text, then we close 1000 -> echo, close 1000", c711)
    add("7.1.2", "two close frames -> exactly one close back", c712)
    add("7.1.3", "close, then ping -> close back, no pong", c713)
    add("7.1.4", "close, then text -> close back, no echo", c714)
    add("7.1.5", "text fragment, close, last fragment -> close back, no echo", c715)
    add("7.1.6", "256 KiB text, small text, close, ping in one write -> echoes if the script was "
        "fast enough, close back, no pong", c716,
        note="the close arrives in the same write, so the client may be closed before the script "
        "echoes: missing echoes are non-strict, as in Autobahn (informational there)")

    def close_with(payload, codes, by="server"):
        async def run(c):
            c.expect([], close=(by, codes))
            await c.send_raw(frame(OP_CLOSE, payload))
            if by == "server":
                c.closed_by_us()

        return run

    add("7.3.1", "close with empty payload -> close back (empty or 1000)",
        close_with(b"", {None, 1000}))
    add("7.3.2", "close with a 1-byte payload -> fail 1002", close_with(b"\x03", {1002}, "client"))
    add("7.3.3", "close 1000 without reason -> close 1000", close_with(close_payload(1000), {1000}))
    add("7.3.4", "close 1000 with a 123-byte reason -> close 1000",
        close_with(close_payload(1000, b"r" * 123), {1000}))
    add("7.3.5", "close 1000 with a 124-byte reason (payload 126) -> fail 1002",
        close_with(close_payload(1000, b"r" * 124), {1002}, "client"))
    add("7.3.6", "close 1000 with an invalid UTF-8 reason -> fail 1007",
        close_with(close_payload(1000, b"bad \xed\xa0\x80 reason"), {1007}, "client"))
    add("7.5.1", "close 1000 with a reason that ends in a truncated sequence -> fail 1007",
        close_with(close_payload(1000, b"cut \xce"), {1007}, "client"))

    valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
             4000, 4999]
    for i, code in enumerate(valid):
        add("7.7.%d" % (i + 1), "close with valid code %d -> close back (1000 or %d)" % (code, code),
            close_with(close_payload(code, b"bye"), {1000, code}))
    invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999]
    for i, code in enumerate(invalid):
        add("7.9.%d" % (i + 1), "close with invalid code %d -> fail 1002" % code,
            close_with(close_payload(code), {1002}, "client"))
    for i, code in enumerate([5000, 65535]):
        add("7.13.%d" % (i + 1), "close with out-of-range code %d -> fail 1002" % code,
            close_with(close_payload(code), {1002}, "client"))

    async def c7141(c):
        c.expect([T("first")], close=("server", {1000}))
        await c.send_frame(OP_TEXT, b"first")
        await c.wait_for_events(1, 2.0)
        await c.send_raw(frame(OP_CLOSE, close_payload(1000)))
        c.closed_by_us()
        await c.wait_client_done(2.0)
        await c.send_raw(frame(OP_TEXT, b"after close handshake"), ignore_errors=True)

    add("7.14.1", "data after the close handshake is ignored (client sends nothing more)", c7141)


# ---- group 9: limits and large messages

MB = 1 << 20


def g9():
    sizes = [64 << 10, 256 << 10, MB, 4 * MB, 8 * MB, 16 * MB]
    for sub, kind in ((1, "text"), (2, "binary")):
        for i, n in enumerate(sizes):
            def run(c, n=n, kind=kind):
                p = pattern_text(n) if kind == "text" else pattern_bin(n)

                async def go():
                    c.expect([T(p) if kind == "text" else B(p)])
                    await c.send_frame(OP_TEXT if kind == "text" else OP_BINARY, p)

                return go()

            add("9.%d.%d" % (sub, i + 1), "%s message of %d KiB in one frame, echoed" % (
                kind, n >> 10), run, timeout=30.0)
    frags = [64, 256, 1024, 4096, 16384, 65536, 262144, MB, 4 * MB]
    for sub, kind in ((3, "text"), (4, "binary")):
        for i, fs in enumerate(frags):
            total = 4 * MB if fs >= 4096 else MB

            def run(c, fs=fs, kind=kind, total=total):
                p = pattern_text(total) if kind == "text" else pattern_bin(total)

                async def go():
                    c.expect([T(p) if kind == "text" else B(p)])
                    await c.send_msg(p, binary=kind == "binary", frag_size=fs)

                return go()

            add("9.%d.%d" % (sub, i + 1), "%s message of %d KiB in fragments of %d bytes" % (
                kind, total >> 10, fs), run, timeout=30.0)
    chops = [64, 128, 256, 512, 1024, 2048, 4096]
    for sub, kind in ((5, "text"), (6, "binary")):
        for i, ch in enumerate(chops):
            def run(c, ch=ch, kind=kind):
                p = pattern_text(256 << 10) if kind == "text" else pattern_bin(256 << 10)

                async def go():
                    c.expect([T(p) if kind == "text" else B(p)])
                    await c.send_raw(frame(OP_TEXT if kind == "text" else OP_BINARY, p), chop=ch,
                                     delay=0)

                return go()

            add("9.%d.%d" % (sub, i + 1), "256 KiB %s message written in %d-byte TCP chunks" % (
                kind, ch), run, timeout=30.0)
    for sub, kind in ((7, "text"), (8, "binary")):
        for i, n in enumerate([0, 16, 64, 256, 1024, 4096]):
            async def run(c, n=n, kind=kind):
                p = pattern_text(n) if kind == "text" else pattern_bin(n)
                c.expect([T(p) if kind == "text" else B(p)] * 100)
                for k in range(100):
                    await c.send_frame(OP_TEXT if kind == "text" else OP_BINARY, p)
                    await c.wait_for_events(k + 1, 2.0)

            add("9.%d.%d" % (sub, i + 1), "100 round trips of a %d-byte %s message, each waiting "
                "for its echo" % (n, kind), run, timeout=30.0)

    # Our read_limit (websocket.connect option) on the same wire.
    def lim(n, kind="text", limit=1024, frags=None, ok=True, comp=None):
        async def run(c):
            p = pattern_text(n) if kind == "text" else pattern_bin(n)
            if ok:
                c.expect([T(p) if kind == "text" else B(p)])
            else:
                c.expect([], close=("client", {1009}))
            await c.send_msg(p, binary=kind == "binary", frag_size=frags, compress=comp)

        return run

    add("9.9.1", "read_limit 1024: text of exactly 1024 bytes is echoed", lim(1024),
        opts={"read_limit": 1024})
    add("9.9.2", "read_limit 1024: text of 1025 bytes -> fail 1009", lim(1025, ok=False),
        opts={"read_limit": 1024})
    add("9.9.3", "read_limit 1024: binary of 1024 in 4 fragments is echoed",
        lim(1024, "binary", frags=256), opts={"read_limit": 1024})

    async def over_frag(c):
        c.expect([A("A")], non_strict=[[A("A"), A("B")]], close=("client", {1009}))
        for _ in range(3):
            await c.send_frame(OP_BINARY if _ == 0 else OP_CONT, pattern_bin(300), fin=False)
        if not await c.wait_quiet(0.3):
            return
        c.mark("A")
        await c.send_raw(frame(OP_CONT, pattern_bin(300), fin=False)[:50])
        if not await c.wait_quiet(0.5):
            return
        c.mark("B")
        await c.send_raw(frame(OP_CONT, pattern_bin(300), fin=False)[50:] +
                         frame(OP_CONT, b"end"))

    add("9.9.4", "read_limit 1024: 3 fragments of 300, then a 4th whose header crosses the limit: "
        "fail 1009 on that header, before its payload", over_frag, opts={"read_limit": 1024})

    async def bomb(c):
        c.expect([], close=("client", {1009}))
        await c.send_msg(bytes(10 * MB), binary=True, compress=True)

    add("9.9.5", "read_limit 65536, deflate: a 10 KiB deflate bomb inflating to 10 MiB -> fail "
        "1009", bomb, opts={"read_limit": 65536, "compression": 1}, ext="permessage-deflate",
        pmd={}, offer="permessage-deflate")
    add("9.9.6", "read_limit 65536, deflate: compressed text of exactly 65536 bytes after "
        "inflating is echoed", lim(65536, comp=True),
        opts={"read_limit": 65536, "compression": 1}, ext="permessage-deflate", pmd={},
        offer="permessage-deflate")
    add("9.9.7", "default read_limit (16 MiB): binary of 16 MiB + 1 -> fail 1009",
        lim(16 * MB + 1, "binary", ok=False), timeout=30.0)


# ---- groups 12 and 13: permessage-deflate

def deflate_case(cid, desc, msgs, opts, ext, pmd, frag_size=None, uncompressed_every=0, **kw):
    """Echo case with deflate negotiated: every server message compressed
    (except every k-th when uncompressed_every=k), echoes checked."""

    async def run(c):
        c.expect([T(p) if t == "text" else B(p) for t, p in msgs])
        for i, (t, p) in enumerate(msgs):
            comp = not (uncompressed_every and i % uncompressed_every == 0)
            await c.send_msg(p, binary=t == "binary", compress=comp, frag_size=frag_size)

    return add(cid, desc, run, opts=opts, ext=ext, pmd=pmd, offer="permessage-deflate",
               timeout=20.0, **kw)


def g12():
    sizes = [16, 64, 256, 1024, 4096, 16384, 65536, 131072]
    kinds = [
        ("text", words_text, "text of words", 10),
        ("binary", pattern_bin, "repetitive binary", 10),
        ("text", utf8_text, "multi-byte UTF-8 text", 10),
        ("binary", random_bin, "random (incompressible) binary", 5),
    ]
    for sub, (t, gen, name, count) in enumerate(kinds, 1):
        for i, n in enumerate(sizes):
            msgs = [(t, gen(n, k)) for k in range(count)]
            deflate_case("12.%d.%d" % (sub, i + 1), "%d compressed %s messages of %d bytes echoed "
                         "(context takeover both ways)" % (count, name, n), msgs,
                         {"compression": 1}, "permessage-deflate", {})
    for i, n in enumerate(sizes):
        msgs = [("text", words_text(n, 7))] * 10
        deflate_case("12.5.%d" % (i + 1), "10 equal texts of %d bytes, compression_threshold 1 "
                     "(the client compresses every message)" % n, msgs,
                     {"compression": 1, "compression_threshold": 1}, "permessage-deflate", {})
    for i, fs in enumerate([1, 7, 100, 4096]):
        msgs = [("text", words_text(20000, k)) for k in range(3)]
        deflate_case("12.6.%d" % (i + 1), "compressed 20000-byte texts whose deflate data is split "
                     "into frames of %d bytes (RSV1 on the first only)" % fs, msgs,
                     {"compression": 1}, "permessage-deflate", {}, frag_size=fs)
    msgs = [("text", words_text(500, k)) for k in range(10)]
    deflate_case("12.7.1", "compressed and uncompressed (RSV1 clear) messages interleaved", msgs,
                 {"compression": 1}, "permessage-deflate", {}, uncompressed_every=2)

    async def empty_comp(c):
        c.expect([T(b""), B(b""), T(b"x")])
        await c.send_msg(b"", compress=True)
        await c.send_msg(b"", binary=True, compress=True)
        await c.send_msg(b"x", compress=True)

    add("12.7.2", "empty compressed messages (payload 00: the empty stored block's header), then "
        "one with data",
        empty_comp, opts={"compression": 1}, ext="permessage-deflate", pmd={},
        offer="permessage-deflate")

    async def bfinal(c):
        msgs = [words_text(3000, k) for k in range(3)]
        c.expect([T(m) for m in msgs])
        for m in msgs:
            z = zlib.compressobj(6, zlib.DEFLATED, -15)
            await c.send_raw(frame(OP_TEXT, z.compress(m) + z.flush(zlib.Z_FINISH), rsv=4))

    add("12.7.3", "each message a complete deflate stream ending in a BFINAL block",
        bfinal, opts={"compression": 1}, ext="permessage-deflate; server_no_context_takeover",
        pmd={"server_nct": True}, offer="permessage-deflate")

    async def rsv_cont(c):
        c.expect([], close=("client", {1002}))
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        d = (z.compress(b"hello hello hello") + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
        await c.send_raw(frame(OP_TEXT, d[:5], fin=False, rsv=4) + frame(OP_CONT, d[5:], rsv=4))

    add("12.8.1", "RSV1 on a continuation frame -> fail 1002", rsv_cont,
        opts={"compression": 1}, ext="permessage-deflate", pmd={}, offer="permessage-deflate")

    async def rsv_ctrl(c):
        c.expect([], close=("client", {1002}))
        await c.send_raw(frame(OP_PING, b"x", rsv=4))

    add("12.8.2", "RSV1 on a ping -> fail 1002", rsv_ctrl, opts={"compression": 1},
        ext="permessage-deflate", pmd={}, offer="permessage-deflate")

    async def garbage(c):
        c.expect([], close=("client", {1002, 1007}))
        await c.send_raw(frame(OP_BINARY, b"\xff\xff\xff\xff\xff\xff", rsv=4))

    add("12.8.3", "corrupt deflate data -> fail (1002 or 1007)", garbage, opts={"compression": 1},
        ext="permessage-deflate", pmd={}, offer="permessage-deflate")

    async def bad_utf8(c):
        c.expect([A("A")], non_strict=[[A("A"), A("B")]], close=("client", {1007}))
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        d1 = z.compress(b"valid start " * 10) + z.flush(zlib.Z_SYNC_FLUSH)
        d2 = z.compress(b"\xed\xa0\x80 bad") + z.flush(zlib.Z_SYNC_FLUSH)
        d3 = z.compress(b"rest") + z.flush(zlib.Z_SYNC_FLUSH)
        await c.send_frame(OP_TEXT, d1, fin=False, rsv=4)
        if not await c.wait_quiet(0.3):
            return
        c.mark("A")
        await c.send_frame(OP_CONT, d2, fin=False)
        if not await c.wait_quiet(0.5):
            return
        c.mark("B")
        await c.send_frame(OP_CONT, d3[:-4])

    add("12.8.4", "compressed text whose 2nd fragment inflates to invalid UTF-8: fail 1007 before "
        "the 3rd", bad_utf8, opts={"compression": 1}, ext="permessage-deflate", pmd={},
        offer="permessage-deflate")

    async def empty_rsv1(c):
        c.expect([T(b"x")], close=("client", {1002}))
        await c.send_raw(frame(OP_TEXT, b"x"))
        await c.wait_for_events(1, 2.0)
        await c.send_raw(frame(OP_BINARY, b"", rsv=4))

    add("12.8.6", "RSV1 frame with no payload at all (the tail alone is no deflate data) -> fail "
        "1002 at that message", empty_rsv1, opts={"compression": 1}, ext="permessage-deflate",
        pmd={}, offer="permessage-deflate")

    async def truncated(c):
        c.expect([], close=("client", {1002}))
        # a complete stored block "abc" lacking the header byte of the final
        # empty block: with the tail appended, the message ends mid-block
        await c.send_raw(frame(OP_BINARY, b"\x00\x03\x00\xfc\xffabc", rsv=4))

    add("12.8.7", "compressed message whose data ends inside a deflate block (truncated) -> fail "
        "1002, nothing delivered", truncated, opts={"compression": 1}, ext="permessage-deflate",
        pmd={}, offer="permessage-deflate")

    async def rsv1_off(c):
        c.expect([], close=("client", {1002}))
        await c.send_frame(OP_TEXT, b"hello", rsv=4)

    add("12.8.5", "compression offered but declined by us (no extension header), then RSV1 -> "
        "fail 1002", rsv1_off, opts={"compression": 1}, offer="permessage-deflate")


def g13():
    sizes = [64, 4096, 65536]

    def param_cases(sub, desc, opts, ext, pmd, offer="permessage-deflate"):
        for i, n in enumerate(sizes):
            msgs = [("text", words_text(n, 3))] * 5 + [("binary", pattern_bin(n, 5))] * 5
            deflate_case("13.%d.%d" % (sub, i + 1), "%s; 10 messages of %d bytes" % (desc, n), msgs,
                         dict(opts, compression_threshold=1), ext, pmd,
                         want_comp=0 if pmd.get("client_bits") == 8 else 10)
            CASES[-1].offer = offer

    param_cases(1, "offer CONTEXT_TAKEOVER, accept plain 'permessage-deflate'",
                {"compression": 1}, "permessage-deflate", {})
    param_cases(2, "accept with server_no_context_takeover", {"compression": 1},
                "permessage-deflate; server_no_context_takeover", {"server_nct": True})
    param_cases(3, "accept with client_no_context_takeover (the client must reset: checked by "
                "inflating each echo alone)", {"compression": 1},
                "permessage-deflate; client_no_context_takeover", {"client_nct": True})
    param_cases(4, "offer NO_CONTEXT, accept both no_context_takeover", {"compression": 2},
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                {"server_nct": True, "client_nct": True},
                offer="server_no_context_takeover; client_no_context_takeover")
    sub = 5
    for bits in range(8, 16):
        param_cases(sub, "accept with server_max_window_bits=%d" % bits, {"compression": 1},
                    "permessage-deflate; server_max_window_bits=%d" % bits,
                    {"server_bits": bits})
        sub += 1
    for bits in range(8, 16):
        param_cases(sub, "accept with client_max_window_bits=%d (echoes inflated with a %d-bit "
                    "window)" % (bits, bits), {"compression": 1},
                    "permessage-deflate; client_max_window_bits=%d" % bits,
                    {"client_bits": bits}, offer="client_max_window_bits")
        sub += 1
    param_cases(sub, "server_max_window_bits=9, client_max_window_bits=9, both no context",
                {"compression": 1},
                "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9; "
                "server_no_context_takeover; client_no_context_takeover",
                {"server_bits": 9, "client_bits": 9, "server_nct": True, "client_nct": True})
    sub += 1
    param_cases(sub, "offer NO_CONTEXT, accept plain 'permessage-deflate' (server keeps its "
                "context)", {"compression": 2}, "permessage-deflate", {})
    sub += 1
    param_cases(sub, "quoted parameter value server_max_window_bits=\"10\"", {"compression": 1},
                "permessage-deflate; server_max_window_bits=\"10\"", {"server_bits": 10})
    sub += 1
    param_cases(sub, "parameter names in upper case and extra spaces", {"compression": 1},
                "permessage-deflate ;  Server_No_Context_Takeover", {"server_nct": True})
    sub += 1

    async def declined(c):
        c.expect([T(b"plain"), B(b"\x00\x01")])
        await c.send_msg(b"plain")
        await c.send_msg(b"\x00\x01", binary=True)

    add("13.%d.1" % sub, "compression offered, server answers without the extension: plain "
        "messages work", declined, opts={"compression": 1}, offer="permessage-deflate")
    sub += 1

    bad = [
        ("unknown parameter", {"compression": 1}, "permessage-deflate; foo=1"),
        ("unknown flag parameter", {"compression": 1}, "permessage-deflate; x_extra"),
        ("server_max_window_bits=7", {"compression": 1}, "permessage-deflate; server_max_window_bits=7"),
        ("server_max_window_bits=16", {"compression": 1},
         "permessage-deflate; server_max_window_bits=16"),
        ("server_max_window_bits=08 (leading zero)", {"compression": 1},
         "permessage-deflate; server_max_window_bits=08"),
        ("server_max_window_bits without value", {"compression": 1},
         "permessage-deflate; server_max_window_bits"),
        ("server_max_window_bits=abc", {"compression": 1},
         "permessage-deflate; server_max_window_bits=abc"),
        ("client_max_window_bits=7", {"compression": 1},
         "permessage-deflate; client_max_window_bits=7"),
        ("client_max_window_bits=16", {"compression": 1},
         "permessage-deflate; client_max_window_bits=16"),
        ("client_max_window_bits without value", {"compression": 1},
         "permessage-deflate; client_max_window_bits"),
        ("client_max_window_bits when the offer (NO_CONTEXT) did not include it",
         {"compression": 2}, "permessage-deflate; client_no_context_takeover; "
         "server_no_context_takeover; client_max_window_bits=10"),
        ("duplicate server_no_context_takeover", {"compression": 1},
         "permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
        ("duplicate client_no_context_takeover", {"compression": 1},
         "permessage-deflate; client_no_context_takeover; client_no_context_takeover"),
        ("duplicate server_max_window_bits", {"compression": 1},
         "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"),
        ("value on server_no_context_takeover", {"compression": 1},
         "permessage-deflate; server_no_context_takeover=1"),
        ("unrequested extension x-webkit-deflate-frame", {"compression": 1},
         "x-webkit-deflate-frame"),
        ("permessage-deflate although compression is DISABLED", {}, "permessage-deflate"),
        ("permessage-deflate accepted twice", {"compression": 1},
         "permessage-deflate, permessage-deflate"),
        ("permessage-deflate plus an unrequested extension", {"compression": 1},
         "permessage-deflate, x-other"),
        ("malformed parameter list", {"compression": 1}, "permessage-deflate; ;"),
    ]
    for i, (what, opts, ext) in enumerate(bad):
        add("13.%d.%d" % (sub, i + 1), "response with %s -> websocket.connect fails" % what,
            handshake=bad_ext_handshake(ext), opts=opts, connect="fail",
            fail_match="permessage-deflate|window_bits|context_takeover|extension|"
            "Sec-WebSocket-Extensions")


# ---- group H: handshake faults

def std_response(key, extra=b"", accept=None):
    acc = accept_for(key) if accept is None else accept
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + acc.encode() + b"\r\n" + extra + b"\r\n")


def bad_ext_handshake(ext):
    async def hs(c):
        await c.reject(std_response(c.key, b"Sec-WebSocket-Extensions: " + ext.encode() + b"\r\n"))

    return hs


def gH():
    def rej(data_fn, end=False):
        async def hs(c):
            await c.reject(data_fn(c), end)

        return hs

    key_resp = lambda extra=b"", accept=None: (lambda c: std_response(c.key, extra, accept))
    cases = [
        ("status 200 with a body", lambda c: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", {}),
        ("status 404", lambda c: b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", {}),
        ("status 302 redirect to a valid case (must not be followed)",
         lambda c: b"HTTP/1.1 302 Found\r\nLocation: /redirected/" + str(c.case.n).encode() +
         b"\r\nContent-Length: 0\r\n\r\n", {}),
        ("status 101 on HTTP/1.0", lambda c: std_response(c.key).replace(b"HTTP/1.1", b"HTTP/1.0"),
         {}),
        ("malformed status line", lambda c: b"HTTP/1.1 1O1 Switching\r\n\r\n", {}),
        ("no Sec-WebSocket-Accept", lambda c: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: "
         b"websocket\r\nConnection: Upgrade\r\n\r\n", {}),
        ("wrong Sec-WebSocket-Accept", key_resp(accept="dGhlIHNhbXBsZSBub25jZQ=="), {}),
        ("Sec-WebSocket-Accept for another key", key_resp(
            accept=accept_for("AAAAAAAAAAAAAAAAAAAAAA==")), {}),
        ("duplicate Sec-WebSocket-Accept (both right)",
         lambda c: std_response(c.key, b"Sec-WebSocket-Accept: " + accept_for(c.key).encode() +
                                b"\r\n"), {}),
        ("no Upgrade header", lambda c: std_response(c.key).replace(b"Upgrade: websocket\r\n", b""),
         {}),
        ("Upgrade: h2c", lambda c: std_response(c.key).replace(b"Upgrade: websocket", b"Upgrade: h2c"),
         {}),
        ("duplicate Upgrade header", lambda c: std_response(c.key, b"Upgrade: websocket\r\n"), {}),
        ("no Connection: Upgrade", lambda c: std_response(c.key).replace(
            b"Connection: Upgrade", b"Connection: keep-alive"), {}),
        ("unrequested extension (compression off)",
         key_resp(b"Sec-WebSocket-Extensions: permessage-deflate\r\n"), {}),
        ("unrequested subprotocol (none offered)", key_resp(b"Sec-WebSocket-Protocol: chat\r\n"), {}),
        ("subprotocol that was not offered", key_resp(b"Sec-WebSocket-Protocol: other\r\n"),
         {"protocols": ["chat.v2"]}),
        ("duplicate Sec-WebSocket-Protocol", key_resp(
            b"Sec-WebSocket-Protocol: chat.v2\r\nSec-WebSocket-Protocol: chat.v2\r\n"),
         {"protocols": ["chat.v2"]}),
        ("two subprotocols in one header", key_resp(
            b"Sec-WebSocket-Protocol: chat.v2, graphql-ws\r\n"),
         {"protocols": ["chat.v2", "graphql-ws"]}),
        ("duplicate Sec-WebSocket-Extensions", key_resp(
            b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate\r\n"), {"compression": 1}),
        ("oversized header (one 20000-byte value)", key_resp(
            b"X-Big: " + b"b" * 20000 + b"\r\n"), {}),
        ("folded (obs-fold) header line", key_resp(b"X-Fold: a\r\n  continued\r\n"), {}),
        ("header line without a colon", key_resp(b"NoColonHere\r\n"), {}),
        ("TCP closed in the middle of the headers",
         lambda c: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n", {}),
    ]
    why = ["HTTP status", "HTTP status", "redirect", "HTTP/1.1", "status line",
           "Sec-WebSocket-Accept", "Sec-WebSocket-Accept", "Sec-WebSocket-Accept",
           "duplicate Sec-WebSocket-Accept", "Upgrade", "Upgrade", "Upgrade", "Connection",
           "extension", "subprotocol", "subprotocol", "duplicate Sec-WebSocket-Protocol",
           "subprotocol", "duplicate Sec-WebSocket-Extensions", "max_handshake", "folded",
           "malformed header", "closed"]
    assert len(why) == len(cases)
    for i, (what, fn, opts) in enumerate(cases):
        add("H.1.%d" % (i + 1), "%s -> websocket.connect fails" % what,
            handshake=rej(fn, what.startswith("TCP closed")),
            opts=dict(opts, dial_timeout=5000), connect="fail", fail_match=why[i])

    async def endless(c):
        """Header lines forever (up to 4 MiB): the client must give up once
        its head limit (16 KiB) is passed, long before the dial timeout."""
        c.record["endless"] = True
        c.watch_eof()
        c.writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
        sent = 0
        t0 = time.monotonic()
        i = 0
        try:
            while sent < 4 * MB and not c.eof.is_set():
                line = b"X-Filler-%d: %s\r\n" % (i, b"f" * 90)
                c.writer.write(line * 10)
                sent += len(line) * 10
                i += 1
                await c.writer.drain()
                await asyncio.sleep(0.002)
        except (ConnectionError, OSError):
            pass
        c.record["head_sent"] = sent
        c.record["gave_up_after"] = round(time.monotonic() - t0, 3)
        c.record["client_closed_early"] = sent < 4 * MB
        await c.await_eof(3.0)

    add("H.2.1", "endless response head (header lines streamed forever) -> connect fails once "
        "the 16 KiB head limit is passed, long before dial_timeout", handshake=endless,
        opts={"dial_timeout": 20000}, connect="fail", fail_match="max_handshake")

    async def slow_head(c):
        """A head that never completes at all (1 byte per 100 ms): only the
        dial_timeout ends it."""
        c.record["endless"] = True
        c.watch_eof()
        data = std_response(c.key)
        t0 = time.monotonic()
        try:
            for b in data[:-2]:
                if c.eof.is_set():
                    break
                c.writer.write(bytes([b]))
                await c.writer.drain()
                await asyncio.sleep(0.1)
        except (ConnectionError, OSError):
            pass
        c.record["gave_up_after"] = round(time.monotonic() - t0, 3)
        c.record["client_closed_early"] = c.eof.is_set()
        await c.await_eof(3.0)

    add("H.2.2", "response head trickling 1 byte per 100 ms -> connect fails at dial_timeout "
        "(1 s)", handshake=slow_head, opts={"dial_timeout": 1000}, connect="fail",
        fail_match="timed out")

    async def big_ok(c):
        c.expect([T(b"after a 15 KiB head")])
        await c.send_frame(OP_TEXT, b"after a 15 KiB head")

    add("H.3.1", "valid 101 whose head is 15 KiB (under the limit) -> connects, echo works",
        big_ok, extra_head=b"X-Big: " + b"b" * 15000 + b"\r\n")

    async def first_frame(c):
        c.expect([T(b"first frame in the 101 segment"), P(b"ping too")])

    add("H.3.2", "101 response and the first frame (text) and a ping in the same TCP write -> "
        "connects, echo and pong", first_frame,
        after_head=frame(OP_TEXT, b"first frame in the 101 segment") + frame(OP_PING, b"ping too"))

    async def first_close(c):
        c.expect([], close=("server", {1000}))
        c.closed_by_us()

    add("H.3.3", "101 response followed at once by a close frame in the same write -> connects, "
        "close back", first_close, after_head=frame(OP_CLOSE, close_payload(1000, b"bye")))

    async def proto_ok(c):
        c.expect([T(b"proto")])
        await c.send_frame(OP_TEXT, b"proto")

    add("H.3.4", "offered subprotocol chosen (case-exact) -> connects", proto_ok,
        opts={"protocols": ["chat.v2", "graphql-ws"]}, extra_head=b"Sec-WebSocket-Protocol: "
        b"graphql-ws\r\n")

    async def lower_ok(c):
        c.expect([T(b"case")])
        await c.send_frame(OP_TEXT, b"case")

    add("H.3.5", "header names and Upgrade value in odd case, 'Connection: keep-alive, Upgrade' "
        "-> connects", lower_ok, raw_head=lambda c: (
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, "
            b"Upgrade\r\nsec-websocket-accept: " + accept_for(c.key).encode() + b"\r\n\r\n"))

    async def empty_ext(c):
        c.expect([T(b"x")])
        await c.send_frame(OP_TEXT, b"x")

    add("H.3.6", "empty Sec-WebSocket-Extensions header with compression offered -> connects "
        "uncompressed", empty_ext, opts={"compression": 1},
        extra_head=b"Sec-WebSocket-Extensions: \r\n")


def build_cases():
    for g in (g1, g2, g3, g4, g5, g6, g7, g9, g12, g13, gH):
        g()


# ---------------------------------------------------------------- connection

class ClientViolation(Exception):
    pass


class Conn:
    """One connection of one case: our side of the wire plus the record of
    what the client sent."""

    def __init__(self, case, reader, writer, req):
        self.case = case  # the Case
        self.reader = reader  # asyncio StreamReader
        self.writer = writer  # asyncio StreamWriter
        self.req = req  # parsed request: dict of lower-case header -> [values], plus path
        self.key = (req["headers"].get("sec-websocket-key") or [""])[0]
        self.events = []  # what the client did: ("message", type, bytes), ("pong", b), marks
        self.violations = []  # client protocol errors (texts)
        self.client_close = None  # (code or None, reason bytes) of the client's close frame
        self.close_time = None  # monotonic time of the client's close frame
        self.frames_after_close = 0  # frames the client sent after its close frame
        self.sent_close = False  # we sent a close frame
        self.sent_close_first = False  # ... before the client's close
        self.eof = asyncio.Event()  # TCP from the client ended (or reset)
        self.changed = asyncio.Event()  # set on every new event
        self.ok = []  # expected events for a pass
        self.non_strict = []  # lists of events accepted as non-strict
        self.close_exp = ("server", {1000})  # who must start the close, allowed client codes
        self.record = {}  # extra facts for the result
        self.pmd = None  # deflate settings when negotiated
        self.zsend = None  # our compressor (context takeover)
        self.zrecv = None  # inflater for the client's messages (context takeover)
        self.t0 = time.monotonic()
        self.eof_before_our_end = False  # the client ended TCP before we sent close or EOF

    # -- expectations

    def expect(self, ok, non_strict=None, close=("server", {1000})):
        self.ok = list(ok)
        self.non_strict = [list(x) for x in (non_strict or [])]
        self.close_exp = close

    def closed_by_us(self):
        """Notes that run() wrote a close frame itself (raw)."""
        if not self.sent_close:
            self.sent_close = True
            self.sent_close_first = self.client_close is None

    def watch_eof(self):
        """For handshake faults: counts what the client sends, sets eof."""

        async def watch():
            try:
                while True:
                    chunk = await self.reader.read(65536)
                    if not chunk:
                        break
                    self.record["bytes_after_response"] = self.record.get(
                        "bytes_after_response", 0) + len(chunk)
            except (ConnectionError, OSError):
                pass
            self.eof.set()

        return asyncio.ensure_future(watch())

    def mark(self, name):
        self.events.append(A(name))
        self.changed.set()

    @property
    def client_done(self):
        return self.client_close is not None or self.eof.is_set()

    # -- sending

    async def send_raw(self, data, chop=None, delay=0.001, ignore_errors=False):
        try:
            if not chop:
                self.writer.write(data)
                await self.writer.drain()
                return
            for i in range(0, len(data), chop):
                self.writer.write(data[i:i + chop])
                await self.writer.drain()
                if delay:
                    await asyncio.sleep(delay)
                elif i % (64 * chop) == 0:
                    await asyncio.sleep(0)
        except (ConnectionError, OSError):
            if not ignore_errors:
                self.record.setdefault("send_error", "peer gone while we were sending")

    async def send_frame(self, op, payload=b"", fin=True, rsv=0):
        await self.send_raw(frame(op, payload, fin=fin, rsv=rsv))

    def compress(self, payload):
        p = self.pmd
        bits = max(9, p.get("server_bits", 15))
        if self.zsend is None or p.get("server_nct"):
            self.zsend = zlib.compressobj(6, zlib.DEFLATED, -bits)
        d = self.zsend.compress(payload) + self.zsend.flush(zlib.Z_SYNC_FLUSH)
        assert d.endswith(TAIL)
        return d[:-4]

    async def send_msg(self, payload, binary=False, compress=None, frag_size=None):
        """One message, compressed when deflate is on (unless compress is
        False), in frames of frag_size bytes of (compressed) payload."""
        if compress is None:
            compress = self.pmd is not None
        data = self.compress(payload) if compress else payload
        op = OP_BINARY if binary else OP_TEXT
        if not frag_size or len(data) <= frag_size:
            await self.send_raw(frame(op, data, rsv=4 if compress else 0))
            return
        out = []
        for i in range(0, len(data), frag_size):
            first = i == 0
            out.append(frame(op if first else OP_CONT, data[i:i + frag_size],
                             fin=i + frag_size >= len(data), rsv=4 if compress and first else 0))
            if len(out) >= 256:
                await self.send_raw(b"".join(out))
                out = []
        if out:
            await self.send_raw(b"".join(out))

    async def send_close(self, code=1000, reason=b""):
        if self.sent_close:
            return
        self.sent_close = True
        self.sent_close_first = self.client_close is None
        await self.send_raw(frame(OP_CLOSE, close_payload(code, reason)), ignore_errors=True)

    # -- waiting

    async def _wait(self, pred, timeout):
        end = time.monotonic() + timeout
        while not pred():
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                return pred()
        return True

    async def wait_quiet(self, t):
        """Waits t seconds; returns False early when the client closed."""
        await self._wait(lambda: self.client_done, t)
        return not self.client_done

    async def wait_for_events(self, n, timeout):
        """Waits until n non-mark events were recorded (or the client is done)."""
        await self._wait(lambda: self.client_done or
                         sum(1 for e in self.events if e[0] != "mark") >= n, timeout)

    async def wait_client_done(self, timeout):
        await self._wait(lambda: self.client_done, timeout)

    async def await_eof(self, timeout):
        try:
            await asyncio.wait_for(self.eof.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    # -- receiving

    def inflate(self, data):
        p = self.pmd
        bits = p.get("client_bits", 15)
        if self.zrecv is None or p.get("client_nct"):
            self.zrecv = zlib.decompressobj(-bits)
        try:
            return self.zrecv.decompress(data + TAIL)
        except zlib.error as e:
            raise ClientViolation("client's deflate data does not inflate with a %d-bit window%s: %s"
                                  % (bits, " and no context" if p.get("client_nct") else "", e))

    async def read_loop(self):
        buf = bytearray()
        msg_op = None
        msg_parts = []
        msg_comp = False
        try:
            while True:
                data = await self.reader.read(1 << 20)
                if not data:
                    break
                buf += data
                pos = 0
                while True:
                    if len(buf) - pos < 2:
                        break
                    b0, b1 = buf[pos], buf[pos + 1]
                    n = b1 & 0x7F
                    h = 2
                    if n == 126:
                        if len(buf) - pos < 4:
                            break
                        n = struct.unpack_from("!H", buf, pos + 2)[0]
                        h = 4
                    elif n == 127:
                        if len(buf) - pos < 10:
                            break
                        n = struct.unpack_from("!Q", buf, pos + 2)[0]
                        h = 10
                    masked = b1 & 0x80
                    if masked:
                        h += 4
                    if len(buf) - pos < h + n:
                        break
                    key = bytes(buf[pos + h - 4:pos + h]) if masked else None
                    payload = bytes(buf[pos + h:pos + h + n])
                    pos += h + n
                    if key:
                        payload = xor_mask(payload, key)
                    else:
                        self.violations.append("unmasked frame from the client")
                    fin, rsv, op = b0 >> 7, (b0 >> 4) & 7, b0 & 0x0F
                    if self.client_close is not None:
                        self.frames_after_close += 1
                        continue
                    if rsv & 3 or (rsv & 4 and (self.pmd is None or op >= 8 or op == OP_CONT)):
                        self.violations.append("client frame with RSV bits %d (opcode %d)" % (rsv, op))
                    if op >= 8:
                        if not fin or n > 125:
                            self.violations.append("bad client control frame")
                        if op == OP_CLOSE:
                            self.on_close(payload)
                        elif op == OP_PING:
                            self.writer.write(frame(OP_PONG, payload))
                        elif op == OP_PONG:
                            self.events.append(P(payload))
                        else:
                            self.violations.append("client sent reserved opcode %d" % op)
                        self.changed.set()
                        continue
                    if op == OP_CONT:
                        if msg_op is None:
                            self.violations.append("client continuation without a message")
                            continue
                        msg_parts.append(payload)
                    elif op in (OP_TEXT, OP_BINARY):
                        if msg_op is not None:
                            self.violations.append("client started a message inside another")
                        msg_op, msg_parts, msg_comp = op, [payload], bool(rsv & 4)
                    else:
                        self.violations.append("client sent reserved opcode %d" % op)
                        continue
                    if fin:
                        body = b"".join(msg_parts)
                        if msg_comp:
                            try:
                                body = self.inflate(body)
                            except ClientViolation as e:
                                self.violations.append(str(e))
                        self.record["compressed_echoes"] = self.record.get("compressed_echoes", 0) + msg_comp
                        self.events.append(("message", "text" if msg_op == OP_TEXT else "binary", body))
                        if msg_op == OP_TEXT:
                            try:
                                body.decode("utf-8")
                            except UnicodeDecodeError:
                                self.violations.append("client sent invalid UTF-8 text")
                        msg_op, msg_parts = None, []
                        self.changed.set()
                del buf[:pos]
        except (ConnectionError, OSError):
            pass
        finally:
            self.eof.set()
            self.changed.set()

    def on_close(self, payload):
        if len(payload) == 0:
            code, reason = None, b""
        elif len(payload) == 1:
            self.violations.append("client close frame with a 1-byte payload")
            code, reason = None, b""
        else:
            code, reason = struct.unpack_from("!H", payload)[0], payload[2:]
        self.client_close = (code, reason)
        self.close_time = time.monotonic() - self.t0

    # -- handshake faults

    async def reject(self, data, end=False):
        """Sends a faulty response head (then ends our side when end), and
        watches the client: it must send nothing more and close TCP."""
        task = self.watch_eof()
        try:
            self.writer.write(data)
            await self.writer.drain()
            if end:
                self.writer.write_eof()
        except (ConnectionError, OSError):
            pass
        await self.await_eof(4.0)
        if not self.eof.is_set():
            self.record["client_kept_tcp_open"] = True
        task.cancel()


# ---------------------------------------------------------------- judging

def judge(c):
    """Returns (result, reason)."""
    case = c.case
    if c.violations:
        return FAILED, "client violated the protocol: " + "; ".join(sorted(set(c.violations)))[:300]
    if case.offer is not None:
        offer = ", ".join(c.req["headers"].get("sec-websocket-extensions", []))
        if case.offer.lower() not in offer.lower():
            return FAILED, "client's extension offer %r lacks %r" % (offer, case.offer)
    evs = c.events
    res, why = FAILED, None
    if same(evs, c.ok):
        res = OK
    elif any(same(evs, ns) for ns in c.non_strict):
        res, why = NON_STRICT, "events match the non-strict expectation: %s" % (
            ", ".join(show(e) for e in evs) or "none")
    else:
        got = ", ".join(show(e) for e in evs[:6]) + (" ..." if len(evs) > 6 else "")
        want = ", ".join(show(e) for e in c.ok[:6]) + (" ..." if len(c.ok) > 6 else "")
        k = next((i for i, (a, b) in enumerate(zip(evs, c.ok)) if a != b), min(len(evs), len(c.ok)))
        why = "events differ at #%d: got [%s] (%d), want [%s] (%d)" % (
            k, got or "none", len(evs), want or "none", len(c.ok))
    if case.want_comp is not None and res == OK:
        got = c.record.get("compressed_echoes", 0)
        if got != case.want_comp:
            res, why = FAILED, "%d echoes came compressed, want %d" % (got, case.want_comp)
    by, codes = c.close_exp
    cres, cwhy = OK, None
    if c.frames_after_close:
        cres, cwhy = FAILED, "client sent %d frame(s) after its close frame" % c.frames_after_close
    elif by == "server":
        if c.client_close is None:
            cres, cwhy = FAILED, "client did not answer our close with a close frame"
        elif not c.sent_close_first:
            cres, cwhy = FAILED, "client closed first (code %s, reason %r)" % (
                c.client_close[0], c.client_close[1][:60])
        elif c.client_close[0] not in codes:
            cres, cwhy = FAILED, "client's close code %s not in %s" % (c.client_close[0], sorted(
                codes, key=str))
    else:
        if c.client_close is None:
            if c.eof_before_our_end:
                cres, cwhy = NON_STRICT, "client dropped TCP without a close frame"
            else:
                cres, cwhy = FAILED, "client did not fail the connection (want close %s)" % sorted(
                    codes, key=str)
        elif c.client_close[0] not in codes:
            cres, cwhy = FAILED, "client's close code %s (reason %r) not in %s" % (
                c.client_close[0], c.client_close[1][:60], sorted(codes, key=str))
    if RANK[cres] > RANK[res]:
        return cres, cwhy
    if res == OK and cres == OK:
        return OK, None
    return res, why


# ---------------------------------------------------------------- server

RESULTS = {}  # n -> result dict
RESULTS_FILE = None  # path or None


def save_results():
    if not RESULTS_FILE:
        return
    tmp = RESULTS_FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"cases": [case_info(c) for c in CASES], "results": RESULTS}, f)
    os.replace(tmp, RESULTS_FILE)


def case_info(c):
    return {"n": c.n, "id": c.cid, "group": c.group, "desc": c.desc, "connect": c.connect,
            "opts": c.opts, "note": c.note, "fail_match": c.fail_match}


async def read_request(reader):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await reader.read(4096)
        if not chunk:
            return None
        data += chunk
        if len(data) > MAX_REQUEST:
            return None
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    headers = {}
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        if sep:
            headers.setdefault(k.strip().lower(), []).append(v.strip())
    return {"method": parts[0], "path": parts[1], "headers": headers}


def simple_ws_response(req):
    key = (req["headers"].get("sec-websocket-key") or [""])[0]
    return std_response(key)


async def serve_message_then_close(writer, text):
    writer.write(simple_ws_response(writer._req))
    writer.write(frame(OP_TEXT, text.encode()))
    writer.write(frame(OP_CLOSE, close_payload(1000)))
    await writer.drain()


async def handle(reader, writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        req = await asyncio.wait_for(read_request(reader), 10)
        if req is None:
            return
        path = req["path"]
        writer._req = req
        if path == "/cases":
            await serve_message_then_close(writer, json.dumps(
                [{"n": c.n, "id": c.cid, "opts": c.opts, "connect": c.connect} for c in CASES]))
            await drain_until_eof(reader, 2.0)
        elif path == "/report":
            await serve_message_then_close(writer, json.dumps(RESULTS))
            await drain_until_eof(reader, 2.0)
        elif path.startswith("/redirected/"):
            n = path.rsplit("/", 1)[1]
            RESULTS.setdefault("redirects_followed", []).append(n)
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        elif path.startswith("/case/"):
            try:
                n = int(path[6:])
                case = CASES[n - 1]
                assert n >= 1
            except (ValueError, IndexError, AssertionError):
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            await run_case(case, reader, writer, req)
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, OSError, asyncio.TimeoutError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError):
            pass


async def drain_until_eof(reader, timeout):
    try:
        while await asyncio.wait_for(reader.read(65536), timeout):
            pass
    except (asyncio.TimeoutError, ConnectionError, OSError):
        pass


async def run_case(case, reader, writer, req):
    c = Conn(case, reader, writer, req)
    t0 = time.monotonic()
    try:
        if case.handshake:
            await case.handshake(c)
            result = {"connect": "fail-expected", "record": c.record}
            finish_record(case, result, None, None, t0)
            return
        if case.ext is not None:
            c.pmd = dict(case.pmd or {})
        extra = case.extra_head
        if case.ext is not None:
            extra += b"Sec-WebSocket-Extensions: " + case.ext.encode() + b"\r\n"
        head = case.raw_head(c) if case.raw_head else std_response(c.key, extra)
        writer.write(head + case.after_head)
        await writer.drain()
        reader_task = asyncio.ensure_future(c.read_loop())
        try:
            await asyncio.wait_for(drive(c), case.timeout + 10)
        except asyncio.TimeoutError:
            c.record["timeout"] = True
        try:
            writer.write_eof()
        except (ConnectionError, OSError, RuntimeError):
            pass
        c.eof_before_our_end = c.eof.is_set() and not c.sent_close
        await c.await_eof(1.0)
        reader_task.cancel()
        res, why = judge(c)
        if c.record.get("timeout") and res == OK:
            res, why = FAILED, "case did not finish in time"
        finish_record(case, {"record": c.record, "client_close": list(c.client_close) if
                             c.client_close else None}, res, why, t0)
    except Exception as e:  # a bug in a case must not stop the server
        finish_record(case, {}, FAILED, "server error: %r" % e, t0)


def finish_record(case, extra, res, why, t0):
    r = {"id": case.cid, "result": res, "why": why, "secs": round(time.monotonic() - t0, 3)}
    rec = extra.get("record") or {}
    r["record"] = rec
    cc = extra.get("client_close")
    if cc:
        r["client_close"] = [cc[0], cc[1].decode("utf-8", "replace")[:120]]
    if case.connect == "fail":
        r["server_side"] = "ok" if (rec.get("bytes_after_response", 0) == 0 and
                                    not rec.get("client_kept_tcp_open")) else "bad"
        if rec.get("endless") and not rec.get("client_closed_early"):
            r["server_side"] = "bad"
    RESULTS[str(case.n)] = r
    save_results()


async def drive(c):
    """Runs the case's sending part, then the close: we close with 1000 once
    the expected events are in (or the case timed out) when the server is to
    close; otherwise we wait for the client to fail the connection. A close
    from the client is answered in both cases."""
    case = c.case
    await case.run(c)
    by, _ = c.close_exp
    if by == "server":
        await c._wait(lambda: c.client_done or same(c.events, c.ok), case.timeout)
        if not c.client_done and not c.sent_close:
            await c.send_close(1000)
        await c._wait(lambda: c.client_done, CLOSE_WAIT)
    else:
        await c._wait(lambda: c.client_done, case.timeout)
    if c.client_close is not None and not c.sent_close:
        code = c.client_close[0]
        await c.send_close(code if code is not None and ws_code_ok(code) else 1000)
    await c._wait(lambda: c.eof.is_set(), CLOSE_WAIT)


def ws_code_ok(code):
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


async def main_serve(args):
    global RESULTS_FILE
    RESULTS_FILE = args.results
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(None))
    server = await asyncio.start_server(handle, args.host, args.port, limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    print("LISTENING %d" % port, flush=True)
    save_results()
    await stop
    server.close()
    save_results()


# ---------------------------------------------------------------- summary

def wanted(cid, only):
    if not only:
        return True
    return any(cid == p or cid.startswith(p + ".") for p in only.split(",") if p)


def summarize(results_path, log_path, verbose, only=None):
    with open(results_path) as f:
        data = json.load(f)
    results = data["results"]
    cases = data["cases"]
    log = {}
    with open(log_path, errors="replace") as f:
        for line in f:
            line = line.strip()
            i = line.find("case ")
            if i < 0:
                continue
            rest = line[i + 5:]
            num, _, what = rest.partition(" ")
            if not num.isdigit():
                continue
            if what.startswith("connect failed:"):
                log[int(num)] = ("fail", what[len("connect failed:"):].strip())
            elif what.startswith("connected"):
                log[int(num)] = ("ok", "")
    table = {}
    order = []
    passed = failed = 0
    lines = []
    for c in cases:
        n, g = c["n"], c["group"]
        if not wanted(c["id"], only):
            continue
        if g not in table:
            table[g] = [0, 0, 0, 0]
            order.append(g)
        r = results.get(str(n))
        lg = log.get(n)
        res, why = FAILED, None
        if lg is None:
            why = "the echo script never reported this case"
        elif c["connect"] == "fail":
            if lg[0] != "fail":
                why = "websocket.connect succeeded but must fail"
            elif r is None:
                why = "server has no record of the case"
            elif c.get("fail_match") and not re.search(c["fail_match"], lg[1]):
                why = "connect failed for another reason: %s (want /%s/)" % (lg[1], c["fail_match"])
            elif r.get("server_side") != "ok":
                why = "connect failed (%s) but on the wire: %s" % (lg[1], json.dumps(r.get("record")))
            else:
                res, why = OK, "connect failed: " + lg[1]
        else:
            if lg[0] == "fail":
                why = "websocket.connect failed: " + lg[1]
            elif r is None:
                why = "server has no result"
            else:
                res, why = r["result"], r.get("why")
        t = table[g]
        t[0] += 1
        if res == OK:
            t[1] += 1
        elif res == NON_STRICT:
            t[2] += 1
        else:
            t[3] += 1
        if res == FAILED:
            failed += 1
        else:
            passed += 1
        if res != OK or verbose:
            lines.append("%-10s %-10s %s%s" % (c["id"], res, c["desc"], (" -- " + why) if why else ""))
    for l in lines:
        print(l)
    if results.get("redirects_followed"):
        print("redirects followed (must not happen): %s" % results["redirects_followed"])
        failed += 1
    print()
    print("%-6s %-32s %6s %7s %11s %7s" % ("group", "", "cases", "passed", "non-strict", "failed"))
    for g in order:
        t = table[g]
        print("%-6s %-32s %6d %7d %11d %7d" % (g, GROUPS.get(g, ""), t[0], t[1], t[2], t[3]))
    tot = [sum(table[g][i] for g in order) for i in range(4)]
    print("%-6s %-32s %6d %7d %11d %7d" % ("all", "", tot[0], tot[1], tot[2], tot[3]))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--results", default=None)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--summarize", nargs=2, metavar=("RESULTS", "LOG"))
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated case id prefixes")
    args = ap.parse_args()
    build_cases()
    if args.list:
        for c in CASES:
            print("%4d %-9s %-5s %s" % (c.n, c.cid, c.connect, c.desc))
        return 0
    if args.summarize:
        return summarize(args.summarize[0], args.summarize[1], args.verbose, args.only)
    asyncio.run(main_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
