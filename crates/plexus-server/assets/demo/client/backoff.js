/**
 * Reconnect delays: exponential backoff with jitter, as a pure function of the attempt number,
 * the previous delay and a random source (mirrors `plexus_client::Backoff`).
 */
export function backoffWithDefaults(options = {}) {
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
export function backoffDelay(backoff, attempt, previousMs, random) {
    const min = backoff.minDelayMs;
    const max = Math.max(backoff.maxDelayMs, min);
    let high;
    if (backoff.jitter === "decorrelated") {
        high = Math.min(max, Math.max(previousMs, min) * 3);
    }
    else {
        const exp = Math.min(Math.max(attempt, 0), 52);
        high = Math.min(max, min * 2 ** exp);
    }
    const r = Math.min(Math.max(random(), 0), 1);
    return Math.min(high, min + Math.floor(r * (high - min + 1)));
}
