// Room messaging (chat-service test/roomMessaging.js): join/leave echoes, user lists and their
// notifications, messages, history and its synchronisation, seen info, own sockets, and the
// notification settings. chat-service's cases make their rooms with the server-side `addRoom`;
// here an `owner` user who joins nothing creates them (`createRoom`), which gives the other users
// the same rights. "Trim history on size changes" needs the server-side
// `changeRoomHistoryMaxSize` and is tested in Rust (README.md).

import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  PLEXUS_ONLY,
  TRANSPORTS,
  assertMessage,
  closeAll,
  createRoom,
  ids,
  login,
  logins,
  nextEvent,
  ok,
  record,
  request,
  startServer,
} from "./helpers.mjs";

afterEach(closeAll);

const message = { textMessage: "Test message." };

test("should emit echos to a non-joined user's socket", async () => {
  const server = await startServer();
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  const socket2 = await login(server, "user1");
  const sid2 = socket2.login[1].id;
  const joined = nextEvent(socket1, "roomJoinedEcho");
  assert.deepEqual(await request(socket2, "roomJoin", "room1"), [null, 1]);
  assert.deepEqual(await joined, ["room1", sid2, 1]);
  const left = nextEvent(socket1, "roomLeftEcho");
  assert.deepEqual(await request(socket2, "roomLeave", "room1"), [null, 0]);
  assert.deepEqual(await left, ["room1", sid2, 0]);
});

test("should emit echos to a joined user's socket", async () => {
  const server = await startServer();
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  await ok(socket1, "roomJoin", "room1");
  const socket2 = await login(server, "user1");
  const sid2 = socket2.login[1].id;
  const joined = nextEvent(socket1, "roomJoinedEcho");
  assert.deepEqual(await request(socket2, "roomJoin", "room1"), [null, 2]);
  assert.deepEqual(await joined, ["room1", sid2, 2]);
  const left = nextEvent(socket1, "roomLeftEcho");
  assert.deepEqual(await request(socket2, "roomLeave", "room1"), [null, 1]);
  assert.deepEqual(await left, ["room1", sid2, 1]);
});

test("should emit leave echo on a disconnect", async () => {
  const server = await startServer();
  await createRoom(server, "room1");
  const [socket3, socket1, socket2] = await logins(server, "user1", "user1", "user1");
  const sid1 = socket1.login[1].id;
  const sid2 = socket2.login[1].id;
  await ok(socket1, "roomJoin", "room1");
  await ok(socket2, "roomJoin", "room1");
  const echoes = [nextEvent(socket1, "roomLeftEcho"), nextEvent(socket3, "roomLeftEcho")];
  socket2.disconnect();
  assert.deepEqual(await Promise.all(echoes), [
    ["room1", sid2, 1],
    ["room1", sid2, 1],
  ]);
  const last = nextEvent(socket3, "roomLeftEcho");
  socket1.disconnect();
  assert.deepEqual(await last, ["room1", sid1, 0]);
});

test("should remove disconnected users", async () => {
  const server = await startServer({ enable_userlist_updates: true });
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  await ok(socket1, "roomJoin", "room1");
  const socket2 = await login(server, "user2");
  await ok(socket2, "roomJoin", "room1");
  const left = nextEvent(socket1, "roomUserLeft");
  socket2.disconnect();
  assert.deepEqual(await left, ["room1", "user2"]);
});

test("should echo leaving when socket disconnects", async () => {
  // user2, not joined, leaves: user1's socket gets no leave echo.
  const server = await startServer({ enable_userlist_updates: true });
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  await ok(socket1, "roomJoin", "room1");
  const echoes = record(socket1, "roomLeftEcho");
  const socket2 = await login(server, "user2");
  assert.deepEqual(await request(socket2, "roomLeave", "room1"), [null, 0]);
  // The later event: a second socket of user1 joins and leaves.
  const socket1b = await login(server, "user1");
  await ok(socket1b, "roomJoin", "room1");
  await ok(socket1b, "roomLeave", "room1");
  const before = await echoes.upTo((room, id) => id === socket1b.id);
  assert.deepEqual(before, []);
});

