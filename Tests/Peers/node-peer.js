#!/usr/bin/env node
// Interop peer on Node `ws` (Debian node-ws 8.11). Run: NODE_PATH=/usr/share/nodejs node node-peer.js ...
// The CLI and the output conventions are the same as python-peer.py's; see Tests/Peers/README.md.
//
//   server [--deflate] [--protocol NAME] [--max-payload N] [--max-seconds S]
//     Listens on 127.0.0.1:<ephemeral>, prints `LISTENING <port>` on stdout, echoes every message
//     (text as text, binary as binary) except these text commands:
//       ping:<p>            send a ping with payload <p>; when its pong arrives, send text "pong:<p>"
//       close:<code>:<why>  close with that code and reason
//       fragments:<n>:<t>   send text <t> as one message in <n> frames
//       headers             send JSON of the upgrade request headers (lower-case names)
//       info                send JSON {"protocol": ..., "extensions": ...}
//     Exits when stdin reaches EOF or after --max-seconds (default 120).
//
//   client --url ws://127.0.0.1:P/path [--deflate] [--protocol X] [--check-commands] [--max-seconds S]
//     Runs the scripted exchange and prints one line `RESULT {json}`; exit 0 if ok, 1 if not.
'use strict';
const WebSocket = require('ws');

const argv = process.argv.slice(2);
const mode = argv[0];
const flag = (name) => argv.includes(name);
const opt = (name, def) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : def;
};
const log = (...a) => console.error('[node-peer]', ...a);
const deflate = flag('--deflate') ? { threshold: 0 } : false;
const protocol = opt('--protocol', null);
const maxSeconds = Number(opt('--max-seconds', mode === 'server' ? 120 : 30));

if (mode === 'server') server();
else if (mode === 'client') client();
else {
  console.error('usage: node-peer.js server|client [options]');
  process.exit(2);
}

