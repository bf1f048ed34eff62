'use strict';
// The chat page as a product, in Debian's chromium (playwright-core): a session that survives reloads and
// ends in every tab at sign-out; rooms and direct messages as separate conversations with unread and
// mention badges; read receipts and deletes on live messages; a 1 MiB upload with progress, downloaded
// back byte-identical; the open conversation restored after a server restart; axe-core on each state.
// Screenshots (1280×800 and 390×844) go to tests/node/artifacts.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const crypto = require('node:crypto');
const { startServer } = require('./server');
const { ARTIFACTS, WEB_ROOT, launchBrowser, shown, axe } = require('./page');

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
let server;
let browser;
let dir;
let env;
const pageErrors = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubcast-chat-page-'));
  env = {
    HUBCAST_HISTORY: `sqlite:${path.join(dir, 'chat.db')}`,
    HUBCAST_WEB_ROOT: WEB_ROOT,
    // Sessions stay valid across the restart of the reconnect test.
    HUBCAST_SESSION_SECRET: 'chat-page-test-session-secret-of-enough-length',
  };
  server = await startServer({ env });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
});

/**
 * Opens the page in `context` (default: a new browser context) and, with `name`, signs in with the dev
 * login; resolves once connected (or, without a name, once the page settled).
 */
async function open(name, { context, viewport = DESKTOP, colorScheme = 'light' } = {}) {
  const ctx = context ?? await browser.newContext({ viewport, colorScheme, acceptDownloads: true });
  const page = await ctx.newPage();
  page.on('pageerror', (error) => pageErrors.push(`${name}: ${error.message}`));
  await page.goto(server.url);
  if (name) {
    await page.fill('#name', name);
    await page.press('#name', 'Enter');
  }
  await page.waitForSelector('#state.connected, #signin:visible, #idp:visible');
  return page;
}

const conv = (page, key) => page.locator(`#sidebar .conv[data-key="${key}"]`);
const line = (page, text) => shown(page).locator('li.msg', { hasText: text });

/** The badges of a conversation in the sidebar: { unread, mentions } as shown ('' when none). */
function badges(page, key) {
  return page.evaluate((k) => {
    const button = document.querySelector(`#sidebar .conv[data-key="${CSS.escape(k)}"]`);
    if (!button) return null;
    const number = (selector) => button.querySelector(selector)?.firstChild?.textContent ?? '';
    return { unread: number('.badge:not(.mention)'), mentions: number('.badge.mention') };
  }, key);
}

/** Polls `check` until it returns true. */
async function until(check, what, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function send(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  await line(page, text).first().waitFor();
}

async function joinRoom(page, room) {
  await page.fill('#room', room);
  await page.press('#room', 'Enter');
  await page.waitForSelector(`#current:text-is("#${room}")`);
}

const shot = (page, name) => page.screenshot({ path: path.join(ARTIFACTS, name) });

test('a session survives reloads and new tabs; signing out in one tab ends it in the others', async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const signedOut = await open(null, { context });
  await signedOut.waitForSelector('#signin:visible');
  await axe(signedOut, 'signed out');
  await shot(signedOut, 'page-signed-out.png');
  await signedOut.close();

  const tab1 = await open('dora', { context });
  await tab1.reload();
  await tab1.waitForSelector('#state.connected');
  assert.equal(await tab1.textContent('#me'), 'dora', 'a reload resumes the session');
  const tab2 = await open(null, { context });
  await tab2.waitForSelector('#state.connected');
  assert.equal(await tab2.textContent('#me'), 'dora', 'a new tab resumes the session');
  assert.deepEqual(await tab2.evaluate(() => fetch('/auth/session').then((r) => r.json())), { user: 'dora', roles: [], devLogin: true });

  await tab1.click('#signout');
  await tab1.waitForSelector('#signin:visible');
  await tab2.waitForSelector('#signin:visible');
  assert.match(await tab2.textContent('#signin-error'), /signed out in another tab/);
  assert.equal(await tab2.textContent('#state'), 'signed out');
  assert.deepEqual(await tab2.evaluate(() => fetch('/auth/session').then((r) => r.json())), { user: null, roles: [], devLogin: true });
  await tab2.reload();
  await tab2.waitForSelector('#signin:visible');
  await context.close();
});

