//! The engine traits: what a node needs from the world beyond its own process.
//!
//! Seven traits, each with a written contract (also in `docs/ARCHITECTURE.md`):
//! - [`Broker`]: publications with offsets and epochs, history, and node-to-node control
//!   messages. It delivers to every node's [`EngineHandler`], **in offset order per channel**.
//! - [`PresenceStore`]: who is in a channel.
//! - [`KvStore`]: small expiring key/value state.
//! - [`MailboxStore`]: per-user durable inboxes.
//! - [`RoomStore`]: rooms' access lists and users' direct-message lists.
//! - [`WorkQueue`]: at-least-once queues for groups of workers (Mesa's Portals).
//! - [`RecordStore`]: JSON records with versions, written by compare-and-set.
//!
//! [`crate::memory`] implements all seven for one process; `plexus-redis` implements them for
//! many nodes.

use crate::ids::ConnId;
use crate::model::{ClientInfo, Emit, Exclude, Publication, StreamPosition};
use crate::rooms::{DirectList, DirectState, RoomList, RoomState};
use async_trait::async_trait;
use bytes::Bytes;
use plexus_protocol::{CloseCode, Payload};
use std::sync::Arc;
use std::time::Duration;

/// An engine failure (the backing store is unreachable or refused).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    #[error("engine limit reached: {0}")]
    Limit(String),
}

/// History kept for a channel: the last `size` publications, each for at most `ttl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryOptions {
    pub size: usize,
    pub ttl: Duration,
}

/// Options of one publish.
#[derive(Clone, Debug, Default)]
pub struct PublishOptions {
    /// Keep the publication in history; `None` keeps none.
    pub history: Option<HistoryOptions>,
    /// Subscribers that must not receive this publication.
    pub exclude: Option<Arc<Exclude>>,
    /// The event name it is published under ([`Publication::event`]).
    pub event: Option<Arc<str>>,
}

/// A history read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Return publications with an offset greater than this (`None`: from the oldest kept, or
    /// with `reverse` from the newest).
    pub since: Option<u64>,
    /// At most this many publications (0 returns only the position).
    pub limit: usize,
    /// Newest first.
    pub reverse: bool,
}

/// The result of a history read: publications and the channel's current position.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryPage {
    pub publications: Vec<Publication>,
    pub position: StreamPosition,
}

/// A node-to-node instruction, delivered to every node (the sending one included) by
/// [`Broker::control`]; each node applies it to its own connections.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    Broadcast {
        emit: Emit,
        exclude: Option<Exclude>,
    },
    SendToUser {
        user: Arc<str>,
        emit: Emit,
        exclude: Option<Exclude>,
    },
    SendToConnection {
        conn: ConnId,
        emit: Emit,
    },
    SubscribeUser {
        user: Arc<str>,
        channel: Arc<str>,
    },
    /// Unsubscribes every connection of `user` from `channel`; they get `unsubscribed` with
    /// `reason`.
    UnsubscribeUser {
        user: Arc<str>,
        channel: Arc<str>,
        reason: Arc<str>,
    },
    /// Unsubscribes every connection from `channel`; they get `unsubscribed` with `reason`.
    ClearChannel {
        channel: Arc<str>,
        reason: Arc<str>,
    },
    /// An event for the channel's subscribers outside its publications: no offset, no history
    /// ([`crate::Event::Notice`]).
    Notice {
        channel: Arc<str>,
        emit: Emit,
        exclude: Option<Exclude>,
    },
    DisconnectUser {
        user: Arc<str>,
        code: CloseCode,
        reason: String,
    },
    DisconnectConnection {
        conn: ConnId,
        code: CloseCode,
        reason: String,
    },
    /// A presence event for a channel's subscribers (except `conn` itself).
    Presence {
        channel: Arc<str>,
        conn: ConnId,
        event: PresenceEvent,
    },
    /// A durable message for every connection of `user`.
    Mail {
        user: Arc<str>,
        mail: Mail,
    },
    /// Tell the other connections of `user` that one of its connections changed.
    Echo {
        user: Arc<str>,
        conn: ConnId,
        event: EchoEvent,
        channel: Option<Arc<str>>,
    },
    /// An operator's question to every node (`Node::inspect`): each answers `request` in the
    /// key/value store.
    Inspect {
        request: Arc<str>,
        query: crate::inspect::InspectQuery,
    },
}

