//! The Redis engine: many Plexus nodes, one system. The only crate that knows Redis.
//!
//! It implements every engine trait of `plexus-core`:
//! - [`RedisBroker`]: publications appended to a Redis Stream and published by **one atomic Lua
//!   script per publish** (offsets never repeat or skip under concurrent publishers on many
//!   nodes), one Redis subscription per channel per node shared by its local subscribers
//!   (subscribed in batches, processed in channel order), a control channel for node-to-node
//!   instructions, a registry of which node holds which connection, node liveness keys, and
//!   repair after a pub/sub gap from the streams;
//! - presence with expiring members ([`presence::RedisPresence`]), key/value state
//!   ([`kv::RedisKv`]), mailboxes ([`mailbox::RedisMailbox`]) and rooms with their access
//!   lists ([`rooms::RedisRooms`]), and records with versions written by one compare-and-set
//!   script each ([`records::RedisRecords`]).
//!
//! Every key starts with a prefix, so several applications share one Redis. Keys of one channel
//! (stream, meta, presence, room) carry the channel as a hash tag (`{…}`), and keys of one user
//! the user, so the scripts stay valid on Redis Cluster; see `docs/redis.md` for the layout.

mod broker;
mod cluster;
pub mod external;
pub mod kv;
pub mod mailbox;
pub mod presence;
pub mod queues;
pub mod records;
pub mod rooms;
mod sentinel;
pub mod testing;
mod wire;

pub use broker::RedisBroker;

use plexus_core::engine::{Engine, EngineError};
use redis::Value;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use std::sync::Arc;
use std::time::Duration;

/// The Redis engine's settings.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or a Redis found through Sentinel:
    /// `redis+sentinel://host:port[,host:port…]/service_name[/db]` (the sentinels' addresses
    /// and the monitored master's name; the engine follows the master Sentinel names after a
    /// failover). Ignored when `cluster` is set.
    pub url: String,
    /// Redis Cluster: the URLs of some of its nodes (`redis://host:port`); empty: one Redis
    /// at `url`. Cross-node delivery then goes through sharded pub/sub (`SSUBSCRIBE`,
    /// `SPUBLISH`), see `docs/redis.md`.
    pub cluster: Vec<String>,
    /// Prefix of every key and channel (one per application sharing the Redis).
    pub prefix: String,
    /// A channel's offset and epoch are kept this long after its last publication.
    pub stream_meta_ttl: Duration,
    /// A presence member not refreshed for this long is gone (a node that died leaves no ghost
    /// beyond it). Members are refreshed every third of it.
    pub presence_ttl: Duration,
    /// A node that stopped announcing itself for this long is dead: its registry entries expire.
    pub node_ttl: Duration,
    /// An idle pub/sub connection is probed (PING) this often; no answer in `probe_timeout`
    /// means it is dead and is replaced.
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    /// Timeout of every command.
    pub command_timeout: Duration,
    /// Keys the key/value store holds at once.
    pub max_kv_keys: usize,
    /// Users remembered per channel for "last seen".
    pub max_last_seen_per_channel: usize,
    /// Publications read back from streams for one channel after a pub/sub gap.
    pub repair_max_publications: usize,
    /// Rooms that exist at once.
    pub max_rooms: usize,
    /// Users (with direct-message lists) that exist at once.
    pub max_users: usize,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            cluster: Vec::new(),
            prefix: "plexus".into(),
            stream_meta_ttl: Duration::from_secs(24 * 3600),
            presence_ttl: Duration::from_secs(60),
            node_ttl: Duration::from_secs(15),
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_secs(5),
            max_kv_keys: 1_000_000,
            max_last_seen_per_channel: 10_000,
            repair_max_publications: 10_000,
            max_rooms: 1_000_000,
            max_users: 1_000_000,
        }
    }

    pub fn prefix(mut self, prefix: impl Into<String>) -> RedisConfig {
        self.prefix = prefix.into();
        self
    }

    /// Settings for a Redis Cluster reached through any of `nodes`.
    pub fn cluster<S: Into<String>>(nodes: impl IntoIterator<Item = S>) -> RedisConfig {
        let mut config = RedisConfig::new("");
        config.cluster = nodes.into_iter().map(Into::into).collect();
        config
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        !self.cluster.is_empty()
    }
}

