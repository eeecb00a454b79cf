// Test helpers: a chat-service server per test (`plexus serve --dev`, or the real chat-service
// 1.0.0 when CS_TEST_TARGET=ref), chat-service's own client (socket.io-client@2.5.0) logged in
// the way chat-service's tests log in, and bounded waits.
//
// Every wait has an upper bound (WAIT_MS); no test asserts how fast anything is. An absence
// ("no such event") is proved with a later event that must arrive after it, never with a sleep.

import { spawn } from "node:child_process";
import { connect as tcpConnect, createServer } from "node:net";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import path from "node:path";
import assert from "node:assert/strict";
import io from "sio2";
import { engineFrom, freePort, killAtExit, redisUrl, sleep, until as untilBounded } from "../../test-support/processes.mjs";

export { freePort, sleep };

/** Polls `check` until it returns a truthy value (which it resolves with), within `WAIT_MS`
 * unless told. */
export const until = (check, what = "condition", timeoutMs = WAIT_MS) =>
  untilBounded(check, what, timeoutMs);

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "../../..");

/**
 * What the suite runs against: `plexus` (the default) or `ref`, the real chat-service 1.0.0
 * (`test/ref-server.mjs`), which checks the tests themselves.
 */
export const TARGET = process.env.CS_TEST_TARGET ?? "plexus";
if (TARGET !== "plexus" && TARGET !== "ref") {
  throw new Error(`CS_TEST_TARGET=${TARGET}: expected plexus or ref`);
}
export const PLEXUS = TARGET === "plexus";
/** The server binary: `CS_PLEXUS_BIN`, or the debug build (`cargo build -p plexus`). */
export const BIN = process.env.CS_PLEXUS_BIN ?? path.join(repoRoot, "target/debug/plexus");
/** Upper bound for anything a test waits for; never an assertion about speed. */
export const WAIT_MS = 5_000;
/** The namespace chat-service's clients connect to. */
export const NAMESPACE = "/chat-service";

/**
 * For `test(name, { skip: PLEXUS_ONLY }, …)`: a case checking a deliberate difference from
 * chat-service (docs/chat-service.md, "Differences from chat-service") that the reference does
 * not have and that cannot be inverted reliably there.
 */
export const PLEXUS_ONLY = PLEXUS ? false : "a deliberate difference from chat-service (docs/chat-service.md)";

// --- options --------------------------------------------------------------------------------

/**
 * chat-service's options by their Plexus names (`[chat_service]` in the configuration) and
 * chat-service's. Tests name options the Plexus way; the reference gets them camelCased.
 */
const OPTIONS = {
  enable_rooms_management: "enableRoomsManagement",
  enable_direct_messages: "enableDirectMessages",
  enable_userlist_updates: "enableUserlistUpdates",
  enable_access_lists_updates: "enableAccessListsUpdates",
  history_max_size: "historyMaxSize",
  history_max_get_messages: "historyMaxGetMessages",
  room_list_size_limit: "roomListSizeLimit",
  direct_list_size_limit: "directListSizeLimit",
  use_raw_error_objects: "useRawErrorObjects",
};

function checkOptions(options) {
  for (const [key, value] of Object.entries(options)) {
    if (!(key in OPTIONS)) throw new Error(`unknown chat_service option ${key}`);
    if (typeof value !== "boolean" && !Number.isSafeInteger(value)) {
      throw new Error(`chat_service.${key}: expected a boolean or an integer, got ${value}`);
    }
  }
}

// --- servers --------------------------------------------------------------------------------

/**
 * `CS_ENGINE=redis`: every Plexus server of this file uses one `redis-server` (started here on a
 * free loopback port, killed at exit), each with a key prefix of its own — rooms, users, history
 * and presence then live in Redis, as on a deployment with many nodes.
 */
export const ENGINE = engineFrom("CS_ENGINE");
let serverCount = 0;

/**
 * One server process: `plexus serve --dev` with `--set chat_service.<key>=<value>` for each
 * option given, or the reference chat-service with the same options.
 */
export class TestServer {
  constructor(port, options = {}) {
    checkOptions(options);
    this.port = port;
    this.options = options;
    this.child = undefined;
    this.log = "";
  }

