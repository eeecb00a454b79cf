// The client against a scripted server: the test plays the server's side frame by frame, for
// what a development server cannot be made to do on demand (authentication, heartbeat silence,
// chosen close codes, gaps, durable mail, server-side subscriptions).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { CLIENT_NAME, ErrorCode } from "../dist/index.js";
import { ScriptedServer, closeClients, collect, makeClient, next, sleep, until } from "./helpers.mjs";

let server;
before(async () => {
  server = await ScriptedServer.start();
});
after(async () => {
  await closeClients();
  await server.close();
});

/** A client connected to the scripted server, and the server's side of its connection. */
async function connected(options = {}, hello = {}) {
  const client = makeClient(server.url, options);
  const connecting = client.connect();
  const conn = await server.accept();
  conn.hello(hello);
  await connecting;
  return { client, conn };
}

/** Answers the next `subscribe` with `result`; returns its params. */
async function answerSubscribe(conn, result) {
  const frame = await conn.nextOp("subscribe");
  conn.reply(frame.id, result);
  return frame.params;
}

for (const encoding of ["json", "msgpack"]) {
  describe(`${encoding} encoding`, () => {
    test("offers its subprotocol, answers ping with pong, and reports latency", async () => {
      const { client, conn } = await connected({ encoding });
      assert.equal(conn.protocol, `plexus.v1.${encoding}`);
      conn.send({ push: "ping" });
      assert.deepEqual(await conn.next(), { op: "pong" });
      const latency = next(client, "latency");
      conn.send({ push: "latency", rtt_ms: 31.5 });
      assert.deepEqual(await latency, { rttMs: 31.5 });
      assert.equal(client.latencyMs, 31.5);
      await client.disconnect();
    });

    test("reads batched frames, and batches the requests of one tick into one message", async () => {
      const client = makeClient(server.url, { encoding });
      const connecting = client.connect();
      const conn = await server.accept();
      const { HELLO } = await import("./helpers.mjs");
      conn.send(HELLO, { push: "ping" }, { push: "message", to: "connection", data: { n: 1 } });
      await connecting;
      assert.deepEqual(await conn.next(), { op: "pong" });
      const before = conn.messages;
      const calls = [client.call("echo", 1), client.call("echo", 2), client.publish("c", 3)];
      const frames = [await conn.next(), await conn.next(), await conn.next()];
      assert.equal(conn.messages, before + 1, "three requests in one WebSocket message");
      assert.deepEqual(frames.map((f) => f.op), ["call", "call", "publish"]);
      conn.send(
        { id: frames[0].id, result: { data: "one" } },
        { id: frames[1].id, result: { binary: encoding === "json" ? "AQID/w==" : new Uint8Array([1, 2, 3, 255]) } },
        { id: frames[2].id, result: { offset: 7, epoch: "e" } },
      );
      const [one, two, three] = await Promise.all(calls);
      assert.equal(one, "one");
      assert.deepEqual([...two], [1, 2, 3, 255]);
      assert.deepEqual(three, { offset: 7, epoch: "e" });
      await client.disconnect();
    });

    test("sends binary payloads as base64 in JSON and as bin in MessagePack", async () => {
      const { client, conn } = await connected({ encoding });
      const published = client.publish("bytes", new Uint8Array([1, 2, 3, 255]));
      const frame = await conn.nextOp("publish");
      if (encoding === "json") assert.equal(frame.params.binary, "AQID/w==");
      else assert.deepEqual([...frame.params.binary], [1, 2, 3, 255]);
      assert.equal(frame.params.data, undefined);
      conn.reply(frame.id, { offset: 1, epoch: "e" });
      await published;
      const message = next(client, "message");
      conn.send({ push: "message", to: "user", binary: encoding === "json" ? "3q2+7w==" : new Uint8Array([0xde, 0xad, 0xbe, 0xef]) });
      const m = await message;
      assert.equal(m.to, "user");
      assert.deepEqual([...m.binary], [0xde, 0xad, 0xbe, 0xef]);
      await client.disconnect();
    });

    test("authenticates with a token, protocol version and client name when the server requires it", async () => {
      const tokens = ["t1", "t2"];
      const client = makeClient(server.url, { encoding, token: async () => tokens.shift() });
      const connecting = client.connect();
      let conn = await server.accept();
      conn.hello({ auth: "required" });
      const connect = await conn.nextOp("connect");
      assert.deepEqual(connect.params, { token: "t1", version: 1, client: CLIENT_NAME });
      conn.reply(connect.id, { conn: "scripted-1", user: "alice", info: { name: "Alice" } });
      const info = await connecting;
      assert.equal(info.user, "alice");
      assert.deepEqual(info.info, { name: "Alice" });
      // After a reconnect, it authenticates again, with a fresh token.
      conn.close(4005, "reconnect");
      conn = await server.accept();
      conn.hello({ auth: "required" });
      assert.equal((await conn.nextOp("connect")).params.token, "t2");
      await client.disconnect();
    });
  });
}

