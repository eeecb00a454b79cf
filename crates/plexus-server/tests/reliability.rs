//! History, recovery, presence, metadata, durable mailboxes and echoes over real WebSocket
//! connections, with the seeds' scenarios translated (chat-service history sync, Mesh presence
//! and presence state), and a stress test of recovery under random disconnects.

mod common;

use common::*;
use plexus_core::auth::UpgradeDecision;
use plexus_core::{
    Access, ChannelMatch, ChannelPolicy, ErrorCode, HistoryOptions, Identity, JoinLeave, Namespace,
    Payload, UpgradeRequest,
};
use plexus_protocol::client::{
    AckParams, ChannelParams, ConnectParams, GetMetaParams, HistoryParams, LastSeenParams, Op,
    Position, PresenceStateParams, PublishParams, SetMetaParams, SubscribeParams,
};
use plexus_protocol::server::{
    AckResult, Empty, HistoryResult, LastSeenResult, MetaResult, PresenceResult,
    PresenceStatsResult, PublishResult, Push, SubscribeResult,
};
use plexus_protocol::{DataField, Encoding};
use std::sync::Arc;
use std::time::Duration;

fn json(v: serde_json::Value) -> Payload {
    Payload::json(&v).unwrap()
}

fn data(v: serde_json::Value) -> DataField {
    json(v).to_fields().0.unwrap()
}

fn history(size: usize) -> HistoryOptions {
    HistoryOptions {
        size,
        ttl: Duration::from_secs(300),
    }
}

/// Channels `h:*` keep `size` publications with recovery; `p:*` track presence (`mode`); `plain:*`
/// keep nothing.
fn policy(size: usize, mode: JoinLeave) -> ChannelPolicy {
    let mut p = ChannelPolicy::default();
    let open = |name: &str, prefix: &str| {
        Namespace::new(name, ChannelMatch::Prefix(prefix.into()))
            .subscribe(Access::Anyone)
            .publish(Access::Anyone)
    };
    p.add_namespace(open("history", "h:").recovery(history(size)));
    p.add_namespace(open("presence", "p:").presence(mode));
    p.add_namespace(open("plain", "plain:"));
    p
}

/// A dev server whose connections are user `?user=NAME` (anonymous without it).
fn server(size: usize, mode: JoinLeave) -> plexus_server::ServerBuilder {
    dev()
        .channels(policy(size, mode))
        .upgrade_hook(|req: Arc<UpgradeRequest>| async move {
            UpgradeDecision::Accept(
                req.query_param("user")
                    .map(|u| Identity::new(u).with_info(json(serde_json::json!({"name": u})))),
            )
        })
}

fn sub(channel: &str) -> Op {
    Op::Subscribe(SubscribeParams::new(channel))
}

fn sub_since(channel: &str, offset: u64, epoch: &str) -> Op {
    Op::Subscribe(SubscribeParams {
        since: Some(Position {
            offset,
            epoch: epoch.into(),
        }),
        ..SubscribeParams::new(channel)
    })
}

fn hist(channel: &str, since: Option<u64>, limit: Option<u32>, reverse: bool) -> Op {
    Op::History(HistoryParams {
        channel: channel.into(),
        since,
        limit,
        reverse,
    })
}

fn offsets(r: &HistoryResult) -> Vec<u64> {
    r.publications.iter().map(|p| p.offset).collect()
}

async fn publish_n(server: &plexus_server::RunningServer, channel: &str, n: u64) {
    for i in 0..n {
        server
            .node()
            .publish(channel, json(serde_json::json!({"i": i})))
            .await
            .unwrap();
    }
}

both_encodings!(
    history_synchronisation_like_chat_service,
    |enc| async move {
        // chat-service "support a history synchronisation": ids after 0 → [1,2] (it lists newest
        // first; we list oldest first unless `reverse`), after 1 → [2], after 2 → [].
        let server = start(server(10, JoinLeave::Off)).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        publish_n(&server, "h:room", 2).await;
        let r: HistoryResult = c
            .request(hist("h:room", Some(0), Some(10), false))
            .await
            .unwrap();
        assert_eq!(offsets(&r), vec![1, 2]);
        assert_eq!(r.offset, 2, "roomHistoryInfo: the last id");
        let r: HistoryResult = c
            .request(hist("h:room", Some(1), Some(10), false))
            .await
            .unwrap();
        assert_eq!(offsets(&r), vec![2]);
        let r: HistoryResult = c
            .request(hist("h:room", Some(2), Some(10), false))
            .await
            .unwrap();
        assert!(r.publications.is_empty());
        // roomRecentHistory: newest first.
        let r: HistoryResult = c
            .request(hist("h:room", None, Some(10), true))
            .await
            .unwrap();
        assert_eq!(offsets(&r), vec![2, 1]);
        // Limit 0 gives only the position (roomHistoryInfo).
        let r: HistoryResult = c
            .request(hist("h:room", None, Some(0), false))
            .await
            .unwrap();
        assert!(r.publications.is_empty());
        assert_eq!(r.offset, 2);
        // A namespace without history has none to read ("drop a history if the limit is zero").
        publish_n(&server, "plain:x", 1).await;
        let e = c
            .request::<HistoryResult>(hist("plain:x", None, Some(10), false))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NOT_AVAILABLE);
    }
);

