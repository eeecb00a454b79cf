//! Mesa on Plexus (`docs/mesa.md`): `@cryb/mesa`'s `Client` and `mesa-js-client` connect
//! unchanged to a WebSocket endpoint (`/mesa`) that speaks Mesa's opcodes
//! (`plexus_protocol::mesa`), and Mesa's `Dispatcher` reaches them from any process.
//!
//! `socket.rs` is the dialect on the shared connection loop (hello, authentication, heartbeats
//! through the node's sweep, op 0 both ways), `format.rs` writes core events as Mesa frames,
//! `hooks.rs` holds Mesa's middleware events as Rust hooks, and this module the configuration,
//! the upgrade and the dispatcher (Rust API, HTTP API, Mesa's `ws[_ns]` Redis payloads).

mod format;
mod hooks;
mod socket;

pub use format::MesaFormat;
pub use hooks::{MesaHooks, ReceivedMessage};
pub(crate) use socket::MesaSocket;

use crate::ServerState;
use crate::ws::{accept_key, header_has_token, serve, upgrade_request};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use plexus_core::auth::UpgradeDecision;
use plexus_core::model::{EncodeCache, Event, Target};
use plexus_core::{CloseCode, Emit, Error, ErrorCode, Exclude, Node, Payload, Session};
use plexus_protocol::mesa::{self as wire, InternalMessage};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Mesa's server options (`seeds-protocols.md` §1.3) that Plexus keeps, with Plexus's
/// defaults. Node-wide settings come from [`plexus_core::Limits`]: the heartbeat interval and
/// missed beats (`ping_interval`, `max_missed_pongs`), the offline store's bounds
/// (`mailbox_max_messages`, `mail_ttl`).
#[derive(Clone, Debug)]
pub struct MesaConfig {
    /// Where Mesa clients connect (`/mesa`).
    pub path: String,
    /// Mesa's `heartbeat.enabled`: op 1 from the node's sweep every `Limits::ping_interval`,
    /// advertised as `c_heartbeat_interval` (default on; Mesa's is off).
    pub heartbeat: bool,
    /// Mesa's `reconnect.interval` when `reconnect.enabled`: advertised as
    /// `c_reconnect_interval` (default none).
    pub reconnect_interval_ms: Option<u64>,
    /// Mesa's `authentication.timeout`, enforced: a connection that has not authenticated by
    /// then is closed with 4003 (Mesa only advertises it).
    pub auth_timeout_ms: u64,
    /// Mesa's `authentication.sendUserObject`: op 22 carries the user object (the identity's
    /// `info`, or `{"id": user}`).
    pub send_user_object: bool,
    /// Mesa's `authentication.disconnectOnFail`: a refused op 2 closes with 1008; otherwise
    /// the client gets a `PLEXUS_ERROR` dispatch and may try again.
    pub disconnect_on_fail: bool,
    /// Mesa's `client.enforceEqualVersions`, with the version clients must send
    /// (`CLIENT_VERSION`); a different one closes with 1002.
    pub enforce_version: Option<String>,
    /// Mesa's `sync.enabled`: messages for a user with no connection are kept in its mailbox
    /// and redelivered after it authenticates, with `s` = 1..n.
    pub sync: bool,
    /// Mesa's `sync.redeliveryInterval`: the pause between redelivered messages.
    pub redelivery_interval_ms: u64,
    /// Development only: op 2's `token` is the user id, no check.
    pub token_is_user: bool,
    /// Mesa's `namespace`: the suffix of its Redis names (`ws_<namespace>`).
    pub namespace: Option<String>,
}

impl Default for MesaConfig {
    fn default() -> MesaConfig {
        MesaConfig {
            path: "/mesa".into(),
            heartbeat: true,
            reconnect_interval_ms: None,
            auth_timeout_ms: 10_000,
            send_user_object: true,
            disconnect_on_fail: true,
            enforce_version: None,
            sync: false,
            redelivery_interval_ms: 0,
            token_is_user: false,
            namespace: None,
        }
    }
}

/// The longest user id development mode takes from a token.
pub const MAX_USER_BYTES: usize = 255;

impl MesaConfig {
    /// Development mode's: sync on, and the `token` of op 2 is the user id.
    pub fn development() -> MesaConfig {
        MesaConfig {
            sync: true,
            token_is_user: true,
            ..MesaConfig::default()
        }
    }

    /// The Redis channel Mesa's `Dispatcher` publishes on: `ws`, or `ws_<namespace>`.
    pub fn ws_channel(&self) -> String {
        wire::namespaced("ws", self.namespace.as_deref())
    }

    /// The hello's `rules`.
    fn rules(&self) -> Vec<String> {
        let mut rules = Vec::new();
        if self.enforce_version.is_some() {
            rules.push(wire::rule::ENFORCE_EQUAL_VERSIONS.to_owned());
        }
        if self.send_user_object {
            rules.push(wire::rule::SENDS_USER_OBJECT.to_owned());
        }
        rules
    }
}

