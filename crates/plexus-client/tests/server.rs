//! The client against the real server, over real sockets: every operation, auth, pushes, the
//! server's close codes, and a server stopped and restarted on the same port.

use plexus_client::{
    Client, ClientConfig, CloseCode, Encoding, ErrorCode, Event, Payload, PushEvent,
    RequestOptions, SubscribeOptions, SubscriptionEvent, Target, UnsubscribeReason,
};
use plexus_core::{AuthRequest, CommandContext, Error, Identity};
use plexus_server::{RunningServer, ServerBuilder};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

mod support;

use support::{any_port, both, conn_id, json_payload, start, wait_event, within};

/// The development server of `support`, with the commands these tests call.
fn dev(addr: SocketAddr) -> ServerBuilder {
    support::dev(addr)
        .command("echo", |ctx: CommandContext| async move { Ok(ctx.payload) })
        .command("fail", |_ctx: CommandContext| async move {
            Err(Error::new(ErrorCode(1042), "insufficient funds")
                .with_data(Payload::json(&json!({"balance": 3})).unwrap()))
        })
        .command("slow", |ctx: CommandContext| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(ctx.payload)
        })
}

fn config(server: &RunningServer, encoding: Encoding) -> ClientConfig {
    support::config(server.ws_url(), encoding)
}

