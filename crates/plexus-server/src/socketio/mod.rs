//! The Socket.IO dialect (`docs/socketio.md`): Engine.IO 3 and 4 sessions over HTTP
//! long-polling and WebSocket (`engine.rs`), Socket.IO protocols 4 and 5 on the shared
//! connection loop (`socket.rs`), and its wire format (`format.rs`).
//!
//! Every request to the path (`/socket.io/` by default) goes through [`handle`]: a handshake
//! (no `sid`) opens a session — a Plexus connection — on polling or WebSocket; a request with a
//! `sid` reaches its session through the node's [`Registry`] (a GET takes queued packets, a POST
//! brings packets, a WebSocket upgrade moves the session to WebSocket).

mod engine;
mod format;
mod socket;

use crate::ServerState;
use crate::ws::{accept_key, header_has_token, upgrade_request};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use engine::{EngineTransport, Inbound, PollShared};
use hyper_util::rt::TokioIo;
use plexus_core::Session;
use plexus_core::auth::UpgradeDecision;
use plexus_protocol::engineio::{self, HttpError, Packet, Transport};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use format::SocketIoFormat;
pub(crate) use format::{event_in, pack};

/// How the Socket.IO dialect is served. Every field is a limit or a setting users of Socket.IO
/// know; defaults are Socket.IO 4's.
#[derive(Clone, Debug)]
pub struct SocketIoConfig {
    /// The path (`/socket.io/`).
    pub path: String,
    /// Engine.IO `pingInterval` (25 s).
    pub ping_interval: Duration,
    /// Engine.IO `pingTimeout` (20 s).
    pub ping_timeout: Duration,
    /// Engine.IO `maxPayload`: the largest POST body and WebSocket message (1 000 000 bytes).
    pub max_payload_bytes: usize,
    /// Namespaces clients may connect to besides `/`; empty with `any_namespace` = all.
    pub namespaces: Vec<String>,
    /// Every namespace is open (development mode).
    pub any_namespace: bool,
    /// Origins allowed to poll cross-origin (CORS); `*` allows any. Empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Polling sessions one node holds at most (10 000); a handshake beyond gets HTTP 503.
    pub max_polling_sessions: usize,
    /// Packets buffered for a polling client that has not polled yet (10 000); beyond, the
    /// session is closed rather than grown.
    pub max_buffered_packets: usize,
    /// Attachments of one binary packet (10).
    pub max_attachments: usize,
    /// Namespaces one connection may join (16).
    pub max_namespaces: usize,
    /// How long a WebSocket upgrade may take from probe to `upgrade` (10 s).
    pub upgrade_timeout: Duration,
    /// Socket.IO `connectTimeout`: a connection that has joined no namespace this long after
    /// its handshake is closed (45 s).
    pub connect_timeout: Duration,
}

impl Default for SocketIoConfig {
    fn default() -> SocketIoConfig {
        SocketIoConfig {
            path: "/socket.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload_bytes: 1_000_000,
            namespaces: Vec::new(),
            any_namespace: false,
            cors_origins: Vec::new(),
            max_polling_sessions: 10_000,
            max_buffered_packets: 10_000,
            max_attachments: 10,
            max_namespaces: 16,
            upgrade_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(45),
        }
    }
}

impl SocketIoConfig {
    pub(crate) fn allows_namespace(&self, nsp: &str) -> bool {
        nsp == "/" || self.any_namespace || self.namespaces.iter().any(|n| n == nsp)
    }
}

/// The polling sessions of a node, by `sid`.
#[derive(Default)]
pub(crate) struct Registry {
    sessions: Mutex<HashMap<String, Arc<PollShared>>>,
}

impl Registry {
    fn get(&self, sid: &str) -> Option<Arc<PollShared>> {
        self.sessions.lock().unwrap().get(sid).cloned()
    }

    pub(crate) fn remove(&self, sid: &str) {
        self.sessions.lock().unwrap().remove(sid);
    }
}

fn error(e: HttpError, cors: &Option<HeaderValue>) -> Response<Body> {
    let mut response = Response::builder()
        .status(StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(e.json_body()))
        .expect("valid response");
    add_cors(&mut response, cors);
    response
}

