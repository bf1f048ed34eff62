'use strict';
// The load tools work end to end (small and short: benchmarks are not tests): hubcast-loadgen against a
// hubcast node for every audience and protocol, with and without negotiate, and against the ceiling
// program; every offered delivery must arrive, with latency recorded.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn, execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { startServer } = require('./server');
const { freePort } = require('./redis');

const run = promisify(execFile);
const targetDir = path.dirname(process.env.HUBCAST_BIN || path.resolve(__dirname, '..', '..', 'target', 'debug', 'hubcast'));
const loadgen = path.join(targetDir, 'hubcast-loadgen');
const ceiling = path.join(targetDir, 'hubcast-ceiling');

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

async function fanout(args) {
  const { stdout } = await run(loadgen, ['fanout', '--receivers', '40', '--rate', '5', '--steps', '2', '--step-secs', '0.6', '--settle-secs', '0.3', ...args], { timeout: 60000 });
  return JSON.parse(stdout);
}

function assertComplete(report, what) {
  assert.equal(report.steps.length, 2, what);
  for (const step of report.steps) {
    assert.ok(step.offered > 0, what);
    assert.equal(step.delivered, step.offered, `${what}: every offered delivery arrives`);
    assert.ok(step.p99_ms > 0 && step.p99_ms < 5000, `${what}: latency recorded (${step.p99_ms} ms)`);
  }
  assert.equal(report.closed, 0, what);
  // The server's memory is read from /proc; its growth per connection can be 0 on a warm server
  // (the allocator reuses what earlier tests' connections freed).
  assert.ok(report.server_rss_kib > 1000, `${what}: server memory read from /proc (${report.server_rss_kib} KiB)`);
  assert.ok(report.rss_kib_per_connection >= 0, what);
}

for (const audience of ['all', 'group', 'user']) {
  for (const protocol of ['json', 'messagepack']) {
    test(`fan-out to ${audience} over ${protocol}`, async () => {
      const report = await fanout(['--server', `127.0.0.1:${server.port}`, '--audience', audience, '--protocol', protocol, '--server-pid', String(server.pid)]);
      assertComplete(report, `${audience} ${protocol}`);
      assert.match(report.server, new RegExp(`hubcast ${protocol}`));
    });
  }
}

test('idle connections with negotiate report a connect rate and memory', async () => {
  const { stdout } = await run(loadgen, ['idle', '--server', `127.0.0.1:${server.port}`, '--negotiate', '--connections', '200', '--server-pid', String(server.pid)], { timeout: 60000 });
  const match = /(\d+) connects\/s.*= ([\d.]+) KiB per connection/.exec(stdout);
  assert.ok(match, stdout);
  assert.ok(Number(match[1]) > 0);
});

for (const mode of [[], ['--sequential']]) {
  test(`the ceiling program fans out raw frames ${mode.length ? '(sequential)' : '(tasks)'}`, async () => {
    const port = await freePort();
    const child = spawn(ceiling, [`127.0.0.1:${port}`, ...mode], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise((resolve, reject) => {
        child.stdout.once('data', resolve);
        child.once('exit', (code) => reject(new Error(`ceiling exited ${code}`)));
      });
      const report = await fanout(['--server', `127.0.0.1:${port}`, '--kind', 'ceiling', '--audience', 'all', '--server-pid', String(child.pid)]);
      assertComplete(report, 'ceiling');
    } finally {
      child.kill('SIGKILL');
    }
  });
}
