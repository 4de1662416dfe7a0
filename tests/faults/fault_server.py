#!/usr/bin/python3
"""Fault server: a WebSocket server that misbehaves on purpose.

Purpose: the hostile and failing server cases of tests/faults/ (decompression
bombs, absurd declared lengths, floods of empty continuation frames, slow
handshakes, a peer that never reads, TCP FIN/RST or a kill -9 in the middle of
a message, TLS failures). Separate from tests/peers/raw_server.py (the shared
test protocol) so that these cases can grow without touching it.
Layer: tests only; Python standard library only.

Usage: /usr/bin/python3 tests/faults/fault_server.py --port 0
         [--tls NAME CERT KEY]...   extra wss:// listener serving the paths
         [--raw NAME MODE]...       extra TCP listener with a fixed behaviour:
                                    silent (accept, read, never answer),
                                    close (read the first bytes, then FIN),
                                    rst (read the first bytes, then RST),
                                    garbage (answer anything with plain text)
Prints `PORT <NAME> <port>` for each extra listener, then `LISTENING <port>`
(the plain ws:// one) last. SIGTERM/SIGINT ends it.

Paths (query parameters in brackets, defaults after '='):
  /echo                      echoes messages (sanity, also over --tls)
  /bomb[size=1GiB,frag=0]    one permessage-deflate message of `size` zero
                             bytes (about 1 KiB on the wire per MiB), in
                             frames of `frag` compressed bytes (0: one frame);
                             needs the client to offer permessage-deflate
  /len[v=N,n=0]              `n` text messages m1..mn, then a binary frame
                             header declaring a 64-bit length v, then "hello"
                             and more bytes; aliases /len63 (2^63-1),
                             /len64 (2^64-1), /len32wrap (2^32+5),
                             /len32max (2^32-1)
  /empty_cont[n=1000000]     text "a" (FIN=0), n empty continuation frames,
                             continuation "b" (FIN=1), then text "END"
  /slow_handshake[delay=1000] the 101 answer one byte per `delay` ms
  /hs_flood                  101 status line then header lines for ever
  /never_read[hold=30000]    handshake, then never reads; RST after `hold` ms
  /fin_mid[n=10,partial=100] n messages m1..mn, then the first `partial`
                             payload bytes of a 1000-byte text message, then
                             FIN once the kernel has sent everything
  /rst_mid[n=10,partial=100] same, ending with RST
  /kill_mid[n=10,partial=100] same bytes written by a child process holding
                             the only copy of the socket; the child is killed
                             with SIGKILL
  /ping_flood[n=100000,hold=3000] n pings of 125 bytes, then text "END",
                             while never reading; RST after `hold` ms
  /pings[n=10]               n pings p1..pn in one write; replies text
                             "pongs=p1,...,pn" with the pongs it got
"""

import argparse
import asyncio
import base64
import fcntl
import hashlib
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import termios
import zlib
from urllib.parse import parse_qs, urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
MiB = 1 << 20

# One MiB of zeros compressed on its own (fresh compressor, sync flush): such
# chunks can be concatenated into one valid raw deflate stream, because none
# refers back into another and none is a final block.
_c = zlib.compressobj(9, zlib.DEFLATED, -15)
ZCHUNK = _c.compress(b"\0" * MiB) + _c.flush(zlib.Z_SYNC_FLUSH)
del _c

LEN_ALIASES = {"/len63": (1 << 63) - 1, "/len64": (1 << 64) - 1,
               "/len32wrap": (1 << 32) + 5, "/len32max": (1 << 32) - 1}


def int_arg(query, name, default):
    try:
        return int(query[name][0])
    except (KeyError, ValueError, IndexError):
        return default


def frame(opcode, payload, fin=True, rsv1=False):
    """Wire bytes of one unmasked server frame."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 126, n)
    else:
        head = struct.pack("!BBQ", b0, 127, n)
    return head + payload


def unsent_bytes(writer):
    """Bytes still in the kernel send queue of the connection's socket."""
    sock = writer.get_extra_info("socket")
    buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return struct.unpack("i", buf)[0]


async def wait_sent(writer, limit=5.0):
    """Waits until the peer's kernel acknowledged everything we wrote (so a
    following RST cannot discard data still queued here)."""
    await writer.drain()
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while loop.time() < end:
        if writer.transport.get_write_buffer_size() == 0 and unsent_bytes(writer) == 0:
            return
        await asyncio.sleep(0.01)


def set_rst(writer):
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1]
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return target, headers


def deflate_answer(offer):
    """Sec-WebSocket-Extensions answer for a permessage-deflate offer, or None."""
    for item in offer.split(","):
        parts = [p.strip() for p in item.split(";")]
        if parts[0].lower() != "permessage-deflate":
            continue
        resp = ["permessage-deflate"]
        for p in parts[1:]:
            if p.lower() in ("server_no_context_takeover", "client_no_context_takeover"):
                resp.append(p.lower())
        return "; ".join(resp)
    return None


