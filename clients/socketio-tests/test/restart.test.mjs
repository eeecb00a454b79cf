// The server goes away and comes back on the same port: the client reports why it lost the
// connection, reconnects by itself, and can subscribe again.

import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  CLIENTS,
  TRANSPORTS,
  TestServer,
  closeAll,
  connect,
  emitAck,
  freshChannel,
  nextEvent,
  transportIs,
} from "./helpers.mjs";

let server;
before(async () => {
  server = await TestServer.start();
});
afterEach(async () => {
  // A test that failed half-way may have left the server stopped.
  if (!server.child) await server.start();
  await closeAll(server);
});
after(() => server?.stop());

for (const client of CLIENTS) {
  describe(client.name, () => {
    for (const mode of TRANSPORTS) {
      test(`server stopped (SIGTERM): disconnect reason "transport close" (${mode.name})`, async () => {
        const socket = await connect(client, server.url, mode);
        const disconnected = nextEvent(socket, "disconnect");
        await server.stop("SIGTERM");
        // What a real Socket.IO 4 server causes here: killed by SIGTERM, or shut down with
        // `io.close()` (socket.io 4.8 closes each socket server-side without a DISCONNECT
        // packet, then the Engine.IO connections), the client's WebSocket closes and
        // socket.io-client reports "transport close", then reconnects. Only a DISCONNECT packet
        // (`io.disconnectSockets()`) gives "io server disconnect", after which the client does
        // not reconnect: wrong for a restart, which Plexus's shutdown (close 4000) announces.
        const [reason] = await disconnected;
        assert.equal(reason, "transport close");
        assert.equal(socket.connected, false);
        await server.start();
      });

      test(`reconnects by itself after a restart and subscribes again (${mode.name})`, async () => {
        const socket = await connect(client, server.url, mode);
        const channel = freshChannel("restart");
        const [err] = await emitAck(socket, "subscribe", channel);
        assert.equal(err, null, JSON.stringify(err));
        const firstId = socket.id;

        const disconnected = nextEvent(socket, "disconnect");
        // v4: the Manager emits `reconnect`; v2: the socket does too (its Manager re-emits it).
        const reconnected = nextEvent(client.reconnectEmitter(socket), "reconnect");
        await server.stop("SIGTERM");
        await disconnected;
        const connectedAgain = nextEvent(socket, "connect");
        await server.start();
        await Promise.all([reconnected, connectedAgain]);
        assert.equal(socket.connected, true);
        assert.equal(typeof socket.id, "string");
        assert.notEqual(socket.id, firstId, "a new connection, a new id");
        await transportIs(socket, mode.final);

        // A restarted in-memory server forgot the room: subscribe again, and it works.
        const [err2, sub] = await emitAck(socket, "subscribe", channel);
        assert.equal(err2, null, JSON.stringify(err2));
        assert.equal(sub.channel, channel);
        const message = nextEvent(socket, "message");
        const published = await server.publish(channel, "after the restart");
        const [data, meta] = await message;
        assert.equal(data, "after the restart");
        assert.equal(meta.offset, published.offset);
      });
    }
  });
}
