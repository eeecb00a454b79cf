// `@cryb/mesa`'s Node Client (1.5.8) against `plexus serve --dev` at /mesa: Mesa's own test
// cases (seeds-protocols §1.5), authentication and its close, op 0 both ways, the HTTP API,
// sync across a reconnect, online state per connection, DISCONNECT_CLIENT.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { TestServer, MesaClient, Message, plain } from "./helpers.mjs";

const server = await new TestServer().start();
const clients = [];
after(async () => {
  for (const c of clients) c.close();
  await server.stop();
});

async function client() {
  const c = await new MesaClient(server.url).connect();
  clients.push(c);
  return c;
}

test("a client connects, authenticates, and gets its user object (op 22)", async () => {
  const c = await client();
  const user = await c.authenticate({ token: "alice" });
  assert.deepEqual(user, { id: "alice" });
  assert.equal(c.client.authenticated, true);
});

test("a client's op 0 reaches the command named by its type, answered in kind", async () => {
  const c = await client();
  await c.authenticate({ token: "bob" });
  // Mesa's "can recieve a message from a client": Message(0, {x: 1, y: 2}, 'TEST'); here the
  // type names development mode's `echo` command.
  c.client.send(new Message(0, { x: 1, y: 2 }, "echo"));
  assert.deepEqual(plain(await c.next()), { opcode: 0, data: { x: 1, y: 2 }, type: "echo" });
  // A type no command handles is answered, not dropped silently.
  c.client.send(new Message(0, { x: 1 }, "TEST"));
  const refused = plain(await c.next());
  assert.equal(refused.type, "PLEXUS_ERROR");
  assert.equal(refused.data.code, 103);
});

test("a message sent with the HTTP API reaches the user's client", async () => {
  const c = await client();
  await c.authenticate({ token: "carol" });
  const report = await server.api("mesa_dispatch", {
    recipients: ["carol"],
    t: "NEW_MESSAGE",
    d: { text: "hello from HTTP" },
  });
  assert.deepEqual(report, { delivered: 1, stored: 0, dropped: 0 });
  assert.deepEqual(plain(await c.next()), {
    opcode: 0,
    data: { text: "hello from HTTP" },
    type: "NEW_MESSAGE",
  });
});

test("a global message reaches every client, exclusions honoured", async () => {
  const a = await client();
  const b = await client();
  await a.authenticate({ token: "dan" });
  await b.authenticate({ token: "eve" });
  await server.api("mesa_dispatch", { recipients: ["*"], excluding: ["eve"], t: "GLOBAL", d: { a: 1 } });
  await server.api("mesa_dispatch", { t: "GLOBAL", d: { a: 2 } });
  assert.deepEqual(plain(await a.next()), { opcode: 0, data: { a: 1 }, type: "GLOBAL" });
  assert.deepEqual(plain(await a.next()), { opcode: 0, data: { a: 2 }, type: "GLOBAL" });
  // eve's first message is the second one: the first excluded her.
  assert.deepEqual(plain(await b.next()), { opcode: 0, data: { a: 2 }, type: "GLOBAL" });
});

test("authentication without a user id closes with 1008", async () => {
  const c = await client();
  c.client.authenticate({}).catch(() => {});
  assert.equal((await c.closed()).code, 1008);
});

test("sync: messages to an offline user come after it authenticates again, s = 1..n", async () => {
  const first = await client();
  await first.authenticate({ token: "frank" });
  await server.closeClient(first);
  await server.api("mesa_dispatch", { recipients: ["frank"], t: "A", d: { n: 1 } });
  await server.api("mesa_dispatch", { recipients: ["frank"], t: "B", d: { n: 2 } });
  // `o.sync: false` is never kept.
  const volatile = await server.api("mesa_dispatch", { recipients: ["frank"], t: "TYPING", d: {}, sync: false });
  assert.deepEqual(volatile, { delivered: 0, stored: 0, dropped: 1 });
  const again = await client();
  await again.authenticate({ token: "frank" });
  assert.deepEqual(plain(await again.next()), { opcode: 0, data: { n: 1 }, type: "A", sequence: 1 });
  assert.deepEqual(plain(await again.next()), { opcode: 0, data: { n: 2 }, type: "B", sequence: 2 });
});

test("sync: shouldSync false drops what was kept", async () => {
  await server.api("mesa_dispatch", { recipients: ["gina"], t: "OLD", d: {} });
  const c = await client();
  await c.authenticate({ token: "gina" }, { shouldSync: false });
  await server.api("mesa_dispatch", { recipients: ["gina"], t: "NEW", d: {} });
  assert.equal((await c.next()).type, "NEW");
});

test("online state is per connection: one of two connections closing keeps the user online", async () => {
  const a = await client();
  const b = await client();
  await a.authenticate({ token: "hal" });
  await b.authenticate({ token: "hal" });
  a.close();
  await a.closed();
  const report = await server.api("mesa_dispatch", { recipients: ["hal"], t: "STILL", d: {} });
  assert.deepEqual(report, { delivered: 1, stored: 0, dropped: 0 });
  assert.equal((await b.next()).type, "STILL");
});

test("DISCONNECT_CLIENT (mesa_disconnect) closes with 1000", async () => {
  const c = await client();
  await c.authenticate({ token: "ivy" });
  await server.api("mesa_disconnect", { recipients: ["ivy"] });
  assert.equal((await c.closed()).code, 1000);
});