test("sends credentials in connect when configured, even when auth is optional", async () => {
  const client = makeClient(server.url, { encoding: "msgpack", credentials: { login: "ann", password: "pw" } });
  const connecting = client.connect();
  const conn = await server.accept();
  conn.hello({ auth: "optional" });
  const connect = await conn.nextOp("connect");
  assert.deepEqual(connect.params.credentials, { login: "ann", password: "pw" });
  conn.reply(connect.id, { conn: "scripted-1", user: "ann" });
  assert.equal((await connecting).user, "ann");
  await client.disconnect();
});

test("does not send connect when the upgrade authenticated the connection", async () => {
  const client = makeClient(server.url, { token: "ignored" });
  const connecting = client.connect();
  const conn = await server.accept();
  conn.hello({ auth: "done", user: "bob", info: { role: "admin" } });
  const info = await connecting;
  assert.equal(info.user, "bob");
  assert.deepEqual(info.info, { role: "admin" });
  client.call("echo", 1).catch(() => {});
  assert.equal((await conn.next()).op, "call");
  await client.disconnect();
});

test("refused credentials (112, then 4502) are final: connect() rejects and nothing retries", async () => {
  const client = makeClient(server.url, { token: "bad" });
  const connecting = client.connect().catch((e) => e);
  const conn = await server.accept();
  conn.hello({ auth: "required" });
  const connect = await conn.nextOp("connect");
  conn.error(connect.id, ErrorCode.AUTH_FAILED, "invalid token signature");
  conn.close(4502, "auth failed");
  const error = await connecting;
  assert.equal(error.kind, "server");
  assert.equal(error.code, ErrorCode.AUTH_FAILED);
  assert.equal(error.closeCode, 4502);
  assert.equal(client.state, "closed");
  const count = server.count;
  await sleep(200);
  assert.equal(server.count, count);
});

test("an expired token on a reconnect stops the client with a final disconnected event", async () => {
  const c = makeClient(server.url, { token: "t" });
  const connecting = c.connect();
  let s = await server.accept();
  s.hello({ auth: "required" });
  s.reply((await s.nextOp("connect")).id, { conn: "x", user: "u" });
  await connecting;
  const final = next(c, "disconnected", (e) => !e.willReconnect);
  s.close(4000, "restart");
  s = await server.accept();
  s.hello({ auth: "required" });
  s.error((await s.nextOp("connect")).id, ErrorCode.TOKEN_EXPIRED, "token expired");
  const event = await final;
  assert.equal(event.code, 4506);
  assert.equal(c.state, "closed");
});