/// A presence change in a channel.
#[derive(Clone, Debug, PartialEq)]
pub enum PresenceEvent {
    Join {
        user: Option<Arc<str>>,
        info: Option<Payload>,
    },
    Leave {
        user: Option<Arc<str>>,
    },
    /// The connection's presence state was set, or (`None`) cleared.
    State {
        user: Option<Arc<str>>,
        state: Option<Payload>,
    },
}

/// What changed for another connection of the same user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoEvent {
    Connected,
    Disconnected,
    Joined,
    Left,
}

impl EchoEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            EchoEvent::Connected => "connected",
            EchoEvent::Disconnected => "disconnected",
            EchoEvent::Joined => "joined",
            EchoEvent::Left => "left",
        }
    }
}

/// A durable message in a user's mailbox.
#[derive(Clone, Debug, PartialEq)]
pub struct Mail {
    /// The user's sequence number: +1 per message.
    pub seq: u64,
    pub payload: Payload,
    /// When it was sent, in Unix milliseconds.
    pub sent_ms: u64,
}

/// What a broker calls on the node it serves.
pub trait EngineHandler: Send + Sync + 'static {
    /// A publication for the node's local subscribers of `publication.channel`. Called in
    /// offset order per channel, never concurrently for one channel.
    fn publication(&self, publication: &Publication, exclude: Option<&Exclude>);
    /// A control message from any node (this one included).
    fn control(&self, control: Control);
    /// What the engine published on `channel` while this node was not listening may be lost
    /// and cannot be read back (a record's internal channel has no stream): the node reads the
    /// current state itself. Nothing by default.
    fn stream_lost(&self, channel: &str) {
        let _ = channel;
    }
}

/// Publications, history and control messages.
///
/// Contract:
/// - `publish` assigns the channel's next offset (exactly +1, never repeated, even under
///   concurrent publishers on many nodes), stores it in history when asked, and delivers it to
///   the [`EngineHandler`] of every node that subscribed the channel, in offset order.
/// - A channel's epoch stays the same as long as its offsets continue; when the engine loses a
///   channel's state (expiry, restart, eviction) the next publish starts a new epoch.
/// - `subscribe`/`unsubscribe` declare this node's interest in a channel (one per node, however
///   many local subscribers); they are idempotent.
/// - `history` never returns a partial page silently: it returns what is kept plus the position.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Starts delivering to `handler` for node `node`. Called once, before any other method.
    fn run(&self, node: crate::ids::NodeId, handler: Arc<dyn EngineHandler>);
    async fn publish(
        &self,
        channel: &str,
        payload: Payload,
        publisher: Option<ClientInfo>,
        options: PublishOptions,
    ) -> Result<StreamPosition, EngineError>;
    async fn subscribe(&self, channel: &str) -> Result<(), EngineError>;
    async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError>;
    /// The channel's current position (offset 0 and a fresh epoch for an unknown channel).
    async fn position(&self, channel: &str) -> Result<StreamPosition, EngineError>;
    async fn history(&self, channel: &str, query: HistoryQuery)
    -> Result<HistoryPage, EngineError>;
    async fn remove_history(&self, channel: &str) -> Result<(), EngineError>;
    /// Delivers `control` to every node, this one included.
    async fn control(&self, control: Control) -> Result<(), EngineError>;
    /// Whether a connection of another node exists (a registry lookup). The in-memory engine has
    /// no other node and answers false.
    async fn remote_connection_exists(&self, conn: ConnId) -> Result<bool, EngineError>;
    /// A connection of this node opened: engines with many nodes record it (in order with
    /// `connection_closed`) so that other nodes can route to it.
    fn connection_opened(&self, _conn: ConnId) {}
    fn connection_closed(&self, _conn: ConnId) {}
    /// Returns once everything the engine accepted before the call (publications, control
    /// messages) has been handed to this node's handler, so that a graceful shutdown delivers
    /// it before closing. The in-memory engine delivers synchronously: nothing to wait for.
    async fn settle(&self) -> Result<(), EngineError> {
        Ok(())
    }
    /// The live nodes, this one included (empty for a single-process engine).
    async fn nodes(&self) -> Result<Vec<NodeInfo>, EngineError> {
        Ok(Vec::new())
    }
    /// Whether the engine can serve now.
    fn health(&self) -> EngineHealth {
        EngineHealth {
            healthy: true,
            detail: "in process".into(),
        }
    }
}

