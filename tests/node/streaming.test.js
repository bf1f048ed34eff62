'use strict';
// Streaming through the official client: server-to-client streams (stream / dispose), client-to-server upload
// streams (Subject), the streaming error texts, client results (/clientresult/{id}) and streams of a stopped
// connection, over every transport × protocol pair.
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

/** How long to wait for anything the server should do promptly. */
const WAIT_MS = 5000;
/**
 * Shorter wait where a failure means waiting for something that never comes (a deadlock, a lost callback), so that a
 * failing run stays inside the runner's 30 s limit per file. Still far above the few ms these answers take.
 */
const SHORT_WAIT_MS = 1500;

/**
 * Subscribes to a client stream result and records what happens, in order: `next:<item>`, `complete`, `error`.
 * `settled` resolves with { items, error } on complete (error undefined) or error.
 */
function observe(streamResult) {
  const events = [];
  const items = [];
  const settled = deferred();
  const subscription = streamResult.subscribe({
    next: (item) => {
      events.push(`next:${item}`);
      items.push(item);
    },
    complete: () => {
      events.push('complete');
      settled.resolve({ items, error: undefined });
    },
    error: (error) => {
      events.push('error');
      settled.resolve({ items, error });
    },
  });
  return {
    events,
    items,
    subscription,
    settled: (what) => withTimeout(settled.promise, WAIT_MS, what),
  };
}

