'use strict';
// Any node serves any request (no session affinity): three gateway processes over one real Redis behind a
// balancer that sends every HTTP request, and every WebSocket upgrade, to the next node in turn, so a
// connection's negotiate, polls, POSTs and streams land on different nodes. The official JS client in
// every transport and protocol: invoke, streams both ways, group and user sends, client results, and
// 1,000 messages each way with nothing lost, duplicated or reordered; a stateful reconnect landing on
// another node; the shipped round-robin nginx config (nginx/hubcast-no-affinity.conf). Then the owner of a
// connection is SIGKILLed: requests for it answer 404 on the other nodes, and automatic reconnect brings
// the client back.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const { startServer } = require('./server');
const { startRedis } = require('./redis');
const { startNginx } = require('./nginx');
const { signalR, withTimeout, buildConnection, MATRIX } = require('./helpers');

let redis;
let nodes = [];
let balancer;
const open = [];

/**
 * A balancer handing each request (and each upgrade) to the next of `backends` (ports) in turn, passing
 * over one that refuses the connection as a real balancer's health check would; `seen` counts the
 * requests each backend got.
 */
function rotatingBalancer(backends) {
  let next = 0;
  const seen = backends.map(() => 0);
  const upgrades = [];
  const pick = () => {
    const index = next++ % backends.length;
    seen[index] += 1;
    return backends[index];
  };
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const attempt = (left) => {
        const upstream = http.request({
          host: '127.0.0.1', port: pick(), method: req.method, path: req.url, headers: req.headers, agent,
        }, (answer) => {
          res.writeHead(answer.statusCode, answer.headers);
          answer.pipe(res);
        });
        upstream.on('error', (error) => {
          if (error.code === 'ECONNREFUSED' && left > 1) attempt(left - 1);
          else { if (!res.headersSent) res.writeHead(502); res.end(); }
        });
        upstream.end(body);
        res.on('close', () => upstream.destroy());
      };
      attempt(backends.length);
    });
  });
  server.on('upgrade', (req, socket, head) => {
    const attempt = (left) => {
      const port = pick();
      const upstream = net.connect(port, '127.0.0.1', () => {
        upgrades.push({ port, socket, upstream });
        const lines = [`${req.method} ${req.url} HTTP/1.1`];
        for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
        upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
        upstream.write(head);
        upstream.pipe(socket);
        socket.pipe(upstream);
      });
      upstream.on('error', (error) => {
        if (error.code === 'ECONNREFUSED' && left > 1) attempt(left - 1);
        else socket.destroy();
      });
      socket.on('error', () => upstream.destroy());
    };
    attempt(backends.length);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}`,
    seen,
    upgrades,
    /** Drops every open WebSocket (no close frame either way); returns how many. */
    cut: () => upgrades.filter((u) => !u.socket.destroyed).map((u) => { u.socket.destroy(); u.upstream.destroy(); return u; }).length,
    close: () => { server.closeAllConnections(); server.close(); agent.destroy(); },
  })));
}

before(async () => {
  redis = await startRedis();
  const env = { HUBCAST_BACKPLANE: redis.url, HUBCAST_NODE_TTL: '1500ms' };
  nodes = await Promise.all([0, 1, 2].map(() => startServer({ env })));
  balancer = await rotatingBalancer(nodes.map((n) => n.port));
});

after(async () => {
  await Promise.all(open.map((c) => c.stop().catch(() => {})));
  balancer?.close();
  await Promise.all(nodes.map((n) => n.stop()));
  await redis?.kill();
});

/** A started client of `path` through the balancer that records every `Message`. */
async function client(path, { transport, protocol, skipNegotiation = false, reconnect = false } = {}) {
  const options = skipNegotiation ? { skipNegotiation: true } : {};
  let connection;
  if (reconnect) {
    const httpOptions = { ...options, transport: signalR.HttpTransportType[transport] };
    connection = new signalR.HubConnectionBuilder().withUrl(`${balancer.url}${path}`, httpOptions)
      .withAutomaticReconnect([0, 200, 500, 1000, 1000, 1000])
      .configureLogging(signalR.LogLevel.None).build();
  } else {
    connection = buildConnection(`${balancer.url}${path}`, { transport, protocol, options });
  }
  connection.got = [];
  const waiters = [];
  connection.on('Message', (text) => {
    connection.got.push(text);
    waiters.splice(0).forEach((w) => w());
  });
  connection.waitFor = (count, what = `${count} messages`) => withTimeout(new Promise((resolve) => {
    const check = () => (connection.got.length >= count ? resolve(connection.got) : waiters.push(check));
    check();
  }), 20000, what);
  await withTimeout(connection.start(), 10000, `start() over ${transport}`);
  open.push(connection);
  return connection;
}

const range = (n, prefix) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

for (const { transport, protocol } of MATRIX) {
  const cases = transport === 'WebSockets' ? [false, true] : [false];
  for (const skipNegotiation of cases) {
    const name = `${transport}${skipNegotiation ? ' (skip negotiation)' : ''} / ${protocol}`;
    test(`${name}: every request on the next node, nothing lost, duplicated or reordered`, async () => {
      const seenBefore = [...balancer.seen];
      const options = { transport, protocol, skipNegotiation };
      const test = await client('/testhub', options);
      assert.equal(await test.invoke('Echo', 'hi'), 'hi');
      assert.equal(await test.invoke('GetActiveTransportName'), transport);
      const streamed = [];
      await new Promise((resolve, reject) => test.stream('Stream').subscribe({
        next: (item) => streamed.push(item), complete: resolve, error: reject,
      }));
      assert.deepEqual(streamed, ['a', 'b', 'c']);
      const upload = new signalR.Subject();
      const concat = test.invoke('StreamingConcat', upload);
      for (const part of ['x', 'y', 'z']) upload.next(part);
      upload.complete();
      assert.equal(await concat, 'xyz');

      const [a, b] = [await client('/cluster', options), await client('/cluster', options)];
      const [aId, bId] = [await a.invoke('Id'), await b.invoke('Id')];
      // Server to client: 1,000 sends to b, in order.
      const toB = range(1000, 'to-b-');
      for (const text of toB) a.send('ToConnections', [bId], text);
      await b.waitFor(1000, '1,000 messages to b');
      // Client to server: 1,000 fire-and-forget invocations from b, in order, heard by a.
      const fromB = range(1000, 'from-b-');
      for (const text of fromB) b.send('ToConnections', [aId], text);
      await a.waitFor(1000, '1,000 messages from b');
      await a.invoke('AddToGroup', aId, 'g');
      await b.invoke('ToGroup', 'g', 'group');
      b.on('Ask', (question) => `answer to ${question}`);
      assert.equal(await a.invoke('Ask', bId, 'q'), 'answer to q', 'a client result across relays');
      await a.waitFor(1001);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.deepEqual(b.got, toB);
      assert.deepEqual(a.got, [...fromB, 'group']);
      // The requests really went round every node.
      balancer.seen.forEach((count, i) => assert.ok(count > seenBefore[i], `node ${i} got requests`));
      await Promise.all([test.stop(), a.stop(), b.stop()]);
    });
  }
}

test('stateful reconnect: the socket cut mid-stream, the new WebSocket lands on another node, nothing lost', async () => {
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${balancer.url}/testhub`, { transport: signalR.HttpTransportType.WebSockets })
    .withStatefulReconnect()
    .configureLogging(signalR.LogLevel.None)
    .build();
  const received = [];
  connection.on('Message', (message) => received.push(message));
  let closed = 0;
  connection.onclose(() => { closed += 1; });
  await withTimeout(connection.start(), 10000, 'start()');
  open.push(connection);
  const id = await connection.invoke('GetCallerConnectionId');
  const before = balancer.upgrades.length;
  const N = 200;
  const sends = [];
  for (let i = 0; i < N; i += 1) {
    sends.push(connection.send('InvokeWithString', `m${i}`));
    if (i === 60) {
      await withTimeout(new Promise((resolve) => {
        const wait = () => (received.length >= 20 ? resolve() : setTimeout(wait, 5));
        wait();
      }), 5000, '20 messages before the cut');
      assert.ok(balancer.cut() >= 1, 'an open WebSocket to cut');
    }
  }
  await withTimeout(Promise.all(sends), 10000, 'the sends');
  await withTimeout(new Promise((resolve) => {
    const wait = () => (received.length >= N ? resolve() : setTimeout(wait, 10));
    wait();
  }), 10000, `${N} messages`);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(received, Array.from({ length: N }, (_, i) => `m${i}`), 'every message once and in order');
  const [first, second] = balancer.upgrades.slice(before - 1);
  assert.ok(second, 'the client came back on a second WebSocket');
  assert.notEqual(second.port, first.port, 'on another node');
  assert.equal(await connection.invoke('GetCallerConnectionId'), id, 'the same connection, resumed');
  assert.equal(closed, 0);
  await connection.stop();
});

