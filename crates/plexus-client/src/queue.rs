//! The bounded queue of requests waiting to be sent: while the client is disconnected (or not
//! yet authenticated), and while the in-flight limit is reached. Each request carries its own
//! expiry; a request whose caller stopped waiting is dropped instead of sent.

use crate::error::{ClientError, ErrorKind};
use crate::types::{History, LastSeen, Member, Position, PresenceStats};
use plexus_protocol::Payload;
use plexus_protocol::client::Op;
use std::collections::VecDeque;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The decoded result of a request, by kind.
#[derive(Debug)]
pub(crate) enum Reply {
    Call(Payload),
    Publish(Position),
    History(History),
    Presence(Vec<Member>),
    PresenceStats(PresenceStats),
    LastSeen(LastSeen),
    Meta(Payload),
    Record(crate::records::RecordState),
    RecordWrite(crate::records::RecordVersion),
    Unit,
}

/// Which result type a request's reply carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplyKind {
    Call,
    Publish,
    Unsubscribe,
    History,
    Presence,
    PresenceStats,
    LastSeen,
    Meta,
    Record,
    RecordWrite,
    /// An empty result (`presence_state`, `set_meta`).
    Empty,
}

pub(crate) type ReplySender = oneshot::Sender<Result<Reply, ClientError>>;

/// One request made by the application.
#[derive(Debug)]
pub(crate) struct QueuedRequest {
    pub op: Op,
    pub kind: ReplyKind,
    pub deadline: Instant,
    pub reply: ReplySender,
}

impl QueuedRequest {
    /// The caller gave up (timed out or was cancelled), or the request expired.
    fn abandoned(&self, now: Instant) -> bool {
        self.reply.is_closed() || now >= self.deadline
    }

    /// Answers with a timeout if the caller still listens (it may be a hair behind).
    pub(crate) fn expire(self) {
        let _ = self.reply.send(Err(ClientError::timeout()));
    }
}

/// An item waiting to be sent.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Request(QueuedRequest),
    /// (Re)subscribe this channel: the subscription state lives in the driver's table.
    Subscribe(String),
    /// The client's own unsubscribe (a dropped handle, or before a resubscribe that repairs a
    /// gap); nobody waits for its reply. Valid on the current connection only.
    Unsubscribe(String),
    /// Acknowledge the durable messages handled so far. Valid on the current connection only.
    Ack,
}

/// FIFO of outgoing items. Only application requests count against the bound: subscribe items
/// are bounded by the subscription table (one item per subscription at most).
#[derive(Debug)]
pub(crate) struct RequestQueue {
    items: VecDeque<Outgoing>,
    requests: usize,
    max_requests: usize,
}

impl RequestQueue {
    pub(crate) fn new(max_requests: usize) -> RequestQueue {
        RequestQueue {
            items: VecDeque::new(),
            requests: 0,
            max_requests,
        }
    }

    /// Queues a request, first dropping abandoned ones if the queue is full. When it is still
    /// full, the caller is answered with `QueueFull` at once.
    pub(crate) fn push_request(&mut self, request: QueuedRequest, now: Instant) {
        if self.requests >= self.max_requests {
            self.purge(now);
        }
        if self.requests >= self.max_requests {
            let error = ClientError::new(
                ErrorKind::QueueFull,
                format!(
                    "{} requests are already waiting to be sent (max_queued_requests)",
                    self.requests
                ),
            );
            let _ = request.reply.send(Err(error));
            return;
        }
        self.requests += 1;
        self.items.push_back(Outgoing::Request(request));
    }

    pub(crate) fn push_subscribe(&mut self, channel: String) {
        self.items.push_back(Outgoing::Subscribe(channel));
    }

    /// Puts an internal item (or one just popped) ahead of everything else.
    pub(crate) fn push_front(&mut self, item: Outgoing) {
        if matches!(item, Outgoing::Request(_)) {
            self.requests += 1;
        }
        self.items.push_front(item);
    }

    /// Forgets the items that only make sense on the connection that just ended.
    pub(crate) fn drop_connection_items(&mut self) {
        self.items
            .retain(|item| !matches!(item, Outgoing::Unsubscribe(_) | Outgoing::Ack));
    }

