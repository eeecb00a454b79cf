//! The client against a scripted server: a bare WebSocket server in the test that sends exactly
//! the frames each case needs (silence, batches, unknown pushes, close codes) and checks every
//! frame the client sends. Cases that need real server behaviour are in `tests/server.rs`.

use futures_util::{SinkExt, StreamExt};
use plexus_client::{
    Backoff, Client, ClientConfig, CloseCode, Encoding, ErrorCode, ErrorKind, Event, Jitter,
    Payload, PushEvent, RequestOptions, SubscribeOptions, SubscriptionEvent, Target,
    UnsubscribeReason,
};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

mod support;

use support::{LIMIT, both, json_payload, wait_event, within};

struct FakeServer {
    listener: TcpListener,
    encoding: Encoding,
}

impl FakeServer {
    async fn bind(encoding: Encoding) -> FakeServer {
        FakeServer {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            encoding,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.listener.local_addr().unwrap())
    }

    fn config(&self) -> ClientConfig {
        ClientConfig::new(self.url())
            .encoding(self.encoding)
            .backoff(fast_backoff())
            .rng_seed(1)
    }

    /// Accepts one connection, echoing the client's subprotocol.
    // The callback's error type is tungstenite's HTTP response, large by its design.
    #[allow(clippy::result_large_err)]
    async fn accept(&self) -> Conn {
        let (tcp, _) = within("a connection", self.listener.accept())
            .await
            .unwrap();
        let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, mut resp: Response| {
            if let Some(p) = req.headers().get("Sec-WebSocket-Protocol") {
                resp.headers_mut()
                    .insert("Sec-WebSocket-Protocol", p.clone());
            }
            Ok(resp)
        })
        .await
        .unwrap();
        Conn {
            ws,
            encoding: self.encoding,
            inbox: VecDeque::new(),
        }
    }

    /// Accepts one connection and completes the handshake (anonymous hello).
    async fn accept_ready(&self) -> Conn {
        let mut conn = self.accept().await;
        conn.send(hello("optional", 0, 64)).await;
        conn
    }
}

fn fast_backoff() -> Backoff {
    Backoff {
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        jitter: Jitter::Full,
        max_attempts: None,
    }
}

fn hello(auth: &str, ping_interval_ms: u64, max_pending: u32) -> Value {
    json!({
        "push": "hello", "version": 1, "node": "n1", "conn": "n1.1", "auth": auth,
        "auth_timeout_ms": 10000, "ping_interval_ms": ping_interval_ms, "max_missed_pongs": 1,
        "limits": {
            "max_message_bytes": 65536, "max_subscriptions": 128, "max_channel_bytes": 255,
            "requests_per_second": 100, "requests_burst": 200, "max_pending_requests": max_pending
        }
    })
}

struct Conn {
    ws: WebSocketStream<TcpStream>,
    encoding: Encoding,
    inbox: VecDeque<Value>,
}

impl Conn {
    fn message(&self, frames: &[Value]) -> Message {
        let mut w = plexus_protocol::FrameWriter::new(self.encoding);
        for f in frames {
            w.push(&plexus_protocol::encode(self.encoding, f));
        }
        let bytes = w.take();
        match self.encoding {
            Encoding::Json => Message::Text(String::from_utf8(bytes.to_vec()).unwrap().into()),
            Encoding::Msgpack => Message::Binary(bytes),
        }
    }

    async fn send(&mut self, frame: Value) {
        self.send_batch(&[frame]).await;
    }

    async fn send_batch(&mut self, frames: &[Value]) {
        let msg = self.message(frames);
        self.ws.send(msg).await.unwrap();
    }

    /// The next frame from the client (batches are split); `None` when the client closed.
    async fn try_recv(&mut self) -> Option<Value> {
        loop {
            if let Some(v) = self.inbox.pop_front() {
                return Some(v);
            }
            let msg = within("a client frame", self.ws.next()).await?.ok()?;
            let bytes = match msg {
                Message::Text(t) => {
                    assert_eq!(self.encoding, Encoding::Json, "text frame in msgpack mode");
                    bytes::Bytes::from(t)
                }
                Message::Binary(b) => {
                    assert_eq!(
                        self.encoding,
                        Encoding::Msgpack,
                        "binary frame in JSON mode"
                    );
                    b
                }
                Message::Close(_) => return None,
                _ => continue,
            };
            for frame in plexus_protocol::split_frames(self.encoding, &bytes).unwrap() {
                self.inbox
                    .push_back(plexus_protocol::decode(self.encoding, frame).unwrap());
            }
        }
    }

    async fn recv(&mut self) -> Value {
        self.try_recv().await.expect("the client closed")
    }

    /// The next frame, which must be a request with this op; returns its id and params.
    async fn expect(&mut self, op: &str) -> (u64, Value) {
        let f = self.recv().await;
        assert_eq!(f["op"], op, "{f}");
        (f["id"].as_u64().unwrap(), f["params"].clone())
    }

    async fn reply(&mut self, id: u64, result: Value) {
        self.send(json!({"id": id, "result": result})).await;
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.to_owned().into(),
        };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
        // Drain until the client answers the close.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(LIMIT, self.ws.next()).await {}
    }

    /// Round trip through the client: everything it received before has been handled.
    async fn sync(&mut self) {
        self.send(json!({"push": "ping"})).await;
        loop {
            let f = self.recv().await;
            if f["op"] == "pong" {
                return;
            }
            self.inbox.push_back(f);
            if self.inbox.len() > 1000 {
                panic!("no pong");
            }
        }
    }
}

