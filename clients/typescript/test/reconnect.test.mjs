// Reconnects, recovery and the offline queue against a real `plexus serve` that the tests stop,
// kill and start again on the same port.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { PlexusServer, closeClients, collect, freePort, makeClient, next, sleep, until } from "./helpers.mjs";

let server;
before(async () => {
  server = await PlexusServer.start();
});
after(async () => {
  await closeClients();
  await server.stop();
});

let unique = 0;
const channel = (name) => `${name}-${process.pid}-${++unique}`;

test("a subscription restored after a reconnect recovers what was published meanwhile", async () => {
  const ch = channel("recover");
  // A long first delay leaves time to publish while `a` is away.
  const a = makeClient(server.url, { backoff: { minDelayMs: 600, maxDelayMs: 1000 } });
  const b = makeClient(server.url);
  await a.connect();
  await b.connect();
  const sub = a.subscribe(ch);
  const seen = collect(sub, "publication");
  const subscribed = collect(sub, "subscribed");
  await sub.ready;
  await b.publish(ch, { n: 1 });
  await b.publish(ch, { n: 2 });
  await until(() => seen.length === 2, "two live publications");
  const lost = next(a, "disconnected");
  a.reconnect();
  assert.equal((await lost).willReconnect, true);
  assert.equal(a.state, "connecting");
  for (let n = 3; n <= 5; n++) await b.publish(ch, { n });
  assert.equal(a.state, "connecting", "published while a was away");
  const restored = await next(sub, "subscribed", (e) => e.resubscribed);
  assert.equal(restored.recovered, true);
  assert.equal(restored.missed, 3);
  assert.equal(restored.reason, undefined);
  await until(() => seen.length === 5, "the three missed publications");
  await b.publish(ch, { n: 6 });
  await until(() => seen.length === 6, "a live publication after the recovery");
  assert.deepEqual(seen.map((p) => p.data.n), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(seen.map((p) => p.offset), [1, 2, 3, 4, 5, 6]);
  assert.equal(subscribed.length, 2);
  assert.equal(sub.position.offset, 6);
  await Promise.all([a.disconnect(), b.disconnect()]);
});

test("after a graceful restart (4000) the epoch changed: recovered false, and history has what was published after", async () => {
  const ch = channel("restart");
  const a = makeClient(server.url);
  await a.connect();
  const sub = a.subscribe(ch);
  const seen = collect(sub, "publication");
  const first = await sub.ready;
  await a.publish(ch, { text: "before" });
  await until(() => seen.length === 1, "the publication before the restart");
  const lost = next(a, "disconnected");
  const restored = next(sub, "subscribed", (e) => e.resubscribed);
  const reconnected = next(a, "connected", (e) => e.reconnected);
  await server.stop("SIGTERM");
  const disconnected = await lost;
  assert.equal(disconnected.code, 4000);
  assert.equal(disconnected.willReconnect, true);
  await server.start();
  const b = makeClient(server.url);
  await b.connect();
  await b.publish(ch, { text: "after" });
  await reconnected;
  const event = await restored;
  assert.equal(event.recovered, false);
  assert.equal(event.reason, "epoch_changed");
  assert.notEqual(event.position.epoch, first.position.epoch);
  // The application is told, and loads what it needs from history.
  const page = await sub.history({ limit: 10 });
  assert.deepEqual(page.publications.map((p) => p.data.text), ["after"]);
  await b.publish(ch, { text: "live" });
  await until(() => seen.some((p) => p.data.text === "live"), "a live publication in the new epoch");
  await Promise.all([a.disconnect(), b.disconnect()]);
});

test("a crashed server (1006) is reconnected to, and subscriptions come back", async () => {
  const ch = channel("crash");
  const a = makeClient(server.url);
  await a.connect();
  const sub = a.subscribe(ch);
  const seen = collect(sub, "publication");
  await sub.ready;
  const lost = next(a, "disconnected");
  const failures = collect(a, "connectFailed");
  await server.stop("SIGKILL");
  const disconnected = await lost;
  assert.equal(disconnected.code, 1006);
  assert.equal(disconnected.willReconnect, true);
  await until(() => failures.length >= 2, "failed attempts while the server is down");
  const reconnected = next(a, "connected");
  const restored = next(sub, "subscribed");
  await server.start();
  assert.equal((await reconnected).reconnected, true);
  await restored;
  await a.publish(ch, { after: "crash" });
  await until(() => seen.length === 1, "a publication after the crash");
  await a.disconnect();
});

test("requests made while disconnected wait in the queue, each until its own timeout", async () => {
  const a = makeClient(server.url, { maxQueuedRequests: 3 });
  await a.connect();
  const lost = next(a, "disconnected");
  await server.stop("SIGKILL");
  await lost;
  const waiting = a.call("echo", "queued");
  const short = a.call("echo", "short", { timeoutMs: 100 }).catch((e) => e);
  const fast = await a.call("echo", "fast", { failFast: true }).catch((e) => e);
  assert.equal(fast.kind, "disconnected");
  assert.equal((await short).kind, "timeout");
  const second = a.call("echo", "second");
  const third = a.publish(channel("q"), "third");
  const full = await a.call("echo", "one too many").catch((e) => e);
  assert.equal(full.kind, "queue_full");
  await sleep(100);
  await server.start();
  assert.equal(await waiting, "queued");
  assert.equal(await second, "second");
  assert.equal((await third).offset, 1);
  await a.disconnect();
});

test("disconnect() closes with 1000, fails what waits, ends subscriptions, and never reconnects", async () => {
  const a = makeClient(server.url);
  await a.connect();
  const sub = a.subscribe(channel("bye"));
  await sub.ready;
  const events = collect(a, "disconnected");
  const ended = next(sub, "unsubscribed");
  await a.disconnect();
  assert.equal(a.state, "closed");
  assert.deepEqual(events, [{ code: 1000, reason: "client disconnect", willReconnect: false }]);
  assert.equal((await ended).reason, "client_closed");
  assert.ok(sub.ended);
  const call = await a.call("echo", 1).catch((e) => e);
  assert.equal(call.kind, "closed");
  assert.equal(call.closeCode, 1000);
  assert.throws(() => a.subscribe("again"), (e) => e.kind === "closed");
  await a.disconnect(); // twice is fine
  const connecting = collect(a, "connecting");
  await server.restart();
  await sleep(300);
  assert.deepEqual(connecting, []);
  assert.equal(a.state, "closed");
});

test("disconnect() while reconnecting stops at once", async () => {
  const a = makeClient(server.url, { backoff: { minDelayMs: 200, maxDelayMs: 400 } });
  await a.connect();
  const lost = next(a, "disconnected");
  await server.stop("SIGKILL");
  await lost;
  const waiting = a.call("echo", 1).catch((e) => e);
  await a.disconnect();
  assert.equal((await waiting).kind, "closed");
  await server.start();
  await sleep(500);
  assert.equal(a.state, "closed");
});

test("connect() does not retry the first attempt; start() does", async () => {
  const port = await freePort();
  const url = `ws://127.0.0.1:${port}/ws`;
  const once = makeClient(url);
  const error = await once.connect().catch((e) => e);
  assert.equal(error.kind, "connect");
  assert.equal(once.state, "closed");

  const retrying = makeClient(url);
  const failures = collect(retrying, "connectFailed");
  retrying.start();
  const queued = retrying.call("echo", "waited");
  await until(() => failures.length >= 2, "two failed attempts");
  const late = new PlexusServer(port);
  await late.start();
  try {
    await retrying.waitConnected();
    assert.equal(await queued, "waited");
    await retrying.disconnect();
  } finally {
    await late.stop();
  }
});

test("backoff gives up after maxAttempts consecutive failures", async () => {
  const url = `ws://127.0.0.1:${await freePort()}/ws`;
  const client = makeClient(url, { backoff: { minDelayMs: 10, maxDelayMs: 20, maxAttempts: 3 } });
  const gaveUp = next(client, "gaveUp");
  const failures = collect(client, "connectFailed");
  client.start();
  const event = await gaveUp;
  assert.equal(event.attempts, 3);
  assert.equal(event.error.kind, "connect");
  assert.equal(failures.length, 3);
  assert.equal(client.state, "closed");
});
