//! The connection lifecycle hooks (`opened`, `authenticated`, `closed` with its code and
//! reason) over real connections — native WebSocket and Socket.IO over WebSocket and polling —
//! and the standalone server's lifecycle notifications against a real HTTP backend (up, down,
//! slow, saturated).

mod common;
mod support;

use common::{TestClient, WAIT};
use futures_util::{SinkExt, StreamExt};
use plexus_core::{
    AuthRequest, Authenticated, CloseCode, Closed, Error, ErrorCode, Identity, Opened, Payload,
};
use plexus_protocol::client::{CallParams, ConnectParams, Op};
use plexus_protocol::server::{CallResult, ConnectResult};
use plexus_server::ServerBuilder;
use plexus_server::socketio::SocketIoConfig;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// One lifecycle event, as a hook saw it.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Opened {
        conn: String,
        dialect: String,
        transport: String,
        path: String,
        peer: bool,
    },
    Authenticated {
        conn: String,
        user: String,
    },
    Closed {
        conn: String,
        user: Option<String>,
        code: u16,
        reason: String,
    },
}

impl Seen {
    fn conn(&self) -> &str {
        match self {
            Seen::Opened { conn, .. }
            | Seen::Authenticated { conn, .. }
            | Seen::Closed { conn, .. } => conn,
        }
    }

    fn opened(conn: &str, dialect: &str, transport: &str, path: &str) -> Seen {
        Seen::Opened {
            conn: conn.into(),
            dialect: dialect.into(),
            transport: transport.into(),
            path: path.into(),
            peer: true,
        }
    }

    fn authenticated(conn: &str, user: &str) -> Seen {
        Seen::Authenticated {
            conn: conn.into(),
            user: user.into(),
        }
    }

    fn closed(conn: &str, user: Option<&str>, code: u16, reason: &str) -> Seen {
        Seen::Closed {
            conn: conn.into(),
            user: user.map(Into::into),
            code,
            reason: reason.into(),
        }
    }
}

/// Records every lifecycle event of a server, in the order the hooks ran.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn install(&self, builder: ServerBuilder) -> ServerBuilder {
        let (a, b, c) = (self.clone(), self.clone(), self.clone());
        builder
            .on_open(move |e: &Opened| {
                a.push(Seen::Opened {
                    conn: e.conn.to_string(),
                    dialect: e.request.dialect.into(),
                    transport: e.request.transport.into(),
                    path: e.request.path.clone(),
                    peer: e.request.peer.is_some(),
                })
            })
            .on_authenticated(move |e: &Authenticated| {
                b.push(Seen::Authenticated {
                    conn: e.conn.to_string(),
                    user: e.identity.user.to_string(),
                })
            })
            .on_close(move |e: &Closed| {
                c.push(Seen::Closed {
                    conn: e.conn.to_string(),
                    user: e.user.as_deref().map(Into::into),
                    code: e.code.0,
                    reason: e.reason.clone(),
                })
            })
    }

    fn push(&self, seen: Seen) {
        self.0.lock().unwrap().push(seen);
    }

    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    fn of(&self, conn: &str) -> Vec<Seen> {
        self.all()
            .into_iter()
            .filter(|s| s.conn() == conn)
            .collect()
    }

    /// Waits (bounded) until `conn` closed; its events, in the order they fired.
    async fn until_closed(&self, conn: &str) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = self.of(conn);
            if seen.iter().any(|s| matches!(s, Seen::Closed { .. })) {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `closed` for {conn} within the wait bound: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every opened connection has exactly one `closed`, after its other events. Call it once
    /// every session ended (after `RunningServer::shutdown`).
    fn assert_closed_once_each(&self) {
        let all = self.all();
        for opened in all.iter().filter(|s| matches!(s, Seen::Opened { .. })) {
            let events = self.of(opened.conn());
            let closes = events
                .iter()
                .filter(|s| matches!(s, Seen::Closed { .. }))
                .count();
            assert_eq!(closes, 1, "{events:?}");
            assert!(
                matches!(events.first(), Some(Seen::Opened { .. })),
                "{events:?}"
            );
            assert!(
                matches!(events.last(), Some(Seen::Closed { .. })),
                "{events:?}"
            );
        }
        let opens = all
            .iter()
            .filter(|s| matches!(s, Seen::Opened { .. }))
            .count();
        let closes = all
            .iter()
            .filter(|s| matches!(s, Seen::Closed { .. }))
            .count();
        assert_eq!(opens, closes, "{all:?}");
    }
}

