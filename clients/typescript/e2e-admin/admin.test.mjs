// The admin interface end to end in a real headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core) against real `plexus serve` processes: logging in and out, a wrong
// password, CSRF refused, the overview counting a client that connects, a channel's live tail,
// publishing from the page to a subscriber, disconnecting a connection; then two nodes sharing
// one `redis-server`. Screenshots of every page (wide and narrow) go to target/admin-e2e/.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { once } from "node:events";
import { chromium } from "playwright-core";
import { BIN, closeClients, freePort, makeClient, next, repoRoot, until } from "../test/helpers.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SHOTS = path.join(repoRoot, "target/admin-e2e");
const WAIT = { timeout: 20_000 };
const PASSWORD = "e2e-admin-password-0123";
const SECRET = "e2e-secret-0123456789abcdef-0123456789";
const WIDE = { width: 1280, height: 860 };
const NARROW = { width: 390, height: 800 };

const dir = mkdtempSync(path.join(tmpdir(), "plexus-admin-e2e-"));
const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

/** An HS256 connection token for `user`. */
function token(user) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: user, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

function config(port, extra = "") {
  return `${extra}
[server]
listen = "127.0.0.1:${port}"
[jwt]
hmac_secret = "${SECRET}"
[admin]
enabled = true
password = "${PASSWORD}"
login_failures_max = 5
[[namespaces]]
name = "all"
channels = "*"
subscribe = "authenticated"
publish = "subscribers"
history_size = 50
history_ttl_ms = 600000
presence = true
join_leave = "users"
`;
}

/** A `plexus serve` process with `text` as its configuration. */
async function serve(name, port, text) {
  const file = path.join(dir, `${name}.toml`);
  writeFileSync(file, text);
  const child = spawn(BIN, ["serve", "--config", file], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, PLEXUS_LOG: process.env.PLEXUS_LOG ?? "warn" },
  });
  children.add(child);
  let log = "";
  child.stderr.on("data", (d) => (log += d.toString()));
  child.on("exit", () => children.delete(child));
  const http = `http://127.0.0.1:${port}`;
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`plexus exited: ${log}`);
    return fetch(`${http}/health`).then((r) => r.ok, () => false);
  }, `${name} to listen`);
  return {
    http,
    ws: `ws://127.0.0.1:${port}/ws`,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      await exited;
    },
  };
}

let browser;
before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await closeClients();
  await browser?.close();
});

async function openPage(errors, viewport = WIDE) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  return page;
}

async function logIn(page, server) {
  await page.goto(`${server.http}/admin`);
  await page.locator("#login").waitFor(WAIT);
  await page.fill("#password", PASSWORD);
  await page.click("#login-submit");
  await page.locator("#app").waitFor(WAIT);
}

const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

