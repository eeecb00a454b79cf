// Test helpers: a server process per test file (`plexus serve`, or the reference Socket.IO
// server when SIO_TEST_TARGET=ref), the two real clients behind one small interface, and
// bounded waits. Every wait has an upper bound (WAIT_MS); no test asserts how fast anything is.

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import path from "node:path";
import sio2 from "sio2";
import { io as io4, Manager as Manager4 } from "sio4";
import { freePort, killAtExit, sleep, until as untilBounded } from "../../test-support/processes.mjs";

export { freePort, sleep };

/** Polls `check` until it returns a truthy value (which it resolves with), within `WAIT_MS`
 * unless told. */
export const until = (check, what = "condition", timeoutMs = WAIT_MS) =>
  untilBounded(check, what, timeoutMs);

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
/** The server binary: `SIO_PLEXUS_BIN`, or the debug build (`cargo build -p plexus`). */
export const BIN = process.env.SIO_PLEXUS_BIN ?? path.join(repoRoot, "target/debug/plexus");
/** Upper bound for anything a test waits for; never an assertion about speed. */
export const WAIT_MS = 10_000;

/**
 * What the suite runs against: `plexus` (the default, and the only one CI uses) or `ref`, a
 * Node socket.io@4 server implementing docs/socketio.md's built-in events, used to check the
 * tests themselves before Plexus served Socket.IO (`SIO_REF_SERVER`, default
 * /tmp/sio-ref/server.js; not part of the repository).
 */
export const TARGET = process.env.SIO_TEST_TARGET ?? "plexus";
if (TARGET !== "plexus" && TARGET !== "ref") {
  throw new Error(`SIO_TEST_TARGET=${TARGET}: expected plexus or ref`);
}
const REF_SERVER = process.env.SIO_REF_SERVER ?? "/tmp/sio-ref/server.js";
/** For `test(name, { skip: PLEXUS_ONLY }, …)`: cases that need the native protocol. */
export const PLEXUS_ONLY = TARGET === "plexus" ? false : "needs Plexus (native clients)";

// --- the two clients ----------------------------------------------------------------------

const version = (pkg) =>
  JSON.parse(readFileSync(new URL(`../node_modules/${pkg}/package.json`, import.meta.url))).version;

/** Short reconnection delays so that a restart test does not wait seconds; not asserted. */
const RECONNECT = { reconnectionDelay: 100, reconnectionDelayMax: 500 };

/**
 * socket.io-client 2.x and 4.x behind one interface. Their APIs agree on `emit`, `on`, `once`,
 * `off`, `disconnect`, `id`, `connected` and `socket.io` (the Manager); they differ in how
 * credentials travel (v2: the handshake query; v4: the CONNECT packet's `auth`) and in the
 * Manager's constructor.
 */
export const CLIENTS = [
  {
    name: `socket.io-client@${version("sio2")}`,
    major: 2,
    credentials: (token) => (token === undefined ? {} : { query: { token } }),
    /** One socket on its own Manager (`forceNew`: no sharing through the module's cache). */
    socket(url, { nsp = "/", transports, token } = {}) {
      return sio2(url + (nsp === "/" ? "" : nsp), {
        forceNew: true,
        ...(transports && { transports }),
        ...this.credentials(token),
        ...RECONNECT,
      });
    },
    manager(url, { transports, token } = {}) {
      return new sio2.Manager(url, {
        ...(transports && { transports }),
        ...this.credentials(token),
        ...RECONNECT,
      });
    },
    /** v2 re-emits the Manager's `reconnect` on each socket; v4 only on the Manager. */
    reconnectEmitter: (socket) => socket,
  },
  {
    name: `socket.io-client@${version("sio4")}`,
    major: 4,
    credentials: (token) => (token === undefined ? {} : { auth: { token } }),
    socket(url, { nsp = "/", transports, token } = {}) {
      return io4(url + (nsp === "/" ? "" : nsp), {
        forceNew: true,
        ...(transports && { transports }),
        ...this.credentials(token),
        ...RECONNECT,
      });
    },
    manager(url, { transports } = {}) {
      return new Manager4(url, { ...(transports && { transports }), ...RECONNECT });
    },
    reconnectEmitter: (socket) => socket.io,
  },
];

