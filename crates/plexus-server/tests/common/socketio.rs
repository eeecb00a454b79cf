//! Socket.IO over real sockets for the tests: HTTP long-polling as a browser's `fetch` does it
//! (one request per TCP connection, [`super::http`]), and an Engine.IO 4 WebSocket client that
//! reads one packet per frame. Used by `socketio.rs`, `socketio_suite.rs` and
//! `socketio_multinode.rs`.

use super::{WAIT, Ws, http};
use futures_util::{SinkExt, StreamExt};
use plexus_server::socketio::SocketIoConfig;
use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Where the tests' servers serve Socket.IO (the default `[socketio] path`).
pub const PATH: &str = "/socket.io/";

/// The server setup the official suites expect (`v5-current.md` and `v4-current.md` of
/// `socketio/socket.io`, §Test suite): pingInterval 300 ms, pingTimeout 200 ms, maxPayload
/// 1 000 000, connectTimeout 1000 ms, CORS for any origin, and the namespace `/custom`.
pub fn suite_config() -> SocketIoConfig {
    SocketIoConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload_bytes: 1_000_000,
        connect_timeout: Duration::from_millis(1000),
        cors_origins: vec!["*".into()],
        namespaces: vec!["/custom".into()],
        ..Default::default()
    }
}

/// The `sid` of an open packet (`0{"sid":…}`).
pub fn sid_of(open: &str) -> String {
    let json: Value =
        serde_json::from_str(open.strip_prefix('0').expect("an open packet")).unwrap();
    json["sid"].as_str().unwrap().to_owned()
}

/// The path of a polling session's requests.
pub fn polling_path(sid: &str) -> String {
    format!("{PATH}?EIO=4&transport=polling&sid={sid}")
}

/// Opens an Engine.IO 4 polling session: its sid and the path of its requests.
pub async fn open_polling(addr: SocketAddr) -> (String, String) {
    let open = http(
        addr,
        "GET",
        &format!("{PATH}?EIO=4&transport=polling"),
        None,
    )
    .await;
    assert_eq!(open.status, 200, "{}", open.body);
    let sid = sid_of(&open.body);
    let path = polling_path(&sid);
    (sid, path)
}

/// The packets of a polling GET's body (revision 4: separated by `\x1e`).
pub fn packets(body: &str) -> Vec<String> {
    body.split('\u{1e}').map(str::to_owned).collect()
}

/// GETs until `n` packets other than pings came (each ping is answered with a pong); the
/// packets in order.
pub async fn poll_packets(addr: SocketAddr, path: &str, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} packets within the wait bound, got {got:?}"
        );
        let reply = http(addr, "GET", path, None).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        for packet in packets(&reply.body) {
            match packet.as_str() {
                "2" => assert_eq!(http(addr, "POST", path, Some("3")).await.status, 200),
                "6" => {}
                _ => got.push(packet),
            }
        }
    }
    assert_eq!(got.len(), n, "{got:?}");
    got
}

/// The HTTP status with which a WebSocket handshake at `query` is refused.
pub async fn ws_refused(addr: SocketAddr, query: &str) -> u16 {
    let url = format!("ws://{addr}{PATH}?{query}");
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&url))
        .await
        .expect("an answer within the wait bound")
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{query}: expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("{query}: the WebSocket opened"),
    }
}

/// A WebSocket message as the tests see it.
#[derive(Debug, PartialEq, Eq)]
pub enum WsMsg {
    Text(String),
    Binary(Vec<u8>),
    /// The close code (1005 without one; 1006 when the connection ended without a close frame).
    Closed(u16),
}

/// An Engine.IO 4 client over WebSocket.
pub struct SioWs {
    pub ws: Ws,
    /// Answer pings (`2`) with pongs (`3`) and hide them (default true).
    pub pong: bool,
    buffered: VecDeque<WsMsg>,
}

impl SioWs {
    /// Opens a WebSocket with this query (after `?`) and reads the open packet; the handshake.
    pub async fn open(addr: SocketAddr, query: &str) -> (SioWs, Value) {
        let mut ws = SioWs::connect(addr, query).await;
        let open = ws.text().await;
        let handshake = serde_json::from_str(open.strip_prefix('0').expect("an open packet"))
            .expect("the handshake is JSON");
        (ws, handshake)
    }

