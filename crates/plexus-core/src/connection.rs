//! A connection as the core sees it: identity, subscriptions, queue, heartbeat state.

use crate::ids::ConnId;
use crate::model::{Event, Identity, WireFormat};
use crate::outbox::{Outbox, PushOutcome};
use bytes::Bytes;
use plexus_protocol::CloseCode;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One client connection, shared between its session, the hub and the heartbeat sweep.
pub struct Connection {
    pub id: ConnId,
    format: Arc<dyn WireFormat>,
    /// The format the connection switched to, once (a Socket.IO connection that joins a
    /// namespace with a wire format of its own, like `/chat-service`).
    switched: OnceLock<Arc<dyn WireFormat>>,
    outbox: Outbox,
    identity: OnceLock<Identity>,
    subscriptions: Mutex<HashSet<Arc<str>>>,
    /// The record channels subscribed in patch mode (the others are in full mode).
    patch_records: Mutex<HashSet<Arc<str>>>,
    metadata: Mutex<serde_json::Map<String, serde_json::Value>>,
    /// Nanoseconds since `created` at which the unanswered ping was sent; 0 when none.
    ping_sent_ns: AtomicU64,
    missed_pongs: AtomicU32,
    rtt_us: AtomicU64,
    created: Instant,
    /// Unix milliseconds at which the connection opened (for operators: `connections`).
    opened_ms: u64,
    /// What opened it: dialect, transport, peer (set once by the session).
    origin: OnceLock<Origin>,
    /// An operator's connection (the admin interface's live tail): it receives publications
    /// but is never in presence and never echoed to others.
    observer: AtomicBool,
    /// Whether any stream is held (a fast check on the fan-out path).
    holding: AtomicBool,
    held: Mutex<HashMap<HoldKey, Held>>,
    held_max: usize,
    /// The highest durable-message `seq` queued (or held) for this connection.
    mail_last: AtomicU64,
}

/// How a connection was opened, as operators see it (`Node::inspect`): never its headers,
/// cookies or query, which may carry credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// `native`, `socketio`, …
    pub dialect: &'static str,
    /// The transport it opened on: `websocket`, `polling`, `tcp`, …
    pub transport: &'static str,
    pub peer: Option<std::net::SocketAddr>,
}

/// A stream of sequenced frames that can be held back: a channel's publications (by offset), or
/// the user's durable messages (by sequence number).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HoldKey {
    Channel(Arc<str>),
    Mail,
}

#[derive(Default)]
struct Held {
    frames: Vec<(u64, Bytes)>,
    overflow: bool,
    /// After release: frames numbered at or below this were already given to the client (in a
    /// reply), and are dropped if they still arrive live — with a multi-node engine a live copy
    /// can come after the read that returned it. Cleared by the first frame above it.
    floor: Option<u64>,
}

/// Frames were dropped while a stream was held: the client must resubscribe or reconnect.
#[derive(Debug, PartialEq, Eq)]
pub struct HeldOverflow;

impl Connection {
    /// `held_max` bounds the frames held per stream while a subscribe or a mailbox sync
    /// completes.
    pub fn new(
        id: ConnId,
        format: Arc<dyn WireFormat>,
        queue_bytes_max: usize,
        held_max: usize,
    ) -> Connection {
        Connection {
            id,
            format,
            switched: OnceLock::new(),
            outbox: Outbox::new(queue_bytes_max),
            identity: OnceLock::new(),
            subscriptions: Mutex::new(HashSet::new()),
            patch_records: Mutex::new(HashSet::new()),
            metadata: Mutex::new(serde_json::Map::new()),
            ping_sent_ns: AtomicU64::new(0),
            missed_pongs: AtomicU32::new(0),
            rtt_us: AtomicU64::new(0),
            created: Instant::now(),
            opened_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            origin: OnceLock::new(),
            observer: AtomicBool::new(false),
            holding: AtomicBool::new(false),
            held: Mutex::new(HashMap::new()),
            held_max,
            mail_last: AtomicU64::new(0),
        }
    }

