// Pure parts: backoff delays, close-code rules, error kinds, codecs.

import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, backoffWithDefaults, CloseCode, ErrorCode, PlexusError, shouldReconnect } from "../dist/index.js";
import { loadCodec, toBase64, fromBase64 } from "../dist/codec.js";

/** A seeded random source (mulberry32), so that delays are reproducible. */
function seeded(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("every backoff delay is within [min, max]", () => {
  for (const jitter of ["full", "decorrelated"]) {
    const b = backoffWithDefaults({ minDelayMs: 100, maxDelayMs: 5000, jitter });
    const random = seeded(7);
    let prev = 0;
    for (let attempt = 1; attempt <= 10_000; attempt++) {
      const d = backoffDelay(b, attempt, prev, random);
      assert.ok(d >= 100 && d <= 5000, `${jitter} ${attempt}: ${d}`);
      prev = d;
    }
  }
});

test("full jitter: the cap doubles per attempt, and even the first retry is spread", () => {
  const b = backoffWithDefaults({ minDelayMs: 100, maxDelayMs: 5000 });
  const random = seeded(1);
  for (let attempt = 1; attempt <= 8; attempt++) {
    const cap = Math.min(100 * 2 ** attempt, 5000);
    let maxSeen = 0;
    for (let i = 0; i < 2000; i++) {
      const d = backoffDelay(b, attempt, 0, random);
      assert.ok(d <= cap, `attempt ${attempt}: ${d} > ${cap}`);
      maxSeen = Math.max(maxSeen, d);
    }
    assert.ok(maxSeen >= cap - (cap - 100) / 10, `attempt ${attempt}: ${maxSeen}`);
  }
  const first = new Set(Array.from({ length: 100 }, () => backoffDelay(b, 1, 0, random)));
  assert.ok(first.size > 50);
});

test("decorrelated jitter stays below three times the previous delay", () => {
  const b = backoffWithDefaults({ minDelayMs: 100, maxDelayMs: 5000, jitter: "decorrelated" });
  const random = seeded(42);
  let prev = 0;
  for (let attempt = 1; attempt <= 1000; attempt++) {
    const d = backoffDelay(b, attempt, prev, random);
    assert.ok(d <= Math.max(prev, 100) * 3, `${attempt}: ${d} after ${prev}`);
    prev = d;
  }
});

test("huge attempts and inverted bounds do not overflow", () => {
  const b = backoffWithDefaults({ minDelayMs: 100, maxDelayMs: 5000 });
  assert.ok(backoffDelay(b, 2 ** 31, Number.MAX_SAFE_INTEGER, Math.random) <= 5000);
  const inverted = backoffWithDefaults({ minDelayMs: 100, maxDelayMs: 1 });
  assert.equal(backoffDelay(inverted, 3, 0, () => 0.99), 100);
  assert.deepEqual(backoffWithDefaults(), { minDelayMs: 500, maxDelayMs: 20000, jitter: "full", maxAttempts: undefined });
});

test("close codes: reconnect after 4000–4499 and standard codes, never after 1000 or 4500–4999", () => {
  for (const code of [4000, 4001, 4002, 4003, 4004, 4005, 4006, 4499, 1001, 1006, 1009, 1011, undefined]) {
    assert.equal(shouldReconnect(code), true, String(code));
  }
  for (const code of [1000, 4500, 4501, 4502, 4504, 4505, 4506, 4999]) {
    assert.equal(shouldReconnect(code), false, String(code));
  }
  assert.equal(CloseCode.TOKEN_EXPIRED, 4506);
});

test("errors: kinds, codes, transient codes", () => {
  const server = PlexusError.fromBody({ code: 1001, message: "nope", data: { why: 1 } });
  assert.equal(server.kind, "server");
  assert.equal(server.code, 1001);
  assert.deepEqual(server.data, { why: 1 });
  assert.equal(server.isTransient(), false);
  for (const code of [100, 110, 111, 116, 118]) assert.equal(PlexusError.fromBody({ code, message: "" }).isTransient(), true);
  assert.equal(new PlexusError("already_subscribed", "x").code, ErrorCode.ALREADY_SUBSCRIBED);
  assert.equal(new PlexusError("timeout", "x").isTransient(), true);
  assert.equal(new PlexusError("closed", "x", { closeCode: 4505 }).closeCode, 4505);
  assert.ok(server instanceof Error);
});

test("codecs: JSON batches split on newlines, MessagePack batches are concatenated maps", async () => {
  const json = await loadCodec("json");
  assert.equal(json.subprotocol, "plexus.v1.json");
  assert.deepEqual(json.decode('{"push":"ping"}\n{"id":1,"result":{}}\n'), [{ push: "ping" }, { id: 1, result: {} }]);
  assert.equal(json.join([json.encode({ op: "pong" }), json.encode({ id: 2, op: "call" })]), '{"op":"pong"}\n{"id":2,"op":"call"}');
  assert.equal(json.encode({ binary: new Uint8Array([1, 2, 3, 255]) }), '{"binary":"AQID/w=="}');
  assert.equal(json.size(json.encode({ data: "é" })), 13);
  assert.throws(() => json.decode("[1]"));
  const mp = await loadCodec("msgpack");
  assert.equal(mp.subprotocol, "plexus.v1.msgpack");
  const batch = mp.join([mp.encode({ op: "pong" }), mp.encode({ id: 8, op: "unsubscribe", params: { channel: "sensors:t1" } })]);
  // The batch of docs/protocol.md section 3.7, byte for byte.
  const doc = "81a26f70a4706f6e6783a2696408a26f70ab756e737562736372696265a6706172616d7381a76368616e6e656caa73656e736f72733a7431";
  assert.equal(Buffer.from(batch).toString("hex"), doc);
  assert.deepEqual(mp.decode(new Uint8Array(batch).buffer), [{ op: "pong" }, { id: 8, op: "unsubscribe", params: { channel: "sensors:t1" } }]);
  assert.equal(mp.encode({ a: undefined, b: 1 }).length, mp.encode({ b: 1 }).length);
});

test("base64 round-trips every byte value", () => {
  const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(fromBase64(toBase64(bytes)), bytes);
  assert.equal(toBase64(new Uint8Array([0xde, 0xad, 0xbe, 0xef])), "3q2+7w==");
});