/** The relayed requests a node counted, by outcome. */
async function relayed(node) {
  const text = await (await fetch(`${node.adminUrl}/metrics`)).text();
  const count = (outcome) => Number(new RegExp(`hubcast_relay_requests_total\\{outcome="${outcome}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  return count('forwarded') + count('upgraded');
}

test('through the shipped round-robin nginx config, every transport, relayed where needed', async () => {
  const nginx = await startNginx('hubcast-no-affinity.conf', [
    ['127.0.0.1:8080', `127.0.0.1:${nodes[0].port}`],
    ['127.0.0.1:8082', `127.0.0.1:${nodes[1].port}`],
    ['127.0.0.1:8083', `127.0.0.1:${nodes[2].port}`],
    ['127.0.0.1:8081', `127.0.0.1:${nodes[0].port}`],
  ]);
  try {
    const before = (await Promise.all(nodes.map(relayed))).reduce((a, b) => a + b, 0);
    for (const transport of ['LongPolling', 'ServerSentEvents', 'WebSockets']) {
      const connect = async () => {
        const c = buildConnection(`${nginx.url}/cluster`, { transport });
        c.got = [];
        c.on('Message', (text) => c.got.push(text));
        await withTimeout(c.start(), 10000, `start() over ${transport} through nginx`);
        c.id = await c.invoke('Id');
        return c;
      };
      const [a, b] = [await connect(), await connect()];
      const messages = range(200, `${transport}-`);
      for (const text of messages) a.send('ToConnections', [b.id], text);
      for (const text of messages) b.send('ToConnections', [a.id], text);
      await withTimeout(new Promise((resolve) => {
        const wait = () => (a.got.length >= 200 && b.got.length >= 200 ? resolve() : setTimeout(wait, 10));
        wait();
      }), 20000, `200 messages each way over ${transport}`);
      assert.deepEqual(a.got, messages);
      assert.deepEqual(b.got, messages);
      await Promise.all([a.stop(), b.stop()]);
    }
    const after = (await Promise.all(nodes.map(relayed))).reduce((a, b) => a + b, 0);
    assert.ok(after > before, `nginx's round robin made the nodes relay (${after - before} relayed requests)`);
  } finally {
    await nginx.stop();
  }
});

