// A small SignalR client for k6 (JSON hub protocol only), written for load tests rather than apps.
//
// It owns the wire protocol as the official clients speak it (docs: shared protocol notes):
// - negotiate: `POST {hub}/negotiate?negotiateVersion=1`, then the `connectionToken` is the `id` of
//   every later request (or no negotiate at all with `skipNegotiation`, WebSockets only);
// - WebSockets through `k6/experimental/websockets` (k6 1.1 has no `k6/websockets` yet; unlike the
//   older `k6/ws`, it runs on the VU's shared event loop, so one VU can hold many connections and mix
//   them with timers, promises and async HTTP);
// - long polling through `http.asyncRequest`: a first poll that only opens the connection, a GET
//   loop that keeps one poll outstanding, POSTs (serialised, pending writes batched) for sends and a
//   DELETE to close;
// - the JSON handshake, 0x1E record framing over an accumulated buffer (a frame, poll body or chunk
//   may carry several records, or part of one), Ping (type 6) keep-alives with a server timeout,
//   `send` (no invocationId), `invoke` (resolved by its Completion, type 3), `on(target, fn)`
//   handlers and the server's Close (type 7).
//
// Every connection records the `signalr_*` metrics below, tagged with `transport`. The connection
// token sits in the `id` query parameter: nothing here logs URLs or k6's request errors as they are,
// and scenarios spread `clientOptions` into their options so that k6 does not either.

import http from 'k6/http';
import { WebSocket } from 'k6/experimental/websockets';
import { Counter, Rate, Trend } from 'k6/metrics';

export const RECORD_SEPARATOR = '\x1e';
const HANDSHAKE_REQUEST = `{"protocol":"json","version":1}${RECORD_SEPARATOR}`;
const PING = `{"type":6}${RECORD_SEPARATOR}`;

/** Hub message types of the JSON protocol. */
export const MessageType = Object.freeze({
  Invocation: 1,
  StreamItem: 2,
  Completion: 3,
  StreamInvocation: 4,
  CancelInvocation: 5,
  Ping: 6,
  Close: 7,
});

/** The metrics every connection records (custom metrics must be created in the init phase). */
export const metrics = {
  /** negotiate request, start to answer */
  negotiate: new Trend('signalr_negotiate_duration', true),
  /** WebSocket upgrade (open event), or long polling's first poll */
  upgrade: new Trend('signalr_upgrade_duration', true),
  /** handshake request sent → handshake response received */
  handshake: new Trend('signalr_handshake_duration', true),
  /** start(): negotiate + upgrade + handshake */
  connect: new Trend('signalr_connect_duration', true),
  /** one sample per start(): true when the handshake completed */
  connectSuccess: new Rate('signalr_connect_success'),
  /** invoke → its Completion, successful invocations only */
  invoke: new Trend('signalr_invoke_duration', true),
  /** one sample per invoke(): false on an error completion, a timeout or a lost connection */
  invokeSuccess: new Rate('signalr_invoke_success'),
  /** Invocation messages received from the server (counted in batches of 100, and at the end) */
  received: new Counter('signalr_messages_received'),
  /** Invocation messages sent (send and invoke) */
  sent: new Counter('signalr_messages_sent'),
  /** Pings received from the server */
  pings: new Counter('signalr_pings_received'),
  /** established connections that ended by an error: a Close with an error, a server timeout, a
   *  transport failure or a close nobody asked for */
  connectionErrors: new Counter('signalr_connection_errors'),
  /** long-polling GET requests answered */
  polls: new Counter('signalr_polls'),
};

/**
 * Options every scenario spreads into its `options`, to keep connection tokens (the `id` query
 * parameter) out of logs and outputs:
 * - `systemTags`: k6's defaults less `url`. A WebSocket's `url` tag is the URL it connected to, token
 *   included, and k6 lets no script tag replace it; HTTP requests are grouped by `name` instead.
 * - `throw`: a request that gets no response throws (and `request` below turns that into a
 *   scrubbed response) instead of k6 logging "Request Failed" with the full URL.
 */
export const clientOptions = Object.freeze({
  throw: true,
  systemTags: [
    'proto', 'subproto', 'status', 'method', 'name', 'group', 'check', 'error', 'error_code',
    'tls_version', 'scenario', 'service', 'expected_response',
  ],
});

/**
 * `http.asyncRequest` that never rejects: a request that got no response (with `throw` on) resolves
 * as `{ status: 0, failure }`, where `failure` is the reason with every URL removed.
 */
