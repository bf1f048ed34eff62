'use strict';
// Real redis-server processes on free ports for multi-node tests, stopped by pid, and a tiny TCP load
// balancer that sends each new connection to the first backend that accepts it.
const { spawn } = require('node:child_process');
const net = require('node:net');

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts `redis-server` without persistence on `port` (a free one by default) and resolves once it accepts
 * connections. Returns { port, url, kill(signal), restart() }.
 */
async function startRedis({ port } = {}) {
  const chosen = port || await freePort();
  let child;
  let exited;
  const launch = () => new Promise((resolve, reject) => {
    child = spawn('redis-server', ['--port', String(chosen), '--bind', '127.0.0.1', '--save', '',
      '--appendonly', 'no', '--protected-mode', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    exited = new Promise((done) => child.once('exit', done));
    process.once('exit', () => child.kill('SIGKILL'));
    let log = '';
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${log}`)), 10000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      log += chunk;
      if (log.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('error', (error) => { clearTimeout(timer); reject(error); });
  });
  await launch();
  return {
    port: chosen,
    url: `redis://127.0.0.1:${chosen}`,
    /** Kills the server (SIGKILL by default) and waits for it to exit. */
    async kill(signal = 'SIGKILL') {
      child.kill(signal);
      await exited;
    },
    /** Starts a new, empty server on the same port. */
    restart: launch,
  };
}

/**
 * A TCP load balancer on a free port: each client connection goes to the first of `backends()` (ports)
 * that accepts it. Returns { port, url, close() }.
 */
async function startBalancer(backends) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    client.pause();
    const tryNext = (list) => {
      if (list.length === 0) { client.destroy(); return; }
      const upstream = net.connect(list[0], '127.0.0.1');
      upstream.once('error', () => { if (!upstream.connected) tryNext(list.slice(1)); else client.destroy(); });
      upstream.once('connect', () => {
        sockets.add(upstream);
        upstream.once('close', () => { sockets.delete(upstream); client.destroy(); });
        client.once('close', () => upstream.destroy());
        client.on('error', () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    tryNext(backends());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close() {
      sockets.forEach((s) => s.destroy());
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

module.exports = { freePort, startRedis, startBalancer };
