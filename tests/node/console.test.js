'use strict';
// `hubcast chat`, the console client built on hubcast-client, driven through its stdin/stdout, talking
// with an official JS client in a room: messages both ways, direct messages, typing, presence, history.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const { spawn } = require('node:child_process');
const { startServer } = require('./server');
const { signalR, withTimeout } = require('./helpers');

let server;
let dir;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubcast-console-'));
  server = await startServer({ env: { HUBCAST_HISTORY: `sqlite:${path.join(dir, 'chat.db')}` } });
});
after(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Spawns `hubcast chat`; `waitFor(re)` resolves with the first output line matching `re`. */
function consoleClient(args) {
  const bin = process.env.HUBCAST_BIN || path.resolve(__dirname, '..', '..', 'target', 'debug', 'hubcast');
  const child = spawn(bin, ['chat', ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  const lines = [];
  let waiters = [];
  let partial = '';
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop();
    lines.push(...parts);
    waiters = waiters.filter((w) => !w());
  });
  const exit = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    lines,
    exit,
    stderr: () => stderr,
    type(line) { child.stdin.write(`${line}\n`); },
    waitFor(re, ms = 10000) {
      const find = () => lines.find((l) => re.test(l));
      return withTimeout(new Promise((resolve) => {
        const check = () => { const hit = find(); if (hit) resolve(hit); return Boolean(hit); };
        if (!check()) waiters.push(check);
      }), ms, `console output matching ${re}; got:\n${lines.join('\n')}\nstderr:\n${stderr}`);
    },
  };
}

async function jsClient(user) {
  const response = await fetch(`${server.url}/auth/dev-login?user=${encodeURIComponent(user)}`, { method: 'POST' });
  const token = (await response.json()).accessToken;
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${server.url}/hubs/chat`, { accessTokenFactory: () => token })
    .configureLogging(signalR.LogLevel.None)
    .build();
  const events = [];
  let waiters = [];
  const record = (event) => { events.push(event); waiters = waiters.filter((w) => !w()); };
  connection.on('ReceiveMessage', (from, message) => record({ from, message }));
  await connection.start();
  return {
    connection,
    waitFor(pred, what) {
      return withTimeout(new Promise((resolve) => {
        const check = () => { const hit = events.find(pred); if (hit) resolve(hit); return Boolean(hit); };
        if (!check()) waiters.push(check);
      }), 10000, what);
    },
  };
}

for (const protocol of ['json', 'messagepack']) {
  test(`the console client chats with a JS client in a room (${protocol})`, async () => {
    const room = `lobby-${protocol}`;
    const ann = await jsClient(`ann-${protocol}`);
    await ann.connection.invoke('JoinRoom', room);
    const bob = consoleClient(['--url', `${server.url}/hubs/chat`, '--user', `bob-${protocol}`, '--room', room, '--protocol', protocol]);
    try {
      await bob.waitFor(/^\* joined /);
      await bob.waitFor(/^\* history of .*: \d+ messages/);

      bob.type('hello from the console');
      const heard = await ann.waitFor((e) => e.message === 'hello from the console', 'ann hears bob');
      assert.equal(heard.from, `bob-${protocol}`);

      await ann.connection.invoke('SendToRoom', room, 'hi bob');
      await bob.waitFor(new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d\\] ann-${protocol}: hi bob$`));

      bob.type(`/dm ann-${protocol} psst`);
      await ann.waitFor((e) => e.message === 'psst' && e.from === `bob-${protocol}`, 'ann gets the direct message');

      await ann.connection.invoke('SetTyping', true);
      await bob.waitFor(new RegExp(`^\\* ann-${protocol} is typing$`));

      bob.type('/who');
      const online = await bob.waitFor(/^\* online: /);
      assert.ok(online.includes(`ann-${protocol}`) && online.includes(`bob-${protocol}`), online);

      bob.type('/members');
      const members = await bob.waitFor(/^\* in /);
      assert.ok(members.includes(`ann-${protocol}`), members);

      bob.type('/history 10');
      await bob.waitFor(new RegExp(`^  #\\d+ \\[[\\d:]+\\] bob-${protocol}: hello from the console$`));

      bob.type('/nonsense');
      await bob.waitFor(/^! unknown command/);

      bob.type('/quit');
      assert.equal(await withTimeout(bob.exit, 10000, 'console client exits'), 0);
      assert.ok(bob.lines.includes('bye'));
    } finally {
      bob.type('/quit');
      await ann.connection.stop();
    }
  });
}

test('the console client reports a refused sign-in and exits non-zero', async () => {
  const client = consoleClient(['--url', `${server.url}/hubs/chat`, '--token', 'not-a-jwt']);
  const code = await withTimeout(client.exit, 10000, 'console client exits');
  assert.notEqual(code, 0);
  assert.match(client.stderr(), /401/);
});
