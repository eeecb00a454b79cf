//! Recovery against the real server: a client that loses its connection, or publications on a
//! live subscription, gets every missed publication exactly once and in order — or is told
//! clearly that it cannot.

mod support;

use plexus_client::{Client, CloseCode, Encoding, Event, SubscribeOptions};
use plexus_core::auth::UpgradeDecision;
use plexus_core::{Access, ChannelMatch, ChannelPolicy, HistoryOptions, Namespace, UpgradeRequest};
use plexus_server::{RunningServer, ServerBuilder};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::*;

/// A development server whose door can be shut: while `open` is false, WebSocket upgrades are
/// refused (503), so a client that lost its connection stays away until the test lets it in.
struct Gated {
    server: RunningServer,
    open: Arc<AtomicBool>,
}

impl Gated {
    async fn start(addr: SocketAddr, tune: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Gated {
        let open = Arc::new(AtomicBool::new(true));
        let gate = open.clone();
        let builder = dev(addr).upgrade_hook(move |_req: Arc<UpgradeRequest>| {
            let open = gate.load(Ordering::SeqCst);
            async move {
                if open {
                    UpgradeDecision::Accept(None)
                } else {
                    UpgradeDecision::Refuse {
                        status: 503,
                        reason: "closed by the test".into(),
                    }
                }
            }
        });
        Gated {
            server: start(tune(builder)).await,
            open,
        }
    }

    async fn publish(&self, channel: &str, from: u64, to: u64) {
        for i in from..=to {
            let p = self
                .server
                .node()
                .publish(channel, json_payload(json!({ "i": i })))
                .await
                .unwrap();
            assert_eq!(p.offset, i, "the test's offsets are the channel's");
        }
    }

    /// Drops the client's connection and keeps it out until [`Gated::let_in`].
    async fn kick_out(&self, client: &Client, events: &mut plexus_client::Events) {
        self.open.store(false, Ordering::SeqCst);
        self.server
            .node()
            .disconnect_connection(conn_id(client), CloseCode::RECONNECT, "go away")
            .await
            .unwrap();
        wait_event(events, |e| match e {
            Event::Disconnected {
                will_reconnect: true,
                ..
            } => Some(()),
            _ => None,
        })
        .await;
    }

    fn let_in(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Every channel keeps 1000 publications with recovery (the development server keeps 100).
fn big_history(builder: ServerBuilder) -> ServerBuilder {
    let mut policy = ChannelPolicy::default();
    policy.add_namespace(
        Namespace::new("all", ChannelMatch::Any)
            .subscribe(Access::Anyone)
            .publish(Access::Anyone)
            .recovery(HistoryOptions {
                size: 1000,
                ttl: Duration::from_secs(3600),
            }),
    );
    builder.channels(policy)
}

#[tokio::test]
async fn a_dropped_connection_recovers_every_missed_publication_exactly_once() {
    for enc in both() {
        let gated = Gated::start(any_port(), big_history).await;
        let client = Client::connect(config(gated.server.ws_url(), enc))
            .await
            .unwrap();
        let mut events = client.events();
        let mut sub = client
            .subscribe("feed", SubscribeOptions::default())
            .await
            .unwrap();
        gated.publish("feed", 1, 10).await;
        let live = read_until(&mut sub, 10).await;
        assert_eq!(live.offsets, (1..=10).collect::<Vec<_>>());

        gated.kick_out(&client, &mut events).await;
        // 100 publications while the client cannot come back.
        gated.publish("feed", 11, 110).await;
        gated.let_in();
        // And 100 more while it comes back and recovers.
        let publisher = tokio::spawn({
            let node = gated.server.node().clone();
            async move {
                for i in 111..=210u64 {
                    node.publish("feed", json_payload(json!({ "i": i })))
                        .await
                        .unwrap();
                    tokio::task::yield_now().await;
                }
            }
        });
        let t = read_until(&mut sub, 210).await;
        within("publisher", publisher).await.unwrap();
        assert_eq!(
            t.offsets,
            (11..=210).collect::<Vec<_>>(),
            "{enc:?}: every offset exactly once, in order"
        );
        assert_eq!(t.restores.len(), 1, "{:?}", t.restores);
        let (read_before, restored) = &t.restores[0];
        assert_eq!(
            *read_before, 0,
            "the restore notice comes before the recovered publications"
        );
        assert_eq!(restored.recovered, Some(true), "{restored:?}");
        assert_eq!(restored.reason, None);
        assert!(restored.resubscribed);
        assert!(
            restored.position.offset >= 110,
            "the 100 missed publications came from the recovery: {restored:?}"
        );
        assert_eq!(sub.position().offset, 210);
        let seen = wait_event(&mut events, |e| match e {
            Event::Subscribed(s) if s.resubscribed => Some(s.clone()),
            _ => None,
        })
        .await;
        assert_eq!(seen.recovered, Some(true));
        client.disconnect().await;
        gated.server.shutdown().await;
    }
}

#[tokio::test]
async fn a_server_restart_reports_recovered_false_with_epoch_changed() {
    for enc in both() {
        let server = start(dev(any_port())).await;
        let addr = server.local_addr();
        let client = Client::connect(config(server.ws_url(), enc)).await.unwrap();
        let mut events = client.events();
        let mut sub = client
            .subscribe("news", SubscribeOptions::default())
            .await
            .unwrap();
        for i in 1..=3 {
            server
                .node()
                .publish("news", json_payload(json!(i)))
                .await
                .unwrap();
        }
        read_until(&mut sub, 3).await;
        let old_epoch = sub.position().epoch.clone();

        // The in-memory engine loses every channel's history with the process: a new epoch.
        server.shutdown().await;
        let server = start(dev(addr)).await;
        let restored = wait_event(&mut events, |e| match e {
            Event::Subscribed(s) if s.resubscribed => Some(s.clone()),
            _ => None,
        })
        .await;
        assert_eq!(restored.recovered, Some(false), "{enc:?}");
        assert_eq!(restored.reason.as_deref(), Some("epoch_changed"));
        assert_ne!(restored.position.epoch, old_epoch);
        match next_event(&mut sub).await {
            plexus_client::SubscriptionEvent::Subscribed(s) => assert_eq!(s, restored),
            other => panic!("{other:?}"),
        }
        assert_eq!(sub.position(), &restored.position);

        // The stream goes on live from the server's position, offsets of the new epoch.
        let p = server
            .node()
            .publish("news", json_payload(json!("after")))
            .await
            .unwrap();
        let got = next_publication(&mut sub).await;
        assert_eq!((got.offset, got.epoch.as_str()), (p.offset, &*p.epoch));
        assert_eq!(value(&got.payload), json!("after"));
        client.disconnect().await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_gap_beyond_the_history_reports_history_trimmed_and_goes_on_live() {
    let gated = Gated::start(any_port(), |b| b).await;
    let client = Client::connect(config(gated.server.ws_url(), Encoding::Json))
        .await
        .unwrap();
    let mut events = client.events();
    let mut sub = client
        .subscribe("busy", SubscribeOptions::default())
        .await
        .unwrap();
    gated.publish("busy", 1, 1).await;
    read_until(&mut sub, 1).await;
    gated.kick_out(&client, &mut events).await;
    // The development server keeps 100 publications per channel: 2 is gone by 150.
    gated.publish("busy", 2, 150).await;
    gated.let_in();
    match next_event(&mut sub).await {
        plexus_client::SubscriptionEvent::Subscribed(s) => {
            assert_eq!(s.recovered, Some(false));
            assert_eq!(s.reason.as_deref(), Some("history_trimmed"));
            assert_eq!(s.position.offset, 150);
        }
        other => panic!("{other:?}"),
    }
    gated.publish("busy", 151, 151).await;
    assert_eq!(next_publication(&mut sub).await.offset, 151);
    gated.server.shutdown().await;
}

#[tokio::test]
async fn without_recover_a_resubscribe_does_not_ask_for_the_missed_publications() {
    let gated = Gated::start(any_port(), |b| b).await;
    let client = Client::connect(config(gated.server.ws_url(), Encoding::Msgpack))
        .await
        .unwrap();
    let mut events = client.events();
    let mut sub = client
        .subscribe("plain", SubscribeOptions::default().recover(false))
        .await
        .unwrap();
    gated.kick_out(&client, &mut events).await;
    gated.publish("plain", 1, 5).await;
    gated.let_in();
    match next_event(&mut sub).await {
        plexus_client::SubscriptionEvent::Subscribed(s) => {
            assert_eq!(s.recovered, None, "no `since` was sent");
            assert_eq!(s.position.offset, 5);
        }
        other => panic!("{other:?}"),
    }
    gated.publish("plain", 6, 6).await;
    assert_eq!(next_publication(&mut sub).await.offset, 6);
    gated.server.shutdown().await;
}

#[tokio::test]
async fn a_first_subscribe_recovers_from_a_given_position_or_shows_history() {
    for enc in both() {
        let server = start(dev(any_port())).await;
        let client = Client::connect(config(server.ws_url(), enc)).await.unwrap();
        for i in 1..=5 {
            client.publish("log", json_payload(json!(i))).await.unwrap();
        }
        let epoch = client
            .history("log", plexus_client::HistoryOptions::default().limit(0))
            .await
            .unwrap()
            .position
            .epoch;

        let since = plexus_client::Position {
            offset: 2,
            epoch: epoch.clone(),
        };
        let mut sub = client
            .subscribe("log", SubscribeOptions::default().since(since.clone()))
            .await
            .unwrap();
        assert_eq!(sub.subscribed().recovered, Some(true));
        assert_eq!(sub.subscribed().position.offset, 5);
        assert_eq!(
            sub.position(),
            &since,
            "the handle starts where recovery does"
        );
        client.publish("log", json_payload(json!(6))).await.unwrap();
        let t = read_until(&mut sub, 6).await;
        assert_eq!(
            t.offsets,
            [3, 4, 5, 6],
            "{enc:?}: recovered first, then live"
        );
        assert!(t.restores.is_empty());
        sub.unsubscribe().await.unwrap();

        // A position of another epoch recovers nothing, and says why.
        let stale = plexus_client::Position {
            offset: 2,
            epoch: "not-this-one".into(),
        };
        let sub = client
            .subscribe("log", SubscribeOptions::default().since(stale))
            .await
            .unwrap();
        assert_eq!(sub.subscribed().recovered, Some(false));
        assert_eq!(sub.subscribed().reason.as_deref(), Some("epoch_changed"));
        assert_eq!(sub.position().offset, 6);
        sub.unsubscribe().await.unwrap();

        // History on subscribe: the last 3, then live.
        let mut sub = client
            .subscribe("log", SubscribeOptions::default().history(3))
            .await
            .unwrap();
        assert_eq!(sub.subscribed().recovered, None);
        client.publish("log", json_payload(json!(7))).await.unwrap();
        let t = read_until(&mut sub, 7).await;
        assert_eq!(t.offsets, [4, 5, 6, 7]);
        client.disconnect().await;
        server.shutdown().await;
    }
}

/// A broker that loses one publication on its way to the node (as a Redis pub/sub message can
/// be lost): the server notices the gap and tells the subscriber `insufficient_state`.
mod lossy {
    use plexus_core::engine::{
        Broker, Control, EngineHandler, HistoryPage, HistoryQuery, PublishOptions,
    };
    use plexus_core::memory::MemoryBroker;
    use plexus_core::{ClientInfo, ConnId, EngineError, Exclude, NodeId, Publication};
    use plexus_core::{Payload, StreamPosition};
    use std::sync::Arc;

    pub struct Lossy {
        pub inner: MemoryBroker,
        pub drop_offset: u64,
    }

    struct DropOne {
        inner: Arc<dyn EngineHandler>,
        drop_offset: u64,
    }

    impl EngineHandler for DropOne {
        fn publication(&self, p: &Publication, exclude: Option<&Exclude>) {
            if p.offset != self.drop_offset {
                self.inner.publication(p, exclude);
            }
        }
        fn control(&self, c: Control) {
            self.inner.control(c)
        }
    }

    #[async_trait::async_trait]
    impl Broker for Lossy {
        fn run(&self, node: NodeId, handler: Arc<dyn EngineHandler>) {
            let handler = Arc::new(DropOne {
                inner: handler,
                drop_offset: self.drop_offset,
            });
            self.inner.run(node, handler)
        }
        async fn publish(
            &self,
            channel: &str,
            payload: Payload,
            publisher: Option<ClientInfo>,
            options: PublishOptions,
        ) -> Result<StreamPosition, EngineError> {
            self.inner
                .publish(channel, payload, publisher, options)
                .await
        }
        async fn subscribe(&self, channel: &str) -> Result<(), EngineError> {
            self.inner.subscribe(channel).await
        }
        async fn unsubscribe(&self, channel: &str) -> Result<(), EngineError> {
            self.inner.unsubscribe(channel).await
        }
        async fn position(&self, channel: &str) -> Result<StreamPosition, EngineError> {
            self.inner.position(channel).await
        }
        async fn history(
            &self,
            channel: &str,
            query: HistoryQuery,
        ) -> Result<HistoryPage, EngineError> {
            self.inner.history(channel, query).await
        }
        async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
            self.inner.remove_history(channel).await
        }
        async fn control(&self, control: Control) -> Result<(), EngineError> {
            self.inner.control(control).await
        }
        async fn remote_connection_exists(&self, conn: ConnId) -> Result<bool, EngineError> {
            self.inner.remote_connection_exists(conn).await
        }
    }
}

#[tokio::test]
async fn insufficient_state_makes_the_client_recover_what_was_lost() {
    for enc in both() {
        let mut engine = plexus_core::memory::memory_engine(Default::default());
        engine.broker = Arc::new(lossy::Lossy {
            inner: plexus_core::memory::MemoryBroker::new(Default::default()),
            drop_offset: 3,
        });
        let server = start(dev(any_port()).engine(engine)).await;
        let client = Client::connect(config(server.ws_url(), enc)).await.unwrap();
        let mut events = client.events();
        let mut sub = client
            .subscribe("lossy", SubscribeOptions::default())
            .await
            .unwrap();
        for i in 1..=6 {
            server
                .node()
                .publish("lossy", json_payload(json!(i)))
                .await
                .unwrap();
        }
        let t = read_until(&mut sub, 6).await;
        assert_eq!(
            t.offsets,
            [1, 2, 3, 4, 5, 6],
            "{enc:?}: the lost publication is recovered, in its place"
        );
        assert_eq!(t.restores.len(), 1);
        let (read_before, restored) = &t.restores[0];
        assert_eq!(*read_before, 2, "repaired right after the last good one");
        assert_eq!(restored.recovered, Some(true));
        // The stream did not end, and goes on live.
        server
            .node()
            .publish("lossy", json_payload(json!(7)))
            .await
            .unwrap();
        assert_eq!(next_publication(&mut sub).await.offset, 7);
        let seen = wait_event(&mut events, |e| match e {
            Event::Unsubscribed { channel, .. } => panic!("{channel} was ended"),
            Event::Subscribed(s) if s.resubscribed => Some(s.clone()),
            _ => None,
        })
        .await;
        assert_eq!(seen.channel, "lossy");
        client.disconnect().await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn subscribers_dropped_at_random_while_publishing_see_every_offset_once_in_order() {
    const PUBLICATIONS: u64 = 1000;
    let server = start(big_history(dev(any_port()))).await;
    let mut clients = Vec::new();
    let mut readers = Vec::new();
    for (i, enc) in [both(), both()].concat().into_iter().enumerate() {
        let client = Client::connect(config(server.ws_url(), enc).rng_seed(i as u64))
            .await
            .unwrap();
        let mut sub = client
            .subscribe("storm", SubscribeOptions::default())
            .await
            .unwrap();
        readers.push(tokio::spawn(async move {
            read_until(&mut sub, PUBLICATIONS).await
        }));
        clients.push(client);
    }
    let node = server.node().clone();
    let publisher = tokio::spawn({
        let node = node.clone();
        async move {
            // About one per millisecond: a client away for its backoff (at most 100 ms)
            // misses far fewer than one recovery may return (300).
            for i in 1..=PUBLICATIONS {
                node.publish("storm", json_payload(json!(i))).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    // Drop a random subscriber's connection now and then while the publisher runs.
    let mut rng = fastrand::Rng::with_seed(7);
    let mut drops = 0;
    while !publisher.is_finished() {
        let victim = &clients[rng.usize(..clients.len())];
        if let Some(info) = victim.connection() {
            let conn = info.conn.parse().unwrap();
            let _ = node
                .disconnect_connection(conn, CloseCode::RECONNECT, "storm")
                .await;
            drops += 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(1..15))).await;
    }
    within("publisher", publisher).await.unwrap();
    assert!(drops >= 10, "the storm dropped only {drops} connections");
    let mut restores = 0;
    for (i, reader) in readers.into_iter().enumerate() {
        let t = reader.await.unwrap();
        assert_eq!(
            t.offsets,
            (1..=PUBLICATIONS).collect::<Vec<_>>(),
            "subscriber {i}: every offset exactly once, in order ({drops} drops)"
        );
        for (_, restore) in &t.restores {
            assert_eq!(restore.recovered, Some(true), "subscriber {i}: {restore:?}");
        }
        restores += t.restores.len();
    }
    assert!(restores > 0, "no subscriber had to recover");
    server.shutdown().await;
}
