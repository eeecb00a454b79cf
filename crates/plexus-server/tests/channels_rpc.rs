//! Channels, targeted delivery, commands and frame errors over real WebSocket connections, in
//! both encodings.

mod common;

use common::*;
use plexus_core::commands::{Before, Command};
use plexus_core::{CloseCode, CommandContext, Emit, Error, ErrorCode, Exclude, Payload};
use plexus_protocol::client::{
    CallParams, HistoryParams, Op, PublishParams, SubscribeParams, UnsubscribeParams,
};
use plexus_protocol::server::{
    CallResult, Empty, HistoryResult, PublishResult, Push, SubscribeResult, Target,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn json(v: serde_json::Value) -> Payload {
    Payload::json(&v).unwrap()
}

fn sub(channel: &str) -> Op {
    Op::Subscribe(SubscribeParams::new(channel))
}

fn publish(channel: &str, payload: &Payload) -> Op {
    Op::Publish(PublishParams::new(channel, payload))
}

fn call(method: &str, payload: &Payload) -> Op {
    Op::Call(CallParams::new(method, payload))
}

both_encodings!(hello_comes_first_with_limits, |enc| async move {
    let server = start(dev()).await;
    let client = TestClient::connect(&server.ws_url(), enc).await;
    assert_eq!(client.hello.version, 1);
    assert_eq!(client.hello.node, server.node().id().to_string());
    assert!(client.hello.conn.starts_with(&client.hello.node));
    assert_eq!(
        client.hello.auth,
        plexus_protocol::server::AuthState::Optional
    );
    assert_eq!(client.hello.limits.max_message_bytes, 64 * 1024);
    assert_eq!(client.hello.ping_interval_ms, 25_000);
});

both_encodings!(
    publish_reaches_subscribers_in_offset_order,
    |enc| async move {
        let server = start(dev()).await;
        let mut a = TestClient::connect(&server.ws_url(), enc).await;
        let mut b = TestClient::connect(&server.ws_url(), enc).await;
        let pos: SubscribeResult = b.request(sub("room")).await.unwrap();
        assert_eq!(pos.offset, 0);
        for i in 1..=3u64 {
            let r: PublishResult = a
                .request(publish("room", &json(serde_json::json!({"n": i}))))
                .await
                .unwrap();
            assert_eq!(r.offset, i);
            assert_eq!(r.epoch, pos.epoch);
        }
        for i in 1..=3u64 {
            let Push::Pub(p) = b.next_push().await else {
                panic!("expected pub")
            };
            assert_eq!((p.channel.as_str(), p.offset), ("room", i));
            assert_eq!(p.payload().unwrap(), json(serde_json::json!({"n": i})));
            let publisher = p.publisher.expect("dev mode attaches the publisher");
            assert_eq!(publisher.conn, a.hello.conn);
        }
        // The publisher is not subscribed, so it gets nothing.
        assert!(a.silent_for(Duration::from_millis(100)).await);
    }
);

both_encodings!(binary_payloads_cross_encodings, |enc| async move {
    let server = start(dev()).await;
    let mut json_sub = TestClient::connect(&server.ws_url(), plexus_protocol::Encoding::Json).await;
    let mut mp_sub =
        TestClient::connect(&server.ws_url(), plexus_protocol::Encoding::Msgpack).await;
    let mut publisher = TestClient::connect(&server.ws_url(), enc).await;
    let _: SubscribeResult = json_sub.request(sub("bin")).await.unwrap();
    let _: SubscribeResult = mp_sub.request(sub("bin")).await.unwrap();
    let bytes = Payload::binary(vec![0u8, 1, 2, 255]);
    let _: PublishResult = publisher.request(publish("bin", &bytes)).await.unwrap();
    let data = json(serde_json::json!({"text": "héllo", "list": [1, 2.5, null, true]}));
    let _: PublishResult = publisher.request(publish("bin", &data)).await.unwrap();
    for client in [&mut json_sub, &mut mp_sub] {
        let Push::Pub(p) = client.next_push().await else {
            panic!()
        };
        assert_eq!(p.payload().unwrap(), bytes);
        let Push::Pub(p) = client.next_push().await else {
            panic!()
        };
        assert_eq!(
            p.payload()
                .unwrap()
                .to_value::<serde_json::Value>()
                .unwrap(),
            data.to_value::<serde_json::Value>().unwrap()
        );
    }
});

both_encodings!(
    unsubscribe_stops_delivery_and_errors_are_coded,
    |enc| async move {
        let server = start(dev()).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let _: SubscribeResult = c.request(sub("x")).await.unwrap();
        let e = c.request::<SubscribeResult>(sub("x")).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::ALREADY_SUBSCRIBED);
        let _: Empty = c
            .request(Op::Unsubscribe(UnsubscribeParams {
                channel: "x".into(),
            }))
            .await
            .unwrap();
        let e = c
            .request::<Empty>(Op::Unsubscribe(UnsubscribeParams {
                channel: "x".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NOT_SUBSCRIBED);
        server.node().publish("x", Payload::null()).await.unwrap();
        assert!(c.silent_for(Duration::from_millis(100)).await);
        assert!(server.node().members("x").is_empty());
    }
);

both_encodings!(
    batched_frames_in_one_message_get_every_reply_in_order,
    |enc| async move {
        let server = start(dev()).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let mut writer = plexus_protocol::FrameWriter::new(enc);
        for (id, n) in [(10u64, 1), (11, 2), (12, 3)] {
            let req = plexus_protocol::client::Request {
                id: Some(id),
                op: call("echo", &json(serde_json::json!(n))),
            };
            writer.push(&plexus_protocol::client::encode_request(enc, &req));
        }
        c.send_bytes(writer.take().to_vec()).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            match c.next_frame().await {
                Frame::Reply { id, .. } => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(ids, vec![10, 11, 12]);
    }
);

both_encodings!(
    refusals_wait_for_the_replies_before_them,
    |enc| async move {
        let server = start(rpc_server()).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        // A running ordered call, then an unknown op, an unknown method and an invalid channel:
        // the refusals come after the call's reply, in the order sent (§3.8).
        c.send_batch(&[
            serde_json::json!({"id": 1, "op": "call", "params": {"method": "slow", "data": 1}}),
            serde_json::json!({"id": 2, "op": "teleport"}),
            serde_json::json!({"id": 3, "op": "call", "params": {"method": "nope"}}),
            serde_json::json!({"id": 4, "op": "subscribe", "params": {"channel": ""}}),
        ])
        .await;
        assert_eq!(c.reply_order(4).await, vec![1, 2, 3, 4]);
    }
);

both_encodings!(
    a_broken_frame_ends_a_batch_after_the_frames_before_it,
    |enc| async move {
        let server = start(rpc_server()).await;
        let mut watcher = TestClient::connect(&server.ws_url(), enc).await;
        let _: SubscribeResult = watcher.request(sub("batch")).await.unwrap();
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let good = plexus_protocol::client::encode_request(
            enc,
            &plexus_protocol::client::Request {
                id: Some(1),
                op: publish("batch", &json(serde_json::json!("kept"))),
            },
        );
        let mut message = good.to_vec();
        match enc {
            plexus_protocol::Encoding::Json => message.extend_from_slice(b"\n{\"id\":2,"),
            // 0xc1 is never used in MessagePack.
            plexus_protocol::Encoding::Msgpack => message.push(0xc1),
        }
        c.send_bytes(message).await;
        let published: PublishResult = c.reply(1).await.unwrap();
        assert_eq!(published.offset, 1);
        assert_eq!(c.closed().await.0, CloseCode::BAD_FRAME.0);
        let Push::Pub(p) = watcher.next_push().await else {
            panic!("expected the publication")
        };
        assert_eq!(p.data.unwrap().0.get(), "\"kept\"");
    }
);

#[tokio::test]
async fn message_kinds_per_encoding() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = start(dev()).await;
    // A JSON connection reads a binary message as JSON text.
    let mut c = TestClient::connect(&server.ws_url(), plexus_protocol::Encoding::Json).await;
    c.ws.send(Message::binary(
        br#"{"id":1,"op":"call","params":{"method":"echo","data":7}}"#.to_vec(),
    ))
    .await
    .unwrap();
    let r: CallResult = c.reply(1).await.unwrap();
    assert_eq!(r.data.unwrap().0.get(), "7");
    // A MessagePack connection closes on a text message.
    let mut c = TestClient::connect(&server.ws_url(), plexus_protocol::Encoding::Msgpack).await;
    c.ws.send(Message::text("\u{07de}")).await.unwrap();
    assert_eq!(c.closed().await.0, CloseCode::BAD_FRAME.0);
}

both_encodings!(params_must_be_a_map, |enc| async move {
    let server = start(dev()).await;
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    c.send_batch(&[serde_json::json!({"id": 1, "op": "subscribe", "params": ["chan"]})])
        .await;
    assert_eq!(
        c.reply::<Empty>(1).await.unwrap_err().code,
        ErrorCode::BAD_REQUEST
    );
    assert!(
        !server
            .node()
            .is_subscribed(c.hello.conn.parse().unwrap(), "chan")
    );
});

fn rpc_server() -> plexus_server::ServerBuilder {
    dev()
        .command("fail", |_ctx: CommandContext| async move {
            Err(Error::app(1001, "nope")
                .with_data(Payload::json(&serde_json::json!({"why": "test"})).unwrap()))
        })
        .command("panic", |_ctx: CommandContext| async move {
            if true {
                panic!("handler bug");
            }
            Ok(Payload::null())
        })
        .command_with(
            "slow",
            Command::new(|ctx: CommandContext| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(ctx.payload)
            }),
        )
        .command_with(
            "slow_concurrent",
            Command::new(|ctx: CommandContext| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(ctx.payload)
            })
            .concurrent(),
        )
        .command_with(
            "sleepy",
            Command::new(|_ctx: CommandContext| async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(Payload::null())
            })
            .timeout(Duration::from_millis(100)),
        )
        .command_with(
            "whoami",
            Command::new(|ctx: CommandContext| async move {
                let tag = ctx.extensions.get::<String>().cloned().unwrap_or_default();
                Ok(
                    Payload::json(&serde_json::json!({"conn": ctx.conn.to_string(), "tag": tag}))
                        .unwrap(),
                )
            })
            .middleware(|mut ctx: CommandContext| async move {
                let global = ctx.extensions.get::<u32>().copied().unwrap_or(0);
                ctx.extensions.insert(format!("global={global}"));
                Ok(ctx)
            }),
        )
        .command_with(
            "guarded",
            Command::new(
                |_ctx: CommandContext| async move { Ok(Payload::json(&"reached").unwrap()) },
            )
            .middleware(|ctx: CommandContext| async move {
                if ctx.payload.as_json_str() == Some("\"let me in\"") {
                    Ok(ctx)
                } else {
                    Err(Error::permission_denied("middleware says no"))
                }
            }),
        )
        .command_with(
            "hooked",
            Command::new(
                |_ctx: CommandContext| async move { Ok(Payload::json(&"handler").unwrap()) },
            )
            .before(|ctx: CommandContext| async move {
                if ctx.payload.as_json_str() == Some("\"short\"") {
                    Before::Respond(Ok(Payload::json(&"before").unwrap()))
                } else {
                    Before::Continue(ctx)
                }
            })
            .after(|_call, result: plexus_core::CommandResult| async move {
                match result {
                    Ok(p) if p.as_json_str() == Some("\"handler\"") => {
                        Ok(Payload::json(&"after").unwrap())
                    }
                    other => other,
                }
            }),
        )
        .middleware(|mut ctx: CommandContext| async move {
            ctx.extensions.insert(7u32);
            Ok(ctx)
        })
}