    /// Puts subscribes ahead of everything else (restoring subscriptions after a reconnect comes
    /// before requests that may depend on them), keeping their given order.
    pub(crate) fn push_subscribes_front(&mut self, channels: Vec<String>) {
        for channel in channels.into_iter().rev() {
            self.items.push_front(Outgoing::Subscribe(channel));
        }
    }

    /// The next item worth sending; abandoned requests on the way are answered and skipped.
    pub(crate) fn pop(&mut self, now: Instant) -> Option<Outgoing> {
        while let Some(item) = self.items.pop_front() {
            match item {
                Outgoing::Request(r) => {
                    self.requests -= 1;
                    if r.abandoned(now) {
                        r.expire();
                        continue;
                    }
                    return Some(Outgoing::Request(r));
                }
                other => return Some(other),
            }
        }
        None
    }

    /// Drops every abandoned request (answering each with a timeout).
    pub(crate) fn purge(&mut self, now: Instant) {
        let items = std::mem::take(&mut self.items);
        for item in items {
            match item {
                Outgoing::Request(r) if r.abandoned(now) => {
                    self.requests -= 1;
                    r.expire();
                }
                other => self.items.push_back(other),
            }
        }
    }

    /// Empties the queue (when the client stops), handing back the requests to answer.
    pub(crate) fn drain_requests(&mut self) -> Vec<QueuedRequest> {
        self.requests = 0;
        self.items
            .drain(..)
            .filter_map(|item| match item {
                Outgoing::Request(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    #[cfg(test)]
    fn requests(&self) -> usize {
        self.requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_protocol::client::CallParams;
    use std::time::Duration;

    fn request(
        deadline: Instant,
    ) -> (QueuedRequest, oneshot::Receiver<Result<Reply, ClientError>>) {
        let (tx, rx) = oneshot::channel();
        let r = QueuedRequest {
            op: Op::Call(CallParams::new("m", &Payload::null())),
            kind: ReplyKind::Call,
            deadline,
            reply: tx,
        };
        (r, rx)
    }

    #[test]
    fn the_bound_is_enforced_and_reported() {
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let mut q = RequestQueue::new(2);
        let (a, _ra) = request(later);
        let (b, _rb) = request(later);
        let (c, mut rc) = request(later);
        q.push_request(a, now);
        q.push_request(b, now);
        q.push_request(c, now);
        assert!(rc.try_recv().unwrap().unwrap_err().is_queue_full());
        // Subscribe items do not count against the request bound.
        q.push_subscribe("c".into());
        assert_eq!(q.requests(), 2);
    }

    #[test]
    fn abandoned_requests_make_room_when_the_queue_is_full() {
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let mut q = RequestQueue::new(2);
        let (a, ra) = request(later);
        let (b, mut rb) = request(now + Duration::from_millis(5));
        q.push_request(a, now);
        q.push_request(b, now);
        drop(ra); // the caller of `a` gave up
        let (c, _rc) = request(later);
        let t = now + Duration::from_millis(10); // `b` has expired by now
        q.push_request(c, t);
        assert_eq!(q.requests(), 1);
        assert!(rb.try_recv().unwrap().unwrap_err().is_timeout());
    }

    #[test]
    fn pop_is_fifo_skips_expired_and_puts_resubscribes_first() {
        let now = Instant::now();
        let mut q = RequestQueue::new(8);
        let (a, mut ra) = request(now + Duration::from_millis(1));
        let (b, _rb) = request(now + Duration::from_secs(1));
        q.push_request(a, now);
        q.push_subscribe("new".into());
        q.push_request(b, now);
        q.push_subscribes_front(vec!["x".into(), "y".into()]);
        let t = now + Duration::from_millis(2);
        let order: Vec<String> = std::iter::from_fn(|| q.pop(t))
            .map(|o| match o {
                Outgoing::Subscribe(c) => c,
                Outgoing::Request(r) => format!("req@{:?}", r.deadline - now),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(order, ["x", "y", "new", "req@1s"]);
        assert!(ra.try_recv().unwrap().unwrap_err().is_timeout());
        assert!(q.is_empty());
        assert_eq!(q.requests(), 0);
    }
}