/// In-band authentication with tokens `good:<user>`; anything else is refused.
fn auth_server() -> ServerBuilder {
    common::dev()
        .anonymous(false)
        .auth_hook(|req: AuthRequest| async move {
            match req.token.as_deref() {
                Some(t) if t.starts_with("good:") => Ok(Identity::new(&t[5..])),
                _ => Err(Error::new(ErrorCode::AUTH_FAILED, "bad token")),
            }
        })
}

fn connect(token: &str) -> Op {
    Op::Connect(ConnectParams {
        token: Some(token.into()),
        ..Default::default()
    })
}

fn echo() -> Op {
    Op::Call(CallParams::new("echo", &Payload::null()))
}

/// The client's close and the `closed` its connection reported are the same.
async fn assert_reported(seen: &Recorder, client: &mut TestClient, user: Option<&str>) -> u16 {
    let (code, reason) = client.closed().await;
    // Answer the close at once (the server waits for the answer before it cleans up).
    let _ = tokio::time::timeout(WAIT, async {
        while let Some(Ok(_)) = client.ws.next().await {}
    })
    .await;
    let events = seen.until_closed(&client.hello.conn).await;
    assert_eq!(
        events.last(),
        Some(&Seen::closed(&client.hello.conn, user, code, &reason)),
        "{events:?}"
    );
    code
}

both_encodings!(
    a_native_connection_reports_opened_authenticated_and_the_clients_close,
    |enc| async move {
        let seen = Recorder::default();
        let server = common::start(seen.install(auth_server())).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let conn = c.hello.conn.clone();
        let r: ConnectResult = c.request(connect("good:ann")).await.unwrap();
        assert_eq!(r.conn, conn);
        let _: CallResult = c.request(echo()).await.unwrap();
        let bye = CloseFrame {
            code: 1000.into(),
            reason: "bye".into(),
        };
        c.ws.close(Some(bye)).await.unwrap();
        let events = seen.until_closed(&conn).await;
        assert_eq!(
            events,
            vec![
                Seen::opened(&conn, "native", "websocket", "/ws"),
                Seen::authenticated(&conn, "ann"),
                Seen::closed(&conn, Some("ann"), 1000, "bye"),
            ]
        );
        assert!(server.shutdown().await);
        seen.assert_closed_once_each();
    }
);

#[tokio::test]
async fn server_side_closes_report_the_code_and_reason_the_client_got() {
    let seen = Recorder::default();
    let server = common::start(seen.install(common::dev())).await;
    let node = server.node().clone();
    let url = server.ws_url();
    let enc = plexus_protocol::Encoding::Json;

    // A disconnect by the application.
    let mut c = TestClient::connect(&url, enc).await;
    let id = c.hello.conn.parse().unwrap();
    node.disconnect_connection(id, CloseCode::DISCONNECTED, "kicked")
        .await
        .unwrap();
    assert_eq!(assert_reported(&seen, &mut c, None).await, 4505);

    // A reason longer than a close frame holds is reported as the client got it: cut.
    let mut c = TestClient::connect(&url, enc).await;
    let id = c.hello.conn.parse().unwrap();
    node.disconnect_connection(id, CloseCode(4321), &"é".repeat(100))
        .await
        .unwrap();
    assert_eq!(assert_reported(&seen, &mut c, None).await, 4321);
    let Some(Seen::Closed { reason, .. }) = seen.of(&c.hello.conn).pop() else {
        unreachable!()
    };
    assert_eq!(
        reason,
        "é".repeat(61),
        "123 bytes at most, on a character boundary"
    );

    // A code no close frame may carry goes out as 1008, and is reported so.
    let mut c = TestClient::connect(&url, enc).await;
    let id = c.hello.conn.parse().unwrap();
    node.disconnect_connection(id, CloseCode(1006), "reserved")
        .await
        .unwrap();
    assert_eq!(assert_reported(&seen, &mut c, None).await, 1008);

    // A transport that ends without a close frame.
    let c = TestClient::connect(&url, enc).await;
    let conn = c.hello.conn.clone();
    drop(c);
    let events = seen.until_closed(&conn).await;
    assert_eq!(
        events.last(),
        Some(&Seen::closed(&conn, None, 1006, "connection lost"))
    );

    // Node shutdown.
    let mut c = TestClient::connect(&url, enc).await;
    let shutdown = tokio::spawn(async move { server.shutdown().await });
    assert_eq!(assert_reported(&seen, &mut c, None).await, 4000);
    assert!(shutdown.await.unwrap());
    seen.assert_closed_once_each();
}

