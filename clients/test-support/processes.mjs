// What the Node test suites of clients/* share (each imports this file by its relative path):
// free loopback ports, child processes that never outlive their test file, polling waits, and
// one redis-server per test file. No dependencies beyond Node itself.

import { spawn } from "node:child_process";
import { createServer, connect as tcpConnect } from "node:net";

/** A loopback port nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Every child process started, killed when this test file's process exits, however it exits. */
const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});
// The test runner stops a file that exceeds its timeout with SIGTERM, which skips "exit"
// handlers: exit properly so that no server outlives its file.
for (const [signal, number] of [["SIGINT", 2], ["SIGTERM", 15]]) {
  process.once(signal, () => process.exit(128 + number));
}

/** Kills `child` when this test file's process exits (if it still runs); returns it. */
export function killAtExit(child) {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** Whether something accepts TCP connections on the loopback port. */
export function canConnect(port) {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a truthy value (which it resolves with); bounded. */
export async function until(check, what = "condition", timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The engine a suite runs on, from the environment variable `name`: `memory` (default) or `redis`. */
export function engineFrom(name) {
  const engine = process.env[name] ?? "memory";
  if (engine !== "memory" && engine !== "redis") {
    throw new Error(`${name}=${engine}: expected memory or redis`);
  }
  return engine;
}

let redisPort;
/** This test file's `redis-server` (started on first use on a free loopback port, killed at exit). */
export async function redisUrl() {
  if (redisPort === undefined) {
    const port = await freePort();
    const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdio: "ignore",
    });
    // It lives as long as this file's process, which must still be able to end: killed at exit.
    child.unref();
    killAtExit(child);
    await until(() => canConnect(port), "redis-server to listen");
    redisPort = port;
  }
  return `redis://127.0.0.1:${redisPort}/`;
}
