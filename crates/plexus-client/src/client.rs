//! The handles the application holds: [`Client`], [`Subscription`], [`Events`], [`Pushes`].

use crate::config::{ClientConfig, HistoryOptions, RequestOptions, SubscribeOptions};
use crate::driver::{Command, Driver, Outputs, SubItem};
use crate::error::{ClientError, ErrorKind};
use crate::mail::{Mail, Mailbox};
use crate::queue::{QueuedRequest, Reply, ReplyKind};
use crate::records::{RecordMode, RecordState, RecordVersion, RecordWatch};
use crate::types::{
    ConnectionInfo, ConnectionState, Event, History, LastSeen, Member, MetaTarget, Position,
    PresenceStats, PushEvent, Subscribed, SubscriptionEvent,
};
use futures_util::Stream;
use futures_util::stream::{BoxStream, StreamExt};
use plexus_protocol::client::{
    CallParams, ChannelParams, GetMetaParams, HistoryParams, LastSeenParams, Op,
    PresenceStateParams, PublishParams, RecordDeleteParams, RecordParams, RecordPatchParams,
    RecordSetParams, RecordSubscribeParams, SetMetaParams,
};
use plexus_protocol::{DataField, Payload};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, timeout_at};

/// A Plexus client: one WebSocket connection, re-opened automatically, shared by every clone.
///
/// The connection lives in a background task; the handle only sends it commands. Cloning is
/// cheap. The connection closes when [`Client::disconnect`] is called or when the last clone is
/// dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), plexus_client::ClientError> {
/// use plexus_client::{Client, ClientConfig, Payload, SubscribeOptions, SubscriptionEvent};
///
/// let client = Client::connect(ClientConfig::new("ws://127.0.0.1:8000/ws")).await?;
/// let mut sub = client.subscribe("chat", SubscribeOptions::default()).await?;
/// client.publish("chat", Payload::json(&"hello").unwrap()).await?;
/// while let Some(event) = sub.next().await {
///     if let SubscriptionEvent::Publication(p) = event {
///         println!("{} #{}: {:?}", p.channel, p.offset, p.payload);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Handle>,
}

struct Handle {
    cmd: mpsc::Sender<Command>,
    events: broadcast::WeakSender<Event>,
    pushes: broadcast::WeakSender<PushEvent>,
    /// Receivers created before the task started, so the first `events()` / `pushes()` call
    /// sees everything from the start.
    first_events: Mutex<Option<broadcast::Receiver<Event>>>,
    first_pushes: Mutex<Option<broadcast::Receiver<PushEvent>>>,
    /// The durable-message stream, until [`Client::mail`] takes it.
    mail: Mutex<Option<mpsc::Receiver<Mail>>>,
    state: watch::Receiver<ConnectionState>,
    latency: Arc<AtomicU64>,
    request_timeout: Duration,
    subscription_buffer: usize,
    next_sub_id: AtomicU64,
}

