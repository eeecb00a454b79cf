//! One Sockety connection (`docs/sockety.md`): the reading and writing of the binary protocol
//! of `plexus_protocol::sockety` over any byte stream (TCP, TLS, WebSocket binary frames), the
//! same on the server's and the client's side, as Sockety's own `Connection` is.
//!
//! [`start`] runs a connection as two tasks: a reader that assembles messages (data in
//! memory, files spooled, streams handed over as they come, each bounded) and a writer that
//! multiplexes what is sent over the channels the peer announced. [`Peer`] sends messages,
//! requests, responses and fast replies; the messages the peer sends arrive on the receiver
//! [`start`] returns.
//!
//! Bounds: a message's data (`max_data_bytes`), its files (`max_files`, `max_files_bytes`;
//! a message over them is refused with fast reply [`TOO_LARGE`] and its bytes are skipped),
//! each incoming stream's buffer (`stream_buffer_bytes`: the reader stops reading the
//! connection while a stream's reader lags — TCP's own backpressure), received messages not
//! yet taken (`incoming_queue`), and messages waiting to be written (`write_queue`).

mod file;
mod io;
mod stream;

pub use file::{File, OutFile};
pub use io::start;
pub use plexus_protocol::sockety as wire;
pub use stream::{StreamClosed, StreamReader, StreamWriter, TooLong, stream};

use bytes::Bytes;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// A message's id: a version-4 UUID.
pub type Id = [u8; 16];

/// Sockety's fast reply codes (any other code up to 4095 is the application's).
pub mod fast {
    pub const ACCEPT: u16 = 0;
    pub const REJECT: u16 = 1;
    pub const NOT_IMPLEMENTED: u16 = 2;
    pub const UNAUTHORIZED: u16 = 3;
    pub const BAD_REQUEST: u16 = 4;
    pub const INTERNAL_ERROR: u16 = 5;
}

/// The fast reply to a message whose data or files are over the receiver's bounds.
pub const TOO_LARGE: u16 = 413;
/// The fast reply to a request that came after this side said go-away.
pub const GOING_AWAY: u16 = 503;

/// A new random id.
pub fn new_id() -> Id {
    wire::to_uuid_v4(fastrand::u128(..).to_le_bytes())
}

/// An id as UUID text (`8-4-4-4-12` hex digits).
pub fn format_id(id: &Id) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// How a connection behaves and what it bounds.
#[derive(Clone, Debug)]
pub struct Config {
    /// The channels this side receives on, announced in its header (1..=4096).
    pub channels: u16,
    /// No byte from the peer for this long closes the connection (Sockety's socket timeout,
    /// 60 s); this side writes a heartbeat after 3/4 of it without writing anything.
    pub timeout: Duration,
    /// A write that does not finish in this time closes the connection (a peer that stopped
    /// reading).
    pub write_timeout: Duration,
    /// The largest data of one received message or response.
    pub max_data_bytes: u64,
    /// The most files one received message may carry.
    pub max_files: usize,
    /// The most bytes of files one received message may carry.
    pub max_files_bytes: u64,
    /// Received files up to this size stay in memory; larger ones go to `spool_dir`.
    pub memory_file_bytes: u64,
    /// Where larger received files are spooled (unlinked at once).
    pub spool_dir: PathBuf,
    /// Unread bytes buffered per received stream before reading the connection pauses.
    pub stream_buffer_bytes: usize,
    /// Received messages not yet taken from the receiver before reading pauses.
    pub incoming_queue: usize,
    /// Messages (or parts of streamed ones) waiting to be written before senders wait.
    pub write_queue: usize,
    /// Whether a close for a reason (a protocol error, a server's close) is preceded by a
    /// message `close` with JSON data `{"code", "reason"}` (the server side says why).
    pub farewell: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            channels: wire::MAX_CHANNELS,
            timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            max_data_bytes: 16 * 1024 * 1024,
            max_files: 64,
            max_files_bytes: 1024 * 1024 * 1024,
            memory_file_bytes: 64 * 1024,
            spool_dir: std::env::temp_dir(),
            stream_buffer_bytes: 256 * 1024,
            incoming_queue: 256,
            write_queue: 256,
            farewell: false,
        }
    }
}

/// What the connection ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// A Plexus close code (`docs/protocol.md`): 1000 normal, 1006 lost, 4002 timeout, 4500
    /// protocol error, …
    pub code: u16,
    pub reason: String,
}

