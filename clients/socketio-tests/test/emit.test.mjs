// Server-side emits (docs/socketio.md, "Server-side emits"): what Socket.IO writes as
// `io.to(room).emit(event, data)`, `io.to(user).emit(…)`, `io.except(id).emit(…)` is the HTTP
// API's `publish` / `send` / `send_all` / `send_connection` with `event` and `exclude` (or
// `Node::publish` with an `Emit` in the Rust library). The clients receive the event by its name.

import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  CLIENTS,
  DATA_TRANSPORTS,
  TRANSPORTS,
  TestServer,
  closeAll,
  collect,
  connect,
  emitAck,
  freshChannel,
  nextEvent,
  randomSecret,
  token,
} from "./helpers.mjs";

const secret = randomSecret();
let dev;
let users;
before(async () => {
  dev = await TestServer.start();
  users = await TestServer.start({ jwtSecret: secret, apiKey: randomSecret() });
});
afterEach(async () => {
  await closeAll(dev);
  await closeAll(users);
});
after(async () => {
  await dev?.stop();
  await users?.stop();
});

async function subscribed(socket, channel) {
  const [err, result] = await emitAck(socket, "subscribe", channel);
  assert.equal(err, null, JSON.stringify(err));
  return result;
}

for (const client of CLIENTS) {
  describe(client.name, () => {
    for (const mode of DATA_TRANSPORTS) {
      describe(mode.name, () => {
        test("a server emit to a room arrives as its event, with the channel's position", async () => {
          const socket = await connect(client, dev.url, mode);
          const channel = freshChannel("emit");
          const sub = await subscribed(socket, channel);
          const messages = collect(socket, "message");
          const chat = nextEvent(socket, "chat");
          const position = await dev.api("publish", { channel, event: "chat", data: { text: "hi" } });
          const [data, meta] = await chat;
          assert.deepEqual(data, { text: "hi" });
          assert.deepEqual(
            { channel: meta.channel, offset: meta.offset, epoch: meta.epoch },
            { channel, offset: sub.offset + 1, epoch: sub.epoch },
          );
          assert.deepEqual(position, { offset: meta.offset, epoch: meta.epoch });
          // A publication without a name is a `message`, and it is the only one.
          const plain = nextEvent(socket, "message");
          await dev.publish(channel, "plain");
          assert.equal((await plain)[0], "plain");
          assert.deepEqual(messages.map(([d]) => d), ["plain"]);
          // History keeps the name.
          const [err, page] = await emitAck(socket, "history", { channel });
          assert.equal(err, null, JSON.stringify(err));
          assert.deepEqual(page.publications.map((p) => p.event), ["chat", undefined]);
        });

        test("the built-in publish takes an event name; a reserved one is refused (104)", async () => {
          const publisher = await connect(client, dev.url, mode);
          const subscriber = await connect(client, dev.url, mode);
          const channel = freshChannel("emit");
          const sub = await subscribed(subscriber, channel);
          const typing = nextEvent(subscriber, "typing");
          const [err, position] = await emitAck(publisher, "publish", { channel, event: "typing" }, { who: "ann" });
          assert.equal(err, null, JSON.stringify(err));
          const [data, meta] = await typing;
          assert.deepEqual(data, { who: "ann" });
          assert.deepEqual(
            { channel: meta.channel, offset: meta.offset, epoch: meta.epoch },
            { channel, offset: sub.offset + 1, epoch: sub.epoch },
          );
          assert.equal(position.offset, sub.offset + 1);
          const [refused] = await emitAck(publisher, "publish", { channel, event: "disconnect" }, 1);
          assert.equal(refused.code, 104, JSON.stringify(refused));
        });
      });
    }

    for (const mode of TRANSPORTS) {
      test(`emits to a user's sockets, to everyone but a user, to one connection (${mode.name})`, async () => {
        const alice1 = await connect(client, users.url, { ...mode, token: token(secret, "alice") });
        const alice2 = await connect(client, users.url, { ...mode, token: token(secret, "alice") });
        const bob = await connect(client, users.url, { ...mode, token: token(secret, "bob") });
        const [a1, a2] = [nextEvent(alice1, "dm"), nextEvent(alice2, "dm")];
        await users.api("send", { user: "alice", event: "dm", data: { from: "server" } });
        for (const got of await Promise.all([a1, a2])) {
          assert.deepEqual(got, [{ from: "server" }, { to: "user" }]);
        }

        // `except` a user: alice's sockets skip it; the next broadcast is the first they see.
        const aliceNotices = collect(alice1, "notice");
        const bobNotice = nextEvent(bob, "notice");
        await users.api("send_all", { event: "notice", data: 1, exclude: { users: ["alice"] } });
        assert.deepEqual(await bobNotice, [1, { to: "all" }]);
        const next = nextEvent(alice1, "notice");
        await users.api("send_all", { event: "notice", data: 2 });
        assert.deepEqual(await next, [2, { to: "all" }]);
        assert.deepEqual(aliceNotices.map(([d]) => d), [2]);

        if (client.major === 4) {
          // socket.io-client 4's id is the Plexus connection id: the address of one socket.
          const direct = nextEvent(bob, "direct");
          const result = await users.api("send_connection", { conn: bob.id, event: "direct", data: "only you" });
          assert.deepEqual(result, { delivered: true });
          assert.deepEqual(await direct, ["only you", { to: "connection" }]);
        }
      });
    }
  });
}
