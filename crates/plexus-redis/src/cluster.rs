//! The engine on a Redis Cluster: cross-node delivery through sharded pub/sub.
//!
//! Every publication is `SPUBLISH`ed by the publish script on the shard channel
//! `{prefix}:ch:{channel}`, which shares its slot with the channel's stream and meta, so the
//! script touches one slot. A node keeps one RESP3 cluster connection for its subscriptions: the
//! redis crate sends each `SSUBSCRIBE` to the master of the channel's slot and keeps the set of
//! subscriptions. When a shard's connection is lost, a keyed command per slot of the subscribed
//! channels (every 250 ms, at most 2 minutes) makes the crate discover the new topology even if
//! this node has nothing else to send there; once every slot answers, the node subscribes every
//! channel again (the crate does not always move a subscription off a failed master by itself;
//! subscribing twice on one connection is a no-op). Every confirmation of a subscription
//! (`ssubscribe` push) of a channel that already delivered something is followed, before any
//! later message of that connection, by a read of the channel's stream since the last offset
//! delivered: what was published while the shard was unreachable is delivered from the stream,
//! once, in order.

use crate::broker::{Batch, Command, State, repair};
use crate::{Shared, cluster_builder, now_ms};
use plexus_core::NodeId;
use plexus_core::engine::{EngineError, NodeInfo};
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Subscriptions sent at once (each `SSUBSCRIBE` names one channel: channels of one command
/// must share a slot).
const SUBSCRIBE_CONCURRENCY: usize = 64;
/// Live nodes listed at most.
const MAX_NODES: usize = 10_000;

/// CRC16/XMODEM, the hash of Redis Cluster slots.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in data {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of a key: the hash of its hash tag (`{…}`, first `{` to the next `}`, when not
/// empty), else of the whole key.
pub(crate) fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

/// One life of this node's sharded subscriptions (the broker's pub/sub task reconnects with
/// backoff): connects the RESP3 cluster connection, subscribes in parallel, delivers in order
/// per connection, repairs from the streams after a shard's loss.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    state: &Arc<State>,
    commands: &mut mpsc::Receiver<Command>,
    after_gap: bool,
) -> Result<(), String> {
    let keys = &shared.keys;
    // Unbounded as the crate's own push channel is: this task only decodes and hands over.
    let (push_tx, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
    let client = cluster_builder(&shared.config)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(push_tx)
        .build()
        .map_err(|e| e.to_string())?;
    let timeout = shared.config.command_timeout;
    let mut conn = tokio::time::timeout(timeout, client.get_async_connection())
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let node = state.node.get().map(|n| n.to_string()).unwrap_or_default();
    let control = keys.control();
    let control_barrier = keys.control_barrier(&node);
    let barrier_prefix = keys.barrier_prefix();
    for name in [&control, &control_barrier] {
        tokio::time::timeout(timeout, conn.ssubscribe(name))
            .await
            .map_err(|_| "subscribe timed out".to_owned())?
            .map_err(|e| e.to_string())?;
    }
    let channels: Vec<String> = state.channels.lock().unwrap().keys().cloned().collect();
    subscribe_all(shared, &conn, &channels)
        .await
        .map_err(|e| e.to_string())?;
    if after_gap {
        for channel in &channels {
            repair(shared, state, channel).await;
        }
    }
    state.set_health(true, "connected (cluster)");
    *state.cluster_pubsub.lock().unwrap() = Some(conn.clone());
    // A shard was lost: the keyed commands of this task lead the crate to the new topology.
    let (kick_tx, kick_rx) = mpsc::channel::<()>(1);
    let (followed_tx, mut followed) = mpsc::channel::<()>(1);
    let _kicker = AbortOnDrop(tokio::spawn(kick_task(
        shared.clone(),
        state.clone(),
        conn.clone(),
        kick_rx,
        followed_tx,
    )));
    loop {
        tokio::select! {
            push = pushes.recv() => {
                let Some(push) = push else { return Err("push channel closed".into()) };
                match push.kind {
                    PushKind::SMessage | PushKind::Message => {
                        let (Some(name), Some(payload)) = (push.data.first().and_then(bytes), push.data.get(1).and_then(bytes)) else { continue };
                        let Ok(name) = std::str::from_utf8(name) else { continue };
                        let barrier = name == control_barrier || name.starts_with(&barrier_prefix);
                        state.dispatch(keys, &control, barrier, name, payload);
                    }
                    PushKind::SSubscribe => {
                        // (Re)subscribed: what was published before is in the stream; later
                        // messages of this connection wait in `pushes` meanwhile.
                        let Some(name) = push.data.first().and_then(bytes) else { continue };
                        let Some(channel) = std::str::from_utf8(name).ok().and_then(|n| keys.channel_of(n)) else { continue };
                        let known = state.channels.lock().unwrap().get(channel).is_some_and(|s| s.last.is_some());
                        if known {
                            repair(shared, state, channel).await;
                        }
                    }
                    PushKind::Disconnection => {
                        state.reconnects.fetch_add(1, Ordering::Relaxed);
                        let _ = kick_tx.try_send(());
                    }
                    _ => {}
                }
            }
            Some(()) = followed.recv() => {
                // Every slot answers again: subscribe every channel once more (the crate does
                // not always move a subscription off a failed master); each confirmation is
                // followed by its repair above. Subscribing twice on one connection is a no-op.
                let channels: Vec<String> = state.channels.lock().unwrap().keys().cloned().collect();
                let mut names = vec![control.clone(), control_barrier.clone()];
                names.extend(channels.iter().map(|c| keys.pubsub(c)));
                if let Err(e) = subscribe_names(shared, &conn, names).await {
                    tracing::warn!(error = %e, "resubscribing after a shard's loss failed; retrying");
                    let _ = kick_tx.try_send(());
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { return Ok(()) };
                if shared.halted() {
                    return Ok(());
                }
                let Batch { subscribe, acks, unsubscribe } = Batch::take(command, commands, state);
                for channel in unsubscribe {
                    let _ = tokio::time::timeout(timeout, conn.sunsubscribe(keys.pubsub(&channel))).await;
                }
                if !subscribe.is_empty() {
                    let result = subscribe_all(shared, &conn, &subscribe).await.map_err(|e| e.to_string());
                    for ack in acks {
                        let _ = ack.send(result.clone().map_err(EngineError::Unavailable));
                    }
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// After a shard's connection was lost: a keyed command (`EXISTS` of a channel's meta) per
/// slot of the subscribed channels, again every 250 ms while one fails (bounded: 2 minutes),
/// so the crate refreshes its slot map, reconnects to the slot's master and subscribes again.
async fn kick_task(
    shared: Arc<Shared>,
    state: Arc<State>,
    conn: ClusterConnection,
    mut lost: mpsc::Receiver<()>,
    followed: mpsc::Sender<()>,
) {
    use futures_util::StreamExt;
    while lost.recv().await.is_some() {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if shared.halted() {
                return;
            }
            let mut by_slot: HashMap<u16, String> = HashMap::new();
            let control = shared.keys.control();
            by_slot.insert(slot(control.as_bytes()), control);
            for channel in state.channels.lock().unwrap().keys() {
                let meta = shared.keys.meta(channel);
                by_slot.entry(slot(meta.as_bytes())).or_insert(meta);
            }
            let timeout = shared.config.command_timeout;
            let pending: Vec<_> = by_slot
                .into_values()
                .map(|key| {
                    let mut conn = conn.clone();
                    async move {
                        let mut cmd = redis::cmd("EXISTS");
                        cmd.arg(key);
                        let exists = cmd.query_async::<i64>(&mut conn);
                        !matches!(tokio::time::timeout(timeout, exists).await, Ok(Ok(_)))
                    }
                })
                .collect();
            let results: Vec<bool> = futures_util::stream::iter(pending)
                .buffer_unordered(SUBSCRIBE_CONCURRENCY)
                .collect()
                .await;
            let failed = results.into_iter().filter(|failed| *failed).count();
            if failed == 0 {
                state.set_health(true, "connected (cluster)");
                let _ = followed.try_send(());
                break;
            }
            state.set_health(
                false,
                format!("{failed} slot(s) unreachable; following the cluster"),
            );
            if Instant::now() > deadline {
                tracing::warn!(failed, "slots still unreachable after a shard's loss");
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // Losses reported meanwhile were covered by this pass.
        while lost.try_recv().is_ok() {}
    }
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Subscribes the channels, `SUBSCRIBE_CONCURRENCY` at a time; fails if one failed.
async fn subscribe_all(
    shared: &Shared,
    conn: &ClusterConnection,
    channels: &[String],
) -> redis::RedisResult<()> {
    let names = channels.iter().map(|c| shared.keys.pubsub(c)).collect();
    subscribe_names(shared, conn, names).await
}

/// Subscribes shard channels by name, `SUBSCRIBE_CONCURRENCY` at a time; fails if one failed.
async fn subscribe_names(
    shared: &Shared,
    conn: &ClusterConnection,
    names: Vec<String>,
) -> redis::RedisResult<()> {
    use futures_util::StreamExt;
    let timeout = shared.config.command_timeout;
    let pending: Vec<_> = names
        .into_iter()
        .map(|name| {
            let mut conn = conn.clone();
            async move {
                match tokio::time::timeout(timeout, conn.ssubscribe(name)).await {
                    Ok(result) => result,
                    Err(_) => Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "ssubscribe timed out",
                    ))),
                }
            }
        })
        .collect();
    let results: Vec<redis::RedisResult<()>> = futures_util::stream::iter(pending)
        .buffer_unordered(SUBSCRIBE_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The cluster's barrier: for each slot of the subscribed channels (and the control channel's),
/// a marker `SPUBLISH`ed in that slot comes back on the connection that carries the slot's
/// publications, after every publication accepted before it.
pub(crate) async fn settle(
    shared: &Arc<Shared>,
    state: &Arc<State>,
    node: NodeId,
) -> Result<(), EngineError> {
    use futures_util::StreamExt;
    let conn = state
        .cluster_pubsub
        .lock()
        .unwrap()
        .clone()
        .ok_or_else(|| EngineError::Unavailable("cluster pub/sub not connected".into()))?;
    let node = node.to_string();
    let keys = &shared.keys;
    let mut barriers: HashMap<u16, String> = HashMap::new();
    let control = keys.control_barrier(&node);
    barriers.insert(slot(control.as_bytes()), control);
    for channel in state.channels.lock().unwrap().keys() {
        let name = keys.slot_barrier(channel, &node);
        barriers.entry(slot(name.as_bytes())).or_insert(name);
    }
    let pending: Vec<_> = barriers
        .into_values()
        .map(|name| barrier(shared, state, conn.clone(), name))
        .collect();
    let results: Vec<Result<(), EngineError>> = futures_util::stream::iter(pending)
        .buffer_unordered(SUBSCRIBE_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// One slot's barrier: subscribe its channel (the control barrier stays subscribed), publish a
/// marker, wait for it.
async fn barrier(
    shared: &Shared,
    state: &State,
    mut conn: ClusterConnection,
    name: String,
) -> Result<(), EngineError> {
    let timeout = shared.config.command_timeout;
    let temporary = name.starts_with(&shared.keys.barrier_prefix());
    if temporary {
        shared.run(conn.ssubscribe(&name)).await?;
    }
    let token = state.next_barrier.fetch_add(1, Ordering::Relaxed);
    let (done, arrived) = oneshot::channel();
    state.barriers.lock().unwrap().insert(token, done);
    let sent = shared
        .run(
            redis::cmd("SPUBLISH")
                .arg(&name)
                .arg(token.to_string())
                .query_async::<()>(&mut shared.conn()),
        )
        .await;
    let result = match sent {
        Ok(()) => tokio::time::timeout(timeout, arrived)
            .await
            .map_err(|_| EngineError::Unavailable("the barrier did not come back".into()))
            .and_then(|r| r.map_err(|_| EngineError::Unavailable("pub/sub reconnected".into()))),
        Err(e) => Err(e),
    };
    state.barriers.lock().unwrap().remove(&token);
    if temporary {
        let _ = tokio::time::timeout(timeout, conn.sunsubscribe(&name)).await;
    }
    result
}

/// Announces a live node in the index of nodes (and forgets the ones dead for long).
pub(crate) async fn announce(shared: &Shared, node: &str) -> Result<(), EngineError> {
    let now = now_ms();
    let dead_before = now.saturating_sub(shared.config.node_ttl.as_millis() as u64 * 4);
    let index = shared.keys.node_index();
    let mut pipe = redis::pipe();
    pipe.zadd(&index, node, now)
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(&index)
        .arg("-inf")
        .arg(dead_before)
        .ignore()
        .cmd("ZREMRANGEBYRANK")
        .arg(&index)
        .arg(0)
        .arg(-(MAX_NODES as i64) - 1)
        .ignore();
    shared.run(pipe.query_async::<()>(&mut shared.conn())).await
}

/// The live nodes, from the index (a node is live while its own key exists).
pub(crate) async fn nodes(shared: &Shared) -> Result<Vec<NodeInfo>, EngineError> {
    let mut conn = shared.conn();
    let ids: Vec<String> = shared
        .run(
            redis::cmd("ZRANGE")
                .arg(shared.keys.node_index())
                .arg(0)
                .arg(MAX_NODES - 1)
                .query_async(&mut conn),
        )
        .await?;
    let mut nodes = Vec::new();
    for id in ids {
        let value: Option<String> = shared
            .run(
                redis::cmd("GET")
                    .arg(shared.keys.node(&id))
                    .query_async(&mut conn),
            )
            .await?;
        let Some(value) = value else { continue };
        let info: serde_json::Value = serde_json::from_str(&value).unwrap_or_default();
        nodes.push(NodeInfo {
            id,
            connections: info["connections"].as_u64().unwrap_or(0),
            seen_ms: info["seen_ms"].as_u64().unwrap_or(0),
        });
    }
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_tag() {
        // Values from the Redis Cluster specification / CLUSTER KEYSLOT.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        // An empty tag is no tag: the whole key is hashed.
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        assert_eq!(slot(b"a:stream:{room}"), slot(b"a:ch:{room}"));
    }
}
