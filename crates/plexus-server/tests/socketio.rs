//! The Socket.IO dialect over real HTTP and WebSocket connections: engine.io's HTTP errors, a
//! session's life on polling and WebSocket, a server-side disconnect, and every limit. The cases
//! of the official Engine.IO v4 and Socket.IO v5 protocol suites are in `socketio_suite.rs`; the
//! real `socket.io-client` 2 and 4 run against `plexus serve` in `clients/socketio-tests`.

mod common;

use common::socketio::{sid_of, suite_config};
use common::*;
use futures_util::{SinkExt, StreamExt};
use plexus_server::socketio::SocketIoConfig;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The server setup the official suites expect (pingInterval 300 ms, pingTimeout 200 ms…).
fn suite_server() -> plexus_server::ServerBuilder {
    dev().socketio(suite_config())
}

#[tokio::test]
async fn handshake_and_http_errors_match_engine_io() {
    let server = start(suite_server()).await;
    let addr = server.local_addr();
    let open = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", None).await;
    assert_eq!(open.status, 200);
    let json: serde_json::Value =
        serde_json::from_str(open.body.strip_prefix('0').expect("an open packet")).unwrap();
    assert_eq!(json["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(json["pingInterval"], 300);
    assert_eq!(json["pingTimeout"], 200);
    assert_eq!(json["maxPayload"], 1_000_000);
    // Revision 3 has no maxPayload in its handshake.
    let open3 = http(addr, "GET", "/socket.io/?EIO=3&transport=polling", None).await;
    assert!(!open3.body.contains("maxPayload"), "{}", open3.body);
    let cases = [
        (
            "GET",
            "/socket.io/?EIO=9&transport=polling",
            5,
            "Unsupported protocol version",
        ),
        (
            "GET",
            "/socket.io/?EIO=4&transport=carrier-pigeon",
            0,
            "Transport unknown",
        ),
        (
            "GET",
            "/socket.io/?EIO=4&transport=polling&sid=nope",
            1,
            "Session ID unknown",
        ),
        (
            "POST",
            "/socket.io/?EIO=4&transport=polling",
            2,
            "Bad handshake method",
        ),
    ];
    for (method, path, code, message) in cases {
        let reply = http(addr, method, path, None).await;
        assert_eq!(reply.status, 400, "{path}");
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code": code, "message": message}),
            "{path}"
        );
    }
}

#[tokio::test]
async fn polling_session_pings_connects_and_times_out() {
    let server = start(suite_server()).await;
    let addr = server.local_addr();
    let sid = sid_of(
        &http(addr, "GET", "/socket.io/?EIO=4&transport=polling", None)
            .await
            .body,
    );
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    // Socket.IO CONNECT to `/`, answered with the socket id.
    let posted = http(addr, "POST", &path, Some("40")).await;
    assert_eq!((posted.status, posted.body.as_str()), (200, "ok"));
    let connected = http(addr, "GET", &path, None).await.body;
    assert!(connected.starts_with("40{\"sid\":"), "{connected}");
    // An unknown namespace is refused.
    http(addr, "POST", &path, Some("40/nowhere,")).await;
    let refused = http(addr, "GET", &path, None).await.body;
    assert_eq!(refused, r#"44/nowhere,{"message":"Invalid namespace"}"#);
    // The server pings within pingInterval; a pong keeps the session.
    let ping = http(addr, "GET", &path, None).await.body;
    assert_eq!(ping, "2");
    http(addr, "POST", &path, Some("3")).await;
    // No pong: the session is closed within pingInterval + pingTimeout.
    assert_eq!(http(addr, "GET", &path, None).await.body, "2");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = http(addr, "GET", &path, None).await;
    assert!(
        after.status == 400 || after.body == "1",
        "closed after a missed pong: {} {}",
        after.status,
        after.body
    );
}

#[tokio::test]
async fn websocket_session_and_upgrade_from_polling() {
    let server = start(suite_server()).await;
    let addr = server.local_addr();
    // WebSocket only: the open packet comes first, then Socket.IO.
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let open = ws.next().await.unwrap().unwrap().into_text().unwrap();
    let json: serde_json::Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    assert_eq!(json["upgrades"], serde_json::json!([]));
    ws.send(Message::text("40/custom,")).await.unwrap();
    let connected = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert!(connected.starts_with("40/custom,{\"sid\":"), "{connected}");
    ws.send(Message::text(r#"42/custom,7["echo","hi"]"#))
        .await
        .unwrap();
    let ack = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert_eq!(ack, r#"43/custom,7[null,"hi"]"#);
    // A packet that is not Socket.IO closes the connection.
    ws.send(Message::text("4garbage")).await.unwrap();
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .unwrap();
    assert!(closed);

    // Polling, then upgrade: probe, upgrade, the pending GET ends with a noop.
    let sid = sid_of(
        &http(addr, "GET", "/socket.io/?EIO=4&transport=polling", None)
            .await
            .body,
    );
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    http(addr, "POST", &path, Some("40")).await;
    assert!(http(addr, "GET", &path, None).await.body.starts_with("40"));
    let pending = tokio::spawn(async move { http(addr, "GET", &path, None).await.body });
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    let probe = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert_eq!(probe, "3probe");
    ws.send(Message::text("5")).await.unwrap();
    assert_eq!(pending.await.unwrap(), "6");
    ws.send(Message::text(r#"42["echo",{"a":1}]"#))
        .await
        .unwrap();
    ws.send(Message::text(r#"421["echo",{"a":1}]"#))
        .await
        .unwrap();
    let ack = loop {
        let text = ws.next().await.unwrap().unwrap().into_text().unwrap();
        if text.starts_with("43") {
            break text;
        }
    };
    assert_eq!(ack, r#"431[null,{"a":1}]"#);
}

#[tokio::test]
async fn a_server_side_disconnect_is_a_socket_io_disconnect() {
    let server = start(suite_server()).await;
    let addr = server.local_addr();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let _open = ws.next().await.unwrap().unwrap();
    ws.send(Message::text("40")).await.unwrap();
    let connected = ws.next().await.unwrap().unwrap().into_text().unwrap();
    let sid: serde_json::Value =
        serde_json::from_str(connected.strip_prefix("40").unwrap()).unwrap();
    let conn = sid["sid"].as_str().unwrap().parse().unwrap();
    server
        .node()
        .disconnect_connection(conn, plexus_core::CloseCode::DISCONNECTED, "bye")
        .await
        .unwrap();
    // DISCONNECT of `/` ("io server disconnect": the client does not reconnect), then the close.
    let next = loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) if t.as_str() != "2" => break t.to_string(),
            Some(Ok(Message::Text(_))) => continue,
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
    };
    assert_eq!(next, "41");
}

#[tokio::test]
async fn every_socket_io_limit_is_hit() {
    let server = start(dev().socketio(SocketIoConfig {
        max_polling_sessions: 1,
        max_payload_bytes: 64,
        max_namespaces: 1,
        max_buffered_packets: 2,
        namespaces: vec!["/a".into(), "/b".into()],
        ..Default::default()
    }))
    .await;
    let addr = server.local_addr();
    let sid = sid_of(
        &http(addr, "GET", "/socket.io/?EIO=4&transport=polling", None)
            .await
            .body,
    );
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    // Polling sessions per node: the second handshake is refused.
    let second = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", None).await;
    assert_eq!(second.status, 503);
    // Namespaces per connection: the second is refused with 106.
    http(addr, "POST", &path, Some("40/a,")).await;
    assert!(
        http(addr, "GET", &path, None)
            .await
            .body
            .starts_with("40/a,")
    );
    http(addr, "POST", &path, Some("40/b,")).await;
    let refused = http(addr, "GET", &path, None).await.body;
    assert!(
        refused.starts_with("44/b,") && refused.contains("\"code\":106"),
        "{refused}"
    );
    // Packets buffered for a client that does not poll: three events, two places; the session
    // is closed rather than grown.
    http(
        addr,
        "POST",
        &path,
        Some("42/a,[\"echo\",1]\u{1e}42/a,[\"echo\",2]\u{1e}42/a,[\"echo\",3]"),
    )
    .await;
    let _ = http(addr, "POST", &path, Some("42/a,1[\"echo\",4]")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = http(addr, "GET", &path, None).await;
    assert!(
        after.status == 400 || after.body.ends_with('1'),
        "the session is closed: {} {}",
        after.status,
        after.body
    );
    // maxPayload: a larger POST body is refused with 413.
    let sid = sid_of(
        &http(addr, "GET", "/socket.io/?EIO=4&transport=polling", None)
            .await
            .body,
    );
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let big = format!("42[\"echo\",\"{}\"]", "x".repeat(100));
    assert_eq!(http(addr, "POST", &path, Some(&big)).await.status, 413);
}

/// The packets of an Engine.IO 3 text payload (`<length>:<packet>…`; ASCII here, so lengths are
/// bytes).
fn v3_packets(mut body: &str) -> Vec<String> {
    let mut packets = Vec::new();
    while let Some((len, rest)) = body.split_once(':') {
        let len: usize = len.parse().expect("a length");
        packets.push(rest[..len].to_owned());
        body = &rest[len..];
    }
    packets
}

/// Engine.IO 3 clients ping and the server answers with the ping's data (v3 §Encoding > ping);
/// an Engine.IO 4 client's ping is answered too (engine.io would close: `docs/socketio.md`).
#[tokio::test]
async fn client_pings_are_answered_with_their_data() {
    let server = start(suite_server()).await;
    let addr = server.local_addr();
    // Polling (the v3 suite's "heartbeat > HTTP long-polling > sends ping/pong packets").
    let open = http(addr, "GET", "/socket.io/?EIO=3&transport=polling", None).await;
    let sid = sid_of(&v3_packets(&open.body)[0]);
    let path = format!("/socket.io/?EIO=3&transport=polling&sid={sid}");
    let mut seen = Vec::new();
    for ping in ["1:2", "1:2", "6:2hello"] {
        let posted = http(addr, "POST", &path, Some(ping)).await;
        assert_eq!((posted.status, posted.body.as_str()), (200, "ok"));
        // Protocol 4 connects `/` at once: its CONNECT may come with the first pong.
        let packets = v3_packets(&http(addr, "GET", &path, None).await.body);
        seen.extend(packets.into_iter().filter(|p| p != "40"));
    }
    assert_eq!(seen, ["3", "3", "3hello"]);
    // WebSocket.
    let (mut ws, _) = common::socketio::SioWs::open(addr, "EIO=3&transport=websocket").await;
    assert_eq!(ws.text().await, "40");
    for (ping, pong) in [("2", "3"), ("2probe", "3probe")] {
        ws.send(ping).await;
        assert_eq!(ws.text().await, pong);
    }
    let (mut ws, _) = common::socketio::SioWs::open_v4(addr).await;
    ws.send("2").await;
    assert_eq!(ws.text().await, "3");
}