#[tokio::test]
async fn connect_sends_token_version_and_client_name_then_reports_the_user() {
    for enc in both() {
        let server = FakeServer::bind(enc).await;
        let config = server.config().token("secret");
        let client = tokio::spawn(Client::connect(config));
        let mut conn = server.accept().await;
        conn.send(hello("required", 0, 64)).await;
        let (id, params) = conn.expect("connect").await;
        assert_eq!(params["token"], "secret");
        assert_eq!(params["version"], 1);
        assert!(
            params["client"]
                .as_str()
                .unwrap()
                .starts_with("plexus-client/")
        );
        conn.reply(
            id,
            json!({"conn": "n1.1", "user": "alice", "info": {"role": "admin"}}),
        )
        .await;
        let client = within("connect", client).await.unwrap().unwrap();
        let info = client.connection().unwrap();
        assert_eq!(info.user.as_deref(), Some("alice"));
        assert_eq!(
            info.info.unwrap().as_json_str(),
            Some(r#"{"role":"admin"}"#)
        );
        assert_eq!(info.node, "n1");
    }
}

#[tokio::test]
async fn optional_auth_without_credentials_skips_connect() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    assert_eq!(client.connection().unwrap().user, None);
    // The first frame the client sends is the call, not a connect.
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call("echo", json_payload(json!(1))).await }
    });
    let (id, params) = conn.expect("call").await;
    assert_eq!(params["method"], "echo");
    conn.reply(id, json!({"data": 1})).await;
    assert_eq!(
        within("call", call).await.unwrap().unwrap(),
        json_payload(json!(1))
    );
}

#[tokio::test]
async fn pings_get_a_pong_without_id_and_latency_becomes_an_event() {
    for enc in both() {
        let server = FakeServer::bind(enc).await;
        let client = tokio::spawn(Client::connect(server.config()));
        let mut conn = server.accept_ready().await;
        let client = within("connect", client).await.unwrap().unwrap();
        let mut events = client.events();
        conn.send(json!({"push": "ping"})).await;
        let pong = conn.recv().await;
        assert_eq!(pong, json!({"op": "pong"}), "{enc:?}");
        conn.send(json!({"push": "latency", "rtt_ms": 12.5})).await;
        let rtt = wait_event(&mut events, |e| match e {
            Event::Latency { rtt_ms } => Some(*rtt_ms),
            _ => None,
        })
        .await;
        assert_eq!(rtt, 12.5);
        assert_eq!(client.latency_ms(), Some(12.5));
    }
}

#[tokio::test]
async fn a_silent_server_is_dropped_and_the_client_reconnects() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = Client::start(server.config());
    let mut events = client.events();
    let mut conn = server.accept().await;
    // Pings every 100 ms, one may be missed: silence for 200 ms means dead.
    conn.send(hello("optional", 100, 64)).await;
    wait_event(&mut events, |e| {
        matches!(
            e,
            Event::Connected {
                reconnected: false,
                ..
            }
        )
        .then_some(())
    })
    .await;
    let (code, will_reconnect) = wait_event(&mut events, |e| match e {
        Event::Disconnected {
            code,
            will_reconnect,
            ..
        } => Some((*code, *will_reconnect)),
        _ => None,
    })
    .await;
    assert_eq!(code, None);
    assert!(will_reconnect);
    let _second = server.accept_ready().await;
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
    drop(conn);
}

#[tokio::test]
async fn every_frame_of_a_batched_message_is_handled_and_unknown_pushes_are_skipped() {
    for enc in both() {
        let server = FakeServer::bind(enc).await;
        let client = tokio::spawn(Client::connect(server.config()));
        let mut conn = server.accept_ready().await;
        let client = within("connect", client).await.unwrap().unwrap();
        let mut pushes = client.pushes();
        let sub = tokio::spawn({
            let client = client.clone();
            async move { client.subscribe("c", SubscribeOptions::default()).await }
        });
        let (id, params) = conn.expect("subscribe").await;
        assert_eq!(params["channel"], "c");
        conn.send_batch(&[
            json!({"id": id, "result": {"offset": 4, "epoch": "e"}}),
            json!({"push": "teleport", "to": "mars"}),
            json!({"push": "pub", "channel": "c", "offset": 5, "epoch": "e", "data": {"n": 5},
                   "publisher": {"conn": "n1.9", "user": "bob"}}),
            json!({"push": "message", "to": "user", "data": "hi"}),
            json!({"push": "pub", "channel": "c", "offset": 6, "epoch": "e", "data": {"n": 6}}),
        ])
        .await;
        let mut sub = within("subscribe", sub).await.unwrap().unwrap();
        assert_eq!(sub.position().offset, 4);
        let Some(SubscriptionEvent::Publication(p)) = within("pub", sub.next()).await else {
            panic!("expected a publication")
        };
        assert_eq!((p.offset, p.epoch.as_str()), (5, "e"));
        assert_eq!(p.payload, json_payload(json!({"n": 5})));
        let publisher = p.publisher.unwrap();
        assert_eq!(publisher.user.as_deref(), Some("bob"));
        assert_eq!(publisher.conn, "n1.9");
        let Some(SubscriptionEvent::Publication(p)) = within("pub", sub.next()).await else {
            panic!("expected a publication")
        };
        assert_eq!(p.offset, 6);
        assert_eq!(p.publisher, None);
        assert_eq!(sub.position().offset, 6);
        let Some(PushEvent::Message(m)) = within("message", pushes.next()).await else {
            panic!("expected a message")
        };
        assert_eq!(m.to, Target::User);
        assert_eq!(m.payload, json_payload(json!("hi")));
    }
}

#[tokio::test]
async fn requests_made_before_the_socket_opens_wait_for_authentication() {
    let server = FakeServer::bind(Encoding::Msgpack).await;
    let client = Client::start(server.config().token("t"));
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call("early", json_payload(json!("x"))).await }
    });
    let publish = tokio::spawn({
        let client = client.clone();
        async move { client.publish("c", json_payload(json!("y"))).await }
    });
    // Let both requests reach the queue before the connection exists.
    tokio::task::yield_now().await;
    let mut conn = server.accept().await;
    conn.send(hello("required", 0, 64)).await;
    let (id, _) = conn.expect("connect").await;
    // Nothing may be sent before the connect reply.
    conn.sync().await;
    assert!(conn.inbox.is_empty(), "sent before auth: {:?}", conn.inbox);
    conn.reply(id, json!({"conn": "n1.1", "user": "u"})).await;
    let mut ops = Vec::new();
    for _ in 0..2 {
        let f = conn.recv().await;
        let id = f["id"].as_u64().unwrap();
        ops.push(f["op"].as_str().unwrap().to_owned());
        match f["op"].as_str().unwrap() {
            "call" => conn.reply(id, json!({"data": "X"})).await,
            _ => conn.reply(id, json!({"offset": 1, "epoch": "e"})).await,
        }
    }
    ops.sort();
    assert_eq!(ops, ["call", "publish"]);
    assert_eq!(
        within("call", call).await.unwrap().unwrap(),
        json_payload(json!("X"))
    );
    let pos = within("publish", publish).await.unwrap().unwrap();
    assert_eq!((pos.offset, pos.epoch.as_str()), (1, "e"));
}

