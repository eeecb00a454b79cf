//! Plexus nodes on a real Redis Cluster (3 masters, 3 replicas on loopback): delivery between
//! nodes through sharded pub/sub on every shard, and a master killed mid-stream (its replica
//! promoted) while subscribers in a recovery namespace receive every offset exactly once.
//! The same failover behind Redis Sentinel (`redis+sentinel://`). Each test starts its own
//! cluster or sentinel set-up (it kills nodes of it).

mod common;

use common::*;
use plexus_core::auth::UpgradeDecision;
use plexus_core::{Identity, Payload, UpgradeRequest};
use plexus_protocol::Encoding;
use plexus_protocol::client::{Op, SubscribeParams};
use plexus_protocol::server::SubscribeResult;
use plexus_redis::testing::RedisCluster;
use plexus_server::RunningServer;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

async fn cluster_node(cluster: &RedisCluster, prefix: &str) -> RunningServer {
    let mut config = redis_config("", prefix);
    config.cluster = cluster.urls();
    node_on(config).await
}

async fn node_on(config: plexus_redis::RedisConfig) -> RunningServer {
    let engine = plexus_redis::redis_engine(config)
        .await
        .expect("redis engine");
    let builder = plexus_server::Server::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .dev_mode()
        .channels(recovering_policy())
        .engine(engine)
        .upgrade_hook(|req: Arc<UpgradeRequest>| async move {
            UpgradeDecision::Accept(req.query_param("user").map(Identity::new))
        });
    let server = start_as_is(builder).await;
    wait_healthy(&server).await;
    server
}

fn start_cluster() -> RedisCluster {
    RedisCluster::start(3, 1).expect("a 3+3 redis cluster starts")
}

/// Channels whose streams are served by each of the three masters.
fn channels_on_every_master(
    cluster: &RedisCluster,
    prefix: &str,
    per_master: usize,
) -> Vec<String> {
    let mut by_master: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
    for i in 0.. {
        let channel = format!("ch{i}");
        let slot = cluster
            .slot_of(&format!("{prefix}:stream:{{{channel}}}"))
            .unwrap();
        let master = cluster.master_of_slot(slot).unwrap();
        let list = by_master.entry(master).or_default();
        if list.len() < per_master {
            list.push(channel);
        }
        if by_master.len() == 3 && by_master.values().all(|l| l.len() == per_master) {
            break;
        }
        assert!(i < 10_000, "slots not spread over three masters");
    }
    by_master.into_values().flatten().collect()
}

async fn subscribe(server: &RunningServer, enc: Encoding, channel: &str) -> TestClient {
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    let r: SubscribeResult = c
        .request(Op::Subscribe(SubscribeParams::new(channel)))
        .await
        .unwrap();
    assert_eq!(r.offset, 0);
    c
}

/// The live nodes' ids, as `server`'s engine lists them.
async fn live_nodes(server: &RunningServer) -> Vec<String> {
    let nodes = server.node().engine().broker.nodes().await.unwrap();
    nodes.into_iter().map(|n| n.id).collect()
}

/// On each channel, a JSON subscriber on `a` and a MessagePack one on `b`.
async fn subscribe_on_both(
    a: &RunningServer,
    b: &RunningServer,
    channels: &[String],
) -> Vec<(String, TestClient)> {
    let mut subs = Vec::new();
    for channel in channels {
        subs.push((channel.clone(), subscribe(a, Encoding::Json, channel).await));
        subs.push((
            channel.clone(),
            subscribe(b, Encoding::Msgpack, channel).await,
        ));
    }
    subs
}