    /// Records how the connection was opened (the first call wins).
    pub fn set_origin(&self, origin: Origin) {
        let _ = self.origin.set(origin);
    }

    pub fn origin(&self) -> Option<&Origin> {
        self.origin.get()
    }

    /// Marks an operator's connection (before it subscribes anything).
    pub fn set_observer(&self) {
        self.observer.store(true, Ordering::Release);
    }

    pub fn is_observer(&self) -> bool {
        self.observer.load(Ordering::Acquire)
    }

    /// Unix milliseconds at which the connection opened.
    pub fn opened_ms(&self) -> u64 {
        self.opened_ms
    }

    /// Starts holding back a stream's frames (see [`Connection::release`]).
    pub fn hold(&self, key: HoldKey) {
        self.held.lock().unwrap().insert(key, Held::default());
        self.holding.store(true, Ordering::Release);
    }

    /// Queues a sequenced frame, or holds it when its stream is held.
    pub fn send_sequenced(&self, key: &HoldKey, seq: u64, frame: Bytes) -> PushOutcome {
        if self.holding.load(Ordering::Acquire) {
            let mut held = self.held.lock().unwrap();
            if let Some(h) = held.get_mut(key) {
                match h.floor {
                    Some(floor) if seq <= floor => return PushOutcome::Queued,
                    Some(_) => {
                        held.remove(key);
                        if held.is_empty() {
                            self.holding.store(false, Ordering::Release);
                        }
                    }
                    None => {
                        if h.frames.len() >= self.held_max {
                            h.overflow = true;
                        } else {
                            h.frames.push((seq, frame));
                        }
                        return PushOutcome::Queued;
                    }
                }
            }
        }
        self.outbox.push(frame)
    }

    /// Records that durable message `seq` was queued or held; returns the highest before.
    pub fn note_mail(&self, seq: u64) -> u64 {
        self.mail_last.fetch_max(seq, Ordering::AcqRel)
    }

    /// Starts holding the durable messages to repair a gap in them, unless they are held
    /// already (the mailbox sync, or another repair, is in progress): then false.
    pub fn hold_mail_for_repair(&self) -> bool {
        let mut held = self.held.lock().unwrap();
        if held.get(&HoldKey::Mail).is_some_and(|h| h.floor.is_none()) {
            return false;
        }
        held.insert(HoldKey::Mail, Held::default());
        self.holding.store(true, Ordering::Release);
        true
    }

    /// Forgets a stream's floor (its numbering restarted: a new epoch).
    pub fn clear_floor(&self, key: &HoldKey) {
        if self.holding.load(Ordering::Acquire) {
            let mut held = self.held.lock().unwrap();
            if held.get(key).is_some_and(|h| h.floor.is_some()) {
                held.remove(key);
                if held.is_empty() {
                    self.holding.store(false, Ordering::Release);
                }
            }
        }
    }

    /// Stops holding a stream: queues its held frames numbered above `after`, in order, and
    /// fails when some had to be dropped.
    pub fn release(&self, key: &HoldKey, after: u64) -> Result<(), HeldOverflow> {
        let mut held = self.held.lock().unwrap();
        if after == u64::MAX {
            // Nothing more is wanted from this stream (the subscription ended).
            let overflow = held.remove(key).is_some_and(|h| h.overflow);
            if held.is_empty() {
                self.holding.store(false, Ordering::Release);
            }
            return if overflow { Err(HeldOverflow) } else { Ok(()) };
        }
        let Some(h) = held.get_mut(key) else {
            return Ok(());
        };
        if h.floor.is_some() {
            return Ok(());
        }
        // Queue while still holding the lock: a frame delivered concurrently waits for the
        // lock, so it cannot overtake the held ones.
        let frames = std::mem::take(&mut h.frames);
        let overflow = h.overflow;
        let mut floor = after;
        for (seq, frame) in frames {
            if seq > after {
                floor = floor.max(seq);
                self.outbox.push(frame);
            }
        }
        h.floor = Some(floor);
        if held.is_empty() {
            self.holding.store(false, Ordering::Release);
        }
        if overflow { Err(HeldOverflow) } else { Ok(()) }
    }

