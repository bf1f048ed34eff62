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

test('ChatMessage carries ids, rooms and kinds next to the seed event', async () => {
  const ann = await connectAs('ann5');
  const bob = await connectAs('bob5');
  try {
    const seen = { ann: [], bob: [] };
    ann.on('ChatMessage', (m) => seen.ann.push(m));
    bob.on('ChatMessage', (m) => seen.bob.push(m));
    const legacy = [];
    bob.on('ReceiveMessage', (user, message, utc) => legacy.push({ user, message, utc }));
    await ann.invoke('JoinRoom', 'ids');
    await bob.invoke('JoinRoom', 'ids');
    await ann.invoke('SendToRoom', 'ids', 'hello @bob5');
    await ann.invoke('SendDirect', 'bob5', 'just you');
    await ann.invoke('SendMessage', 'everyone');
    const wait = async (list, predicate) => {
      for (let i = 0; i < 100 && !list.some(predicate); i++) await new Promise((r) => setTimeout(r, 20));
      return list.find(predicate);
    };
    const room = await wait(seen.bob, (m) => m.kind === 'room');
    const history = await bob.invoke('RecentMessages', 'ids', 10);
    assert.deepEqual({ ...room, kind: undefined, id: room.id }, { ...history.at(-1), kind: undefined },
      'the live line is the stored one');
    assert.equal(room.fromUser, 'ann5');
    assert.ok(Number.isInteger(room.id) && room.id > 0);
    const direct = await wait(seen.bob, (m) => m.kind === 'direct');
    assert.equal(direct.room, 'dm:ann5:bob5');
    assert.equal(direct.content, 'just you');
    assert.ok(await wait(seen.ann, (m) => m.kind === 'direct'), "the sender's own connection hears its DM");
    const broadcast = await wait(seen.bob, (m) => m.kind === 'broadcast');
    assert.deepEqual([broadcast.id, broadcast.room, broadcast.content], [null, null, 'everyone']);
    const joined = await wait(seen.ann, (m) => m.kind === 'system' && m.content === 'bob5 joined ids');
    assert.equal(joined.room, 'ids');
    assert.equal(joined.fromUser, 'SYSTEM');
    // The seed's event still arrives, with the same time.
    const seedLine = await wait(legacy, (l) => l.message === 'hello @bob5');
    assert.equal(new Date(seedLine.utc).getTime(), new Date(room.utc).getTime());
    // Read receipts and deletes work on the live id.
    const receipt = new Promise((resolve) => ann.on('ReadReceipt', (...args) => resolve(args)));
    await bob.invoke('MarkRead', 'ids', room.id);
    assert.deepEqual(await withTimeout(receipt, 5000, 'a ReadReceipt'), ['bob5', 'ids', room.id]);
    // In a direct conversation, a receipt reaches its two users; nobody else may send one.
    const dmReceipt = new Promise((resolve) => ann.on('ReadReceipt', (...args) => { if (args[1] === direct.room) resolve(args); }));
    await bob.invoke('MarkRead', direct.room, direct.id);
    assert.deepEqual(await withTimeout(dmReceipt, 5000, 'a DM ReadReceipt'), ['bob5', direct.room, direct.id]);
    const carol = await connectAs('carol5');
    await assert.rejects(carol.invoke('MarkRead', direct.room, direct.id), /Join the room first/);
    await carol.stop();
    const deleted = new Promise((resolve) => bob.on('MessageDeleted', resolve));
    await ann.invoke('DeleteMessage', room.id);
    assert.equal(await withTimeout(deleted, 5000, 'a MessageDeleted'), room.id);
  } finally {
    await ann.stop();
    await bob.stop();
  }
});

test('UploadFile keeps a file that /uploads serves back as an attachment, never as a page', async () => {
  const ann = await connectAs('ann6');
  try {
    const data = Buffer.alloc(1024 * 1024 + 5);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) % 251;
    const progress = [];
    ann.on('UploadProgress', (bytes) => progress.push(bytes));
    const upload = async (name, type, bytes) => {
      const subject = new signalR.Subject();
      const done = ann.invoke('UploadFile', name, type, subject);
      for (let at = 0; at < bytes.length; at += 16 * 1024) {
        subject.next(bytes.subarray(at, at + 16 * 1024).toString('base64'));
      }
      subject.complete();
      return done;
    };
    const file = await upload('C:\\photos\\naïve.bin', 'Application/X-Thing; q=1', data);
    const sha256 = require('node:crypto').createHash('sha256').update(data).digest('hex');
    assert.equal(file.bytes, data.length);
    assert.equal(file.sha256, sha256);
    assert.equal(file.name, 'naïve.bin');
    assert.equal(file.contentType, 'application/x-thing');
    assert.equal(file.url, `/uploads/${file.id}`);
    assert.equal(progress.at(-1), data.length);
    assert.equal(progress.length, Math.ceil(data.length / (16 * 1024)));

    const response = await fetch(`${server.url}${file.url}`);
    assert.equal(response.status, 200);
    assert.deepEqual(Buffer.from(await response.arrayBuffer()), data);
    assert.equal(response.headers.get('content-type'), 'application/octet-stream');
    assert.match(response.headers.get('content-disposition'), /^attachment; filename="na_ve\.bin"; filename\*=UTF-8''na%C3%AFve%2Ebin$/);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');

    const page = await upload('x.html', 'text/html', Buffer.from('<script>alert(1)</script>'));
    const html = await fetch(`${server.url}${page.url}`);
    assert.equal(html.headers.get('content-type'), 'application/octet-stream', 'HTML is never served as HTML');
    assert.match(html.headers.get('content-security-policy'), /sandbox/);
    const png = await upload('dot.png', 'image/png', Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    assert.equal((await fetch(`${server.url}${png.url}`)).headers.get('content-type'), 'image/png');

    assert.equal((await fetch(`${server.url}/uploads/AAAAAAAAAAAAAAAAAAAAAA`)).status, 404);
    assert.equal((await fetch(`${server.url}/uploads/../chat.db`)).status, 404);
    await assert.rejects(upload('big.bin', '', Buffer.alloc(10 * 1024 * 1024 + 1)), /Uploads are limited to 10485760 bytes\./);
    await assert.rejects(upload('', 'text/plain', Buffer.from('x')), /file name/);
    const bad = new signalR.Subject();
    const refused = ann.invoke('UploadFile', 'a.txt', 'text/plain', bad);
    bad.next('not base64!');
    bad.complete();
    await assert.rejects(refused, /base64/);
  } finally {
    await ann.stop();
  }
});

test('GET /auth/session says who the cookie signs in and whether the dev login is on', async () => {
  const anonymous = await (await fetch(`${server.url}/auth/session`)).json();
  assert.deepEqual(anonymous, { user: null, roles: [], devLogin: true });
  const login = await fetch(`${server.url}/auth/dev-login?user=carol`, { method: 'POST' });
  const cookie = login.headers.get('set-cookie').split(';')[0];
  const session = await fetch(`${server.url}/auth/session`, { headers: { cookie } });
  assert.equal(session.headers.get('cache-control'), 'no-store');
  assert.deepEqual(await session.json(), { user: 'carol', roles: [], devLogin: true });
  assert.equal((await fetch(`${server.url}/auth/logout`, { method: 'POST', headers: { cookie } })).status, 204);
  assert.deepEqual(await (await fetch(`${server.url}/auth/session`, { headers: { cookie } })).json(),
    { user: null, roles: [], devLogin: true }, 'a revoked session is nobody');
  assert.equal((await fetch(`${server.url}/auth/session`, { method: 'POST' })).status, 405);
});