async fn next_publication(sub: &mut plexus_client::Subscription) -> plexus_client::Publication {
    loop {
        match within("a publication", sub.next()).await {
            Some(SubscriptionEvent::Publication(p)) => return p,
            Some(SubscriptionEvent::Subscribed(_)) => continue,
            other => panic!("expected a publication, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn every_operation_works_against_the_server() {
    for enc in both() {
        let server = start(dev(any_port())).await;
        let client = Client::connect(config(&server, enc)).await.unwrap();
        let info = client.connection().unwrap();
        assert_eq!(info.user, None);
        assert_eq!(info.node, server.node().id().to_string());

        // call: JSON and binary payloads, an unknown method, an application error.
        let out = client
            .call("echo", json_payload(json!({"a": [1, "b"]})))
            .await
            .unwrap();
        assert_eq!(
            out.to_value::<serde_json::Value>().unwrap(),
            json!({"a": [1, "b"]})
        );
        let bin = Payload::binary(vec![0u8, 1, 2, 255]);
        assert_eq!(client.call("echo", bin.clone()).await.unwrap(), bin);
        let e = client.call("nope", Payload::null()).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::METHOD_NOT_FOUND), "{enc:?}");
        let e = client.call("fail", Payload::null()).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode(1042)));
        assert_eq!(e.message(), "insufficient funds");
        assert_eq!(e.data().unwrap().as_json_str(), Some(r#"{"balance":3}"#));

        // subscribe, publish (JSON and binary), receive in order with +1 offsets.
        let mut sub = client
            .subscribe("chat", SubscribeOptions::default())
            .await
            .unwrap();
        assert_eq!(sub.position().offset, 0);
        let p1 = client
            .publish("chat", json_payload(json!("one")))
            .await
            .unwrap();
        let p2 = client.publish("chat", bin.clone()).await.unwrap();
        assert_eq!(p2.offset, p1.offset + 1);
        assert_eq!(p1.epoch, p2.epoch);
        let a = next_publication(&mut sub).await;
        let b = next_publication(&mut sub).await;
        assert_eq!((a.channel.as_str(), a.offset), ("chat", p1.offset));
        assert_eq!(a.payload, json_payload(json!("one")));
        assert_eq!(b.offset, p2.offset);
        assert_eq!(b.payload, bin);
        assert_eq!(b.epoch, p2.epoch);
        assert_eq!(sub.position().offset, p2.offset);

        // A bad channel name is the server's error 107.
        let e = client
            .subscribe("", SubscribeOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BAD_CHANNEL));

        // unsubscribe ends the stream; unsubscribing again is fine.
        client.unsubscribe("chat").await.unwrap();
        assert!(matches!(
            within("end", sub.next()).await,
            Some(SubscriptionEvent::Unsubscribed(UnsubscribeReason::Client))
        ));
        assert!(within("end", sub.next()).await.is_none());
        client.unsubscribe("chat").await.unwrap();
        assert!(!server.node().is_subscribed(conn_id(&client), "chat"));
        client.disconnect().await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn messages_to_the_connection_the_user_and_everyone_arrive_as_pushes() {
    for enc in both() {
        let server = start(dev(any_port()).anonymous(false).auth_hook(
            |req: AuthRequest| async move {
                match req.token.as_deref() {
                    Some(t) if t.starts_with("good:") => Ok(Identity::new(&t[5..])),
                    _ => Err(Error::new(ErrorCode::AUTH_FAILED, "bad token")),
                }
            },
        ))
        .await;
        let client = Client::connect(config(&server, enc).token("good:alice"))
            .await
            .unwrap();
        assert_eq!(client.connection().unwrap().user.as_deref(), Some("alice"));
        let mut pushes = client.pushes();
        let node = server.node();
        assert!(
            node.send_to_connection(conn_id(&client), json_payload(json!(1)))
                .await
                .unwrap()
        );
        node.send_to_user("alice", json_payload(json!(2)), None)
            .await
            .unwrap();
        node.broadcast(Payload::binary(vec![3u8]), None)
            .await
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            match within("a push", pushes.next()).await {
                Some(PushEvent::Message(m)) => got.push((m.to, m.payload)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            got,
            [
                (Target::Connection, json_payload(json!(1))),
                (Target::User, json_payload(json!(2))),
                (Target::All, Payload::binary(vec![3u8])),
            ]
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn refused_and_expired_tokens_fail_connect_with_their_codes() {
    let server = start(
        dev(any_port())
            .anonymous(false)
            .auth_hook(|req: AuthRequest| async move {
                match req.token.as_deref() {
                    Some("expired") => Err(Error::new(ErrorCode::TOKEN_EXPIRED, "token expired")),
                    Some("good") => Ok(Identity::new("u")),
                    _ => Err(Error::new(ErrorCode::AUTH_FAILED, "bad token")),
                }
            }),
    )
    .await;
    for (token, code, close) in [
        ("bad", ErrorCode::AUTH_FAILED, CloseCode::AUTH_FAILED),
        (
            "expired",
            ErrorCode::TOKEN_EXPIRED,
            CloseCode::TOKEN_EXPIRED,
        ),
    ] {
        let e = Client::connect(config(&server, Encoding::Json).token(token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(code), "{e:?}");
        assert_eq!(e.close_code(), Some(close));
    }
    // Without a token where one is required: the client still sends `connect` (the hello says
    // `required`) and the server refuses it.
    let e = Client::connect(config(&server, Encoding::Json))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AUTH_FAILED), "{e:?}");
    let ok = Client::connect(config(&server, Encoding::Json).token("good"))
        .await
        .unwrap();
    assert_eq!(ok.connection().unwrap().user.as_deref(), Some("u"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_restarted_on_the_same_port_gets_the_subscriptions_back() {
    for enc in both() {
        let server = start(dev(any_port())).await;
        let addr = server.local_addr();
        let client = Client::connect(config(&server, enc)).await.unwrap();
        let mut events = client.events();
        let mut sub = client
            .subscribe("news", SubscribeOptions::default())
            .await
            .unwrap();
        server
            .node()
            .publish("news", json_payload(json!("before")))
            .await
            .unwrap();
        assert_eq!(
            next_publication(&mut sub).await.payload,
            json_payload(json!("before"))
        );

        server.shutdown().await;
        let code = wait_event(&mut events, |e| match e {
            Event::Disconnected {
                code,
                will_reconnect: true,
                ..
            } => Some(*code),
            _ => None,
        })
        .await;
        assert_eq!(code, Some(CloseCode::SHUTDOWN));

        let server = start(dev(addr)).await;
        wait_event(&mut events, |e| {
            matches!(
                e,
                Event::Connected {
                    reconnected: true,
                    ..
                }
            )
            .then_some(())
        })
        .await;
        let restored = wait_event(&mut events, |e| match e {
            Event::Subscribed(s) if s.resubscribed => Some(s.clone()),
            _ => None,
        })
        .await;
        assert_eq!(restored.channel, "news");
        assert!(!restored.server_side);
        match within("restore notice", sub.next()).await {
            Some(SubscriptionEvent::Subscribed(s)) => assert_eq!(s.channel, "news"),
            other => panic!("{other:?}"),
        }
        assert!(server.node().is_subscribed(conn_id(&client), "news"));
        let pos = server
            .node()
            .publish("news", json_payload(json!("after")))
            .await
            .unwrap();
        let p = next_publication(&mut sub).await;
        assert_eq!(p.payload, json_payload(json!("after")));
        assert_eq!(p.offset, pos.offset);
        client.disconnect().await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn server_side_subscriptions_are_delivered_and_restored_after_a_reconnect() {
    let server = start(dev(any_port())).await;
    let client = Client::connect(config(&server, Encoding::Msgpack))
        .await
        .unwrap();
    let mut events = client.events();
    let mut pushes = client.pushes();
    let node = server.node();
    assert!(
        node.subscribe_connection(conn_id(&client), "srv")
            .await
            .unwrap()
    );
    let s = wait_event(&mut events, |e| match e {
        Event::Subscribed(s) => Some(s.clone()),
        _ => None,
    })
    .await;
    assert!(s.server_side && !s.resubscribed);
    assert_eq!(s.channel, "srv");
    node.publish("srv", json_payload(json!(1))).await.unwrap();
    match within("pub", pushes.next()).await {
        Some(PushEvent::Publication(p)) => assert_eq!(p.channel, "srv"),
        other => panic!("{other:?}"),
    }

    // The server asks the client to reconnect (4005): the client restores "srv" itself.
    node.disconnect_connection(conn_id(&client), CloseCode::RECONNECT, "move")
        .await
        .unwrap();
    wait_event(&mut events, |e| match e {
        Event::Subscribed(s) if s.resubscribed && s.channel == "srv" => Some(()),
        _ => None,
    })
    .await;
    assert!(node.is_subscribed(conn_id(&client), "srv"));
    node.publish("srv", json_payload(json!(2))).await.unwrap();
    match within("pub", pushes.next()).await {
        Some(PushEvent::Publication(p)) => assert_eq!(p.payload, json_payload(json!(2))),
        other => panic!("{other:?}"),
    }

    // The server removing the subscription is final: it is not restored.
    node.unsubscribe_connection(conn_id(&client), "srv")
        .await
        .unwrap();
    wait_event(&mut events, |e| match e {
        Event::Unsubscribed { channel, .. } if channel == "srv" => Some(()),
        _ => None,
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_server_unsubscribe_ends_the_subscription_stream() {
    let server = start(dev(any_port())).await;
    let client = Client::connect(config(&server, Encoding::Json))
        .await
        .unwrap();
    let mut sub = client
        .subscribe("room", SubscribeOptions::default())
        .await
        .unwrap();
    server
        .node()
        .unsubscribe_connection(conn_id(&client), "room")
        .await
        .unwrap();
    match within("end", sub.next()).await {
        Some(SubscriptionEvent::Unsubscribed(UnsubscribeReason::Server(_))) => {}
        other => panic!("{other:?}"),
    }
    assert!(within("end", sub.next()).await.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn a_disconnect_for_good_from_the_server_is_obeyed() {
    for enc in both() {
        let server = start(dev(any_port())).await;
        let client = Client::connect(config(&server, enc)).await.unwrap();
        let mut events = client.events();
        let mut sub = client
            .subscribe("x", SubscribeOptions::default())
            .await
            .unwrap();
        server
            .node()
            .disconnect_connection(conn_id(&client), CloseCode::DISCONNECTED, "kicked")
            .await
            .unwrap();
        let (code, reason, will_reconnect) = wait_event(&mut events, |e| match e {
            Event::Disconnected {
                code,
                reason,
                will_reconnect,
            } => Some((*code, reason.clone(), *will_reconnect)),
            _ => None,
        })
        .await;
        assert_eq!(code, Some(CloseCode::DISCONNECTED));
        assert_eq!(reason, "kicked");
        assert!(!will_reconnect);
        // The client stopped: no more events, the subscription ended, requests fail.
        assert!(within("end", events.next()).await.is_none());
        assert!(matches!(
            within("end", sub.next()).await,
            Some(SubscriptionEvent::Unsubscribed(
                UnsubscribeReason::ClientClosed
            ))
        ));
        let e = client.call("echo", Payload::null()).await.unwrap_err();
        assert!(e.is_closed());
        server.shutdown().await;
    }
}

#[tokio::test]
async fn an_explicit_disconnect_never_reconnects() {
    let server = start(dev(any_port())).await;
    let client = Client::connect(config(&server, Encoding::Json))
        .await
        .unwrap();
    let mut events = client.events();
    client.disconnect().await;
    let e = wait_event(&mut events, |e| match e {
        Event::Disconnected {
            code,
            will_reconnect,
            ..
        } => Some((*code, *will_reconnect)),
        _ => None,
    })
    .await;
    assert_eq!(e, (Some(CloseCode::NORMAL), false));
    assert!(within("end", events.next()).await.is_none());
    assert!(client.wait_connected().await.unwrap_err().is_closed());
    server.shutdown().await;
}

#[tokio::test]
async fn calls_made_while_the_server_is_down_are_sent_when_it_returns_or_expire() {
    let server = start(dev(any_port())).await;
    let addr = server.local_addr();
    let client = Client::connect(config(&server, Encoding::Msgpack))
        .await
        .unwrap();
    let mut events = client.events();
    server.shutdown().await;
    wait_event(&mut events, |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    let short = client
        .call_with(
            "echo",
            Payload::null(),
            RequestOptions::default().timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap_err();
    assert!(short.is_timeout(), "{short:?}");
    let queued = tokio::spawn({
        let client = client.clone();
        async move { client.call("echo", json_payload(json!("kept"))).await }
    });
    let fail_fast = client
        .call_with(
            "echo",
            Payload::null(),
            RequestOptions::default().fail_fast(),
        )
        .await
        .unwrap_err();
    assert!(fail_fast.is_disconnected());
    let server = start(dev(addr)).await;
    assert_eq!(
        within("queued call", queued).await.unwrap().unwrap(),
        json_payload(json!("kept"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_heartbeat_keeps_the_connection_and_reports_latency() {
    let mut builder = dev(any_port());
    builder.limits_mut().ping_interval = Duration::from_millis(50);
    builder.limits_mut().max_missed_pongs = 1;
    let server = start(builder).await;
    let client = Client::connect(config(&server, Encoding::Json))
        .await
        .unwrap();
    assert_eq!(client.connection().unwrap().ping_interval_ms, 50);
    let mut events = client.events();
    // Five measured round trips in a row without a disconnect: pongs are flowing.
    for _ in 0..5 {
        let rtt = wait_event(&mut events, |e| match e {
            Event::Latency { rtt_ms } => Some(*rtt_ms),
            Event::Disconnected { .. } => panic!("disconnected: {e:?}"),
            _ => None,
        })
        .await;
        assert!(rtt >= 0.0);
    }
    assert!(client.latency_ms().is_some());
    server.shutdown().await;
}

#[tokio::test]
async fn many_concurrent_calls_stay_within_the_servers_pending_limit() {
    let mut builder = dev(any_port());
    builder.limits_mut().max_pending_requests = 2;
    let server = start(builder).await;
    let client = Client::connect(config(&server, Encoding::Json))
        .await
        .unwrap();
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.call("slow", json_payload(json!(i))).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        // Without the client's limit, the server would answer 116 too_many_pending.
        assert_eq!(
            within("call", call).await.unwrap().unwrap(),
            json_payload(json!(i))
        );
    }
    server.shutdown().await;
}
