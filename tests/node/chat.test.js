'use strict';
// The chat hub at /hubs/chat with the official client, following the seed's flows: sign-in (dev login),
// broadcast chat, typing, rooms, direct messages, presence, history and input validation.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const { startServer } = require('./server');
const { signalR, withTimeout, deferred } = require('./helpers');

let server;
let dir;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubcast-chat-'));
  server = await startServer({ env: { HUBCAST_HISTORY: `sqlite:${path.join(dir, 'chat.db')}` } });
});
after(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function signIn(user) {
  const response = await fetch(`${server.url}/auth/dev-login?user=${encodeURIComponent(user)}`, { method: 'POST' });
  assert.equal(response.status, 200);
  return (await response.json()).accessToken;
}

async function connect(user) {
  const token = await signIn(user);
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${server.url}/hubs/chat`, { accessTokenFactory: () => token })
    .configureLogging(signalR.LogLevel.None)
    .build();
  const received = [];
  const waiters = [];
  connection.on('ReceiveMessage', (from, message, utc) => {
    received.push({ from, message, utc });
    waiters.splice(0).forEach((w) => w());
  });
  connection.next = (predicate) => withTimeout(new Promise((resolve) => {
    const check = () => {
      const found = received.find(predicate);
      if (found) resolve(found); else waiters.push(check);
    };
    check();
  }), 5000, 'a ReceiveMessage');
  await connection.start();
  return connection;
}

test('the chat needs a signed-in user', async () => {
  const anonymous = new signalR.HubConnectionBuilder().withUrl(`${server.url}/hubs/chat`)
    .configureLogging(signalR.LogLevel.None).build();
  await assert.rejects(anonymous.start(), /Unauthorized: Status code '401'/);
});

test('broadcast, presence, typing, rooms, direct messages and history', async () => {
  const ann = await connect('ann');
  const bob = await connect('bob');
  try {
    await ann.next((m) => m.from === 'SYSTEM' && m.message === 'bob joined');
    assert.deepEqual(await ann.invoke('OnlineUsers'), ['ann', 'bob']);

    await ann.invoke('SendMessage', 'hello everyone');
    const heard = await bob.next((m) => m.message === 'hello everyone');
    assert.equal(heard.from, 'ann');
    assert.match(heard.utc, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);

    const typing = deferred();
    bob.on('Typing', (user, isTyping) => typing.resolve([user, isTyping]));
    await ann.invoke('SetTyping', true);
    assert.deepEqual(await withTimeout(typing.promise, 5000, 'Typing'), ['ann', true]);

    await ann.invoke('JoinRoom', 'dev');
    await bob.invoke('JoinRoom', 'dev');
    await ann.next((m) => m.from === 'SYSTEM' && m.message === 'bob joined dev');
    await ann.invoke('SendToRoom', 'dev', 'Hello devs!');
    await bob.next((m) => m.message === 'Hello devs!');

    await ann.invoke('SendDirect', 'bob', 'DM hi!');
    assert.equal((await bob.next((m) => m.message === 'DM hi!')).from, 'ann');

    const history = await bob.invoke('RecentMessages', 'dev', 50);
    assert.deepEqual(history.map((m) => [m.fromUser, m.content, m.room]), [['ann', 'Hello devs!', 'dev']]);
    assert.equal(typeof history[0].id, 'number');
    const dm = await bob.invoke('RecentMessages', 'dm:ann:bob', 50);
    assert.deepEqual(dm.map((m) => m.content), ['DM hi!']);

    for (let i = 0; i < 5; i += 1) await ann.invoke('SendToRoom', 'dev', `m${i}`);
    const page = await ann.invoke('RecentMessages', 'dev', 2);
    assert.deepEqual(page.map((m) => m.content), ['m3', 'm4']);
    const older = await ann.invoke('RecentMessagesBefore', 'dev', page[0].id, 2);
    assert.deepEqual(older.map((m) => m.content), ['m1', 'm2']);

    await bob.stop();
    await ann.next((m) => m.from === 'SYSTEM' && m.message === 'bob left');
    assert.deepEqual(await ann.invoke('OnlineUsers'), ['ann']);
  } finally {
    await ann.stop();
    await bob.stop();
  }
});

test('bad inputs get clear errors', async () => {
  const eve = await connect('eve');
  try {
    const prefix = (method) => `An unexpected error occurred invoking '${method}' on the server. HubException: `;
    await assert.rejects(eve.invoke('SendMessage', '   '), { message: `${prefix('SendMessage')}Message is empty.` });
    await assert.rejects(eve.invoke('SendMessage', 'x'.repeat(4001)), { message: `${prefix('SendMessage')}Message is longer than 4000 characters.` });
    await assert.rejects(eve.invoke('SendMessage', 'bell\u0007'), { message: `${prefix('SendMessage')}Message contains control characters.` });
    await assert.rejects(eve.invoke('JoinRoom', 'no spaces'), /Room names are 1 to 64/);
    await assert.rejects(eve.invoke('RecentMessages', 'dm:ann:bob', 10), { message: `${prefix('RecentMessages')}Not your conversation.` });
  } finally {
    await eve.stop();
  }
});

async function connectAs(user, role) {
  const query = role ? `user=${user}&role=${role}` : `user=${user}`;
  const response = await fetch(`${server.url}/auth/dev-login?${query}`, { method: 'POST' });
  const { accessToken } = await response.json();
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${server.url}/hubs/chat`, { accessTokenFactory: () => accessToken })
    .configureLogging(signalR.LogLevel.None)
    .build();
  await connection.start();
  return connection;
}

