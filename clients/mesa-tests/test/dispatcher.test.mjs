// `@cryb/mesa`'s Dispatcher (1.5.8), run in another Node process, reaches Mesa clients on two
// `plexus serve` nodes sharing one Redis: users, everyone, DISCONNECT_CLIENT. Mesa's format on
// the `ws[_namespace]` channel (seeds-protocols §1.2). Needs Redis: runs with MESA_ENGINE=redis.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { ENGINE, TestServer, MesaClient, plain, withTimeout } from "./helpers.mjs";

const skip = ENGINE === "redis" ? false : "needs Redis (MESA_ENGINE=redis)";
const here = path.dirname(fileURLToPath(import.meta.url));

const nodes = [];
const clients = [];
after(async () => {
  for (const c of clients) c.close();
  for (const n of nodes) await n.stop();
});

async function dispatch(server, namespace, items) {
  const child = spawn(process.execPath, [path.join(here, "dispatch.mjs"), server.redisUrl, namespace, JSON.stringify(items)], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  const [code] = await withTimeout(once(child, "exit"), "the dispatcher process");
  assert.equal(code, 0);
}

async function login(server, user) {
  const c = await new MesaClient(server.url).connect();
  clients.push(c);
  await c.authenticate({ token: user });
  return c;
}

for (const namespace of ["-", "app"]) {
  test(`the Dispatcher reaches users on both nodes (namespace ${namespace})`, { skip }, async () => {
    const settings = namespace === "-" ? {} : { "mesa.namespace": namespace };
    const group = `ns${namespace === "-" ? "none" : namespace}`;
    const a = await new TestServer(settings, { group }).start();
    const b = await new TestServer(settings, { group }).start();
    nodes.push(a, b);
    const mo1 = await login(a, "mo");
    const mo2 = await login(b, "mo");
    const nat = await login(b, "nat");
    await dispatch(a, namespace, [
      { message: { op: 0, d: { a: 1 }, t: "T" }, recipients: ["mo"] },
      { message: { op: 0, d: { all: true }, t: "ALL" }, recipients: ["*"] },
    ]);
    assert.deepEqual(plain(await mo1.next()), { opcode: 0, data: { a: 1 }, type: "T" });
    assert.deepEqual(plain(await mo2.next()), { opcode: 0, data: { a: 1 }, type: "T" });
    // nat's first message is the global one: the first was not for it.
    assert.deepEqual(plain(await nat.next()), { opcode: 0, data: { all: true }, type: "ALL" });
    assert.equal((await mo1.next()).type, "ALL");
    await dispatch(a, namespace, [{ event: "DISCONNECT_CLIENT", recipients: ["nat"] }]);
    assert.equal((await nat.closed()).code, 1000);
  });
}
