'use strict';
// Chat input the adversarial run got through (issue 17, items 5, 13): direct conversations of user ids
// with ':', recipients that are no user id, receipts to rooms the caller is not in, look-alike and
// bidi-control room names, and a failing history store (logged with its cause, counted in a metric).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const { startServer } = require('./server');
const { signalR } = require('./helpers');

let server;
let dir;
let db;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubcast-chat-validation-'));
  db = path.join(dir, 'chat.db');
  server = await startServer({ env: { HUBCAST_HISTORY: `sqlite:${db}` } });
});
after(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const open = [];
after(async () => { await Promise.all(open.map((c) => c.stop())); });

async function connect(user) {
  const response = await fetch(`${server.url}/auth/dev-login?user=${encodeURIComponent(user)}`, { method: 'POST' });
  assert.equal(response.status, 200);
  const token = (await response.json()).accessToken;
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${server.url}/hubs/chat`, { accessTokenFactory: () => token })
    .configureLogging(signalR.LogLevel.None)
    .build();
  await connection.start();
  open.push(connection);
  return connection;
}

test('a user id with ":" cannot read a direct conversation it is not in', async () => {
  const sender = await connect('boss:x');
  await connect('zed');
  await sender.invoke('SendDirect', 'zed', 'between boss:x and zed');
  const boss = await connect('boss');
  // Every name the old encoding gave that conversation.
  for (const room of ['dm:boss:x:zed', 'dm:boss%3Ax:zed']) {
    await assert.rejects(boss.invoke('RecentMessages', room, 10), /Not your conversation/, room);
  }
  const mine = await sender.invoke('RecentMessages', 'dm:boss%3Ax:zed', 10);
  assert.deepEqual(mine.map((m) => m.content), ['between boss:x and zed']);
});

test('SendDirect refuses recipients that are no user id', async () => {
  const ann = await connect('ann');
  for (const recipient of ['', '   ', 'x'.repeat(10 * 1024), 'bob\u202E']) {
    await assert.rejects(ann.invoke('SendDirect', recipient, 'hi'), /recipient/, JSON.stringify(recipient.slice(0, 10)));
  }
});

test('MarkRead only reaches rooms the caller joined', async () => {
  const ann = await connect('ann2');
  await assert.rejects(ann.invoke('MarkRead', 'secret-room', 1), /Join the room first/);
  await ann.invoke('JoinRoom', 'open-room');
  await ann.invoke('MarkRead', 'open-room', 1);
});

test('look-alike, mixed-script and bidi-control room names are refused; full-width is normalised', async () => {
  const ann = await connect('ann3');
  for (const room of ['\u0430dmin', '\u0441\u043E\u0440\u0435', 'lobby\u202E', '\u202Elobby']) {
    await assert.rejects(ann.invoke('JoinRoom', room), /Room names/, JSON.stringify(room));
  }
  await ann.invoke('JoinRoom', '잡담');
  // Full-width letters are the same room as the ASCII name.
  await ann.invoke('JoinRoom', '\uFF4C\uFF4F\uFF42\uFF42\uFF59');
  await ann.invoke('SendToRoom', '\uFF4C\uFF4F\uFF42\uFF42\uFF59', 'in lobby');
  const history = await ann.invoke('RecentMessages', 'lobby', 10);
  assert.ok(history.some((m) => (m.content) === 'in lobby'));
  // Bidi controls in a message are refused too.
  await assert.rejects(ann.invoke('SendToRoom', 'lobby', 'abc\u202Edef'), /control characters/);
});

test('a failing history store is logged with its cause and counted', async () => {
  const ann = await connect('ann4');
  await ann.invoke('JoinRoom', 'doomed');
  // A real failure: the table goes away under the running server.
  execFileSync('python3', ['-c', `import sqlite3; c = sqlite3.connect(${JSON.stringify(db)}); c.execute('DROP TABLE messages'); c.commit()`]);
  await assert.rejects(ann.invoke('SendToRoom', 'doomed', 'lost?'), /An unexpected error occurred|StoreException|error/i);
  const deadline = Date.now() + 3000;
  while (!/the chat history store failed/.test(server.stderr()) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const log = server.stderr();
  assert.match(log, /the chat history store failed/);
  assert.match(log, /no such table/);
  assert.doesNotMatch(log, /lost\?/, 'the message text is never logged');
  const admin = /admin=127\.0\.0\.1:(\d+)/.exec(log)[1];
  const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  assert.match(metrics, /hubcast_history_errors_total\{operation="append"\} [1-9]/);
});