both_encodings!(history_sync_with_respect_to_the_limit, |enc| async move {
    // chat-service "sync with respect to the limit": historyMaxGetMessages 2, 3 messages.
    let mut builder = server(10, JoinLeave::Off);
    builder.limits_mut().client_history_max = 2;
    let server = start(builder).await;
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    publish_n(&server, "h:room", 3).await;
    for (since, expected) in [(0, vec![1, 2]), (1, vec![2, 3]), (2, vec![3]), (3, vec![])] {
        let r: HistoryResult = c
            .request(hist("h:room", Some(since), Some(10), false))
            .await
            .unwrap();
        assert_eq!(offsets(&r), expected, "since {since}");
    }
});

both_encodings!(
    history_sync_with_respect_to_the_history_size,
    |enc| async move {
        // chat-service "sync with respect to a history size": historyMaxSize 2, 3 messages.
        let server = start(server(2, JoinLeave::Off)).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        publish_n(&server, "h:room", 3).await;
        for (since, expected) in [(0, vec![2, 3]), (1, vec![2, 3]), (2, vec![3]), (3, vec![])] {
            let r: HistoryResult = c
                .request(hist("h:room", Some(since), Some(10), false))
                .await
                .unwrap();
            assert_eq!(offsets(&r), expected, "since {since}");
        }
        // "truncate a long history": size 1 would keep only the last; here size 2 keeps the last 2.
        let r: HistoryResult = c.request(hist("h:room", None, None, false)).await.unwrap();
        assert_eq!(offsets(&r), vec![2, 3]);
    }
);