both_encodings!(
    commands_answer_with_results_and_coded_errors,
    |enc| async move {
        let server = start(rpc_server()).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let r: CallResult = c
            .request(call("echo", &json(serde_json::json!({"a": [1, 2]}))))
            .await
            .unwrap();
        assert_eq!(r.payload(), json(serde_json::json!({"a": [1, 2]})));
        let r: CallResult = c
            .request(call("echo", &Payload::binary(vec![7u8; 3])))
            .await
            .unwrap();
        assert_eq!(r.payload(), Payload::binary(vec![7u8; 3]));
        let e = c
            .request::<CallResult>(call("nope", &Payload::null()))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::METHOD_NOT_FOUND);
        let e = c
            .request::<CallResult>(call("fail", &Payload::null()))
            .await
            .unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (ErrorCode(1001), "nope"));
        assert!(e.data.is_some());
        let e = c
            .request::<CallResult>(call("panic", &Payload::null()))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::INTERNAL);
        let e = c
            .request::<CallResult>(call("sleepy", &Payload::null()))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::TIMEOUT);
        // The connection lives on after a panic and a timeout.
        let r: CallResult = c
            .request(call("echo", &json(serde_json::json!("still here"))))
            .await
            .unwrap();
        assert_eq!(r.payload(), json(serde_json::json!("still here")));
    }
);

