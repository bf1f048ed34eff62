// Fan-out measurement shared by fanout-latency.js (WebSocket receivers) and long-polling.js
// (long-polling receivers), on the `/bench` hub of `hubcast serve --conformance`.
//
// - Receivers (scenario `receivers`, starting at once) connect, `Join(GROUP)` (or stay un-grouped when
//   GROUP is empty: then messages go to everyone) and record, for every `Broadcast(payload)`, now minus
//   the send time carried in the payload: `fanout_latency`. All VUs of one k6 process share the
//   machine's clock, so Date.now() (ms) on both sides is comparable.
// - One publisher (scenario `publisher`, starting after WARMUP so that receivers have joined) sends
//   RATE messages per second for DURATION, through the hub (`SendToGroup` / `Broadcast`, PUBLISH=hub)
//   or the control API (`POST /api/v1/hubs/{API_HUB}/groups/{GROUP}` or `/api/v1/hubs/{API_HUB}`,
//   PUBLISH=api). Payloads are `seq|sentAtMs|padding`.
// - When done it sends `END|count`; each receiver then counts what it missed (`fanout_lost`) and
//   stops. A receiver that never sees END by WARMUP + DURATION + DRAIN counts in `fanout_end_missed`.

import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import exec from 'k6/execution';
import { Counter, Rate, Trend } from 'k6/metrics';

import { baseUrl, baseUrls, bool, durationMs, hubUrl, int, ms, num, str } from './env.js';
import { answer, cancelInterval, clientOptions, closedWithin, createConnection, request } from './signalr.js';
import { TREND_STATS, metricValue } from './summary.js';

const latency = new Trend('fanout_latency', true);
const received = new Counter('fanout_received');
const published = new Counter('fanout_published');
const publishDuration = new Trend('fanout_publish_duration', true);
const publishSuccess = new Rate('fanout_publish_success');
const expected = new Counter('fanout_expected');
const lost = new Counter('fanout_lost');
const duplicates = new Counter('fanout_duplicates');
const endMissed = new Counter('fanout_end_missed');
const ready = new Counter('fanout_receivers_ready');

/** The parameters, from the environment with the calling script's defaults. */
export function fanoutParams(defaults) {
  const params = {
    hubs: baseUrls().map((_, i) => hubUrl(i)),
    publisherNode: int('PUBLISHER_NODE', 0),
    receivers: int('RECEIVERS', defaults.receivers),
    connsPerVu: int('CONNS_PER_VU', defaults.connsPerVu),
    receiverTransport: str('RECEIVER_TRANSPORT', defaults.transport),
    skipNegotiation: bool('SKIP_NEGOTIATION', false),
    relay: bool('RELAY', false),
    group: str('GROUP', 'bench') === '*' ? '' : str('GROUP', 'bench'),
    publish: str('PUBLISH', 'hub'),
    rate: num('RATE', defaults.rate),
    durationMs: durationMs('DURATION', defaults.duration),
    warmupMs: durationMs('WARMUP', defaults.warmup),
    drainMs: durationMs('DRAIN', '10s'),
    payloadBytes: int('PAYLOAD_BYTES', 64),
    apiUrl: str('API_URL', baseUrl()).replace(/\/+$/, ''),
    apiHub: str('API_HUB', 'Bench'),
  };
  if (!['hub', 'api'].includes(params.publish)) throw new Error(`PUBLISH must be hub or api, got '${params.publish}'`);
  if (!(params.rate > 0)) throw new Error('RATE must be above 0');
  params.messages = Math.max(1, Math.round((params.rate * params.durationMs) / 1000));
  return params;
}

