//! A raw protocol client for the server's integration tests, on tokio-tungstenite (a different
//! WebSocket implementation from the server's, so every test is also an interop test).
#![allow(dead_code)]

pub mod mesh;
pub mod socketio;

use futures_util::{SinkExt, StreamExt};
use plexus_core::CommandContext;
use plexus_protocol::client::{Op, Request, encode_request};
use plexus_protocol::server::{
    ErrorBody, Hello, Push, ServerFrame, decode_reply, decode_server_frame,
};
use plexus_protocol::{Encoding, split_frames};
use plexus_server::{RunningServer, Server, ServerBuilder};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Upper bound for anything a test waits for; never an assertion about speed.
pub const WAIT: Duration = Duration::from_secs(10);

/// A development-mode server builder on a free port, with an `echo` command, and every channel
/// open without presence (so that tests that are not about presence see no join/leave pushes).
pub fn dev() -> ServerBuilder {
    Server::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .dev_mode()
        .channels(open_without_presence())
        .command("echo", |ctx: CommandContext| async move { Ok(ctx.payload) })
}

pub fn open_without_presence() -> plexus_core::ChannelPolicy {
    let mut policy = plexus_core::ChannelPolicy::default();
    policy.add_namespace(
        plexus_core::Namespace::new("open", plexus_core::ChannelMatch::Any)
            .subscribe(plexus_core::Access::Anyone)
            .publish(plexus_core::Access::Anyone),
    );
    policy
}

/// Every channel open to anyone, with a history (10 000 publications, 10 minutes) large enough
/// for recovery to cover an outage in the failure tests.
pub fn recovering_policy() -> plexus_core::ChannelPolicy {
    let mut p = plexus_core::ChannelPolicy::default();
    let history = plexus_core::HistoryOptions {
        size: 10_000,
        ttl: Duration::from_secs(600),
    };
    p.add_namespace(
        plexus_core::Namespace::new("all", plexus_core::ChannelMatch::Any)
            .subscribe(plexus_core::Access::Anyone)
            .publish(plexus_core::Access::Anyone)
            .recovery(history),
    );
    p
}

/// Reads publications until offset `top`, recovering (subscribe again from the last position)
/// when the node reports a gap; returns every offset received, in order.
pub async fn offsets_until(c: &mut TestClient, channel: &str, top: u64) -> Vec<u64> {
    let mut seen: Vec<u64> = Vec::new();
    let mut epoch = String::new();
    while seen.last().copied().unwrap_or(0) < top {
        match c.next_push().await {
            plexus_protocol::server::Push::Pub(p) if p.channel == channel => {
                epoch = p.epoch.clone();
                seen.push(p.offset);
            }
            plexus_protocol::server::Push::Unsubscribed(u) if u.reason == "insufficient_state" => {
                let op = Op::Subscribe(plexus_protocol::client::SubscribeParams {
                    since: Some(plexus_protocol::client::Position {
                        offset: *seen.last().unwrap_or(&0),
                        epoch: epoch.clone(),
                    }),
                    ..plexus_protocol::client::SubscribeParams::new(channel)
                });
                let r: plexus_protocol::server::SubscribeResult = c.request(op).await.unwrap();
                assert_eq!(r.recovered, Some(true), "{:?}", r.reason);
                seen.extend(r.publications.iter().map(|p| p.offset));
            }
            _ => {}
        }
    }
    seen
}

/// Starts a server on the engine the suite runs against: the in-memory engine, Redis when
/// `PLEXUS_TEST_ENGINE=redis`, a Redis Cluster when `PLEXUS_TEST_ENGINE=redis-cluster` (the
/// test command runs the suite every way). With Redis, every server gets its own key prefix on
/// one `redis-server` (or cluster) per test binary.
pub async fn start(builder: ServerBuilder) -> RunningServer {
    let builder = match test_engine() {
        Engine::Memory => builder,
        Engine::Redis | Engine::RedisCluster => {
            builder.engine(redis_engine(&plexus_redis::testing::unique_prefix()).await)
        }
    };
    start_as_is(builder).await
}

