// Test helpers: a real `plexus serve` process (started, killed and restarted on the same port),
// a scripted WebSocket server for what a development server cannot be made to do, and waits.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import path from "node:path";
import WebSocket, { WebSocketServer } from "ws";
import { Client } from "../dist/index.js";
import { freePort, killAtExit, sleep, until as untilBounded } from "../../test-support/processes.mjs";

export { freePort, sleep };

/** Polls `check` until it returns a truthy value (which it resolves with), within `WAIT_MS`
 * unless told. */
export const until = (check, what = "condition", timeoutMs = WAIT_MS) =>
  untilBounded(check, what, timeoutMs);

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
/** The server binary: `TS_PLEXUS_BIN`, or the debug build (`cargo build -p plexus`). */
export const BIN = process.env.TS_PLEXUS_BIN ?? path.join(repoRoot, "target/debug/plexus");
/** Upper bound for anything a test waits for; never an assertion about speed. */
export const WAIT_MS = 10_000;

/** The next `event` of an emitter (client or subscription) that satisfies `match`. */
export function next(emitter, event, match = () => true, timeoutMs = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for "${event}"`));
    }, timeoutMs);
    const off = emitter.on(event, (value) => {
      if (!match(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/** Collects every `event` of an emitter into an array. */
export function collect(emitter, event) {
  const seen = [];
  emitter.on(event, (value) => seen.push(value));
  return seen;
}

/**
 * Development mode as `plexus serve` documents it: every channel open, with history (100
 * publications, 1 h), recovery and presence with per-user join/leave pushes.
 *
 * The tests spell these settings out in a configuration file, so they do not depend on the
 * defaults; the test "plain `plexus serve` …" in server.test.mjs checks that the defaults match.
 */
const DEV_CONFIG = `[server]
dev_mode = true

[[namespaces]]
name = "dev"
channels = "*"
subscribe = "anyone"
publish = "anyone"
history_size = 100
history_ttl_ms = 3600000
recovery = true
presence = true
join_leave = "users"
`;

let devConfigPath;
function devConfig() {
  if (!devConfigPath) {
    const dir = mkdtempSync(path.join(tmpdir(), "plexus-ts-"));
    devConfigPath = path.join(dir, "dev.toml");
    writeFileSync(devConfigPath, DEV_CONFIG);
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  }
  return devConfigPath;
}

/** A `plexus serve` process on a fixed port, which can be stopped and started again. */
export class PlexusServer {
  /** `plain`: `plexus serve` with no configuration at all. */
  constructor(port, { plain = false } = {}) {
    this.plain = plain;
    this.port = port;
    this.child = undefined;
    this.log = "";
  }

  static async start(options = {}) {
    const server = new PlexusServer(await freePort(), options);
    await server.start();
    return server;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get httpUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    const args = ["serve", "--listen", `127.0.0.1:${this.port}`];
    if (!this.plain) args.push("--config", devConfig());
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
  }

  async #healthy() {
    if (this.child?.exitCode !== null) throw new Error(`the server exited: ${this.log}`);
    try {
      const res = await fetch(`${this.httpUrl}/health`);
      return res.ok;
    } catch {
      return false;
    }
  }

  /** Stops the process: SIGTERM is a graceful shutdown (close 4000), SIGKILL a crash. */
  async stop(signal = "SIGTERM") {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill(signal);
    await exited;
    this.child = undefined;
  }

  async restart(signal = "SIGTERM") {
    await this.stop(signal);
    await this.start();
  }
}

const clients = new Set();

/**
 * Disconnects every client `makeClient` made, so that a test that failed half-way does not keep
 * the test process alive. Call it in each file's `after` hook.
 */
export async function closeClients() {
  await Promise.all([...clients].map((c) => c.disconnect()));
  clients.clear();
}

/** A client with the `ws` WebSocket and short backoff delays, for tests. */
export function makeClient(url, options = {}) {
  const client = new Client({
    url,
    WebSocket,
    backoff: { minDelayMs: 50, maxDelayMs: 400 },
    requestTimeoutMs: WAIT_MS,
    ...options,
  });
  clients.add(client);
  return client;
}

/**
 * A scripted server: the test plays the server's side frame by frame. Every accepted socket is
 * handed to the test as a `ScriptedConn` through `accept()`.
 */
export class ScriptedServer {
  constructor(wss, encodings) {
    this.wss = wss;
    this.waiting = [];
    this.accepted = [];
    this.count = 0;
    wss.on("connection", (ws, req) => {
      this.count += 1;
      const conn = new ScriptedConn(ws, ws.protocol === "plexus.v1.msgpack" ? encodings.msgpack : encodings.json, req);
      const waiter = this.waiting.shift();
      if (waiter) waiter(conn);
      else this.accepted.push(conn);
    });
  }

  static async start() {
    const msgpack = await import("@msgpack/msgpack");
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, handleProtocols: (protocols) => [...protocols][0] ?? false });
    await once(wss, "listening");
    return new ScriptedServer(wss, { json: jsonCodec, msgpack: msgpackCodec(msgpack) });
  }

  get url() {
    return `ws://127.0.0.1:${this.wss.address().port}/ws`;
  }

  /** The next connection a client opens. */
  accept(timeoutMs = WAIT_MS) {
    const conn = this.accepted.shift();
    if (conn) return Promise.resolve(conn);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no connection to the scripted server")), timeoutMs);
      this.waiting.push((c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
  }

  async close() {
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise((r) => this.wss.close(r));
  }
}

const jsonCodec = {
  name: "json",
  encode: (frame) => JSON.stringify(frame),
  join: (frames) => frames.join("\n"),
  decode: (data, isBinary) => {
    if (isBinary) throw new Error("a binary message on a JSON connection");
    return data
      .toString()
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l));
  },
};

