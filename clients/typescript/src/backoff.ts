/**
 * Reconnect delays: exponential backoff with jitter, as a pure function of the attempt number,
 * the previous delay and a random source (mirrors `plexus_client::Backoff`).
 */

/**
 * - `full`: uniform in `[minDelayMs, min(maxDelayMs, minDelayMs × 2^attempt)]`.
 * - `decorrelated`: uniform in `[minDelayMs, 3 × max(previous, minDelayMs)]`, capped at
 *   `maxDelayMs`; spreads a crowd of clients further apart.
 */
export type Jitter = "full" | "decorrelated";

export interface BackoffOptions {
  /** The smallest delay, in ms (default 500). */
  minDelayMs?: number;
  /** The largest delay, in ms (default 20000). */
  maxDelayMs?: number;
  /** Default `full`. */
  jitter?: Jitter;
  /** Consecutive failed attempts after which the client gives up; default: never. */
  maxAttempts?: number;
}

export interface Backoff {
  minDelayMs: number;
  maxDelayMs: number;
  jitter: Jitter;
  maxAttempts: number | undefined;
}

export function backoffWithDefaults(options: BackoffOptions = {}): Backoff {
  return {
    minDelayMs: Math.max(0, options.minDelayMs ?? 500),
    maxDelayMs: Math.max(0, options.maxDelayMs ?? 20_000),
    jitter: options.jitter ?? "full",
    maxAttempts: options.maxAttempts,
  };
}

/**
 * The delay before reconnect attempt `attempt` (1 for the first retry after a failure or a lost
 * connection), given the previous delay (0 at first) and a random source in [0, 1). Always
 * within `[minDelayMs, max(minDelayMs, maxDelayMs)]`.
 */
export function backoffDelay(backoff: Backoff, attempt: number, previousMs: number, random: () => number): number {
  const min = backoff.minDelayMs;
  const max = Math.max(backoff.maxDelayMs, min);
  let high: number;
  if (backoff.jitter === "decorrelated") {
    high = Math.min(max, Math.max(previousMs, min) * 3);
  } else {
    const exp = Math.min(Math.max(attempt, 0), 52);
    high = Math.min(max, min * 2 ** exp);
  }
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.min(high, min + Math.floor(r * (high - min + 1)));
}
