//! Helpers for the standalone-server tests: a server started from TOML text, a raw JSON
//! WebSocket client (tokio-tungstenite, written against `docs/protocol.md` rather than the
//! protocol crate), an HTTP client, a real HTTP backend whose answers each test scripts, and
//! token signing with the keys in `tests/keys/`.
#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use plexus_server::RunningServer;
use plexus_server::config::{self, ConfigFile, Flag, Loaded, Sources};
use plexus_server::jwt::{self, Algorithm, SigningKey};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for anything a test waits for; never an assertion about speed.
pub const WAIT: Duration = Duration::from_secs(10);

/// An HMAC secret long enough for the configuration's check.
pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
/// An API key long enough for the configuration's check.
pub const API_KEY: &str = "test-api-key-0123456789";

pub fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn key(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).expect("test key")
}

/// Signs `claims` with the HMAC secret.
pub fn hs(claims: Value, alg: Algorithm) -> String {
    jwt::sign(&claims, &SigningKey::Hmac(SECRET.as_bytes().to_vec()), alg).unwrap()
}

/// Signs `claims` with a PEM private key from `tests/keys/`.
pub fn pem(claims: Value, key_name: &str, alg: Algorithm) -> String {
    jwt::sign(&claims, &SigningKey::Pem(key(key_name), alg), alg).unwrap()
}

pub fn now() -> u64 {
    jwt::now_seconds()
}

/// Loads a configuration from TOML text (and environment variables and flags).
pub fn load_with(
    toml: &str,
    env: &[(&str, &str)],
    flags: &[(&str, &str)],
) -> Result<Loaded, config::ConfigError> {
    config::load(&Sources {
        file: Some(ConfigFile {
            path: "test.toml".into(),
            text: toml.to_owned(),
        }),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        flags: flags
            .iter()
            .map(|(k, v)| Flag::new(format!("--set {k}"), *k, *v))
            .collect(),
    })
}

pub fn load(toml: &str) -> Loaded {
    load_with(toml, &[], &[]).unwrap_or_else(|e| panic!("configuration refused:\n{e}"))
}

/// Starts a server from TOML text, on a free port.
pub async fn serve(toml: &str) -> RunningServer {
    serve_loaded(load(toml)).await
}

pub async fn serve_loaded(loaded: Loaded) -> RunningServer {
    loaded
        .server_builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .build()
        .start()
        .await
        .expect("server starts")
}

// ---------------------------------------------------------------------------------------------
// WebSocket

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a connection received.
#[derive(Debug)]
pub enum Frame {
    Reply(Value),
    Push(Value),
    Closed(u16, String),
}

/// A JSON-protocol client that answers pings and keeps frames it was not asked for.
pub struct Client {
    ws: Ws,
    pub hello: Value,
    buffered: VecDeque<Frame>,
    next_id: u64,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        Client::connect_with(url, &[]).await
    }

    /// Connects with extra upgrade headers (cookies, authorization…).
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Client {
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("plexus.v1.json"),
        );
        for (name, value) in headers {
            request.headers_mut().insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("connects in time")
            .expect("websocket connects");
        let mut client = Client {
            ws,
            hello: Value::Null,
            buffered: VecDeque::new(),
            next_id: 1,
        };
        match client.next().await {
            Frame::Push(p) if p["push"] == "hello" => client.hello = p,
            other => panic!("expected hello, got {other:?}"),
        }
        client
    }

    async fn read(&mut self) {
        let message = tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("a frame within the wait bound");
        let text = match message {
            Some(Ok(Message::Text(t))) => t.to_string(),
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
                self.buffered.push_back(Frame::Closed(code, reason));
                // Reading on lets tungstenite send its answering close frame, so the server
                // sees a clean close at once.
                let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
                let _ = tokio::time::timeout(WAIT, drain).await;
                return;
            }
            Some(Ok(_)) => return,
            Some(Err(e)) => {
                self.buffered.push_back(Frame::Closed(1006, e.to_string()));
                return;
            }
            None => {
                self.buffered.push_back(Frame::Closed(1006, "eof".into()));
                return;
            }
        };
        let stream = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
        for frame in stream {
            let frame = frame.expect("server frames are JSON");
            match frame.get("push").and_then(Value::as_str) {
                Some("ping") => {
                    let _ = self.ws.send(Message::text(r#"{"op":"pong"}"#)).await;
                }
                Some("latency") => {}
                Some(_) => self.buffered.push_back(Frame::Push(frame)),
                None => self.buffered.push_back(Frame::Reply(frame)),
            }
        }
    }

    pub async fn next(&mut self) -> Frame {
        while self.buffered.is_empty() {
            self.read().await;
        }
        self.buffered.pop_front().unwrap()
    }

    pub async fn send(&mut self, op: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let frame = json!({"id": id, "op": op, "params": params});
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
        id
    }

    /// The reply to `id`: `Ok(result)` or `Err(error body)`.
    pub async fn reply(&mut self, id: u64) -> Result<Value, Value> {
        let mut scanned = 0;
        loop {
            while scanned < self.buffered.len() {
                match &self.buffered[scanned] {
                    Frame::Reply(r) if r["id"] == id => {
                        let Some(Frame::Reply(mut r)) = self.buffered.remove(scanned) else {
                            unreachable!()
                        };
                        return match r.get("error") {
                            Some(_) => Err(r["error"].take()),
                            None => Ok(r["result"].take()),
                        };
                    }
                    Frame::Closed(code, reason) => {
                        panic!("closed ({code} {reason}) while waiting for reply {id}")
                    }
                    _ => scanned += 1,
                }
            }
            self.read().await;
        }
    }

    pub async fn request(&mut self, op: &str, params: Value) -> Result<Value, Value> {
        let id = self.send(op, params).await;
        self.reply(id).await
    }

    /// The next push of type `kind`, keeping the others.
    pub async fn push(&mut self, kind: &str) -> Value {
        let mut scanned = 0;
        loop {
            while scanned < self.buffered.len() {
                match &self.buffered[scanned] {
                    Frame::Push(p) if p["push"] == kind => {
                        let Some(Frame::Push(p)) = self.buffered.remove(scanned) else {
                            unreachable!()
                        };
                        return p;
                    }
                    Frame::Closed(code, reason) => {
                        panic!("closed ({code} {reason}) while waiting for a `{kind}` push")
                    }
                    _ => scanned += 1,
                }
            }
            self.read().await;
        }
    }

    /// Closes with a close frame of `code` and `reason`, and waits for the server's answer.
    pub async fn close(&mut self, code: u16, reason: &str) {
        let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        let _ = self.ws.close(Some(frame)).await;
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        let _ = tokio::time::timeout(WAIT, drain).await;
    }

    /// The close code and reason, skipping everything else.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Frame::Closed(code, reason) = self.next().await {
                return (code, reason);
            }
        }
    }
}