/// A live node, as the engine knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub connections: u64,
    /// Unix milliseconds of its last announcement.
    pub seen_ms: u64,
}

/// The engine's state, for `/health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineHealth {
    pub healthy: bool,
    pub detail: String,
}

/// One member of a channel's presence.
#[derive(Clone, Debug, PartialEq)]
pub struct PresenceEntry {
    pub conn: ConnId,
    pub user: Option<Arc<str>>,
    pub info: Option<Payload>,
    /// The connection's ephemeral presence state (Mesh `publishPresenceState`).
    pub state: Option<Payload>,
}

/// Counts of a channel's presence, kept cheap to read on big channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PresenceStats {
    pub connections: usize,
    pub users: usize,
}

/// Who is in a channel.
///
/// Contract: `add` is idempotent per (channel, connection) and refreshes the entry, and returns
/// whether it is the user's first connection in the channel (always true for anonymous
/// connections); `remove` of an absent entry is a no-op and returns whether it was the user's
/// last connection there, recording when the user was last seen; a state lives as long as its
/// entry (or its expiry); `stats` is O(1) in the number of members; entries of a node that died
/// disappear within a bounded time (engines with many nodes).
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    async fn add(&self, channel: &str, entry: PresenceEntry) -> Result<bool, EngineError>;
    async fn remove(&self, channel: &str, conn: ConnId) -> Result<bool, EngineError>;
    async fn get(&self, channel: &str) -> Result<Vec<PresenceEntry>, EngineError>;
    async fn stats(&self, channel: &str) -> Result<PresenceStats, EngineError>;
    /// Sets or clears a member's state; false when the connection is not in the channel.
    async fn set_state(
        &self,
        channel: &str,
        conn: ConnId,
        state: Option<Payload>,
    ) -> Result<bool, EngineError>;
    /// When `user` was last in `channel` (set when its last connection left), if ever.
    async fn last_seen(
        &self,
        channel: &str,
        user: &str,
    ) -> Result<Option<std::time::SystemTime>, EngineError>;
    /// How often a node asks [`PresenceStore::departed`] about its channels, when members can
    /// leave without being removed — their node died and their entries expired. `None` (the
    /// default): every member is removed by its own node.
    fn departure_interval(&self) -> Option<Duration> {
        None
    }
    /// The members of `channel` whose entries expired since the last call, in the order they
    /// were found. Each is reported once, to one caller on any node, so that the channel is
    /// told once. Bounded: a store keeps at most a fixed number of unreported departures per
    /// channel (the oldest go first).
    async fn departed(&self, channel: &str) -> Result<Vec<Departure>, EngineError> {
        let _ = channel;
        Ok(Vec::new())
    }
}

/// A member that left a channel's presence without being removed: its entry expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Departure {
    pub conn: ConnId,
    pub user: Option<Arc<str>>,
    /// It was its user's last connection in the channel (each anonymous connection counts as a
    /// user of its own).
    pub last: bool,
}

/// Per-user durable inboxes (Mesa sync, Plezi `register_as` / `notify`).
///
/// Contract: sequence numbers grow by exactly one per message of a user; `pending` returns
/// unacknowledged, unexpired messages in sequence order; `ack` is cumulative; a full inbox
/// refuses with [`EngineError::Limit`] (never a silent drop); an inbox unused for its lifetime
/// is forgotten and the user is no longer registered.
#[async_trait]
pub trait MailboxStore: Send + Sync + 'static {
    /// Creates or refreshes the user's inbox for `lifetime`.
    async fn register(&self, user: &str, lifetime: Duration) -> Result<(), EngineError>;
    async fn is_registered(&self, user: &str) -> Result<bool, EngineError>;
    /// Stores a message (for at most `ttl`); refuses beyond `max_messages` waiting.
    async fn push(
        &self,
        user: &str,
        payload: Payload,
        ttl: Duration,
        max_messages: usize,
    ) -> Result<Mail, EngineError>;
    async fn pending(&self, user: &str) -> Result<Vec<Mail>, EngineError>;
    /// Acknowledges every message up to `seq`; returns how many are still waiting.
    async fn ack(&self, user: &str, seq: u64) -> Result<u64, EngineError>;
}

