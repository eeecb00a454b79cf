// Room management (chat-service test/roomManagement.js): roomCreate / roomDelete by clients,
// which development mode allows (`enable_rooms_management`).

import { afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { closeAll, createRoom, error, login, nextEvent, ok, request, startServer } from "./helpers.mjs";

afterEach(closeAll);

test("should allow to create and delete rooms", async () => {
  const server = await startServer({ enable_rooms_management: true });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "roomCreate", "room1", false), [null, null]);
  assert.deepEqual(await request(socket1, "roomJoin", "room1"), [null, 1]);
  assert.deepEqual(await request(socket1, "roomCreate", "room1", false), [
    error("Room room1 already exists"),
    null,
  ]);
  const removed = nextEvent(socket1, "roomAccessRemoved");
  assert.deepEqual(await request(socket1, "roomDelete", "room1"), [null, null]);
  assert.deepEqual(await removed, ["room1"]);
  assert.deepEqual(await request(socket1, "roomJoin", "room1"), [error("No such room room1"), null]);
});

test("should be able to delete empty rooms", async () => {
  const server = await startServer({ enable_rooms_management: true });
  const socket1 = await login(server, "user1");
  await ok(socket1, "roomCreate", "room1", false);
  assert.deepEqual(await request(socket1, "roomDelete", "room1"), [null, null]);
  // Gone: a room of that name can be created again.
  assert.deepEqual(await request(socket1, "roomCreate", "room1", false), [null, null]);
});

test("should reject to delete a room for a non-owner", async () => {
  const server = await startServer({ enable_rooms_management: true });
  const socket1 = await login(server, "user1");
  await ok(socket1, "roomCreate", "room1", false);
  const socket2 = await login(server, "user2");
  assert.deepEqual(await request(socket2, "roomDelete", "room1"), [error("Action is not allowed"), null]);
  // Still there.
  assert.deepEqual(await request(socket2, "roomJoin", "room1"), [null, 1]);
});

test("should check for an invalid room names", async () => {
  const server = await startServer({ enable_rooms_management: true });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "roomCreate", "room}1", false), [
    error("String room}1 contains invalid characters"),
    null,
  ]);
  for (const name of ["room:1", "room{1", "room\u00001", "room\u001f1", "room\u007f1", ""]) {
    const [err, result] = await request(socket1, "roomCreate", name, false);
    assert.equal(err, error(`String ${name} contains invalid characters`), JSON.stringify(name));
    assert.equal(result, null);
  }
});

// chat-service's case deletes a room made by the server-side `addRoom`; with management off a
// client cannot make one, so here the deletion names a room that does not exist: the option is
// checked first either way (the existing room's case is tested in Rust).
test("should reject room management when the option is off", async () => {
  const server = await startServer({ enable_rooms_management: false });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "roomCreate", "room1", false), [error("Action is not allowed"), null]);
  assert.deepEqual(await request(socket1, "roomDelete", "room2"), [error("Action is not allowed"), null]);
});

test("should send access removed on a room deletion", async () => {
  const server = await startServer({ enable_rooms_management: true });
  const socket1 = await login(server, "user1");
  await createRoom(server, "room1", { owner: socket1 });
  const socket2 = await login(server, "user2");
  await ok(socket1, "roomJoin", "room1");
  await ok(socket2, "roomJoin", "room1");
  const removed = [nextEvent(socket1, "roomAccessRemoved"), nextEvent(socket2, "roomAccessRemoved")];
  assert.deepEqual(await request(socket1, "roomDelete", "room1"), [null, null]);
  assert.deepEqual(await Promise.all(removed), [["room1"], ["room1"]]);
  // Nobody is in it any more, and it is gone.
  assert.deepEqual(await request(socket2, "roomGetAccessList", "room1", "userlist"), [
    error("No such room room1"),
    null,
  ]);
});
