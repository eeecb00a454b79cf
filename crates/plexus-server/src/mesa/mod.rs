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
use crate::ws::{bad_request, upgrade_dialect};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, Response};
use bytes::Bytes;
use plexus_core::model::{EncodeCache, Event, Target};
use plexus_core::{ConnId, Emit, Error, ErrorCode, Exclude, Node, Payload};
use plexus_protocol::mesa::{self as wire, InternalMessage, PortalEvent};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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
    /// Mesa's `portal.enabled`: where client events (connection, authentication, message,
    /// disconnection) go.
    pub portals: PortalMode,
    /// The work queue of [`PortalMode::Queue`] (`mesa`).
    pub portal_group: String,
    /// Events waiting or unacknowledged in the queue at most; a newer one is refused (dropped,
    /// counted, reported to [`MesaHooks::error`]).
    pub portal_backlog_max: usize,
    /// How long a worker may hold an event before it goes to another worker.
    pub portal_lease_ms: u64,
    /// Mesa's `portal.distributeLoad` ([`PortalMode::Mesa`]): round-robin over the known
    /// portals (else one at random).
    pub distribute_load: bool,
}

/// Where a Mesa server's client events go (Mesa's Portals).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortalMode {
    /// Nowhere (Mesa's default).
    Off,
    /// Plexus's at-least-once queue (`portal_group`): each event reaches one worker, and another
    /// if that one does not acknowledge it within `portal_lease_ms` (the engine's `WorkQueue`:
    /// Redis Streams, or a bounded queue in memory). Workers use [`MesaApi::portal_take`] /
    /// [`MesaApi::portal_ack`] or the HTTP API.
    Queue,
    /// Mesa's own format on Redis (`portal[_ns]` to one of `available_portals_pool[_ns]`), for
    /// `@cryb/mesa`'s `Portal` class: lossy, as in Mesa (pub/sub keeps nothing).
    Mesa,
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
            portals: PortalMode::Off,
            portal_group: "mesa".into(),
            portal_backlog_max: 10_000,
            portal_lease_ms: 30_000,
            distribute_load: true,
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

    /// Mesa's Portal channel: `portal`, or `portal_<namespace>`.
    pub fn portal_channel(&self) -> String {
        wire::namespaced("portal", self.namespace.as_deref())
    }

    /// Mesa's portal pool (a set, and a channel of announcements).
    pub fn portal_pool(&self) -> String {
        wire::namespaced("available_portals_pool", self.namespace.as_deref())
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

/// Sends one payload on Mesa's Portal channel; false when it was dropped.
pub type PortalPublisher = Box<dyn Fn(Bytes) -> bool + Send + Sync>;

/// The Mesa Portals a server knows ([`PortalMode::Mesa`]), and its round-robin position.
#[derive(Default)]
struct PortalPool {
    ids: Vec<String>,
    index: usize,
}

/// The most Mesa Portals a server tracks.
const MAX_PORTALS: usize = 1024;

/// What a Mesa server holds: its options, hooks and wire format.
pub(crate) struct MesaService {
    pub(crate) config: MesaConfig,
    pub(crate) hooks: Option<Arc<dyn MesaHooks>>,
    pub(crate) format: Arc<MesaFormat>,
    pool: Mutex<PortalPool>,
    publisher: OnceLock<PortalPublisher>,
    /// Portal events refused (a full backlog, an engine failure, a full publisher).
    portal_dropped: AtomicU64,
}

impl MesaService {
    pub(crate) fn new(config: MesaConfig, hooks: Option<Arc<dyn MesaHooks>>) -> MesaService {
        let format = Arc::new(MesaFormat::new(config.heartbeat));
        MesaService {
            config,
            hooks,
            format,
            pool: Mutex::default(),
            publisher: OnceLock::new(),
            portal_dropped: AtomicU64::new(0),
        }
    }

    /// Hands a client event to the portals, as the configuration says.
    pub(crate) async fn portal(&self, node: &Node, conn: ConnId, mut event: PortalEvent) {
        let dropped = match self.config.portals {
            PortalMode::Off => return,
            PortalMode::Queue => match node
                .engine()
                .queues
                .push(
                    &self.config.portal_group,
                    event.encode(),
                    self.config.portal_backlog_max,
                )
                .await
            {
                Ok(true) => None,
                Ok(false) => Some(Error::new(
                    ErrorCode::LIMIT_EXCEEDED,
                    format!(
                        "the portal backlog holds {} events: this one is dropped",
                        self.config.portal_backlog_max
                    ),
                )),
                Err(e) => Some(Error::new(ErrorCode::NOT_AVAILABLE, e.to_string())),
            },
            PortalMode::Mesa => {
                // As Mesa: nothing is sent while no portal is known.
                let Some(id) = self.choose_portal() else {
                    return;
                };
                event.portal_id = Some(id);
                match self.publisher.get() {
                    Some(publish) if publish(event.encode()) => None,
                    _ => Some(Error::new(
                        ErrorCode::NOT_AVAILABLE,
                        "the portal channel is not available: this event is dropped",
                    )),
                }
            }
        };
        if let Some(e) = dropped {
            self.portal_dropped.fetch_add(1, Ordering::Relaxed);
            self.hook(|h| h.error(Some(conn), &e));
        }
    }

    /// Mesa's `sendInternalPortalMessage` choice: the only one, round-robin (incremented before
    /// use, as Mesa does), or random.
    fn choose_portal(&self) -> Option<String> {
        let mut pool = self.pool.lock().unwrap();
        match pool.ids.len() {
            0 => None,
            1 => Some(pool.ids[0].clone()),
            n if self.config.distribute_load => {
                pool.index = (pool.index + 1) % n;
                Some(pool.ids[pool.index].clone())
            }
            n => Some(pool.ids[fastrand::usize(..n)].clone()),
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

/// A client event taken from the portal queue: acknowledge `id` once handled.
#[derive(Clone, Debug)]
pub struct PortalDelivery {
    pub id: String,
    /// Times it was handed out before (to workers that did not acknowledge it).
    pub redeliveries: u64,
    pub event: PortalEvent,
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

    /// The server's Mesa options.
    pub fn config(&self) -> &MesaConfig {
        &self.service.config
    }

    /// Portal events dropped so far (a full backlog, an unavailable engine or channel).
    pub fn portal_dropped(&self) -> u64 {
        self.service.portal_dropped.load(Ordering::Relaxed)
    }

    /// Takes up to `max` client events for `worker` ([`PortalMode::Queue`]): first events whose
    /// worker did not acknowledge them in time, then new ones. Each is leased to `worker` for
    /// `portal_lease_ms`; acknowledge it with [`MesaApi::portal_ack`].
    pub async fn portal_take(
        &self,
        worker: &str,
        max: usize,
    ) -> Result<Vec<PortalDelivery>, Error> {
        self.require_queue()?;
        let config = &self.service.config;
        let items = self
            .node
            .engine()
            .queues
            .take(
                &config.portal_group,
                worker,
                max,
                Duration::from_millis(config.portal_lease_ms),
            )
            .await
            .map_err(|e| Error::new(ErrorCode::NOT_AVAILABLE, e.to_string()))?;
        Ok(items
            .into_iter()
            .filter_map(|item| {
                let event = wire::decode_portal_event(&item.payload).ok()?;
                Some(PortalDelivery {
                    id: item.id,
                    redeliveries: item.redeliveries,
                    event,
                })
            })
            .collect())
    }

    /// Acknowledges events taken with [`MesaApi::portal_take`]; returns how many were still
    /// unacknowledged.
    pub async fn portal_ack(&self, ids: &[String]) -> Result<u64, Error> {
        self.require_queue()?;
        self.node
            .engine()
            .queues
            .ack(&self.service.config.portal_group, ids)
            .await
            .map_err(|e| Error::new(ErrorCode::NOT_AVAILABLE, e.to_string()))
    }

    fn require_queue(&self) -> Result<(), Error> {
        if self.service.config.portals == PortalMode::Queue {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::NOT_AVAILABLE,
                "portals are not served as a queue: set `mesa.portals = \"queue\"`",
            ))
        }
    }

    /// [`PortalMode::Mesa`]: how events reach Mesa's `portal[_ns]` channel (set once, by
    /// whoever holds the Redis connection: `plexus serve` does).
    pub fn set_portal_publisher(&self, publisher: PortalPublisher) {
        let _ = self.service.publisher.set(publisher);
    }

    /// [`PortalMode::Mesa`]: the portals in `available_portals_pool[_ns]` (read at startup,
    /// added to those announced meanwhile).
    pub fn set_portals(&self, ids: Vec<String>) {
        let mut pool = self.service.pool.lock().unwrap();
        for id in ids {
            if pool.ids.len() < MAX_PORTALS && !pool.ids.contains(&id) {
                pool.ids.push(id);
            }
        }
    }

    /// [`PortalMode::Mesa`]: an announcement on `available_portals_pool[_ns]`
    /// (`{"id", "ready"}`): a portal joins or leaves.
    pub fn portal_announcement(&self, payload: &[u8]) -> Result<(), Error> {
        let update =
            wire::decode_portal_update(payload).map_err(|e| Error::bad_request(e.to_string()))?;
        let mut pool = self.service.pool.lock().unwrap();
        let known = pool.ids.iter().position(|id| *id == update.id);
        match (update.ready, known) {
            (true, None) if pool.ids.len() < MAX_PORTALS => pool.ids.push(update.id),
            (false, Some(i)) => {
                pool.ids.remove(i);
            }
            _ => {}
        }
        Ok(())
    }

    /// The portals known now ([`PortalMode::Mesa`]).
    pub fn portals(&self) -> Vec<String> {
        self.service.pool.lock().unwrap().ids.clone()
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

/// `GET /mesa`: upgrades to Mesa's protocol (no subprotocol).
pub(crate) async fn upgrade(
    State(state): State<Arc<ServerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let Some(service) = state.mesa.clone() else {
        return bad_request("Mesa is not served");
    };
    let format = service.format.clone();
    upgrade_dialect(&state, peer, req, "mesa", format, move || {
        MesaSocket::new(service)
    })
    .await
}

/// Paces a redelivery: the pause between two redelivered messages.
pub(crate) fn redelivery_pause(config: &MesaConfig) -> Duration {
    Duration::from_millis(config.redelivery_interval_ms)
}