/** Asserts that nothing is wider than the window (no horizontal scrolling). */
async function assertFits(page) {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the window`);
}

describe("one node", () => {
  let server;
  before(async () => {
    const port = await freePort();
    server = await serve("single", port, config(port));
  });
  after(async () => {
    await closeClients();
    await server?.stop();
  });

  test("a wrong password is refused; log in, then out", async () => {
    const errors = [];
    const page = await openPage(errors);
    await page.goto(`${server.http}/admin`);
    await page.fill("#password", "not-the-password");
    await page.click("#login-submit");
    await page.locator("#login-error", { hasText: "Wrong password." }).waitFor(WAIT);
    await shot(page, "login-wrong-password");
    await logIn(page, server);
    await page.locator("#nodes-table tbody td", { hasText: "healthy" }).first().waitFor(WAIT);
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === "plexus_admin");
    assert.ok(session?.httpOnly, "the session cookie is HttpOnly");
    assert.equal(session.sameSite, "Strict");
    // The page's scripts cannot read it.
    assert.equal(await page.evaluate(() => document.cookie), "");
    await page.click("#logout");
    await page.locator("#login-error", { hasText: "You are logged out." }).waitFor(WAIT);
    // The session is gone on the server too: the API refuses the old cookie.
    const status = await page.evaluate(async () => (await fetch("/admin/api/info", { method: "POST", body: "{}" })).status);
    assert.equal(status, 401);
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("a state change without the CSRF token, or with a wrong one, is refused", async () => {
    const errors = [];
    const page = await openPage(errors);
    await logIn(page, server);
    const statuses = await page.evaluate(async () => {
      const publish = (headers) =>
        fetch("/admin/api/publish", {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body: JSON.stringify({ channel: "csrf:test", data: 1 }),
        }).then((r) => r.status);
      return [await publish({}), await publish({ "x-csrf-token": "0123456789abcdef" })];
    });
    assert.deepEqual(statuses, [403, 403]);
    const history = await page.evaluate(async () => {
      const { csrf } = await (await fetch("/admin/session")).json();
      const r = await fetch("/admin/api/history", { method: "POST", headers: { "x-csrf-token": csrf }, body: JSON.stringify({ channel: "csrf:test" }) });
      return (await r.json()).result.publications.length;
    });
    assert.equal(history, 0, "nothing was published");
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("the overview counts a client that connects", async () => {
    const errors = [];
    const page = await openPage(errors);
    await logIn(page, server);
    const count = async () => Number(await page.textContent("#stat-connections"));
    await until(async () => !Number.isNaN(await count()), "the first count");
    const before = await count();
    const client = makeClient(server.ws, { token: token("carol") });
    await client.connect();
    await until(async () => (await count()) === before + 1, "the overview to count the client");
    // Wait for a few samples so the charts have lines.
    await page.waitForFunction(() => document.querySelectorAll("#chart-connections path.line, #chart-messages path.line").length >= 3, null, WAIT);
    await shot(page, "overview");
    await assertFits(page);
    await page.setViewportSize(NARROW);
    await shot(page, "overview-narrow");
    await assertFits(page);
    await client.disconnect();
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("a channel's live tail shows a publication; publish from the page reaches a subscriber", async () => {
    const errors = [];
    const page = await openPage(errors);
    await logIn(page, server);
    const alice = makeClient(server.ws, { token: token("alice") });
    await alice.connect();
    const sub = alice.subscribe("chat:lobby");
    await sub.ready;
    await sub.publish({ text: "hello before the tail" });

    await page.click('.nav a[data-page="channels"]');
    await page.locator('#channel-list a[data-channel="chat:lobby"]').click();
    await page.locator("#presence .member", { hasText: "alice" }).waitFor(WAIT);
    await page.locator("#history .entry", { hasText: "hello before the tail" }).waitFor(WAIT);
    await page.click("#tail-toggle");
    await page.locator("#tail-status", { hasText: "waiting for publications" }).waitFor(WAIT);
    await sub.publish({ text: "live from alice" });
    await page.locator("#tail .entry", { hasText: "live from alice" }).waitFor(WAIT);
    // The page's connection is in nobody's presence.
    await page.click('#channel-list a[data-channel="chat:lobby"]');
    const members = await page.locator("#presence .member").count();
    assert.equal(members, 1);
    await shot(page, "channels");
    await assertFits(page);
    await page.setViewportSize(NARROW);
    await shot(page, "channels-narrow");
    await assertFits(page);
    await page.setViewportSize(WIDE);

    // Publish from the page.
    await page.click('.nav a[data-page="publish"]');
    await page.fill("#pub-channel", "chat:lobby");
    await page.fill("#pub-data", '{"text": "from the admin"');
    await page.locator('#pub-check[data-ok="false"]').waitFor(WAIT);
    assert.ok(await page.isDisabled("#pub-submit"), "invalid JSON cannot be published");
    await shot(page, "publish-invalid");
    await page.fill("#pub-data", '{"text": "from the admin"}');
    await page.locator('#pub-check[data-ok="true"]').waitFor(WAIT);
    const received = next(sub, "publication", (p) => p.data?.text === "from the admin");
    await page.click("#pub-submit");
    const publication = await received;
    await page.locator("#pub-result.ok", { hasText: `at offset ${publication.offset}` }).waitFor(WAIT);
    await shot(page, "publish");
    await page.setViewportSize(NARROW);
    await assertFits(page);
    await alice.disconnect();
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("a user's mailbox shows its waiting messages; one is sent from the page", async () => {
    const errors = [];
    const page = await openPage(errors);
    await logIn(page, server);
    const frank = makeClient(server.ws, { token: token("frank"), autoAck: false });
    await frank.connect();
    const mail = next(frank, "mail", (m) => m.data?.notice === "from the admin interface");
    await page.click('.nav a[data-page="mailboxes"]');
    await page.fill("#mailbox-user", "frank");
    await page.click("#mailbox-search button");
    await page.locator("#durable-form").waitFor(WAIT);
    await page.click("#durable-submit");
    await page.locator("#durable-result.ok", { hasText: "Sent as message #1" }).waitFor(WAIT);
    await page.locator('#mailbox-view .entry[data-seq="1"]').waitFor(WAIT);
    assert.equal((await mail).seq, 1);
    await shot(page, "mailboxes");
    await assertFits(page);
    await frank.disconnect();
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test("disconnect a connection with a reason", async () => {
    const errors = [];
    const page = await openPage(errors);
    await logIn(page, server);
    const bob = makeClient(server.ws, { token: token("bob"), reconnect: false });
    await bob.connect();
    const sub = bob.subscribe("chat:bob");
    await sub.ready;
    await page.click('.nav a[data-page="connections"]');
    await page.fill("#conn-query", "bob");
    await page.click("#conn-search button");
    const card = page.locator("article.conn", { hasText: "bob" });
    await card.waitFor(WAIT);
    await card.locator(".chip", { hasText: "chat:bob" }).waitFor(WAIT);
    await shot(page, "connections");
    await assertFits(page);
    const closed = next(bob, "disconnected");
    await card.locator('button[data-action="disconnect"]').click();
    await page.fill("#disconnect-reason", "maintenance window");
    await shot(page, "disconnect-dialog");
    await page.click("#disconnect-confirm");
    const event = await closed;
    assert.equal(event.code, 4505);
    assert.equal(event.reason, "maintenance window");
    await page.locator("#conn-count", { hasText: "Disconnected" }).waitFor(WAIT);
    await page.click("#conn-search button");
    await page.locator(".conn-results .empty", { hasText: "No connection found" }).waitFor(WAIT);
    await page.setViewportSize(NARROW);
    await shot(page, "connections-empty-narrow");
    await assertFits(page);
    assert.deepEqual(errors, []);
    await page.context().close();
  });
});

describe("development mode: `plexus serve` alone", () => {
  let child;
  let http;
  let password;
  before(async () => {
    const port = await freePort();
    http = `http://127.0.0.1:${port}`;
    child = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, PLEXUS_LOG: "warn", NO_COLOR: "1" },
    });
    children.add(child);
    let log = "";
    child.stderr.on("data", (d) => (log += d.toString()));
    // The server says where the admin interface is and which password it made up.
    password = await until(() => {
      if (child.exitCode !== null) throw new Error(`plexus exited: ${log}`);
      return /log in with the password ([0-9a-f]+)/.exec(log.replace(/\x1b\[[0-9;]*m/g, ""))?.[1];
    }, "the admin password in the log");
  });
  after(async () => {
    child?.kill("SIGTERM");
  });

  test("the demo chat's connection is listed, and a publication from the page reaches its room", async () => {
    const errors = [];
    const demo = await openPage(errors);
    await demo.goto(`${http}/`);
    await demo.fill("#name", "erin");
    await demo.fill("#room", "lobby");
    await demo.click("#join");
    await demo.locator('#status[data-state="connected"]').waitFor(WAIT);

    const page = await openPage(errors);
    await page.goto(`${http}/admin`);
    await page.fill("#password", password);
    await page.click("#login-submit");
    await page.locator("#app").waitFor(WAIT);
    await page.click('.nav a[data-page="connections"]');
    const card = page.locator("article.conn", { has: page.locator(".chip", { hasText: "chat:lobby" }) });
    await card.waitFor(WAIT);
    await shot(page, "dev-demo-connections");

    await page.click('.nav a[data-page="publish"]');
    await page.fill("#pub-channel", "chat:lobby");
    await page.fill("#pub-data", '{"name": "operator", "text": "hello from the admin interface"}');
    await page.click("#pub-submit");
    await page.locator("#pub-result.ok").waitFor(WAIT);
    await demo.locator("#messages li", { hasText: "hello from the admin interface" }).waitFor(WAIT);
    await shot(demo, "dev-demo-received");
    assert.deepEqual(errors, []);
    await demo.context().close();
    await page.context().close();
  });
});

