#!/usr/bin/python3
"""Writes the committed seed corpora of tests/fuzz/corpus/<target>/ (small,
hand-made inputs that reach deep states quickly; libFuzzer mutates from
there). Run from the repository root: /usr/bin/python3 tests/fuzz/make_seeds.py
The input formats are described at the top of each tests/fuzz/fuzz_*.c."""
import os
import struct
import zlib

ROOT = "tests/fuzz/corpus"


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- fuzz_intake / fuzz_intake_flip -------------------------------------
# cfg byte: bits 0-1 ring size (4 KiB << n), bit 2 start with READY, bit 3
# consume the broker's ring before every intake. Ops: op % 10.
T = {"READY": 0, "LOG": 1, "EXIT": 2, "CONNECT": 3, "SEND": 4, "PING": 5, "CLOSE": 6,
     "CREDIT": 7}
BEGIN, MORE, BINARY = 4, 1, 2


def rec(t, flags=0, conn=1, shape=0x40, body=b""):
    return bytes([0, T[t], flags, conn, shape]) + body


def connect(conn=1, shape=0x40, cap=2, comp=0, dial=0, extra=b""):
    # capacity, compression, dial, [query byte if shape&1], next-id flag
    return rec("CONNECT", 0, conn, shape, bytes([cap - 1, comp, dial]) + extra + b"\x00")


def send(data, flags=BEGIN, conn=1, total_extra=None):
    if flags & BEGIN:
        shape = 0x40 if total_extra is None else 0x42
        body = bytes([len(data)]) + (bytes([total_extra]) if total_extra is not None else b"")
        return rec("SEND", flags, conn, shape, body + data)
    return rec("SEND", flags, conn, 0x40, bytes([len(data)]) + data)


def raw_rec(t, flags, conn, payload):
    # shape < 64: raw payload with a u16 length
    return bytes([0, T[t], flags, conn, 0x00]) + struct.pack("<H", len(payload)) + payload


INTAKE = bytes([4])
PUBLISH = bytes([3])
seeds = {
    "ready_log": bytes([0x0c]) + raw_rec("LOG", 0, 0, b"hello\n") + INTAKE,
    "ready_exit": bytes([0x0c]) + rec("EXIT", 0, 0, 0x40, b"\x01") + INTAKE,
    "no_ready_log": bytes([0x08]) + raw_rec("LOG", 0, 0, b"x") + INTAKE,
    "ready_twice": bytes([0x0c]) + rec("READY", 0, 0, 0x00, b"\x02\x00ok") + INTAKE,
    "connect_send": bytes([0x0c]) + connect() + INTAKE + send(b"hi") + INTAKE,
    "connect_send_chunks": bytes([0x0c]) + connect() + INTAKE
    + send(b"abc", BEGIN | MORE, total_extra=3) + send(b"def", 0) + INTAKE,
    "connect_close": bytes([0x0c]) + connect() + INTAKE
    + rec("CLOSE", 0, 1, 0x41, b"\x03bye") + INTAKE + send(b"late") + INTAKE,
    "connect_credit": bytes([0x0c]) + connect() + INTAKE + rec("CREDIT", 0, 1, 0x40, b"\x00")
    + INTAKE + rec("CREDIT", 0, 1, 0x40, b"\x01") + INTAKE,
    "connect_ping": bytes([0x0c]) + connect() + INTAKE + rec("PING", 0, 1, 0x40, b"\x07") + INTAKE,
    "connect_query": bytes([0x0c]) + connect(shape=0x41, extra=b"\x05") + INTAKE,
    "connect_denied": bytes([0x0c]) + connect(shape=0x42) + INTAKE,
    "connect_headers": bytes([0x0c]) + connect(shape=0x64) + INTAKE,
    "connect_bad_header": bytes([0x0c]) + connect(shape=0x5c) + INTAKE,
    "connect_many": bytes([0x0c]) + b"".join(connect(conn=i) for i in range(1, 5))
    + INTAKE + connect(conn=4) + INTAKE,
    "connect_comp": bytes([0x0c]) + connect(comp=1) + connect(conn=2, comp=2) + INTAKE,
    "text_utf8": bytes([0x0c]) + connect() + INTAKE + send("äö€".encode()) + INTAKE
    + send(b"\xff\xfe") + INTAKE,
    "binary": bytes([0x0c]) + connect() + INTAKE + send(b"\x00\x01\x02", BEGIN | BINARY) + INTAKE,
    "head_back": bytes([0x0c]) + raw_rec("LOG", 0, 0, b"x") + INTAKE + bytes([6, 5]) + INTAKE,
    "head_far": bytes([0x0c]) + bytes([6, 3, 0]) + INTAKE,
    "head_odd": bytes([0x0c]) + bytes([6, 2, 3]) + INTAKE,
    "tail_back": bytes([0x0c]) + raw_rec("LOG", 0, 0, b"x") + INTAKE + bytes([7, 2]) + INTAKE,
    "tail_far": bytes([0x04]) + bytes([7, 3]) + raw_rec("LOG", 0, 0, b"x") + INTAKE,
    "raw_bytes": bytes([0x0c]) + bytes([5, 0, 0, 16]) + b"\x10\x00\x00\x00\x01\x00\x00\x00"
    + b"\x00" * 8 + bytes([6, 0, 2]) + INTAKE,
    "flip": bytes([0x0c]) + raw_rec("LOG", 0, 0, b"abcdef") + bytes([9, 0, 16, 0, 0, 3]) + INTAKE,
    "wants": bytes([0x0c]) + bytes([8, 1, 1, 0, 0, 0]) + raw_rec("LOG", 0, 0, b"x") + INTAKE,
    "big_ring_logs": bytes([0x0f]) + b"".join(raw_rec("LOG", 0, 0, b"L" * 200) for _ in range(20))
    + INTAKE,
    "wrap": bytes([0x0c]) + b"".join(raw_rec("LOG", 0, 0, b"W" * 300) for _ in range(30)) + INTAKE,
    "exit_then_send": bytes([0x0c]) + connect() + INTAKE + rec("EXIT", 0, 0, 0x40, b"\x01")
    + send(b"x") + INTAKE,
    "unknown_type": bytes([0x0c]) + bytes([0, 0xf5, 20, 0, 0, 0, 0x00, 0x00, 0x00]) + INTAKE,
    "send_unopened": bytes([0x0c]) + send(b"x", conn=3) + INTAKE,
    "send_zero": bytes([0x0c]) + connect() + INTAKE + send(b"") + INTAKE,
    "stderr_log": bytes([0x0c]) + raw_rec("LOG", 8, 0, b"err\x1b[31m\n") + INTAKE,
    "empty": b"",
}
for name, data in seeds.items():
    write("fuzz_intake", name, data)
    write("fuzz_intake_flip", name, data)

