// Connecting: both transport settings, two namespaces over one connection, and the reason a
// client reports when it disconnects itself (docs/socketio.md, "Where it is served" and "The
// mapping onto Plexus").

import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  CLIENTS,
  TRANSPORTS,
  TestServer,
  closeAll,
  connect,
  connected,
  emitAck,
  nextEvent,
  trackManager,
  transportIs,
  until,
} from "./helpers.mjs";

let server;
before(async () => {
  server = await TestServer.start();
});
afterEach(() => closeAll(server));
after(() => server?.stop());

for (const client of CLIENTS) {
  describe(client.name, () => {
    for (const mode of TRANSPORTS) {
      test(`connects (${mode.name}): socket.id set, ends on ${mode.final}`, async () => {
        const socket = await connect(client, server.url, mode);
        assert.equal(socket.connected, true);
        assert.equal(typeof socket.id, "string");
        assert.notEqual(socket.id, "");
        // Not only connected: the connection carries events once on its final transport.
        await transportIs(socket, mode.final);
        assert.deepEqual(await emitAck(socket, "echo", "after connect"), [null, "after connect"]);
      });

      test(`two namespaces over one connection (${mode.name}), each with its own acks`, async () => {
        const manager = trackManager(client.manager(server.url, mode));
        const main = manager.socket("/");
        const second = manager.socket("/second");
        await Promise.all([connected(main), connected(second)]);
        assert.equal(main.io, second.io, "one Manager");
        await transportIs(main, mode.final);
        assert.equal(typeof second.id, "string");
        assert.notEqual(second.id, "");
        // Each namespace's ack comes back to its own socket, with its own value, even when
        // both are in flight at once with the same packet ids.
        const [a, b] = await Promise.all([
          emitAck(main, "echo", { from: "/" }),
          emitAck(second, "echo", { from: "/second" }),
        ]);
        assert.deepEqual(a, [null, { from: "/" }]);
        assert.deepEqual(b, [null, { from: "/second" }]);
        // One Engine.IO connection is one Plexus connection for both namespaces.
        await until(async () => (await server.health()).connections === 1, "one connection");
      });

      test(`subscribe in another namespace than / is refused with 104 (${mode.name})`, async () => {
        const socket = await connect(client, server.url, { ...mode, nsp: "/second" });
        const [err, result] = await emitAck(socket, "subscribe", "not-here");
        assert.equal(err?.code, 104, JSON.stringify(err));
        assert.equal(typeof err.message, "string");
        assert.equal(result, undefined);
      });

      test(`client disconnect: reason "io client disconnect" (${mode.name})`, async () => {
        const socket = await connect(client, server.url, mode);
        const reason = nextEvent(socket, "disconnect");
        socket.disconnect();
        assert.equal((await reason)[0], "io client disconnect");
        assert.equal(socket.connected, false);
        // The server sees the connection go.
        await until(async () => (await server.health()).connections === 0, "no connection left");
      });
    }
  });
}