/// Small key/value state with optional expiry.
///
/// Contract: a value is visible to every node right after `set` returns; an expired key reads
/// as absent; the store is bounded and refuses new keys beyond its bound with
/// [`EngineError::Limit`].
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, EngineError>;
    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<(), EngineError>;
    async fn delete(&self, key: &str) -> Result<bool, EngineError>;
    /// Keys starting with `prefix` (at most `limit`), with their values.
    async fn scan_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>, EngineError>;
}

/// A change of a room ([`RoomStore::change_room`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomChange {
    /// Adds names to a list, refusing when the names already on it plus the new ones would
    /// exceed `max`.
    Add {
        list: RoomList,
        names: Vec<Arc<str>>,
        max: usize,
    },
    /// Removes names from a list (names not on it are ignored).
    Remove {
        list: RoomList,
        names: Vec<Arc<str>>,
    },
    WhitelistOnly(bool),
    Owner(Option<Arc<str>>),
    HistoryMaxSize(Option<usize>),
    /// Switches the notifications; `None` leaves one as it is.
    Notifications {
        userlist: Option<bool>,
        access_lists: Option<bool>,
    },
}

/// What [`RoomStore::change_room`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomChanged {
    /// Applied; the room's version is now `version`.
    Done { version: u64 },
    /// No such room; nothing changed.
    NoRoom,
    /// The room's version was not the one expected; nothing changed.
    Stale,
    /// The list would exceed its maximum; nothing changed.
    ListFull,
}

/// A change of a user's direct-message state ([`RoomStore::change_direct`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectChange {
    Add {
        list: DirectList,
        names: Vec<Arc<str>>,
        max: usize,
    },
    Remove {
        list: DirectList,
        names: Vec<Arc<str>>,
    },
    WhitelistOnly(bool),
}

/// What [`RoomStore::change_direct`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectChanged {
    Done,
    /// No such user; nothing changed.
    NoUser,
    /// The list would exceed its maximum; nothing changed.
    ListFull,
}

/// Rooms (a channel's owner, access lists, mode, history size, notification switches) and users
/// (existence and direct-message lists), shared by every node. The rules that read them are in
/// [`crate::rooms`]; the node applies them ([`crate::access`]).
///
/// Contract: every method is atomic — a change is applied whole or not at all, and a reader
/// never sees half of one; `create_room` / `add_user` answer false (and change nothing) when
/// the name exists; a list's maximum counts the names already on it plus the new ones (names
/// already there are not new); `change_room` with `expect: Some(v)` applies only while the
/// room's version is `v` ([`RoomChanged::Stale`] otherwise) and every applied change adds one
/// to the version; the store is bounded, refusing new rooms or users beyond its bound with
/// [`EngineError::Limit`].
#[async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// Creates a room in `state` (its version is set to 1); false when it exists.
    async fn create_room(&self, room: &str, state: &RoomState) -> Result<bool, EngineError>;
    /// Deletes a room; false when there was none.
    async fn delete_room(&self, room: &str) -> Result<bool, EngineError>;
    /// The room's whole state.
    async fn room(&self, room: &str) -> Result<Option<RoomState>, EngineError>;
    /// The room's state with its lists restricted to `users` (each list holds those of `users`
    /// that are on it): what the rules need to judge these users, at the cost of `users`.
    async fn room_view(
        &self,
        room: &str,
        users: &[Arc<str>],
    ) -> Result<Option<RoomState>, EngineError>;
    async fn change_room(
        &self,
        room: &str,
        change: &RoomChange,
        expect: Option<u64>,
    ) -> Result<RoomChanged, EngineError>;
    /// Adds a user with its direct-message state; false when it exists.
    async fn add_user(&self, user: &str, state: &DirectState) -> Result<bool, EngineError>;
    /// Deletes a user and its lists; false when there was none.
    async fn delete_user(&self, user: &str) -> Result<bool, EngineError>;
    async fn user_exists(&self, user: &str) -> Result<bool, EngineError>;
    /// The user's direct-message state.
    async fn direct(&self, user: &str) -> Result<Option<DirectState>, EngineError>;
    /// The user's direct-message state with its lists restricted to `users`.
    async fn direct_view(
        &self,
        user: &str,
        users: &[Arc<str>],
    ) -> Result<Option<DirectState>, EngineError>;
    async fn change_direct(
        &self,
        user: &str,
        change: &DirectChange,
    ) -> Result<DirectChanged, EngineError>;
}

