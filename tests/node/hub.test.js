'use strict';
// The hub protocol over every transport × protocol pair, through the official HubConnectionBuilder.
const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('./server');
const {
  signalR, MATRIX, buildConnection, withTimeout, deferred, using,
} = require('./helpers');

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

const hubUrl = () => `${server.url}/testhub`;

const FIXED_GUID = '00010203-0405-0607-0706-050403020100';

for (const { transport, protocol } of MATRIX) {
  const connect = (options) => buildConnection(hubUrl(), { transport, protocol, options });

  describe(`${transport} + ${protocol}`, () => {
    test('invoke Echo returns its argument', async () => {
      await using(connect(), async (connection) => {
        assert.equal(connection.state, signalR.HubConnectionState.Connected);
        assert.equal(await connection.invoke('Echo', 'hello, wörld ✓ \u2028 "quoted"'), 'hello, wörld ✓ \u2028 "quoted"');
        assert.equal(await connection.invoke('Echo', ''), '');
        // Hub method lookup is case-insensitive, as in ASP.NET Core.
        assert.equal(await connection.invoke('echo', 'lower'), 'lower');
        assert.equal(await connection.invoke('ECHO', 'upper'), 'upper');
      });
    });

    test('non-blocking send is processed and a later invoke still works', async () => {
      await using(connect(), async (connection) => {
        const received = deferred();
        connection.on('message', (text) => received.resolve(text));
        // Non-blocking calls that fail must not produce any reply or break the connection.
        await connection.send('ThrowException', 'ignored');
        await connection.send('NoSuchMethod', 1, 2);
        await connection.send('InvokeWithString', 'sent without waiting');
        assert.equal(await withTimeout(received.promise, 5000, 'Message from send'), 'sent without waiting');
        assert.equal(await connection.invoke('Echo', 'after send'), 'after send');
        assert.equal(connection.state, signalR.HubConnectionState.Connected);
      });
    });

    test('receives a server-to-client call (handler registered in mixed case) before the completion', async () => {
      await using(connect(), async (connection) => {
        const events = [];
        const received = deferred();
        connection.on('mEsSaGe', (...args) => {
          events.push('message');
          received.resolve(args);
        });
        const result = await connection.invoke('InvokeWithString', 'message from server');
        events.push('completion');
        // A void hub method completes with a null result.
        assert.equal(result, null);
        assert.deepEqual(await withTimeout(received.promise, 5000, 'Message'), ['message from server']);
        assert.deepEqual(events, ['message', 'completion']);
      });
    });

    test('error messages are the ASP.NET Core texts', async () => {
      await using(connect(), async (connection) => {
        await assert.rejects(connection.invoke('ThrowException', 'An error occurred.'), {
          message: "An unexpected error occurred invoking 'ThrowException' on the server. InvalidOperationException: An error occurred.",
        });
        await assert.rejects(connection.invoke('UnknownMethod', 'x'), {
          message: "Unknown hub method 'UnknownMethod'",
        });
        await assert.rejects(connection.invoke('Echo'), {
          message: "Failed to invoke 'Echo' due to an error on the server. InvalidDataException: Invocation provides 0 argument(s) but target expects 1.",
        });
        await assert.rejects(connection.invoke('Echo', 'a', 'b'), {
          message: "Failed to invoke 'Echo' due to an error on the server. InvalidDataException: Invocation provides 2 argument(s) but target expects 1.",
        });
        // Errors are per invocation: the connection stays usable.
        assert.equal(connection.state, signalR.HubConnectionState.Connected);
        assert.equal(await connection.invoke('Echo', 'still alive'), 'still alive');
      });
    });

    test('SendComplexObject returns the fixed object in the protocol\'s representations', async () => {
      await using(connect(), async (connection) => {
        const value = await connection.invoke('SendComplexObject');
        assert.deepEqual(Object.keys(value).sort(), ['ByteArray', 'DateTime', 'Guid', 'IntArray', 'String']);
        assert.equal(value.String, 'hello world');
        assert.deepEqual(value.IntArray, [1, 2, 3]);
        assert.equal(value.Guid, FIXED_GUID);
        if (protocol === 'messagepack') {
          assert.ok(value.ByteArray instanceof Uint8Array, 'ByteArray is MessagePack bin');
          assert.deepEqual([...value.ByteArray], [1, 2, 3]);
          assert.ok(value.DateTime instanceof Date, 'DateTime is the timestamp extension');
          assert.equal(value.DateTime.getTime(), Date.UTC(2000, 0, 1));
        } else {
          assert.equal(value.ByteArray, 'AQID');
          assert.equal(value.DateTime, '2000-01-01T00:00:00Z');
        }
      });
    });

    test('EchoComplexObject round-trips client values', async () => {
      await using(connect(), async (connection) => {
        const guid = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';
        const sent = protocol === 'messagepack'
          ? {
            String: 'ünïcödé',
            IntArray: [-2147483648, 0, 2147483647],
            ByteArray: new Uint8Array([0, 255, 128, 7]),
            Guid: guid,
            DateTime: new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789)),
          }
          : {
            String: 'ünïcödé',
            IntArray: [-2147483648, 0, 2147483647],
            ByteArray: Buffer.from([0, 255, 128, 7]).toString('base64'),
            Guid: guid,
            DateTime: '2024-02-29T12:34:56.789Z',
          };
        const echoed = await connection.invoke('EchoComplexObject', sent);
        assert.equal(echoed.String, sent.String);
        assert.deepEqual(echoed.IntArray, sent.IntArray);
        assert.equal(echoed.Guid, guid);
        if (protocol === 'messagepack') {
          assert.ok(echoed.ByteArray instanceof Uint8Array);
          assert.deepEqual([...echoed.ByteArray], [0, 255, 128, 7]);
          assert.ok(echoed.DateTime instanceof Date);
          assert.equal(echoed.DateTime.toISOString(), '2024-02-29T12:34:56.789Z');
        } else {
          assert.equal(echoed.ByteArray, 'AP+ABw==');
          assert.equal(echoed.DateTime, '2024-02-29T12:34:56.789Z');
        }
      });
    });

    test('SendCustomObject calls CustomObject back with PascalCase properties', async () => {
      await using(connect(), async (connection) => {
        const received = deferred();
        connection.on('customObject', (value) => received.resolve(value));
        await connection.invoke('SendCustomObject', { Name: 'test name', Value: 42 });
        assert.deepEqual(await withTimeout(received.promise, 5000, 'CustomObject'), { Name: 'test name', Value: 42 });
      });
    });

    test('GetActiveTransportName and GetCallerConnectionId describe this connection', async () => {
      await using(connect(), async (connection) => {
        assert.equal(await connection.invoke('GetActiveTransportName'), transport);
        const id = await connection.invoke('GetCallerConnectionId');
        assert.notEqual(connection.connectionId, null);
        assert.equal(id, connection.connectionId);
        assert.match(id, /^[A-Za-z0-9_-]{22}$/);
      });
    });

    test('20 parallel invokes all get their own answers', async () => {
      await using(connect(), async (connection) => {
        const inputs = Array.from({ length: 20 }, (_, i) => `message ${i} ${'x'.repeat(i * 50)}`);
        const results = await withTimeout(
          Promise.all(inputs.map((text) => connection.invoke('Echo', text))),
          10000,
          '20 parallel invokes',
        );
        assert.deepEqual(results, inputs);
      });
    });

    test('stop fires onclose without an error, and the same HubConnection starts again', async () => {
      const connection = connect();
      const closed = [];
      connection.onclose((error) => closed.push(error));
      const messages = [];
      connection.on('Message', (text) => messages.push(text));
      try {
        await connection.start();
        const firstId = connection.connectionId;
        await connection.invoke('InvokeWithString', 'first');
        await connection.stop();
        assert.equal(connection.state, signalR.HubConnectionState.Disconnected);
        assert.deepEqual(closed, [undefined]);
        assert.equal(connection.connectionId, null);

        await withTimeout(connection.start(), 10000, 'second start()');
        assert.equal(connection.state, signalR.HubConnectionState.Connected);
        assert.notEqual(connection.connectionId, null);
        assert.notEqual(connection.connectionId, firstId, 'a restart negotiates a new connection');
        assert.equal(await connection.invoke('GetCallerConnectionId'), connection.connectionId);
        await connection.invoke('InvokeWithString', 'second');
        assert.deepEqual(messages, ['first', 'second']);
        await connection.stop();
        assert.deepEqual(closed, [undefined, undefined]);
      } finally {
        await connection.stop();
      }
    });
  });
}

test('ServerSentEvents + messagepack: the client refuses to start (SSE is advertised as Text only)', async () => {
  const connection = buildConnection(hubUrl(), { transport: 'ServerSentEvents', protocol: 'messagepack' });
  await assert.rejects(connection.start(), {
    message: 'Unable to connect to the server with any of the available transports. '
      + "WebSockets failed: Error: 'WebSockets' is disabled by the client. "
      + "ServerSentEvents failed: Error: 'ServerSentEvents' does not support Binary. "
      + "LongPolling failed: Error: 'LongPolling' is disabled by the client.",
  });
  assert.equal(connection.state, signalR.HubConnectionState.Disconnected);
});

test('messagepack with no transport forced picks WebSockets', async () => {
  await using(buildConnection(hubUrl(), { protocol: 'messagepack' }), async (connection) => {
    assert.equal(await connection.invoke('GetActiveTransportName'), 'WebSockets');
  });
});
