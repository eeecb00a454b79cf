//! History reads, presence (lists, counts, joins, leaves, states, last seen), metadata, echoes
//! and durable messages, against the real server.

mod support;

use plexus_client::{
    Client, CloseCode, EchoKind, ErrorCode, ErrorKind, Event, HistoryOptions, Mail, MailAck,
    Mailbox, MetaTarget, Payload, PushEvent, SubscribeOptions, SubscriptionEvent,
};
use plexus_core::auth::UpgradeDecision;
use plexus_core::{AuthRequest, Error, Identity, UpgradeRequest};
use plexus_server::RunningServer;
use serde_json::json;
use std::sync::Arc;
use support::*;

/// A development server whose connections are user `?user=NAME`, with info `{"name": NAME}`.
async fn users_server() -> RunningServer {
    start(
        dev(any_port())
            .echoes(true)
            .upgrade_hook(|req: Arc<UpgradeRequest>| async move {
                UpgradeDecision::Accept(
                    req.query_param("user")
                        .map(|u| Identity::new(u).with_info(json_payload(json!({ "name": u })))),
                )
            }),
    )
    .await
}

async fn user(server: &RunningServer, name: &str, enc: plexus_client::Encoding) -> Client {
    let url = format!("{}?user={name}", server.ws_url());
    Client::connect(config(url, enc)).await.unwrap()
}

fn offsets(h: &plexus_client::History) -> Vec<u64> {
    h.publications.iter().map(|p| p.offset).collect()
}

#[tokio::test]
async fn presence_history_metadata_and_echoes_against_the_server() {
    for enc in both() {
        let server = users_server().await;
        let ann = user(&server, "ann", enc).await;
        let bob = user(&server, "bob", enc).await;
        let ann_conn = ann.connection().unwrap().conn;
        let bob_conn = bob.connection().unwrap().conn;
        let mut room = ann
            .subscribe("room", SubscribeOptions::default())
            .await
            .unwrap();
        let bob_room = bob
            .subscribe("room", SubscribeOptions::default())
            .await
            .unwrap();

        // Joins arrive on the channel's subscription stream.
        match next_event(&mut room).await {
            SubscriptionEvent::Join(j) => {
                assert_eq!((j.channel.as_str(), j.conn.as_str()), ("room", &*bob_conn));
                assert_eq!(j.user.as_deref(), Some("bob"));
                assert_eq!(value(j.info.as_ref().unwrap()), json!({"name": "bob"}));
            }
            other => panic!("{enc:?}: {other:?}"),
        }
        let mut members = ann.presence("room").await.unwrap();
        members.sort_by(|a, b| a.user.cmp(&b.user));
        let who: Vec<_> = members
            .iter()
            .map(|m| (m.conn.as_str(), m.user.as_deref()))
            .collect();
        assert_eq!(who, [(&*ann_conn, Some("ann")), (&*bob_conn, Some("bob"))]);
        assert_eq!(
            value(members[1].info.as_ref().unwrap()),
            json!({"name": "bob"})
        );
        let stats = ann.presence_stats("room").await.unwrap();
        assert_eq!((stats.connections, stats.users), (2, 2));

        // Presence state: set, seen by the others, listed, cleared.
        bob.set_presence_state("room", Some(json_payload(json!({"typing": true}))), None)
            .await
            .unwrap();
        match next_event(&mut room).await {
            SubscriptionEvent::State(s) => {
                assert_eq!(s.conn, bob_conn);
                assert_eq!(value(s.state.as_ref().unwrap()), json!({"typing": true}));
            }
            other => panic!("{other:?}"),
        }
        let listed = ann.presence("room").await.unwrap();
        let bob_member = listed.iter().find(|m| m.conn == bob_conn).unwrap();
        assert_eq!(
            value(bob_member.state.as_ref().unwrap()),
            json!({"typing": true})
        );
        bob.set_presence_state("room", None, None).await.unwrap();
        match next_event(&mut room).await {
            SubscriptionEvent::State(s) => assert_eq!(s.state, None, "cleared"),
            other => panic!("{other:?}"),
        }
        let e = bob
            .set_presence_state("elsewhere", Some(json_payload(json!(1))), None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NOT_SUBSCRIBED));
        let e = bob
            .set_presence_state("room", Some(Payload::binary(vec![1u8])), None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "bytes are no presence state");

        // Last seen: online while subscribed, a time once gone.
        let seen = ann.last_seen("room", "bob").await.unwrap();
        assert!(seen.online);
        bob_room.unsubscribe().await.unwrap();
        match next_event(&mut room).await {
            SubscriptionEvent::Leave(l) => {
                assert_eq!(
                    (l.conn.as_str(), l.user.as_deref()),
                    (&*bob_conn, Some("bob"))
                )
            }
            other => panic!("{other:?}"),
        }
        let seen = ann.last_seen("room", "bob").await.unwrap();
        assert!(!seen.online);
        assert!(seen.last_seen_ms.is_some());
        let never = ann.last_seen("room", "zed").await.unwrap();
        assert_eq!((never.online, never.last_seen_ms), (false, None));

        // History: all, a page after an offset, the newest, the position alone.
        for i in 1..=5 {
            ann.publish("room", json_payload(json!(i))).await.unwrap();
        }
        for i in 1..=5 {
            assert_eq!(next_publication(&mut room).await.offset, i);
        }
        let all = bob
            .history("room", HistoryOptions::default())
            .await
            .unwrap();
        assert_eq!(offsets(&all), [1, 2, 3, 4, 5]);
        assert_eq!(value(&all.publications[0].payload), json!(1));
        let page = bob
            .history("room", HistoryOptions::default().since(2).limit(2))
            .await
            .unwrap();
        assert_eq!(offsets(&page), [3, 4]);
        let newest = bob
            .history("room", HistoryOptions::default().limit(1).reverse())
            .await
            .unwrap();
        assert_eq!(offsets(&newest), [5]);
        let position = bob
            .history("room", HistoryOptions::default().limit(0))
            .await
            .unwrap();
        assert!(position.publications.is_empty());
        assert_eq!(position.position.offset, 5);
        assert_eq!(position.position.epoch, all.position.epoch);

        // Metadata: a connection's own, merged; a channel's; another user's is refused.
        ann.set_metadata(json_payload(json!({"device": "ios", "v": 1})), false)
            .await
            .unwrap();
        ann.set_metadata(json_payload(json!({"status": "away"})), true)
            .await
            .unwrap();
        let mine = ann
            .metadata(MetaTarget::Connection(ann_conn.clone()))
            .await
            .unwrap();
        assert_eq!(
            value(&mine),
            json!({"device": "ios", "v": 1, "status": "away"})
        );
        let mut topic = serde_json::Map::new();
        topic.insert("topic".into(), json!("planning"));
        server
            .node()
            .set_channel_metadata("room", topic, false)
            .await
            .unwrap();
        let room_meta = ann
            .metadata(MetaTarget::Channel("room".into()))
            .await
            .unwrap();
        assert_eq!(value(&room_meta), json!({"topic": "planning"}));
        let own_user = ann.metadata(MetaTarget::User("ann".into())).await.unwrap();
        assert_eq!(value(&own_user), json!({}));
        let e = ann
            .metadata(MetaTarget::User("bob".into()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::PERMISSION_DENIED));
        let e = ann
            .set_metadata(json_payload(json!([1, 2])), false)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BAD_REQUEST), "not an object");

        // Echoes: ann's other connection joining a channel is told to ann's connections.
        let mut pushes = ann.pushes();
        let ann2 = user(&server, "ann", enc).await;
        let ann2_conn = ann2.connection().unwrap().conn;
        let _sub = ann2
            .subscribe("room", SubscribeOptions::default())
            .await
            .unwrap();
        let joined = loop {
            match within("an echo", pushes.next()).await {
                Some(PushEvent::Echo(e)) if e.kind == EchoKind::Joined => break e,
                Some(PushEvent::Echo(_)) => continue, // `connected` comes first
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(joined.conn, ann2_conn);
        assert_eq!(joined.channel.as_deref(), Some("room"));
        server.shutdown().await;
    }
}

