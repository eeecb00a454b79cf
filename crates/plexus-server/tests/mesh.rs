//! Mesh's own acceptance cases (`seeds-protocols.md` §3.4), re-expressed over the Mesh wire by a
//! test client written from the specification (`common/mesh.rs`), on a real WebSocket. Runs on
//! the in-memory engine, and on Redis with `PLEXUS_TEST_ENGINE=redis`; two nodes in
//! `mesh_multinode.rs`. Also: Mesh clients meet native clients on the same channels and records.

mod common;

use common::mesh::MeshClient;
use common::*;
use plexus_core::auth::UpgradeDecision;
use plexus_core::{
    Access, Action, ChannelMatch, ChannelPolicy, CommandContext, Emit, Error, GuardRequest,
    Identity, JoinLeave, Namespace, Payload, RecordNamespace, RecordPolicy, UpgradeRequest,
};
use plexus_protocol::Encoding;
use plexus_protocol::client::{Op, PublishParams, RecordParams};
use plexus_protocol::server::{PublishResult, RecordResult};
use plexus_server::ServerBuilder;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn history() -> plexus_core::HistoryOptions {
    plexus_core::HistoryOptions {
        size: 10,
        ttl: Duration::from_secs(60),
    }
}

/// The exposure of the Mesh tests: `room:*` tracks presence per connection, `secret:*` is not
/// exposed, `guarded:*` only to user alice, `hist:*` keeps history, the rest is open. Records:
/// `locked:*` readable only, `hidden:*` not exposed, the rest open.
fn server() -> ServerBuilder {
    let mut channels = ChannelPolicy::default();
    channels.add_namespace(
        Namespace::new("rooms", ChannelMatch::Prefix("room:".into()))
            .subscribe(Access::Anyone)
            .publish(Access::Anyone)
            .presence(JoinLeave::Connections),
    );
    channels.add_namespace(Namespace::new(
        "secret",
        ChannelMatch::Prefix("secret:".into()),
    ));
    channels.add_namespace(
        Namespace::new("hist", ChannelMatch::Prefix("hist:".into()))
            .subscribe(Access::Anyone)
            .publish(Access::Anyone)
            .history(history()),
    );
    channels.add_namespace(
        Namespace::new("open", ChannelMatch::Any)
            .subscribe(Access::Anyone)
            .publish(Access::Anyone),
    );
    channels.add_guard(
        ChannelMatch::regex(r"guarded:\d+").unwrap(),
        &[Action::Subscribe],
        |r: GuardRequest| async move {
            match r.user.as_deref() {
                Some("alice") => Ok(()),
                _ => Err(Error::permission_denied(format!("not {}", r.channel))),
            }
        },
    );
    let mut records = RecordPolicy::default();
    records.add_namespace(
        RecordNamespace::new("locked", ChannelMatch::Prefix("locked:".into())).read(Access::Anyone),
    );
    records.add_namespace(RecordNamespace::new(
        "hidden",
        ChannelMatch::Prefix("hidden:".into()),
    ));
    records.add_namespace(RecordNamespace::development());
    dev()
        .channels(channels)
        .records(records)
        .upgrade_hook(|req: Arc<UpgradeRequest>| async move {
            UpgradeDecision::Accept(req.query_param("user").map(Identity::new))
        })
        .command("echo", |ctx: CommandContext| async move {
            let text: Value = ctx.payload.to_value().unwrap();
            let out = match text {
                Value::String(s) => json!(format!("echo: {s}")),
                other => other,
            };
            Ok(Payload::json(&out).unwrap())
        })
        .command("throws", |_ctx: CommandContext| async move {
            Err(Error::app(1001, "This is a test error"))
        })
}

fn json_payload(v: Value) -> Payload {
    Payload::json(&v).unwrap()
}