test('StreamTime, read receipts and mentions', async () => {
  const ann = await connectAs('ann2');
  const bob = await connectAs('bob2');
  try {
    const times = [];
    await new Promise((resolve, reject) => {
      const subscription = ann.stream('StreamTime').subscribe({
        next: (time) => {
          times.push(time);
          if (times.length === 2) { subscription.dispose(); resolve(); }
        },
        error: reject,
        complete: () => {},
      });
    });
    assert.ok(times.every((t) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(t)), times.join());

    await ann.invoke('JoinRoom', 'ux');
    await bob.invoke('JoinRoom', 'ux');
    const mentioned = deferred();
    bob.on('Mentioned', (from, room, id) => mentioned.resolve([from, room, id]));
    await ann.invoke('SendToRoom', 'ux', 'hey @bob2, look');
    const [from, room, id] = await withTimeout(mentioned.promise, 5000, 'Mentioned');
    assert.deepEqual([from, room, typeof id], ['ann2', 'ux', 'number']);

    const receipt = deferred();
    ann.on('ReadReceipt', (user, r, messageId) => receipt.resolve([user, r, messageId]));
    await bob.invoke('MarkRead', 'ux', id);
    assert.deepEqual(await withTimeout(receipt.promise, 5000, 'ReadReceipt'), ['bob2', 'ux', id]);
  } finally {
    await ann.stop();
    await bob.stop();
  }
});

test('moderation: admins mute, delete and kick; others may not', async () => {
  const admin = await connectAs('mod', 'Admin');
  const troll = await connectAs('troll');
  try {
    await assert.rejects(troll.invoke('MuteUser', 'mod', 5), {
      message: "Failed to invoke 'MuteUser' because user is unauthorized",
    });
    await admin.invoke('MuteUser', 'troll', 5);
    await assert.rejects(troll.invoke('SendMessage', 'spam'), /HubException: You are muted until /);
    await admin.invoke('MuteUser', 'troll', 0);

    await admin.invoke('JoinRoom', 'mods');
    await troll.invoke('JoinRoom', 'mods');
    await troll.invoke('SendToRoom', 'mods', 'bad words');
    const [message] = (await admin.invoke('RecentMessages', 'mods', 1));
    const deleted = deferred();
    troll.on('MessageDeleted', (id) => deleted.resolve(id));
    await admin.invoke('DeleteMessage', message.id);
    assert.equal(await withTimeout(deleted.promise, 5000, 'MessageDeleted'), message.id);
    assert.deepEqual(await admin.invoke('RecentMessages', 'mods', 10), []);

    await admin.invoke('SendToRoom', 'mods', 'mine');
    const [mine] = await admin.invoke('RecentMessages', 'mods', 1);
    await assert.rejects(troll.invoke('DeleteMessage', mine.id), /Only the author or an admin can delete a message\./);

    const closed = deferred();
    troll.onclose((error) => closed.resolve(error));
    assert.equal(await admin.invoke('KickUser', 'troll'), 1);
    const error = await withTimeout(closed.promise, 5000, 'the kick');
    assert.match(String(error), /You were removed by mod\./);
  } finally {
    await admin.stop();
    await troll.stop();
  }
});

test('a completed send survives SIGKILL', async () => {
  const db = path.join(dir, 'durable.db');
  const first = await startServer({ env: { HUBCAST_HISTORY: `sqlite:${db}` } });
  const previous = server;
  server = first;
  try {
    const ann = await connectAs('ann3');
    for (let i = 0; i < 8; i += 1) await ann.invoke('SendToRoom', 'durable', `m${i}`);
    await first.kill('SIGKILL');
  } finally {
    server = previous;
  }
  const second = await startServer({ env: { HUBCAST_HISTORY: `sqlite:${db}` } });
  try {
    server = second;
    const ann = await connectAs('ann3');
    const history = await ann.invoke('RecentMessages', 'durable', 50);
    assert.deepEqual(history.map((m) => m.content), Array.from({ length: 8 }, (_, i) => `m${i}`));
    await ann.stop();
  } finally {
    server = previous;
    await second.stop();
  }
});

test('uploads, room members and the send rate limit', async () => {
  const ann = await connectAs('ann4');
  const bob = await connectAs('bob4');
  try {
    const progress = [];
    ann.on('UploadProgress', (bytes) => progress.push(bytes));
    const subject = new signalR.Subject();
    const upload = ann.invoke('UploadChunks', subject);
    subject.next('abc');
    subject.next('def');
    subject.complete();
    assert.deepEqual(await upload, {
      bytes: 6,
      sha256: 'bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721',
    });
    assert.deepEqual(progress, [3, 6]);

    await ann.invoke('JoinRoom', 'members');
    await bob.invoke('JoinRoom', 'members');
    assert.deepEqual(await ann.invoke('RoomMembers', 'members'), ['ann4', 'bob4']);
    await bob.invoke('LeaveRoom', 'members');
    assert.deepEqual(await ann.invoke('RoomMembers', 'members'), ['ann4']);

    const results = await Promise.allSettled(Array.from({ length: 15 }, (_, i) => bob.invoke('SendMessage', `burst ${i}`)));
    const refused = results.filter((r) => r.status === 'rejected');
    assert.ok(refused.length >= 4, `${refused.length} refused`);
    assert.match(refused[0].reason.message, /Failed to invoke 'SendMessage' because the rate limit was exceeded\./);
  } finally {
    await ann.stop();
    await bob.stop();
  }
});
