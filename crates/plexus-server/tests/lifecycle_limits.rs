//! Authentication, heartbeat, limits and shutdown over real WebSocket connections.

mod common;

use common::*;
use plexus_core::auth::UpgradeDecision;
use plexus_core::commands::Command;
use plexus_core::{
    AuthRequest, CloseCode, CommandContext, Error, ErrorCode, Identity, Payload, UpgradeRequest,
};
use plexus_protocol::client::{CallParams, ConnectParams, Op, PublishParams, SubscribeParams};
use plexus_protocol::server::{
    AuthState, CallResult, ConnectResult, PublishResult, Push, SubscribeResult,
};
use plexus_protocol::{DataField, Encoding};
use std::sync::Arc;
use std::time::Duration;

fn sub(channel: &str) -> Op {
    Op::Subscribe(SubscribeParams::new(channel))
}

fn echo() -> Op {
    Op::Call(CallParams::new("echo", &Payload::null()))
}

fn connect(token: &str) -> Op {
    Op::Connect(ConnectParams {
        token: Some(token.into()),
        version: Some(1),
        ..Default::default()
    })
}

/// Tokens are `good:<user>`; `slow` sleeps past any timeout; `expired` is expired.
fn auth_server() -> plexus_server::ServerBuilder {
    let mut builder = dev()
        .anonymous(false)
        .auth_hook(|req: AuthRequest| async move {
            match req.token.as_deref() {
                Some("slow") => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Err(Error::new(ErrorCode::AUTH_FAILED, "unreachable"))
                }
                Some("expired") => Err(Error::new(ErrorCode::TOKEN_EXPIRED, "token expired")),
                Some(t) if t.starts_with("good:") => Ok(Identity::new(&t[5..])
                    .with_info(Payload::json(&serde_json::json!({"name": "N"})).unwrap())),
                _ => Err(Error::new(ErrorCode::AUTH_FAILED, "bad token")),
            }
        });
    builder.limits_mut().auth_timeout = Duration::from_millis(300);
    builder
}

both_encodings!(in_band_auth_returns_the_user_and_info, |enc| async move {
    let server = start(auth_server()).await;
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    assert_eq!(c.hello.auth, AuthState::Required);
    assert_eq!(c.hello.auth_timeout_ms, 300);
    let e = c.request::<SubscribeResult>(sub("x")).await.unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::UNAUTHORIZED,
        "requests before connect are refused"
    );
    let r: ConnectResult = c.request(connect("good:ann")).await.unwrap();
    assert_eq!(r.user.as_deref(), Some("ann"));
    assert_eq!(r.conn, c.hello.conn);
    let info: serde_json::Value = serde_json::from_str(r.info.unwrap().0.get()).unwrap();
    assert_eq!(info, serde_json::json!({"name": "N"}));
    let _: SubscribeResult = c.request(sub("x")).await.unwrap();
    // Past the auth timeout, an authenticated connection stays open.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _: CallResult = c.request(echo()).await.unwrap();
    let e = c
        .request::<ConnectResult>(connect("good:ann"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ALREADY_AUTHENTICATED);
});

both_encodings!(
    bad_and_expired_tokens_close_with_their_codes,
    |enc| async move {
        let server = start(auth_server()).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let e = c
            .request::<ConnectResult>(connect("forged"))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AUTH_FAILED);
        assert_eq!(c.closed().await.0, CloseCode::AUTH_FAILED.0);
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let e = c
            .request::<ConnectResult>(connect("expired"))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::TOKEN_EXPIRED);
        assert_eq!(c.closed().await.0, CloseCode::TOKEN_EXPIRED.0);
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let e = c
            .request::<ConnectResult>(Op::Connect(ConnectParams::default()))
            .await
            .unwrap_err();
        assert_eq!(
            e.code,
            ErrorCode::AUTH_FAILED,
            "no credentials where anonymous use is off"
        );
        assert_eq!(c.closed().await.0, CloseCode::AUTH_FAILED.0);
    }
);

both_encodings!(
    auth_timeout_is_enforced_idle_and_with_a_slow_hook,
    |enc| async move {
        let server = start(auth_server()).await;
        let mut idle = TestClient::connect(&server.ws_url(), enc).await;
        assert_eq!(idle.closed().await.0, CloseCode::AUTH_TIMEOUT.0);
        let mut slow = TestClient::connect(&server.ws_url(), enc).await;
        let e = slow
            .request::<ConnectResult>(connect("slow"))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::TIMEOUT);
        assert_eq!(slow.closed().await.0, CloseCode::AUTH_TIMEOUT.0);
    }
);

