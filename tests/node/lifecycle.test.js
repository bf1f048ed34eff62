'use strict';
// Server shutdown as clients see it. Each test starts its own server because it stops it.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('./server');
const {
  TRANSPORTS, buildConnection, withTimeout, deferred,
} = require('./helpers');

test('SIGTERM closes connected clients on every transport and exits promptly with status 0', async () => {
  const server = await startServer();
  const connections = [];
  try {
    for (const transport of TRANSPORTS) {
      const connection = buildConnection(`${server.url}/testhub`, { transport });
      const closed = deferred();
      connection.onclose((error) => closed.resolve(error));
      // eslint-disable-next-line no-await-in-loop
      await connection.start();
      connections.push({ transport, connection, closed: closed.promise });
    }
    const stopped = await server.stop({ graceMs: 5000 });
    assert.equal(stopped.killed, false, 'the server exits by itself');
    assert.ok(stopped.ms < 2000, `exited ${stopped.ms} ms after SIGTERM`);
    assert.equal(stopped.code, 0);
    for (const { transport, closed } of connections) {
      // eslint-disable-next-line no-await-in-loop
      await withTimeout(closed, 5000, `${transport} onclose`);
    }
  } finally {
    await Promise.all(connections.map(({ connection }) => connection.stop()));
    await server.stop();
  }
});

// ASP.NET Core disposes every connection at shutdown without waiting (protocol notes §1.8), including connections
// that were negotiated but never opened a transport (the JS client leaves one behind whenever a transport fails).
test('SIGTERM does not wait for a negotiated connection that never opened a transport', async () => {
  const server = await startServer();
  try {
    const response = await fetch(`${server.url}/testhub/negotiate?negotiateVersion=1`, { method: 'POST' });
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(typeof body.connectionToken, 'string');
    const stopped = await server.stop({ graceMs: 3000 });
    assert.ok(!stopped.killed, 'the server did not exit within 3 s of SIGTERM and had to be killed');
    assert.ok(stopped.ms < 2000, `exited ${stopped.ms} ms after SIGTERM`);
    assert.equal(stopped.code, 0);
  } finally {
    await server.stop();
  }
});

// A node whose log reader went away (stderr is a broken pipe) must still stop on SIGTERM.
test('SIGTERM still stops the server when its stderr is a broken pipe', async () => {
  const server = await startServer();
  try {
    server.closeStderr();
    // Give the pipe close a moment to land before the server's next log line.
    await new Promise((resolve) => { setTimeout(resolve, 100); });
    const stopped = await server.stop({ graceMs: 3000 });
    assert.ok(!stopped.killed, 'the server did not exit within 3 s of SIGTERM and had to be killed');
    assert.ok(stopped.ms < 2000, `exited ${stopped.ms} ms after SIGTERM`);
  } finally {
    await server.stop();
  }
});