test("should update userlist on join and leave operations", async () => {
  const server = await startServer();
  await createRoom(server, "room1");
  const [socket1, socket2] = await logins(server, "user1", "user2");
  await ok(socket1, "roomJoin", "room1");
  await ok(socket2, "roomJoin", "room1");
  const [err, list] = await request(socket1, "roomGetAccessList", "room1", "userlist");
  assert.equal(err, null);
  assert.deepEqual([...list].sort(), ["user1", "user2"]);
  assert.deepEqual(await request(socket2, "roomLeave", "room1"), [null, 0]);
  assert.deepEqual(await request(socket1, "roomGetAccessList", "room1", "userlist"), [null, ["user1"]]);
});

test("should broadcast join and leave room messages", async () => {
  const server = await startServer({ enable_userlist_updates: true });
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "roomJoin", "room1"), [null, 1]);
  const socket2 = await login(server, "user2");
  const joined = nextEvent(socket1, "roomUserJoined", (room, user) => user === "user2");
  await ok(socket2, "roomJoin", "room1");
  assert.deepEqual(await joined, ["room1", "user2"]);
  const left = nextEvent(socket1, "roomUserLeft");
  await ok(socket2, "roomLeave", "room1");
  assert.deepEqual(await left, ["room1", "user2"]);
});

test("should update userlist on a disconnect", async () => {
  const server = await startServer({ enable_userlist_updates: true });
  await createRoom(server, "room1");
  const [socket1, socket2] = await logins(server, "user1", "user2");
  await ok(socket1, "roomJoin", "room1");
  await ok(socket2, "roomJoin", "room1");
  const list = await ok(socket1, "roomGetAccessList", "room1", "userlist");
  assert.deepEqual([...list].sort(), ["user1", "user2"]);
  const left = nextEvent(socket1, "roomUserLeft");
  socket2.disconnect();
  assert.deepEqual(await left, ["room1", "user2"]);
  assert.deepEqual(await request(socket1, "roomGetAccessList", "room1", "userlist"), [null, ["user1"]]);
});

test("should store and send a room history", async () => {
  const server = await startServer();
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  await ok(socket1, "roomJoin", "room1");
  const [err, id] = await request(socket1, "roomMessage", "room1", message);
  assert.equal(err, null);
  assert.equal(id, 1);
  const history = await ok(socket1, "roomRecentHistory", "room1");
  assert.equal(history.length, 1);
  assertMessage(history[0], { textMessage: message.textMessage, author: "user1", id: 1 });
});

for (const { name, transports } of TRANSPORTS) {
  describe(`over ${name}`, () => {
    test("should send room messages to all joined users", async () => {
      const server = await startServer();
      await createRoom(server, "room1");
      const socket1 = await login(server, "user1", { transports });
      const socket2 = await login(server, "user2", { transports });
      await ok(socket1, "roomJoin", "room1");
      await ok(socket2, "roomJoin", "room1");
      const received = [nextEvent(socket1, "roomMessage"), nextEvent(socket2, "roomMessage")];
      assert.deepEqual(await request(socket1, "roomMessage", "room1", message), [null, 1]);
      const [[room1, msg1], [room2, msg2]] = await Promise.all(received);
      assert.equal(room1, "room1");
      assert.equal(room2, "room1");
      assertMessage(msg1, { textMessage: message.textMessage, author: "user1", id: 1 });
      // Everyone gets the same message, the sender included.
      assert.deepEqual(msg2, msg1);
      const history = await ok(socket2, "roomRecentHistory", "room1");
      assert.deepEqual(history, [msg1]);
    });
  });
}

test("should drop a history if the limit is zero", async () => {
  const server = await startServer({ history_max_size: 0 });
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  await ok(socket1, "roomJoin", "room1");
  assert.deepEqual(await request(socket1, "roomMessage", "room1", message), [null, 1]);
  assert.deepEqual(await request(socket1, "roomRecentHistory", "room1"), [null, []]);
});

test("should not send a history if the limit is zero", async () => {
  const server = await startServer({ history_max_get_messages: 0 });
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  await ok(socket1, "roomJoin", "room1");
  await ok(socket1, "roomMessage", "room1", message);
  assert.deepEqual(await request(socket1, "roomRecentHistory", "room1"), [null, []]);
  assert.deepEqual(await request(socket1, "roomHistoryGet", "room1", 0, 10), [null, []]);
});

test("should send a room history maximum size", async () => {
  const server = await startServer({ history_max_size: 1000 });
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  await ok(socket1, "roomJoin", "room1");
  const info = await ok(socket1, "roomHistoryInfo", "room1");
  assert.equal(info.historyMaxSize, 1000);
  assert.deepEqual(info, { historySize: 0, historyMaxSize: 1000, historyMaxGetMessages: 100, lastMessageId: 0 });
});