export async function request(method, url, body, params) {
  try {
    return await http.asyncRequest(method, url, body, params);
  } catch (error) {
    const text = String((error && (error.err || error.message)) || error);
    return { status: 0, body: null, failure: text.replace(/"?[a-z][a-z0-9+.-]*:\/\/[^\s"]*"?/gi, '<url>') };
  }
}

const RECEIVED_BATCH = 100;

const DEFAULTS = Object.freeze({
  /** 'websockets' or 'longpolling' */
  transport: 'websockets',
  /** connect the WebSocket without negotiating (no `id`; WebSockets only) */
  skipNegotiation: false,
  /** sent as `Authorization: Bearer …` on every request */
  accessToken: undefined,
  /** extra request headers */
  headers: {},
  /** extra metric tags */
  tags: {},
  /** start() gives up after this long */
  connectTimeoutMs: 10000,
  /** invoke() rejects after this long */
  invokeTimeoutMs: 30000,
  /** a Ping is sent when nothing else was sent for this long (WebSockets; the JS client's 15 s) */
  pingIntervalMs: 15000,
  /** the connection is dropped when nothing arrived for this long (WebSockets; the JS client's 30 s) */
  serverTimeoutMs: 30000,
  /** stop() resolves at the latest after this long, even if the transport never confirms */
  closeTimeoutMs: 5000,
  /** client-side limit of one long poll (the server answers idle polls after 90 s) */
  pollTimeoutMs: 100000,
});

function noop() {}

/**
 * clearTimeout, working around a timer bug of k6 1.1 (grafana/k6#5199, fixed in later releases):
 * clearing the timer that is due first leaves the VU's timer queue armed for its time, and at that
 * time k6 runs the *next* timer, early (a 30 s deadline fires after 10 s). A zero-delay no-op
 * scheduled right after re-arms the queue for what is really next.
 */
export function cancelTimeout(id) {
  if (id === undefined || id === null) return;
  clearTimeout(id);
  setTimeout(noop, 0);
}

/** clearInterval with the same workaround as cancelTimeout. */
export function cancelInterval(id) {
  if (id === undefined || id === null) return;
  clearInterval(id);
  setTimeout(noop, 0);
}

/** Resolves after `ms` milliseconds (0 or less: on the next turn of the event loop). */
export function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/**
 * Resolves with 'closed' when `connection` ends within `ms`, else with 'timeout'; the timer is cleared
 * either way, so nothing keeps the VU's event loop busy afterwards.
 */
export function closedWithin(connection, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), Math.max(0, ms));
    connection.closed.then(() => {
      cancelTimeout(timer);
      resolve('closed');
    });
  });
}

/** Splits a stream of text into 0x1E-terminated records, keeping an incomplete tail for later. */
export class RecordReader {
  constructor() {
    this.rest = '';
  }

  /** Adds `chunk`; returns the complete records it finished (without separators, empties dropped). */
  push(chunk) {
    const parts = (this.rest + chunk).split(RECORD_SEPARATOR);
    this.rest = parts.pop();
    return parts.filter((part) => part.length > 0);
  }
}

/** `{hub}/negotiate?…&negotiateVersion=1`, keeping the hub URL's own query. */
export function negotiateUrl(url) {
  const [path, query] = splitQuery(url);
  const slash = path.endsWith('/') ? '' : '/';
  return `${path}${slash}negotiate?${query ? `${query}&` : ''}negotiateVersion=1`;
}

function splitQuery(url) {
  const at = url.indexOf('?');
  return at < 0 ? [url, ''] : [url.slice(0, at), url.slice(at + 1)];
}

function withQuery(url, extra) {
  return url + (url.includes('?') ? '&' : '?') + extra;
}

/** What a response was, for error messages: never `response.error`, which quotes the URL (and token). */
export function answer(response) {
  if (response.status) return `HTTP ${response.status}`;
  return `no response (${response.failure || `k6 error code ${response.error_code}`})`;
}

function requestHeaders(options, more = {}) {
  const headers = { ...options.headers, ...more };
  if (options.accessToken) headers.Authorization = `Bearer ${options.accessToken}`;
  return headers;
}

/**
 * Negotiates a connection: resolves with the negotiate response (`connectionId`, `connectionToken`,
 * `availableTransports`), rejects on an HTTP error, an `error` answer or a redirect.
 */