#[tokio::test]
async fn the_servers_pending_limit_holds_further_requests_back() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept().await;
    conn.send(hello("optional", 0, 2)).await;
    let client = within("connect", client).await.unwrap().unwrap();
    let calls: Vec<_> = (0..5)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.call("m", json_payload(json!(i))).await })
        })
        .collect();
    let (a, _) = conn.expect("call").await;
    let (b, _) = conn.expect("call").await;
    // Whatever the client had, it sent before answering this ping: only the two calls.
    conn.sync().await;
    assert!(conn.inbox.is_empty(), "a third request: {:?}", conn.inbox);
    conn.reply(a, json!({"data": "a"})).await;
    let (c, _) = conn.expect("call").await;
    conn.sync().await;
    assert!(conn.inbox.is_empty());
    for id in [b, c] {
        conn.reply(id, json!({"data": null})).await;
    }
    for _ in 0..2 {
        let (id, _) = conn.expect("call").await;
        conn.reply(id, json!({"data": null})).await;
    }
    for call in calls {
        within("calls", call).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn offline_requests_are_bounded_expire_or_fail_fast() {
    // A port with nothing listening: every attempt is refused.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let config = ClientConfig::new(format!("ws://127.0.0.1:{port}/ws"))
        .backoff(fast_backoff())
        .max_queued_requests(2);
    let client = Client::start(config);
    let options = RequestOptions::default().timeout(Duration::from_millis(300));
    let a = tokio::spawn({
        let client = client.clone();
        async move { client.call_with("a", Payload::null(), options).await }
    });
    let b = tokio::spawn({
        let client = client.clone();
        async move { client.call_with("b", Payload::null(), options).await }
    });
    // The test runtime has one thread: yielding lets both reach the queue first.
    tokio::task::yield_now().await;
    let third = client
        .call_with("c", Payload::null(), options)
        .await
        .unwrap_err();
    assert_eq!(third.kind(), ErrorKind::QueueFull);
    let fast = client
        .call_with("d", Payload::null(), RequestOptions::default().fail_fast())
        .await
        .unwrap_err();
    assert!(fast.is_disconnected(), "{fast:?}");
    let sub = client
        .subscribe("c", SubscribeOptions::default().fail_fast())
        .await
        .unwrap_err();
    assert!(sub.is_disconnected(), "{sub:?}");
    for call in [a, b] {
        let e = within("expiry", call).await.unwrap().unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
    }
    client.disconnect().await;
}

#[tokio::test]
async fn queued_requests_are_sent_after_a_reconnect() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    let mut events = client.events();
    conn.close(4000, "shutdown").await;
    wait_event(&mut events, |e| {
        matches!(
            e,
            Event::Disconnected {
                code: Some(CloseCode::SHUTDOWN),
                will_reconnect: true,
                ..
            }
        )
        .then_some(())
    })
    .await;
    // The server is away (not accepting yet): this call waits in the queue.
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call("later", json_payload(json!(7))).await }
    });
    let mut conn = server.accept_ready().await;
    let (id, params) = conn.expect("call").await;
    assert_eq!(params["data"], 7);
    conn.reply(id, json!({"data": 8})).await;
    assert_eq!(
        within("call", call).await.unwrap().unwrap(),
        json_payload(json!(8))
    );
}

#[tokio::test]
async fn requests_in_flight_when_the_connection_drops_fail_as_disconnected() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call("slow", Payload::null()).await }
    });
    conn.expect("call").await;
    drop(conn); // no close frame: a dropped TCP connection
    let e = within("call", call).await.unwrap().unwrap_err();
    assert!(e.is_disconnected(), "{e:?}");
    let _again = server.accept_ready().await;
    client.wait_connected().await.unwrap();
}

#[tokio::test]
async fn a_no_reconnect_close_code_stops_the_client() {
    for code in [4505u16, 4500, 1000] {
        let server = FakeServer::bind(Encoding::Json).await;
        let client = tokio::spawn(Client::connect(server.config()));
        let mut conn = server.accept_ready().await;
        let client = within("connect", client).await.unwrap().unwrap();
        let mut events = client.events();
        let mut sub = {
            let s = tokio::spawn({
                let client = client.clone();
                async move { client.subscribe("c", SubscribeOptions::default()).await }
            });
            let (id, _) = conn.expect("subscribe").await;
            conn.reply(id, json!({"offset": 0, "epoch": "e"})).await;
            within("subscribe", s).await.unwrap().unwrap()
        };
        conn.close(code, "bye").await;
        let (got, will_reconnect) = wait_event(&mut events, |e| match e {
            Event::Disconnected {
                code,
                will_reconnect,
                ..
            } => Some((*code, *will_reconnect)),
            _ => None,
        })
        .await;
        assert_eq!(got, Some(CloseCode(code)));
        assert!(!will_reconnect, "{code}");
        // The task has ended: the event stream ends, the subscription ends, requests fail.
        assert!(within("end of events", events.next()).await.is_none());
        assert!(matches!(
            within("end of sub", sub.next()).await,
            Some(SubscriptionEvent::Unsubscribed(
                UnsubscribeReason::ClientClosed
            ))
        ));
        let e = client.call("x", Payload::null()).await.unwrap_err();
        assert!(e.is_closed(), "{e:?}");
        assert_eq!(client.state(), plexus_client::ConnectionState::Closed);
    }
}