/**
 * The transport settings each connect case runs with. `final` is the transport the connection
 * must end on: with the defaults, polling first and then the upgrade to WebSocket.
 */
export const TRANSPORTS = [
  { name: "polling, then upgrade to websocket", transports: undefined, final: "websocket" },
  { name: "websocket only", transports: ["websocket"], final: "websocket" },
];
/** The data cases also run over long-polling alone, where binary is encoded differently. */
export const DATA_TRANSPORTS = [
  ...TRANSPORTS,
  { name: "polling only", transports: ["polling"], final: "polling" },
];

/** Managers made by the tests, closed by `closeAll` even when a test failed half-way. */
const managers = new Set();

/**
 * Opens a socket and waits until it is connected on its final transport (after the upgrade
 * where one is expected). Fails with the client's own error when the connection is refused.
 */
export async function connect(client, url, options = {}) {
  const socket = track(client.socket(url, options));
  await connected(socket);
  if (options.final) await transportIs(socket, options.final);
  return socket;
}

export function track(socket) {
  managers.add(socket.io);
  return socket;
}

export function trackManager(manager) {
  managers.add(manager);
  return manager;
}

/** Resolves on `connect`; rejects on `connect_error` / v2's `error` (a refused CONNECT). */
export function connected(socket) {
  if (socket.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (fn) => (value) => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
      socket.off("error", onError);
      fn(value);
    };
    const onConnect = done(resolve);
    const onError = done((e) => reject(new Error(`connection refused: ${e?.message ?? e}`)));
    const timer = setTimeout(
      done(() => reject(new Error("timed out waiting for connect"))),
      WAIT_MS,
    );
    socket.on("connect", onConnect);
    socket.on("connect_error", onError);
    socket.on("error", onError);
  });
}

/** Waits until the socket's Engine.IO connection runs on `name` (`websocket`, `polling`). */
export function transportIs(socket, name) {
  return until(() => socket.io.engine?.transport?.name === name, `the ${name} transport`);
}

/**
 * Disconnects every socket and Manager the tests made, then waits until `server` (when given
 * and running) holds no connection: a connection the server keeps after its client closed it
 * fails the test that opened it, not a later one (the server is restarted for the next test).
 * Call it in each file's `afterEach`.
 */
export async function closeAll(server) {
  for (const manager of managers) {
    // Both clients: `disconnect()` closes the Engine.IO connection (over long-polling with a
    // CLOSE packet) and stops reconnecting.
    manager.disconnect();
  }
  managers.clear();
  if (!server?.child) return;
  try {
    await until(async () => (await server.health()).connections === 0, "the server to release every connection");
  } catch (e) {
    // Start the next test on a clean server, so that one leak fails one test.
    await server.stop("SIGKILL");
    await server.start();
    throw e;
  }
}

// --- waits ------------------------------------------------------------------------------

/** The arguments of the next `event` of an emitter (a socket or a Manager) that satisfy `match`. */
export function nextEvent(emitter, event, match = () => true, timeoutMs = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const listener = (...args) => {
      if (!match(...args)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(args);
    };
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`timed out waiting for event "${event}"`));
    }, timeoutMs);
    emitter.on(event, listener);
  });
}

/** Every `event` of an emitter, as argument arrays. */
export function collect(emitter, event) {
  const seen = [];
  emitter.on(event, (...args) => seen.push(args));
  return seen;
}

