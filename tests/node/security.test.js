'use strict';
// Security regressions found by an adversarial run, against the real binary: token boundaries
// (conformance tokens, control-API client tokens, issuer and audience), HTTP hardening headers and
// limits. The protocol-level cases (framing, slow consumers, limits) are in the Rust tests.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startServer } = require('./server');

const SECRET = 'security-test-jwt-secret-of-enough-length';
const ACCESS_KEY = 'security-test-access-key';
let server;

before(async () => {
  server = await startServer({
    env: {
      HUBCAST_JWT_SECRET: SECRET,
      HUBCAST_JWT_ISSUER: 'https://idp.example',
      HUBCAST_JWT_AUDIENCE: 'hubcast',
      HUBCAST_ACCESS_KEY: ACCESS_KEY,
    },
  });
});
after(async () => { await server?.stop(); });

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
function jwt(claims, key) {
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${crypto.createHmac('sha256', key).update(head).digest('base64url')}`;
}
const inAMinute = () => Math.floor(Date.now() / 1000) + 60;

async function negotiate(path, token) {
  const response = await fetch(`${server.url}${path}/negotiate?negotiateVersion=1`, {
    method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return response.status;
}

test('a /generateJwtToken token opens /authorizedhub only, never the chat hub', async () => {
  const token = await (await fetch(`${server.url}/generateJwtToken`)).text();
  assert.equal(await negotiate('/authorizedhub', token), 200);
  assert.equal(await negotiate('/hubs/chat', token), 401);
  // And a token of the configured keys is no conformance token.
  const real = jwt({ sub: 'ann', iss: 'https://idp.example', aud: 'hubcast', exp: inAMinute() }, SECRET);
  assert.equal(await negotiate('/hubs/chat', real), 200);
  assert.equal(await negotiate('/authorizedhub', real), 401);
});

test('tokens minted with the shared secret for another audience or issuer are refused everywhere', async () => {
  for (const claims of [
    { sub: 'ann', iss: 'https://idp.example', aud: 'billing' },
    { sub: 'ann', iss: 'https://other.example', aud: 'hubcast' },
    { sub: 'ann' },
  ]) {
    const token = jwt({ ...claims, exp: inAMinute() }, SECRET);
    assert.equal(await negotiate('/hubs/chat', token), 401, JSON.stringify(claims));
    const login = await fetch(`${server.url}/auth/login`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    assert.equal(login.status, 401, JSON.stringify(claims));
  }
});

test('client tokens of the control API carry the required issuer and audience', async () => {
  const url = `${server.url}/api/v1/hubs/chat/:generateToken`;
  const response = await fetch(`${url}?userId=ann`, {
    method: 'POST', headers: { authorization: `Bearer ${jwt({ aud: url, exp: inAMinute() }, ACCESS_KEY)}` },
  });
  assert.equal(response.status, 200);
  const { token } = await response.json();
  const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url'));
  assert.equal(claims.iss, 'https://idp.example');
  assert.equal(claims.aud, 'hubcast');
  assert.equal(await negotiate('/hubs/chat', token), 200);
});

test('the chat page forbids framing, sniffing and foreign scripts', async () => {
  const response = await fetch(`${server.url}/`);
  const csp = response.headers.get('content-security-policy');
  assert.match(csp, /frame-ancestors 'none'/);
  assert.match(csp, /script-src 'self'/);
  assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(response.headers.get('x-frame-options'), 'DENY');
});

test('a POST to an unknown path is 404 like a GET; to a page file it is 405', async () => {
  assert.equal((await fetch(`${server.url}/no-such-path`, { method: 'POST' })).status, 404);
  assert.equal((await fetch(`${server.url}/no-such-path`)).status, 404);
  assert.equal((await fetch(`${server.url}/chat.js`, { method: 'POST' })).status, 405);
});

// Last in this file: it leaves 127.0.0.1 blocked on the control API for a while.
test('guessing control-API keys is throttled per address with 429 and Retry-After', async () => {
  const url = `${server.url}/api/v1/hubs/chat`;
  const call = (key) => fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${jwt({ aud: url, exp: inAMinute() }, key)}`, 'content-type': 'application/json' },
    body: JSON.stringify({ target: 'x', arguments: [] }),
  });
  const statuses = [];
  for (let i = 0; i < 12; i += 1) statuses.push((await call(`wrong-key-${i}`)).status);
  assert.deepEqual(statuses.slice(0, 10), Array(10).fill(401));
  assert.equal(statuses[10], 401, 'the eleventh failure is still answered, and starts the pause');
  const blocked = await call(`wrong-key-12`);
  assert.equal(blocked.status, 429);
  assert.ok(Number(blocked.headers.get('retry-after')) >= 1);
  // While blocked even the right key waits.
  assert.equal((await call(ACCESS_KEY)).status, 429);
  // Once the pause is over, the right key works again.
  await new Promise((r) => setTimeout(r, Number(blocked.headers.get('retry-after')) * 1000 + 100));
  assert.equal((await call(ACCESS_KEY)).status, 202);
});

test('hundreds of idle sockets neither starve a node with few descriptors nor outlive the header timeout', async () => {
  const net = require('node:net');
  const small = await startServer({
    wrapper: ['prlimit', '--nofile=256:256', '--'],
    env: { HUBCAST_LOG: 'warn,hubcast=info' },
  });
  const admin = /admin=127\.0\.0\.1:(\d+)/.exec(small.stderr())[1];
  const sockets = [];
  try {
    for (let i = 0; i < 300; i += 1) {
      const socket = net.connect(Number(small.port), '127.0.0.1');
      socket.on('error', () => {});
      sockets.push(socket);
    }
    await new Promise((r) => setTimeout(r, 500));
    // The admin listener answers although the client listener is at its cap.
    const live = await fetch(`http://127.0.0.1:${admin}/live`, { signal: AbortSignal.timeout(2000) });
    assert.equal(live.status, 200);
    // The idle sockets are closed by the server within the header-read timeout (10 s).
    const closed = await Promise.all(sockets.map((s) => new Promise((resolve) => {
      if (s.destroyed) resolve(true);
      s.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 15000);
    })));
    assert.equal(closed.filter((c) => !c).length, 0, 'sockets still open after the header timeout');
    // And the node serves clients again.
    const negotiate = await fetch(`${small.url}/testhub/negotiate?negotiateVersion=1`, { method: 'POST' });
    assert.equal(negotiate.status, 200);
    // Accept errors, if any, were logged at most about once a second.
    const acceptLines = (small.stderr().match(/accept failed/g) || []).length;
    assert.ok(acceptLines <= 20, `${acceptLines} accept-failed lines`);
  } finally {
    sockets.forEach((s) => s.destroy());
    await small.stop();
  }
});
