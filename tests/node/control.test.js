'use strict';
// The control API: two `hubcast control` replicas and two gateway nodes over a real Redis, official JS
// clients on both nodes. Every endpoint is called through a replica and each delivery is observed by a
// client; auth negative paths; validation errors; and the API mounted on a single node.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startServer } = require('./server');
const { startRedis } = require('./redis');
const { signalR, withTimeout } = require('./helpers');

const SECRET = 'control-test-jwt-secret-of-enough-length';
const ACCESS_KEY = 'control-test-access-key';
const API_KEY = 'control-test-api-key';
const HUB = 'Cluster';
let redis;
let nodes = [];
let replicas = [];
const open = [];

before(async () => {
  redis = await startRedis();
  const shared = { HUBCAST_BACKPLANE: redis.url, HUBCAST_JWT_SECRET: SECRET };
  const apiKeyHash = crypto.createHash('sha256').update(API_KEY).digest('hex');
  nodes = await Promise.all([0, 1].map(() => startServer({ env: { ...shared, HUBCAST_DEV_AUTH: 'true' } })));
  replicas = await Promise.all([0, 1].map(() => startServer({
    control: true,
    env: { ...shared, HUBCAST_ACCESS_KEY: ACCESS_KEY, HUBCAST_API_KEY_SHA256: apiKeyHash },
  })));
});

after(async () => {
  await Promise.all(open.map((c) => c.stop()));
  await Promise.all([...nodes, ...replicas].map((s) => s.stop()));
  await redis?.kill();
});

