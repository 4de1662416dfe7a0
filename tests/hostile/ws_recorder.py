#!/usr/bin/python3
"""Loopback WebSocket server for the hostile-worker tests: it records how
every connection ended, so a test can check that the broker closed a killed
worker's connections properly.

Own minimal RFC 6455 server (threads, no extensions), so it can also behave
badly on purpose:
  /k/NAME      echo text and binary messages; on the client's close frame
               print "CLOSE /k/NAME <code>", answer it and close; on EOF
               without a close frame print "CLOSE /k/NAME EOF".
  /stall/NAME  handshake, then never read (small receive buffer); close
               after 20 s.
  /blast/NAME?n=N&size=S  send N binary messages of S bytes as fast as the
               socket takes them, then behave like /k.
Prints "LISTENING <port>" first (flushed). Runs until SIGTERM/SIGINT or
--lifetime seconds (default 300) pass.

Usage: /usr/bin/python3 tests/hostile/ws_recorder.py --port 0
"""
import argparse
import base64
import hashlib
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
out_lock = threading.Lock()


def say(line):
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(sock):
    """Returns (opcode, payload) or None at EOF."""
    h = read_exact(sock, 2)
    if h is None:
        return None
    op = h[0] & 0x0F
    masked = h[1] & 0x80
    n = h[1] & 0x7F
    if n == 126:
        ext = read_exact(sock, 2)
        if ext is None:
            return None
        n = struct.unpack(">H", ext)[0]
    elif n == 127:
        ext = read_exact(sock, 8)
        if ext is None:
            return None
        n = struct.unpack(">Q", ext)[0]
    key = b"\0\0\0\0"
    if masked:
        key = read_exact(sock, 4)
        if key is None:
            return None
    data = read_exact(sock, n) if n else b""
    if data is None:
        return None
    if masked:
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return op, data


def frame(op, data):
    n = len(data)
    if n < 126:
        head = struct.pack(">BB", 0x80 | op, n)
    elif n < 65536:
        head = struct.pack(">BBH", 0x80 | op, 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | op, 127, n)
    return head + data


def handshake(sock):
    req = b""
    while b"\r\n\r\n" not in req:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        req += chunk
        if len(req) > 65536:
            return None
    lines = req.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) < 2:
        return None
    target = parts[1].decode("latin-1")
    key = None
    for line in lines[1:]:
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
    if key is None:
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        return None
    acc = base64.b64encode(hashlib.sha1(key + GUID).digest())
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
    return target


def serve_echo(sock, path):
    while True:
        try:
            fr = read_frame(sock)
        except OSError:
            fr = None
        if fr is None:
            say("CLOSE %s EOF" % path)
            return
        op, data = fr
        if op in (1, 2):
            sock.sendall(frame(op, data))
        elif op == 9:
            sock.sendall(frame(10, data))
        elif op == 8:
            code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 1005
            say("CLOSE %s %d" % (path, code))
            try:
                sock.sendall(frame(8, data[:2]))
            except OSError:
                pass
            return


def handle(sock):
    try:
        target = handshake(sock)
        if target is None:
            return
        url = urllib.parse.urlsplit(target)
        path = url.path
        say("OPEN %s" % path)
        if path.startswith("/stall/"):
            time.sleep(20)
            return
        if path.startswith("/blast/"):
            q = urllib.parse.parse_qs(url.query)
            n = int(q.get("n", ["1000"])[0])
            size = int(q.get("size", ["1000"])[0])
            msg = frame(2, b"b" * size)
            batch = msg * max(1, 65536 // len(msg))
            per = max(1, 65536 // len(msg))
            sent = 0
            try:
                while sent < n:
                    sock.sendall(batch)
                    sent += per
            except OSError:
                say("CLOSE %s EOF" % path)
                return
        serve_echo(sock, path)
    except OSError:
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--lifetime", type=float, default=300)
    a = ap.parse_args()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ls.bind((a.host, a.port))
    ls.listen(64)
    say("LISTENING %d" % ls.getsockname()[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGALRM, lambda *_: sys.exit(0))
    signal.alarm(int(a.lifetime))
    try:
        while True:
            s, _ = ls.accept()
            threading.Thread(target=handle, args=(s,), daemon=True).start()
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