/** k6 options: the two scenarios and the thresholds (overridable through the environment). */
export function fanoutOptions(params, limits) {
  const receiverVus = Math.max(1, Math.ceil(params.receivers / params.connsPerVu));
  return {
    scenarios: {
      receivers: {
        executor: 'per-vu-iterations',
        exec: 'receiver',
        vus: receiverVus,
        iterations: 1,
        maxDuration: ms(params.warmupMs + params.durationMs + params.drainMs + 30000),
        gracefulStop: '5s',
      },
      publisher: {
        executor: 'per-vu-iterations',
        exec: 'publisher',
        vus: 1,
        iterations: 1,
        startTime: ms(params.warmupMs),
        maxDuration: ms(params.durationMs + 30000),
        gracefulStop: '5s',
      },
    },
    thresholds: {
      fanout_latency: [`p(95)<${num('LATENCY_P95_MS', limits.p95)}`, `p(99)<${num('LATENCY_P99_MS', limits.p99)}`],
      fanout_received: ['count>0'],
      fanout_receivers_ready: [`count>=${Math.ceil(params.receivers * num('CONNECT_SUCCESS_MIN', 0.99))}`],
      fanout_lost: [`count<=${int('MAX_LOST', 0)}`],
      fanout_end_missed: [`count<=${int('MAX_END_MISSED', 0)}`],
      fanout_publish_success: [`rate>=${num('PUBLISH_SUCCESS_MIN', 0.99)}`],
      signalr_connect_success: [`rate>=${num('CONNECT_SUCCESS_MIN', 0.99)}`],
    },
    summaryTrendStats: TREND_STATS,
    ...clientOptions,
  };
}

let warnings = 0;
function warn(text) {
  if (warnings++ < 5) console.warn(text);
}

/** One receiving connection, from connect to END (or the deadline). */
async function receiveOne(params, index, deadline) {
  const urls = baseUrls();
  const connection = createConnection(hubUrl(index), {
    transport: params.receiverTransport,
    skipNegotiation: params.skipNegotiation,
    // RELAY: negotiate on one node, every later request on the next one (which relays it).
    transportBase: params.relay ? urls[(index + 1) % urls.length] : undefined,
    accessToken: str('ACCESS_TOKEN', undefined),
    tags: { role: 'receiver' },
  });
  const seen = new Uint8Array(params.messages); // one byte per message: bounded, and cheap to mark
  let distinct = 0;
  let endCount = null;
  let unreported = 0;
  connection.on('Broadcast', (payload) => {
    const now = Date.now();
    const [head, second] = String(payload).split('|', 2);
    if (head === 'END') {
      endCount = Number(second);
      connection.stop();
      return;
    }
    latency.add(now - Number(second));
    unreported += 1;
    if (unreported >= 100) {
      received.add(unreported); // in batches, as signalr.js does: samples cost the generator CPU
      unreported = 0;
    }
    const seq = Number(head);
    if (seen[seq]) {
      duplicates.add(1);
    } else if (seq >= 0 && seq < seen.length) {
      seen[seq] = 1;
      distinct += 1;
    }
  });
  try {
    await connection.start();
    if (params.group) await connection.invoke('Join', params.group);
  } catch (error) {
    warn(`a receiver could not connect or join: ${error.message}`);
    await connection.stop();
    return;
  }
  ready.add(1);
  await closedWithin(connection, deadline - Date.now());
  await connection.stop();
  received.add(unreported);
  if (endCount === null) {
    endMissed.add(1);
    let why = 'no END before the deadline';
    if (connection.closeError) why = connection.closeError.message;
    else if (connection.closedByServer) why = 'the server closed the connection';
    warn(`a receiver ended without END: ${why}`);
  } else {
    expected.add(endCount);
    lost.add(Math.max(0, endCount - distinct));
  }
}

/** The receivers scenario: this VU's share of RECEIVERS connections. */
export async function runReceivers(params) {
  const deadline = exec.scenario.startTime + params.warmupMs + params.durationMs + params.drainMs;
  const first = exec.scenario.iterationInTest * params.connsPerVu;
  const count = Math.min(params.connsPerVu, params.receivers - first);
  const all = [];
  for (let i = 0; i < count; i++) all.push(receiveOne(params, first + i, deadline));
  await Promise.all(all);
  // Make the counters exist (so their thresholds are evaluated) even when nothing was lost.
  for (const counter of [lost, endMissed, duplicates, expected]) counter.add(0);
}

