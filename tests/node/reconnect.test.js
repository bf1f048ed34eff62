'use strict';
// Reconnects as the official client does them: stateful reconnect over a TCP proxy that drops the socket
// without a WebSocket close frame (protocol notes §3), a resume refused once the disconnect timeout has
// passed, and automatic reconnect after a server restart on the same port.
const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { startServer } = require('./server');
const {
  signalR, MessagePackHubProtocol, withTimeout, deferred,
} = require('./helpers');

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/** Polls `predicate` every 10 ms; rejects after `ms`. */
async function until(predicate, ms, what) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    // eslint-disable-next-line no-await-in-loop
    await sleep(10);
  }
}

function hubProtocol(protocol) {
  return protocol === 'messagepack' ? new MessagePackHubProtocol() : new signalR.JsonHubProtocol();
}

/**
 * A TCP proxy on 127.0.0.1:0 to `targetPort`. Every accepted socket is piped to a new upstream socket;
 * `cut()` destroys both sides of every open pair (an ungraceful drop: no WebSocket close frame either way).
 * While `hold()` is on, accepted sockets wait unanswered until `release()`. `connections` records the first
 * bytes each way (`request`, `response`, latin1) of every accepted socket.
 */
async function startProxy(targetPort) {
  const open = new Set();
  const connections = [];
  let holding = false;
  let held = [];
  const server = net.createServer((client) => {
    const entry = { client, upstream: null, request: '', response: '' };
    connections.push(entry);
    open.add(entry);
    client.on('error', () => {});
    client.on('close', () => { open.delete(entry); entry.upstream?.destroy(); });
    const connect = () => {
      if (client.destroyed) return;
      const upstream = net.connect(targetPort, '127.0.0.1');
      entry.upstream = upstream;
      upstream.on('error', () => {});
      upstream.on('close', () => client.destroy());
      client.on('data', (chunk) => {
        if (entry.request.length < 8192) entry.request += chunk.toString('latin1');
      });
      upstream.on('data', (chunk) => {
        if (entry.response.length < 8192) entry.response += chunk.toString('latin1');
      });
      client.pipe(upstream);
      upstream.pipe(client);
    };
    if (holding) held.push(connect);
    else connect();
  });
  await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    connections,
    /** Connections whose first request is a WebSocket upgrade. */
    upgrades: () => connections.filter((c) => /^GET [^\r\n]*\r\n/.test(c.request) && /\r\nupgrade: websocket\r\n/i.test(c.request)),
    cut() {
      let count = 0;
      for (const entry of open) {
        entry.client.destroy();
        entry.upstream?.destroy();
        count += 1;
      }
      open.clear();
      return count;
    },
    hold() { holding = true; },
    release() {
      holding = false;
      const waiting = held;
      held = [];
      waiting.forEach((connect) => connect());
    },
    close() {
      this.cut();
      return new Promise((resolve) => { server.close(resolve); });
    },
  };
}

/** The `id` query parameter of an HTTP request head. */
const requestId = (request) => /[?&]id=([^&\s]+)/.exec(request)?.[1];
/** The status code of an HTTP response head. */
const responseStatus = (response) => Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);

/** A stateful-reconnect WebSocket connection through `proxy`, with its lifecycle events recorded. */
function statefulConnection(proxy, protocol, { automaticReconnect = false } = {}) {
  let builder = new signalR.HubConnectionBuilder()
    .withUrl(`${proxy.url}/testhub`, { transport: signalR.HttpTransportType.WebSockets })
    .withHubProtocol(hubProtocol(protocol))
    .withStatefulReconnect()
    .configureLogging(signalR.LogLevel.None);
  if (automaticReconnect) builder = builder.withAutomaticReconnect([0, 200, 500]);
  const connection = builder.build();
  const events = { reconnecting: [], reconnected: [], closed: deferred(), closeCount: 0 };
  connection.onreconnecting((error) => events.reconnecting.push(error));
  connection.onreconnected((id) => events.reconnected.push(id));
  connection.onclose((error) => { events.closeCount += 1; events.closed.resolve(error); });
  return { connection, events };
}

