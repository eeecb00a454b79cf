//! The HTTP server API (`POST /api/<method>`) and `/metrics` over real HTTP, with WebSocket
//! clients that see the effect of each call.

mod support;

use axum::http::StatusCode;
use plexus_server::api::METHODS;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use support::*;

fn config() -> String {
    format!(
        r#"
[client]
anonymous = true
max_message_bytes = 4096
[jwt]
hmac_secret = "{SECRET}"
[api]
key = "{API_KEY}"
max_body_bytes = 8192
broadcast_max_channels = 3
[metrics]
enabled = true
[[namespaces]]
name = "room"
channels = "room:*"
subscribe = "anyone"
publish = "subscribers"
history_size = 10
history_ttl_ms = 60000
presence = true
[[records]]
name = "profiles"
records = "profile:*"
read = "anyone"
write = "nobody"
max_patch_ops = 2
"#
    )
}

/// A client of user `user` (token from the secret).
async fn user(server: &plexus_server::RunningServer, user: &str) -> Client {
    let token = hs(json!({"sub": user}), plexus_server::jwt::Algorithm::HS256);
    let (c, r) = connect_token(&server.ws_url(), &token).await;
    r.unwrap();
    c
}

#[tokio::test]
async fn the_api_key_is_required() {
    let server = serve(&config()).await;
    let addr = server.local_addr();
    let body = r#"{"channel":"room:1","data":1}"#;
    for headers in [
        vec![],
        vec![("authorization", "apikey wrong-key-0123456789")],
        vec![("authorization", "Bearer test-api-key-0123456789")],
        vec![("x-api-key", "test-api-key-012345678")],
    ] {
        let (status, h, bytes) = http(addr, "POST", "/api/publish", &headers, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(h["www-authenticate"], "apikey");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["code"], 101);
    }
    let auth = format!("apikey {API_KEY}");
    for headers in [
        vec![("authorization", auth.as_str())],
        vec![("x-api-key", API_KEY)],
    ] {
        let (status, _, _) = http(addr, "POST", "/api/publish", &headers, body).await;
        assert_eq!(status, StatusCode::OK, "{headers:?}");
    }
    // Unknown methods need the key too; with it, they are 404.
    assert_eq!(
        http(addr, "POST", "/api/nope", &[], "{}").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, v) = api(&server, "nope", json!({})).await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, json!(103))
    );
    let metrics =
        String::from_utf8(http(addr, "GET", "/metrics", &[], "").await.2.to_vec()).unwrap();
    assert!(
        metrics.contains("plexus_api_unauthorized_total 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_a_key_the_api_is_disabled_and_metrics_are_off() {
    let toml = format!("[jwt]\nhmac_secret = \"{SECRET}\"\n");
    let loaded = load(&toml);
    assert!(
        loaded.warnings.iter().any(|w| w.contains("api.key")),
        "{:?}",
        loaded.warnings
    );
    let server = serve_loaded(loaded).await;
    let (status, _, bytes) = http(
        server.local_addr(),
        "POST",
        "/api/info",
        &[("x-api-key", API_KEY)],
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&bytes).contains("api.key"));
    assert_eq!(
        http(server.local_addr(), "GET", "/metrics", &[], "")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn in_development_mode_the_api_needs_no_key() {
    let loaded = plexus_server::config::load(&plexus_server::config::Sources::default()).unwrap();
    assert!(loaded.dev_mode);
    let server = serve_loaded(loaded).await;
    let (status, _, bytes) = http(
        server.local_addr(),
        "POST",
        "/api/publish",
        &[],
        r#"{"channel":"any","data":"x"}"#,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(
        http(server.local_addr(), "GET", "/metrics", &[], "")
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_requests_are_answered_with_codes() {
    let server = serve(&config()).await;
    let addr = server.local_addr();
    let auth = format!("apikey {API_KEY}");
    let post = |path: &'static str, body: String| {
        let auth = auth.clone();
        async move {
            let (status, _, bytes) =
                http(addr, "POST", path, &[("authorization", &auth)], body).await;
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap()["error"]["code"].clone(),
            )
        }
    };
    let cases = [
        (
            "/api/publish",
            "not json".to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        // Whitespace alone is no JSON document (an empty body is `{}`).
        (
            "/api/channels",
            "\t".to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        ("/api/info", " \n".to_owned(), StatusCode::BAD_REQUEST, 104),
        (
            "/api/publish",
            r#"{"channel":"room:1"}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        (
            "/api/publish",
            r#"{"channel":"room:1","data":1,"binary":"AA=="}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        (
            "/api/publish",
            r#"{"channel":"room:1","data":1,"extra":1}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        (
            "/api/publish",
            r#"{"channel":"","data":1}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            107,
        ),
        (
            "/api/publish",
            format!(r#"{{"channel":"{}","data":1}}"#, "x".repeat(300)),
            StatusCode::BAD_REQUEST,
            107,
        ),
        (
            "/api/publish",
            format!(r#"{{"channel":"room:1","data":"{}"}}"#, "x".repeat(5000)),
            StatusCode::UNPROCESSABLE_ENTITY,
            106,
        ),
        (
            "/api/publish",
            format!(r#"{{"channel":"room:1","data":"{}"}}"#, "x".repeat(9000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            106,
        ),
        (
            "/api/broadcast",
            r#"{"channels":["a","b","c","d"],"data":1}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            106,
        ),
        ("/api/info", "[]".to_owned(), StatusCode::BAD_REQUEST, 104),
        (
            "/api/send_all",
            "[null, null]".to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        (
            "/api/metadata_get",
            r#"{"channel":"a","user":null}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        (
            "/api/channels",
            r#"{"limit":9007199254740992}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        (
            "/api/send_connection",
            r#"{"conn":"ABCDEF01-1","data":1}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        (
            "/api/send_connection",
            r#"{"conn":"abcdef01-+1","data":1}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        (
            "/api/send_connection",
            r#"{"conn":"nope","data":1}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        (
            "/api/disconnect",
            r#"{"user":"a","code":1000}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        (
            "/api/disconnect",
            r#"{"user":"a","conn":"00000000-1"}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        (
            "/api/history",
            r#"{"channel":"nohistory"}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            114,
        ),
        (
            "/api/presence",
            r#"{"channel":"nopresence"}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            114,
        ),
        (
            "/api/metadata_get",
            r#"{"user":"a","channel":"b"}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        (
            "/api/metadata_set",
            r#"{"user":"a","value":[1]}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
        (
            "/api/send_durable",
            r#"{"user":"a","data":1,"ttl_ms":0}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            104,
        ),
    ];
    for (path, body, status, code) in cases {
        let got = post(path, body.clone()).await;
        assert_eq!(
            got,
            (status, json!(code)),
            "{path} {}",
            &body[..body.len().min(80)]
        );
    }
    // GET is not a method of the API.
    assert_eq!(
        http(addr, "GET", "/api/info", &[("authorization", &auth)], "")
            .await
            .0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn publish_and_broadcast_reach_subscribers() {
    let server = serve(&config()).await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.request("subscribe", json!({"channel": "room:1"}))
        .await
        .unwrap();
    c.request("subscribe", json!({"channel": "room:2"}))
        .await
        .unwrap();

    let r = api_ok(
        &server,
        "publish",
        json!({"channel": "room:1", "data": {"text": "hi"}}),
    )
    .await;
    assert_eq!(r["offset"], 1);
    assert!(r["epoch"].is_string());
    let p = c.push("pub").await;
    assert_eq!(
        (p["channel"].clone(), p["data"].clone()),
        (json!("room:1"), json!({"text": "hi"}))
    );

    api_ok(
        &server,
        "publish",
        json!({"channel": "room:1", "binary": "3q2+7w=="}),
    )
    .await;
    assert_eq!(c.push("pub").await["binary"], "3q2+7w==");

    let r = api_ok(
        &server,
        "broadcast",
        json!({"channels": ["room:1", "room:2", ""], "data": 5}),
    )
    .await;
    let responses = r["responses"].as_array().unwrap();
    assert_eq!(responses[0]["offset"], 3);
    assert_eq!(responses[1]["offset"], 1);
    assert_eq!(responses[2]["error"]["code"], 107);
    let mut got = vec![
        c.push("pub").await["channel"].clone(),
        c.push("pub").await["channel"].clone(),
    ];
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, [json!("room:1"), json!("room:2")]);
}

#[tokio::test]
async fn send_to_users_connections_and_everyone() {
    let server = serve(&config()).await;
    let mut a1 = user(&server, "alice").await;
    let mut a2 = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;

    api_ok(
        &server,
        "send",
        json!({"user": "alice", "data": "for alice"}),
    )
    .await;
    for c in [&mut a1, &mut a2] {
        let m = c.push("message").await;
        assert_eq!(
            (m["to"].clone(), m["data"].clone()),
            (json!("user"), json!("for alice"))
        );
    }
    api_ok(&server, "send_all", json!({"data": "everyone"})).await;
    for c in [&mut a1, &mut a2, &mut b] {
        let m = c.push("message").await;
        assert_eq!(
            (m["to"].clone(), m["data"].clone()),
            (json!("all"), json!("everyone"))
        );
    }
    let conn = b.hello["conn"].as_str().unwrap().to_owned();
    let r = api_ok(&server, "send_connection", json!({"conn": conn, "data": 1})).await;
    assert_eq!(r["delivered"], true);
    assert_eq!(b.push("message").await["to"], "connection");
    let gone = format!("{}-999999", &conn[..conn.find('-').unwrap()]);
    assert_eq!(
        api_ok(&server, "send_connection", json!({"conn": gone, "data": 1})).await["delivered"],
        false
    );
}

/// Socket.IO's `io.to(room).except(id).emit(event, data)`, and the same for users and everyone:
/// `event` travels with the publication (into history) and the message; `exclude` skips
/// connections and users.
#[tokio::test]
async fn event_names_and_exclusions() {
    let server = serve(&config()).await;
    let mut a1 = user(&server, "alice").await;
    let mut a2 = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let a1_conn = a1.hello["conn"].as_str().unwrap().to_owned();
    for c in [&mut a1, &mut a2, &mut b] {
        c.request("subscribe", json!({"channel": "room:1"}))
            .await
            .unwrap();
    }

    api_ok(
        &server,
        "publish",
        json!({"channel": "room:1", "event": "typing", "data": {"who": "carol"},
               "exclude": {"conns": [a1_conn], "users": ["bob"]}}),
    )
    .await;
    let p = a2.push("pub").await;
    assert_eq!(
        (p["event"].clone(), p["data"].clone(), p["offset"].clone()),
        (json!("typing"), json!({"who": "carol"}), json!(1))
    );
    api_ok(&server, "publish", json!({"channel": "room:1", "data": 2})).await;
    // The excluded ones never saw offset 1; the next publication has no event name.
    for c in [&mut a1, &mut a2, &mut b] {
        let p = c.push("pub").await;
        assert_eq!((p["offset"].clone(), p.get("event")), (json!(2), None));
    }
    // History keeps the event name, for everyone.
    let h = api_ok(
        &server,
        "history",
        json!({"channel": "room:1", "limit": 10}),
    )
    .await;
    assert_eq!(h["publications"][0]["event"], "typing");
    assert!(h["publications"][1].get("event").is_none());

    api_ok(
        &server,
        "send",
        json!({"user": "alice", "event": "notice", "data": 1, "exclude": {"conns": [a1_conn]}}),
    )
    .await;
    let m = a2.push("message").await;
    assert_eq!(
        (m["to"].clone(), m["event"].clone()),
        (json!("user"), json!("notice"))
    );
    api_ok(
        &server,
        "send_all",
        json!({"event": "maintenance", "data": "22:00", "exclude": {"users": ["alice"]}}),
    )
    .await;
    let m = b.push("message").await;
    assert_eq!(
        (m["to"].clone(), m["event"].clone()),
        (json!("all"), json!("maintenance"))
    );
    api_ok(&server, "send_all", json!({"data": "last"})).await;
    // alice's first connection was skipped twice: its next message is the last one.
    let m = a1.push("message").await;
    assert_eq!((m["data"].clone(), m.get("event")), (json!("last"), None));
    let r = api_ok(
        &server,
        "send_connection",
        json!({"conn": a1_conn, "event": "direct", "data": 3}),
    )
    .await;
    assert_eq!(r["delivered"], true);
    assert_eq!(a1.push("message").await["event"], "direct");

    // Bad names and bounds.
    for event in [
        json!(""),
        json!("connect"),
        json!("a\u{7}b"),
        json!("x".repeat(201)),
        json!(5),
    ] {
        let (status, v) = api(
            &server,
            "publish",
            json!({"channel": "room:1", "event": event, "data": 1}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{event}");
        assert_eq!(v["error"]["code"], 104, "{event}");
    }
    let users: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let (status, v) = api(
        &server,
        "send_all",
        json!({"data": 1, "exclude": {"users": users}}),
    )
    .await;
    assert_eq!(v["error"]["code"], 106, "{status}");
    let (status, v) = api(&server, "send_all", json!({"data": 1, "exclude": []})).await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(104)),
        "`exclude` is an object"
    );
    let (status, v) = api(
        &server,
        "send_all",
        json!({"data": 1, "exclude": {"conns": ["not-a-conn"]}}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(104))
    );
}

#[tokio::test]
async fn server_side_subscribe_unsubscribe_and_channels() {
    let server = serve(&config()).await;
    let mut a = user(&server, "alice").await;
    api_ok(
        &server,
        "subscribe",
        json!({"user": "alice", "channel": "news:today"}),
    )
    .await;
    assert_eq!(a.push("subscribed").await["channel"], "news:today");
    a.request("subscribe", json!({"channel": "room:9"}))
        .await
        .unwrap();

    let r = api_ok(&server, "channels", json!({})).await;
    assert_eq!(r["total"], 2);
    assert_eq!(
        r["channels"],
        json!([{"channel": "news:today", "subscribers": 1}, {"channel": "room:9", "subscribers": 1}])
    );
    let r = api_ok(&server, "channels", json!({"prefix": "room:", "limit": 5})).await;
    assert_eq!(
        r["channels"],
        json!([{"channel": "room:9", "subscribers": 1}])
    );
    let r = api_ok(&server, "channels", json!({"limit": 1})).await;
    assert_eq!(
        (r["total"].clone(), r["channels"].as_array().unwrap().len()),
        (json!(2), 1)
    );

    api_ok(
        &server,
        "unsubscribe",
        json!({"user": "alice", "channel": "news:today"}),
    )
    .await;
    assert_eq!(a.push("unsubscribed").await["channel"], "news:today");
}

#[tokio::test]
async fn disconnect_a_user_or_a_connection_with_a_code() {
    let server = serve(&config()).await;
    let mut a1 = user(&server, "alice").await;
    let mut a2 = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    api_ok(&server, "disconnect", json!({"user": "alice"})).await;
    assert_eq!(a1.closed().await.0, 4505);
    assert_eq!(a2.closed().await.0, 4505);
    let conn = b.hello["conn"].as_str().unwrap().to_owned();
    api_ok(
        &server,
        "disconnect",
        json!({"conn": conn, "code": 4005, "reason": "please reconnect"}),
    )
    .await;
    assert_eq!(b.closed().await, (4005, "please reconnect".into()));
}

#[tokio::test]
async fn info_reports_the_node() {
    let server = serve(&config()).await;
    let _a = user(&server, "alice").await;
    let _anon = Client::connect(&server.ws_url()).await;
    let r = api_ok(&server, "info", json!({})).await;
    assert_eq!(r["node"], server.node().id().to_string());
    assert_eq!(r["connections"], 2);
    assert_eq!(r["users"], 1);
    assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
    assert!(r["counters"]["connections_opened"].as_u64().unwrap() >= 2);
    // An empty body is an empty object.
    let (status, _, _) = http(
        server.local_addr(),
        "POST",
        "/api/info",
        &[("x-api-key", API_KEY)],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn history_and_history_remove() {
    let server = serve(&config()).await;
    for i in 1..=4 {
        api_ok(&server, "publish", json!({"channel": "room:h", "data": i})).await;
    }
    let r = api_ok(&server, "history", json!({"channel": "room:h"})).await;
    assert_eq!(r["offset"], 4);
    let data: Vec<Value> = r["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"].clone())
        .collect();
    assert_eq!(data, [json!(1), json!(2), json!(3), json!(4)]);
    let r = api_ok(
        &server,
        "history",
        json!({"channel": "room:h", "since": 2, "limit": 1}),
    )
    .await;
    assert_eq!(r["publications"], json!([{"offset": 3, "data": 3}]));
    let r = api_ok(
        &server,
        "history",
        json!({"channel": "room:h", "limit": 2, "reverse": true}),
    )
    .await;
    let offsets: Vec<Value> = r["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].clone())
        .collect();
    assert_eq!(offsets, [json!(4), json!(3)]);
    api_ok(&server, "history_remove", json!({"channel": "room:h"})).await;
    let r = api_ok(&server, "history", json!({"channel": "room:h"})).await;
    assert_eq!(r["publications"], json!([]));
    // A client publication carries its publisher.
    let mut c = user(&server, "alice").await;
    c.request("subscribe", json!({"channel": "room:h"}))
        .await
        .unwrap();
    c.request("publish", json!({"channel": "room:h", "data": "mine"}))
        .await
        .unwrap();
    let r = api_ok(
        &server,
        "history",
        json!({"channel": "room:h", "limit": 1, "reverse": true}),
    )
    .await;
    assert_eq!(r["publications"][0]["publisher"]["user"], "alice");
}

#[tokio::test]
async fn presence_and_presence_stats() {
    let server = serve(&config()).await;
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let mut anon = Client::connect(&server.ws_url()).await;
    for c in [&mut a, &mut b, &mut anon] {
        c.request("subscribe", json!({"channel": "room:p"}))
            .await
            .unwrap();
    }
    let r = api_ok(&server, "presence_stats", json!({"channel": "room:p"})).await;
    assert_eq!(r, json!({"connections": 3, "users": 2}));
    let r = api_ok(&server, "presence", json!({"channel": "room:p"})).await;
    let mut users: Vec<Value> = r["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].clone())
        .collect();
    users.sort_by_key(|v| v.to_string());
    assert_eq!(users, [json!("alice"), json!("bob"), Value::Null]);
    assert!(r["members"][0]["conn"].is_string());
}

#[tokio::test]
async fn metadata_of_connections_users_and_channels() {
    let server = serve(&config()).await;
    let mut a = user(&server, "alice").await;
    let conn = a.hello["conn"].as_str().unwrap().to_owned();
    a.request("subscribe", json!({"channel": "room:m"}))
        .await
        .unwrap();

    api_ok(
        &server,
        "metadata_set",
        json!({"conn": conn, "value": {"role": "mod"}}),
    )
    .await;
    api_ok(
        &server,
        "metadata_set",
        json!({"conn": conn, "value": {"lang": "fr"}, "merge": true}),
    )
    .await;
    let r = api_ok(&server, "metadata_get", json!({"conn": conn})).await;
    assert_eq!(r["value"], json!({"role": "mod", "lang": "fr"}));
    // The client sees its own connection's metadata.
    let mine = a.request("get_meta", json!({"conn": conn})).await.unwrap();
    assert_eq!(mine["value"], json!({"role": "mod", "lang": "fr"}));

    api_ok(
        &server,
        "metadata_set",
        json!({"user": "alice", "value": {"plan": "pro"}}),
    )
    .await;
    assert_eq!(
        api_ok(&server, "metadata_get", json!({"user": "alice"})).await["value"],
        json!({"plan": "pro"})
    );
    api_ok(
        &server,
        "metadata_set",
        json!({"channel": "room:m", "value": {"topic": "x"}}),
    )
    .await;
    assert_eq!(
        api_ok(&server, "metadata_get", json!({"channel": "room:m"})).await["value"],
        json!({"topic": "x"})
    );
    assert_eq!(
        api_ok(&server, "metadata_get", json!({"user": "nobody"})).await["value"],
        Value::Null
    );
    let (status, v) = api(
        &server,
        "metadata_set",
        json!({"conn": "00000000-1", "value": {}}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, json!(104))
    );
}

#[tokio::test]
async fn send_durable_reaches_a_registered_user_now_and_later() {
    let server = serve(&config()).await;
    let r = api_ok(
        &server,
        "send_durable",
        json!({"user": "carol", "data": "early"}),
    )
    .await;
    assert_eq!(r, json!({"registered": false, "seq": null}));

    let mut c = user(&server, "carol").await;
    let r = api_ok(
        &server,
        "send_durable",
        json!({"user": "carol", "data": "live", "ttl_ms": 60000}),
    )
    .await;
    assert_eq!(r["registered"], true);
    let seq = r["seq"].as_u64().unwrap();
    let mail = c.push("mail").await;
    assert_eq!(
        (mail["seq"].as_u64(), mail["data"].clone()),
        (Some(seq), json!("live"))
    );
    drop(c);
    // Unacknowledged, it comes again on the next connection.
    let mut again = user(&server, "carol").await;
    assert_eq!(again.push("mail").await["data"], "live");
}

/// Parses the Prometheus text format strictly enough to catch mistakes: every sample belongs to
/// a family declared by `# TYPE`, values are numbers, histogram buckets grow.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut types = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "declared twice: {line}"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "no # TYPE for {line:?}");
        if types[family] == "counter" {
            assert!(name.ends_with("_total"), "counter without _total: {name}");
        }
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate series {series}"
        );
    }
    for (family, kind) in &types {
        if kind == "histogram" {
            let buckets: Vec<f64> = samples
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{family}_bucket{{")))
                .map(|(_, v)| *v)
                .collect();
            assert!(!buckets.is_empty(), "{family} has no buckets");
            let inf = samples[&format!("{family}_bucket{{le=\"+Inf\"}}")];
            assert_eq!(inf, samples[&format!("{family}_count")], "{family}");
            assert!(buckets.iter().all(|b| *b <= inf), "{family}");
        }
    }
    samples
}

#[tokio::test]
async fn metrics_count_what_happens() {
    let server = serve(&config()).await;
    let mut a = user(&server, "alice").await;
    a.request("subscribe", json!({"channel": "room:x"}))
        .await
        .unwrap();
    a.request("publish", json!({"channel": "room:x", "data": 1}))
        .await
        .unwrap();
    a.push("pub").await;
    let _ = a.request("call", json!({"method": "nope"})).await;
    let (_mut_b, r) = connect_token(&server.ws_url(), "bad-token").await;
    r.unwrap_err();
    api_ok(&server, "publish", json!({"channel": "room:x", "data": 2})).await;
    let _ = api(&server, "history", json!({"channel": "nohistory"})).await;
    let _ = api(&server, "nope", json!({})).await;

    let (status, headers, body) = http(server.local_addr(), "GET", "/metrics", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    let m = parse_metrics(&text);
    let get = |k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("{k} missing from\n{text}"))
    };
    assert!(get("plexus_connections") >= 1.0);
    assert_eq!(get("plexus_users"), 1.0);
    assert_eq!(get("plexus_subscriptions"), 1.0);
    assert_eq!(get("plexus_channels"), 1.0);
    assert_eq!(get("plexus_publications_total"), 2.0);
    assert!(get("plexus_deliveries_total") >= 2.0);
    // The dialect loop does not count WebSocket messages and bytes yet (`NodeStats::messages_in`
    // and the three others stay 0); the series are exported already.
    for series in [
        "plexus_messages_received_total",
        "plexus_bytes_received_total",
        "plexus_messages_sent_total",
        "plexus_bytes_sent_total",
    ] {
        get(series);
    }
    assert_eq!(get("plexus_auth_failures_total"), 1.0);
    assert_eq!(get("plexus_slow_consumer_disconnects_total"), 0.0);
    assert_eq!(get(r#"plexus_api_requests_total{method="publish"}"#), 1.0);
    assert_eq!(get(r#"plexus_api_errors_total{method="history"}"#), 1.0);
    assert_eq!(get(r#"plexus_api_requests_total{method="unknown"}"#), 1.0);
    assert_eq!(get("plexus_api_request_duration_seconds_count"), 3.0);
    let info = format!(
        "plexus_info{{node=\"{}\",version=\"{}\"}}",
        server.node().id(),
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(get(&info), 1.0);
    for method in METHODS {
        get(&format!("plexus_api_requests_total{{method=\"{method}\"}}"));
    }
    get("plexus_command_duration_seconds_count");
    get(r#"plexus_command_duration_seconds_bucket{le="+Inf"}"#);
}

#[tokio::test]
async fn api_limits_cap_history_and_channels() {
    let toml = config().replace(
        "broadcast_max_channels = 3",
        "broadcast_max_channels = 3\nhistory_max = 2\nchannels_max = 1",
    );
    let server = serve(&toml).await;
    for i in 1..=4 {
        api_ok(&server, "publish", json!({"channel": "room:h", "data": i})).await;
    }
    let r = api_ok(
        &server,
        "history",
        json!({"channel": "room:h", "limit": 10}),
    )
    .await;
    assert_eq!(r["publications"].as_array().unwrap().len(), 2);
    let mut c = Client::connect(&server.ws_url()).await;
    c.request("subscribe", json!({"channel": "room:a"}))
        .await
        .unwrap();
    c.request("subscribe", json!({"channel": "room:b"}))
        .await
        .unwrap();
    let r = api_ok(&server, "channels", json!({"limit": 10})).await;
    assert_eq!(r["total"], 2);
    assert_eq!(r["channels"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn records_are_read_and_written_through_the_api_and_clients_see_the_changes() {
    let server = serve(&config()).await;
    let mut watcher = Client::connect(&server.ws_url()).await;
    let sub = watcher
        .request(
            "record_subscribe",
            json!({"id": "profile:1", "mode": "patch"}),
        )
        .await
        .unwrap();
    assert_eq!(sub["version"], 0);
    // A record subscription is no channel to operators, and shows as `record:<id>`.
    let (_, channels) = api(&server, "channels", json!({})).await;
    assert_eq!(channels["result"]["channels"], json!([]), "{channels}");
    let (_, conns) = api(&server, "connections", json!({})).await;
    let subs = &conns["result"]["connections"][0]["subscriptions"];
    assert_eq!(subs, &json!(["record:profile:1"]), "{conns}");
    // The group is not writable by clients; the API acts with the server's authority.
    let refused = watcher
        .request("record_set", json!({"id": "profile:1", "value": 1}))
        .await
        .unwrap_err();
    assert_eq!(refused["code"], 105);

    let (status, body) = api(
        &server,
        "record_set",
        json!({"id": "profile:1", "value": {"n": 1}, "expect": 0}),
    )
    .await;
    assert_eq!(
        (status, &body["result"]["version"]),
        (StatusCode::OK, &json!(1)),
        "{body}"
    );
    let (status, body) = api(
        &server,
        "record_set",
        json!({"id": "profile:1", "value": {"n": 9}, "expect": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        (&body["error"]["code"], &body["error"]["data"]),
        (&json!(121), &json!({"version": 1}))
    );
    let inc = json!([{"op": "replace", "path": "/n", "value": 2}]);
    let (status, body) = api(
        &server,
        "record_patch",
        json!({"id": "profile:1", "patch": inc}),
    )
    .await;
    assert_eq!(
        (status, &body["result"]["version"]),
        (StatusCode::OK, &json!(2))
    );
    let (status, body) = api(
        &server,
        "record_patch",
        json!({"id": "profile:1", "patch": [{"op": "remove", "path": "/x"}]}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!(122))
    );
    let three = json!([{"op": "test", "path": "/n", "value": 2}, {"op": "test", "path": "/n", "value": 2}, {"op": "test", "path": "/n", "value": 2}]);
    let (status, body) = api(
        &server,
        "record_patch",
        json!({"id": "profile:1", "patch": three}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!(123))
    );
    let (status, body) = api(&server, "record_get", json!({"id": "profile:1"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"]["value"], json!({"n": 2}));
    let (status, _) = api(&server, "record_set", json!({"id": "profile:1"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api(
        &server,
        "record_delete",
        json!({"id": "profile:1", "value": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = api(&server, "record_get", json!({"id": "elsewhere"})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!(105))
    );
    let (status, body) = api(&server, "record_delete", json!({"id": "profile:1"})).await;
    assert_eq!(
        (status, &body["result"]["version"]),
        (StatusCode::OK, &json!(3))
    );
    let (status, body) = api(&server, "record_delete", json!({"id": "profile:1"})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!(119))
    );

    // The subscriber saw every version: the creation whole, the patch, the delete.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(watcher.push("record").await);
    }
    assert_eq!(seen[0]["value"], json!({"n": 1}));
    assert_eq!(seen[1]["patch"], inc);
    assert_eq!(
        (&seen[2]["version"], &seen[2]["deleted"]),
        (&json!(3), &json!(true))
    );
}
