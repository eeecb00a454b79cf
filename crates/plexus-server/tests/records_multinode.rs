//! Records across nodes on one real `redis-server`: concurrent writers on three nodes, subscribers
//! in patch mode on each, compare-and-set across nodes, and records that outlive their nodes.

mod common;

use common::*;
use plexus_core::records::{apply_patch, parse_patch};
use plexus_protocol::Encoding;
use plexus_protocol::client::{
    Op, RecordParams, RecordPatchParams, RecordSetParams, RecordSubscribeParams,
};
use plexus_protocol::server::{ErrorBody, Push, RecordPush, RecordResult, RecordWriteResult};
use plexus_server::RunningServer;
use serde_json::{Value, json};
use std::collections::BTreeSet;

async fn node(prefix: &str) -> RunningServer {
    node_on(&redis().url(), prefix).await
}

async fn node_on(url: &str, prefix: &str) -> RunningServer {
    let engine = plexus_redis::redis_engine(redis_config(url, prefix))
        .await
        .expect("redis engine");
    let server = start_as_is(dev().engine(engine)).await;
    wait_healthy(&server).await;
    server
}

async fn nodes(n: usize) -> Vec<RunningServer> {
    let prefix = plexus_redis::testing::unique_prefix();
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(node(&prefix).await);
    }
    servers
}

async fn next_record(c: &mut TestClient) -> RecordPush {
    loop {
        if let Push::Record(r) = c.next_push().await {
            return r;
        }
    }
}

fn append(id: &str, item: &str) -> Op {
    Op::RecordPatch(RecordPatchParams {
        id: id.into(),
        patch: json!([{"op": "add", "path": "/log/-", "value": item}]),
        expect: None,
    })
}

/// A patch-mode subscriber following the client rule of docs/protocol.md §6.15, reading the
/// record again when a push does not follow its version.
struct Follower {
    client: TestClient,
    value: Value,
    version: u64,
    epoch: String,
    resyncs: usize,
}

impl Follower {
    async fn subscribe(url: &str, id: &str) -> Follower {
        let mut client = TestClient::connect(url, Encoding::Msgpack).await;
        let r: RecordResult = client
            .request(Op::RecordSubscribe(RecordSubscribeParams {
                id: id.into(),
                mode: Some("patch".into()),
            }))
            .await
            .unwrap();
        Follower {
            client,
            value: r.value,
            version: r.version,
            epoch: r.epoch,
            resyncs: 0,
        }
    }

    /// Follows pushes until it holds `version`.
    async fn follow_to(&mut self, id: &str, version: u64) {
        while self.version < version {
            let push = next_record(&mut self.client).await;
            if push.version <= self.version && push.epoch == self.epoch {
                continue;
            }
            if let Some(value) = push.value {
                (self.value, self.version, self.epoch) = (value, push.version, push.epoch);
            } else if let Some(ops) = push.patch {
                if push.epoch == self.epoch && push.version == self.version + 1 {
                    apply_patch(&mut self.value, &parse_patch(&ops).unwrap()).unwrap();
                    self.version = push.version;
                } else {
                    let r: RecordResult = self
                        .client
                        .request(Op::RecordGet(RecordParams { id: id.into() }))
                        .await
                        .unwrap();
                    (self.value, self.version, self.epoch) = (r.value, r.version, r.epoch);
                    self.resyncs += 1;
                }
            }
        }
    }
}

#[tokio::test]
async fn three_writers_on_three_nodes_write_every_version_once_and_subscribers_agree() {
    const WRITES: usize = 40;
    let ns = nodes(3).await;
    let mut setup = TestClient::connect(&ns[0].ws_url(), Encoding::Json).await;
    let created: RecordWriteResult = setup
        .request(Op::RecordSet(RecordSetParams {
            id: "shared".into(),
            value: json!({"log": []}),
            expect: None,
        }))
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    let mut followers = Vec::new();
    for server in &ns {
        followers.push(Follower::subscribe(&server.ws_url(), "shared").await);
    }

    let mut writers = Vec::new();
    for (w, server) in ns.iter().enumerate() {
        let url = server.ws_url();
        writers.push(tokio::spawn(async move {
            let mut c = TestClient::connect(&url, Encoding::Json).await;
            let mut versions = Vec::new();
            for k in 0..WRITES {
                let r: RecordWriteResult = c
                    .request(append("shared", &format!("w{w}-{k}")))
                    .await
                    .unwrap();
                versions.push(r.version);
            }
            versions
        }));
    }
    let mut versions = BTreeSet::new();
    for writer in writers {
        for v in writer.await.unwrap() {
            assert!(versions.insert(v), "version {v} written twice");
        }
    }
    let last = 1 + 3 * WRITES as u64;
    assert_eq!(
        versions,
        (2..=last).collect::<BTreeSet<u64>>(),
        "every version once"
    );

    let fresh: RecordResult = setup
        .request(Op::RecordGet(RecordParams {
            id: "shared".into(),
        }))
        .await
        .unwrap();
    assert_eq!(fresh.version, last);
    let log = fresh.value["log"].as_array().unwrap();
    assert_eq!(log.len(), 3 * WRITES, "no write lost");
    for w in 0..3 {
        // Each writer's items are in its own order.
        let mine: Vec<&Value> = log
            .iter()
            .filter(|v| v.as_str().unwrap().starts_with(&format!("w{w}-")))
            .collect();
        let expected: Vec<Value> = (0..WRITES).map(|k| json!(format!("w{w}-{k}"))).collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>());
    }
    for f in &mut followers {
        f.follow_to("shared", last).await;
        assert_eq!(f.version, last);
        assert_eq!(
            f.value, fresh.value,
            "a patch-mode subscriber ends with a fresh read"
        );
        assert_eq!(f.resyncs, 0, "nothing was lost on a healthy system");
    }
}

