// Test helpers: `plexus serve --dev` per test file (on the in-memory engine, or on a Redis this
// file starts when MESA_ENGINE=redis), Mesa's own clients from npm, the HTTP API, bounded waits.
//
// Every wait has an upper bound (WAIT_MS); no test asserts how fast anything is. An absence is
// proved with a later message that must arrive after it, never with a sleep.

import { spawn } from "node:child_process";
import { connect as tcpConnect, createServer } from "node:net";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import path from "node:path";
import mesa from "@cryb/mesa";
import { engineFrom, freePort, killAtExit, redisUrl, until } from "../../test-support/processes.mjs";

export { redisUrl, until };

export const { Client, Message, Dispatcher, DispatchEvent } = mesa;

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "../../..");
/** The server binary: `MESA_PLEXUS_BIN`, or the debug build (`cargo build -p plexus`). */
export const BIN = process.env.MESA_PLEXUS_BIN ?? path.join(repoRoot, "target/debug/plexus");
/** Upper bound for anything a test waits for; never an assertion about speed. */
export const WAIT_MS = 5_000;

export const ENGINE = engineFrom("MESA_ENGINE");

let serverCount = 0;

/**
 * One `plexus serve --dev` process, with `--set mesa.<key>=<value>` / `limits.<key>=<value>`
 * for each setting given. With MESA_ENGINE=redis (or `redis: true`), on this file's Redis; nodes
 * given the same `group` share a key prefix, so they are one system.
 */
export class TestServer {
  constructor(settings = {}, { redis = ENGINE === "redis", group } = {}) {
    this.settings = settings;
    this.redis = redis;
    this.group = group ?? `g${++serverCount}`;
    this.log = "";
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/mesa`;
  }

  get http() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    this.port = await freePort();
    const args = ["serve", "--dev", "--listen", `127.0.0.1:${this.port}`];
    for (const [key, value] of Object.entries(this.settings)) {
      args.push("--set", `${key}=${value}`);
    }
    if (this.redis) {
      this.redisUrl = await redisUrl();
      args.push("--engine", "redis", "--redis-url", this.redisUrl, "--set", `redis.prefix=mesa${process.pid}${this.group}`);
    }
    const child = spawn(BIN, args, {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, PLEXUS_LOG: process.env.PLEXUS_LOG ?? "warn" },
    });
    this.child = child;
    killAtExit(child);
    child.stderr.on("data", (d) => {
      this.log += d.toString();
    });
    const spawnError = once(child, "error").then(([e]) => {
      throw new Error(`cannot start ${BIN}: ${e.message} (build it with \`cargo build -p plexus\`)`);
    });
    await Promise.race([spawnError, until(() => this.#healthy(), "the server to listen")]);
    return this;
  }

  async #healthy() {
    if (this.child?.exitCode !== null) {
      throw new Error(`the server exited (${this.child.exitCode}): ${this.log.trim()}`);
    }
    try {
      const res = await fetch(`${this.http}/health`, { signal: AbortSignal.timeout(WAIT_MS) });
      return res.ok;
    } catch {
      return false;
    }
  }

  /** Connections open on this node (`/health`). */
  async connections() {
    const res = await fetch(`${this.http}/health`, { signal: AbortSignal.timeout(WAIT_MS) });
    return (await res.json()).connections;
  }

  /** Closes `client` and waits until this node has let its connection go. */
  async closeClient(client) {
    const before = await this.connections();
    client.close();
    await client.closed();
    await until(async () => (await this.connections()) < before, "the server to drop the connection");
  }

  /** `POST /api/<method>` (development mode: no key). */
  async api(method, body) {
    const res = await fetch(`${this.http}/api/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(WAIT_MS),
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`${method}: ${res.status} ${JSON.stringify(json)}`);
    return json.result;
  }

  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    const exited = once(this.child, "exit");
    this.child.kill("SIGTERM");
    await withTimeout(exited, "the server to exit");
  }
}

export async function withTimeout(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}


/**
 * A `@cryb/mesa` Client with a queue of received messages. Connected before anything is sent:
 * the Client's pre-open queue flush crashes (seeds-protocols §1.4), so no test sends before
 * `connected`. Its reconnect loop after `disconnect()` (also §1.4) is harmless here: the hello
 * advertises no reconnect interval unless a test sets one.
 */
export class MesaClient {
  constructor(url) {
    this.messages = [];
    this.waiters = [];
    this.closes = [];
    this.client = new Client(url, { autoConnect: false });
    this.client.on("message", (m) => {
      this.messages.push(m);
      this.#wake();
    });
    this.client.on("disconnected", (code, reason) => {
      this.closes.push({ code, reason: String(reason ?? "") });
      this.#wake();
    });
    this.client.on("error", () => {});
  }

  #wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  async connect() {
    await withTimeout(this.client.connect(), "the Mesa client to connect");
    return this;
  }

  authenticate(data, config) {
    return withTimeout(this.client.authenticate(data, config), "op 22");
  }

  /** The next message (op 0 and others the Client emits). */
  async next() {
    await this.#wait(() => this.messages.length > 0, "a message");
    return this.messages.shift();
  }

  /** The close, once it came. */
  async closed() {
    await this.#wait(() => this.closes.length > 0, "the close");
    return this.closes[0];
  }

  #wait(ready, what) {
    return withTimeout(
      (async () => {
        while (!ready()) await new Promise((r) => this.waiters.push(r));
      })(),
      what,
    );
  }

  close() {
    this.client.disconnect();
  }
}

/** A message as the Node Client emits it, for deepEqual. */
export function plain(m) {
  const out = { opcode: m.opcode, data: m.data, type: m.type };
  if (m.sequence !== undefined) out.sequence = m.sequence;
  return out;
}
