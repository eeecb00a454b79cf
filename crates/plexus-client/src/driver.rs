//! The connection task: one per client. It owns the socket, the subscription table, the request
//! queue and the in-flight requests; handles talk to it through a bounded command channel.
//!
//! Life of the task: connect (serving commands while it waits) → session (hello, `connect`,
//! restore subscriptions, flush the queue, then frames in and out) → on loss, back off and
//! connect again, unless the close code, the configuration or an explicit `disconnect()` says
//! stop. When it stops, every waiting caller gets an answer and every stream ends.

use crate::config::{ClientConfig, SubscribeOptions};
use crate::error::{ClientError, ErrorKind};
use crate::lossy::{Lag, LossySender, Sent};
use crate::mail::{Arrival, Mail, MailDone, MailTracker};
use crate::queue::{Outgoing, QueuedRequest, Reply, ReplyKind, ReplySender, RequestQueue};
use crate::types::{
    ConnectionInfo, ConnectionState, Echo, Event, History, LastSeen, Member, MemberChange, Message,
    Notice, Position, PresenceStats, Publication, PushEvent, StateChange, Subscribed,
    SubscriptionEvent, UnsubscribeReason, json,
};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use plexus_protocol::client::{
    AckParams, ConnectParams, Op, Position as WirePosition, Request, SubscribeParams,
    UnsubscribeParams, encode_request,
};
use plexus_protocol::server::{
    AckResult, AuthState, CallResult, ConnectResult, Empty, ErrorBody, Hello, HistoryResult,
    LastSeenResult, MailPush, MetaResult, PresenceResult, PresenceStatsResult, PubPush,
    PublishResult, Push, RecordResult, RecordWriteResult, ServerFrame, SubscribeResult,
    decode_reply, decode_server_frame,
};
use plexus_protocol::{
    CloseCode, Encoding, ErrorCode, FrameWriter, PROTOCOL_VERSION, Payload, split_frames,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage, Utf8Bytes};
use tracing::{debug, warn};

type Ws = WebSocketStream<crate::net::Io>;

/// How long `disconnect()` waits for the server to answer the close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Commands handled in one go before frames are flushed (bounds the latency of the others).
const COMMAND_BATCH: usize = 64;
/// The reason of an `unsubscribed` push that asks the client to subscribe again with `since`
/// (`docs/protocol.md` section 4.6).
const INSUFFICIENT_STATE: &str = "insufficient_state";

/// What handles ask of the connection task.
pub(crate) enum Command {
    Request {
        request: QueuedRequest,
        fail_fast: bool,
    },
    Subscribe {
        channel: String,
        sub_id: u64,
        events: mpsc::Sender<SubItem>,
        options: SubscribeOptions,
        reply: oneshot::Sender<Result<Subscribed, ClientError>>,
    },
    Unsubscribe {
        channel: String,
        deadline: Instant,
        reply: ReplySender,
    },
    /// A [`crate::Subscription`] handle was dropped without unsubscribing.
    Release {
        channel: String,
        sub_id: u64,
    },
    Disconnect {
        done: oneshot::Sender<()>,
    },
}

/// What the connection task hands a [`crate::Subscription`]: one event, or the events of one
/// subscribe result (a restore notice and the recovered or history publications), which take
/// one slot of the bounded buffer together so that a recovery is never cut by it.
#[derive(Debug)]
pub(crate) enum SubItem {
    One(SubscriptionEvent),
    Batch(Vec<SubscriptionEvent>),
}

impl Lag for SubItem {
    fn lagged(missed: u64) -> SubItem {
        SubItem::One(SubscriptionEvent::Lagged { missed })
    }

    fn weight(&self) -> u64 {
        match self {
            SubItem::One(_) => 1,
            SubItem::Batch(events) => events.len() as u64,
        }
    }
}

/// The outputs shared with the handles.
pub(crate) struct Outputs {
    pub events: broadcast::Sender<Event>,
    pub pushes: broadcast::Sender<PushEvent>,
    pub state: watch::Sender<ConnectionState>,
    /// The last round-trip time in ms, as f64 bits; NaN until measured.
    pub latency: Arc<AtomicU64>,
    /// Durable messages, to the [`crate::Mailbox`].
    pub mail: mpsc::Sender<Mail>,
    /// Durable messages the application is done with, back from [`Mail`].
    pub mail_done: mpsc::UnboundedSender<MailDone>,
    pub mail_done_rx: mpsc::UnboundedReceiver<MailDone>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SubState {
    /// Not subscribed on the current connection, and not queued.
    Idle,
    /// A subscribe item is in the queue.
    Queued,
    /// Subscribe sent, with this request id.
    InFlight(u64),
    Active,
}

struct SubEntry {
    /// Distinguishes subscriptions of the same channel made one after another.
    sub_id: u64,
    /// `None` for a server-side subscription (its publications go to the pushes).
    events: Option<LossySender<SubItem>>,
    /// The last position seen: of the last publication accepted, or of the last subscribe
    /// result (before the first subscribe: the `since` asked for). Publications at or below it
    /// (same epoch) are duplicates; one above `offset + 1`, or of another epoch, is a gap.
    position: Option<Position>,
    state: SubState,
    /// The caller of `subscribe()`, until the first result.
    first: Option<oneshot::Sender<Result<Subscribed, ClientError>>>,
    /// Restore attempts after transient failures, and when to try next.
    retry_attempt: u32,
    retry_prev: Duration,
    retry_at: Option<Instant>,
    /// Pass `position` as `since` when subscribing again.
    recover: bool,
    /// `history` of the first subscribe.
    history: Option<u32>,
    token: Option<String>,
    /// A subscribe is under way to repair a gap: publications arriving meanwhile are dropped,
    /// its result brings them back in order.
    resync: bool,
    /// The server still holds the subscription being repaired: unsubscribe before subscribing.
    unsubscribe_first: bool,
}

impl SubEntry {
    fn new(
        sub_id: u64,
        events: Option<LossySender<SubItem>>,
        position: Option<Position>,
        state: SubState,
    ) -> SubEntry {
        SubEntry {
            sub_id,
            events,
            position,
            state,
            first: None,
            retry_attempt: 0,
            retry_prev: Duration::ZERO,
            retry_at: None,
            recover: true,
            history: None,
            token: None,
            resync: false,
            unsubscribe_first: false,
        }
    }

    fn server_side(position: Position) -> SubEntry {
        SubEntry::new(0, None, Some(position), SubState::Active)
    }

