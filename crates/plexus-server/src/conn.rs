//! The connection loop that every dialect over WebSocket shares (`docs/ARCHITECTURE.md`,
//! "Dialects and transports").
//!
//! One task per connection reads messages, hands them to the dialect to decode, runs the
//! requests through one [`Pipeline`] and writes the outbox in batches. Written once here, for
//! every dialect: the auth deadline, the request rate limit and the pending-request bound, the
//! order of replies, the drain before a close the connection asked for, the write timeout, the
//! close handshake, and the close code and reason the `closed` lifecycle hooks report. A
//! dialect only decodes its messages, executes its requests on the [`Session`] and says how
//! queued frames become WebSocket messages.

use crate::ws::WsStream;
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use plexus_core::stats::NodeStats;
use plexus_core::{CloseCode, Connection, Error, ErrorCode, Session};
use std::collections::VecDeque;
use std::pin::Pin;
use tokio_websockets::Message;

/// Bytes of queued frames taken from the outbox per write.
pub(crate) const BATCH_BYTES_MAX: usize = 64 * 1024;

/// A close the connection asked for: its code and reason.
pub(crate) type Close = (CloseCode, String);

/// What a call that ran in the background leaves: its reply frame (none for a notification
/// that succeeded) and the close its error asks for.
pub(crate) struct Replied {
    pub frame: Option<Bytes>,
    pub close: Option<Close>,
}

pub(crate) type ReplyFuture = Pin<Box<dyn Future<Output = Replied> + Send>>;

/// How a request went.
pub(crate) enum Step {
    /// Answered: its reply (if any) is queued; `Some` when the answer asks to close.
    Done(Option<Close>),
    /// An ordered call still running: later requests wait for its reply.
    Running(ReplyFuture),
    /// A call of a concurrent command: later requests do not wait for it.
    Concurrent(ReplyFuture),
}

/// One item of a decoded message.
pub(crate) enum Incoming<R> {
    Request(R),
    /// A heartbeat answer: never refused, never queued, never answered.
    Pong,
    /// A request that could not be decoded but is answered (with this frame, if any) in its
    /// turn.
    Rejected(Option<Bytes>),
    /// Bytes that break the protocol: what came before is handled, then the connection closes.
    Broken(Close),
}

/// What a transport read.
pub(crate) enum Read {
    /// A data message (text or binary).
    Message(Message),
    /// The peer closed (its close is answered) or the transport ended: the peer's close code
    /// and reason, or what ended the transport.
    Closed(Close),
    /// The transport ends the connection with this close (the peer broke the transport's
    /// protocol, closed it in band, or went silent): as with a dialect's `Broken`, what was
    /// accepted is answered first.
    Close(Close),
    /// Something of the transport's own happened (a heartbeat, an upgrade): nothing for the
    /// dialect; the loop goes around and writes what the transport queued.
    Wake,
    /// A WebSocket pong: the answer to a ping frame of the heartbeat (dialects without a
    /// heartbeat of their own, such as raw endpoints, are pinged with ping frames).
    Pong,
}

/// The close of a transport that failed: no close frame can be exchanged anymore.
pub(crate) fn lost() -> Close {
    (CloseCode::CONNECTION_LOST, "connection lost".into())
}

/// A message transport: a WebSocket, or an Engine.IO session over polling and WebSocket.
pub(crate) trait Transport: Send {
    /// The next message. Cancel-safe: the loop selects it against other events.
    fn read(&mut self) -> impl Future<Output = Read> + Send;
    /// Queues a message. Fails with what ended the transport.
    fn feed(&mut self, message: Message) -> impl Future<Output = Result<(), Close>> + Send;
    /// Sends what was fed (and anything the transport queued itself).
    fn flush(&mut self) -> impl Future<Output = Result<(), Close>> + Send;
    /// Whether the transport queued something of its own to send.
    fn wants_flush(&self) -> bool {
        false
    }
    /// Closes with a code and reason (as [`crate::ws::wire_close`] made them fit a close
    /// frame), waiting (bounded) for the peer.
    fn close(&mut self, code: CloseCode, reason: &str) -> impl Future<Output = ()> + Send;
}

