//! Mesh clients on two Plexus nodes sharing one real `redis-server` (Mesh's
//! `multiple-instance.test.ts` and the multi-instance presence cases): broadcasts, room messages,
//! presence and records cross nodes; the initial presence list includes the other node's members.

mod common;

use common::mesh::MeshClient;
use common::*;
use plexus_core::{Access, ChannelMatch, ChannelPolicy, Emit, JoinLeave, Namespace, Payload};
use plexus_server::RunningServer;
use serde_json::json;

async fn nodes() -> (RunningServer, RunningServer) {
    let prefix = plexus_redis::testing::unique_prefix();
    let mut servers = Vec::new();
    for _ in 0..2 {
        let engine = plexus_redis::redis_engine(redis_config(&redis().url(), &prefix))
            .await
            .expect("redis engine");
        let mut channels = ChannelPolicy::default();
        channels.add_namespace(
            Namespace::new("all", ChannelMatch::Any)
                .subscribe(Access::Anyone)
                .publish(Access::Anyone)
                .presence(JoinLeave::Connections),
        );
        let server = start_as_is(dev().channels(channels).engine(engine)).await;
        wait_healthy(&server).await;
        servers.push(server);
    }
    let b = servers.pop().unwrap();
    (servers.pop().unwrap(), b)
}

#[tokio::test]
async fn broadcasts_rooms_presence_and_records_cross_nodes() {
    let (n1, n2) = nodes().await;
    let mut a = MeshClient::connect(&n1.ws_url()).await;
    let mut b = MeshClient::connect(&n2.ws_url()).await;

    // broadcast and broadcastRoom reach clients on both nodes.
    n1.node()
        .broadcast(
            Emit::event("hello", Payload::json(&json!("world")).unwrap()),
            None,
        )
        .await
        .unwrap();
    for c in [&mut a, &mut b] {
        assert_eq!(c.push("hello").await["payload"], json!("world"));
    }

    // Presence: the initial list includes the other node's member; join and leave cross.
    assert_eq!(
        a.command("mesh/join-room", json!({"roomName": "lobby"}))
            .await,
        json!({"success": true, "present": [a.id]})
    );
    let joined = b
        .command("mesh/join-room", json!({"roomName": "lobby"}))
        .await;
    let present = joined["present"].as_array().unwrap();
    assert!(
        present.contains(&json!(a.id)) && present.contains(&json!(b.id)),
        "{joined}"
    );
    let update = a.push("mesh/presence-update").await["payload"].clone();
    assert_eq!(
        (&update["type"], &update["connectionId"]),
        (&json!("join"), &json!(b.id))
    );
    n2.node()
        .publish(
            "lobby",
            Emit::event("chat", Payload::json(&json!({"text": "hi"})).unwrap()),
        )
        .await
        .unwrap();
    for c in [&mut a, &mut b] {
        assert_eq!(c.push("chat").await["payload"], json!({"text": "hi"}));
    }
    let b_id = b.id.clone();

    // Records: a patch-mode subscriber on one node, the writer on the other.
    a.command(
        "mesh/subscribe-record",
        json!({"recordId": "score", "mode": "patch"}),
    )
    .await;
    for n in 1..=3 {
        let r = b
            .command(
                "mesh/publish-record-update",
                json!({"recordId": "score", "newValue": {"n": n}}),
            )
            .await;
        assert_eq!(r, json!({"success": true, "version": n}));
    }
    let first = a.push("mesh/record-update").await["payload"].clone();
    assert_eq!(
        (&first["full"], &first["version"]),
        (&json!({"n": 1}), &json!(1))
    );
    for n in 2..=3 {
        let u = a.push("mesh/record-update").await["payload"].clone();
        assert_eq!(
            u["patch"],
            json!([{"op": "replace", "path": "/n", "value": n}])
        );
        assert_eq!(u["version"], n);
    }

    // A disconnect on one node is a leave on the other.
    b.close().await;
    loop {
        let u = a.push("mesh/presence-update").await["payload"].clone();
        if u["type"] == "leave" {
            assert_eq!(u["connectionId"], json!(b_id));
            break;
        }
    }
}