    fn is_server_side(&self) -> bool {
        self.events.is_none()
    }
}

enum Pending {
    Connect,
    Request {
        kind: ReplyKind,
        reply: ReplySender,
    },
    Subscribe {
        channel: String,
    },
    /// An `ack` of durable messages up to this `seq`.
    Ack(u64),
    /// Sent by the client itself (releasing a dropped subscription); the reply is not needed.
    Internal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    AwaitConnect,
    Ready,
}

struct Session {
    sink: SplitSink<Ws, WsMessage>,
    stream: SplitStream<Ws>,
    phase: Phase,
    pending: HashMap<u64, Pending>,
    info: Option<ConnectionInfo>,
    /// Until `Ready`: the attempt's deadline.
    handshake_deadline: Instant,
    /// No frame for this long means the server is gone (from the hello).
    dead_after: Option<Duration>,
    last_frame: Instant,
    /// When to look at `last_frame` next. Moved forward lazily when the timer fires, so a busy
    /// connection does not re-arm its timer for every frame.
    dead_check: Instant,
    max_in_flight: usize,
    /// The server's largest accepted message.
    max_out_bytes: usize,
    outbox: Vec<Bytes>,
    /// The close frame the server sent, if any.
    close: Option<(CloseCode, String)>,
    /// The server refused `connect` with an error that its close code qualifies.
    connect_error: Option<ClientError>,
    timer: std::pin::Pin<Box<Sleep>>,
}

/// Why a connection attempt or session ended.
struct Ended {
    /// Whether it got as far as `Connected`.
    connected: bool,
    code: Option<CloseCode>,
    reason: String,
    error: ClientError,
    /// Never reconnect after this (close code, authentication failure, bad configuration).
    final_: bool,
}

impl Ended {
    fn failed(error: ClientError) -> Ended {
        // A bad URL stays bad; everything else may work on the next attempt.
        let final_ = error.kind() == ErrorKind::Config;
        Ended {
            connected: false,
            code: None,
            reason: error.message().to_owned(),
            error,
            final_,
        }
    }
}

/// Why the task stops.
enum Stop {
    /// `disconnect()`, or every handle dropped.
    Client(Option<oneshot::Sender<()>>),
    /// The connection ended and may not be re-opened.
    Final {
        code: Option<CloseCode>,
        reason: String,
        error: ClientError,
        announce: bool,
    },
    /// Reconnect attempts exhausted.
    GaveUp { attempts: u32, error: ClientError },
}

enum Flow {
    Continue,
    End(Ended),
    Stop(Stop),
}

pub(crate) struct Driver {
    config: ClientConfig,
    cmd_rx: mpsc::Receiver<Command>,
    out: Outputs,
    queue: RequestQueue,
    subs: BTreeMap<String, SubEntry>,
    next_id: u64,
    rng: fastrand::Rng,
    /// `Client::connect` waiting for the first connection; the first failure is final then.
    first: Option<oneshot::Sender<Result<ConnectionInfo, ClientError>>>,
    ever_connected: bool,
    pong: Bytes,
    /// The earliest subscription restore retry, if any is scheduled.
    next_retry: Option<Instant>,
    mail: MailTracker,
    /// An [`Outgoing::Ack`] is in the queue.
    ack_queued: bool,
}

impl Driver {
    pub(crate) fn new(
        config: ClientConfig,
        cmd_rx: mpsc::Receiver<Command>,
        out: Outputs,
        first: Option<oneshot::Sender<Result<ConnectionInfo, ClientError>>>,
    ) -> Driver {
        let rng = match config.rng_seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        let pong = encode_request(
            config.encoding,
            &Request {
                id: None,
                op: Op::Pong,
            },
        );
        Driver {
            mail: MailTracker::new(config.mail_buffer),
            ack_queued: false,
            queue: RequestQueue::new(config.max_queued_requests),
            config,
            cmd_rx,
            out,
            subs: BTreeMap::new(),
            next_id: 0,
            rng,
            first,
            ever_connected: false,
            pong,
            next_retry: None,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut failed: u32 = 0; // consecutive attempts that did not reach Connected
        let mut delay = Duration::ZERO;
        let mut prev_delay = Duration::ZERO;
        loop {
            let attempt = failed + 1;
            self.emit(Event::Connecting { attempt, delay });
            self.set_state(ConnectionState::Connecting);
            if !delay.is_zero()
                && let Some(stop) = self.wait_offline(Instant::now() + delay).await
            {
                return self.finish(stop).await;
            }
            let ended = match self.attempt().await {
                Ok(ended) => ended,
                Err(stop) => return self.finish(stop).await,
            };
            let will_reconnect = !ended.final_
                && self.config.reconnect
                && ended.code.is_none_or(|c| c.should_reconnect());
            if ended.connected {
                failed = 0;
                prev_delay = Duration::ZERO;
                self.emit(Event::Disconnected {
                    code: ended.code,
                    reason: ended.reason.clone(),
                    will_reconnect,
                });
            } else {
                failed += 1;
                self.emit(Event::ConnectFailed {
                    attempt,
                    error: ended.error.clone(),
                });
            }
            if !will_reconnect || (self.first.is_some() && !ended.connected) {
                let error = if ended.connected {
                    ClientError::closed(ended.reason.clone(), ended.code)
                } else {
                    ended.error.clone()
                };
                let announce = !ended.connected && self.first.is_none();
                return self
                    .finish(Stop::Final {
                        code: ended.code,
                        reason: ended.reason,
                        error,
                        announce,
                    })
                    .await;
            }
            if !ended.connected
                && self
                    .config
                    .backoff
                    .max_attempts
                    .is_some_and(|max| failed >= max)
            {
                return self
                    .finish(Stop::GaveUp {
                        attempts: failed,
                        error: ended.error,
                    })
                    .await;
            }
            delay = self
                .config
                .backoff
                .delay(failed + 1, prev_delay, &mut self.rng);
            prev_delay = delay;
        }
    }

    /// Opens a connection and runs it to its end. `Err` means stop.
    async fn attempt(&mut self) -> Result<Ended, Stop> {
        let deadline = Instant::now() + self.config.connect_timeout;
        let open = open(self.config.clone());
        tokio::pin!(open);
        let ws = loop {
            tokio::select! {
                r = &mut open => match r {
                    Ok(ws) => break ws,
                    Err(e) => return Ok(Ended::failed(e)),
                },
                _ = sleep_until(deadline) => {
                    return Ok(Ended::failed(ClientError::new(
                        ErrorKind::Connect,
                        format!("no connection within {:?}", self.config.connect_timeout),
                    )));
                }
                cmd = self.cmd_rx.recv() => {
                    if let Some(stop) = self.on_command(None, cmd) {
                        return Err(stop);
                    }
                }
            }
        };
        let (sink, stream) = ws.split();
        let mut s = Session {
            sink,
            stream,
            phase: Phase::AwaitHello,
            pending: HashMap::new(),
            info: None,
            handshake_deadline: deadline,
            dead_after: None,
            last_frame: Instant::now(),
            dead_check: deadline,
            max_in_flight: self.config.max_in_flight,
            max_out_bytes: usize::MAX,
            outbox: Vec::new(),
            close: None,
            connect_error: None,
            timer: Box::pin(sleep_until(deadline)),
        };
        let result = self.session(&mut s).await;
        let connected = s.phase == Phase::Ready;
        match result {
            Err(stop) => {
                if matches!(stop, Stop::Client(_)) {
                    close_politely(&mut s).await;
                }
                self.end_session(&mut s, ClientError::closed("the client was closed", None));
                Err(stop)
            }
            Ok(mut ended) => {
                ended.connected = connected;
                self.end_session(&mut s, ClientError::disconnected());
                Ok(ended)
            }
        }
    }
}

impl Driver {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn emit(&self, event: Event) {
        // No receiver is fine: nobody is listening.
        let _ = self.out.events.send(event);
    }

    fn set_state(&self, state: ConnectionState) {
        self.out.state.send_if_modified(|current| {
            if *current == state {
                false
            } else {
                *current = state;
                true
            }
        });
    }

    /// Serves commands while there is no connection, until `until`.
    async fn wait_offline(&mut self, until: Instant) -> Option<Stop> {
        let sleep = sleep_until(until);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return None,
                cmd = self.cmd_rx.recv() => {
                    if let Some(stop) = self.on_command(None, cmd) {
                        return Some(stop);
                    }
                }
            }
        }
    }