/// A command connection: one multiplexed connection to a Redis that reconnects by itself, or a
/// Redis Cluster connection that routes each command to its slot's master and follows moved
/// slots and failovers.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Sentinel(Arc<sentinel::SentinelConn>),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Sentinel(s) => {
                let s = s.clone();
                Box::pin(async move {
                    let seen = s.address();
                    let result = s.current().req_packed_command(cmd).await;
                    if sentinel::SentinelConn::lost(&result)
                        && let Some(mut moved) = s.follow(&seen).await
                    {
                        return moved.req_packed_command(cmd).await;
                    }
                    result
                })
            }
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(s) => {
                let s = s.clone();
                Box::pin(async move {
                    let seen = s.address();
                    let result = s
                        .current()
                        .req_packed_commands(pipeline, offset, count)
                        .await;
                    if sentinel::SentinelConn::lost(&result)
                        && let Some(mut moved) = s.follow(&seen).await
                    {
                        return moved.req_packed_commands(pipeline, offset, count).await;
                    }
                    result
                })
            }
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Sentinel(s) => s.current().get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where the engine's connections come from.
pub(crate) enum Backend {
    Single(redis::Client),
    Sentinel(Arc<sentinel::SentinelConn>),
    Cluster,
}

impl Backend {
    /// A client of the Redis to open a pub/sub connection to (Sentinel: the master now).
    pub(crate) async fn pubsub_client(&self) -> Result<redis::Client, String> {
        match self {
            Backend::Single(client) => Ok(client.clone()),
            Backend::Sentinel(s) => s.master().await,
            Backend::Cluster => Err("a cluster has no single pub/sub connection".into()),
        }
    }
}

/// What every part of the engine shares: the client, one multiplexed command connection that
/// reconnects by itself, the key layout and the settings.
pub(crate) struct Shared {
    /// Set by [`RedisBroker::halt`]: every background task stops, as if the process died.
    pub(crate) halted: std::sync::atomic::AtomicBool,
    pub(crate) backend: Backend,
    pub(crate) conn: Conn,
    pub(crate) keys: Keys,
    pub(crate) config: RedisConfig,
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(e.to_string())
}

impl Shared {
    /// A command connection (a cheap clone of the shared multiplexed one).
    pub(crate) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Whether the engine runs on a Redis Cluster.
    pub(crate) fn cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster)
    }

    /// Runs a command future under the command timeout.
    pub(crate) async fn run<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, EngineError> {
        match tokio::time::timeout(self.config.command_timeout, fut).await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(EngineError::Unavailable("redis command timed out".into())),
        }
    }
}

/// The key layout (see `docs/redis.md`).
pub(crate) struct Keys {
    p: String,
    /// On a Redis Cluster, keys used together in one script or pipeline share a hash tag.
    cluster: bool,
}

