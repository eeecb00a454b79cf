// The client against a real `plexus serve` (development mode), in both encodings: connect,
// calls and their errors, publish/subscribe, history, presence, metadata, limits.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode, PlexusError } from "../dist/index.js";
import { PlexusServer, closeClients, collect, makeClient, next, until } from "./helpers.mjs";

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

for (const encoding of ["json", "msgpack"]) {
  describe(`${encoding} encoding`, () => {
    test("connects anonymously and reports the connection and the server's limits", async () => {
      const client = makeClient(server.url, { encoding });
      const states = collect(client, "state");
      const connected = next(client, "connected");
      const info = await client.connect();
      assert.ok(info.conn.length > 0);
      assert.ok(info.node.length > 0);
      assert.equal(info.user, undefined);
      assert.equal(info.pingIntervalMs, 25000);
      assert.equal(info.maxMissedPongs, 2);
      assert.equal(info.limits.maxMessageBytes, 65536);
      assert.equal(info.limits.maxPendingRequests, 64);
      assert.deepEqual(await connected, { reconnected: false, info });
      assert.equal(client.state, "connected");
      assert.deepEqual(client.info, info);
      await client.disconnect();
      assert.deepEqual(states, ["connecting", "connected", "closed"]);
      assert.equal(client.info, undefined);
    });

    test("call returns the handler's JSON or binary answer", async () => {
      const client = makeClient(server.url, { encoding });
      await client.connect();
      assert.deepEqual(await client.call("echo", { x: [1, "two", null], y: 1.5 }), { x: [1, "two", null], y: 1.5 });
      assert.equal(await client.call("echo", null), null);
      assert.equal(await client.call("echo"), null);
      const bytes = await client.call("echo", new Uint8Array([0, 1, 2, 255]));
      assert.ok(bytes instanceof Uint8Array);
      assert.deepEqual([...bytes], [0, 1, 2, 255]);
      await client.disconnect();
    });

    test("server errors are typed errors with the protocol's codes", async () => {
      const client = makeClient(server.url, { encoding });
      await client.connect();
      const unknown = await client.call("no.such.method").catch((e) => e);
      assert.ok(unknown instanceof PlexusError);
      assert.equal(unknown.kind, "server");
      assert.equal(unknown.code, ErrorCode.METHOD_NOT_FOUND);
      assert.equal(unknown.isTransient(), false);
      const badChannel = await client.publish("", { x: 1 }).catch((e) => e);
      assert.equal(badChannel.code, ErrorCode.BAD_CHANNEL);
      // Durable messages belong to users; an anonymous connection cannot acknowledge.
      const ack = await client.ack(1).catch((e) => e);
      assert.equal(ack.code, ErrorCode.UNAUTHORIZED);
      const sub = client.subscribe("\u0001bad");
      const refused = await sub.ready.catch((e) => e);
      assert.equal(refused.code, ErrorCode.BAD_CHANNEL);
      assert.ok(sub.ended);
      assert.equal(client.getSubscription("\u0001bad"), undefined);
      // The connection goes on.
      assert.equal(await client.call("echo", 7), 7);
      await client.disconnect();
    });

    test("a request larger than the server's max_message_bytes is refused locally", async () => {
      const client = makeClient(server.url, { encoding });
      await client.connect();
      const big = "x".repeat(70_000);
      const error = await client.publish(channel("big"), big).catch((e) => e);
      assert.equal(error.kind, "too_large");
      assert.equal(await client.call("echo", "still connected"), "still connected");
      await client.disconnect();
    });

    test("subscribe, publish, and publications in offset order with their publisher", async () => {
      const ch = channel("pubsub");
      const a = makeClient(server.url, { encoding });
      const b = makeClient(server.url, { encoding });
      await a.connect();
      const bInfo = await b.connect();
      const sub = a.subscribe(ch);
      const seen = collect(sub, "publication");
      const ready = await sub.ready;
      assert.deepEqual(ready.position.offset, 0);
      assert.equal(ready.resubscribed, false);
      assert.equal(ready.recovered, undefined);
      assert.ok(sub.active);
      const positions = [];
      for (let i = 1; i <= 20; i++) positions.push(await b.publish(ch, { i }));
      assert.deepEqual(positions.map((p) => p.offset), Array.from({ length: 20 }, (_, i) => i + 1));
      await b.publish(ch, new Uint8Array([9, 8, 7]), { event: "bytes" });
      await until(() => seen.length === 21, "21 publications");
      assert.equal(seen[20].event, "bytes");
      assert.equal(seen[19].event, undefined);
      assert.deepEqual(seen.map((p) => p.offset), Array.from({ length: 21 }, (_, i) => i + 1));
      assert.deepEqual(seen[0].data, { i: 1 });
      assert.equal(seen[0].epoch, ready.position.epoch);
      assert.equal(seen[0].publisher.conn, bInfo.conn);
      assert.deepEqual([...seen[20].binary], [9, 8, 7]);
      assert.deepEqual(sub.position, { offset: 21, epoch: ready.position.epoch });
      assert.throws(() => a.subscribe(ch), (e) => e.kind === "already_subscribed" && e.code === ErrorCode.ALREADY_SUBSCRIBED);
      const ended = next(sub, "unsubscribed");
      await sub.unsubscribe();
      assert.deepEqual(await ended, { channel: ch, reason: "client" });
      await b.publish(ch, { after: true });
      assert.equal(await a.call("echo", 1), 1); // a round trip later, nothing more arrived
      assert.equal(seen.length, 21);
      await a.unsubscribe(ch); // unsubscribing twice is fine
      await Promise.all([a.disconnect(), b.disconnect()]);
    });

    test("history on subscribe, and history reads with since, limit and reverse", async () => {
      const ch = channel("history");
      const client = makeClient(server.url, { encoding });
      await client.connect();
      for (let i = 1; i <= 8; i++) await client.publish(ch, { i });
      const sub = client.subscribe(ch, { history: 3 });
      const ready = await sub.ready;
      assert.deepEqual(ready.history.map((p) => p.data.i), [6, 7, 8]);
      assert.equal(ready.position.offset, 8);
      const all = await client.history(ch);
      assert.deepEqual(all.publications.map((p) => p.offset), [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.equal(all.offset, 8);
      assert.equal(all.epoch, ready.position.epoch);
      const since = await sub.history({ since: 5, limit: 2 });
      assert.deepEqual(since.publications.map((p) => p.offset), [6, 7]);
      const newest = await client.history(ch, { limit: 2, reverse: true });
      assert.deepEqual(newest.publications.map((p) => p.offset), [8, 7]);
      await client.disconnect();
    });

    test("presence: members with state, stats, and join, leave and state events", async () => {
      const ch = channel("presence");
      const a = makeClient(server.url, { encoding });
      const b = makeClient(server.url, { encoding });
      const aInfo = await a.connect();
      const bInfo = await b.connect();
      const sa = a.subscribe(ch);
      await sa.ready;
      await sa.setPresenceState({ name: "ann" });
      const joined = next(sa, "join", (e) => e.conn === bInfo.conn);
      const clientJoined = next(a, "join", (e) => e.conn === bInfo.conn);
      const sb = b.subscribe(ch);
      await sb.ready;
      assert.deepEqual(await joined, { channel: ch, conn: bInfo.conn });
      await clientJoined;
      const named = next(sa, "presenceState", (e) => e.conn === bInfo.conn);
      await sb.setPresenceState({ name: "bob" });
      assert.deepEqual((await named).state, { name: "bob" });
      const members = await sa.presence();
      const byConn = Object.fromEntries(members.map((m) => [m.conn, m]));
      assert.deepEqual(Object.keys(byConn).sort(), [aInfo.conn, bInfo.conn].sort());
      assert.deepEqual(byConn[aInfo.conn].state, { name: "ann" });
      assert.deepEqual(byConn[bInfo.conn].state, { name: "bob" });
      assert.deepEqual(await a.presenceStats(ch), { connections: 2, users: 0 });
      const cleared = next(sa, "presenceState", (e) => e.conn === bInfo.conn);
      await sb.setPresenceState(null);
      assert.equal((await cleared).state, undefined);
      const left = next(sa, "leave", (e) => e.conn === bInfo.conn);
      await sb.unsubscribe();
      assert.deepEqual(await left, { channel: ch, conn: bInfo.conn });
      assert.deepEqual(await sa.presenceStats(), { connections: 1, users: 0 });
      assert.deepEqual(await a.lastSeen(ch, "nobody"), { online: false });
      await Promise.all([a.disconnect(), b.disconnect()]);
    });

    test("connection metadata: set, merge and read", async () => {
      const client = makeClient(server.url, { encoding });
      const info = await client.connect();
      await client.setMeta({ name: "ann" });
      await client.setMeta({ color: "teal" }, { merge: true });
      assert.deepEqual(await client.getMeta({ conn: info.conn }), { name: "ann", color: "teal" });
      await client.setMeta({ only: 1 });
      assert.deepEqual(await client.getMeta({ conn: info.conn }), { only: 1 });
      assert.deepEqual(await client.getMeta({ channel: channel("meta") }), {});
      const notMine = await client.getMeta({ conn: "someone-else-1" }).catch((e) => e);
      assert.equal(notMine.kind, "server");
      await client.disconnect();
    });
  });
}

test("fifty calls made in one tick are answered, each to its caller", async () => {
  const client = makeClient(server.url);
  await client.connect();
  const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => client.call("echo", i)));
  assert.deepEqual(answers, Array.from({ length: 50 }, (_, i) => i));
  await client.disconnect();
});