/// Connects and authenticates with `token`; the connect result.
pub async fn connect_token(url: &str, token: &str) -> (Client, Result<Value, Value>) {
    let mut c = Client::connect(url).await;
    let r = c.request("connect", json!({"token": token})).await;
    (c, r)
}

// ---------------------------------------------------------------------------------------------
// HTTP

pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, HeaderMap, Bytes) {
    let client: HttpClient<_, Full<Bytes>> = HttpClient::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).unwrap();
    let response = tokio::time::timeout(WAIT, client.request(request))
        .await
        .expect("an answer in time")
        .expect("HTTP request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

/// `POST /api/<method>` with the test key; the status and the JSON answer.
pub async fn api(server: &RunningServer, method: &str, body: Value) -> (StatusCode, Value) {
    let auth = format!("apikey {API_KEY}");
    let (status, _, bytes) = http(
        server.local_addr(),
        "POST",
        &format!("/api/{method}"),
        &[("authorization", &auth)],
        body.to_string(),
    )
    .await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("JSON answer, got {:?}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

/// The `result` of a successful API call.
pub async fn api_ok(server: &RunningServer, method: &str, body: Value) -> Value {
    let (status, mut value) = api(server, method, body).await;
    assert_eq!(status, StatusCode::OK, "{method}: {value}");
    value["result"].take()
}

// ---------------------------------------------------------------------------------------------
// A backend

/// One request the backend received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

type Script = Arc<dyn Fn(Received) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// A real HTTP backend on a free port. Every request is recorded and answered by the script.
pub struct Backend {
    pub addr: SocketAddr,
    /// `https` when served with TLS (as `localhost`).
    scheme: &'static str,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start<F, Fut>(script: F) -> Backend
    where
        F: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        Backend::start_with(script, None).await
    }

    /// A backend served over TLS with this certificate (for `localhost`).
    pub async fn start_tls<F, Fut>(script: F, tls: &plexus_server::tls::TlsConfig) -> Backend
    where
        F: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        Backend::start_with(script, Some(tls.acceptor().unwrap())).await
    }

    async fn start_with<F, Fut>(script: F, tls: Option<plexus_server::tls::Acceptor>) -> Backend
    where
        F: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let script: Script = Arc::new(move |r| Box::pin(script(r)));
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let app = Router::new().fallback(move |request: Request<axum::body::Body>| {
            let (script, log) = (script.clone(), log.clone());
            async move {
                let (parts, body) = request.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                let received = Received {
                    path: parts.uri.path().to_owned(),
                    headers: parts.headers,
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                log.lock().unwrap().push(received.clone());
                script(received).await
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(async move {
            match tls {
                None => {
                    let _ = axum::serve(listener, app).await;
                }
                Some(acceptor) => {
                    let listener =
                        plexus_server::tls::TlsListener::new(listener, acceptor).unwrap();
                    let _ = axum::serve(listener, app).await;
                }
            }
        });
        Backend {
            addr,
            scheme,
            received,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        match self.scheme {
            "https" => format!("https://localhost:{}{path}", self.addr.port()),
            _ => format!("http://{}{path}", self.addr),
        }
    }

    pub fn requests(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A JSON answer with status 200.
pub fn answer(value: Value) -> Response {
    axum::Json(value).into_response()
}

/// A URL where nothing listens.
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}
