//! Endpoints (`docs/endpoints.md`): WebSocket paths an application mounts, each with its own
//! handler — Plezi's controllers. A *raw* endpoint hands text and binary messages to its handler
//! as they are and writes what the handler writes, with no envelope; an *auto-dispatch*
//! endpoint takes JSON objects and calls the handler registered for their `event`, answering
//! `_EID_` with an acknowledgement first. Both run on the shared connection loop and the core
//! session, so they share the port, the auth, the limits and the engine with every dialect.
//!
//! Addressing: every connection of endpoint `E` is in the channel `plexus:endpoint:E`, and
//! every endpoint connection in `plexus:endpoints` (a namespace no client may subscribe to or
//! publish in), so a broadcast to an endpoint and a multicast to every endpoint are notices on
//! those channels — on every node — and a unicast is a message to a connection id.
//! `mod.rs` is the library API, `socket.rs` the dialect, `format.rs` how core events become
//! frames.

pub mod backend;
pub mod bus;
mod dev;
mod format;
pub mod identity;
mod socket;

pub(crate) use dev::development;
pub(crate) use format::{EndpointFormat, frame_message};
pub(crate) use socket::upgrade;

use crate::ServerState;
use bytes::Bytes;
use plexus_core::{
    Access, ChannelMatch, CloseCode, ConnId, ConnLimits, Connection, Emit, Error, Exclude,
    Namespace, Node, Payload, StreamPosition, UpgradeRequest,
};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A boxed future of a handler.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The channel every connection of endpoint `name` is in.
pub fn endpoint_channel(name: &str) -> String {
    format!("{ENDPOINT_CHANNEL_PREFIX}{name}")
}

const ENDPOINT_CHANNEL_PREFIX: &str = "plexus:endpoint:";

/// The channel every endpoint connection is in (multicast).
pub const ALL_ENDPOINTS_CHANNEL: &str = "plexus:endpoints";

/// The namespace of the endpoints' own channels: only the server subscribes connections to them;
/// a client may neither subscribe nor publish.
pub(crate) fn endpoint_namespace() -> Namespace {
    Namespace::new("endpoints", ChannelMatch::Prefix("plexus:endpoint".into()))
        .subscribe(Access::Nobody)
        .publish(Access::Nobody)
}

/// A message a raw endpoint's client sent, or that is written to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawMessage {
    Text(String),
    Binary(Bytes),
}

/// What an auto-dispatch endpoint does with a message whose `event` no handler takes (and no
/// fallback): Plezi 0.12 answered with a 404 `err` event, Plezi 0.16 closed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownEvent {
    /// `{"event":"err","status":404,"result":"not found","request":<message>}`.
    #[default]
    NotFound,
    /// Close with 4500 (`bad_frame`).
    Close,
}

type SocketFn = Arc<dyn Fn(Socket) -> BoxFuture<()> + Send + Sync>;
type MessageFn = Arc<dyn Fn(Socket, RawMessage) -> BoxFuture<()> + Send + Sync>;
type EventFn = Arc<dyn Fn(Socket, Map<String, Value>) -> BoxFuture<Option<Value>> + Send + Sync>;
type PreConnectFn =
    Arc<dyn Fn(Arc<UpgradeRequest>) -> BoxFuture<Result<(), (u16, String)>> + Send + Sync>;

pub(crate) enum Mode {
    Raw(Option<MessageFn>),
    Dispatch {
        events: HashMap<String, EventFn>,
        fallback: Option<EventFn>,
        unknown: UnknownEvent,
    },
}