impl Transport for WsStream {
    async fn read(&mut self) -> Read {
        match self.next().await {
            Some(Ok(message)) if message.is_close() => {
                let close = message.as_close().map_or_else(lost, |(code, reason)| {
                    (CloseCode(u16::from(code)), reason.to_owned())
                });
                // Answer the close frame (RFC 6455 §5.5.1): the framing layer queued the echo;
                // flushing sends it.
                let _ = tokio::time::timeout(crate::ws::CLOSE_LINGER, SinkExt::flush(self)).await;
                Read::Closed(close)
            }
            Some(Ok(message)) if message.is_text() || message.is_binary() => Read::Message(message),
            Some(Ok(message)) if message.is_pong() => Read::Pong,
            // Pings: the framing layer answers them.
            Some(Ok(_)) => Read::Wake,
            // A transport or protocol error (the framing layer already answered protocol
            // errors and oversized messages with their close codes).
            Some(Err(e)) => {
                tracing::debug!(error = %e, "websocket error");
                let _ = SinkExt::flush(self).await;
                Read::Closed(crate::ws::read_error_close(&e))
            }
            None => Read::Closed(lost()),
        }
    }

    async fn feed(&mut self, message: Message) -> Result<(), Close> {
        SinkExt::feed(self, message).await.map_err(|_| lost())
    }

    async fn flush(&mut self) -> Result<(), Close> {
        SinkExt::flush(self).await.map_err(|_| lost())
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        crate::ws::close(self, code, reason).await;
    }
}

/// A wire dialect over a message transport.
pub(crate) trait Dialect: Send + 'static {
    type Request: Send;

    /// Runs once before the first message is read (the native hello, a Socket.IO handshake).
    fn open(&mut self, session: &mut Session) -> impl Future<Output = ()> + Send;

    /// Decodes one transport message into `out`, in order.
    fn decode(&mut self, message: &Message, out: &mut Vec<Incoming<Self::Request>>);

    /// Whether `request` may run alongside later requests.
    fn is_concurrent(&self, session: &Session, request: &Self::Request) -> bool;

    /// The frame that refuses `request` with `error`, if the dialect answers it.
    fn refusal(&self, request: &Self::Request, error: &Error) -> Option<Bytes>;

    /// Executes a request in its turn. A reply it gives at once, it queues itself
    /// (`Connection::send_frame`), so that what must follow a reply (released publications,
    /// a mailbox backlog) follows it.
    fn execute(
        &mut self,
        session: &mut Session,
        request: Self::Request,
    ) -> impl Future<Output = Step> + Send;

    /// Turns queued frames into WebSocket messages (joining them where the dialect batches).
    fn write(&mut self, frame: Bytes, out: &mut Vec<Message>);

    /// Ends a write: whatever `write` kept back goes into `out`.
    fn flush(&mut self, out: &mut Vec<Message>);

    /// Messages that go out right before the transport closes with `code` (Socket.IO's
    /// DISCONNECT when the client must not reconnect). None by default.
    fn farewell(&mut self, _code: CloseCode, _out: &mut Vec<Message>) {}

    /// When the dialect wants [`Dialect::expired`] called (Socket.IO's `connectTimeout`).
    /// None by default.
    fn deadline(&self) -> Option<std::time::Instant> {
        None
    }

    /// Its deadline passed: the close it asks for, if any.
    fn expired(&mut self) -> Option<Close> {
        None
    }

    /// Runs once the connection has ended, before the session's cleanup (chat-service's
    /// disconnect notifications and hooks). Nothing by default.
    fn closed(&mut self, _session: &mut Session) -> impl Future<Output = ()> + Send {
        async {}
    }
}

enum Slot<R> {
    Run(R),
    /// The reply to a refused request, waiting for the replies before it.
    Answer(Option<Bytes>),
}

/// A connection's requests in flight, answered in the order they came (except concurrent
/// calls), bounded by `max_pending_requests`.
pub(crate) struct Pipeline<R> {
    queued: VecDeque<Slot<R>>,
    /// `Slot::Run` entries in `queued`.
    queued_runs: usize,
    current: Option<ReplyFuture>,
    concurrent: FuturesUnordered<ReplyFuture>,
    /// Set once the connection must close: no message is read anymore, the accepted requests
    /// are answered, then it closes.
    closing: Option<Close>,
}

impl<R> Pipeline<R> {
    fn new() -> Pipeline<R> {
        Pipeline {
            queued: VecDeque::new(),
            queued_runs: 0,
            current: None,
            concurrent: FuturesUnordered::new(),
            closing: None,
        }
    }

    /// Whether a reply given now would overtake an earlier request's.
    fn busy(&self) -> bool {
        self.current.is_some() || !self.queued.is_empty()
    }