/** An HS256 JWT for the control API: `aud` is the request URL without its query. */
function controlToken(key, url) {
  const part = (object) => encoding.b64encode(JSON.stringify(object), 'rawurl');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ aud: url, exp: Math.floor(Date.now() / 1000) + 300 })}`;
  return `${unsigned}.${crypto.hmac('sha256', key, unsigned, 'base64rawurl')}`;
}

/** The control API's credential headers: API_KEY (X-API-Key) or ACCESS_KEY (a signed bearer token). */
function controlHeaders(url) {
  const headers = { 'Content-Type': 'application/json' };
  const apiKey = str('API_KEY', undefined);
  const accessKey = str('ACCESS_KEY', undefined);
  if (apiKey) headers['X-API-Key'] = apiKey;
  if (accessKey) headers.Authorization = `Bearer ${controlToken(accessKey, url)}`;
  return headers;
}

/** A function that publishes one payload and resolves once the gateway accepted it. */
async function publisherChannel(params) {
  if (params.publish === 'hub') {
    const connection = createConnection(hubUrl(params.publisherNode), {
      transport: 'websockets',
      accessToken: str('ACCESS_TOKEN', undefined),
      tags: { role: 'publisher' },
    });
    await connection.start();
    const send = params.group
      ? (payload) => connection.invoke('SendToGroup', params.group, payload)
      : (payload) => connection.invoke('Broadcast', payload);
    return { send, close: () => connection.stop() };
  }
  const path = params.group
    ? `/api/v1/hubs/${params.apiHub}/groups/${encodeURIComponent(params.group)}`
    : `/api/v1/hubs/${params.apiHub}`;
  const url = params.apiUrl + path;
  const send = async (payload) => {
    const response = await request('POST', url, JSON.stringify({ target: 'Broadcast', arguments: [payload] }), {
      headers: controlHeaders(url),
      tags: { name: url },
    });
    if (response.status !== 202) throw new Error(`the control API failed: ${answer(response)}`);
  };
  return { send, close: async () => {} };
}

/** The publisher scenario: RATE messages per second for DURATION, then END. */
export async function runPublisher(params) {
  const channel = await publisherChannel(params);
  const padding = 'x'.repeat(Math.max(0, params.payloadBytes - 24));
  const started = Date.now();
  let next = 0;
  let inFlight = 0;
  let settledAll = null;

  const publishOne = (seq) => {
    const sentAt = Date.now();
    inFlight += 1;
    published.add(1);
    channel
      .send(`${seq}|${sentAt}|${padding}`)
      .then(
        () => {
          publishDuration.add(Date.now() - sentAt);
          publishSuccess.add(true);
        },
        (error) => {
          publishSuccess.add(false);
          warn(`publishing failed: ${error.message}`);
        },
      )
      .then(() => {
        inFlight -= 1;
        if (inFlight === 0 && settledAll) settledAll();
      });
  };

  // Each tick sends what is due by now, so the rate holds even when ticks come late.
  await new Promise((resolve) => {
    const tick = Math.max(5, Math.min(100, 1000 / params.rate));
    const timer = setInterval(() => {
      const due = Math.min(params.messages, Math.floor(((Date.now() - started) * params.rate) / 1000) + 1);
      while (next < due) publishOne(next++);
      if (next >= params.messages) {
        cancelInterval(timer);
        resolve();
      }
    }, tick);
  });
  if (inFlight > 0) await new Promise((resolve) => (settledAll = resolve));
  try {
    await channel.send(`END|${params.messages}`);
  } catch (error) {
    warn(`publishing END failed: ${error.message}`);
  }
  await channel.close();
}

/** Numbers the summary derives from the metrics. */
export function fanoutDerived(data, params) {
  const expectedCount = metricValue(data, 'fanout_expected', 'count');
  const published = metricValue(data, 'fanout_published', 'count');
  const readyCount = metricValue(data, 'fanout_receivers_ready', 'count');
  const lostCount = metricValue(data, 'fanout_lost', 'count');
  return {
    base_urls: baseUrls(),
    published,
    publish_rate_per_s: published / (params.durationMs / 1000),
    receivers_ready: readyCount,
    deliveries: metricValue(data, 'fanout_received', 'count'),
    expected_deliveries: expectedCount,
    // From the END markers: 1 - lost / expected, over the receivers that saw END.
    delivery_ratio: expectedCount > 0 ? 1 - lostCount / expectedCount : null,
    // Deliveries over published × ready receivers: also meaningful when the run was cut short.
    received_ratio: published * readyCount > 0 ? metricValue(data, 'fanout_received', 'count') / (published * readyCount) : null,
    latency_p99_ms: metricValue(data, 'fanout_latency', 'p(99)', null),
  };
}