impl Client {
    /// Connects and authenticates, and returns once connected.
    ///
    /// The first attempt is not retried: if it fails (network, handshake, authentication), the
    /// error is returned and nothing keeps running. After that, lost connections are re-opened
    /// according to [`ClientConfig::reconnect`] and [`ClientConfig::backoff`]. Must be called
    /// within a tokio runtime.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let (tx, rx) = oneshot::channel();
        let client = Client::spawn(config, Some(tx));
        match rx.await {
            Ok(Ok(_info)) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::closed("the connection task stopped", None)),
        }
    }

    /// Starts the client and returns at once; the connection is opened in the background and
    /// retried with backoff, from the first attempt on. Requests made meanwhile wait in the
    /// bounded queue ([`ClientConfig::max_queued_requests`]). Must be called within a tokio
    /// runtime.
    pub fn start(config: ClientConfig) -> Client {
        Client::spawn(config, None)
    }

    fn spawn(
        config: ClientConfig,
        first: Option<oneshot::Sender<Result<ConnectionInfo, ClientError>>>,
    ) -> Client {
        let config = config.sanitized();
        let (cmd_tx, cmd_rx) = mpsc::channel(config.command_buffer);
        let (events, first_events) = broadcast::channel(config.event_buffer);
        let (pushes, first_pushes) = broadcast::channel(config.push_buffer);
        let (state_tx, state) = watch::channel(ConnectionState::Connecting);
        let (mail, mail_rx) = mpsc::channel(config.mail_buffer);
        // Unbounded, yet never larger than the number of `Mail` values alive: each sends one
        // notice, once.
        let (mail_done, mail_done_rx) = mpsc::unbounded_channel();
        let latency = Arc::new(AtomicU64::new(f64::NAN.to_bits()));
        let inner = Arc::new(Handle {
            cmd: cmd_tx,
            events: events.downgrade(),
            pushes: pushes.downgrade(),
            first_events: Mutex::new(Some(first_events)),
            first_pushes: Mutex::new(Some(first_pushes)),
            mail: Mutex::new(Some(mail_rx)),
            state,
            latency: latency.clone(),
            request_timeout: config.request_timeout,
            subscription_buffer: config.subscription_buffer,
            next_sub_id: AtomicU64::new(1),
        });
        let outputs = Outputs {
            events,
            pushes,
            state: state_tx,
            latency,
            mail,
            mail_done,
            mail_done_rx,
        };
        tokio::spawn(Driver::new(config, cmd_rx, outputs, first).run());
        Client { inner }
    }

    /// Calls a command (RPC) registered on the server, with the default timeout.
    pub async fn call(
        &self,
        method: impl Into<String>,
        payload: Payload,
    ) -> Result<Payload, ClientError> {
        self.call_with(method, payload, RequestOptions::default())
            .await
    }

    /// Calls a command with explicit options (timeout, fail fast).
    pub async fn call_with(
        &self,
        method: impl Into<String>,
        payload: Payload,
        options: RequestOptions,
    ) -> Result<Payload, ClientError> {
        let op = Op::Call(CallParams::new(method, &payload));
        match self.request(op, ReplyKind::Call, options).await? {
            Reply::Call(payload) => Ok(payload),
            other => Err(unexpected(other)),
        }
    }

    /// Publishes to a channel; returns where the publication landed.
    pub async fn publish(
        &self,
        channel: impl Into<String>,
        payload: Payload,
    ) -> Result<Position, ClientError> {
        self.publish_with(channel, payload, RequestOptions::default())
            .await
    }

    /// Publishes under an event name: subscribers see [`Publication::event`], Socket.IO clients
    /// receive it as that event.
    pub async fn publish_event(
        &self,
        channel: impl Into<String>,
        event: impl Into<String>,
        payload: Payload,
    ) -> Result<Position, ClientError> {
        let mut params = PublishParams::new(channel, &payload);
        params.event = Some(event.into());
        self.publish_params(params, RequestOptions::default()).await
    }

    pub async fn publish_with(
        &self,
        channel: impl Into<String>,
        payload: Payload,
        options: RequestOptions,
    ) -> Result<Position, ClientError> {
        self.publish_params(PublishParams::new(channel, &payload), options)
            .await
    }

    async fn publish_params(
        &self,
        params: PublishParams,
        options: RequestOptions,
    ) -> Result<Position, ClientError> {
        let op = Op::Publish(params);
        match self.request(op, ReplyKind::Publish, options).await? {
            Reply::Publish(position) => Ok(position),
            other => Err(unexpected(other)),
        }
    }

    /// Subscribes to a channel and returns the subscription's stream of events.
    ///
    /// The subscription is kept across reconnects: after each reconnect the client subscribes
    /// again and the stream yields [`SubscriptionEvent::Subscribed`]. With
    /// [`SubscribeOptions::recover`] (the default) it passes the last position seen, and where
    /// the channel's namespace allows recovery the publications missed meanwhile follow that
    /// event, in order, before the live ones, none twice. A gap in the live offsets, or the
    /// server reporting lost publications, is repaired the same way. The stream ends with
    /// [`SubscriptionEvent::Unsubscribed`]. Dropping the [`Subscription`] unsubscribes.
    ///
    /// With [`SubscribeOptions::since`] or [`SubscribeOptions::history`], the recovered or
    /// history publications are the first events of the returned stream;
    /// [`Subscription::subscribed`] says whether the recovery succeeded.
    ///
    /// Subscribing twice to one channel fails with [`ErrorKind::AlreadySubscribed`]; a channel
    /// the server subscribed this connection to is handed over to the new handle instead.
    pub async fn subscribe(
        &self,
        channel: impl Into<String>,
        options: SubscribeOptions,
    ) -> Result<Subscription, ClientError> {
        let channel = channel.into();
        let deadline = Instant::now() + options.timeout.unwrap_or(self.inner.request_timeout);
        let buffer = options
            .buffer
            .unwrap_or(self.inner.subscription_buffer)
            .max(1);
        let (events_tx, events_rx) = mpsc::channel(buffer);
        let (reply, reply_rx) = oneshot::channel();
        let sub_id = self.inner.next_sub_id.fetch_add(1, Ordering::Relaxed);
        let since = options.since.clone();
        let cmd = Command::Subscribe {
            channel: channel.clone(),
            sub_id,
            events: events_tx,
            options,
            reply,
        };
        let subscribed = self.roundtrip(cmd, reply_rx, deadline).await?;
        // Recovered publications are the stream's first events: the handle starts where they do.
        let position = match since {
            Some(since) if subscribed.recovered == Some(true) => since,
            _ => subscribed.position.clone(),
        };
        Ok(Subscription {
            channel,
            sub_id,
            position,
            subscribed,
            pending: VecDeque::new(),
            rx: events_rx,
            cmd: self.inner.cmd.downgrade(),
            request_timeout: self.inner.request_timeout,
            released: false,
        })
    }

    /// Reads a channel's history (where its namespace keeps one), without subscribing.
    ///
    /// Fails with code 114 `not_available` where no history is kept, 105 where the client may
    /// not read the channel.
    pub async fn history(
        &self,
        channel: impl Into<String>,
        options: HistoryOptions,
    ) -> Result<History, ClientError> {
        let op = Op::History(HistoryParams {
            channel: channel.into(),
            since: options.since,
            limit: options.limit,
            reverse: options.reverse,
        });
        match self.simple(op, ReplyKind::History).await? {
            Reply::History(history) => Ok(history),
            other => Err(unexpected(other)),
        }
    }

    /// Who is in a channel's presence (where its namespace tracks presence), with their user,
    /// info and presence state.
    pub async fn presence(&self, channel: impl Into<String>) -> Result<Vec<Member>, ClientError> {
        let op = Op::Presence(ChannelParams {
            channel: channel.into(),
        });
        match self.simple(op, ReplyKind::Presence).await? {
            Reply::Presence(members) => Ok(members),
            other => Err(unexpected(other)),
        }
    }

    /// How many connections and distinct users are in a channel's presence (cheap on big
    /// channels).
    pub async fn presence_stats(
        &self,
        channel: impl Into<String>,
    ) -> Result<PresenceStats, ClientError> {
        let op = Op::PresenceStats(ChannelParams {
            channel: channel.into(),
        });
        match self.simple(op, ReplyKind::PresenceStats).await? {
            Reply::PresenceStats(stats) => Ok(stats),
            other => Err(unexpected(other)),
        }
    }

    /// Sets (`Some`, a JSON payload) or clears (`None`) this connection's presence state in a
    /// channel it is subscribed to; the other subscribers get a `state` event. With `expire`,
    /// the server clears it after that long unless it was changed meanwhile. The state lives
    /// as long as this connection's membership: a reconnect starts without one.
    pub async fn set_presence_state(
        &self,
        channel: impl Into<String>,
        state: Option<Payload>,
        expire: Option<Duration>,
    ) -> Result<(), ClientError> {
        let state = match state {
            None => Payload::null(),
            Some(state) => state,
        };
        let op = Op::PresenceState(PresenceStateParams {
            channel: channel.into(),
            state: json_field(&state, "a presence state")?,
            expire_ms: expire.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        });
        self.simple(op, ReplyKind::Empty).await.map(|_| ())
    }

    /// Whether a user is in a channel now, and when it was last there.
    pub async fn last_seen(
        &self,
        channel: impl Into<String>,
        user: impl Into<String>,
    ) -> Result<LastSeen, ClientError> {
        let op = Op::LastSeen(LastSeenParams {
            channel: channel.into(),
            user: user.into(),
        });
        match self.simple(op, ReplyKind::LastSeen).await? {
            Reply::LastSeen(seen) => Ok(seen),
            other => Err(unexpected(other)),
        }
    }

    /// Reads the metadata (a JSON object, `{}` when none was set) of this connection, its
    /// user, or a channel it may read.
    pub async fn metadata(&self, target: MetaTarget) -> Result<Payload, ClientError> {
        let params = match target {
            MetaTarget::Connection(conn) => GetMetaParams {
                conn: Some(conn),
                ..GetMetaParams::default()
            },
            MetaTarget::User(user) => GetMetaParams {
                user: Some(user),
                ..GetMetaParams::default()
            },
            MetaTarget::Channel(channel) => GetMetaParams {
                channel: Some(channel),
                ..GetMetaParams::default()
            },
        };
        match self.simple(Op::GetMeta(params), ReplyKind::Meta).await? {
            Reply::Meta(value) => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// Sets this connection's metadata: `value` (a JSON object) replaces it, or with `merge`
    /// replaces only its top-level keys. It lives until the connection closes: a reconnect
    /// starts without it.
    pub async fn set_metadata(&self, value: Payload, merge: bool) -> Result<(), ClientError> {
        let op = Op::SetMeta(SetMetaParams {
            value: json_field(&value, "metadata")?,
            merge,
        });
        self.simple(op, ReplyKind::Empty).await.map(|_| ())
    }

    /// The durable messages for this client's user, in `seq` order: the backlog after each
    /// connect (unless [`ClientConfig::sync`] is false), then the live ones. Handling a
    /// [`Mail`] acknowledges it (see [`crate::MailAck`]): what is not handled comes again on
    /// the next connection; what was handled does not reach this client again.
    ///
    /// There is one mailbox per client: the first call takes it (it holds what arrived before,
    /// up to [`ClientConfig::mail_buffer`]), later calls return `None`.
    pub fn mail(&self) -> Option<Mailbox> {
        let rx = self.inner.mail.lock().ok()?.take()?;
        Some(Mailbox::new(rx))
    }

    /// Reads a record (`value` null and `version` 0 when it does not exist).
    pub async fn record(&self, id: impl Into<String>) -> Result<RecordState, ClientError> {
        let op = Op::RecordGet(RecordParams { id: id.into() });
        match self.simple(op, ReplyKind::Record).await? {
            Reply::Record(state) => Ok(state),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces a record's value (creating it). With `expect`, only while the record is at that
    /// version (0: only when it does not exist); otherwise the error has code 121
    /// `version_conflict` and the current version in its data.
    pub async fn set_record(
        &self,
        id: impl Into<String>,
        value: serde_json::Value,
        expect: Option<u64>,
    ) -> Result<RecordVersion, ClientError> {
        let op = Op::RecordSet(RecordSetParams {
            id: id.into(),
            value,
            expect,
        });
        self.record_write(op).await
    }

    /// Applies an RFC 6902 JSON Patch (an array of operations) to a record, whole or not at
    /// all (code 122 `bad_patch`). `expect` as for [`Client::set_record`].
    pub async fn patch_record(
        &self,
        id: impl Into<String>,
        patch: serde_json::Value,
        expect: Option<u64>,
    ) -> Result<RecordVersion, ClientError> {
        let op = Op::RecordPatch(RecordPatchParams {
            id: id.into(),
            patch,
            expect,
        });
        self.record_write(op).await
    }

    /// Deletes a record (code 119 `not_found` when there is none). `expect` as for
    /// [`Client::set_record`].
    pub async fn delete_record(
        &self,
        id: impl Into<String>,
        expect: Option<u64>,
    ) -> Result<RecordVersion, ClientError> {
        let op = Op::RecordDelete(RecordDeleteParams {
            id: id.into(),
            expect,
        });
        self.record_write(op).await
    }

    /// Watches a record: its current value now, then every change, resyncing by itself (see
    /// [`RecordWatch`]). The subscription is restored after a reconnect.
    pub async fn watch_record(
        &self,
        id: impl Into<String>,
        mode: RecordMode,
    ) -> Result<RecordWatch, ClientError> {
        RecordWatch::start(self, id.into(), mode).await
    }

    pub(crate) async fn subscribe_record(
        &self,
        id: &str,
        mode: RecordMode,
    ) -> Result<RecordState, ClientError> {
        let op = Op::RecordSubscribe(RecordSubscribeParams {
            id: id.to_owned(),
            mode: Some(mode.as_str().to_owned()),
        });
        match self.simple(op, ReplyKind::Record).await? {
            Reply::Record(state) => Ok(state),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn unsubscribe_record(&self, id: &str) -> Result<(), ClientError> {
        let op = Op::RecordUnsubscribe(RecordParams { id: id.to_owned() });
        match self.simple(op, ReplyKind::Empty).await {
            Ok(_) => Ok(()),
            // Not subscribed (any more) is the state asked for.
            Err(e) if e.code() == Some(plexus_protocol::ErrorCode::NOT_SUBSCRIBED) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn record_write(&self, op: Op) -> Result<RecordVersion, ClientError> {
        match self.simple(op, ReplyKind::RecordWrite).await? {
            Reply::RecordWrite(version) => Ok(version),
            other => Err(unexpected(other)),
        }
    }

    /// Ends the subscription to a channel (also one the server made). Unsubscribing from a
    /// channel this connection is not subscribed to succeeds.
    pub async fn unsubscribe(&self, channel: impl Into<String>) -> Result<(), ClientError> {
        unsubscribe(&self.inner.cmd, channel.into(), self.inner.request_timeout).await
    }

    /// Connection state changes and notices.
    ///
    /// The first call returns a stream that starts at the client's creation; later calls start
    /// at the moment of the call. Each stream buffers [`ClientConfig::event_buffer`] events; a
    /// stream read too slowly yields [`Event::Lagged`]. The stream ends when the client stops.
    pub fn events(&self) -> Events {
        let rx = take_or_subscribe(&self.inner.first_events, &self.inner.events);
        Events {
            inner: broadcast_stream(rx, |missed| Event::Lagged { missed }),
        }
    }

    /// `message` pushes (to this connection, its user, or everyone) and publications of
    /// server-side subscriptions.
    ///
    /// Same start and buffering rules as [`Client::events`]
    /// ([`ClientConfig::push_buffer`]); a stream read too slowly yields
    /// [`PushEvent::Lagged`]. Pushes that arrive while no stream exists are dropped.
    pub fn pushes(&self) -> Pushes {
        let rx = take_or_subscribe(&self.inner.first_pushes, &self.inner.pushes);
        Pushes {
            inner: broadcast_stream(rx, |missed| PushEvent::Lagged { missed }),
        }
    }

    pub fn state(&self) -> ConnectionState {
        self.inner.state.borrow().clone()
    }

    /// What the server said about the current connection; `None` while not connected.
    pub fn connection(&self) -> Option<ConnectionInfo> {
        match &*self.inner.state.borrow() {
            ConnectionState::Connected(info) => Some(info.clone()),
            _ => None,
        }
    }

    /// The last round-trip time the server measured, in milliseconds.
    pub fn latency_ms(&self) -> Option<f64> {
        let ms = f64::from_bits(self.inner.latency.load(Ordering::Relaxed));
        (!ms.is_nan()).then_some(ms)
    }

    /// Waits until the client is connected (at once if it is), or fails with `Closed` when it
    /// stopped for good.
    pub async fn wait_connected(&self) -> Result<ConnectionInfo, ClientError> {
        let mut state = self.inner.state.clone();
        loop {
            let current = state.borrow_and_update().clone();
            match current {
                ConnectionState::Connected(info) => return Ok(info),
                ConnectionState::Closed => return Err(closed()),
                ConnectionState::Connecting => {}
            }
            if state.changed().await.is_err() {
                return Err(closed());
            }
        }
    }

    /// Closes the connection (close code 1000) and stops the client for good: it never
    /// reconnects. Waiting requests fail with `Closed`; subscription streams end.
    pub async fn disconnect(&self) {
        let (done, done_rx) = oneshot::channel();
        if self
            .inner
            .cmd
            .send(Command::Disconnect { done })
            .await
            .is_ok()
        {
            let _ = done_rx.await;
        }
    }

    async fn simple(&self, op: Op, kind: ReplyKind) -> Result<Reply, ClientError> {
        self.request(op, kind, RequestOptions::default()).await
    }

    async fn request(
        &self,
        op: Op,
        kind: ReplyKind,
        options: RequestOptions,
    ) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + options.timeout.unwrap_or(self.inner.request_timeout);
        let (reply, reply_rx) = oneshot::channel();
        let cmd = Command::Request {
            request: QueuedRequest {
                op,
                kind,
                deadline,
                reply,
            },
            fail_fast: options.fail_fast,
        };
        self.roundtrip(cmd, reply_rx, deadline).await
    }

    async fn roundtrip<T>(
        &self,
        cmd: Command,
        reply: oneshot::Receiver<Result<T, ClientError>>,
        deadline: Instant,
    ) -> Result<T, ClientError> {
        roundtrip(&self.inner.cmd, cmd, reply, deadline).await
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

async fn roundtrip<T>(
    cmd_tx: &mpsc::Sender<Command>,
    cmd: Command,
    reply: oneshot::Receiver<Result<T, ClientError>>,
    deadline: Instant,
) -> Result<T, ClientError> {
    let exchange = async {
        cmd_tx.send(cmd).await.map_err(|_| closed())?;
        reply.await.map_err(|_| closed())?
    };
    timeout_at(deadline, exchange)
        .await
        .unwrap_or_else(|_| Err(ClientError::new(ErrorKind::Timeout, "no reply in time")))
}

async fn unsubscribe(
    cmd_tx: &mpsc::Sender<Command>,
    channel: String,
    timeout: Duration,
) -> Result<(), ClientError> {
    let deadline = Instant::now() + timeout;
    let (reply, reply_rx) = oneshot::channel();
    let cmd = Command::Unsubscribe {
        channel,
        deadline,
        reply,
    };
    roundtrip(cmd_tx, cmd, reply_rx, deadline).await.map(|_| ())
}

/// A JSON payload as a `data`-like field; bytes have no place there.
fn json_field(payload: &Payload, what: &str) -> Result<DataField, ClientError> {
    match payload.to_fields() {
        (Some(data), None) => Ok(data),
        _ => Err(ClientError::new(
            ErrorKind::Invalid,
            format!("{what} must be a JSON payload, not bytes"),
        )),
    }
}

fn closed() -> ClientError {
    ClientError::closed("the client is closed", None)
}

fn unexpected(reply: Reply) -> ClientError {
    ClientError::new(
        ErrorKind::Protocol,
        format!("unexpected reply type: {reply:?}"),
    )
}

fn take_or_subscribe<T: Clone>(
    first: &Mutex<Option<broadcast::Receiver<T>>>,
    sender: &broadcast::WeakSender<T>,
) -> broadcast::Receiver<T> {
    let taken = first.lock().map(|mut f| f.take()).unwrap_or(None);
    if let Some(rx) = taken {
        return rx;
    }
    match sender.upgrade() {
        Some(tx) => tx.subscribe(),
        None => {
            // The client stopped: an empty, ended stream.
            let (_tx, rx) = broadcast::channel(1);
            rx
        }
    }
}

fn broadcast_stream<T: Clone + Send + 'static>(
    rx: broadcast::Receiver<T>,
    lagged: fn(u64) -> T,
) -> BoxStream<'static, T> {
    futures_util::stream::unfold(rx, move |mut rx| async move {
        match rx.recv().await {
            Ok(item) => Some((item, rx)),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some((lagged(missed), rx)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
    .boxed()
}

/// The stream of [`Event`]s from [`Client::events`].
pub struct Events {
    inner: BoxStream<'static, Event>,
}

impl Events {
    /// The next event; `None` once the client has stopped and every event was read.
    pub async fn next(&mut self) -> Option<Event> {
        self.inner.next().await
    }
}

impl Stream for Events {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// The stream of [`PushEvent`]s from [`Client::pushes`].
pub struct Pushes {
    inner: BoxStream<'static, PushEvent>,
}

impl Pushes {
    pub async fn next(&mut self) -> Option<PushEvent> {
        self.inner.next().await
    }
}

impl Stream for Pushes {
    type Item = PushEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PushEvent>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// A subscription to one channel: a stream of [`SubscriptionEvent`]s.
///
/// Holds at most [`SubscribeOptions::buffer`] undelivered events; when the application reads
/// too slowly, publications are dropped and the stream yields
/// [`SubscriptionEvent::Lagged`] with their count. Dropping the handle unsubscribes.
pub struct Subscription {
    channel: String,
    sub_id: u64,
    position: Position,
    subscribed: Subscribed,
    /// The rest of a batch (a restore notice and its publications) being read.
    pending: VecDeque<SubscriptionEvent>,
    rx: mpsc::Receiver<SubItem>,
    cmd: mpsc::WeakSender<Command>,
    request_timeout: Duration,
    released: bool,
}

impl Subscription {
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The channel's position as last seen through this handle: at subscribe time, then the
    /// offset of each publication read and of each restore.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// The result of the subscribe that made this subscription: the channel's position then,
    /// and, when it recovered ([`SubscribeOptions::since`]), whether it could and why not.
    /// Later restores are [`SubscriptionEvent::Subscribed`] events.
    pub fn subscribed(&self) -> &Subscribed {
        &self.subscribed
    }

    /// The next event; `None` after [`SubscriptionEvent::Unsubscribed`] (or when the client
    /// stopped).
    pub async fn next(&mut self) -> Option<SubscriptionEvent> {
        StreamExt::next(self).await
    }

    /// Unsubscribes and waits for the server's answer.
    pub async fn unsubscribe(mut self) -> Result<(), ClientError> {
        self.released = true;
        let Some(cmd) = self.cmd.upgrade() else {
            return Ok(()); // the client is gone, and the subscription with it
        };
        unsubscribe(&cmd, self.channel.clone(), self.request_timeout).await
    }

    fn track(&mut self, event: &SubscriptionEvent) {
        match event {
            SubscriptionEvent::Publication(p) => {
                self.position.offset = p.offset;
                if self.position.epoch != p.epoch {
                    self.position.epoch = p.epoch.clone();
                }
            }
            // A recovery's publications follow it; they move the position on from the last
            // one read, up to the restore's.
            SubscriptionEvent::Subscribed(s) if s.recovered != Some(true) => {
                self.position = s.position.clone()
            }
            _ => {}
        }
    }
}

impl Stream for Subscription {
    type Item = SubscriptionEvent;
    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<SubscriptionEvent>> {
        let event = match self.pending.pop_front() {
            Some(event) => event,
            None => match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(SubItem::One(event))) => event,
                Poll::Ready(Some(SubItem::Batch(events))) => {
                    self.pending = events.into();
                    match self.pending.pop_front() {
                        Some(event) => event,
                        None => {
                            // An empty batch is never sent; read on all the same.
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                    }
                }
            },
        };
        self.track(&event);
        Poll::Ready(Some(event))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Some(cmd) = self.cmd.upgrade() {
            // Best effort: if the command queue is full, the task notices the closed stream
            // at the next publication instead.
            let _ = cmd.try_send(Command::Release {
                channel: std::mem::take(&mut self.channel),
                sub_id: self.sub_id,
            });
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.channel)
            .field("position", &self.position)
            .finish()
    }
}
