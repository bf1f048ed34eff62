'use strict';
// Upstream hubs: a backend written in node implements the `Orders` hub over HTTP. It checks the
// signature, answers invocations (JSON and MessagePack clients), pushes through the control API, and
// sees connected/disconnected events; an unreachable upstream refuses connections.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { startServer } = require('./server');
const { freePort } = require('./redis');
const { signalR, buildConnection, withTimeout } = require('./helpers');

const KEY = 'upstream-signing-key';
const API_KEY = 'upstream-test-api-key';
let backend;
let server;
let dir;
const seen = [];

/** The backend: `/{hub}/api/{category}/{event}`. */
function handle(request, response) {
  let body = '';
  request.on('data', (chunk) => { body += chunk; });
  request.on('end', async () => {
    const connection = request.headers['x-asrs-connection-id'];
    const expected = `sha256=${crypto.createHmac('sha256', KEY).update(connection).digest('hex')}`;
    const entry = { url: request.url, headers: request.headers, body: body ? JSON.parse(body) : null };
    seen.push(entry);
    if (request.headers['x-asrs-signature'] !== expected) {
      response.writeHead(401).end('bad signature');
      return;
    }
    const [, hub, , category, event] = request.url.split('/');
    if (hub !== 'Orders') { response.writeHead(404).end(); return; }
    if (category === 'connections') { response.writeHead(200).end(); return; }
    const args = entry.body.Arguments;
    switch (event) {
      case 'Add': response.writeHead(200).end(JSON.stringify(args[0] + args[1])); break;
      case 'Echo': response.writeHead(200).end(JSON.stringify({ echo: args, user: request.headers['x-asrs-user-id'] })); break;
      case 'Nothing': response.writeHead(200).end(); break;
      case 'Announce': {
        // The backend pushes to every client through the control API, then answers.
        const push = await fetch(`${server.url}/api/v1/hubs/Orders`, {
          method: 'POST',
          headers: { 'x-api-key': API_KEY, 'content-type': 'application/json' },
          body: JSON.stringify({ target: 'Announcement', arguments: [args[0]] }),
        });
        response.writeHead(200).end(JSON.stringify(push.status));
        break;
      }
      default: response.writeHead(400).end(`bad order: ${event}`);
    }
  });
}

before(async () => {
  backend = http.createServer(handle);
  await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const closed = await freePort();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubcast-upstream-'));
  const config = path.join(dir, 'hubcast.toml');
  fs.writeFileSync(config, `
[[upstreams]]
hub = "Orders"
url = "http://127.0.0.1:${backend.address().port}/{hub}/api/{category}/{event}"
keys = ["${KEY}"]
timeout = "5s"

[[upstreams]]
hub = "Down"
path = "/down"
url = "http://127.0.0.1:${closed}/{hub}/{category}/{event}"
timeout = "1s"
retries = 1

# Without detailed errors clients only see "Connection closed with an error." (as with ASP.NET Core).
[hubs.Down]
enable_detailed_errors = true
`);
  const hash = crypto.createHash('sha256').update(API_KEY).digest('hex');
  server = await startServer({ env: { HUBCAST_CONFIG: config, HUBCAST_API_KEY_SHA256: hash } });
});

after(async () => {
  await server?.stop();
  backend?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function signIn(user) {
  const response = await fetch(`${server.url}/auth/dev-login?user=${user}`, { method: 'POST' });
  return (await response.json()).accessToken;
}

test('invocations go to the upstream and its answers come back, in JSON and MessagePack', async () => {
  const token = await signIn('ann');
  for (const protocol of ['json', 'messagepack']) {
    const connection = buildConnection(`${server.url}/hubs/Orders`, {
      protocol, options: { accessTokenFactory: () => token },
    });
    await withTimeout(connection.start(), 10000, 'start()');
    try {
      assert.equal(await connection.invoke('Add', 2, 3), 5);
      assert.deepEqual(await connection.invoke('Echo', 'x', { y: [1] }), { echo: ['x', { y: [1] }], user: 'ann' });
      assert.equal(await connection.invoke('Nothing'), null);
      await assert.rejects(connection.invoke('Cancel', 7), /Upstream error 400: bad order: Cancel/);
      const announced = new Promise((resolve) => connection.on('Announcement', resolve));
      assert.equal(await connection.invoke('Announce', `hello ${protocol}`), 202);
      assert.equal(await withTimeout(announced, 5000, 'the announcement'), `hello ${protocol}`);
    } finally {
      await connection.stop();
    }
  }
  const add = seen.find((e) => e.url === '/Orders/api/messages/Add');
  assert.deepEqual(add.body, { Target: 'Add', Arguments: [2, 3] });
  assert.equal(add.headers['x-asrs-hub'], 'Orders');
  assert.equal(add.headers['x-asrs-category'], 'messages');
  assert.equal(add.headers['x-asrs-event'], 'Add');
  assert.equal(JSON.parse(add.headers['x-asrs-user-claims']).sub, 'ann');
});

test('connected and disconnected events, signed, with the connection id', async () => {
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${server.url}/hubs/Orders`)
    .configureLogging(signalR.LogLevel.None)
    .build();
  await withTimeout(connection.start(), 10000, 'start()');
  const id = connection.connectionId;
  await connection.stop();
  const events = () => seen.filter((e) => e.headers['x-asrs-connection-id'] === id).map((e) => e.url);
  await withTimeout((async () => {
    while (!events().includes('/Orders/api/connections/disconnected')) await new Promise((r) => setTimeout(r, 20));
  })(), 5000, 'the disconnected event');
  assert.deepEqual(events(), ['/Orders/api/connections/connected', '/Orders/api/connections/disconnected']);
  const disconnected = seen.find((e) => e.url.endsWith('/disconnected') && e.headers['x-asrs-connection-id'] === id);
  assert.deepEqual(disconnected.body, { Error: null });
  assert.equal(disconnected.headers['x-asrs-user-id'], undefined);
});

test('an unreachable upstream refuses connections with an error, not a hang', async () => {
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${server.url}/down`)
    .configureLogging(signalR.LogLevel.None)
    .build();
  const closed = new Promise((resolve) => connection.onclose(resolve));
  const started = Date.now();
  const outcome = await connection.start().then(() => withTimeout(closed, 10000, 'the close'), (error) => error);
  assert.match(String(outcome), /upstream refused the connection/i);
  assert.ok(Date.now() - started < 8000);
  assert.doesNotMatch(server.stderr(), /panicked/);
});
