//! Counters and a latency histogram a node keeps, read by metrics exporters and `info`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the command-latency histogram buckets.
pub const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A fixed-bucket latency histogram (Prometheus style: cumulative on export).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot counts those above every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket bound (the `+Inf` bucket is `count()`).
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        LATENCY_BUCKETS_SECONDS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                total += n.load(Ordering::Relaxed);
                (*bound, total)
            })
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// What a node counts. Every field only grows.
#[derive(Debug, Default)]
pub struct NodeStats {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    /// Client WebSocket messages received, and their bytes.
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    /// WebSocket messages written to clients, and their bytes.
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub publications: AtomicU64,
    /// Frames queued for subscribers by fan-out.
    pub deliveries: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    pub auth_failures: AtomicU64,
    pub commands: AtomicU64,
    pub command_errors: AtomicU64,
    /// Time from a call's start to its result, handlers and hooks included.
    pub command_latency: Histogram,
}

impl NodeStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let c = h.cumulative();
        assert_eq!(c[0], (0.0005, 1));
        assert_eq!(c[3], (0.005, 2));
        assert_eq!(c.last().unwrap().1, 2);
        assert_eq!(h.count(), 3);
    }
}