#[tokio::test]
async fn limit_closes_report_their_codes() {
    let seen = Recorder::default();
    let mut builder = seen.install(common::dev());
    builder.limits_mut().requests_per_second = 1;
    builder.limits_mut().requests_burst = 5;
    builder.limits_mut().outbound_queue_bytes_max = 64 * 1024;
    let server = common::start(builder).await;
    let enc = plexus_protocol::Encoding::Json;

    // Flood: requests far beyond the rate limit, in one message.
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    let calls: Vec<Value> = (1..=20)
        .map(|id| json!({"id": id, "op": "call", "params": {"method": "echo"}}))
        .collect();
    c.send_batch(&calls).await;
    assert_eq!(assert_reported(&seen, &mut c, None).await, 4006);

    // Slow consumer: a subscriber that never reads while its queue fills.
    let mut slow = TestClient::connect(&server.ws_url(), enc).await;
    let _: plexus_protocol::server::SubscribeResult = slow
        .request(Op::Subscribe(
            plexus_protocol::client::SubscribeParams::new("firehose"),
        ))
        .await
        .unwrap();
    let node = server.node().clone();
    let chunk = Payload::binary(vec![b'x'; 16 * 1024]);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut published = 0usize;
    while node
        .stats()
        .slow_consumer_closes
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline);
        node.publish("firehose", chunk.clone()).await.unwrap();
        published += 1;
        if published.is_multiple_of(64) {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(assert_reported(&seen, &mut slow, None).await, 4001);
}