const b64 = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** An HS256 JWT, as Azure SignalR's REST API expects: `aud` is the URL without query. */
function jwt(claims, key = ACCESS_KEY) {
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${crypto.createHmac('sha256', key).update(head).digest('base64url')}`;
}

/** Calls the control API of `server` with a valid token unless `headers` say otherwise. */
async function api(server, method, path, { body, headers, query = '' } = {}) {
  const url = `${server.url}${path}`;
  const token = jwt({ aud: url, exp: Math.floor(Date.now() / 1000) + 60 });
  const response = await fetch(`${url}${query}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function token(node, user) {
  const response = await fetch(`${node.url}/auth/dev-login?user=${encodeURIComponent(user)}`, { method: 'POST' });
  return (await response.json()).accessToken;
}

/** A started client of `/cluster` on `node` (as `user`, if given) recording `Message` arguments. */
async function client(node, user, tokenFactory) {
  const options = user ? { accessTokenFactory: tokenFactory || (() => token(node, user)) } : {};
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${node.url}/cluster`, options)
    .configureLogging(signalR.LogLevel.None)
    .build();
  connection.got = [];
  connection.on('Message', (...args) => connection.got.push(args.length === 1 ? args[0] : args));
  connection.closed = new Promise((resolve) => connection.onclose(resolve));
  await withTimeout(connection.start(), 10000, 'start()');
  open.push(connection);
  connection.id = await connection.invoke('Id');
  return connection;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** Waits until `connection` got `text`. */
const got = (connection, text) => withTimeout(new Promise((resolve) => {
  const check = () => (connection.got.includes(text) ? resolve() : setTimeout(check, 20));
  check();
}), 5000, `'${text}'`);
const settle = () => sleep(300);
const send = (text) => ({ target: 'Message', arguments: [text] });

test('health and the OpenAPI document need no credentials', async () => {
  const health = await fetch(`${replicas[0].url}/api/health`);
  assert.equal(health.status, 200);
  const document = await (await fetch(`${replicas[0].url}/api/openapi.json`)).json();
  assert.equal(document.openapi, '3.0.3');
  assert.ok(document.paths['/api/v1/hubs/{hub}/groups/{group}/users/{user}'].put);
});

test('hubcast control serves /live, /ready and /metrics on its own admin listener', async () => {
  const replica = replicas[1];
  assert.equal((await fetch(`${replica.adminUrl}/live`)).status, 200);
  assert.equal((await fetch(`${replica.adminUrl}/ready`)).status, 200);
  // One refused and one served call, counted by status in the replica's own series.
  assert.equal((await fetch(`${replica.url}/api/v1/hubs/chat`, { method: 'POST' })).status, 401);
  assert.equal((await fetch(`${replica.url}/api/health`)).status, 200);
  const metrics = await (await fetch(`${replica.adminUrl}/metrics`)).text();
  const count = (status) => Number(new RegExp(`^hubcast_control_requests_total\\{status="${status}"\\} (\\d+)$`, 'm')
    .exec(metrics)?.[1] ?? 0);
  assert.ok(count(401) >= 1, metrics);
  assert.ok(count(200) >= 1, metrics);
  // The backplane's series and the process's, and none of a gateway's: no gateway runs here.
  assert.match(metrics, /^hubcast_backplane_connected 1$/m);
  assert.match(metrics, /^process_open_fds \d+/m);
  assert.doesNotMatch(metrics, /hubcast_hub_connections/);
});

test('auth: no credential, a wrong key, a wrong audience, an expired token, API keys', async () => {
  const path = `/api/v1/hubs/${HUB}`;
  const url = `${replicas[0].url}${path}`;
  const exp = Math.floor(Date.now() / 1000) + 60;
  const cases = [
    [{}, 401, /required/],
    [{ authorization: `Bearer ${jwt({ aud: url, exp }, 'wrong-key')}` }, 401, /not valid/],
    [{ authorization: `Bearer ${jwt({ aud: `${url}/other`, exp })}` }, 401, /audience/],
    [{ authorization: `Bearer ${jwt({ aud: url, exp: exp - 3600 })}` }, 401, /expired/],
    [{ authorization: `Bearer ${jwt({ aud: url })}` }, 401, /not valid/],
    [{ 'x-api-key': 'wrong' }, 401, /not valid/],
  ];
  for (const [headers, status, message] of cases) {
    const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify(send('x')) });
    assert.equal(response.status, status, JSON.stringify(headers));
    const body = await response.json();
    assert.equal(body.code, 'Unauthorized');
    assert.match(body.message, message);
  }
  const byApiKey = await fetch(url, { method: 'POST', headers: { 'x-api-key': API_KEY }, body: JSON.stringify(send('by api key')) });
  assert.equal(byApiKey.status, 202);
});

test('broadcast (with excluded ids), user, group and connection sends reach clients on both nodes', async () => {
  const [a, b] = await Promise.all([client(nodes[0], 'cu1'), client(nodes[1], 'cu1')]);
  const [r1, r2] = replicas;
  assert.equal((await api(r1, 'POST', `/api/v1/hubs/${HUB}`, { body: send('all') })).status, 202);
  await Promise.all([got(a, 'all'), got(b, 'all')]);
  const excluded = await api(r2, 'POST', `/api/v1/hubs/${HUB}`, { body: send('not b'), query: `?excluded=${encodeURIComponent(b.id)}` });
  assert.equal(excluded.status, 202);
  await got(a, 'not b');
  assert.equal((await api(r1, 'POST', `/api/v1/hubs/${HUB}/users/cu1`, { body: send('user') })).status, 202);
  await Promise.all([got(a, 'user'), got(b, 'user')]);
  assert.equal((await api(r2, 'POST', `/api/v1/hubs/${HUB}/connections/${b.id}`, { body: send('to b') })).status, 202);
  await got(b, 'to b');
  const withArgs = { target: 'Message', arguments: [{ nested: [1, 2] }, 'x'] };
  await api(r1, 'POST', `/api/v1/hubs/${HUB}/connections/${a.id}`, { body: withArgs });
  await withTimeout((async () => { while (!a.got.some((m) => Array.isArray(m) && m[1] === 'x')) await sleep(20); })(), 5000, 'args');
  assert.deepEqual(a.got.find((m) => Array.isArray(m)), [{ nested: [1, 2] }, 'x']);

  // Groups: connections on both nodes added through different replicas.
  const room = 'room one/ü';
  const roomPath = `/api/v1/hubs/${HUB}/groups/${encodeURIComponent(room)}`;
  assert.equal((await api(r1, 'GET', roomPath)).status, 404);
  assert.equal((await api(r1, 'PUT', `${roomPath}/connections/${a.id}`)).status, 200);
  assert.equal((await api(r2, 'PUT', `${roomPath}/connections/${b.id}`)).status, 200);
  assert.equal((await api(r2, 'GET', roomPath)).status, 200);
  assert.equal((await api(r1, 'POST', roomPath, { body: send('group') })).status, 202);
  await Promise.all([got(a, 'group'), got(b, 'group')]);
  await api(r2, 'POST', roomPath, { body: send('group but a'), query: `?excluded=${encodeURIComponent(a.id)}` });
  await got(b, 'group but a');
  const page1 = await api(r1, 'GET', `${roomPath}/connections`, { query: '?top=1' });
  assert.equal(page1.status, 200);
  assert.equal(page1.body.value.length, 1);
  assert.ok(page1.body.nextLink.includes('skip=1'));
  const all = await api(r1, 'GET', `${roomPath}/connections`);
  assert.deepEqual(all.body.value.map((m) => m.connectionId).sort(), [a.id, b.id].sort());
  assert.ok(all.body.value.every((m) => m.userId === 'cu1'));
  assert.equal(all.body.nextLink, null);
  assert.equal((await api(r1, 'DELETE', `${roomPath}/connections/${b.id}`)).status, 200);
  await api(r1, 'POST', roomPath, { body: send('after removal') });
  await got(a, 'after removal');
  await settle();
  assert.ok(!b.got.includes('after removal'));
  assert.ok(!a.got.includes('group but a'));
  assert.ok(!b.got.includes('not b'));
  for (const c of [a, b]) assert.equal(c.got.filter((m) => m === 'all').length, 1);
});

test('existence checks, a user joining and leaving groups on every node, closing', async () => {
  const [a, b, other] = await Promise.all([client(nodes[0], 'cu2'), client(nodes[1], 'cu2'), client(nodes[1], 'cu3')]);
  const [r1, r2] = replicas;
  const base = `/api/v1/hubs/${HUB}`;
  assert.equal((await api(r1, 'GET', `${base}/connections/${b.id}`)).status, 200);
  const missing = await api(r1, 'GET', `${base}/connections/${b.id.split('.')[0]}.nobody`);
  assert.deepEqual([missing.status, missing.body.code], [404, 'ConnectionNotFound']);
  assert.equal((await api(r2, 'GET', `${base}/users/cu2`)).status, 200);
  assert.equal((await api(r2, 'GET', `${base}/users/nobody`)).status, 404);

  assert.equal((await api(r1, 'PUT', `${base}/groups/team/users/cu2`)).status, 200);
  await withTimeout((async () => {
    while ((await api(r2, 'GET', `${base}/groups/team/connections`)).body.value.length < 2) await sleep(50);
  })(), 5000, 'both connections in the group');
  assert.equal((await api(r2, 'GET', `${base}/groups/team/users/cu2`)).status, 200);
  assert.equal((await api(r2, 'GET', `${base}/groups/team/users/cu3`)).status, 404);
  await api(r2, 'POST', `${base}/groups/team`, { body: send('team') });
  await Promise.all([got(a, 'team'), got(b, 'team')]);
  assert.equal((await api(r1, 'PUT', `${base}/groups/other/users/cu2`)).status, 200);
  assert.equal((await api(r2, 'DELETE', `${base}/groups/team/users/cu2`)).status, 200);
  await withTimeout((async () => {
    while ((await api(r1, 'GET', `${base}/groups/team/users/cu2`)).status !== 404) await sleep(50);
  })(), 5000, 'the user leaves the group');
  assert.equal((await api(r2, 'DELETE', `${base}/users/cu2/groups`)).status, 200);
  await withTimeout((async () => {
    while ((await api(r1, 'GET', `${base}/groups/other`)).status !== 404) await sleep(50);
  })(), 5000, 'the user leaves every group');
  await settle();
  assert.deepEqual(other.got, []);

  const users = await api(r1, 'GET', `${base}/users`);
  const cu2 = users.body.value.find((u) => u.userId === 'cu2');
  assert.equal(cu2.connections, 2);

  assert.equal((await api(r1, 'DELETE', `${base}/connections/${a.id}`, { query: '?reason=bye%20a' })).status, 200);
  assert.match(String(await withTimeout(a.closed, 5000, 'a closed')), /bye a/);
  assert.equal((await api(r2, 'POST', `${base}/users/cu2/:closeConnections`, { query: '?reason=bye%20user' })).status, 204);
  assert.match(String(await withTimeout(b.closed, 5000, 'b closed')), /bye user/);
  await api(r1, 'PUT', `${base}/groups/last/connections/${other.id}`);
  assert.equal((await api(r1, 'POST', `${base}/groups/last/:closeConnections`)).status, 204);
  await withTimeout(other.closed, 5000, 'the group member closed');
  const c = await client(nodes[0]);
  assert.equal((await api(r2, 'POST', `${base}/:closeConnections`, { query: '?reason=maintenance' })).status, 204);
  assert.match(String(await withTimeout(c.closed, 5000, 'everyone closed')), /maintenance/);
});

test('generateToken issues tokens the gateways accept', async () => {
  const issued = await api(replicas[0], 'POST', `/api/v1/hubs/${HUB}/:generateToken`, { query: '?userId=minted&minutesToExpire=5' });
  assert.equal(issued.status, 200);
  const connection = await client(nodes[1], 'minted', () => issued.body.token);
  await api(replicas[1], 'POST', `/api/v1/hubs/${HUB}/users/minted`, { body: send('for minted') });
  await got(connection, 'for minted');
  const bad = await api(replicas[0], 'POST', `/api/v1/hubs/${HUB}/:generateToken`);
  assert.deepEqual([bad.status, bad.body.code], [400, 'InvalidQuery']);
});

test('validation errors are JSON {code, message} with the right status', async () => {
  const r = replicas[0];
  const cases = [
    ['POST', '/api/v1/hubs/1bad', send('x'), 400, 'InvalidHubName'],
    ['POST', `/api/v1/hubs/${HUB}/groups/${'g'.repeat(1025)}`, send('x'), 400, 'InvalidGroupName'],
    ['POST', `/api/v1/hubs/${HUB}`, '{"arguments": []}', 400, 'InvalidBody'],
    ['POST', `/api/v1/hubs/${HUB}`, 'not json', 400, 'InvalidBody'],
    ['POST', `/api/v1/hubs/${HUB}`, { target: '' }, 400, 'InvalidBody'],
    ['GET', '/api/v1/nothing', undefined, 404, 'NotFound'],
    ['PATCH', `/api/v1/hubs/${HUB}`, undefined, 405, 'MethodNotAllowed'],
    ['GET', `/api/v1/hubs/${HUB}/users`, undefined, 200, undefined],
    ['GET', `/api/v1/hubs/${HUB}/users?top=0`, undefined, 400, 'InvalidQuery'],
    ['PUT', `/api/v1/hubs/${HUB}/groups/g/connections/deadnode00.nobody`, undefined, 404, 'ConnectionNotFound'],
  ];
  for (const [method, pathAndQuery, body, status, code] of cases) {
    const [path, query] = pathAndQuery.split('?');
    const response = await api(r, method, path, { body, query: query ? `?${query}` : '' });
    assert.equal(response.status, status, `${method} ${pathAndQuery}`);
    if (code) {
      assert.equal(response.body.code, code, `${method} ${pathAndQuery}`);
      assert.equal(typeof response.body.message, 'string');
    }
  }
  const huge = JSON.stringify({ target: 'Message', arguments: ['x'.repeat(1100000)] });
  const tooLarge = await api(r, 'POST', `/api/v1/hubs/${HUB}`, { body: huge });
  assert.deepEqual([tooLarge.status, tooLarge.body.code], [413, 'BodyTooLarge']);
});

test('a single node serves the API at /api over its in-memory backplane', async () => {
  const single = await startServer({ env: { HUBCAST_ACCESS_KEY: ACCESS_KEY, HUBCAST_JWT_SECRET: SECRET, HUBCAST_DEV_AUTH: 'true' } });
  try {
    const a = await client(single, 'solo');
    assert.equal((await api(single, 'PUT', `/api/v1/hubs/${HUB}/groups/g/connections/${a.id}`)).status, 200);
    assert.equal((await api(single, 'POST', `/api/v1/hubs/${HUB}/groups/g`, { body: send('solo group') })).status, 202);
    await got(a, 'solo group');
    assert.equal((await api(single, 'GET', `/api/v1/hubs/${HUB}/users/solo`)).status, 200);
    const unknownHub = await api(single, 'POST', '/api/v1/hubs/NoSuchHub', { body: send('x') });
    assert.deepEqual([unknownHub.status, unknownHub.body.code], [404, 'HubNotFound']);
    await a.stop();
  } finally {
    await single.stop();
  }
});
