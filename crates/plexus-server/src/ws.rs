//! The WebSocket upgrade: validation, subprotocol choice, the upgrade hook, then the handover of
//! the upgraded socket to a dialect's session loop.

use crate::ServerState;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use base64::Engine as _;
use hyper_util::rt::TokioIo;
use plexus_core::auth::{UpgradeDecision, UpgradeRequest};
use plexus_core::{CloseCode, Session};
use plexus_protocol::{Encoding, PROTOCOL_VERSION, parse_subprotocol};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_websockets::{Config, Limits, Message, ServerBuilder, WebSocketStream};

/// The server side of an upgraded WebSocket.
pub(crate) type WsStream = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub(crate) fn accept_key(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// What the client asked for in `Sec-WebSocket-Protocol`.
#[derive(Debug, PartialEq, Eq)]
enum Negotiated {
    /// Speak v1 in this encoding; echo the token when the client offered one.
    V1(Encoding, Option<&'static str>),
    /// The client offered only Plexus tokens of other versions: accept with the first one and
    /// close with `unsupported_version`.
    Unsupported(String),
    /// The client offered subprotocols, none of them a Plexus version: refused with 400. A
    /// browser fails a handshake whose answer selects none of its offers anyway, without
    /// saying why; the 400's body says it to the developer.
    Unknown(Vec<String>),
}

fn negotiate(headers: &HeaderMap) -> Negotiated {
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_owned()))
        .filter(|t| !t.is_empty())
        .collect();
    let mut other_version = None;
    for token in &offered {
        match parse_subprotocol(token) {
            Some((PROTOCOL_VERSION, Some(encoding))) => {
                return Negotiated::V1(encoding, Some(encoding.subprotocol()));
            }
            Some((version, _)) if version != PROTOCOL_VERSION => {
                other_version.get_or_insert_with(|| token.clone());
            }
            _ => {}
        }
    }
    match other_version {
        Some(token) => Negotiated::Unsupported(token),
        None if offered.is_empty() => Negotiated::V1(Encoding::Json, None),
        None => Negotiated::Unknown(offered),
    }
}

/// HTTP 400 for a client that offered only subprotocols this server does not speak.
fn unknown_subprotocol(offered: &[String]) -> Response<Body> {
    let supported = [Encoding::Json, Encoding::Msgpack].map(Encoding::subprotocol);
    Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(format!(
            "unsupported WebSocket subprotocol {}: this endpoint speaks {} (or no subprotocol \
             at all, for JSON)\n",
            offered.join(", "),
            supported.join(" or ")
        )))
        .expect("valid response")
}

pub(crate) fn bad_request(message: &'static str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .body(Body::from(message))
        .expect("static response")
}

pub(crate) fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// What the upgrade and lifecycle hooks see of the request that opens a connection of
/// `dialect` on `transport`.
pub(crate) fn upgrade_request(
    req: &Request<Body>,
    peer: SocketAddr,
    dialect: &'static str,
    transport: &'static str,
) -> UpgradeRequest {
    let headers = req
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let cookies = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    UpgradeRequest {
        path: req.uri().path().to_owned(),
        query: req.uri().query().unwrap_or("").to_owned(),
        headers,
        cookies,
        peer: Some(peer),
        dialect,
        transport,
    }
}

/// An HTTP answer that refuses an upgrade.
pub(crate) type Refused = Box<Response<Body>>;

/// Checks that `req` is a WebSocket upgrade this server takes (RFC 6455 §4.2.1): the answer's
/// `Sec-WebSocket-Accept`, or the refusal to send.
pub(crate) fn check_upgrade(req: &Request<Body>) -> Result<String, Refused> {
    let headers = req.headers();
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(Box::new(bad_request("expected a WebSocket upgrade")));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return Err(Box::new(
            Response::builder()
                .status(StatusCode::UPGRADE_REQUIRED)
                .header(header::SEC_WEBSOCKET_VERSION, "13")
                .body(Body::from("unsupported WebSocket version"))
                .expect("static response"),
        ));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| accept_key(k.as_bytes()))
        .ok_or_else(|| Box::new(bad_request("missing Sec-WebSocket-Key")))
}

/// Runs the node's upgrade hook: the identity it gives, or its refusal as an HTTP response.
pub(crate) async fn authorize(
    node: &plexus_core::Node,
    upgrade: &Arc<plexus_core::UpgradeRequest>,
) -> Result<Option<plexus_core::Identity>, Refused> {
    let Some(hook) = node.auth().upgrade.clone() else {
        return Ok(None);
    };
    match hook.check(upgrade.clone()).await {
        UpgradeDecision::Accept(identity) => Ok(identity),
        UpgradeDecision::Refuse { status, reason } => Err(Box::new(refusal(status, reason))),
    }
}