# ---- fuzz_url ----------------------------------------------------------
urls = [
    "ws://example.com/", "wss://Example.COM:443/a/../b?x=1", "ws://127.0.0.1:8080/chat",
    "ws://[::1]:9000/", "wss://[2001:DB8::1]/x", "ws://xn--bcher-kva.example/",
    "wss://bücher.example/pfad", "ws://a.b.example.net:8080/api/v1", "ws://example.com/%2e%2E/x",
    "ws://example.com/a%2Fb", "ws://example.com/?", "ws://example.com:80/", "wss://example.com/api/",
    "ws://sub.example.net:8080/", "ws://0x7f.0.0.1/", "ws://2130706433/", "ws://127.1/",
    "ws://user@example.com/", "ws://example.com/#frag", "http://example.com/", "ws:/x",
    "ws://example.com./", "ws://EXAMPLE.com/Ü?q=ä", "ws://exa mple.com/", "ws://[fe80::1%25eth0]/",
    "ws://example.com:65536/", "ws://example.com:/", "ws://-bad.example/", "ws://ΑΒΓ.example/",
    "wss://example.com/api/../../etc", "ws://127.0.0.1/", "ws://127.0.0.1:80/x?y",
    "ws://example.com/%7e%41", "ws://example.com/a b", "ws://ex\u200bample.com/",
]
for i, u in enumerate(urls):
    write("fuzz_url", "u%02d" % i, u.encode())

# ---- fuzz_policy: ctl, pattern, '\n', resource -------------------------
pol = [
    (0, "wss://example.com/api/*", "wss://example.com/api/x"),
    (0, "wss://example.com/x", "wss://example.com/x"),
    (0, "WSS://Example.COM:443/x", "wss://example.com/x"),
    (4, "ws://127.0.0.1/*", "ws://127.0.0.1/a"),
    (0, "ws://*.example.net:8080/*", "ws://a.example.net:8080/z"),
    (0, "ws://*.example.net/x", "ws://example.net/x"),
    (0, "wss://example.com*", "wss://example.com.evil.net/"),
    (0, "wss://example.com:*", "wss://example.com:444/"),
    (0, "*", "wss://anything/"),
    (1, "*", ""),
    (2, "*", "ws://x/"),
    (3, "*", "ws://x/"),
    (0, "wss://example.com/a/../*", "wss://example.com/b"),
    (0, "wss://example.com/%2A", "wss://example.com/%2A"),
    (4, "wss://example.com/x", "wss://example.com/x"),
    (8, "", "ws://x/"),
    (0, "ws://[::1]:9000/*", "ws://[::1]:9000/q"),
    (0, "wss://bücher.example/*", "wss://xn--bcher-kva.example/"),
    (0xe0, "ws://a/*", "ws://a/b"),
    (16, "ws://a/b?c", "ws://a/b?c"),
]
for i, (c, p, r) in enumerate(pol):
    write("fuzz_policy", "p%02d" % i, bytes([c]) + p.encode() + b"\n" + r.encode())

# ---- fuzz_duration -----------------------------------------------------
durs = ["300ms", "1.5h", "2h45m", "-1s", "+0", "0", "1µs", "1us", "1ns", "1.9ns", ".5s", "5.s",
        "1e3s", "9223372036854775807ns", "9223372036854775808ns", "292y", "2562047h47m16.854775807s",
        "1h1h1h", "", "+", "1", "s", "1 s", "1S", "0.000000000001s", "123456789012345678901234m",
        "1.2.3s", "3m-1s", "00001s"]