both_encodings!(credentials_reach_the_hook_as_json, |enc| async move {
    let builder = dev()
        .anonymous(false)
        .auth_hook(|req: AuthRequest| async move {
            let creds: serde_json::Value = req.credentials.unwrap().to_value().unwrap();
            if creds == serde_json::json!({"user": "bob", "password": "pw"}) {
                Ok(Identity::new("bob"))
            } else {
                Err(Error::new(ErrorCode::AUTH_FAILED, "wrong password"))
            }
        });
    let server = start(builder).await;
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    let creds = Payload::json(&serde_json::json!({"user": "bob", "password": "pw"})).unwrap();
    let op = Op::Connect(ConnectParams {
        credentials: Some(DataField(match creds {
            Payload::Json(raw) => raw,
            _ => unreachable!(),
        })),
        ..Default::default()
    });
    let r: ConnectResult = c.request(op).await.unwrap();
    assert_eq!(r.user.as_deref(), Some("bob"));
});

fn upgrade_server() -> plexus_server::ServerBuilder {
    dev()
        .anonymous(false)
        .upgrade_hook(|req: Arc<UpgradeRequest>| async move {
            let token = req
                .query_param("token")
                .map(str::to_owned)
                .or_else(|| req.cookie("session").map(str::to_owned));
            assert!(req.peer.is_some_and(|p| p.ip().is_loopback()));
            assert_eq!(req.path, "/ws");
            match token.as_deref() {
                Some("alice") => UpgradeDecision::Accept(Some(Identity::new("alice"))),
                Some("anon") => UpgradeDecision::Accept(None),
                _ => UpgradeDecision::Refuse {
                    status: 401,
                    reason: "who are you?".into(),
                },
            }
        })
}

both_encodings!(
    upgrade_hook_accepts_with_a_user_or_refuses_with_a_status,
    |enc| async move {
        let server = start(upgrade_server()).await;
        let url = format!("{}?token=alice", server.ws_url());
        let c = TestClient::connect(&url, enc).await;
        assert_eq!(c.hello.auth, AuthState::Done);
        assert_eq!(c.hello.user.as_deref(), Some("alice"));
        let err = try_connect_raw(&server.ws_url(), &[enc.subprotocol()])
            .await
            .unwrap_err();
        match err {
            tokio_tungstenite::tungstenite::Error::Http(resp) => {
                assert_eq!(resp.status().as_u16(), 401)
            }
            other => panic!("expected an HTTP refusal, got {other:?}"),
        }
        // Accepted without a user: in-band auth is then required (no hook here, so it fails).
        let mut c = TestClient::connect(&format!("{}?token=anon", server.ws_url()), enc).await;
        assert_eq!(c.hello.auth, AuthState::Required);
        let _ = c.request::<ConnectResult>(connect("x")).await.unwrap_err();
        assert_eq!(c.closed().await.0, CloseCode::AUTH_FAILED.0);
    }
);

#[tokio::test]
async fn upgrade_hook_sees_cookies() {
    let server = start(upgrade_server()).await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = server.ws_url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Cookie", "theme=dark; session=alice".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let c = TestClient::from_ws(ws, Encoding::Json).await;
    assert_eq!(c.hello.user.as_deref(), Some("alice"));
}

#[tokio::test]
async fn other_protocol_versions_are_closed_with_4501() {
    let server = start(dev()).await;
    let mut ws = connect_raw(&server.ws_url(), &["plexus.v2.json"]).await;
    use futures_util::StreamExt;
    let message = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let tokio_tungstenite::tungstenite::Message::Close(Some(frame)) = message else {
        panic!("{message:?}")
    };
    assert_eq!(u16::from(frame.code), CloseCode::UNSUPPORTED_VERSION.0);
    // The same through `connect`'s version field.
    let mut c = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    let op = Op::Connect(ConnectParams {
        version: Some(2),
        ..Default::default()
    });
    assert_eq!(
        c.request::<ConnectResult>(op).await.unwrap_err().code,
        ErrorCode::BAD_REQUEST
    );
    assert_eq!(c.closed().await.0, CloseCode::UNSUPPORTED_VERSION.0);
    // A client that offers no subprotocol speaks JSON.
    let ws = connect_raw(&server.ws_url(), &[]).await;
    let c = TestClient::from_ws(ws, Encoding::Json).await;
    assert_eq!(c.hello.version, 1);
}

