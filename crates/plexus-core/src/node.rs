//! The node: one server process's view of connections, channels and the engine, and the
//! server-side API (publish, send, broadcast, rooms, disconnect) that applications and the HTTP
//! API call.

use crate::auth::AuthConfig;
use crate::channels::{ChannelPolicy, validate_channel};
use crate::commands::Commands;
use crate::connection::Connection;
use crate::connection::HoldKey;
use crate::engine::EchoEvent;
use crate::engine::{Control, Engine, EngineError, EngineHandler, HistoryOptions, PublishOptions};
use crate::error::Error;
use crate::hub::Continuity;
use crate::hub::Hub;
use crate::ids::{ConnId, NodeId};
use crate::lifecycle::Lifecycle;
use crate::limits::Limits;
use crate::memory::{MemoryOptions, memory_engine};
use crate::model::{
    ClientInfo, Emit, EncodeCache, Event, Exclude, Publication, StreamPosition, Target,
    validate_event,
};
use crate::outbox::PushOutcome;
use crate::records::{RecordPolicy, record_id};
use crate::rooms::room_history;
use crate::stats::NodeStats;
use plexus_protocol::{CloseCode, ErrorCode};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The `unsubscribed` reason that asks the client to subscribe again and recover.
pub const INSUFFICIENT_STATE: &str = "insufficient_state";

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
    records: RecordPolicy,
    auth: AuthConfig,
    lifecycle: Lifecycle,
    limits: Limits,
    /// Serializes the first-subscribe / last-unsubscribe engine calls of a channel.
    sub_locks: Vec<tokio::sync::Mutex<()>>,
    sub_lock_hasher: RandomState,
    heartbeat: Heartbeat,
    shutting_down: AtomicBool,
    stats: NodeStats,
    /// When the node was built (its uptime).
    started: Instant,
    echoes: bool,
    track_online: bool,
    /// The generation of each presence state with an expiry timer, so that a timer only clears
    /// the state it was started for (a state set again, even to the same value, restarts it).
    state_generations: Mutex<HashMap<(Arc<str>, ConnId), u64>>,
    next_state_generation: AtomicU64,
}

/// Builds a [`Node`].
#[derive(Default)]
pub struct NodeBuilder {
    echoes: bool,
    track_online: bool,
    engine: Option<Engine>,
    commands: Commands,
    channels: ChannelPolicy,
    records: RecordPolicy,
    auth: AuthConfig,
    lifecycle: Lifecycle,
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

    /// Who may read and write which records, and their limits ([`crate::records`]).
    pub fn records(mut self, records: RecordPolicy) -> Self {
        self.records = records;
        self
    }

    pub fn records_mut(&mut self) -> &mut RecordPolicy {
        &mut self.records
    }

    pub fn auth(mut self, auth: AuthConfig) -> Self {
        self.auth = auth;
        self
    }

    pub fn auth_mut(&mut self) -> &mut AuthConfig {
        &mut self.auth
    }

    /// The connection lifecycle hooks (`opened`, `authenticated`, `closed`; see
    /// [`crate::lifecycle`]).
    pub fn lifecycle(mut self, lifecycle: Lifecycle) -> Self {
        self.lifecycle = lifecycle;
        self
    }

    pub fn lifecycle_mut(&mut self) -> &mut Lifecycle {
        &mut self.lifecycle
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits_mut(&mut self) -> &mut Limits {
        &mut self.limits
    }

    /// Tell a user's other connections when one of its connections connects, disconnects,
    /// joins or leaves a channel (chat-service echoes).
    pub fn echoes(mut self, on: bool) -> Self {
        self.echoes = on;
        self
    }

    /// Record every authenticated connection in the engine's presence, so that
    /// [`Node::is_user_online`] answers for every node (Mesa's sync: a user is offline when
    /// none of its connections is left anywhere). Nodes with rooms always do.
    pub fn track_online(mut self, on: bool) -> Self {
        self.track_online = on;
        self
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
            records: self.records,
            auth: self.auth,
            lifecycle: self.lifecycle,
            limits: self.limits,
            sub_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            sub_lock_hasher: RandomState::new(),
            heartbeat,
            shutting_down: AtomicBool::new(false),
            stats: NodeStats::default(),
            started: Instant::now(),
            echoes: self.echoes,
            track_online: self.track_online,
            state_generations: Mutex::new(HashMap::new()),
            next_state_generation: AtomicU64::new(1),
        });
        inner
            .engine
            .broker
            .run(inner.id, Arc::new(Handler(Arc::downgrade(&inner))));
        let node = Node { inner };
        node.inner.heartbeat.spawn(Arc::downgrade(&node.inner));
        spawn_mailbox_keeper(Arc::downgrade(&node.inner));
        spawn_departure_sweeper(Arc::downgrade(&node.inner));
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