for i, d in enumerate(durs):
    write("fuzz_duration", "d%02d" % i, d.encode())

# ---- fuzz_json: byte 0 even = decode, odd = build program --------------
docs = ['{"a":1,"b":[true,false,null],"c":"x\\u00e9\\ud83d\\ude00"}', "[]", "{}", "[1,2.5,-0,1e308]",
        '"\\ud800"', "[[[[[[[[[[]]]]]]]]]]", '{"a":{"a":{"a":{}}}}', "9223372036854775807",
        "9223372036854775808", "-9223372036854775808", "1.0", "0.1", "1e-400", '"\xff"',
        '[1,null,3]', '{"1":1,"2":2}', "  true  ", "nul", "[1,]", '{"a" 1}', '"a\\"b\\\\c\\/"',
        "\"\t\"", "[" * 300 + "]" * 300]
for i, d in enumerate(docs):
    write("fuzz_json", "j%02d" % i, b"\x00" + d.encode("utf-8", "surrogateescape"))
progs = [
    bytes([4, 0, 3]) + b"abc" + bytes([5, 1]) + struct.pack("<q", 42) + bytes([5]),
    bytes([4, 0, 1]) + b"k" + bytes([0, 1]) + b"v" + bytes([6]),
    bytes([4, 8]),
    bytes([2]) + struct.pack("<d", float("nan")),
    bytes([2]) + struct.pack("<d", float("inf")),
    bytes([0x82 | 0x40]),
    bytes([4, 0x81]) + struct.pack("<q", -1) + bytes([0x57]),
    bytes([4, 0, 2]) + b"\xff\xfe" + bytes([5]),
    bytes([4, 0x89, 6]),
    bytes([4, 4, 4, 5, 5]),
]
for i, p in enumerate(progs):
    write("fuzz_json", "b%02d" % i, b"\x01" + p)


# ---- fuzz_ws: options, chunk, server bytes -----------------------------
def sframe(op, data, fin=True, rsv1=False):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    n = len(data)
    if n < 126:
        h = bytes([b0, n])
    elif n < 65536:
        h = bytes([b0, 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, 127]) + struct.pack(">Q", n)
    return h + data


def deflate(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(b"\x00\x00\xff\xff") else out


frames = {
    "text": sframe(1, b"hello"),
    "binary": sframe(2, bytes(range(200))),
    "frag": sframe(1, b"hel", fin=False) + sframe(9, b"p") + sframe(0, b"lo"),
    "ping_close": sframe(9, b"abc") + sframe(8, struct.pack(">H", 1000) + b"bye"),
    "close_1005": sframe(8, b""),
    "close_bad": sframe(8, struct.pack(">H", 1004)),
    "pong": sframe(10, b"12345678"),
    "bad_utf8": sframe(1, b"\xce\xba\xed\xa0\x80"),
    "split_utf8": sframe(1, "€".encode()[:2], fin=False) + sframe(0, "€".encode()[2:]),
    "big16": sframe(2, b"x" * 300),
    "len64": bytes([0x82, 127]) + struct.pack(">Q", 1 << 40),
    "masked": bytes([0x81, 0x85, 1, 2, 3, 4]) + b"hello",
    "rsv2": bytes([0xa1, 1]) + b"x",
    "reserved_op": bytes([0x83, 0]),
    "ctl_frag": bytes([0x09, 0]),
    "many": b"".join(sframe(1, b"m%d" % i) for i in range(40)),
}
for name, data in frames.items():
    write("fuzz_ws", "plain_" + name, bytes([0x00, 0]) + data)
    write("fuzz_ws", "chunk_" + name, bytes([0x88, 3]) + data)
comp = {
    "z_text": sframe(1, deflate(b"hello hello hello"), rsv1=True),
    "z_two": sframe(1, deflate(b"abcabcabc"), rsv1=True) + sframe(2, deflate(bytes(100)), rsv1=True),
    "z_frag": sframe(1, deflate(b"fragmented message")[:5], fin=False, rsv1=True)
    + sframe(0, deflate(b"fragmented message")[5:]),
    "z_bomb": sframe(2, deflate(bytes(200000)), rsv1=True),
    "z_plain": sframe(1, b"not compressed"),
    "z_bad": sframe(1, b"\xff\xff\xff", rsv1=True),
}
for name, data in comp.items():
    for opt in (0x01, 0x11, 0x02, 0x72, 0x05, 0x0d):
        write("fuzz_ws", "%s_%02x" % (name, opt), bytes([opt, 0]) + data)
write("fuzz_ws", "hs_raw", bytes([0x03, 0]) + b"HTTP/1.1 101 Switching Protocols\r\n"
      b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
write("fuzz_ws", "hs_404", bytes([0x03, 0]) + b"HTTP/1.1 404 Not Found\r\n\r\n")
