'use strict';
// Raw connections: the `/echo` connection handler (no hub protocol) through the client's HttpConnection and a
// plain WebSocket, plus a few wire-level checks of the hub endpoint that the official client cannot observe.
const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const EventSource = require('eventsource');
const { HttpConnection } = require('@microsoft/signalr/dist/cjs/HttpConnection');
const { startServer } = require('./server');
const {
  signalR, TRANSPORTS, withTimeout, deferred,
} = require('./helpers');

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

const wsUrl = (path) => `${server.url.replace(/^http/, 'ws')}${path}`;

/** Starts an HttpConnection to /echo, collecting everything it receives. */
async function startEcho(transport, format) {
  const options = { logger: signalR.LogLevel.None };
  if (transport !== undefined) options.transport = signalR.HttpTransportType[transport];
  const connection = new HttpConnection(`${server.url}/echo`, options);
  const received = [];
  const waiters = [];
  connection.onreceive = (data) => {
    received.push(data);
    waiters.splice(0).forEach((w) => w());
  };
  const closed = deferred();
  connection.onclose = (error) => closed.resolve(error);
  await withTimeout(connection.start(format), 10000, 'HttpConnection.start()');
  /** Waits until `predicate(received)` holds. */
  const until = (predicate, what) => withTimeout(new Promise((resolve) => {
    const check = () => (predicate(received) ? resolve(received) : waiters.push(check));
    check();
  }), 5000, what);
  return {
    connection, received, until, closed: closed.promise,
  };
}

const asText = (chunks) => chunks.map((c) => (typeof c === 'string' ? c : Buffer.from(c).toString('utf8'))).join('');
const asBytes = (chunks) => Buffer.concat(chunks.map((c) => {
  assert.ok(c instanceof ArrayBuffer, `binary data arrives as ArrayBuffer, got ${typeof c}`);
  return Buffer.from(c);
}));

describe('/echo through HttpConnection', () => {
  for (const transport of TRANSPORTS) {
    test(`${transport}: text messages are echoed back`, async () => {
      const echo = await startEcho(transport, signalR.TransferFormat.Text);
      try {
        assert.equal(echo.connection.features.inherentKeepAlive === true, transport === 'LongPolling');
        assert.notEqual(echo.connection.connectionId, undefined);
        const message = 'Hello, wörld! \u{1F600}';
        await echo.connection.send(message);
        await echo.until((r) => asText(r).length >= message.length, 'the echo');
        assert.equal(asText(echo.received), message);
        for (const chunk of echo.received) assert.equal(typeof chunk, 'string', 'text format delivers strings');

        await echo.connection.send('second');
        await echo.until((r) => asText(r).length >= message.length + 6, 'the second echo');
        assert.equal(asText(echo.received), `${message}second`);
      } finally {
        await echo.connection.stop();
      }
      assert.equal(await withTimeout(echo.closed, 5000, 'onclose'), undefined);
    });

    if (transport !== 'ServerSentEvents') {
      test(`${transport}: binary messages are echoed back byte for byte`, async () => {
        const echo = await startEcho(transport, signalR.TransferFormat.Binary);
        try {
          const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) % 256);
          await echo.connection.send(bytes.buffer);
          await echo.until((r) => asBytes(r).length >= bytes.length, 'the binary echo');
          assert.deepEqual([...asBytes(echo.received)], [...bytes]);
        } finally {
          await echo.connection.stop();
        }
      });
    }
  }

  test('no transport forced: WebSockets is chosen and echoes', async () => {
    const echo = await startEcho(undefined, signalR.TransferFormat.Text);
    try {
      assert.equal(echo.connection.transport.constructor.name, 'WebSocketTransport');
      await echo.connection.send('plain');
      await echo.until((r) => asText(r).length >= 5, 'the echo');
      assert.equal(asText(echo.received), 'plain');
    } finally {
      await echo.connection.stop();
    }
  });
});