both_encodings!(
    middleware_enriches_and_rejects_and_hooks_replace,
    |enc| async move {
        let server = start(rpc_server()).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let r: CallResult = c.request(call("whoami", &Payload::null())).await.unwrap();
        let v: serde_json::Value = r.payload().to_value().unwrap();
        assert_eq!(
            v["tag"], "global=7",
            "global middleware ran before the command's own"
        );
        assert_eq!(v["conn"], c.hello.conn);
        let e = c
            .request::<CallResult>(call("guarded", &json(serde_json::json!("hi"))))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::PERMISSION_DENIED);
        let r: CallResult = c
            .request(call("guarded", &json(serde_json::json!("let me in"))))
            .await
            .unwrap();
        assert_eq!(r.payload(), json(serde_json::json!("reached")));
        let r: CallResult = c
            .request(call("hooked", &json(serde_json::json!("short"))))
            .await
            .unwrap();
        assert_eq!(r.payload(), json(serde_json::json!("before")));
        let r: CallResult = c.request(call("hooked", &Payload::null())).await.unwrap();
        assert_eq!(r.payload(), json(serde_json::json!("after")));
    }
);

both_encodings!(
    requests_are_answered_in_order_unless_concurrent,
    |enc| async move {
        let server = start(rpc_server()).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let slow = c.send(call("slow", &json(serde_json::json!(1)))).await;
        let fast = c.send(call("echo", &json(serde_json::json!(2)))).await;
        let sub_id = c.send(sub("after-slow")).await;
        let mut order = Vec::new();
        for _ in 0..3 {
            if let Frame::Reply { id, .. } = c.next_frame().await {
                order.push(id);
            }
        }
        assert_eq!(order, vec![slow, fast, sub_id]);
        let slow = c
            .send(call("slow_concurrent", &json(serde_json::json!(1))))
            .await;
        let fast = c.send(call("echo", &json(serde_json::json!(2)))).await;
        let mut order = Vec::new();
        for _ in 0..2 {
            if let Frame::Reply { id, .. } = c.next_frame().await {
                order.push(id);
            }
        }
        assert_eq!(
            order,
            vec![fast, slow],
            "a concurrent command's reply may be overtaken"
        );
    }
);