/// Why a send or a request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("the connection closed ({code}: {reason})")]
    Closed { code: u16, reason: String },
    #[error("the peer said go-away: it takes no new requests")]
    GoneAway,
}

/// A message to send: an action, data, files and a stream (each optional).
#[derive(Debug, Default)]
pub struct Draft {
    pub action: String,
    pub data: Bytes,
    pub files: Vec<OutFile>,
    pub stream: Option<StreamReader>,
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamReader")
    }
}

impl Draft {
    pub fn new(action: impl Into<String>) -> Draft {
        Draft {
            action: action.into(),
            ..Draft::default()
        }
    }

    /// A response's draft (no action).
    pub fn response() -> Draft {
        Draft::default()
    }

    pub fn data(mut self, data: impl Into<Bytes>) -> Draft {
        self.data = data.into();
        self
    }

    pub fn file(mut self, file: OutFile) -> Draft {
        self.files.push(file);
        self
    }

    /// Sends the bytes `stream` yields, until its writer ends it.
    pub fn stream(mut self, stream: StreamReader) -> Draft {
        self.stream = Some(stream);
        self
    }
}

/// A message or a response received: complete data and files; a stream still running.
pub struct Message {
    pub id: Id,
    /// The request this answers, for a response.
    pub parent: Option<Id>,
    /// Empty for a response.
    pub action: String,
    pub data: Bytes,
    pub files: Vec<File>,
    pub stream: Option<StreamReader>,
    pub expects_response: bool,
    peer: Peer,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("id", &format_id(&self.id))
            .field("action", &self.action)
            .field("data", &self.data.len())
            .field("files", &self.files)
            .field("stream", &self.stream.is_some())
            .field("expects_response", &self.expects_response)
            .finish()
    }
}

impl Message {
    /// Answers with a response.
    pub async fn respond(&self, draft: Draft) -> Result<(), PeerError> {
        self.peer.respond(self.id, draft).await
    }

    /// Answers with a code instead of a response.
    pub async fn fast_reply(&self, code: u16) -> Result<(), PeerError> {
        self.peer.fast_reply(self.id, code).await
    }

    /// The connection it came on.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

/// The answer to a request.
#[derive(Debug)]
pub enum Reply {
    Response(Message),
    Fast(u16),
}

impl Reply {
    /// The response's data, or the fast reply's code as an error.
    pub fn into_data(self) -> Result<Bytes, u16> {
        match self {
            Reply::Response(m) => Ok(m.data),
            Reply::Fast(code) => Err(code),
        }
    }
}

/// What the writer task is asked to write.
pub(crate) enum Out {
    /// Packets without a channel (fast replies, heartbeats, go-away).
    Raw(Vec<u8>),
    /// A whole message: it takes a channel just for the time it is written. Its bytes in
    /// pieces (data goes out without being copied).
    Whole(Vec<Bytes>),
    /// The start of a message whose files or stream follow: it keeps a channel until `End`;
    /// `placed` fires once it has one (its parts wait for that).
    Begin {
        key: u64,
        bytes: Vec<Bytes>,
        placed: oneshot::Sender<()>,
    },
    Part {
        key: u64,
        bytes: Vec<Bytes>,
    },
    End {
        key: u64,
        bytes: Vec<u8>,
    },
    /// Everything queued before is written, then the connection closes.
    Close,
}

pub(crate) struct Shared {
    /// Messages that need a channel (`Whole`, `Begin`) and `Close`: the writer takes them only
    /// while a channel is free, so their senders wait while every channel is busy.
    pub(crate) starts: mpsc::Sender<Out>,
    /// Everything else (parts of started messages, fast replies, heartbeats, go-away).
    pub(crate) parts: mpsc::Sender<Out>,
    pub(crate) pending: Mutex<HashMap<Id, oneshot::Sender<Reply>>>,
    pub(crate) closed: watch::Sender<Option<Closed>>,
    /// The peer said go-away.
    pub(crate) peer_going_away: AtomicBool,
    /// This side said go-away.
    pub(crate) going_away: AtomicBool,
    pub(crate) next_key: AtomicU64,
    pub(crate) config: Config,
}

impl Shared {
    /// Ends the connection with `code` and `reason` (the first close is kept). Requests still
    /// waiting fail.
    pub(crate) fn close(&self, code: u16, reason: impl Into<String>) {
        let reason = reason.into();
        self.closed.send_if_modified(|closed| {
            if closed.is_some() {
                return false;
            }
            *closed = Some(Closed { code, reason });
            true
        });
        self.pending.lock().expect("pending").clear();
    }