test('a plain WebSocket to /echo without negotiate echoes and closes cleanly with 1000', async () => {
  const ws = new WebSocket(wsUrl('/echo'));
  const message = 'message over a raw websocket';
  const done = deferred();
  let received = '';
  ws.onopen = () => ws.send(message);
  ws.onmessage = (event) => {
    received += event.data;
    if (received.length >= message.length) ws.close(1000);
  };
  ws.onerror = (event) => done.reject(event.error || new Error('websocket error'));
  ws.onclose = (event) => done.resolve(event);
  const event = await withTimeout(done.promise, 5000, 'the close');
  assert.equal(received, message);
  assert.equal(event.code, 1000);
  assert.equal(event.wasClean, true);
});

/** Opens a raw WebSocket and resolves with it, or with the HTTP response when the upgrade is refused. */
function openWebSocket(url) {
  return withTimeout(new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_, response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (d) => { body += d; });
      response.on('end', () => resolve({ status: response.statusCode, body }));
    });
    ws.once('error', reject);
  }), 5000, `WebSocket ${url}`);
}

/** Splits VarInt-length-prefixed MessagePack hub messages. */
function splitVarIntFrames(buffer) {
  const out = [];
  let offset = 0;
  while (offset < buffer.length) {
    let length = 0;
    let shift = 0;
    let byte;
    do {
      byte = buffer[offset];
      offset += 1;
      length |= (byte & 0x7f) << shift;
      shift += 7;
    } while (byte & 0x80);
    assert.ok(offset + length <= buffer.length, 'complete message');
    out.push(buffer.subarray(offset, offset + length));
    offset += length;
  }
  return out;
}

