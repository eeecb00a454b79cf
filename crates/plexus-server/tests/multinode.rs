//! Many nodes, one system: two or three Plexus nodes on one real `redis-server`, or on a
//! Redis Cluster with `PLEXUS_TEST_ENGINE=redis-cluster` (the test command runs both).

mod common;

use common::*;
use plexus_core::auth::UpgradeDecision;
use plexus_core::{Identity, Payload, UpgradeRequest};
use plexus_protocol::Encoding;
use plexus_protocol::client::{ChannelParams, GetMetaParams, Op, Position, SubscribeParams};
use plexus_protocol::server::{MetaResult, PresenceResult, Push, SubscribeResult};
use plexus_server::RunningServer;
use std::sync::Arc;
use std::time::Duration;

fn json(v: serde_json::Value) -> Payload {
    Payload::json(&v).unwrap()
}

/// A node in development mode (history, recovery, presence everywhere) whose connections are
/// user `?user=NAME`, on the suite's Redis (standalone or cluster) with this key prefix.
async fn node(prefix: &str) -> RunningServer {
    node_with_broker(
        suite_redis_config(prefix),
        plexus_core::ChannelPolicy::open(),
    )
    .await
    .0
}

async fn node_with_broker(
    config: plexus_redis::RedisConfig,
    channels: plexus_core::ChannelPolicy,
) -> (RunningServer, Arc<plexus_redis::RedisBroker>) {
    let (engine, broker) = plexus_redis::redis_engine_with_broker(config)
        .await
        .expect("redis engine");
    let builder = plexus_server::Server::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .dev_mode()
        .channels(channels)
        .engine(engine)
        .upgrade_hook(|req: Arc<UpgradeRequest>| async move {
            UpgradeDecision::Accept(req.query_param("user").map(Identity::new))
        });
    let server = start_as_is(builder).await;
    wait_healthy(&server).await;
    (server, broker)
}

async fn nodes(n: usize) -> Vec<RunningServer> {
    let prefix = plexus_redis::testing::unique_prefix();
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(node(&prefix).await);
    }
    servers
}

fn url(server: &RunningServer, user: &str) -> String {
    format!("{}?user={user}", server.ws_url())
}

async fn next_pub(c: &mut TestClient) -> plexus_protocol::server::PubPush {
    loop {
        if let Push::Pub(p) = c.next_push().await {
            return p;
        }
    }
}

#[tokio::test]
async fn a_publication_on_one_node_reaches_subscribers_on_the_others() {
    let ns = nodes(3).await;
    let mut b = TestClient::connect(&ns[1].ws_url(), Encoding::Json).await;
    let mut c = TestClient::connect(&ns[2].ws_url(), Encoding::Msgpack).await;
    let _: SubscribeResult = b
        .request(Op::Subscribe(SubscribeParams::new("news")))
        .await
        .unwrap();
    let _: SubscribeResult = c
        .request(Op::Subscribe(SubscribeParams::new("news")))
        .await
        .unwrap();
    let mut a = TestClient::connect(&ns[0].ws_url(), Encoding::Json).await;
    for i in 1..=5 {
        let op = Op::Publish(plexus_protocol::client::PublishParams::new(
            "news",
            &json(serde_json::json!(i)),
        ));
        let r: plexus_protocol::server::PublishResult = a.request(op).await.unwrap();
        assert_eq!(r.offset, i);
    }
    for client in [&mut b, &mut c] {
        for i in 1..=5 {
            let p = next_pub(client).await;
            assert_eq!(
                (p.offset, p.payload().unwrap()),
                (i, json(serde_json::json!(i)))
            );
        }
    }
}