    pub fn format(&self) -> &dyn WireFormat {
        match self.switched.get() {
            Some(format) => &**format,
            None => &*self.format,
        }
    }

    /// Switches the connection to another wire format for every event from now on; only once
    /// (false when it had switched already). Frames queued before keep their encoding.
    pub fn switch_format(&self, format: Arc<dyn WireFormat>) -> bool {
        self.switched.set(format).is_ok()
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The authenticated identity, if any. Set once.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.get()
    }

    pub fn user(&self) -> Option<&str> {
        self.identity.get().map(|i| &*i.user)
    }

    /// Sets the identity; false when one was already set.
    pub(crate) fn set_identity(&self, identity: Identity) -> bool {
        self.identity.set(identity).is_ok()
    }

    /// Encodes `event` in this connection's format and queues it.
    pub fn send_event(&self, event: &Event<'_>) -> PushOutcome {
        match self.format().encode(event) {
            Some(frame) => self.outbox.push(frame),
            None => PushOutcome::Queued,
        }
    }

    /// Queues an already encoded frame.
    pub fn send_frame(&self, frame: Bytes) -> PushOutcome {
        self.outbox.push(frame)
    }

    /// Asks the connection's writer to close it.
    pub fn close(&self, code: CloseCode, reason: impl Into<String>) {
        self.outbox.close(code, reason, true)
    }

