//! Mesa's protocol at `/mesa` over real WebSockets (`docs/mesa.md`): Mesa's golden traces
//! (`seeds-protocols.md` §1.5) as data, heartbeats, the enforced authentication timeout, close
//! codes, bad input and every limit, sync through mailboxes, the dispatcher (Rust, HTTP, and
//! Mesa's own `ws` Redis payloads on two nodes), and the middleware hooks. The real
//! `@cryb/mesa` and `mesa-js-client` run against `plexus serve` in `clients/mesa-tests`.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use plexus_core::{ConnId, Payload};
use plexus_server::mesa::{MesaConfig, MesaHooks, MesaMessage, ReceivedMessage};
use plexus_server::{RunningServer, ServerBuilder};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A raw Mesa client.
struct Mesa {
    ws: Ws,
}

impl Mesa {
    async fn connect(server: &RunningServer) -> Mesa {
        let url = format!("ws://{}/mesa", server.local_addr());
        Mesa {
            ws: connect_raw(&url, &[]).await,
        }
    }

    /// Connects and reads the hello.
    async fn open(server: &RunningServer) -> (Mesa, Value) {
        let mut m = Mesa::connect(server).await;
        let hello = m.next().await;
        assert_eq!(hello["op"], 10, "{hello}");
        (m, hello)
    }

    /// Connects, reads the hello, authenticates as `user` (development mode).
    async fn login(server: &RunningServer, user: &str) -> Mesa {
        let (mut m, _) = Mesa::open(server).await;
        m.send(json!({"op": 2, "d": {"token": user}})).await;
        let ack = m.next().await;
        assert_eq!(ack, json!({"op": 22, "d": {"id": user}}));
        m
    }

    async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// The next frame but heartbeats (op 1, which the node's sweep may send at any time);
    /// panics on a close.
    async fn next(&mut self) -> Value {
        loop {
            let frame = self.next_beat().await;
            if frame["op"] != 1 {
                return frame;
            }
        }
    }

    /// The next frame, heartbeats included.
    async fn next_beat(&mut self) -> Value {
        match self.read().await {
            Ok(v) => v,
            Err((code, reason)) => panic!("closed with {code}: {reason}"),
        }
    }

    async fn read(&mut self) -> Result<Value, (u16, String)> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait bound");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(&text).expect("JSON frame"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new())));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err((1006, e.to_string())),
                None => return Err((1006, "ended".into())),
            }
        }
    }

    /// Reads until the close; returns its code (frames before it are skipped).
    async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Err(close) = self.read().await {
                return close;
            }
        }
    }
}

fn mesa_server(config: MesaConfig) -> ServerBuilder {
    dev().mesa(config)
}

