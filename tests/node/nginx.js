'use strict';
// Debian's nginx in a private prefix, serving one of the shipped site files with its addresses filled in.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { freePort } = require('./redis');

const NGINX = '/usr/sbin/nginx';

function waitForPort(port, ms) {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); resolve(); });
      socket.once('error', () => {
        if (Date.now() > deadline) reject(new Error(`nothing listens on ${port}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/**
 * Starts nginx with `nginx/<site>` where each `[from, to]` of `replace` is substituted (upstream
 * addresses) and `listen 80;` becomes a free loopback port. Returns { url, stop() }.
 */
async function startNginx(site, replace) {
  assert.ok(fs.existsSync(NGINX), 'Debian nginx is installed (.ci/run installs it)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubcast-nginx-'));
  const port = await freePort();
  let text = fs.readFileSync(path.join(__dirname, '..', '..', 'nginx', site), 'utf8')
    .replace('listen 80;', `listen 127.0.0.1:${port};`);
  for (const [from, to] of replace) text = text.replace(from, to);
  fs.writeFileSync(path.join(dir, site), text);
  const user = process.getuid && process.getuid() === 0 ? 'user root;' : '';
  fs.writeFileSync(path.join(dir, 'nginx.conf'), `${user}
daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  include ${dir}/${site};
}
`);
  const nginx = spawn(NGINX, ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  process.once('exit', () => nginx.kill('SIGKILL'));
  await waitForPort(port, 10000);
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      const exited = new Promise((resolve) => nginx.once('exit', resolve));
      nginx.kill('SIGQUIT');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

module.exports = { startNginx };