/// Starts a server with exactly the engine the builder has.
pub async fn start_as_is(builder: ServerBuilder) -> RunningServer {
    builder.build().start().await.expect("server starts")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Memory,
    Redis,
    RedisCluster,
}

pub fn test_engine() -> Engine {
    match std::env::var("PLEXUS_TEST_ENGINE").as_deref() {
        Ok("redis") => Engine::Redis,
        Ok("redis-cluster") => Engine::RedisCluster,
        Ok("memory") | Err(_) => Engine::Memory,
        Ok(other) => {
            panic!("PLEXUS_TEST_ENGINE={other}: expected memory, redis or redis-cluster")
        }
    }
}

/// The Redis Cluster of this test run: the one whose node URLs `PLEXUS_TEST_REDIS_CLUSTER`
/// lists (comma-separated; the test command starts one for the whole run), else one started
/// for this test binary (3 masters, 3 replicas).
pub fn redis_cluster_urls() -> &'static [String] {
    static URLS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    static CLUSTER: std::sync::OnceLock<plexus_redis::testing::RedisCluster> =
        std::sync::OnceLock::new();
    URLS.get_or_init(|| match std::env::var("PLEXUS_TEST_REDIS_CLUSTER") {
        Ok(list) if !list.is_empty() => list.split(',').map(str::to_owned).collect(),
        _ => CLUSTER
            .get_or_init(|| {
                plexus_redis::testing::RedisCluster::start(3, 1).expect("redis cluster starts")
            })
            .urls(),
    })
}

/// The engine settings of the suite's Redis (standalone or cluster, by `PLEXUS_TEST_ENGINE`).
pub fn suite_redis_config(prefix: &str) -> plexus_redis::RedisConfig {
    if test_engine() == Engine::RedisCluster {
        let mut config = redis_config("", prefix);
        config.cluster = redis_cluster_urls().to_vec();
        config
    } else {
        redis_config(&redis().url(), prefix)
    }
}

/// The `redis-server` of this test binary.
pub fn redis() -> &'static plexus_redis::testing::RedisServer {
    static REDIS: std::sync::OnceLock<plexus_redis::testing::RedisServer> =
        std::sync::OnceLock::new();
    REDIS.get_or_init(|| plexus_redis::testing::RedisServer::start().expect("redis-server starts"))
}

/// A Redis engine on this binary's `redis-server` (or the run's cluster), with short liveness
/// bounds for tests.
pub async fn redis_engine(prefix: &str) -> plexus_core::Engine {
    plexus_redis::redis_engine(suite_redis_config(prefix))
        .await
        .expect("redis engine")
}

pub fn redis_config(url: &str, prefix: &str) -> plexus_redis::RedisConfig {
    let mut config = plexus_redis::RedisConfig::new(url).prefix(prefix);
    config.presence_ttl = Duration::from_secs(3);
    config.node_ttl = Duration::from_secs(3);
    config.probe_interval = Duration::from_secs(1);
    config.probe_timeout = Duration::from_secs(1);
    config
}

pub async fn connect_raw(url: &str, protocols: &[&str]) -> Ws {
    try_connect_raw(url, protocols)
        .await
        .expect("websocket connects")
}

pub async fn try_connect_raw(
    url: &str,
    protocols: &[&str],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request().unwrap();
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&protocols.join(", ")).unwrap(),
        );
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

#[derive(Debug)]
pub enum Frame {
    Reply { id: u64, bytes: Vec<u8> },
    Push(Push),
    Closed { code: u16, reason: String },
}

pub struct TestClient {
    pub ws: Ws,
    pub enc: Encoding,
    pub hello: Hello,
    buffered: VecDeque<Frame>,
    next_id: u64,
    /// Answer `ping` pushes with `pong` and hide them and `latency` pushes (default true).
    pub auto_pong: bool,
    /// The last `latency` push hidden by `auto_pong`.
    pub last_rtt_ms: Option<f64>,
}