/// One endpoint: a name (the scope of its broadcasts), a mode and its handlers.
///
/// ```no_run
/// use plexus_server::endpoint::{Endpoint, RawMessage};
/// use serde_json::json;
/// let echo = Endpoint::raw("echo").on_message(|ws, message: RawMessage| async move {
///     ws.send(message);
/// });
/// let chat = Endpoint::dispatch("chat").on("chat", |ws, message| async move {
///     let _ = ws.broadcast(Some("chat"), serde_json::Value::Object(message)).await;
///     None
/// });
/// ```
pub struct Endpoint {
    pub(crate) name: String,
    pub(crate) mode: Mode,
    pub(crate) pre_connect: Option<PreConnectFn>,
    pub(crate) on_open: Option<SocketFn>,
    pub(crate) on_close: Option<SocketFn>,
    pub(crate) on_shutdown: Option<SocketFn>,
    pub(crate) limits: EndpointLimits,
}

/// Limits an endpoint sets for its own connections in place of the node's (`None`: the
/// node's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointLimits {
    /// The largest message, in bytes; larger closes with 1009.
    pub max_message_bytes: Option<usize>,
    /// Bytes that may wait in a connection's outbound queue (then 4001).
    pub outbound_queue_bytes_max: Option<usize>,
    /// Messages per second (token bucket rate) and burst (then refused, and 4006).
    pub messages_per_second: Option<u32>,
    pub messages_burst: Option<u32>,
}

impl EndpointLimits {
    pub(crate) fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            outbound_queue_bytes_max: self.outbound_queue_bytes_max,
            requests_per_second: self.messages_per_second,
            requests_burst: self.messages_burst,
        }
    }
}

fn boxed_socket<F, Fut>(f: F) -> SocketFn
where
    F: Fn(Socket) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |socket| Box::pin(f(socket)))
}

