//! The handles the application holds: [`Client`], [`Subscription`], [`Events`], [`Pushes`].

use crate::config::{ClientConfig, RequestOptions, SubscribeOptions};
use crate::driver::{Command, Driver, Outputs};
use crate::error::{ClientError, ErrorKind};
use crate::queue::{QueuedRequest, Reply, ReplyKind};
use crate::types::{
    ConnectionInfo, ConnectionState, Event, Position, PushEvent, SubscriptionEvent,
};
use futures_util::Stream;
use futures_util::stream::{BoxStream, StreamExt};
use plexus_protocol::Payload;
use plexus_protocol::client::{CallParams, Op, PublishParams};
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
        let latency = Arc::new(AtomicU64::new(f64::NAN.to_bits()));
        let inner = Arc::new(Handle {
            cmd: cmd_tx,
            events: events.downgrade(),
            pushes: pushes.downgrade(),
            first_events: Mutex::new(Some(first_events)),
            first_pushes: Mutex::new(Some(first_pushes)),
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

    pub async fn publish_with(
        &self,
        channel: impl Into<String>,
        payload: Payload,
        options: RequestOptions,
    ) -> Result<Position, ClientError> {
        let op = Op::Publish(PublishParams::new(channel, &payload));
        match self.request(op, ReplyKind::Publish, options).await? {
            Reply::Publish(position) => Ok(position),
            other => Err(unexpected(other)),
        }
    }

    /// Subscribes to a channel and returns the subscription's stream of events.
    ///
    /// The subscription is kept across reconnects: after each reconnect the client subscribes
    /// again and the stream yields [`SubscriptionEvent::Subscribed`]. It ends with
    /// [`SubscriptionEvent::Unsubscribed`]. Dropping the [`Subscription`] unsubscribes.
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
        let cmd = Command::Subscribe {
            channel: channel.clone(),
            sub_id,
            events: events_tx,
            options,
            reply,
        };
        let position = self.roundtrip(cmd, reply_rx, deadline).await?;
        Ok(Subscription {
            channel,
            sub_id,
            position,
            rx: events_rx,
            cmd: self.inner.cmd.downgrade(),
            request_timeout: self.inner.request_timeout,
            released: false,
        })
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
    rx: mpsc::Receiver<SubscriptionEvent>,
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
            SubscriptionEvent::Subscribed(s) => self.position = s.position.clone(),
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
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(event)) = &polled {
            self.track(event);
        }
        polled
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