test("should truncate a long history", async () => {
  const server = await startServer({ history_max_size: 1 });
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  await ok(socket1, "roomJoin", "room1");
  assert.deepEqual(await request(socket1, "roomMessage", "room1", { textMessage: "Test message 1." }), [null, 1]);
  assert.deepEqual(await request(socket1, "roomMessage", "room1", { textMessage: "Test message 2." }), [null, 2]);
  const history = await ok(socket1, "roomRecentHistory", "room1");
  assert.equal(history.length, 1);
  assertMessage(history[0], { textMessage: "Test message 2.", author: "user1", id: 2 });
});

/** A room with `n` messages from user1, who stays joined. */
async function roomWithMessages(server, n) {
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  await ok(socket1, "roomJoin", "room1");
  for (let i = 1; i <= n; i++) {
    assert.deepEqual(await request(socket1, "roomMessage", "room1", message), [null, i]);
  }
  return socket1;
}

test("should support a history synchronisation", async () => {
  const server = await startServer();
  const socket1 = await roomWithMessages(server, 2);
  const all = await ok(socket1, "roomHistoryGet", "room1", 0, 10);
  assert.deepEqual(ids(all), [2, 1]);
  assertMessage(all[0], { textMessage: message.textMessage, author: "user1", id: 2 });
  assert.deepEqual(ids(await ok(socket1, "roomHistoryGet", "room1", 1, 10)), [2]);
  assert.deepEqual(await request(socket1, "roomHistoryGet", "room1", 2, 10), [null, []]);
});

test("should sync a history with respect to the limit", async () => {
  const server = await startServer({ history_max_get_messages: 2 });
  const socket1 = await roomWithMessages(server, 3);
  assert.deepEqual(ids(await ok(socket1, "roomHistoryGet", "room1", 0, 10)), [2, 1]);
  assert.deepEqual(ids(await ok(socket1, "roomHistoryGet", "room1", 1, 10)), [3, 2]);
  assert.deepEqual(ids(await ok(socket1, "roomHistoryGet", "room1", 2, 10)), [3]);
  assert.deepEqual(await request(socket1, "roomHistoryGet", "room1", 3, 10), [null, []]);
  // The recent history is the newest `history_max_get_messages`.
  assert.deepEqual(ids(await ok(socket1, "roomRecentHistory", "room1")), [3, 2]);
});

test("should sync a history with respect to a history size", async () => {
  const server = await startServer({ history_max_size: 2 });
  const socket1 = await roomWithMessages(server, 3);
  assert.deepEqual(ids(await ok(socket1, "roomHistoryGet", "room1", 0, 10)), [3, 2]);
  assert.deepEqual(ids(await ok(socket1, "roomHistoryGet", "room1", 1, 10)), [3, 2]);
  assert.deepEqual(ids(await ok(socket1, "roomHistoryGet", "room1", 2, 10)), [3]);
  assert.deepEqual(await request(socket1, "roomHistoryGet", "room1", 3, 10), [null, []]);
});

test("should send and update a room sync info", async () => {
  const server = await startServer();
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  await ok(socket1, "roomJoin", "room1");
  assert.deepEqual(await request(socket1, "roomHistoryInfo", "room1"), [
    null,
    { historySize: 0, historyMaxSize: 10000, historyMaxGetMessages: 100, lastMessageId: 0 },
  ]);
  await ok(socket1, "roomMessage", "room1", message);
  assert.deepEqual(await request(socket1, "roomHistoryInfo", "room1"), [
    null,
    { historySize: 1, historyMaxSize: 10000, historyMaxGetMessages: 100, lastMessageId: 1 },
  ]);
});

test("should get and update an user seen info", async () => {
  const server = await startServer();
  await createRoom(server, "room1");
  const start = Date.now();
  const [socket1, socket2] = await logins(server, "user1", "user2");
  await ok(socket1, "roomJoin", "room1");
  await ok(socket2, "roomJoin", "room1");
  const info1 = await ok(socket1, "roomUserSeen", "room1", "user2");
  assert.deepEqual(Object.keys(info1).sort(), ["joined", "timestamp"]);
  assert.equal(info1.joined, true);
  assert.ok(Number.isSafeInteger(info1.timestamp), `timestamp ${info1.timestamp}`);
  assert.ok(info1.timestamp >= start && info1.timestamp <= Date.now(), `timestamp ${info1.timestamp}`);
  await ok(socket2, "roomLeave", "room1");
  const info2 = await ok(socket1, "roomUserSeen", "room1", "user2");
  assert.deepEqual(Object.keys(info2).sort(), ["joined", "timestamp"]);
  assert.equal(info2.joined, false);
  assert.ok(Number.isSafeInteger(info2.timestamp), `timestamp ${info2.timestamp}`);
  assert.ok(info2.timestamp >= info1.timestamp && info2.timestamp <= Date.now(), `timestamp ${info2.timestamp}`);
});

