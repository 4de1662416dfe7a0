#!/usr/bin/python3
"""Test peer: the path-based test protocol on Debian's python3-websockets.

Purpose: one of the four loopback WebSocket servers that the Lua test scripts,
the smoke client and the demo talk to (see tests/peers/README.md for the
protocol). Layer: tests only; nothing in the product imports it. It depends on
the installed `websockets` package (10.x, "legacy" asyncio API) and on the
standard library only.

Usage: /usr/bin/python3 tests/peers/py_server.py --port 0 [--host H]
       [--tls CERT KEY]. Prints `LISTENING <port>` once ready; SIGTERM or
SIGINT closes every connection with 1001 and exits 0.
"""

import argparse
import asyncio
import http
import json
import signal
import ssl
import sys
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.frames import OP_TEXT, Close
from websockets.legacy.server import serve

SUBPROTOCOLS = ["chat.v2", "graphql-ws"]
PATHS = {"/echo", "/chat", "/prices", "/headers", "/subproto", "/close",
         "/blast", "/count", "/invalid_utf8", "/big", "/ping"}
INVALID_UTF8 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"
MAX_MESSAGE = 256 << 20  # bytes; larger inbound messages close with 1009
PATTERN = bytes(i % 251 for i in range(251))

conn_counter = 0  # WebSocket connections accepted since start (1-based ids)
rooms = {}  # chat room key (canonical JSON of R) -> set of connections