test('rooms and direct messages are separate conversations with unread and mention badges', async () => {
  const ann = await open('ann');
  const bob = await open('bob');
  const carol = await open('carol');
  for (const page of [ann, bob]) await joinRoom(page, 'design');
  await conv(ann, 'lobby').click();
  await ann.waitForSelector('#current:text-is("#lobby")');
  assert.equal(await conv(ann, 'lobby').getAttribute('aria-current'), 'page', 'the open conversation is highlighted');

  // A room message elsewhere: counted, not shown in the open conversation.
  await send(bob, 'design talk');
  await until(async () => (await badges(ann, 'design'))?.unread === '1', 'the unread count of #design');
  assert.equal(await line(ann, 'design talk').count(), 0);
  assert.equal(await ann.title(), '(1) hubcast chat');

  // A direct message from carol, started from her online list.
  await carol.click('#online button:text-is("ann")');
  await carol.waitForSelector('#current:text-is("@ann")');
  await send(carol, 'hi ann, privately');
  await until(async () => (await badges(ann, 'dm:ann:carol'))?.unread === '1', 'the DM with carol and its count');
  await until(async () => (await carol.locator('#lists li.msg', { hasText: 'hi ann, privately' }).count()) === 1, 'the sender sees it once');
  assert.equal(await bob.locator('#lists li.msg', { hasText: 'privately' }).count(), 0, 'bob never sees the DM');
  assert.equal(await bob.locator('#dms .conv').count(), 0);

  // A mention in #design.
  await send(bob, '@ann have a look');
  await until(async () => JSON.stringify(await badges(ann, 'design')) === JSON.stringify({ unread: '2', mentions: '@1' }), 'the mention badge');
  await shot(ann, 'page-badges.png');

  await conv(ann, 'design').click();
  await line(ann, '@ann have a look').waitFor();
  assert.ok(await line(ann, 'design talk').isVisible());
  assert.match(await line(ann, '@ann have a look').getAttribute('class'), /\bmention\b/);
  assert.deepEqual(await badges(ann, 'design'), { unread: '', mentions: '' }, 'viewing clears the badges');
  assert.equal(await line(ann, 'design talk').evaluate((li) => li.nextElementSibling.classList.contains('grouped')), true,
    'consecutive messages of one author are grouped');
  assert.ok(await shown(ann).locator('li.day', { hasText: 'Today' }).count() === 1, 'a day separator');

  await conv(ann, 'dm:ann:carol').click();
  await ann.waitForSelector('#current:text-is("@carol")');
  await line(ann, 'hi ann, privately').waitFor();
  assert.equal(await line(ann, 'design talk').count(), 0);
  await axe(ann, 'DM open');
  await shot(ann, 'page-dm.png');

  // A reload keeps the conversations: #design is rejoined, the DM's history is read back.
  await ann.reload();
  await ann.waitForSelector('#state.connected');
  await ann.waitForSelector('#current:text-is("@carol")');
  await line(ann, 'hi ann, privately').waitFor();
  await until(async () => (await conv(ann, 'design').count()) === 1, '#design after the reload');
  await send(bob, 'after your reload');
  await until(async () => (await badges(ann, 'design'))?.unread === '1', '#design rejoined after the reload');
  await send(carol, 'still here?');
  await line(ann, 'still here?').waitFor();

  // The same at phone width, in the dark theme.
  const phone = await open(null, { context: await browser.newContext({ viewport: PHONE, colorScheme: 'dark', storageState: await ann.context().storageState() }) });
  await phone.waitForSelector('#state.connected');
  await line(phone, 'still here?').waitFor();
  assert.ok(await phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), 'no sideways scrolling');
  await axe(phone, 'phone, dark, DM open');
  await shot(phone, 'page-phone-dm-dark.png');
  await phone.click('#menu');
  await phone.waitForSelector('#sidebar:visible');
  await shot(phone, 'page-phone-conversations-dark.png');
  for (const page of [ann, bob, carol, phone]) await page.context().close();
});

test('read receipts and delete work on live messages', async () => {
  const gail = await open('gail');
  const hank = await open('hank');
  await send(gail, 'please read this');
  await line(hank, 'please read this').waitFor();
  const id = await line(gail, 'please read this').getAttribute('data-id');
  assert.match(id, /^\d+$/, 'a live message carries its id');
  await until(async () => (await line(gail, 'please read this').locator('.receipt').textContent()) === 'Seen by hank', 'the read receipt');
  assert.equal(await line(hank, 'please read this').locator('button.delete').count(), 0, 'only the author (or an admin) may delete');

  await line(gail, 'please read this').hover();
  await line(gail, 'please read this').locator('button.delete').click();
  await until(async () => (await line(hank, 'please read this').count()) === 0, 'the delete at hank');
  await until(async () => (await line(gail, 'please read this').count()) === 0, 'the delete at gail');
  await gail.reload();
  await gail.waitForSelector('#state.connected');
  await send(gail, 'after the delete');
  assert.equal(await line(gail, 'please read this').count(), 0, 'deleted from the history too');
  await gail.context().close();
  await hank.context().close();
});

