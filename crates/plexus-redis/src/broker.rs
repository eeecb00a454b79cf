//! Publications, history and control over Redis.

use crate::wire::{decode_control, decode_pub, encode_control, encode_pub};
use crate::{Shared, now_ms, unavailable};
use async_trait::async_trait;
use futures_util::StreamExt;
use plexus_core::engine::{
    Broker, Control, EngineError, EngineHandler, EngineHealth, HistoryPage, HistoryQuery, NodeInfo,
    PublishOptions,
};
use plexus_core::{ClientInfo, ConnId, NodeId, Payload, Publication, StreamPosition};
use redis::{AsyncCommands, Script, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Appends to the stream (when history is kept), assigns the next offset and publishes, in one
/// atomic step. KEYS: stream, meta. ARGV: blob, history size, history ttl ms, meta ttl ms,
/// pub/sub channel, a fresh epoch (used when the channel has none), the publish command
/// (`publish`, or `spublish` on a cluster: the shard channel shares the keys' slot).
static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[6]
  redis.call('hset', KEYS[2], 'e', epoch)
end
local offset = redis.call('hincrby', KEYS[2], 's', 1)
redis.call('pexpire', KEYS[2], ARGV[4])
local size = tonumber(ARGV[2])
if size > 0 then
  if offset == 1 then redis.call('del', KEYS[1]) end
  redis.call('xadd', KEYS[1], 'MAXLEN', size, offset .. '-0', 'd', ARGV[1])
  redis.call('pexpire', KEYS[1], ARGV[3])
end
redis.call(ARGV[7], ARGV[5], offset .. ':' .. epoch .. ':' .. ARGV[1])
return {offset, epoch}
",
    )
});

/// Reads the position and (optionally) publications. KEYS: stream, meta. ARGV: since ('' for
/// none), limit, reverse ('1'/'0'), a fresh epoch, meta ttl ms. Returns
/// `{top, epoch, offset1, blob1, offset2, blob2, …}`.
static HISTORY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('hset', KEYS[2], 'e', epoch, 's', 0)
end
redis.call('pexpire', KEYS[2], ARGV[5])
local top = tonumber(redis.call('hget', KEYS[2], 's') or '0')
local out = {top, epoch}
local limit = tonumber(ARGV[2])
if limit > 0 then
  local entries
  if ARGV[3] == '1' then
    local low = '-'
    if ARGV[1] ~= '' then low = '(' .. ARGV[1] .. '-0' end
    entries = redis.call('xrevrange', KEYS[1], '+', low, 'COUNT', limit)
  else
    local low = '-'
    if ARGV[1] ~= '' then low = '(' .. ARGV[1] .. '-0' end
    entries = redis.call('xrange', KEYS[1], low, '+', 'COUNT', limit)
  end
  for _, e in ipairs(entries) do
    local id = e[1]
    out[#out + 1] = tonumber(string.sub(id, 1, string.find(id, '-') - 1))
    local fields = e[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'd' then out[#out + 1] = fields[i + 1] end
    end
  end
end
return out
",
    )
});

pub(crate) fn new_epoch() -> String {
    (0..8).map(|_| fastrand::alphanumeric()).collect()
}

fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => std::str::from_utf8(as_bytes(other)?).ok()?.parse().ok(),
    }
}

/// Parses the HISTORY script's reply into a page.
fn page(channel: &str, reply: Value) -> Result<HistoryPage, EngineError> {
    let Value::Array(items) = reply else {
        return Err(EngineError::Unavailable("unexpected history reply".into()));
    };
    let bad = || EngineError::Unavailable("malformed history reply".into());
    let top = items.first().and_then(as_u64).ok_or_else(bad)?;
    let epoch: Arc<str> = Arc::from(
        std::str::from_utf8(items.get(1).and_then(as_bytes).ok_or_else(bad)?).map_err(|_| bad())?,
    );
    let channel: Arc<str> = Arc::from(channel);
    let mut publications = Vec::new();
    for pair in items[2..].chunks(2) {
        let [offset, blob] = pair else {
            return Err(bad());
        };
        let offset = as_u64(offset).ok_or_else(bad)?;
        let Some((emit, publisher, _)) = as_bytes(blob).and_then(decode_pub) else {
            continue;
        };
        publications.push(Publication {
            channel: channel.clone(),
            offset,
            epoch: epoch.clone(),
            payload: emit.payload,
            publisher,
            event: emit.event,
        });
    }
    Ok(HistoryPage {
        publications,
        position: StreamPosition { offset: top, epoch },
    })
}

