'use strict';
// Wire check of the benchmark peers, speaking Engine.IO v4 / Socket.IO v5 byte for byte as
// hubcast-loadgen does (raw WebSocket frames, see ../PROTOCOL.md), against each peer:
//   single node  2 receivers + 1 publisher: open packet, `40` -> `40{"sid":…}`, and every
//                `42["publish","<p>"]` arrives as exactly `42["msg","<p>"]` on all three, in order
//   heartbeat    with PING_INTERVAL_MS/PING_TIMEOUT_MS at 250 ms: pings are `2`; a client answering
//                `3` stays and still gets messages, one that never answers is closed
//   two nodes    two servers over Redis (REDIS_URL, a prefix of their own): a publisher on node B
//                reaches receivers on nodes A and B
//
// Usage (from this directory): node verify.js [--peer socketio|socketioxide]... [--redis-url URL]
// Without --redis-url (or VERIFY_REDIS_URL) it starts `redis-server --port <free> --save ''` itself and stops it by pid.
// The socketioxide peer must be built first (../socketioxide/target/release/socketioxide-peer).
const { spawn } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');
const WebSocket = require('ws');

const PEERS = {
  socketio: { command: process.execPath, args: [path.join(__dirname, 'server.js')] },
  socketioxide: {
    command: path.join(__dirname, '..', 'socketioxide', 'target', 'release', 'socketioxide-peer'),
    args: [],
  },
};
const TIMEOUT_MS = 5000;
const children = new Set();

function parseArgs(argv) {
  const options = { peers: [], redisUrl: process.env.VERIFY_REDIS_URL || '' };
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--peer') options.peers.push(argv[++i]);
    else if (argv[i] === '--redis-url') options.redisUrl = argv[++i];
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (options.peers.length === 0) options.peers = Object.keys(PEERS);
  for (const peer of options.peers) if (!PEERS[peer]) throw new Error(`unknown peer ${peer}`);
  return options;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function stop(child) {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  children.delete(child);
}

// Starts a process and resolves once a line of its stdout satisfies `ready`.
function launch(command, args, env, ready, what) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let err = '';
    const timer = setTimeout(() => fail(new Error(`${what}: not ready within 20 s`)), 20000);
    function fail(error) {
      clearTimeout(timer);
      stop(child);
      reject(new Error(`${error.message}\n${err}`));
    }
    child.stderr.on('data', (chunk) => { err += chunk; });
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const lines = out.split('\n');
      out = lines.pop();
      if (lines.some(ready)) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('error', fail);
    child.once('exit', (code, signal) => fail(new Error(`${what} exited (${code ?? signal})`)));
  });
}

async function startPeer(peer, env = {}) {
  const port = await freePort();
  const { command, args } = PEERS[peer];
  // The line must be exactly `listening PORT`: the load generator may wait for it.
  await launch(command, args, { PORT: String(port), ...env }, (line) => line === `listening ${port}`, peer);
  return port;
}

async function startRedis() {
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  const child = await launch('redis-server', args, {}, (line) => /Ready to accept connections/.test(line), 'redis-server');
  return { url: `redis://127.0.0.1:${port}`, child };
}

// One raw Engine.IO client: text frames queue up; pings `2` are answered `3` unless told not to.
class Client {
  constructor(port, { answerPings = true } = {}) {
    this.frames = [];
    this.waiters = [];
    this.pings = 0;
    this.closed = false;
    this.answerPings = answerPings;
    this.ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, {
      perMessageDeflate: false,
    });
    this.ws.on('message', (data, isBinary) => {
      const text = data.toString('utf8');
      if (isBinary) this.push(new Error(`binary frame ${text}`));
      else if (text === '2') {
        this.pings += 1;
        if (this.answerPings) this.ws.send('3');
      } else this.push(text);
    });
    this.ws.on('close', () => {
      this.closed = true;
      this.push(new Error('closed'));
    });
    this.ws.on('error', (error) => this.push(error));
  }

  push(item) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(item);
    else this.frames.push(item);
  }

  next(timeout = TIMEOUT_MS) {
    const item = this.frames.shift();
    const got = item !== undefined ? Promise.resolve(item) : new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        resolve(new Error(`no frame within ${timeout} ms`));
      }, timeout);
      const waiter = (value) => { clearTimeout(timer); resolve(value); };
      this.waiters.push(waiter);
    });
    return got.then((value) => {
      if (value instanceof Error) throw value;
      return value;
    });
  }

  // Open packet, then the namespace connect: returns the open packet's JSON.
  async handshake() {
    const open = await this.next();
    check(open.startsWith('0{'), `expected the open packet 0{…}, got ${open}`);
    const info = JSON.parse(open.slice(1));
    this.ws.send('40');
    const reply = await this.next();
    check(/^40\{"sid":"[^"]+"\}$/.test(reply), `expected 40{"sid":…}, got ${reply}`);
    // socketioxide pings at once, usually before `40{…}`: a client must answer `2` at any time.
    this.pingsBeforeConnect = this.pings;
    return info;
  }

  // The next `msg` event, skipping warm-up ones.
  async nextMessage() {
    for (;;) {
      const frame = await this.next();
      if (!frame.startsWith('42["msg","warmup')) return frame;
    }
  }

  close() {
    this.ws.terminate();
  }
}