async def read_frames(reader):
    """Reads and discards client frames until the connection ends; answers
    nothing (the tests end connections themselves)."""
    try:
        while True:
            b0, b1 = await reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await reader.readexactly(8))
            await reader.readexactly(4 + n)
            if b0 & 0x0F == OP_CLOSE:
                return
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        return


async def echo(reader, writer):
    parts, op = [], None
    while True:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        key = await reader.readexactly(4)
        data = bytes(b ^ key[i % 4] for i, b in enumerate(await reader.readexactly(n)))
        opc = b0 & 0x0F
        if opc == OP_CLOSE:
            writer.write(frame(OP_CLOSE, data[:2]))
            await writer.drain()
            return
        if opc == OP_PING:
            writer.write(frame(OP_PONG, data))
            continue
        if opc >= 8:
            continue
        if opc != OP_CONT:
            op, parts = opc, []
        parts.append(data)
        if b0 & 0x80:
            writer.write(frame(op, b"".join(parts)))
            await writer.drain()


async def app_bomb(reader, writer, q):
    """Sends the bomb; the message's final 00 00 FF FF is left off, as RFC
    7692 requires of a sender."""
    size = int_arg(q, "size", 1 << 30)
    frag = int_arg(q, "frag", 0)
    chunks = max(1, size // MiB)
    total = chunks * len(ZCHUNK) - 4
    done = asyncio.ensure_future(read_frames(reader))
    sent = 0
    if frag <= 0:
        writer.write(struct.pack("!BBQ", 0xC2, 127, total))
        for i in range(chunks):
            if done.done():
                break
            writer.write(ZCHUNK if i + 1 < chunks else ZCHUNK[:-4])
            if i % 16 == 15:
                await writer.drain()
    else:
        data = ZCHUNK * (frag // len(ZCHUNK) + 2)
        first = True
        while sent < total and not done.done():
            k = min(frag, total - sent)
            off = sent % len(ZCHUNK)
            writer.write(frame(OP_BINARY if first else OP_CONT, data[off:off + k],
                               sent + k >= total, first))
            first = False
            sent += k
            if (sent // frag) % 64 == 0:
                await writer.drain()
    await writer.drain()
    await done


async def app_len(reader, writer, q, value):
    for i in range(int_arg(q, "n", 0)):
        writer.write(frame(OP_TEXT, b"m%d" % (i + 1)))
    writer.write(struct.pack("!BBQ", 0x82, 127, value & ((1 << 64) - 1)) + b"hello" + b"x" * 4096)
    await writer.drain()
    await read_frames(reader)


async def app_empty_cont(reader, writer, q):
    n = int_arg(q, "n", 1000000)
    writer.write(frame(OP_TEXT, b"a", fin=False))
    empty = frame(OP_CONT, b"", fin=False) * 65536
    left = n
    while left > 0:
        k = min(left, 65536)
        writer.write(empty[:2 * k])
        left -= k
        await writer.drain()
    writer.write(frame(OP_CONT, b"b") + frame(OP_TEXT, b"END"))
    await writer.drain()
    await read_frames(reader)


async def app_never_read(reader, writer, q):
    writer.transport.pause_reading()
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await asyncio.sleep(int_arg(q, "hold", 30000) / 1000.0)
    set_rst(writer)


def mid_bytes(q):
    """K messages, then a text frame of 1000 bytes cut after `partial`."""
    out = [frame(OP_TEXT, b"m%d" % (i + 1)) for i in range(int_arg(q, "n", 10))]
    partial = max(0, min(999, int_arg(q, "partial", 100)))
    out.append(frame(OP_TEXT, b"y" * 1000)[:4 + partial])
    return b"".join(out)


async def app_drop_mid(reader, writer, q, rst):
    writer.write(mid_bytes(q))
    await wait_sent(writer)
    await asyncio.sleep(0.05)
    if rst:
        set_rst(writer)
    # abort: no TLS close_notify, just the TCP FIN (or the RST set above)
    writer.transport.abort()


async def app_kill_mid(reader, writer, q):
    """A child process writes the bytes on the only remaining copy of the
    socket, reports "SENT" and sleeps until it is killed with SIGKILL."""
    sock = writer.get_extra_info("socket")
    fd = os.dup(sock.fileno())
    data = mid_bytes(q)
    child_code = ("import os,sys,time\n"
                  "d=sys.stdin.buffer.read()\n"
                  "os.write(int(sys.argv[1]),d)\n"
                  "print('SENT',flush=True)\n"
                  "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", child_code, str(fd)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, pass_fds=(fd,))
    # our copies go away: the child holds the only one now
    os.close(fd)
    writer.transport.abort()  # closes the original descriptor without shutdown
    proc.stdin.write(data)
    proc.stdin.close()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, proc.stdout.readline)
    await asyncio.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    await loop.run_in_executor(None, proc.wait)


async def app_ping_flood(reader, writer, q):
    writer.transport.pause_reading()
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ping = frame(OP_PING, b"p" * 125)
    n = int_arg(q, "n", 100000)
    for i in range(0, n, 256):
        writer.write(ping * min(256, n - i))
        await writer.drain()
    writer.write(frame(OP_TEXT, b"END"))
    await writer.drain()
    await asyncio.sleep(int_arg(q, "hold", 3000) / 1000.0)
    set_rst(writer)


async def app_pings(reader, writer, q):
    """Sends n pings p1..pn in one write, then reports the pongs it got back in
    order as text "pongs=p1,p2,..." once n arrived (or the peer closed)."""
    n = int_arg(q, "n", 10)
    writer.write(b"".join(frame(OP_PING, b"p%d" % (i + 1)) for i in range(n)))
    await writer.drain()
    got = []
    try:
        while len(got) < n:
            b0, b1 = await reader.readexactly(2)
            k = b1 & 0x7F
            if k == 126:
                (k,) = struct.unpack("!H", await reader.readexactly(2))
            elif k == 127:
                (k,) = struct.unpack("!Q", await reader.readexactly(8))
            key = await reader.readexactly(4)
            data = bytes(b ^ key[i % 4] for i, b in enumerate(await reader.readexactly(k)))
            if b0 & 0x0F == OP_PONG:
                got.append(data.decode())
            elif b0 & 0x0F == OP_CLOSE:
                return
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        return
    writer.write(frame(OP_TEXT, ("pongs=" + ",".join(got)).encode()))
    await writer.drain()
    await read_frames(reader)


async def handle(reader, writer):
    try:
        target, hdr = await read_request(reader)
        url = urlsplit(target)
        q = parse_qs(url.query)
        key = hdr.get("sec-websocket-key", "")
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        resp = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket",
                "Connection: Upgrade", "Sec-WebSocket-Accept: " + accept]
        ext = deflate_answer(hdr.get("sec-websocket-extensions", ""))
        if ext and url.path == "/bomb":
            resp.append("Sec-WebSocket-Extensions: " + ext)
        raw = ("\r\n".join(resp) + "\r\n\r\n").encode()
        if url.path == "/slow_handshake":
            delay = int_arg(q, "delay", 1000) / 1000.0
            for i in range(len(raw)):
                writer.write(raw[i:i + 1])
                await writer.drain()
                await asyncio.sleep(delay)
            await echo(reader, writer)
            return
        if url.path == "/hs_flood":
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\n")
            line = b"X-Flood: " + b"f" * 100 + b"\r\n"
            while True:
                writer.write(line * 100)
                await writer.drain()
        writer.write(raw)
        await writer.drain()
        path = url.path
        if path == "/bomb":
            await app_bomb(reader, writer, q)
        elif path == "/len" or path in LEN_ALIASES:
            await app_len(reader, writer, q, LEN_ALIASES.get(path, int_arg(q, "v", 0)))
        elif path == "/empty_cont":
            await app_empty_cont(reader, writer, q)
        elif path == "/never_read":
            await app_never_read(reader, writer, q)
        elif path == "/fin_mid":
            await app_drop_mid(reader, writer, q, False)
        elif path == "/rst_mid":
            await app_drop_mid(reader, writer, q, True)
        elif path == "/kill_mid":
            await app_kill_mid(reader, writer, q)
            return
        elif path == "/pings":
            await app_pings(reader, writer, q)
        elif path == "/ping_flood":
            await app_ping_flood(reader, writer, q)
        else:
            await echo(reader, writer)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError,
            IndexError, ValueError):
        pass
    finally:
        writer.close()