/// What a Mesa server holds: its options, hooks and wire format.
pub(crate) struct MesaService {
    pub(crate) config: MesaConfig,
    pub(crate) hooks: Option<Arc<dyn MesaHooks>>,
    pub(crate) format: Arc<MesaFormat>,
}

impl MesaService {
    pub(crate) fn new(config: MesaConfig, hooks: Option<Arc<dyn MesaHooks>>) -> MesaService {
        let format = Arc::new(MesaFormat::new(config.heartbeat));
        MesaService {
            config,
            hooks,
            format,
        }
    }

    /// Runs `f` on the hooks, if any, behind a panic guard.
    pub(crate) fn hook(&self, f: impl FnOnce(&dyn MesaHooks)) {
        if let Some(hooks) = &self.hooks {
            let hooks = hooks.as_ref();
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(hooks))).is_err() {
                tracing::error!("a Mesa hook panicked");
            }
        }
    }
}

/// A message for Mesa clients: `{op: 0, d, t}`.
#[derive(Clone, Debug)]
pub struct MesaMessage {
    /// `t`, the event type (`NEW_MESSAGE`).
    pub t: Option<String>,
    /// `d`.
    pub d: Payload,
    /// `o.sync`: whether it may be kept for an offline user (default true).
    pub sync: bool,
}

impl MesaMessage {
    pub fn new(t: impl Into<String>, d: Payload) -> MesaMessage {
        MesaMessage {
            t: Some(t.into()),
            d,
            sync: true,
        }
    }

    /// Never kept for an offline recipient (Mesa's `new Message(op, d, t, {sync: false})`).
    pub fn no_sync(mut self) -> MesaMessage {
        self.sync = false;
        self
    }

    fn emit(&self) -> Emit {
        Emit {
            event: self.t.as_deref().map(Arc::from),
            payload: self.d.clone(),
        }
    }

    /// As kept in a mailbox: the message as Mesa serializes it, `{op, d, t}`.
    fn stored(&self) -> Result<Payload, Error> {
        let Payload::Json(d) = &self.d else {
            return Err(Error::bad_request("a Mesa message carries JSON"));
        };
        let frame = wire::encode(wire::op::DISPATCH, d, self.t.as_deref(), None);
        Payload::from_json_str(std::str::from_utf8(&frame).expect("JSON is UTF-8"))
            .map_err(|e| Error::bad_request(e.to_string()))
    }
}

/// What a dispatch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DispatchReport {
    /// Users with a connection somewhere, sent the message (a broadcast counts 0).
    pub delivered: usize,
    /// Offline users it was kept for (sync).
    pub stored: usize,
    /// Offline users it was not kept for (sync off, `o.sync: false`, or a full mailbox).
    pub dropped: usize,
}

/// Mesa's `Dispatcher` on Plexus: send to users, to everyone, with exclusions, from the
/// process that runs the server (other processes: the HTTP API, or Mesa's own `Dispatcher`
/// over Redis with [`MesaApi::deliver_internal`]).
#[derive(Clone)]
pub struct MesaApi {
    pub(crate) service: Arc<MesaService>,
    pub(crate) node: Node,
}

impl MesaApi {
    /// Sends `message` to `recipients` (user ids; none, or `"*"` among them, is everyone),
    /// except the users in `excluding` — with `"*"` too, unlike Mesa's `Dispatcher`. A user
    /// with no connection anywhere gets it kept (sync on, `o.sync` true) or dropped. Every
    /// connection of a user gets it, whatever its dialect.
    pub async fn dispatch(
        &self,
        message: &MesaMessage,
        recipients: &[&str],
        excluding: &[&str],
    ) -> Result<DispatchReport, Error> {
        let emit = message.emit();
        let mut report = DispatchReport::default();
        if recipients.is_empty() || recipients.contains(&wire::ALL) {
            let exclude = (!excluding.is_empty()).then(|| Exclude {
                conns: Vec::new(),
                users: excluding.iter().map(|u| Arc::from(*u)).collect(),
            });
            self.node.broadcast(emit, exclude).await?;
            self.service.hook(|h| h.message_sent(message, recipients));
            return Ok(report);
        }
        let config = &self.service.config;
        for user in recipients {
            if excluding.contains(user) {
                continue;
            }
            if self.node.is_user_online(user).await? {
                self.node.send_to_user(user, emit.clone(), None).await?;
                report.delivered += 1;
            } else if config.sync && message.sync {
                match self.node.keep_mail(user, message.stored()?, None).await {
                    Ok(_) => {
                        report.stored += 1;
                        self.service.hook(|h| h.undeliverable_stored(message, user));
                    }
                    Err(e) if e.code == ErrorCode::LIMIT_EXCEEDED => {
                        report.dropped += 1;
                        self.service.hook(|h| h.error(None, &e));
                    }
                    Err(e) => return Err(e),
                }
            } else {
                report.dropped += 1;
            }
        }
        self.service.hook(|h| h.message_sent(message, recipients));
        Ok(report)
    }