    /// Accepted requests without a reply yet (the count `max_pending_requests` bounds).
    fn pending(&self) -> usize {
        self.queued_runs + usize::from(self.current.is_some()) + self.concurrent.len()
    }

    fn begin_close(&mut self, close: Close) {
        self.closing.get_or_insert(close);
    }

    /// Queues `frame` as the reply to a request refused now, behind earlier replies.
    fn answer(&mut self, conn: &Connection, frame: Option<Bytes>, max: usize) {
        if !self.busy() {
            if let Some(frame) = frame {
                conn.send_frame(frame);
            }
            return;
        }
        if self.queued.len() - self.queued_runs >= max {
            // Refusals pile up behind a slow call: the client ignores the limits.
            self.begin_close((
                CloseCode::FLOOD,
                "too many refused requests waiting behind a running one".into(),
            ));
            return;
        }
        self.queued.push_back(Slot::Answer(frame));
    }
}

/// Runs a connection of dialect `D` until it closes, then cleans up through
/// [`Session::close`] with the close the client was sent (or sent, or what ended the
/// transport), which the `closed` lifecycle hooks report.
pub(crate) async fn run<T: Transport, D: Dialect>(mut ws: T, mut session: Session, mut dialect: D) {
    dialect.open(&mut session).await;
    let mut pipe: Pipeline<D::Request> = Pipeline::new();
    let mut incoming = Vec::new();
    let mut batch = Vec::new();
    let mut messages = Vec::new();
    let conn = session.connection().clone();
    let node = session.node().clone();
    let limits = node.limits();
    let (code, reason) = loop {
        if let Some((code, reason)) = &pipe.closing
            && pipe.pending() == 0
            && pipe.queued.is_empty()
        {
            conn.close(*code, reason.clone());
        }
        // A client that stops reading blocks the write; past the write timeout it is dropped
        // (its queue is bounded meanwhile, so it never grows the server's memory).
        let written = tokio::time::timeout(
            limits.write_timeout,
            write_queued(
                &mut ws,
                &conn,
                &mut dialect,
                &mut batch,
                &mut messages,
                node.stats(),
            ),
        )
        .await;
        match written {
            Err(_) => {
                tracing::debug!(conn = %conn.id, "write timed out: dropping the connection");
                break (CloseCode::CONNECTION_LOST, "write timed out".into());
            }
            Ok(Some(Err(lost))) => break lost,
            Ok(Some(Ok(close))) => {
                // What the client gets is what the hooks report.
                let (code, reason) = crate::ws::wire_close(close.code, &close.reason);
                dialect.farewell(code, &mut messages);
                for message in messages.drain(..) {
                    let _ = ws.feed(message).await;
                }
                ws.close(code, reason).await;
                break (code, reason.to_owned());
            }
            Ok(None) => {}
        }
        let auth_deadline = session.auth_deadline();
        let dialect_deadline = dialect.deadline();
        tokio::select! {
            read = ws.read(), if pipe.closing.is_none() => match read {
                Read::Message(message) => {
                    let stats = node.stats();
                    NodeStats::add(&stats.messages_in, 1);
                    NodeStats::add(&stats.bytes_in, message.as_payload().len() as u64);
                    dialect.decode(&message, &mut incoming);
                    for item in incoming.drain(..) {
                        if pipe.closing.is_some() {
                            break;
                        }
                        on_incoming(&mut pipe, &mut session, &mut dialect, item).await;
                    }
                    incoming.clear();
                }
                Read::Closed(close) => break close,
                Read::Close(close) => pipe.begin_close(close),
                Read::Wake => {}
                Read::Pong => {
                    session.pong();
                }
            },
            _ = conn.outbox().ready() => {}
            replied = async { pipe.current.as_mut().expect("guarded").await }, if pipe.current.is_some() => {
                pipe.current = None;
                deliver(&mut pipe, &conn, replied);
                run_queued(&mut pipe, &mut session, &mut dialect).await;
            }
            Some(replied) = pipe.concurrent.next(), if !pipe.concurrent.is_empty() => {
                deliver(&mut pipe, &conn, replied);
            }
            _ = sleep_until(auth_deadline), if auth_deadline.is_some() && pipe.closing.is_none() => {
                pipe.begin_close((CloseCode::AUTH_TIMEOUT, "authentication timed out".into()));
            }
            _ = sleep_until(dialect_deadline), if dialect_deadline.is_some() && pipe.closing.is_none() => {
                if let Some(close) = dialect.expired() {
                    pipe.begin_close(close);
                }
            }
        }
    };
    dialect.closed(&mut session).await;
    session.close(code, &reason).await;
}

