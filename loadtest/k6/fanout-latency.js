// Fan-out latency over WebSockets: RECEIVERS connections on `/bench` join GROUP, one publisher sends
// RATE messages per second through the hub or the control API, and `fanout_latency` is the time from
// publishing to each receiver's handler (lib/fanout.js has the details).
//
//   HUBCAST_URL         gateway base URL; several, comma-separated,      http://127.0.0.1:8080
//                       spread receivers over them (Redis backplane)
//   PUBLISHER_NODE      which of them the hub publisher connects to      0
//   HUB_PATH            hub path                                         /bench
//   RECEIVERS           receiving connections                            100
//   CONNS_PER_VU        receiving connections per VU                     10
//   RECEIVER_TRANSPORT  websockets | longpolling                         websockets
//   SKIP_NEGOTIATION    receivers connect without negotiate (1/0)        0
//   RELAY               receivers negotiate on one node and send every   0
//                       later request to the next (relayed back; 1/0)
//   GROUP               group to join and publish to; * = everyone       bench
//   PUBLISH             hub (SendToGroup/Broadcast) | api (control API)  hub
//   API_URL, API_HUB    control API base and hub name (PUBLISH=api)      first HUBCAST_URL, Bench
//   API_KEY / ACCESS_KEY  control API credential (X-API-Key / HS256 key) (none: --control-anonymous)
//   RATE                messages per second                              20
//   DURATION            publishing time                                  30s
//   WARMUP              receivers' head start before publishing begins   5s
//   DRAIN               how long receivers wait for the END marker       10s
//   PAYLOAD_BYTES       payload size                                     64
//   thresholds: LATENCY_P95_MS (100), LATENCY_P99_MS (250), MAX_LOST (0), MAX_END_MISSED (0),
//               PUBLISH_SUCCESS_MIN (0.99), CONNECT_SUCCESS_MIN (0.99)

import { fanoutDerived, fanoutOptions, fanoutParams, runPublisher, runReceivers } from './lib/fanout.js';
import { summaryOutputs } from './lib/summary.js';

const params = fanoutParams({ receivers: 100, connsPerVu: 10, transport: 'websockets', rate: 20, duration: '30s', warmup: '5s' });

export const options = fanoutOptions(params, { p95: 100, p99: 250 });

export function receiver() {
  return runReceivers(params);
}

export function publisher() {
  return runPublisher(params);
}

export function handleSummary(data) {
  return summaryOutputs('fanout-latency', data, params, fanoutDerived(data, params));
}
