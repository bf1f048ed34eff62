'use strict';
// The chat page in a real browser (Debian chromium driven by playwright-core): two users chat in a room
// (text only, never HTML), see typing, and a reload resumes the session with the history; keyboard-only
// use; a phone-width screen; and the production sign-in (no dev login: the identity-provider hint and the
// `#token=` hand-over). The product features (conversations, badges, receipts, uploads, reconnects, axe)
// are in chat-page.test.js. Screenshots are kept in tests/node/artifacts.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const crypto = require('node:crypto');
const { startServer } = require('./server');
const { ARTIFACTS, WEB_ROOT, launchBrowser, shown, axe } = require('./page');
const { buildConnection, using } = require('./helpers');

let server;
let browser;
let dir;
const pageErrors = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubcast-page-'));
  server = await startServer({
    env: { HUBCAST_HISTORY: `sqlite:${path.join(dir, 'chat.db')}`, HUBCAST_WEB_ROOT: WEB_ROOT },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
});

/** A new browser (context) signed in as `name` with the dev login, connected. */
async function signIn(name, { viewport = { width: 1280, height: 800 }, url = server.url } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(`${name}: ${error.message}`));
  await page.goto(url);
  await page.fill('#name', name);
  await page.press('#name', 'Enter');
  await page.waitForSelector('#state.connected');
  return page;
}


/** Presses `key` until the focused element matches `selector` (at most `limit` times). */
async function focusBy(page, key, selector, limit = 40) {
  for (let i = 0; i < limit; i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
    await page.keyboard.press(key);
  }
  assert.fail(`${selector} was not reached with ${key}`);
}

test('two users chat in a room, see typing, and a reload resumes the session with the history', async () => {
  const ann = await signIn('ann');
  const bob = await signIn('bob');
  for (const page of [ann, bob]) await page.waitForSelector('#current:text-is("#lobby")');
  await ann.waitForSelector('#online button:text-is("bob")');

  await ann.fill('#text', 'hello <b>bob</b>');
  await ann.press('#text', 'Enter');
  await shown(bob).locator('li.msg', { hasText: 'hello <b>bob</b>' }).waitFor();
  assert.equal(await bob.locator('#lists b').count(), 0, 'message text is never HTML');
  assert.match(await shown(bob).locator('li.msg', { hasText: 'hello <b>bob</b>' }).getAttribute('title'), /\d/,
    'the time is in the title (hover)');

  await bob.type('#text', 'typ');
  await ann.waitForSelector('#typing:text("bob is typing")');

  await bob.reload();
  await bob.waitForSelector('#state.connected');
  assert.equal(await bob.textContent('#me'), 'bob', 'still signed in after a reload');
  assert.ok(await bob.locator('#signin').isHidden());
  await shown(bob).locator('li.msg', { hasText: 'hello <b>bob</b>' }).waitFor();
  await bob.screenshot({ path: path.join(ARTIFACTS, 'chat-bob-after-reload.png') });
  await ann.context().close();
  await bob.context().close();
});

test('keyboard only: sign in, join a room, load older, switch conversation, send', async () => {
  // 60 messages in "history", by several users (each connection may send a burst of 10).
  for (let user = 0; user < 6; user++) {
    const login = await fetch(`${server.url}/auth/dev-login?user=seeder${user}`, { method: 'POST' });
    const { accessToken } = await login.json();
    await using(buildConnection(`${server.url}/hubs/chat`, { options: { accessTokenFactory: () => accessToken } }), async (c) => {
      await c.invoke('JoinRoom', 'history');
      for (let i = user * 10; i < user * 10 + 10; i++) await c.invoke('SendToRoom', 'history', `seed-${String(i).padStart(3, '0')}`);
    });
  }

  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(server.url);
  await focusBy(page, 'Tab', '#name');
  await page.keyboard.type('mia');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#state.connected');
  await axe(page, 'signed in');

  await focusBy(page, 'Shift+Tab', '#room');
  await page.keyboard.type('history');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#current:text-is("#history")');
  await shown(page).locator('li.msg', { hasText: 'seed-059' }).waitFor();
  assert.equal(await shown(page).locator('li.msg', { hasText: 'seed-009' }).count(), 0, 'one page of 50 at first');
  assert.ok(await page.evaluate(() => document.activeElement.id === 'text'), 'joining focuses the message box');

  await focusBy(page, 'Shift+Tab', '#older');
  await page.keyboard.press('Enter');
  await shown(page).locator('li.msg', { hasText: 'seed-000' }).waitFor();
  await page.waitForSelector('#older', { state: 'hidden' });
  assert.equal(await shown(page).locator('li.msg:not(.system)').count(), 60);

  await page.keyboard.press('Alt+ArrowUp');
  await page.waitForSelector('#current:text-is("#lobby")');
  assert.ok(await page.evaluate(() => document.activeElement.id === 'text'));
  await page.keyboard.type('typed without a mouse');
  await page.keyboard.press('Enter');
  await shown(page).locator('li.msg', { hasText: 'typed without a mouse' }).waitFor();
  await page.keyboard.press('Alt+ArrowDown');
  await page.waitForSelector('#current:text-is("#history")');
  await context.close();
});

test('the page fits a phone-width screen', async () => {
  const page = await signIn('carol', { viewport: { width: 390, height: 844 } });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
  assert.ok(await page.locator('#sidebar').isHidden(), 'the conversation list is collapsed');
  await page.fill('#text', 'from a phone');
  await page.press('#text', 'Enter');
  await shown(page).locator('li.msg', { hasText: 'from a phone' }).waitFor();
  await page.screenshot({ path: path.join(ARTIFACTS, 'chat-phone.png') });
  await page.click('#menu');
  await page.waitForSelector('#sidebar', { state: 'visible' });
  assert.equal(await page.getAttribute('#menu', 'aria-expanded'), 'true');
  await page.screenshot({ path: path.join(ARTIFACTS, 'chat-phone-conversations.png') });
  await axe(page, 'phone, conversation list open');
  await page.click('#sidebar .conv[data-key="*"]');
  await page.waitForSelector('#current:text-is("everyone")');
  assert.ok(await page.locator('#sidebar').isHidden(), 'choosing a conversation closes the list');
  await page.context().close();
});

test('production sign-in: the identity-provider hint, then a #token= link signs in', async () => {
  const SECRET = 'browser-test-jwt-secret-of-enough-length';
  const prod = await startServer({ env: { HUBCAST_JWT_SECRET: SECRET, HUBCAST_WEB_ROOT: WEB_ROOT } });
  try {
    const session = await (await fetch(`${prod.url}/auth/session`)).json();
    assert.deepEqual(session, { user: null, roles: [], devLogin: false });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(prod.url);
    await page.waitForSelector('#idp:visible');
    assert.equal(await page.textContent('#idp h2'), 'Sign in with your identity provider');
    assert.ok(await page.locator('#signin').isHidden(), 'no name box without the dev login');
    await axe(page, 'production, signed out');

    const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'nora', exp: Math.floor(Date.now() / 1000) + 300 })}`;
    const token = `${head}.${crypto.createHmac('sha256', SECRET).update(head).digest('base64url')}`;
    await page.goto(`${prod.url}/#token=${token}`);
    await page.waitForSelector('#state.connected');
    assert.equal(await page.textContent('#me'), 'nora');
    assert.equal(await page.evaluate(() => location.hash), '', 'the token is removed from the address');
    await page.reload();
    await page.waitForSelector('#state.connected');
    assert.equal(await page.textContent('#me'), 'nora');
    await context.close();
  } finally {
    await prod.stop();
  }
});