#[tokio::test]
async fn compare_and_set_across_nodes_lets_exactly_one_writer_win() {
    let ns = nodes(2).await;
    let mut a = TestClient::connect(&ns[0].ws_url(), Encoding::Json).await;
    let mut b = TestClient::connect(&ns[1].ws_url(), Encoding::Json).await;
    let set = |v: i64| {
        Op::RecordSet(RecordSetParams {
            id: "cas".into(),
            value: json!(v),
            expect: Some(0),
        })
    };
    // Both try to create it at once.
    let ia = a.send(set(1)).await;
    let ib = b.send(set(2)).await;
    let ra = a.reply::<RecordWriteResult>(ia).await;
    let rb = b.reply::<RecordWriteResult>(ib).await;
    let (won, lost): (Vec<_>, Vec<_>) = [ra.clone(), rb.clone()]
        .into_iter()
        .partition(Result::is_ok);
    assert_eq!((won.len(), lost.len()), (1, 1), "{ra:?} {rb:?}");
    let lost: ErrorBody = lost.into_iter().next().unwrap().unwrap_err();
    assert_eq!(lost.code.0, 121);
    let r: RecordResult = b
        .request(Op::RecordGet(RecordParams { id: "cas".into() }))
        .await
        .unwrap();
    assert_eq!(r.version, 1);
    let winner = if ra.is_ok() { json!(1) } else { json!(2) };
    assert_eq!(r.value, winner);
}

#[tokio::test]
async fn records_outlive_the_nodes_that_wrote_them() {
    let prefix = plexus_redis::testing::unique_prefix();
    let first = node(&prefix).await;
    let mut c = TestClient::connect(&first.ws_url(), Encoding::Json).await;
    for v in 1..=3 {
        let _: RecordWriteResult = c
            .request(Op::RecordSet(RecordSetParams {
                id: "durable".into(),
                value: json!({"v": v}),
                expect: None,
            }))
            .await
            .unwrap();
    }
    drop(c);
    first.shutdown().await;

    let second = node(&prefix).await;
    let mut c = TestClient::connect(&second.ws_url(), Encoding::Json).await;
    let r: RecordResult = c
        .request(Op::RecordGet(RecordParams {
            id: "durable".into(),
        }))
        .await
        .unwrap();
    assert_eq!((r.value, r.version), (json!({"v": 3}), 3));
}

#[tokio::test]
async fn subscribers_get_the_whole_value_after_their_node_lost_redis_pub_sub() {
    // A Redis of its own: cutting pub/sub must not touch the other tests' nodes.
    let own = plexus_redis::testing::RedisServer::start().expect("redis-server starts");
    let prefix = plexus_redis::testing::unique_prefix();
    let ns = [
        node_on(&own.url(), &prefix).await,
        node_on(&own.url(), &prefix).await,
    ];
    let mut writer = TestClient::connect(&ns[0].ws_url(), Encoding::Json).await;
    let _: RecordWriteResult = writer
        .request(Op::RecordSet(RecordSetParams {
            id: "lossy".into(),
            value: json!({"log": []}),
            expect: None,
        }))
        .await
        .unwrap();
    let mut follower = Follower::subscribe(&ns[1].ws_url(), "lossy").await;
    assert_eq!(follower.version, 1);

    // Every node's pub/sub connection is cut; the writes right after it are published while
    // the nodes are not listening, and are nowhere to read back from.
    let killed = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &own.port.to_string(),
            "CLIENT",
            "KILL",
            "TYPE",
            "pubsub",
        ])
        .output()
        .expect("redis-cli runs");
    assert!(killed.status.success(), "{killed:?}");
    for k in 0..5 {
        let _: RecordWriteResult = writer
            .request(append("lossy", &format!("x{k}")))
            .await
            .unwrap();
    }
    // No further write: the node reads the record after it reconnects, and the subscriber
    // ends with the value a fresh read returns.
    follower.follow_to("lossy", 6).await;
    let fresh: RecordResult = writer
        .request(Op::RecordGet(RecordParams { id: "lossy".into() }))
        .await
        .unwrap();
    assert_eq!((follower.version, &follower.value), (6, &fresh.value));
}
