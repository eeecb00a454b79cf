//! The node: one server process's view of connections, channels and the engine, and the
//! server-side API (publish, send, broadcast, rooms, disconnect) that applications and the HTTP
//! API call.

use crate::auth::AuthConfig;
use crate::channels::{ChannelPolicy, validate_channel};
use crate::commands::Commands;
use crate::connection::Connection;
use crate::engine::{Control, Engine, EngineError, EngineHandler, PublishOptions};
use crate::error::Error;
use crate::hub::Hub;
use crate::ids::{ConnId, NodeId};
use crate::limits::Limits;
use crate::memory::{MemoryOptions, memory_engine};
use crate::model::{ClientInfo, EncodeCache, Event, Exclude, Publication, StreamPosition, Target};
use crate::outbox::PushOutcome;
use plexus_protocol::{CloseCode, ErrorCode, Payload};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Counters a node keeps (read by metrics and `info`).
#[derive(Default, Debug)]
pub struct NodeStats {
    pub connections_opened: AtomicU64,
    pub publications: AtomicU64,
    pub deliveries: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
}

/// A node. Cheap to clone; every clone is the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    id: NodeId,
    next_seq: AtomicU64,
    hub: Hub,
    engine: Engine,
    commands: Commands,
    channels: ChannelPolicy,
    auth: AuthConfig,
    limits: Limits,
    /// Serializes the first-subscribe / last-unsubscribe engine calls of a channel.
    sub_locks: Vec<tokio::sync::Mutex<()>>,
    sub_lock_hasher: RandomState,
    heartbeat: Heartbeat,
    shutting_down: AtomicBool,
    stats: NodeStats,
}

/// Builds a [`Node`].
#[derive(Default)]
pub struct NodeBuilder {
    engine: Option<Engine>,
    commands: Commands,
    channels: ChannelPolicy,
    auth: AuthConfig,
    limits: Limits,
}

impl NodeBuilder {
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    pub fn commands(mut self, commands: Commands) -> Self {
        self.commands = commands;
        self
    }

    pub fn commands_mut(&mut self) -> &mut Commands {
        &mut self.commands
    }

    pub fn channels(mut self, channels: ChannelPolicy) -> Self {
        self.channels = channels;
        self
    }

    pub fn channels_mut(&mut self) -> &mut ChannelPolicy {
        &mut self.channels
    }

    pub fn auth(mut self, auth: AuthConfig) -> Self {
        self.auth = auth;
        self
    }

    pub fn auth_mut(&mut self) -> &mut AuthConfig {
        &mut self.auth
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits_mut(&mut self) -> &mut Limits {
        &mut self.limits
    }

    /// Builds the node and starts its engine and heartbeat. Needs a tokio runtime.
    pub fn build(self) -> Node {
        let engine = self
            .engine
            .unwrap_or_else(|| memory_engine(MemoryOptions::default()));
        let heartbeat = Heartbeat::new(self.limits.ping_interval);
        let inner = Arc::new(NodeInner {
            id: NodeId::random(),
            next_seq: AtomicU64::new(1),
            hub: Hub::new(),
            engine,
            commands: self.commands,
            channels: self.channels,
            auth: self.auth,
            limits: self.limits,
            sub_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            sub_lock_hasher: RandomState::new(),
            heartbeat,
            shutting_down: AtomicBool::new(false),
            stats: NodeStats::default(),
        });
        inner
            .engine
            .broker
            .run(Arc::new(Handler(Arc::downgrade(&inner))));
        let node = Node { inner };
        node.inner.heartbeat.spawn(Arc::downgrade(&node.inner));
        node
    }
}

/// Receives engine deliveries for a node without keeping it alive.
struct Handler(Weak<NodeInner>);

impl EngineHandler for Handler {
    fn publication(&self, publication: &Publication, exclude: Option<&Exclude>) {
        if let Some(inner) = self.0.upgrade() {
            Node { inner }.deliver_publication(publication, exclude);
        }
    }