both_encodings!(history_on_subscribe_like_mesh, |enc| async move {
    // Mesh: 5 publishes with history 10, subscribe with historyLimit 3 → the last 3.
    let server = start(server(10, JoinLeave::Off)).await;
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    publish_n(&server, "h:news", 5).await;
    let op = Op::Subscribe(SubscribeParams {
        history: Some(3),
        ..SubscribeParams::new("h:news")
    });
    let r: SubscribeResult = c.request(op).await.unwrap();
    assert_eq!(
        r.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(r.offset, 5);
    assert_eq!(r.recovered, None);
    server
        .node()
        .publish("h:news", json(serde_json::json!("live")))
        .await
        .unwrap();
    let Push::Pub(p) = c.next_push().await else {
        panic!()
    };
    assert_eq!(
        p.offset, 6,
        "the live stream continues right after the history"
    );
});

both_encodings!(
    a_client_that_misses_100_publications_recovers_all_in_order,
    |enc| async move {
        let server = start(server(1000, JoinLeave::Off)).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let first: SubscribeResult = c.request(sub("h:feed")).await.unwrap();
        publish_n(&server, "h:feed", 3).await;
        let mut last = first.offset;
        for _ in 0..3 {
            let Push::Pub(p) = c.next_push().await else {
                panic!()
            };
            assert_eq!(p.offset, last + 1);
            last = p.offset;
        }
        drop(c);
        publish_n(&server, "h:feed", 100).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let r: SubscribeResult = c
            .request(sub_since("h:feed", last, &first.epoch))
            .await
            .unwrap();
        assert_eq!((r.recovered, r.reason.as_deref()), (Some(true), None));
        assert_eq!(
            r.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
            (4..=103).collect::<Vec<_>>()
        );
        assert_eq!(
            r.publications[0].payload().unwrap(),
            json(serde_json::json!({"i": 0}))
        );
        assert_eq!(r.offset, 103);
        server
            .node()
            .publish("h:feed", Payload::null())
            .await
            .unwrap();
        let Push::Pub(p) = c.next_push().await else {
            panic!()
        };
        assert_eq!(
            p.offset, 104,
            "no duplicate and no gap after the recovered ones"
        );
        assert!(c.silent_for(Duration::from_millis(100)).await);
    }
);

both_encodings!(
    recovery_refuses_with_a_reason_and_nothing_partial,
    |enc| async move {
        let mut builder = server(10, JoinLeave::Off);
        builder.limits_mut().recovery_max_publications = 12;
        let server = start(builder).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let pos: SubscribeResult = c.request(sub("h:x")).await.unwrap();
        let _: Empty = c
            .request(Op::Unsubscribe(
                plexus_protocol::client::UnsubscribeParams {
                    channel: "h:x".into(),
                },
            ))
            .await
            .unwrap();
        publish_n(&server, "h:x", 20).await;
        let cases = [
            // 12 missed (the limit), but 9 and 10 are no longer kept (history 10).
            (8, pos.epoch.clone(), "history_trimmed"),
            // 19 missed and trimmed: the first applicable reason is `too_many` (§4.6).
            (1, pos.epoch.clone(), "too_many"),
            (5, "another-epoch".to_owned(), "epoch_changed"),
            (99, pos.epoch.clone(), "invalid_position"),
        ];
        for (offset, epoch, reason) in cases {
            let r: SubscribeResult = c.request(sub_since("h:x", offset, &epoch)).await.unwrap();
            assert_eq!(
                (r.recovered, r.reason.as_deref()),
                (Some(false), Some(reason)),
                "since {offset}"
            );
            assert!(r.publications.is_empty(), "never a partial recovery");
            assert_eq!(r.offset, 20);
            let _: Empty = c
                .request(Op::Unsubscribe(
                    plexus_protocol::client::UnsubscribeParams {
                        channel: "h:x".into(),
                    },
                ))
                .await
                .unwrap();
        }
        let r: SubscribeResult = c.request(sub_since("h:x", 16, &pos.epoch)).await.unwrap();
        assert_eq!(r.recovered, Some(true), "within the history and the limit");
        assert_eq!(r.publications.len(), 4);
        publish_n(&server, "plain:y", 1).await;
        let r: SubscribeResult = c.request(sub_since("plain:y", 0, "e")).await.unwrap();
        assert_eq!(
            (r.recovered, r.reason.as_deref()),
            (Some(false), Some("not_available"))
        );
    }
);

both_encodings!(recovery_is_seamless_while_publishing, |enc| async move {
    let mut builder = server(5000, JoinLeave::Off);
    builder.limits_mut().recovery_max_publications = 5000;
    let server = start(builder).await;
    let node = server.node().clone();
    let mut c = TestClient::connect(&server.ws_url(), enc).await;
    let start_pos: SubscribeResult = c.request(sub("h:busy")).await.unwrap();
    let _: Empty = c
        .request(Op::Unsubscribe(
            plexus_protocol::client::UnsubscribeParams {
                channel: "h:busy".into(),
            },
        ))
        .await
        .unwrap();
    // A publisher runs while the client subscribes with recovery.
    let publisher = tokio::spawn(async move {
        for i in 0..2000u64 {
            node.publish("h:busy", json(serde_json::json!(i)))
                .await
                .unwrap();
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r: SubscribeResult = c
        .request(sub_since("h:busy", start_pos.offset, &start_pos.epoch))
        .await
        .unwrap();
    assert_eq!(r.recovered, Some(true), "{:?}", r.reason);
    let mut seen: Vec<u64> = r.publications.iter().map(|p| p.offset).collect();
    publisher.await.unwrap();
    while seen.last().copied().unwrap_or(0) < 2000 {
        let Push::Pub(p) = c.next_push().await else {
            panic!()
        };
        seen.push(p.offset);
    }
    assert_eq!(
        seen,
        (1..=2000).collect::<Vec<_>>(),
        "every offset once, in order, across history and live"
    );
});

/// A broker that loses one publication (and one durable message's live push) on its way to the
/// node (like a Redis pub/sub drop).
struct Lossy {
    inner: plexus_core::memory::MemoryBroker,
    drop_offset: u64,
    drop_mail: u64,
}

struct DropOne {
    inner: Arc<dyn plexus_core::engine::EngineHandler>,
    drop_offset: u64,
    drop_mail: u64,
}

impl plexus_core::engine::EngineHandler for DropOne {
    fn publication(&self, p: &plexus_core::Publication, exclude: Option<&plexus_core::Exclude>) {
        if p.offset != self.drop_offset {
            self.inner.publication(p, exclude);
        }
    }
    fn control(&self, c: plexus_core::engine::Control) {
        if let plexus_core::engine::Control::Mail { mail, .. } = &c
            && mail.seq == self.drop_mail
        {
            return;
        }
        self.inner.control(c)
    }
}

#[async_trait::async_trait]
impl plexus_core::engine::Broker for Lossy {
    fn run(&self, node: plexus_core::NodeId, handler: Arc<dyn plexus_core::engine::EngineHandler>) {
        self.inner.run(
            node,
            Arc::new(DropOne {
                inner: handler,
                drop_offset: self.drop_offset,
                drop_mail: self.drop_mail,
            }),
        )
    }
    async fn publish(
        &self,
        channel: &str,
        payload: Payload,
        publisher: Option<plexus_core::ClientInfo>,
        options: plexus_core::engine::PublishOptions,
    ) -> Result<plexus_core::StreamPosition, plexus_core::EngineError> {
        self.inner
            .publish(channel, payload, publisher, options)
            .await
    }
    async fn subscribe(&self, channel: &str) -> Result<(), plexus_core::EngineError> {
        self.inner.subscribe(channel).await
    }
    async fn unsubscribe(&self, channel: &str) -> Result<(), plexus_core::EngineError> {
        self.inner.unsubscribe(channel).await
    }
    async fn position(
        &self,
        channel: &str,
    ) -> Result<plexus_core::StreamPosition, plexus_core::EngineError> {
        self.inner.position(channel).await
    }
    async fn history(
        &self,
        channel: &str,
        query: plexus_core::engine::HistoryQuery,
    ) -> Result<plexus_core::engine::HistoryPage, plexus_core::EngineError> {
        self.inner.history(channel, query).await
    }
    async fn remove_history(&self, channel: &str) -> Result<(), plexus_core::EngineError> {
        self.inner.remove_history(channel).await
    }
    async fn control(
        &self,
        control: plexus_core::engine::Control,
    ) -> Result<(), plexus_core::EngineError> {
        self.inner.control(control).await
    }
    async fn remote_connection_exists(
        &self,
        conn: plexus_core::ConnId,
    ) -> Result<bool, plexus_core::EngineError> {
        self.inner.remote_connection_exists(conn).await
    }
}

both_encodings!(
    a_live_gap_is_detected_and_repaired_by_recovery,
    |enc| async move {
        let mut engine = plexus_core::memory::memory_engine(Default::default());
        engine.broker = Arc::new(Lossy {
            inner: plexus_core::memory::MemoryBroker::new(Default::default()),
            drop_offset: 3,
            drop_mail: 0,
        });
        let server = start_as_is(server(100, JoinLeave::Off).engine(engine)).await;
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let pos: SubscribeResult = c.request(sub("h:lossy")).await.unwrap();
        publish_n(&server, "h:lossy", 6).await;
        let mut seen = Vec::new();
        let last = loop {
            match c.next_push().await {
                Push::Pub(p) => seen.push(p.offset),
                Push::Unsubscribed(u) => {
                    assert_eq!(u.reason, "insufficient_state", "never a silent skip");
                    break *seen.last().unwrap();
                }
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            seen,
            vec![1, 2],
            "offset 3 was lost; 4 was not delivered over the gap"
        );
        assert!(
            c.silent_for(Duration::from_millis(100)).await,
            "nothing after the gap reaches the detached subscription"
        );
        let r: SubscribeResult = c
            .request(sub_since("h:lossy", last, &pos.epoch))
            .await
            .unwrap();
        assert_eq!(r.recovered, Some(true));
        assert_eq!(
            r.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
    }
);

both_encodings!(
    presence_lists_joins_leaves_and_counts_like_chat_service_and_mesh,
    |enc| async move {
        let server = start(server(0, JoinLeave::Users)).await;
        let url = |u: &str| format!("{}?user={u}", server.ws_url());
        let mut ann = TestClient::connect(&url("ann"), enc).await;
        let r: SubscribeResult = ann.request(sub("p:room")).await.unwrap();
        assert_eq!(r.offset, 0);
        let r: PresenceResult = ann
            .request(Op::Presence(ChannelParams {
                channel: "p:room".into(),
            }))
            .await
            .unwrap();
        assert_eq!(
            r.members.len(),
            1,
            "the initial list contains the member itself"
        );
        let mut bob = TestClient::connect(&url("bob"), enc).await;
        let _: SubscribeResult = bob.request(sub("p:room")).await.unwrap();
        let Push::Join(j) = ann.next_push().await else {
            panic!("expected join")
        };
        assert_eq!(
            (j.channel.as_str(), j.user.as_deref()),
            ("p:room", Some("bob"))
        );
        assert!(j.info.is_some(), "join carries the user's info");
        // A second connection of bob is not a new user: no join.
        let mut bob2 = TestClient::connect(&url("bob"), enc).await;
        let _: SubscribeResult = bob2.request(sub("p:room")).await.unwrap();
        let stats: PresenceStatsResult = ann
            .request(Op::PresenceStats(ChannelParams {
                channel: "p:room".into(),
            }))
            .await
            .unwrap();
        assert_eq!((stats.connections, stats.users), (3, 2));
        let r: PresenceResult = ann
            .request(Op::Presence(ChannelParams {
                channel: "p:room".into(),
            }))
            .await
            .unwrap();
        let mut users: Vec<_> = r.members.iter().filter_map(|m| m.user.clone()).collect();
        users.sort();
        assert_eq!(users, vec!["ann", "bob", "bob"]);
        drop(bob2);
        let seen: LastSeenResult = ann
            .request(Op::LastSeen(LastSeenParams {
                channel: "p:room".into(),
                user: "bob".into(),
            }))
            .await
            .unwrap();
        assert!(seen.online, "bob still has a connection");
        // bob's last connection leaves: one leave, and bob was last seen now.
        drop(bob);
        let Push::Leave(l) = ann.next_push().await else {
            panic!("expected leave")
        };
        assert_eq!(l.user.as_deref(), Some("bob"));
        let seen: LastSeenResult = ann
            .request(Op::LastSeen(LastSeenParams {
                channel: "p:room".into(),
                user: "bob".into(),
            }))
            .await
            .unwrap();
        assert!(!seen.online && seen.last_seen_ms.is_some());
        let never: LastSeenResult = ann
            .request(Op::LastSeen(LastSeenParams {
                channel: "p:room".into(),
                user: "zed".into(),
            }))
            .await
            .unwrap();
        assert_eq!(
            (never.online, never.last_seen_ms),
            (false, None),
            "an empty seen info for unseen users"
        );
        let stats: PresenceStatsResult = ann
            .request(Op::PresenceStats(ChannelParams {
                channel: "p:room".into(),
            }))
            .await
            .unwrap();
        assert_eq!((stats.connections, stats.users), (1, 1), "cleanup on close");
        // Untracked channels have no presence.
        let _: SubscribeResult = ann.request(sub("plain:z")).await.unwrap();
        let e = ann
            .request::<PresenceResult>(Op::Presence(ChannelParams {
                channel: "plain:z".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NOT_AVAILABLE);
    }
);

both_encodings!(
    per_connection_joins_when_the_namespace_asks,
    |enc| async move {
        let server = start(server(0, JoinLeave::Connections)).await;
        let url = format!("{}?user=ann", server.ws_url());
        let mut a = TestClient::connect(&url, enc).await;
        let _: SubscribeResult = a.request(sub("p:r")).await.unwrap();
        let mut a2 = TestClient::connect(&url, enc).await;
        let _: SubscribeResult = a2.request(sub("p:r")).await.unwrap();
        let Push::Join(j) = a.next_push().await else {
            panic!()
        };
        assert_eq!(j.conn, a2.hello.conn);
        let _: Empty = a2
            .request(Op::Unsubscribe(
                plexus_protocol::client::UnsubscribeParams {
                    channel: "p:r".into(),
                },
            ))
            .await
            .unwrap();
        let Push::Leave(l) = a.next_push().await else {
            panic!()
        };
        assert_eq!(l.conn, a2.hello.conn);
        // None after unsubscribe.
        let _: Empty = a
            .request(Op::Unsubscribe(
                plexus_protocol::client::UnsubscribeParams {
                    channel: "p:r".into(),
                },
            ))
            .await
            .unwrap();
        let _: SubscribeResult = a2.request(sub("p:r")).await.unwrap();
        assert!(a.silent_for(Duration::from_millis(100)).await);
    }
);

fn state(channel: &str, v: serde_json::Value, expire_ms: Option<u64>) -> Op {
    Op::PresenceState(PresenceStateParams {
        channel: channel.into(),
        state: data(v),
        expire_ms,
    })
}

both_encodings!(presence_state_like_mesh, |enc| async move {
    let server = start(server(0, JoinLeave::Off)).await;
    let mut a = TestClient::connect(&format!("{}?user=a", server.ws_url()), enc).await;
    let mut b = TestClient::connect(&format!("{}?user=b", server.ws_url()), enc).await;
    let _: SubscribeResult = a.request(sub("p:s")).await.unwrap();
    // Publishing a state where one is not present is refused.
    let e = b
        .request::<Empty>(state("p:s", serde_json::json!({"typing": true}), None))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NOT_SUBSCRIBED);
    let _: SubscribeResult = b.request(sub("p:s")).await.unwrap();
    let _: Empty = b
        .request(state("p:s", serde_json::json!({"typing": true}), None))
        .await
        .unwrap();
    let Push::State(s) = a.next_push().await else {
        panic!()
    };
    assert_eq!(
        (s.conn.as_str(), s.user.as_deref()),
        (b.hello.conn.as_str(), Some("b"))
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(s.state.unwrap().0.get()).unwrap(),
        serde_json::json!({"typing": true})
    );
    // Overwrite keeps the latest; the presence list carries it.
    let _: Empty = b
        .request(state("p:s", serde_json::json!({"typing": false}), None))
        .await
        .unwrap();
    let _ = a.next_push().await;
    let r: PresenceResult = a
        .request(Op::Presence(ChannelParams {
            channel: "p:s".into(),
        }))
        .await
        .unwrap();
    let bs = r.members.iter().find(|m| m.conn == b.hello.conn).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(bs.state.as_ref().unwrap().0.get()).unwrap(),
        serde_json::json!({"typing": false})
    );
    // Clear with null.
    let _: Empty = b
        .request(state("p:s", serde_json::Value::Null, None))
        .await
        .unwrap();
    let Push::State(s) = a.next_push().await else {
        panic!()
    };
    assert!(s.state.is_none(), "a cleared state has no `state`");
    // Expiry clears it and tells the channel.
    let _: Empty = b
        .request(state("p:s", serde_json::json!("away"), Some(150)))
        .await
        .unwrap();
    let Push::State(s) = a.next_push().await else {
        panic!()
    };
    assert!(s.state.is_some());
    let Push::State(s) = a.next_push().await else {
        panic!("expected the expiry")
    };
    assert!(s.state.is_none());
    // Setting the state again (even to the same value) restarts its expiry.
    let _: Empty = b
        .request(state("p:s", serde_json::json!("busy"), Some(100)))
        .await
        .unwrap();
    let _ = a.next_push().await;
    let _: Empty = b
        .request(state("p:s", serde_json::json!("busy"), Some(5000)))
        .await
        .unwrap();
    let _ = a.next_push().await;
    assert!(
        a.silent_for(Duration::from_millis(400)).await,
        "the first timer must not clear the renewed state"
    );
    let r: PresenceResult = a
        .request(Op::Presence(ChannelParams {
            channel: "p:s".into(),
        }))
        .await
        .unwrap();
    assert!(r.members.iter().any(|m| m.state.is_some()));
    // Cleared on leave: rejoining has none.
    let _: Empty = b
        .request(state("p:s", serde_json::json!(1), None))
        .await
        .unwrap();
    let _ = a.next_push().await;
    let _: Empty = b
        .request(Op::Unsubscribe(
            plexus_protocol::client::UnsubscribeParams {
                channel: "p:s".into(),
            },
        ))
        .await
        .unwrap();
    let _: SubscribeResult = b.request(sub("p:s")).await.unwrap();
    let r: PresenceResult = a
        .request(Op::Presence(ChannelParams {
            channel: "p:s".into(),
        }))
        .await
        .unwrap();
    assert!(r.members.iter().all(|m| m.state.is_none()));
});

both_encodings!(
    metadata_on_connections_users_and_channels,
    |enc| async move {
        let server = start(server(0, JoinLeave::Off)).await;
        let node = server.node().clone();
        let mut a = TestClient::connect(&format!("{}?user=a", server.ws_url()), enc).await;
        let b = TestClient::connect(&format!("{}?user=b", server.ws_url()), enc).await;
        let a_id: plexus_core::ConnId = a.hello.conn.parse().unwrap();
        let set = |v: serde_json::Value, merge: bool| {
            Op::SetMeta(SetMetaParams {
                value: data(v),
                merge,
            })
        };
        let _: Empty = a
            .request(set(serde_json::json!({"color": "red", "x": 1}), false))
            .await
            .unwrap();
        let _: Empty = a
            .request(set(serde_json::json!({"x": 2}), true))
            .await
            .unwrap();
        let get = |conn: Option<String>, user: Option<&str>, channel: Option<&str>| {
            Op::GetMeta(GetMetaParams {
                conn,
                user: user.map(str::to_owned),
                channel: channel.map(str::to_owned),
            })
        };
        let r: MetaResult = a
            .request(get(Some(a.hello.conn.clone()), None, None))
            .await
            .unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(r.value.0.get()).unwrap(),
            serde_json::json!({"color": "red", "x": 2})
        );
        let e = a
            .request::<MetaResult>(get(Some(b.hello.conn.clone()), None, None))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::PERMISSION_DENIED);
        // The server reads it by id, and it never touches routing: sends still reach the connection.
        let meta = node.connection_metadata(a_id).await.unwrap().unwrap();
        assert_eq!(meta["color"], "red");
        assert!(
            node.send_to_connection(a_id, Payload::null())
                .await
                .unwrap()
        );
        // User metadata.
        node.set_user_metadata(
            "a",
            serde_json::from_value(serde_json::json!({"plan": "pro"})).unwrap(),
            false,
        )
        .await
        .unwrap();
        let r: MetaResult = a.request(get(None, Some("a"), None)).await.unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(r.value.0.get()).unwrap(),
            serde_json::json!({"plan": "pro"})
        );
        // Channel metadata: set, merge, list, read by a subscriber, removed with the channel.
        let _: SubscribeResult = a.request(sub("plain:room")).await.unwrap();
        node.set_channel_metadata(
            "plain:room",
            serde_json::from_value(serde_json::json!({"topic": "x"})).unwrap(),
            false,
        )
        .await
        .unwrap();
        node.set_channel_metadata(
            "plain:room",
            serde_json::from_value(serde_json::json!({"owner": "a"})).unwrap(),
            true,
        )
        .await
        .unwrap();
        let r: MetaResult = a
            .request(get(None, None, Some("plain:room")))
            .await
            .unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(r.value.0.get()).unwrap(),
            serde_json::json!({"topic": "x", "owner": "a"})
        );
        assert_eq!(node.channels_with_metadata().await.unwrap().len(), 1);
        let all = node.channel_connections_metadata("plain:room");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, a_id);
        let _: Empty = a
            .request(Op::Unsubscribe(
                plexus_protocol::client::UnsubscribeParams {
                    channel: "plain:room".into(),
                },
            ))
            .await
            .unwrap();
        assert!(
            node.channel_metadata("plain:room").await.unwrap().is_none(),
            "removed with the channel"
        );
        // Size limit.
        let big = serde_json::json!({"blob": "x".repeat(20 * 1024)});
        assert_eq!(
            a.request::<Empty>(set(big, false)).await.unwrap_err().code,
            ErrorCode::LIMIT_EXCEEDED
        );
    }
);

fn connect_sync(sync: bool) -> Op {
    Op::Connect(ConnectParams {
        token: Some("u".into()),
        sync: Some(sync),
        ..Default::default()
    })
}

/// A server whose in-band token is the user name.
fn mail_server() -> plexus_server::ServerBuilder {
    dev()
        .anonymous(false)
        .auth_hook(|req: plexus_core::AuthRequest| async move {
            Ok(Identity::new(req.token.unwrap_or_default()))
        })
}

async fn mails(c: &mut TestClient, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.len() < n {
        if let Push::Mail(m) = c.next_push().await {
            seqs.push(m.seq);
        }
    }
    seqs
}

both_encodings!(
    durable_messages_reach_an_offline_user_in_order_once,
    |enc| async move {
        let server = start(mail_server()).await;
        let node = server.node().clone();
        // Not registered yet: nothing is stored, and the sender learns it (Plezi notify → false).
        let outcome = node.send_durable("u", Payload::null(), None).await.unwrap();
        assert!(!outcome.registered && outcome.seq.is_none());
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let _: plexus_protocol::server::ConnectResult =
            c.request(connect_sync(true)).await.unwrap();
        drop(c);
        for i in 1..=3 {
            let outcome = node
                .send_durable("u", json(serde_json::json!({"n": i})), None)
                .await
                .unwrap();
            assert_eq!((outcome.registered, outcome.seq), (true, Some(i)));
        }
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let _: plexus_protocol::server::ConnectResult =
            c.request(connect_sync(true)).await.unwrap();
        assert_eq!(
            mails(&mut c, 3).await,
            vec![1, 2, 3],
            "the backlog, in order, after the connect reply"
        );
        // Live while connected.
        node.send_durable("u", json(serde_json::json!({"n": 4})), None)
            .await
            .unwrap();
        let Push::Mail(m) = c.next_push().await else {
            panic!()
        };
        assert_eq!(
            (m.seq, m.payload().unwrap()),
            (4, json(serde_json::json!({"n": 4})))
        );
        let r: AckResult = c.request(Op::Ack(AckParams { seq: 3 })).await.unwrap();
        assert_eq!(r.pending, 1);
        drop(c);
        // Reconnect: only what was not acknowledged, and never again after the ack.
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let _: plexus_protocol::server::ConnectResult =
            c.request(connect_sync(true)).await.unwrap();
        assert_eq!(mails(&mut c, 1).await, vec![4]);
        let r: AckResult = c.request(Op::Ack(AckParams { seq: 4 })).await.unwrap();
        assert_eq!(r.pending, 0);
        drop(c);
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let _: plexus_protocol::server::ConnectResult =
            c.request(connect_sync(true)).await.unwrap();
        assert!(
            c.silent_for(Duration::from_millis(150)).await,
            "nothing is delivered twice"
        );
    }
);

both_encodings!(
    a_durable_message_whose_live_push_was_lost_is_delivered_before_the_next,
    |enc| async move {
        let mut engine = plexus_core::memory::memory_engine(Default::default());
        engine.broker = Arc::new(Lossy {
            inner: plexus_core::memory::MemoryBroker::new(Default::default()),
            drop_offset: 0,
            drop_mail: 3,
        });
        let server = start_as_is(mail_server().engine(engine)).await;
        let node = server.node().clone();
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let _: plexus_protocol::server::ConnectResult =
            c.request(connect_sync(true)).await.unwrap();
        for i in 1..=5 {
            node.send_durable("u", json(serde_json::json!({"n": i})), None)
                .await
                .unwrap();
        }
        assert_eq!(
            mails(&mut c, 5).await,
            vec![1, 2, 3, 4, 5],
            "the lost push is repaired from the inbox, in order, nothing twice"
        );
        assert!(c.silent_for(Duration::from_millis(150)).await);
        // Acknowledging the last one leaves nothing: nothing was skipped.
        let r: AckResult = c.request(Op::Ack(AckParams { seq: 5 })).await.unwrap();
        assert_eq!(r.pending, 0);
    }
);

both_encodings!(
    sync_false_drops_the_backlog_and_full_inboxes_are_refused,
    |enc| async move {
        let mut builder = mail_server();
        builder.limits_mut().mailbox_max_messages = 2;
        let server = start(builder).await;
        let node = server.node().clone();
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let _: plexus_protocol::server::ConnectResult =
            c.request(connect_sync(true)).await.unwrap();
        drop(c);
        node.send_durable("u", Payload::null(), None).await.unwrap();
        node.send_durable("u", Payload::null(), None).await.unwrap();
        let e = node
            .send_durable("u", Payload::null(), None)
            .await
            .unwrap_err();
        assert_eq!(
            e.code,
            ErrorCode::LIMIT_EXCEEDED,
            "a full inbox is reported, never a silent drop"
        );
        let mut c = TestClient::connect(&server.ws_url(), enc).await;
        let _: plexus_protocol::server::ConnectResult =
            c.request(connect_sync(false)).await.unwrap();
        assert!(
            c.silent_for(Duration::from_millis(150)).await,
            "shouldSync: false drops the backlog"
        );
        node.send_durable("u", json(serde_json::json!("after")), None)
            .await
            .unwrap();
        let Push::Mail(m) = c.next_push().await else {
            panic!()
        };
        assert_eq!(m.seq, 3);
    }
);

#[tokio::test]
async fn redelivery_is_paced() {
    let mut builder = mail_server();
    builder.limits_mut().mail_redelivery_pace = Duration::from_millis(20);
    let server = start(builder).await;
    let node = server.node().clone();
    let mut c = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    let _: plexus_protocol::server::ConnectResult = c.request(connect_sync(true)).await.unwrap();
    drop(c);
    for _ in 0..3 {
        node.send_durable("u", Payload::null(), None).await.unwrap();
    }
    let mut c = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    let _: plexus_protocol::server::ConnectResult = c.request(connect_sync(true)).await.unwrap();
    // A live message sent during the paced sync still comes after the backlog.
    node.send_durable("u", Payload::null(), None).await.unwrap();
    assert_eq!(mails(&mut c, 4).await, vec![1, 2, 3, 4]);
}

both_encodings!(a_users_other_connections_hear_echoes, |enc| async move {
    let server = start(server(0, JoinLeave::Off).echoes(true)).await;
    let url = format!("{}?user=ann", server.ws_url());
    let mut a = TestClient::connect(&url, enc).await;
    let mut a2 = TestClient::connect(&url, enc).await;
    let Push::Echo(e) = a.next_push().await else {
        panic!()
    };
    assert_eq!(
        (e.event.as_str(), e.conn.as_str()),
        ("connected", a2.hello.conn.as_str())
    );
    let _: SubscribeResult = a2.request(sub("plain:c")).await.unwrap();
    let Push::Echo(e) = a.next_push().await else {
        panic!()
    };
    assert_eq!(
        (e.event.as_str(), e.channel.as_deref()),
        ("joined", Some("plain:c"))
    );
    let _: Empty = a2
        .request(Op::Unsubscribe(
            plexus_protocol::client::UnsubscribeParams {
                channel: "plain:c".into(),
            },
        ))
        .await
        .unwrap();
    let Push::Echo(e) = a.next_push().await else {
        panic!()
    };
    assert_eq!(e.event, "left");
    drop(a2);
    let Push::Echo(e) = a.next_push().await else {
        panic!()
    };
    assert_eq!(e.event, "disconnected");
});

#[tokio::test]
async fn stress_random_disconnects_lose_nothing_with_recovery() {
    // Every missed publication must be recoverable, however slow a reconnect is on a loaded
    // machine: the recovery bound is not what this test is about.
    let mut builder = server(10_000, JoinLeave::Off);
    builder.limits_mut().recovery_max_publications = 10_000;
    let server = start(builder).await;
    let node = server.node().clone();
    let url = server.ws_url();
    const TOTAL: u64 = 600;
    let publisher = tokio::spawn(async move {
        for i in 0..TOTAL {
            node.publish("h:stress", json(serde_json::json!(i)))
                .await
                .unwrap();
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let mut subscribers = Vec::new();
    for n in 0..6u64 {
        let url = url.clone();
        subscribers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(n);
            let enc = if n % 2 == 0 {
                Encoding::Json
            } else {
                Encoding::Msgpack
            };
            let mut seen: Vec<u64> = Vec::new();
            let mut epoch: Option<String> = None;
            let mut reconnects = 0;
            while seen.last().copied().unwrap_or(0) < TOTAL {
                let mut c = TestClient::connect(&url, enc).await;
                let op = match &epoch {
                    Some(e) => sub_since("h:stress", seen.last().copied().unwrap_or(0), e),
                    None => sub("h:stress"),
                };
                let r: SubscribeResult = c.request(op).await.unwrap();
                if epoch.is_some() {
                    assert_eq!(r.recovered, Some(true), "subscriber {n}: {:?}", r.reason);
                } else {
                    // The first subscribe starts wherever the channel is; take earlier offsets
                    // from history so every subscriber checks the whole stream.
                    let h: HistoryResult = c
                        .request(hist("h:stress", Some(0), Some(r.offset as u32), false))
                        .await
                        .unwrap();
                    seen.extend(h.publications.iter().map(|p| p.offset));
                    assert_eq!(seen.last().copied().unwrap_or(0), r.offset);
                }
                epoch = Some(r.epoch.clone());
                seen.extend(r.publications.iter().map(|p| p.offset));
                // Read a random number of live publications, then drop the connection.
                let budget = rng.u64(5..80);
                let mut read = 0;
                while read < budget && seen.last().copied().unwrap_or(0) < TOTAL {
                    if let Push::Pub(p) = c.next_push().await {
                        seen.push(p.offset);
                        read += 1;
                    }
                }
                reconnects += 1;
            }
            (n, seen, reconnects)
        }));
    }
    publisher.await.unwrap();
    for s in subscribers {
        let (n, seen, reconnects) = tokio::time::timeout(Duration::from_secs(60), s)
            .await
            .expect("bounded")
            .unwrap();
        assert_eq!(
            seen,
            (1..=TOTAL).collect::<Vec<_>>(),
            "subscriber {n} saw every offset exactly once, in order"
        );
        assert!(reconnects > 1, "subscriber {n} did reconnect");
    }
}

#[tokio::test]
async fn publishing_to_a_namespace_without_access_is_refused_even_with_history() {
    let server = start(server(10, JoinLeave::Off)).await;
    let mut c = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    let e = c
        .request::<PublishResult>(Op::Publish(PublishParams::new("other", &Payload::null())))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PERMISSION_DENIED);
}

#[tokio::test]
async fn a_connected_users_inbox_outlives_the_mailbox_lifetime() {
    let mut builder = mail_server();
    builder.limits_mut().mailbox_lifetime = Duration::from_millis(300);
    let server = start(builder).await;
    let node = server.node().clone();
    let mut c = TestClient::connect(&server.ws_url(), Encoding::Json).await;
    let _: plexus_protocol::server::ConnectResult = c.request(connect_sync(true)).await.unwrap();
    // Connected for three lifetimes without acknowledging anything: still registered.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let sent = node
        .send_durable("u", json(serde_json::json!("still here")), None)
        .await
        .unwrap();
    assert!(sent.registered, "a connected user's inbox never expires");
    let Push::Mail(m) = c.next_push().await else {
        panic!("expected the mail")
    };
    assert_eq!(m.seq, sent.seq.unwrap());
    // After the last connection, the lifetime runs out and the inbox with it.
    drop(c);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if !node.is_registered("u").await.unwrap() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the inbox expires after the last connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
