// Peer client of the end-to-end benchmarks: Node's `ws` package (from
// tests/peers/node_modules) against tests/bench/bench_server. Same command
// line and RESULT line as tests/bench/ref_client.c (recv, echo, pipe, send).
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '..', 'peers', 'node_modules', 'ws'));

const a = { port: 0, mode: 'recv', size: 16, secs: 1, depth: 100, deflate: false };
for (let i = 2; i < process.argv.length; i++) {
    const k = process.argv[i].replace(/^--/, '');
    if (k === 'deflate') a.deflate = true;
    else a[k] = k === 'mode' ? process.argv[++i] : Number(process.argv[++i]);
}
const now = () => Number(process.hrtime.bigint()) / 1e9;
const route = { recv: '/blast', send: '/sink' }[a.mode] || '/echo';
const url = `ws://127.0.0.1:${a.port}${route}?size=${a.size}${a.deflate ? '&deflate=1' : ''}`;
const ws = new WebSocket(url, { perMessageDeflate: a.deflate, maxPayload: 0 });
let msgs = 0, bytes = 0, t0 = 0, t1 = 0, lat = [];

function done() {
    t1 = now();
    let p50 = 0, p99 = 0;
    if (lat.length) {
        lat.sort((x, y) => x - y);
        p50 = lat[lat.length >> 1] * 1e6;
        p99 = lat[Math.floor(lat.length * 0.99)] * 1e6;
    }
    console.log(`RESULT msgs=${msgs} bytes=${bytes} secs=${(t1 - t0).toFixed(6)} ` +
        `p50_us=${p50.toFixed(1)} p99_us=${p99.toFixed(1)}`);
    ws.terminate();
    process.exit(0);
}

ws.on('error', (e) => { console.error('node_client: ' + e.message); process.exit(1); });
ws.on('open', () => {
    t0 = now();
    const end = t0 + a.secs;
    const payload = Buffer.alloc(a.size, 'x');
    if (a.mode === 'recv') {
        ws.on('message', (m) => {
            msgs++;
            bytes += m.length;
            if ((msgs & 255) === 0 && now() >= end) done();
        });
    } else if (a.mode === 'echo' || a.mode === 'pipe') {
        const k = a.mode === 'echo' ? 1 : a.depth;
        let inflight = k, sending = true, ts = t0;
        ws.on('message', (m) => {
            inflight--;
            msgs++;
            bytes += m.length;
            const t = now();
            if (k === 1) lat.push(t - ts);
            if (sending && t >= end) sending = false;
            if (sending) {
                ts = t;
                ws.send(payload);
                inflight++;
            } else if (inflight === 0) done();
        });
        for (let i = 0; i < k; i++) ws.send(payload);
    } else {
        let n = 0;
        ws.on('message', (m) => {
            const r = /count=(\d+) bytes=(\d+)/.exec(m.toString());
            msgs = Number(r[1]);
            bytes = Number(r[2]);
            done();
        });
        const pump = () => {
            // send in batches while the socket's buffer is not too full
            while (ws.bufferedAmount < 4 * 1024 * 1024) {
                for (let i = 0; i < 64; i++) ws.send(payload);
                n += 64;
                if (now() >= end) { ws.send('REPORT'); return; }
            }
            setImmediate(pump);
        };
        pump();
    }
});
