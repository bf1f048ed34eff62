'use strict';
// The endpoints of the official TS functional tests' server (dotnet/aspnetcore FunctionalTests/Startup.cs)
// that conformance mode mounts besides the hubs: /echoredirect (a 307 to /echo), /bad-negotiate (400 with
// a body the client must report), /uncreatable (a hub that cannot be created), and 404 for a POST to an
// unknown path. Driven with the official client, asserting what it reports.
const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { HttpConnection } = require('@microsoft/signalr/dist/cjs/HttpConnection');
const { startServer } = require('./server');
const {
  signalR, MATRIX, buildConnection, withTimeout, deferred,
} = require('./helpers');

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

test('/echoredirect answers every request with a method-preserving redirect to /echo, query kept', async () => {
  const response = await fetch(`${server.url}/echoredirect/negotiate?negotiateVersion=1`, { method: 'POST', redirect: 'manual' });
  assert.equal(response.status, 307);
  assert.equal(response.headers.get('location'), `${server.url}/echo/negotiate?negotiateVersion=1`);
});

// The client keeps /echoredirect as its base URL, so every transport request goes through the 307;
// a WebSocket upgrade cannot follow one, so the client falls back to another transport.
for (const transport of ['ServerSentEvents', 'LongPolling', undefined]) {
  test(`the official client follows /echoredirect to /echo (${transport ?? 'any transport'})`, async () => {
    const options = { logger: signalR.LogLevel.None };
    if (transport) options.transport = signalR.HttpTransportType[transport];
    const connection = new HttpConnection(`${server.url}/echoredirect`, options);
    const echoed = deferred();
    const closed = deferred();
    connection.onreceive = (data) => { if (data === 'Hello World!') echoed.resolve(); };
    connection.onclose = (error) => closed.resolve(error);
    await withTimeout(connection.start(signalR.TransferFormat.Text), 10000, 'start()');
    await connection.send('Hello World!');
    await withTimeout(echoed.promise, 5000, 'the echo');
    await connection.stop();
    assert.equal(await closed.promise, undefined);
  });
}

test('/bad-negotiate: the client reports the server\'s response', async () => {
  const connection = new HttpConnection(`${server.url}/bad-negotiate`, { logger: signalR.LogLevel.None });
  await assert.rejects(connection.start(signalR.TransferFormat.Text), (error) => {
    assert.equal(error.message, "Failed to complete negotiation with the server: Error: Some response from server: Status code '400'");
    return true;
  });
});

describe('/uncreatable: the hub cannot be created', () => {
  const expected = "Server returned an error on close: Connection closed with an error. InvalidOperationException: "
    + "Unable to resolve service for type 'System.Object' while attempting to activate 'FunctionalTests.UncreatableHub'.";
  for (const { transport, protocol } of MATRIX) {
    test(`${transport} + ${protocol}: start fails or the connection closes with the .NET error`, async () => {
      const connection = buildConnection(`${server.url}/uncreatable`, { transport, protocol });
      const closed = deferred();
      connection.onclose((error) => closed.resolve(error));
      try {
        await connection.start();
        const error = await withTimeout(closed.promise, 5000, 'onclose');
        assert.equal(error?.message, expected);
      } catch (error) {
        // As in the official test: SSE may race the close with a 404 for the gone connection.
        if (error.message.includes('404')) assert.equal(error.message, "No Connection with that ID: Status code '404'");
        else assert.equal(error.message, expected);
      }
    });
  }
});

test('a POST to an unknown path is 404, and the client says so', async () => {
  const connection = buildConnection(`${server.url}/nosuchhub`, {});
  await assert.rejects(connection.start(), /Status code '404'/);
  const response = await fetch(`${server.url}/nosuchhub/negotiate?negotiateVersion=1`, { method: 'POST' });
  assert.equal(response.status, 404);
});