async function connect(port, options) {
  const client = new Client(port, options);
  const info = await client.handshake();
  return { client, info };
}

// A payload shaped like hubcast-loadgen's: `S<step>T<micros>:` padded with `x` to 100 bytes.
function payload(step) {
  const text = `S${String(step).padStart(2, '0')}T${Date.now() * 1000}:`;
  return text + 'x'.repeat(Math.max(0, 100 - text.length));
}

async function expectDelivery(publisher, receivers, count) {
  for (let i = 0; i < count; i += 1) {
    const p = payload(i);
    publisher.ws.send(`42["publish","${p}"]`);
    const expected = `42["msg","${p}"]`;
    for (const [index, receiver] of receivers.entries()) {
      const frame = await receiver.nextMessage();
      check(frame === expected, `receiver ${index}: expected ${expected}, got ${frame}`);
    }
  }
}

async function singleNode(peer) {
  const port = await startPeer(peer);
  const { client: first, info } = await connect(port);
  const { client: second } = await connect(port);
  const { client: publisher } = await connect(port);
  try {
    check(typeof info.sid === 'string' && info.sid.length > 0, `open packet without sid: ${JSON.stringify(info)}`);
    check(Array.isArray(info.upgrades) && info.upgrades.length === 0, `upgrades should be []: ${JSON.stringify(info)}`);
    check(info.pingInterval === 25000 && info.pingTimeout === 20000, `heartbeat defaults: ${JSON.stringify(info)}`);
    check(info.maxPayload === 1000000, `maxPayload: ${JSON.stringify(info)}`);
    await expectDelivery(publisher, [first, second, publisher], 5);
    const early = first.pingsBeforeConnect + second.pingsBeforeConnect + publisher.pingsBeforeConnect;
    return `open ${JSON.stringify({ ...info, sid: '…' })}; pings before 40{…}: ${early} of 3 clients`;
  } finally {
    for (const client of [first, second, publisher]) client.close();
  }
}

async function heartbeat(peer) {
  const port = await startPeer(peer, { PING_INTERVAL_MS: '250', PING_TIMEOUT_MS: '250' });
  const { client: live, info } = await connect(port);
  const { client: silent } = await connect(port, { answerPings: false });
  try {
    check(info.pingInterval === 250 && info.pingTimeout === 250, `settings not applied: ${JSON.stringify(info)}`);
    await sleep(1500);
    check(!live.closed && live.pings >= 3, `answering client: ${live.pings} pings, closed ${live.closed}`);
    check(silent.closed && silent.pings >= 1, `silent client: ${silent.pings} pings, closed ${silent.closed}`);
    await expectDelivery(live, [live], 2);
    return `answering client got ${live.pings} pings and stayed; silent one closed after ${silent.pings}`;
  } finally {
    live.close();
    silent.close();
  }
}

async function twoNodes(peer, redisUrl) {
  const env = { REDIS_URL: redisUrl, REDIS_PREFIX: `verify-${peer}-${process.pid}` };
  const portA = await startPeer(peer, env);
  const portB = await startPeer(peer, env);
  const clients = [];
  try {
    for (const port of [portA, portA, portB, portB]) clients.push((await connect(port)).client);
    const [firstA, secondA, receiverB, publisherB] = clients;
    // Wait until node A hears node B through Redis (subscriptions may still be settling).
    const deadline = Date.now() + TIMEOUT_MS;
    for (let n = 0; ; n += 1) {
      publisherB.ws.send(`42["publish","warmup${n}"]`);
      const frame = await firstA.next(200).catch(() => null);
      if (frame && frame.startsWith('42["msg","warmup')) break;
      check(Date.now() < deadline, 'node A never received a message published on node B');
    }
    await sleep(300);
    await expectDelivery(publisherB, [firstA, secondA, receiverB, publisherB], 5);
    return 'publisher on node B reached 2 receivers on node A and 2 sockets on node B';
  } finally {
    for (const client of clients) client.close();
  }
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  let redis = null;
  let redisUrl = options.redisUrl;
  if (!redisUrl) {
    redis = await startRedis();
    redisUrl = redis.url;
  }
  let passed = 0;
  let failed = 0;
  try {
    for (const peer of options.peers) {
      for (const [name, run] of [['single node', singleNode], ['heartbeat', heartbeat], ['two nodes', twoNodes]]) {
        try {
          const detail = await run(peer, redisUrl);
          passed += 1;
          console.log(`ok   ${peer} ${name}: ${detail}`);
        } catch (error) {
          failed += 1;
          console.log(`FAIL ${peer} ${name}: ${error.message}`);
        } finally {
          for (const child of [...children]) if (!redis || child !== redis.child) stop(child);
        }
      }
    }
  } finally {
    for (const child of [...children]) stop(child);
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