test("close codes: 4000–4499 and 1006 reconnect; 4500–4999 and 1000 never do", async () => {
  for (const [code, reconnects] of [
    [4005, true],
    [4001, true],
    [4500, false],
    [4505, false],
    [1000, false],
    [1006, true],
  ]) {
    const { client, conn } = await connected();
    const disconnected = next(client, "disconnected");
    if (code === 1006) conn.ws.terminate();
    else conn.close(code, `code ${code}`);
    const event = await disconnected;
    assert.equal(event.code, code, `close code ${code}`);
    assert.equal(event.willReconnect, reconnects, `close code ${code}`);
    if (reconnects) {
      const again = await server.accept();
      again.hello();
      await client.waitConnected();
      await client.disconnect();
    } else {
      assert.equal(client.state, "closed");
      const error = await client.call("echo", 1).catch((e) => e);
      assert.equal(error.kind, "closed");
      assert.equal(error.closeCode, code);
    }
  }
});

test("a silent server is detected after ping_interval_ms × (max_missed_pongs + 1)", async () => {
  const { client, conn } = await connected({}, { ping_interval_ms: 100, max_missed_pongs: 1 });
  const started = Date.now();
  const lost = next(client, "disconnected");
  const event = await lost;
  const elapsed = Date.now() - started;
  assert.equal(event.willReconnect, true);
  assert.match(event.reason, /no frame from the server for 200 ms/);
  assert.ok(elapsed >= 190, `detected after ${elapsed} ms`);
  await conn.closed; // the client dropped the dead socket
  const again = await server.accept();
  again.hello();
  await client.waitConnected();
  await client.disconnect();
});

test("frames keep a quiet connection alive: pings answered in time are not a dead server", async () => {
  const { client, conn } = await connected({}, { ping_interval_ms: 100, max_missed_pongs: 1 });
  const lost = collect(client, "disconnected");
  for (let i = 0; i < 6; i++) {
    await sleep(80);
    conn.send({ push: "ping" });
    await conn.nextOp("pong");
  }
  assert.deepEqual(lost, []);
  await client.disconnect();
});

test("call timeout, and an application error with its code and data", async () => {
  const { client, conn } = await connected();
  const slow = client.call("slow", null, { timeoutMs: 100 }).catch((e) => e);
  await conn.nextOp("call");
  const timeout = await slow;
  assert.equal(timeout.kind, "timeout");
  assert.equal(timeout.isTransient(), true);
  const failing = client.call("rooms.create", { name: "Ops" }).catch((e) => e);
  const frame = await conn.nextOp("call");
  assert.deepEqual(frame.params, { method: "rooms.create", data: { name: "Ops" } });
  conn.send({ id: frame.id, error: { code: 1004, message: "room name taken", data: { name: "Ops" } } });
  const error = await failing;
  assert.equal(error.kind, "server");
  assert.equal(error.code, 1004);
  assert.equal(error.message, "room name taken");
  assert.deepEqual(error.data, { name: "Ops" });
  assert.equal(error.isTransient(), false);
  await client.disconnect();
});

test("requests in flight when the connection drops fail with disconnected; queued ones go out after", async () => {
  const { client, conn } = await connected({ maxInFlight: 1 }, {});
  const inFlight = client.call("a", 1).catch((e) => e);
  const queued = client.call("b", 2);
  assert.equal((await conn.nextOp("call")).params.method, "a");
  assert.equal(await conn.quiet(100), undefined, "only one request in flight");
  conn.ws.terminate();
  assert.equal((await inFlight).kind, "disconnected");
  const again = await server.accept();
  again.hello();
  const frame = await again.nextOp("call");
  assert.equal(frame.params.method, "b");
  again.reply(frame.id, { data: "b done" });
  assert.equal(await queued, "b done");
  await client.disconnect();
});

