//! Endpoints (`docs/endpoints.md`) over real sockets: raw mode, JSON auto-dispatch with its
//! acknowledgements and 404s, `pre_connect` refusals with a real HTTP status, addressing
//! (broadcast, multicast, unicast, pub/sub shared with native clients), limits, bad input, the
//! shutdown handler — and Plezi 0.12's self-test scenarios.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use plexus_core::{AuthRequest, CloseCode, Identity};
use plexus_server::endpoint::{Endpoint, EndpointLimits, RawMessage, UnknownEvent};
use plexus_server::{RunningServer, ServerBuilder};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

fn url(server: &RunningServer, path: &str) -> String {
    format!("ws://{}{path}", server.local_addr())
}

/// What a client read next: a data message, or the close.
#[derive(Debug, PartialEq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Closed(u16, String),
}

async fn next(ws: &mut Ws) -> Got {
    next_within(ws, WAIT).await
}

/// [`next`] with a wait bound of its own (never an assertion about speed).
async fn next_within(ws: &mut Ws, wait: Duration) -> Got {
    loop {
        let message = tokio::time::timeout(wait, ws.next())
            .await
            .expect("a message within the wait bound");
        match message {
            Some(Ok(Message::Text(t))) => return Got::Text(t.to_string()),
            Some(Ok(Message::Binary(b))) => return Got::Binary(b.to_vec()),
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame.map_or((1005, String::new()), |f: CloseFrame| {
                    (u16::from(f.code), f.reason.to_string())
                });
                return Got::Closed(code, reason);
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Got::Closed(1006, String::new()),
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    match next(ws).await {
        Got::Text(t) => serde_json::from_str(&t).unwrap_or_else(|e| panic!("{t}: {e}")),
        other => panic!("expected JSON text, got {other:?}"),
    }
}

/// The next JSON message whose `event` is `event` (others are skipped).
async fn event(ws: &mut Ws, event: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["event"] == event {
            return v;
        }
    }
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

/// A connection to the development `/plezi` endpoint; its id from the `connected` event.
async fn plezi(server: &RunningServer) -> (Ws, String) {
    let mut ws = connect_raw(&url(server, "/plezi"), &[]).await;
    let hello = event(&mut ws, "connected").await;
    (ws, hello["id"].as_str().expect("an id").to_owned())
}

async fn dev_server() -> RunningServer {
    start(dev()).await
}

#[tokio::test]
async fn the_echo_endpoint_writes_back_text_as_text_and_binary_as_binary() {
    let server = dev_server().await;
    let mut ws = connect_raw(&url(&server, "/echo"), &[]).await;
    ws.send(Message::text("héllo")).await.unwrap();
    assert_eq!(next(&mut ws).await, Got::Text("héllo".into()));
    let bytes: Vec<u8> = (0..=255).collect();
    ws.send(Message::binary(bytes.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Got::Binary(bytes));
    // Not JSON, not an envelope: a raw endpoint takes anything.
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(next(&mut ws).await, Got::Text("{not json".into()));
    ws.send(Message::binary(Vec::new())).await.unwrap();
    assert_eq!(next(&mut ws).await, Got::Binary(Vec::new()));
}

#[tokio::test]
async fn a_raw_handler_sees_messages_in_order_and_writes_what_it_likes() {
    let builder = dev().endpoint(
        "/shout",
        Endpoint::raw("shout").on_message(|ws, message| async move {
            match message {
                RawMessage::Text(t) => {
                    ws.send_text(t.to_uppercase());
                }
                RawMessage::Binary(b) => {
                    ws.send_binary(b.iter().rev().copied().collect::<Vec<u8>>());
                }
            }
        }),
    );
    let server = start(builder).await;
    let mut ws = connect_raw(&url(&server, "/shout"), &[]).await;
    for i in 0..50 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    for i in 0..50 {
        assert_eq!(next(&mut ws).await, Got::Text(format!("M{i}")));
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next(&mut ws).await, Got::Binary(vec![3, 2, 1]));
}

/// Auto-dispatch as PleziClient uses it: `_EID_` is acknowledged before the handler's answer,
/// an object result is JSON, a string result is written as it is, an unknown event is a 404
/// `err` event (and with a fallback, the fallback's).
#[tokio::test]
async fn auto_dispatch_acknowledges_dispatches_and_answers_unknown_events() {
    let builder = dev()
        .endpoint(
            "/app",
            Endpoint::dispatch("app")
                .on("sum", |_ws, m| async move {
                    let a = m["a"].as_i64().unwrap_or(0);
                    let b = m["b"].as_i64().unwrap_or(0);
                    Some(json!({"event": "sum", "result": a + b}))
                })
                .on("plain", |_ws, _m| async move { Some(json!("as is")) })
                .on("silent", |_ws, _m| async move { None }),
        )
        .endpoint(
            "/fallback",
            Endpoint::dispatch("fallback").fallback(|_ws, m| async move {
                Some(json!({"event": "fell", "got": m.get("event")}))
            }),
        );
    let server = start(builder).await;
    let mut ws = connect_raw(&url(&server, "/app"), &[]).await;
    send(&mut ws, json!({"event": "sum", "a": 2, "b": 3, "_EID_": 7})).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event": "_ack_", "_EID_": 7})
    );
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event": "sum", "result": 5})
    );
    send(&mut ws, json!({"event": "plain"})).await;
    assert_eq!(next(&mut ws).await, Got::Text("as is".into()));
    // No answer, but the acknowledgement.
    send(&mut ws, json!({"event": "silent", "_EID_": "x"})).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event": "_ack_", "_EID_": "x"})
    );
    send(&mut ws, json!({"event": "nope", "x": 1, "_EID_": 8})).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event": "_ack_", "_EID_": 8})
    );
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event": "err", "status": 404, "result": "not found",
               "request": {"event": "nope", "x": 1, "_EID_": 8}})
    );
    // A message without an event is an unknown event too.
    send(&mut ws, json!({"x": 2})).await;
    assert_eq!(next_json(&mut ws).await["status"], 404);

    let mut ws = connect_raw(&url(&server, "/fallback"), &[]).await;
    send(&mut ws, json!({"event": "anything"})).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event": "fell", "got": "anything"})
    );
}

