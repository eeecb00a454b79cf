// `mesa-js-client` (1.4.8, the browser client; Node gets the `ws` package as its global
// WebSocket) against `plexus serve --dev` at /mesa: the hello's rules, CLIENT_VERSION when
// versions are enforced, authentication, messages, heartbeats answered, and its reconnect after
// a server-side close.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { TestServer, withTimeout, until } from "./helpers.mjs";

globalThis.WebSocket = WebSocket;
const { default: MesaJsClient } = await import("mesa-js-client");

const server = await new TestServer({
  "mesa.enforce_version": "1.5.3",
  "mesa.reconnect_interval_ms": 100,
  "client.ping_interval_ms": 100,
}).start();
const clients = [];
after(async () => {
  for (const c of clients) c.disconnect();
  await server.stop();
});

function jsClient() {
  const c = new MesaJsClient(server.url, { autoConnect: false });
  c.received = [];
  c.closes = [];
  c.onMessage = (m) => c.received.push(m);
  c.onDisconnected = (code) => c.closes.push(code);
  c.onError = () => {};
  clients.push(c);
  return c;
}

test("connects with the enforced version, authenticates, receives messages", async () => {
  const c = jsClient();
  await withTimeout(c.connect(), "connect");
  // The hello came with `enforce_equal_versions`: the client sent its hard-coded 1.5.3, which
  // this server enforces, so it stays connected and authenticates.
  await until(() => c.rules.length > 0, "the hello");
  assert.deepEqual(c.rules, ["enforce_equal_versions", "sends_user_object"]);
  const user = await withTimeout(c.authenticate({ token: "jo" }), "op 22");
  assert.deepEqual(user, { id: "jo" });
  await server.api("mesa_dispatch", { recipients: ["jo"], t: "NEW_MESSAGE", d: { text: "hi" } });
  await until(() => c.received.length > 0, "the message");
  assert.deepEqual(c.received[0], { opcode: 0, data: { text: "hi" }, type: "NEW_MESSAGE" });
});

test("heartbeats are answered: five op 1 later the connection still takes messages", async () => {
  const c = jsClient();
  let acks = 0;
  const send = c.send.bind(c);
  c.send = (op, d, t) => {
    if (op === 11) acks += 1;
    send(op, d, t);
  };
  await withTimeout(c.connect(), "connect");
  await withTimeout(c.authenticate({ token: "kim" }), "op 22");
  // Each op 1 was answered with op 11; two unanswered ones in a row would have closed it (4002).
  await until(() => acks >= 5, "five heartbeats");
  await server.api("mesa_dispatch", { recipients: ["kim"], t: "ALIVE", d: {} });
  await until(() => c.received.length > 0, "the message");
  assert.equal(c.received[0].type, "ALIVE");
  assert.deepEqual(c.closes, []);
});

test("a server-side close makes it reconnect; it authenticates again and gets what was kept", async () => {
  const c = jsClient();
  await withTimeout(c.connect(), "connect");
  await withTimeout(c.authenticate({ token: "lee" }), "op 22");
  await server.api("mesa_disconnect", { recipients: ["lee"] });
  await until(() => c.closes.length > 0, "the close");
  assert.equal(c.closes[0], 1000);
  await until(() => c.ws && c.ws.readyState === WebSocket.OPEN, "the automatic reconnect");
  // Back, not authenticated yet: lee is offline, so the message is kept. (Until the server has
  // let the old connection go, a dispatch may still reach it and be lost with it: dispatch
  // until one is kept.)
  await until(async () => {
    const report = await server.api("mesa_dispatch", { recipients: ["lee"], t: "WHILE_AWAY", d: {} });
    return report.stored === 1;
  }, "a kept message");
  await withTimeout(c.authenticate({ token: "lee" }), "op 22 again");
  await until(() => c.received.length > 0, "the kept message");
  assert.deepEqual(c.received[0], { opcode: 0, data: {}, type: "WHILE_AWAY", sequence: 1 });
});