describe('stateful reconnect (WebSockets through a TCP proxy)', () => {
  let server;
  before(async () => { server = await startServer(); });
  after(async () => { await server?.stop(); });

  const variants = [
    { protocol: 'json' },
    { protocol: 'messagepack' },
    // After both sides acknowledged what they had (Acks every 1 s), the resume starts past sequence 1. Also the
    // usual production setup, both features on: a resumed connection must not look like a reconnect.
    { protocol: 'json', afterAck: true, automaticReconnect: true },
  ];
  for (const { protocol, afterAck, automaticReconnect } of variants) {
    const name = `${protocol}${afterAck ? ', cut after an Ack, with automatic reconnect too' : ''}`;
    test(`${name}: a dropped socket resumes the same connection; no message is lost, duplicated or reordered`, async () => {
      const proxy = await startProxy(server.port);
      const { connection, events } = statefulConnection(proxy, protocol, { automaticReconnect });
      const received = [];
      connection.on('Message', (message) => received.push(message));
      try {
        await withTimeout(connection.start(), 10000, 'start()');
        const id = connection.connectionId;
        assert.equal(typeof id, 'string');
        assert.equal(connection.connection.features.reconnect, true, 'the client turned stateful reconnect on');
        // The negotiate went through the proxy: the client asked, the server agreed.
        const negotiate = proxy.connections.find((c) => c.request.startsWith('POST /testhub/negotiate?'));
        assert.ok(negotiate, 'negotiate went through the proxy');
        assert.match(negotiate.request, /^POST \/testhub\/negotiate\?[^ ]*useStatefulReconnect=true/);
        assert.match(negotiate.response, /"useStatefulReconnect":true/);
        assert.equal(await connection.invoke('Echo', 'before'), 'before');
        assert.equal(await connection.invoke('GetCallerConnectionId'), id);

        const N = 40;
        const sends = [];
        const echoes = [];
        const issue = (i) => {
          sends.push(connection.send('InvokeWithString', `m${i}`));
          echoes.push(connection.invoke('Echo', `e${i}`));
        };
        for (let i = 0; i < 20; i += 1) {
          issue(i);
          // eslint-disable-next-line no-await-in-loop
          if (i % 5 === 4) await sleep(5);
        }
        await until(() => received.length >= 10, 5000, '10 messages before the cut');
        if (afterAck) {
          await until(() => received.length >= 20, 5000, '20 messages before the cut');
          await sleep(1300);
        }
        // Issue a few more in the same tick as the cut: they are written into a socket that is going away.
        for (let i = 20; i < 25; i += 1) issue(i);
        const receivedAtCut = received.length;
        assert.ok(proxy.cut() >= 1, 'the proxy had an open socket to cut');
        for (let i = 25; i < N; i += 1) {
          issue(i);
          // eslint-disable-next-line no-await-in-loop
          if (i % 5 === 4) await sleep(5);
        }

        await withTimeout(Promise.all(sends), 10000, 'the sends');
        const echoed = await withTimeout(Promise.all(echoes), 10000, 'the Echo results');
        assert.deepEqual(echoed, Array.from({ length: N }, (_, i) => `e${i}`));
        await until(() => received.length >= N, 10000, `${N} messages`);
        // Late duplicates (a replay the client failed to drop) would arrive now.
        await sleep(300);
        assert.ok(receivedAtCut < N, `the cut came before every message had arrived (${receivedAtCut}/${N})`);
        assert.deepEqual(received, Array.from({ length: N }, (_, i) => `m${i}`), 'every message once and in order');

        // The client came back on a second WebSocket with the same token, without negotiating again.
        const upgrades = proxy.upgrades();
        assert.equal(upgrades.length, 2, 'one WebSocket before the cut, one after');
        assert.equal(requestId(upgrades[1].request), requestId(upgrades[0].request), 'the same connection token');
        assert.equal(responseStatus(upgrades[1].response), 101);
        // The server's first message on the resumed socket is a Sequence (server frames are not masked).
        const resumed = upgrades[1].response.slice(upgrades[1].response.indexOf('\r\n\r\n') + 4);
        if (protocol === 'json') {
          const sequence = /^..?.?.?\{"type":9,"sequenceId":(\d+)\}\x1e/s.exec(resumed);
          assert.ok(sequence, `a Sequence first: ${JSON.stringify(resumed.slice(0, 80))}`);
          // 2 invocations before the loop, then 2 messages per i; the client acknowledged at least the first 20 i.
          if (afterAck) assert.ok(Number(sequence[1]) > 40, `Sequence ${sequence[1]} skips what the client acknowledged`);
        } else {
          assert.match(resumed, /^..?.?.?.\x92\x09/s, 'a Sequence first');
        }
        assert.equal(proxy.connections.filter((c) => c.request.includes('/negotiate')).length, 1, 'no second negotiate');

        // The hub connection never noticed.
        assert.equal(connection.state, signalR.HubConnectionState.Connected);
        assert.equal(connection.connectionId, id);
        assert.equal(await connection.invoke('GetCallerConnectionId'), id, 'the server still has the same connection');
        assert.equal(await connection.invoke('Echo', 'after'), 'after');
        assert.deepEqual(events.reconnecting, [], 'onreconnecting is not called for a stateful reconnect');
        assert.deepEqual(events.reconnected, [], 'onreconnected is not called for a stateful reconnect');
        assert.equal(events.closeCount, 0, 'onclose is not called');
      } finally {
        await connection.stop();
        await proxy.close();
      }
    });
  }
});