/** Polls `condition` every 10 ms; rejects after `ms` with the text of `what()`. */
async function waitUntil(condition, ms, what) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what()}`);
    // eslint-disable-next-line no-await-in-loop
    await new Promise((resolve) => { setTimeout(resolve, 10); });
  }
}

/** Resolves on the next call of client method `name` (register before provoking it). */
function nextCall(connection, name) {
  const called = deferred();
  connection.on(name, (...args) => called.resolve(args));
  return { args: (ms = WAIT_MS) => withTimeout(called.promise, ms, name) };
}

/** GET /clientresult/{id}: the server invokes `Result` on that connection and answers with the outcome as text. */
async function clientResult(id) {
  const response = await withTimeout(fetch(`${server.url}/clientresult/${encodeURIComponent(id)}`), WAIT_MS, '/clientresult');
  assert.equal(response.status, 200);
  return response.text();
}

/**
 * Sends an Invocation with `streamCount` stream ids through the client's own protocol writer (private members of
 * HubConnection 10.0.11), for what the public API cannot express. Resolves or rejects like invoke().
 * Returns [promise, streamIds].
 */
function rawInvocation(connection, target, args, streamCount) {
  /* eslint-disable no-underscore-dangle, no-param-reassign */
  const invocationId = String(connection._invocationId);
  connection._invocationId += 1;
  const streamIds = [];
  for (let i = 0; i < streamCount; i += 1) {
    streamIds.push(String(connection._invocationId));
    connection._invocationId += 1;
  }
  const result = new Promise((resolve, reject) => {
    connection._callbacks[invocationId] = (event, error) => {
      if (error) reject(error);
      else if (event.type !== signalR.MessageType.Completion) reject(new Error(`unexpected message type ${event.type}`));
      else if (event.error) reject(new Error(event.error));
      else resolve(event.result);
    };
  });
  const sent = connection._sendWithProtocol({
    type: signalR.MessageType.Invocation, invocationId, target, arguments: args, streamIds,
  });
  /* eslint-enable no-underscore-dangle, no-param-reassign */
  return [Promise.all([sent, result]).then(([, value]) => value), streamIds];
}

const streamingViaInvoke = (method) => `The client attempted to invoke the streaming '${method}' method with a non-streaming invocation.`;
const nonStreamingViaStream = (method) => `The client attempted to invoke the non-streaming '${method}' method with a streaming invocation.`;
const unexpected = (method, detail) => `An unexpected error occurred invoking '${method}' on the server. ${detail}`;

for (const { transport, protocol } of MATRIX) {
  const connect = () => buildConnection(hubUrl(), { transport, protocol });

  describe(`${transport} + ${protocol}`, () => {
    describe('server-to-client streams', () => {
      test('Stream yields "a", "b", "c" and then completes', async () => {
        await using(connect(), async (connection) => {
          const stream = observe(connection.stream('Stream'));
          const { items, error } = await stream.settled('Stream to complete');
          assert.equal(error, undefined);
          assert.deepEqual(items, ['a', 'b', 'c']);
          assert.deepEqual(stream.events, ['next:a', 'next:b', 'next:c', 'complete']);
          // Stream method lookup is case-insensitive too.
          assert.deepEqual((await observe(connection.stream('stream')).settled('stream')).items, ['a', 'b', 'c']);
        });
      });

      test('EmptyStream completes with no items', async () => {
        await using(connect(), async (connection) => {
          const stream = observe(connection.stream('EmptyStream'));
          const { error } = await stream.settled('EmptyStream to complete');
          assert.equal(error, undefined);
          assert.deepEqual(stream.events, ['complete']);
        });
      });

      test('disposing an InfiniteStream right away cancels it on the server (StreamCanceled)', async () => {
        await using(connect(), async (connection) => {
          const canceled = nextCall(connection, 'StreamCanceled');
          const stream = observe(connection.stream('InfiniteStream'));
          stream.subscription.dispose();
          assert.deepEqual(await canceled.args(SHORT_WAIT_MS), []);
          // The connection carries on, and the disposed subscriber hears nothing more.
          assert.equal(await connection.invoke('Echo', 'after cancel'), 'after cancel');
          assert.deepEqual(stream.events, []);
        });
      });

      // ASP.NET Core runs the hub method before it reads the next message, so InfiniteStream has registered its
      // token callback by the time the CancelInvocation is handled: every cancel produces a StreamCanceled.
      test('20 InfiniteStreams disposed right away each get a StreamCanceled', async () => {
        await using(connect(), async (connection) => {
          const count = 20;
          let canceled = 0;
          connection.on('StreamCanceled', () => { canceled += 1; });
          for (let i = 0; i < count; i += 1) {
            observe(connection.stream('InfiniteStream')).subscription.dispose();
            // eslint-disable-next-line no-await-in-loop
            assert.equal(await connection.invoke('Echo', `after cancel ${i}`), `after cancel ${i}`);
          }
          await waitUntil(() => canceled >= count, SHORT_WAIT_MS, () => `${count} StreamCanceled calls (got ${canceled})`);
          assert.equal(await connection.invoke('Echo', 'settle'), 'settle');
          assert.equal(canceled, count, 'one StreamCanceled per stream');
        });
      });

      test('several streams at once, interleaved with invokes: an open stream holds no invocation slot', async () => {
        await using(connect(), async (connection) => {
          const canceled = nextCall(connection, 'StreamCanceled');
          const infinite = observe(connection.stream('InfiniteStream'));
          // With one invocation slot per client, this only answers if the open stream does not hold it.
          assert.equal(await withTimeout(connection.invoke('Echo', 'while streaming'), WAIT_MS, 'Echo during InfiniteStream'),
            'while streaming');

          const second = observe(connection.stream('InfiniteStream'));
          const streams = [];
          const echoes = [];
          for (let i = 0; i < 4; i += 1) {
            streams.push(observe(connection.stream(i % 2 === 0 ? 'Stream' : 'EmptyStream')));
            echoes.push(connection.invoke('Echo', `echo ${i}`));
          }
          assert.deepEqual(await withTimeout(Promise.all(echoes), WAIT_MS, 'the interleaved echoes'),
            ['echo 0', 'echo 1', 'echo 2', 'echo 3']);
          const results = await Promise.all(streams.map((s, i) => s.settled(`stream ${i}`)));
          assert.deepEqual(results.map((r) => r.error), [undefined, undefined, undefined, undefined]);
          assert.deepEqual(results.map((r) => r.items), [['a', 'b', 'c'], [], ['a', 'b', 'c'], []]);

          // Cancel one infinite stream; the other one stays open and the connection stays usable.
          second.subscription.dispose();
          assert.deepEqual(await canceled.args(), []);
          assert.equal(await connection.invoke('Echo', 'still open'), 'still open');
          assert.deepEqual(infinite.events, [], 'the first InfiniteStream neither produced nor ended');
          assert.deepEqual(second.events, []);
          assert.equal(connection.state, signalR.HubConnectionState.Connected);
        });
      });

      test('stop() ends an open InfiniteStream instead of leaving its subscriber hanging', async () => {
        const connection = connect();
        const closed = deferred();
        connection.onclose((error) => closed.resolve(error));
        let stream;
        await using(connection, async () => {
          stream = observe(connection.stream('InfiniteStream'));
          assert.equal(await connection.invoke('Echo', 'stream is open'), 'stream is open');
          assert.deepEqual(stream.events, []);
        });
        assert.equal(await withTimeout(closed.promise, WAIT_MS, 'onclose'), undefined);
        const { items, error } = await stream.settled('the InfiniteStream subscriber to end after stop()');
        assert.deepEqual(items, []);
        if (error !== undefined) {
          assert.equal(error.message, 'Invocation canceled due to the underlying connection being closed.');
        }
        assert.equal(stream.events.length, 1, `ended exactly once: ${stream.events}`);
      });
    });

    describe('streaming errors', () => {
      test('invoke on a streaming method is refused', async () => {
        await using(connect(), async (connection) => {
          await assert.rejects(connection.invoke('Stream'), { message: streamingViaInvoke('Stream') });
          await assert.rejects(connection.invoke('EmptyStream'), { message: streamingViaInvoke('EmptyStream') });
          assert.equal(await connection.invoke('Echo', 'still alive'), 'still alive');
        });
      });

      test('stream on a non-streaming method is refused', async () => {
        await using(connect(), async (connection) => {
          const stream = observe(connection.stream('Echo', 'x'));
          const { items, error } = await stream.settled('the stream error');
          assert.deepEqual(items, []);
          assert.ok(error instanceof Error, `expected an Error, got ${error}`);
          assert.equal(error.message, nonStreamingViaStream('Echo'));
          assert.deepEqual(stream.events, ['error']);
          assert.equal(await connection.invoke('Echo', 'still alive'), 'still alive');
        });
      });

      test('a streaming method that throws before streaming fails the stream with the detailed error', async () => {
        await using(connect(), async (connection) => {
          const stream = observe(connection.stream('StreamThrowException', 'boom'));
          const { items, error } = await stream.settled('the stream error');
          assert.deepEqual(items, []);
          assert.ok(error instanceof Error, `expected an Error, got ${error}`);
          // The JS client adds no prefix: the Error's message is the server's Completion error verbatim.
          assert.equal(error.message, unexpected('StreamThrowException', 'InvalidOperationException: boom'));
          assert.deepEqual(stream.events, ['error']);
          assert.equal(await connection.invoke('Echo', 'still alive'), 'still alive');
        });
      });
    });

    describe('client-to-server streams', () => {
      test('StreamingConcat concatenates the items of a Subject', async () => {
        await using(connect(), async (connection) => {
          const subject = new signalR.Subject();
          const result = connection.invoke('StreamingConcat', subject);
          subject.next('Hello ');
          subject.next('wörld');
          subject.next('');
          subject.next('!');
          subject.complete();
          assert.equal(await withTimeout(result, WAIT_MS, 'StreamingConcat'), 'Hello wörld!');

          // An upload stream that ends without items gives the empty string.
          const empty = new signalR.Subject();
          const emptyResult = connection.invoke('StreamingConcat', empty);
          empty.complete();
          assert.equal(await withTimeout(emptyResult, WAIT_MS, 'empty StreamingConcat'), '');
        });
      });

      test('200 items arrive in order', async () => {
        await using(connect(), async (connection) => {
          const subject = new signalR.Subject();
          const result = connection.invoke('StreamingConcat', subject);
          const parts = Array.from({ length: 200 }, (_, i) => `${i},`);
          for (const part of parts) subject.next(part);
          subject.complete();
          assert.equal(await withTimeout(result, 10000, 'StreamingConcat of 200 items'), parts.join(''));
        });
      });

      // ASP.NET Core runs methods with stream parameters outside the MaximumParallelInvocationsPerClient limit
      // (DefaultHubDispatcher.ProcessInvocation: `!isStreamCall && !isStreamResponse`). Were the open upload holding
      // the only slot, the Echo would wait for it in the receive loop, and the upload's items could never arrive.
      test('an open upload holds no invocation slot: Echo answers before the upload completes', async () => {
        await using(connect(), async (connection) => {
          const subject = new signalR.Subject();
          const result = connection.invoke('StreamingConcat', subject);
          result.catch(() => {}); // still rejects for the await below; no unhandled rejection after a failure
          subject.next('before ');
          assert.equal(await withTimeout(connection.invoke('Echo', 'between items'), SHORT_WAIT_MS, 'Echo while an upload is open'),
            'between items');
          subject.next('after');
          subject.complete();
          assert.equal(await withTimeout(result, SHORT_WAIT_MS, 'StreamingConcat'), 'before after');
        });
      });

      test('two uploads at once stay apart and complete in any order', async () => {
        await using(connect(), async (connection) => {
          const first = new signalR.Subject();
          const second = new signalR.Subject();
          const firstResult = connection.invoke('StreamingConcat', first);
          const secondResult = connection.invoke('StreamingConcat', second);
          // Both still reject for the awaits below; no unhandled rejection after a failure.
          firstResult.catch(() => {});
          secondResult.catch(() => {});
          first.next('1a');
          second.next('2a');
          second.next('2b');
          first.next('1b');
          second.complete();
          assert.equal(await withTimeout(secondResult, SHORT_WAIT_MS, 'the second StreamingConcat while the first is open'), '2a2b');
          first.next('1c');
          first.complete();
          assert.equal(await withTimeout(firstResult, SHORT_WAIT_MS, 'the first StreamingConcat'), '1a1b1c');
        });
      });

      test('a Subject error fails the method with HubException', async () => {
        await using(connect(), async (connection) => {
          const subject = new signalR.Subject();
          const result = connection.invoke('StreamingConcat', subject);
          subject.next('partial');
          subject.error(new Error('Something bad'));
          await assert.rejects(withTimeout(result, WAIT_MS, 'StreamingConcat'), {
            message: unexpected('StreamingConcat', 'HubException: Something bad'),
          });
          assert.equal(await connection.invoke('Echo', 'still alive'), 'still alive');
        });
      });

      test('a stream count mismatch is refused with the ASP.NET Core text', async () => {
        await using(connect(), async (connection) => {
          await assert.rejects(withTimeout(connection.invoke('StreamingConcat'), WAIT_MS, 'no stream'), {
            message: unexpected('StreamingConcat', 'HubException: Client sent 0 stream(s), Hub method expects 1.'),
          });
          const toEcho = new signalR.Subject();
          await assert.rejects(withTimeout(connection.invoke('Echo', 'x', toEcho), WAIT_MS, 'a stream to Echo'), {
            message: unexpected('Echo', 'HubException: Client sent 1 stream(s), Hub method expects 0.'),
          });

          // The official client cannot send two adjacent Subjects as two streams: _replaceStreamingParams splices
          // while it iterates, so `two` stays an ordinary argument next to one stream. ASP.NET Core binds the
          // arguments first and refuses the extra one, so this is what the JS client sees against it too.
          const one = new signalR.Subject();
          const two = new signalR.Subject();
          await assert.rejects(withTimeout(connection.invoke('StreamingConcat', one, two), WAIT_MS, 'two Subjects'), {
            message: "Failed to invoke 'StreamingConcat' due to an error on the server. "
              + 'InvalidDataException: Invocation provides 1 argument(s) but target expects 0.',
          });
          // So two real streams go through the client's own protocol writer, with stream ids from its counter.
          const [sent, streamIds] = rawInvocation(connection, 'StreamingConcat', [], 2);
          await assert.rejects(withTimeout(sent, WAIT_MS, 'two streams'), {
            message: unexpected('StreamingConcat', 'HubException: Client sent 2 stream(s), Hub method expects 1.'),
          });

          // Items and completions for the refused streams are ignored; the connection stays usable.
          for (const subject of [toEcho, one, two]) {
            subject.next('ignored');
            subject.complete();
          }
          for (const streamId of streamIds) {
            // eslint-disable-next-line no-await-in-loop, no-underscore-dangle
            await connection._sendWithProtocol({ type: signalR.MessageType.StreamItem, invocationId: streamId, item: 'ignored' });
            // eslint-disable-next-line no-await-in-loop, no-underscore-dangle
            await connection._sendWithProtocol({ type: signalR.MessageType.Completion, invocationId: streamId });
          }
          assert.equal(await connection.invoke('Echo', 'still alive'), 'still alive');
          assert.equal(connection.state, signalR.HubConnectionState.Connected);
        });
      });
    });

    describe('client results', () => {
      test('a handler\'s return value is the result', async () => {
        await using(connect(), async (connection) => {
          let calls = 0;
          connection.on('Result', (...args) => {
            calls += 1;
            assert.deepEqual(args, []);
            return 42;
          });
          assert.equal(await clientResult(connection.connectionId), '42');
          assert.equal(calls, 1);
          // An async handler works as well, and the connection is still usable.
          connection.off('Result');
          connection.on('result', async () => -7);
          assert.equal(await clientResult(connection.connectionId), '-7');
          assert.equal(await connection.invoke('Echo', 'after results'), 'after results');
        });
      });

      test('a handler that throws gives its error text', async () => {
        await using(connect(), async (connection) => {
          connection.on('Result', () => { throw new Error('from callback'); });
          assert.equal(await clientResult(connection.connectionId), 'Error: from callback');
          assert.equal(await connection.invoke('Echo', 'still alive'), 'still alive');
        });
      });

      test('a handler that returns nothing gives "Client didn\'t provide a result."', async () => {
        await using(connect(), async (connection) => {
          let calls = 0;
          connection.on('Result', () => { calls += 1; });
          assert.equal(await clientResult(connection.connectionId), "Client didn't provide a result.");
          assert.equal(calls, 1);
          // No handler at all: the client answers the same way.
          connection.off('Result');
          assert.equal(await clientResult(connection.connectionId), "Client didn't provide a result.");
        });
      });
    });
  });
}

test('client result for an unknown connection id', async () => {
  assert.equal(await clientResult('no-such-connection'), "Connection 'no-such-connection' does not exist.");
});

test('client result for a connection that has stopped', async () => {
  const connection = buildConnection(hubUrl(), { transport: 'WebSockets' });
  let id;
  await using(connection, async () => {
    connection.on('Result', () => 1);
    id = connection.connectionId;
    assert.equal(await clientResult(id), '1');
  });
  // Right after stop() the server may still be removing the connection: either IOException text is ASP.NET's.
  const text = await clientResult(id);
  assert.ok(text === `Connection '${id}' does not exist.` || text === `Connection '${id}' disconnected.`, text);
});