both_encodings!(unknown_op_bad_params_and_notifications, |enc| async move {
    let server = start(dev()).await;
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    let frame = match enc {
        plexus_protocol::Encoding::Json => br#"{"id":5,"op":"teleport"}"#.to_vec(),
        plexus_protocol::Encoding::Msgpack => {
            plexus_protocol::encode(enc, &serde_json::json!({"id": 5, "op": "teleport"})).to_vec()
        }
    };
    c.send_bytes(frame).await;
    let e = c.reply::<Empty>(5).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::UNKNOWN_OPERATION);
    c.send_bytes(
        plexus_protocol::encode(
            enc,
            &serde_json::json!({"id": 6, "op": "subscribe", "params": {"chan": 1}}),
        )
        .to_vec(),
    )
    .await;
    assert_eq!(
        c.reply::<Empty>(6).await.unwrap_err().code,
        ErrorCode::BAD_REQUEST
    );
    // A notification that fails comes back as an `error` push.
    c.send_bytes(plexus_protocol::encode(enc, &serde_json::json!({"op": "teleport"})).to_vec())
        .await;
    let Push::Error(e) = c.next_push().await else {
        panic!("expected an error push")
    };
    assert_eq!(e.code, ErrorCode::UNKNOWN_OPERATION);
    // A notification that succeeds is executed silently.
    c.notify(sub("quiet")).await;
    let _: CallResult = c.request(call("echo", &Payload::null())).await.unwrap();
    assert!(server.node().members("quiet").len() == 1);
});

