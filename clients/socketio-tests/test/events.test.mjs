// Events: an emit with an ack is a command call (`echo`), and the built-in events subscribe and
// publish put Socket.IO rooms on Plexus channels (docs/socketio.md, "The mapping onto Plexus"
// and "Built-in events"). Each case runs over WebSocket, after the upgrade, and over
// long-polling alone (where binary attachments travel differently in EIO 3 and 4).

import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  CLIENTS,
  DATA_TRANSPORTS,
  TestServer,
  bytes,
  closeAll,
  connect,
  emitAck,
  freshChannel,
  nextEvent,
} from "./helpers.mjs";

let server;
before(async () => {
  server = await TestServer.start();
});
afterEach(() => closeAll(server));
after(() => server?.stop());

/** A subscribe ack's result, checked against docs/socketio.md's table. */
function assertSubscribed(ack, channel) {
  const [err, result] = ack;
  assert.equal(err, null, `subscribe failed: ${JSON.stringify(err)}`);
  assert.equal(result.channel, channel);
  assert.ok(Number.isSafeInteger(result.offset) && result.offset >= 0, `offset ${result.offset}`);
  assert.equal(typeof result.epoch, "string");
  assert.notEqual(result.epoch, "");
  return result;
}

const BINARY = Buffer.from([0, 1, 2, 127, 128, 254, 255, 10, 13, 0x1e, 0x3a]);

for (const client of CLIENTS) {
  describe(client.name, () => {
    for (const mode of DATA_TRANSPORTS) {
      describe(mode.name, () => {
        const open = () => connect(client, server.url, mode);

        test("echo with an ack: a string, an object, several arguments, none", async () => {
          const socket = await open();
          assert.deepEqual(await emitAck(socket, "echo", "hello, plexus"), [null, "hello, plexus"]);
          const object = { text: "héllo ✓", n: [1, 2.5, { deep: true }], nothing: null };
          assert.deepEqual(await emitAck(socket, "echo", object), [null, object]);
          // "data = the one argument (an array when several, null when none)".
          assert.deepEqual(await emitAck(socket, "echo", "a", 2), [null, ["a", 2]]);
          assert.deepEqual(await emitAck(socket, "echo"), [null, null]);
        });

        test("echo with an ack: a binary Buffer comes back with the same bytes", async () => {
          const socket = await open();
          const [err, result] = await emitAck(socket, "echo", BINARY);
          assert.equal(err, null, JSON.stringify(err));
          assert.deepEqual(bytes(result), BINARY);
        });

        test("subscribe, then a server publication arrives as `message` (data, meta)", async () => {
          const socket = await open();
          const channel = freshChannel();
          const sub = assertSubscribed(await emitAck(socket, "subscribe", channel), channel);
          const message = nextEvent(socket, "message");
          const published = await server.publish(channel, { text: "from the server" });
          const [data, meta] = await message;
          assert.deepEqual(data, { text: "from the server" });
          assert.equal(meta.channel, channel);
          assert.equal(meta.offset, sub.offset + 1);
          assert.equal(meta.epoch, sub.epoch);
          assert.deepEqual({ offset: meta.offset, epoch: meta.epoch }, published);
          // A later subscriber starts at the channel's current position.
          const late = await open();
          const now = assertSubscribed(await emitAck(late, "subscribe", channel), channel);
          assert.deepEqual({ offset: now.offset, epoch: now.epoch }, published);
        });

        test("publish reaches a second client in the room, text and binary", async () => {
          const publisher = await open();
          const subscriber = await open();
          const channel = freshChannel();
          // The object form of subscribe's argument.
          const sub = assertSubscribed(await emitAck(subscriber, "subscribe", { channel }), channel);

          let message = nextEvent(subscriber, "message");
          const [err, position] = await emitAck(publisher, "publish", channel, { text: "hi" });
          assert.equal(err, null, JSON.stringify(err));
          assert.deepEqual(position, { offset: sub.offset + 1, epoch: sub.epoch });
          let [data, meta] = await message;
          assert.deepEqual(data, { text: "hi" });
          assert.deepEqual(
            { channel: meta.channel, offset: meta.offset, epoch: meta.epoch },
            { channel, ...position },
          );

          message = nextEvent(subscriber, "message");
          const [binErr, binPosition] = await emitAck(publisher, "publish", channel, BINARY);
          assert.equal(binErr, null, JSON.stringify(binErr));
          assert.equal(binPosition.offset, sub.offset + 2);
          [data, meta] = await message;
          assert.deepEqual(bytes(data), BINARY);
          assert.equal(meta.offset, sub.offset + 2);
        });

        test("an unknown event with an ack gets the error (code 103) as the only argument", async () => {
          const socket = await open();
          const ack = await emitAck(socket, "no-such-event", { x: 1 });
          assert.equal(ack.length, 1, `ack arguments: ${JSON.stringify(ack)}`);
          assert.equal(ack[0]?.code, 103, JSON.stringify(ack));
          assert.equal(typeof ack[0].message, "string");
        });

        test("an unknown event without an ack gets `plexus:error` {code, message, event}", async () => {
          const socket = await open();
          const error = nextEvent(socket, "plexus:error");
          socket.emit("no-such-event-either", 1);
          const [payload] = await error;
          assert.equal(payload.code, 103, JSON.stringify(payload));
          assert.equal(typeof payload.message, "string");
          assert.equal(payload.event, "no-such-event-either");
        });
      });
    }
  });
}