    async fn session(&mut self, s: &mut Session) -> Result<Ended, Stop> {
        loop {
            self.arm_timer(s);
            let flow = tokio::select! {
                msg = s.stream.next() => self.on_ws(s, msg),
                Some(key) = self.out.mail_done_rx.recv() => {
                    self.mail.finished(key);
                    self.drain_mail_done(s);
                    Flow::Continue
                }
                cmd = self.cmd_rx.recv() => {
                    // Mail handled before this command was made is acknowledged before it.
                    self.drain_mail_done(s);
                    let mut stop = self.on_command(Some(s), cmd);
                    let mut handled = 1;
                    while stop.is_none() && handled < COMMAND_BATCH {
                        match self.cmd_rx.try_recv() {
                            Ok(cmd) => stop = self.on_command(Some(s), Some(cmd)),
                            Err(_) => break,
                        }
                        handled += 1;
                    }
                    match stop {
                        Some(stop) => Flow::Stop(stop),
                        None => Flow::Continue,
                    }
                }
                _ = &mut s.timer => self.on_timer(s),
            };
            match flow {
                Flow::Continue => {}
                Flow::End(ended) => return Ok(ended),
                Flow::Stop(stop) => return Err(stop),
            }
            if s.close.is_some() {
                // The server closed: send the close reply tungstenite queued, then end here
                // rather than wait for a TCP close that a server may be slow to send.
                let _ = tokio::time::timeout(CLOSE_GRACE, s.sink.close()).await;
                return Ok(lost(s, String::new()));
            }
            if let Err(e) = flush(s, self.config.encoding, self.config.batch_bytes).await {
                return Ok(lost(s, format!("write failed: {e}")));
            }
        }
    }

    /// Takes the handled-mail notices waiting, and queues the `ack` they make due.
    fn drain_mail_done(&mut self, s: &mut Session) {
        while let Ok(key) = self.out.mail_done_rx.try_recv() {
            self.mail.finished(key);
        }
        self.schedule_ack(s);
    }

    fn schedule_ack(&mut self, s: &mut Session) {
        if s.phase == Phase::Ready && !self.ack_queued && self.mail.ack_due().is_some() {
            self.ack_queued = true;
            self.queue.push_front(Outgoing::Ack);
            self.pump(s);
        }
    }

