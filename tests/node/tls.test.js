'use strict';
// TLS on hubcast's own listener (--tls-cert / --tls-key): the official client over https:// and wss://
// with every transport and protocol, and a certificate rotated on disk served without a restart.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const tls = require('node:tls');
const { startServer } = require('./server');

let dir;
let server;

/** A CA, and two server certificates for 127.0.0.1 it signed (CN first and second). */
function makeCertificates() {
  const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=tls test CA');
  fs.writeFileSync(path.join(dir, 'ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  for (const name of ['first', 'second']) {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-out', `${name}.crt`, '-extfile', 'ext');
  }
  fs.copyFileSync(path.join(dir, 'first.crt'), path.join(dir, 'server.crt'));
  fs.copyFileSync(path.join(dir, 'first.key'), path.join(dir, 'server.key'));
}

/** The CN of the certificate the server presents now. */
function presented(port) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: fs.readFileSync(path.join(dir, 'ca.crt')) }, () => {
      const cn = socket.getPeerCertificate().subject.CN;
      socket.end();
      resolve(cn);
    });
    socket.once('error', reject);
  });
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubcast-tls-'));
  makeCertificates();
  const config = path.join(dir, 'hubcast.toml');
  fs.writeFileSync(config, '[tls]\nreload = "300ms"\n');
  server = await startServer({
    env: {
      HUBCAST_TLS_CERT: path.join(dir, 'server.crt'),
      HUBCAST_TLS_KEY: path.join(dir, 'server.key'),
      HUBCAST_CONFIG: config,
    },
  });
});

after(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the official client over https:// and wss://, every transport and protocol', async () => {
  const url = `https://127.0.0.1:${server.port}`;
  const output = await new Promise((resolve, reject) => {
    execFile(process.execPath, [path.join(__dirname, 'tls-client.js'), url], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: path.join(dir, 'ca.crt') },
      timeout: 30000,
    }, (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout)));
  });
  const results = JSON.parse(output.trim().split('\n').pop());
  assert.deepEqual(Object.keys(results).sort(), [
    'LongPolling/json', 'LongPolling/messagepack', 'ServerSentEvents/json',
    'WebSockets/json', 'WebSockets/messagepack',
  ]);
  for (const [pair, echo] of Object.entries(results)) {
    assert.equal(echo, `over ${pair.split('/')[0]}`, pair);
  }
  // Plain HTTP on the TLS port gets no answer.
  await assert.rejects(fetch(`http://127.0.0.1:${server.port}/testhub/negotiate?negotiateVersion=1`, { method: 'POST' }));
});

test('a certificate rotated on disk is served without a restart', async () => {
  assert.equal(await presented(server.port), 'first');
  fs.copyFileSync(path.join(dir, 'second.key'), path.join(dir, 'server.key'));
  fs.copyFileSync(path.join(dir, 'second.crt'), path.join(dir, 'server.crt'));
  const started = Date.now();
  let cn;
  do {
    await new Promise((resolve) => setTimeout(resolve, 100));
    cn = await presented(server.port);
  } while (cn !== 'second' && Date.now() - started < 5000);
  assert.equal(cn, 'second');
  assert.match(server.stderr(), /TLS certificate reloaded/);
});
