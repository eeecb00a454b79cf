// End to end in a real headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core):
// two pages chat through the demo page that `plexus serve` serves at `/`; the server restarts
// while the pages are open; Alice's page is kept away until messages were published after the
// restart (by Bob's page and by a Node client); it then reconnects, is told in words that the
// restarted server lost its history (epoch_changed), with a line where the lost history ends,
// loads the recent history and shows it below the line. A very long unbroken message keeps the
// page within a narrow and a wide window. Screenshots go to target/e2e/.

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

async function openPage(errors, viewport = { width: 1000, height: 720 }) {
  const context = await browser.newContext({ viewport });
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

/** What the page says after a restart, and the line it draws (protocol §4.6 `epoch_changed`). */
const RESTARTED = "The server restarted and lost this room's history";
const divider = (page) => page.locator("#messages li.divider");

/** Whether `first` comes before `second` in the message list. */
async function isAbove(page, first, second) {
  const a = await first.elementHandle();
  const b = await second.elementHandle();
  return page.evaluate(([a, b]) => Boolean(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING), [a, b]);
}

/** Asserts that the element is entirely inside the window. */
async function assertInView(page, selector) {
  const box = await page.locator(selector).boundingBox();
  const { width, height } = page.viewportSize();
  assert.ok(box, `${selector} is shown`);
  assert.ok(
    box.x >= 0 && box.y >= 0 && box.x + box.width <= width + 0.5 && box.y + box.height <= height + 0.5,
    `${selector} (${JSON.stringify(box)}) is inside the ${width}×${height} window`,
  );
}

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
  await bob.locator("#messages li.notice", { hasText: RESTARTED }).waitFor(WAIT);
  await divider(bob).waitFor(WAIT);
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
  await alice.locator("#messages li.notice", { hasText: RESTARTED }).waitFor(WAIT);
  await message(alice, "Bob here, while Alice was away").waitFor(WAIT);
  await message(alice, "published by a Node client after the restart").waitFor(WAIT);
  // What she saw before the restart is still on screen, once, above the line; what was
  // published since the restart is below it. The code itself is only in a tooltip.
  assert.equal(await message(alice, "Hi Alice!").count(), 1);
  assert.equal(await divider(alice).count(), 1);
  assert.ok(await isAbove(alice, message(alice, "Hi Alice!"), divider(alice)));
  assert.ok(await isAbove(alice, divider(alice), message(alice, "Bob here, while Alice was away")));
  assert.ok(await isAbove(alice, divider(alice), message(alice, "published by a Node client")));
  for (const page of [alice, bob]) {
    assert.ok(!(await page.locator("#messages").innerText()).includes("epoch_changed"));
    await assertInView(page, "#messages li.divider");
  }
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

test("every recovery failure is said in words, never as its code", async () => {
  const errors = [];
  const page = await openPage(errors);
  await page.goto(`${server.httpUrl}/`);
  const texts = await page.evaluate(() =>
    ["epoch_changed", "history_trimmed", "too_many", "invalid_position", "not_available", undefined].map(
      (reason) => window.plexusDemo.recoveryText(reason),
    ),
  );
  assert.equal(new Set(texts).size, texts.length, "each reason has its own words");
  for (const text of texts) assert.doesNotMatch(text, /_|undefined/, text);
  await page.context().close();
  assert.deepEqual(errors, []);
});

for (const viewport of [
  { width: 360, height: 640 },
  { width: 1280, height: 800 },
]) {
  const size = `${viewport.width}x${viewport.height}`;
  test(`a very long unbroken message stays inside a ${size} window`, async () => {
    const errors = [];
    const room = `e2e-long-${size}-${process.pid}`;
    const page = await openPage(errors, viewport);
    await joinAs(page, "Ada", room);
    await page.locator("#presence li.me", { hasText: "Ada" }).waitFor(WAIT);
    const long = "Supercalifragilisticexpialidocious".repeat(55); // 1870 characters, no space
    await say(page, long);
    await message(page, long.slice(0, 40)).waitFor(WAIT);
    await assertInView(page, "#send");
    await page.screenshot({ path: path.join(SHOTS, `long-message-${size}-posted.png`) });
    // Later messages still show, below the long one, and the list scrolls to them.
    for (let i = 1; i <= 12; i++) await say(page, `message ${i}`);
    await message(page, "message 12").waitFor(WAIT);

    // The page itself does not scroll in either direction: only the message list does.
    const page_ = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      scrollHeight: document.documentElement.scrollHeight,
      width: window.innerWidth,
      height: window.innerHeight,
    }));
    assert.ok(page_.scrollWidth <= page_.width, JSON.stringify(page_));
    assert.ok(page_.scrollHeight <= page_.height, JSON.stringify(page_));
    for (const selector of ["#send", "#text", "#presence", "#presence li.me", "#status", "#messages"]) {
      await assertInView(page, selector);
    }
    // The long message wraps inside the list.
    const list = await page.locator("#messages").boundingBox();
    const item = await message(page, long.slice(0, 40)).boundingBox();
    assert.ok(item.x >= list.x && item.x + item.width <= list.x + list.width + 0.5, JSON.stringify({ list, item }));
    assert.ok(item.height > 3 * 16, "it is wrapped over many lines");
    await assertInView(page, '#messages li[data-key]:has-text("message 12")');
    await page.screenshot({ path: path.join(SHOTS, `long-message-${size}.png`) });

    // A connection notice shows at the bottom of the list, in view, after the long message.
    await page.evaluate(() => window.plexusDemo.client.disconnect());
    await page.locator('#status[data-state="closed"]').waitFor(WAIT);
    await page.locator("#messages li.notice", { hasText: "Connection lost" }).waitFor(WAIT);
    await assertInView(page, "#status");
    await assertInView(page, '#messages li.notice:has-text("Connection lost")');
    await page.context().close();
    assert.deepEqual(errors, []);
  });
}
