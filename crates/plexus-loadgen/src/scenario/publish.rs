//! What fan-out and many-channels share: the delivery tracker, the subscriber loop and the
//! publisher loop.
//!
//! Flow control for `--rate max` is end to end, the same for every server: a publisher sends
//! publication `s` only once publication `s - window` has reached every subscriber it was
//! meant for. Server acknowledgements are not used for it, because servers acknowledge at
//! different points (Plexus once queued for every subscriber; Socket.IO once handed to its
//! sockets' buffers; plain WebSocket not at all).

use super::{instant_us, next_send};
use crate::client::{Client, Event};
use crate::stamp::{Stamp, now_us};
use crate::stats::Recorder;
use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// Publications one publisher may have in flight in the ring.
const RING: u64 = 4096;
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const TAG_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;
/// A publication that has not reached every subscriber after this long no longer holds its
/// publisher back (it is counted as a stall).
const STALL: Duration = Duration::from_secs(1);
/// How long a publisher waits for the answers to its last publications.
const LAST_REPLIES: Duration = Duration::from_secs(2);

/// The largest window a publisher may use.
pub(crate) const MAX_WINDOW: u64 = RING / 2;

/// How many deliveries each in-flight publication of one publisher still waits for.
struct Window {
    /// `seq` (high bits) and deliveries still expected (low [`COUNT_BITS`]) per ring slot.
    slots: Box<[AtomicU64]>,
    notify: Notify,
}

impl Window {
    fn new() -> Window {
        Window {
            slots: (0..RING).map(|_| AtomicU64::new(0)).collect(),
            notify: Notify::new(),
        }
    }

    fn slot(&self, seq: u64) -> &AtomicU64 {
        &self.slots[(seq % RING) as usize]
    }

    fn arm(&self, seq: u64, deliveries: u64) {
        let value = ((seq & TAG_MASK) << COUNT_BITS) | deliveries.min(COUNT_MASK);
        self.slot(seq).store(value, Ordering::Release);
    }

    fn ack(&self, seq: u64) {
        let slot = self.slot(seq);
        let mut current = slot.load(Ordering::Acquire);
        loop {
            if current >> COUNT_BITS != seq & TAG_MASK || current & COUNT_MASK == 0 {
                return;
            }
            match slot.compare_exchange_weak(
                current,
                current - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if current & COUNT_MASK == 1 {
                        self.notify.notify_waiters();
                    }
                    return;
                }
                Err(now) => current = now,
            }
        }
    }

    fn complete(&self, seq: u64) -> bool {
        let current = self.slot(seq).load(Ordering::Acquire);
        current >> COUNT_BITS != seq & TAG_MASK || current & COUNT_MASK == 0
    }

    fn force(&self, seq: u64) {
        self.arm(seq, 0);
        self.notify.notify_waiters();
    }

    /// Waits until `seq` reached everyone; false when it did not within [`STALL`].
    async fn wait(&self, seq: u64) -> bool {
        let deadline = tokio::time::Instant::now() + STALL;
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if self.complete(seq) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.complete(seq);
            }
        }
    }
}

/// Deliveries counted across every subscriber.
pub(crate) struct Tracker {
    /// Stamps from this time on are measured; `u64::MAX` until the measured phase starts.
    measure_from_us: AtomicU64,
    delivered: AtomicU64,
    last_delivery_us: AtomicU64,
    /// Per publisher, with `--rate max` only.
    windows: Vec<Window>,
}

impl Tracker {
    /// Waits (at most `drain`) until `expected` deliveries arrived; returns those delivered and
    /// the seconds from `measure_from` to the last delivery.
    pub(crate) async fn drain(
        &self,
        expected: u64,
        drain: Duration,
        measure_from: Instant,
    ) -> (u64, f64) {
        let drain_until = Instant::now() + drain;
        while self.delivered() < expected && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let delivering_for_s = self
            .last_delivery_us()
            .saturating_sub(instant_us(measure_from)) as f64
            / 1e6;
        (self.delivered(), delivering_for_s)
    }

    pub(crate) fn new(publishers: usize, windowed: bool) -> Arc<Tracker> {
        Arc::new(Tracker {
            measure_from_us: AtomicU64::new(u64::MAX),
            delivered: AtomicU64::new(0),
            last_delivery_us: AtomicU64::new(0),
            windows: if windowed {
                (0..publishers).map(|_| Window::new()).collect()
            } else {
                Vec::new()
            },
        })
    }

    pub(crate) fn measure_from(&self, at: Instant) -> u64 {
        let us = instant_us(at);
        self.measure_from_us.store(us, Ordering::Relaxed);
        us
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub(crate) fn last_delivery_us(&self) -> u64 {
        self.last_delivery_us.load(Ordering::Relaxed)
    }

    fn on_delivery(&self, stamp: Stamp, now_us: u64, recorder: &mut Recorder) {
        if let Some(window) = self.windows.get(stamp.p as usize) {
            window.ack(stamp.s);
        }
        if stamp.t >= self.measure_from_us.load(Ordering::Relaxed) {
            self.delivered.fetch_add(1, Ordering::Relaxed);
            self.last_delivery_us.fetch_max(now_us, Ordering::Relaxed);
            recorder.record(now_us.saturating_sub(stamp.t));
        }
    }
}

/// Reads deliveries until `stop`; returns true when the server dropped the connection first.
pub(crate) async fn subscriber(
    mut client: Client,
    tracker: Arc<Tracker>,
    mut recorder: Recorder,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let mut events = Vec::with_capacity(64);
    let dropped = loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break false,
            read = client.recv(&mut events) => match read {
                Ok(true) => {}
                Ok(false) | Err(_) => break true,
            },
        }
        if !events.is_empty() {
            let now = now_us();
            for event in events.drain(..) {
                if let Event::Delivery(stamp) = event {
                    tracker.on_delivery(stamp, now, &mut recorder);
                }
            }
        }
        if client.flush_control().await.is_err() {
            break true;
        }
    };
    recorder.flush();
    if !dropped {
        client.close().await;
    }
    dropped
}

