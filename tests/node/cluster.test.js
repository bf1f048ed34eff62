'use strict';
// Three gateway processes over one real Redis, official JS clients spread across them: every send target,
// group changes and client results across nodes, presence listings, and the chat hub with users on
// different nodes. Each delivery is counted: nothing may be missing or duplicated.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('./server');
const { startRedis } = require('./redis');
const { signalR, withTimeout } = require('./helpers');

const SECRET = 'cluster-test-secret-of-enough-length';
let redis;
let nodes = [];
const open = [];

before(async () => {
  redis = await startRedis();
  const env = {
    HUBCAST_BACKPLANE: redis.url,
    HUBCAST_JWT_SECRET: SECRET,
    HUBCAST_DEV_AUTH: 'true',
    HUBCAST_HISTORY: 'postgres://postgres@127.0.0.1:5432/test',
  };
  nodes = await Promise.all([0, 1, 2].map(() => startServer({ env })));
});

after(async () => {
  await Promise.all(open.map((c) => c.stop()));
  await Promise.all(nodes.map((n) => n.stop()));
  await redis?.kill();
});

async function token(node, user) {
  const [name, role] = user.split('#');
  const query = `user=${encodeURIComponent(name)}${role ? `&role=${role}` : ''}`;
  const response = await fetch(`${node.url}/auth/dev-login?${query}`, { method: 'POST' });
  assert.equal(response.status, 200);
  return (await response.json()).accessToken;
}

/**
 * A started client of `/cluster` on `node` (as `user`, if given: `name` or `name#Role`) that records every
 * `Message`.
 */