/** Emits with an ack callback; resolves with the ack's arguments (an array). */
export function emitAck(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for the ack of "${event}"`)),
      WAIT_MS,
    );
    socket.emit(event, ...args, (...ack) => {
      clearTimeout(timer);
      resolve(ack);
    });
  });
}

/** The bytes of a binary value as the clients hand it over (Buffer, ArrayBuffer, typed array). */
export function bytes(value) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new Error(`not binary: ${Object.prototype.toString.call(value)} ${JSON.stringify(value)}`);
}

let channelCount = 0;
/** A channel name no other test of this run uses. */
export const freshChannel = (prefix = "sio") => `${prefix}-${process.pid}-${++channelCount}`;

// --- servers ------------------------------------------------------------------------------

const tempDirs = [];
process.on("exit", () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir() {
  const dir = mkdtempSync(path.join(tmpdir(), "plexus-sio-"));
  tempDirs.push(dir);
  return dir;
}

/** A connection token for `user`, made by `plexus token` (HS256 with `secret`). */
export function token(secret, user) {
  return execFileSync(BIN, ["token", "--secret", secret, "--user", user], {
    encoding: "utf8",
  }).trim();
}

/** 32 random bytes as hex: a `jwt.hmac_secret` (which must be at least 32 bytes). */
export const randomSecret = () =>
  Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, "0")).join("");

/**
 * A server process on a fixed port that can be stopped and started again: `plexus serve`
 * (development mode; with `jwtSecret`, a configuration that requires a token and serves
 * Socket.IO), or the reference server.
 */
export class TestServer {
  constructor(port, { jwtSecret, apiKey } = {}) {
    this.port = port;
    this.jwtSecret = jwtSecret;
    this.apiKey = apiKey;
    this.child = undefined;
    this.log = "";
    this.configPath = undefined;
  }

  static async start(options = {}) {
    const server = new TestServer(await freePort(), options);
    await server.start();
    return server;
  }

  /** The Socket.IO URL (the clients add `/socket.io/`). */
  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The native WebSocket endpoint (Plexus only). */
  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  #command() {
    if (TARGET === "ref") {
      const args = [REF_SERVER, "--port", String(this.port)];
      if (this.jwtSecret) args.push("--jwt-secret", this.jwtSecret);
      return [process.execPath, args];
    }
    const args = ["serve", "--listen", `127.0.0.1:${this.port}`];
    if (this.jwtSecret) {
      if (!this.configPath) {
        this.configPath = path.join(tempDir(), "plexus.toml");
        writeFileSync(this.configPath, authConfig(this.jwtSecret, this.apiKey));
      }
      args.push("--config", this.configPath);
    }
    return [BIN, args];
  }

  async start() {
    const [command, args] = this.#command();
    const child = spawn(command, args, {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, PLEXUS_LOG: process.env.PLEXUS_LOG ?? "warn" },
    });
    this.child = child;
    killAtExit(child);
    child.stderr.on("data", (d) => {
      this.log += d.toString();
    });
    const spawnError = once(child, "error").then(([e]) => {
      throw new Error(`cannot start ${command}: ${e.message} (build it with \`cargo build -p plexus\`)`);
    });
    await Promise.race([spawnError, until(() => this.#healthy(), "the server to listen")]);
  }

  async #healthy() {
    if (this.child?.exitCode !== null) throw new Error(`the server exited: ${this.log}`);
    try {
      const res = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(WAIT_MS) });
      return res.ok;
    } catch {
      return false;
    }
  }

  /** `GET /health`'s body: `connections` counts Plexus connections (one per Engine.IO one). */
  async health() {
    const res = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(WAIT_MS) });
    return res.json();
  }

  /** Publishes through the HTTP server API; returns its result. */
  publish(channel, data) {
    return this.api("publish", { channel, data });
  }

  /**
   * Calls a method of the HTTP server API (docs/api.md; development mode needs no key, a
   * configuration made with `apiKey` gets it); returns its result, throws on an error.
   */
  async api(method, params) {
    const headers = { "content-type": "application/json" };
    if (this.apiKey) headers["x-api-key"] = this.apiKey;
    const res = await fetch(`${this.url}/api/${method}`, {
      method: "POST",
      headers,
      body: JSON.stringify(params),
      signal: AbortSignal.timeout(WAIT_MS),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(`${method}: HTTP ${res.status} ${JSON.stringify(body)}`);
    return body.result;
  }

  /** Stops the process: SIGTERM is Plexus's graceful shutdown. Waits until it has exited. */
  async stop(signal = "SIGTERM") {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), WAIT_MS);
    await exited;
    clearTimeout(timer);
    this.child = undefined;
  }
}

/** A configuration that requires a token: JWT only, Socket.IO on, every channel for users. */
function authConfig(secret, apiKey) {
  return `[client]
anonymous = false

[jwt]
hmac_secret = "${secret}"
${apiKey ? `\n[api]\nkey = "${apiKey}"\n` : ""}
[socketio]
enabled = true

[[namespaces]]
name = "all"
channels = "*"
subscribe = "authenticated"
publish = "authenticated"
`;
}