    fn control(&self, control: Control) {
        if let Some(inner) = self.0.upgrade() {
            Node { inner }.apply_control(control);
        }
    }
}

fn engine_error(e: EngineError) -> Error {
    match e {
        EngineError::Limit(m) => Error::new(ErrorCode::LIMIT_EXCEEDED, m),
        EngineError::Unavailable(m) => {
            Error::new(ErrorCode::INTERNAL, format!("engine unavailable: {m}"))
        }
    }
}

impl Node {
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub fn commands(&self) -> &Commands {
        &self.inner.commands
    }

    pub fn channels(&self) -> &ChannelPolicy {
        &self.inner.channels
    }

    pub fn auth(&self) -> &AuthConfig {
        &self.inner.auth
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub fn stats(&self) -> &NodeStats {
        &self.inner.stats
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Relaxed)
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        ConnId {
            node: self.inner.id,
            seq: self.inner.next_seq.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Registers a new connection (called by sessions).
    pub(crate) fn add_connection(&self, conn: &Arc<Connection>) {
        self.inner.hub.add_connection(conn.clone());
        self.inner.heartbeat.add(conn);
        self.inner
            .stats
            .connections_opened
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Registers the connection under its user, within the per-user limit.
    pub(crate) fn add_user_connection(&self, conn: &Arc<Connection>) -> Result<(), Error> {
        let Some(user) = conn.identity().map(|i| i.user.clone()) else {
            return Ok(());
        };
        self.inner
            .hub
            .add_user_connection(&user, conn, self.inner.limits.max_connections_per_user)
            .map(|_| ())
            .map_err(|n| {
                Error::new(
                    ErrorCode::LIMIT_EXCEEDED,
                    format!("user already holds {n} connections"),
                )
                .and_close(CloseCode::CONNECTION_LIMIT)
            })
    }

    /// Forgets a closed connection: its subscriptions, user entry and heartbeat.
    pub(crate) async fn remove_connection(&self, conn: &Arc<Connection>) {
        self.inner.heartbeat.remove(conn);
        self.inner.hub.remove_connection(conn.id);
        if let Some(user) = conn.user() {
            self.inner.hub.remove_user_connection(user, conn.id);
        }
        for channel in conn.take_subscriptions() {
            self.hub_unsubscribe(&channel, conn.id).await;
        }
    }

    fn sub_lock(&self, channel: &str) -> &tokio::sync::Mutex<()> {
        let i = self.inner.sub_lock_hasher.hash_one(channel) as usize % self.inner.sub_locks.len();
        &self.inner.sub_locks[i]
    }

    async fn hub_unsubscribe(&self, channel: &str, conn: ConnId) {
        let _guard = self.sub_lock(channel).lock().await;
        if self.inner.hub.unsubscribe(channel, conn)
            && let Err(e) = self.inner.engine.broker.unsubscribe(channel).await
        {
            tracing::warn!(%channel, error = %e, "engine unsubscribe failed");
        }
    }

    /// Subscribes a local connection; returns the channel's position.
    pub(crate) async fn subscribe_local(
        &self,
        conn: &Arc<Connection>,
        channel: &Arc<str>,
    ) -> Result<StreamPosition, Error> {
        match conn.add_subscription(channel, self.inner.limits.max_subscriptions) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::new(
                    ErrorCode::ALREADY_SUBSCRIBED,
                    format!("already subscribed to `{channel}`"),
                ));
            }
            Err(()) => {
                return Err(Error::new(
                    ErrorCode::LIMIT_EXCEEDED,
                    format!(
                        "at most {} subscriptions per connection",
                        self.inner.limits.max_subscriptions
                    ),
                ));
            }
        }
        {
            let _guard = self.sub_lock(channel).lock().await;
            if self.inner.hub.subscribe(channel, conn)
                && let Err(e) = self.inner.engine.broker.subscribe(channel).await
            {
                self.inner.hub.unsubscribe(channel, conn.id);
                conn.remove_subscription(channel);
                return Err(engine_error(e));
            }
        }
        self.inner
            .engine
            .broker
            .position(channel)
            .await
            .map_err(engine_error)
    }