/// Splits a pub/sub message `offset:epoch:blob`.
pub(crate) fn split_message(bytes: &[u8]) -> Option<(u64, &str, &[u8])> {
    let first = bytes.iter().position(|b| *b == b':')?;
    let offset = std::str::from_utf8(&bytes[..first]).ok()?.parse().ok()?;
    let rest = &bytes[first + 1..];
    let second = rest.iter().position(|b| *b == b':')?;
    let epoch = std::str::from_utf8(&rest[..second]).ok()?;
    Some((offset, epoch, &rest[second + 1..]))
}

pub(crate) enum Command {
    Subscribe(String, oneshot::Sender<Result<(), EngineError>>),
    Unsubscribe(String),
}

/// Subscribe and unsubscribe commands taken together.
pub(crate) struct Batch {
    /// Channels to subscribe, and who waits for each.
    pub(crate) subscribe: Vec<String>,
    pub(crate) acks: Vec<oneshot::Sender<Result<(), EngineError>>>,
    /// Channels to unsubscribe (not wanted again meanwhile).
    pub(crate) unsubscribe: Vec<String>,
}

impl Batch {
    /// `first` and the commands queued after it, up to `SUBSCRIBE_BATCH` channels.
    pub(crate) fn take(
        first: Command,
        commands: &mut mpsc::Receiver<Command>,
        state: &State,
    ) -> Batch {
        let mut batch = Batch {
            subscribe: Vec::new(),
            acks: Vec::new(),
            unsubscribe: Vec::new(),
        };
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Subscribe(ch, ack) => {
                    batch.subscribe.push(ch);
                    batch.acks.push(ack);
                }
                Command::Unsubscribe(ch) => {
                    // Still wanted (re-subscribed meanwhile)? Then keep it. (`halt` sends "".)
                    if !ch.is_empty() && !state.channels.lock().unwrap().contains_key(&ch) {
                        batch.unsubscribe.push(ch);
                    }
                }
            }
            if batch.subscribe.len() + batch.unsubscribe.len() < SUBSCRIBE_BATCH {
                next = commands.try_recv().ok();
            }
        }
        batch
    }
}

/// A channel this node subscribed, and the last position it delivered.
#[derive(Default)]
pub(crate) struct ChannelState {
    pub(crate) last: Option<(Arc<str>, u64)>,
}

pub(crate) struct State {
    pub(crate) handler: OnceLock<Arc<dyn EngineHandler>>,
    pub(crate) node: OnceLock<NodeId>,
    pub(crate) channels: Mutex<HashMap<String, ChannelState>>,
    commands: mpsc::Sender<Command>,
    commands_rx: Mutex<Option<mpsc::Receiver<Command>>>,
    registry: mpsc::Sender<(bool, u64)>,
    registry_rx: Mutex<Option<mpsc::Receiver<(bool, u64)>>>,
    /// Connections open on this node (rewritten to Redis after an outage).
    local_conns: Mutex<HashSet<u64>>,
    pubsub_healthy: AtomicBool,
    /// True once the pub/sub connection first subscribed the control channel.
    ready: tokio::sync::watch::Sender<bool>,
    health_detail: Mutex<String>,
    pub(crate) reconnects: AtomicU64,
    /// Barriers waiting for their marker to come back through pub/sub (`settle`), bounded by
    /// the callers (one per shutdown).
    pub(crate) barriers: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    /// On a cluster, the connection holding this node's sharded subscriptions.
    pub(crate) cluster_pubsub: Mutex<Option<redis::cluster_async::ClusterConnection>>,
    pub(crate) next_barrier: AtomicU64,
}

/// Publications, history, control and routing over Redis.
pub struct RedisBroker {
    shared: Arc<Shared>,
    state: Arc<State>,
}

/// Pending subscribe/unsubscribe commands and registry updates, bounded.
const COMMAND_QUEUE: usize = 65_536;
/// Channels per SUBSCRIBE command when (re)subscribing many.
const SUBSCRIBE_BATCH: usize = 512;