#[tokio::test]
async fn commands_errors_ids_and_the_assigned_id() {
    let server = start(server()).await;
    let mut c = MeshClient::connect(&server.ws_url()).await;
    assert!(c.id.contains('-'), "a Plexus connection id: {}", c.id);
    // Ids start at 0, and may be used again once answered.
    assert_eq!(
        c.command_with_id(0, "echo", json!("Hello, World!")).await,
        json!("echo: Hello, World!")
    );
    assert_eq!(
        c.command_with_id(0, "echo", json!("again")).await,
        json!("echo: again")
    );
    assert_eq!(
        c.command("unknown-command", json!({})).await,
        json!({"code": "ENOTFOUND", "error": "Command \"unknown-command\" not found", "name": "CommandError"})
    );
    assert_eq!(
        c.command("throws", json!({})).await,
        json!({"code": "ESERVER", "error": "This is a test error", "name": "Error"})
    );
    let big: Vec<Value> = (0..1000).map(|i| json!({"i": i})).collect();
    assert_eq!(c.command("echo", json!(big)).await, json!(big));
    assert_eq!(c.command("mesh/noop", json!({})).await, json!(true));

    // A frame that is not Mesh's is answered with mesh/error, and the connection goes on.
    c.send_raw("not json").await;
    let error = c.push("mesh/error").await;
    assert_eq!(error["payload"]["code"], "EBADFRAME");
    assert_eq!(
        c.command("echo", json!("still here")).await,
        json!("echo: still here")
    );
}

