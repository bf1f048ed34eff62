// Connect and hold: CONNECTIONS clients connect (spread over RAMP), each holds its connection for
// HOLD with keep-alive pings, then stops cleanly. It measures what it costs to get connected
// (negotiate + upgrade + handshake) and whether held connections survive.
//
// One VU drives CONNS_PER_VU connections (k6/experimental/websockets runs them on the VU's event
// loop), so thousands of connections need far fewer VUs than connections.
//
//   HUBCAST_URL       gateway base URL; several, comma-     http://127.0.0.1:8080
//                     separated, spread connections over them
//   HUB_PATH          hub path                              /bench
//   TRANSPORT         websockets | longpolling              websockets
//   SKIP_NEGOTIATION  WebSockets without negotiate (1/0)    0
//   ACCESS_TOKEN      bearer token for the hub, if needed   (none)
//   CONNECTIONS       connections in all                    100
//   CONNS_PER_VU      connections per VU                    10
//   RAMP              time over which connects are spread   10s
//   HOLD              how long each connection is held      30s
//   PING_INTERVAL     client keep-alive interval            15s
//   thresholds: CONNECT_SUCCESS_MIN (0.99), CONNECT_P95_MS (1000), MAX_DROPPED (0)

import exec from 'k6/execution';
import { Counter } from 'k6/metrics';

import { baseUrls, bool, durationMs, hubUrl, int, ms, num, str } from './lib/env.js';
import { clientOptions, closedWithin, createConnection, delay } from './lib/signalr.js';
import { TREND_STATS, metricValue, summaryOutputs } from './lib/summary.js';

const params = {
  hubs: baseUrls().map((_, i) => hubUrl(i)),
  transport: str('TRANSPORT', 'websockets'),
  skipNegotiation: bool('SKIP_NEGOTIATION', false),
  connections: int('CONNECTIONS', 100),
  connsPerVu: int('CONNS_PER_VU', 10),
  rampMs: durationMs('RAMP', '10s'),
  holdMs: durationMs('HOLD', '30s'),
  pingIntervalMs: durationMs('PING_INTERVAL', '15s'),
};
const vus = Math.max(1, Math.ceil(params.connections / params.connsPerVu));

const held = new Counter('hold_completed');
const dropped = new Counter('hold_dropped');

export const options = {
  scenarios: {
    hold: {
      executor: 'per-vu-iterations',
      vus,
      iterations: 1,
      maxDuration: ms(params.rampMs + params.holdMs + 60000),
      gracefulStop: '10s',
    },
  },
  thresholds: {
    signalr_connect_success: [`rate>=${num('CONNECT_SUCCESS_MIN', 0.99)}`],
    signalr_connect_duration: [`p(95)<${num('CONNECT_P95_MS', 1000)}`],
    hold_dropped: [`count<=${int('MAX_DROPPED', 0)}`],
  },
  summaryTrendStats: TREND_STATS,
  ...clientOptions,
};

let warnings = 0;
function warn(text) {
  if (warnings++ < 5) console.warn(text);
}

async function holdOne(index) {
  await delay((index * params.rampMs) / params.connections);
  const connection = createConnection(hubUrl(index), {
    transport: params.transport,
    skipNegotiation: params.skipNegotiation,
    accessToken: str('ACCESS_TOKEN', undefined),
    pingIntervalMs: params.pingIntervalMs,
  });
  try {
    await connection.start();
  } catch (error) {
    warn(`connection ${index} failed to connect: ${error.message}`);
    return;
  }
  if ((await closedWithin(connection, params.holdMs)) === 'closed') {
    dropped.add(1);
    warn(`connection ${index} ended early: ${connection.closeError ? connection.closeError.message : 'closed'}`);
    return;
  }
  held.add(1);
  await connection.stop();
}

export default async function () {
  const first = exec.scenario.iterationInTest * params.connsPerVu;
  const count = Math.min(params.connsPerVu, params.connections - first);
  const all = [];
  for (let i = 0; i < count; i++) all.push(holdOne(first + i));
  await Promise.all(all);
  dropped.add(0); // so the metric (and its threshold) exists even when nothing dropped
}

export function handleSummary(data) {
  const derived = {
    base_urls: baseUrls(),
    connected: metricValue(data, 'signalr_connect_success', 'passes'),
    failed_to_connect: metricValue(data, 'signalr_connect_success', 'fails'),
    connect_p95_ms: metricValue(data, 'signalr_connect_duration', 'p(95)', null),
  };
  return summaryOutputs('connect-hold', data, params, derived);
}
