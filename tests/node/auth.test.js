'use strict';
// Authentication with the official client: bearer tokens from accessTokenFactory (header, or the
// access_token query parameter where the transport cannot send headers) on /authorizedhub, and the
// exact error a client without a token gets.
const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('./server');
const { MATRIX, buildConnection, using } = require('./helpers');

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

const tokenFactory = () => async () => (await fetch(`${server.url}/generateJwtToken`)).text();

for (const { transport, protocol } of MATRIX) {
  describe(`${transport} + ${protocol}`, () => {
    test('a token from accessTokenFactory authorizes the hub', async () => {
      const connection = buildConnection(`${server.url}/authorizedhub`, {
        transport, protocol, options: { accessTokenFactory: tokenFactory() },
      });
      await using(connection, async () => {
        assert.equal(await connection.invoke('Echo', 'authorized'), 'authorized');
      });
    });

    test('no token: negotiate answers 401 and start() says so', async () => {
      const connection = buildConnection(`${server.url}/authorizedhub`, { transport, protocol });
      await assert.rejects(connection.start(), {
        message: "Failed to complete negotiation with the server: Error: Unauthorized: Status code '401'",
      });
    });

    test('a forged token is refused like no token', async () => {
      const connection = buildConnection(`${server.url}/authorizedhub`, {
        transport, protocol, options: { accessTokenFactory: () => 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl' },
      });
      await assert.rejects(connection.start(), /Unauthorized: Status code '401'/);
    });
  });
}

test('the token is required on the transport requests too, not only on negotiate', async () => {
  const token = await tokenFactory()();
  const negotiate = await fetch(`${server.url}/authorizedhub/negotiate?negotiateVersion=1`, {
    method: 'POST', headers: { Authorization: `Bearer ${token}` },
  });
  assert.equal(negotiate.status, 200);
  const { connectionToken } = await negotiate.json();
  const poll = await fetch(`${server.url}/authorizedhub?id=${connectionToken}`);
  assert.equal(poll.status, 401);
  assert.equal(await poll.text(), '');
  const authorized = await fetch(`${server.url}/authorizedhub?id=${connectionToken}&access_token=${token}`);
  assert.equal(authorized.status, 200);
});
