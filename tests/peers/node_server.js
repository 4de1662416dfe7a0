#!/usr/bin/env node
// Test peer: the path-based test protocol on Node's `ws` package (v8).
//
// Purpose: one of the four loopback WebSocket servers that the Lua test
// scripts, the smoke client and the demo talk to (protocol in
// tests/peers/README.md). Layer: tests only. Depends on Node's standard
// library and tests/peers/node_modules/ws (`npm install` in tests/peers).
//
// Usage: node tests/peers/node_server.js --port 0 [--host H] [--tls CERT KEY]
// Prints `LISTENING <port>` once ready; SIGTERM/SIGINT closes every
// connection with 1001 and exits 0.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, 'node_modules', 'ws'));

const SUBPROTOCOLS = ['chat.v2', 'graphql-ws'];
const PATHS = new Set(['/echo', '/chat', '/prices', '/headers', '/subproto', '/close',
  '/blast', '/count', '/invalid_utf8', '/big', '/ping']);
const INVALID_UTF8 = Buffer.from([0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc,
  0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65, 0x64, 0x69, 0x74, 0x65, 0x64]);
const MAX_MESSAGE = 256 * 1024 * 1024; // bytes; larger inbound messages close with 1009
const BLAST_BATCH = 256; // messages queued before waiting for the socket to take them

let connCounter = 0; // WebSocket connections accepted since start (1-based ids)
const rooms = new Map(); // chat room key (JSON of R) -> Set of sockets

function parseArgs(argv) {
  const out = { port: 0, host: '127.0.0.1', tls: null };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--port') out.port = parseInt(argv[++i], 10);
    else if (argv[i] === '--host') out.host = argv[++i];
    else if (argv[i] === '--tls') { out.tls = [argv[i + 1], argv[i + 2]]; i += 2; }
    else { console.error(`unknown argument ${argv[i]}`); process.exit(2); }
  }
  return out;
}

function intArg(q, name, dflt, lo = 0, hi = 2 ** 40) {
  const v = q.get(name);
  if (v === null || !/^-?\d+$/.test(v)) return dflt;
  return Math.max(lo, Math.min(hi, parseInt(v, 10)));
}

function pattern(size) {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = i % 251;
  return b;
}

function parseJson(data) {
  try { return JSON.parse(data.toString('utf8')); } catch (e) { return null; }
}

function doChat(ws, id) {
  const joined = new Set();
  ws.on('message', (data, isBinary) => {
    const obj = parseJson(data);
    if (!obj || typeof obj !== 'object' || Array.isArray(obj) || !('room' in obj)) return;
    const key = JSON.stringify(obj.room);
    if (obj.type === 'join') {
      if (!rooms.has(key)) rooms.set(key, new Set());
      rooms.get(key).add(ws);
      joined.add(key);
      ws.send(JSON.stringify({ type: 'joined', room: obj.room }));
    } else if (obj.type === 'message') {
      const out = JSON.stringify({ type: 'message', room: obj.room,
        text: obj.text === undefined ? null : obj.text, from: id });
      for (const peer of rooms.get(key) || []) if (peer.readyState === 1) peer.send(out);
    }
  });
  ws.on('close', () => {
    for (const key of joined) {
      const m = rooms.get(key);
      if (m) { m.delete(ws); if (m.size === 0) rooms.delete(key); }
    }
  });
}

function doPrices(ws, q) {
  const interval = intArg(q, 'interval', 100, 1, 3600 * 1000);
  const count = intArg(q, 'count', -1, 0);
  let symbols = null;
  let timer = null;
  let seq = 0;
  const tick = () => {
    for (const sym of symbols) {
      if (count >= 0 && seq >= count) break;
      seq++;
      ws.send(JSON.stringify({ symbol: sym, value: 100 + seq }));
    }
    if (count >= 0 && seq >= count) { clearInterval(timer); ws.close(1000, 'done'); }
  };
  ws.on('message', (data) => {
    const obj = parseJson(data);
    if (!obj || obj.action !== 'subscribe' || !Array.isArray(obj.symbols)) return;
    symbols = obj.symbols.slice();
    if (!timer) timer = setInterval(tick, interval);
  });
  ws.on('close', () => { if (timer) clearInterval(timer); });
}

