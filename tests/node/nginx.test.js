'use strict';
// Debian's nginx with the shipped nginx/hubcast.conf (addresses filled in) in front of two gateway nodes,
// a control-API replica and Redis: the official client over WebSockets, SSE and long polling through it,
// sends crossing to a client on the other node, the control API through it, /metrics not exposed.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { startServer } = require('./server');
const { startRedis } = require('./redis');
const { startNginx } = require('./nginx');
const { signalR, withTimeout } = require('./helpers');

const SECRET = 'nginx-test-secret-of-enough-length';
let redis;
let nodes = [];
let control;
let nginx;
let nginxUrl;

before(async () => {
  redis = await startRedis();
  const env = {
    HUBCAST_BACKPLANE: redis.url,
    HUBCAST_JWT_SECRET: SECRET,
    HUBCAST_DEV_AUTH: 'true',
    HUBCAST_WEB_ROOT: path.join(__dirname, '..', '..', 'web'),
  };
  nodes = await Promise.all([0, 1].map(() => startServer({ env })));
  control = await startServer({ control: true, env: { HUBCAST_BACKPLANE: redis.url, HUBCAST_CONTROL_ANONYMOUS: 'true' } });
  nginx = await startNginx('hubcast.conf', [
    ['127.0.0.1:8080', `127.0.0.1:${nodes[0].port}`],
    ['127.0.0.1:8082', `127.0.0.1:${nodes[1].port}`],
    ['127.0.0.1:8081', `127.0.0.1:${control.port}`],
  ]);
  nginxUrl = nginx.url;
});

after(async () => {
  await nginx?.stop();
  await Promise.all([...nodes, control].filter(Boolean).map((s) => s.stop()));
  await redis?.kill();
});

async function token(base, user) {
  const response = await fetch(`${base}/auth/dev-login?user=${user}`, { method: 'POST' });
  assert.equal(response.status, 200);
  return (await response.json()).accessToken;
}

async function chatClient(base, user, transport) {
  const options = { accessTokenFactory: () => token(base, user) };
  if (transport) options.transport = signalR.HttpTransportType[transport];
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${base}/hubs/chat`, options)
    .configureLogging(signalR.LogLevel.None)
    .build();
  connection.got = [];
  connection.on('ReceiveMessage', (from, message) => connection.got.push(message));
  await withTimeout(connection.start(), 10000, `start() over ${transport}`);
  return connection;
}

const received = (connection, text) => withTimeout(new Promise((resolve) => {
  const check = () => (connection.got.includes(text) ? resolve() : setTimeout(check, 20));
  check();
}), 5000, `'${text}'`);

for (const transport of ['WebSockets', 'ServerSentEvents', 'LongPolling']) {
  test(`the chat through nginx over ${transport}, heard on both nodes`, async () => {
    const viaNginx = await chatClient(nginxUrl, `n-${transport}`, transport);
    const direct = await Promise.all(nodes.map((node, i) => chatClient(node.url, `direct${i}-${transport}`)));
    try {
      const text = `hello over ${transport}`;
      await viaNginx.invoke('SendMessage', text);
      await Promise.all([viaNginx, ...direct].map((c) => received(c, text)));
      for (const c of direct) await c.invoke('SendMessage', `${text} from a node`);
      await received(viaNginx, `${text} from a node`);
    } finally {
      await Promise.all([viaNginx, ...direct].map((c) => c.stop()));
    }
  });
}

test('the control API through nginx reaches clients; /metrics is not exposed', async () => {
  const health = await fetch(`${nginxUrl}/api/health`);
  assert.equal(health.status, 200);
  const client = await chatClient(nodes[1].url, 'api-listener');
  try {
    const sent = await fetch(`${nginxUrl}/api/v1/hubs/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ target: 'ReceiveMessage', arguments: ['ops', 'via nginx and the control API', null] }),
    });
    assert.equal(sent.status, 202);
    await received(client, 'via nginx and the control API');
  } finally {
    await client.stop();
  }
  assert.equal((await fetch(`${nginxUrl}/metrics`)).status, 404);
  const page = await fetch(`${nginxUrl}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<html/i);
});
