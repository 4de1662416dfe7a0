#!/usr/bin/python3
"""Test peer: a scripted WebSocket server on raw asyncio streams.

Purpose: the path-based test protocol (tests/peers/README.md) for the cases a
WebSocket library hides from its user: it does its own HTTP upgrade, framing
and permessage-deflate (zlib), so it can report what each received frame
looked like on the wire (/rsv), misbehave on purpose (slow handshake, never
reading, dropping TCP, invalid UTF-8, arbitrary close codes, bad handshake
answers) and send exact bytes (/raw). Layer: tests only; standard library only.

Usage: /usr/bin/python3 tests/peers/raw_server.py --port 0 [--host H]
       [--tls CERT KEY]. Prints `LISTENING <port>` once ready; SIGTERM or
SIGINT closes every connection with 1001 and exits 0.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import signal
import socket
import ssl
import struct
import sys
import zlib
from urllib.parse import parse_qs, urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOLS = ["chat.v2", "graphql-ws"]
INVALID_UTF8 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"
MAX_MESSAGE = 256 << 20  # bytes after inflation; larger messages close with 1009
MAX_REQUEST = 16384  # bytes of HTTP request head we accept
CLOSE_WAIT = 2.0  # seconds we wait for the peer's close frame after ours
PATTERN = bytes(i % 251 for i in range(251))
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10

conn_counter = 0  # WebSocket connections accepted since start (1-based ids)
rooms = {}  # chat room key (canonical JSON of R) -> set of Conn
live = set()  # open Conn objects, closed with 1001 on shutdown


class ProtocolFail(Exception):
    """The peer broke the protocol: close with `code` and `reason`."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Closed(Exception):
    """The connection is over (close handshake done or TCP gone)."""