#[tokio::test]
async fn auto_dispatch_closes_on_what_is_not_a_json_object_and_unknown_events_when_asked() {
    let builder = dev().endpoint(
        "/strict",
        Endpoint::dispatch("strict").unknown(UnknownEvent::Close),
    );
    let server = start(builder).await;
    for bad in [
        Message::text("not json"),
        Message::text("[1,2]"),
        Message::binary(vec![1u8]),
    ] {
        let mut ws = connect_raw(&url(&server, "/plezi"), &[]).await;
        event(&mut ws, "connected").await;
        ws.send(bad.clone()).await.unwrap();
        match next(&mut ws).await {
            Got::Closed(code, reason) => {
                assert_eq!(code, CloseCode::BAD_FRAME.0, "{bad:?}: {reason}");
                assert!(reason.contains("JSON"), "{reason}");
            }
            other => panic!("{bad:?}: expected a close, got {other:?}"),
        }
    }
    let mut ws = connect_raw(&url(&server, "/strict"), &[]).await;
    send(&mut ws, json!({"event": "nope"})).await;
    assert_eq!(
        next(&mut ws).await,
        Got::Closed(CloseCode::BAD_FRAME.0, "unknown event nope".into())
    );
}

/// A `pre_connect` refusal is the HTTP status it names, before any upgrade (Plezi answered 200
/// and clients saw "Unexpected response code: 200").
#[tokio::test]
async fn pre_connect_refuses_the_upgrade_with_a_real_http_status() {
    let builder = dev().endpoint(
        "/members",
        Endpoint::echo("members").pre_connect(|req| async move {
            match req.query_param("key") {
                Some("open-sesame") => Ok(()),
                Some(_) => Err((403, "wrong key".into())),
                // A status that is not an error is no refusal: 403.
                None => Err((200, "no key".into())),
            }
        }),
    );
    let server = start(builder).await;
    for (query, status) in [("?key=nope", 403), ("", 403)] {
        let e = try_connect_raw(&format!("{}{query}", url(&server, "/members")), &[])
            .await
            .expect_err("refused");
        match e {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status().as_u16(), status, "{query}")
            }
            other => panic!("{query}: {other}"),
        }
    }
    let mut ws = connect_raw(
        &format!("{}?key=open-sesame", url(&server, "/members")),
        &[],
    )
    .await;
    ws.send(Message::text("in")).await.unwrap();
    assert_eq!(next(&mut ws).await, Got::Text("in".into()));
}

