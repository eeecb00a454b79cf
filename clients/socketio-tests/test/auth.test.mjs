// Authentication with a JWT, as for native clients (docs/socketio.md: v4 `auth.token`, v2 the
// handshake query `?token=`). The server runs with a configuration: anonymous connections off,
// an HMAC secret, Socket.IO on, every channel for authenticated users.

import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  CLIENTS,
  TRANSPORTS,
  TestServer,
  closeAll,
  connect,
  emitAck,
  nextEvent,
  randomSecret,
  token,
  track,
} from "./helpers.mjs";

const secret = randomSecret();
let server;
before(async () => {
  server = await TestServer.start({ jwtSecret: secret });
});
afterEach(() => closeAll(server));
after(() => server?.stop());

/**
 * Waits for the refusal each client reports: v4 emits `connect_error` with an Error built from
 * the CONNECT_ERROR packet (`message`, and `data` = the packet's `data`); v2 emits `error` with
 * the ERROR packet's data, a string (socket.io-client 2.5.0 `Socket#onpacket`, `case
 * parser.ERROR: this.emit('error', packet.data)`), and does not reconnect.
 */
async function refusal(client, socket) {
  if (client.major === 4) {
    const [err] = await nextEvent(socket, "connect_error");
    assert.ok(err instanceof Error);
    assert.equal(typeof err.message, "string");
    assert.notEqual(err.message, "");
    // docs/socketio.md: CONNECT_ERROR {"message", "data": {"code"}}; a bad token is 112
    // auth_failed for every client (docs/configuration.md, "What a client sees…").
    assert.equal(err.data?.code, 112, `data: ${JSON.stringify(err.data)}`);
  } else {
    const [message] = await nextEvent(socket, "error");
    // docs/socketio.md: ERROR "message" (protocol v4).
    assert.equal(typeof message, "string", `error: ${JSON.stringify(message)}`);
    assert.notEqual(message, "");
  }
  assert.equal(socket.connected, false);
}

for (const client of CLIENTS) {
  describe(client.name, () => {
    for (const mode of TRANSPORTS) {
      test(`a valid token is accepted (${mode.name})`, async () => {
        const socket = await connect(client, server.url, { ...mode, token: token(secret, "alice") });
        assert.equal(typeof socket.id, "string");
        assert.notEqual(socket.id, "");
        // The connection is alice's: channels open to authenticated users only accept her.
        const [err, sub] = await emitAck(socket, "subscribe", "members-only");
        assert.equal(err, null, JSON.stringify(err));
        assert.equal(sub.channel, "members-only");
      });

      test(`a token signed with another secret is refused (${mode.name})`, async () => {
        const forged = token(randomSecret(), "mallory");
        const socket = track(client.socket(server.url, { ...mode, token: forged }));
        await refusal(client, socket);
      });

      test(`no token is refused (${mode.name})`, async () => {
        const socket = track(client.socket(server.url, mode));
        await refusal(client, socket);
      });
    }
  });
}