#[tokio::test]
async fn broadcasts_pings_and_latency() {
    let mut builder = server();
    builder.limits_mut().ping_interval = Duration::from_millis(50);
    let server = start(builder).await;
    // With Redis: the node listens for control messages (the broadcast) once healthy.
    wait_healthy(&server).await;
    let mut c = MeshClient::connect(&server.ws_url()).await;
    server
        .node()
        .broadcast(Emit::event("hello", json_payload(json!("world"))), None)
        .await
        .unwrap();
    let message = c.push("hello").await;
    assert_eq!(message, json!({"command": "hello", "payload": "world"}));
    // Pings come from the node's heartbeat; each pong is measured and pushed as latency.
    let latency = c.push("latency").await;
    assert!(c.pings >= 1);
    assert!(latency["payload"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn metadata_of_connections_and_rooms() {
    let server = start(server()).await;
    let mut a = MeshClient::connect(&server.ws_url()).await;
    let mut b = MeshClient::connect(&server.ws_url()).await;
    let set = a
        .command(
            "mesh/set-my-connection-metadata",
            json!({"metadata": {"name": "A"}}),
        )
        .await;
    assert_eq!(set, json!({"success": true}));
    b.command(
        "mesh/set-my-connection-metadata",
        json!({"metadata": {"name": "B", "x": 1}}),
    )
    .await;
    b.command(
        "mesh/set-my-connection-metadata",
        json!({"metadata": {"x": 2}, "strategy": "merge"}),
    )
    .await;
    assert_eq!(
        a.command("mesh/get-my-connection-metadata", json!({}))
            .await,
        json!({"metadata": {"name": "A"}})
    );
    assert_eq!(
        a.command(
            "mesh/get-connection-metadata",
            json!({"connectionId": b.id})
        )
        .await,
        json!({"metadata": {"name": "B", "x": 2}})
    );

    a.command("mesh/join-room", json!({"roomName": "room:meta"}))
        .await;
    server
        .node()
        .set_channel_metadata(
            "room:meta",
            json!({"topic": "t"}).as_object().unwrap().clone(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        b.command("mesh/get-room-metadata", json!({"roomName": "room:meta"}))
            .await,
        json!({"metadata": {"topic": "t"}})
    );
    assert_eq!(
        b.command("mesh/get-room-metadata", json!({"roomName": "room:none"}))
            .await,
        json!({"metadata": null})
    );
}

#[tokio::test]
async fn channels_subscription_exposure_guards_and_history() {
    let server = start(server()).await;
    let node = server.node();
    let mut c1 = MeshClient::connect(&format!("{}?user=alice", server.ws_url())).await;
    let mut c2 = MeshClient::connect(&server.ws_url()).await;

    for c in [&mut c1, &mut c2] {
        assert_eq!(
            c.command("mesh/subscribe-channel", json!({"channel": "test:channel"}))
                .await,
            json!({"success": true, "history": []})
        );
    }
    assert_eq!(
        c1.command("mesh/subscribe-channel", json!({"channel": "secret:x"}))
            .await,
        json!({"success": false, "history": []})
    );
    node.publish("test:channel", json_payload(json!("Hello, Redis!")))
        .await
        .unwrap();
    node.publish("other", json_payload(json!("elsewhere")))
        .await
        .unwrap();
    for c in [&mut c1, &mut c2] {
        let m = c.push("mesh/subscription-message").await;
        assert_eq!(
            m["payload"],
            json!({"channel": "test:channel", "message": "Hello, Redis!"})
        );
    }
    // Unsubscribed: nothing more; a channel never subscribed: false.
    assert_eq!(
        c1.command(
            "mesh/unsubscribe-channel",
            json!({"channel": "test:channel"})
        )
        .await,
        json!(true)
    );
    assert_eq!(
        c1.command(
            "mesh/unsubscribe-channel",
            json!({"channel": "test:channel"})
        )
        .await,
        json!(false)
    );
    node.publish("test:channel", json_payload(json!({"n": 2})))
        .await
        .unwrap();
    let m = c2.push("mesh/subscription-message").await;
    assert_eq!(
        m["payload"]["message"],
        json!("{\"n\":2}"),
        "JSON that is not a string is sent as its text"
    );

    // The guard sees the exact channel name and lets only alice in.
    let guarded = json!({"channel": "guarded:42"});
    assert_eq!(
        c1.command("mesh/subscribe-channel", guarded.clone()).await["success"],
        true
    );
    assert_eq!(
        c2.command("mesh/subscribe-channel", guarded).await["success"],
        false
    );

    // History: newest first, at most historyLimit (Mesh kept one too many).
    for i in 1..=5 {
        node.publish(
            "hist:1",
            json_payload(json!(format!("History message {i}"))),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        c2.command(
            "mesh/subscribe-channel",
            json!({"channel": "hist:1", "historyLimit": 3})
        )
        .await,
        json!({"success": true, "history": ["History message 5", "History message 4", "History message 3"]})
    );
    // What a native client publishes, a Mesh client receives.
    let mut native = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    let _: PublishResult = native
        .request(Op::Publish(PublishParams::new(
            "hist:1",
            &json_payload(json!("from native")),
        )))
        .await
        .unwrap_err_or_ok();
    let m = c2.push("mesh/subscription-message").await;
    assert_eq!(
        m["payload"],
        json!({"channel": "hist:1", "message": "from native"})
    );
}

#[tokio::test]
async fn rooms_presence_and_presence_states() {
    let server = start(server()).await;
    let mut a = MeshClient::connect(&server.ws_url()).await;
    let mut b = MeshClient::connect(&server.ws_url()).await;
    let mut watcher = MeshClient::connect(&server.ws_url()).await;

    assert_eq!(
        watcher
            .command("mesh/subscribe-presence", json!({"roomName": "room:1"}))
            .await,
        json!({"success": true, "present": [], "states": {}})
    );
    assert_eq!(
        watcher
            .command("mesh/subscribe-presence", json!({"roomName": "untracked"}))
            .await["success"],
        false
    );
    assert_eq!(
        a.command("mesh/join-room", json!({"roomName": "room:1"}))
            .await,
        json!({"success": true, "present": [a.id]})
    );
    let join = watcher.push("mesh/presence-update").await["payload"].clone();
    assert_eq!(
        (&join["type"], &join["connectionId"], &join["roomName"]),
        (&json!("join"), &json!(a.id), &json!("room:1"))
    );
    assert!(join["timestamp"].is_u64());

    let joined = b
        .command("mesh/join-room", json!({"roomName": "room:1"}))
        .await;
    let mut present: Vec<String> = serde_json::from_value(joined["present"].clone()).unwrap();
    present.sort();
    let mut both = vec![a.id.clone(), b.id.clone()];
    both.sort();
    assert_eq!(present, both, "the initial list holds both");
    assert_eq!(
        a.push("mesh/presence-update").await["payload"]["connectionId"],
        json!(b.id)
    );

    // States: published, overwritten, cleared; a publish without `state` is refused.
    let state = |s: Value| json!({"roomName": "room:1", "state": s});
    assert_eq!(
        a.command(
            "mesh/publish-presence-state",
            state(json!({"typing": true}))
        )
        .await,
        json!(true)
    );
    assert_eq!(
        a.command(
            "mesh/publish-presence-state",
            state(json!({"typing": false}))
        )
        .await,
        json!(true)
    );
    assert_eq!(
        a.command("mesh/publish-presence-state", json!({"roomName": "room:1"}))
            .await,
        json!(false)
    );
    assert_eq!(
        watcher
            .command("mesh/publish-presence-state", state(json!(1)))
            .await,
        json!(false),
        "not in the room"
    );
    let mut states = Vec::new();
    async fn next_state(watcher: &mut MeshClient) -> Value {
        loop {
            let u = watcher.push("mesh/presence-update").await["payload"].clone();
            if u["type"] == "state" {
                return u["state"].clone();
            }
        }
    }
    for _ in 0..2 {
        states.push(next_state(&mut watcher).await);
    }
    assert_eq!(states, [json!({"typing": true}), json!({"typing": false})]);
    let listed = watcher
        .command("mesh/subscribe-presence", json!({"roomName": "room:1"}))
        .await;
    assert_eq!(listed["states"][&a.id], json!({"typing": false}));
    assert_eq!(
        a.command("mesh/clear-presence-state", json!({"roomName": "room:1"}))
            .await,
        json!(true)
    );
    assert_eq!(
        next_state(&mut watcher).await,
        Value::Null,
        "a cleared state is null"
    );

    // Leaving and disconnecting are leaves; after unsubscribing presence, nothing more.
    assert_eq!(
        b.command("mesh/leave-room", json!({"roomName": "room:1"}))
            .await,
        json!({"success": true})
    );
    loop {
        let u = watcher.push("mesh/presence-update").await["payload"].clone();
        if u["type"] == "leave" {
            assert_eq!(u["connectionId"], json!(b.id));
            break;
        }
    }
    let a_id = a.id.clone();
    a.close().await;
    loop {
        let u = watcher.push("mesh/presence-update").await["payload"].clone();
        if u["type"] == "leave" {
            assert_eq!(u["connectionId"], json!(a_id));
            break;
        }
    }
    assert_eq!(
        watcher
            .command("mesh/unsubscribe-presence", json!({"roomName": "room:1"}))
            .await,
        json!(true)
    );
    assert_eq!(
        watcher
            .command("mesh/unsubscribe-presence", json!({"roomName": "room:1"}))
            .await,
        json!(false)
    );
}

#[tokio::test]
async fn records_in_full_and_patch_mode_with_guards_and_resync() {
    let server = start(server()).await;
    let mut full = MeshClient::connect(&server.ws_url()).await;
    let mut patch = MeshClient::connect(&server.ws_url()).await;
    let mut writer = MeshClient::connect(&server.ws_url()).await;

    assert_eq!(
        full.command("mesh/subscribe-record", json!({"recordId": "hidden:1"}))
            .await,
        json!({"success": false, "record": null, "version": 0})
    );
    assert_eq!(
        full.command("mesh/subscribe-record", json!({"recordId": "doc"}))
            .await,
        json!({"success": true, "record": null, "version": 0})
    );
    assert_eq!(
        patch
            .command(
                "mesh/subscribe-record",
                json!({"recordId": "doc", "mode": "patch"})
            )
            .await["success"],
        true
    );
    let update = |v: Value| json!({"recordId": "doc", "newValue": v});
    assert_eq!(
        writer
            .command("mesh/publish-record-update", update(json!({"count": 1})))
            .await,
        json!({"success": true, "version": 1})
    );
    writer
        .command(
            "mesh/publish-record-update",
            update(json!({"count": 2, "name": "added"})),
        )
        .await;
    writer
        .command(
            "mesh/publish-record-update",
            update(json!({"name": "added"})),
        )
        .await;

    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(full.push("mesh/record-update").await["payload"].clone());
    }
    assert_eq!(
        seen[0],
        json!({"recordId": "doc", "full": {"count": 1}, "version": 1})
    );
    assert_eq!(
        seen[1],
        json!({"recordId": "doc", "full": {"count": 2, "name": "added"}, "version": 2})
    );
    assert_eq!(seen[2]["version"], 3);
    // Patch mode: the creation whole (nothing to patch from), then RFC 6902 operations.
    let first = patch.push("mesh/record-update").await["payload"].clone();
    assert_eq!(
        first,
        json!({"recordId": "doc", "full": {"count": 1}, "version": 1})
    );
    let second = patch.push("mesh/record-update").await["payload"].clone();
    assert_eq!(second["version"], 2);
    let mut ops: Vec<Value> = serde_json::from_value(second["patch"].clone()).unwrap();
    ops.sort_by_key(|o| o["path"].as_str().unwrap().to_owned());
    assert_eq!(
        ops,
        [
            json!({"op": "replace", "path": "/count", "value": 2}),
            json!({"op": "add", "path": "/name", "value": "added"})
        ]
    );
    let third = patch.push("mesh/record-update").await["payload"].clone();
    assert_eq!(
        third,
        json!({"recordId": "doc", "patch": [{"op": "remove", "path": "/count"}], "version": 3})
    );

    // A record readable but not writable.
    assert_eq!(
        writer
            .command(
                "mesh/publish-record-update",
                json!({"recordId": "locked:1", "newValue": 1})
            )
            .await,
        json!({"code": "ESERVER", "error": "Record \"locked:1\" is not writable by this connection.", "name": "Error"})
    );
    // Compare-and-set (Plexus's `expectedVersion`): a stale one is refused, nothing is lost.
    let stale = writer
        .command(
            "mesh/publish-record-update",
            json!({"recordId": "doc", "newValue": 0, "expectedVersion": 1}),
        )
        .await;
    assert_eq!(
        (&stale["code"], &stale["version"]),
        (&json!("ECONFLICT"), &json!(3))
    );

    // Desync, as Mesh's client handles it: it missed versions (here: it was unsubscribed), so it
    // unsubscribes and subscribes again, and gets the full value.
    assert_eq!(
        patch
            .command("mesh/unsubscribe-record", json!({"recordId": "doc"}))
            .await,
        json!(true)
    );
    assert_eq!(
        patch
            .command("mesh/unsubscribe-record", json!({"recordId": "doc"}))
            .await,
        json!(false)
    );
    writer
        .command("mesh/publish-record-update", update(json!({"count": 4})))
        .await;
    assert_eq!(
        patch
            .command(
                "mesh/subscribe-record",
                json!({"recordId": "doc", "mode": "patch"})
            )
            .await,
        json!({"success": true, "record": {"count": 4}, "version": 4})
    );
    writer
        .command(
            "mesh/patch-record",
            json!({"recordId": "doc", "patch": [{"op": "replace", "path": "/count", "value": 5}]}),
        )
        .await;
    let next = patch.push("mesh/record-update").await["payload"].clone();
    assert_eq!(
        next,
        json!({"recordId": "doc", "patch": [{"op": "replace", "path": "/count", "value": 5}], "version": 5})
    );

    // Native and Mesh clients share records.
    let mut native = TestClient::connect(&server.ws_url(), Encoding::Msgpack).await;
    let r: RecordResult = native
        .request(Op::RecordGet(RecordParams { id: "doc".into() }))
        .await
        .unwrap();
    assert_eq!((r.value, r.version), (json!({"count": 5}), 5));
}

trait UnwrapEither<T> {
    fn unwrap_err_or_ok(self) -> T;
}

impl<T> UnwrapEither<T> for Result<T, plexus_protocol::server::ErrorBody> {
    fn unwrap_err_or_ok(self) -> T {
        self.unwrap_or_else(|e| panic!("refused: {e:?}"))
    }
}
