'use strict';
// Starts one hubcast conformance server per test file and tears it down afterwards.
const { spawn } = require('node:child_process');
const path = require('node:path');

const DEFAULT_BIN = path.resolve(__dirname, '..', '..', 'target', 'debug', 'hubcast');
const START_TIMEOUT_MS = 20000;

/**
 * Spawns `hubcast serve --conformance` on ephemeral ports and resolves once it logs
 * `listening on 127.0.0.1:PORT … admin=127.0.0.1:PORT`. Returns { url, port, adminUrl, stop(), stderr(),
 * closeStderr() }.
 * `port` listens on that port instead (to restart a server where its clients expect it);
 * `env` adds environment variables (e.g. `HUBCAST_HUB_*` hub options); `control: true` runs
 * `hubcast control` (the control API alone) instead; `wrapper` is a command that runs hubcast (and execs
 * it), e.g. `['prlimit', '--nofile=256:256', '--']`.
 */
function startServer({ port = 0, env = {}, control = false, wrapper = [] } = {}) {
  const bin = process.env.HUBCAST_BIN || DEFAULT_BIN;
  const args = control
    ? ['control', '--listen', `127.0.0.1:${port}`, '--admin-listen', '127.0.0.1:0']
    : ['serve', '--conformance', '--listen', `127.0.0.1:${port}`, '--admin-listen', '127.0.0.1:0'];
  const child = spawn(
    wrapper.length ? wrapper[0] : bin,
    wrapper.length ? [...wrapper.slice(1), bin, ...args] : args,
    { stdio: ['ignore', 'ignore', 'pipe'], env: { HUBCAST_HISTORY: 'none', ...process.env, ...env, NO_COLOR: '1' } },
  );
  let log = '';
  let exited = false;
  // Never leave a server behind when the test process ends abruptly.
  process.once('exit', () => { if (!exited) child.kill('SIGKILL'); });
  const exit = new Promise((resolve) => child.once('exit', (code, signal) => {
    exited = true;
    resolve({ code, signal });
  }));

  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`hubcast did not report its port within ${START_TIMEOUT_MS} ms; stderr:\n${log}`));
    }, START_TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${bin}: ${err.message}`));
    });
    exit.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`hubcast exited early (code ${code}, signal ${signal}); stderr:\n${log}`));
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      log += chunk;
      // The line may carry ANSI colour codes around other fields; the address itself is plain.
      const match = /listening on 127\.0\.0\.1:(\d+)/.exec(log);
      const admin = /admin=127\.0\.0\.1:(\d+)/.exec(log);
      if (match && admin) {
        clearTimeout(timer);
        resolve([Number(match[1]), Number(admin[1])]);
      }
    });
  });

  return ready.then(([port, adminPort]) => ({
    port,
    pid: child.pid,
    url: `http://127.0.0.1:${port}`,
    /** The admin listener: /live, /ready, /metrics. */
    adminUrl: `http://127.0.0.1:${adminPort}`,
    stderr: () => log,
    /** Kills the process with `signal` at once (SIGKILL: no shutdown at all) and waits for the exit. */
    async kill(signal = 'SIGKILL') {
      if (!exited) child.kill(signal);
      return exit;
    },
    /** Closes our end of the server's stderr pipe, as when a log collector goes away. */
    closeStderr() {
      child.stderr.destroy();
    },
    /**
     * Sends SIGTERM and waits for the exit; after `graceMs` the process is killed with SIGKILL.
     * Resolves with { code, signal, ms, killed }.
     */
    async stop({ graceMs = 3000 } = {}) {
      if (exited) return { ...(await exit), ms: 0, killed: false };
      const started = Date.now();
      let killed = false;
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        killed = true;
        process.stderr.write(`# hubcast did not exit within ${graceMs} ms of SIGTERM; killing it\n`);
        child.kill('SIGKILL');
      }, graceMs);
      const result = await exit;
      clearTimeout(timer);
      return { ...result, ms: Date.now() - started, killed };
    },
  }));
}

module.exports = { startServer };