impl TestClient {
    pub async fn connect(url: &str, enc: Encoding) -> TestClient {
        let ws = connect_raw(url, &[enc.subprotocol()]).await;
        Self::from_ws(ws, enc).await
    }

    pub async fn from_ws(ws: Ws, enc: Encoding) -> TestClient {
        let mut client = TestClient {
            ws,
            enc,
            hello: placeholder_hello(),
            buffered: VecDeque::new(),
            next_id: 1,
            auto_pong: true,
            last_rtt_ms: None,
        };
        match client.next_frame().await {
            Frame::Push(Push::Hello(hello)) => client.hello = hello,
            other => panic!("expected hello first, got {other:?}"),
        }
        client
    }

    pub async fn send_bytes(&mut self, bytes: Vec<u8>) {
        let message = match self.enc {
            Encoding::Json => Message::text(String::from_utf8(bytes).unwrap()),
            Encoding::Msgpack => Message::binary(bytes),
        };
        self.ws.send(message).await.expect("send");
    }

    /// Sends `frames` (any values, encoded as they are) in one message.
    pub async fn send_batch(&mut self, frames: &[serde_json::Value]) {
        let mut writer = plexus_protocol::FrameWriter::new(self.enc);
        for frame in frames {
            writer.push(&plexus_protocol::encode(self.enc, frame));
        }
        self.send_bytes(writer.take().to_vec()).await;
    }

    /// The ids of the next `n` replies, in the order they came (pushes are skipped).
    pub async fn reply_order(&mut self, n: usize) -> Vec<u64> {
        let mut ids = Vec::new();
        while ids.len() < n {
            match self.next_frame().await {
                Frame::Reply { id, .. } => ids.push(id),
                Frame::Push(_) => {}
                Frame::Closed { code, reason } => {
                    panic!("closed ({code} {reason}) after replies {ids:?}")
                }
            }
        }
        ids
    }