export async function negotiate(url, options = {}) {
  const opts = { ...DEFAULTS, ...options };
  const response = await request('POST', negotiateUrl(url), null, {
    headers: requestHeaders(opts),
    tags: { ...opts.tags, name: `${splitQuery(url)[0]}/negotiate` },
    timeout: `${opts.connectTimeoutMs}ms`,
  });
  if (response.status !== 200) {
    throw new Error(`negotiate failed: ${answer(response)}`);
  }
  let body;
  try {
    body = JSON.parse(response.body);
  } catch (_) {
    throw new Error('negotiate answered something that is not JSON');
  }
  if (body.error) throw new Error(`negotiate failed: ${body.error}`);
  if (body.url) throw new Error('negotiate redirects are not supported by this helper');
  if (!body.connectionToken) body.connectionToken = body.connectionId; // negotiate version 0
  return body;
}

/** A hub connection over `options.transport` (not started yet: register handlers, then `start()`). */
export function createConnection(url, options = {}) {
  const transport = (options.transport || DEFAULTS.transport).toLowerCase();
  if (transport === 'websockets') return new WebSocketConnection(url, options);
  if (transport === 'longpolling') return new LongPollingConnection(url, options);
  throw new Error(`unknown transport '${options.transport}' (websockets or longpolling)`);
}

/** The hub protocol, independent of the transport; subclasses move the text. */
class HubConnection {
  /**
   * The hub URL of the requests after negotiate: the hub URL, or the same path on
   * `options.transportBase` (another node, which relays them to the node that negotiated).
   */
  transportUrl() {
    const base = this.options.transportBase;
    return base ? this.url.replace(/^https?:\/\/[^/]+/, base.replace(/\/+$/, '')) : this.url;
  }

