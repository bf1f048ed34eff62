'use strict';
// Graceful drain: SIGTERM a node behind a load balancer while a chat room is busy. Its readiness goes
// false, its clients get a Close with allowReconnect and move (official automatic reconnect) to the other
// node, the process exits within its grace, and no chat message is lost: what a moved client did not hear
// live, it finds in the shared history it reloads after reconnecting, as the chat page does.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('./server');
const { startRedis, startBalancer } = require('./redis');
const { signalR, withTimeout } = require('./helpers');

const SECRET = 'drain-test-secret-of-enough-length';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

test('a draining node hands its clients to another one without losing a chat message', async () => {
  const redis = await startRedis();
  const env = {
    HUBCAST_BACKPLANE: redis.url,
    HUBCAST_JWT_SECRET: SECRET,
    HUBCAST_DEV_AUTH: 'true',
    HUBCAST_HISTORY: 'postgres://postgres@127.0.0.1:5432/test',
    HUBCAST_DRAIN_WINDOW: '1s',
  };
  const staying = await startServer({ env });
  const draining = await startServer({ env });
  const balancer = await startBalancer(() => [draining.port, staying.port]);
  const room = `drain${Date.now()}`;
  const clients = [];
  try {
    const token = async (user) => {
      const response = await fetch(`${staying.url}/auth/dev-login?user=${user}`, { method: 'POST' });
      return (await response.json()).accessToken;
    };
    const connect = async (url, user, reconnect) => {
      let builder = new signalR.HubConnectionBuilder()
        .withUrl(`${url}/hubs/chat`, { accessTokenFactory: () => token(user) })
        .configureLogging(signalR.LogLevel.None);
      if (reconnect) builder = builder.withAutomaticReconnect([0, 100, 250, 500, 1000, 1000]);
      const connection = builder.build();
      connection.heard = new Set();
      connection.on('ReceiveMessage', (from, message) => connection.heard.add(message));
      await withTimeout(connection.start(), 10000, 'start()');
      await connection.invoke('JoinRoom', room);
      clients.push(connection);
      return connection;
    };
    // Readers behind the balancer (they land on the draining node), a writer on the other node.
    const readers = [];
    for (let i = 0; i < 5; i += 1) readers.push(await connect(balancer.url, `reader${i}`, true));
    const writer = await connect(staying.url, 'writer', false);
    for (const reader of readers) {
      reader.moved = new Promise((resolve) => reader.onreconnected(async () => {
        await reader.invoke('JoinRoom', room);
        const history = await reader.invoke('RecentMessages', room, 200);
        history.forEach((m) => reader.heard.add(m.content));
        resolve();
      }));
      reader.onclose(() => { reader.closedForGood = true; });
    }

    const sent = [];
    let writing = true;
    const writing$ = (async () => {
      for (let n = 0; writing; n += 1) {
        const text = `m${n}`;
        await writer.invoke('SendToRoom', room, text);
        sent.push(text);
        // The chat allows 5 sends a second per connection.
        await sleep(220);
      }
    })();
    await sleep(700);
    const sentBeforeDrain = sent.length;
    const admin = /admin=127\.0\.0\.1:(\d+)/.exec(draining.stderr())[1];
    const stopped = draining.stop({ graceMs: 15000 });
    // Readiness goes false as soon as the drain starts (the signal lands a moment after it is sent).
    let ready;
    for (let tries = 0; tries < 100; tries += 1) {
      ready = await fetch(`http://127.0.0.1:${admin}/ready`).then((r) => r.status, () => 'gone');
      if (ready !== 200) break;
      await sleep(10);
    }
    // The admin listener stays up through the drain: readiness says 503, liveness 200, metrics scrape.
    assert.equal(ready, 503);
    assert.equal((await fetch(`http://127.0.0.1:${admin}/live`)).status, 200);
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    assert.match(metrics, /hubcast_transport_connections/);
    // The drain's progress: the connections still to close, counting down.
    assert.match(metrics, /^hubcast_drain_remaining_connections \d+$/m);
    const exit = await stopped;
    assert.equal(exit.killed, false, 'the draining node exited within its grace');
    await withTimeout(Promise.all(readers.map((r) => r.moved)), 15000, 'every reader moved');
    // Keep writing until a few messages went out after every reader moved (a count, not a time:
    // a fast drain left too few messages in a fixed second).
    const sentWhenMoved = sent.length;
    await withTimeout((async () => {
      while (sent.length < sentWhenMoved + 4) await sleep(20);
    })(), 10000, 'messages after the move');
    writing = false;
    await writing$;
    // The last messages arrive live on the new node.
    await withTimeout((async () => {
      while (!readers.every((r) => r.heard.has(sent[sent.length - 1]))) await sleep(20);
    })(), 5000, 'the last message');
    for (const reader of readers) {
      const missing = sent.filter((m) => !reader.heard.has(m));
      assert.deepEqual(missing, [], 'every message was heard live or found in the history');
      assert.notEqual(reader.closedForGood, true);
      assert.equal(reader.state, signalR.HubConnectionState.Connected);
    }
    assert.ok(sentBeforeDrain > 0, `sent before the drain: ${sentBeforeDrain}`);
    assert.ok(sent.length >= sentWhenMoved + 4, `sent ${sent.length}, ${sentWhenMoved} when the readers moved`);
    assert.match(draining.stderr(), /draining/);
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    await balancer.close();
    await staying.stop();
    await draining.stop();
    await redis.kill();
  }
});