impl RedisBroker {
    pub(crate) fn new(shared: Arc<Shared>) -> RedisBroker {
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (registry, registry_rx) = mpsc::channel(COMMAND_QUEUE);
        RedisBroker {
            shared,
            state: Arc::new(State {
                handler: OnceLock::new(),
                node: OnceLock::new(),
                channels: Mutex::new(HashMap::new()),
                commands,
                commands_rx: Mutex::new(Some(commands_rx)),
                registry,
                registry_rx: Mutex::new(Some(registry_rx)),
                local_conns: Mutex::new(HashSet::new()),
                pubsub_healthy: AtomicBool::new(false),
                ready: tokio::sync::watch::Sender::new(false),
                health_detail: Mutex::new("starting".into()),
                reconnects: AtomicU64::new(0),
                barriers: Mutex::new(HashMap::new()),
                cluster_pubsub: Mutex::new(None),
                next_barrier: AtomicU64::new(1),
            }),
        }
    }

    /// Stops every background task of this engine at once, without cleaning anything up — what
    /// the rest of the cluster sees when a node's process dies. For failure tests.
    pub fn halt(&self) {
        self.shared.halted.store(true, Ordering::Relaxed);
        let _ = self
            .state
            .commands
            .try_send(Command::Unsubscribe(String::new()));
        let _ = self.state.registry.try_send((false, u64::MAX));
    }

    /// `PUBLISH`, or on a cluster `SPUBLISH` (sharded pub/sub).
    fn publish_command(&self) -> &'static str {
        if self.shared.cluster() {
            "spublish"
        } else {
            "publish"
        }
    }

    /// How many times the pub/sub connection was replaced (on a cluster: a shard's
    /// connection was lost).
    pub fn pubsub_reconnects(&self) -> u64 {
        self.state.reconnects.load(Ordering::Relaxed)
    }

    async fn read(
        &self,
        channel: &str,
        since: Option<u64>,
        limit: usize,
        reverse: bool,
    ) -> Result<HistoryPage, EngineError> {
        let keys = &self.shared.keys;
        let reply: Value = self
            .shared
            .run(
                HISTORY
                    .key(keys.stream(channel))
                    .key(keys.meta(channel))
                    .arg(since.map(|s| s.to_string()).unwrap_or_default())
                    .arg(limit)
                    .arg(if reverse { "1" } else { "0" })
                    .arg(new_epoch())
                    .arg(self.shared.config.stream_meta_ttl.as_millis() as u64)
                    .invoke_async(&mut self.shared.conn()),
            )
            .await?;
        page(channel, reply)
    }
}

#[async_trait]
impl Broker for RedisBroker {
    fn run(&self, node: NodeId, handler: Arc<dyn EngineHandler>) {
        let _ = self.state.handler.set(handler);
        let _ = self.state.node.set(node);
        if let Some(rx) = self.state.commands_rx.lock().unwrap().take() {
            tokio::spawn(pubsub_task(self.shared.clone(), self.state.clone(), rx));
        }
        if let Some(rx) = self.state.registry_rx.lock().unwrap().take() {
            tokio::spawn(registry_task(
                self.shared.clone(),
                self.state.clone(),
                node,
                rx,
            ));
        }
    }

    async fn publish(
        &self,
        channel: &str,
        payload: Payload,
        publisher: Option<ClientInfo>,
        options: PublishOptions,
    ) -> Result<StreamPosition, EngineError> {
        let keys = &self.shared.keys;
        let blob = encode_pub(
            &payload,
            options.event.as_deref(),
            publisher.as_ref(),
            options.exclude.as_deref(),
        );
        let (size, ttl) = options
            .history
            .map_or((0, Duration::ZERO), |h| (h.size, h.ttl));
        let (offset, epoch): (u64, String) = self
            .shared
            .run(
                PUBLISH
                    .key(keys.stream(channel))
                    .key(keys.meta(channel))
                    .arg(blob)
                    .arg(size)
                    .arg(ttl.as_millis().max(1) as u64)
                    .arg(self.shared.config.stream_meta_ttl.max(ttl).as_millis() as u64)
                    .arg(keys.pubsub(channel))
                    .arg(new_epoch())
                    .arg(self.publish_command())
                    .invoke_async(&mut self.shared.conn()),
            )
            .await?;
        Ok(StreamPosition {
            offset,
            epoch: Arc::from(epoch),
        })
    }