function server() {
  const wss = new WebSocket.WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: deflate,
    maxPayload: Number(opt('--max-payload', 64 * 1024 * 1024)),
    handleProtocols: (offered) => (protocol && offered.has(protocol) ? protocol : false),
  });
  // Remember the negotiated extensions header per request, for `info`.
  wss.on('headers', (headers, req) => {
    const h = headers.find((l) => /^sec-websocket-extensions:/i.test(l));
    req.negotiatedExtensions = h ? h.slice(h.indexOf(':') + 1).trim() : null;
  });
  wss.on('connection', (ws, req) => {
    log('connection', req.url, req.headers['sec-websocket-extensions'] || '');
    const pendingPings = [];
    ws.on('pong', (data) => {
      if (pendingPings.length) ws.send('pong:' + pendingPings.shift());
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return ws.send(data, { binary: true });
      const text = data.toString('utf8');
      let m;
      if ((m = /^ping:([\s\S]*)$/.exec(text))) {
        pendingPings.push(m[1]);
        ws.ping(m[1]);
      } else if ((m = /^close:(\d+):([\s\S]*)$/.exec(text))) {
        ws.close(Number(m[1]), m[2]);
      } else if ((m = /^fragments:(\d+):([\s\S]*)$/.exec(text))) {
        const chars = Array.from(m[2]); // split on code points, so every frame is valid UTF-8
        const n = Math.max(1, Number(m[1]));
        for (let i = 0; i < n; i++) {
          const piece = chars.slice(Math.floor((i * chars.length) / n), Math.floor(((i + 1) * chars.length) / n));
          ws.send(piece.join(''), { fin: i === n - 1 });
        }
      } else if (text === 'headers') {
        ws.send(JSON.stringify(req.headers));
      } else if (text === 'info') {
        ws.send(JSON.stringify({ protocol: ws.protocol || null, extensions: req.negotiatedExtensions }));
      } else {
        ws.send(text);
      }
    });
    ws.on('close', (code, reason) => log('close', code, reason.toString()));
    ws.on('error', (e) => log('error', e.message));
  });
  wss.on('listening', () => process.stdout.write(`LISTENING ${wss.address().port}\n`));
  wss.on('error', (e) => {
    log('server error', e.message);
    process.exit(1);
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
  setTimeout(() => process.exit(0), maxSeconds * 1000).unref();
}

// ---------------------------------------------------------------- client

function pattern(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
}

const UNICODE = [
  'κόσμε', 'Hello, 世界', '😀🎉🚀', 'Ünïcödé ß', 'مرحبا بالعالم',
  'שלום', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', 'a\u0000b', '', 'mixed ascii + é + 🙂 + 中',
];

async function client() {
  const url = opt('--url', null);
  const result = { ok: false, peer: 'node-ws', url, steps: 0, protocol: null, extensions: null };
  const finish = (error) => {
    if (error) result.error = String(error.message || error);
    else result.ok = true;
    process.stdout.write('RESULT ' + JSON.stringify(result) + '\n');
    process.exit(result.ok ? 0 : 1);
  };
  setTimeout(() => finish(new Error(`timeout after ${maxSeconds}s`)), maxSeconds * 1000).unref();
  if (!url) return finish(new Error('--url is required'));

  const ca = opt('--ca', null); // wss:// against a private CA
  const ws = new WebSocket(url, protocol ? [protocol] : [], {
    perMessageDeflate: deflate,
    maxPayload: 0,
    ...(ca ? { ca: require('fs').readFileSync(ca) } : {}),
  });
  const inbox = [];
  const waiters = [];
  let closed = null;
  const deliver = (item) => (waiters.length ? waiters.shift()(item) : inbox.push(item));
  ws.on('message', (data, isBinary) => deliver({ data, isBinary }));
  ws.on('pong', (data) => deliver({ pong: data }));
  ws.on('close', (code, reason) => {
    closed = { code, reason: reason.toString() };
    deliver({ close: closed });
  });
  ws.on('error', (e) => finish(e));
  ws.on('upgrade', (res) => (result.extensions = res.headers['sec-websocket-extensions'] || null));
  const next = () => new Promise((resolve) => (inbox.length ? resolve(inbox.shift()) : waiters.push(resolve)));
  const expectText = async (want, what) => {
    const m = await next();
    if (m.close) throw new Error(`${what}: connection closed ${m.close.code} ${m.close.reason}`);
    if (m.pong || m.isBinary) throw new Error(`${what}: expected text, got ${m.pong ? 'pong' : 'binary'}`);
    const got = m.data.toString('utf8');
    if (want !== null && got !== want) throw new Error(`${what}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got.slice(0, 200))}`);
    result.steps++;
    return got;
  };

  try {
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('close', () => reject(new Error('closed before open')));
    });
    result.protocol = ws.protocol || null;

    ws.send('hello');
    await expectText('hello', 'hello');

    const big = pattern(1024 * 1024);
    ws.send(big, { binary: true });
    const m = await next();
    if (m.close) throw new Error(`1 MiB binary: connection closed ${m.close.code} ${m.close.reason}`);
    if (!m.isBinary || !m.data.equals(big)) throw new Error('1 MiB binary echo mismatch');
    result.steps++;

    for (const s of UNICODE) ws.send(s);
    for (const [i, s] of UNICODE.entries()) await expectText(s, `unicode #${i}`);

    ws.ping('probe-42');
    const p = await next();
    if (!p.pong || p.pong.toString() !== 'probe-42') throw new Error('ping: expected pong "probe-42"');
    result.steps++;

    if (flag('--check-commands')) {
      // Exercise the peer command protocol (only meaningful against node-peer / python-peer servers).
      ws.send('info');
      const info = JSON.parse(await expectText(null, 'info'));
      if (info.protocol !== result.protocol || info.extensions !== result.extensions)
        throw new Error(`info mismatch: ${JSON.stringify(info)}`);
      ws.send('headers');
      const headers = JSON.parse(await expectText(null, 'headers'));
      if (!headers['sec-websocket-key'] || !headers.host) throw new Error('headers: missing sec-websocket-key/host');
      const fragmented = 'fragmented κόσμε 😀 text';
      ws.send(`fragments:4:${fragmented}`);
      await expectText(fragmented, 'fragments');
      ws.send('ping:abc');
      await expectText('pong:abc', 'ping command');
      ws.send('unknown:command');
      await expectText('unknown:command', 'unknown command echo');
      ws.send('close:4001:bye');
      const c = await next();
      if (!c.close || c.close.code !== 4001 || c.close.reason !== 'bye')
        throw new Error(`close command: expected close 4001 "bye", got ${JSON.stringify(c)}`);
      result.steps++;
      result.closeCode = c.close.code;
      result.closeReason = c.close.reason;
      return finish();
    }

    ws.close(1000, 'done');
    const c = await next();
    if (!c.close) throw new Error('close: expected the close handshake, got a message');
    if (c.close.code !== 1000) throw new Error(`close: expected code 1000 echoed, got ${c.close.code}`);
    result.steps++;
    result.closeCode = c.close.code;
    result.closeReason = c.close.reason;
    finish();
  } catch (e) {
    finish(e);
  }
}