async def handle_raw(mode, reader, writer):
    try:
        if mode == "silent":
            await asyncio.sleep(3600)
        elif mode in ("close", "rst"):
            await reader.read(1)
            if mode == "rst":
                set_rst(writer)
        elif mode == "garbage":
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nhello")
            await writer.drain()
            await asyncio.sleep(1)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls", nargs=3, action="append", default=[],
                    metavar=("NAME", "CERT", "KEY"))
    ap.add_argument("--raw", nargs=2, action="append", default=[], metavar=("NAME", "MODE"))
    args = ap.parse_args()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    servers = []
    for name, cert, key in args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        s = await asyncio.start_server(handle, args.host, 0, ssl=ctx)
        servers.append(s)
        print("PORT %s %d" % (name, s.sockets[0].getsockname()[1]), flush=True)
    for name, mode in args.raw:
        s = await asyncio.start_server(lambda r, w, m=mode: handle_raw(m, r, w), args.host, 0)
        servers.append(s)
        print("PORT %s %d" % (name, s.sockets[0].getsockname()[1]), flush=True)
    main_srv = await asyncio.start_server(handle, args.host, args.port)
    servers.append(main_srv)
    print("LISTENING %d" % main_srv.sockets[0].getsockname()[1], flush=True)
    await stop
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
