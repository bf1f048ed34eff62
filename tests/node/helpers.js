'use strict';
// Shared helpers: the transport × protocol matrix and connection builders for the official client.
const signalR = require('@microsoft/signalr');
const { MessagePackHubProtocol } = require('@microsoft/signalr-protocol-msgpack');

const TRANSPORTS = ['WebSockets', 'ServerSentEvents', 'LongPolling'];
const PROTOCOLS = ['json', 'messagepack'];

/** Every transport × protocol pair the official client can use (MessagePack needs Binary, SSE is Text only). */
const MATRIX = TRANSPORTS.flatMap((transport) => PROTOCOLS
  .filter((protocol) => !(transport === 'ServerSentEvents' && protocol === 'messagepack'))
  .map((protocol) => ({ transport, protocol })));

function hubProtocol(protocol) {
  if (protocol === 'messagepack') return new MessagePackHubProtocol();
  if (protocol === 'json') return new signalR.JsonHubProtocol();
  throw new Error(`unknown protocol ${protocol}`);
}

/**
 * Builds (does not start) a HubConnection with the official HubConnectionBuilder.
 * `transport` is a transport name or undefined (let the client choose); `options` go to withUrl.
 */
function buildConnection(url, { transport, protocol = 'json', options = {} } = {}) {
  const httpOptions = { ...options };
  if (transport !== undefined) httpOptions.transport = signalR.HttpTransportType[transport];
  return new signalR.HubConnectionBuilder()
    .withUrl(url, httpOptions)
    .withHubProtocol(hubProtocol(protocol))
    .configureLogging(signalR.LogLevel.None)
    .build();
}

/** Rejects when `promise` has not settled within `ms`. */
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A promise with its resolve/reject exposed. */
function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Starts `connection`, runs `body(connection)`, and always stops the connection afterwards. */
async function using(connection, body) {
  try {
    await withTimeout(connection.start(), 10000, 'start()');
    return await body(connection);
  } finally {
    await connection.stop();
  }
}

module.exports = {
  signalR,
  MessagePackHubProtocol,
  TRANSPORTS,
  PROTOCOLS,
  MATRIX,
  buildConnection,
  withTimeout,
  deferred,
  using,
};