impl Keys {
    pub(crate) fn stream(&self, ch: &str) -> String {
        format!("{}:stream:{{{ch}}}", self.p)
    }
    pub(crate) fn meta(&self, ch: &str) -> String {
        format!("{}:meta:{{{ch}}}", self.p)
    }
    /// The pub/sub channel of a Plexus channel (on a cluster, a shard channel in the slot of
    /// the channel's stream and meta, so the publish script can `SPUBLISH` it).
    pub(crate) fn pubsub(&self, ch: &str) -> String {
        if self.cluster {
            format!("{}:ch:{{{ch}}}", self.p)
        } else {
            format!("{}:ch:{ch}", self.p)
        }
    }
    /// The Plexus channel of a pub/sub channel name, if it is one.
    pub(crate) fn channel_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        let rest = name.strip_prefix(self.p.as_str())?.strip_prefix(":ch:")?;
        if self.cluster {
            rest.strip_prefix('{')?.strip_suffix('}')
        } else {
            Some(rest)
        }
    }
    pub(crate) fn control(&self) -> String {
        format!("{}:control", self.p)
    }
    /// On a cluster, a node's barrier in the slot of channel `ch` (a shard channel: it reaches
    /// the node on the connection that carries `ch`'s publications, after them).
    pub(crate) fn slot_barrier(&self, ch: &str, node: &str) -> String {
        format!("{}:barrier:{{{ch}}}:{node}", self.p)
    }
    /// On a cluster, a node's barrier in the slot of the control channel.
    pub(crate) fn control_barrier(&self, node: &str) -> String {
        format!("{{{}}}:barrier:{node}", self.control())
    }
    pub(crate) fn barrier_prefix(&self) -> String {
        format!("{}:barrier:", self.p)
    }
    /// A node's own pub/sub channel for barriers (`Broker::settle`).
    pub(crate) fn barrier(&self, node: &str) -> String {
        format!("{}:barrier:{node}", self.p)
    }
    pub(crate) fn node(&self, id: &str) -> String {
        if self.cluster {
            format!("{}:node:{{{id}}}", self.p)
        } else {
            format!("{}:node:{id}", self.p)
        }
    }
    /// On a cluster (where a SCAN sees one master), the index of live nodes: node id → the
    /// time it last announced itself.
    pub(crate) fn node_index(&self) -> String {
        format!("{}:nodes", self.p)
    }
    pub(crate) fn node_pattern(&self) -> String {
        format!("{}:node:*", self.p)
    }
    pub(crate) fn node_conns(&self, id: &str) -> String {
        if self.cluster {
            format!("{}:nodeconns:{{{id}}}", self.p)
        } else {
            format!("{}:nodeconns:{id}", self.p)
        }
    }
    /// Members, their expiry, per-user counts, last seen, and each member's user.
    pub(crate) fn presence(&self, ch: &str) -> [String; 6] {
        [
            format!("{}:pres:{{{ch}}}", self.p),
            format!("{}:pres:exp:{{{ch}}}", self.p),
            format!("{}:pres:users:{{{ch}}}", self.p),
            format!("{}:seen:{{{ch}}}", self.p),
            format!("{}:pres:cu:{{{ch}}}", self.p),
            format!("{}:pres:gone:{{{ch}}}", self.p),
        ]
    }
    /// On a cluster every key/value key shares the tag `{prefix}` with its index (the store
    /// is bounded and small; its script touches the key and the index together).
    pub(crate) fn kv(&self, key: &str) -> String {
        if self.cluster {
            format!("{{{}}}:kv:{key}", self.p)
        } else {
            format!("{}:kv:{key}", self.p)
        }
    }
    pub(crate) fn kv_index(&self) -> String {
        if self.cluster {
            format!("{{{}}}:kvidx", self.p)
        } else {
            format!("{}:kvidx", self.p)
        }
    }
    /// A room's hash, whitelist, blacklist and adminlist.
    pub(crate) fn room(&self, ch: &str) -> [String; 4] {
        let base = format!("{}:room:{{{ch}}}", self.p);
        [
            base.clone(),
            format!("{base}:w"),
            format!("{base}:b"),
            format!("{base}:a"),
        ]
    }
    pub(crate) fn rooms_count(&self) -> String {
        format!("{}:rooms:n", self.p)
    }
    /// A user's hash, direct whitelist and direct blacklist.
    pub(crate) fn user(&self, user: &str) -> [String; 3] {
        let base = format!("{}:user:{{{user}}}", self.p);
        [base.clone(), format!("{base}:w"), format!("{base}:b")]
    }
    pub(crate) fn users_count(&self) -> String {
        format!("{}:users:n", self.p)
    }
    /// A work queue's stream and its leases.
    pub(crate) fn queue(&self, name: &str) -> [String; 2] {
        [
            format!("{}:queue:{{{name}}}", self.p),
            format!("{}:queue:leases:{{{name}}}", self.p),
        ]
    }
    /// A record's hash: tagged by its namespace, like the namespace's index.
    pub(crate) fn record(&self, namespace: &str, id: &str) -> String {
        format!("{}:rec:{{{namespace}}}:{id}", self.p)
    }
    /// The set of a record namespace's ids.
    pub(crate) fn record_index(&self, namespace: &str) -> String {
        format!("{}:recs:{{{namespace}}}", self.p)
    }
    pub(crate) fn mailbox(&self, user: &str) -> [String; 2] {
        [
            format!("{}:mbox:{{{user}}}", self.p),
            format!("{}:mbox:s:{{{user}}}", self.p),
        ]
    }
}

