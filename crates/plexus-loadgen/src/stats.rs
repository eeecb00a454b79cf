//! Latency histograms shared by many connection tasks.
//!
//! Each task records into a small local buffer and flushes it into one of a few shared
//! histograms, so thousands of tasks neither contend on one lock nor each hold a histogram.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;
/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
const MAX_US: u64 = 600_000_000;
const FLUSH_SAMPLES: usize = 256;

/// Shared latency histograms (microseconds).
pub struct Latencies {
    shards: Vec<Mutex<Histogram<u64>>>,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latencies {
    pub fn new() -> Arc<Latencies> {
        Arc::new(Latencies {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Histogram::new_with_bounds(1, MAX_US, 3).expect("valid bounds"))
                })
                .collect(),
        })
    }

    /// A recorder for task number `index`.
    pub fn recorder(self: &Arc<Self>, index: usize) -> Recorder {
        Recorder {
            latencies: self.clone(),
            shard: index % SHARDS,
            buffer: Vec::new(),
        }
    }

    /// Percentiles over everything flushed so far; `None` when nothing was recorded.
    pub fn summary(&self) -> Option<Summary> {
        let mut all = Histogram::<u64>::new_with_bounds(1, MAX_US, 3).expect("valid bounds");
        for shard in &self.shards {
            all.add(&*shard.lock().unwrap()).expect("same bounds");
        }
        if all.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Summary {
            count: all.len(),
            p50_ms: ms(all.value_at_quantile(0.50)),
            p99_ms: ms(all.value_at_quantile(0.99)),
            max_ms: ms(all.max()),
            mean_ms: all.mean() / 1000.0,
        })
    }
}

/// One task's recorder; flushes on drop.
pub struct Recorder {
    latencies: Arc<Latencies>,
    shard: usize,
    buffer: Vec<u64>,
}

impl Recorder {
    pub fn record(&mut self, us: u64) {
        if self.buffer.capacity() == 0 {
            self.buffer.reserve_exact(FLUSH_SAMPLES);
        }
        self.buffer.push(us.max(1));
        if self.buffer.len() >= FLUSH_SAMPLES {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let mut h = self.latencies.shards[self.shard].lock().unwrap();
        for &us in &self.buffer {
            h.saturating_record(us);
        }
        self.buffer.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorders_merge() {
        let l = Latencies::new();
        assert!(l.summary().is_none());
        {
            let mut a = l.recorder(0);
            let mut b = l.recorder(1);
            for us in 1..=1000 {
                a.record(us);
            }
            b.record(5_000);
        }
        let s = l.summary().unwrap();
        assert_eq!(s.count, 1001);
        assert!((s.p50_ms - 0.5).abs() < 0.01, "{s:?}");
        assert!((s.max_ms - 5.0).abs() < 0.01, "{s:?}");
    }
}