fn add_cors(response: &mut Response<Body>, cors: &Option<HeaderValue>) {
    if let Some(origin) = cors {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// The `Access-Control-Allow-Origin` for this request, when CORS allows its origin.
fn cors_origin(config: &SocketIoConfig, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let allowed = config
        .cors_origins
        .iter()
        .any(|o| o == "*" || o.as_bytes() == origin.as_bytes());
    allowed.then(|| origin.clone())
}

/// A session id: 120 random bits from the OS (it is the only credential of a polling request).
fn new_sid() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 15];
    getrandom::getrandom(&mut bytes).expect("the OS random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Every request to the Socket.IO path.
pub(crate) async fn handle(
    State(state): State<Arc<ServerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let Some(config) = state.socketio.clone() else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .expect("valid response");
    };
    let cors = cors_origin(&config, req.headers());
    if req.method() == Method::OPTIONS {
        let mut response = Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST")
            .header(header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type")
            .body(Body::empty())
            .expect("valid response");
        add_cors(&mut response, &cors);
        return response;
    }
    let query = match engineio::parse_query(req.uri().query().unwrap_or("")) {
        Ok(query) => query,
        Err(e) => return error(e, &cors),
    };
    let is_upgrade = header_has_token(req.headers(), header::UPGRADE, "websocket");
    let Some(sid) = query.sid.clone() else {
        if let Err(e) = query.check_handshake(req.method().as_str(), is_upgrade) {
            return error(e, &cors);
        }
        return open_session(state, config, query, peer, req, cors).await;
    };
    let Some(shared) = state.socketio_sessions.get(&sid) else {
        return error(HttpError::UnknownSid, &cors);
    };
    if shared.version != query.version {
        return error(HttpError::BadRequest, &cors);
    }
    match (query.transport, req.method().clone()) {
        (Transport::Websocket, Method::GET) if is_upgrade => {
            if let Err(e) = shared.check() {
                return poll_error(e, &cors);
            }
            let Some((response, ws)) = upgrade(req, config.max_payload_bytes) else {
                return error(HttpError::BadRequest, &cors);
            };
            let inbound = shared.inbound.clone();
            tokio::spawn(async move {
                if let Some(ws) = ws.await {
                    let _ = inbound.send(Inbound::Upgrade(Box::new(ws))).await;
                }
            });
            response
        }
        (Transport::Polling, Method::GET) => {
            let wait = config.ping_interval + config.ping_timeout;
            match shared.poll(wait).await {
                Ok(packets) => {
                    let payload =
                        engineio::encode_payload(shared.version, &packets, shared.supports_binary);
                    let mut response = Response::builder()
                        .header(header::CONTENT_TYPE, payload.content_type)
                        .body(Body::from(payload.body))
                        .expect("valid response");
                    add_cors(&mut response, &cors);
                    response
                }
                Err(e) => poll_error(e, &cors),
            }
        }
        (Transport::Polling, Method::POST) => {
            if let Err(e) = shared.check() {
                return poll_error(e, &cors);
            }
            let binary = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(engineio::is_binary_content_type);
            let limit = config.max_payload_bytes;
            let body = match axum::body::to_bytes(req.into_body(), limit).await {
                Ok(body) => body,
                Err(_) => {
                    let why = (
                        plexus_core::CloseCode::MESSAGE_TOO_BIG,
                        "a polling request larger than maxPayload".into(),
                    );
                    shared.abort(Packet::Close, why);
                    let mut response = Response::builder()
                        .status(StatusCode::PAYLOAD_TOO_LARGE)
                        .body(Body::empty())
                        .expect("valid response");
                    add_cors(&mut response, &cors);
                    return response;
                }
            };
            let packets = engineio::decode_payload(
                shared.version,
                &body,
                binary,
                config.max_buffered_packets.max(1),
            );
            match packets {
                Ok(packets) => {
                    // The client closes: its pending GET ends with a noop (engine.io
                    // `polling.ts` `onClose`), and its next request finds the session gone.
                    if packets.contains(&Packet::Close) {
                        let why = (plexus_core::CloseCode::NORMAL, "the client closed".into());
                        shared.abort(Packet::Noop, why);
                    }
                    if shared
                        .inbound
                        .send(Inbound::Packets(packets))
                        .await
                        .is_err()
                    {
                        return error(HttpError::UnknownSid, &cors);
                    }
                    let mut response = Response::builder()
                        .header(header::CONTENT_TYPE, engineio::POST_OK_CONTENT_TYPE)
                        .body(Body::from(engineio::POST_OK_BODY))
                        .expect("valid response");
                    add_cors(&mut response, &cors);
                    response
                }
                Err(_) => {
                    let why = (
                        plexus_core::CloseCode::BAD_FRAME,
                        "a polling request that is not an Engine.IO payload".into(),
                    );
                    shared.abort(Packet::Close, why);
                    error(HttpError::BadRequest, &cors)
                }
            }
        }
        _ => error(HttpError::BadRequest, &cors),
    }
}

/// engine.io's answer to a request its session refuses.
fn poll_error(e: engine::PollError, cors: &Option<HeaderValue>) -> Response<Body> {
    match e {
        engine::PollError::Gone => error(HttpError::UnknownSid, cors),
        // engine.io answers a second GET with HTTP 500 (its `onError`), and a polling request
        // after the upgrade with "Bad request" (`TRANSPORT_MISMATCH`); 400 for both.
        engine::PollError::Upgraded | engine::PollError::Overlap => {
            error(HttpError::BadRequest, cors)
        }
    }
}

type Upgraded = std::pin::Pin<Box<dyn Future<Output = Option<crate::ws::WsStream>> + Send>>;

/// Answers a WebSocket upgrade whose messages may be `max_payload` bytes (Engine.IO's
/// `maxPayload`, in place of the native `max_message_bytes`).
fn upgrade(mut req: Request<Body>, max_payload: usize) -> Option<(Response<Body>, Upgraded)> {
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| accept_key(k.as_bytes()))?;
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return None;
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, key)
        .body(Body::empty())
        .expect("valid response");
    let ws: Upgraded = Box::pin(async move {
        let upgraded = on_upgrade.await.ok()?;
        Some(crate::ws::serve(TokioIo::new(upgraded), max_payload))
    });
    Some((response, ws))
}