test("never more requests in flight than the server's max_pending_requests", async () => {
  const { client, conn } = await connected({}, { limits: { max_message_bytes: 65536, max_pending_requests: 2 } });
  const calls = Array.from({ length: 5 }, (_, i) => client.call("echo", i));
  const first = [await conn.nextOp("call"), await conn.nextOp("call")];
  assert.equal(await conn.quiet(100), undefined);
  conn.reply(first[0].id, { data: "r0" });
  const third = await conn.nextOp("call");
  assert.equal(third.params.data, 2);
  conn.reply(first[1].id, { data: "r1" });
  conn.reply(third.id, { data: "r2" });
  for (let i = 3; i < 5; i++) {
    const f = await conn.nextOp("call");
    conn.reply(f.id, { data: `r${f.params.data}` });
  }
  assert.deepEqual(await Promise.all(calls), ["r0", "r1", "r2", "r3", "r4"]);
  await client.disconnect();
});

test("a request larger than the announced max_message_bytes is not sent", async () => {
  const { client, conn } = await connected({}, { limits: { max_message_bytes: 100, max_pending_requests: 64 } });
  const error = await client.call("echo", "x".repeat(200)).catch((e) => e);
  assert.equal(error.kind, "too_large");
  assert.equal(await conn.quiet(50), undefined);
  await client.disconnect();
});