#[tokio::test]
async fn refused_credentials_end_the_first_connect_with_the_servers_code() {
    for (code, close) in [(112u32, 4502u16), (115, 4506), (1001, 4502)] {
        let server = FakeServer::bind(Encoding::Json).await;
        let client = tokio::spawn(Client::connect(server.config().token("bad")));
        let mut conn = server.accept().await;
        conn.send(hello("required", 0, 64)).await;
        let (id, _) = conn.expect("connect").await;
        conn.send(json!({"id": id, "error": {"code": code, "message": "no", "data": {"why": 1}}}))
            .await;
        let e = within("connect", client).await.unwrap().unwrap_err();
        assert!(e.is_server(), "{e:?}");
        assert_eq!(e.code(), Some(ErrorCode(code)));
        assert_eq!(e.close_code(), Some(CloseCode(close)));
        assert_eq!(e.data().unwrap().as_json_str(), Some(r#"{"why":1}"#));
    }
}

#[tokio::test]
async fn a_refused_connect_on_reconnect_is_final_and_says_so() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config().token("t")));
    let mut conn = server.accept().await;
    conn.send(hello("required", 0, 64)).await;
    let (id, _) = conn.expect("connect").await;
    conn.reply(id, json!({"conn": "n1.1", "user": "u"})).await;
    let client = within("connect", client).await.unwrap().unwrap();
    let mut events = client.events();
    conn.close(4005, "reconnect").await;
    let mut conn = server.accept().await;
    conn.send(hello("required", 0, 64)).await;
    let (id, _) = conn.expect("connect").await;
    conn.send(json!({"id": id, "error": {"code": 115, "message": "expired"}}))
        .await;
    let (code, will_reconnect) = wait_event(&mut events, |e| match e {
        Event::Disconnected {
            code,
            will_reconnect,
            ..
        } if code != &Some(CloseCode::RECONNECT) => Some((*code, *will_reconnect)),
        _ => None,
    })
    .await;
    assert_eq!(code, Some(CloseCode::TOKEN_EXPIRED));
    assert!(!will_reconnect);
    assert!(within("end", events.next()).await.is_none());
}

#[tokio::test]
async fn explicit_disconnect_closes_with_1000_and_never_reconnects() {
    for enc in both() {
        let server = FakeServer::bind(enc).await;
        let client = tokio::spawn(Client::connect(server.config()));
        let mut conn = server.accept_ready().await;
        let client = within("connect", client).await.unwrap().unwrap();
        let mut events = client.events();
        let waiting = tokio::spawn({
            let client = client.clone();
            async move { client.call("m", Payload::null()).await }
        });
        conn.expect("call").await;
        let closer = tokio::spawn({
            let client = client.clone();
            async move { client.disconnect().await }
        });
        // The server sees a close frame with 1000.
        let msg = within("close", conn.ws.next()).await.unwrap().unwrap();
        match msg {
            Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1000),
            other => panic!("{other:?}"),
        }
        drop(conn);
        within("disconnect", closer).await.unwrap();
        let e = within("call", waiting).await.unwrap().unwrap_err();
        assert!(e.is_closed(), "{e:?}");
        let ev = wait_event(&mut events, |e| match e {
            Event::Disconnected {
                code,
                will_reconnect,
                ..
            } => Some((*code, *will_reconnect)),
            _ => None,
        })
        .await;
        assert_eq!(ev, (Some(CloseCode::NORMAL), false));
        // Nothing follows: no Connecting, the stream ends with the task.
        assert!(within("end", events.next()).await.is_none());
        let e = client.publish("c", Payload::null()).await.unwrap_err();
        assert!(e.is_closed());
    }
}

#[tokio::test]
async fn subscriptions_of_both_kinds_are_restored_before_queued_requests() {
    let server = FakeServer::bind(Encoding::Msgpack).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    let mut events = client.events();
    let mut pushes = client.pushes();
    let sub = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("room", SubscribeOptions::default()).await }
    });
    let (id, _) = conn.expect("subscribe").await;
    conn.reply(id, json!({"offset": 3, "epoch": "e1"})).await;
    let mut sub = within("subscribe", sub).await.unwrap().unwrap();
    // The server subscribes this connection to the user's channel by itself.
    conn.send(json!({"push": "subscribed", "channel": "user:u", "offset": 0, "epoch": "e2"}))
        .await;
    wait_event(&mut events, |e| match e {
        Event::Subscribed(s) if s.server_side => Some(()),
        _ => None,
    })
    .await;
    conn.send(json!({"push": "pub", "channel": "user:u", "offset": 1, "epoch": "e2", "data": 1}))
        .await;
    let Some(PushEvent::Publication(p)) = within("server-side pub", pushes.next()).await else {
        panic!()
    };
    assert_eq!((p.channel.as_str(), p.offset), ("user:u", 1));

    conn.close(4000, "shutdown").await;
    wait_event(&mut events, |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call("after", Payload::null()).await }
    });
    let mut conn = server.accept_ready().await;
    let mut subscribed = Vec::new();
    for _ in 0..2 {
        let (id, params) = conn.expect("subscribe").await;
        let channel = params["channel"].as_str().unwrap().to_owned();
        conn.reply(id, json!({"offset": 10, "epoch": "e9"})).await;
        subscribed.push(channel);
    }
    subscribed.sort();
    assert_eq!(subscribed, ["room", "user:u"]);
    let (id, _) = conn.expect("call").await;
    conn.reply(id, json!({"data": null})).await;
    within("call", call).await.unwrap().unwrap();
    // The subscription stream says it was restored, and where the channel stands.
    match within("restore", sub.next()).await {
        Some(SubscriptionEvent::Subscribed(s)) => {
            assert!(s.resubscribed);
            assert_eq!(s.recovered, None);
            assert_eq!((s.position.offset, s.position.epoch.as_str()), (10, "e9"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sub.position().offset, 10);
    let mut restored = Vec::new();
    while restored.len() < 2 {
        let s = wait_event(&mut events, |e| match e {
            Event::Subscribed(s) if s.resubscribed => Some(s.clone()),
            _ => None,
        })
        .await;
        restored.push((s.channel, s.server_side));
    }
    restored.sort();
    assert_eq!(
        restored,
        [("room".to_owned(), false), ("user:u".to_owned(), true)]
    );
}

#[tokio::test]
async fn a_failed_restore_ends_the_subscription_and_is_reported() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    let mut events = client.events();
    let sub = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("gone", SubscribeOptions::default()).await }
    });
    let (id, _) = conn.expect("subscribe").await;
    conn.reply(id, json!({"offset": 0, "epoch": "e"})).await;
    let mut sub = within("subscribe", sub).await.unwrap().unwrap();
    conn.close(4000, "").await;
    let mut conn = server.accept_ready().await;
    let (id, _) = conn.expect("subscribe").await;
    conn.send(json!({"id": id, "error": {"code": 105, "message": "denied"}}))
        .await;
    match within("end", sub.next()).await {
        Some(SubscriptionEvent::Unsubscribed(UnsubscribeReason::ResubscribeFailed(e))) => {
            assert_eq!(e.code(), Some(ErrorCode::PERMISSION_DENIED))
        }
        other => panic!("{other:?}"),
    }
    assert!(within("end", sub.next()).await.is_none());
    let (channel, will_retry) = wait_event(&mut events, |e| match e {
        Event::SubscribeFailed {
            channel,
            will_retry,
            ..
        } => Some((channel.clone(), *will_retry)),
        _ => None,
    })
    .await;
    assert_eq!((channel.as_str(), will_retry), ("gone", false));
}