// The server keeps a dropped stateful connection for its disconnect timeout (15 s by default; 1 s here).
test('stateful reconnect after the disconnect timeout is refused (404) and the client closes', async () => {
  const server = await startServer({ env: { HUBCAST_HUB_DISCONNECT_TIMEOUT: '1s' } });
  const proxy = await startProxy(server.port);
  const { connection, events } = statefulConnection(proxy, 'json');
  try {
    await withTimeout(connection.start(), 10000, 'start()');
    assert.equal(await connection.invoke('Echo', 'before'), 'before');
    proxy.hold();
    const accepted = proxy.connections.length;
    proxy.cut();
    // The client opens its resume socket at once; the proxy keeps it waiting past the server's window.
    await until(() => proxy.connections.length > accepted, 3000, 'the resume attempt reaching the proxy');
    await sleep(2500);
    assert.equal(events.closeCount, 0, 'the client waits for its resume attempt');
    assert.equal(connection.state, signalR.HubConnectionState.Connected, 'the hub connection still looks connected');
    const pending = connection.invoke('Echo', 'during');
    pending.catch(() => {});
    proxy.release();

    const error = await withTimeout(events.closed.promise, 5000, 'onclose');
    assert.equal(connection.state, signalR.HubConnectionState.Disconnected);
    // The client closes with the error of the original drop (1006: no close frame).
    assert.ok(error instanceof Error, `onclose error: ${error}`);
    assert.match(error.message, /^WebSocket closed with status code: 1006/);
    await assert.rejects(pending, /Invocation canceled due to the underlying connection being closed|Unable to reconnect|WebSocket closed/);
    const upgrades = proxy.upgrades();
    assert.equal(upgrades.length, 2);
    assert.equal(requestId(upgrades[1].request), requestId(upgrades[0].request));
    assert.equal(responseStatus(upgrades[1].response), 404, `resume response: ${upgrades[1].response.split('\r\n')[0]}`);
    assert.match(upgrades[1].response, /\r\n\r\nNo Connection with that ID/);
    assert.deepEqual(events.reconnecting, []);
  } finally {
    await connection.stop();
    await proxy.close();
    await server.stop();
  }
});

// SIGTERM closes every connection with allowReconnect: true; the client reconnects as soon as a server listens on
// the port again. The dying server must not take new connections: the client's first retry (0 ms) would land on it
// and be closed again (protocol notes §1.8: shutdown disposes the connections; Kestrel stops serving new requests).
describe('automatic reconnect after a server restart on the same port', () => {
  for (const { transport, protocol } of [
    { transport: 'WebSockets', protocol: 'json' },
    { transport: 'WebSockets', protocol: 'messagepack' },
    { transport: 'LongPolling', protocol: 'json' },
    { transport: 'ServerSentEvents', protocol: 'json' },
  ]) {
    test(`${transport} + ${protocol}: onreconnecting on shutdown, onreconnected with a new connection id`, async () => {
      let server = await startServer();
      const { port } = server;
      const connection = new signalR.HubConnectionBuilder()
        .withUrl(`${server.url}/testhub`, { transport: signalR.HttpTransportType[transport] })
        .withHubProtocol(hubProtocol(protocol))
        .withAutomaticReconnect([0, 200, 500, 1000, 2000])
        .configureLogging(signalR.LogLevel.None)
        .build();
      const reconnecting = [];
      const reconnected = [];
      let closeCount = 0;
      let restarted = false;
      const reconnectedAfterRestart = deferred();
      connection.onreconnecting((error) => reconnecting.push(error));
      connection.onreconnected((id) => {
        reconnected.push({ id, restarted });
        if (restarted) reconnectedAfterRestart.resolve(id);
      });
      connection.onclose(() => { closeCount += 1; });
      try {
        await withTimeout(connection.start(), 10000, 'start()');
        const oldId = connection.connectionId;
        assert.equal(await connection.invoke('GetCallerConnectionId'), oldId);

        const stopped = await server.stop();
        const whileDying = reconnected.length;
        assert.equal(whileDying, 0, `the client reconnected ${whileDying} time(s) to the server after SIGTERM `
          + `(${reconnecting.length} onreconnecting; exit ${stopped.ms} ms after SIGTERM${stopped.killed ? ', killed' : ''})`);
        assert.equal(stopped.killed, false, 'the server exits by itself');
        assert.ok(stopped.ms < 2000, `exited ${stopped.ms} ms after SIGTERM`);
        await until(() => reconnecting.length > 0, 5000, 'onreconnecting');
        if (transport === 'LongPolling') {
          // The Close waits for the next poll; a server that exits first fails that poll instead.
          assert.match(reconnecting[0]?.message, /^(Server returned an error on close: Server is shutting down\.|fetch failed)$/);
        } else {
          // A Close with allowReconnect: true (with false the client would close instead of reconnecting).
          assert.equal(reconnecting[0]?.message, 'Server returned an error on close: Server is shutting down.');
        }
        assert.equal(connection.state, signalR.HubConnectionState.Reconnecting);

        server = await startServer({ port });
        restarted = true;
        assert.equal(server.port, port);
        const newId = await withTimeout(reconnectedAfterRestart.promise, 8000, 'onreconnected');
        assert.equal(typeof newId, 'string');
        assert.notEqual(newId, oldId, 'a new connection');
        assert.equal(connection.connectionId, newId);
        assert.equal(connection.state, signalR.HubConnectionState.Connected);
        assert.equal(await connection.invoke('Echo', 'again'), 'again');
        assert.equal(await connection.invoke('GetCallerConnectionId'), newId);
        assert.equal(await connection.invoke('GetActiveTransportName'), transport);
        assert.equal(closeCount, 0);
      } finally {
        await connection.stop();
        await server.stop();
      }
    });
  }
});