  constructor(url, options, transportName) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this.transport = transportName;
    this.tags = { ...this.options.tags, transport: transportName };
    /** new → connecting → connected → closed */
    this.state = 'new';
    this.connectionId = null;
    /** why the connection ended: null when stopped by us or closed cleanly by the server */
    this.closeError = null;
    /** true when the server ended the connection (a Close message, or it just went away) */
    this.closedByServer = false;
    this.timings = {};
    this._handlers = {};
    this._closeHandlers = [];
    this._pending = {};
    this._nextInvocationId = 1;
    this._reader = new RecordReader();
    this._handshakeDone = false;
    this._stopping = false;
    this._timers = [];
    this.lastReceived = 0;
    this.lastSent = 0;
    /** resolves (never rejects) once the connection has ended, for whatever reason */
    this.closed = new Promise((resolve) => {
      this._resolveClosed = resolve;
    });
  }

  /** Calls `fn(...arguments)` for every Invocation of `target` (matched case-insensitively). */
  on(target, fn) {
    const key = target.toLowerCase();
    if (!this._handlers[key]) this._handlers[key] = [];
    this._handlers[key].push(fn);
    return this;
  }

  /** Calls `fn(error)` once the connection has ended (`error` is null for a clean end). */
  onClose(fn) {
    this._closeHandlers.push(fn);
    return this;
  }

  /**
   * Negotiates (unless skipped), opens the transport and completes the handshake. Resolves with the
   * timings in ms (`negotiate`, `upgrade`, `handshake`, `connect`); rejects when any step fails.
   */
  start() {
    if (this.state !== 'new') return Promise.reject(new Error('start() may be called once'));
    this.state = 'connecting';
    this._begin = Date.now();
    return new Promise((resolve, reject) => {
      this._startResolve = resolve;
      this._startReject = reject;
      this._connectTimer = setTimeout(() => {
        this._abort(new Error(`connect timed out after ${this.options.connectTimeoutMs} ms`));
      }, this.options.connectTimeoutMs);
      this._open().catch((error) => this._abort(error));
    });
  }

  /** Sends an Invocation without an invocationId: the server sends no reply, not even errors. */
  send(target, ...args) {
    if (this.state !== 'connected') throw new Error(`send ${target}: not connected`);
    this._writeMessage({ type: MessageType.Invocation, target, arguments: args });
  }

  /** Invokes `target` and resolves with its result (rejects with the server's error text). */
  invoke(target, ...args) {
    const tags = { ...this.tags, method: target };
    if (this.state !== 'connected') {
      metrics.invokeSuccess.add(false, tags);
      return Promise.reject(new Error(`invoke ${target}: not connected`));
    }
    const invocationId = String(this._nextInvocationId++);
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const settle = (error, result) => {
        cancelTimeout(timer);
        delete this._pending[invocationId];
        metrics.invokeSuccess.add(!error, tags);
        if (error) {
          reject(error);
        } else {
          metrics.invoke.add(Date.now() - started, tags);
          resolve(result);
        }
      };
      const timer = setTimeout(() => {
        settle(new Error(`invoke ${target} timed out after ${this.options.invokeTimeoutMs} ms`));
      }, this.options.invokeTimeoutMs);
      this._pending[invocationId] = settle;
      this._writeMessage({ type: MessageType.Invocation, invocationId, target, arguments: args });
    });
  }

  /** Ends the connection; resolves once the transport has closed (or after `closeTimeoutMs`). */
  stop() {
    if (this.state === 'new') {
      this.state = 'closed';
      this._resolveClosed(null);
    } else if (this.state !== 'closed') {
      this._abort(null);
    }
    return this.closed;
  }

  // ---- for the transports -------------------------------------------------------------------

  _writeMessage(message) {
    if (message.type === MessageType.Invocation) metrics.sent.add(1, this.tags);
    this._write(JSON.stringify(message) + RECORD_SEPARATOR);
  }

  _write(text) {
    this.lastSent = Date.now();
    this._transportWrite(text);
  }

  _sendHandshake() {
    this.timings.upgrade = Date.now() - this._upgradeStarted;
    metrics.upgrade.add(this.timings.upgrade, this.tags);
    this._handshakeSent = Date.now();
    this._write(HANDSHAKE_REQUEST);
  }

  /** Feeds received text: the handshake response first, then hub messages. */
  _receive(chunk) {
    this.lastReceived = Date.now();
    for (const record of this._reader.push(chunk)) {
      if (this.state === 'closed') return;
      let message;
      try {
        message = JSON.parse(record);
      } catch (_) {
        this._abort(new Error('received a record that is not JSON'));
        return;
      }
      if (this._handshakeDone) {
        this._dispatch(message);
      } else {
        this._handshakeDone = true;
        if (message.error) {
          this._abort(new Error(`handshake refused: ${message.error}`));
          return;
        }
        this._connected();
      }
    }
  }

  _connected() {
    const now = Date.now();
    cancelTimeout(this._connectTimer);
    this._connectTimer = null;
    this.state = 'connected';
    this.timings.handshake = now - this._handshakeSent;
    this.timings.connect = now - this._begin;
    metrics.handshake.add(this.timings.handshake, this.tags);
    metrics.connect.add(this.timings.connect, this.tags);
    metrics.connectSuccess.add(true, this.tags);
    this._afterConnect();
    this._startResolve({ ...this.timings });
  }

  _afterConnect() {}

  /**
   * `signalr_messages_received` in batches: at tens of thousands of messages a second, k6's metric
   * pipeline (not the socket) is what saturates the load generator, so per-message samples are kept
   * for what needs them (latency trends) and counts go out every RECEIVED_BATCH messages and at the end.
   */
  _countReceived(n) {
    this._unreportedReceived = (this._unreportedReceived || 0) + n;
    if (n === 0 || this._unreportedReceived >= RECEIVED_BATCH) {
      if (this._unreportedReceived > 0) metrics.received.add(this._unreportedReceived, this.tags);
      this._unreportedReceived = 0;
    }
  }

  _dispatch(message) {
    switch (message.type) {
      case MessageType.Invocation: {
        this._countReceived(1);
        const handlers = this._handlers[String(message.target).toLowerCase()] || [];
        for (const handler of handlers) {
          try {
            handler(...(message.arguments || []));
          } catch (error) {
            console.error(`handler of ${message.target} threw: ${error}`);
          }
        }
        break;
      }
      case MessageType.Completion: {
        const settle = this._pending[message.invocationId];
        if (settle) {
          if (message.error !== undefined && message.error !== null) {
            settle(new Error(String(message.error)));
          } else {
            settle(null, message.result);
          }
        }
        break;
      }
      case MessageType.Ping:
        metrics.pings.add(1, this.tags);
        break;
      case MessageType.Close:
        this.closedByServer = true;
        this._abort(message.error ? new Error(`server closed the connection: ${message.error}`) : null);
        break;
      default:
        break; // stream items and unknown types: not used by the scenarios
    }
  }

  /** Starts ending the connection (idempotent); `_finish` completes it. */
  _abort(error) {
    if (this.state === 'closed') return;
    if (error && !this.closeError) this.closeError = error;
    if (this._stopping) return;
    this._stopping = true;
    this._closeTimer = setTimeout(() => this._finish(), this.options.closeTimeoutMs);
    try {
      this._transportClose();
    } catch (_) {
      this._finish();
    }
  }

  /** The transport has closed (or we gave up waiting): settle everything exactly once. */
  _finish(error) {
    if (this.state === 'closed') return;
    if (error && !this.closeError) this.closeError = error;
    if (!this._stopping && !this.closeError) {
      // Nobody asked for this: the server or the network went away without a Close message.
      this.closedByServer = true;
      this.closeError = new Error('the transport closed unexpectedly');
    }
    const wasConnecting = this.state === 'connecting';
    const wasConnected = this.state === 'connected';
    this.state = 'closed';
    this._countReceived(0);
    cancelTimeout(this._connectTimer);
    cancelTimeout(this._closeTimer);
    this._connectTimer = null;
    this._closeTimer = null;
    for (const timer of this._timers) cancelInterval(timer);
    this._timers = [];
    const reason = this.closeError;
    if (wasConnecting) {
      metrics.connectSuccess.add(false, this.tags);
      this._startReject(reason || new Error('closed while connecting'));
    }
    if (wasConnected && reason) metrics.connectionErrors.add(1, this.tags);
    const lost = reason || new Error('connection closed');
    for (const id of Object.keys(this._pending)) this._pending[id](lost);
    for (const handler of this._closeHandlers) {
      try {
        handler(reason);
      } catch (e) {
        console.error(`close handler threw: ${e}`);
      }
    }
    this._resolveClosed(reason);
  }
}