    fn arm_timer(&self, s: &mut Session) {
        let at = if s.phase != Phase::Ready {
            Some(s.handshake_deadline)
        } else {
            let dead = s.dead_after.map(|_| s.dead_check);
            match (dead, self.next_retry) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let at = match at {
            Some(at) => at,
            // Nothing to wait for: park the timer far ahead, once.
            None if s.timer.deadline() > Instant::now() + YEAR / 2 => return,
            None => Instant::now() + YEAR,
        };
        if s.timer.deadline() != at {
            s.timer.as_mut().reset(at);
        }
    }

    fn on_timer(&mut self, s: &mut Session) -> Flow {
        let now = Instant::now();
        if s.phase != Phase::Ready {
            if now >= s.handshake_deadline {
                let error = s.connect_error.clone().unwrap_or_else(|| {
                    ClientError::new(
                        ErrorKind::Connect,
                        format!(
                            "the server did not complete the handshake within {:?}",
                            self.config.connect_timeout
                        ),
                    )
                });
                return Flow::End(Ended::failed(error));
            }
            return Flow::Continue;
        }
        if let Some(dead) = s.dead_after
            && now >= s.dead_check
        {
            s.dead_check = s.last_frame + dead;
        }
        if let Some(dead) = s.dead_after
            && now >= s.last_frame + dead
        {
            let reason = format!("no frame from the server for {dead:?}");
            return Flow::End(Ended {
                connected: true,
                code: None,
                error: ClientError::new(ErrorKind::Disconnected, reason.clone()),
                reason,
                final_: false,
            });
        }
        if self.next_retry.is_some_and(|at| now >= at) {
            let mut next = None::<Instant>;
            let mut due = Vec::new();
            for (channel, entry) in self.subs.iter_mut() {
                match entry.retry_at {
                    Some(at) if at <= now && entry.state == SubState::Idle => {
                        entry.retry_at = None;
                        entry.state = SubState::Queued;
                        due.push(channel.clone());
                    }
                    Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                    None => {}
                }
            }
            self.next_retry = next;
            for channel in due {
                self.queue.push_subscribe(channel);
            }
            self.pump(s);
        }
        Flow::Continue
    }

    fn on_ws(&mut self, s: &mut Session, msg: Option<Result<WsMessage, WsError>>) -> Flow {
        let msg = match msg {
            None => return Flow::End(lost(s, "the connection closed".into())),
            Some(Err(e)) => return Flow::End(lost(s, format!("the connection failed: {e}"))),
            Some(Ok(msg)) => msg,
        };
        s.last_frame = Instant::now();
        let data = match msg {
            WsMessage::Text(text) => Bytes::from(text),
            WsMessage::Binary(bytes) => bytes,
            WsMessage::Close(frame) => {
                if let Some(frame) = frame {
                    s.close = Some((CloseCode(frame.code.into()), frame.reason.to_string()));
                }
                return Flow::Continue;
            }
            // Transport pings are answered by tungstenite; they still prove the server lives.
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => {
                return Flow::Continue;
            }
        };
        let frames = match split_frames(self.config.encoding, &data) {
            Ok(frames) => frames,
            Err(e) => {
                warn!(error = %e, "plexus-client: ignoring an undecodable message");
                return Flow::Continue;
            }
        };
        for frame in frames {
            match self.on_frame(s, frame) {
                Flow::Continue => {}
                other => return other,
            }
        }
        Flow::Continue
    }

    fn on_frame(&mut self, s: &mut Session, frame: &[u8]) -> Flow {
        match decode_server_frame(self.config.encoding, frame) {
            Ok(ServerFrame::Push(push)) => self.on_push(s, push),
            Ok(ServerFrame::Reply { id }) => self.on_reply(s, id, frame),
            // Unknown pushes come from newer servers: skipping them keeps old clients working.
            Err(e) => {
                debug!(error = %e, "plexus-client: ignoring a frame");
                Flow::Continue
            }
        }
    }

    fn on_reply(&mut self, s: &mut Session, id: u64, frame: &[u8]) -> Flow {
        let Some(pending) = s.pending.remove(&id) else {
            debug!(id, "plexus-client: a reply to no pending request");
            return Flow::Continue;
        };
        let encoding = self.config.encoding;
        match pending {
            Pending::Connect => match decode_reply::<ConnectResult>(encoding, frame) {
                Ok(Ok(result)) => {
                    if let Some(info) = s.info.as_mut() {
                        info.conn = result.conn;
                        info.user = result.user;
                        info.info = result.info.map(|d| Payload::Json(d.0));
                    }
                    self.on_ready(s);
                }
                Ok(Err(body)) => {
                    let ended = connect_refused(body);
                    if ended.final_ {
                        return Flow::End(ended);
                    }
                    // The close code that follows says whether to retry (section 4.2 of
                    // docs/protocol.md); until then, remember why.
                    s.connect_error = Some(ended.error);
                }
                Err(e) => return Flow::End(Ended::failed(protocol_error(e))),
            },
            Pending::Request { kind, reply } => {
                let _ = reply.send(decode_result(encoding, kind, frame));
            }
            Pending::Subscribe { channel } => self.on_subscribe_reply(s, channel, id, frame),
            Pending::Ack(seq) => {
                let ok = match decode_reply::<AckResult>(encoding, frame) {
                    Ok(Ok(_)) => true,
                    Ok(Err(body)) => {
                        warn!(code = %body.code, message = %body.message, "plexus-client: ack refused");
                        false
                    }
                    Err(e) => {
                        warn!(error = %e, "plexus-client: undecodable ack reply");
                        false
                    }
                };
                // After a refusal the next handled mail tries again; trying at once could loop.
                self.mail.ack_answered(seq, ok);
            }
            Pending::Internal => {}
        }
        self.pump(s);
        Flow::Continue
    }

    fn on_push(&mut self, s: &mut Session, push: Push) -> Flow {
        match push {
            Push::Hello(hello) => self.on_hello(s, hello),
            Push::Ping => s.outbox.push(self.pong.clone()),
            Push::Latency(l) => {
                self.out
                    .latency
                    .store(l.rtt_ms.to_bits(), Ordering::Relaxed);
                self.emit(Event::Latency { rtt_ms: l.rtt_ms });
            }
            Push::Pub(p) => self.on_pub(s, p),
            Push::Join(p) => {
                let change = MemberChange::from_wire(p);
                let channel = change.channel.clone();
                self.on_presence(
                    s,
                    &channel,
                    SubscriptionEvent::Join(change.clone()),
                    PushEvent::Join(change),
                );
            }
            Push::Leave(p) => {
                let change = MemberChange::from_wire(p);
                let channel = change.channel.clone();
                self.on_presence(
                    s,
                    &channel,
                    SubscriptionEvent::Leave(change.clone()),
                    PushEvent::Leave(change),
                );
            }
            Push::State(p) => {
                let change = StateChange::from_wire(p);
                let channel = change.channel.clone();
                self.on_presence(
                    s,
                    &channel,
                    SubscriptionEvent::State(change.clone()),
                    PushEvent::State(change),
                );
            }
            Push::Echo(p) => {
                let _ = self.out.pushes.send(PushEvent::Echo(Echo::from_wire(p)));
            }
            Push::Mail(m) => self.on_mail(s, m),
            Push::Record(r) => {
                let change = crate::records::RecordChange::from_wire(r);
                let _ = self.out.pushes.send(PushEvent::Record(change));
            }
            Push::Notice(n) => {
                let payload = n.payload().unwrap_or_else(Payload::null);
                let _ = self.out.pushes.send(PushEvent::Notice(Notice {
                    channel: n.channel,
                    event: n.event,
                    payload,
                }));
            }
            Push::Message(m) => {
                let payload = m.payload().unwrap_or_else(Payload::null);
                let _ = self.out.pushes.send(PushEvent::Message(Message {
                    to: m.to,
                    payload,
                    event: m.event,
                }));
            }
            Push::Subscribed(p) => {
                let position = Position {
                    offset: p.offset,
                    epoch: p.epoch,
                };
                let subscribed = Subscribed {
                    channel: p.channel.clone(),
                    position: position.clone(),
                    recovered: None,
                    reason: None,
                    resubscribed: false,
                    server_side: true,
                };
                match self.subs.get_mut(&p.channel) {
                    Some(entry) => {
                        entry.position = Some(position);
                        if !matches!(entry.state, SubState::InFlight(_)) {
                            // The server did it first: the queued subscribe is skipped, and a
                            // caller still waiting for it gets this position.
                            entry.state = SubState::Active;
                            entry.resync = false;
                            entry.unsubscribe_first = false;
                            if let Some(first) = entry.first.take() {
                                let _ = first.send(Ok(subscribed.clone()));
                            }
                        }
                    }
                    None => {
                        let mut entry = SubEntry::server_side(position);
                        entry.sub_id = self.next_id();
                        self.subs.insert(p.channel, entry);
                    }
                }
                self.emit(Event::Subscribed(subscribed));
            }
            Push::Unsubscribed(p) if p.reason == INSUFFICIENT_STATE => {
                // Publications were lost on their way to this connection: subscribe again
                // from the last position, and the missed ones are recovered. A subscribe in
                // flight already does that: the server ends a subscription only after its
                // reply, so this push is about the one before it.
                let in_flight = self
                    .subs
                    .get(&p.channel)
                    .is_none_or(|e| matches!(e.state, SubState::InFlight(_)));
                if !in_flight {
                    debug!(channel = %p.channel, "plexus-client: insufficient state, resubscribing");
                    self.resync(s, &p.channel, false);
                }
            }
            Push::Unsubscribed(p) => {
                if let Some(mut entry) = self.subs.remove(&p.channel) {
                    if let Some(first) = entry.first.take() {
                        let _ = first.send(Err(ClientError::new(
                            ErrorKind::Disconnected,
                            format!("the server unsubscribed: {}", p.reason),
                        )));
                    }
                    if let Some(events) = entry.events.as_mut() {
                        events.send_last(SubItem::One(SubscriptionEvent::Unsubscribed(
                            UnsubscribeReason::Server(p.reason.clone()),
                        )));
                    }
                }
                self.emit(Event::Unsubscribed {
                    channel: p.channel,
                    reason: UnsubscribeReason::Server(p.reason),
                });
            }
            Push::Error(body) => self.emit(Event::ServerError(ClientError::server(body))),
        }
        Flow::Continue
    }

    /// A live publication: delivered when it is the next one of its channel; dropped when it
    /// is one already seen; a gap (an offset skipped, or another epoch) makes the client
    /// subscribe again from its last position instead, so that the missed publications come
    /// first.
    fn on_pub(&mut self, s: &mut Session, p: PubPush) {
        let Some(entry) = self.subs.get_mut(&p.channel) else {
            return;
        };
        if entry.resync {
            return; // the resubscribe's result brings it, in order
        }
        if let Some(last) = &entry.position {
            let same_epoch = last.epoch == p.epoch;
            if same_epoch && p.offset <= last.offset {
                debug!(channel = %p.channel, offset = p.offset, "plexus-client: duplicate publication dropped");
                return;
            }
            let gap = !same_epoch || p.offset != last.offset + 1;
            if gap && entry.recover {
                debug!(
                    channel = %p.channel,
                    last = last.offset,
                    offset = p.offset,
                    "plexus-client: gap in a channel's offsets, resubscribing"
                );
                let channel = p.channel.clone();
                return self.resync(s, &channel, true);
            }
        }
        entry.position = Some(Position {
            offset: p.offset,
            epoch: p.epoch.clone(),
        });
        let channel = p.channel.clone();
        let publication = Publication::from_push(p);
        match entry.events.as_mut() {
            None => {
                let _ = self.out.pushes.send(PushEvent::Publication(publication));
            }
            Some(events) => {
                if events.send(SubItem::One(SubscriptionEvent::Publication(publication)))
                    == Sent::Closed
                {
                    self.release(Some(s), &channel);
                }
            }
        }
    }

    /// Subscribes again from the last position seen (the server reported lost publications,
    /// or the client saw a gap; then the server still holds the subscription, and
    /// `unsubscribe_first` ends it first).
    fn resync(&mut self, s: &mut Session, channel: &str, unsubscribe_first: bool) {
        let Some(entry) = self.subs.get_mut(channel) else {
            return;
        };
        entry.resync = true;
        entry.unsubscribe_first |= unsubscribe_first;
        if entry.state != SubState::Queued {
            entry.state = SubState::Queued;
            entry.retry_at = None;
            self.queue
                .push_front(Outgoing::Subscribe(channel.to_owned()));
        }
        self.pump(s);
    }

    fn on_presence(
        &mut self,
        s: &mut Session,
        channel: &str,
        event: SubscriptionEvent,
        push: PushEvent,
    ) {
        let Some(entry) = self.subs.get_mut(channel) else {
            return;
        };
        match entry.events.as_mut() {
            None => {
                let _ = self.out.pushes.send(push);
            }
            Some(events) => {
                if events.send(SubItem::One(event)) == Sent::Closed {
                    self.release(Some(s), channel);
                }
            }
        }
    }

    fn on_mail(&mut self, s: &mut Session, m: MailPush) {
        let payload = m.payload().unwrap_or_else(Payload::null);
        match self.mail.arrive(m.seq, m.sent_ms) {
            // Handed out on an earlier connection: acknowledged when (or if) it was handled.
            Arrival::Known => self.schedule_ack(s),
            Arrival::Deliver => {
                let mail = Mail::new(
                    m.seq,
                    payload,
                    m.sent_ms,
                    self.out.mail_done.clone(),
                    self.config.mail_ack,
                );
                match self.out.mail.try_send(mail) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(mail)) => {
                        mail.defuse();
                        self.mail.undelivered(m.seq);
                        self.emit(Event::MailDeferred { seq: m.seq });
                    }
                    Err(mpsc::error::TrySendError::Closed(mail)) => {
                        mail.defuse();
                        self.mail.undelivered(m.seq);
                    }
                }
            }
        }
    }

    fn on_hello(&mut self, s: &mut Session, hello: Hello) {
        if s.phase != Phase::AwaitHello {
            debug!("plexus-client: ignoring a second hello");
            return;
        }
        s.dead_after = (hello.ping_interval_ms > 0).then(|| {
            Duration::from_millis(
                hello
                    .ping_interval_ms
                    .saturating_mul(u64::from(hello.max_missed_pongs) + 1),
            )
        });
        let server_pending = usize::try_from(hello.limits.max_pending_requests).unwrap_or(1);
        s.max_in_flight = self.config.max_in_flight.min(server_pending).max(1);
        s.max_out_bytes = usize::try_from(hello.limits.max_message_bytes).unwrap_or(usize::MAX);
        s.info = Some(ConnectionInfo {
            conn: hello.conn,
            node: hello.node,
            user: hello.user,
            info: hello.info.map(|d| Payload::Json(d.0)),
            limits: hello.limits,
            ping_interval_ms: hello.ping_interval_ms,
        });
        let has_auth = self.config.token.is_some() || self.config.credentials.is_some();
        let send_connect = match hello.auth {
            AuthState::Required => true,
            AuthState::Optional => has_auth,
            AuthState::Done => false,
        };
        if !send_connect {
            self.on_ready(s);
            return;
        }
        let params = ConnectParams {
            token: self.config.token.clone(),
            credentials: self
                .config
                .credentials
                .as_ref()
                .and_then(|c| Payload::json(c).ok())
                .and_then(|p| p.to_fields().0),
            version: Some(PROTOCOL_VERSION),
            client: Some(concat!("plexus-client/", env!("CARGO_PKG_VERSION")).to_owned()),
            sync: Some(self.config.sync),
        };
        let id = self.next_id();
        let frame = encode_request(
            self.config.encoding,
            &Request {
                id: Some(id),
                op: Op::Connect(params),
            },
        );
        s.outbox.push(frame);
        s.pending.insert(id, Pending::Connect);
        s.phase = Phase::AwaitConnect;
    }

    fn on_ready(&mut self, s: &mut Session) {
        s.phase = Phase::Ready;
        s.last_frame = Instant::now();
        if let Some(dead) = s.dead_after {
            s.dead_check = s.last_frame + dead;
        }
        let Some(info) = s.info.clone() else {
            return;
        };
        self.set_state(ConnectionState::Connected(info.clone()));
        self.emit(Event::Connected {
            reconnected: self.ever_connected,
            info: info.clone(),
        });
        if let Some(first) = self.first.take() {
            let _ = first.send(Ok(info));
        }
        self.ever_connected = true;
        // Restore every subscription before anything queued (which may depend on them).
        let restore: Vec<String> = self
            .subs
            .iter_mut()
            .filter(|(_, e)| e.state == SubState::Idle)
            .map(|(channel, e)| {
                e.state = SubState::Queued;
                channel.clone()
            })
            .collect();
        self.queue.push_subscribes_front(restore);
        self.pump(s);
    }

    /// Sends queued items while the in-flight limit allows.
    fn pump(&mut self, s: &mut Session) {
        if s.phase != Phase::Ready {
            return;
        }
        let now = Instant::now();
        while s.pending.len() < s.max_in_flight {
            match self.queue.pop(now) {
                None => break,
                Some(Outgoing::Request(r)) => self.send_request(s, r),
                Some(Outgoing::Subscribe(channel)) => {
                    // A repair sends two requests (unsubscribe, subscribe): wait for room.
                    let two = self
                        .subs
                        .get(&channel)
                        .is_some_and(|e| e.unsubscribe_first && e.state == SubState::Queued);
                    if two && !s.pending.is_empty() && s.pending.len() + 2 > s.max_in_flight {
                        self.queue.push_front(Outgoing::Subscribe(channel));
                        break;
                    }
                    self.send_subscribe(s, channel);
                }
                Some(Outgoing::Unsubscribe(channel)) => {
                    self.send_internal(s, Op::Unsubscribe(UnsubscribeParams { channel }))
                }
                Some(Outgoing::Ack) => {
                    self.ack_queued = false;
                    if let Some(seq) = self.mail.ack_due() {
                        let id = self.next_id();
                        let op = Op::Ack(AckParams { seq });
                        let frame =
                            encode_request(self.config.encoding, &Request { id: Some(id), op });
                        s.outbox.push(frame);
                        s.pending.insert(id, Pending::Ack(seq));
                        self.mail.ack_sent(seq);
                    }
                }
            }
        }
    }

    /// Sends a request of the client's own, whose reply nobody needs.
    fn send_internal(&mut self, s: &mut Session, op: Op) {
        let id = self.next_id();
        let frame = encode_request(self.config.encoding, &Request { id: Some(id), op });
        s.outbox.push(frame);
        s.pending.insert(id, Pending::Internal);
    }

    fn send_request(&mut self, s: &mut Session, request: QueuedRequest) {
        let QueuedRequest {
            op, kind, reply, ..
        } = request;
        let id = self.next_id();
        let frame = encode_request(self.config.encoding, &Request { id: Some(id), op });
        if frame.len() > s.max_out_bytes {
            let _ = reply.send(Err(too_large(frame.len(), s.max_out_bytes)));
            return;
        }
        s.outbox.push(frame);
        s.pending.insert(id, Pending::Request { kind, reply });
    }

    fn send_subscribe(&mut self, s: &mut Session, channel: String) {
        let id = self.next_id();
        let Some(entry) = self.subs.get_mut(&channel) else {
            return; // unsubscribed while queued
        };
        if entry.state != SubState::Queued {
            return;
        }
        if entry.first.as_ref().is_some_and(|f| f.is_closed()) {
            self.subs.remove(&channel); // the caller of subscribe() gave up
            return;
        }
        // The first subscribe asks for what the application asked (`since` or `history`);
        // later ones recover from the last position seen, when recovery is on.
        let first = entry.first.is_some();
        let since = if first || entry.recover {
            entry.position.clone().map(|p| WirePosition {
                offset: p.offset,
                epoch: p.epoch,
            })
        } else {
            None
        };
        let history = if first && since.is_none() {
            entry.history
        } else {
            None
        };
        let params = SubscribeParams {
            channel: channel.clone(),
            token: entry.token.clone(),
            since,
            history,
        };
        let unsubscribe_first = std::mem::take(&mut entry.unsubscribe_first);
        let frame = encode_request(
            self.config.encoding,
            &Request {
                id: Some(id),
                op: Op::Subscribe(params),
            },
        );
        if frame.len() > s.max_out_bytes {
            let error = too_large(frame.len(), s.max_out_bytes);
            return self.drop_subscription(channel, error);
        }
        entry.state = SubState::InFlight(id);
        if unsubscribe_first {
            let op = Op::Unsubscribe(UnsubscribeParams {
                channel: channel.clone(),
            });
            self.send_internal(s, op);
        }
        s.outbox.push(frame);
        s.pending.insert(id, Pending::Subscribe { channel });
    }

    fn on_subscribe_reply(&mut self, s: &mut Session, channel: String, id: u64, frame: &[u8]) {
        let result = decode_reply::<SubscribeResult>(self.config.encoding, frame);
        let Some(entry) = self.subs.get_mut(&channel) else {
            return; // unsubscribed meanwhile; its unsubscribe follows on the wire
        };
        if entry.state != SubState::InFlight(id) {
            return;
        }
        let result = match result {
            Ok(Ok(r)) => r,
            Ok(Err(body)) => return self.on_subscribe_error(channel, ClientError::server(body)),
            Err(e) => return self.on_subscribe_error(channel, protocol_error(e)),
        };
        let position = Position {
            offset: result.offset,
            epoch: result.epoch,
        };
        // The recovered (or history) publications, without any this subscription already
        // delivered.
        let last = entry.position.take();
        let publications: Vec<Publication> = result
            .publications
            .into_iter()
            .map(Publication::from_push)
            .filter(|p| {
                !last
                    .as_ref()
                    .is_some_and(|l| l.epoch == p.epoch && p.offset <= l.offset)
            })
            .collect();
        entry.position = Some(position.clone());
        entry.state = SubState::Active;
        entry.resync = false;
        entry.unsubscribe_first = false;
        entry.retry_attempt = 0;
        entry.retry_prev = Duration::ZERO;
        entry.retry_at = None;
        let subscribed = Subscribed {
            channel: channel.clone(),
            position,
            recovered: result.recovered,
            reason: result.reason,
            resubscribed: entry.first.is_none(),
            server_side: entry.is_server_side(),
        };
        if let Some(first) = entry.first.take() {
            // The publications wait in the stream for the handle that `subscribe()` returns.
            if let Some(events) = entry.events.as_mut()
                && !publications.is_empty()
            {
                let batch = publications
                    .into_iter()
                    .map(SubscriptionEvent::Publication)
                    .collect();
                events.send(SubItem::Batch(batch));
            }
            if first.send(Ok(subscribed)).is_err() {
                self.release(Some(s), &channel); // the caller gave up just now
            }
            return;
        }
        match entry.events.as_mut() {
            Some(events) => {
                let mut batch = Vec::with_capacity(publications.len() + 1);
                batch.push(SubscriptionEvent::Subscribed(subscribed.clone()));
                batch.extend(publications.into_iter().map(SubscriptionEvent::Publication));
                if events.send(SubItem::Batch(batch)) == Sent::Closed {
                    self.release(Some(s), &channel);
                }
            }
            None => {
                for p in publications {
                    let _ = self.out.pushes.send(PushEvent::Publication(p));
                }
            }
        }
        self.emit(Event::Subscribed(subscribed));
    }

    fn on_subscribe_error(&mut self, channel: String, error: ClientError) {
        let Some(entry) = self.subs.get_mut(&channel) else {
            return;
        };
        if let Some(first) = entry.first.take() {
            let _ = first.send(Err(error));
            self.subs.remove(&channel);
            return;
        }
        let already = error.code() == Some(ErrorCode::ALREADY_SUBSCRIBED);
        if already && !entry.resync {
            // The server restored it by itself (a server-side subscription).
            entry.state = SubState::Active;
            return;
        }
        if already {
            // A repair whose unsubscribe did not take: unsubscribe again, then retry.
            entry.unsubscribe_first = true;
        }
        if already || error.is_transient() {
            entry.state = SubState::Idle;
            entry.retry_attempt += 1;
            let delay =
                self.config
                    .backoff
                    .delay(entry.retry_attempt, entry.retry_prev, &mut self.rng);
            entry.retry_prev = delay;
            let at = Instant::now() + delay;
            entry.retry_at = Some(at);
            self.next_retry = Some(self.next_retry.map_or(at, |n| n.min(at)));
            self.emit(Event::SubscribeFailed {
                channel,
                error,
                will_retry: true,
            });
            return;
        }
        self.drop_subscription(channel, error);
    }

    /// Ends a subscription that could not be restored.
    fn drop_subscription(&mut self, channel: String, error: ClientError) {
        if let Some(mut entry) = self.subs.remove(&channel) {
            if let Some(first) = entry.first.take() {
                let _ = first.send(Err(error));
                return;
            }
            if let Some(events) = entry.events.as_mut() {
                events.send_last(SubItem::One(SubscriptionEvent::Unsubscribed(
                    UnsubscribeReason::ResubscribeFailed(error.clone()),
                )));
            }
        }
        self.emit(Event::SubscribeFailed {
            channel,
            error,
            will_retry: false,
        });
    }

    /// The application no longer holds the subscription's handle: stop it on the server too.
    fn release(&mut self, s: Option<&mut Session>, channel: &str) {
        let Some(entry) = self.subs.remove(channel) else {
            return;
        };
        let on_server = matches!(entry.state, SubState::Active | SubState::InFlight(_))
            || entry.unsubscribe_first;
        if let Some(s) = s
            && on_server
            && s.phase == Phase::Ready
        {
            self.queue
                .push_front(Outgoing::Unsubscribe(channel.to_owned()));
            self.pump(s);
        }
    }

    /// Handles one command; `Some` means the task must stop.
    fn on_command(&mut self, mut s: Option<&mut Session>, cmd: Option<Command>) -> Option<Stop> {
        let Some(cmd) = cmd else {
            return Some(Stop::Client(None)); // every handle was dropped
        };
        let ready = s.as_ref().is_some_and(|s| s.phase == Phase::Ready);
        let now = Instant::now();
        match cmd {
            Command::Request { request, fail_fast } => {
                if fail_fast && !ready {
                    let _ = request.reply.send(Err(ClientError::disconnected()));
                    return None;
                }
                self.queue.push_request(request, now);
            }
            Command::Subscribe {
                channel,
                sub_id,
                events,
                options,
                reply,
            } => {
                if let Some(entry) = self.subs.get_mut(&channel) {
                    if entry.first.as_ref().is_some_and(|f| f.is_closed()) {
                        // An earlier subscribe to this channel timed out before completing:
                        // this one takes its place (and its queue slot or request in flight).
                        entry.events = Some(LossySender::new(events));
                        entry.sub_id = sub_id;
                        entry.first = Some(reply);
                        entry.recover = options.recover;
                        entry.token = options.token;
                        return None;
                    }
                    if entry.is_server_side() && entry.state == SubState::Active {
                        // Adopt the server's subscription: its publications go to this handle.
                        entry.events = Some(LossySender::new(events));
                        entry.sub_id = sub_id;
                        entry.recover = options.recover;
                        entry.token = options.token;
                        let position = entry.position.clone().unwrap_or(Position {
                            offset: 0,
                            epoch: String::new(),
                        });
                        let _ = reply.send(Ok(Subscribed {
                            channel,
                            position,
                            recovered: None,
                            reason: None,
                            resubscribed: false,
                            server_side: true,
                        }));
                    } else {
                        let _ = reply.send(Err(ClientError::new(
                            ErrorKind::AlreadySubscribed,
                            format!("already subscribed to `{channel}`"),
                        )));
                    }
                    return None;
                }
                if self.subs.len() >= self.config.max_subscriptions {
                    // Subscribes whose caller gave up while they waited free their place.
                    self.subs.retain(|_, e| {
                        !(e.first.as_ref().is_some_and(|f| f.is_closed())
                            && matches!(e.state, SubState::Queued | SubState::Idle))
                    });
                }
                if self.subs.len() >= self.config.max_subscriptions {
                    let _ = reply.send(Err(ClientError::new(
                        ErrorKind::QueueFull,
                        format!(
                            "{} subscriptions are held already (max_subscriptions)",
                            self.subs.len()
                        ),
                    )));
                    return None;
                }
                if options.fail_fast && !ready {
                    let _ = reply.send(Err(ClientError::disconnected()));
                    return None;
                }
                let mut entry = SubEntry::new(
                    sub_id,
                    Some(LossySender::new(events)),
                    options.since,
                    SubState::Queued,
                );
                entry.first = Some(reply);
                entry.recover = options.recover;
                entry.history = options.history;
                entry.token = options.token;
                self.subs.insert(channel.clone(), entry);
                self.queue.push_subscribe(channel);
            }
            Command::Unsubscribe {
                channel,
                deadline,
                reply,
            } => {
                let on_server = match self.subs.remove(&channel) {
                    Some(mut entry) => {
                        if let Some(first) = entry.first.take() {
                            let _ = first.send(Err(ClientError::new(
                                ErrorKind::Disconnected,
                                "unsubscribed before the subscription completed",
                            )));
                        }
                        if let Some(events) = entry.events.as_mut() {
                            events.send_last(SubItem::One(SubscriptionEvent::Unsubscribed(
                                UnsubscribeReason::Client,
                            )));
                        }
                        matches!(entry.state, SubState::Active | SubState::InFlight(_))
                            || entry.unsubscribe_first
                    }
                    // Not known here: let the server say (it may hold one we missed).
                    None => true,
                };
                if !(ready && on_server) {
                    // A new connection holds no subscription the client does not track.
                    let _ = reply.send(Ok(Reply::Unit));
                    return None;
                }
                let request = QueuedRequest {
                    op: Op::Unsubscribe(UnsubscribeParams { channel }),
                    kind: ReplyKind::Unsubscribe,
                    deadline,
                    reply,
                };
                self.queue.push_request(request, now);
            }
            Command::Release { channel, sub_id } => {
                if self.subs.get(&channel).is_some_and(|e| e.sub_id == sub_id) {
                    self.release(s.as_deref_mut(), &channel);
                }
            }
            Command::Disconnect { done } => return Some(Stop::Client(Some(done))),
        }
        if let Some(s) = s {
            self.pump(s);
        }
        None
    }

    /// After a session: in-flight requests fail (the server may or may not have handled them),
    /// subscriptions wait to be restored.
    fn end_session(&mut self, s: &mut Session, in_flight_error: ClientError) {
        for (_, pending) in s.pending.drain() {
            if let Pending::Request { reply, .. } = pending {
                let _ = reply.send(Err(in_flight_error.clone()));
            }
        }
        for entry in self.subs.values_mut() {
            if matches!(entry.state, SubState::Active | SubState::InFlight(_)) {
                entry.state = SubState::Idle;
            }
            // A new connection holds none of the old one's subscriptions.
            entry.unsubscribe_first = false;
            if entry.retry_at.take().is_some() {
                entry.state = SubState::Idle;
            }
            entry.retry_attempt = 0;
            entry.retry_prev = Duration::ZERO;
        }
        self.next_retry = None;
        self.queue.drop_connection_items();
        self.ack_queued = false;
        self.mail.connection_ended();
    }

    /// Stops for good: answers everyone still waiting, ends every stream.
    async fn finish(mut self, stop: Stop) {
        let (error, event, done) = match stop {
            Stop::Client(done) => (
                ClientError::closed("the client was disconnected", Some(CloseCode::NORMAL)),
                Some(Event::Disconnected {
                    code: Some(CloseCode::NORMAL),
                    reason: "client disconnect".into(),
                    will_reconnect: false,
                }),
                done,
            ),
            Stop::Final {
                code,
                reason,
                error,
                announce,
            } => (
                error,
                announce.then_some(Event::Disconnected {
                    code,
                    reason,
                    will_reconnect: false,
                }),
                None,
            ),
            Stop::GaveUp { attempts, error } => {
                (error.clone(), Some(Event::GaveUp { attempts, error }), None)
            }
        };
        for request in self.queue.drain_requests() {
            let _ = request.reply.send(Err(error.clone()));
        }
        for (_, mut entry) in std::mem::take(&mut self.subs) {
            if let Some(first) = entry.first.take() {
                let _ = first.send(Err(error.clone()));
            }
            if let Some(events) = entry.events.as_mut() {
                events.send_last(SubItem::One(SubscriptionEvent::Unsubscribed(
                    UnsubscribeReason::ClientClosed,
                )));
            }
        }
        if let Some(first) = self.first.take() {
            let _ = first.send(Err(error.clone()));
        }
        if let Some(event) = event {
            self.emit(event);
        }
        self.set_state(ConnectionState::Closed);
        // Commands already sent get the same answer; later ones find the channel closed.
        self.cmd_rx.close();
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            answer_closed(cmd, &error);
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn answer_closed(cmd: Command, error: &ClientError) {
    match cmd {
        Command::Request { request, .. } => {
            let _ = request.reply.send(Err(error.clone()));
        }
        Command::Subscribe { reply, .. } => {
            let _ = reply.send(Err(error.clone()));
        }
        Command::Unsubscribe { reply, .. } => {
            let _ = reply.send(Err(error.clone()));
        }
        Command::Release { .. } => {}
        Command::Disconnect { done } => {
            let _ = done.send(());
        }
    }
}

fn decode_result(encoding: Encoding, kind: ReplyKind, frame: &[u8]) -> Result<Reply, ClientError> {
    match kind {
        ReplyKind::Call => match decode_reply::<CallResult>(encoding, frame) {
            Ok(Ok(r)) => Ok(Reply::Call(r.payload())),
            Ok(Err(body)) => Err(ClientError::server(body)),
            Err(e) => Err(protocol_error(e)),
        },
        ReplyKind::Publish => match decode_reply::<PublishResult>(encoding, frame) {
            Ok(Ok(r)) => Ok(Reply::Publish(Position {
                offset: r.offset,
                epoch: r.epoch,
            })),
            Ok(Err(body)) => Err(ClientError::server(body)),
            Err(e) => Err(protocol_error(e)),
        },
        ReplyKind::Unsubscribe => match decode_reply::<Empty>(encoding, frame) {
            Ok(Ok(_)) => Ok(Reply::Unit),
            // Unsubscribing is idempotent: "not subscribed" is the state asked for.
            Ok(Err(body)) if body.code == ErrorCode::NOT_SUBSCRIBED => Ok(Reply::Unit),
            Ok(Err(body)) => Err(ClientError::server(body)),
            Err(e) => Err(protocol_error(e)),
        },
        ReplyKind::History => decode::<HistoryResult>(encoding, frame).map(|r| {
            Reply::History(History {
                publications: r
                    .publications
                    .into_iter()
                    .map(Publication::from_push)
                    .collect(),
                position: Position {
                    offset: r.offset,
                    epoch: r.epoch,
                },
            })
        }),
        ReplyKind::Presence => decode::<PresenceResult>(encoding, frame)
            .map(|r| Reply::Presence(r.members.into_iter().map(Member::from_wire).collect())),
        ReplyKind::PresenceStats => decode::<PresenceStatsResult>(encoding, frame).map(|r| {
            Reply::PresenceStats(PresenceStats {
                connections: r.connections,
                users: r.users,
            })
        }),
        ReplyKind::LastSeen => decode::<LastSeenResult>(encoding, frame).map(|r| {
            Reply::LastSeen(LastSeen {
                online: r.online,
                last_seen_ms: r.last_seen_ms,
            })
        }),
        ReplyKind::Meta => {
            decode::<MetaResult>(encoding, frame).map(|r| Reply::Meta(json(r.value)))
        }
        ReplyKind::Empty => decode::<Empty>(encoding, frame).map(|_| Reply::Unit),
        ReplyKind::Record => decode::<RecordResult>(encoding, frame).map(|r| {
            Reply::Record(crate::records::RecordState {
                id: r.id,
                value: r.value,
                version: r.version,
                epoch: r.epoch,
            })
        }),
        ReplyKind::RecordWrite => decode::<RecordWriteResult>(encoding, frame).map(|r| {
            Reply::RecordWrite(crate::records::RecordVersion {
                version: r.version,
                epoch: r.epoch,
            })
        }),
    }
}

/// A reply's result of type `R`, or the server's error.
fn decode<'a, R: serde::Deserialize<'a>>(
    encoding: Encoding,
    frame: &'a [u8],
) -> Result<R, ClientError> {
    match decode_reply::<R>(encoding, frame) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(body)) => Err(ClientError::server(body)),
        Err(e) => Err(protocol_error(e)),
    }
}