test("should send an empty seen info for unseen users", async () => {
  const server = await startServer();
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  await ok(socket1, "roomJoin", "room1");
  assert.deepEqual(await request(socket1, "roomUserSeen", "room1", "user2"), [
    null,
    { joined: false, timestamp: null },
  ]);
});

test("should include info in users' sockets lists", async () => {
  const server = await startServer();
  const owner = await createRoom(server, "room1");
  await createRoom(server, "room2", { owner });
  const [socket1, socket2, socket3] = await logins(server, "user1", "user1", "user1");
  await ok(socket1, "roomJoin", "room1");
  await ok(socket1, "roomJoin", "room2");
  await ok(socket2, "roomJoin", "room1");
  const [err, sockets] = await request(socket2, "listOwnSockets");
  assert.equal(err, null);
  for (const list of Object.values(sockets)) list.sort();
  assert.deepEqual(sockets, {
    [socket1.id]: ["room1", "room2"],
    [socket2.id]: ["room1"],
    [socket3.id]: [],
  });
});

test("should send notifications configuration info", async () => {
  for (const [userlist, accessLists] of [
    [true, false],
    [false, true],
  ]) {
    const server = await startServer({
      enable_userlist_updates: userlist,
      enable_access_lists_updates: accessLists,
    });
    await createRoom(server, "room1");
    const socket1 = await login(server, "user1");
    await ok(socket1, "roomJoin", "room1");
    assert.deepEqual(await request(socket1, "roomNotificationsInfo", "room1"), [
      null,
      { enableUserlistUpdates: userlist, enableAccessListsUpdates: accessLists },
    ]);
    await closeAll();
  }
});

test("should not send notifications on duplicate joins", async () => {
  const server = await startServer({ enable_userlist_updates: true });
  await createRoom(server, "room1");
  const [socket1, socket3, socket4] = await logins(server, "user1", "user2", "user3");
  await ok(socket1, "roomJoin", "room1");
  await ok(socket3, "roomJoin", "room1");
  const joins = record(socket3, "roomUserJoined");
  assert.deepEqual(await request(socket1, "roomJoin", "room1"), [null, 1]);
  // The later event: user3 joins.
  await ok(socket4, "roomJoin", "room1");
  const before = await joins.upTo((room, user) => user === "user3");
  assert.deepEqual(before.filter(([, user]) => user === "user1"), []);
});

test("should not send notifications on non-joined leave", async () => {
  const server = await startServer({ enable_userlist_updates: true });
  await createRoom(server, "room1");
  const [socket2, socket3, socket4] = await logins(server, "user1", "user2", "user3");
  await ok(socket3, "roomJoin", "room1");
  const leaves = record(socket3, "roomUserLeft");
  assert.deepEqual(await request(socket2, "roomLeave", "room1"), [null, 0]);
  // The later event: user3 joins and leaves.
  await ok(socket4, "roomJoin", "room1");
  await ok(socket4, "roomLeave", "room1");
  const before = await leaves.upTo((room, user) => user === "user3");
  assert.deepEqual(before, []);
});

// A deliberate difference (docs/chat-service.md, "Commands"): Plexus runs one socket's commands
// in order; chat-service runs them concurrently, so there a message sent right after a join
// without waiting for its ack fails with "Not joined to room room1" — most of the time, not
// always, which is why the case is skipped for the reference rather than inverted.
test("should run a socket's commands in order", { skip: PLEXUS_ONLY }, async () => {
  const server = await startServer();
  await createRoom(server, "room1");
  const socket1 = await login(server, "user1");
  const acks = await Promise.all([
    request(socket1, "roomJoin", "room1"),
    request(socket1, "roomMessage", "room1", message),
    request(socket1, "roomMessage", "room1", message),
    request(socket1, "roomMessage", "room1", message),
    request(socket1, "roomLeave", "room1"),
  ]);
  assert.deepEqual(acks, [
    [null, 1],
    [null, 1],
    [null, 2],
    [null, 3],
    [null, 0],
  ]);
});