describe("two nodes on Redis", () => {
  let redis;
  let a;
  let b;
  before(async () => {
    const redisPort = await freePort();
    redis = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
    children.add(redis);
    await until(async () => {
      const net = await import("node:net");
      return new Promise((resolve) => {
        const socket = net.connect(redisPort, "127.0.0.1", () => {
          socket.end();
          resolve(true);
        });
        socket.on("error", () => resolve(false));
      });
    }, "redis-server");
    const engine = `engine = "redis"\n[redis]\nurl = "redis://127.0.0.1:${redisPort}/"\nprefix = "admin-e2e"\nnode_ttl_ms = 3000\n`;
    const [pa, pb] = [await freePort(), await freePort()];
    a = await serve("node-a", pa, config(pa, engine));
    b = await serve("node-b", pb, config(pb, engine));
  });
  after(async () => {
    await closeClients();
    await a?.stop();
    await b?.stop();
    redis?.kill("SIGTERM");
  });

  test("node A's page sees both nodes, finds a client of node B and disconnects it", async () => {
    const errors = [];
    const page = await openPage(errors);
    await logIn(page, a);
    await page.locator("#stat-nodes", { hasText: "2" }).waitFor(WAIT);
    const dave = makeClient(b.ws, { token: token("dave"), reconnect: false });
    await dave.connect();
    const sub = dave.subscribe("chat:cluster");
    await sub.ready;
    await page.locator("#nodes-table tbody tr").nth(1).waitFor(WAIT);
    await until(async () => Number(await page.textContent("#stat-subscriptions")) >= 1, "the subscription on node B");
    // A few readings, so that both charts have lines.
    await page.waitForFunction(() => document.querySelectorAll("#chart-messages path.line").length === 2, null, WAIT);
    await shot(page, "overview-two-nodes");

    // The live tail on node A shows what is published on node B.
    await page.goto(`${a.http}/admin#/channels/${encodeURIComponent("chat:cluster")}`);
    await page.locator("#channel-view").waitFor(WAIT);
    await page.click("#tail-toggle");
    await page.locator("#tail-status", { hasText: "waiting for publications" }).waitFor(WAIT);
    await sub.publish({ text: "from node B" });
    await page.locator("#tail .entry", { hasText: "from node B" }).waitFor(WAIT);

    await page.click('.nav a[data-page="connections"]');
    await page.fill("#conn-query", "dave");
    await page.click("#conn-search button");
    const card = page.locator("article.conn", { hasText: "dave" });
    await card.waitFor(WAIT);
    const closed = next(dave, "disconnected");
    await card.locator('button[data-action="disconnect"]').click();
    await page.click("#disconnect-confirm");
    assert.equal((await closed).code, 4505);

    // Redis goes away: the overview says so, and still shows the node serving the page.
    redis.kill("SIGKILL");
    await page.click('.nav a[data-page="overview"]');
    await page.locator("#banner", { hasText: "Showing this node only" }).waitFor(WAIT);
    await page.locator("#stat-engine", { hasText: "degraded" }).waitFor(WAIT);
    await shot(page, "overview-redis-down");
    assert.deepEqual(errors, []);
    await page.context().close();
  });
});