#[tokio::test]
async fn a_transient_restore_failure_is_retried() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    let sub = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("flaky", SubscribeOptions::default()).await }
    });
    let (id, _) = conn.expect("subscribe").await;
    conn.reply(id, json!({"offset": 0, "epoch": "e"})).await;
    let mut sub = within("subscribe", sub).await.unwrap().unwrap();
    conn.close(4000, "").await;
    let mut conn = server.accept_ready().await;
    let (id, _) = conn.expect("subscribe").await;
    conn.send(json!({"id": id, "error": {"code": 118, "message": "backend down"}}))
        .await;
    let (id, _) = conn.expect("subscribe").await;
    conn.reply(id, json!({"offset": 2, "epoch": "e"})).await;
    assert!(matches!(
        within("restore", sub.next()).await,
        Some(SubscriptionEvent::Subscribed(_))
    ));
}

#[tokio::test]
async fn a_slow_subscriber_gets_a_lagged_notice_not_a_silent_gap() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    let sub = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .subscribe("fast", SubscribeOptions::default().buffer(2))
                .await
        }
    });
    let (id, _) = conn.expect("subscribe").await;
    conn.reply(id, json!({"offset": 0, "epoch": "e"})).await;
    let mut sub = within("subscribe", sub).await.unwrap().unwrap();
    let pubs: Vec<Value> = (1..=10)
        .map(|n| json!({"push": "pub", "channel": "fast", "offset": n, "epoch": "e", "data": n}))
        .collect();
    conn.send_batch(&pubs).await;
    conn.sync().await; // all ten handled before anything is read
    let mut offsets = Vec::new();
    for _ in 0..2 {
        match within("pub", sub.next()).await {
            Some(SubscriptionEvent::Publication(p)) => offsets.push(p.offset),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(offsets, [1, 2]);
    conn.send(json!({"push": "pub", "channel": "fast", "offset": 11, "epoch": "e", "data": 11}))
        .await;
    assert!(matches!(
        within("lagged", sub.next()).await,
        Some(SubscriptionEvent::Lagged { missed: 8 })
    ));
    match within("pub", sub.next()).await {
        Some(SubscriptionEvent::Publication(p)) => assert_eq!(p.offset, 11),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unsubscribing_and_dropping_a_subscription_tell_the_server() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    for channel in ["a", "b"] {
        let s = tokio::spawn({
            let client = client.clone();
            async move { client.subscribe(channel, SubscribeOptions::default()).await }
        });
        let (id, _) = conn.expect("subscribe").await;
        conn.reply(id, json!({"offset": 0, "epoch": "e"})).await;
        let sub = within("subscribe", s).await.unwrap().unwrap();
        if channel == "a" {
            let u = tokio::spawn(sub.unsubscribe());
            let (id, params) = conn.expect("unsubscribe").await;
            assert_eq!(params["channel"], "a");
            // Unsubscribing is idempotent: "not subscribed" is success.
            conn.send(json!({"id": id, "error": {"code": 109, "message": "not subscribed"}}))
                .await;
            within("unsubscribe", u).await.unwrap().unwrap();
        } else {
            drop(sub);
            let (_, params) = conn.expect("unsubscribe").await;
            assert_eq!(params["channel"], "b");
        }
    }
    // A second subscribe to a held channel is refused locally with code 108.
    let s = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("c", SubscribeOptions::default()).await }
    });
    let (id, _) = conn.expect("subscribe").await;
    conn.reply(id, json!({"offset": 0, "epoch": "e"})).await;
    let _c = within("subscribe", s).await.unwrap().unwrap();
    let e = client
        .subscribe("c", SubscribeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadySubscribed);
    assert_eq!(e.code(), Some(ErrorCode::ALREADY_SUBSCRIBED));
}