both_encodings!(
    heartbeat_measures_latency_and_closes_silent_clients,
    |enc| async move {
        let mut builder = dev();
        builder.limits_mut().ping_interval = Duration::from_millis(100);
        builder.limits_mut().max_missed_pongs = 2;
        let server = start(builder).await;
        let mut live = TestClient::connect(&server.ws_url(), enc).await;
        let live_id = live.hello.conn.parse().unwrap();
        // The answering client keeps reading (and so answering pings) in its own task.
        let live = tokio::spawn(async move {
            assert!(live.silent_for(Duration::from_millis(600)).await);
            let _: CallResult = live.request(echo()).await.unwrap();
            live.last_rtt_ms
        });
        let mut silent = TestClient::connect(&server.ws_url(), enc).await;
        silent.auto_pong = false;
        assert_eq!(silent.hello.ping_interval_ms, 100);
        let Push::Ping = silent.next_push().await else {
            panic!("expected a ping")
        };
        assert_eq!(silent.closed().await.0, CloseCode::HEARTBEAT_TIMEOUT.0);
        // The answering client is still served, its latency was pushed and is readable server-side.
        let rtt = live.await.unwrap();
        assert!(rtt.is_some_and(|ms| ms > 0.0));
        assert!(server.node().latency(live_id).is_some());
    }
);