#[tokio::test]
async fn connections_refused_before_auth_report_opened_and_closed_once() {
    let seen = Recorder::default();
    let mut builder = seen.install(auth_server());
    builder.limits_mut().max_connections_per_user = 1;
    let server = common::start(builder).await;
    let url = server.ws_url();
    let enc = plexus_protocol::Encoding::Json;

    // Refused credentials.
    let mut c = TestClient::connect(&url, enc).await;
    let e = c
        .request::<ConnectResult>(connect("bad"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AUTH_FAILED);
    assert_eq!(assert_reported(&seen, &mut c, None).await, 4502);
    assert_eq!(seen.of(&c.hello.conn).len(), 2, "opened and closed only");

    // A user over its connection limit: valid credentials, but never authenticated.
    let mut first = TestClient::connect(&url, enc).await;
    let _: ConnectResult = first.request(connect("good:bob")).await.unwrap();
    let mut second = TestClient::connect(&url, enc).await;
    let e = second
        .request::<ConnectResult>(connect("good:bob"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LIMIT_EXCEEDED);
    assert_eq!(assert_reported(&seen, &mut second, None).await, 4504);
    assert_eq!(
        seen.of(&second.hello.conn).len(),
        2,
        "opened and closed only"
    );

    let shutdown = tokio::spawn(async move { server.shutdown().await });
    assert_eq!(assert_reported(&seen, &mut first, Some("bob")).await, 4000);
    assert!(shutdown.await.unwrap());
    seen.assert_closed_once_each();
}

#[tokio::test]
async fn the_auth_deadline_is_reported_as_4003() {
    let seen = Recorder::default();
    let mut builder = seen.install(auth_server());
    builder.limits_mut().auth_timeout = Duration::from_millis(300);
    let server = common::start(builder).await;
    let mut c = TestClient::connect(&server.ws_url(), plexus_protocol::Encoding::Json).await;
    assert_eq!(assert_reported(&seen, &mut c, None).await, 4003);
    assert_eq!(
        seen.of(&c.hello.conn),
        vec![
            Seen::opened(&c.hello.conn, "native", "websocket", "/ws"),
            Seen::closed(&c.hello.conn, None, 4003, "authentication timed out"),
        ]
    );
}

#[tokio::test]
async fn a_panicking_hook_breaks_nothing() {
    let seen = Recorder::default();
    let builder = auth_server()
        .on_open(|_: &Opened| panic!("opened hook"))
        .on_authenticated(|_: &Authenticated| panic!("authenticated hook"))
        .on_close(|_: &Closed| panic!("closed hook"));
    let server = common::start(seen.install(builder)).await;
    let enc = plexus_protocol::Encoding::Json;
    for _ in 0..2 {
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let _: ConnectResult = c.request(connect("good:ann")).await.unwrap();
        let _: CallResult = c.request(echo()).await.unwrap();
        c.ws.close(None).await.unwrap();
        // The hooks after the panicking ones ran: a close frame without a code is 1005.
        let events = seen.until_closed(&c.hello.conn).await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(
            events[2],
            Seen::closed(&c.hello.conn, Some("ann"), 1005, "")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Socket.IO

type RawWs = common::Ws;

/// A Socket.IO connection over WebSocket only, connected to `/` with `token`: the socket and
/// its connection id.
async fn socketio_ws(addr: std::net::SocketAddr, token: &str) -> (RawWs, String) {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&url))
        .await
        .unwrap()
        .unwrap();
    let open = next_text(&mut ws).await;
    assert!(open.starts_with('0'), "{open}");
    let connect = format!("40{}", json!({ "token": token }));
    ws.send(Message::text(connect)).await.unwrap();
    let connected = next_text(&mut ws).await;
    let sid: Value = serde_json::from_str(connected.strip_prefix("40").unwrap()).unwrap();
    (ws, sid["sid"].as_str().unwrap().to_owned())
}

/// The next text message that is not an Engine.IO ping.
async fn next_text(ws: &mut RawWs) -> String {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.unwrap();
            }
            Some(Ok(Message::Text(t))) => return t.to_string(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn socketio_connections_report_opened_authenticated_and_closed() {
    let seen = Recorder::default();
    let server = common::start(seen.install(auth_server())).await;
    let addr = server.local_addr();

    // The client closes.
    let (mut ws, conn) = socketio_ws(addr, "good:sio").await;
    ws.send(Message::text(r#"421["echo","hi"]"#)).await.unwrap();
    assert_eq!(next_text(&mut ws).await, r#"431[null,"hi"]"#);
    let bye = CloseFrame {
        code: 1000.into(),
        reason: "bye".into(),
    };
    ws.close(Some(bye)).await.unwrap();
    assert_eq!(
        seen.until_closed(&conn).await,
        vec![
            Seen::opened(&conn, "socketio", "websocket", "/socket.io/"),
            Seen::authenticated(&conn, "sio"),
            Seen::closed(&conn, Some("sio"), 1000, "bye"),
        ]
    );

    // The server disconnects: DISCONNECT, then the close frame the hook reports.
    let (mut ws, conn) = socketio_ws(addr, "good:kicked").await;
    server
        .node()
        .disconnect_connection(conn.parse().unwrap(), CloseCode::DISCONNECTED, "bye")
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, "41");
    let close = loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("expected the close frame, got {other:?}"),
        }
    };
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4505, "bye")
    );
    assert_eq!(
        seen.until_closed(&conn).await.last(),
        Some(&Seen::closed(&conn, Some("kicked"), 4505, "bye"))
    );
}

#[tokio::test]
async fn a_socketio_polling_client_that_stops_polling_is_reported_closed() {
    let seen = Recorder::default();
    let builder = auth_server().socketio(SocketIoConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..Default::default()
    });
    let server = common::start(seen.install(builder)).await;
    let addr = server.local_addr();
    let get = |path: String| async move {
        let (status, _, body) = support::http(addr, "GET", &path, &[], "").await;
        assert_eq!(status, 200);
        String::from_utf8(body.to_vec()).unwrap()
    };
    let open = get("/socket.io/?EIO=4&transport=polling".into()).await;
    let handshake: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    let path = format!(
        "/socket.io/?EIO=4&transport=polling&sid={}",
        handshake["sid"].as_str().unwrap()
    );
    let (status, _, _) = support::http(
        addr,
        "POST",
        &path,
        &[("content-type", "text/plain;charset=UTF-8")],
        r#"40{"token":"good:poll"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let connected = get(path.clone()).await;
    let sid: Value = serde_json::from_str(connected.strip_prefix("40").unwrap()).unwrap();
    let conn = sid["sid"].as_str().unwrap().to_owned();
    // The client polls no more and never answers the server's ping.
    assert_eq!(
        seen.until_closed(&conn).await,
        vec![
            Seen::opened(&conn, "socketio", "polling", "/socket.io/"),
            Seen::authenticated(&conn, "poll"),
            Seen::closed(&conn, Some("poll"), 4002, "ping timeout"),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The standalone server's lifecycle notifications

/// A configuration with JWT auth, an open namespace, a `subscribe = "backend"` namespace, and
/// the three notifications on `backend` (`extra` goes into `[backend]`).
fn notifying_config(backend: &str, extra: &str) -> String {
    format!(
        r#"
[client]
anonymous = true
[jwt]
hmac_secret = "{secret}"
[metrics]
enabled = true
[api]
key = "{api_key}"
[socketio]
enabled = true
[backend]
opened_url = "{backend}/opened"
authenticated_url = "{backend}/authenticated"
closed_url = "{backend}/closed"
subscribe_url = "{backend}/subscribe"
{extra}
[[namespaces]]
name = "open"
channels = "open:*"
subscribe = "anyone"
publish = "anyone"
[[namespaces]]
name = "hooked"
channels = "hooked:*"
subscribe = "backend"
"#,
        secret = support::SECRET,
        api_key = support::API_KEY,
    )
}

fn token(user: &str) -> String {
    support::hs(
        json!({"sub": user, "exp": support::now() + 3600}),
        plexus_server::jwt::Algorithm::HS256,
    )
}

/// Waits (bounded) until `check` holds for the backend's requests.
async fn until(
    backend: &support::Backend,
    what: &str,
    check: impl Fn(&[support::Received]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let received = backend.received.lock().unwrap().clone();
        if check(&received) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within the wait bound; received {received:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (bounded) until `/metrics` has `line`.
async fn until_metric(server: &plexus_server::RunningServer, line: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, _, body) = support::http(server.local_addr(), "GET", "/metrics", &[], "").await;
        let metrics = String::from_utf8(body.to_vec()).unwrap();
        if metrics.contains(line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{line} missing from\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn bodies(received: &[support::Received], conn: &str) -> Vec<(String, Value)> {
    received
        .iter()
        .filter(|r| r.body["conn"] == conn)
        .map(|r| (r.path.clone(), r.body.clone()))
        .collect()
}

#[tokio::test]
async fn the_backend_is_notified_of_each_connections_story_in_order() {
    let backend = support::Backend::start(|_| async { support::answer(json!({})) }).await;
    let server = support::serve(&notifying_config(&backend.url(""), "")).await;

    // Native: open, authenticate with a token, close.
    let (mut c, r) = support::connect_token(&server.ws_url(), &token("alice")).await;
    let conn = r.unwrap()["conn"].as_str().unwrap().to_owned();
    c.close(1000, "bye").await;
    until(&backend, "native closed", |r| {
        r.iter()
            .any(|r| r.path == "/closed" && r.body["conn"] == conn.as_str())
    })
    .await;
    let received = backend.received.lock().unwrap().clone();
    let story = bodies(&received, &conn);
    assert_eq!(story.len(), 3, "{story:#?}");
    let (path, opened) = &story[0];
    assert_eq!(path, "/opened");
    assert!(opened["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let mut opened = opened.clone();
    opened.as_object_mut().unwrap().remove("peer");
    assert_eq!(
        opened,
        json!({"event": "opened", "conn": conn, "dialect": "native", "transport": "websocket", "path": "/ws"})
    );
    assert_eq!(
        story[1],
        (
            "/authenticated".to_owned(),
            json!({"event": "authenticated", "conn": conn, "user": "alice", "dialect": "native", "transport": "websocket"})
        )
    );
    assert_eq!(
        story[2],
        (
            "/closed".to_owned(),
            json!({"event": "closed", "conn": conn, "user": "alice", "dialect": "native", "transport": "websocket", "code": 1000, "reason": "bye"})
        )
    );
    let headers = &received
        .iter()
        .find(|r| r.path == "/closed")
        .unwrap()
        .headers;
    assert_eq!(headers["x-plexus-hook"], "closed");
    assert_eq!(headers["content-type"], "application/json");

    // Socket.IO over WebSocket, disconnected by the server API.
    let (mut ws, conn) = socketio_ws(server.local_addr(), &token("bob")).await;
    support::api_ok(&server, "disconnect", json!({"conn": conn})).await;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, ws.next()).await {}
    until(&backend, "socket.io closed", |r| {
        r.iter()
            .any(|r| r.path == "/closed" && r.body["conn"] == conn.as_str())
    })
    .await;
    let story = bodies(&backend.received.lock().unwrap(), &conn);
    let paths: Vec<&str> = story.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["/opened", "/authenticated", "/closed"]);
    assert_eq!(story[0].1["dialect"], "socketio");
    assert_eq!(story[0].1["path"], "/socket.io/");
    assert_eq!(story[1].1["user"], "bob");
    assert_eq!(story[2].1["code"], 4505);
    assert_eq!(story[2].1["user"], "bob");

    for (hook, n) in [("opened", 2), ("authenticated", 2), ("closed", 2)] {
        until_metric(
            &server,
            &format!(r#"plexus_backend_requests_total{{hook="{hook}",outcome="ok"}} {n}"#),
        )
        .await;
    }
}

#[tokio::test]
async fn a_backend_that_is_down_delays_and_fails_no_connection() {
    let server = support::serve(&notifying_config(
        support::dead_url().trim_end_matches("/hook"),
        "",
    ))
    .await;
    let (mut c, r) = support::connect_token(&server.ws_url(), &token("alice")).await;
    assert_eq!(r.unwrap()["user"], "alice");
    c.request("subscribe", json!({"channel": "open:a"}))
        .await
        .unwrap();
    c.request("publish", json!({"channel": "open:a", "data": 1}))
        .await
        .unwrap();
    assert_eq!(c.push("pub").await["data"], 1);
    c.close(1000, "bye").await;
    for hook in ["opened", "authenticated", "closed"] {
        until_metric(
            &server,
            &format!(r#"plexus_backend_requests_total{{hook="{hook}",outcome="unavailable"}} 1"#),
        )
        .await;
    }
}

#[tokio::test]
async fn a_backend_that_does_not_answer_delays_no_connection() {
    // The backend holds every notification until the test lets it answer.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = gate.clone();
    let backend = support::Backend::start(move |r: support::Received| {
        let held = held.clone();
        async move {
            if r.path != "/subscribe" {
                let _ = held.acquire().await.unwrap();
            }
            support::answer(json!({"result": {}}))
        }
    })
    .await;
    let server = support::serve(&notifying_config(&backend.url(""), "")).await;
    let (mut c, r) = support::connect_token(&server.ws_url(), &token("alice")).await;
    let conn = r.unwrap()["conn"].as_str().unwrap().to_owned();
    c.request("subscribe", json!({"channel": "open:a"}))
        .await
        .unwrap();
    // The connection was served while its `opened` notification waits for an answer, and its
    // `authenticated` one waits behind it (a connection's notifications go in order).
    until(&backend, "opened received", |r| {
        r.iter().any(|r| r.path == "/opened")
    })
    .await;
    assert!(backend.requests("/authenticated").is_empty());
    c.close(1000, "bye").await;
    gate.add_permits(10);
    until(&backend, "every notification", |r| {
        r.iter()
            .any(|r| r.path == "/closed" && r.body["conn"] == conn.as_str())
    })
    .await;
    let paths: Vec<String> = bodies(&backend.received.lock().unwrap(), &conn)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(paths, ["/opened", "/authenticated", "/closed"]);
}

#[tokio::test]
async fn notifications_beyond_max_in_flight_are_dropped_and_counted() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = gate.clone();
    let backend = support::Backend::start(move |r: support::Received| {
        let held = held.clone();
        async move {
            if r.path == "/opened" {
                let _ = held.acquire().await.unwrap();
            }
            support::answer(json!({"result": {}}))
        }
    })
    .await;
    let server = support::serve(&notifying_config(&backend.url(""), "max_in_flight = 1")).await;
    // The first connection's `opened` takes the only notification slot and hangs.
    let mut a = support::Client::connect(&server.ws_url()).await;
    until(&backend, "the first opened", |r| {
        r.iter().any(|r| r.path == "/opened")
    })
    .await;
    // The second connection's `opened` finds no slot: dropped and counted, not queued.
    let mut b = support::Client::connect(&server.ws_url()).await;
    until_metric(
        &server,
        r#"plexus_backend_requests_total{hook="opened",outcome="unavailable"} 1"#,
    )
    .await;
    // Both connections are served, and the request hooks keep their own slot.
    b.request("subscribe", json!({"channel": "hooked:x"}))
        .await
        .unwrap();
    a.request("subscribe", json!({"channel": "open:a"}))
        .await
        .unwrap();
    assert_eq!(
        backend.requests("/opened").len(),
        1,
        "the dropped one never left"
    );
    gate.add_permits(10);
    until_metric(
        &server,
        r#"plexus_backend_requests_total{hook="opened",outcome="ok"} 1"#,
    )
    .await;
}

#[tokio::test]
async fn shutdown_waits_for_the_last_closed_notifications() {
    // The backend holds `closed` until the test lets it answer.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = gate.clone();
    let backend = support::Backend::start(move |r: support::Received| {
        let held = held.clone();
        async move {
            if r.path == "/closed" {
                let _ = held.acquire().await.unwrap();
            }
            support::answer(json!({}))
        }
    })
    .await;
    let server = support::serve(&notifying_config(&backend.url(""), "")).await;
    let (mut c, r) = support::connect_token(&server.ws_url(), &token("alice")).await;
    let conn = r.unwrap()["conn"].as_str().unwrap().to_owned();
    let closing = tokio::spawn(async move { c.closed().await });
    let shutdown = tokio::spawn(async move { server.shutdown().await });
    assert_eq!(closing.await.unwrap().0, 4000);
    until(&backend, "closed received", |r| {
        r.iter().any(|r| r.path == "/closed")
    })
    .await;
    // Time for a shutdown that would not wait to finish (not a bound on anything).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown waits while the last `closed` notification is unanswered"
    );
    gate.add_permits(1);
    assert!(shutdown.await.unwrap());
    let closed = backend.requests("/closed");
    assert_eq!(closed.len(), 1, "{closed:#?}");
    assert_eq!(closed[0].body["conn"], conn.as_str());
    assert_eq!(closed[0].body["code"], 4000);
}

#[test]
fn notification_urls_are_checked_like_the_other_hooks() {
    let toml = r#"
[backend]
opened_url = "ws://example.com/opened"
closed_url = "not a url"
close_url = "http://127.0.0.1:1/closed"
"#;
    let Err(e) = support::load_with(toml, &[], &[]) else {
        panic!("accepted")
    };
    let problems: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
    for expected in [
        "`backend.opened_url`: expected an http:// or https:// URL",
        "`backend.closed_url`:",
        "`backend.close_url`: unknown key `close_url` (did you mean `closed_url`?)",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected} missing from {problems:#?}"
        );
    }
    let loaded = support::load_with(
        "[backend]\nauthenticated_url = \"http://127.0.0.1:1/auth\"\n",
        &[("PLEXUS_BACKEND_CLOSED_URL", "http://127.0.0.1:1/closed")],
        &[],
    )
    .unwrap();
    assert!(
        loaded
            .summary()
            .contains(&"lifecycle notifications: authenticated, closed".to_owned()),
        "{:?}",
        loaded.summary()
    );
}