/** SignalR over WebSockets (`k6/experimental/websockets`). */
export class WebSocketConnection extends HubConnection {
  constructor(url, options) {
    super(url, options, 'websockets');
  }

  async _open() {
    let target = this.url;
    if (!this.options.skipNegotiation) {
      const started = Date.now();
      const negotiated = await negotiate(this.url, this.options);
      this.timings.negotiate = Date.now() - started;
      metrics.negotiate.add(this.timings.negotiate, this.tags);
      this.connectionId = negotiated.connectionId;
      const offered = (negotiated.availableTransports || []).some((t) => t.transport === 'WebSockets');
      if (!offered) throw new Error('the server does not offer WebSockets');
      target = withQuery(this.transportUrl(), `id=${encodeURIComponent(negotiated.connectionToken)}`);
    }
    if (this.state !== 'connecting') return; // timed out while negotiating
    this._upgradeStarted = Date.now();
    const ws = new WebSocket(target.replace(/^http/, 'ws'), null, {
      headers: requestHeaders(this.options),
      tags: { ...this.tags, name: splitQuery(this.url)[0].replace(/^http/, 'ws') },
    });
    this._ws = ws;
    ws.onopen = () => this._sendHandshake();
    ws.onmessage = (event) => {
      if (typeof event.data === 'string') {
        this._receive(event.data);
      } else {
        this._abort(new Error('received a binary frame on a JSON connection'));
      }
    };
    ws.onerror = (event) => {
      // k6 may append the JS stack (" at fn (file:///…)") to the Go error's text; keep the reason.
      const detail = event && event.error ? String(event.error).replace(/ at \S+ \(file:[\s\S]*$/, '') : 'unknown error';
      this._abort(new Error(`WebSocket error: ${detail}`));
    };
    ws.onclose = () => this._finish();
  }

  _afterConnect() {
    const { pingIntervalMs, serverTimeoutMs } = this.options;
    const tick = Math.max(100, Math.min(pingIntervalMs, serverTimeoutMs) / 2);
    this._timers.push(
      setInterval(() => {
        if (this.state !== 'connected') return;
        const now = Date.now();
        if (now - this.lastReceived >= serverTimeoutMs) {
          this._abort(new Error(`server timeout: nothing received for ${serverTimeoutMs} ms`));
        } else if (now - this.lastSent >= pingIntervalMs) {
          this._write(PING);
        }
      }, tick),
    );
  }

  _transportWrite(text) {
    if (this._ws && this._ws.readyState === 1) this._ws.send(text);
  }

  _transportClose() {
    if (!this._ws) {
      this._finish();
    } else if (this._ws.readyState === 0 || this._ws.readyState === 1) {
      this._ws.close(1000);
    } else if (this._ws.readyState === 3) {
      this._finish();
    }
  }
}

// k6 cannot cancel a request in flight, so a poll the loop had already sent when stop() was called
// may reach the server after the DELETE and find the connection gone (404), and a DELETE may find it
// already dropped: neither counts in `http_req_failed`. A 404 poll while not stopping still ends the
// connection with an error (`signalr_connection_errors`).
const POLL_STATUSES = http.expectedStatuses(200, 204, 404);
const DELETE_STATUSES = http.expectedStatuses(202, 404);

/** SignalR over long polling (`k6/http` async requests). */
export class LongPollingConnection extends HubConnection {
  constructor(url, options) {
    super(url, options, 'longpolling');
    this._outbox = '';
    this._posting = false;
  }