    async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.state
            .channels
            .lock()
            .unwrap()
            .entry(channel.to_owned())
            .or_default();
        let (tx, rx) = oneshot::channel();
        self.state
            .commands
            .try_send(Command::Subscribe(channel.to_owned(), tx))
            .map_err(|_| EngineError::Unavailable("subscribe queue full".into()))?;
        match tokio::time::timeout(self.shared.config.command_timeout, rx).await {
            Ok(Ok(result)) => result,
            _ => Err(EngineError::Unavailable("redis subscribe timed out".into())),
        }
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
        self.state.channels.lock().unwrap().remove(channel);
        self.state
            .commands
            .try_send(Command::Unsubscribe(channel.to_owned()))
            .map_err(|_| EngineError::Unavailable("unsubscribe queue full".into()))
    }

    async fn position(&self, channel: &str) -> Result<StreamPosition, EngineError> {
        Ok(self.read(channel, None, 0, false).await?.position)
    }

    async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage, EngineError> {
        self.read(channel, query.since, query.limit, query.reverse)
            .await
    }

    async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
        let mut conn = self.shared.conn();
        self.shared
            .run(conn.del::<_, ()>(self.shared.keys.stream(channel)))
            .await
    }

    /// Redis sends a subscriber the messages of every channel in the order it ran the PUBLISH
    /// commands, so once a marker published now comes back on this node's barrier channel,
    /// every publication and control message accepted before it has been delivered.
    async fn settle(&self) -> Result<(), EngineError> {
        let Some(node) = self.state.node.get() else {
            return Ok(());
        };
        if self.shared.cluster() {
            return crate::cluster::settle(&self.shared, &self.state, *node).await;
        }
        let token = self.state.next_barrier.fetch_add(1, Ordering::Relaxed);
        let (done, arrived) = oneshot::channel();
        self.state.barriers.lock().unwrap().insert(token, done);
        let mut conn = self.shared.conn();
        let barrier = self.shared.keys.barrier(&node.to_string());
        let sent = self
            .shared
            .run(conn.publish::<_, _, ()>(barrier, token.to_string()))
            .await;
        let result = match sent {
            Ok(()) => tokio::time::timeout(self.shared.config.command_timeout, arrived)
                .await
                .map_err(|_| EngineError::Unavailable("the barrier did not come back".into()))
                .and_then(|r| {
                    r.map_err(|_| EngineError::Unavailable("pub/sub reconnected".into()))
                }),
            Err(e) => Err(e),
        };
        self.state.barriers.lock().unwrap().remove(&token);
        result
    }

    async fn control(&self, control: Control) -> Result<(), EngineError> {
        // Just started: this node's own control subscription is not there yet (on a cluster
        // that takes a moment), and what is published before it would not reach its own
        // connections. Wait for it (bounded).
        if self.state.handler.get().is_some() && !*self.state.ready.borrow() {
            let mut ready = self.state.ready.subscribe();
            let wait = ready.wait_for(|ready| *ready);
            let _ = tokio::time::timeout(self.shared.config.command_timeout, wait).await;
        }
        let mut conn = self.shared.conn();
        self.shared
            .run(
                redis::cmd(self.publish_command())
                    .arg(self.shared.keys.control())
                    .arg(encode_control(&control))
                    .query_async::<()>(&mut conn),
            )
            .await
    }

    async fn remote_connection_exists(&self, conn: ConnId) -> Result<bool, EngineError> {
        let node = conn.node.to_string();
        let mut c = self.shared.conn();
        let (alive, member): (bool, bool) = self
            .shared
            .run(
                redis::pipe()
                    .exists(self.shared.keys.node(&node))
                    .sismember(self.shared.keys.node_conns(&node), conn.seq)
                    .query_async(&mut c),
            )
            .await?;
        Ok(alive && member)
    }

    fn connection_opened(&self, conn: ConnId) {
        self.state.local_conns.lock().unwrap().insert(conn.seq);
        let _ = self.state.registry.try_send((true, conn.seq));
    }

    fn connection_closed(&self, conn: ConnId) {
        self.state.local_conns.lock().unwrap().remove(&conn.seq);
        let _ = self.state.registry.try_send((false, conn.seq));
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, EngineError> {
        let mut conn = self.shared.conn();
        let mut keys: Vec<String> = Vec::new();
        if self.shared.cluster() {
            return crate::cluster::nodes(&self.shared).await;
        }
        let mut iter: redis::AsyncIter<String> = self
            .shared
            .run(conn.scan_match(self.shared.keys.node_pattern()))
            .await?;
        while let Some(key) = iter.next().await {
            keys.push(key.map_err(unavailable)?);
            if keys.len() >= 10_000 {
                break;
            }
        }
        drop(iter);
        let mut nodes = Vec::new();
        for key in keys {
            let value: Option<String> = self.shared.run(conn.get(&key)).await?;
            let Some(value) = value else { continue };
            let info: serde_json::Value = serde_json::from_str(&value).unwrap_or_default();
            nodes.push(NodeInfo {
                id: key.rsplit(':').next().unwrap_or_default().to_owned(),
                connections: info["connections"].as_u64().unwrap_or(0),
                seen_ms: info["seen_ms"].as_u64().unwrap_or(0),
            });
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    fn health(&self) -> EngineHealth {
        EngineHealth {
            healthy: self.state.pubsub_healthy.load(Ordering::Relaxed),
            detail: self.state.health_detail.lock().unwrap().clone(),
        }
    }
}

impl State {
    pub(crate) fn set_health(&self, healthy: bool, detail: impl Into<String>) {
        self.pubsub_healthy.store(healthy, Ordering::Relaxed);
        if healthy {
            self.ready
                .send_if_modified(|ready| !std::mem::replace(ready, true));
        }
        *self.health_detail.lock().unwrap() = detail.into();
    }

    /// Hands a pub/sub message over: a barrier's marker (`barrier`), a control message (on
    /// `control`) or a publication.
    pub(crate) fn dispatch(
        &self,
        keys: &crate::Keys,
        control: &str,
        barrier: bool,
        name: &str,
        payload: &[u8],
    ) {
        if barrier {
            let token = std::str::from_utf8(payload)
                .ok()
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(done) = token.and_then(|t| self.barriers.lock().unwrap().remove(&t)) {
                let _ = done.send(());
            }
        } else if name == control {
            match decode_control(payload) {
                Some(control) => {
                    if let Some(h) = self.handler.get() {
                        h.control(control)
                    }
                }
                None => tracing::warn!("undecodable control message"),
            }
        } else if let Some(channel) = keys.channel_of(name) {
            match split_message(payload) {
                Some((offset, epoch, blob)) => self.deliver(channel, offset, epoch, blob),
                None => tracing::warn!(%channel, "malformed publication message"),
            }
        }
    }

    /// Delivers a publication to the node once, in offset order per channel.
    pub(crate) fn deliver(&self, channel: &str, offset: u64, epoch: &str, blob: &[u8]) {
        let Some(handler) = self.handler.get() else {
            return;
        };
        let epoch: Arc<str> = {
            let mut channels = self.channels.lock().unwrap();
            let Some(state) = channels.get_mut(channel) else {
                return;
            };
            if let Some((e, last)) = &state.last
                && **e == *epoch
                && offset <= *last
            {
                return;
            }
            let epoch: Arc<str> = match &state.last {
                Some((e, _)) if **e == *epoch => e.clone(),
                _ => Arc::from(epoch),
            };
            state.last = Some((epoch.clone(), offset));
            epoch
        };
        let Some((emit, publisher, exclude)) = decode_pub(blob) else {
            tracing::warn!(%channel, offset, "undecodable publication");
            return;
        };
        let publication = Publication {
            channel: Arc::from(channel),
            offset,
            epoch,
            payload: emit.payload,
            publisher,
            event: emit.event,
        };
        handler.publication(&publication, exclude.as_ref());
    }
}

/// Owns the pub/sub connection (on a cluster, the sharded one: `crate::cluster::serve`):
/// (re)connects with backoff, subscribes in batches from our own registry, processes messages
/// in order, probes an idle connection, and after a gap reads what was missed back from the
/// streams.
async fn pubsub_task(
    shared: Arc<Shared>,
    state: Arc<State>,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut delay = Duration::from_millis(50);
    let mut first = true;
    loop {
        let result = if shared.cluster() {
            crate::cluster::serve(&shared, &state, &mut commands, !first).await
        } else {
            serve_pubsub(&shared, &state, &mut commands, !first).await
        };
        if shared.halted() {
            return;
        }
        if let Err(e) = &result {
            tracing::warn!(error = %e, "redis pub/sub connection lost; reconnecting");
            state.set_health(false, format!("pub/sub: {e}"));
        }
        first = false;
        state.reconnects.fetch_add(1, Ordering::Relaxed);
        // Subscribes queued meanwhile fail fast instead of waiting for their timeout.
        while let Ok(cmd) = commands.try_recv() {
            if let Command::Subscribe(_, ack) = cmd {
                let _ = ack.send(Err(EngineError::Unavailable(
                    "redis pub/sub is reconnecting".into(),
                )));
            }
        }
        let jitter = Duration::from_millis(fastrand::u64(0..=delay.as_millis() as u64 / 2));
        tokio::time::sleep(delay + jitter).await;
        delay = (delay * 2).min(Duration::from_secs(2));
        if result.is_ok() {
            delay = Duration::from_millis(50);
        }
    }
}

async fn serve_pubsub(
    shared: &Shared,
    state: &State,
    commands: &mut mpsc::Receiver<Command>,
    after_gap: bool,
) -> Result<(), String> {
    let timeout = shared.config.command_timeout;
    let client = tokio::time::timeout(timeout, shared.backend.pubsub_client())
        .await
        .map_err(|_| "finding the master timed out".to_owned())??;
    let pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let (mut sink, mut stream) = pubsub.split();
    let keys = &shared.keys;
    sink.subscribe(keys.control())
        .await
        .map_err(|e| e.to_string())?;
    let barrier = state
        .node
        .get()
        .map(|node| keys.barrier(&node.to_string()))
        .unwrap_or_default();
    if !barrier.is_empty() {
        sink.subscribe(&barrier).await.map_err(|e| e.to_string())?;
    }
    let channels: Vec<String> = state.channels.lock().unwrap().keys().cloned().collect();
    for batch in channels.chunks(SUBSCRIBE_BATCH) {
        let names: Vec<String> = batch.iter().map(|c| keys.pubsub(c)).collect();
        sink.subscribe(names).await.map_err(|e| e.to_string())?;
    }
    if after_gap {
        // Publications made while we were not subscribed are in the streams: deliver them
        // before anything that arrives live (which waits in `stream` meanwhile).
        for channel in &channels {
            repair(shared, state, channel).await;
        }
    }
    state.set_health(true, "connected");
    let control = keys.control();
    let mut probe = tokio::time::interval(shared.config.probe_interval);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    probe.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return Err("pub/sub connection closed".into()) };
                let name = message.get_channel_name();
                state.dispatch(keys, &control, name == barrier, name, message.get_payload_bytes());
            }
            command = commands.recv() => {
                let Some(command) = command else { return Ok(()) };
                if shared.halted() {
                    return Ok(());
                }
                // Take every queued command: one SUBSCRIBE / UNSUBSCRIBE per batch.
                let Batch { subscribe, acks, unsubscribe } = Batch::take(command, commands, state);
                let subscribe: Vec<String> = subscribe.iter().map(|c| keys.pubsub(c)).collect();
                let unsubscribe: Vec<String> = unsubscribe.iter().map(|c| keys.pubsub(c)).collect();
                if !unsubscribe.is_empty() {
                    sink.unsubscribe(unsubscribe).await.map_err(|e| e.to_string())?;
                }
                if !subscribe.is_empty() {
                    let result = sink.subscribe(subscribe).await.map_err(|e| e.to_string());
                    let failed = result.is_err();
                    for ack in acks {
                        let _ = ack.send(result.clone().map_err(EngineError::Unavailable));
                    }
                    result?;
                    debug_assert!(!failed);
                }
            }
            _ = probe.tick() => {
                match tokio::time::timeout(shared.config.probe_timeout, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(format!("probe failed: {e}")),
                    Err(_) => return Err("probe timed out: the pub/sub connection is silently dead".into()),
                }
            }
        }
    }
}

