// Parameters validation (chat-service test/validation.js): raw error objects, argument types and
// counts, unknown commands. chat-service's "should have a message validation method" calls the
// server-side `checkArguments` and is tested in Rust (README.md).

import { afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { PLEXUS, closeAll, createRoom, error, login, ok, request, startServer } from "./helpers.mjs";

afterEach(closeAll);

const raw = (code, ...args) => ({ name: "ChatServiceError", code, args });

test("should return raw error objects", async () => {
  const server = await startServer({ use_raw_error_objects: true });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "roomGetAccessList", "room1", "nolist"), [raw("noRoom", "room1"), null]);
  // Each kind of error, as an object: a code and its arguments.
  assert.deepEqual(await request(socket1, "roomCreate"), [raw("wrongArgumentsCount", 2, 0), null]);
  assert.deepEqual(await request(socket1, "roomCreate", null, false), [raw("badArgument", 0, null), null]);
  assert.deepEqual(await request(socket1, "roomCreate", "room}1", false), [raw("invalidName", "room}1"), null]);
  assert.deepEqual(await request(socket1, "directMessage", "user1", { textMessage: "x" }), [raw("notAllowed"), null]);
  await ok(socket1, "roomCreate", "room1", false);
  assert.deepEqual(await request(socket1, "roomCreate", "room1", false), [raw("roomExists", "room1"), null]);
  assert.deepEqual(await request(socket1, "roomMessage", "room1", { textMessage: "x" }), [
    raw("notJoined", "room1"),
    null,
  ]);
});

test("should validate message argument types", async () => {
  const server = await startServer({ enable_rooms_management: true });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "roomCreate", null, false), [
    error("Bad argument at position 0, value null"),
    null,
  ]);
  assert.deepEqual(await request(socket1, "roomCreate", "room1", "yes"), [
    error('Bad argument at position 1, value "yes"'),
    null,
  ]);
  await createRoom(server, "room1", { owner: socket1 });
  await ok(socket1, "roomJoin", "room1");
  // Without a message checker a message is exactly {textMessage: string}.
  assert.deepEqual(await request(socket1, "roomMessage", "room1", "text"), [
    error('Bad argument at position 1, value "text"'),
    null,
  ]);
  assert.deepEqual(await request(socket1, "roomMessage", "room1", { textMessage: "x", extra: 1 }), [
    error('Bad argument at position 1, value {"textMessage":"x","extra":1}'),
    null,
  ]);
  assert.deepEqual(await request(socket1, "roomMessage", "room1", { textMessage: 1 }), [
    error('Bad argument at position 1, value {"textMessage":1}'),
    null,
  ]);
  assert.deepEqual(await request(socket1, "directMessage", "user2", { text: "x" }), [
    error('Bad argument at position 1, value {"text":"x"}'),
    null,
  ]);
  // History ids start at 0, limits at 1.
  assert.deepEqual(await request(socket1, "roomHistoryGet", "room1", -1, 10), [
    error("Bad argument at position 1, value -1"),
    null,
  ]);
  assert.deepEqual(await request(socket1, "roomHistoryGet", "room1", 0, 0), [
    error("Bad argument at position 2, value 0"),
    null,
  ]);
  // Lists of names are arrays of strings.
  assert.deepEqual(await request(socket1, "roomAddToList", "room1", "blacklist", "user2"), [
    error('Bad argument at position 2, value "user2"'),
    null,
  ]);
  assert.deepEqual(await request(socket1, "directAddToList", "blacklist", ["user2", 3]), [
    error('Bad argument at position 1, value ["user2",3]'),
    null,
  ]);
  assert.deepEqual(await request(socket1, "directSetWhitelistMode", "true"), [
    error('Bad argument at position 0, value "true"'),
    null,
  ]);
});

// chat-service's case asks the server-side validator about a command `cmd`. Over the wire
// chat-service binds no handler for an unknown event, so the client never gets an ack (a defect);
// Plexus answers `noCommand` on purpose (docs/chat-service.md, "Commands").
test("should check for unknown commands", async () => {
  const server = await startServer();
  const socket1 = await login(server, "user1");
  let unknownAck;
  socket1.emit("cmd", "room1", (...ack) => {
    unknownAck = ack;
  });
  // A later command's ack: the unknown command's would have come first.
  assert.deepEqual(await request(socket1, "directGetWhitelistMode"), [null, false]);
  if (PLEXUS) {
    assert.deepEqual(unknownAck, [error("No such command cmd"), null]);
  } else {
    assert.equal(unknownAck, undefined);
  }
});

test("should check for unknown commands (raw error objects)", async () => {
  const server = await startServer({ use_raw_error_objects: true });
  const socket1 = await login(server, "user1");
  let unknownAck;
  socket1.emit("roomFrobnicate", (...ack) => {
    unknownAck = ack;
  });
  assert.deepEqual(await request(socket1, "directGetWhitelistMode"), [null, false]);
  if (PLEXUS) {
    assert.deepEqual(unknownAck, [raw("noCommand", "roomFrobnicate"), null]);
  } else {
    assert.equal(unknownAck, undefined);
  }
});

test("should validate a message argument count", async () => {
  const server = await startServer({ enable_rooms_management: true });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "roomCreate"), [error("Expected 2 arguments, got 0"), null]);
  assert.deepEqual(await request(socket1, "roomCreate", "room1"), [error("Expected 2 arguments, got 1"), null]);
  assert.deepEqual(await request(socket1, "roomHistoryGet", "room1", 0), [error("Expected 3 arguments, got 2"), null]);
  assert.deepEqual(await request(socket1, "systemMessage"), [error("Expected 1 arguments, got 0"), null]);
});

// Not a case of validation.js: extra trailing arguments are accepted (chat-service hands them to
// hooks as `restArgs`, as in hooks.js "should store commands additional arguments").
test("should accept extra trailing arguments", async () => {
  const server = await startServer({ enable_rooms_management: true });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "listOwnSockets", true), [null, { [socket1.id]: [] }]);
  assert.deepEqual(await request(socket1, "roomCreate", "room1", false, "extra", 2), [null, null]);
  assert.deepEqual(await request(socket1, "roomJoin", "room1", { more: true }), [null, 1]);
});