def pattern(size):
    """Binary test payload: byte i is i % 251."""
    return (PATTERN * (size // 251 + 1))[:size]


def int_arg(query, name, default, lo=0, hi=1 << 40):
    """Integer query parameter, clamped to [lo, hi]; default when absent/bad."""
    try:
        value = int(query[name][0])
    except (KeyError, ValueError, IndexError):
        return default
    return max(lo, min(hi, value))


def str_arg(query, name, default):
    values = query.get(name)
    return values[0] if values else default


def select_subprotocol(client_protocols, server_protocols):
    """First protocol the client offered that we support, else none."""
    for proto in client_protocols:
        if proto in SUBPROTOCOLS:
            return proto
    return None


async def process_request(path, headers):
    """Unknown paths are refused with HTTP 404 before the upgrade."""
    if urlsplit(path).path not in PATHS:
        return (http.HTTPStatus.NOT_FOUND, [("Content-Type", "text/plain")], b"unknown path\n")
    return None


async def drain(ws):
    """Read and drop everything until the client closes."""
    async for _ in ws:
        pass


async def send_close(ws, code, reason):
    """Close with any code the library accepts; 1005 sends an empty close."""
    if code == 1005:
        await ws.write_close_frame(Close(1005, ""), b"")
        await ws.close()
        return
    try:
        Close(code, reason).check()
    except websockets.exceptions.ProtocolError:
        code = 1000
    await ws.close(code, reason)


async def do_echo(ws, query):
    async for msg in ws:
        await ws.send(msg)


async def do_chat(ws, query, conn_id):
    joined = set()
    try:
        async for msg in ws:
            try:
                obj = json.loads(msg)
            except (ValueError, TypeError):
                continue
            if not isinstance(obj, dict) or "room" not in obj:
                continue
            key = json.dumps(obj["room"], sort_keys=True)
            if obj.get("type") == "join":
                rooms.setdefault(key, set()).add(ws)
                joined.add(key)
                await ws.send(json.dumps({"type": "joined", "room": obj["room"]},
                                         separators=(",", ":"), ensure_ascii=False))
            elif obj.get("type") == "message":
                out = json.dumps({"type": "message", "room": obj["room"],
                                  "text": obj.get("text"), "from": conn_id},
                                 separators=(",", ":"), ensure_ascii=False)
                websockets.broadcast(rooms.get(key, ()), out)
    finally:
        for key in joined:
            members = rooms.get(key)
            if members is not None:
                members.discard(ws)
                if not members:
                    del rooms[key]


async def do_prices(ws, query):
    interval = int_arg(query, "interval", 100, 1, 3600 * 1000) / 1000.0
    count = int_arg(query, "count", -1, 0)
    symbols = None  # list of symbols once a subscribe arrived
    subscribed = asyncio.Event()

    async def reader():
        nonlocal symbols
        async for msg in ws:
            try:
                obj = json.loads(msg)
            except (ValueError, TypeError):
                continue
            if isinstance(obj, dict) and obj.get("action") == "subscribe" \
                    and isinstance(obj.get("symbols"), list):
                symbols = list(obj["symbols"])
                subscribed.set()

    task = asyncio.ensure_future(reader())
    try:
        waiter = asyncio.ensure_future(subscribed.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            return
        seq = 0
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while count < 0 or seq < count:
            next_tick += interval
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            for sym in list(symbols):
                if 0 <= count <= seq:
                    break
                seq += 1
                await ws.send(json.dumps({"symbol": sym, "value": 100 + seq},
                                         separators=(",", ":"), ensure_ascii=False))
        await ws.close(1000, "done")
    finally:
        task.cancel()


def headers_json(ws):
    out = {}
    for name, value in ws.request_headers.raw_items():
        name = name.lower()
        out[name] = out[name] + ", " + value if name in out else value
    out["_path"] = ws.path
    out["_subprotocol"] = ws.subprotocol or ""
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


async def do_close(ws, query):
    code = int_arg(query, "code", 1000, 0, 65535)
    reason = str_arg(query, "reason", "")
    for i in range(int_arg(query, "n", 0, 0, 1 << 20)):
        await ws.send("m%d" % (i + 1))
    await send_close(ws, code, reason)


async def do_blast(ws, query):
    n = int_arg(query, "n", 0, 0, 1 << 30)
    size = int_arg(query, "size", 0, 0, 256 << 20)
    msg = "x" * size if str_arg(query, "type", "text") == "text" else pattern(size)
    for _ in range(n):
        await ws.send(msg)
    await ws.send("END")
    await drain(ws)


async def do_count(ws, query):
    count = total = 0
    async for msg in ws:
        if msg == "REPORT":
            await ws.send("count=%d bytes=%d" % (count, total))
            continue
        count += 1
        total += len(msg.encode("utf-8")) if isinstance(msg, str) else len(msg)


async def do_ping(ws, query):
    waiter = await ws.ping(b"srv")
    reader = asyncio.ensure_future(drain(ws))
    try:
        await asyncio.wait([reader, waiter], return_when=asyncio.FIRST_COMPLETED)
        if waiter.done() and not waiter.cancelled():
            await ws.send("pong:srv")
        await reader
    finally:
        reader.cancel()


async def handler(ws):
    global conn_counter
    conn_counter += 1
    conn_id = conn_counter
    url = urlsplit(ws.path)
    query = parse_qs(url.query, keep_blank_values=True)
    path = url.path
    try:
        if path == "/echo":
            await do_echo(ws, query)
        elif path == "/chat":
            await do_chat(ws, query, conn_id)
        elif path == "/prices":
            await do_prices(ws, query)
        elif path == "/headers":
            await ws.send(headers_json(ws))
            await drain(ws)
        elif path == "/subproto":
            await ws.send(ws.subprotocol or "")
            await drain(ws)
        elif path == "/close":
            await do_close(ws, query)
        elif path == "/blast":
            await do_blast(ws, query)
        elif path == "/count":
            await do_count(ws, query)
        elif path == "/invalid_utf8":
            await ws.send("ok")
            await ws.write_frame(True, OP_TEXT, INVALID_UTF8)
            await drain(ws)
        elif path == "/big":
            await ws.send(pattern(int_arg(query, "size", 0, 0, 256 << 20)))
            await drain(ws)
        elif path == "/ping":
            await do_ping(ws, query)
    except websockets.exceptions.ConnectionClosed:
        pass


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
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await serve(handler, args.host, args.port, ssl=tls,
                         subprotocols=SUBPROTOCOLS,
                         select_subprotocol=select_subprotocol,
                         process_request=process_request,
                         ping_interval=None, close_timeout=2,
                         max_size=MAX_MESSAGE, max_queue=64)
    port = server.sockets[0].getsockname()[1]
    print("LISTENING %d" % port, flush=True)
    await stop
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