both_encodings!(
    malformed_message_closes_only_that_connection,
    |enc| async move {
        let server = start(dev()).await;
        let mut good = TestClient::connect(&server.ws_url(), enc).await;
        let mut bad = TestClient::connect(&server.ws_url(), enc).await;
        let garbage = match enc {
            plexus_protocol::Encoding::Json => b"{not json".to_vec(),
            plexus_protocol::Encoding::Msgpack => vec![0xc1],
        };
        bad.send_bytes(garbage).await;
        assert_eq!(bad.closed().await.0, CloseCode::BAD_FRAME.0);
        let mut not_a_frame = TestClient::connect(&server.ws_url(), enc).await;
        not_a_frame
            .send_bytes(plexus_protocol::encode(enc, &serde_json::json!([1, 2])).to_vec())
            .await;
        assert_eq!(not_a_frame.closed().await.0, CloseCode::BAD_FRAME.0);
        let r: CallResult = good.request(call("echo", &Payload::null())).await.unwrap();
        assert_eq!(r.payload(), Payload::null());
    }
);

both_encodings!(
    oversized_message_closes_with_1009_and_others_go_on,
    |enc| async move {
        let mut builder = dev();
        builder.limits_mut().max_message_bytes = 1024;
        let server = start(builder).await;
        let mut good = TestClient::connect(&server.ws_url(), enc).await;
        let mut big = TestClient::connect(&server.ws_url(), enc).await;
        assert_eq!(big.hello.limits.max_message_bytes, 1024);
        let payload = json(serde_json::json!("x".repeat(2000)));
        big.send(publish("c", &payload)).await;
        assert_eq!(big.closed().await.0, CloseCode::MESSAGE_TOO_BIG.0);
        let r: CallResult = good.request(call("echo", &Payload::null())).await.unwrap();
        assert_eq!(r.payload(), Payload::null());
    }
);

