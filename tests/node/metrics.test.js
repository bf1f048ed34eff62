'use strict';
// Scrapes a live node's /metrics (Redis backplane, an upstream hub configured) after some traffic and
// checks that every metric docs/operations/metrics.md lists is there, and every metric the Grafana
// dashboard and the Prometheus alerts use.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startServer } = require('./server');
const { startRedis, freePort } = require('./redis');
const { signalR, withTimeout } = require('./helpers');

let redis;
let server;
let dir;

before(async () => {
  redis = await startRedis();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hubcast-metrics-'));
  const config = path.join(dir, 'hubcast.toml');
  fs.writeFileSync(config, `[[upstreams]]\nhub = "Orders"\nurl = "http://127.0.0.1:${await freePort()}/{event}"\n`);
  // A short node TTL: heartbeats (which also read presence sizes) every 300 ms.
  server = await startServer({ env: { HUBCAST_BACKPLANE: redis.url, HUBCAST_CONFIG: config, HUBCAST_CONTROL_ANONYMOUS: 'true', HUBCAST_NODE_TTL: '900ms' } });
});

after(async () => {
  await server?.stop();
  await redis?.kill();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The metric names of docs/operations/metrics.md's table (the hubcast ones). */
function documented() {
  const doc = fs.readFileSync(path.join(__dirname, '..', '..', 'docs', 'operations', 'metrics.md'), 'utf8');
  return [...doc.matchAll(/^\| `(hubcast_[a-z_]+)` \|/gm)].map((m) => m[1]);
}

const REPO = path.join(__dirname, '..', '..');

/** The metric names a PromQL-bearing file uses (histogram series map to their metric). */
function usedIn(file) {
  const text = fs.readFileSync(path.join(REPO, file), 'utf8');
  const names = [...text.matchAll(/\b((?:hubcast|process)_[a-z_]+)\b/g)].map((m) => m[1]);
  return [...new Set(names.map((n) => n.replace(/_(bucket|sum|count)$/, '')))];
}

let scrape;

test('every documented metric is exported', async () => {
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(`${server.url}/cluster`)
    .configureLogging(signalR.LogLevel.None)
    .build();
  await withTimeout(connection.start(), 10000, 'start()');
  await connection.invoke('Broadcast', 'hi');
  await assert.rejects(connection.invoke('NoSuchMethod'));
  // Presence sizes are read at each heartbeat.
  await new Promise((resolve) => setTimeout(resolve, 700));
  await connection.stop();
  assert.equal((await fetch(`${server.url}/cluster?id=nosuchconnection`)).status, 404);
  assert.equal((await fetch(`${server.url}/api/v1/hubs/Cluster/users/nobody`)).status, 404);

  const admin = /admin=127\.0\.0\.1:(\d+)/.exec(server.stderr())[1];
  const response = await fetch(`http://127.0.0.1:${admin}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /^text\/plain/);
  const text = await response.text();
  scrape = text;
  const names = documented();
  assert.ok(names.length >= 20, `documented: ${names}`);
  const missing = names.filter((name) => !new RegExp(`^# TYPE ${name} `, 'm').test(text));
  assert.deepEqual(missing, []);
  for (const expected of [
    /^hubcast_hub_connects_total\{hub="Cluster",transport="WebSockets"\} [1-9]/m,
    /^hubcast_hub_invocations_total\{hub="Cluster",method="broadcast",outcome="ok"\} 1$/m,
    /^hubcast_hub_invocations_total\{hub="Cluster",method="\(undeclared\)",outcome="unknown_method"\} 1$/m,
    /^hubcast_hub_connections\{hub="Cluster",protocol="json",transport="WebSockets"\} 0$/m,
    /^hubcast_http_refusals_total\{reason="unknown_connection"\} 1$/m,
    /^hubcast_control_requests_total\{status="404"\} 1$/m,
    /^hubcast_backplane_connected 1$/m,
    /^process_resident_memory_bytes /m,
  ]) {
    assert.match(text, expected);
  }
});

test('the Grafana dashboard and the alerts only use exported metrics', () => {
  assert.ok(scrape, 'the scrape of the first test');
  const dashboard = JSON.parse(fs.readFileSync(path.join(REPO, 'deploy', 'grafana', 'hubcast.json'), 'utf8'));
  const exprs = dashboard.panels.flatMap((p) => (p.targets || []).map((t) => t.expr));
  assert.ok(exprs.length >= 15, 'the dashboard has its panels');
  for (const file of ['deploy/grafana/hubcast.json', 'deploy/prometheus/alerts.yaml']) {
    const names = usedIn(file);
    assert.ok(names.length >= 5, `${file}: ${names}`);
    const missing = names.filter((name) => !new RegExp(`^# TYPE ${name} `, 'm').test(scrape));
    assert.deepEqual(missing, [], file);
  }
  const alerts = fs.readFileSync(path.join(REPO, 'deploy', 'prometheus', 'alerts.yaml'), 'utf8');
  for (const alert of ['HubcastBackplaneDown', 'HubcastSlowConsumerSpike', 'HubcastUnknownConnectionSpike',
    'HubcastReconnectStorm', 'HubcastFileDescriptorsNearLimit']) {
    assert.match(alerts, new RegExp(`alert: ${alert}\\n`));
  }
});