fn api_endpoints() -> plexus_server::api::HttpEndpoints {
    plexus_server::api::HttpEndpoints {
        api: Some(plexus_server::api::ApiOptions {
            key: plexus_server::api::ApiKey::Open,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn json_payload(v: Value) -> Payload {
    Payload::json(&v).unwrap()
}

// --- the protocol: Mesa's golden traces (§1.5) as data ---------------------------------------

/// One step of a transcript: a frame the client sends, or the frame it must receive next.
enum Step {
    Send(Value),
    Expect(Value),
}

async fn check(server: &RunningServer, transcript: &[Step]) {
    let mut m = Mesa::connect(server).await;
    for (i, step) in transcript.iter().enumerate() {
        match step {
            Step::Send(frame) => m.send(frame.clone()).await,
            Step::Expect(frame) => assert_eq!(&m.next().await, frame, "step {i}"),
        }
    }
}

#[tokio::test]
async fn golden_traces() {
    use Step::*;
    let server = start(
        mesa_server(MesaConfig {
            reconnect_interval_ms: Some(300),
            ..MesaConfig::development()
        })
        .limits(plexus_core::Limits {
            ping_interval: Duration::from_secs(500),
            ..Default::default()
        }),
    )
    .await;
    check(
        &server,
        &[
            Expect(json!({"op": 10, "d": {
                "c_heartbeat_interval": 500_000,
                "c_reconnect_interval": 300,
                "c_authentication_timeout": 10_000,
                "rules": ["sends_user_object"]}})),
            Send(json!({"op": 2, "d": {"token": "alice", "shouldSync": true}})),
            Expect(json!({"op": 22, "d": {"id": "alice"}})),
            // Op 0 to the command named by `t` (development mode's `echo`), answered in kind.
            Send(json!({"op": 0, "d": {"x": 1, "y": 2}, "t": "echo"})),
            Expect(json!({"op": 0, "d": {"x": 1, "y": 2}, "t": "echo"})),
            // A type no command handles, with no hooks: answered, not dropped.
            Send(json!({"op": 0, "d": {"x": 1}, "t": "TEST"})),
            Expect(json!({"op": 0, "t": "PLEXUS_ERROR",
                "d": {"code": 103, "message": "no command handles the type `TEST`", "op": 0, "t": "TEST"}})),
            // Opcodes a client does not send are answered, not forwarded (Mesa: treated as op 0).
            Send(json!({"op": 22, "d": {}})),
            Expect(json!({"op": 0, "t": "PLEXUS_ERROR",
                "d": {"code": 102, "message": "opcode 22 is not one a client sends (0, 2, 11)", "op": 22, "t": null}})),
            Send(json!({"op": 2, "d": {"token": "alice"}})),
            Expect(json!({"op": 0, "t": "PLEXUS_ERROR",
                "d": {"code": 113, "message": "already authenticated", "op": 2, "t": null}})),
            // An op 11 nobody asked for is harmless.
            Send(json!({"op": 11, "d": {}})),
            Send(json!({"op": 0, "d": {}, "t": "echo"})),
            Expect(json!({"op": 0, "d": {}, "t": "echo"})),
        ],
    )
    .await;
}

#[tokio::test]
async fn server_sends_reach_mesa_and_native_clients_of_one_user() {
    // Native clients authenticate with their user id as token (the in-band hook); Mesa's
    // development mode takes op 2's token as the user id.
    let server = start(mesa_server(MesaConfig::development()).auth_hook(
        |req: plexus_core::AuthRequest| async move {
            Ok(plexus_core::Identity::new(req.token.unwrap_or_default()))
        },
    ))
    .await;
    let mesa = server.mesa().expect("Mesa served");
    let mut alice = Mesa::login(&server, "alice").await;
    let mut bob = Mesa::login(&server, "bob").await;
    let mut native = TestClient::connect(&server.ws_url(), plexus_protocol::Encoding::Json).await;
    native
        .request::<Value>(plexus_protocol::client::Op::Connect(
            plexus_protocol::client::ConnectParams {
                token: Some("alice".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let message = MesaMessage::new("GREETING", json_payload(json!({"hello": 1})));
    let report = mesa.dispatch(&message, &["alice"], &[]).await.unwrap();
    assert_eq!(report.delivered, 1);
    assert_eq!(
        alice.next().await,
        json!({"op": 0, "d": {"hello": 1}, "t": "GREETING"})
    );
    match native.next_push().await {
        plexus_protocol::server::Push::Message(m) => {
            assert_eq!(m.event.as_deref(), Some("GREETING"));
        }
        other => panic!("{other:?}"),
    }
    // Everyone but bob: Mesa's Dispatcher cannot exclude with "*"; Plexus does.
    let global = MesaMessage::new("GLOBAL", json_payload(json!({"a": 1})));
    mesa.dispatch(&global, &["*"], &["bob"]).await.unwrap();
    assert_eq!(
        alice.next().await,
        json!({"op": 0, "d": {"a": 1}, "t": "GLOBAL"})
    );
    mesa.dispatch(&global, &[], &[]).await.unwrap();
    assert_eq!(
        bob.next().await,
        json!({"op": 0, "d": {"a": 1}, "t": "GLOBAL"})
    );
    // DISCONNECT_CLIENT closes with 1000.
    mesa.disconnect(&["bob"]).await.unwrap();
    assert_eq!(bob.closed().await.0, 1000);
}

#[tokio::test]
async fn heartbeats_count_tries_then_close() {
    let server = start(
        mesa_server(MesaConfig::development()).limits(plexus_core::Limits {
            ping_interval: Duration::from_millis(50),
            max_missed_pongs: 3,
            ..Default::default()
        }),
    )
    .await;
    // A client that answers: every beat is `{}`.
    let (mut m, hello) = Mesa::open(&server).await;
    assert_eq!(hello["d"]["c_heartbeat_interval"], 50);
    for _ in 0..3 {
        assert_eq!(m.next_beat().await, json!({"op": 1, "d": {}}));
        m.send(json!({"op": 11, "d": {}})).await;
    }
    // A client that does not: tries 1, 2, then the close.
    let (mut m, _) = Mesa::open(&server).await;
    assert_eq!(m.next_beat().await, json!({"op": 1, "d": {}}));
    assert_eq!(
        m.next_beat().await,
        json!({"op": 1, "d": {"tries": 1, "max": 3}})
    );
    assert_eq!(
        m.next_beat().await,
        json!({"op": 1, "d": {"tries": 2, "max": 3}})
    );
    assert_eq!(m.closed().await.0, 4002);
}

#[tokio::test]
async fn no_heartbeat_when_off() {
    let server = start(
        mesa_server(MesaConfig {
            heartbeat: false,
            ..MesaConfig::development()
        })
        .limits(plexus_core::Limits {
            ping_interval: Duration::from_millis(20),
            ..Default::default()
        }),
    )
    .await;
    let (mut m, hello) = Mesa::open(&server).await;
    assert!(hello["d"].get("c_heartbeat_interval").is_none(), "{hello}");
    // Several intervals later, the first frame after the hello is the op 22: no op 1 came.
    tokio::time::sleep(Duration::from_millis(100)).await;
    m.send(json!({"op": 2, "d": {"token": "a"}})).await;
    assert_eq!(m.next_beat().await["op"], 22);
}

// --- close codes and bad input ----------------------------------------------------------------

#[tokio::test]
async fn the_authentication_timeout_is_enforced() {
    let server = start(mesa_server(MesaConfig {
        auth_timeout_ms: 100,
        ..MesaConfig::development()
    }))
    .await;
    let (mut m, hello) = Mesa::open(&server).await;
    assert_eq!(hello["d"]["c_authentication_timeout"], 100);
    assert_eq!(m.closed().await.0, 4003);
    // Authenticated in time: it stays (a dispatch after the timeout still arrives).
    let mut m = Mesa::login(&server, "carol").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    m.send(json!({"op": 0, "d": {}, "t": "echo"})).await;
    assert_eq!(m.next().await["t"], "echo");
}

#[tokio::test]
async fn close_codes_for_bad_input() {
    let server = start(
        mesa_server(MesaConfig {
            enforce_version: Some("1.5.3".into()),
            ..MesaConfig::development()
        })
        .limits(plexus_core::Limits {
            max_message_bytes: 1024,
            ..Default::default()
        }),
    )
    .await;
    let cases: &[(&str, u16)] = &[
        ("not json", 4500),
        ("[0, {}]", 4500),
        (r#"{"d": {}}"#, 4500),
        (r#"{"op": "0"}"#, 4500),
        (r#"{"op": -1}"#, 4500),
        // Development mode: `token` is the user id; none, or not a string, is refused (1008).
        (r#"{"op": 2, "d": {}}"#, 1008),
        (r#"{"op": 2, "d": {"token": 7}}"#, 1008),
        (r#"{"op": 2, "d": [1]}"#, 1008),
        (
            r#"{"op": 0, "t": "CLIENT_VERSION", "d": {"v": "1.0.0"}}"#,
            1002,
        ),
    ];
    for (frame, code) in cases {
        let (mut m, hello) = Mesa::open(&server).await;
        assert_eq!(
            hello["d"]["rules"],
            json!(["enforce_equal_versions", "sends_user_object"])
        );
        m.send_text(frame).await;
        assert_eq!(m.closed().await.0, *code, "{frame}");
    }
    let deep = format!(r#"{{"op":0,"d":{}1{}}}"#, "[".repeat(70), "]".repeat(70));
    let (mut m, _) = Mesa::open(&server).await;
    m.send_text(&deep).await;
    assert_eq!(m.closed().await.0, 4500);
    // A message over max_message_bytes: 1009.
    let (mut m, _) = Mesa::open(&server).await;
    m.send_text(&format!(r#"{{"op":0,"d":"{}"}}"#, "x".repeat(2000)))
        .await;
    assert_eq!(m.closed().await.0, 1009);
    // The right version is accepted silently.
    let (mut m, _) = Mesa::open(&server).await;
    m.send(json!({"op": 0, "t": "CLIENT_VERSION", "d": {"v": "1.5.3"}}))
        .await;
    m.send(json!({"op": 2, "d": {"token": "dave"}})).await;
    assert_eq!(m.next().await, json!({"op": 22, "d": {"id": "dave"}}));
}

#[tokio::test]
async fn a_refused_authentication_without_disconnect_on_fail_may_retry() {
    let server = start(mesa_server(MesaConfig {
        disconnect_on_fail: false,
        send_user_object: false,
        ..MesaConfig::development()
    }))
    .await;
    let (mut m, hello) = Mesa::open(&server).await;
    assert_eq!(hello["d"]["rules"], json!([]));
    m.send(json!({"op": 2, "d": {}})).await;
    let refused = m.next().await;
    assert_eq!(refused["t"], "PLEXUS_ERROR");
    assert_eq!(refused["d"]["code"], 112);
    m.send(json!({"op": 2, "d": {"token": "erin"}})).await;
    assert_eq!(m.next().await, json!({"op": 22, "d": {}}));
}

#[tokio::test]
async fn a_flood_is_closed() {
    let server = start(
        mesa_server(MesaConfig::development()).limits(plexus_core::Limits {
            requests_per_second: 1,
            requests_burst: 5,
            ..Default::default()
        }),
    )
    .await;
    let mut m = Mesa::login(&server, "flo").await;
    for _ in 0..50 {
        m.send(json!({"op": 0, "d": {}, "t": "echo"})).await;
    }
    assert_eq!(m.closed().await.0, 4006);
}

// --- sync through mailboxes -------------------------------------------------------------------

#[tokio::test]
async fn sync_keeps_messages_for_offline_users_and_redelivers_them_in_order() {
    let server = start(
        mesa_server(MesaConfig::development()).limits(plexus_core::Limits {
            mailbox_max_messages: 3,
            ..Default::default()
        }),
    )
    .await;
    let mesa = server.mesa().unwrap();
    // Four messages to an offline user: three kept (the mailbox's bound), one dropped; one
    // `o.sync: false` never kept.
    for i in 1..=4 {
        let m = MesaMessage::new("NEW_MESSAGE", json_payload(json!({"n": i})));
        mesa.dispatch(&m, &["frank"], &[]).await.unwrap();
    }
    let volatile = MesaMessage::new("TYPING", json_payload(json!({}))).no_sync();
    let report = mesa.dispatch(&volatile, &["frank"], &[]).await.unwrap();
    assert_eq!(report.dropped, 1);
    let mut m = Mesa::login(&server, "frank").await;
    for s in 1..=3u64 {
        assert_eq!(
            m.next().await,
            json!({"op": 0, "d": {"n": s}, "t": "NEW_MESSAGE", "s": s})
        );
    }
    // Redelivered once: a second connection gets nothing kept, and live messages have no `s`.
    let mut again = Mesa::login(&server, "frank").await;
    let live = MesaMessage::new("LIVE", json_payload(json!({})));
    mesa.dispatch(&live, &["frank"], &[]).await.unwrap();
    assert_eq!(again.next().await, json!({"op": 0, "d": {}, "t": "LIVE"}));
    assert_eq!(m.next().await, json!({"op": 0, "d": {}, "t": "LIVE"}));
}

#[tokio::test]
async fn should_sync_false_drops_the_backlog() {
    let server = start(mesa_server(MesaConfig::development())).await;
    let mesa = server.mesa().unwrap();
    let m = MesaMessage::new("OLD", json_payload(json!({})));
    assert_eq!(mesa.dispatch(&m, &["gina"], &[]).await.unwrap().stored, 1);
    let (mut c, _) = Mesa::open(&server).await;
    c.send(json!({"op": 2, "d": {"token": "gina", "shouldSync": false}}))
        .await;
    assert_eq!(c.next().await["op"], 22);
    // Nothing kept arrives: the next frame is a live one.
    mesa.dispatch(
        &MesaMessage::new("NEW", json_payload(json!({}))),
        &["gina"],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(c.next().await["t"], "NEW");
    drop(c);
    // And the backlog is gone for good.
    let mut c = Mesa::login(&server, "gina").await;
    c.send(json!({"op": 0, "d": {}, "t": "echo"})).await;
    assert_eq!(c.next().await["t"], "echo");
}

#[tokio::test]
async fn redelivery_is_paced_by_the_interval() {
    let server = start(mesa_server(MesaConfig {
        redelivery_interval_ms: 20,
        ..MesaConfig::development()
    }))
    .await;
    let mesa = server.mesa().unwrap();
    for i in 1..=3 {
        let m = MesaMessage::new("N", json_payload(json!(i)));
        mesa.dispatch(&m, &["hal"], &[]).await.unwrap();
    }
    let mut m = Mesa::login(&server, "hal").await;
    for s in 1..=3 {
        assert_eq!(m.next().await, json!({"op": 0, "d": s, "t": "N", "s": s}));
    }
}

#[tokio::test]
async fn online_state_is_per_connection() {
    let server = start(mesa_server(MesaConfig::development())).await;
    let mesa = server.mesa().unwrap();
    let first = Mesa::login(&server, "ivy").await;
    let mut second = Mesa::login(&server, "ivy").await;
    drop(first);
    // Wait until the first connection's close is processed: the node counts one connection.
    for _ in 0..1000 {
        if server.node().connection_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = MesaMessage::new("STILL_HERE", json_payload(json!({})));
    let report = mesa.dispatch(&m, &["ivy"], &[]).await.unwrap();
    assert_eq!((report.delivered, report.stored), (1, 0));
    assert_eq!(second.next().await["t"], "STILL_HERE");
}

// --- the HTTP API -----------------------------------------------------------------------------

#[tokio::test]
async fn http_dispatch_and_disconnect() {
    let server = start(mesa_server(MesaConfig::development()).endpoints(api_endpoints())).await;
    let mut jo = Mesa::login(&server, "jo").await;
    let body = json!({"recipients": ["jo", "kim"], "t": "NEW_MESSAGE", "d": {"text": "hi"}});
    let reply = http(
        server.local_addr(),
        "POST",
        "/api/mesa_dispatch",
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        reply["result"],
        json!({"delivered": 1, "stored": 1, "dropped": 0})
    );
    assert_eq!(
        jo.next().await,
        json!({"op": 0, "d": {"text": "hi"}, "t": "NEW_MESSAGE"})
    );
    for bad in [
        json!({}),
        json!({"d": 1, "t": ""}),
        json!({"d": 1, "recipients": [""]}),
    ] {
        let r = http(
            server.local_addr(),
            "POST",
            "/api/mesa_dispatch",
            Some(&bad.to_string()),
        )
        .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let too_many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let r = http(
        server.local_addr(),
        "POST",
        "/api/mesa_dispatch",
        Some(&json!({"d": 1, "recipients": too_many}).to_string()),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = http(
        server.local_addr(),
        "POST",
        "/api/mesa_disconnect",
        Some(&json!({"recipients": ["jo"]}).to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(jo.closed().await.0, 1000);
}

// --- hooks ------------------------------------------------------------------------------------

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl MesaHooks for Recorder {
    fn connection(&self, _conn: ConnId) {
        self.0.lock().unwrap().push("connection".into());
    }
    fn disconnection(
        &self,
        _conn: ConnId,
        user: Option<&str>,
        code: plexus_core::CloseCode,
        _r: &str,
    ) {
        self.0
            .lock()
            .unwrap()
            .push(format!("disconnection {} {}", user.unwrap_or("-"), code.0));
    }
    fn message_received(&self, m: &ReceivedMessage<'_>) {
        self.0.lock().unwrap().push(format!(
            "received {} {} {}",
            m.user.unwrap_or("-"),
            m.t.unwrap_or("-"),
            m.d.as_json_str().unwrap()
        ));
    }
    fn authenticated(&self, _conn: ConnId, user: &str) {
        self.0.lock().unwrap().push(format!("authenticated {user}"));
    }
    fn undeliverable_stored(&self, m: &MesaMessage, user: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("stored {} {user}", m.t.as_deref().unwrap_or("-")));
    }
    fn redelivered(&self, _conn: ConnId, user: &str, count: usize) {
        self.0
            .lock()
            .unwrap()
            .push(format!("redelivered {user} {count}"));
    }
    fn message_sent(&self, m: &MesaMessage, recipients: &[&str]) {
        self.0.lock().unwrap().push(format!(
            "sent {} {}",
            m.t.as_deref().unwrap_or("-"),
            recipients.join(",")
        ));
    }
}

#[tokio::test]
async fn middleware_events_reach_the_hooks() {
    let recorder = Arc::new(Recorder::default());
    let server = start(mesa_server(MesaConfig::development()).mesa_hooks(recorder.clone())).await;
    let mesa = server.mesa().unwrap();
    let m = MesaMessage::new("KEPT", json_payload(json!({})));
    mesa.dispatch(&m, &["lee"], &[]).await.unwrap();
    let mut c = Mesa::login(&server, "lee").await;
    assert_eq!(c.next().await["s"], 1);
    // With hooks, a type no command handles is theirs: no error frame.
    c.send(json!({"op": 0, "d": {"x": 1, "y": 2}, "t": "TEST"}))
        .await;
    c.send(json!({"op": 0, "d": {}, "t": "echo"})).await;
    assert_eq!(c.next().await["t"], "echo");
    c.ws.close(None).await.unwrap();
    for _ in 0..1000 {
        if recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("disconnection"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec![
            "stored KEPT lee",
            "sent KEPT lee",
            "connection",
            "authenticated lee",
            "redelivered lee 1",
            r#"received lee TEST {"x":1,"y":2}"#,
            "received lee echo {}",
            "disconnection lee 1005",
        ]
    );
}

// --- Mesa's own Dispatcher format on Redis, two nodes ------------------------------------------

#[tokio::test]
async fn mesa_ws_payloads_on_redis_reach_clients_of_every_node() {
    let url = redis().url();
    let prefix = plexus_redis::testing::unique_prefix();
    let namespace = prefix.clone();
    let config = MesaConfig {
        namespace: Some(namespace.clone()),
        ..MesaConfig::development()
    };
    let mut nodes = Vec::new();
    let mut subs = Vec::new();
    for _ in 0..2 {
        let server =
            start_as_is(mesa_server(config.clone()).engine(redis_engine(&prefix).await)).await;
        let mesa = server.mesa().unwrap();
        let channel = mesa.ws_channel();
        assert_eq!(channel, format!("ws_{namespace}"));
        subs.push(
            plexus_redis::external::subscribe_external(&url, &channel, WAIT, move |p| {
                let _ = mesa.deliver_internal(p);
            })
            .await
            .unwrap(),
        );
        nodes.push(server);
    }
    let mut a = Mesa::login(&nodes[0], "mo").await;
    let mut b = Mesa::login(&nodes[1], "mo").await;
    let mut c = Mesa::login(&nodes[1], "nat").await;
    let channel = format!("ws_{namespace}");
    let publish = |payload: Value| {
        let (url, channel) = (url.clone(), channel.clone());
        async move {
            plexus_redis::external::publish_external(
                &url,
                &channel,
                payload.to_string().as_bytes(),
                WAIT,
            )
            .await
            .unwrap()
        }
    };
    // As `Dispatcher.dispatch(new Message(0, {a: 1}, 'T'), ['mo'])` writes it.
    assert_eq!(
        publish(json!({"message": {"op": 0, "d": {"a": 1}, "t": "T"}, "recipients": ["mo"]})).await,
        2
    );
    assert_eq!(a.next().await, json!({"op": 0, "d": {"a": 1}, "t": "T"}));
    assert_eq!(b.next().await, json!({"op": 0, "d": {"a": 1}, "t": "T"}));
    publish(json!({"message": {"op": 0, "d": {}, "t": "ALL", "o": {"sync": true}}, "recipients": ["*"]})).await;
    for m in [&mut a, &mut b, &mut c] {
        assert_eq!(m.next().await, json!({"op": 0, "d": {}, "t": "ALL"}));
    }
    // Garbage on the channel is ignored; DISCONNECT_CLIENT closes with 1000.
    publish(json!("garbage")).await;
    publish(
        json!({"message": {"op": 5, "d": {}, "t": "DISCONNECT_CLIENT"}, "recipients": ["nat"]}),
    )
    .await;
    assert_eq!(c.closed().await.0, 1000);
    drop(subs);
}

// --- portals: at least once -------------------------------------------------------------------

fn portal_config() -> MesaConfig {
    MesaConfig {
        portals: plexus_server::mesa::PortalMode::Queue,
        portal_group: format!("portal-{}", plexus_redis::testing::unique_prefix()),
        portal_lease_ms: 200,
        ..MesaConfig::development()
    }
}

fn kinds(events: &[plexus_server::mesa::PortalDelivery]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let kind = serde_json::to_value(e.event.kind).unwrap();
            let message = e
                .event
                .message
                .as_ref()
                .map(|m| format!(" {}", m.get()))
                .unwrap_or_default();
            format!(
                "{} {}{message}",
                kind.as_str().unwrap(),
                e.event.client_id.as_deref().unwrap_or("-")
            )
        })
        .collect()
}

/// Takes until `n` events came (bounded wait).
async fn take_n(
    mesa: &plexus_server::mesa::MesaApi,
    worker: &str,
    n: usize,
) -> Vec<plexus_server::mesa::PortalDelivery> {
    let deadline = std::time::Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(std::time::Instant::now() < deadline, "{n} portal events");
        let taken = mesa.portal_take(worker, n - out.len()).await.unwrap();
        if taken.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        out.extend(taken);
    }
    out
}

#[tokio::test]
async fn portal_events_reach_one_worker_and_another_when_it_dies() {
    let server = start(mesa_server(portal_config())).await;
    let mesa = server.mesa().unwrap();
    let mut c = Mesa::login(&server, "pat").await;
    c.send(json!({"op": 0, "d": {"x": 1}, "t": "CHAT"})).await;
    c.ws.close(None).await.unwrap();
    let _ = c.read().await;
    // A worker takes every event and dies without acknowledging them.
    let lost = take_n(&mesa, "dying", 4).await;
    assert_eq!(
        kinds(&lost),
        vec![
            "connection -",
            "authentication pat",
            r#"message pat {"op":0,"d":{"x":1},"t":"CHAT"}"#,
            "disconnection pat",
        ]
    );
    // Its lease runs out: another worker gets them all again, marked as redelivered.
    let again = take_n(&mesa, "live", 4).await;
    assert_eq!(kinds(&again), kinds(&lost));
    assert!(again.iter().all(|e| e.redeliveries == 1));
    let ids: Vec<String> = again.iter().map(|e| e.id.clone()).collect();
    assert_eq!(mesa.portal_ack(&ids).await.unwrap(), 4);
    // Acknowledged: gone for good (a new event is the next one anyone takes).
    let (_m, _) = Mesa::open(&server).await;
    let next = take_n(&mesa, "live", 1).await;
    assert_eq!(kinds(&next), vec!["connection -"]);
    assert_eq!(next[0].redeliveries, 0);
}

#[tokio::test]
async fn the_portal_backlog_is_bounded() {
    let recorder = Arc::new(Recorder::default());
    let server = start(
        mesa_server(MesaConfig {
            portal_backlog_max: 2,
            ..portal_config()
        })
        .mesa_hooks(recorder.clone())
        .endpoints(plexus_server::api::HttpEndpoints {
            metrics: true,
            ..Default::default()
        }),
    )
    .await;
    let mesa = server.mesa().unwrap();
    // connection + authentication fill it; the message is dropped, counted, reported.
    let mut c = Mesa::login(&server, "quinn").await;
    c.send(json!({"op": 0, "d": {}, "t": "echo"})).await;
    assert_eq!(c.next().await["t"], "echo");
    assert_eq!(mesa.portal_dropped(), 1);
    let metrics = http(server.local_addr(), "GET", "/metrics", None).await;
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l == "plexus_mesa_portal_dropped_total 1"),
        "{}",
        metrics.body
    );
    let taken = take_n(&mesa, "w", 2).await;
    assert_eq!(kinds(&taken), vec!["connection -", "authentication quinn"]);
}

#[tokio::test]
async fn http_workers_long_poll_and_acknowledge() {
    let server = start(mesa_server(portal_config()).endpoints(api_endpoints())).await;
    let addr = server.local_addr();
    let post = |method: &'static str, body: Value| async move {
        let r = http(
            addr,
            "POST",
            &format!("/api/{method}"),
            Some(&body.to_string()),
        )
        .await;
        (
            r.status,
            serde_json::from_str::<Value>(&r.body).unwrap_or(Value::Null),
        )
    };
    // A long poll waits for the connection that comes meanwhile.
    let poll = tokio::spawn(post(
        "mesa_portal_take",
        json!({"worker": "w1", "max": 10, "wait_ms": 10_000}),
    ));
    let _c = Mesa::login(&server, "rae").await;
    let (status, body) = poll.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let events = body["result"]["events"].as_array().unwrap().clone();
    assert_eq!(events[0]["event"], json!({"type": "connection"}));
    let ids: Vec<Value> = events.iter().map(|e| e["id"].clone()).collect();
    let mut acked = 0;
    let (status, body) = post("mesa_portal_ack", json!({ "ids": ids })).await;
    assert_eq!(status, 200, "{body}");
    acked += body["result"]["acked"].as_u64().unwrap();
    assert_eq!(acked, events.len() as u64);
    for bad in [
        json!({}),
        json!({"worker": ""}),
        json!({"worker": "w", "max": 0}),
        json!({"worker": "w", "wait_ms": 30001}),
        json!({"ids": "x"}),
    ] {
        let method = if bad.get("ids").is_some() {
            "mesa_portal_ack"
        } else {
            "mesa_portal_take"
        };
        let (status, body) = post(method, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test]
async fn portals_off_answer_not_available() {
    let server = start(mesa_server(MesaConfig::development()).endpoints(api_endpoints())).await;
    let r = http(
        server.local_addr(),
        "POST",
        "/api/mesa_portal_take",
        Some(&json!({"worker": "w"}).to_string()),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

#[tokio::test]
async fn mesa_format_portals_round_robin_over_a_bounded_pool() {
    let server = start(mesa_server(MesaConfig {
        portals: plexus_server::mesa::PortalMode::Mesa,
        ..MesaConfig::development()
    }))
    .await;
    let mesa = server.mesa().unwrap();
    let sent = Arc::new(Mutex::new(Vec::<Value>::new()));
    let accept = Arc::new(std::sync::atomic::AtomicBool::new(true));
    {
        let (sent, accept) = (sent.clone(), accept.clone());
        mesa.set_portal_publisher(Box::new(move |payload| {
            if !accept.load(std::sync::atomic::Ordering::Relaxed) {
                return false;
            }
            sent.lock()
                .unwrap()
                .push(serde_json::from_slice(&payload).unwrap());
            true
        }));
    }
    // No portal known: nothing is sent (as Mesa), nothing counted as dropped.
    let (_a, _) = Mesa::open(&server).await;
    assert!(sent.lock().unwrap().is_empty());
    assert_eq!(mesa.portal_dropped(), 0);
    mesa.set_portals(vec!["p0".into(), "p1".into()]);
    mesa.portal_announcement(br#"{"id":"p2","ready":true}"#)
        .unwrap();
    mesa.portal_announcement(br#"{"id":"p1","ready":false}"#)
        .unwrap();
    assert!(mesa.portal_announcement(b"garbage").is_err());
    assert_eq!(mesa.portals(), vec!["p0", "p2"]);
    // Round-robin, incremented before use as in Mesa: p2, p0, p2.
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(Mesa::open(&server).await.0);
    }
    let ids: Vec<Value> = sent
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["portalId"].clone())
        .collect();
    assert_eq!(ids, vec![json!("p2"), json!("p0"), json!("p2")]);
    assert_eq!(
        sent.lock().unwrap()[0],
        json!({"type": "connection", "portalId": "p2"})
    );
    // The pool is bounded (1024 portals).
    mesa.set_portals((0..2000).map(|i| format!("x{i}")).collect());
    assert_eq!(mesa.portals().len(), 1024);
    // A publisher that refuses (its queue is full) drops the event, counted.
    accept.store(false, std::sync::atomic::Ordering::Relaxed);
    let (_m, _) = Mesa::open(&server).await;
    for _ in 0..1000 {
        if mesa.portal_dropped() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(mesa.portal_dropped(), 1);
}

// --- Mesa's "server › config" cases: a given path, an existing HTTP server ----------------------

#[tokio::test]
async fn served_at_a_given_path_and_inside_an_existing_axum_app() {
    // "starts on a given path" (Mesa's test uses `/ws`, Plexus's own; any other path works).
    let server = start(mesa_server(MesaConfig {
        path: "/realtime/mesa".into(),
        ..MesaConfig::development()
    }))
    .await;
    let url = format!("ws://{}/realtime/mesa", server.local_addr());
    let mut m = Mesa {
        ws: connect_raw(&url, &[]).await,
    };
    assert_eq!(m.next().await["op"], 10);
    assert!(
        try_connect_raw(&format!("ws://{}/mesa", server.local_addr()), &[])
            .await
            .is_err(),
        "not at the default path anymore"
    );
    // "uses a pre-existing http server": the server's routes merged into an application's.
    let built = mesa_server(MesaConfig::development()).build();
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "app" }))
        .merge(built.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    assert_eq!(http(addr, "GET", "/hello", None).await.body, "app");
    let mut m = Mesa {
        ws: connect_raw(&format!("ws://{addr}/mesa"), &[]).await,
    };
    assert_eq!(m.next().await["op"], 10);
    m.send(json!({"op": 2, "d": {"token": "vic"}})).await;
    assert_eq!(m.next().await, json!({"op": 22, "d": {"id": "vic"}}));
}