    /// Sends a request and returns its id.
    pub async fn send(&mut self, op: Op) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let bytes = encode_request(self.enc, &Request { id: Some(id), op });
        self.send_bytes(bytes.to_vec()).await;
        id
    }

    /// Sends a frame without id.
    pub async fn notify(&mut self, op: Op) {
        let bytes = encode_request(self.enc, &Request { id: None, op });
        self.send_bytes(bytes.to_vec()).await;
    }

    async fn read_message(&mut self) {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait bound");
            let bytes = match message {
                Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                Some(Ok(Message::Binary(b))) => b.to_vec(),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    self.buffered.push_back(Frame::Closed { code, reason });
                    return;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    self.buffered.push_back(Frame::Closed {
                        code: 1006,
                        reason: e.to_string(),
                    });
                    return;
                }
                None => {
                    self.buffered.push_back(Frame::Closed {
                        code: 1006,
                        reason: "eof".into(),
                    });
                    return;
                }
            };
            for frame in split_frames(self.enc, &bytes).expect("server frames split") {
                let decoded =
                    match decode_server_frame(self.enc, frame).expect("server frame decodes") {
                        ServerFrame::Reply { id } => Frame::Reply {
                            id,
                            bytes: frame.to_vec(),
                        },
                        ServerFrame::Push(Push::Ping) if self.auto_pong => {
                            let pong = encode_request(
                                self.enc,
                                &Request {
                                    id: None,
                                    op: Op::Pong,
                                },
                            );
                            let message = match self.enc {
                                Encoding::Json => {
                                    Message::text(String::from_utf8(pong.to_vec()).unwrap())
                                }
                                Encoding::Msgpack => Message::binary(pong.to_vec()),
                            };
                            let _ = self.ws.send(message).await;
                            continue;
                        }
                        ServerFrame::Push(Push::Latency(l)) if self.auto_pong => {
                            self.last_rtt_ms = Some(l.rtt_ms);
                            continue;
                        }
                        ServerFrame::Push(push) => Frame::Push(push),
                    };
                self.buffered.push_back(decoded);
            }
            return;
        }
    }

    /// The next frame (reply, push or close).
    pub async fn next_frame(&mut self) -> Frame {
        while self.buffered.is_empty() {
            self.read_message().await;
        }
        self.buffered.pop_front().unwrap()
    }

    /// The reply to `id`, keeping other frames for later.
    pub async fn reply<R: DeserializeOwned>(&mut self, id: u64) -> Result<R, ErrorBody> {
        let mut scanned = 0;
        loop {
            while scanned < self.buffered.len() {
                if let Frame::Reply { id: got, .. } = &self.buffered[scanned]
                    && *got == id
                {
                    let Some(Frame::Reply { bytes, .. }) = self.buffered.remove(scanned) else {
                        unreachable!()
                    };
                    return decode_reply::<R>(self.enc, &bytes).expect("reply decodes");
                }
                if let Frame::Closed { code, reason } = &self.buffered[scanned] {
                    panic!("closed ({code} {reason}) while waiting for reply {id}");
                }
                scanned += 1;
            }
            self.read_message().await;
        }
    }

    pub async fn request<R: DeserializeOwned>(&mut self, op: Op) -> Result<R, ErrorBody> {
        let id = self.send(op).await;
        self.reply(id).await
    }

    /// The next push, skipping replies.
    pub async fn next_push(&mut self) -> Push {
        loop {
            match self.next_frame().await {
                Frame::Push(push) => return push,
                Frame::Reply { .. } => continue,
                Frame::Closed { code, reason } => {
                    panic!("closed ({code} {reason}) while waiting for a push")
                }
            }
        }
    }

    /// Waits for the close frame, skipping everything else; returns its code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Frame::Closed { code, reason } = self.next_frame().await {
                return (code, reason);
            }
        }
    }

    /// Whether anything other than pings arrives within `quiet`.
    pub async fn silent_for(&mut self, quiet: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + quiet;
        while self.buffered.is_empty() {
            if tokio::time::timeout_at(deadline, self.read_message())
                .await
                .is_err()
            {
                return true;
            }
        }
        eprintln!("not silent: {:?}", self.buffered);
        false
    }
}

fn placeholder_hello() -> Hello {
    serde_json::from_value(serde_json::json!({
        "version": 0, "node": "", "conn": "", "auth": "optional", "auth_timeout_ms": 0,
        "ping_interval_ms": 0, "max_missed_pongs": 0,
        "limits": {"max_message_bytes": 0, "max_subscriptions": 0, "max_channel_bytes": 0,
                   "requests_per_second": 0, "requests_burst": 0, "max_pending_requests": 0}
    }))
    .unwrap()
}

/// Generates a `json` and a `msgpack` test from one `|enc| async move { … }` body.
#[macro_export]
macro_rules! both_encodings {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn over_json() {
                ($body)(plexus_protocol::Encoding::Json).await
            }
            #[tokio::test]
            async fn over_msgpack() {
                ($body)(plexus_protocol::Encoding::Msgpack).await
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// HTTP

#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

impl HttpReply {
    /// The body as JSON (an engine.io error: `{"code", "message"}`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("a JSON body, got {:?}: {e}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), written by hand so that
/// tests control every byte (a polling client's requests, a request cancelled halfway).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> HttpReply {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request(method, path, body).as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw))
        .await
        .expect("an answer within the wait bound")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("a complete answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    HttpReply { status, body }
}

/// The bytes of a request as `http` sends it.
pub fn request(method: &str, path: &str, body: Option<&str>) -> String {
    let body = body.unwrap_or("");
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&tail[..size]);
        rest = &tail[size + 2..];
    }
    out
}

/// Waits until `/health` answers 200 (an engine that can serve).
pub async fn wait_healthy(server: &RunningServer) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while http(server.local_addr(), "GET", "/health", None)
        .await
        .status
        != 200
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