both_encodings!(subscription_and_channel_name_limits, |enc| async move {
    let mut builder = dev();
    builder.limits_mut().max_subscriptions = 2;
    builder.limits_mut().max_channel_bytes = 8;
    let server = start(builder).await;
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    assert_eq!(c.hello.limits.max_subscriptions, 2);
    let _: SubscribeResult = c.request(sub("a")).await.unwrap();
    let _: SubscribeResult = c.request(sub("b")).await.unwrap();
    assert_eq!(
        c.request::<SubscribeResult>(sub("c"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::LIMIT_EXCEEDED
    );
    assert_eq!(
        c.request::<SubscribeResult>(sub("123456789"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::BAD_CHANNEL
    );
    assert_eq!(
        c.request::<SubscribeResult>(sub(""))
            .await
            .unwrap_err()
            .code,
        ErrorCode::BAD_CHANNEL
    );
    let op = Op::Publish(PublishParams::new("123456789", &Payload::null()));
    assert_eq!(
        c.request::<PublishResult>(op).await.unwrap_err().code,
        ErrorCode::BAD_CHANNEL
    );
});

both_encodings!(
    slow_consumer_is_closed_and_others_are_served,
    |enc| async move {
        let mut builder = dev();
        builder.limits_mut().outbound_queue_bytes_max = 64 * 1024;
        let server = start(builder).await;
        let node = server.node().clone();
        let mut fast = TestClient::connect(&server.ws_url(), enc).await;
        // The slow client subscribes, then never reads again.
        let mut slow = TestClient::connect(&server.ws_url(), enc).await;
        let _: SubscribeResult = slow.request(sub("firehose")).await.unwrap();
        let chunk = Payload::binary(vec![b'x'; 16 * 1024]);
        let mut published = 0usize;
        let deadline = tokio::time::Instant::now() + WAIT;
        while node
            .stats()
            .slow_consumer_closes
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the queue bound was never hit ({published} published)"
            );
            node.publish("firehose", chunk.clone()).await.unwrap();
            published += 1;
            if published.is_multiple_of(64) {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(slow.closed().await.0, CloseCode::SLOW_CONSUMER.0);
        let _: CallResult = fast.request(echo()).await.unwrap();
    }
);

both_encodings!(connections_per_user_are_capped, |enc| async move {
    let mut builder = upgrade_server();
    builder.limits_mut().max_connections_per_user = 2;
    let server = start(builder).await;
    let url = format!("{}?token=alice", server.ws_url());
    let _a = TestClient::connect(&url, enc).await;
    let _b = TestClient::connect(&url, enc).await;
    let mut ws = connect_raw(&url, &[enc.subprotocol()]).await;
    use futures_util::StreamExt;
    let message = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let tokio_tungstenite::tungstenite::Message::Close(Some(frame)) = message else {
        panic!("{message:?}")
    };
    assert_eq!(u16::from(frame.code), CloseCode::CONNECTION_LIMIT.0);
});

both_encodings!(
    request_rate_is_limited_then_floods_close,
    |enc| async move {
        let mut builder = dev();
        builder.limits_mut().requests_per_second = 1;
        builder.limits_mut().requests_burst = 5;
        let server = start(builder).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let ids: Vec<u64> = {
            let mut ids = Vec::new();
            for _ in 0..6 {
                ids.push(c.send(echo()).await);
            }
            ids
        };
        for id in &ids[..5] {
            let _: CallResult = c.reply(*id).await.unwrap();
        }
        assert_eq!(
            c.reply::<CallResult>(ids[5]).await.unwrap_err().code,
            ErrorCode::TOO_MANY_REQUESTS
        );
        for _ in 0..5 {
            c.send(echo()).await;
        }
        assert_eq!(c.closed().await.0, CloseCode::FLOOD.0);
    }
);

fn slow_server() -> plexus_server::ServerBuilder {
    dev().command_with(
        "slow",
        Command::new(|_ctx: CommandContext| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(Payload::null())
        }),
    )
}

fn call_frame(id: u64, method: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "op": "call", "params": {"method": method}})
}

both_encodings!(pending_requests_are_bounded, |enc| async move {
    let mut builder = slow_server();
    builder.limits_mut().max_pending_requests = 3;
    let server = start(builder).await;
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    let slow = c
        .send(Op::Call(CallParams::new("slow", &Payload::null())))
        .await;
    let queued: Vec<u64> = vec![c.send(echo()).await, c.send(echo()).await];
    let refused = c.send(echo()).await;
    let _: CallResult = c.reply(slow).await.unwrap();
    for id in queued {
        let _: CallResult = c.reply(id).await.unwrap();
    }
    assert_eq!(
        c.reply::<CallResult>(refused).await.unwrap_err().code,
        ErrorCode::TOO_MANY_PENDING
    );
});

both_encodings!(pending_limit_refusals_come_in_order, |enc| async move {
    let mut builder = slow_server();
    builder.limits_mut().max_pending_requests = 4;
    let server = start(builder).await;
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    // Every reply in the order sent: 1–4 accepted, 5–8 refused with 116 in their turn.
    let batch = |first: u64| -> Vec<serde_json::Value> {
        (first..first + 8)
            .map(|id| call_frame(id, if id == first { "slow" } else { "echo" }))
            .collect()
    };
    c.send_batch(&batch(1)).await;
    assert_eq!(
        outcomes(&mut c, 8).await.0,
        (1..=8).map(|id| (id, id > 4)).collect::<Vec<_>>()
    );
    // Refusals piling up beyond `max_pending_requests` behind a running call: the client
    // ignores the limit. What was accepted or refused is answered, then 4006.
    let mut frames = batch(9);
    frames.extend((17..=30).map(|id| call_frame(id, "echo")));
    c.send_batch(&frames).await;
    let (replies, close) = outcomes(&mut c, usize::MAX).await;
    assert_eq!(
        replies,
        (9..=16).map(|id| (id, id > 12)).collect::<Vec<_>>()
    );
    assert_eq!(close, Some(CloseCode::FLOOD.0));
});

/// The next `n` replies (id, refused) in order, or those before the close and its code.
async fn outcomes(c: &mut TestClient, n: usize) -> (Vec<(u64, bool)>, Option<u16>) {
    let mut order = Vec::new();
    while order.len() < n {
        match c.next_frame().await {
            Frame::Reply { id, bytes } => {
                let refused = plexus_protocol::server::decode_reply::<CallResult>(c.enc, &bytes)
                    .unwrap()
                    .is_err();
                order.push((id, refused));
            }
            Frame::Closed { code, .. } => return (order, Some(code)),
            Frame::Push(_) => {}
        }
    }
    (order, None)
}

both_encodings!(
    a_flood_close_answers_every_accepted_request_first,
    |enc| async move {
        let mut builder = slow_server();
        builder.limits_mut().requests_per_second = 1;
        builder.limits_mut().requests_burst = 3;
        let server = start(builder).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        // 3 accepted (a slow call first), then refused until 3 refusals in a row close with
        // 4006: the accepted ones are answered before the close, the refusals in order.
        let frames: Vec<_> = (1..=8)
            .map(|id| call_frame(id, if id == 1 { "slow" } else { "echo" }))
            .collect();
        c.send_batch(&frames).await;
        let mut replies = Vec::new();
        let close = loop {
            match c.next_frame().await {
                Frame::Reply { id, bytes } => {
                    let code = plexus_protocol::server::decode_reply::<CallResult>(enc, &bytes)
                        .unwrap()
                        .err()
                        .map(|e| e.code.0);
                    replies.push((id, code));
                }
                Frame::Closed { code, .. } => break code,
                Frame::Push(_) => {}
            }
        };
        assert_eq!(close, CloseCode::FLOOD.0);
        assert_eq!(
            replies,
            vec![
                (1, None),
                (2, None),
                (3, None),
                (4, Some(ErrorCode::TOO_MANY_REQUESTS.0)),
                (5, Some(ErrorCode::TOO_MANY_REQUESTS.0)),
                (6, Some(ErrorCode::TOO_MANY_REQUESTS.0)),
            ]
        );
    }
);

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
    let server = start(dev()).await;
    let mut ws = connect_raw(&server.ws_url(), &["plexus.v1.json"]).await;
    let _hello = ws.next().await;
    ws.send(Message::Close(Some(CloseFrame {
        code: WsCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let answer = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return Ok(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the server dropped the connection".into()),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        answer,
        Ok(Some(1000)),
        "RFC 6455 §5.5.1: the close is echoed"
    );
}

both_encodings!(shutdown_drains_and_closes_with_4000, |enc| async move {
    let server = start(dev()).await;
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    let _: SubscribeResult = c.request(sub("news")).await.unwrap();
    server
        .node()
        .publish("news", Payload::json(&"last words").unwrap())
        .await
        .unwrap();
    let url = server.ws_url();
    assert!(
        server.shutdown().await,
        "every session ended within the timeout"
    );
    let Push::Pub(p) = c.next_push().await else {
        panic!("queued frames are written before the close")
    };
    assert_eq!(p.offset, 1);
    assert_eq!(c.closed().await.0, CloseCode::SHUTDOWN.0);
    assert!(
        try_connect_raw(&url, &[]).await.is_err(),
        "no longer accepting"
    );
});

both_encodings!(users_are_reached_on_every_connection, |enc| async move {
    let server = start(upgrade_server()).await;
    let node = server.node().clone();
    let url = |who: &str| format!("{}?token={who}", server.ws_url());
    let mut a1 = TestClient::connect(&url("alice"), enc).await;
    let mut a2 = TestClient::connect(&url("alice"), enc).await;
    let a2_id: plexus_core::ConnId = a2.hello.conn.parse().unwrap();
    // Send to a user: every connection of the user, minus exclusions (Mesa Dispatcher).
    node.send_to_user("alice", Payload::json(&"to both").unwrap(), None)
        .await
        .unwrap();
    for c in [&mut a1, &mut a2] {
        let Push::Message(m) = c.next_push().await else {
            panic!()
        };
        assert_eq!(m.to, plexus_protocol::server::Target::User);
        assert_eq!(m.payload().unwrap(), Payload::json(&"to both").unwrap());
    }
    node.send_to_user(
        "alice",
        Payload::json(&"not a2").unwrap(),
        Some(plexus_core::Exclude::conn(a2_id)),
    )
    .await
    .unwrap();
    let Push::Message(m) = a1.next_push().await else {
        panic!()
    };
    assert_eq!(m.payload().unwrap(), Payload::json(&"not a2").unwrap());
    assert!(a2.silent_for(Duration::from_millis(100)).await);
    // Subscribe and unsubscribe every connection of a user.
    node.subscribe_user("alice", "team").await.unwrap();
    for c in [&mut a1, &mut a2] {
        let Push::Subscribed(s) = c.next_push().await else {
            panic!()
        };
        assert_eq!(s.channel, "team");
    }
    assert_eq!(node.members("team").len(), 2);
    node.unsubscribe_user("alice", "team").await.unwrap();
    for c in [&mut a1, &mut a2] {
        let Push::Unsubscribed(u) = c.next_push().await else {
            panic!()
        };
        assert_eq!(u.channel, "team");
    }
    // Disconnect one connection for good, then the whole user.
    node.disconnect_connection(a2_id, CloseCode::DISCONNECTED, "kicked")
        .await
        .unwrap();
    assert_eq!(
        a2.closed().await,
        (CloseCode::DISCONNECTED.0, "kicked".to_owned())
    );
    node.disconnect_user("alice", CloseCode::RECONNECT, "please reconnect")
        .await
        .unwrap();
    assert_eq!(a1.closed().await.0, CloseCode::RECONNECT.0);
});

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let mut builder = dev();
    // A queue large enough that the socket buffers fill before it does.
    builder.limits_mut().outbound_queue_bytes_max = 64 * 1024 * 1024;
    builder.limits_mut().write_timeout = Duration::from_millis(300);
    let server = start(builder).await;
    let node = server.node().clone();
    let mut stuck = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    let _: SubscribeResult = stuck.request(sub("flood")).await.unwrap();
    let chunk = Payload::binary(vec![b'x'; 32 * 1024]);
    let deadline = tokio::time::Instant::now() + WAIT;
    // Publish until the server gives up on the client that never reads.
    while node.connection_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stuck client was never dropped"
        );
        for _ in 0..32 {
            node.publish("flood", chunk.clone()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        node.stats()
            .slow_consumer_closes
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "dropped by the write timeout, not the queue bound"
    );
}