/// An upgrade refused with an HTTP status (not 1xx–3xx: a refusal is never a success) and a
/// reason.
pub(crate) fn refusal(status: u16, reason: String) -> Response<Body> {
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::FORBIDDEN);
    Response::builder()
        .status(status)
        .body(Body::from(reason))
        .expect("valid response")
}

/// The `101 Switching Protocols` answer to an upgrade accepted with `accept`.
pub(crate) fn switching(accept: String) -> axum::http::response::Builder {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
}

/// `GET /ws`: upgrades to the native protocol.
pub(crate) async fn native_upgrade(
    State(state): State<Arc<ServerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    upgrade_native(state, peer, req, None).await
}

/// Upgrades to the native protocol; with `observer`, the connection is an operator's
/// ([`Session::open_observer`], the admin interface) with that identity, and the upgrade hook
/// is not asked.
pub(crate) async fn upgrade_native(
    state: Arc<ServerState>,
    peer: SocketAddr,
    mut req: Request<Body>,
    observer: Option<plexus_core::Identity>,
) -> Response<Body> {
    let key = match check_upgrade(&req) {
        Ok(key) => key,
        Err(refused) => return *refused,
    };
    let negotiated = negotiate(req.headers());
    if let Negotiated::Unknown(offered) = &negotiated {
        return unknown_subprotocol(offered);
    }
    let upgrade = Arc::new(upgrade_request(&req, peer, "native", "websocket"));
    let node = state.node.clone();
    let observing = observer.is_some();
    let identity = match observer {
        Some(identity) => Some(identity),
        None => match authorize(&node, &upgrade).await {
            Ok(identity) => identity,
            Err(refused) => return *refused,
        },
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut response = switching(key);
    let echoed = match &negotiated {
        Negotiated::V1(_, token) => token.map(HeaderValue::from_static),
        Negotiated::Unsupported(token) => HeaderValue::from_str(token).ok(),
        Negotiated::Unknown(_) => None,
    };
    if let Some(token) = echoed {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, token);
    }
    let max_message_bytes = node.limits().max_message_bytes;
    let format_state = state.clone();
    spawn_session(&state, on_upgrade, max_message_bytes, move || {
        let encoding = match negotiated {
            Negotiated::V1(encoding, _) => encoding,
            Negotiated::Unknown(_) => unreachable!("refused before the upgrade"),
            Negotiated::Unsupported(token) => {
                return Err(plexus_core::Error::new(
                    plexus_core::ErrorCode::BAD_REQUEST,
                    format!("{token} is not supported; use plexus.v1.json or plexus.v1.msgpack"),
                )
                .and_close(CloseCode::UNSUPPORTED_VERSION));
            }
        };
        let format = format_state.formats.native(encoding);
        let session = match identity {
            Some(identity) if observing => Session::open_observer(&node, format, upgrade, identity),
            identity => Session::open(&node, format, upgrade, identity),
        }?;
        Ok((session, crate::native::Native::new(encoding)))
    });
    response.body(Body::empty()).expect("valid response")
}