    fn closed_error(&self) -> PeerError {
        match &*self.closed.borrow() {
            Some(c) => PeerError::Closed {
                code: c.code,
                reason: c.reason.clone(),
            },
            None => PeerError::Closed {
                code: 1006,
                reason: "connection lost".into(),
            },
        }
    }
}

/// `head` followed by `data` as data packets; the data is not copied (each piece is a slice).
pub(crate) fn with_data(mut head: Vec<u8>, data: &Bytes) -> Vec<Bytes> {
    let mut pieces = Vec::with_capacity(3);
    let mut offset = 0;
    while offset < data.len() {
        let n = (data.len() - offset).min(wire::MAX_PACKET_BYTES);
        wire::encode_sized_head(&mut head, wire::DATA, n);
        pieces.push(Bytes::from(std::mem::take(&mut head)));
        pieces.push(data.slice(offset..offset + n));
        offset += n;
    }
    if !head.is_empty() {
        pieces.push(Bytes::from(head));
    }
    pieces
}

/// Waits until the connection is closed (without holding the watch's lock across an await).
pub(crate) async fn until_closed(rx: &mut watch::Receiver<Option<Closed>>) {
    let _ = rx.wait_for(Option::is_some).await;
}

/// A connection's sending side (cheap to clone).
#[derive(Clone)]
pub struct Peer {
    pub(crate) shared: Arc<Shared>,
}

impl Peer {
    /// Sends a request and waits for its response or fast reply.
    pub async fn request(&self, draft: Draft) -> Result<Reply, PeerError> {
        if self.shared.peer_going_away.load(Ordering::Acquire) {
            return Err(PeerError::GoneAway);
        }
        let id = new_id();
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().expect("pending").insert(id, tx);
        if let Err(e) = self.send_draft(id, None, draft, true).await {
            self.shared.pending.lock().expect("pending").remove(&id);
            return Err(e);
        }
        let mut closed = self.shared.closed.subscribe();
        tokio::select! {
            // An answer that came before the close wins over the close.
            biased;
            reply = rx => reply.map_err(|_| self.shared.closed_error()),
            _ = crate::until_closed(&mut closed) => {
                self.shared.pending.lock().expect("pending").remove(&id);
                Err(self.shared.closed_error())
            }
        }
    }

    /// Sends a message that expects no response.
    pub async fn pass(&self, draft: Draft) -> Result<(), PeerError> {
        if self.shared.peer_going_away.load(Ordering::Acquire) {
            return Err(PeerError::GoneAway);
        }
        self.send_draft(new_id(), None, draft, false).await
    }

    /// Sends a response to the message `parent`.
    pub async fn respond(&self, parent: Id, draft: Draft) -> Result<(), PeerError> {
        self.send_draft(new_id(), Some(parent), draft, false).await
    }

    /// Answers the message `id` with a code.
    pub async fn fast_reply(&self, id: Id, code: u16) -> Result<(), PeerError> {
        let mut bytes = Vec::with_capacity(18);
        wire::encode_packet(
            &mut bytes,
            &wire::Packet::FastReply {
                code: code.min(4095),
                id,
            },
        );
        self.send(Out::Raw(bytes)).await
    }

    /// Sends a whole message already encoded (a start packet and its data packets).
    pub async fn send_encoded(&self, bytes: impl Into<Bytes>) -> Result<(), PeerError> {
        self.send(Out::Whole(vec![bytes.into()])).await
    }

    /// Says go-away: this side takes no new requests (the ones in progress are answered).
    pub async fn go_away(&self) -> Result<(), PeerError> {
        self.shared.going_away.store(true, Ordering::Release);
        self.send(Out::Raw(vec![0xB0])).await
    }

    /// Writes everything queued, then closes.
    pub async fn close(&self) {
        let _ = self.send(Out::Close).await;
        let _ = self.closed().await;
    }

    /// Closes now with a code and reason (with a `close` message first when the configuration
    /// says so).
    pub fn abort(&self, code: u16, reason: impl Into<String>) {
        self.shared.close(code, reason);
    }