    /// Opens an Engine.IO 4 WebSocket-only session; the client and its handshake.
    pub async fn open_v4(addr: SocketAddr) -> (SioWs, Value) {
        SioWs::open(addr, "EIO=4&transport=websocket").await
    }

    /// A WebSocket with this query; nothing read yet (an upgrade of a polling session).
    pub async fn connect(addr: SocketAddr, query: &str) -> SioWs {
        let url = format!("ws://{addr}{PATH}?{query}");
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&url))
            .await
            .expect("connects within the wait bound")
            .expect("the WebSocket opens");
        SioWs {
            ws,
            pong: true,
            buffered: VecDeque::new(),
        }
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::binary(bytes.to_vec()))
            .await
            .expect("send");
    }

    async fn read(&mut self) -> WsMsg {
        // One bound for the message, however many pings come before it.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("a message within the wait bound");
            return match message {
                Some(Ok(Message::Text(text))) if self.pong && text.as_str() == "2" => {
                    let _ = self.ws.send(Message::text("3")).await;
                    continue;
                }
                Some(Ok(Message::Text(text))) => WsMsg::Text(text.to_string()),
                Some(Ok(Message::Binary(bytes))) => WsMsg::Binary(bytes.to_vec()),
                Some(Ok(Message::Close(frame))) => {
                    WsMsg::Closed(frame.map_or(1005, |f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => WsMsg::Closed(1006),
            };
        }
    }

    /// The next message (pings hidden when `pong`).
    pub async fn next(&mut self) -> WsMsg {
        match self.buffered.pop_front() {
            Some(message) => message,
            None => self.read().await,
        }
    }

    /// The next message, which must be text.
    pub async fn text(&mut self) -> String {
        match self.next().await {
            WsMsg::Text(text) => text,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next message, which must be binary.
    pub async fn binary(&mut self) -> Vec<u8> {
        match self.next().await {
            WsMsg::Binary(bytes) => bytes,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }

    /// Waits for the end of the connection, skipping what comes before; the close code.
    pub async fn closed(&mut self) -> u16 {
        loop {
            if let WsMsg::Closed(code) = self.next().await {
                return code;
            }
        }
    }

    /// The first text message `pick` accepts; the others stay for later reads, in order.
    pub async fn first_text<T>(&mut self, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let mut scanned = 0;
        loop {
            while scanned < self.buffered.len() {
                if let WsMsg::Text(text) = &self.buffered[scanned]
                    && let Some(found) = pick(text)
                {
                    self.buffered.remove(scanned);
                    return found;
                }
                if let WsMsg::Closed(code) = &self.buffered[scanned] {
                    panic!("closed ({code}) while waiting");
                }
                scanned += 1;
            }
            let message = self.read().await;
            self.buffered.push_back(message);
        }
    }

    /// Sends a CONNECT to `nsp` (with `auth`, a JSON object) and reads its answer; the socket
    /// id it carries.
    pub async fn connect_nsp(&mut self, nsp: &str, auth: Option<&str>) -> String {
        let prefix = if nsp == "/" {
            "40".to_owned()
        } else {
            format!("40{nsp},")
        };
        self.send(&format!("{prefix}{}", auth.unwrap_or(""))).await;
        let answer = self.text().await;
        let json = answer
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("a CONNECT answer for {nsp}, got {answer}"));
        let json: Value = serde_json::from_str(json).unwrap();
        json["sid"].as_str().expect("a socket id").to_owned()
    }

    /// Emits `event` with `args` in namespace `/` with ack id `id`, and waits for the ack (other
    /// messages stay for later); the ack's arguments.
    pub async fn call(&mut self, id: u64, event: &str, args: &[Value]) -> Vec<Value> {
        let mut packet = vec![Value::from(event)];
        packet.extend_from_slice(args);
        self.send(&format!("42{id}{}", Value::from(packet))).await;
        let prefix = format!("43{id}");
        self.first_text(|text| {
            let json = text.strip_prefix(&prefix)?;
            json.starts_with('[')
                .then(|| serde_json::from_str(json).expect("ack arguments are JSON"))
        })
        .await
    }

    /// The next event `name` in namespace `/` (other messages stay for later); its arguments.
    pub async fn event(&mut self, name: &str) -> Vec<Value> {
        self.first_text(|text| {
            let args: Vec<Value> = serde_json::from_str(text.strip_prefix("42")?).ok()?;
            (args.first()? == name).then(|| args[1..].to_vec())
        })
        .await
    }
}