function msgpackCodec(mp) {
  return {
    name: "msgpack",
    encode: (frame) => mp.encode(frame),
    join: (frames) => Buffer.concat(frames.map((f) => Buffer.from(f))),
    decode: (data, isBinary) => {
      if (!isBinary) throw new Error("a text message on a MessagePack connection");
      return [...mp.decodeMulti(new Uint8Array(data))];
    },
  };
}

export const HELLO = {
  push: "hello",
  version: 1,
  node: "scripted",
  conn: "scripted-1",
  auth: "optional",
  auth_timeout_ms: 10000,
  ping_interval_ms: 25000,
  max_missed_pongs: 2,
  limits: {
    max_message_bytes: 65536,
    max_subscriptions: 128,
    max_channel_bytes: 255,
    requests_per_second: 100,
    requests_burst: 200,
    max_pending_requests: 64,
  },
};

/** The server's side of one scripted connection. */
export class ScriptedConn {
  constructor(ws, codec, req) {
    this.ws = ws;
    this.codec = codec;
    this.protocol = ws.protocol;
    this.request = req;
    this.frames = [];
    this.waiting = [];
    this.messages = 0;
    this.closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on("message", (data, isBinary) => {
      this.messages += 1;
      for (const frame of codec.decode(data, isBinary)) {
        const waiter = this.waiting.shift();
        if (waiter) waiter(frame);
        else this.frames.push(frame);
      }
    });
  }

  /** Sends frames as one WebSocket message (several frames: a batch). */
  send(...frames) {
    const encoded = frames.map((f) => this.codec.encode(f));
    this.ws.send(frames.length === 1 ? encoded[0] : this.codec.join(encoded));
  }

  hello(overrides = {}) {
    this.send({ ...HELLO, ...overrides });
  }

  /** The next frame the client sent. */
  next(timeoutMs = WAIT_MS) {
    const frame = this.frames.shift();
    if (frame) return Promise.resolve(frame);
    return new Promise((resolve, reject) => {
      const waiter = (f) => {
        clearTimeout(timer);
        resolve(f);
      };
      const timer = setTimeout(() => {
        this.waiting = this.waiting.filter((w) => w !== waiter);
        reject(new Error("no frame from the client"));
      }, timeoutMs);
      this.waiting.push(waiter);
    });
  }

  /** The next frame with this `op` (others, like pongs, are skipped). */
  async nextOp(op, timeoutMs = WAIT_MS) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame = await this.next(Math.max(1, deadline - Date.now()));
      if (frame.op === op) return frame;
    }
  }

  /** Nothing arrives within `ms`. */
  async quiet(ms) {
    try {
      const frame = await this.next(ms);
      return frame;
    } catch {
      return undefined;
    }
  }

  reply(id, result) {
    this.send({ id, result });
  }

  error(id, code, message = "refused") {
    this.send({ id, error: { code, message } });
  }

  close(code, reason = "") {
    this.ws.close(code, reason);
  }
}