/// Plezi 0.12's self-test, on the development `/plezi` endpoint: the server greets a new
/// connection; an echo comes back to the sender; a broadcast reaches the endpoint's other
/// connections and not the sender; a unicast reaches only its target, and one to a connection
/// that does not exist says so (`failed_unicast`).
#[tokio::test]
async fn plezi_self_test_scenarios() {
    let server = dev_server().await;
    let (mut a, a_id) = plezi(&server).await;
    let (mut b, b_id) = plezi(&server).await;
    let (mut c, _c_id) = plezi(&server).await;
    assert_ne!(a_id, b_id);

    send(&mut a, json!({"event": "echo", "text": "echo test"})).await;
    assert_eq!(
        next_json(&mut a).await,
        json!({"event": "echo", "text": "echo test"})
    );

    send(&mut a, json!({"event": "broadcast", "text": "to all"})).await;
    for ws in [&mut b, &mut c] {
        assert_eq!(
            event(ws, "broadcast").await,
            json!({"event": "broadcast", "text": "to all"})
        );
    }

    send(&mut a, json!({"event": "whoami"})).await;
    assert_eq!(event(&mut a, "whoami").await["id"], a_id.as_str());

    send(
        &mut a,
        json!({"event": "unicast", "to": b_id, "text": "psst"}),
    )
    .await;
    assert_eq!(event(&mut a, "unicast_result").await["delivered"], true);
    assert_eq!(event(&mut b, "unicast").await["text"], "psst");
    let gone = format!("{}-999999", a_id.split('-').next().unwrap());
    send(
        &mut a,
        json!({"event": "unicast", "to": gone, "text": "lost"}),
    )
    .await;
    assert_eq!(event(&mut a, "unicast_result").await["delivered"], false);

    // The sender never got its own broadcast, and c never got b's unicast: a marker echo
    // comes back before anything else.
    for ws in [&mut a, &mut c] {
        send(ws, json!({"event": "echo", "marker": true})).await;
        let got = next_json(ws).await;
        assert_eq!(got, json!({"event": "echo", "marker": true}));
    }
}

