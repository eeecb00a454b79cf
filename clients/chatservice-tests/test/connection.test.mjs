// Client connection (chat-service test/connection.js): login, login rejections, several sockets
// per user, shutdown. The cases that need server-side hooks or state (middleware, handshake
// data, onConnect's results and errors, instance sockets) are tested in Rust (README.md).

import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  NAMESPACE,
  TRANSPORTS,
  closeAll,
  connect,
  error,
  login,
  nextEvent,
  startServer,
} from "./helpers.mjs";

afterEach(closeAll);

for (const { name, transports } of TRANSPORTS) {
  describe(`over ${name}`, () => {
    test("should send auth data with an id field", async () => {
      const server = await startServer();
      const socket = await login(server, "user1", { transports });
      const [user, data] = socket.login;
      assert.equal(user, "user1");
      // The id is the client's socket id, `/chat-service#<engine id>`, and the only field.
      assert.deepEqual(data, { id: socket.id });
      assert.ok(socket.id.startsWith(`${NAMESPACE}#`), socket.id);
    });

    test("should support multiple sockets per user", async () => {
      const server = await startServer();
      const socket1 = await login(server, "user1", { transports });
      const echo = nextEvent(socket1, "socketConnectEcho");
      const socket2 = await login(server, "user1", { transports });
      const [id, nconnected] = await echo;
      assert.equal(id, socket2.login[1].id);
      assert.equal(id, socket2.id);
      assert.equal(nconnected, 2);
      const left = nextEvent(socket1, "socketDisconnectEcho");
      socket2.disconnect();
      assert.deepEqual(await left, [socket2.login[1].id, 1]);
    });
  });
}

// chat-service's case starts the service without an onConnect hook; a client cannot do that, so
// this is the same rejection reached the client's way: no user name for onConnect to find.
test("should reject logins without an onConnect hook (here: no user name)", async () => {
  const server = await startServer();
  const socket = connect(server, {});
  const disconnected = nextEvent(socket, "disconnect");
  const [reason] = await nextEvent(socket, "loginRejected");
  assert.equal(reason, error("No login provided"));
  // Then the server disconnects the namespace.
  assert.deepEqual(await disconnected, ["io server disconnect"]);
});

test("should reject user names with illegal characters", async () => {
  const server = await startServer();
  const socket = connect(server, { user: "user}1" });
  const disconnected = nextEvent(socket, "disconnect");
  const [reason] = await nextEvent(socket, "loginRejected");
  assert.equal(reason, error("String user}1 contains invalid characters"));
  assert.deepEqual(await disconnected, ["io server disconnect"]);
});

test("should reject user names with illegal characters (raw error objects)", async () => {
  const server = await startServer({ use_raw_error_objects: true });
  const socket = connect(server, { user: "user:1" });
  const [reason] = await nextEvent(socket, "loginRejected");
  assert.deepEqual(reason, { name: "ChatServiceError", code: "invalidName", args: ["user:1"] });
});

test("should disconnect all users on a server shutdown", async () => {
  const server = await startServer();
  const socket1 = await login(server, "user1");
  const socket2 = await login(server, "user2");
  const disconnected = [nextEvent(socket1, "disconnect"), nextEvent(socket2, "disconnect")];
  await server.stop();
  await Promise.all(disconnected);
});