test('a 1 MiB upload shows its progress and downloads back byte-identical', { timeout: 60000 }, async () => {
  const ivy = await open('ivy');
  const jack = await open('jack');
  const bytes = crypto.randomBytes(1024 * 1024);
  // The page's connection is a global binding of chat.js: count the progress events it gets.
  await ivy.evaluate(() => {
    window.progressEvents = [];
    connection.on('UploadProgress', (n) => window.progressEvents.push(n)); // eslint-disable-line no-undef
  });
  await ivy.setInputFiles('#file', { name: 'data.bin', mimeType: 'application/octet-stream', buffer: bytes });
  const link = shown(jack).locator('a.file', { hasText: 'data.bin' });
  await link.waitFor({ timeout: 30000 });
  await shown(ivy).locator('a.file', { hasText: 'data.bin' }).waitFor();

  const progress = await ivy.evaluate(() => window.progressEvents);
  assert.ok(progress.length >= 2, `progress events: ${JSON.stringify(progress)}`);
  assert.ok(progress.some((n) => n > 0 && n < bytes.length), 'progress in between');
  assert.equal(progress[progress.length - 1], bytes.length);
  assert.deepEqual(await ivy.evaluate(() => {
    const bar = document.getElementById('upload-progress');
    return [bar.value, bar.max];
  }), [bytes.length, bytes.length], 'the progress bar is full');

  const href = await link.getAttribute('href');
  assert.match(href, /^\/uploads\/[^/]+$/);
  assert.equal(await link.getAttribute('download'), 'data.bin');
  const [download] = await Promise.all([jack.waitForEvent('download'), link.click()]);
  assert.equal(download.suggestedFilename(), 'data.bin');
  assert.ok(fs.readFileSync(await download.path()).equals(bytes), 'the download is byte-identical');
  const fetched = await jack.evaluate(async (url) => {
    const response = await fetch(url);
    const body = await response.arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-256', body);
    return {
      status: response.status,
      disposition: response.headers.get('content-disposition'),
      sha256: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join(''),
    };
  }, href);
  assert.equal(fetched.status, 200);
  assert.match(fetched.disposition, /^attachment/);
  assert.equal(fetched.sha256, crypto.createHash('sha256').update(bytes).digest('hex'));
  await axe(ivy, 'upload done');
  await shot(ivy, 'page-upload.png');

  // Dropping a file on the conversation uploads it too.
  await ivy.evaluate(() => {
    const files = new DataTransfer();
    files.items.add(new File(['dropped text'], 'notes.txt', { type: 'text/plain' }));
    const target = document.getElementById('lists');
    for (const type of ['dragenter', 'dragover', 'drop']) {
      target.dispatchEvent(new DragEvent(type, { dataTransfer: files, bubbles: true, cancelable: true }));
    }
  });
  await shown(jack).locator('a.file', { hasText: 'notes.txt' }).waitFor();

  // Too large: refused before anything is sent.
  await ivy.setInputFiles('#file', { name: 'big.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(10 * 1024 * 1024 + 1) });
  await line(ivy, 'limited to 10 MiB').waitFor();
  await ivy.context().close();
  await jack.context().close();
});

test('after a server restart the page reconnects and restores the conversation', { timeout: 60000 }, async () => {
  const kate = await open('kate');
  const leo = await open('leo');
  await joinRoom(kate, 'ops');
  await joinRoom(leo, 'ops');
  await send(kate, 'before the restart');
  await line(leo, 'before the restart').waitFor();

  const { port } = server;
  await server.stop();
  await kate.waitForSelector('#banner:visible');
  await shot(kate, 'page-reconnecting.png');
  server = await startServer({ port, env });
  await kate.waitForSelector('#state.connected', { timeout: 30000 });
  await kate.waitForSelector('#banner', { state: 'hidden' });
  await leo.waitForSelector('#state.connected', { timeout: 30000 });
  assert.equal(await kate.textContent('#current'), '#ops', 'the same conversation is open');
  await until(async () => (await line(kate, 'before the restart').count()) === 1, 'the history, once');

  await send(leo, 'after the restart');
  await line(kate, 'after the restart').waitFor();
  await kate.context().close();
  await leo.context().close();
});