/// A multicast reaches every endpoint's connections (not native ones, not the sender); a
/// channel a connection subscribed to delivers publications from anyone — a native client —
/// as they are.
#[tokio::test]
async fn multicast_and_pub_sub_shared_with_native_clients() {
    let server = dev_server().await;
    let (mut a, _) = plezi(&server).await;
    let mut raw = connect_raw(&url(&server, "/echo"), &[]).await;
    send(&mut a, json!({"event": "multicast", "text": "everyone"})).await;
    // The raw endpoint gets the payload with no envelope: the object as sent.
    let got: Value = match next(&mut raw).await {
        Got::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(got, json!({"event": "multicast", "text": "everyone"}));

    send(&mut a, json!({"event": "subscribe", "channel": "news"})).await;
    event(&mut a, "subscribed").await;
    let mut native = TestClient::connect(&server.ws_url(), plexus_protocol::Encoding::Json).await;
    native
        .request::<Value>(plexus_protocol::client::Op::Publish(
            plexus_protocol::client::PublishParams::new(
                "news",
                &plexus_protocol::Payload::json(&json!("extra!")).unwrap(),
            ),
        ))
        .await
        .unwrap();
    // A JSON string payload is written as its text.
    assert_eq!(next(&mut a).await, Got::Text("extra!".into()));
    send(
        &mut a,
        json!({"event": "publish", "channel": "news", "data": {"from": "plezi"}}),
    )
    .await;
    assert_eq!(event(&mut a, "published").await["offset"], 2);
}

/// The endpoints' own channels are the server's: a native client may neither subscribe to nor
/// publish in them.
#[tokio::test]
async fn clients_cannot_reach_the_endpoint_channels() {
    let server = dev_server().await;
    let mut native = TestClient::connect(&server.ws_url(), plexus_protocol::Encoding::Json).await;
    for channel in ["plexus:endpoint:plezi", "plexus:endpoints"] {
        let e = native
            .request::<Value>(plexus_protocol::client::Op::Subscribe(
                plexus_protocol::client::SubscribeParams::new(channel),
            ))
            .await
            .expect_err("refused");
        assert_eq!(e.code.0, 105, "{channel}: {e:?}");
    }
}

/// An endpoint's own limits: a message over its size closes with 1009; its rate closes a flood
/// with 4006 (each a bound hit).
#[tokio::test]
async fn endpoint_limits_are_enforced() {
    let builder = dev().endpoint(
        "/small",
        Endpoint::echo("small").limits(EndpointLimits {
            max_message_bytes: Some(1024),
            messages_per_second: Some(1),
            messages_burst: Some(5),
            ..EndpointLimits::default()
        }),
    );
    let server = start(builder).await;
    let mut ws = connect_raw(&url(&server, "/small"), &[]).await;
    ws.send(Message::text("x".repeat(1024))).await.unwrap();
    assert_eq!(next(&mut ws).await, Got::Text("x".repeat(1024)));
    ws.send(Message::text("x".repeat(1025))).await.unwrap();
    match next(&mut ws).await {
        Got::Closed(code, _) => assert_eq!(code, 1009),
        other => panic!("{other:?}"),
    }
    // Plezi 0.12's size test: with a 1024-byte limit, a 1032-byte message disconnects.
    let mut ws = connect_raw(&url(&server, "/small"), &[]).await;
    ws.send(Message::text("y".repeat(1032))).await.unwrap();
    assert!(matches!(next(&mut ws).await, Got::Closed(1009, _)));

    let mut ws = connect_raw(&url(&server, "/small"), &[]).await;
    for _ in 0..40 {
        if ws.send(Message::text("f")).await.is_err() {
            break;
        }
    }
    let mut echoed = 0;
    loop {
        match next(&mut ws).await {
            Got::Text(_) => echoed += 1,
            Got::Closed(code, _) => {
                assert_eq!(code, CloseCode::FLOOD.0);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(echoed < 40, "the flood was cut: {echoed} echoed");
}

/// A graceful shutdown calls each connection's shutdown handler, which writes a last message,
/// and then closes with 4000.
#[tokio::test]
async fn the_shutdown_handler_writes_a_last_message_before_4000() {
    let builder = dev().endpoint(
        "/bye",
        Endpoint::echo("bye").on_shutdown(|ws| async move {
            ws.send_text("server going down");
        }),
    );
    let server = start(builder).await;
    let mut ws = connect_raw(&url(&server, "/bye"), &[]).await;
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(next(&mut ws).await, Got::Text("hi".into()));
    let shutdown = tokio::spawn(server.shutdown());
    assert_eq!(next(&mut ws).await, Got::Text("server going down".into()));
    match next(&mut ws).await {
        Got::Closed(code, _) => assert_eq!(code, 4000),
        other => panic!("{other:?}"),
    }
    drop(ws);
    assert!(shutdown.await.unwrap(), "every session ended in time");
}

/// Anonymous connections are refused before the upgrade when the server requires
/// authentication; a token in the query authenticates.
#[tokio::test]
async fn endpoints_share_the_servers_auth() {
    let builder: ServerBuilder = plexus_server::Server::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .auth_hook(|req: AuthRequest| async move {
            match req.token.as_deref() {
                Some("good-alice") => Ok(Identity::new("alice")),
                _ => Err(plexus_core::Error::new(
                    plexus_core::ErrorCode::AUTH_FAILED,
                    "bad token",
                )),
            }
        })
        .endpoint(
            "/who",
            Endpoint::dispatch("who").on("who", |ws, _| async move {
                Some(json!({"event": "who", "user": ws.user()}))
            }),
        );
    let server = start(builder).await;
    let e = try_connect_raw(&url(&server, "/who"), &[])
        .await
        .expect_err("refused");
    match e {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status().as_u16(), 401)
        }
        other => panic!("{other}"),
    }
    let mut ws = connect_raw(&format!("{}?token=good-alice", url(&server, "/who")), &[]).await;
    send(&mut ws, json!({"event": "who"})).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event": "who", "user": "alice"})
    );
    let mut ws = connect_raw(&format!("{}?token=forged", url(&server, "/who")), &[]).await;
    match next(&mut ws).await {
        Got::Closed(code, _) => assert_eq!(code, CloseCode::AUTH_FAILED.0),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The standalone server: `[[endpoints]]` with the backend's hooks as handlers

mod support;

async fn endpoint_hooks(r: support::Received) -> axum::response::Response {
    let body = &r.body;
    let result = match body["hook"].as_str().unwrap_or("") {
        "pre_connect" if body["query"].as_str().unwrap_or("").contains("deny") => {
            json!({"refuse": {"status": 401, "reason": "not you"}})
        }
        "open" => json!({"send": [{"json": {"event": "welcome", "endpoint": body["endpoint"]}}]}),
        "event" if body["event"] == "ping" => {
            json!({"reply": {"event": "pong", "user": body["user"], "n": body["message"]["n"]}})
        }
        "event" => json!({"unknown": true}),
        "message" => match (body["text"].as_str(), body["binary"].as_str()) {
            (Some(text), _) => json!({"send": [{"text": text.to_uppercase()}]}),
            (_, Some(b64)) => json!({"send": [{"binary": b64}, {"text": "got bytes"}]}),
            _ => json!({}),
        },
        _ => json!({}),
    };
    support::answer(json!({ "result": result }))
}

#[tokio::test]
async fn configured_endpoints_run_on_the_backends_hooks() {
    let backend = support::Backend::start(endpoint_hooks).await;
    let server = support::serve(&format!(
        r#"
[client]
anonymous = true
[backend]
endpoints_url = "{}"
[[endpoints]]
path = "/bot"
mode = "dispatch"
hooks = ["pre_connect", "open", "event", "close"]
[[endpoints]]
path = "/pipe"
name = "pipe"
mode = "raw"
hooks = ["message"]
[[endpoints]]
path = "/tiny"
mode = "echo"
max_message_bytes = 100
"#,
        backend.url("/hooks")
    ))
    .await;
    let e = try_connect_raw(&format!("{}?deny=1", url(&server, "/bot")), &[])
        .await
        .expect_err("refused");
    match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status().as_u16(), 401),
        other => panic!("{other}"),
    }
    let mut bot = connect_raw(&url(&server, "/bot"), &[]).await;
    assert_eq!(
        next_json(&mut bot).await,
        json!({"event": "welcome", "endpoint": "bot"})
    );
    send(&mut bot, json!({"event": "ping", "n": 3, "_EID_": 1})).await;
    assert_eq!(
        next_json(&mut bot).await,
        json!({"event": "_ack_", "_EID_": 1})
    );
    assert_eq!(
        next_json(&mut bot).await,
        json!({"event": "pong", "user": null, "n": 3})
    );
    send(&mut bot, json!({"event": "nope"})).await;
    assert_eq!(next_json(&mut bot).await["status"], 404);
    bot.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !backend
        .requests("/hooks")
        .iter()
        .any(|r| r.body["hook"] == "close")
    {
        assert!(tokio::time::Instant::now() < deadline, "the close hook ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let close = backend
        .requests("/hooks")
        .into_iter()
        .find(|r| r.body["hook"] == "close")
        .unwrap();
    assert_eq!(close.body["endpoint"], "bot");
    assert!(close.body["conn"].is_string());

    let mut pipe = connect_raw(&url(&server, "/pipe"), &[]).await;
    pipe.send(Message::text("quiet")).await.unwrap();
    assert_eq!(next(&mut pipe).await, Got::Text("QUIET".into()));
    pipe.send(Message::binary(vec![0u8, 1, 254, 255]))
        .await
        .unwrap();
    assert_eq!(next(&mut pipe).await, Got::Binary(vec![0, 1, 254, 255]));
    assert_eq!(next(&mut pipe).await, Got::Text("got bytes".into()));

    let mut tiny = connect_raw(&url(&server, "/tiny"), &[]).await;
    tiny.send(Message::text("x".repeat(100))).await.unwrap();
    assert_eq!(next(&mut tiny).await, Got::Text("x".repeat(100)));
    tiny.send(Message::text("x".repeat(101))).await.unwrap();
    assert!(matches!(next(&mut tiny).await, Got::Closed(1009, _)));
}

#[tokio::test]
async fn bad_endpoint_configurations_are_reported() {
    let problems = |toml: &str| match support::load_with(toml, &[], &[]) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
    };
    let patterns: Vec<String> = (0..101).map(|i| format!("\"p{i}:*\"")).collect();
    let found = problems(&format!(
        r#"
[client]
anonymous = true
[[endpoints]]
path = "/ws"
[[endpoints]]
path = "chat"
[[endpoints]]
path = "/a"
mode = "bogus"
[[endpoints]]
path = "/b"
mode = "dispatch"
hooks = ["message"]
[[endpoints]]
path = "/b"
unknown_event = "shrug"
[plezi_bus]
raw_channels = [{}]
"#,
        patterns.join(", ")
    ));
    for expected in [
        "`endpoints[0].path`: `/ws` is served by the server itself",
        "`endpoints[1].path`: `chat` is not a path",
        "`endpoints[2].mode`: `bogus` is none of",
        "`endpoints[3].hooks`: `message` does not fit mode `dispatch`",
        "`endpoints[3].hooks`: needs `backend.endpoints_url`",
        "`endpoints[4].path`: `/b` is mounted by an earlier endpoint",
        "`endpoints[4].unknown_event`: `shrug`",
        "`plezi_bus.raw_channels`: at most 100 patterns",
        "needs `engine = \"redis\"`",
    ] {
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{expected}\nnot in:\n{}",
            found.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Identities (Plezi `register_as` / `notify`), through the development `/plezi` endpoint

async fn identity_server() -> RunningServer {
    let mut builder = dev();
    // Plezi's clamp is 10 minutes; a test lowers it to see a lifetime end.
    builder.limits_mut().identity_min_lifetime = Duration::from_secs(1);
    start(builder).await
}

async fn register(ws: &mut Ws, identity: &str, lifetime: u64, max: u64) {
    send(
        ws,
        json!({"event": "register", "identity": identity, "lifetime": lifetime, "max_connections": max}),
    )
    .await;
    assert_eq!(event(ws, "registered").await["identity"], identity);
}

async fn notify(ws: &mut Ws, identity: &str, text: &str) -> bool {
    send(
        ws,
        json!({"event": "notify", "identity": identity, "data": {"text": text}}),
    )
    .await;
    event(ws, "notified").await["result"]
        .as_bool()
        .expect("a boolean")
}

#[tokio::test]
async fn identities_receive_on_their_newest_connections_and_keep_mail_while_offline() {
    let server = identity_server().await;
    let (mut sender, _) = plezi(&server).await;
    assert!(
        !notify(&mut sender, "nobody", "hello?").await,
        "never registered"
    );

    // The newest two of three registrations receive.
    let (mut a, _) = plezi(&server).await;
    let (mut b, _) = plezi(&server).await;
    let (mut c, _) = plezi(&server).await;
    for ws in [&mut a, &mut b, &mut c] {
        register(ws, "alice", 3600, 2).await;
    }
    assert!(notify(&mut sender, "alice", "one").await);
    for ws in [&mut b, &mut c] {
        assert_eq!(
            event(ws, "notification").await,
            json!({"event": "notification", "text": "one"})
        );
    }
    // a was pushed out: a marker echo comes back before anything else.
    send(&mut a, json!({"event": "echo", "marker": 1})).await;
    assert_eq!(
        next_json(&mut a).await,
        json!({"event": "echo", "marker": 1})
    );

    // Offline: the registered connections are gone; the mail waits, in order.
    drop(b);
    drop(c);
    // Until the server has let both connections go (sender and a remain).
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.node().hub().connection_count() > 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server drops closed connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(notify(&mut sender, "alice", "two").await);
    assert!(notify(&mut sender, "alice", "three").await);
    let (mut back, _) = plezi(&server).await;
    send(
        &mut back,
        json!({"event": "register", "identity": "alice", "lifetime": 3600, "max_connections": 2}),
    )
    .await;
    // What waited comes first, in order, then the registration's answer.
    for text in ["two", "three"] {
        assert_eq!(
            next_json(&mut back).await,
            json!({"event": "notification", "text": text})
        );
    }
    assert_eq!(event(&mut back, "registered").await["identity"], "alice");
    // Delivered once: a later registration gets nothing old.
    let (mut again, _) = plezi(&server).await;
    register(&mut again, "alice", 3600, 2).await;
    send(&mut again, json!({"event": "echo", "marker": 2})).await;
    assert_eq!(
        next_json(&mut again).await,
        json!({"event": "echo", "marker": 2})
    );
}

#[tokio::test]
async fn an_identity_expires_after_its_lifetime() {
    let server = identity_server().await;
    let (mut sender, _) = plezi(&server).await;
    let (mut ghost, _) = plezi(&server).await;
    register(&mut ghost, "ghost", 1, 1).await;
    drop(ghost);
    assert!(notify(&mut sender, "ghost", "still there").await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !notify(&mut sender, "ghost", "gone").await,
        "an identity past its lifetime is no longer registered"
    );
}

#[tokio::test]
async fn the_http_api_notifies_an_identity() {
    let builder = dev().endpoints(plexus_server::api::HttpEndpoints {
        api: Some(plexus_server::api::ApiOptions {
            key: plexus_server::api::ApiKey::Required(support::API_KEY.into()),
            ..plexus_server::api::ApiOptions::default()
        }),
        ..plexus_server::api::HttpEndpoints::default()
    });
    let server = start(builder).await;
    let (mut ws, _) = plezi(&server).await;
    register(&mut ws, "bob", 3600, 1).await;
    let answer = support::api_ok(
        &server,
        "identity_notify",
        json!({"identity": "bob", "event": "news", "data": {"headline": "hi"}}),
    )
    .await;
    assert_eq!(answer, json!({"notified": true}));
    assert_eq!(
        event(&mut ws, "news").await,
        json!({"event": "news", "headline": "hi"})
    );
    let answer = support::api_ok(&server, "identity_notify", json!({"identity": "nobody"})).await;
    assert_eq!(answer, json!({"notified": false}));
    let (status, _) = support::api(&server, "identity_notify", json!({"identity": ""})).await;
    assert_eq!(status.as_u16(), 400);
    // The name bound: 255 characters pass, 256 do not.
    let (status, _) = support::api(
        &server,
        "identity_notify",
        json!({"identity": "é".repeat(255)}),
    )
    .await;
    assert_eq!(status.as_u16(), 200);
    let (status, _) = support::api(
        &server,
        "identity_notify",
        json!({"identity": "é".repeat(256)}),
    )
    .await;
    assert_eq!(status.as_u16(), 400);
}

/// An identity keeps at most 1000 registrations, whatever `max_connections` asks: the oldest
/// drop out.
#[tokio::test]
async fn an_identity_keeps_at_most_1000_registrations() {
    use plexus_server::endpoint::identity;
    let server = dev_server().await;
    let node = server.node();
    for seq in 0..1001u64 {
        let conn = plexus_core::ConnId {
            node: node.id(),
            seq: 1_000_000 + seq,
        };
        identity::register_as(node, conn, "crowd", None, Some(5000))
            .await
            .unwrap();
    }
    let kept = node
        .engine()
        .kv
        .get("identity:crowd")
        .await
        .unwrap()
        .expect("registered");
    let kept: Vec<String> = serde_json::from_slice(&kept).unwrap();
    assert_eq!(kept.len(), identity::MAX_CONNECTIONS);
    assert_eq!(kept[0], format!("{}-{}", node.id(), 1_001_000));
    assert!(!kept.contains(&format!("{}-{}", node.id(), 1_000_000)));
}

/// An endpoint's own outbound bound: a handler that writes more than it closes the connection
/// as a slow consumer (4001).
#[tokio::test]
async fn an_endpoints_outbound_bound_closes_a_slow_consumer() {
    let builder = dev().endpoint(
        "/flood",
        Endpoint::raw("flood")
            .limits(EndpointLimits {
                outbound_queue_bytes_max: Some(4096),
                ..EndpointLimits::default()
            })
            .on_message(|ws, _| async move {
                for _ in 0..64 {
                    ws.send_text("x".repeat(1024));
                }
            }),
    );
    let server = start(builder).await;
    let mut ws = connect_raw(&url(&server, "/flood"), &[]).await;
    ws.send(Message::text("go")).await.unwrap();
    loop {
        match next(&mut ws).await {
            Got::Text(_) => continue,
            Got::Closed(code, _) => {
                assert_eq!(code, CloseCode::SLOW_CONSUMER.0);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Shutdown handlers are bounded: one that never ends does not hold the shutdown; the
/// connection still gets 4000.
#[tokio::test]
async fn a_shutdown_handler_that_never_ends_does_not_hold_the_shutdown() {
    let builder = dev().endpoint(
        "/stuck",
        Endpoint::echo("stuck").on_shutdown(|_ws| std::future::pending::<()>()),
    );
    let server = start(builder).await;
    let mut ws = connect_raw(&url(&server, "/stuck"), &[]).await;
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(next(&mut ws).await, Got::Text("hi".into()));
    let shutdown = tokio::spawn(server.shutdown());
    match next_within(&mut ws, Duration::from_secs(30)).await {
        Got::Closed(code, _) => assert_eq!(code, 4000),
        other => panic!("{other:?}"),
    }
    drop(ws);
    assert!(shutdown.await.unwrap());
}

/// The acknowledgement goes out while the handler still runs (PleziClient 0.16 gives it 10 ms):
/// the handler here waits until the test has read the ack.
#[tokio::test]
async fn the_ack_is_written_before_a_slow_handler_ends() {
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let release = gate.clone();
    let builder = dev().endpoint(
        "/slow",
        Endpoint::dispatch("slow").on("work", move |_ws, _m| {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                Some(json!({"event": "done"}))
            }
        }),
    );
    let server = start(builder).await;
    let mut ws = connect_raw(&url(&server, "/slow"), &[]).await;
    send(&mut ws, json!({"event": "work", "_EID_": 42})).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event": "_ack_", "_EID_": 42})
    );
    release.notify_one();
    assert_eq!(next_json(&mut ws).await, json!({"event": "done"}));
}

/// Two nodes on one Redis: a unicast reaches a connection on the other node (and says so), a
/// broadcast reaches the endpoint's connections on both, and a unicast to a connection that
/// closed says it failed.
#[tokio::test]
async fn addressing_crosses_nodes_on_redis() {
    let prefix = plexus_redis::testing::unique_prefix();
    let node = |prefix: String| async move {
        let builder = plexus_server::Server::builder()
            .listen("127.0.0.1:0".parse().unwrap())
            .dev_mode()
            .engine(redis_engine(&prefix).await);
        let server = start_as_is(builder).await;
        wait_healthy(&server).await;
        server
    };
    let a = node(prefix.clone()).await;
    let b = node(prefix).await;
    let (mut on_a, _) = plezi(&a).await;
    let (mut on_b, b_id) = plezi(&b).await;
    let (mut also_b, also_id) = plezi(&b).await;

    send(
        &mut on_a,
        json!({"event": "unicast", "to": b_id, "text": "across"}),
    )
    .await;
    assert_eq!(event(&mut on_a, "unicast_result").await["delivered"], true);
    assert_eq!(event(&mut on_b, "unicast").await["text"], "across");

    send(&mut on_a, json!({"event": "broadcast", "text": "everyone"})).await;
    for ws in [&mut on_b, &mut also_b] {
        assert_eq!(event(ws, "broadcast").await["text"], "everyone");
    }

    also_b.close(None).await.unwrap();
    drop(also_b);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        send(
            &mut on_a,
            json!({"event": "unicast", "to": also_id, "text": "late"}),
        )
        .await;
        if event(&mut on_a, "unicast_result").await["delivered"] == false {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed connection is gone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Plezi 0.12 bus messages as a node's subscription hands them over: a unicast by `:target`
/// reaches only that connection, `:type: all` every endpoint connection, `:type: <name>` that
/// endpoint's; a message outside the YAML subset is refused, never delivered.
#[tokio::test]
async fn plezi_bus_yaml_unicasts_and_broadcasts() {
    use plexus_server::endpoint::bus::PleziBus;
    let server = dev_server().await;
    let bus = PleziBus::new(server.node(), "app_redis_channel");
    let (mut a, a_id) = plezi(&server).await;
    let (mut b, _) = plezi(&server).await;
    let mut raw = connect_raw(&url(&server, "/echo"), &[]).await;

    let unicast = format!(
        "---\n:method: :_push\n:data:\n- :event: private\n  :text: only a\n:target: {a_id}\n"
    );
    assert_eq!(bus.deliver("app_redis_channel", unicast.as_bytes()), Ok(1));
    assert_eq!(
        next_json(&mut a).await,
        json!({"event": "private", "text": "only a"})
    );

    let everyone = "---\n:method: :news\n:data:\n- breaking\n- 2\n:type: all\n";
    assert_eq!(bus.deliver("app_redis_channel", everyone.as_bytes()), Ok(3));
    for ws in [&mut a, &mut b] {
        assert_eq!(
            next_json(ws).await,
            json!({"event": "news", "data": ["breaking", 2]})
        );
    }
    assert_eq!(next(&mut raw).await, Got::Text(r#"["breaking",2]"#.into()));

    let to_plezi = "---\n:method: :hello\n:data:\n- x\n:type: plezi\n";
    assert_eq!(bus.deliver("app_redis_channel", to_plezi.as_bytes()), Ok(2));
    for bad in [
        "--- !ruby/object:Kernel\n:method: :system\n",
        ":method: :m\n:data: []\n",
        "not: [yaml, flow]\n",
    ] {
        assert!(
            bus.deliver("app_redis_channel", bad.as_bytes()).is_err(),
            "{bad}"
        );
    }
    // The raw endpoint got nothing more than the broadcast to all.
    raw.send(Message::text("marker")).await.unwrap();
    assert_eq!(next(&mut raw).await, Got::Text("marker".into()));
}
