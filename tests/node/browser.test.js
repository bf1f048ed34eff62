'use strict';
// The chat page in a real browser (Debian chromium driven by playwright-core): two users sign in, join a
// room, exchange messages, see typing and presence, and a reload shows the history. Screenshots are kept
// in tests/node/artifacts.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const { chromium } = require('playwright-core');
const { startServer } = require('./server');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(__dirname, 'artifacts');
let server;
let browser;
let dir;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubcast-page-'));
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  server = await startServer({
    env: {
      HUBCAST_HISTORY: `sqlite:${path.join(dir, 'chat.db')}`,
      HUBCAST_WEB_ROOT: path.resolve(__dirname, '..', '..', 'web'),
    },
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function signIn(name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await context.newPage();
  await page.goto(server.url);
  await page.fill('#name', name);
  await page.click('#signin button');
  await page.waitForSelector('#state.connected');
  return page;
}

test('two users chat in a room, see typing and presence, and history survives a reload', async () => {
  const ann = await signIn('ann');
  const bob = await signIn('bob');
  for (const page of [ann, bob]) {
    await page.fill('#room', 'lobby');
    await page.click('#join button');
    await page.waitForSelector('#current:text("lobby")');
  }
  await ann.waitForSelector('#online li:text("bob")');

  await ann.fill('#text', 'hello <b>bob</b>');
  await ann.click('#send button');
  const line = bob.locator('#messages li', { hasText: 'hello <b>bob</b>' });
  await line.waitFor();
  assert.equal(await bob.locator('#messages b').count(), 0, 'message text is never HTML');

  await bob.type('#text', 'typ');
  await ann.waitForSelector('#typing:text("bob is typing")');

  await ann.screenshot({ path: path.join(ARTIFACTS, 'chat-ann.png') });
  await bob.screenshot({ path: path.join(ARTIFACTS, 'chat-bob.png') });

  await bob.reload();
  await bob.fill('#name', 'bob');
  await bob.click('#signin button');
  await bob.waitForSelector('#state.connected');
  await bob.fill('#room', 'lobby');
  await bob.click('#join button');
  await bob.locator('#messages li', { hasText: 'hello <b>bob</b>' }).waitFor();
  await bob.screenshot({ path: path.join(ARTIFACTS, 'chat-bob-after-reload.png') });
});

test('the page fits a phone-width screen', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 800 } });
  const page = await context.newPage();
  await page.goto(server.url);
  await page.fill('#name', 'carol');
  await page.click('#signin button');
  await page.waitForSelector('#state.connected');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'chat-phone.png'), fullPage: true });
  await context.close();
});