describe('hub endpoint at the wire level', () => {
  test('handshake reply is exactly {}\\x1e, non-blocking failures get no reply, void completes with result null', async () => {
    const { ws } = await openWebSocket(wsUrl('/testhub'));
    let text = '';
    const frames = [];
    const gotCompletion = deferred();
    ws.on('message', (data) => {
      frames.push(data);
      text += data.toString();
      if (text.includes('"type":3')) gotCompletion.resolve();
    });
    try {
      ws.send('{"protocol":"json","version":1}\x1e'
        + '{"type":1,"target":"ThrowException","arguments":["x"]}\x1e'
        + '{"type":1,"target":"NoSuchMethod","arguments":[]}\x1e'
        + '{"type":1,"invocationId":"","target":"Echo","arguments":[]}\x1e'
        + '{"type":1,"invocationId":"7","target":"InvokeWithString","arguments":["hi"]}\x1e');
      await withTimeout(gotCompletion.promise, 5000, 'the completion');
      for (const frame of frames) assert.equal(typeof frame, 'string', 'JSON goes in Text frames');
      const messages = text.split('\x1e');
      assert.equal(messages.pop(), '', 'every message ends with 0x1e');
      assert.equal(messages[0], '{}');
      const rest = messages.slice(1).map((m) => JSON.parse(m)).filter((m) => m.type !== 6);
      assert.deepEqual(rest, [
        { type: 1, target: 'Message', arguments: ['hi'] },
        { type: 3, invocationId: '7', result: null },
      ]);
    } finally {
      ws.close(1000);
    }
  });

  test('messagepack goes in Binary frames and the void completion is [3, {}, id, 3, nil]', async () => {
    const { ws } = await openWebSocket(wsUrl('/testhub'));
    const chunks = [];
    const gotCompletion = deferred();
    ws.on('message', (data) => {
      chunks.push(data);
      // 07 95 03 80 a1 31 03 c0 — VarInt 7, then [3, {}, "1", 3, nil]
      if (Buffer.concat(chunks.filter(Buffer.isBuffer)).includes(Buffer.from([0x95, 0x03, 0x80, 0xa1, 0x31]))) {
        gotCompletion.resolve();
      }
    });
    try {
      ws.send('{"protocol":"messagepack","version":1}\x1e');
      // [1, {}, "1", "InvokeWithString", ["hi"]] — the 5-element form the JS client writes.
      const invocation = Buffer.from([0x95, 0x01, 0x80, 0xa1, 0x31, 0xb0, ...Buffer.from('InvokeWithString'), 0x91, 0xa2, 0x68, 0x69]);
      ws.send(Buffer.concat([Buffer.from([invocation.length]), invocation]));
      await withTimeout(gotCompletion.promise, 5000, 'the completion');
      // As in ASP.NET Core, the transfer format switches to Binary before the handshake reply is written.
      const binary = Buffer.concat(chunks.map((c) => {
        assert.ok(Buffer.isBuffer(c), 'MessagePack connections use Binary frames');
        return c;
      }));
      assert.equal(binary.subarray(0, 3).toString('latin1'), '{}\x1e');
      // Skip pings ([6] = 91 06); the invocation of Message comes first, with all 6 elements (streamIds []).
      const messages = splitVarIntFrames(binary.subarray(3)).map((m) => m.toString('hex')).filter((m) => m !== '9106');
      const message = Buffer.from([0x96, 0x01, 0x80, 0xc0, 0xa7, ...Buffer.from('Message'), 0x91, 0xa2, 0x68, 0x69, 0x90]);
      const completion = Buffer.from([0x95, 0x03, 0x80, 0xa1, 0x31, 0x03, 0xc0]);
      assert.deepEqual(messages, [message.toString('hex'), completion.toString('hex')]);
    } finally {
      ws.close(1000);
    }
  });

  test('a WebSocket upgrade on /testhub-nowebsockets is refused with 404', async () => {
    const result = await openWebSocket(wsUrl('/testhub-nowebsockets'));
    result.ws?.close();
    assert.equal(result.status, 404);
    assert.equal(result.body, 'WebSockets transport not supported by this end point type');
  });

  test('a WebSocket with an unknown id is refused with 404', async () => {
    const result = await openWebSocket(wsUrl('/testhub?id=doesnotexist'));
    result.ws?.close();
    assert.equal(result.status, 404);
    assert.equal(result.body, 'No Connection with that ID');
  });

  test('the server rejects a messagepack handshake over Server-Sent Events', async () => {
    const negotiate = await fetch(`${server.url}/testhub/negotiate?negotiateVersion=1`, { method: 'POST' });
    assert.equal(negotiate.status, 200);
    const { connectionToken } = await negotiate.json();
    const events = [];
    const gotError = deferred();
    const source = new EventSource(`${server.url}/testhub?id=${encodeURIComponent(connectionToken)}`);
    source.onmessage = (event) => {
      events.push(event.data);
      gotError.resolve();
    };
    try {
      await withTimeout(new Promise((resolve, reject) => {
        source.onopen = resolve;
        source.onerror = () => reject(new Error('SSE failed to open'));
      }), 5000, 'SSE open');
      source.onerror = null;
      const post = await fetch(`${server.url}/testhub?id=${encodeURIComponent(connectionToken)}`, {
        method: 'POST',
        body: '{"protocol":"messagepack","version":1}\x1e',
      });
      assert.equal(post.status, 200);
      await withTimeout(gotError.promise, 5000, 'the handshake reply');
      assert.equal(
        events[0],
        '{"error":"Cannot use the \'messagepack\' protocol on the current transport. The transport does not support \'Binary\' transfer format."}\x1e',
      );
    } finally {
      source.close();
    }
  });

  // ASP.NET Core accepts data for a negotiated connection before its transport starts (the bytes wait in the
  // connection's pipe); signalrcore's long polling relies on it by POSTing the handshake before its first poll.
  test('long polling: a POST before the first poll is accepted and handled once polling starts', async () => {
    const negotiate = await fetch(`${server.url}/testhub/negotiate?negotiateVersion=1`, { method: 'POST' });
    const { connectionToken } = await negotiate.json();
    const url = `${server.url}/testhub?id=${encodeURIComponent(connectionToken)}`;
    try {
      const post = await fetch(url, { method: 'POST', body: '{"protocol":"json","version":1}\x1e' });
      assert.equal(post.status, 200, `POST before the first poll: ${post.status} ${await post.text()}`);
      const first = await fetch(url);
      assert.equal(first.status, 200);
      assert.equal(await first.text(), '', 'the first poll answers at once and empty');
      const second = await withTimeout(fetch(url), 5000, 'the second poll');
      assert.equal(second.status, 200);
      assert.equal(await second.text(), '{}\x1e');
    } finally {
      await fetch(url, { method: 'DELETE' });
    }
  });
});