    /// Mesa's `DispatchEvent('DISCONNECT_CLIENT')`: closes every connection of `recipients`
    /// (every node) with 1000.
    pub async fn disconnect(&self, recipients: &[&str]) -> Result<(), Error> {
        for user in recipients {
            self.node
                .disconnect_user(
                    user,
                    wire::close::DISCONNECT_CLIENT,
                    wire::DISCONNECT_CLIENT,
                )
                .await?;
        }
        Ok(())
    }

    /// The Redis channel Mesa's `Dispatcher` publishes on (`ws[_namespace]`).
    pub fn ws_channel(&self) -> String {
        self.service.config.ws_channel()
    }

    /// Delivers one payload a Mesa `Dispatcher` published on `ws[_ns]` to this node's
    /// connections, as a Mesa server does (every node receives it, each delivers locally):
    /// `"*"` is every connection, otherwise the recipients' connections; op 5
    /// `DISCONNECT_CLIENT` closes them with 1000. Such messages are not kept for offline
    /// users (Mesa's servers do not either). Returns how many connections got it.
    pub fn deliver_internal(&self, payload: &[u8]) -> Result<usize, Error> {
        let InternalMessage {
            message,
            recipients,
        } = wire::decode_internal(payload).map_err(|e| Error::bad_request(e.to_string()))?;
        let hub = self.node.hub();
        let conns = if recipients.iter().any(|r| r == wire::ALL) {
            hub.connections()
        } else {
            let mut conns = Vec::new();
            for user in &recipients {
                conns.extend(hub.user_connections(user));
            }
            conns
        };
        if message.op == wire::op::INTERNAL {
            if message.t.as_deref() == Some(wire::DISCONNECT_CLIENT) {
                for conn in &conns {
                    conn.close(wire::close::DISCONNECT_CLIENT, wire::DISCONNECT_CLIENT);
                }
            }
            return Ok(conns.len());
        }
        if let Some(t) = message.t.as_deref() {
            plexus_core::model::validate_event(t)?;
        }
        let payload = message.payload();
        let mut cache = EncodeCache::new(Event::Message {
            to: Target::User,
            payload: &payload,
            event: message.t.as_deref(),
        });
        for conn in &conns {
            if let Some(frame) = cache.frame(conn.format()) {
                conn.send_frame(frame);
            }
        }
        Ok(conns.len())
    }
}

fn bad_request(message: &'static str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .body(Body::from(message))
        .expect("static response")
}

/// `GET /mesa`: upgrades to Mesa's protocol (no subprotocol).
pub(crate) async fn upgrade(
    State(state): State<Arc<ServerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request<Body>,
) -> Response<Body> {
    let Some(service) = state.mesa.clone() else {
        return bad_request("Mesa is not served");
    };
    let headers = req.headers();
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return bad_request("expected a WebSocket upgrade");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return Response::builder()
            .status(StatusCode::UPGRADE_REQUIRED)
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .body(Body::from("unsupported WebSocket version"))
            .expect("static response");
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| accept_key(k.as_bytes()))
    else {
        return bad_request("missing Sec-WebSocket-Key");
    };
    let upgrade = Arc::new(upgrade_request(&req, peer, "mesa", "websocket"));
    let node = state.node.clone();
    let identity = match node.auth().upgrade.clone() {
        Some(hook) => match hook.check(upgrade.clone()).await {
            UpgradeDecision::Accept(identity) => identity,
            UpgradeDecision::Refuse { status, reason } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
                return Response::builder()
                    .status(status)
                    .body(Body::from(reason))
                    .expect("valid response");
            }
        },
        None => None,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let tracker = state.sessions.enter();
    tokio::spawn(async move {
        let _tracker = tracker;
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut ws = serve(TokioIo::new(upgraded), node.limits().max_message_bytes);
        let format = service.format.clone();
        match Session::open(&node, format, upgrade, identity) {
            Ok(session) => crate::conn::run(ws, session, MesaSocket::new(service)).await,
            Err(e) => {
                crate::ws::close(
                    &mut ws,
                    e.close.unwrap_or(CloseCode::DISCONNECTED),
                    &e.message,
                )
                .await
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, key)
        .body(Body::empty())
        .expect("valid response")
}

/// Paces a redelivery: the pause between two redelivered messages.
pub(crate) fn redelivery_pause(config: &MesaConfig) -> Duration {
    Duration::from_millis(config.redelivery_interval_ms)
}
