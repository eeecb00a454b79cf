// Records through the TypeScript client against a real `plexus serve` (development mode), in
// both encodings: reads and writes with compare-and-set, and a RecordWatch that holds the current
// value in full and patch mode and resyncs by itself after a reconnect. Plus the JSON Patch
// implementation against RFC 6902's own examples.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode, PlexusError, applyPatch } from "../dist/index.js";
import { PlexusServer, closeClients, makeClient, until } from "./helpers.mjs";

let server;
before(async () => {
  server = await PlexusServer.start();
});
after(async () => {
  await closeClients();
  await server.stop();
});

let unique = 0;
const record = (name) => `${name}-${process.pid}-${++unique}`;

for (const encoding of ["json", "msgpack"]) {
  describe(`${encoding} encoding`, () => {
    test("records are read and written with versions, patches and compare-and-set", async () => {
      const client = makeClient(server.url, { encoding });
      await client.connect();
      const id = record("rw");
      assert.deepEqual(await client.getRecord(id), { id, value: null, version: 0, epoch: "" });
      const v1 = await client.setRecord(id, { n: 1 }, { expect: 0 });
      assert.equal(v1.version, 1);
      const conflict = await client.setRecord(id, { n: 9 }, { expect: 0 }).catch((e) => e);
      assert.ok(conflict instanceof PlexusError);
      assert.equal(conflict.code, ErrorCode.VERSION_CONFLICT);
      assert.deepEqual(conflict.data, { version: 1 });
      const v2 = await client.patchRecord(id, [{ op: "add", path: "/tags", value: ["a"] }]);
      assert.deepEqual([v2.version, v2.epoch], [2, v1.epoch]);
      const bad = await client.patchRecord(id, [{ op: "test", path: "/n", value: 5 }]).catch((e) => e);
      assert.equal(bad.code, ErrorCode.BAD_PATCH);
      assert.deepEqual((await client.getRecord(id)).value, { n: 1, tags: ["a"] });
      assert.equal((await client.deleteRecord(id)).version, 3);
      assert.equal((await client.deleteRecord(id).catch((e) => e)).code, ErrorCode.NOT_FOUND);
      await client.disconnect();
    });

    test("a watch holds the current value in full and patch mode", async () => {
      const writer = makeClient(server.url, { encoding });
      const reader = makeClient(server.url, { encoding });
      await Promise.all([writer.connect(), reader.connect()]);
      for (const mode of ["full", "patch"]) {
        const id = record(`watch-${mode}`);
        const watch = reader.watchRecord(id, { mode });
        assert.equal((await watch.ready).version, 0);
        const changes = [];
        watch.on("change", (s) => changes.push(s));
        await writer.setRecord(id, { list: [1] });
        await writer.patchRecord(id, [{ op: "add", path: "/list/-", value: 2 }]);
        await writer.patchRecord(id, [{ op: "move", from: "/list", path: "/items" }]);
        await until(() => watch.version === 3, `version 3 (${mode})`);
        assert.deepEqual(watch.value, { items: [1, 2] });
        assert.deepEqual(changes.map((c) => c.version), [1, 2, 3]);
        assert.equal(watch.resyncs, 0);
        await writer.deleteRecord(id);
        await until(() => watch.version === 4, "the delete");
        assert.equal(watch.value, null);
        await watch.close();
      }
    });

    test("a watch resyncs after a reconnect and goes on with patches", async () => {
      const writer = makeClient(server.url, { encoding });
      const reader = makeClient(server.url, { encoding });
      await Promise.all([writer.connect(), reader.connect()]);
      const id = record("resync");
      await writer.setRecord(id, { n: 0 });
      const watch = reader.watchRecord(id, { mode: "patch" });
      await watch.ready;
      reader.reconnect();
      for (let n = 1; n <= 3; n++) await writer.patchRecord(id, [{ op: "replace", path: "/n", value: n }]);
      await until(() => watch.resyncs >= 1 && watch.version === 4, "the resync after the reconnect");
      assert.deepEqual(watch.value, { n: 3 });
      await writer.patchRecord(id, [{ op: "replace", path: "/n", value: 4 }]);
      await until(() => watch.version === 5, "the patch after the resync");
      assert.deepEqual(watch.value, { n: 4 });
      await watch.close();
    });
  });
}

test("applyPatch follows RFC 6902 and fails whole", () => {
  // RFC 6902 appendix A examples.
  assert.deepEqual(applyPatch({ foo: "bar" }, [{ op: "add", path: "/baz", value: "qux" }]), { foo: "bar", baz: "qux" });
  assert.deepEqual(applyPatch({ foo: ["bar", "baz"] }, [{ op: "add", path: "/foo/1", value: "qux" }]), { foo: ["bar", "qux", "baz"] });
  assert.deepEqual(applyPatch({ baz: "qux", foo: "bar" }, [{ op: "remove", path: "/baz" }]), { foo: "bar" });
  assert.deepEqual(applyPatch({ foo: ["bar", "qux", "baz"] }, [{ op: "remove", path: "/foo/1" }]), { foo: ["bar", "baz"] });
  assert.deepEqual(applyPatch({ baz: "qux", foo: "bar" }, [{ op: "replace", path: "/baz", value: "boo" }]), { baz: "boo", foo: "bar" });
  assert.deepEqual(
    applyPatch({ foo: { bar: "baz", waldo: "fred" }, qux: { corge: "grault" } }, [{ op: "move", from: "/foo/waldo", path: "/qux/thud" }]),
    { foo: { bar: "baz" }, qux: { corge: "grault", thud: "fred" } },
  );
  assert.deepEqual(applyPatch({ foo: ["all", "grass", "cows", "eat"] }, [{ op: "move", from: "/foo/1", path: "/foo/3" }]), { foo: ["all", "cows", "eat", "grass"] });
  assert.deepEqual(applyPatch({ foo: ["bar"] }, [{ op: "add", path: "/foo/-", value: ["abc", "def"] }]), { foo: ["bar", ["abc", "def"]] });
  assert.deepEqual(applyPatch({ "a/b": 1, "m~n": 2 }, [{ op: "copy", from: "/a~1b", path: "/m~0n" }]), { "a/b": 1, "m~n": 1 });
  assert.deepEqual(applyPatch(null, [{ op: "replace", path: "", value: { x: 1 } }]), { x: 1 });
  const doc = { baz: "qux", foo: ["a", 2, "c"] };
  assert.throws(() => applyPatch(doc, [{ op: "add", path: "/new", value: 1 }, { op: "test", path: "/baz", value: "bar" }]));
  assert.deepEqual(doc, { baz: "qux", foo: ["a", 2, "c"] }, "the input is never changed");
  assert.throws(() => applyPatch({ foo: "bar" }, [{ op: "add", path: "/baz/bat", value: "qux" }]));
  assert.throws(() => applyPatch({ foo: [] }, [{ op: "remove", path: "/foo/0" }]));
});
