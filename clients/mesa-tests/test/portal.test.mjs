// Mesa's Portals on Plexus: client events handed to workers. At least once (`portals = "queue"`,
// on the engine's work queue — memory or Redis Streams): a worker process killed mid-stream
// loses no event, another worker gets what it held. And Mesa's own format on Redis
// (`portals = "mesa"`): the real `@cryb/mesa` `Portal` class receives the events of two nodes
// (needs MESA_ENGINE=redis).

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import mesa from "@cryb/mesa";
import { ENGINE, TestServer, MesaClient, Message, redisUrl, until, withTimeout } from "./helpers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const servers = [];
const clients = [];
const children = [];
after(async () => {
  for (const c of clients) c.close();
  for (const child of children) child.kill("SIGKILL");
  for (const s of servers) await s.stop();
});

/** A worker process; `lines` collects what it printed. */
function worker(server, name, mode) {
  const child = spawn(process.execPath, [path.join(here, "worker.mjs"), server.http, name, mode, "5"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  const lines = [];
  createInterface({ input: child.stdout }).on("line", (line) => lines.push(JSON.parse(line)));
  return { child, lines };
}

const texts = (batches, key) =>
  batches.flatMap((b) => b[key] ?? []).filter((e) => e.event.type === "message").map((e) => e.event.message.d.n);

test("a portal worker killed mid-stream loses no event: another gets what it held", async () => {
  const server = await new TestServer({
    "mesa.portals": "queue",
    "mesa.portal_lease_ms": 300,
  }).start();
  servers.push(server);
  const dying = worker(server, "dying", "hold-second");
  const c = await new MesaClient(server.url).connect();
  clients.push(c);
  await c.authenticate({ token: "pat" });
  for (let n = 0; n < 20; n++) c.client.send(new Message(0, { n }, "CHAT"));
  // The first worker acknowledged a batch and holds the next one: kill it there.
  await until(() => dying.lines.some((l) => l.held), "the worker to hold a batch");
  dying.child.kill("SIGKILL");
  await once(dying.child, "exit");
  const held = texts(dying.lines, "held");
  assert.ok(dying.lines.some((l) => l.acked), "it acknowledged a batch first");
  const live = worker(server, "live", "ack");
  const done = texts(dying.lines, "acked");
  await until(() => {
    const all = new Set([...done, ...texts(live.lines, "acked")]);
    return all.size === 20;
  }, "every message acknowledged by a worker");
  // What the dead worker held came to the live one, as redelivered.
  const redelivered = live.lines
    .flatMap((b) => b.acked)
    .filter((e) => e.event.type === "message" && held.includes(e.event.message.d.n));
  assert.equal(redelivered.length, held.length);
  assert.ok(redelivered.every((e) => e.redeliveries >= 1));
  // The events of the connection itself are there too, with the user's id.
  const kinds = [...dying.lines, ...live.lines].flatMap((b) => b.acked ?? b.held).map((e) => e.event.type);
  assert.ok(kinds.includes("connection") && kinds.includes("authentication"));
});

test("the real @cryb/mesa Portal receives client events (Mesa's format on Redis)", { skip: ENGINE === "redis" ? false : "needs Redis (MESA_ENGINE=redis)" }, async () => {
  const url = await redisUrl();
  const namespace = `p${process.pid}`;
  const portal = new mesa.Portal(url, { namespace });
  const events = [];
  for (const type of ["connection", "authentication", "disconnection"]) {
    portal.on(type, (clientId) => events.push([type, clientId ?? null]));
  }
  portal.on("message", (m, clientId) => events.push(["message", clientId, m.opcode, m.type, m.data]));
  try {
    // The portal is in the pool before the server starts (it reads the pool at startup).
    await until(async () => (await portal.redis.smembers(`available_portals_pool_${namespace}`)).includes(portal.id), "the portal to register");
    // Two nodes of one system, each handing its clients' events to the portal.
    const settings = { "mesa.portals": "mesa", "mesa.namespace": namespace };
    const a = await new TestServer(settings, { redis: true, group: "portal" }).start();
    const b = await new TestServer(settings, { redis: true, group: "portal" }).start();
    servers.push(a, b);
    const c = await new MesaClient(a.url).connect();
    clients.push(c);
    await c.authenticate({ token: "ada" });
    c.client.send(new Message(0, { hello: "portal" }, "CHAT"));
    await a.closeClient(c);
    await until(() => events.length >= 4, "four portal events");
    assert.deepEqual(events.splice(0), [
      ["connection", null],
      ["authentication", "ada"],
      ["message", "ada", 0, "CHAT", { hello: "portal" }],
      ["disconnection", "ada"],
    ]);
    const d = await new MesaClient(b.url).connect();
    clients.push(d);
    await d.authenticate({ token: "bo" });
    await until(() => events.length >= 2, "the second node's events");
    assert.deepEqual(events, [
      ["connection", null],
      ["authentication", "bo"],
    ]);
  } finally {
    await withTimeout(Promise.all([portal.redis.quit(), portal.publisher.quit(), portal.subscriber.quit()]), "the portal to quit");
  }
});
