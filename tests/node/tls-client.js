'use strict';
// Run by tls.test.js in a process of its own, started with NODE_EXTRA_CA_CERTS naming the test CA (node
// reads it at start only): the official client over https:// and wss://, every transport × protocol.
// Prints one JSON line: {"<transport>/<protocol>": "<echo>" | "error: …"}.
const { MATRIX, buildConnection } = require('./helpers');

(async () => {
  const url = process.argv[2];
  const results = {};
  for (const { transport, protocol } of MATRIX) {
    const connection = buildConnection(`${url}/testhub`, { transport, protocol });
    try {
      await connection.start();
      results[`${transport}/${protocol}`] = await connection.invoke('Echo', `over ${transport}`);
    } catch (error) {
      results[`${transport}/${protocol}`] = `error: ${error.message}`;
    } finally {
      await connection.stop();
    }
  }
  process.stdout.write(`${JSON.stringify(results)}\n`);
})();