    /// Unsubscribes a local connection; false when it was not subscribed.
    pub(crate) async fn unsubscribe_local(&self, conn: &Arc<Connection>, channel: &str) -> bool {
        if !conn.remove_subscription(channel) {
            return false;
        }
        self.hub_unsubscribe(channel, conn.id).await;
        true
    }

    /// Publishes to a channel from the server side.
    pub async fn publish(&self, channel: &str, payload: Payload) -> Result<StreamPosition, Error> {
        self.publish_with(channel, payload, None, None).await
    }

    /// Publishes with an optional publisher and exclusions.
    pub async fn publish_with(
        &self,
        channel: &str,
        payload: Payload,
        publisher: Option<ClientInfo>,
        exclude: Option<Exclude>,
    ) -> Result<StreamPosition, Error> {
        validate_channel(channel, self.inner.limits.max_channel_bytes)?;
        let history = self
            .inner
            .channels
            .namespace(channel)
            .and_then(|ns| ns.history);
        let options = PublishOptions {
            history,
            exclude: exclude.filter(|e| !e.is_empty()).map(Arc::new),
        };
        self.inner
            .stats
            .publications
            .fetch_add(1, Ordering::Relaxed);
        self.inner
            .engine
            .broker
            .publish(channel, payload, publisher, options)
            .await
            .map_err(engine_error)
    }

    fn deliver_publication(&self, publication: &Publication, exclude: Option<&Exclude>) {
        let subscribers = self.inner.hub.subscribers(&publication.channel);
        let mut cache = EncodeCache::new(Event::Publication(publication));
        for conn in subscribers {
            if exclude.is_some_and(|e| e.excludes(conn.id, conn.user())) {
                continue;
            }
            if let Some(frame) = cache.frame(conn.format()) {
                self.count_push(conn.send_frame(frame));
            }
        }
    }

    fn count_push(&self, outcome: PushOutcome) {
        match outcome {
            PushOutcome::Queued => self.inner.stats.deliveries.fetch_add(1, Ordering::Relaxed),
            PushOutcome::Overflow => self
                .inner
                .stats
                .slow_consumer_closes
                .fetch_add(1, Ordering::Relaxed),
            PushOutcome::Closed => 0,
        };
    }

    fn send_message(
        &self,
        conns: impl IntoIterator<Item = Arc<Connection>>,
        to: Target,
        payload: &Payload,
        exclude: Option<&Exclude>,
    ) -> usize {
        let mut cache = EncodeCache::new(Event::Message { to, payload });
        let mut sent = 0;
        for conn in conns {
            if exclude.is_some_and(|e| e.excludes(conn.id, conn.user())) {
                continue;
            }
            if let Some(frame) = cache.frame(conn.format()) {
                let outcome = conn.send_frame(frame);
                sent += usize::from(outcome == PushOutcome::Queued);
                self.count_push(outcome);
            }
        }
        sent
    }

    fn apply_control(&self, control: Control) {
        let hub = &self.inner.hub;
        match control {
            Control::Broadcast { payload, exclude } => {
                self.send_message(hub.connections(), Target::All, &payload, exclude.as_ref());
            }
            Control::SendToUser {
                user,
                payload,
                exclude,
            } => {
                self.send_message(
                    hub.user_connections(&user),
                    Target::User,
                    &payload,
                    exclude.as_ref(),
                );
            }
            Control::SendToConnection { conn, payload } => {
                if conn.node == self.inner.id {
                    self.send_message(hub.connection(conn), Target::Connection, &payload, None);
                }
            }
            Control::SubscribeUser { user, channel } => {
                for conn in hub.user_connections(&user) {
                    let node = self.clone();
                    let channel = channel.clone();
                    tokio::spawn(async move {
                        if let Ok(position) = node.subscribe_local(&conn, &channel).await {
                            conn.send_event(&Event::Subscribed {
                                channel: &channel,
                                position: &position,
                            });
                        }
                    });
                }
            }
            Control::UnsubscribeUser { user, channel } => {
                for conn in hub.user_connections(&user) {
                    self.spawn_unsubscribe(conn, channel.clone(), "unsubscribed by the server");
                }
            }
            Control::ClearChannel { channel } => {
                for conn in hub.subscribers(&channel) {
                    self.spawn_unsubscribe(conn, channel.clone(), "channel cleared");
                }
            }
            Control::DisconnectUser { user, code, reason } => {
                for conn in hub.user_connections(&user) {
                    conn.close(code, reason.clone());
                }
            }
            Control::DisconnectConnection { conn, code, reason } => {
                if let Some(conn) = hub.connection(conn) {
                    conn.close(code, reason);
                }
            }
        }
    }