both_encodings!(server_side_rooms_and_targeted_delivery, |enc| async move {
    let server = start(dev()).await;
    let node = server.node().clone();
    let mut a = TestClient::connect(&server.ws_url(), enc).await;
    let mut b = TestClient::connect(&server.ws_url(), enc).await;
    let a_id = a.hello.conn.parse().unwrap();
    let b_id = b.hello.conn.parse().unwrap();
    // addToRoom: the connection is told and receives the room's publications.
    assert!(node.subscribe_connection(a_id, "room").await.unwrap());
    let Push::Subscribed(s) = a.next_push().await else {
        panic!()
    };
    assert_eq!(s.channel, "room");
    assert!(node.is_subscribed(a_id, "room"));
    assert!(node.subscribe_connection(b_id, "room").await.unwrap());
    let _ = b.next_push().await;
    let mut members = node.members("room");
    members.sort();
    assert_eq!(members, {
        let mut m = vec![a_id, b_id];
        m.sort();
        m
    });
    // Exclusions on a channel publish.
    node.publish_with(
        "room",
        json(serde_json::json!(1)),
        None,
        Some(Exclude::conn(a_id)),
    )
    .await
    .unwrap();
    let Push::Pub(p) = b.next_push().await else {
        panic!()
    };
    assert_eq!(p.offset, 1);
    assert!(a.silent_for(Duration::from_millis(100)).await);
    // removeFromRoom.
    assert!(node.unsubscribe_connection(a_id, "room").await.unwrap());
    let Push::Unsubscribed(u) = a.next_push().await else {
        panic!()
    };
    assert_eq!(u.channel, "room");
    assert!(!node.is_subscribed(a_id, "room"));
    // Unicast, with a clear "no such connection".
    assert!(
        node.send_to_connection(b_id, json(serde_json::json!("hi b")))
            .await
            .unwrap()
    );
    let Push::Message(m) = b.next_push().await else {
        panic!()
    };
    assert_eq!(
        (m.to, m.payload().unwrap()),
        (Target::Connection, json(serde_json::json!("hi b")))
    );
    let gone = plexus_core::ConnId {
        node: node.id(),
        seq: 999_999,
    };
    assert!(
        !node
            .send_to_connection(gone, Payload::null())
            .await
            .unwrap()
    );
    // Broadcast with an exclusion reaches everyone else.
    node.broadcast(json(serde_json::json!("all")), Some(Exclude::conn(b_id)))
        .await
        .unwrap();
    let Push::Message(m) = a.next_push().await else {
        panic!()
    };
    assert_eq!(m.to, Target::All);
    assert!(b.silent_for(Duration::from_millis(100)).await);
    // clearRoom.
    node.clear_channel("room").await.unwrap();
    let Push::Unsubscribed(_) = b.next_push().await else {
        panic!()
    };
    assert!(node.members("room").is_empty());
});

both_encodings!(membership_is_cleaned_up_on_disconnect, |enc| async move {
    let server = start(dev()).await;
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    let _: SubscribeResult = c.request(sub("a")).await.unwrap();
    let _: SubscribeResult = c.request(sub("b")).await.unwrap();
    assert_eq!(server.node().active_channels().len(), 2);
    drop(c);
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.node().connection_count() > 0 || !server.node().active_channels().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cleanup did not happen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
});

both_encodings!(guards_and_namespaces_refuse_with_codes, |enc| async move {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mut policy = plexus_core::ChannelPolicy::default();
    policy.add_namespace(
        plexus_core::Namespace::new(
            "public",
            plexus_core::ChannelMatch::Prefix("public:".into()),
        )
        .subscribe(plexus_core::Access::Anyone)
        .publish(plexus_core::Access::Subscribers),
    );
    policy.add_namespace(
        plexus_core::Namespace::new(
            "rooms",
            plexus_core::ChannelMatch::regex(r"room-\d+").unwrap(),
        )
        .subscribe(plexus_core::Access::Anyone)
        .publish(plexus_core::Access::Anyone),
    );
    policy.add_guard(
        plexus_core::ChannelMatch::regex(r"room-\d+").unwrap(),
        &[plexus_core::Action::Subscribe],
        move |req: plexus_core::GuardRequest| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                if &*req.channel == "room-13" {
                    Err(Error::permission_denied("unlucky"))
                } else {
                    Ok(())
                }
            }
        },
    );
    let server = start(dev().channels(policy)).await;
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    let e = c
        .request::<SubscribeResult>(sub("private"))
        .await
        .unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::PERMISSION_DENIED,
        "no namespace: closed by default"
    );
    let e = c
        .request::<PublishResult>(publish("public:news", &Payload::null()))
        .await
        .unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::PERMISSION_DENIED,
        "publish needs a subscription here"
    );
    let _: SubscribeResult = c.request(sub("public:news")).await.unwrap();
    let _: PublishResult = c
        .request(publish("public:news", &Payload::null()))
        .await
        .unwrap();
    let _: SubscribeResult = c.request(sub("room-12")).await.unwrap();
    let e = c
        .request::<SubscribeResult>(sub("room-13"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (ErrorCode::PERMISSION_DENIED, "unlucky")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
});