#[tokio::test]
async fn the_server_ending_a_subscription_ends_its_stream() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    let s = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("ops", SubscribeOptions::default()).await }
    });
    let (id, _) = conn.expect("subscribe").await;
    conn.reply(id, json!({"offset": 0, "epoch": "e"})).await;
    let mut sub = within("subscribe", s).await.unwrap().unwrap();
    conn.send(json!({"push": "unsubscribed", "channel": "ops", "reason": "kicked"}))
        .await;
    match within("end", sub.next()).await {
        Some(SubscriptionEvent::Unsubscribed(UnsubscribeReason::Server(r))) => {
            assert_eq!(r, "kicked")
        }
        other => panic!("{other:?}"),
    }
    assert!(within("end", sub.next()).await.is_none());
    // It is not restored after a reconnect.
    conn.close(4000, "").await;
    let mut conn = server.accept_ready().await;
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call("m", Payload::null()).await }
    });
    let (id, _) = conn.expect("call").await; // the first frame: no subscribe before it
    conn.reply(id, json!({"data": null})).await;
    within("call", call).await.unwrap().unwrap();
}

#[tokio::test]
async fn server_errors_carry_code_message_and_data_and_error_pushes_are_events() {
    for enc in both() {
        let server = FakeServer::bind(enc).await;
        let client = tokio::spawn(Client::connect(server.config()));
        let mut conn = server.accept_ready().await;
        let client = within("connect", client).await.unwrap().unwrap();
        let mut events = client.events();
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.call("nope", Payload::null()).await }
        });
        let (id, _) = conn.expect("call").await;
        conn.send(
            json!({"id": id, "error": {"code": 1042, "message": "insufficient funds",
                                           "data": {"balance": 3}}}),
        )
        .await;
        let e = within("call", call).await.unwrap().unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode(1042)));
        assert_eq!(e.message(), "insufficient funds");
        assert_eq!(e.data().unwrap().as_json_str(), Some(r#"{"balance":3}"#));
        conn.send(json!({"push": "error", "code": 111, "message": "slow down"}))
            .await;
        let code = wait_event(&mut events, |e| match e {
            Event::ServerError(e) => e.code(),
            _ => None,
        })
        .await;
        assert_eq!(code, ErrorCode::TOO_MANY_REQUESTS);
    }
}

#[tokio::test]
async fn a_call_times_out_and_a_late_reply_is_ignored() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call_with(
                    "slow",
                    Payload::null(),
                    RequestOptions::default().timeout(Duration::from_millis(50)),
                )
                .await
        }
    });
    let (id, _) = conn.expect("call").await;
    let e = within("timeout", slow).await.unwrap().unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    conn.reply(id, json!({"data": "late"})).await;
    // The connection goes on.
    let next = tokio::spawn({
        let client = client.clone();
        async move { client.call("next", Payload::null()).await }
    });
    let (id2, _) = conn.expect("call").await;
    assert_ne!(id, id2);
    conn.reply(id2, json!({"data": "ok"})).await;
    assert_eq!(
        within("call", next).await.unwrap().unwrap(),
        json_payload(json!("ok"))
    );
}

#[tokio::test]
async fn a_request_larger_than_the_servers_limit_is_not_sent() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await; // max_message_bytes 65536
    let client = within("connect", client).await.unwrap().unwrap();
    let big = "x".repeat(70_000);
    let e = client
        .publish("c", json_payload(json!(big)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    conn.sync().await;
    assert!(conn.inbox.is_empty(), "{:?}", conn.inbox);
}

#[tokio::test]
async fn reconnect_attempts_are_bounded_and_end_with_gave_up() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let mut backoff = fast_backoff();
    backoff.max_attempts = Some(3);
    let client = Client::start(
        ClientConfig::new(format!("ws://127.0.0.1:{port}/ws"))
            .backoff(backoff.clone())
            .rng_seed(5),
    );
    let mut events = client.events();
    let queued = tokio::spawn({
        let client = client.clone();
        async move { client.call("m", Payload::null()).await }
    });
    let mut seen = Vec::new();
    let attempts = wait_event(&mut events, |e| {
        seen.push(e.clone());
        match e {
            Event::GaveUp { attempts, .. } => Some(*attempts),
            _ => None,
        }
    })
    .await;
    assert_eq!(attempts, 3);
    let connecting: Vec<(u32, Duration)> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Connecting { attempt, delay } => Some((*attempt, *delay)),
            _ => None,
        })
        .collect();
    assert_eq!(
        connecting.iter().map(|c| c.0).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(connecting[0].1, Duration::ZERO);
    for (_, delay) in &connecting[1..] {
        assert!(*delay >= backoff.min_delay && *delay <= backoff.max_delay);
    }
    let failed = seen
        .iter()
        .filter(|e| matches!(e, Event::ConnectFailed { error, .. } if error.is_connect()))
        .count();
    assert_eq!(failed, 3);
    assert!(within("end", events.next()).await.is_none());
    let e = within("queued", queued).await.unwrap().unwrap_err();
    assert!(e.is_connect() || e.is_closed(), "{e:?}");
}

#[tokio::test]
async fn a_subscribe_that_timed_out_offline_does_not_block_the_next_one() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = Client::start(server.config());
    let e = client
        .subscribe(
            "late",
            SubscribeOptions::default().timeout(Duration::from_millis(20)),
        )
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    let again = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("late", SubscribeOptions::default()).await }
    });
    tokio::task::yield_now().await;
    let mut conn = server.accept_ready().await;
    let (id, params) = conn.expect("subscribe").await;
    assert_eq!(params["channel"], "late");
    conn.reply(id, json!({"offset": 7, "epoch": "e"})).await;
    let sub = within("subscribe", again).await.unwrap().unwrap();
    assert_eq!(sub.position().offset, 7);
    // One subscribe on the wire, not two.
    conn.sync().await;
    assert!(conn.inbox.is_empty(), "{:?}", conn.inbox);
}

#[tokio::test]
async fn credentials_are_sent_in_connect_in_both_encodings() {
    for enc in both() {
        let server = FakeServer::bind(enc).await;
        let creds = json!({"login": "ann", "password": "pw", "n": [1, 2]});
        let client = Client::start(server.config().credentials(creds.clone()));
        let mut conn = server.accept().await;
        conn.send(hello("optional", 0, 64)).await;
        let (id, params) = conn.expect("connect").await;
        assert_eq!(params["credentials"], creds, "{enc:?}");
        assert!(params.get("token").is_none());
        conn.reply(id, json!({"conn": "n1.1", "user": "ann"})).await;
        let info = within("connected", client.wait_connected()).await.unwrap();
        assert_eq!(info.user.as_deref(), Some("ann"));
    }
}

