//! The in-memory [`WorkQueue`]: one process's at-least-once queues, with leases.

use crate::engine::{EngineError, WorkItem, WorkQueue};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Leased {
    until: Instant,
    payload: Bytes,
    redeliveries: u64,
}

#[derive(Default)]
struct Queue {
    next: u64,
    /// Waiting, in push order: (seq, payload, redeliveries).
    ready: VecDeque<(u64, Bytes, u64)>,
    leased: BTreeMap<u64, Leased>,
}

impl Queue {
    fn len(&self) -> usize {
        self.ready.len() + self.leased.len()
    }
}

/// In-memory queues, at most `max_queues` of them.
pub struct MemoryQueues {
    queues: Mutex<HashMap<String, Queue>>,
    max_queues: usize,
}

impl MemoryQueues {
    pub fn new(max_queues: usize) -> MemoryQueues {
        MemoryQueues {
            queues: Mutex::new(HashMap::new()),
            max_queues,
        }
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut Queue) -> T) -> Result<T, EngineError> {
        let mut queues = self.queues.lock().unwrap();
        if !queues.contains_key(name) && queues.len() >= self.max_queues {
            return Err(EngineError::Limit(format!(
                "at most {} work queues",
                self.max_queues
            )));
        }
        Ok(f(queues.entry(name.to_owned()).or_default()))
    }
}

#[async_trait]
impl WorkQueue for MemoryQueues {
    async fn push(&self, queue: &str, payload: Bytes, max_len: usize) -> Result<bool, EngineError> {
        self.with(queue, |q| {
            if q.len() >= max_len {
                return false;
            }
            q.next += 1;
            q.ready.push_back((q.next, payload, 0));
            true
        })
    }

    async fn take(
        &self,
        queue: &str,
        _worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<WorkItem>, EngineError> {
        let now = Instant::now();
        self.with(queue, |q| {
            // Leases that ran out: their workers died or are too slow; oldest first.
            let expired: Vec<u64> = q
                .leased
                .iter()
                .filter(|(_, l)| l.until <= now)
                .map(|(seq, _)| *seq)
                .collect();
            let mut out = Vec::new();
            let take = |seq: u64, payload: Bytes, redeliveries: u64, q: &mut Queue| {
                q.leased.insert(
                    seq,
                    Leased {
                        until: now + lease,
                        payload: payload.clone(),
                        redeliveries,
                    },
                );
                WorkItem {
                    id: seq.to_string(),
                    payload,
                    redeliveries,
                }
            };
            for seq in expired.into_iter().take(max) {
                let l = q.leased.remove(&seq).expect("listed");
                out.push(take(seq, l.payload, l.redeliveries + 1, q));
            }
            while out.len() < max {
                let Some((seq, payload, redeliveries)) = q.ready.pop_front() else {
                    break;
                };
                out.push(take(seq, payload, redeliveries, q));
            }
            out
        })
    }

    async fn ack(&self, queue: &str, ids: &[String]) -> Result<u64, EngineError> {
        self.with(queue, |q| {
            ids.iter()
                .filter_map(|id| id.parse::<u64>().ok())
                .filter(|seq| q.leased.remove(seq).is_some())
                .count() as u64
        })
    }

    async fn len(&self, queue: &str) -> Result<u64, EngineError> {
        self.with(queue, |q| q.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_queue_keeps_its_contract() {
        crate::testing::work_queue_contract(&MemoryQueues::new(4)).await;
    }

    #[tokio::test]
    async fn queues_are_bounded_in_number() {
        let q = MemoryQueues::new(2);
        assert!(q.push("a", Bytes::new(), 1).await.unwrap());
        assert!(q.push("b", Bytes::new(), 1).await.unwrap());
        assert!(matches!(
            q.push("c", Bytes::new(), 1).await,
            Err(EngineError::Limit(_))
        ));
        assert!(q.push("a", Bytes::new(), 2).await.unwrap());
    }
}
