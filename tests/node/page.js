'use strict';
// What the chat page's browser tests share: Debian's chromium through playwright-core, the screenshot
// folder, the list of the open conversation, and axe-core run inside the page.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(__dirname, 'artifacts');
const WEB_ROOT = path.resolve(__dirname, '..', '..', 'web');
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** Launches headless chromium as the tests run it (no sandbox, no background traffic). */
function launchBrowser() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** The message list of the open conversation. */
const shown = (page) => page.locator('#lists ol.messages:not([hidden])');

/**
 * Runs axe-core in the page (evaluated through the DevTools protocol, so the page's CSP does not block it);
 * fails on serious or critical violations.
 */
async function axe(page, state) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE);
  const { violations } = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  assert.deepEqual(bad, [], `axe-core, ${state}`);
}

module.exports = { ARTIFACTS, WEB_ROOT, launchBrowser, shown, axe };
