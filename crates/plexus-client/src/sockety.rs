//! The Sockety client (`docs/sockety.md`): a connection to a Plexus server (or any Sockety
//! server) over `tcp://`, `tls://`, `ws://` or `wss://`, with requests, fast replies,
//! messages, streams and files both ways ([`plexus_sockety`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), plexus_client::ClientError> {
//! use plexus_client::sockety::{self, Draft, Reply};
//! let (peer, _incoming) = sockety::connect("tcp://127.0.0.1:8001", sockety::Options::default()).await?;
//! match peer.request(Draft::new("echo").data("\"hi\"")).await.expect("open") {
//!     Reply::Response(response) => println!("{}", String::from_utf8_lossy(&response.data)),
//!     Reply::Fast(code) => println!("fast reply {code}"),
//! }
//! # Ok(()) }
//! ```

use crate::error::{ClientError, ErrorKind};
use bytes::Bytes;
use futures_util::StreamExt;
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub use plexus_sockety::{
    Config, Draft, File, Message, OutFile, Peer, PeerError, Reply, StreamReader, StreamWriter,
    fast, format_id, stream,
};

/// How to connect.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The connection's own bounds and timeout.
    pub config: Config,
    /// A PEM file of certificates trusted besides the Mozilla roots (`tls://`, `wss://`).
    pub ca_file: Option<PathBuf>,
    /// A token sent with the built-in `plexus.connect` right after connecting.
    pub token: Option<String>,
}

/// Connects to `url` (`tcp://host:port`, `tls://host:port`, `ws://host:port/sockety`,
/// `wss://…`): the connection's sending side and the messages the server sends (pushes with
/// action `push`, and calls from the server, which expect a response).
pub async fn connect(
    url: &str,
    options: Options,
) -> Result<(Peer, mpsc::Receiver<Message>), ClientError> {
    let config_error = |m: &str| ClientError::new(ErrorKind::Config, format!("bad URL {url}: {m}"));
    let connect_error = |e: std::io::Error| ClientError::new(ErrorKind::Connect, e.to_string());
    let scheme = url
        .split_once("://")
        .map(|(s, _)| s)
        .ok_or_else(|| config_error("no scheme"))?;
    let (tls, ws) = match scheme {
        "tcp" => (false, false),
        "tls" => (true, false),
        "ws" => (false, true),
        "wss" => (true, true),
        _ => return Err(config_error("the scheme is not tcp, tls, ws or wss")),
    };
    let default_port = match (tls, ws) {
        (false, true) => 80,
        (true, true) => 443,
        _ => 0,
    };
    let (host, port) = crate::net::host_port(url, default_port)
        .filter(|(_, port)| *port != 0)
        .ok_or_else(|| config_error("no host or port"))?;
    let io = crate::net::connect(&host, port, tls, options.ca_file.as_deref())
        .await
        .map_err(connect_error)?;
    let (peer, incoming) = if ws {
        let (socket, _) = tokio_tungstenite::client_async(url, io)
            .await
            .map_err(|e| ClientError::new(ErrorKind::Connect, e.to_string()))?;
        let (sink, stream) = socket.split();
        let stream = stream
            .take_while(|m| std::future::ready(matches!(m, Ok(m) if !m.is_close())))
            .filter_map(|m| {
                std::future::ready(match m {
                    Ok(WsMessage::Binary(b)) => Some(Ok::<Bytes, std::io::Error>(b)),
                    _ => None,
                })
            });
        let read = tokio_util::io::StreamReader::new(Box::pin(stream));
        let sink = plexus_sockety::ChunkSink::new(sink, WsMessage::Binary, 16 * 1024);
        let write = tokio_util::io::SinkWriter::new(tokio_util::io::CopyToBytes::new(sink));
        plexus_sockety::start(read, write, options.config)
    } else {
        let (read, write) = tokio::io::split(io);
        plexus_sockety::start(read, write, options.config)
    };
    if let Some(token) = options.token {
        let data = serde_json::json!({ "token": token }).to_string();
        match peer.request(Draft::new("plexus.connect").data(data)).await {
            Ok(Reply::Response(_)) => {}
            Ok(Reply::Fast(code)) => {
                return Err(ClientError::new(
                    ErrorKind::Closed,
                    format!("authentication refused (fast reply {code})"),
                ));
            }
            Err(e) => return Err(ClientError::new(ErrorKind::Connect, e.to_string())),
        }
    }
    Ok((peer, incoming))
}

/// A fast reply code's name: Sockety's six, else `custom`.
pub fn fast_reply_name(code: u16) -> &'static str {
    match code {
        fast::ACCEPT => "accept",
        fast::REJECT => "reject",
        fast::NOT_IMPLEMENTED => "not implemented",
        fast::UNAUTHORIZED => "unauthorized",
        fast::BAD_REQUEST => "bad request",
        fast::INTERNAL_ERROR => "internal error",
        plexus_sockety::TOO_LARGE => "too large",
        plexus_sockety::GOING_AWAY => "going away",
        _ => "custom",
    }
}
