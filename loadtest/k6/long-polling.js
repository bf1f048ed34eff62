// Long polling: RECEIVERS long-polling connections on `/bench` receive what one publisher sends at
// RATE per second (through the hub over a WebSocket, or the control API), measuring delivery latency
// and losses as fanout-latency.js does (lib/fanout.js). Long polling has no pings; each delivery
// costs a poll round trip, so latency and request counts (`signalr_polls`) are the numbers to watch.
//
// Parameters as fanout-latency.js (RECEIVER_TRANSPORT is fixed to longpolling), with these defaults:
//   RECEIVERS 20, CONNS_PER_VU 5, RATE 10, DURATION 30s, WARMUP 5s, GROUP bench, PUBLISH hub
//   thresholds: LATENCY_P95_MS (250), LATENCY_P99_MS (500), MAX_LOST (0), MAX_END_MISSED (0),
//               PUBLISH_SUCCESS_MIN (0.99), CONNECT_SUCCESS_MIN (0.99)

import { fanoutDerived, fanoutOptions, fanoutParams, runPublisher, runReceivers } from './lib/fanout.js';
import { metricValue, summaryOutputs } from './lib/summary.js';

const params = {
  ...fanoutParams({ receivers: 20, connsPerVu: 5, transport: 'longpolling', rate: 10, duration: '30s', warmup: '5s' }),
  receiverTransport: 'longpolling',
};

export const options = fanoutOptions(params, { p95: 250, p99: 500 });
options.thresholds.signalr_polls = ['count>0'];

export function receiver() {
  return runReceivers(params);
}

export function publisher() {
  return runPublisher(params);
}

export function handleSummary(data) {
  const derived = fanoutDerived(data, params);
  derived.polls = metricValue(data, 'signalr_polls', 'count');
  derived.deliveries_per_poll = derived.polls > 0 ? derived.deliveries / derived.polls : null;
  return summaryOutputs('long-polling', data, params, derived);
}