async fn open_session(
    state: Arc<ServerState>,
    config: Arc<SocketIoConfig>,
    query: engineio::Query,
    peer: SocketAddr,
    req: Request<Body>,
    cors: Option<HeaderValue>,
) -> Response<Body> {
    let node = state.node.clone();
    let transport_name = match query.transport {
        Transport::Polling => "polling",
        Transport::Websocket => "websocket",
    };
    let upgrade_req = Arc::new(upgrade_request(&req, peer, "socketio", transport_name));
    let identity = match node.auth().upgrade.clone() {
        Some(hook) => match hook.check(upgrade_req.clone()).await {
            UpgradeDecision::Accept(identity) => identity,
            UpgradeDecision::Refuse { .. } => return error(HttpError::Forbidden, &cors),
        },
        None => None,
    };
    let sid = new_sid();
    let polling = query.transport == Transport::Polling;
    let handshake = engine::handshake(&sid, polling, &config);
    let transport = EngineTransport::new(query.version, !query.b64, &config);
    let format = state.formats.socketio();
    let handshake_query =
        engineio::query_pairs(req.uri().query().unwrap_or(""), socket::MAX_QUERY_PAIRS);
    let dialect = socket::SocketIo::new(
        query.version.into(),
        config.clone(),
        sid.clone(),
        handshake_query,
        state.chat_service.clone(),
    );
    if polling {
        let (shared, inbound) = PollShared::new(query.version, !query.b64, &config);
        {
            let mut sessions = state.socketio_sessions.sessions.lock().unwrap();
            if sessions.len() >= config.max_polling_sessions {
                drop(sessions);
                let mut response = Response::builder()
                    .status(StatusCode::SERVICE_UNAVAILABLE)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        HttpError::BadRequest.json_body_with_message("Too many sessions"),
                    ))
                    .expect("valid response");
                add_cors(&mut response, &cors);
                return response;
            }
            sessions.insert(sid.clone(), shared.clone());
        }
        let transport = transport.polling(
            shared.clone(),
            inbound,
            state.socketio_sessions.clone(),
            sid.clone(),
        );
        let session = match Session::open(&node, format, upgrade_req, identity) {
            Ok(session) => session,
            Err(e) => {
                state.socketio_sessions.remove(&sid);
                tracing::debug!(error = %e.message, "socket.io session refused");
                return error(HttpError::Forbidden, &cors);
            }
        };
        let tracker = state.sessions.enter();
        tokio::spawn(async move {
            let _tracker = tracker;
            crate::conn::run(transport, session, dialect).await;
        });
        let payload =
            engineio::encode_payload(query.version, &[Packet::Open(handshake)], !query.b64);
        let mut response = Response::builder()
            .header(header::CONTENT_TYPE, payload.content_type)
            .body(Body::from(payload.body))
            .expect("valid response");
        add_cors(&mut response, &cors);
        return response;
    }
    let Some((response, ws)) = upgrade(req, config.max_payload_bytes) else {
        return error(HttpError::BadRequest, &cors);
    };
    let tracker = state.sessions.enter();
    tokio::spawn(async move {
        let _tracker = tracker;
        let Some(ws) = ws.await else { return };
        let mut transport = transport.websocket(ws);
        transport.open(handshake);
        match Session::open(&node, format, upgrade_req, identity) {
            Ok(session) => crate::conn::run(transport, session, dialect).await,
            Err(e) => {
                use crate::conn::Transport as _;
                transport
                    .close(
                        e.close.unwrap_or(plexus_core::CloseCode::DISCONNECTED),
                        &e.message,
                    )
                    .await;
            }
        }
    });
    response
}
