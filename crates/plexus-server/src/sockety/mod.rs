//! The Sockety dialect (`docs/sockety.md`): Sockety's binary protocol over plain TCP, TLS, and
//! WebSocket binary frames, on the core.
//!
//! A connection runs [`plexus_sockety::start`] (the protocol: channels, responses, fast
//! replies, streams, files, heartbeats) under a [`Session`]: a message's action is an action
//! registered with [`ServerBuilder::sockety_action`](crate::ServerBuilder::sockety_action)
//! (which sees files and streams), a built-in `plexus.*` action (connect, subscribe, publish,
//! …), or else a Plexus command (data in, response data out, errors as fast replies). Pushes
//! (publications of subscribed channels, messages to the user, …) go out as messages with
//! action `push` whose data is the native protocol's JSON push. The server can call a client
//! ([`SocketyApi::call`]).

mod conn;
mod format;
pub(crate) mod listen;

pub use plexus_sockety::{
    Draft, File, Message, OutFile, Reply, StreamReader, StreamWriter, stream,
};

use plexus_core::commands::BoxFuture;
use plexus_core::{ConnId, Node};
use plexus_protocol::ErrorCode;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) use conn::serve;
pub(crate) use format::SocketyFormat;

/// How the server speaks Sockety.
#[derive(Clone, Debug)]
pub struct SocketyConfig {
    /// The WebSocket path that carries Sockety's bytes in binary frames (`None`: no WebSocket).
    pub path: Option<String>,
    /// Plain TCP listener (development mode: `127.0.0.1:8001`).
    pub listen: Option<SocketAddr>,
    /// When `listen` is busy, serve without it (with a warning) rather than fail: development
    /// mode's default port, so that two development servers can run side by side.
    pub listen_best_effort: bool,
    /// TLS listener (needs the server's TLS certificate, `[tls]`).
    pub tls_listen: Option<SocketAddr>,
    /// Channels the server receives on (1..=4096).
    pub channels: u16,
    /// Silence from a client for this long closes it; the server writes a heartbeat after 3/4
    /// of it (Sockety's default: 60 s).
    pub timeout: Duration,
    pub max_data_bytes: u64,
    pub max_files: usize,
    pub max_files_bytes: u64,
    /// Received files up to this size stay in memory; larger ones are spooled.
    pub memory_file_bytes: u64,
    pub spool_dir: PathBuf,
    /// Unread bytes buffered per received stream.
    pub stream_buffer_bytes: usize,
}

impl Default for SocketyConfig {
    fn default() -> SocketyConfig {
        let peer = plexus_sockety::Config::default();
        SocketyConfig {
            path: Some("/sockety".into()),
            listen: None,
            listen_best_effort: false,
            tls_listen: None,
            channels: peer.channels,
            timeout: peer.timeout,
            max_data_bytes: peer.max_data_bytes,
            max_files: peer.max_files,
            max_files_bytes: peer.max_files_bytes,
            memory_file_bytes: peer.memory_file_bytes,
            spool_dir: peer.spool_dir,
            stream_buffer_bytes: peer.stream_buffer_bytes,
        }
    }
}

impl SocketyConfig {
    /// Development mode: `/sockety` and TCP on `127.0.0.1:8001` when that port is free.
    pub fn development() -> SocketyConfig {
        SocketyConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8001))),
            listen_best_effort: true,
            ..SocketyConfig::default()
        }
    }

    pub(crate) fn peer(&self, node: &Node) -> plexus_sockety::Config {
        let limits = node.limits();
        plexus_sockety::Config {
            channels: self.channels,
            timeout: self.timeout,
            write_timeout: limits.write_timeout,
            max_data_bytes: self.max_data_bytes,
            max_files: self.max_files,
            max_files_bytes: self.max_files_bytes,
            memory_file_bytes: self.memory_file_bytes,
            spool_dir: self.spool_dir.clone(),
            stream_buffer_bytes: self.stream_buffer_bytes,
            incoming_queue: limits.max_pending_requests.max(1),
            write_queue: 256,
            farewell: true,
        }
    }
}

/// What a Sockety action handler gets: the message (data, files, stream) and who sent it.
pub struct Request {
    pub message: Message,
    pub node: Node,
    pub conn: ConnId,
    pub user: Option<Arc<str>>,
}