#[tokio::test]
async fn publications_reach_every_node_through_sharded_pubsub_on_every_shard() {
    let cluster = start_cluster();
    let prefix = plexus_redis::testing::unique_prefix();
    let a = cluster_node(&cluster, &prefix).await;
    let b = cluster_node(&cluster, &prefix).await;
    let channels = channels_on_every_master(&cluster, &prefix, 2);
    let mut subs = Vec::new();
    for channel in &channels {
        subs.push((
            channel.clone(),
            subscribe(&b, Encoding::Msgpack, channel).await,
        ));
    }
    for channel in &channels {
        for i in 0..5 {
            a.node()
                .publish(channel, Payload::json(&serde_json::json!(i)).unwrap())
                .await
                .unwrap();
        }
    }
    for (channel, c) in &mut subs {
        assert_eq!(offsets_until(c, channel, 5).await, vec![1, 2, 3, 4, 5]);
    }
    // The node registry on the cluster: both nodes are listed from either.
    let listed: BTreeSet<String> = live_nodes(&b).await.into_iter().collect();
    let expected: BTreeSet<String> = [a.node().id().to_string(), b.node().id().to_string()]
        .into_iter()
        .collect();
    assert_eq!(listed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_stream_loses_nothing_for_recovering_subscribers() {
    let mut cluster = start_cluster();
    let prefix = plexus_redis::testing::unique_prefix();
    let a = cluster_node(&cluster, &prefix).await;
    let b = cluster_node(&cluster, &prefix).await;
    let channels = channels_on_every_master(&cluster, &prefix, 1);
    let victim_slot = cluster
        .slot_of(&format!("{prefix}:stream:{{{}}}", channels[0]))
        .unwrap();
    let victim = cluster.master_of_slot(victim_slot).unwrap();
    let mut subs = subscribe_on_both(&a, &b, &channels).await;
    const PER_CHANNEL: u64 = 300;
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let publishing = publish_rounds(b.node().clone(), channels.clone(), PER_CHANNEL, progress_tx);
    // Mid-stream: kill the master of the first channel's slot.
    progress.wait_for(|n| *n >= 80).await.unwrap();
    tokio::task::block_in_place(|| cluster.kill(victim));
    tokio::time::timeout(Duration::from_secs(120), publishing)
        .await
        .expect("the publisher finishes")
        .unwrap();
    tokio::task::block_in_place(|| cluster.wait_ok(Duration::from_secs(60))).unwrap();
    let promoted = cluster.master_of_slot(victim_slot).unwrap();
    assert_ne!(
        promoted, victim,
        "a replica took over the killed master's slots"
    );
    every_offset_once(&a, &mut subs, PER_CHANNEL).await;
}

/// Each subscriber received every offset of its channel up to the channel's top exactly once,
/// in order (recovering where the node reported a gap); at least `published` per channel (a
/// publication retried after a timeout may have been applied twice: it then has two offsets,
/// each delivered once).
async fn every_offset_once(
    node: &RunningServer,
    subs: &mut [(String, TestClient)],
    published: u64,
) {
    for (channel, c) in subs {
        let top = node
            .node()
            .engine()
            .broker
            .position(channel)
            .await
            .unwrap()
            .offset;
        let seen = tokio::time::timeout(Duration::from_secs(60), offsets_until(c, channel, top))
            .await
            .unwrap_or_else(|_| panic!("{channel}: every publication arrives"));
        assert_eq!(
            seen,
            (1..=top).collect::<Vec<_>>(),
            "{channel}: every offset exactly once, in order"
        );
        assert!(top >= published);
    }
}

/// Publishes `per_channel` publications on each channel through `publisher`, retrying one until
/// it is accepted; `progress` counts the rounds done.
fn publish_rounds(
    publisher: plexus_core::Node,
    channels: Vec<String>,
    per_channel: u64,
    progress: tokio::sync::watch::Sender<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0..per_channel {
            for channel in &channels {
                while publisher
                    .publish(channel, Payload::json(&serde_json::json!(i)).unwrap())
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let _ = progress.send(i + 1);
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_sentinel_a_master_killed_mid_stream_loses_nothing_for_recovering_subscribers() {
    let mut redis = plexus_redis::testing::RedisSentinel::start().expect("sentinel set-up starts");
    let (master, replica) = redis.ports();
    let prefix = plexus_redis::testing::unique_prefix();
    let a = node_on(redis_config(&redis.url(), &prefix)).await;
    let b = node_on(redis_config(&redis.url(), &prefix)).await;
    let channels = vec!["s0".to_owned(), "s1".to_owned()];
    let mut subs = subscribe_on_both(&a, &b, &channels).await;
    const PER_CHANNEL: u64 = 300;
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let publishing = publish_rounds(b.node().clone(), channels.clone(), PER_CHANNEL, progress_tx);
    progress.wait_for(|n| *n >= 80).await.unwrap();
    tokio::task::block_in_place(|| redis.kill_master());
    tokio::time::timeout(Duration::from_secs(120), publishing)
        .await
        .expect("the publisher finishes after the failover")
        .unwrap();
    assert_eq!(
        redis.master_port(),
        Some(replica),
        "Sentinel promoted the replica"
    );
    assert_ne!(redis.master_port(), Some(master));
    every_offset_once(&a, &mut subs, PER_CHANNEL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_node_index_is_bounded_and_lists_only_live_nodes() {
    let cluster = start_cluster();
    let prefix = plexus_redis::testing::unique_prefix();
    // 10 005 entries of nodes that never existed (announced a second ago): over the bound.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let key = format!("{prefix}:nodes");
    let mut args: Vec<String> = vec!["-c".into(), "zadd".into(), key.clone()];
    for i in 0..10_005 {
        args.push((now_ms - 1_000).to_string());
        args.push(format!("ghost{i}"));
    }
    let port = cluster.ports()[0];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let added = tokio::task::block_in_place(|| plexus_redis::testing::redis_cli(port, &args));
    assert_eq!(added.trim(), "10005");
    let a = cluster_node(&cluster, &prefix).await;
    // Its announcement trims the index to 10 000, keeping the newest (its own).
    let card = || {
        tokio::task::block_in_place(|| {
            plexus_redis::testing::redis_cli(port, &["-c", "zcard", &key])
                .trim()
                .parse::<u64>()
                .unwrap()
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while card() > 10_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the index was trimmed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(card(), 10_000);
    let listed = live_nodes(&a).await;
    assert_eq!(
        listed,
        vec![a.node().id().to_string()],
        "ghosts are not live"
    );
}