/// Like [`redis_engine`], also returning the broker (for its health and for [`RedisBroker::halt`]).
pub async fn redis_engine_with_broker(
    config: RedisConfig,
) -> Result<(Engine, Arc<RedisBroker>), EngineError> {
    let where_ = if config.is_cluster() {
        config.cluster.join(",")
    } else {
        config.url.clone()
    };
    let no_answer = || EngineError::Unavailable(format!("no answer from {where_}"));
    let (backend, conn) = if config.is_cluster() {
        let client = cluster_builder(&config).build().map_err(unavailable)?;
        let conn = tokio::time::timeout(config.command_timeout, client.get_async_connection())
            .await
            .map_err(|_| no_answer())?
            .map_err(unavailable)?;
        (Backend::Cluster, Conn::Cluster(conn))
    } else if config.url.starts_with("redis+sentinel://") {
        let s = tokio::time::timeout(
            config.command_timeout,
            sentinel::SentinelConn::connect(&config),
        )
        .await
        .map_err(|_| no_answer())?
        .map_err(EngineError::Unavailable)?;
        let s = Arc::new(s);
        (Backend::Sentinel(s.clone()), Conn::Sentinel(s))
    } else {
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = tokio::time::timeout(
            config.command_timeout,
            client.get_connection_manager_with_config(manager_config),
        )
        .await
        .map_err(|_| no_answer())?
        .map_err(unavailable)?;
        (Backend::Single(client), Conn::Single(conn))
    };
    let keys = Keys {
        p: config.prefix.clone(),
        cluster: config.is_cluster(),
    };
    let shared = Arc::new(Shared {
        halted: Default::default(),
        backend,
        conn,
        keys,
        config,
    });
    let presence = Arc::new(presence::RedisPresence::new(shared.clone()));
    let broker = Arc::new(RedisBroker::new(shared.clone()));
    let engine = Engine {
        broker: broker.clone(),
        presence,
        kv: Arc::new(kv::RedisKv::new(shared.clone())),
        mailbox: Arc::new(mailbox::RedisMailbox::new(shared.clone())),
        queues: Arc::new(queues::RedisQueues::new(shared.clone())),
        records: Arc::new(records::RedisRecords::new(shared.clone())),
        rooms: Arc::new(rooms::RedisRooms::new(shared)),
    };
    Ok((engine, broker))
}

/// Connects to Redis and builds the engine. Call inside a tokio runtime; the broker starts its
/// background tasks when the node starts it.
pub async fn redis_engine(config: RedisConfig) -> Result<Engine, EngineError> {
    Ok(redis_engine_with_broker(config).await?.0)
}

impl Shared {
    pub(crate) fn halted(&self) -> bool {
        self.halted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A Redis Cluster client for `config.cluster`, retrying a command (moved slot, failover in
/// progress) for about the time a replica takes to be promoted.
pub(crate) fn cluster_builder(config: &RedisConfig) -> redis::cluster::ClusterClientBuilder {
    redis::cluster::ClusterClientBuilder::new(config.cluster.clone())
        .connection_timeout(config.command_timeout)
        .response_timeout(config.command_timeout)
        .retries(6)
        .max_retry_wait(500)
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