  /** The Socket.IO URL (the client adds `/socket.io/`). */
  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  #command() {
    if (TARGET === "ref") {
      const options = Object.fromEntries(
        Object.entries(this.options).map(([key, value]) => [OPTIONS[key], value]),
      );
      return [
        process.execPath,
        [path.join(here, "ref-server.mjs"), "--port", String(this.port), "--options", JSON.stringify(options)],
      ];
    }
    const args = ["serve", "--dev", "--listen", `127.0.0.1:${this.port}`];
    for (const [key, value] of Object.entries(this.options)) {
      args.push("--set", `chat_service.${key}=${value}`);
    }
    if (this.redisUrl) {
      args.push("--engine", "redis", "--redis-url", this.redisUrl, "--set", `redis.prefix=cs${process.pid}x${this.prefix}`);
    }
    return [BIN, args];
  }

  async start() {
    if (PLEXUS && ENGINE === "redis" && !this.redisUrl) {
      this.redisUrl = await redisUrl();
      this.prefix = ++serverCount;
    }
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
    if (this.child?.exitCode !== null) {
      throw new Error(`the server exited (${this.child.exitCode}): ${this.log.trim()}`);
    }
    try {
      const res = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(WAIT_MS) });
      return res.ok;
    } catch {
      return false;
    }
  }

  get running() {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** `GET /health`'s body; `connections` counts the open Engine.IO connections. */
  async health() {
    const res = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(WAIT_MS) });
    return res.json();
  }

  /** Stops the process (SIGTERM: a graceful shutdown for both) and waits until it has exited. */
  async stop(signal = "SIGTERM") {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), WAIT_MS);
    await exited;
    clearTimeout(timer);
  }
}

/** Servers and sockets of the running test, released by `closeAll`. */
const servers = new Set();
const sockets = new Set();

/**
 * Starts a server for the running test with chat-service's options, by their Plexus names
 * (`{ history_max_size: 1 }`); the rest are development mode's. `closeAll` stops it.
 */
export async function startServer(options = {}) {
  const server = new TestServer(await freePort(), options);
  servers.add(server);
  await server.start();
  return server;
}

/**
 * Disconnects every socket the test opened, checks that each running server released every
 * connection (a connection the server keeps after its client closed it fails the test that
 * opened it), and stops every server, whatever happened. Each file's `afterEach`.
 */
export async function closeAll() {
  for (const socket of sockets) {
    // `disconnect()` on the socket leaves the namespace; the Manager's closes the Engine.IO
    // connection (the socket is alone on its Manager: `forceNew`).
    socket.disconnect();
    socket.io.disconnect();
  }
  sockets.clear();
  const errors = [];
  for (const server of servers) {
    if (!server.running) continue;
    try {
      await until(
        async () => (await server.health()).connections === 0,
        "the server to release every connection",
      );
    } catch (e) {
      errors.push(e);
    }
  }
  await Promise.all([...servers].map((server) => server.stop().catch(() => server.stop("SIGKILL"))));
  servers.clear();
  if (errors.length) throw errors[0];
}

// --- clients --------------------------------------------------------------------------------

/** Transports: WebSocket only (as chat-service's tests connect), or the defaults (polling, then
 * the upgrade to WebSocket). */
export const WEBSOCKET = ["websocket"];
export const DEFAULT_TRANSPORTS = undefined;
export const TRANSPORTS = [
  { name: "websocket", transports: WEBSOCKET },
  { name: "polling, then upgrade", transports: DEFAULT_TRANSPORTS },
];

/**
 * A socket to the chat-service namespace as chat-service's clients open one: the user name in
 * the handshake query, one Manager per socket, no reconnection. Does not wait for anything.
 */
export function connect(server, { user, transports = WEBSOCKET } = {}) {
  const socket = io(`${server.url}${NAMESPACE}`, {
    ...(user !== undefined && { query: `user=${encodeURIComponent(user)}` }),
    ...(transports && { transports }),
    forceNew: true,
    reconnection: false,
  });
  sockets.add(socket);
  return socket;
}

/**
 * Connects as `user` and waits for `loginConfirmed`; the socket's `login` is its arguments
 * (`[userName, authData]`). Fails with the error of a `loginRejected`.
 */
