//! Rooms — channels with an owner and access lists (`docs/chat-service.md`, `docs/protocol.md`
//! §8.3) — over real connections: who may subscribe, publish and read; members who lose access
//! leave at once, on every node; a deleted room unsubscribes everyone; notices reach
//! subscribers without taking an offset; the HTTP API's room and user methods with bad input.
//! Runs on the engine of the suite (`PLEXUS_TEST_ENGINE=redis` for Redis); the two-node test
//! always runs on a real `redis-server`.

mod common;
mod support;

use axum::http::StatusCode;
use common::*;
use futures_util::{SinkExt, StreamExt};
use plexus_core::auth::UpgradeDecision;
use plexus_core::{Access, ChannelMatch, ChannelPolicy, Identity, Namespace, UpgradeRequest};
use plexus_protocol::client::{ChannelParams, HistoryParams, Op, PublishParams, SubscribeParams};
use plexus_protocol::server::{ErrorBody, NoticePush, PublishResult, Push, SubscribeResult};
use plexus_protocol::{Encoding, Payload};
use plexus_server::api::{ApiKey, ApiOptions, HttpEndpoints};
use plexus_server::{RunningServer, ServerBuilder};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// `room:*` are rooms (history, presence); everything else is open.
fn policy() -> ChannelPolicy {
    let mut policy = ChannelPolicy::default();
    policy.add_namespace(
        Namespace::new("rooms", ChannelMatch::Prefix("room:".into()))
            .subscribe(Access::Authenticated)
            .publish(Access::Subscribers)
            .history(plexus_core::HistoryOptions {
                size: 10,
                ttl: Duration::from_secs(60),
            })
            .rooms(true),
    );
    policy.add_namespace(
        Namespace::new("open", ChannelMatch::Any)
            .subscribe(Access::Anyone)
            .publish(Access::Anyone),
    );
    policy
}

/// A server whose connections are user `?user=NAME` (anonymous without it), with the HTTP API.
fn builder(configure: impl FnOnce(&mut plexus_core::Limits)) -> ServerBuilder {
    let mut builder = dev()
        .channels(policy())
        .upgrade_hook(|req: Arc<UpgradeRequest>| async move {
            UpgradeDecision::Accept(req.query_param("user").map(Identity::new))
        })
        .endpoints(HttpEndpoints {
            api: Some(ApiOptions {
                key: ApiKey::Required(support::API_KEY.into()),
                ..ApiOptions::default()
            }),
            ..HttpEndpoints::default()
        });
    configure(builder.limits_mut());
    builder
}

async fn server() -> RunningServer {
    start(builder(|_| {})).await
}

async fn user(server: &RunningServer, name: &str, enc: Encoding) -> TestClient {
    TestClient::connect(&format!("{}?user={name}", server.ws_url()), enc).await
}

async fn subscribe(c: &mut TestClient, channel: &str) -> Result<SubscribeResult, ErrorBody> {
    c.request(Op::Subscribe(SubscribeParams::new(channel)))
        .await
}

async fn publish(c: &mut TestClient, channel: &str, v: Value) -> Result<PublishResult, ErrorBody> {
    let payload = Payload::json(&v).unwrap();
    c.request(Op::Publish(PublishParams::new(channel, &payload)))
        .await
}