async function client(node, user, path = '/cluster', event = 'Message') {
  const options = user ? { accessTokenFactory: () => token(node, user) } : {};
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${node.url}${path}`, options)
    .configureLogging(signalR.LogLevel.None)
    .build();
  connection.got = [];
  const waiters = [];
  connection.on(event, (...args) => {
    connection.got.push(args.length === 1 ? args[0] : args);
    waiters.splice(0).forEach((w) => w());
  });
  connection.waitFor = (count, what = `${count} messages`) => withTimeout(new Promise((resolve) => {
    const check = () => (connection.got.length >= count ? resolve(connection.got) : waiters.push(check));
    check();
  }), 5000, what);
  await withTimeout(connection.start(), 10000, 'start()');
  open.push(connection);
  if (path === '/cluster') connection.id = await connection.invoke('Id');
  return connection;
}

/** Lets in-flight messages land, so duplicates would show. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 300));

test('connection ids name their node', async () => {
  const [a, b] = await Promise.all([client(nodes[0]), client(nodes[1])]);
  const tag = (id) => id.split('.')[0];
  assert.match(a.id, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
  assert.notEqual(tag(a.id), tag(b.id));
});

test('broadcast and others reach every node exactly once', async () => {
  const clients = await Promise.all(nodes.map((n) => client(n)));
  await clients[0].invoke('Broadcast', 'to all');
  await Promise.all(clients.map((c) => c.waitFor(1)));
  await clients[1].invoke('Others', 'not to me');
  await Promise.all([clients[0], clients[2]].map((c) => c.waitFor(2)));
  await settle();
  assert.deepEqual(clients[0].got, ['to all', 'not to me']);
  assert.deepEqual(clients[1].got, ['to all']);
  assert.deepEqual(clients[2].got, ['to all', 'not to me']);
});

test('groups with members on two nodes, group-except and several groups at once', async () => {
  const [a, b, c] = await Promise.all(nodes.map((n) => client(n)));
  await a.invoke('AddToGroup', a.id, 'g1');
  await b.invoke('AddToGroup', b.id, 'g1');
  await a.invoke('AddToGroup', a.id, 'g2');
  await c.invoke('ToGroup', 'g1', 'group');
  await Promise.all([a.waitFor(1), b.waitFor(1)]);
  await c.invoke('ToGroupExcept', 'g1', [b.id], 'except b');
  await a.waitFor(2);
  await c.invoke('ToGroups', ['g1', 'g2'], 'both groups');
  await Promise.all([a.waitFor(3), b.waitFor(2)]);
  await settle();
  assert.deepEqual(a.got, ['group', 'except b', 'both groups']);
  assert.deepEqual(b.got, ['group', 'both groups']);
  assert.deepEqual(c.got, []);
  await b.invoke('RemoveFromGroup', b.id, 'g1');
  await c.invoke('ToGroup', 'g1', 'after leaving');
  await a.waitFor(4);
  await settle();
  assert.deepEqual(b.got, ['group', 'both groups']);
});

test('a user with connections on two nodes gets user sends on both', async () => {
  const [ann1, ann2, bob] = await Promise.all([
    client(nodes[0], 'ann'), client(nodes[1], 'ann'), client(nodes[2], 'bob')]);
  await bob.invoke('ToUser', 'ann', 'hi ann');
  await Promise.all([ann1.waitFor(1), ann2.waitFor(1)]);
  await ann1.invoke('ToUsers', ['ann', 'bob'], 'hi both');
  await Promise.all([ann1.waitFor(2), ann2.waitFor(2), bob.waitFor(1)]);
  await settle();
  assert.deepEqual(ann1.got, ['hi ann', 'hi both']);
  assert.deepEqual(ann2.got, ['hi ann', 'hi both']);
  assert.deepEqual(bob.got, ['hi both']);
});

test('sends to connections on other nodes', async () => {
  const [a, b, c] = await Promise.all(nodes.map((n) => client(n)));
  await a.invoke('ToConnections', [b.id, c.id], 'direct');
  await Promise.all([b.waitFor(1), c.waitFor(1)]);
  await a.invoke('ToConnections', [a.id, `${b.id.split('.')[0]}.nosuchconnection00000`], 'mixed');
  await a.waitFor(1);
  await settle();
  assert.deepEqual(a.got, ['mixed']);
  assert.deepEqual(b.got, ['direct']);
  assert.deepEqual(c.got, ['direct']);
});

test('a node adds and removes a connection of another node to and from a group', async () => {
  const [a, b, c] = await Promise.all(nodes.map((n) => client(n)));
  await a.invoke('AddToGroup', b.id, 'remote');
  await c.invoke('ToGroup', 'remote', 'added from A');
  await b.waitFor(1);
  await a.invoke('RemoveFromGroup', b.id, 'remote');
  await c.invoke('ToGroup', 'remote', 'removed from A');
  await settle();
  assert.deepEqual(b.got, ['added from A']);
  // A connection that no node holds: on a live node, and on a node tag nobody has.
  const onLiveNode = `${b.id.split('.')[0]}.nosuchconnection00000`;
  await assert.rejects(a.invoke('AddToGroup', onLiveNode, 'x'), /does not exist/);
  await assert.rejects(a.invoke('AddToGroup', 'deadnode00.nosuchconnection00000', 'x'), /does not exist/);
});

test('client results across nodes', async () => {
  const [a, b] = await Promise.all([client(nodes[0]), client(nodes[1])]);
  b.on('Ask', (question) => `answer to ${question}`);
  assert.equal(await a.invoke('Ask', b.id, 'life'), 'answer to life');
  a.on('Ask', () => { throw new Error('no idea'); });
  await assert.rejects(b.invoke('Ask', a.id, 'x'), /no idea/);
  await assert.rejects(a.invoke('Ask', 'deadnode00.nosuchconnection00000', 'x'), /does not exist/);
});

test('presence lists users, their connections and group members on every node', async () => {
  const [zed1, zed2, yan] = await Promise.all([
    client(nodes[0], 'zed'), client(nodes[1], 'zed'), client(nodes[2], 'yan')]);
  await zed1.invoke('AddToGroup', zed1.id, 'presence');
  await yan.invoke('AddToGroup', zed2.id, 'presence');
  const online = new Map(await yan.invoke('OnlineUsers'));
  assert.equal(online.get('zed'), 2);
  assert.equal(online.get('yan'), 1);
  assert.deepEqual(await zed1.invoke('UserConnections', 'zed'), [zed1.id, zed2.id].sort());
  assert.deepEqual(await yan.invoke('GroupMembers', 'presence'),
    // Sorted by code units, as the server sorts.
    [[zed1.id, 'zed'], [zed2.id, 'zed']].sort((x, y) => (x[0] < y[0] ? -1 : 1)));
  await zed2.stop();
  await settle();
  assert.equal(new Map(await yan.invoke('OnlineUsers')).get('zed'), 1);
  assert.deepEqual(await yan.invoke('GroupMembers', 'presence'), [[zed1.id, 'zed']]);
});

test('the chat works with users on different nodes', async () => {
  const ann = await client(nodes[0], 'cann', '/hubs/chat', 'ReceiveMessage');
  const bob = await client(nodes[1], 'cbob', '/hubs/chat', 'ReceiveMessage');
  const cat = await client(nodes[2], 'ccat', '/hubs/chat', 'ReceiveMessage');
  const users = await cat.invoke('OnlineUsers');
  for (const name of ['cann', 'cbob', 'ccat']) assert.ok(users.includes(name), `${name} in ${users}`);
  const seen = (c, text) => withTimeout(new Promise((resolve) => {
    const check = () => (c.got.some((m) => m[1] === text) ? resolve() : setTimeout(check, 20));
    check();
  }), 5000, text);
  await ann.invoke('SendMessage', 'hello nodes');
  await Promise.all([bob, cat].map((c) => seen(c, 'hello nodes')));
  await ann.invoke('JoinRoom', 'multi');
  await bob.invoke('JoinRoom', 'multi');
  assert.deepEqual(await cat.invoke('RoomMembers', 'multi'), ['cann', 'cbob']);
  await cat.invoke('JoinRoom', 'multi');
  const room = `room message ${Date.now()}`;
  await cat.invoke('SendToRoom', 'multi', room);
  await Promise.all([ann, bob].map((c) => seen(c, room)));
  // History is shared (PostgreSQL): a node that did not take the message serves it.
  const recent = await bob.invoke('RecentMessages', 'multi', 5);
  assert.ok(recent.some((m) => m.content === room), JSON.stringify(recent));
  const dm = `direct ${Date.now()}`;
  await ann.invoke('SendDirect', 'cbob', dm);
  await seen(bob, dm);
  await settle();
  assert.ok(!cat.got.some((m) => m[1] === dm));
});

test('chat moderation across nodes: a mute and a kick reach a user on two other nodes', async () => {
  const admin = await client(nodes[0], 'cmod#Admin', '/hubs/chat', 'ReceiveMessage');
  const troll1 = await client(nodes[1], 'ctroll', '/hubs/chat', 'ReceiveMessage');
  const troll2 = await client(nodes[2], 'ctroll', '/hubs/chat', 'ReceiveMessage');
  await admin.invoke('MuteUser', 'ctroll', 5);
  await assert.rejects(troll1.invoke('SendMessage', 'spam'), /You are muted until /);
  await assert.rejects(troll2.invoke('SendMessage', 'spam'), /You are muted until /);
  await admin.invoke('MuteUser', 'ctroll', 0);
  await troll2.invoke('SendMessage', 'sorry');
  const closed = [troll1, troll2].map((c) => new Promise((resolve) => c.onclose(resolve)));
  assert.equal(await admin.invoke('KickUser', 'ctroll'), 2);
  const errors = await withTimeout(Promise.all(closed), 5000, 'both kicks');
  for (const error of errors) assert.match(String(error), /You were removed by cmod\./);
  // Presence follows once the closed connections are gone.
  for (let tries = 0; ; tries += 1) {
    const online = await admin.invoke('OnlineUsers');
    if (!online.includes('ctroll')) break;
    assert.ok(tries < 100, `still online: ${online}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});