    fn spawn_unsubscribe(&self, conn: Arc<Connection>, channel: Arc<str>, reason: &'static str) {
        let node = self.clone();
        tokio::spawn(async move {
            if node.unsubscribe_local(&conn, &channel).await {
                conn.send_event(&Event::Unsubscribed {
                    channel: &channel,
                    reason,
                });
            }
        });
    }

    async fn control(&self, control: Control) -> Result<(), Error> {
        self.inner
            .engine
            .broker
            .control(control)
            .await
            .map_err(engine_error)
    }

    /// Sends a `message` push to every connection of every node (Mesa `'*'`, Plezi `multicast`).
    pub async fn broadcast(&self, payload: Payload, exclude: Option<Exclude>) -> Result<(), Error> {
        self.control(Control::Broadcast { payload, exclude }).await
    }

    /// Sends a `message` push to every connection of `user`, on every node (Mesa Dispatcher).
    pub async fn send_to_user(
        &self,
        user: &str,
        payload: Payload,
        exclude: Option<Exclude>,
    ) -> Result<(), Error> {
        self.control(Control::SendToUser {
            user: Arc::from(user),
            payload,
            exclude,
        })
        .await
    }

    /// Sends a `message` push to one connection. `Ok(false)`: no such connection (Plezi
    /// `failed_unicast`).
    pub async fn send_to_connection(&self, conn: ConnId, payload: Payload) -> Result<bool, Error> {
        if conn.node == self.inner.id {
            let Some(c) = self.inner.hub.connection(conn) else {
                return Ok(false);
            };
            return Ok(self.send_message([c], Target::Connection, &payload, None) == 1);
        }
        if !self
            .inner
            .engine
            .broker
            .remote_connection_exists(conn)
            .await
            .map_err(engine_error)?
        {
            return Ok(false);
        }
        self.control(Control::SendToConnection { conn, payload })
            .await?;
        Ok(true)
    }

    /// Subscribes one local connection to a channel (Mesh `addToRoom`); it gets a `subscribed`
    /// push. `Ok(false)` when there is no such connection.
    pub async fn subscribe_connection(&self, conn: ConnId, channel: &str) -> Result<bool, Error> {
        validate_channel(channel, self.inner.limits.max_channel_bytes)?;
        let Some(c) = self.inner.hub.connection(conn) else {
            return Ok(false);
        };
        let channel: Arc<str> = Arc::from(channel);
        let position = self.subscribe_local(&c, &channel).await?;
        c.send_event(&Event::Subscribed {
            channel: &channel,
            position: &position,
        });
        Ok(true)
    }

    /// Removes one local connection from a channel (Mesh `removeFromRoom`); false when it was
    /// not subscribed.
    pub async fn unsubscribe_connection(&self, conn: ConnId, channel: &str) -> Result<bool, Error> {
        let Some(c) = self.inner.hub.connection(conn) else {
            return Ok(false);
        };
        let removed = self.unsubscribe_local(&c, channel).await;
        if removed {
            c.send_event(&Event::Unsubscribed {
                channel,
                reason: "unsubscribed by the server",
            });
        }
        Ok(removed)
    }

    /// Subscribes every connection of `user`, on every node.
    pub async fn subscribe_user(&self, user: &str, channel: &str) -> Result<(), Error> {
        validate_channel(channel, self.inner.limits.max_channel_bytes)?;
        self.control(Control::SubscribeUser {
            user: Arc::from(user),
            channel: Arc::from(channel),
        })
        .await
    }

    /// Unsubscribes every connection of `user`, on every node.
    pub async fn unsubscribe_user(&self, user: &str, channel: &str) -> Result<(), Error> {
        self.control(Control::UnsubscribeUser {
            user: Arc::from(user),
            channel: Arc::from(channel),
        })
        .await
    }