/// Subscribes through the fake server: answers the client's `subscribe` with `result`; returns
/// the subscription and the params the client sent.
async fn subscribe_via(
    client: &Client,
    conn: &mut Conn,
    channel: &str,
    options: SubscribeOptions,
    result: Value,
) -> (plexus_client::Subscription, Value) {
    let sub = tokio::spawn({
        let client = client.clone();
        let channel = channel.to_owned();
        async move { client.subscribe(channel, options).await }
    });
    let (id, params) = conn.expect("subscribe").await;
    assert_eq!(params["channel"], channel);
    conn.reply(id, result).await;
    (within("subscribe", sub).await.unwrap().unwrap(), params)
}

fn publication(channel: &str, offset: u64, epoch: &str) -> Value {
    json!({"push": "pub", "channel": channel, "offset": offset, "epoch": epoch, "data": offset})
}

/// Reads `n` events of a subscription as short strings: `5` for a publication, `S(...)` for a
/// restore.
async fn read_events(sub: &mut plexus_client::Subscription, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(match within("an event", sub.next()).await {
            Some(SubscriptionEvent::Publication(p)) => format!("{}@{}", p.offset, p.epoch),
            Some(SubscriptionEvent::Subscribed(s)) => format!(
                "S({:?},{:?},{}@{})",
                s.recovered, s.reason, s.position.offset, s.position.epoch
            ),
            other => format!("{other:?}"),
        });
    }
    out
}

#[tokio::test]
async fn a_gap_in_live_offsets_is_repaired_before_anything_after_it_is_delivered() {
    for enc in both() {
        let server = FakeServer::bind(enc).await;
        let client = tokio::spawn(Client::connect(server.config()));
        let mut conn = server.accept_ready().await;
        let client = within("connect", client).await.unwrap().unwrap();
        let (mut sub, params) = subscribe_via(
            &client,
            &mut conn,
            "c",
            SubscribeOptions::default(),
            json!({"offset": 4, "epoch": "e"}),
        )
        .await;
        assert!(params.get("since").is_none(), "nothing to recover yet");
        // 5, then 5 again (a duplicate), then 7 (6 was lost), then 8.
        conn.send_batch(&[
            publication("c", 5, "e"),
            publication("c", 5, "e"),
            publication("c", 7, "e"),
            publication("c", 8, "e"),
        ])
        .await;
        // The server still holds the subscription: the client ends it, then subscribes again
        // from the last publication it accepted.
        let (unsub, params) = conn.expect("unsubscribe").await;
        assert_eq!(params["channel"], "c");
        let (id, params) = conn.expect("subscribe").await;
        assert_eq!(
            params["since"],
            json!({"offset": 5, "epoch": "e"}),
            "{enc:?}"
        );
        // 9 is still on its way from the old subscription: it must not come before 6.
        conn.send(publication("c", 9, "e")).await;
        conn.reply(unsub, json!({})).await;
        let recovered: Vec<Value> = (6..=8)
            .map(|o| json!({"channel": "c", "offset": o, "epoch": "e", "data": o}))
            .collect();
        conn.reply(
            id,
            json!({"offset": 8, "epoch": "e", "recovered": true, "publications": recovered}),
        )
        .await;
        conn.send_batch(&[publication("c", 8, "e"), publication("c", 9, "e")])
            .await;
        assert_eq!(
            read_events(&mut sub, 6).await,
            ["5@e", "S(Some(true),None,8@e)", "6@e", "7@e", "8@e", "9@e"]
        );
        assert_eq!(sub.position().offset, 9);
    }
}

#[tokio::test]
async fn an_epoch_change_under_a_live_subscription_is_reported_and_followed() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    let mut events = client.events();
    let (mut sub, _) = subscribe_via(
        &client,
        &mut conn,
        "c",
        SubscribeOptions::default(),
        json!({"offset": 0, "epoch": "e1"}),
    )
    .await;
    conn.send_batch(&[publication("c", 1, "e1"), publication("c", 1, "e2")])
        .await;
    conn.expect("unsubscribe").await;
    let (id, params) = conn.expect("subscribe").await;
    assert_eq!(params["since"], json!({"offset": 1, "epoch": "e1"}));
    conn.reply(
        id,
        json!({"offset": 1, "epoch": "e2", "recovered": false, "reason": "epoch_changed"}),
    )
    .await;
    conn.send(publication("c", 2, "e2")).await;
    assert_eq!(
        read_events(&mut sub, 3).await,
        [
            "1@e1",
            r#"S(Some(false),Some("epoch_changed"),1@e2)"#,
            "2@e2"
        ]
    );
    let s = wait_event(&mut events, |e| match e {
        Event::Subscribed(s) => Some(s.clone()),
        _ => None,
    })
    .await;
    assert!(s.resubscribed);
    assert_eq!(s.reason.as_deref(), Some("epoch_changed"));
}

#[tokio::test]
async fn insufficient_state_resubscribes_from_the_last_position_and_keeps_the_stream() {
    let server = FakeServer::bind(Encoding::Msgpack).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    let (mut sub, _) = subscribe_via(
        &client,
        &mut conn,
        "c",
        SubscribeOptions::default().token("sub-token"),
        json!({"offset": 0, "epoch": "e"}),
    )
    .await;
    conn.send_batch(&[
        publication("c", 1, "e"),
        json!({"push": "unsubscribed", "channel": "c", "reason": "insufficient_state"}),
    ])
    .await;
    // The server already ended it: no unsubscribe, straight to the subscribe.
    let (id, params) = conn.expect("subscribe").await;
    assert_eq!(params["since"], json!({"offset": 1, "epoch": "e"}));
    assert_eq!(
        params["token"], "sub-token",
        "the token goes with every subscribe"
    );
    conn.reply(
        id,
        json!({"offset": 2, "epoch": "e", "recovered": true,
               "publications": [{"channel": "c", "offset": 2, "epoch": "e", "data": 2}]}),
    )
    .await;
    assert_eq!(
        read_events(&mut sub, 3).await,
        ["1@e", "S(Some(true),None,2@e)", "2@e"]
    );
}

