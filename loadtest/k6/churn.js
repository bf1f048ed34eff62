// Connection churn: new connections arrive at RATE per second for DURATION; each one negotiates,
// connects, completes the handshake, invokes METHOD once (default `Join(churn)` on /bench: a group
// add, and a remove when it leaves), optionally waits HOLD, then disconnects cleanly. It measures the
// cost of a connection's whole life and whether the gateway keeps up with arrivals.
//
//   HUBCAST_URL       gateway base URL; several, comma-      http://127.0.0.1:8080
//                     separated, spread connections over them
//   HUB_PATH          hub path                               /bench
//   TRANSPORT         websockets | longpolling               websockets
//   SKIP_NEGOTIATION  WebSockets without negotiate (1/0)     0
//   ACCESS_TOKEN      bearer token for the hub, if needed    (none)
//   METHOD, ARG       the method invoked and its argument    Join, churn
//   RATE              new connections per second             20
//   DURATION          how long connections keep arriving     30s
//   HOLD              time between invoke and disconnect     0s
//   PRE_VUS, MAX_VUS  VUs k6 prepares / may add              10, 200
//   thresholds: CYCLE_SUCCESS_MIN (0.99), CONNECT_P95_MS (500), INVOKE_P95_MS (200),
//               MAX_DROPPED_ITERATIONS (1% of the planned cycles: arrivals k6 could not start)

import exec from 'k6/execution';
import { Rate, Trend } from 'k6/metrics';

import { baseUrls, bool, durationMs, hubUrl, int, ms, num, str } from './lib/env.js';
import { clientOptions, createConnection, delay } from './lib/signalr.js';
import { TREND_STATS, metricValue, summaryOutputs } from './lib/summary.js';

const params = {
  hubs: baseUrls().map((_, i) => hubUrl(i)),
  transport: str('TRANSPORT', 'websockets'),
  skipNegotiation: bool('SKIP_NEGOTIATION', false),
  method: str('METHOD', 'Join'),
  arg: str('ARG', 'churn'),
  rate: int('RATE', 20),
  durationMs: durationMs('DURATION', '30s'),
  holdMs: durationMs('HOLD', '0s'),
  preVus: int('PRE_VUS', 10),
  maxVus: int('MAX_VUS', 200),
};
const planned = Math.round((params.rate * params.durationMs) / 1000);

const cycleDuration = new Trend('churn_cycle_duration', true);
const cycleSuccess = new Rate('churn_cycle_success');

export const options = {
  scenarios: {
    churn: {
      executor: 'constant-arrival-rate',
      rate: params.rate,
      timeUnit: '1s',
      duration: ms(params.durationMs),
      preAllocatedVUs: params.preVus,
      maxVUs: params.maxVus,
      gracefulStop: ms(params.holdMs + 20000),
    },
  },
  thresholds: {
    churn_cycle_success: [`rate>=${num('CYCLE_SUCCESS_MIN', 0.99)}`],
    signalr_connect_duration: [`p(95)<${num('CONNECT_P95_MS', 500)}`],
    signalr_invoke_duration: [`p(95)<${num('INVOKE_P95_MS', 200)}`],
    dropped_iterations: [`count<=${int('MAX_DROPPED_ITERATIONS', Math.floor(planned / 100))}`],
  },
  summaryTrendStats: TREND_STATS,
  ...clientOptions,
};

let warnings = 0;
function warn(text) {
  if (warnings++ < 5) console.warn(text);
}

export default async function () {
  const started = Date.now();
  const connection = createConnection(hubUrl(exec.scenario.iterationInTest), {
    transport: params.transport,
    skipNegotiation: params.skipNegotiation,
    accessToken: str('ACCESS_TOKEN', undefined),
  });
  let ok = false;
  try {
    await connection.start();
    await connection.invoke(params.method, params.arg);
    if (params.holdMs > 0) await delay(params.holdMs);
    const error = await connection.stop();
    if (error) throw error;
    ok = true;
    cycleDuration.add(Date.now() - started);
  } catch (error) {
    warn(`a churn cycle failed: ${error.message}`);
    await connection.stop();
  }
  cycleSuccess.add(ok);
}

export function handleSummary(data) {
  const cycles = metricValue(data, 'churn_cycle_success', 'passes');
  const derived = {
    base_urls: baseUrls(),
    planned_cycles: planned,
    completed_cycles: cycles,
    failed_cycles: metricValue(data, 'churn_cycle_success', 'fails'),
    dropped_iterations: metricValue(data, 'dropped_iterations', 'count'),
    cycles_per_s: cycles / (params.durationMs / 1000),
    connect_p95_ms: metricValue(data, 'signalr_connect_duration', 'p(95)', null),
  };
  return summaryOutputs('churn', data, params, derived);
}