/// What a Sockety action handler answers.
pub enum Answer {
    /// A response (data, files, a stream).
    Respond(Draft),
    /// A fast reply: Sockety's codes (0 accept … 5 internal error) or the application's up to
    /// 4095.
    Fast(u16),
    /// Nothing (the handler answered itself, or the message expects no response).
    Nothing,
}

/// A Sockety action: any `async fn(Request) -> Answer`.
pub trait Action: Send + Sync + 'static {
    fn call(&self, request: Request) -> BoxFuture<Answer>;
}

impl<F, Fut> Action for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Answer> + Send + 'static,
{
    fn call(&self, request: Request) -> BoxFuture<Answer> {
        Box::pin(self(request))
    }
}

/// The server's Sockety side: configuration, actions, and the connections of this node (for
/// calls from the server).
pub(crate) struct SocketyService {
    pub(crate) config: SocketyConfig,
    pub(crate) actions: HashMap<String, Arc<dyn Action>>,
    pub(crate) peers: Mutex<HashMap<ConnId, plexus_sockety::Peer>>,
}

impl SocketyService {
    pub(crate) fn new(
        config: SocketyConfig,
        actions: HashMap<String, Arc<dyn Action>>,
    ) -> SocketyService {
        SocketyService {
            config,
            actions,
            peers: Mutex::default(),
        }
    }
}

/// Calls from the server to Sockety clients connected to this node.
#[derive(Clone)]
pub struct SocketyApi {
    pub(crate) service: Arc<SocketyService>,
}

/// Why a call to a client failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    #[error("no Sockety connection {0} on this node")]
    NoConnection(ConnId),
    #[error(transparent)]
    Peer(#[from] plexus_sockety::PeerError),
    #[error("the client did not answer in time")]
    Timeout,
}

impl SocketyApi {
    /// Sends the client `conn` a request and waits (at most `timeout`) for its response or
    /// fast reply.
    pub async fn call(
        &self,
        conn: ConnId,
        draft: Draft,
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        let peer = self.peer(conn)?;
        tokio::time::timeout(timeout, peer.request(draft))
            .await
            .map_err(|_| CallError::Timeout)?
            .map_err(CallError::from)
    }

    /// Sends the client `conn` a message that expects no response.
    pub async fn pass(&self, conn: ConnId, draft: Draft) -> Result<(), CallError> {
        Ok(self.peer(conn)?.pass(draft).await?)
    }

    /// The Sockety connections on this node.
    pub fn connections(&self) -> Vec<ConnId> {
        self.service
            .peers
            .lock()
            .expect("peers")
            .keys()
            .copied()
            .collect()
    }

    fn peer(&self, conn: ConnId) -> Result<plexus_sockety::Peer, CallError> {
        self.service
            .peers
            .lock()
            .expect("peers")
            .get(&conn)
            .cloned()
            .ok_or(CallError::NoConnection(conn))
    }
}

/// Development mode's `echo` action: the request's data, files and stream come back in the
/// response.
pub async fn echo(mut request: Request) -> Answer {
    let message = &mut request.message;
    let mut draft = Draft::response().data(message.data.clone());
    for file in std::mem::take(&mut message.files) {
        draft = draft.file(file.into_outgoing());
    }
    if let Some(stream) = message.stream.take() {
        draft = draft.stream(stream);
    }
    Answer::Respond(draft)
}

/// The fast reply for a Plexus error: Sockety's own codes where one fits, else the Plexus
/// error code (`docs/sockety.md`, "Errors").
pub fn fast_reply_code(code: ErrorCode) -> u16 {
    use plexus_sockety::fast;
    match code {
        ErrorCode::METHOD_NOT_FOUND | ErrorCode::UNKNOWN_OPERATION => fast::NOT_IMPLEMENTED,
        ErrorCode::UNAUTHORIZED
        | ErrorCode::PERMISSION_DENIED
        | ErrorCode::AUTH_FAILED
        | ErrorCode::TOKEN_EXPIRED => fast::UNAUTHORIZED,
        ErrorCode::BAD_REQUEST | ErrorCode::BAD_PAYLOAD | ErrorCode::BAD_CHANNEL => {
            fast::BAD_REQUEST
        }
        ErrorCode::INTERNAL => fast::INTERNAL_ERROR,
        ErrorCode(n) if n <= 4095 => n as u16,
        _ => fast::INTERNAL_ERROR,
    }
}
