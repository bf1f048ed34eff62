// Self-test of the helpers in lib/ that need no server: record framing, negotiate URLs, the scrubbing
// of request failures, and the k6 1.1 timer workaround (cancelTimeout must not make a later timer fire
// early). `k6 run selftest.js` exits 0 when every check holds; tests/python/test_k6.py runs it.

import { check } from 'k6';

import { RecordReader, cancelTimeout, clientOptions, delay, negotiateUrl, request } from './lib/signalr.js';

export const options = {
  ...clientOptions,
  vus: 1,
  iterations: 1,
  thresholds: { checks: ['rate==1'] },
};

function framing() {
  const reader = new RecordReader();
  const first = reader.push('{}\x1e{"type":1,"target":"a"}\x1e{"type":');
  const second = reader.push('6}\x1e');
  const third = reader.push('\x1e\x1e');
  check(null, {
    'several records in one chunk': () => first.length === 2 && first[0] === '{}',
    'a record split over chunks': () => second.length === 1 && second[0] === '{"type":6}',
    'empty records are dropped': () => third.length === 0 && reader.rest === '',
  });
}

function urls() {
  check(null, {
    'negotiate URL': () => negotiateUrl('http://h/bench') === 'http://h/bench/negotiate?negotiateVersion=1',
    'negotiate URL keeps the query': () =>
      negotiateUrl('http://h/bench?a=1') === 'http://h/bench/negotiate?a=1&negotiateVersion=1',
    'negotiate URL after a slash': () => negotiateUrl('http://h/bench/') === 'http://h/bench/negotiate?negotiateVersion=1',
  });
}

async function scrubbing() {
  const response = await request('GET', 'http://127.0.0.1:1/hub?id=SECRET-TOKEN', null, { timeout: '2s' });
  check(response, {
    'a refused request resolves with status 0': (r) => r.status === 0,
    'its reason names no URL or token': (r) => typeof r.failure === 'string' && !r.failure.includes('SECRET'),
  });
}

async function timers() {
  const started = Date.now();
  let fired = 0;
  const late = new Promise((resolve) => {
    setTimeout(() => {
      fired = Date.now() - started;
      resolve();
    }, 1500);
  });
  cancelTimeout(setTimeout(() => {}, 200)); // due first, then cleared
  await late;
  check(fired, { 'a cleared timer does not make the next one fire early': (ms) => ms >= 1400 });
  await delay(0);
}

export default async function () {
  framing();
  urls();
  await scrubbing();
  await timers();
}