test("requests above the in-flight limit wait their turn and all complete", async () => {
  const client = makeClient(server.url, { maxInFlight: 3 });
  await client.connect();
  const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => client.call("echo", { i })));
  assert.deepEqual(answers.map((a) => a.i), Array.from({ length: 40 }, (_, i) => i));
  await client.disconnect();
});

test(
  "plain `plexus serve` (no configuration) keeps history and presence on every channel",
  async () => {
    const plain = await PlexusServer.start({ plain: true });
    const client = makeClient(plain.url);
    try {
      await client.connect();
      const ch = channel("plain");
      await client.publish(ch, { n: 1 });
      const sub = client.subscribe(ch, { history: 5 });
      assert.equal((await sub.ready).history.length, 1);
      assert.equal((await sub.presence()).length, 1);
    } finally {
      await client.disconnect();
      await plain.stop();
    }
  },
);

test("the demo page and its modules are served at / in development mode", async () => {
  const page = await fetch(`${server.httpUrl}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type"), /^text\/html/);
  const html = await page.text();
  assert.match(html, /src="\/demo\/app.js"/);
  for (const asset of ["/demo/app.js", "/demo/style.css", "/demo/client/index.js", "/demo/client/client.js"]) {
    const res = await fetch(`${server.httpUrl}${asset}`);
    assert.equal(res.status, 200, asset);
    assert.match(res.headers.get("content-type"), asset.endsWith(".css") ? /^text\/css/ : /^text\/javascript/);
  }
  assert.equal((await fetch(`${server.httpUrl}/demo/nope.js`)).status, 404);
});
