#!/usr/bin/python3
"""Peer client of the end-to-end benchmarks: Debian's python3-websockets
(asyncio) against tests/bench/bench_server. Same command line and RESULT
line as tests/bench/ref_client.c (modes recv, echo, pipe, send)."""
import argparse
import asyncio
import time

import websockets


async def main(a):
    base = "ws://127.0.0.1:%d" % a.port
    comp = "deflate" if a.deflate else None
    path = {"recv": "/blast", "send": "/sink"}.get(a.mode, "/echo")
    url = "%s%s?size=%d%s" % (base, path, a.size, "&deflate=1" if a.deflate else "")
    msgs = nbytes = 0
    lat = []
    ws = await websockets.connect(url, compression=comp, max_size=None, max_queue=256,
                                  ping_interval=None)
    if True:
        t0 = time.monotonic()
        end = t0 + a.secs
        if a.mode == "recv":
            while True:
                m = await ws.recv()
                msgs += 1
                nbytes += len(m)
                if (msgs & 255) == 0 and time.monotonic() >= end:
                    break
        elif a.mode in ("echo", "pipe"):
            payload = b"x" * a.size
            k = 1 if a.mode == "echo" else a.depth
            for _ in range(k):
                await ws.send(payload)
            inflight, sending, ts = k, True, t0
            while inflight:
                m = await ws.recv()
                inflight -= 1
                msgs += 1
                nbytes += len(m)
                t = time.monotonic()
                if k == 1:
                    lat.append(t - ts)
                if sending and t >= end:
                    sending = False
                if sending:
                    ts = t
                    await ws.send(payload)
                    inflight += 1
        else:
            payload = b"x" * a.size
            n = 0
            while time.monotonic() < end:
                for _ in range(64):
                    await ws.send(payload)
                n += 64
            await ws.send("REPORT")
            rep = await ws.recv()
            parts = dict(p.split("=") for p in rep.split())
            msgs, nbytes = int(parts["count"]), int(parts["bytes"])
        t1 = time.monotonic()
    # No close handshake: a blasting server would make it wait for the backlog.
    ws.transport.abort()
    p50 = p99 = 0.0
    if lat:
        lat.sort()
        p50 = lat[len(lat) // 2] * 1e6
        p99 = lat[int(len(lat) * 0.99)] * 1e6
    print("RESULT msgs=%d bytes=%d secs=%.6f p50_us=%.1f p99_us=%.1f" %
          (msgs, nbytes, t1 - t0, p50, p99))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", default="recv")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--secs", type=float, default=1.0)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--deflate", action="store_true")
    asyncio.run(main(ap.parse_args()))