test('the owner killed: its connections are unknown everywhere, and clients reconnect on a live node', async () => {
  for (const transport of ['LongPolling', 'ServerSentEvents', 'WebSockets']) {
    const c = await client('/cluster', { transport, reconnect: true });
    const id = await c.invoke('Id');
    const tags = await Promise.all(nodes.map(async (node) => {
      const probe = buildConnection(`${node.url}/cluster`, { transport: 'WebSockets', options: { skipNegotiation: true } });
      await probe.start();
      const tag = (await probe.invoke('Id')).split('.')[0];
      await probe.stop();
      return tag;
    }));
    const index = tags.indexOf(id.split('.')[0]);
    assert.ok(index >= 0, 'the owner is one of the nodes');
    const reconnected = new Promise((resolve) => c.onreconnected(resolve));
    const killed = nodes[index];
    await killed.kill('SIGKILL');
    // The token of a connection of the dead node, on a live node: 404 once its presence is gone.
    const live = nodes.find((n, i) => i !== index);
    const token = `${id.split('.')[0]}.AAAAAAAAAAAAAAAAAAAAAA`;
    const started = Date.now();
    let status;
    do {
      status = (await fetch(`${live.url}/cluster?id=${token}`, { method: 'POST', body: 'x' })).status;
    } while (status !== 404 && Date.now() - started < 5000);
    assert.equal(status, 404, `404 within ${Date.now() - started} ms`);
    await withTimeout(reconnected, 15000, `the ${transport} client reconnecting`);
    assert.notEqual((await c.invoke('Id')).split('.')[0], id.split('.')[0], 'now on a live node');
    await c.stop();
    nodes[index] = await startServer({ env: { HUBCAST_BACKPLANE: redis.url, HUBCAST_NODE_TTL: '1500ms' } });
    balancer.close();
    balancer = await rotatingBalancer(nodes.map((n) => n.port));
  }
});
