'use strict';
// The Socket.IO (node) server of hubcast's benchmark matrix.
//
// Workload: every socket of the main namespace joins room "bench" when it connects; an event
// "publish" whose first argument is a string is emitted as "msg" (that string as the only argument)
// to every socket in "bench", the publisher included. Engine.IO over WebSocket only (no polling),
// no compression.
//
// Settings (environment; see ../README.md and ../PROTOCOL.md):
//   PORT (or the first argument; default 3000), HOST (default 127.0.0.1)
//   REDIS_URL      run as one node of several sharing rooms through @socket.io/redis-adapter;
//                  REDIS_PREFIX names its channels (default "socketio-bench")
//   PING_INTERVAL_MS (25000), PING_TIMEOUT_MS (20000)   the Engine.IO heartbeat
//   MAX_PAYLOAD (1000000 bytes)   maxHttpBufferSize: largest message accepted from a client
// Prints "listening PORT" once the server (and the Redis adapter) is ready.
const http = require('node:http');
const { Server } = require('socket.io');

const ROOM = 'bench';

function setting(name, fallback) {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  // Node timers take at most 2^31-1 ms; a larger delay silently becomes 1 ms.
  if (!Number.isInteger(value) || value <= 0 || value > 2 ** 31 - 1) {
    throw new Error(`${name}: expected a positive integer up to 2147483647, got ${JSON.stringify(text)}`);
  }
  return value;
}

async function redisAdapter(url) {
  const { createClient } = require('redis');
  const { createAdapter } = require('@socket.io/redis-adapter');
  const pub = createClient({ url });
  const sub = pub.duplicate();
  for (const client of [pub, sub]) client.on('error', (error) => console.error('redis:', error.message));
  await Promise.all([pub.connect(), sub.connect()]);
  return createAdapter(pub, sub, { key: process.env.REDIS_PREFIX || 'socketio-bench' });
}

async function main() {
  const port = Number(process.env.PORT || process.argv[2] || 3000);
  const host = process.env.HOST || '127.0.0.1';
  const options = {
    transports: ['websocket'],
    perMessageDeflate: false,
    serveClient: false,
    pingInterval: setting('PING_INTERVAL_MS', 25000),
    pingTimeout: setting('PING_TIMEOUT_MS', 20000),
    maxHttpBufferSize: setting('MAX_PAYLOAD', 1e6),
  };
  if (process.env.REDIS_URL) options.adapter = await redisAdapter(process.env.REDIS_URL);

  const httpServer = http.createServer();
  const io = new Server(httpServer, options);
  io.on('connection', (socket) => {
    socket.join(ROOM);
    socket.on('publish', (payload) => {
      if (typeof payload === 'string') io.to(ROOM).emit('msg', payload);
    });
  });
  httpServer.listen(port, host, () => console.log(`listening ${port}`));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