/// Reads back, from the channel's stream, what was published after the last position delivered.
pub(crate) async fn repair(shared: &Shared, state: &State, channel: &str) {
    if plexus_core::records::record_id(channel).is_some() {
        // A record has no stream: the node reads the record itself.
        if let Some(handler) = state.handler.get() {
            handler.stream_lost(channel);
        }
        return;
    }
    let last = state
        .channels
        .lock()
        .unwrap()
        .get(channel)
        .and_then(|s| s.last.clone());
    let Some((epoch, offset)) = last else { return };
    let keys = &shared.keys;
    let reply: Result<Value, EngineError> = shared
        .run(
            HISTORY
                .key(keys.stream(channel))
                .key(keys.meta(channel))
                .arg(offset.to_string())
                .arg(shared.config.repair_max_publications)
                .arg("0")
                .arg(new_epoch())
                .arg(shared.config.stream_meta_ttl.as_millis() as u64)
                .invoke_async(&mut shared.conn()),
        )
        .await;
    let page = match reply.and_then(|r| page(channel, r)) {
        Ok(page) => page,
        Err(e) => {
            tracing::warn!(%channel, error = %e, "repair read failed");
            return;
        }
    };
    if page.position.epoch != epoch {
        return; // The history was lost: the node sees the new epoch and subscribers resubscribe.
    }
    let Some(handler) = state.handler.get() else {
        return;
    };
    for publication in page.publications {
        {
            let mut channels = state.channels.lock().unwrap();
            let Some(s) = channels.get_mut(channel) else {
                return;
            };
            if s.last
                .as_ref()
                .is_some_and(|(_, last)| publication.offset <= *last)
            {
                continue;
            }
            s.last = Some((publication.epoch.clone(), publication.offset));
        }
        handler.publication(&publication, None);
    }
}