#[tokio::test]
async fn presence_of_a_server_side_subscription_comes_with_the_pushes() {
    let server = users_server().await;
    let ann = user(&server, "ann", plexus_client::Encoding::Json).await;
    let mut pushes = ann.pushes();
    server
        .node()
        .subscribe_connection(conn_id(&ann), "lobby")
        .await
        .unwrap();
    let bob = user(&server, "bob", plexus_client::Encoding::Json).await;
    let _b = bob
        .subscribe("lobby", SubscribeOptions::default())
        .await
        .unwrap();
    match within("a join", pushes.next()).await {
        Some(PushEvent::Join(j)) => assert_eq!(j.user.as_deref(), Some("bob")),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

/// A server whose users authenticate in `connect` with their name as the token, so that the
/// client's `sync` is sent.
async fn mail_server() -> RunningServer {
    start(
        dev(any_port())
            .anonymous(false)
            .auth_hook(|req: AuthRequest| async move {
                match req.token {
                    Some(user) => Ok(Identity::new(user)),
                    None => Err(Error::new(ErrorCode::AUTH_FAILED, "a token is needed")),
                }
            }),
    )
    .await
}

async fn send_mail(server: &RunningServer, user: &str, n: u64) -> u64 {
    let outcome = server
        .node()
        .send_durable(user, json_payload(json!({ "n": n })), None)
        .await
        .unwrap();
    assert!(outcome.registered);
    outcome.seq.unwrap()
}

async fn pending(server: &RunningServer, user: &str) -> Vec<u64> {
    server
        .node()
        .engine()
        .mailbox
        .pending(user)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect()
}

async fn next_mail(mailbox: &mut Mailbox) -> Mail {
    within("a mail", mailbox.next())
        .await
        .expect("the mailbox ended")
}

/// A request after the mail handled so far: its acknowledgement, if one is due, goes out (and
/// is handled by the server) before this request's reply comes back.
async fn roundtrip(client: &Client) {
    client.presence_stats("probe").await.unwrap();
}

/// Drops the client's connection and waits until it is back.
async fn reconnect(server: &RunningServer, client: &Client) {
    let mut events = client.events();
    server
        .node()
        .disconnect_connection(conn_id(client), CloseCode::RECONNECT, "again")
        .await
        .unwrap();
    wait_event(&mut events, |e| match e {
        Event::Connected {
            reconnected: true, ..
        } => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn durable_mail_to_an_offline_user_arrives_in_order_is_acknowledged_and_not_redelivered() {
    for enc in both() {
        let server = mail_server().await;
        // The user's inbox exists from its first connection.
        let first = Client::connect(config(server.ws_url(), enc).token("ann"))
            .await
            .unwrap();
        first.disconnect().await;
        for n in 1..=5 {
            assert_eq!(send_mail(&server, "ann", n).await, n);
        }

        let client = Client::connect(config(server.ws_url(), enc).token("ann"))
            .await
            .unwrap();
        let mut mailbox = client.mail().unwrap();
        for n in 1..=5 {
            let mail = next_mail(&mut mailbox).await;
            assert_eq!(mail.seq, n, "{enc:?}: in order");
            assert_eq!(value(&mail.payload), json!({ "n": n }));
            // The handler returns: the mail is dropped, and so acknowledged.
        }
        roundtrip(&client).await;
        assert_eq!(pending(&server, "ann").await, Vec::<u64>::new());

        // Not delivered again on the next connection; live mail goes on.
        reconnect(&server, &client).await;
        let seq = send_mail(&server, "ann", 6).await;
        assert_eq!(next_mail(&mut mailbox).await.seq, seq);
        roundtrip(&client).await;
        assert_eq!(pending(&server, "ann").await, Vec::<u64>::new());

        // `sync: false` drops the backlog: only what is sent afterwards arrives.
        client.disconnect().await;
        send_mail(&server, "ann", 7).await;
        let nosync = Client::connect(config(server.ws_url(), enc).token("ann").sync(false))
            .await
            .unwrap();
        let mut nosync_mail = nosync.mail().unwrap();
        let seq = send_mail(&server, "ann", 8).await;
        assert_eq!(next_mail(&mut nosync_mail).await.seq, seq, "7 was dropped");
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_mail_let_go_unhandled_comes_again_and_holds_later_acks_back() {
    let server = mail_server().await;
    let first = Client::connect(config(server.ws_url(), plexus_client::Encoding::Json).token("bo"))
        .await
        .unwrap();
    first.disconnect().await;
    for n in 1..=3 {
        send_mail(&server, "bo", n).await;
    }
    let client = Client::connect(
        config(server.ws_url(), plexus_client::Encoding::Json)
            .token("bo")
            .mail_ack(MailAck::Explicit),
    )
    .await
    .unwrap();
    let mut mailbox = client.mail().unwrap();
    let one = next_mail(&mut mailbox).await;
    let two = next_mail(&mut mailbox).await;
    let three = next_mail(&mut mailbox).await;
    three.ack();
    one.ack();
    drop(two); // explicit mode: dropped is not handled
    roundtrip(&client).await;
    assert_eq!(
        pending(&server, "bo").await,
        [2, 3],
        "acknowledged up to the unhandled one only"
    );

    reconnect(&server, &client).await;
    // 2 comes again; 3, handled already, is not handed out twice but acknowledged with it.
    let again = next_mail(&mut mailbox).await;
    assert_eq!(again.seq, 2);
    again.ack();
    roundtrip(&client).await;
    assert_eq!(pending(&server, "bo").await, Vec::<u64>::new());
    let seq = send_mail(&server, "bo", 4).await;
    assert_eq!(next_mail(&mut mailbox).await.seq, seq);
    server.shutdown().await;
}

#[tokio::test]
async fn notices_come_with_the_pushes() {
    for enc in both() {
        let server = users_server().await;
        let ann = user(&server, "ann", enc).await;
        let mut pushes = ann.pushes();
        let mut room = ann
            .subscribe("lobby", SubscribeOptions::default())
            .await
            .unwrap();
        server
            .node()
            .notify(
                "lobby",
                plexus_core::Emit::event("roomModeChanged", json_payload(json!(["lobby", true]))),
                None,
            )
            .await
            .unwrap();
        let notice = loop {
            match within("a notice", pushes.next()).await {
                Some(PushEvent::Notice(n)) => break n,
                Some(PushEvent::Echo(_) | PushEvent::Join(_)) => continue,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(notice.channel, "lobby");
        assert_eq!(notice.event.as_deref(), Some("roomModeChanged"));
        assert_eq!(notice.payload, json_payload(json!(["lobby", true])));
        // A notice is not a publication: the next one on the subscription has offset 1.
        server
            .node()
            .publish("lobby", json_payload(json!(1)))
            .await
            .unwrap();
        loop {
            match next_event(&mut room).await {
                SubscriptionEvent::Publication(p) => {
                    assert_eq!(p.offset, 1);
                    break;
                }
                _ => continue,
            }
        }
        server.shutdown().await;
    }
}
