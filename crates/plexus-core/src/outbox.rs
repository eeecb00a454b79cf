//! A connection's bounded outbound queue of encoded frames.
//!
//! Producers (the hub's fan-out, replies, pings) push refcounted [`Bytes`] without blocking; the
//! connection's one writer drains everything queued and writes it as few WebSocket messages. The
//! queue is bounded in bytes: a push that would exceed the bound drops the queue and asks the
//! writer to close the connection with `slow_consumer` (4001), so a slow reader never grows the
//! server's memory.

use bytes::Bytes;
use plexus_protocol::CloseCode;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// Why and how the writer must close the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: CloseCode,
    pub reason: String,
}

/// The outcome of [`Outbox::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    Queued,
    /// The connection is closing; the frame was dropped.
    Closed,
    /// The frame would have exceeded the byte bound; the connection is being closed as a slow
    /// consumer.
    Overflow,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    close: Option<CloseRequest>,
    /// Frames queued before `close` are still written (a graceful close).
    drain_before_close: bool,
}

/// A bounded, byte-counted queue with one consumer.
pub struct Outbox {
    state: Mutex<State>,
    wake: Notify,
    max_bytes: usize,
}

impl Outbox {
    pub fn new(max_bytes: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            max_bytes,
        }
    }

    /// Queues one encoded frame.
    pub fn push(&self, frame: Bytes) -> PushOutcome {
        let mut state = self.state.lock().unwrap();
        if state.close.is_some() {
            return PushOutcome::Closed;
        }
        if state.bytes + frame.len() > self.max_bytes {
            state.frames.clear();
            state.bytes = 0;
            state.close = Some(CloseRequest {
                code: CloseCode::SLOW_CONSUMER,
                reason: "outbound queue full".into(),
            });
            state.drain_before_close = false;
            drop(state);
            self.wake.notify_one();
            return PushOutcome::Overflow;
        }
        state.bytes += frame.len();
        state.frames.push_back(frame);
        drop(state);
        self.wake.notify_one();
        PushOutcome::Queued
    }

    /// Asks the writer to close the connection. With `drain`, frames already queued are written
    /// first; without, they are dropped. The first close request wins.
    pub fn close(&self, code: CloseCode, reason: impl Into<String>, drain: bool) {
        let mut state = self.state.lock().unwrap();
        if state.close.is_some() {
            return;
        }
        state.close = Some(CloseRequest {
            code,
            reason: reason.into(),
        });
        state.drain_before_close = drain;
        if !drain {
            state.frames.clear();
            state.bytes = 0;
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Whether a close was requested.
    pub fn is_closing(&self) -> bool {
        self.state.lock().unwrap().close.is_some()
    }

    /// Bytes waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().unwrap().bytes
    }

    /// Moves queued frames into `into`, up to about `max_bytes` (at least one frame), and
    /// returns the close request once every frame before it has been taken.
    pub fn drain(&self, into: &mut Vec<Bytes>, max_bytes: usize) -> Option<CloseRequest> {
        let mut state = self.state.lock().unwrap();
        let mut taken = 0usize;
        while let Some(front) = state.frames.front() {
            if taken > 0 && taken + front.len() > max_bytes {
                break;
            }
            let frame = state.frames.pop_front().expect("front exists");
            taken += frame.len();
            into.push(frame);
        }
        state.bytes -= taken;
        if state.frames.is_empty() {
            state.close.clone()
        } else {
            None
        }
    }

    /// Waits until something was pushed or a close was requested since the last wait.
    pub async fn ready(&self) {
        self.wake.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_drops_the_queue_and_closes_as_slow_consumer() {
        let outbox = Outbox::new(10);
        assert_eq!(
            outbox.push(Bytes::from_static(b"123456")),
            PushOutcome::Queued
        );
        assert_eq!(
            outbox.push(Bytes::from_static(b"123456")),
            PushOutcome::Overflow
        );
        assert_eq!(outbox.push(Bytes::from_static(b"1")), PushOutcome::Closed);
        let mut out = Vec::new();
        let close = outbox.drain(&mut out, 1024).unwrap();
        assert!(out.is_empty());
        assert_eq!(close.code, CloseCode::SLOW_CONSUMER);
    }

    #[test]
    fn graceful_close_comes_after_queued_frames() {
        let outbox = Outbox::new(1024);
        outbox.push(Bytes::from_static(b"a"));
        outbox.push(Bytes::from_static(b"b"));
        outbox.close(CloseCode::SHUTDOWN, "bye", true);
        let mut out = Vec::new();
        // A one-byte budget takes one frame at a time; the close comes with the last.
        assert_eq!(outbox.drain(&mut out, 1), None);
        assert_eq!(outbox.drain(&mut out, 1).unwrap().code, CloseCode::SHUTDOWN);
        assert_eq!(
            out,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
        );
        assert_eq!(outbox.queued_bytes(), 0);
    }
}
