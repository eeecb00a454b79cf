//! Where Sockety connections come in: a TCP listener (plain or TLS) of its own, and WebSocket
//! binary frames at the configured path of the HTTP listener.

use crate::ServerState;
use crate::ws::{authorize, check_upgrade, switching, upgrade_request};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Request, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use plexus_core::UpgradeRequest;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_websockets::Message;

/// The largest binary message the server writes on `/sockety` (its bytes are cut into such).
pub(crate) const WS_CHUNK: usize = 16 * 1024;
/// The largest binary message the server reads on `/sockety`.
const WS_READ_MAX: usize = 1024 * 1024;

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts Sockety connections on `listener` until aborted; with `tls`, each is a TLS
/// connection first.
pub(crate) fn spawn_tcp(
    state: Arc<ServerState>,
    listener: TcpListener,
    tls: Option<crate::tls::Acceptor>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait a little, never spin.
                    tracing::warn!(error = %e, "sockety accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            let tls = tls.clone();
            let guard = state.sessions.enter();
            tokio::spawn(async move {
                let transport = if tls.is_some() { "tls" } else { "tcp" };
                let upgrade = Arc::new(UpgradeRequest {
                    path: String::new(),
                    query: String::new(),
                    headers: Vec::new(),
                    cookies: Vec::new(),
                    peer: Some(peer),
                    dialect: "sockety",
                    transport,
                });
                let identity = match authorize(&state.node, &upgrade).await {
                    Ok(identity) => identity,
                    Err(_) => {
                        tracing::debug!(%peer, "sockety connection refused by the upgrade hook");
                        return;
                    }
                };
                match tls {
                    None => {
                        let (read, write) = stream.into_split();
                        super::serve(state, read, write, upgrade, identity, guard).await;
                    }
                    Some(acceptor) => {
                        let accepted =
                            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                                .await;
                        let Ok(Ok(stream)) = accepted else {
                            tracing::debug!(%peer, "TLS handshake failed");
                            return;
                        };
                        let (read, write) = tokio::io::split(stream);
                        super::serve(state, read, write, upgrade, identity, guard).await;
                    }
                }
            });
        }
    })
}

/// `GET <path>`: Sockety over WebSocket binary frames (the frames' boundaries mean nothing;
/// their bytes are the connection's bytes).
pub(crate) async fn ws_upgrade(
    State(state): State<Arc<ServerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request<Body>,
) -> Response<Body> {
    let key = match check_upgrade(&req) {
        Ok(key) => key,
        Err(refused) => return *refused,
    };
    let upgrade = Arc::new(upgrade_request(&req, peer, "sockety", "websocket"));
    let identity = match authorize(&state.node, &upgrade).await {
        Ok(identity) => identity,
        Err(refused) => return *refused,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let guard = state.sessions.enter();
    let max = state.node.limits().max_message_bytes;
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        // Frames' boundaries mean nothing here: a client's frames may be as large as the
        // server's message bound or Sockety's chunk, whichever is larger.
        let ws = crate::ws::serve(TokioIo::new(upgraded), max.max(WS_READ_MAX));
        let (sink, stream) = ws.split();
        // Binary frames' bytes until a close (or anything else, which ends the stream).
        let stream = stream
            .take_while(|m| {
                let go_on = matches!(m, Ok(m) if m.is_binary() || m.is_ping() || m.is_pong());
                std::future::ready(go_on)
            })
            .filter_map(|m| {
                std::future::ready(match m {
                    Ok(m) if m.is_binary() => {
                        Some(Ok::<Bytes, std::io::Error>(Bytes::from(m.into_payload())))
                    }
                    _ => None,
                })
            });
        let read = tokio_util::io::StreamReader::new(Box::pin(stream));
        let sink = plexus_sockety::ChunkSink::new(sink, Message::binary, WS_CHUNK);
        let write = tokio_util::io::SinkWriter::new(tokio_util::io::CopyToBytes::new(sink));
        super::serve(state, read, write, upgrade, identity, guard).await;
    });
    switching(key).body(Body::empty()).expect("valid response")
}