/// Where a publisher's `seq`-th publication goes: the channel, and how many deliveries it
/// should make.
pub(crate) type Route = Box<dyn FnMut(u64) -> (Arc<str>, u64) + Send>;

/// One publisher's schedule.
pub(crate) struct PublisherPlan {
    pub index: u32,
    /// Time between publications (`None`: as fast as the window allows).
    pub interval: Option<Duration>,
    /// With `--rate max`: publications in flight before waiting.
    pub window: Option<u64>,
    pub start: Instant,
    pub measure_from: Instant,
    pub end: Instant,
    /// Publications this publisher sends at most.
    pub cap: u64,
    pub payload_bytes: usize,
    pub route: Route,
}

/// What one publisher did in the measured phase.
#[derive(Debug, Default)]
pub(crate) struct PublisherStats {
    /// Publications sent and not refused.
    pub published: u64,
    /// Deliveries those publications should make.
    pub expected: u64,
    /// Publications the server refused (error replies).
    pub errors: u64,
    /// Publications that had not reached every subscriber after a second (`--rate max`).
    pub stalls: u64,
    /// The server dropped the publisher.
    pub dropped: bool,
}

struct InFlight {
    seq: u64,
    measured: bool,
    deliveries: u64,
}

pub(crate) async fn publisher(
    mut client: Client,
    mut plan: PublisherPlan,
    tracker: Arc<Tracker>,
) -> PublisherStats {
    let measure_from_us = instant_us(plan.measure_from);
    let window = tracker.windows.get(plan.index as usize);
    let mut stats = PublisherStats::default();
    let mut in_flight: HashMap<u64, InFlight> = HashMap::new();
    let mut events = Vec::new();
    let mut next_at = plan.start;
    let mut seq = 0u64;
    while Instant::now() < plan.end && seq < plan.cap {
        let held_by = match (plan.window, window) {
            (Some(w), Some(window)) if seq >= w => Some((seq - w, window)),
            _ => None,
        };
        let gate = async {
            tokio::time::sleep_until(next_at.into()).await;
            match held_by {
                Some((earlier, window)) => window.wait(earlier).await,
                None => true,
            }
        };
        tokio::select! {
            biased;
            read = client.recv(&mut events) => {
                if !matches!(read, Ok(true)) {
                    stats.dropped = true;
                    break;
                }
                settle(&mut events, &mut in_flight, window, &mut stats);
                if client.flush_control().await.is_err() {
                    stats.dropped = true;
                    break;
                }
            }
            reached = gate => {
                if let (false, Some((earlier, window))) = (reached, held_by) {
                    stats.stalls += 1;
                    window.force(earlier);
                }
                let (channel, deliveries) = (plan.route)(seq);
                let t = now_us();
                let data = Stamp { t, s: seq, p: plan.index }.to_json(plan.payload_bytes);
                if let Some(window) = window {
                    window.arm(seq, deliveries);
                }
                let measured = t >= measure_from_us;
                match client.publish(&channel, &data).await {
                    Ok(Some(id)) => {
                        in_flight.insert(id, InFlight { seq, measured, deliveries });
                    }
                    Ok(None) => {}
                    Err(_) => {
                        stats.dropped = true;
                        break;
                    }
                }
                if measured {
                    stats.published += 1;
                    stats.expected += deliveries;
                }
                seq += 1;
                next_at = next_send(next_at, plan.interval);
            }
        }
    }
    // Collect the answers to the last publications, so refused ones are not expected.
    let deadline = tokio::time::Instant::now() + LAST_REPLIES;
    while !stats.dropped && !in_flight.is_empty() {
        match tokio::time::timeout_at(deadline, client.recv(&mut events)).await {
            Ok(Ok(true)) => settle(&mut events, &mut in_flight, window, &mut stats),
            _ => break,
        }
    }
    if !stats.dropped {
        client.close().await;
    }
    stats
}

fn settle(
    events: &mut Vec<Event>,
    in_flight: &mut HashMap<u64, InFlight>,
    window: Option<&Window>,
    stats: &mut PublisherStats,
) {
    for event in events.drain(..) {
        let Event::Reply {
            id: Some(id),
            result,
        } = event
        else {
            continue;
        };
        let Some(sent) = in_flight.remove(&id) else {
            continue;
        };
        if result.is_err() {
            if let Some(window) = window {
                window.force(sent.seq);
            }
            if sent.measured {
                stats.errors += 1;
                stats.published = stats.published.saturating_sub(1);
                stats.expected = stats.expected.saturating_sub(sent.deliveries);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_window_opens_when_every_delivery_arrived() {
        let w = Window::new();
        w.arm(5, 2);
        assert!(!w.complete(5));
        w.ack(5);
        w.ack(4); // another publication: ignored
        assert!(!w.complete(5));
        w.ack(5);
        assert!(w.complete(5));
        w.ack(5); // a duplicate never underflows
        assert!(w.complete(5));
        // A slot reused by a later publication ignores acks of the earlier one.
        w.arm(5 + RING, 1);
        w.ack(5);
        assert!(!w.complete(5 + RING));
        assert!(w.wait(5).await);
        w.force(5 + RING);
        assert!(w.complete(5 + RING));
    }
}