describe("subscriptions", () => {
  test("a gap in the live stream is repaired: unsubscribe, then subscribe since the last offset", async () => {
    const { client, conn } = await connected();
    const sub = client.subscribe("g");
    const seen = collect(sub, "publication");
    assert.deepEqual(await answerSubscribe(conn, { offset: 0, epoch: "e1" }), { channel: "g" });
    await sub.ready;
    conn.send({ push: "pub", channel: "g", offset: 1, epoch: "e1", data: 1 }, { push: "pub", channel: "g", offset: 2, epoch: "e1", data: 2 });
    conn.send({ push: "pub", channel: "g", offset: 4, epoch: "e1", data: 4 });
    const unsubscribe = await conn.nextOp("unsubscribe");
    assert.deepEqual(unsubscribe.params, { channel: "g" });
    conn.reply(unsubscribe.id, {});
    // Arrives before the server handled the unsubscribe: dropped, the recovery brings it.
    conn.send({ push: "pub", channel: "g", offset: 5, epoch: "e1", data: 5 });
    const repaired = next(sub, "subscribed");
    const params = await conn.nextOp("subscribe");
    assert.deepEqual(params.params, { channel: "g", since: { offset: 2, epoch: "e1" } });
    const pubs = [3, 4, 5].map((n) => ({ channel: "g", offset: n, epoch: "e1", data: n }));
    conn.reply(params.id, { offset: 5, epoch: "e1", recovered: true, publications: pubs });
    const event = await repaired;
    assert.equal(event.resubscribed, true);
    assert.equal(event.recovered, true);
    assert.equal(event.missed, 3);
    conn.send({ push: "pub", channel: "g", offset: 6, epoch: "e1", data: 6 });
    await until(() => seen.length === 6, "six publications");
    assert.deepEqual(seen.map((p) => p.data), [1, 2, 3, 4, 5, 6]);
    await client.disconnect();
  });

  test("a publication of another epoch triggers a repair that reports the lost history", async () => {
    const { client, conn } = await connected();
    const sub = client.subscribe("ep");
    await answerSubscribe(conn, { offset: 3, epoch: "old" });
    await sub.ready;
    conn.send({ push: "pub", channel: "ep", offset: 1, epoch: "new", data: "x" });
    conn.reply((await conn.nextOp("unsubscribe")).id, {});
    const repaired = next(sub, "subscribed");
    const frame = await conn.nextOp("subscribe");
    assert.deepEqual(frame.params.since, { offset: 3, epoch: "old" });
    conn.reply(frame.id, { offset: 1, epoch: "new", recovered: false, reason: "epoch_changed" });
    const event = await repaired;
    assert.equal(event.recovered, false);
    assert.equal(event.reason, "epoch_changed");
    assert.deepEqual(sub.position, { offset: 1, epoch: "new" });
    await client.disconnect();
  });

  test("unsubscribed with insufficient_state: the client subscribes again from its position", async () => {
    const { client, conn } = await connected();
    const sub = client.subscribe("slow");
    const ended = collect(sub, "unsubscribed");
    await answerSubscribe(conn, { offset: 10, epoch: "e" });
    await sub.ready;
    conn.send({ push: "pub", channel: "slow", offset: 11, epoch: "e", data: 11 });
    conn.send({ push: "unsubscribed", channel: "slow", reason: "insufficient_state" });
    const frame = await conn.nextOp("subscribe");
    assert.deepEqual(frame.params, { channel: "slow", since: { offset: 11, epoch: "e" } });
    conn.reply(frame.id, { offset: 11, epoch: "e", recovered: true });
    await next(sub, "subscribed");
    assert.deepEqual(ended, []);
    // Another reason ends the subscription.
    const removed = next(sub, "unsubscribed");
    conn.send({ push: "unsubscribed", channel: "slow", reason: "removed by an administrator" });
    assert.deepEqual(await removed, { channel: "slow", reason: "server", message: "removed by an administrator" });
    assert.equal(client.getSubscription("slow"), undefined);
    await client.disconnect();
  });

  test("restored after a reconnect with since, history only on the first subscribe, presence state restored", async () => {
    const { client, conn } = await connected();
    const sub = client.subscribe("room", { history: 5 });
    assert.deepEqual(await answerSubscribe(conn, { offset: 2, epoch: "e", publications: [{ channel: "room", offset: 2, epoch: "e", data: "old" }] }), {
      channel: "room",
      history: 5,
    });
    const ready = await sub.ready;
    assert.deepEqual(ready.history.map((p) => p.data), ["old"]);
    const state = sub.setPresenceState({ name: "ann" });
    conn.reply((await conn.nextOp("presence_state")).id, {});
    await state;
    conn.ws.terminate();
    const again = await server.accept();
    again.hello();
    const frame = await again.nextOp("subscribe");
    assert.deepEqual(frame.params, { channel: "room", since: { offset: 2, epoch: "e" } });
    again.reply(frame.id, { offset: 2, epoch: "e", recovered: true });
    const restore = await again.nextOp("presence_state");
    assert.deepEqual(restore.params, { channel: "room", state: { name: "ann" } });
    await client.disconnect();
  });

  test("recover: false restores without since", async () => {
    const { client, conn } = await connected();
    const sub = client.subscribe("norec", { recover: false });
    await answerSubscribe(conn, { offset: 4, epoch: "e" });
    await sub.ready;
    conn.ws.terminate();
    const again = await server.accept();
    again.hello();
    const restored = next(sub, "subscribed");
    assert.deepEqual(await answerSubscribe(again, { offset: 9, epoch: "e" }), { channel: "norec" });
    const event = await restored;
    assert.equal(event.recovered, undefined);
    assert.equal(event.resubscribed, true);
    await client.disconnect();
  });

  test("a transient refusal of a restore is retried; a final one ends the subscription", async () => {
    const { client, conn } = await connected();
    const retried = client.subscribe("busy");
    const refused = client.subscribe("gone");
    await answerSubscribe(conn, { offset: 0, epoch: "e" });
    await answerSubscribe(conn, { offset: 0, epoch: "e" });
    await Promise.all([retried.ready, refused.ready]);
    const failures = collect(client, "subscribeFailed");
    const ended = next(refused, "unsubscribed");
    conn.ws.terminate();
    const again = await server.accept();
    again.hello();
    const first = await again.nextOp("subscribe");
    const second = await again.nextOp("subscribe");
    const byChannel = { [first.params.channel]: first, [second.params.channel]: second };
    again.error(byChannel.busy.id, ErrorCode.TOO_MANY_REQUESTS, "slow down");
    again.error(byChannel.gone.id, ErrorCode.PERMISSION_DENIED, "no longer allowed");
    const event = await ended;
    assert.equal(event.reason, "subscribe_failed");
    assert.equal(event.error.code, ErrorCode.PERMISSION_DENIED);
    const retry = await again.nextOp("subscribe");
    assert.equal(retry.params.channel, "busy");
    again.reply(retry.id, { offset: 0, epoch: "e", recovered: true });
    await next(retried, "subscribed");
    assert.deepEqual(
      failures.map((f) => [f.channel, f.willRetry]).sort(),
      [
        ["busy", true],
        ["gone", false],
      ],
    );
    await client.disconnect();
  });

  test("server-side subscriptions: publications as client events, restored (and repaired on 108)", async () => {
    const { client, conn } = await connected();
    const subscribed = next(client, "subscribed");
    const pubs = collect(client, "publication");
    conn.send({ push: "subscribed", channel: "user:ann", offset: 0, epoch: "f0" });
    const event = await subscribed;
    assert.equal(event.serverSide, true);
    const sub = client.getSubscription("user:ann");
    assert.ok(sub.serverSide);
    conn.send({ push: "pub", channel: "user:ann", offset: 1, epoch: "f0", data: "hi" });
    await until(() => pubs.length === 1, "a server-side publication");
    conn.ws.terminate();
    const again = await server.accept();
    again.hello();
    // The server re-creates it itself before the client's restore, which then gets 108.
    again.send({ push: "subscribed", channel: "user:ann", offset: 3, epoch: "f0" });
    const restore = await again.nextOp("subscribe");
    assert.deepEqual(restore.params.since, { offset: 1, epoch: "f0" });
    again.error(restore.id, ErrorCode.ALREADY_SUBSCRIBED, "already subscribed");
    again.reply((await again.nextOp("unsubscribe")).id, {});
    const repair = await again.nextOp("subscribe");
    assert.deepEqual(repair.params.since, { offset: 1, epoch: "f0" });
    const two = [2, 3].map((offset) => ({ channel: "user:ann", offset, epoch: "f0", data: offset }));
    again.reply(repair.id, { offset: 3, epoch: "f0", recovered: true, publications: two });
    await until(() => pubs.length === 3, "the recovered server-side publications");
    assert.deepEqual(pubs.map((p) => p.offset), [1, 2, 3]);
    // subscribe() adopts a server-side subscription.
    assert.equal(client.subscribe("user:ann"), sub);
    assert.equal(sub.serverSide, false);
    await client.disconnect();
  });

  test("join, leave and state pushes reach the subscription and the client", async () => {
    const { client, conn } = await connected();
    const sub = client.subscribe("p");
    await answerSubscribe(conn, { offset: 0, epoch: "e" });
    await sub.ready;
    const joins = collect(sub, "join");
    const leaves = collect(client, "leave");
    const states = collect(sub, "presenceState");
    conn.send(
      { push: "join", channel: "p", conn: "c2", user: "bob", info: { name: "Bob" } },
      { push: "state", channel: "p", conn: "c2", user: "bob", state: { typing: true } },
      { push: "leave", channel: "p", conn: "c2", user: "bob" },
      { push: "teleport", channel: "p" },
      { push: "error", code: 105, message: "publishing to `p` is not allowed" },
    );
    const serverError = await next(client, "serverError");
    assert.equal(serverError.code, 105);
    assert.deepEqual(joins, [{ channel: "p", conn: "c2", user: "bob", info: { name: "Bob" } }]);
    assert.deepEqual(states, [{ channel: "p", conn: "c2", user: "bob", state: { typing: true } }]);
    assert.deepEqual(leaves, [{ channel: "p", conn: "c2", user: "bob" }]);
    await client.disconnect();
  });

  test("the first subscribe times out when the server does not answer", async () => {
    const { client, conn } = await connected();
    const sub = client.subscribe("mute", { timeoutMs: 100 });
    const frame = await conn.nextOp("subscribe");
    const error = await sub.ready.catch((e) => e);
    assert.equal(error.kind, "timeout");
    assert.ok(sub.ended);
    // The late reply is ignored and the server is told to drop it.
    conn.reply(frame.id, { offset: 0, epoch: "e" });
    assert.equal((await conn.nextOp("unsubscribe")).params.channel, "mute");
    await client.disconnect();
  });
});

