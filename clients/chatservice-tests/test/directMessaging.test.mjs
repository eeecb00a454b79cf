// Direct messaging (chat-service test/directMessaging.js): direct messages, the option, self and
// offline recipients, and the echoes of direct and system messages to the user's other sockets.

import { afterEach, test } from "node:test";
import assert from "node:assert/strict";
import {
  assertMessage,
  closeAll,
  createRoom,
  error,
  login,
  logins,
  nextEvent,
  ok,
  request,
  startServer,
} from "./helpers.mjs";

afterEach(closeAll);

const message = { textMessage: "Test message." };
const DIRECT_KEYS = ["author", "textMessage", "timestamp"];

test("should send direct messages", async () => {
  const server = await startServer({ enable_direct_messages: true });
  const [socket1, socket2] = await logins(server, "user1", "user2");
  const received = nextEvent(socket2, "directMessage");
  const [err, sent] = await request(socket1, "directMessage", "user2", message);
  assert.equal(err, null);
  assertMessage(sent, { textMessage: message.textMessage, author: "user1" }, DIRECT_KEYS);
  const [msg] = await received;
  assertMessage(msg, { textMessage: message.textMessage, author: "user1" }, DIRECT_KEYS);
  // The recipient gets what the sender's ack returned.
  assert.deepEqual(msg, sent);
});

test("should not send direct messages when the option is off", async () => {
  const server = await startServer({ enable_direct_messages: false });
  const [socket1] = await logins(server, "user1", "user2");
  assert.deepEqual(await request(socket1, "directMessage", "user2", message), [error("Action is not allowed"), null]);
});

test("should not send self-direct messages", async () => {
  const server = await startServer({ enable_direct_messages: true });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "directMessage", "user1", message), [error("Action is not allowed"), null]);
});

test("should not send direct messages to offline users", async () => {
  const server = await startServer({ enable_direct_messages: true });
  // user1 learns that user2 went away from the user list of a room they share.
  const socket1 = await login(server, "user1");
  await createRoom(server, "room1", { owner: socket1 });
  await ok(socket1, "roomJoin", "room1");
  const socket2 = await login(server, "user2");
  await ok(socket2, "roomJoin", "room1");
  const left = nextEvent(socket1, "roomUserLeft");
  socket2.disconnect();
  assert.deepEqual(await left, ["room1", "user2"]);
  assert.deepEqual(await request(socket1, "directMessage", "user2", message), [
    error("No such user online user2"),
    null,
  ]);
});

// Not one of chat-service's cases: its behaviour for a user it has never seen (seeds-protocols.md
// §2.1, "Corrections").
test("should not send direct messages to unknown users", async () => {
  const server = await startServer({ enable_direct_messages: true });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "directMessage", "user9", message), [error("No such user user9"), null]);
});

test("should echo direct messages to all user's sockets", async () => {
  const server = await startServer({ enable_direct_messages: true });
  const [socket1, socket3, socket2] = await logins(server, "user1", "user1", "user2");
  const echoed = nextEvent(socket3, "directMessageEcho");
  const received = nextEvent(socket2, "directMessage");
  const sent = await ok(socket1, "directMessage", "user2", message);
  const [user, msg] = await echoed;
  assert.equal(user, "user2");
  assertMessage(msg, { textMessage: message.textMessage, author: "user1" }, DIRECT_KEYS);
  assert.deepEqual(msg, sent);
  assert.deepEqual(await received, [sent]);
});

test("should echo system messages to all user's sockets", async () => {
  const server = await startServer();
  const [socket1, socket2] = await logins(server, "user1", "user1");
  const data = "some data.";
  const echoed = nextEvent(socket2, "systemMessage");
  assert.deepEqual(await request(socket1, "systemMessage", data), [null, null]);
  assert.deepEqual(await echoed, [data]);
});

// Not one of chat-service's cases: a system message is any value, binary included (socket.io's
// binary attachments, which chat-service passes through).
test("should echo binary system messages", async () => {
  const server = await startServer();
  const [socket1, socket2] = await logins(server, "user1", "user1");
  const data = { note: "bytes", data: Buffer.from([0, 1, 2, 127, 128, 255]) };
  const echoed = nextEvent(socket2, "systemMessage");
  assert.deepEqual(await request(socket1, "systemMessage", data), [null, null]);
  const [got] = await echoed;
  assert.equal(got.note, "bytes");
  assert.ok(Buffer.isBuffer(got.data), `not a Buffer: ${JSON.stringify(got.data)}`);
  assert.deepEqual(got.data, data.data);
});