/// The upgrade of a dialect with a fixed wire format (Mesa, Mesh): checks the request, runs the
/// upgrade hook, answers 101 and serves the connection with the dialect `make` builds.
pub(crate) async fn upgrade_dialect<D: crate::conn::Dialect>(
    state: &Arc<ServerState>,
    peer: std::net::SocketAddr,
    mut req: Request<Body>,
    dialect: &'static str,
    format: Arc<dyn plexus_core::WireFormat>,
    make: impl FnOnce() -> D + Send + 'static,
) -> Response<Body> {
    let key = match check_upgrade(&req) {
        Ok(key) => key,
        Err(refused) => return *refused,
    };
    let upgrade = Arc::new(upgrade_request(&req, peer, dialect, "websocket"));
    let node = state.node.clone();
    let identity = match authorize(&node, &upgrade).await {
        Ok(identity) => identity,
        Err(refused) => return *refused,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let max_message_bytes = node.limits().max_message_bytes;
    spawn_session(state, on_upgrade, max_message_bytes, move || {
        let session = Session::open(&node, format, upgrade, identity)?;
        Ok((session, make()))
    });
    switching(key).body(Body::empty()).expect("valid response")
}

/// Serves an accepted upgrade in the background, as every WebSocket dialect does: waits for the
/// upgraded connection (counted by the server's sessions, so a graceful shutdown waits for it),
/// opens its session and dialect with `open`, and runs them on the shared loop. A session that
/// cannot open is closed with its error's close code and message.
pub(crate) fn spawn_session<D: crate::conn::Dialect>(
    state: &ServerState,
    on_upgrade: hyper::upgrade::OnUpgrade,
    max_message_bytes: usize,
    open: impl FnOnce() -> Result<(Session, D), plexus_core::Error> + Send + 'static,
) {
    let tracker = state.sessions.enter();
    tokio::spawn(async move {
        let _tracker = tracker;
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut ws = serve(TokioIo::new(upgraded), max_message_bytes);
        match open() {
            Ok((session, dialect)) => crate::conn::run(ws, session, dialect).await,
            Err(e) => {
                close(
                    &mut ws,
                    e.close.unwrap_or(CloseCode::DISCONNECTED),
                    &e.message,
                )
                .await
            }
        }
    });
}

/// The server side of an upgraded connection, with explicit frame and message limits.
pub(crate) fn serve(io: TokioIo<hyper::upgrade::Upgraded>, max_message_bytes: usize) -> WsStream {
    ServerBuilder::new()
        .config(
            Config::default()
                .frame_size(64 * 1024)
                .flush_threshold(16 * 1024),
        )
        .limits(Limits::default().max_payload_len(Some(max_message_bytes)))
        .serve(io)
}

/// How long a closing connection waits for the client to acknowledge the close frame.
pub(crate) const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// The close frame a client gets for `code` and `reason`: a code that may not be sent (out of
/// range, or reserved by RFC 6455 such as 1005 and 1006) becomes 1008 (policy violation), and
/// the reason is cut to the 123 bytes a close frame holds, on a character boundary.
pub(crate) fn wire_close(code: CloseCode, reason: &str) -> (CloseCode, &str) {
    let code = match tokio_websockets::CloseCode::try_from(code.0) {
        Ok(c) if !c.is_reserved() => code,
        _ => CloseCode(u16::from(tokio_websockets::CloseCode::POLICY_VIOLATION)),
    };
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    (code, &reason[..end])
}

/// The close a failed read ends with: the close frame the framing layer answered a protocol
/// error or an oversized message with, or a lost connection.
pub(crate) fn read_error_close(error: &tokio_websockets::Error) -> (CloseCode, String) {
    use tokio_websockets::proto::ProtocolError;
    match error {
        tokio_websockets::Error::Protocol(ProtocolError::InvalidUtf8) => {
            (CloseCode(1007), "invalid utf8".into())
        }
        tokio_websockets::Error::Protocol(e) => (CloseCode(1002), e.to_string()),
        tokio_websockets::Error::PayloadTooLong { max_len, .. } => {
            (CloseCode::MESSAGE_TOO_BIG, format!("max length: {max_len}"))
        }
        _ => (CloseCode::CONNECTION_LOST, "connection lost".into()),
    }
}

/// Sends a close frame and waits (bounded) for the client's, so the close is clean.
pub(crate) async fn close(ws: &mut WsStream, code: CloseCode, reason: &str) {
    use futures_util::{SinkExt, StreamExt};
    let (code, reason) = wire_close(code, reason);
    let code = tokio_websockets::CloseCode::try_from(code.0)
        .unwrap_or(tokio_websockets::CloseCode::POLICY_VIOLATION);
    let _ = ws.send(Message::close(Some(code), reason)).await;
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn offered(v: &str) -> Negotiated {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(v).unwrap(),
        );
        negotiate(&h)
    }

    #[test]
    fn subprotocol_choice() {
        assert_eq!(
            negotiate(&HeaderMap::new()),
            Negotiated::V1(Encoding::Json, None)
        );
        assert_eq!(
            offered("graphql-ws"),
            Negotiated::Unknown(vec!["graphql-ws".into()])
        );
        assert_eq!(
            offered("graphql-ws, plexus.v1.cbor"),
            Negotiated::Unknown(vec!["graphql-ws".into(), "plexus.v1.cbor".into()])
        );
        assert_eq!(
            offered("graphql-ws, plexus.v1.json"),
            Negotiated::V1(Encoding::Json, Some("plexus.v1.json"))
        );
        assert_eq!(
            offered("plexus.v1.msgpack, plexus.v1.json"),
            Negotiated::V1(Encoding::Msgpack, Some("plexus.v1.msgpack"))
        );
        assert_eq!(
            offered("plexus.v2.json, plexus.v1.json"),
            Negotiated::V1(Encoding::Json, Some("plexus.v1.json"))
        );
        assert_eq!(
            offered("plexus.v2.json"),
            Negotiated::Unsupported("plexus.v2.json".into())
        );
    }
}