describe("durable mail", () => {
  test("each mail is acknowledged after its handlers finished, in order; a failed one is not", async () => {
    const errors = [];
    const { client, conn } = await connected({ onHandlerError: (e) => errors.push(e.message) }, { auth: "done", user: "ann" });
    const handled = [];
    client.on("mail", async (mail) => {
      await sleep(mail.seq === 1 ? 60 : 5); // the first is slow: the second waits its turn
      if (mail.data === "fail") throw new Error("handler failed");
      handled.push(mail.seq);
    });
    conn.send(
      { push: "mail", seq: 1, data: { text: "first" }, sent_ms: 1700000000000 },
      { push: "mail", seq: 2, data: { text: "second" }, sent_ms: 1700000000001 },
      { push: "mail", seq: 1, data: { text: "first" }, sent_ms: 1700000000000 },
    );
    const ack1 = await conn.nextOp("ack");
    assert.deepEqual(ack1.params, { seq: 1 });
    conn.reply(ack1.id, { pending: 1 });
    const ack2 = await conn.nextOp("ack");
    assert.deepEqual(ack2.params, { seq: 2 });
    conn.reply(ack2.id, { pending: 0 });
    assert.deepEqual(handled, [1, 2]);
    conn.send({ push: "mail", seq: 3, data: "fail", sent_ms: 1 });
    assert.equal(await conn.quiet(150), undefined, "no ack for a mail whose handler failed");
    assert.deepEqual(errors, ["handler failed"]);
    await client.disconnect();
  });

  test("without a mail handler nothing is acknowledged; autoAck: false leaves it to the app", async () => {
    const { client, conn } = await connected({ autoAck: false }, { auth: "done", user: "ann" });
    conn.send({ push: "mail", seq: 1, data: 1, sent_ms: 1 });
    assert.equal(await conn.quiet(100), undefined);
    const mails = collect(client, "mail");
    conn.send({ push: "mail", seq: 2, binary: "AQI=", sent_ms: 5 });
    await until(() => mails.length === 1, "a mail");
    assert.deepEqual([...mails[0].binary], [1, 2]);
    assert.equal(mails[0].sentMs, 5);
    assert.equal(await conn.quiet(100), undefined);
    const ack = client.ack(2);
    const frame = await conn.nextOp("ack");
    conn.reply(frame.id, { pending: 0 });
    assert.deepEqual(await ack, { pending: 0 });
    await client.disconnect();
  });
});