/// The code and the reason (`data.reason`) of a refusal.
fn refusal(e: ErrorBody) -> (u32, String) {
    let data: Value = e
        .data
        .as_ref()
        .map(|d| serde_json::from_str(d.0.get()).unwrap())
        .unwrap_or(Value::Null);
    (
        e.code.0,
        data["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The next push of a kind the test waits for (skipping presence and publications it does not).
async fn next_unsubscribed(c: &mut TestClient) -> (String, String) {
    loop {
        if let Push::Unsubscribed(u) = c.next_push().await {
            return (u.channel, u.reason);
        }
    }
}

async fn next_notice(c: &mut TestClient) -> NoticePush {
    loop {
        if let Push::Notice(n) = c.next_push().await {
            return n;
        }
    }
}

async fn next_pub(c: &mut TestClient) -> plexus_protocol::server::PubPush {
    loop {
        if let Push::Pub(p) = c.next_push().await {
            return p;
        }
    }
}

async fn api(server: &RunningServer, method: &str, body: Value) -> (StatusCode, Value) {
    support::api(server, method, body).await
}

async fn api_ok(server: &RunningServer, method: &str, body: Value) -> Value {
    support::api_ok(server, method, body).await
}

/// Waits until the room lists `n` users (leaving a room's presence finishes in a task).
async fn users_settle(server: &RunningServer, room: &str, n: usize) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info = api_ok(server, "room_info", json!({ "room": room })).await;
        if info["users"].as_array().unwrap().len() == n {
            return info;
        }
        assert!(tokio::time::Instant::now() < deadline, "{room}: {info}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

both_encodings!(
    subscribe_publish_and_reads_follow_the_room_lists,
    |enc| async move {
        let server = server().await;
        let mut bob = user(&server, "bob", enc).await;
        assert_eq!(
            refusal(subscribe(&mut bob, "room:1").await.unwrap_err()),
            (119, "noRoom".into()),
            "a room exists once created"
        );
        api_ok(
            &server,
            "room_create",
            json!({"room": "room:1", "owner": "ann", "blacklist": ["mallory"]}),
        )
        .await;
        let mut ann = user(&server, "ann", enc).await;
        let mut mallory = user(&server, "mallory", enc).await;
        let mut anonymous = TestClient::connect(&server.ws_url(), enc).await;
        assert_eq!(
            subscribe(&mut anonymous, "room:1")
                .await
                .unwrap_err()
                .code
                .0,
            101,
            "rooms admit users only"
        );
        assert_eq!(
            refusal(subscribe(&mut mallory, "room:1").await.unwrap_err()),
            (105, "notAllowed".into())
        );
        subscribe(&mut ann, "room:1").await.unwrap();
        subscribe(&mut bob, "room:1").await.unwrap();
        assert_eq!(
            publish(&mut bob, "room:1", json!("hi"))
                .await
                .unwrap()
                .offset,
            1
        );
        assert_eq!(next_pub(&mut ann).await.offset, 1);
        // Publishing needs the connection in the room; reads need the user in it (or an admin).
        assert_eq!(
            refusal(
                publish(&mut mallory, "room:1", json!("x"))
                    .await
                    .unwrap_err()
            ),
            (109, "notJoined".into())
        );
        let history = Op::History(HistoryParams {
            channel: "room:1".into(),
            ..Default::default()
        });
        let e = mallory.request::<Value>(history.clone()).await.unwrap_err();
        assert_eq!(refusal(e), (109, "notJoined".into()));
        let presence = Op::Presence(ChannelParams {
            channel: "room:1".into(),
        });
        assert_eq!(
            refusal(
                mallory
                    .request::<Value>(presence.clone())
                    .await
                    .unwrap_err()
            ),
            (109, "notJoined".into())
        );
        // Another connection of a member reads as the member.
        let mut bob2 = user(&server, "bob", enc).await;
        let page: Value = bob2.request(history).await.unwrap();
        assert_eq!(page["offset"], 1);
        // Channels outside the rooms namespace are untouched.
        subscribe(&mut mallory, "lobby").await.unwrap();
        publish(&mut mallory, "lobby", json!(1)).await.unwrap();
    }
);

both_encodings!(a_blacklisting_removes_a_member_at_once, |enc| async move {
    let server = server().await;
    api_ok(
        &server,
        "room_create",
        json!({"room": "room:b", "owner": "ann"}),
    )
    .await;
    let mut ann = user(&server, "ann", enc).await;
    let mut bob = user(&server, "bob", enc).await;
    let mut bob_phone = user(&server, "bob", enc).await;
    for c in [&mut ann, &mut bob, &mut bob_phone] {
        subscribe(c, "room:b").await.unwrap();
    }
    let result = api_ok(
        &server,
        "room_list_add",
        json!({"room": "room:b", "list": "blacklist", "names": ["bob"]}),
    )
    .await;
    assert_eq!(result, json!({"removed": ["bob"]}));
    for c in [&mut bob, &mut bob_phone] {
        assert_eq!(
            next_unsubscribed(c).await,
            ("room:b".into(), "access removed".into()),
            "every connection of the user leaves"
        );
    }
    publish(&mut ann, "room:b", json!("after")).await.unwrap();
    assert_eq!(next_pub(&mut ann).await.offset, 1);
    assert!(
        bob.silent_for(Duration::from_millis(200)).await,
        "no publication reaches a removed member"
    );
    assert_eq!(
        refusal(subscribe(&mut bob, "room:b").await.unwrap_err()),
        (105, "notAllowed".into()),
        "and it cannot come back"
    );
    assert_eq!(
        refusal(publish(&mut bob, "room:b", json!("x")).await.unwrap_err()),
        (109, "notJoined".into())
    );
    // Off the blacklist, it may come back.
    api_ok(
        &server,
        "room_list_remove",
        json!({"room": "room:b", "list": "blacklist", "names": ["bob"]}),
    )
    .await;
    subscribe(&mut bob, "room:b").await.unwrap();
});

#[tokio::test]
async fn whitelist_only_mode_keeps_the_owner_the_admins_and_the_whitelist() {
    let server = server().await;
    api_ok(
        &server,
        "room_create",
        json!({"room": "room:w", "owner": "ann", "adminlist": ["adm"], "whitelist": ["carol"]}),
    )
    .await;
    let enc = Encoding::Json;
    let mut clients = Vec::new();
    for name in ["ann", "adm", "carol", "bob"] {
        let mut c = user(&server, name, enc).await;
        subscribe(&mut c, "room:w").await.unwrap();
        clients.push(c);
    }
    let result = api_ok(
        &server,
        "room_set_whitelist_only",
        json!({"room": "room:w", "whitelist_only": true}),
    )
    .await;
    assert_eq!(
        result,
        json!({"removed": ["bob"]}),
        "the owner stays though it is on no list"
    );
    let mut bob = clients.pop().unwrap();
    assert_eq!(
        next_unsubscribed(&mut bob).await.1,
        "access removed".to_owned()
    );
    let mut dan = user(&server, "dan", enc).await;
    assert_eq!(
        refusal(subscribe(&mut dan, "room:w").await.unwrap_err()),
        (105, "notAllowed".into())
    );
    publish(&mut clients[2], "room:w", json!("still here"))
        .await
        .unwrap();
    for c in &mut clients {
        assert_eq!(next_pub(c).await.offset, 1);
    }
    // Taking carol off the whitelist removes her too.
    let result = api_ok(
        &server,
        "room_list_remove",
        json!({"room": "room:w", "list": "whitelist", "names": ["carol"]}),
    )
    .await;
    assert_eq!(result, json!({"removed": ["carol"]}));
    let info = users_settle(&server, "room:w", 2).await;
    assert_eq!(info["users"], json!(["adm", "ann"]));
}

#[tokio::test]
async fn deleting_a_room_unsubscribes_everyone() {
    let server = server().await;
    api_ok(
        &server,
        "room_create",
        json!({"room": "room:d", "owner": "ann"}),
    )
    .await;
    let mut ann = user(&server, "ann", Encoding::Json).await;
    let mut bob = user(&server, "bob", Encoding::Msgpack).await;
    subscribe(&mut ann, "room:d").await.unwrap();
    subscribe(&mut bob, "room:d").await.unwrap();
    publish(&mut ann, "room:d", json!(1)).await.unwrap();
    users_settle(&server, "room:d", 2).await;
    let result = api_ok(&server, "room_delete", json!({"room": "room:d"})).await;
    assert_eq!(result, json!({"removed": ["ann", "bob"]}));
    for c in [&mut ann, &mut bob] {
        assert_eq!(
            next_unsubscribed(c).await,
            ("room:d".into(), "room deleted".into())
        );
        assert_eq!(
            refusal(subscribe(c, "room:d").await.unwrap_err()),
            (119, "noRoom".into())
        );
    }
    let (status, body) = api(&server, "room_delete", json!({"room": "room:d"})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, json!(119))
    );
    // A room created again starts without the old one's history.
    api_ok(&server, "room_create", json!({"room": "room:d"})).await;
    let mut carol = user(&server, "carol", Encoding::Json).await;
    subscribe(&mut carol, "room:d").await.unwrap();
    let page: Value = carol
        .request(Op::History(HistoryParams {
            channel: "room:d".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(page["publications"], json!([]));
}

both_encodings!(
    notices_reach_subscribers_without_an_offset,
    |enc| async move {
        let server = server().await;
        api_ok(&server, "room_create", json!({"room": "room:n"})).await;
        let mut a = user(&server, "a", enc).await;
        let mut b = user(&server, "b", enc).await;
        let mut outsider = user(&server, "c", enc).await;
        subscribe(&mut a, "room:n").await.unwrap();
        subscribe(&mut b, "room:n").await.unwrap();
        let first = api_ok(&server, "publish", json!({"channel": "room:n", "data": 1})).await;
        assert_eq!(first["offset"], 1);
        api_ok(
            &server,
            "notify",
            json!({"channel": "room:n", "event": "roomModeChanged", "data": ["n", true]}),
        )
        .await;
        api_ok(
            &server,
            "notify",
            json!({"channel": "room:n", "binary": "AQI=", "exclude": {"users": ["b"]}}),
        )
        .await;
        let second = api_ok(&server, "publish", json!({"channel": "room:n", "data": 2})).await;
        assert_eq!(second["offset"], 2, "notices take no offset");
        assert_eq!(next_pub(&mut a).await.offset, 1);
        let notice = next_notice(&mut a).await;
        assert_eq!(notice.channel, "room:n");
        assert_eq!(notice.event.as_deref(), Some("roomModeChanged"));
        assert_eq!(
            notice.payload().unwrap(),
            Payload::json(&json!(["n", true])).unwrap()
        );
        let binary = next_notice(&mut a).await;
        assert_eq!(binary.event, None);
        assert_eq!(binary.payload().unwrap(), Payload::binary(vec![1u8, 2]));
        assert_eq!(next_pub(&mut a).await.offset, 2);
        // b was excluded from the second notice.
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match b.next_push().await {
                Push::Notice(n) => seen.push(format!("notice {:?}", n.event)),
                Push::Pub(p) => seen.push(format!("pub {}", p.offset)),
                _ => {}
            }
        }
        assert_eq!(seen, ["pub 1", "notice Some(\"roomModeChanged\")", "pub 2"]);
        assert!(outsider.silent_for(Duration::from_millis(100)).await);
        // History holds the publications only.
        let page: Value = a
            .request(Op::History(HistoryParams {
                channel: "room:n".into(),
                ..Default::default()
            }))
            .await
            .unwrap();
        let offsets: Vec<u64> = page["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, [1, 2]);
    }
);

/// A Socket.IO client on WebSocket as user `name` in namespace `/`.
async fn socketio(server: &RunningServer, name: &str) -> common::Ws {
    let addr = server.local_addr();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&user={name}");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let open = next_text(&mut ws).await;
    assert!(open.starts_with('0'), "{open}");
    ws.send(Message::text("40")).await.unwrap();
    let connected = next_text(&mut ws).await;
    assert!(connected.starts_with("40{"), "{connected}");
    ws
}

/// The next text message that is not an Engine.IO ping (answered).
async fn next_text(ws: &mut common::Ws) -> String {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        if text.as_str() == "2" {
            ws.send(Message::text("3")).await.unwrap();
            continue;
        }
        return text.as_str().to_owned();
    }
}

#[tokio::test]
async fn socket_io_clients_obey_rooms_and_receive_notices() {
    let server = server().await;
    api_ok(
        &server,
        "room_create",
        json!({"room": "room:s", "owner": "ann", "blacklist": ["mallory"]}),
    )
    .await;
    let mut mallory = socketio(&server, "mallory").await;
    mallory
        .send(Message::text(r#"421["subscribe","room:s"]"#))
        .await
        .unwrap();
    let refused = next_text(&mut mallory).await;
    assert!(
        refused.starts_with("431[") && refused.contains("105"),
        "{refused}"
    );
    let mut bob = socketio(&server, "bob").await;
    bob.send(Message::text(r#"421["subscribe","room:s"]"#))
        .await
        .unwrap();
    let ack = next_text(&mut bob).await;
    assert!(ack.starts_with("431[null"), "{ack}");
    api_ok(
        &server,
        "notify",
        json!({"channel": "room:s", "event": "roomAccessListAdded", "data": ["s", "blacklist", ["x"]]}),
    )
    .await;
    api_ok(&server, "notify", json!({"channel": "room:s", "data": 7})).await;
    assert_eq!(
        next_text(&mut bob).await,
        r#"42["roomAccessListAdded",["s","blacklist",["x"]],{"channel":"room:s"}]"#
    );
    assert_eq!(
        next_text(&mut bob).await,
        r#"42["notice",7,{"channel":"room:s"}]"#
    );
    // A blacklisting reaches Socket.IO members too.
    api_ok(
        &server,
        "room_list_add",
        json!({"room": "room:s", "list": "blacklist", "names": ["bob"]}),
    )
    .await;
    assert_eq!(
        next_text(&mut bob).await,
        r#"42["unsubscribed",{"channel":"room:s","reason":"access removed"}]"#
    );
}

#[tokio::test]
async fn the_http_api_manages_rooms_and_users() {
    let server = start(builder(|limits| {
        limits.room_list_max = 3;
        limits.direct_list_max = 2;
    }))
    .await;
    let room = "room:api";
    api_ok(
        &server,
        "room_create",
        json!({"room": room, "owner": "ann", "adminlist": ["adm"], "whitelist": ["w1"],
               "history_max_size": 2, "notify_userlist": true}),
    )
    .await;
    let info = api_ok(&server, "room_info", json!({ "room": room })).await;
    assert_eq!(
        info,
        json!({"owner": "ann", "whitelist": ["w1"], "blacklist": [], "adminlist": ["adm"],
               "whitelist_only": false, "history_max_size": 2, "notify_userlist": true,
               "notify_access_lists": false, "users": []})
    );
    // Bad input, each with its code.
    let long = "x".repeat(256);
    let cases: Vec<(&str, Value, StatusCode, u32, &str)> = vec![
        (
            "room_create",
            json!({"room": room}),
            StatusCode::CONFLICT,
            120,
            "roomExists",
        ),
        (
            "room_create",
            json!({"room": ""}),
            StatusCode::BAD_REQUEST,
            107,
            "",
        ),
        (
            "room_create",
            json!({"room": long}),
            StatusCode::BAD_REQUEST,
            107,
            "",
        ),
        (
            "room_create",
            json!({"room": "lobby"}),
            StatusCode::FORBIDDEN,
            105,
            "notAllowed",
        ),
        (
            "room_info",
            json!({"room": "lobby"}),
            StatusCode::NOT_FOUND,
            119,
            "noRoom",
        ),
        (
            "publish",
            json!({"channel": "room:none", "data": 1}),
            StatusCode::NOT_FOUND,
            119,
            "noRoom",
        ),
        (
            "publish",
            json!({"channel": "news", "data": 1, "exclude": {"users": [""]}}),
            StatusCode::BAD_REQUEST,
            104,
            "",
        ),
        (
            "room_create",
            json!({"room": "room:x", "owner": ""}),
            StatusCode::BAD_REQUEST,
            104,
            "",
        ),
        (
            "room_create",
            json!({"room": "room:x", "owner": null}),
            StatusCode::BAD_REQUEST,
            104,
            "",
        ),
        (
            "room_create",
            json!({"room": "room:x", "whitelist": ["a", "b", "c", "d"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            106,
            "listLimitExceeded",
        ),
        // The array is bounded as sent, duplicates included (as the OpenAPI schema says;
        // schemathesis found the server merging them first).
        (
            "room_create",
            json!({"room": "room:x", "blacklist": ["a", "a", "a", "a"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            106,
            "listLimitExceeded",
        ),
        (
            "user_add",
            json!({"user": "dup", "whitelist": ["a", "a", "a"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            106,
            "listLimitExceeded",
        ),
        (
            "room_info",
            json!({"room": "room:none"}),
            StatusCode::NOT_FOUND,
            119,
            "noRoom",
        ),
        (
            "room_list_add",
            json!({"room": room, "list": "greylist", "names": ["a"]}),
            StatusCode::BAD_REQUEST,
            104,
            "noList",
        ),
        (
            "room_list_add",
            json!({"room": room, "list": "userlist", "names": ["a"]}),
            StatusCode::FORBIDDEN,
            105,
            "notAllowed",
        ),
        (
            "room_list_add",
            json!({"room": room, "list": "whitelist", "names": [long]}),
            StatusCode::BAD_REQUEST,
            104,
            "",
        ),
        (
            "room_list_add",
            json!({"room": room, "list": "whitelist", "names": ["a\u{7}"]}),
            StatusCode::BAD_REQUEST,
            104,
            "",
        ),
        (
            "room_list_add",
            json!({"room": room, "list": "whitelist", "names": [""]}),
            StatusCode::BAD_REQUEST,
            104,
            "",
        ),
        // Limit 3 with one name there: three new ones do not fit.
        (
            "room_list_add",
            json!({"room": room, "list": "whitelist", "names": ["a", "b", "c"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            106,
            "listLimitExceeded",
        ),
        (
            "room_list_add",
            json!({"room": "room:none", "list": "whitelist", "names": ["a"]}),
            StatusCode::NOT_FOUND,
            119,
            "noRoom",
        ),
        (
            "room_list_add",
            json!({"room": room, "list": "whitelist"}),
            StatusCode::BAD_REQUEST,
            104,
            "",
        ),
        (
            "room_set_whitelist_only",
            json!({"room": room, "whitelist_only": "yes"}),
            StatusCode::BAD_REQUEST,
            104,
            "",
        ),
        (
            "room_set_history_size",
            json!({"room": room, "history_max_size": -1}),
            StatusCode::BAD_REQUEST,
            104,
            "",
        ),
        (
            "room_access",
            json!({"room": room, "user": ""}),
            StatusCode::BAD_REQUEST,
            104,
            "",
        ),
        (
            "user_delete",
            json!({"user": "nobody"}),
            StatusCode::NOT_FOUND,
            119,
            "noUser",
        ),
        (
            "direct_list_add",
            json!({"user": "nobody", "list": "blacklist", "names": ["x"]}),
            StatusCode::NOT_FOUND,
            119,
            "noUser",
        ),
        (
            "direct_list_add",
            json!({"user": "u", "list": "adminlist", "names": ["x"]}),
            StatusCode::BAD_REQUEST,
            104,
            "noList",
        ),
        (
            "direct_access",
            json!({"sender": "a", "recipient": "nobody"}),
            StatusCode::NOT_FOUND,
            119,
            "noUser",
        ),
        (
            "notify",
            json!({"channel": "news"}),
            StatusCode::BAD_REQUEST,
            104,
            "",
        ),
        (
            "notify",
            json!({"channel": "", "data": 1}),
            StatusCode::BAD_REQUEST,
            107,
            "",
        ),
        (
            "notify",
            json!({"channel": "news", "data": 1, "event": "connect"}),
            StatusCode::BAD_REQUEST,
            104,
            "",
        ),
    ];
    for (method, body, status, code, reason) in cases {
        let (got, answer) = api(&server, method, body.clone()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_u64()),
            (status, Some(u64::from(code))),
            "{method} {body}: {answer}"
        );
        if !reason.is_empty() {
            assert_eq!(
                answer["error"]["data"]["reason"], reason,
                "{method} {body}: {answer}"
            );
        }
    }
    // Lists within the limit; an admin's rights do not matter to the server.
    api_ok(
        &server,
        "room_list_add",
        json!({"room": room, "list": "whitelist", "names": ["w1", "w2", "w3"]}),
    )
    .await;
    api_ok(
        &server,
        "room_list_add",
        json!({"room": room, "list": "blacklist", "names": ["ann", "adm", "bad"]}),
    )
    .await;
    let access = |user: &str| json!({"room": room, "user": user});
    for (name, expected) in [
        ("ann", true),
        ("adm", true),
        ("bad", false),
        ("w2", true),
        ("joe", true),
    ] {
        let got = api_ok(&server, "room_access", access(name)).await;
        assert_eq!(got, json!({"access": expected}), "{name}");
    }
    api_ok(
        &server,
        "room_set_whitelist_only",
        json!({"room": room, "whitelist_only": true}),
    )
    .await;
    assert_eq!(
        api_ok(&server, "room_access", access("joe")).await["access"],
        false
    );
    assert_eq!(
        api_ok(&server, "room_access", access("w3")).await["access"],
        true
    );
    // A new owner; without `owner`, none.
    api_ok(
        &server,
        "room_set_owner",
        json!({"room": room, "owner": "w3"}),
    )
    .await;
    assert_eq!(
        api_ok(&server, "room_info", json!({"room": room})).await["owner"],
        "w3"
    );
    assert_eq!(
        api_ok(&server, "room_access", access("ann")).await["access"],
        false
    );
    api_ok(&server, "room_set_owner", json!({"room": room})).await;
    assert_eq!(
        api_ok(&server, "room_info", json!({"room": room})).await["owner"],
        Value::Null
    );
    api_ok(
        &server,
        "room_set_notifications",
        json!({"room": room, "access_lists": true}),
    )
    .await;
    api_ok(&server, "room_set_history_size", json!({"room": room})).await;
    let info = api_ok(&server, "room_info", json!({"room": room})).await;
    assert_eq!(
        (
            &info["notify_userlist"],
            &info["notify_access_lists"],
            &info["history_max_size"],
            &info["whitelist_only"]
        ),
        (&json!(true), &json!(true), &Value::Null, &json!(true))
    );
    // A room keeps at most its history size.
    api_ok(
        &server,
        "room_create",
        json!({"room": "room:h", "history_max_size": 2}),
    )
    .await;
    for i in 0..4 {
        api_ok(&server, "publish", json!({"channel": "room:h", "data": i})).await;
    }
    let page = api_ok(&server, "history", json!({"channel": "room:h"})).await;
    assert_eq!(page["publications"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["offset"], 4);
    let (status, body) = api(
        &server,
        "publish",
        json!({"channel": "room:none", "data": 1}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, json!(119))
    );

    // Users and direct lists.
    assert_eq!(
        api_ok(&server, "user_exists", json!({"user": "u"})).await,
        json!({"exists": false})
    );
    api_ok(
        &server,
        "user_add",
        json!({"user": "u", "blacklist": ["spam"]}),
    )
    .await;
    let (status, body) = api(&server, "user_add", json!({"user": "u"})).await;
    assert_eq!(
        (status, body["error"]["data"]["reason"].clone()),
        (StatusCode::CONFLICT, json!("userExists"))
    );
    assert_eq!(
        api_ok(&server, "user_exists", json!({"user": "u"})).await,
        json!({"exists": true})
    );
    let direct = |sender: &str| json!({"sender": sender, "recipient": "u"});
    assert_eq!(
        api_ok(&server, "direct_access", direct("spam")).await,
        json!({"access": false})
    );
    assert_eq!(
        api_ok(&server, "direct_access", direct("v")).await,
        json!({"access": true})
    );
    assert_eq!(
        api_ok(&server, "direct_access", direct("u")).await,
        json!({"access": false}),
        "never to oneself"
    );
    let (status, body) = api(
        &server,
        "direct_list_add",
        json!({"user": "u", "list": "whitelist", "names": ["u"]}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["data"]["reason"].clone()),
        (StatusCode::FORBIDDEN, json!("notAllowed"))
    );
    api_ok(
        &server,
        "direct_list_add",
        json!({"user": "u", "list": "whitelist", "names": ["v", "w"]}),
    )
    .await;
    let (status, body) = api(
        &server,
        "direct_list_add",
        json!({"user": "u", "list": "whitelist", "names": ["x"]}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["data"]["reason"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("listLimitExceeded"))
    );
    api_ok(
        &server,
        "direct_set_whitelist_only",
        json!({"user": "u", "whitelist_only": true}),
    )
    .await;
    assert_eq!(
        api_ok(&server, "direct_access", direct("z")).await,
        json!({"access": false})
    );
    api_ok(
        &server,
        "direct_list_remove",
        json!({"user": "u", "list": "whitelist", "names": ["v"]}),
    )
    .await;
    assert_eq!(
        api_ok(&server, "direct_access", direct("v")).await,
        json!({"access": false})
    );
    assert_eq!(
        api_ok(&server, "direct_access", direct("w")).await,
        json!({"access": true})
    );
    // A user with a connection is not deleted.
    let mut online = user(&server, "u", Encoding::Json).await;
    let (status, body) = api(&server, "user_delete", json!({"user": "u"})).await;
    assert_eq!(
        (status, body["error"]["data"]["reason"].clone()),
        (StatusCode::CONFLICT, json!("userOnline"))
    );
    online.ws.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _) = api(&server, "user_delete", json!({"user": "u"})).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the user stayed online"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        api_ok(&server, "user_exists", json!({"user": "u"})).await,
        json!({"exists": false})
    );
}

/// Waits until the node's engine serves (its pub/sub subscribed).
async fn wait_healthy(server: &RunningServer) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _, _) = support::http(server.local_addr(), "GET", "/health", &[], "").await;
        if status == StatusCode::OK {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two nodes on one Redis: a room made on one is a room on the other; a blacklisting on node A
/// removes the user's connection on node B; a notice from A reaches B's subscribers.
#[tokio::test]
async fn across_two_nodes_a_blacklisting_on_one_removes_the_member_on_the_other() {
    let prefix = plexus_redis::testing::unique_prefix();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let builder = builder(|_| {}).engine(redis_engine(&prefix).await);
        let node = start_as_is(builder).await;
        wait_healthy(&node).await;
        nodes.push(node);
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    api_ok(a, "room_create", json!({"room": "room:m", "owner": "ann"})).await;
    let mut ann = user(a, "ann", Encoding::Json).await;
    let mut bob = user(b, "bob", Encoding::Msgpack).await;
    subscribe(&mut ann, "room:m").await.unwrap();
    subscribe(&mut bob, "room:m").await.unwrap();
    let info = users_settle(a, "room:m", 2).await;
    assert_eq!(
        info["users"],
        json!(["ann", "bob"]),
        "node A sees node B's member"
    );
    api_ok(
        a,
        "notify",
        json!({"channel": "room:m", "event": "hello", "data": 1}),
    )
    .await;
    assert_eq!(next_notice(&mut bob).await.event.as_deref(), Some("hello"));
    let result = api_ok(
        a,
        "room_list_add",
        json!({"room": "room:m", "list": "blacklist", "names": ["bob"]}),
    )
    .await;
    assert_eq!(result, json!({"removed": ["bob"]}));
    assert_eq!(
        next_unsubscribed(&mut bob).await,
        ("room:m".into(), "access removed".into())
    );
    assert_eq!(
        refusal(subscribe(&mut bob, "room:m").await.unwrap_err()),
        (105, "notAllowed".into()),
        "node B judges by the lists node A changed"
    );
    // A user online on node B is online for node A.
    api_ok(a, "user_add", json!({"user": "bob"})).await;
    let (status, body) = api(a, "user_delete", json!({"user": "bob"})).await;
    assert_eq!(
        (status, body["error"]["data"]["reason"].clone()),
        (StatusCode::CONFLICT, json!("userOnline"))
    );
    // Deleting on B unsubscribes A's members.
    api_ok(b, "room_delete", json!({"room": "room:m"})).await;
    assert_eq!(
        next_unsubscribed(&mut ann).await,
        ("room:m".into(), "room deleted".into())
    );
}