/// Announces this node, and keeps the registry of its connections (in order of open/close).
async fn registry_task(
    shared: Arc<Shared>,
    state: Arc<State>,
    node: NodeId,
    mut ops: mpsc::Receiver<(bool, u64)>,
) {
    let node = node.to_string();
    let node_key = shared.keys.node(&node);
    let conns_key = shared.keys.node_conns(&node);
    let ttl_ms = shared.config.node_ttl.as_millis() as u64;
    let mut tick = tokio::time::interval(shared.config.node_ttl / 3);
    let mut dirty = true;
    loop {
        tokio::select! {
            op = ops.recv() => {
                let Some(first) = op else { return };
                if shared.halted() {
                    return;
                }
                let mut pipe = redis::pipe();
                let mut next = Some(first);
                let mut n = 0;
                while let Some((open, seq)) = next.take() {
                    if open { pipe.sadd(&conns_key, seq).ignore(); } else { pipe.srem(&conns_key, seq).ignore(); }
                    n += 1;
                    if n < 1000 {
                        next = ops.try_recv().ok();
                    }
                }
                pipe.pexpire(&conns_key, ttl_ms as i64).ignore();
                if shared.run(pipe.query_async::<()>(&mut shared.conn())).await.is_err() {
                    dirty = true;
                }
            }
            _ = tick.tick() => {
                if shared.halted() {
                    return;
                }
                let count = state.local_conns.lock().unwrap().len();
                let info = serde_json::json!({"connections": count, "seen_ms": now_ms()}).to_string();
                let mut pipe = redis::pipe();
                pipe.cmd("SET").arg(&node_key).arg(info).arg("PX").arg(ttl_ms).ignore();
                if dirty {
                    // After an outage the registry may be stale: write it whole again.
                    let conns: Vec<u64> = state.local_conns.lock().unwrap().iter().copied().collect();
                    pipe.del(&conns_key).ignore();
                    for chunk in conns.chunks(1000) {
                        pipe.sadd(&conns_key, chunk).ignore();
                    }
                }
                pipe.pexpire(&conns_key, ttl_ms as i64).ignore();
                dirty = shared.run(pipe.query_async::<()>(&mut shared.conn())).await.is_err();
                if shared.cluster() && !dirty {
                    // A SCAN sees one master: on a cluster the live nodes are indexed.
                    dirty = crate::cluster::announce(&shared, &node).await.is_err();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_into_offset_epoch_and_blob() {
        assert_eq!(
            split_message(b"12:abc:\x00:\x01"),
            Some((12, "abc", &b"\x00:\x01"[..]))
        );
        assert_eq!(split_message(b"x:abc:"), None);
        assert_eq!(split_message(b"12"), None);
    }
}
