//! The engine traits: what a node needs from the world beyond its own process.
//!
//! Three traits, each with a written contract (also in `docs/ARCHITECTURE.md`):
//! - [`Broker`]: publications with offsets and epochs, history, and node-to-node control
//!   messages. It delivers to every node's [`EngineHandler`], **in offset order per channel**.
//! - [`PresenceStore`]: who is in a channel.
//! - [`KvStore`]: small expiring key/value state.
//!
//! [`crate::memory`] implements all three for one process; `plexus-redis` implements them for
//! many nodes.

use crate::ids::ConnId;
use crate::model::{ClientInfo, Exclude, Publication, StreamPosition};
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
        payload: Payload,
        exclude: Option<Exclude>,
    },
    SendToUser {
        user: Arc<str>,
        payload: Payload,
        exclude: Option<Exclude>,
    },
    SendToConnection {
        conn: ConnId,
        payload: Payload,
    },
    SubscribeUser {
        user: Arc<str>,
        channel: Arc<str>,
    },
    UnsubscribeUser {
        user: Arc<str>,
        channel: Arc<str>,
    },
    ClearChannel {
        channel: Arc<str>,
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
}

/// What a broker calls on the node it serves.
pub trait EngineHandler: Send + Sync + 'static {
    /// A publication for the node's local subscribers of `publication.channel`. Called in
    /// offset order per channel, never concurrently for one channel.
    fn publication(&self, publication: &Publication, exclude: Option<&Exclude>);
    /// A control message from any node (this one included).
    fn control(&self, control: Control);
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
    /// Starts delivering to `handler`. Called once, before any other method.
    fn run(&self, handler: Arc<dyn EngineHandler>);
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
}

/// One member of a channel's presence.
#[derive(Clone, Debug, PartialEq)]
pub struct PresenceEntry {
    pub conn: ConnId,
    pub user: Option<Arc<str>>,
    pub info: Option<Payload>,
}

/// Counts of a channel's presence, kept cheap to read on big channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PresenceStats {
    pub connections: usize,
    pub users: usize,
}

/// Who is in a channel.
///
/// Contract: `add` is idempotent per (channel, connection) and refreshes the entry; `remove`
/// of an absent entry is a no-op; `stats` is O(1) in the number of members; entries of a node
/// that died disappear within a bounded time (engines with many nodes).
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    async fn add(&self, channel: &str, entry: PresenceEntry) -> Result<(), EngineError>;
    async fn remove(&self, channel: &str, conn: ConnId) -> Result<(), EngineError>;
    async fn get(&self, channel: &str) -> Result<Vec<PresenceEntry>, EngineError>;
    async fn stats(&self, channel: &str) -> Result<PresenceStats, EngineError>;
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
}

/// The three parts of an engine, as a node holds them.
#[derive(Clone)]
pub struct Engine {
    pub broker: Arc<dyn Broker>,
    pub presence: Arc<dyn PresenceStore>,
    pub kv: Arc<dyn KvStore>,
}