  _params(extra = {}) {
    const params = {
      headers: requestHeaders(this.options, extra.headers || {}),
      // One `name` per kind of request instead of URLs that carry the connection token.
      tags: { ...this.tags, name: `${splitQuery(this.url)[0]} (${extra.kind})` },
      timeout: extra.timeout || `${this.options.connectTimeoutMs}ms`,
    };
    if (extra.expected) params.responseCallback = extra.expected;
    return params;
  }

  async _open() {
    if (this.options.skipNegotiation) throw new Error('long polling needs negotiate');
    const started = Date.now();
    const negotiated = await negotiate(this.url, this.options);
    this.timings.negotiate = Date.now() - started;
    metrics.negotiate.add(this.timings.negotiate, this.tags);
    this.connectionId = negotiated.connectionId;
    const offered = (negotiated.availableTransports || []).some((t) => t.transport === 'LongPolling');
    if (!offered) throw new Error('the server does not offer long polling');
    this._target = withQuery(this.transportUrl(), `id=${encodeURIComponent(negotiated.connectionToken)}`);
    if (this.state !== 'connecting') return;

    // The first poll only opens the connection: 200 with an empty body, at once.
    this._upgradeStarted = Date.now();
    const first = await this._poll();
    if (this.state !== 'connecting') return;
    if (first.status !== 200) throw new Error(`the first poll failed: ${answer(first)}`);
    this._pollLoop();
    this._sendHandshake();
  }

  _poll() {
    const url = withQuery(this._target, `_=${Date.now()}`);
    return request(
      'GET',
      url,
      null,
      this._params({ kind: 'poll', timeout: `${this.options.pollTimeoutMs}ms`, expected: POLL_STATUSES }),
    );
  }

  async _pollLoop() {
    let failure = null;
    try {
      while (this.state !== 'closed' && !this._stopping) {
        const response = await this._poll();
        if (this.state === 'closed') return;
        metrics.polls.add(1, this.tags);
        if (response.status === 200) {
          if (response.body) this._receive(response.body);
        } else if (this._stopping || response.status === 204) {
          // 204: the connection has ended on the server. While we are stopping, a poll that raced
          // the DELETE may also find the connection gone (404): just as finished.
          break;
        } else {
          failure = new Error(`a poll failed: ${answer(response)}`);
          break;
        }
      }
    } catch (error) {
      failure = error;
    }
    this._finish(failure);
  }

  _transportWrite(text) {
    this._outbox += text;
    if (!this._posting) this._flush();
  }

  /** One POST at a time (keeps order); what is written meanwhile goes out together in the next. */
  async _flush() {
    this._posting = true;
    try {
      while (this._outbox && this.state !== 'closed') {
        const body = this._outbox;
        this._outbox = '';
        const response = await request(
          'POST',
          this._target,
          body,
          this._params({ kind: 'send', headers: { 'Content-Type': 'text/plain;charset=UTF-8' } }),
        );
        if (response.status !== 200) {
          this._abort(new Error(`a send failed: ${answer(response)}`));
          break;
        }
      }
    } catch (error) {
      this._abort(error);
    } finally {
      this._posting = false;
    }
  }

  _transportClose() {
    if (!this._target) {
      this._finish();
      return;
    }
    // 202 closes it; the outstanding poll then ends with 204 and the loop calls _finish. A 404 means
    // the server has already dropped it, which is just as closed.
    request('DELETE', this._target, null, this._params({ kind: 'delete', expected: DELETE_STATUSES }))
      .then((response) => {
        if (response.status !== 202 && response.status !== 404) {
          this._finish(new Error(`DELETE failed: ${answer(response)}`));
        } else if (this.state === 'connecting') {
          this._finish();
        }
      })
      .catch((error) => this._finish(error));
  }
}
