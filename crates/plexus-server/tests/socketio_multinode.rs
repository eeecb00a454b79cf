//! Socket.IO across nodes: two Plexus nodes on one real `redis-server`, with Socket.IO and native
//! clients on both (`docs/socketio.md`, "Several nodes").

mod common;

use common::socketio::*;
use common::*;
use plexus_core::auth::UpgradeDecision;
use plexus_core::{Identity, Payload, UpgradeRequest};
use plexus_protocol::Encoding;
use plexus_protocol::client::{ChannelParams, Op, PublishParams, SubscribeParams};
use plexus_protocol::server::{PresenceResult, PublishResult, SubscribeResult};
use plexus_server::RunningServer;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A node in development mode (history and presence on every channel) on the Redis engine with
/// key prefix `prefix`; every connection, native or Socket.IO, is user `?user=NAME`.
async fn node(prefix: &str) -> RunningServer {
    let builder = plexus_server::Server::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .dev_mode()
        .engine(redis_engine(prefix).await)
        .upgrade_hook(|req: Arc<UpgradeRequest>| async move {
            UpgradeDecision::Accept(req.query_param("user").map(Identity::new))
        });
    let server = start_as_is(builder).await;
    wait_healthy(&server).await;
    server
}

/// A Socket.IO client of `user` on WebSocket only, connected to `/`; its socket id.
async fn sio_client(server: &RunningServer, user: &str) -> (SioWs, String) {
    let query = format!("EIO=4&transport=websocket&user={user}");
    let (mut ws, _) = SioWs::open(server.local_addr(), &query).await;
    let id = ws.connect_nsp("/", None).await;
    (ws, id)
}

#[tokio::test]
async fn socket_io_across_two_nodes_on_redis() {
    let prefix = plexus_redis::testing::unique_prefix();
    let (a, b) = (node(&prefix).await, node(&prefix).await);

    // Ann (Socket.IO, node A) in room `lobby`; Bob (Socket.IO) and Cat (native) on node B.
    let (mut ann, ann_id) = sio_client(&a, "ann").await;
    let joined = ann.call(1, "subscribe", &[json!("lobby")]).await;
    assert_eq!(joined[0], Value::Null, "{joined:?}");
    let start = joined[1]["offset"].as_u64().expect("an offset");
    let (mut bob, bob_id) = sio_client(&b, "bob").await;
    let joined = bob.call(1, "subscribe", &[json!("lobby")]).await;
    assert_eq!(joined[0], Value::Null, "{joined:?}");
    let mut cat = TestClient::connect(&format!("{}?user=cat", b.ws_url()), Encoding::Json).await;
    let _: SubscribeResult = cat
        .request(Op::Subscribe(SubscribeParams::new("lobby")))
        .await
        .unwrap();

    // Ann sees both joins from node B; presence then lists the members of both nodes, asked
    // from either.
    let mut joins = BTreeSet::new();
    while joins.len() < 2 {
        let join = ann.event("join").await;
        joins.insert(join[0]["user"].as_str().unwrap().to_owned());
    }
    assert_eq!(joins, BTreeSet::from(["bob".to_owned(), "cat".to_owned()]));
    let members = ann.call(2, "presence", &[json!("lobby")]).await;
    let members: BTreeSet<(String, String)> = members[1]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let conn = m["conn"].as_str().unwrap().to_owned();
            (m["user"].as_str().unwrap().to_owned(), conn)
        })
        .collect();
    let expected = BTreeSet::from([
        ("ann".to_owned(), ann_id),
        ("bob".to_owned(), bob_id),
        ("cat".to_owned(), cat.hello.conn.clone()),
    ]);
    assert_eq!(members, expected);
    let seen_natively: PresenceResult = cat
        .request(Op::Presence(ChannelParams {
            channel: "lobby".into(),
        }))
        .await
        .unwrap();
    let natively: BTreeSet<(String, String)> = seen_natively
        .members
        .iter()
        .map(|m| (m.user.clone().unwrap(), m.conn.clone()))
        .collect();
    assert_eq!(natively, expected);

    // Bob (Socket.IO) and Cat (native) publish on node B: Ann gets both on node A, in order,
    // at the next two offsets.
    let published = bob
        .call(2, "publish", &[json!("lobby"), json!({"from": "bob"})])
        .await;
    assert_eq!(published[0], Value::Null, "{published:?}");
    assert_eq!(published[1]["offset"], start + 1);
    let data = Payload::json(&json!({"from": "cat"})).unwrap();
    let published: PublishResult = cat
        .request(Op::Publish(PublishParams::new("lobby", &data)))
        .await
        .unwrap();
    assert_eq!(published.offset, start + 2);
    for (offset, from) in [(start + 1, "bob"), (start + 2, "cat")] {
        let message = ann.event("message").await;
        assert_eq!(message[0], json!({"from": from}), "{message:?}");
        assert_eq!(message[1]["channel"], "lobby", "{message:?}");
        assert_eq!(message[1]["offset"], offset, "{message:?}");
    }

    // A polling session lives on the node that opened it: the other node does not know its
    // sid, for a GET, a POST or an upgrade (socket.io-client then reconnects).
    let (sid, path) = open_polling(a.local_addr()).await;
    for (method, body) in [("GET", None), ("POST", Some("40"))] {
        let elsewhere = http(b.local_addr(), method, &path, body).await;
        assert_eq!(elsewhere.status, 400, "{method}");
        assert_eq!(
            elsewhere.json(),
            json!({"code": 1, "message": "Session ID unknown"}),
            "{method}"
        );
    }
    let upgrade = format!("EIO=4&transport=websocket&sid={sid}");
    assert_eq!(ws_refused(b.local_addr(), &upgrade).await, 400);
    // On its own node the session is untouched.
    let posted = http(a.local_addr(), "POST", &path, Some("40")).await;
    assert_eq!((posted.status, posted.body.as_str()), (200, "ok"));
    let connected = poll_packets(a.local_addr(), &path, 1).await;
    assert!(connected[0].starts_with("40{\"sid\":"), "{connected:?}");
}
