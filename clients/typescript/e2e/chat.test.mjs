// End to end in a real headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core):
// two pages chat through the demo page that `plexus serve` serves at `/`; the server restarts
// while the pages are open; Alice's page is kept away until messages were published after the
// restart (by Bob's page and by a Node client); it then reconnects, is told that the restarted
// server lost its history (epoch_changed), loads the recent history and shows them.
// Screenshots go to target/e2e/.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { PlexusServer, closeClients, makeClient, repoRoot } from "../test/helpers.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SHOTS = path.join(repoRoot, "target/e2e");
const WAIT = { timeout: 20_000 };

let server;
let browser;
before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  server = await PlexusServer.start();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives every launch a fresh, empty profile directory.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});
after(async () => {
  await closeClients();
  await browser?.close();
  await server?.stop();
});

async function openPage(errors) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 720 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  return page;
}

async function joinAs(page, name, room) {
  await page.goto(`${server.httpUrl}/`);
  await page.fill("#name", name);
  await page.fill("#room", room);
  await page.click("#join");
  await page.locator('#status[data-state="connected"]').waitFor(WAIT);
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

const message = (page, text) => page.locator("#messages li[data-key]", { hasText: text });

test("two pages chat, survive a server restart, and show what was published while away", async () => {
  const errors = [];
  const room = `e2e-${process.pid}`;
  const alice = await openPage(errors);
  const bob = await openPage(errors);

  // Alice's WebSocket goes through a switch, so the test decides when she may come back.
  let aliceAway = false;
  await alice.routeWebSocket(/\/ws$/, (ws) => {
    if (aliceAway) {
      ws.close({ code: 4000, reason: "test: away" });
      return;
    }
    ws.connectToServer();
  });

  await joinAs(alice, "Alice", room);
  await joinAs(bob, "Bob", room);
  for (const page of [alice, bob]) {
    await page.locator("#presence li", { hasText: "Alice" }).waitFor(WAIT);
    await page.locator("#presence li", { hasText: "Bob" }).waitFor(WAIT);
  }
  assert.equal(await alice.locator("#room-name").textContent(), room);

  await say(alice, "Hello Bob, this is Alice");
  await message(bob, "Hello Bob, this is Alice").waitFor(WAIT);
  await say(bob, "Hi Alice!");
  await message(alice, "Hi Alice!").waitFor(WAIT);

  // A page that joins later sees the room's recent history at once.
  const carol = await openPage(errors);
  await joinAs(carol, "Carol", room);
  await message(carol, "Hello Bob, this is Alice").waitFor(WAIT);
  await message(carol, "Hi Alice!").waitFor(WAIT);
  await alice.locator("#presence li", { hasText: "Carol" }).waitFor(WAIT);
  await carol.context().close();
  await alice.locator("#presence li", { hasText: "Carol" }).waitFor({ state: "detached", ...WAIT });

  // Restart the server while both pages are open; keep Alice away until the others wrote.
  aliceAway = true;
  await server.restart("SIGTERM");
  await alice.locator('#status[data-state="connecting"]').waitFor(WAIT);
  await bob.locator('#status[data-state="connected"]').waitFor(WAIT);
  await bob.locator("#messages li.notice", { hasText: "epoch_changed" }).waitFor(WAIT);
  await say(bob, "Bob here, while Alice was away");
  await message(bob, "Bob here, while Alice was away").waitFor(WAIT);
  const node = makeClient(server.url);
  await node.connect();
  await node.publish(`chat:${room}`, { name: "Node", text: "published by a Node client after the restart", at: Date.now() });
  await node.disconnect();
  await message(bob, "published by a Node client after the restart").waitFor(WAIT);
  assert.equal(await message(alice, "while Alice was away").count(), 0);
  assert.equal(await alice.locator("#status").getAttribute("data-state"), "connecting");
  await alice.screenshot({ path: path.join(SHOTS, "chat-alice-away.png") });

  // Alice comes back: recovery is impossible (new epoch), so the page loads the history.
  aliceAway = false;
  await alice.locator('#status[data-state="connected"]').waitFor({ timeout: 30_000 });
  await alice.locator("#messages li.notice", { hasText: "epoch_changed" }).waitFor(WAIT);
  await message(alice, "Bob here, while Alice was away").waitFor(WAIT);
  await message(alice, "published by a Node client after the restart").waitFor(WAIT);
  // What she saw before the restart is still on screen, once.
  assert.equal(await message(alice, "Hi Alice!").count(), 1);
  for (const page of [alice, bob]) {
    await page.locator("#presence li", { hasText: "Alice" }).waitFor(WAIT);
    await page.locator("#presence li", { hasText: "Bob" }).waitFor(WAIT);
  }
  await say(alice, "Back again");
  await message(bob, "Back again").waitFor(WAIT);
  await message(alice, "Back again").waitFor(WAIT);
  assert.equal(await message(alice, "Back again").count(), 1);

  await alice.screenshot({ path: path.join(SHOTS, "chat-alice.png") });
  await bob.screenshot({ path: path.join(SHOTS, "chat-bob.png") });
  assert.deepEqual(errors, []);
});