/// An item taken from a [`WorkQueue`]: its id (for `ack`) and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkItem {
    pub id: String,
    pub payload: Bytes,
    /// Times it was handed out before this one (0: first delivery).
    pub redeliveries: u64,
}

/// Named at-least-once queues shared by every node: a group of workers takes items, each item
/// goes to one worker at a time, and comes back to the queue if that worker does not
/// acknowledge it within its lease (it died, or is too slow) — Mesa's Portals, made reliable.
///
/// Contract: `push` refuses beyond `max_len` items waiting or leased (it returns false: the
/// overflow policy is *refuse the newest*, counted by the caller); `take` hands out first the
/// items whose lease expired (oldest first), then new ones in push order, each leased to
/// `worker` for `lease`; `ack` removes items for good (an unknown or already acknowledged id is
/// ignored) and returns how many it removed. Bounded in queues (`EngineError::Limit`).
#[async_trait]
pub trait WorkQueue: Send + Sync + 'static {
    async fn push(&self, queue: &str, payload: Bytes, max_len: usize) -> Result<bool, EngineError>;
    async fn take(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<WorkItem>, EngineError>;
    async fn ack(&self, queue: &str, ids: &[String]) -> Result<u64, EngineError>;
    /// Items waiting or leased.
    async fn len(&self, queue: &str) -> Result<u64, EngineError>;
}

/// One record write ([`RecordStore::put`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RecordPut {
    /// The record's namespace: the limit on records counts per namespace, and Redis keys carry
    /// it as their hash tag.
    pub namespace: String,
    pub id: Arc<str>,
    /// The (version, epoch) the record must be at; `None`: it must not exist.
    pub expect: Option<(u64, Arc<str>)>,
    /// The change: the new value with its patch from `expect`, or a delete.
    pub change: crate::records::RecordChangeWire,
    /// Records the namespace may hold; creating one more is [`RecordPutOutcome::Full`].
    pub max_records: usize,
}

/// What [`RecordStore::put`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordPutOutcome {
    /// Written (for a delete: the version the deletion took).
    Done(crate::records::Written),
    /// The record was not at the expected version and epoch; nothing changed.
    Conflict { version: u64 },
    /// Creating the record would exceed the namespace's maximum; nothing changed.
    Full,
}

/// Records: JSON values with versions ([`crate::records`]).
///
/// Contract: `put` is one atomic compare-and-set on the record's (version, epoch): when the
/// record is where `expect` says, it stores the new value at version + 1 (a new record: version
/// 1 in a new epoch; a delete removes it) and hands the change — as a publication of
/// [`crate::records::record_channel`] with the version as its offset and the record's epoch —
/// to every node subscribed to that channel, in version order; otherwise it changes nothing and
/// answers [`RecordPutOutcome::Conflict`]. Versions never repeat or skip within an epoch, even
/// under concurrent writers on many nodes. Records are durable as long as the engine's state is
/// (Redis: across node restarts). Bounded: a namespace holds at most `max_records`.
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    async fn get(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<Option<crate::records::Record>, EngineError>;
    async fn put(&self, put: RecordPut) -> Result<RecordPutOutcome, EngineError>;
}

/// The parts of an engine, as a node holds them.
#[derive(Clone)]
pub struct Engine {
    pub broker: Arc<dyn Broker>,
    pub presence: Arc<dyn PresenceStore>,
    pub kv: Arc<dyn KvStore>,
    pub mailbox: Arc<dyn MailboxStore>,
    pub rooms: Arc<dyn RoomStore>,
    pub queues: Arc<dyn WorkQueue>,
    pub records: Arc<dyn RecordStore>,
}
