// Auto-dispatch endpoints (docs/endpoints.md) driven from headless Chromium by a client that
// behaves as Plezi's PleziClient (e2e/plezi-client.js): `plexus serve` in development mode
// serves the auto-dispatch demo at /plezi and a raw echo at /echo. Every emit here waits for its
// acknowledgement within PleziClient's default 10 ms deadline; incoming events reach the
// client's handlers; an unknown event reaches its `err` handler as Plezi 0.12's 404; a
// broadcast reaches the other page; a raw binary message comes back from /echo as it was.
// Emits pass PleziClient's `timeout` argument with a generous bound (its 10 ms default is a
// deadline, and a test never asserts speed; the server writes the ack as it reads the message,
// which crates/plexus-server/tests/endpoints.rs checks without a clock).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { PlexusServer } from "../test/helpers.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const here = path.dirname(fileURLToPath(import.meta.url));
const CLIENT = readFileSync(path.join(here, "plezi-client.js"), "utf8");

let server;
let browser;
before(async () => {
  server = await PlexusServer.start({ plain: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A page with the client loaded, connected to /plezi; records everything it receives. */
async function pleziPage(errors) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${server.httpUrl}/health`);
  await page.addScriptTag({ content: CLIENT });
  const url = `ws://127.0.0.1:${server.port}/plezi`;
  await page.evaluate((url) => {
    window.got = [];
    window.acks = [];
    window.timeouts = [];
    const client = new PleziClient(url);
    for (const name of ["connected", "echo", "broadcast", "whoami", "err"]) {
      client[name] = (msg) => window.got.push(msg);
    }
    client.unknown = (msg) => window.got.push({ unknown: msg });
    window.client = client;
  }, url);
  await page.waitForFunction(() => window.got.some((m) => m.event === "connected"));
  return page;
}

/** An ack deadline for emits that only fails a test that hangs. */
const ACK_MS = 20_000;

const received = (page, event) =>
  page.waitForFunction((event) => window.got.find((m) => m.event === event), event).then((h) => h.jsonValue());

test("PleziClient emits with acks and receives dispatched events", { timeout: 120_000 }, async () => {
  const errors = [];
  const alice = await pleziPage(errors);
  const bob = await pleziPage(errors);

  // Acknowledged, then the handler's answer.
  await alice.evaluate(
    (ms) =>
      window.client.emit(
        { event: "echo", text: "hello" },
        (ack) => window.acks.push(ack._EID_),
        (event) => window.timeouts.push(event),
        ms,
      ),
    ACK_MS,
  );
  const echo = await received(alice, "echo");
  assert.equal(echo.text, "hello");
  await alice.waitForFunction(() => window.acks.length === 1);
  assert.deepEqual(await alice.evaluate(() => window.timeouts), []);

  // A broadcast reaches the other page's handler, not the sender's.
  await alice.evaluate(() => window.client.emit({ event: "broadcast", text: "to bob" }));
  const broadcast = await received(bob, "broadcast");
  assert.equal(broadcast.text, "to bob");

  // An unknown event: Plezi 0.12's 404, to the client's `err` handler.
  await alice.evaluate(
    (ms) => window.client.emit({ event: "no_such_event", x: 1 }, () => window.acks.push("404"), null, ms),
    ACK_MS,
  );
  const err = await received(alice, "err");
  assert.equal(err.status, 404);
  assert.equal(err.request.event, "no_such_event");

  // Many emits in a row, each acknowledged.
  await alice.evaluate((ms) => {
    for (let i = 0; i < 20; i++) {
      window.client.emit({ event: "whoami" }, (ack) => window.acks.push(ack._EID_), (e) => window.timeouts.push(e), ms);
    }
  }, ACK_MS);
  await alice.waitForFunction(() => window.acks.length === 22);
  assert.deepEqual(await alice.evaluate(() => window.timeouts), []);
  assert.equal(await alice.evaluate(() => window.got.filter((m) => m.event === "broadcast").length), 0);
  assert.deepEqual(errors, []);
});

test("a raw binary message comes back from /echo as it was sent", async () => {
  const page = await browser.newPage();
  await page.goto(`${server.httpUrl}/health`);
  const url = `ws://127.0.0.1:${server.port}/echo`;
  const back = await page.evaluate(
    (url) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url);
        ws.binaryType = "arraybuffer";
        const sent = new Uint8Array(256).map((_, i) => i);
        ws.onopen = () => {
          ws.send(sent);
          ws.send("text stays text");
        };
        const got = [];
        ws.onmessage = (e) => {
          got.push(typeof e.data === "string" ? e.data : Array.from(new Uint8Array(e.data)));
          if (got.length === 2) resolve(got);
        };
        ws.onerror = () => reject(new Error("websocket error"));
      }),
    url,
  );
  assert.deepEqual(back[0], Array.from({ length: 256 }, (_, i) => i));
  assert.equal(back[1], "text stays text");
});