#[tokio::test]
async fn offsets_never_repeat_or_skip_under_concurrent_publishers_on_many_nodes() {
    let ns = nodes(3).await;
    let mut sub = TestClient::connect(&ns[0].ws_url(), Encoding::Json).await;
    let _: SubscribeResult = sub
        .request(Op::Subscribe(SubscribeParams::new("busy")))
        .await
        .unwrap();
    let mut publishers = Vec::new();
    for n in &ns {
        let node = n.node().clone();
        publishers.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..100 {
                offsets.push(
                    node.publish("busy", json(serde_json::json!(i)))
                        .await
                        .unwrap()
                        .offset,
                );
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for p in publishers {
        all.extend(p.await.unwrap());
    }
    all.sort();
    assert_eq!(
        all,
        (1..=300).collect::<Vec<_>>(),
        "every offset assigned exactly once"
    );
    let mut seen = Vec::new();
    while seen.len() < 300 {
        seen.push(next_pub(&mut sub).await.offset);
    }
    assert_eq!(
        seen,
        (1..=300).collect::<Vec<_>>(),
        "and delivered in order"
    );
}

#[tokio::test]
async fn a_send_to_a_user_reaches_its_connections_on_every_node_and_routing_finds_remote_connections()
 {
    let ns = nodes(2).await;
    let mut on_a = TestClient::connect(&url(&ns[0], "ann"), Encoding::Json).await;
    let mut on_b = TestClient::connect(&url(&ns[1], "ann"), Encoding::Msgpack).await;
    ns[0]
        .node()
        .send_to_user("ann", json(serde_json::json!("hello ann")), None)
        .await
        .unwrap();
    for c in [&mut on_a, &mut on_b] {
        let Push::Message(m) = c.next_push().await else {
            panic!()
        };
        assert_eq!(m.payload().unwrap(), json(serde_json::json!("hello ann")));
    }
    // Unicast to a connection on the other node, and a clear "no such connection".
    let b_id: plexus_core::ConnId = on_b.hello.conn.parse().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ns[0]
        .node()
        .send_to_connection(b_id, json(serde_json::json!("direct")))
        .await
        .unwrap()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the registry never saw the remote connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Push::Message(m) = on_b.next_push().await else {
        panic!()
    };
    assert_eq!(m.payload().unwrap(), json(serde_json::json!("direct")));
    let gone = plexus_core::ConnId {
        node: b_id.node,
        seq: 999_999,
    };
    assert!(
        !ns[0]
            .node()
            .send_to_connection(gone, Payload::null())
            .await
            .unwrap()
    );
    // Disconnect from the other node.
    ns[0]
        .node()
        .disconnect_connection(b_id, plexus_core::CloseCode::DISCONNECTED, "bye")
        .await
        .unwrap();
    assert_eq!(
        on_b.closed().await.0,
        plexus_core::CloseCode::DISCONNECTED.0
    );
    // info lists both live nodes.
    let nodes = ns[0].node().engine().broker.nodes().await.unwrap();
    let mut ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    ids.sort();
    let mut expected = vec![ns[0].node().id().to_string(), ns[1].node().id().to_string()];
    expected.sort();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn presence_and_metadata_are_the_same_from_every_node() {
    let ns = nodes(2).await;
    let mut a = TestClient::connect(&url(&ns[0], "ann"), Encoding::Json).await;
    let mut b = TestClient::connect(&url(&ns[1], "bob"), Encoding::Json).await;
    let _: SubscribeResult = a
        .request(Op::Subscribe(SubscribeParams::new("room")))
        .await
        .unwrap();
    let _: SubscribeResult = b
        .request(Op::Subscribe(SubscribeParams::new("room")))
        .await
        .unwrap();
    let Push::Join(j) = a.next_push().await else {
        panic!("a join from the other node")
    };
    assert_eq!(j.user.as_deref(), Some("bob"));
    for c in [&mut a, &mut b] {
        let r: PresenceResult = c
            .request(Op::Presence(ChannelParams {
                channel: "room".into(),
            }))
            .await
            .unwrap();
        let mut users: Vec<_> = r.members.iter().filter_map(|m| m.user.clone()).collect();
        users.sort();
        assert_eq!(users, vec!["ann", "bob"]);
    }
    let a_id: plexus_core::ConnId = a.hello.conn.parse().unwrap();
    ns[0]
        .node()
        .set_connection_metadata(
            a_id,
            serde_json::from_value(serde_json::json!({"k": 1})).unwrap(),
            false,
        )
        .await
        .unwrap();
    let seen_from_b = ns[1]
        .node()
        .connection_metadata(a_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen_from_b["k"], 1);
    ns[1]
        .node()
        .set_channel_metadata(
            "room",
            serde_json::from_value(serde_json::json!({"topic": "t"})).unwrap(),
            false,
        )
        .await
        .unwrap();
    let r: MetaResult = a
        .request(Op::GetMeta(GetMetaParams {
            channel: Some("room".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(r.value.0.get()).unwrap(),
        serde_json::json!({"topic": "t"})
    );
    drop(b);
    let Push::Leave(l) = a.next_push().await else {
        panic!("a leave from the other node")
    };
    assert_eq!(l.user.as_deref(), Some("bob"));
}

#[tokio::test]
async fn a_client_that_reconnects_to_another_node_recovers_what_it_missed() {
    let ns = nodes(2).await;
    let mut c = TestClient::connect(&ns[0].ws_url(), Encoding::Json).await;
    let first: SubscribeResult = c
        .request(Op::Subscribe(SubscribeParams::new("feed")))
        .await
        .unwrap();
    drop(c);
    for i in 0..50 {
        ns[0]
            .node()
            .publish("feed", json(serde_json::json!(i)))
            .await
            .unwrap();
    }
    let mut c = TestClient::connect(&ns[1].ws_url(), Encoding::Msgpack).await;
    let op = Op::Subscribe(SubscribeParams {
        since: Some(Position {
            offset: first.offset,
            epoch: first.epoch.clone(),
        }),
        ..SubscribeParams::new("feed")
    });
    let r: SubscribeResult = c.request(op).await.unwrap();
    assert_eq!(r.recovered, Some(true));
    assert_eq!(
        r.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    ns[0].node().publish("feed", Payload::null()).await.unwrap();
    assert_eq!(next_pub(&mut c).await.offset, 51);
}

#[tokio::test]
async fn a_dead_nodes_presence_disappears_within_the_bound() {
    let prefix = plexus_redis::testing::unique_prefix();
    let survivor = node(&prefix).await;
    let (doomed, doomed_engine) = node_with_broker(
        suite_redis_config(&prefix),
        plexus_core::ChannelPolicy::open(),
    )
    .await;
    let mut watcher = TestClient::connect(&url(&survivor, "w"), Encoding::Json).await;
    let _: SubscribeResult = watcher
        .request(Op::Subscribe(SubscribeParams::new("room")))
        .await
        .unwrap();
    let mut ghost = TestClient::connect(&url(&doomed, "ghost"), Encoding::Json).await;
    let _: SubscribeResult = ghost
        .request(Op::Subscribe(SubscribeParams::new("room")))
        .await
        .unwrap();
    let stats = survivor.node().presence_stats("room").await.unwrap();
    assert_eq!(stats.users, 2);
    // The node dies without cleaning up: its tasks stop refreshing, nothing says goodbye.
    let doomed_id = doomed.node().id().to_string();
    std::mem::forget(ghost);
    doomed_engine.halt();
    doomed.abort();
    let started = tokio::time::Instant::now();
    loop {
        let members = survivor.node().presence("room").await.unwrap();
        if members.iter().all(|m| m.user.as_deref() != Some("ghost")) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3) * 4,
            "ghost presence outlived the bound"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = survivor.node().presence_stats("room").await.unwrap();
    assert_eq!((stats.connections, stats.users), (1, 1));
    // And the node drops out of the live list.
    loop {
        let nodes = survivor.node().engine().broker.nodes().await.unwrap();
        if nodes.iter().all(|n| n.id != doomed_id) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "dead node still listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A dead node's members are told gone: once their entries expire, the channel's subscribers
/// on the surviving nodes get one `leave` push per departed user (not one per node), within the
/// presence bound.
#[tokio::test]
async fn a_dead_nodes_members_are_told_gone_once() {
    let prefix = plexus_redis::testing::unique_prefix();
    let policy = || {
        let mut p = plexus_core::ChannelPolicy::default();
        p.add_namespace(
            plexus_core::Namespace::new("all", plexus_core::ChannelMatch::Any)
                .subscribe(plexus_core::Access::Anyone)
                .publish(plexus_core::Access::Anyone)
                .presence(plexus_core::JoinLeave::Users),
        );
        p
    };
    let one = node_with_broker(suite_redis_config(&prefix), policy())
        .await
        .0;
    let two = node_with_broker(suite_redis_config(&prefix), policy())
        .await
        .0;
    let (doomed, doomed_engine) = node_with_broker(suite_redis_config(&prefix), policy()).await;
    let mut watchers = Vec::new();
    for (server, user) in [(&one, "w1"), (&two, "w2")] {
        let mut w = TestClient::connect(&url(server, user), Encoding::Json).await;
        let _: SubscribeResult = w
            .request(Op::Subscribe(SubscribeParams::new("room")))
            .await
            .unwrap();
        watchers.push(w);
    }
    let mut ghosts = Vec::new();
    for _ in 0..2 {
        let mut ghost = TestClient::connect(&url(&doomed, "ghost"), Encoding::Json).await;
        let _: SubscribeResult = ghost
            .request(Op::Subscribe(SubscribeParams::new("room")))
            .await
            .unwrap();
        ghosts.push(ghost);
    }
    let stats = one.node().presence_stats("room").await.unwrap();
    assert_eq!((stats.connections, stats.users), (4, 3));
    // The node dies without cleaning up: nothing refreshes its members, nothing says goodbye.
    for ghost in ghosts {
        std::mem::forget(ghost);
    }
    doomed_engine.halt();
    doomed.abort();

    for w in &mut watchers {
        // Until the ghost leaves (the presence bound, 3 s here, plus a sweep): the joins that
        // came before are skipped.
        let left = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Push::Leave(l) = w.next_push().await {
                    return l;
                }
            }
        })
        .await
        .expect("the dead node's user is told gone");
        assert_eq!(
            (left.channel.as_str(), left.user.as_deref()),
            ("room", Some("ghost"))
        );
    }
    // Two sweeps later, a newcomer's join: no second `leave` came before it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut newcomer = TestClient::connect(&url(&two, "newcomer"), Encoding::Json).await;
    let _: SubscribeResult = newcomer
        .request(Op::Subscribe(SubscribeParams::new("room")))
        .await
        .unwrap();
    for w in &mut watchers {
        loop {
            match w.next_push().await {
                Push::Join(j) if j.user.as_deref() == Some("newcomer") => break,
                Push::Leave(l) => panic!("told again: {:?}", l.user),
                _ => {}
            }
        }
    }
    let stats = one.node().presence_stats("room").await.unwrap();
    assert_eq!((stats.connections, stats.users), (3, 3));
}

#[tokio::test]
async fn redis_killed_and_restarted_mid_stream_loses_nothing_for_recovering_subscribers() {
    let dir = std::env::temp_dir().join(format!(
        "plexus-redis-{}",
        plexus_redis::testing::unique_prefix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = plexus_redis::testing::RedisServer::start_persistent(port, &dir).unwrap();
    let prefix = plexus_redis::testing::unique_prefix();
    // History large enough to cover the outage: recovery is at-least-once within history.
    let policy = recovering_policy;
    let a = node_with_broker(redis_config(&redis.url(), &prefix), policy())
        .await
        .0;
    let b = node_with_broker(redis_config(&redis.url(), &prefix), policy())
        .await
        .0;
    let mut subs = Vec::new();
    for (i, n) in [&a, &b].iter().enumerate() {
        let mut c = TestClient::connect(
            &n.ws_url(),
            if i == 0 {
                Encoding::Json
            } else {
                Encoding::Msgpack
            },
        )
        .await;
        let r: SubscribeResult = c
            .request(Op::Subscribe(SubscribeParams::new("stream")))
            .await
            .unwrap();
        assert_eq!(r.offset, 0);
        subs.push(c);
    }
    const TOTAL: u64 = 300;
    let publisher = a.node().clone();
    let publishing = tokio::spawn(async move {
        let mut done = 0;
        while done < TOTAL {
            match publisher
                .publish("stream", json(serde_json::json!(done)))
                .await
            {
                Ok(_) => done += 1,
                // Redis is down: retry (the publication is not accepted until it succeeds).
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            if done % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _redis = plexus_redis::testing::RedisServer::start_persistent(port, &dir).unwrap();
    tokio::time::timeout(Duration::from_secs(60), publishing)
        .await
        .expect("publisher finishes")
        .unwrap();
    for (i, c) in subs.iter_mut().enumerate() {
        // A gap seen by the node: subscribe again from the last position and recover.
        let seen = offsets_until(c, "stream", TOTAL).await;
        assert_eq!(
            seen,
            (1..=TOTAL).collect::<Vec<_>>(),
            "subscriber {i}: every offset exactly once, in order"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