fn boxed_event<F, Fut>(f: F) -> EventFn
where
    F: Fn(Socket, Map<String, Value>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Value>> + Send + 'static,
{
    Arc::new(move |socket, message| Box::pin(f(socket, message)))
}

impl Endpoint {
    fn new(name: impl Into<String>, mode: Mode) -> Endpoint {
        Endpoint {
            name: name.into(),
            mode,
            pre_connect: None,
            on_open: None,
            on_close: None,
            on_shutdown: None,
            limits: EndpointLimits::default(),
        }
    }

    /// A raw endpoint: messages reach [`Endpoint::on_message`] as they are.
    pub fn raw(name: impl Into<String>) -> Endpoint {
        Endpoint::new(name, Mode::Raw(None))
    }

    /// A raw endpoint that writes every message back as it came (text as text, binary as
    /// binary) — development mode's `/echo`.
    pub fn echo(name: impl Into<String>) -> Endpoint {
        Endpoint::raw(name).on_message(|ws, message| async move {
            ws.send(message);
        })
    }

    /// An auto-dispatch endpoint: JSON objects reach the handler of their `event`.
    pub fn dispatch(name: impl Into<String>) -> Endpoint {
        Endpoint::new(
            name,
            Mode::Dispatch {
                events: HashMap::new(),
                fallback: None,
                unknown: UnknownEvent::NotFound,
            },
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_raw(&self) -> bool {
        matches!(self.mode, Mode::Raw(_))
    }

    /// Raw mode: the handler of every message, run in the order they came.
    pub fn on_message<F, Fut>(mut self, f: F) -> Endpoint
    where
        F: Fn(Socket, RawMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if let Mode::Raw(handler) = &mut self.mode {
            *handler = Some(Arc::new(move |socket, message| {
                Box::pin(f(socket, message))
            }));
        }
        self
    }

    /// Auto-dispatch: the handler of `event`. It gets the whole message; what it returns is
    /// written to the client (a string as it is, anything else as JSON).
    pub fn on<F, Fut>(mut self, event: impl Into<String>, f: F) -> Endpoint
    where
        F: Fn(Socket, Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Value>> + Send + 'static,
    {
        if let Mode::Dispatch { events, .. } = &mut self.mode {
            events.insert(event.into(), boxed_event(f));
        }
        self
    }

    /// Auto-dispatch: the handler of messages whose event has none (Plezi's `unknown`).
    pub fn fallback<F, Fut>(mut self, f: F) -> Endpoint
    where
        F: Fn(Socket, Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Value>> + Send + 'static,
    {
        if let Mode::Dispatch { fallback, .. } = &mut self.mode {
            *fallback = Some(boxed_event(f));
        }
        self
    }

    /// Auto-dispatch: what an unknown event without a fallback gets.
    pub fn unknown(mut self, answer: UnknownEvent) -> Endpoint {
        if let Mode::Dispatch { unknown, .. } = &mut self.mode {
            *unknown = answer;
        }
        self
    }

    /// Runs before the upgrade: `Err((status, reason))` refuses it with that HTTP status (a
    /// status that is not an error is taken as 403) — never Plezi's silent 200.
    pub fn pre_connect<F, Fut>(mut self, f: F) -> Endpoint
    where
        F: Fn(Arc<UpgradeRequest>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), (u16, String)>> + Send + 'static,
    {
        self.pre_connect = Some(Arc::new(move |request| Box::pin(f(request))));
        self
    }

    /// Runs once the connection is open, before its first message is read.
    pub fn on_open<F, Fut>(mut self, f: F) -> Endpoint
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_open = Some(boxed_socket(f));
        self
    }

    /// Runs once the connection has closed.
    pub fn on_close<F, Fut>(mut self, f: F) -> Endpoint
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_close = Some(boxed_socket(f));
        self
    }

    /// Runs at a graceful shutdown, before the connection is closed with 4000: it may write a
    /// last message. Bounded by [`SHUTDOWN_HANDLER_TIMEOUT`].
    pub fn on_shutdown<F, Fut>(mut self, f: F) -> Endpoint
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_shutdown = Some(boxed_socket(f));
        self
    }

    /// Limits of the endpoint's own for its connections.
    pub fn limits(mut self, limits: EndpointLimits) -> Endpoint {
        self.limits = limits;
        self
    }
}

/// How long all the shutdown handlers together may take.
pub const SHUTDOWN_HANDLER_TIMEOUT: Duration = Duration::from_secs(5);

/// One mounted endpoint with its live connections.
pub(crate) struct Mounted {
    pub(crate) path: String,
    pub(crate) endpoint: Endpoint,
    pub(crate) format: Arc<EndpointFormat>,
    pub(crate) sockets: Mutex<HashMap<ConnId, Socket>>,
}

/// The endpoints of a server.
#[derive(Default)]
pub(crate) struct Endpoints {
    pub(crate) mounted: Vec<Arc<Mounted>>,
}

impl Endpoints {
    pub(crate) fn mount(&mut self, path: String, endpoint: Endpoint) {
        let format = Arc::new(EndpointFormat::new(endpoint.is_raw()));
        self.mounted.push(Arc::new(Mounted {
            path,
            endpoint,
            format,
            sockets: Mutex::new(HashMap::new()),
        }));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.mounted.is_empty()
    }

    /// Calls every live connection's shutdown handler (all at once, bounded), before the node
    /// closes them with 4000.
    pub(crate) async fn shutting_down(&self) {
        let mut calls = Vec::new();
        for mounted in &self.mounted {
            let Some(handler) = &mounted.endpoint.on_shutdown else {
                continue;
            };
            let sockets: Vec<Socket> = mounted.sockets.lock().unwrap().values().cloned().collect();
            for socket in sockets {
                calls.push(handler(socket));
            }
        }
        if calls.is_empty() {
            return;
        }
        let all = futures_util::future::join_all(calls);
        if tokio::time::timeout(SHUTDOWN_HANDLER_TIMEOUT, all)
            .await
            .is_err()
        {
            tracing::warn!("endpoint shutdown handlers did not finish in time");
        }
    }
}

/// A handle on one endpoint connection, for its handlers (and anything they spawn).
#[derive(Clone)]
pub struct Socket {
    pub(crate) conn: Arc<Connection>,
    pub(crate) node: Node,
    pub(crate) endpoint: Arc<str>,
}

impl Socket {
    /// The connection id: the address of a unicast, from any node.
    pub fn id(&self) -> ConnId {
        self.conn.id
    }

    /// The connection's user, when it has an identity.
    pub fn user(&self) -> Option<&str> {
        self.conn.user()
    }

    /// The endpoint's name.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Writes a message as it is: text as a text frame, binary as a binary frame. False when
    /// the connection is closing or its queue is full (it is then closed as a slow consumer).
    pub fn send(&self, message: RawMessage) -> bool {
        matches!(
            self.conn.send_frame(frame_message(&message)),
            plexus_core::outbox::PushOutcome::Queued
        )
    }

    pub fn send_text(&self, text: impl Into<String>) -> bool {
        self.send(RawMessage::Text(text.into()))
    }

    pub fn send_binary(&self, bytes: impl Into<Bytes>) -> bool {
        self.send(RawMessage::Binary(bytes.into()))
    }

    /// Writes a JSON value as a text frame (a string as it is).
    pub fn send_json(&self, value: &Value) -> bool {
        self.send_text(plexus_protocol::plezi::reply_text(value))
    }

    /// Closes the connection with `code` and `reason` once what is queued is written.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.conn.close(code, reason);
    }

    /// Sends `data` (with an event name, for auto-dispatch clients) to every other connection
    /// of this endpoint, on every node (Plezi `broadcast`).
    pub async fn broadcast(&self, event: Option<&str>, data: Value) -> Result<(), Error> {
        let channel = endpoint_channel(&self.endpoint);
        self.node
            .notify(
                &channel,
                emit(event, data)?,
                Some(Exclude::conn(self.conn.id)),
            )
            .await
    }

    /// Sends `data` to every other endpoint connection, of every endpoint, on every node (Plezi
    /// `multicast`).
    pub async fn multicast(&self, event: Option<&str>, data: Value) -> Result<(), Error> {
        self.node
            .notify(
                ALL_ENDPOINTS_CHANNEL,
                emit(event, data)?,
                Some(Exclude::conn(self.conn.id)),
            )
            .await
    }

    /// Sends `data` to one connection, on any node (Plezi `unicast`); false when it is gone
    /// (Plezi's `failed_unicast`).
    pub async fn unicast(
        &self,
        target: ConnId,
        event: Option<&str>,
        data: Value,
    ) -> Result<bool, Error> {
        self.node
            .send_to_connection(target, emit(event, data)?)
            .await
    }

    /// Subscribes the connection to a channel: its publications reach the client as they are
    /// (Plezi 0.16 `subscribe`), whoever published them — any dialect, the API, Redis.
    pub async fn subscribe(&self, channel: &str) -> Result<bool, Error> {
        self.node.subscribe_connection(self.conn.id, channel).await
    }

    pub async fn unsubscribe(&self, channel: &str) -> Result<bool, Error> {
        self.node
            .unsubscribe_connection(self.conn.id, channel)
            .await
    }

    /// Publishes to a channel (Plezi 0.16 `publish`).
    pub async fn publish(&self, channel: &str, data: Value) -> Result<StreamPosition, Error> {
        self.node.publish(channel, payload(data)?).await
    }
}

fn payload(data: Value) -> Result<Payload, Error> {
    Payload::json(&data).map_err(|e| Error::bad_request(e.to_string()))
}

/// A message for endpoint connections: a JSON value, with an event name for auto-dispatch
/// clients.
pub(crate) fn emit(event: Option<&str>, data: Value) -> Result<Emit, Error> {
    let payload = payload(data)?;
    Ok(match event {
        Some(name) => Emit::event(name, payload),
        None => Emit::from(payload),
    })
}

/// The state the upgrade handler needs.
pub(crate) fn mounted(state: &ServerState, path: &str) -> Option<Arc<Mounted>> {
    state
        .endpoints_ws
        .mounted
        .iter()
        .find(|m| m.path == path)
        .cloned()
}
