// A room shared with a native client, in both directions (docs/socketio.md: "rooms are Plexus
// channels"). The native side is this repository's TypeScript client (clients/typescript,
// built to dist/ with its own `npm ci && npm run build`) over the native protocol at /ws.
// Plexus only: the reference server has no native protocol.

import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import {
  CLIENTS,
  PLEXUS_ONLY,
  TRANSPORTS,
  TestServer,
  WAIT_MS,
  bytes,
  closeAll,
  collect,
  connect,
  emitAck,
  freshChannel,
  until,
} from "./helpers.mjs";

const { Client } = PLEXUS_ONLY ? {} : await import("../../typescript/dist/index.js");

let server;
const natives = new Set();
before(async () => {
  if (!PLEXUS_ONLY) server = await TestServer.start();
});
afterEach(async () => {
  await Promise.all([...natives].map((c) => c.disconnect()));
  natives.clear();
  await closeAll(server);
});
after(() => server?.stop());

async function nativeClient() {
  const client = new Client({ url: server.wsUrl, WebSocket, requestTimeoutMs: WAIT_MS });
  natives.add(client);
  await client.connect();
  return client;
}

const BINARY = Buffer.from([0, 255, 1, 254, 0x1e, 10]);

for (const client of CLIENTS) {
  describe(client.name, () => {
    for (const mode of TRANSPORTS) {
      test(`native and Socket.IO publications meet in one channel, consecutive offsets (${mode.name})`, { skip: PLEXUS_ONLY }, async () => {
        const channel = freshChannel("shared");
        const socket = await connect(client, server.url, mode);
        const [err, subscribed] = await emitAck(socket, "subscribe", channel);
        assert.equal(err, null, JSON.stringify(err));
        const messages = collect(socket, "message");

        const native = await nativeClient();
        const sub = native.subscribe(channel);
        const publications = [];
        sub.on("publication", (p) => publications.push(p));
        await sub.ready;

        const base = subscribed.offset;
        const epoch = subscribed.epoch;
        // Alternating sides, each waiting for its answer: offsets base+1 … base+4.
        assert.deepEqual(await native.publish(channel, { from: "native" }), { offset: base + 1, epoch });
        assert.deepEqual(await emitAck(socket, "publish", channel, { from: "socket.io" }), [
          null,
          { offset: base + 2, epoch },
        ]);
        assert.deepEqual(await native.publish(channel, new Uint8Array(BINARY)), { offset: base + 3, epoch });
        assert.deepEqual(await emitAck(socket, "publish", channel, BINARY), [
          null,
          { offset: base + 4, epoch },
        ]);

        await until(() => messages.length >= 4 && publications.length >= 4, "four publications on each side");

        // The Socket.IO client got all four as `message`, in offset order.
        assert.deepEqual(
          messages.map(([, meta]) => [meta.channel, meta.offset, meta.epoch]),
          [1, 2, 3, 4].map((i) => [channel, base + i, epoch]),
        );
        assert.deepEqual(messages[0][0], { from: "native" });
        assert.deepEqual(messages[1][0], { from: "socket.io" });
        assert.deepEqual(bytes(messages[2][0]), BINARY);
        assert.deepEqual(bytes(messages[3][0]), BINARY);

        // The native subscriber got the same four, with the same offsets.
        assert.deepEqual(
          publications.map((p) => [p.channel, p.offset, p.epoch]),
          [1, 2, 3, 4].map((i) => [channel, base + i, epoch]),
        );
        assert.deepEqual(publications[0].data, { from: "native" });
        assert.deepEqual(publications[1].data, { from: "socket.io" });
        assert.deepEqual(bytes(publications[2].binary), BINARY);
        assert.deepEqual(bytes(publications[3].binary), BINARY);
        assert.equal(messages.length, 4);
        assert.equal(publications.length, 4);
      });
    }
  });
}
