// The reference server: the real chat-service 1.0.0 from npm, configured as `plexus serve --dev`
// serves /chat-service (docs/chat-service.md, "Options"), so that CS_TEST_TARGET=ref checks the
// tests themselves against the system they describe.
//
//   node test/ref-server.mjs --port 8000 [--options '{"historyMaxSize": 1}']
//
// - Options are chat-service's (camelCase); the defaults are Plexus's development mode: rooms
//   management, direct messages and user list updates on, everything else chat-service's own.
// - `onConnect` logs a socket in as its `user` query parameter and rejects a socket without
//   one (`loginRejected` "ChatServiceError: No login provided").
// - `GET /health` answers 200 with `{"connections": N}`, N the open Engine.IO connections, as
//   Plexus's health check does, so the tests can wait until the server released every client.
// - SIGTERM (or SIGINT) calls chat-service's `close()` and exits.

import http from "node:http";
import { parseArgs } from "node:util";
import ChatService from "chat-service";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    options: { type: "string", default: "{}" },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: ref-server.mjs --port N [--options JSON]");
  process.exit(2);
}

const DEV_DEFAULTS = {
  enableRoomsManagement: true,
  enableDirectMessages: true,
  enableUserlistUpdates: true,
};

const httpServer = http.createServer((req, res) => {
  // socket.io answers /socket.io/ itself; everything else arrives here.
  if (req.method === "GET" && req.url === "/health") {
    const connections = service?.io?.engine?.clientsCount ?? 0;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ status: "ok", connections }));
    return;
  }
  res.writeHead(404);
  res.end();
});

// chat-service waits for a hook's callback unless the hook returns a promise: keep it async.
async function onConnect(server, id) {
  const { query } = server.transport.getHandshakeData(id);
  if (!query.user) throw new ChatService.ChatServiceError("noLogin");
  return query.user;
}

const options = {
  ...DEV_DEFAULTS,
  ...JSON.parse(values.options),
  port,
  transportOptions: { http: httpServer },
};
const service = new ChatService(options, { onConnect });

service.once("ready", () => {
  httpServer.listen(port, "127.0.0.1", () => {
    console.error(`chat-service 1.0.0 listening on 127.0.0.1:${port}`);
  });
});
service.once("closed", (error) => {
  if (error) console.error("chat-service closed with an error:", error);
});

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  // A bound on close(): its own closeTimeout is 15 s.
  const force = setTimeout(() => process.exit(1), 5000);
  try {
    await service.close();
  } catch (error) {
    console.error("close:", error);
  }
  httpServer.close();
  clearTimeout(force);
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