    fn stream_lost(&self, channel: &str) {
        if record_id(channel).is_some()
            && let Some(inner) = self.0.upgrade()
        {
            let (node, channel) = (Node { inner }, channel.to_owned());
            tokio::spawn(async move { node.resync_record(&channel).await });
        }
    }
}

/// An [`Emit`] whose event name (if any) passes [`validate_event`].
fn checked(emit: impl Into<Emit>) -> Result<Emit, Error> {
    let emit = emit.into();
    if let Some(event) = &emit.event {
        validate_event(event)?;
    }
    Ok(emit)
}

pub(crate) fn engine_error(e: EngineError) -> Error {
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

    pub fn records(&self) -> &RecordPolicy {
        &self.inner.records
    }

    pub fn auth(&self) -> &AuthConfig {
        &self.inner.auth
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
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

    /// Whether authenticated connections are recorded in the engine's presence (rooms, or
    /// [`NodeBuilder::track_online`]).
    pub(crate) fn tracks_online(&self) -> bool {
        self.inner.track_online || self.inner.channels.has_rooms()
    }

    /// When the node was built.
    pub fn started(&self) -> Instant {
        self.inner.started
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Relaxed)
    }

    /// Starts a new generation of a connection's presence state in a channel (`None` clears it).
    pub(crate) fn set_state_generation(&self, channel: &Arc<str>, conn: ConnId, set: bool) -> u64 {
        let mut gens = self.inner.state_generations.lock().unwrap();
        if !set {
            gens.remove(&(channel.clone(), conn));
            return 0;
        }
        let generation = self
            .inner
            .next_state_generation
            .fetch_add(1, Ordering::Relaxed);
        gens.insert((channel.clone(), conn), generation);
        generation
    }

    /// Whether `generation` is still the current state's; if so, forgets it.
    pub(crate) fn take_state_generation(
        &self,
        channel: &Arc<str>,
        conn: ConnId,
        generation: u64,
    ) -> bool {
        let mut gens = self.inner.state_generations.lock().unwrap();
        let key = (channel.clone(), conn);
        if gens.get(&key) == Some(&generation) {
            gens.remove(&key);
            return true;
        }
        false
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        ConnId {
            node: self.inner.id,
            seq: self.inner.next_seq.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Registers a new connection (called by sessions).
    pub(crate) fn add_connection(&self, conn: &Arc<Connection>) {
        self.inner.engine.broker.connection_opened(conn.id);
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

    /// Forgets a closed connection: its subscriptions (with their presence), user entry,
    /// metadata and heartbeat.
    pub(crate) async fn remove_connection(&self, conn: &Arc<Connection>) {
        self.inner.heartbeat.remove(conn);
        self.inner.hub.remove_connection(conn.id);
        self.inner.engine.broker.connection_closed(conn.id);
        if let Some(user) = conn.user() {
            self.inner.hub.remove_user_connection(user, conn.id);
        }
        // Silent presences (namespaces without join/leave pushes, such as chat-service's user
        // channels) go first: whoever hears this connection leave a channel finds it gone from
        // the others too (chat-service's "no such user online" right after `roomUserLeft`).
        let mut channels = conn.take_subscriptions();
        channels.sort_by_key(|channel| {
            self.inner
                .channels
                .namespace(channel)
                .is_some_and(|ns| ns.join_leave != crate::channels::JoinLeave::Off)
        });
        for channel in channels {
            self.leave_channel(conn, &channel, false).await;
        }
        self.forget_connection_metadata(conn.id).await;
        self.user_offline(conn).await;
        if let Some(user) = conn.user() {
            // The inbox lives `mailbox_lifetime` after the user's last connection.
            let _ = self
                .inner
                .engine
                .mailbox
                .register(user, self.inner.limits.mailbox_lifetime)
                .await;
        }
        self.echo(conn, EchoEvent::Disconnected, None).await;
        NodeStats::add(&self.inner.stats.connections_closed, 1);
    }

    /// Tells the connection's user's other connections, when echoes are on.
    pub(crate) async fn echo(
        &self,
        conn: &Connection,
        event: EchoEvent,
        channel: Option<Arc<str>>,
    ) {
        if !self.inner.echoes || conn.is_observer() {
            return;
        }
        let Some(user) = conn.identity().map(|i| i.user.clone()) else {
            return;
        };
        if let Err(e) = self
            .control(Control::Echo {
                user,
                conn: conn.id,
                event,
                channel,
            })
            .await
        {
            tracing::warn!(error = %e, "echo failed");
        }
    }

    fn sub_lock(&self, channel: &str) -> &tokio::sync::Mutex<()> {
        let i = self.inner.sub_lock_hasher.hash_one(channel) as usize % self.inner.sub_locks.len();
        &self.inner.sub_locks[i]
    }

    async fn hub_unsubscribe(&self, channel: &str, conn: ConnId) {
        let _guard = self.sub_lock(channel).lock().await;
        if self.inner.hub.unsubscribe(channel, conn) {
            self.channel_emptied(channel).await;
        }
    }

    /// The channel has no local subscriber left (the caller holds its subscribe lock).
    async fn channel_emptied(&self, channel: &str) {
        if let Err(e) = self.inner.engine.broker.unsubscribe(channel).await {
            tracing::warn!(%channel, error = %e, "engine unsubscribe failed");
        }
        // Its metadata goes with it.
        let _ = self.remove_channel_metadata(channel).await;
    }

    /// Adds a local connection to a stream of sequenced frames (a channel, or a record's
    /// internal channel) with its frames **held** (see [`Connection::hold`]), within the
    /// connection's subscription limit. No presence, no echo: [`Node::join_channel`] adds them.
    pub(crate) async fn join_stream(
        &self,
        conn: &Arc<Connection>,
        channel: &Arc<str>,
        what: &str,
    ) -> Result<(), Error> {
        match conn.add_subscription(channel, self.inner.limits.max_subscriptions) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::new(
                    ErrorCode::ALREADY_SUBSCRIBED,
                    format!("already subscribed to {what}"),
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
        let key = HoldKey::Channel(channel.clone());
        conn.hold(key.clone());
        let _guard = self.sub_lock(channel).lock().await;
        if self.inner.hub.subscribe(channel, conn)
            && let Err(e) = self.inner.engine.broker.subscribe(channel).await
        {
            self.inner.hub.unsubscribe(channel, conn.id);
            conn.remove_subscription(channel);
            let _ = conn.release(&key, u64::MAX);
            return Err(engine_error(e));
        }
        Ok(())
    }

    /// Removes a connection from a stream's local subscribers.
    pub(crate) async fn leave_stream(&self, channel: &str, conn: ConnId) {
        self.hub_unsubscribe(channel, conn).await;
    }

    /// Adds a local connection to a channel with its publications **held** (see
    /// [`Connection::hold`]): the caller reads the position or history, queues its answer, then
    /// calls [`Node::release`]. Also joins the channel's presence.
    pub(crate) async fn join_channel(
        &self,
        conn: &Arc<Connection>,
        channel: &Arc<str>,
    ) -> Result<(), Error> {
        self.join_stream(conn, channel, &format!("`{channel}`"))
            .await?;
        self.join_presence(conn, channel).await;
        self.echo(conn, EchoEvent::Joined, Some(channel.clone()))
            .await;
        Ok(())
    }

    /// Ends the hold [`Node::join_channel`] started: queues held publications after `offset`.
    /// When some were dropped (the hold overflowed), the subscription is ended with an
    /// `unsubscribed` push (`insufficient_state`) so the client subscribes again and recovers.
    pub(crate) fn release(&self, conn: &Arc<Connection>, channel: &Arc<str>, offset: u64) {
        if conn
            .release(&HoldKey::Channel(channel.clone()), offset)
            .is_err()
        {
            self.detach(conn.clone(), channel.clone(), INSUFFICIENT_STATE);
        }
    }

    /// Subscribes a local connection server-side: it gets a `subscribed` push, then the
    /// channel's publications.
    pub(crate) async fn subscribe_local(
        &self,
        conn: &Arc<Connection>,
        channel: &Arc<str>,
    ) -> Result<StreamPosition, Error> {
        self.join_channel(conn, channel).await?;
        let position = match self.inner.engine.broker.position(channel).await {
            Ok(position) => position,
            Err(e) => {
                self.release(conn, channel, u64::MAX);
                self.unsubscribe_local(conn, channel).await;
                return Err(engine_error(e));
            }
        };
        conn.send_event(&Event::Subscribed {
            channel,
            position: &position,
        });
        self.release(conn, channel, position.offset);
        Ok(position)
    }

    /// Unsubscribes a local connection; false when it was not subscribed.
    pub(crate) async fn unsubscribe_local(&self, conn: &Arc<Connection>, channel: &str) -> bool {
        if !conn.remove_subscription(channel) {
            return false;
        }
        self.leave_channel(conn, channel, true).await;
        true
    }

    /// Removes a connection from a channel's subscribers and presence.
    async fn leave_channel(&self, conn: &Arc<Connection>, channel: &str, echo: bool) {
        let _ = conn.release(&HoldKey::Channel(Arc::from(channel)), u64::MAX);
        self.hub_unsubscribe(channel, conn.id).await;
        self.leave_presence(conn, channel).await;
        if echo {
            self.echo(conn, EchoEvent::Left, Some(Arc::from(channel)))
                .await;
        }
    }

    /// Publishes to a channel from the server side: a [`Payload`], or an [`Emit`] with an event
    /// name (Socket.IO's `io.to(channel).emit(event, data)`).
    pub async fn publish(
        &self,
        channel: &str,
        emit: impl Into<Emit>,
    ) -> Result<StreamPosition, Error> {
        self.publish_with(channel, emit, None, None).await
    }

    /// Publishes with an optional publisher and exclusions (connections or users that do not
    /// receive it live; history keeps it for everyone). A room's channel must have its room
    /// (`noRoom`), and keeps at most the room's history size.
    pub async fn publish_with(
        &self,
        channel: &str,
        emit: impl Into<Emit>,
        publisher: Option<ClientInfo>,
        exclude: Option<Exclude>,
    ) -> Result<StreamPosition, Error> {
        validate_channel(channel, self.inner.limits.max_channel_bytes)?;
        let emit = checked(emit)?;
        let namespace = self.inner.channels.namespace(channel);
        let mut history = namespace.and_then(|ns| ns.history);
        if namespace.is_some_and(|ns| ns.rooms) {
            history = room_history(history, &self.rooms().view(channel, &[]).await?);
        }
        self.publish_checked(channel, emit, publisher, exclude, history)
            .await
    }

    /// Publishes a checked emit with the history given.
    pub(crate) async fn publish_checked(
        &self,
        channel: &str,
        emit: Emit,
        publisher: Option<ClientInfo>,
        exclude: Option<Exclude>,
        history: Option<HistoryOptions>,
    ) -> Result<StreamPosition, Error> {
        let Emit { event, payload } = emit;
        let options = PublishOptions {
            history,
            exclude: exclude.filter(|e| !e.is_empty()).map(Arc::new),
            event,
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
        if let Some(id) = record_id(&publication.channel) {
            return self.deliver_record(id, publication);
        }
        let (subscribers, continuity) = self.inner.hub.subscribers_at(
            &publication.channel,
            &publication.epoch,
            publication.offset,
        );
        match continuity {
            Continuity::Continuous => {}
            Continuity::Stale => return,
            Continuity::Gap => {
                // Publications were lost between the engine and this node. Subscribers that can
                // recover are told to subscribe again (and recover); the others get what comes
                // (at-most-once, as documented).
                if self
                    .inner
                    .channels
                    .namespace(&publication.channel)
                    .is_some_and(|ns| ns.recovery)
                {
                    tracing::warn!(channel = %publication.channel, offset = publication.offset, "gap in a channel's offsets");
                    for conn in subscribers {
                        self.detach(conn, publication.channel.clone(), INSUFFICIENT_STATE);
                    }
                    return;
                }
                // A new numbering (epoch) must not be filtered by the old one's floor.
                let key = HoldKey::Channel(publication.channel.clone());
                for conn in &subscribers {
                    conn.clear_floor(&key);
                }
            }
        }
        let key = HoldKey::Channel(publication.channel.clone());
        let mut cache = EncodeCache::new(Event::Publication(publication));
        for conn in subscribers {
            if exclude.is_some_and(|e| e.excludes(conn.id, conn.user())) {
                continue;
            }
            if let Some(frame) = cache.frame(conn.format()) {
                self.count_push(conn.send_sequenced(&key, publication.offset, frame));
            }
        }
    }

    pub(crate) fn count_push(&self, outcome: PushOutcome) {
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
        emit: &Emit,
        exclude: Option<&Exclude>,
    ) -> usize {
        let mut cache = EncodeCache::new(Event::Message {
            to,
            payload: &emit.payload,
            event: emit.event.as_deref(),
        });
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

    /// Delivers `user`'s waiting durable messages numbered above `last` to `conn` (whose mail
    /// is held), then releases the held live ones above them.
    fn repair_mail(&self, conn: Arc<Connection>, user: Arc<str>, last: u64) {
        let node = self.clone();
        tokio::spawn(async move {
            let pending = match node.engine().mailbox.pending(&user).await {
                Ok(pending) => pending,
                Err(e) => {
                    tracing::warn!(%user, error = %e, "mailbox unavailable: a gap in durable messages stays");
                    Vec::new()
                }
            };
            let mut sent = last;
            for mail in pending.iter().filter(|m| m.seq > last) {
                conn.send_event(&Event::Mail(mail));
                sent = sent.max(mail.seq);
            }
            conn.note_mail(sent);
            if conn.release(&HoldKey::Mail, sent).is_err() {
                conn.close(
                    plexus_protocol::CloseCode::INSUFFICIENT_STATE,
                    "too many durable messages arrived during a repair",
                );
            }
        });
    }

    fn apply_control(&self, control: Control) {
        let hub = &self.inner.hub;
        match control {
            Control::Broadcast { emit, exclude } => {
                self.send_message(hub.connections(), Target::All, &emit, exclude.as_ref());
            }
            Control::SendToUser {
                user,
                emit,
                exclude,
            } => {
                self.send_message(
                    hub.user_connections(&user),
                    Target::User,
                    &emit,
                    exclude.as_ref(),
                );
            }
            Control::SendToConnection { conn, emit } => {
                if conn.node == self.inner.id {
                    self.send_message(hub.connection(conn), Target::Connection, &emit, None);
                }
            }
            Control::SubscribeUser { user, channel } => {
                for conn in hub.user_connections(&user) {
                    let node = self.clone();
                    let channel = channel.clone();
                    tokio::spawn(async move {
                        let _ = node.subscribe_local(&conn, &channel).await;
                    });
                }
            }
            Control::Presence {
                channel,
                conn,
                event,
            } => {
                let mut cache = EncodeCache::new(Event::Presence {
                    channel: &channel,
                    conn,
                    event: &event,
                });
                for sub in hub.subscribers(&channel) {
                    if sub.id != conn
                        && let Some(frame) = cache.frame(sub.format())
                    {
                        self.count_push(sub.send_frame(frame));
                    }
                }
            }
            Control::Mail { user, mail } => {
                let mut cache = EncodeCache::new(Event::Mail(&mail));
                for conn in hub.user_connections(&user) {
                    // A user's messages are numbered +1: a jump means one did not reach this
                    // node (a pub/sub outage) — and a later cumulative `ack` would delete it.
                    // Hold the live ones, read the inbox, deliver what is missing in order.
                    let last = conn.note_mail(mail.seq);
                    if mail.seq > last + 1 && conn.hold_mail_for_repair() {
                        self.repair_mail(conn.clone(), user.clone(), last);
                    }
                    if let Some(frame) = cache.frame(conn.format()) {
                        self.count_push(conn.send_sequenced(&HoldKey::Mail, mail.seq, frame));
                    }
                }
            }
            Control::Echo {
                user,
                conn,
                event,
                channel,
            } => {
                let mut cache = EncodeCache::new(Event::Echo {
                    conn,
                    event,
                    channel: channel.as_deref(),
                });
                for other in hub.user_connections(&user) {
                    if other.id != conn
                        && let Some(frame) = cache.frame(other.format())
                    {
                        self.count_push(other.send_frame(frame));
                    }
                }
            }
            Control::UnsubscribeUser {
                user,
                channel,
                reason,
            } => {
                for conn in hub.user_connections(&user) {
                    self.detach(conn, channel.clone(), &reason);
                }
            }
            Control::ClearChannel { channel, reason } => {
                for conn in hub.subscribers(&channel) {
                    self.detach(conn, channel.clone(), &reason);
                }
            }
            Control::Notice {
                channel,
                emit,
                exclude,
            } => {
                let mut cache = EncodeCache::new(Event::Notice {
                    channel: &channel,
                    event: emit.event.as_deref(),
                    payload: &emit.payload,
                });
                for sub in hub.subscribers(&channel) {
                    if exclude
                        .as_ref()
                        .is_some_and(|e| e.excludes(sub.id, sub.user()))
                    {
                        continue;
                    }
                    if let Some(frame) = cache.frame(sub.format()) {
                        self.count_push(sub.send_frame(frame));
                    }
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
            Control::Inspect { request, query } => self.answer_inspect(request, query),
        }
    }

    /// Ends a subscription at once — no later publication reaches it — and tells the client;
    /// the rest of the cleanup (presence, the engine's interest) finishes in a task.
    fn detach(&self, conn: Arc<Connection>, channel: Arc<str>, reason: &str) {
        if !conn.remove_subscription(&channel) {
            return;
        }
        let _ = conn.release(&HoldKey::Channel(channel.clone()), u64::MAX);
        let emptied = self.inner.hub.unsubscribe(&channel, conn.id);
        conn.send_event(&Event::Unsubscribed {
            channel: &channel,
            reason,
        });
        let node = self.clone();
        tokio::spawn(async move {
            if emptied {
                let _guard = node.sub_lock(&channel).lock().await;
                if node.inner.hub.subscriber_count(&channel) == 0 {
                    node.channel_emptied(&channel).await;
                }
            }
            node.leave_presence(&conn, &channel).await;
            node.echo(&conn, EchoEvent::Left, Some(channel.clone()))
                .await;
        });
    }

    pub(crate) async fn control(&self, control: Control) -> Result<(), Error> {
        self.inner
            .engine
            .broker
            .control(control)
            .await
            .map_err(engine_error)
    }

    /// Sends a `message` push to every connection of every node (Mesa `'*'`, Plezi `multicast`,
    /// Socket.IO `io.except(…).emit(…)`), except `exclude`.
    pub async fn broadcast(
        &self,
        emit: impl Into<Emit>,
        exclude: Option<Exclude>,
    ) -> Result<(), Error> {
        let emit = checked(emit)?;
        self.control(Control::Broadcast { emit, exclude }).await
    }

    /// Sends a `message` push to every connection of `user`, on every node (Mesa Dispatcher),
    /// except `exclude`.
    pub async fn send_to_user(
        &self,
        user: &str,
        emit: impl Into<Emit>,
        exclude: Option<Exclude>,
    ) -> Result<(), Error> {
        let emit = checked(emit)?;
        self.control(Control::SendToUser {
            user: Arc::from(user),
            emit,
            exclude,
        })
        .await
    }

    /// Sends a `message` push to one connection. `Ok(false)`: no such connection (Plezi
    /// `failed_unicast`).
    pub async fn send_to_connection(
        &self,
        conn: ConnId,
        emit: impl Into<Emit>,
    ) -> Result<bool, Error> {
        let emit = checked(emit)?;
        if conn.node == self.inner.id {
            let Some(c) = self.inner.hub.connection(conn) else {
                return Ok(false);
            };
            return Ok(self.send_message([c], Target::Connection, &emit, None) == 1);
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
        self.control(Control::SendToConnection { conn, emit })
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
        self.subscribe_local(&c, &channel).await?;
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
        self.unsubscribe_user_because(user, channel, "unsubscribed by the server")
            .await
    }

    /// Unsubscribes every connection of `user`, on every node; they are told `reason`.
    pub(crate) async fn unsubscribe_user_because(
        &self,
        user: &str,
        channel: &str,
        reason: &str,
    ) -> Result<(), Error> {
        self.control(Control::UnsubscribeUser {
            user: Arc::from(user),
            channel: Arc::from(channel),
            reason: Arc::from(reason),
        })
        .await
    }

    /// Unsubscribes everyone from a channel, on every node, and removes its metadata.
    pub async fn clear_channel(&self, channel: &str) -> Result<(), Error> {
        self.clear_channel_because(channel, "channel cleared").await
    }

    /// [`Node::clear_channel`], telling the subscribers `reason`.
    pub(crate) async fn clear_channel_because(
        &self,
        channel: &str,
        reason: &str,
    ) -> Result<(), Error> {
        self.control(Control::ClearChannel {
            channel: Arc::from(channel),
            reason: Arc::from(reason),
        })
        .await?;
        self.remove_channel_metadata(channel).await
    }

    /// Sends an event to the subscribers of `channel` on every node, except `exclude`: a
    /// `notice` push, with no offset and not kept in history, so a room can tell its members
    /// about itself without taking an offset from its messages.
    pub async fn notify(
        &self,
        channel: &str,
        emit: impl Into<Emit>,
        exclude: Option<Exclude>,
    ) -> Result<(), Error> {
        validate_channel(channel, self.inner.limits.max_channel_bytes)?;
        let emit = checked(emit)?;
        self.control(Control::Notice {
            channel: Arc::from(channel),
            emit,
            exclude: exclude.filter(|e| !e.is_empty()),
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

    /// Starts a graceful shutdown: new connections are refused, what the engine accepted so far
    /// is delivered (waiting at most `Limits::shutdown_timeout` for it), then every connection
    /// gets its queued frames and close 4000.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let settle = self.inner.engine.broker.settle();
        match tokio::time::timeout(self.inner.limits.shutdown_timeout, settle).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the engine could not settle before shutdown"),
            Err(_) => tracing::warn!("the engine did not settle within the shutdown timeout"),
        }
        for conn in self.inner.hub.connections() {
            conn.close(CloseCode::SHUTDOWN, "server shutting down");
        }
    }
}

/// Keeps the inboxes of connected users alive: an inbox lives `mailbox_lifetime` after the
/// user's *last* connection, so while a user stays connected its inbox is registered again every
/// third of the lifetime (one engine call per connected user and period, not per connection).
fn spawn_mailbox_keeper(node: Weak<NodeInner>) {
    let Some(lifetime) = node.upgrade().map(|inner| inner.limits.mailbox_lifetime) else {
        return;
    };
    let period = (lifetime / 3).max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            let Some(inner) = node.upgrade() else { return };
            let users = inner.hub.users();
            let engine = inner.engine.clone();
            drop(inner);
            for user in users {
                if let Err(e) = engine.mailbox.register(&user, lifetime).await {
                    tracing::debug!(%user, error = %e, "refreshing an inbox failed");
                }
            }
        }
    });
}

/// Tells channels about members whose node died: every [`PresenceStore::departure_interval`]
/// (engines whose members can expire), the node asks about the channels it has subscribers in
/// (only they have someone to tell) and sends their `leave` pushes.
///
/// [`PresenceStore::departure_interval`]: crate::engine::PresenceStore::departure_interval
fn spawn_departure_sweeper(node: Weak<NodeInner>) {
    let Some(period) = node
        .upgrade()
        .and_then(|inner| inner.engine.presence.departure_interval())
    else {
        return;
    };
    let period = period.max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            let Some(inner) = node.upgrade() else { return };
            let node = Node { inner };
            if node.inner.shutting_down.load(Ordering::Relaxed) {
                return;
            }
            node.tell_departures().await;
        }
    });
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