    pub fn subscriptions(&self) -> Vec<Arc<str>> {
        self.subscriptions.lock().unwrap().iter().cloned().collect()
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions.lock().unwrap().len()
    }

    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.subscriptions.lock().unwrap().contains(channel)
    }

    /// Adds a subscription unless present or over `max`; returns whether it was added.
    pub(crate) fn add_subscription(&self, channel: &Arc<str>, max: usize) -> Result<bool, ()> {
        let mut subs = self.subscriptions.lock().unwrap();
        if subs.contains(&**channel) {
            return Ok(false);
        }
        if subs.len() >= max {
            return Err(());
        }
        subs.insert(channel.clone());
        Ok(true)
    }

    pub(crate) fn remove_subscription(&self, channel: &str) -> bool {
        self.subscriptions.lock().unwrap().remove(channel)
    }

    pub(crate) fn take_subscriptions(&self) -> Vec<Arc<str>> {
        self.subscriptions.lock().unwrap().drain().collect()
    }

    /// The connection's metadata (a JSON object).
    /// Sets the mode of a record subscription (by its internal channel).
    pub(crate) fn set_record_mode(&self, channel: &Arc<str>, mode: crate::records::RecordMode) {
        let mut patch = self.patch_records.lock().unwrap();
        match mode {
            crate::records::RecordMode::Patch => patch.insert(channel.clone()),
            crate::records::RecordMode::Full => patch.remove(channel),
        };
    }

    /// The mode of a record subscription (by its internal channel).
    pub fn record_mode(&self, channel: &str) -> crate::records::RecordMode {
        if self.patch_records.lock().unwrap().contains(channel) {
            crate::records::RecordMode::Patch
        } else {
            crate::records::RecordMode::Full
        }
    }

    pub fn metadata(&self) -> serde_json::Map<String, serde_json::Value> {
        self.metadata.lock().unwrap().clone()
    }

    /// Replaces (`merge` false) or shallow-merges (`merge` true) the metadata.
    pub fn set_metadata(&self, value: serde_json::Map<String, serde_json::Value>, merge: bool) {
        let mut meta = self.metadata.lock().unwrap();
        if merge {
            meta.extend(value);
        } else {
            *meta = value;
        }
    }

    /// The last measured round-trip time, if a ping was answered yet.
    pub fn latency(&self) -> Option<Duration> {
        match self.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Called by the heartbeat sweep when a ping is due. Returns false when the connection
    /// missed too many pongs and is being closed.
    pub(crate) fn heartbeat_tick(&self, max_missed: u32) -> bool {
        if let Some(expires) = self.identity().and_then(|i| i.expires_at)
            && expires <= std::time::SystemTime::now()
        {
            self.close(CloseCode::TOKEN_EXPIRED, "authentication expired");
            return false;
        }
        if !self.format().node_heartbeat() {
            return true;
        }
        let now_ns = self.created.elapsed().as_nanos() as u64;
        let mut missed = 0;
        if self.ping_sent_ns.load(Ordering::Relaxed) != 0 {
            missed = self.missed_pongs.fetch_add(1, Ordering::Relaxed) + 1;
            if missed >= max_missed {
                self.close(CloseCode::HEARTBEAT_TIMEOUT, "missed heartbeats");
                return false;
            }
        }
        self.ping_sent_ns.store(now_ns.max(1), Ordering::Relaxed);
        if let Some(frame) = self.format().heartbeat(missed, max_missed) {
            self.outbox.push(frame);
        }
        true
    }

    /// Records a pong; returns the round-trip time when it answered a ping.
    pub fn pong(&self) -> Option<Duration> {
        let sent = self.ping_sent_ns.swap(0, Ordering::Relaxed);
        self.missed_pongs.store(0, Ordering::Relaxed);
        if sent == 0 {
            return None;
        }
        let now_ns = self.created.elapsed().as_nanos() as u64;
        let rtt = Duration::from_nanos(now_ns.saturating_sub(sent));
        self.rtt_us
            .store((rtt.as_micros() as u64).max(1), Ordering::Relaxed);
        Some(rtt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    struct Raw;
    impl WireFormat for Raw {
        fn id(&self) -> usize {
            0
        }
        fn encode(&self, _: &Event<'_>) -> Option<Bytes> {
            None
        }
    }

    fn conn(held_max: usize) -> Connection {
        Connection::new(
            ConnId {
                node: NodeId(1),
                seq: 1,
            },
            Arc::new(Raw),
            1 << 20,
            held_max,
        )
    }

    fn drained(c: &Connection) -> Vec<Bytes> {
        let mut out = Vec::new();
        c.outbox().drain(&mut out, usize::MAX);
        out
    }

    #[test]
    fn held_frames_are_bounded_and_an_overflow_is_reported() {
        let c = conn(2);
        let key = HoldKey::Channel(Arc::from("c"));
        c.hold(key.clone());
        for seq in 1..=3 {
            c.send_sequenced(&key, seq, Bytes::from(vec![seq as u8]));
        }
        assert_eq!(c.release(&key, 0), Err(HeldOverflow));
        assert_eq!(
            drained(&c),
            vec![Bytes::from(vec![1u8]), Bytes::from(vec![2u8])]
        );
    }

    #[test]
    fn after_release_live_copies_at_or_below_the_floor_are_dropped() {
        let c = conn(10);
        let key = HoldKey::Channel(Arc::from("c"));
        c.hold(key.clone());
        c.send_sequenced(&key, 5, Bytes::from_static(b"5"));
        assert_eq!(c.release(&key, 4), Ok(()));
        c.send_sequenced(&key, 5, Bytes::from_static(b"late copy"));
        c.send_sequenced(&key, 6, Bytes::from_static(b"6"));
        c.send_sequenced(&key, 7, Bytes::from_static(b"7"));
        assert_eq!(
            drained(&c),
            vec![
                Bytes::from_static(b"5"),
                Bytes::from_static(b"6"),
                Bytes::from_static(b"7")
            ]
        );
    }
}