fn protocol_error(e: impl std::fmt::Display) -> ClientError {
    ClientError::new(
        ErrorKind::Protocol,
        format!("undecodable reply from the server: {e}"),
    )
}

fn too_large(size: usize, max: usize) -> ClientError {
    ClientError::new(
        ErrorKind::TooLarge,
        format!("the request is {size} bytes; the server accepts at most {max}"),
    )
}

/// The server refused `connect`. Bad credentials stay bad: those end the client (the server
/// closes with 4502 / 4506 right after: 112, 115 and application codes). For other errors the
/// close code that follows decides.
fn connect_refused(body: ErrorBody) -> Ended {
    let close = match body.code {
        ErrorCode::TOKEN_EXPIRED => Some(CloseCode::TOKEN_EXPIRED),
        ErrorCode::AUTH_FAILED => Some(CloseCode::AUTH_FAILED),
        ErrorCode(code) if code >= ErrorCode::APPLICATION_MIN => Some(CloseCode::AUTH_FAILED),
        _ => None,
    };
    let reason = format!("connect refused: {}", body.message);
    Ended {
        connected: false,
        code: close,
        reason,
        error: ClientError::server(body).with_close_code(close),
        final_: close.is_some(),
    }
}

/// The end of a session whose socket closed or failed.
fn lost(s: &Session, detail: String) -> Ended {
    let (code, reason) = match &s.close {
        Some((code, reason)) if reason.is_empty() => (
            Some(*code),
            format!("closed by the server with code {code}"),
        ),
        Some((code, reason)) => (Some(*code), reason.clone()),
        None => (None, detail),
    };
    let error = match (&s.connect_error, code) {
        (Some(refused), code) => refused.clone().with_close_code(code),
        (None, Some(code)) => ClientError::closed(reason.clone(), Some(code)),
        (None, None) => ClientError::new(ErrorKind::Connect, reason.clone()),
    };
    Ended {
        connected: false,
        code,
        reason,
        error,
        final_: false,
    }
}