export function login(server, user, options = {}) {
  const socket = connect(server, { ...options, user });
  return new Promise((resolve, reject) => {
    const done = (fn) => (...args) => {
      clearTimeout(timer);
      socket.off("loginConfirmed", onConfirmed);
      socket.off("loginRejected", onRejected);
      socket.off("connect_error", onFailed);
      fn(...args);
    };
    const onConfirmed = done((...args) => {
      socket.login = args;
      resolve(socket);
    });
    const onRejected = done((e) => reject(new Error(`login of ${user} rejected: ${JSON.stringify(e)}`)));
    const onFailed = done((e) => reject(new Error(`connection of ${user} failed: ${e?.message ?? e}`)));
    const timer = setTimeout(done(() => reject(new Error(`timed out waiting for the login of ${user}`))), WAIT_MS);
    socket.on("loginConfirmed", onConfirmed);
    socket.on("loginRejected", onRejected);
    socket.on("connect_error", onFailed);
  });
}

/** Several users logged in one after the other (so that echoes arrive in a known order). */
export async function logins(server, ...users) {
  const result = [];
  for (const user of users) result.push(await login(server, user));
  return result;
}

/** Sends a command with an ack and resolves with the ack's arguments: `[error, result, ...]`. */
export function request(socket, command, ...args) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for the ack of ${command}`)),
      WAIT_MS,
    );
    socket.emit(command, ...args, (...ack) => {
      clearTimeout(timer);
      resolve(ack);
    });
  });
}

/** Sends a command and checks that it succeeded; resolves with its result. */
export async function ok(socket, command, ...args) {
  const ack = await request(socket, command, ...args);
  if (ack[0] !== null) {
    throw new Error(`${command}(${args.map((a) => JSON.stringify(a)).join(", ")}) failed: ${JSON.stringify(ack)}`);
  }
  return ack[1];
}

/** The arguments of the next `event` of a socket that satisfy `match`. */
export function nextEvent(socket, event, match = () => true, timeoutMs = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const listener = (...args) => {
      if (!match(...args)) return;
      clearTimeout(timer);
      socket.off(event, listener);
      resolve(args);
    };
    const timer = setTimeout(() => {
      socket.off(event, listener);
      reject(new Error(`timed out waiting for "${event}"`));
    }, timeoutMs);
    socket.on(event, listener);
  });
}

/**
 * Records every `event` of a socket from now on. `upTo(match)` waits for the first recorded
 * event that satisfies `match` and resolves with the events recorded before it: the proof that
 * something did not arrive is a later event it would have preceded.
 */
export function record(socket, event) {
  const seen = [];
  const waiters = new Set();
  socket.on(event, (...args) => {
    seen.push(args);
    for (const waiter of waiters) waiter();
  });
  return {
    seen,
    upTo(match, timeoutMs = WAIT_MS) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const index = seen.findIndex((args) => match(...args));
          if (index < 0) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(seen.slice(0, index));
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for "${event}"; seen ${JSON.stringify(seen)}`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
  };
}

// --- waits ----------------------------------------------------------------------------------

// --- chat-service setup through the client protocol ------------------------------------------

/** chat-service's default error string for a code's formatted message. */
export const error = (message) => `ChatServiceError: ${message}`;

/**
 * A room created through the protocol, as chat-service's server-side `addRoom(name, {owner,
 * whitelistOnly, adminlist, whitelist, blacklist})` would make it: `owner` (a logged-in socket,
 * or by default a fresh `owner` user that joins nothing) sends `roomCreate`, then
 * `roomAddToList` for each list. Resolves with the owner's socket.
 */
export async function createRoom(server, room, { owner, whitelistOnly = false, adminlist, whitelist, blacklist } = {}) {
  const socket = owner ?? (await login(server, "owner"));
  await ok(socket, "roomCreate", room, whitelistOnly);
  for (const [list, names] of Object.entries({ adminlist, whitelist, blacklist })) {
    if (names) await ok(socket, "roomAddToList", room, list, names);
  }
  return socket;
}

/**
 * Checks a processed message: exactly `keys` (chat-service's `textMessage`, `author`,
 * `timestamp`, and `id` for a room message), an integer timestamp, and the `expected` values.
 */
export function assertMessage(message, expected, keys = ["author", "id", "textMessage", "timestamp"]) {
  assert.deepEqual(Object.keys(message).sort(), [...keys].sort(), JSON.stringify(message));
  assert.ok(Number.isSafeInteger(message.timestamp), `timestamp ${message.timestamp}`);
  for (const [key, value] of Object.entries(expected)) assert.deepEqual(message[key], value, key);
}

/** The ids of a history answer, in its order. */
export const ids = (messages) => messages.map((m) => m.id);