both_encodings!(messages_and_bytes_are_counted_both_ways, |enc| async move {
    let server = start(dev()).await;
    let stats = server.node().stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let before = (
        load(&stats.messages_in),
        load(&stats.bytes_in),
        load(&stats.messages_out),
        load(&stats.bytes_out),
    );
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    let _: CallResult = c
        .request(call("echo", &json(serde_json::json!("count me"))))
        .await
        .unwrap();
    assert!(load(&stats.messages_in) > before.0 && load(&stats.bytes_in) > before.1);
    assert!(
        load(&stats.messages_out) > before.2 && load(&stats.bytes_out) > before.3,
        "hello and reply were counted"
    );
});

both_encodings!(
    event_names_travel_with_publications_and_messages,
    |enc| async move {
        let mut policy = plexus_core::ChannelPolicy::default();
        policy.add_namespace(
            plexus_core::Namespace::new("kept", plexus_core::ChannelMatch::Any)
                .subscribe(plexus_core::Access::Anyone)
                .publish(plexus_core::Access::Anyone)
                .history(plexus_core::HistoryOptions {
                    size: 10,
                    ttl: Duration::from_secs(60),
                }),
        );
        let server = start(dev().channels(policy)).await;
        let node = server.node().clone();
        let mut a = TestClient::connect(&server.ws_url(), enc).await;
        let mut b = TestClient::connect(&server.ws_url(), enc).await;
        let b_id = b.hello.conn.parse().unwrap();
        let _: SubscribeResult = b.request(sub("room")).await.unwrap();

        // A client publishes under an event name; the subscriber and history see it.
        let mut params = PublishParams::new("room", &json(serde_json::json!({"who": "a"})));
        params.event = Some("typing".into());
        let _: PublishResult = a.request(Op::Publish(params)).await.unwrap();
        let Push::Pub(p) = b.next_push().await else {
            panic!()
        };
        assert_eq!((p.offset, p.event.as_deref()), (1, Some("typing")));
        // The library: `Emit::event`, and a bare payload for the default event.
        node.publish("room", Emit::event("chat", json(serde_json::json!("hi"))))
            .await
            .unwrap();
        node.publish("room", json(serde_json::json!("plain")))
            .await
            .unwrap();
        for (offset, event) in [(2, Some("chat")), (3, None)] {
            let Push::Pub(p) = b.next_push().await else {
                panic!()
            };
            assert_eq!((p.offset, p.event.as_deref()), (offset, event));
        }
        let history: HistoryResult = a
            .request(Op::History(HistoryParams {
                channel: "room".into(),
                since: None,
                limit: Some(10),
                reverse: false,
            }))
            .await
            .unwrap();
        let events: Vec<_> = history
            .publications
            .iter()
            .map(|p| p.event.as_deref())
            .collect();
        assert_eq!(events, [Some("typing"), Some("chat"), None]);

        // Messages carry their event name too.
        node.send_to_connection(b_id, Emit::event("direct", Payload::null()))
            .await
            .unwrap();
        let Push::Message(m) = b.next_push().await else {
            panic!()
        };
        assert_eq!(
            (m.to, m.event.as_deref()),
            (Target::Connection, Some("direct"))
        );
        node.broadcast(
            Emit::event("news", Payload::null()),
            Some(Exclude::conn(b_id)),
        )
        .await
        .unwrap();
        let Push::Message(m) = a.next_push().await else {
            panic!()
        };
        assert_eq!((m.to, m.event.as_deref()), (Target::All, Some("news")));

        // Names Socket.IO reserves, empty or overlong names are refused, by clients and the
        // library alike.
        for bad in ["connect", "disconnect", "", &"e".repeat(201)] {
            let mut params = PublishParams::new("room", &Payload::null());
            params.event = Some(bad.to_owned());
            let e = a
                .request::<PublishResult>(Op::Publish(params))
                .await
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::BAD_REQUEST, "{bad:?}");
            let e = node
                .publish("room", Emit::event(bad, Payload::null()))
                .await
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::BAD_REQUEST, "{bad:?}");
        }
        let e = node
            .broadcast(Emit::event("connect_error", Payload::null()), None)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BAD_REQUEST);
        // Nothing was published by the refused calls.
        assert!(b.silent_for(Duration::from_millis(100)).await);
    }
);