/// Opens the WebSocket with the Plexus subprotocol and explicit buffer limits.
async fn open(config: ClientConfig) -> Result<Ws, ClientError> {
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::new(ErrorKind::Config, format!("bad URL: {e}")))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(config.encoding.subprotocol()),
    );
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_bytes)
        // Frames are batched into messages by the client; each message is written at once.
        .write_buffer_size(0)
        // Room for the largest message the server could accept, and no more.
        .max_write_buffer_size(config.max_message_bytes + 1024)
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes));
    // TCP and TLS (`wss://`) of our own: rustls with `ring`, and the configured CA file.
    let secure = config.url.starts_with("wss://");
    let (host, port) = crate::net::host_port(&config.url, if secure { 443 } else { 80 })
        .ok_or_else(|| ClientError::new(ErrorKind::Config, "bad URL: no host"))?;
    let io = crate::net::connect(&host, port, secure, config.tls_ca_file.as_deref())
        .await
        .map_err(|e| ClientError::new(ErrorKind::Connect, e.to_string()))?;
    let (ws, _response) = tokio_tungstenite::client_async_with_config(request, io, Some(ws_config))
        .await
        .map_err(|e| match e {
            WsError::Url(e) => ClientError::new(ErrorKind::Config, format!("bad URL: {e}")),
            e => ClientError::new(ErrorKind::Connect, e.to_string()),
        })?;
    Ok(ws)
}