fn deliver<R>(pipe: &mut Pipeline<R>, conn: &Connection, replied: Replied) {
    if let Some(frame) = replied.frame {
        conn.send_frame(frame);
    }
    if let Some(close) = replied.close {
        pipe.begin_close(close);
    }
}

async fn on_incoming<D: Dialect>(
    pipe: &mut Pipeline<D::Request>,
    session: &mut Session,
    dialect: &mut D,
    item: Incoming<D::Request>,
) {
    let max_pending = session.node().limits().max_pending_requests;
    match item {
        Incoming::Pong => {
            session.pong();
        }
        Incoming::Broken(close) => pipe.begin_close(close),
        Incoming::Rejected(frame) => pipe.answer(session.connection(), frame, max_pending),
        Incoming::Request(request) => {
            // The rate limit first: a refused request costs no pending slot.
            if let Err(e) = session.admit_request() {
                let frame = dialect.refusal(&request, &e);
                pipe.answer(session.connection(), frame, max_pending);
                if let Some(code) = e.close {
                    pipe.begin_close((code, e.message));
                }
                return;
            }
            if pipe.pending() >= max_pending {
                let e = Error::new(
                    ErrorCode::TOO_MANY_PENDING,
                    "too many requests waiting for an answer",
                );
                let frame = dialect.refusal(&request, &e);
                pipe.answer(session.connection(), frame, max_pending);
                return;
            }
            if pipe.busy() && !dialect.is_concurrent(session, &request) {
                pipe.queued.push_back(Slot::Run(request));
                pipe.queued_runs += 1;
                return;
            }
            execute(pipe, session, dialect, request).await;
        }
    }
}

async fn execute<D: Dialect>(
    pipe: &mut Pipeline<D::Request>,
    session: &mut Session,
    dialect: &mut D,
    request: D::Request,
) {
    match dialect.execute(session, request).await {
        Step::Done(close) => {
            if let Some(close) = close {
                pipe.begin_close(close);
            }
        }
        Step::Running(future) => pipe.current = Some(future),
        Step::Concurrent(future) => pipe.concurrent.push(future),
    }
}

/// Runs queued requests (and sends queued refusals) until one is an ordered call still running.
async fn run_queued<D: Dialect>(
    pipe: &mut Pipeline<D::Request>,
    session: &mut Session,
    dialect: &mut D,
) {
    while pipe.current.is_none() {
        match pipe.queued.pop_front() {
            None => return,
            Some(Slot::Answer(frame)) => {
                if let Some(frame) = frame {
                    session.connection().send_frame(frame);
                }
            }
            Some(Slot::Run(request)) => {
                pipe.queued_runs -= 1;
                execute(pipe, session, dialect, request).await;
            }
        }
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// Writes everything queued as few messages as the dialect allows. `Some(Ok(close))` when
/// the connection must now be closed with that request, `Some(Err(close))` when the transport
/// failed (with what ended it).
async fn write_queued<T: Transport, D: Dialect>(
    ws: &mut T,
    conn: &Connection,
    dialect: &mut D,
    batch: &mut Vec<Bytes>,
    messages: &mut Vec<Message>,
    stats: &NodeStats,
) -> Option<Result<plexus_core::outbox::CloseRequest, Close>> {
    let outbox = conn.outbox();
    if ws.wants_flush()
        && let Err(lost) = ws.flush().await
    {
        return Some(Err(lost));
    }
    loop {
        batch.clear();
        let close = outbox.drain(batch, BATCH_BYTES_MAX);
        if batch.is_empty() {
            return close.map(Ok);
        }
        for frame in batch.drain(..) {
            dialect.write(frame, messages);
        }
        dialect.flush(messages);
        let wrote = !messages.is_empty();
        for message in messages.drain(..) {
            NodeStats::add(&stats.messages_out, 1);
            NodeStats::add(&stats.bytes_out, message.as_payload().len() as u64);
            if let Err(lost) = ws.feed(message).await {
                return Some(Err(lost));
            }
        }
        if wrote && let Err(lost) = ws.flush().await {
            return Some(Err(lost));
        }
        if close.is_some() {
            return close.map(Ok);
        }
    }
}