    /// Waits until the connection is closed.
    pub async fn closed(&self) -> Closed {
        let mut rx = self.shared.closed.subscribe();
        let closed = rx
            .wait_for(Option::is_some)
            .await
            .map(|c| c.clone())
            .ok()
            .flatten();
        closed.unwrap_or(Closed {
            code: 1006,
            reason: "connection lost".into(),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.borrow().is_some()
    }

    /// Whether the peer said go-away.
    pub fn peer_going_away(&self) -> bool {
        self.shared.peer_going_away.load(Ordering::Acquire)
    }

    /// Whether this side said go-away.
    pub fn going_away(&self) -> bool {
        self.shared.going_away.load(Ordering::Acquire)
    }

    /// Requests sent and not answered yet.
    pub fn pending_requests(&self) -> usize {
        self.shared.pending.lock().expect("pending").len()
    }

    async fn send(&self, out: Out) -> Result<(), PeerError> {
        if self.is_closed() {
            return Err(self.shared.closed_error());
        }
        let queue = match out {
            Out::Whole(_) | Out::Begin { .. } | Out::Close => &self.shared.starts,
            Out::Raw(_) | Out::Part { .. } | Out::End { .. } => &self.shared.parts,
        };
        queue
            .send(out)
            .await
            .map_err(|_| self.shared.closed_error())
    }

    async fn send_draft(
        &self,
        id: Id,
        parent: Option<Id>,
        draft: Draft,
        expects_response: bool,
    ) -> Result<(), PeerError> {
        let header = wire::Header {
            id,
            parent,
            action: draft.action,
            data_size: draft.data.len() as u64,
            files: draft
                .files
                .iter()
                .map(|f| wire::FileHeader {
                    name: f.name.clone(),
                    size: f.size,
                })
                .collect(),
        };
        let mut start = Vec::with_capacity(64);
        wire::encode_start(
            &mut start,
            &header,
            draft.stream.is_some(),
            expects_response,
        );
        let bytes = with_data(start, &draft.data);
        if draft.files.is_empty() && draft.stream.is_none() {
            return self.send(Out::Whole(bytes)).await;
        }
        let key = self.shared.next_key.fetch_add(1, Ordering::Relaxed);
        let (placed, on_placed) = oneshot::channel();
        self.send(Out::Begin { key, bytes, placed }).await?;
        let peer = self.clone();
        tokio::spawn(io::pump(peer, key, on_placed, draft.files, draft.stream));
        Ok(())
    }
}

/// Sockety's bytes as WebSocket binary messages: a sink of messages (made by `make`) as a
/// sink of byte chunks of at most `chunk` bytes each, for [`tokio_util`-style] `SinkWriter`s.
/// Errors of the message sink become `io::Error`s.
pub struct ChunkSink<S, F> {
    inner: S,
    make: F,
    chunk: usize,
    queued: std::collections::VecDeque<Bytes>,
}

impl<S, F> ChunkSink<S, F> {
    pub fn new(inner: S, make: F, chunk: usize) -> ChunkSink<S, F> {
        ChunkSink {
            inner,
            make,
            chunk: chunk.max(1),
            queued: Default::default(),
        }
    }
}

impl<S, F, M, E> ChunkSink<S, F>
where
    S: futures_sink::Sink<M, Error = E> + Unpin,
    F: Fn(Bytes) -> M + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    fn poll_send_queued(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while let Some(bytes) = self.queued.pop_front() {
            match std::pin::Pin::new(&mut self.inner).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                Poll::Pending => {
                    self.queued.push_front(bytes);
                    return Poll::Pending;
                }
            }
            if let Err(e) = std::pin::Pin::new(&mut self.inner).start_send((self.make)(bytes)) {
                return Poll::Ready(Err(std::io::Error::other(e)));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S, F, M, E> futures_sink::Sink<Bytes> for ChunkSink<S, F>
where
    S: futures_sink::Sink<M, Error = E> + Unpin,
    F: Fn(Bytes) -> M + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    type Error = std::io::Error;

    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.get_mut().poll_send_queued(cx)
    }

    fn start_send(self: std::pin::Pin<&mut Self>, item: Bytes) -> std::io::Result<()> {
        let this = self.get_mut();
        let mut item = item;
        while item.len() > this.chunk {
            let head = item.split_to(this.chunk);
            this.queued.push_back(head);
        }
        if !item.is_empty() {
            this.queued.push_back(item);
        }
        Ok(())
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_send_queued(cx))?;
        std::pin::Pin::new(&mut this.inner)
            .poll_flush(cx)
            .map_err(std::io::Error::other)
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_send_queued(cx))?;
        std::pin::Pin::new(&mut this.inner)
            .poll_close(cx)
            .map_err(std::io::Error::other)
    }
}