    /// Unsubscribes everyone from a channel (Mesh `clearRoom`).
    pub async fn clear_channel(&self, channel: &str) -> Result<(), Error> {
        self.control(Control::ClearChannel {
            channel: Arc::from(channel),
        })
        .await
    }

    /// Whether a local connection is subscribed to a channel (Mesh `isInRoom`).
    pub fn is_subscribed(&self, conn: ConnId, channel: &str) -> bool {
        self.inner
            .hub
            .connection(conn)
            .is_some_and(|c| c.is_subscribed(channel))
    }

    /// The local subscribers of a channel (Mesh room members).
    pub fn members(&self, channel: &str) -> Vec<ConnId> {
        self.inner
            .hub
            .subscribers(channel)
            .iter()
            .map(|c| c.id)
            .collect()
    }

    /// Channels with local subscribers.
    pub fn active_channels(&self) -> Vec<Arc<str>> {
        self.inner.hub.channels()
    }

    /// Closes every connection of `user`, on every node.
    pub async fn disconnect_user(
        &self,
        user: &str,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), Error> {
        self.control(Control::DisconnectUser {
            user: Arc::from(user),
            code,
            reason: reason.into(),
        })
        .await
    }

    /// Closes one connection, on whatever node holds it.
    pub async fn disconnect_connection(
        &self,
        conn: ConnId,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), Error> {
        self.control(Control::DisconnectConnection {
            conn,
            code,
            reason: reason.into(),
        })
        .await
    }

    /// A local connection, if it exists.
    pub fn connection(&self, conn: ConnId) -> Option<Arc<Connection>> {
        self.inner.hub.connection(conn)
    }

    /// The measured round-trip time of a local connection.
    pub fn latency(&self, conn: ConnId) -> Option<Duration> {
        self.inner.hub.connection(conn).and_then(|c| c.latency())
    }

    pub fn connection_count(&self) -> usize {
        self.inner.hub.connection_count()
    }

    /// Starts a graceful shutdown: every connection gets its queued frames, then close 4000.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        for conn in self.inner.hub.connections() {
            conn.close(CloseCode::SHUTDOWN, "server shutting down");
        }
    }
}

/// The shared heartbeat: one task for the whole node, not one timer per connection.
///
/// Connections are spread over `buckets` by id; each tick (interval / buckets) the task pings
/// one bucket, so every connection is pinged once per interval and a tick's work is 1/buckets
/// of the connections.
struct Heartbeat {
    buckets: Vec<Mutex<HashMap<u64, Arc<Connection>>>>,
    tick: Duration,
}

impl Heartbeat {
    fn new(interval: Duration) -> Heartbeat {
        let interval = interval.max(Duration::from_millis(10));
        let count = (interval.as_millis() / 100).clamp(1, 250) as usize;
        Heartbeat {
            buckets: (0..count).map(|_| Mutex::new(HashMap::new())).collect(),
            tick: interval / count as u32,
        }
    }

    fn bucket(&self, conn: &Connection) -> &Mutex<HashMap<u64, Arc<Connection>>> {
        &self.buckets[(conn.id.seq % self.buckets.len() as u64) as usize]
    }

    fn add(&self, conn: &Arc<Connection>) {
        self.bucket(conn)
            .lock()
            .unwrap()
            .insert(conn.id.seq, conn.clone());
    }

    fn remove(&self, conn: &Connection) {
        self.bucket(conn).lock().unwrap().remove(&conn.id.seq);
    }

    fn spawn(&self, node: Weak<NodeInner>) {
        let tick = self.tick;
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut index = 0usize;
            loop {
                interval.tick().await;
                let Some(inner) = node.upgrade() else { return };
                let hb = &inner.heartbeat;
                let conns: Vec<_> = hb.buckets[index % hb.buckets.len()]
                    .lock()
                    .unwrap()
                    .values()
                    .cloned()
                    .collect();
                index = index.wrapping_add(1);
                for conn in conns {
                    conn.heartbeat_tick(inner.limits.max_missed_pongs);
                }
            }
        });
    }
}