function doBlast(ws, q) {
  const n = intArg(q, 'n', 0, 0, 2 ** 30);
  const size = intArg(q, 'size', 0, 0, MAX_MESSAGE);
  const binary = q.get('type') === 'binary';
  const msg = binary ? pattern(size) : 'x'.repeat(size);
  let sent = 0;
  const pump = () => {
    if (ws.readyState !== 1) return;
    const stop = Math.min(n, sent + BLAST_BATCH);
    while (sent < stop - 1) { ws.send(msg, { binary }); sent++; }
    if (sent < n) { sent++; ws.send(msg, { binary }, () => setImmediate(pump)); return; }
    ws.send('END');
  };
  pump();
}

function doClose(ws, q) {
  const code = intArg(q, 'code', 1000, 0, 65535);
  const reason = q.get('reason') || '';
  const n = intArg(q, 'n', 0, 0, 1 << 20);
  for (let i = 1; i <= n; i++) ws.send(`m${i}`);
  if (code === 1005) { ws.close(); return; }
  try { ws.close(code, reason); } catch (e) { ws.close(1000, reason); }
}

function onConnection(ws, req, url) {
  const id = ++connCounter;
  const q = url.searchParams;
  ws.on('error', () => {});
  switch (url.pathname) {
    case '/echo':
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      break;
    case '/chat': doChat(ws, id); break;
    case '/prices': doPrices(ws, q); break;
    case '/headers': {
      const h = {};
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
        const k = req.rawHeaders[i].toLowerCase();
        h[k] = k in h ? `${h[k]}, ${req.rawHeaders[i + 1]}` : req.rawHeaders[i + 1];
      }
      h._path = req.url;
      h._subprotocol = ws.protocol || '';
      ws.send(JSON.stringify(h));
      break;
    }
    case '/subproto': ws.send(ws.protocol || ''); break;
    case '/close': doClose(ws, q); break;
    case '/blast': doBlast(ws, q); break;
    case '/count': {
      let count = 0;
      let bytes = 0;
      ws.on('message', (data, isBinary) => {
        if (!isBinary && data.length === 6 && data.toString() === 'REPORT') {
          ws.send(`count=${count} bytes=${bytes}`);
          return;
        }
        count++;
        bytes += data.length;
      });
      break;
    }
    case '/invalid_utf8':
      ws.send('ok');
      ws.send(INVALID_UTF8, { binary: false });
      break;
    case '/big': ws.send(pattern(intArg(q, 'size', 0, 0, MAX_MESSAGE))); break;
    case '/ping':
      ws.on('pong', (data) => ws.send(`pong:${data.toString()}`));
      ws.ping('srv');
      break;
    default: ws.close(1008, 'unknown path');
  }
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const server = args.tls
    ? https.createServer({ cert: fs.readFileSync(args.tls[0]), key: fs.readFileSync(args.tls[1]) })
    : http.createServer();
  server.on('request', (req, res) => { res.writeHead(426); res.end('upgrade required\n'); });
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_MESSAGE,
    perMessageDeflate: { threshold: 0 },
    handleProtocols: (offered) => {
      for (const p of offered) if (SUBPROTOCOLS.includes(p)) return p;
      return false;
    },
  });
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => {});
    let url;
    try { url = new URL(req.url, 'http://localhost'); } catch (e) { url = null; }
    if (!url || !PATHS.has(url.pathname)) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\nConnection: close\r\n\r\nunknown path\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, req, url));
  });
  server.on('clientError', (err, socket) => socket.destroy());
  const stop = () => {
    for (const c of wss.clients) c.close(1001, 'server shutdown');
    server.close();
    setTimeout(() => process.exit(0), 300);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  server.listen(args.port, args.host, () => {
    process.stdout.write(`LISTENING ${server.address().port}\n`);
  });
}

main();
