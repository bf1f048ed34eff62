'use strict';
// Connection features the hub sees through the official client: headers, cookies, query, connection ids,
// skip-negotiation, transport fallback and negotiate redirects.
const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('./server');
const {
  signalR, MATRIX, TRANSPORTS, buildConnection, withTimeout, deferred, using,
} = require('./helpers');

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

// In Node the client sends its agent string as User-Agent (browsers use X-SignalR-User-Agent).
const USER_AGENT = /^Microsoft SignalR\/10\.0 \(10\.0\.11; [^;]+; NodeJS; [^;]+\)$/;

for (const { transport, protocol } of MATRIX) {
  describe(`${transport} + ${protocol}`, () => {
    const connect = (path, options) => buildConnection(`${server.url}${path}`, { transport, protocol, options });

    test('request headers of the transport reach the hub', async () => {
      const options = { headers: { 'X-Custom-Header': 'custom value' } };
      await using(connect('/testhub', options), async (connection) => {
        assert.equal(await connection.invoke('GetHeader', 'X-Custom-Header'), 'custom value');
        assert.equal(await connection.invoke('GetHeader', 'x-custom-header'), 'custom value', 'header names are case-insensitive');
        assert.match(await connection.invoke('GetHeader', 'User-Agent'), USER_AGENT);
        assert.equal(await connection.invoke('GetHeader', 'X-SignalR-User-Agent'), null);
        assert.equal(await connection.invoke('GetHeader', 'X-Not-Sent'), null);
      });
    });

    test('user headers override the library User-Agent', async () => {
      const options = { headers: { 'User-Agent': 'Custom Agent' } };
      await using(connect('/testhub', options), async (connection) => {
        assert.equal(await connection.invoke('GetHeader', 'User-Agent'), 'Custom Agent');
      });
    });

    test('negotiate cookies are sent on the transport request', async () => {
      await using(connect('/testhub'), async (connection) => {
        assert.equal(await connection.invoke('GetCookie', 'testCookie'), 'testValue');
        assert.equal(await connection.invoke('GetCookie', 'testCookie2'), 'testValue2');
        assert.equal(await connection.invoke('GetCookie', 'expiredCookie'), null, 'the expired cookie is not kept');
        assert.equal(await connection.invoke('GetCookie', 'missingCookie'), null);
      });
    });

    test('query parameters of the URL reach the hub', async () => {
      await using(connect('/testhub?numRedirects=3'), async (connection) => {
        assert.equal(await connection.invoke('GetNumRedirects'), 3);
        assert.equal(await connection.invoke('Echo', 'with query'), 'with query');
      });
      await using(connect('/testhub'), async (connection) => {
        assert.equal(await connection.invoke('GetNumRedirects'), 0);
      });
    });

    test('a negotiate redirect is followed to /testHub', async () => {
      const redirectUrl = `/redirect?numRedirects=0&baseUrl=${encodeURIComponent(server.url)}`;
      const seen = [];
      for (let i = 0; i < 2; i += 1) {
        // eslint-disable-next-line no-await-in-loop
        await using(connect(redirectUrl), async (connection) => {
          assert.equal(await connection.invoke('GetActiveTransportName'), transport);
          assert.notEqual(connection.connectionId, null);
          assert.equal(await connection.invoke('GetCallerConnectionId'), connection.connectionId);
          seen.push(await connection.invoke('GetNumRedirects'));
        });
      }
      assert.ok(seen[0] >= 1, `numRedirects ${seen[0]} >= 1`);
      assert.ok(seen[1] > seen[0], `the redirect counter increases (${seen})`);
    });
  });
}

describe('skip negotiation (WebSockets only)', () => {
  for (const protocol of ['json', 'messagepack']) {
    test(`${protocol}: connects without negotiate, connectionId is null, invoke and server calls work`, async () => {
      const connection = buildConnection(`${server.url}/testhub`, {
        transport: 'WebSockets', protocol, options: { skipNegotiation: true },
      });
      await using(connection, async () => {
        assert.equal(connection.connectionId, null);
        assert.equal(await connection.invoke('Echo', 'skipped'), 'skipped');
        assert.equal(await connection.invoke('GetActiveTransportName'), 'WebSockets');
        assert.match(await connection.invoke('GetCallerConnectionId'), /^[A-Za-z0-9_-]{22}$/, 'the server still assigns an id');
        const received = deferred();
        connection.on('message', (text) => received.resolve(text));
        await connection.invoke('InvokeWithString', 'to a skip-negotiation client');
        assert.equal(await withTimeout(received.promise, 5000, 'Message'), 'to a skip-negotiation client');
        // No negotiate, so no cookies.
        assert.equal(await connection.invoke('GetCookie', 'testCookie'), null);
      });
    });
  }

  test('skip negotiation against /testhub-nowebsockets fails to start', async () => {
    const connection = buildConnection(`${server.url}/testhub-nowebsockets`, {
      transport: 'WebSockets', options: { skipNegotiation: true },
    });
    await assert.rejects(connection.start(), { message: /^WebSocket failed to connect\./ });
    assert.equal(connection.state, signalR.HubConnectionState.Disconnected);
  });
});

describe('/testhub-nowebsockets', () => {
  test('json with no transport forced falls back to ServerSentEvents', async () => {
    await using(buildConnection(`${server.url}/testhub-nowebsockets`), async (connection) => {
      assert.equal(await connection.invoke('GetActiveTransportName'), 'ServerSentEvents');
      assert.equal(await connection.invoke('Echo', 'fallback'), 'fallback');
      assert.equal(await connection.invoke('GetCallerConnectionId'), connection.connectionId);
    });
  });

  test('messagepack with no transport forced falls back to LongPolling', async () => {
    const connection = buildConnection(`${server.url}/testhub-nowebsockets`, { protocol: 'messagepack' });
    await using(connection, async () => {
      assert.equal(await connection.invoke('GetActiveTransportName'), 'LongPolling');
      assert.equal(await connection.invoke('Echo', 'fallback'), 'fallback');
    });
  });

  test('forcing WebSockets fails: the server does not offer it', async () => {
    const connection = buildConnection(`${server.url}/testhub-nowebsockets`, { transport: 'WebSockets' });
    await assert.rejects(connection.start(), {
      message: 'Unable to connect to the server with any of the available transports. '
        + "ServerSentEvents failed: Error: 'ServerSentEvents' is disabled by the client. "
        + "LongPolling failed: Error: 'LongPolling' is disabled by the client.",
    });
  });

  for (const transport of TRANSPORTS.filter((t) => t !== 'WebSockets')) {
    test(`${transport} works when forced`, async () => {
      await using(buildConnection(`${server.url}/testhub-nowebsockets`, { transport }), async (connection) => {
        assert.equal(await connection.invoke('GetActiveTransportName'), transport);
      });
    });
  }
});

test('connectionId is null before start and after stop', async () => {
  const connection = buildConnection(`${server.url}/testhub`, { transport: 'WebSockets' });
  assert.equal(connection.connectionId, null);
  await using(connection, async () => {
    assert.match(connection.connectionId, /^[A-Za-z0-9_-]{22}$/);
  });
  assert.equal(connection.connectionId, null);
});

test('route matching is case-insensitive', async () => {
  await using(buildConnection(`${server.url}/TestHub`, { transport: 'LongPolling' }), async (connection) => {
    assert.equal(await connection.invoke('Echo', 'mixed-case path'), 'mixed-case path');
  });
});