#[tokio::test]
async fn a_reconnect_resubscribes_from_the_last_position_unless_recovery_is_off() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    let (mut sub, _) = subscribe_via(
        &client,
        &mut conn,
        "a",
        SubscribeOptions::default().history(10),
        json!({"offset": 3, "epoch": "e",
               "publications": [{"channel": "a", "offset": 3, "epoch": "e", "data": 3}]}),
    )
    .await;
    let (_plain, params) = subscribe_via(
        &client,
        &mut conn,
        "b",
        SubscribeOptions::default().recover(false),
        json!({"offset": 9, "epoch": "e"}),
    )
    .await;
    assert!(params.get("since").is_none());
    assert_eq!(read_events(&mut sub, 1).await, ["3@e"], "history first");
    conn.send(publication("a", 4, "e")).await;
    assert_eq!(read_events(&mut sub, 1).await, ["4@e"]);

    conn.close(4000, "restart").await;
    let mut conn = server.accept_ready().await;
    let mut sent = Vec::new();
    for _ in 0..2 {
        let (id, params) = conn.expect("subscribe").await;
        conn.reply(id, json!({"offset": 12, "epoch": "e"})).await;
        sent.push(params);
    }
    sent.sort_by_key(|p| p["channel"].as_str().unwrap().to_owned());
    assert_eq!(sent[0]["since"], json!({"offset": 4, "epoch": "e"}));
    assert!(
        sent[0].get("history").is_none(),
        "history is for the first subscribe"
    );
    assert!(sent[1].get("since").is_none(), "recover(false)");
}

#[tokio::test]
async fn connect_says_whether_to_sync_and_acks_are_cumulative_after_handling() {
    let server = FakeServer::bind(Encoding::Json).await;
    let config = server
        .config()
        .token("t")
        .sync(false)
        .mail_ack(plexus_client::MailAck::Explicit);
    let client = tokio::spawn(Client::connect(config));
    let mut conn = server.accept().await;
    conn.send(hello("required", 0, 64)).await;
    let (id, params) = conn.expect("connect").await;
    assert_eq!(params["sync"], false);
    conn.reply(id, json!({"conn": "n1.1", "user": "ann"})).await;
    let client = within("connect", client).await.unwrap().unwrap();
    let mut mailbox = client.mail().expect("the mailbox");
    assert!(client.mail().is_none(), "one mailbox per client");
    let mails: Vec<Value> = (1..=3)
        .map(|seq| json!({"push": "mail", "seq": seq, "data": {"n": seq}, "sent_ms": 1000 + seq}))
        .collect();
    conn.send_batch(&mails).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(within("mail", mailbox.next()).await.unwrap());
    }
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(got[2].sent_ms, 1003);
    let third = got.pop().unwrap();
    let second = got.pop().unwrap();
    let first = got.pop().unwrap();
    // A call made after a mail was handled goes out after that mail's ack, if one is due: the
    // call is the probe that shows whether an ack was sent.
    let probe = |conn_call: &'static str| {
        let client = client.clone();
        tokio::spawn(async move { client.call(conn_call, Payload::null()).await })
    };
    // Handling 2 before 1 acknowledges nothing: an ack of 2 would cover 1.
    second.ack();
    let call = probe("after-2");
    let (id, params) = conn.expect("call").await;
    assert_eq!(params["method"], "after-2");
    conn.reply(id, json!({"data": null})).await;
    within("call", call).await.unwrap().unwrap();
    first.ack();
    let (ack2, params) = conn.expect("ack").await;
    assert_eq!(params, json!({"seq": 2}));
    // Acks are cumulative: 3's goes out without waiting for the answer to 2's.
    third.ack();
    let (id, params) = conn.expect("ack").await;
    assert_eq!(params, json!({"seq": 3}));
    conn.reply(ack2, json!({"pending": 1})).await;
    conn.reply(id, json!({"pending": 0})).await;
}

#[tokio::test]
async fn the_servers_insufficient_state_during_a_repair_does_not_start_another() {
    let server = FakeServer::bind(Encoding::Json).await;
    let client = tokio::spawn(Client::connect(server.config()));
    let mut conn = server.accept_ready().await;
    let client = within("connect", client).await.unwrap().unwrap();
    let (mut sub, _) = subscribe_via(
        &client,
        &mut conn,
        "c",
        SubscribeOptions::default(),
        json!({"offset": 1, "epoch": "e"}),
    )
    .await;
    conn.send(publication("c", 3, "e")).await; // 2 was lost
    let (unsub, _) = conn.expect("unsubscribe").await;
    let (id, params) = conn.expect("subscribe").await;
    assert_eq!(params["since"], json!({"offset": 1, "epoch": "e"}));
    // The server noticed the same gap and ended the old subscription before it read the
    // client's requests.
    conn.send(json!({"push": "unsubscribed", "channel": "c", "reason": "insufficient_state"}))
        .await;
    conn.send(json!({"id": unsub, "error": {"code": 109, "message": "not subscribed"}}))
        .await;
    conn.reply(
        id,
        json!({"offset": 3, "epoch": "e", "recovered": true, "publications": [
            {"channel": "c", "offset": 2, "epoch": "e", "data": 2},
            {"channel": "c", "offset": 3, "epoch": "e", "data": 3}]}),
    )
    .await;
    conn.send(publication("c", 4, "e")).await;
    assert_eq!(
        read_events(&mut sub, 4).await,
        ["S(Some(true),None,3@e)", "2@e", "3@e", "4@e"]
    );
    conn.sync().await;
    assert!(
        conn.inbox.is_empty(),
        "one repair, not two: {:?}",
        conn.inbox
    );
}
