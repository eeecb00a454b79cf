// Direct permissions (chat-service test/directPermissions.js): a user's own blacklist,
// whitelist and whitelist-only mode for direct messages, and the list size limit.

import { afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { closeAll, error, login, logins, request, startServer } from "./helpers.mjs";

afterEach(closeAll);

const message = { textMessage: "Test message." };
const notAllowed = [error("Action is not allowed"), null];

test("should check user permissions", async () => {
  const server = await startServer({ enable_direct_messages: true });
  const [socket1, socket2] = await logins(server, "user1", "user2");
  assert.deepEqual(await request(socket2, "directAddToList", "blacklist", ["user1"]), [null, null]);
  assert.deepEqual(await request(socket1, "directMessage", "user2", message), notAllowed);
});

test("should check user permissions in whitelist mode", async () => {
  const server = await startServer({ enable_direct_messages: true });
  const [socket1, socket2, socket3] = await logins(server, "user1", "user2", "user3");
  assert.deepEqual(await request(socket2, "directAddToList", "whitelist", ["user1"]), [null, null]);
  assert.deepEqual(await request(socket2, "directSetWhitelistMode", true), [null, null]);
  const [err, sent] = await request(socket1, "directMessage", "user2", message);
  assert.equal(err, null);
  assert.equal(sent.textMessage, message.textMessage);
  // Not on the whitelist.
  assert.deepEqual(await request(socket3, "directMessage", "user2", message), notAllowed);
  assert.deepEqual(await request(socket2, "directRemoveFromList", "whitelist", ["user1"]), [null, null]);
  assert.deepEqual(await request(socket1, "directMessage", "user2", message), notAllowed);
});

test("should allow an user to modify own lists", async () => {
  const server = await startServer({ enable_direct_messages: true });
  const socket1 = await login(server, "user1");
  for (const list of ["blacklist", "whitelist"]) {
    assert.deepEqual(await request(socket1, "directAddToList", list, ["user2"]), [null, null]);
    assert.deepEqual(await request(socket1, "directGetAccessList", list), [null, ["user2"]]);
    assert.deepEqual(await request(socket1, "directRemoveFromList", list, ["user2"]), [null, null]);
    assert.deepEqual(await request(socket1, "directGetAccessList", list), [null, []]);
  }
});

test("should reject to add self to lists", async () => {
  const server = await startServer({ enable_direct_messages: true });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "directAddToList", "blacklist", ["user1"]), notAllowed);
  assert.deepEqual(await request(socket1, "directAddToList", "whitelist", ["user2", "user1"]), notAllowed);
  assert.deepEqual(await request(socket1, "directGetAccessList", "whitelist"), [null, []]);
});

test("should check user list names", async () => {
  const server = await startServer({ enable_direct_messages: true });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "directAddToList", "nolist", ["user2"]), [error("No such list nolist"), null]);
  assert.deepEqual(await request(socket1, "directGetAccessList", "nolist"), [error("No such list nolist"), null]);
});

test("should allow duplicate adding to lists", async () => {
  const server = await startServer({ enable_direct_messages: true });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "directAddToList", "blacklist", ["user2"]), [null, null]);
  assert.deepEqual(await request(socket1, "directAddToList", "blacklist", ["user2"]), [null, null]);
  assert.deepEqual(await request(socket1, "directGetAccessList", "blacklist"), [null, ["user2"]]);
});

test("should allow deleting non-existing items from lists", async () => {
  const server = await startServer({ enable_direct_messages: true });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "directRemoveFromList", "blacklist", ["user2"]), [null, null]);
});

test("should allow an user to modify own mode", async () => {
  const server = await startServer({ enable_direct_messages: true });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "directGetWhitelistMode"), [null, false]);
  assert.deepEqual(await request(socket1, "directSetWhitelistMode", true), [null, null]);
  assert.deepEqual(await request(socket1, "directGetWhitelistMode"), [null, true]);
});

test("should honour direct list size limit", async () => {
  const server = await startServer({ enable_direct_messages: true, direct_list_size_limit: 1 });
  const socket1 = await login(server, "user1");
  assert.deepEqual(await request(socket1, "directAddToList", "blacklist", ["user2", "user3"]), [
    error("Exceeded blacklist size limit"),
    null,
  ]);
  // The limit counts the members already there too.
  assert.deepEqual(await request(socket1, "directAddToList", "blacklist", ["user2"]), [null, null]);
  assert.deepEqual(await request(socket1, "directAddToList", "blacklist", ["user3"]), [
    error("Exceeded blacklist size limit"),
    null,
  ]);
});