async fn close_politely(s: &mut Session) {
    let frame = CloseFrame {
        code: WsCloseCode::Normal,
        reason: Utf8Bytes::from_static("client disconnect"),
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if s.sink.send(WsMessage::Close(Some(frame))).await.is_ok() {
            while let Some(Ok(_)) = s.stream.next().await {}
        }
    })
    .await;
}

/// Writes the queued frames, batched into as few messages as the size limit allows.
async fn flush(s: &mut Session, encoding: Encoding, batch_bytes: usize) -> Result<(), WsError> {
    if s.outbox.is_empty() {
        return Ok(());
    }
    let limit = batch_bytes.min(s.max_out_bytes);
    let mut writer = FrameWriter::new(encoding);
    for frame in std::mem::take(&mut s.outbox) {
        if !writer.is_empty() && writer.len() + 1 + frame.len() > limit {
            s.sink.feed(ws_message(encoding, writer.take())).await?;
        }
        writer.push(&frame);
    }
    if !writer.is_empty() {
        s.sink.feed(ws_message(encoding, writer.take())).await?;
    }
    s.sink.flush().await
}

fn ws_message(encoding: Encoding, bytes: Bytes) -> WsMessage {
    match encoding {
        Encoding::Json => match Utf8Bytes::try_from(bytes.clone()) {
            Ok(text) => WsMessage::Text(text),
            // serde_json only writes UTF-8; this arm is never taken.
            Err(_) => WsMessage::Binary(bytes),
        },
        Encoding::Msgpack => WsMessage::Binary(bytes),
    }
}