def pattern(size):
    """Binary test payload: byte i is i % 251."""
    return (PATTERN * (size // 251 + 1))[:size]


def int_arg(query, name, default, lo=0, hi=1 << 40):
    try:
        value = int(query[name][0])
    except (KeyError, ValueError, IndexError):
        return default
    return max(lo, min(hi, value))


def str_arg(query, name, default):
    values = query.get(name)
    return values[0] if values else default


def xor_mask(data, key):
    """Applies a 4-byte WebSocket mask using big-integer XOR (fast in CPython)."""
    n = len(data)
    if n == 0:
        return data
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def build_frame(opcode, payload, fin=True, rsv1=False, mask=None):
    """Returns the wire bytes of one frame (server frames are unmasked)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (opcode & 0x0F)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        return head + mask + xor_mask(payload, mask)
    return head + payload


def parse_extensions(value):
    """Parses Sec-WebSocket-Extensions into [(name, {param: value|None})]."""
    offers = []
    for item in value.split(","):
        parts = [p.strip() for p in item.split(";")]
        if not parts[0]:
            continue
        params = {}
        ok = True
        for p in parts[1:]:
            if not p:
                continue
            k, sep, v = p.partition("=")
            k = k.strip().lower()
            v = v.strip().strip('"') if sep else None
            if k in params:
                ok = False
            params[k] = v
        offers.append((parts[0].lower(), params, ok))
    return offers


def negotiate_deflate(header):
    """Picks the first acceptable permessage-deflate offer.

    Returns (response_header_value, settings) or (None, None)."""
    for name, params, ok in parse_extensions(header):
        if name != "permessage-deflate" or not ok:
            continue
        resp = ["permessage-deflate"]
        settings = {"server_nct": False, "client_nct": False, "server_bits": 15}
        good = True
        for k, v in params.items():
            if k == "server_no_context_takeover" and v is None:
                settings["server_nct"] = True
                resp.append(k)
            elif k == "client_no_context_takeover" and v is None:
                settings["client_nct"] = True
                resp.append(k)
            elif k == "server_max_window_bits" and v and v.isdigit() and 8 <= int(v) <= 15:
                settings["server_bits"] = int(v)
                resp.append("%s=%d" % (k, int(v)))
            elif k == "client_max_window_bits" and (v is None or (v.isdigit() and 8 <= int(v) <= 15)):
                if v is not None:
                    resp.append("%s=%d" % (k, int(v)))
            else:
                good = False
        if good:
            return "; ".join(resp), settings
    return None, None


class Message:
    """One received data message plus what its first frame looked like."""

    def __init__(self, opcode, data, rsv1, fin, wire_len):
        self.opcode = opcode  # OP_TEXT or OP_BINARY
        self.data = data  # payload bytes after unmasking and inflation
        self.rsv1 = rsv1  # RSV1 bit of the first frame
        self.fin = fin  # FIN bit of the first frame
        self.wire_len = wire_len  # payload length of the first frame on the wire


class Conn:
    """One server-side WebSocket connection with our own framing."""

    def __init__(self, reader, writer):
        self.reader = reader  # asyncio.StreamReader of the TCP/TLS stream
        self.writer = writer  # asyncio.StreamWriter of the same stream
        self.deflate = None  # negotiated settings dict, or None
        self.inflater = None  # zlib decompressobj while context is kept
        self.deflater = None  # zlib compressobj while context is kept
        self.compress_out = True  # compress outgoing data when deflate is on
        self.frag = 0  # split outgoing payloads into frames of this size (0: no)
        self.close_sent = False  # our close frame went out
        self.close_rcvd = None  # (code, reason) of the peer's close, if any
        self.on_pong = None  # callable(payload) for received pongs

    # ---- output ---------------------------------------------------------
    def _compress(self, data):
        s = self.deflate
        if self.deflater is None or s["server_nct"]:
            self.deflater = zlib.compressobj(6, zlib.DEFLATED, -s["server_bits"], 8)
        out = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        if out.endswith(b"\x00\x00\xff\xff"):
            out = out[:-4]
        return out or b"\x00"

    def encode(self, opcode, data):
        """Wire bytes of one data message, compressed/fragmented per settings."""
        rsv1 = False
        if self.deflate and self.compress_out and self.deflate["server_bits"] > 8:
            data = self._compress(data)
            rsv1 = True
        if not self.frag or len(data) <= self.frag:
            return build_frame(opcode, data, True, rsv1)
        parts = []
        for off in range(0, len(data), self.frag):
            chunk = data[off:off + self.frag]
            last = off + self.frag >= len(data)
            parts.append(build_frame(opcode if off == 0 else OP_CONT, chunk, last, rsv1 and off == 0))
        return b"".join(parts)

    def write(self, raw):
        if self.writer.is_closing():
            raise Closed()
        self.writer.write(raw)

    async def send(self, data, opcode=None):
        if opcode is None:
            opcode = OP_TEXT if isinstance(data, str) else OP_BINARY
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.write(self.encode(opcode, data))
        await self.drain()

    async def drain(self):
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise Closed() from exc

    async def close(self, code=1000, reason=b"", wait=True):
        """Sends a close frame (code 1005: empty payload) and ends the connection."""
        if isinstance(reason, str):
            reason = reason.encode("utf-8")
        if not self.close_sent:
            self.close_sent = True
            payload = b"" if code == 1005 else struct.pack("!H", code & 0xFFFF) + reason
            try:
                self.write(build_frame(OP_CLOSE, payload))
                await self.drain()
            except Closed:
                wait = False
        if wait and self.close_rcvd is None:
            try:
                await asyncio.wait_for(self._wait_close(), CLOSE_WAIT)
            except (asyncio.TimeoutError, Closed, ProtocolFail):
                pass
        self.abort(rst=False)

    async def _wait_close(self):
        while self.close_rcvd is None:
            await self.recv()

    def abort(self, rst=False):
        sock = self.writer.get_extra_info("socket")
        if rst and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.writer.close()

    # ---- input ----------------------------------------------------------
    async def read_frame(self):
        """Returns (fin, rsv1, opcode, payload, wire_len); raises on bad frames."""
        try:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            if not b1 & 0x80:
                raise ProtocolFail(1002, "unmasked client frame")
            if n > MAX_MESSAGE:
                raise ProtocolFail(1009, "frame too big")
            key = await self.reader.readexactly(4)
            payload = xor_mask(await self.reader.readexactly(n), key)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            raise Closed() from exc
        if b0 & 0x30:
            raise ProtocolFail(1002, "reserved bits set")
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, payload, n

    def _inflate(self, data):
        if self.inflater is None or self.deflate["client_nct"]:
            self.inflater = zlib.decompressobj(-15)
        try:
            out = self.inflater.decompress(data + b"\x00\x00\xff\xff", MAX_MESSAGE + 1)
        except zlib.error as exc:
            raise ProtocolFail(1007, "bad deflate data") from exc
        if len(out) > MAX_MESSAGE or self.inflater.unconsumed_tail:
            raise ProtocolFail(1009, "message too big")
        return out

    async def recv(self):
        """Next data message; answers pings, handles close; raises Closed at end."""
        first = None  # (opcode, rsv1, fin, wire_len) of the message's first frame
        parts = []
        size = 0
        while True:
            if self.close_rcvd is not None:
                raise Closed()
            fin, rsv1, opcode, payload, wire_len = await self.read_frame()
            if opcode >= 8:
                if not fin or wire_len > 125 or rsv1:
                    raise ProtocolFail(1002, "bad control frame")
                await self._control(opcode, payload)
                continue
            if rsv1 and (self.deflate is None or opcode == OP_CONT):
                raise ProtocolFail(1002, "unexpected RSV1")
            if opcode == OP_CONT:
                if first is None:
                    raise ProtocolFail(1002, "continuation without a message")
            elif opcode in (OP_TEXT, OP_BINARY):
                if first is not None:
                    raise ProtocolFail(1002, "new message inside a fragmented one")
                first = (opcode, rsv1, fin, wire_len)
            else:
                raise ProtocolFail(1002, "unknown opcode")
            size += len(payload)
            if size > MAX_MESSAGE:
                raise ProtocolFail(1009, "message too big")
            parts.append(payload)
            if fin:
                break
        data = b"".join(parts)
        if first[1]:
            data = self._inflate(data)
        if first[0] == OP_TEXT:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ProtocolFail(1007, "invalid UTF-8") from exc
        return Message(first[0], data, first[1], first[2], first[3])

    async def _control(self, opcode, payload):
        if opcode == OP_PING:
            if not self.close_sent:
                self.write(build_frame(OP_PONG, payload))
                await self.drain()
        elif opcode == OP_PONG:
            if self.on_pong:
                self.on_pong(payload)
        elif opcode == OP_CLOSE:
            if len(payload) == 1:
                raise ProtocolFail(1002, "close payload of one byte")
            code = struct.unpack("!H", payload[:2])[0] if payload else 1005
            if payload and not (code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                         1012, 1013, 1014) or 3000 <= code < 5000):
                raise ProtocolFail(1002, "invalid close code")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ProtocolFail(1007, "invalid UTF-8 in close reason") from exc
            self.close_rcvd = (code, reason)
            if not self.close_sent:
                self.close_sent = True
                self.write(build_frame(OP_CLOSE, payload[:2]))
                await self.drain()
            self.abort()
            raise Closed()
        else:
            raise ProtocolFail(1002, "unknown control opcode")


# ---- handshake ------------------------------------------------------------
async def read_request(reader):
    """Returns (target, [(name_lower, value)]) or None for a broken request."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET":
        return None
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers.append((name.strip().lower(), value.strip()))
    return parts[1], headers


def http_error(writer, status, text):
    body = (text + "\n").encode()
    writer.write(("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                  "Connection: close\r\n\r\n" % (status, text, len(body))).encode() + body)


PATHS = {"/echo", "/chat", "/prices", "/headers", "/subproto", "/close", "/blast", "/count",
         "/invalid_utf8", "/big", "/ping", "/rsv", "/slow_handshake", "/never_read", "/drop",
         "/raw", "/frames"}


async def handle(reader, writer):
    global conn_counter
    conn = None
    try:
        req = await read_request(reader)
        if req is None:
            http_error(writer, 400, "Bad Request")
            return
        target, headers = req
        hdr = {}
        for k, v in headers:
            hdr[k] = hdr[k] + ", " + v if k in hdr else v
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        if url.path not in PATHS:
            http_error(writer, 404, "Not Found")
            return
        if "status" in query:
            http_error(writer, int_arg(query, "status", 500, 100, 599), "Test Status")
            return
        key = hdr.get("sec-websocket-key", "")
        if ("websocket" not in hdr.get("upgrade", "").lower()
                or "upgrade" not in hdr.get("connection", "").lower()
                or hdr.get("sec-websocket-version") != "13" or len(key) != 24):
            http_error(writer, 400, "Bad Request")
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if str_arg(query, "accept", "") == "bad":
            accept = base64.b64encode(hashlib.sha1(b"wrong" + GUID).digest()).decode()
        offered = [p.strip() for p in hdr.get("sec-websocket-protocol", "").split(",") if p.strip()]
        proto = next((p for p in offered if p in SUBPROTOCOLS), "")
        proto = str_arg(query, "proto", proto)
        conn = Conn(reader, writer)
        ext_value = None
        if str_arg(query, "deflate", "1") != "0":
            ext_value, conn.deflate = negotiate_deflate(hdr.get("sec-websocket-extensions", ""))
        ext_value = str_arg(query, "ext", ext_value)
        conn.compress_out = str_arg(query, "compress", "1") != "0"
        conn.frag = int_arg(query, "frag", 0, 0, MAX_MESSAGE)
        resp = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                "Sec-WebSocket-Accept: " + accept]
        if proto:
            resp.append("Sec-WebSocket-Protocol: " + proto)
        if ext_value:
            resp.append("Sec-WebSocket-Extensions: " + ext_value)
        raw = ("\r\n".join(resp) + "\r\n\r\n").encode("latin-1")
        if url.path == "/slow_handshake":
            delay = int_arg(query, "delay", 1000, 0, 60000) / 1000.0
            for i in range(len(raw)):
                conn.write(raw[i:i + 1])
                await conn.drain()
                await asyncio.sleep(delay)
        else:
            conn.write(raw)
            await conn.drain()
        conn_counter += 1
        live.add(conn)
        info = {"path": url.path, "target": target, "query": query, "headers": headers,
                "proto": proto, "id": conn_counter}
        try:
            await APPS.get(url.path, app_echo)(conn, info)
        except ProtocolFail as exc:
            await conn.close(exc.code, exc.reason)
    except Closed:
        pass
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
        pass
    finally:
        if conn is not None:
            live.discard(conn)
        writer.close()


# ---- applications (one per path) ------------------------------------------
async def drain_until_closed(conn):
    while True:
        await conn.recv()


async def app_echo(conn, info):
    while True:
        msg = await conn.recv()
        await conn.send(msg.data, msg.opcode)


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


async def app_chat(conn, info):
    joined = set()
    try:
        while True:
            msg = await conn.recv()
            try:
                obj = json.loads(msg.data)
            except ValueError:
                continue
            if not isinstance(obj, dict) or "room" not in obj:
                continue
            key = json.dumps(obj["room"], sort_keys=True)
            if obj.get("type") == "join":
                rooms.setdefault(key, set()).add(conn)
                joined.add(key)
                await conn.send(compact({"type": "joined", "room": obj["room"]}))
            elif obj.get("type") == "message":
                out = compact({"type": "message", "room": obj["room"], "text": obj.get("text"),
                               "from": info["id"]}).encode()
                for peer in list(rooms.get(key, ())):
                    try:
                        peer.write(peer.encode(OP_TEXT, out))
                    except Closed:
                        pass
    finally:
        for key in joined:
            members = rooms.get(key)
            if members is not None:
                members.discard(conn)
                if not members:
                    del rooms[key]


async def app_prices(conn, info):
    q = info["query"]
    interval = int_arg(q, "interval", 100, 1, 3600 * 1000) / 1000.0
    count = int_arg(q, "count", -1, 0)
    state = {"symbols": None}
    subscribed = asyncio.Event()

    async def reader():
        while True:
            msg = await conn.recv()
            try:
                obj = json.loads(msg.data)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("action") == "subscribe" \
                    and isinstance(obj.get("symbols"), list):
                state["symbols"] = list(obj["symbols"])
                subscribed.set()

    task = asyncio.ensure_future(reader())
    try:
        waiter = asyncio.ensure_future(subscribed.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()
            return
        seq = 0
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while count < 0 or seq < count:
            next_tick += interval
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            if task.done():
                task.result()
            for sym in list(state["symbols"]):
                if 0 <= count <= seq:
                    break
                seq += 1
                await conn.send(compact({"symbol": sym, "value": 100 + seq}))
        task.cancel()
        await conn.close(1000, "done")
    finally:
        task.cancel()


async def app_headers(conn, info):
    out = {}
    for k, v in info["headers"]:
        out[k] = out[k] + ", " + v if k in out else v
    out["_path"] = info["target"]
    out["_subprotocol"] = info["proto"]
    await conn.send(compact(out))
    await drain_until_closed(conn)


async def app_subproto(conn, info):
    await conn.send(info["proto"])
    await drain_until_closed(conn)


async def app_close(conn, info):
    q = info["query"]
    for i in range(int_arg(q, "n", 0, 0, 1 << 20)):
        await conn.send("m%d" % (i + 1))
    await conn.close(int_arg(q, "code", 1000, 0, 65535), str_arg(q, "reason", ""))


async def app_blast(conn, info):
    q = info["query"]
    n = int_arg(q, "n", 0, 0, 1 << 30)
    size = int_arg(q, "size", 0, 0, MAX_MESSAGE)
    binary = str_arg(q, "type", "text") == "binary"
    data = pattern(size) if binary else b"x" * size
    op = OP_BINARY if binary else OP_TEXT
    reader = asyncio.ensure_future(drain_until_closed(conn))
    try:
        if conn.deflate and conn.compress_out:
            for i in range(n):
                conn.write(conn.encode(op, data))
                if i % 64 == 63:
                    await conn.drain()
        else:
            frame = conn.encode(op, data)
            batch = max(1, (256 << 10) // len(frame))
            sent = 0
            while sent < n:
                k = min(batch, n - sent)
                conn.write(frame * k)
                sent += k
                await conn.drain()
        await conn.send("END")
        await reader
    finally:
        reader.cancel()


async def app_count(conn, info):
    count = total = 0
    while True:
        msg = await conn.recv()
        if msg.opcode == OP_TEXT and msg.data == b"REPORT":
            await conn.send("count=%d bytes=%d" % (count, total))
            continue
        count += 1
        total += len(msg.data)


async def app_invalid_utf8(conn, info):
    await conn.send("ok")
    conn.write(build_frame(OP_TEXT, INVALID_UTF8))
    await drain_until_closed(conn)


async def app_big(conn, info):
    await conn.send(pattern(int_arg(info["query"], "size", 0, 0, MAX_MESSAGE)))
    await drain_until_closed(conn)


async def app_ping(conn, info):
    def pong(payload):
        try:
            conn.write(conn.encode(OP_TEXT, b"pong:" + payload))
        except Closed:
            pass
    conn.on_pong = pong
    conn.write(build_frame(OP_PING, str_arg(info["query"], "payload", "srv").encode()))
    await drain_until_closed(conn)


async def app_rsv(conn, info):
    while True:
        msg = await conn.recv()
        await conn.send("rsv1=%d opcode=%d len=%d fin=%d data_len=%d" % (
            msg.rsv1, msg.opcode, msg.wire_len, msg.fin, len(msg.data)))


async def app_never_read(conn, info):
    conn.writer.transport.pause_reading()
    sock = conn.writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await asyncio.sleep(int_arg(info["query"], "hold", 30000, 0, 3600 * 1000) / 1000.0)
    conn.abort(rst=True)


async def app_drop(conn, info):
    q = info["query"]
    for i in range(int_arg(q, "n", 0, 0, 1 << 20)):
        conn.write(conn.encode(OP_TEXT, b"m%d" % (i + 1)))
    await conn.drain()
    conn.abort(rst=str_arg(q, "rst", "0") == "1")


async def app_raw(conn, info):
    try:
        raw = bytes.fromhex(str_arg(info["query"], "hex", ""))
    except ValueError:
        raw = b""
    conn.write(raw)
    await conn.drain()
    await app_echo(conn, info)


def text_payload(size, seed):
    """Valid UTF-8 of exactly `size` bytes mixing 1-4 byte characters, so
    that multi-byte characters straddle every read and record boundary."""
    chars = ["a", "\u00e9", "\u20ac", "\U0001f600", "z", "\u00df"]
    out, n, i = [], 0, seed
    while n < size:
        ch = chars[i % len(chars)].encode()
        if n + len(ch) > size:
            ch = b"x" * (size - n)
        out.append(ch)
        n += len(ch)
        i += 1
    return b"".join(out)


def frames_script(kind):
    """The frame sequence of /frames (see tests/peers/README.md)."""
    sizes = [10, 20000, 70000, 5, 16384, 16383, 65536, (1 << 20) + 100, 300000, 3]
    out = []
    for i, size in enumerate(sizes):
        if i % 2:
            out.append(build_frame(OP_BINARY, pattern(size)))
        else:
            out.append(build_frame(OP_TEXT, text_payload(size, i)))
    # a fragmented text message of 40000 + 30000 + 20 bytes, a ping between
    # its fragments, then a fragmented binary message of 3 x 20000
    t = text_payload(70020, 7)
    out.append(build_frame(OP_TEXT, t[:40000], fin=False))
    out.append(build_frame(OP_PING, b"mid"))
    out.append(build_frame(OP_CONT, t[40000:70000], fin=False))
    out.append(build_frame(OP_CONT, t[70000:], fin=True))
    b = pattern(60000)
    out.append(build_frame(OP_BINARY, b[:20000], fin=False))
    out.append(build_frame(OP_CONT, b[20000:40000], fin=False))
    out.append(build_frame(OP_CONT, b[40000:], fin=True))
    if kind == "bad_utf8":
        bad = bytearray(text_payload(100000, 1))
        bad[90000:90002] = b"\xed\xa0"  # a surrogate's first bytes: invalid
        out.append(build_frame(OP_TEXT, bytes(bad)))
    return out


async def app_frames(conn, info):
    """Large and small frames in a fixed order (the broker's direct payload
    reads); piece=N writes the stream in N-byte pieces with a short pause
    between them, so reads end inside payloads."""
    q = info["query"]
    wire = b"".join(frames_script(str_arg(q, "kind", "good")))
    piece = int_arg(q, "piece", 0, 0, 1 << 30)
    if piece:
        for off in range(0, len(wire), piece):
            conn.write(wire[off:off + piece])
            await conn.drain()
            await asyncio.sleep(0.002)
    else:
        conn.write(wire)
        await conn.drain()
    await conn.send("END")
    await drain_until_closed(conn)


APPS = {"/echo": app_echo, "/chat": app_chat, "/prices": app_prices, "/headers": app_headers,
        "/subproto": app_subproto, "/close": app_close, "/blast": app_blast,
        "/count": app_count, "/invalid_utf8": app_invalid_utf8, "/big": app_big,
        "/ping": app_ping, "/rsv": app_rsv, "/slow_handshake": app_echo,
        "/never_read": app_never_read, "/drop": app_drop, "/raw": app_raw,
        "/frames": app_frames}


# ---- /sni (TLS server name indication; added for tests/integration/ws_tls.lua) ----
def sni_record(ssl_object, server_name, context):
    """sni_callback of the TLS context: remembers the name the client sent."""
    ssl_object.sni_seen = server_name


async def app_sni(conn, info):
    """Sends `sni=<name>` (empty when the client sent none, `sni=-` without TLS)."""
    obj = conn.writer.get_extra_info("ssl_object")
    name = "-" if obj is None else (getattr(obj, "sni_seen", None) or "")
    await conn.send("sni=" + name)
    await drain_until_closed(conn)


def register_sni(tls):
    PATHS.add("/sni")
    APPS["/sni"] = app_sni
    if tls is not None:
        tls.sni_callback = sni_record
# ---- end of /sni ----


# ---- /close_seen + /close_report (added for tests/integration/ws_errors.lua) ----
CLOSE_SEEN = {}  # id query parameter -> (code, reason) of the client's close frame


async def app_close_seen(conn, info):
    """Echoes like /echo; when the client closes, remembers its close code and
    reason under ?id= (code 1006 when TCP ended without a close frame)."""
    key = str_arg(info["query"], "id", "")
    try:
        await app_echo(conn, info)
    finally:
        CLOSE_SEEN[key] = conn.close_rcvd or (1006, "")


async def app_close_report(conn, info):
    """Sends `code=<c> reason=<r>` for ?id= (waits up to 2 s for it), or `none`."""
    key = str_arg(info["query"], "id", "")
    for _ in range(200):
        if key in CLOSE_SEEN:
            break
        await asyncio.sleep(0.01)
    rec = CLOSE_SEEN.get(key)
    await conn.send("none" if rec is None else "code=%d reason=%s" % rec)
    await drain_until_closed(conn)


def register_close_seen():
    PATHS.update(("/close_seen", "/close_report"))
    APPS["/close_seen"] = app_close_seen
    APPS["/close_report"] = app_close_report
# ---- end of /close_seen + /close_report ----


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = ap.parse_args()
    tls = None
    if args.tls:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls[0], args.tls[1])
    register_sni(tls)
    register_close_seen()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await asyncio.start_server(handle, args.host, args.port, ssl=tls,
                                        limit=MAX_REQUEST)
    print("LISTENING %d" % server.sockets[0].getsockname()[1], flush=True)
    await stop
    server.close()
    for conn in list(live):
        try:
            conn.write(build_frame(OP_CLOSE, struct.pack("!H", 1001) + b"server shutdown"))
        except Closed:
            pass
        conn.abort()
    await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