test("a handler that throws does not stop the other handlers or the client", async () => {
  const errors = [];
  const { client, conn } = await connected({ onHandlerError: (e, event) => errors.push(event) });
  const seen = [];
  client.on("message", () => {
    throw new Error("boom");
  });
  client.on("message", (m) => seen.push(m.data));
  conn.send({ push: "message", to: "all", data: "x" });
  await until(() => seen.length === 1, "the second handler");
  assert.deepEqual(errors, ["message"]);
  conn.send({ push: "ping" });
  assert.deepEqual(await conn.nextOp("pong"), { op: "pong" });
  await client.disconnect();
});

test("the handshake must complete within connectTimeoutMs", async () => {
  const client = makeClient(server.url, { connectTimeoutMs: 150 });
  const connecting = client.connect().catch((e) => e);
  await server.accept(); // never says hello
  const error = await connecting;
  assert.equal(error.kind, "connect");
  assert.match(error.message, /not ready within 150 ms/);
});

test("reconnect() drops the connection and connects again", async () => {
  const { client, conn } = await connected();
  const events = collect(client, "disconnected");
  client.reconnect();
  await conn.closed;
  const again = await server.accept();
  again.hello();
  await next(client, "connected", (e) => e.reconnected);
  assert.equal(events.length, 1);
  assert.equal(events[0].willReconnect, true);
  await client.disconnect();
});
