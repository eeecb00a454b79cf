//! The two tasks of a connection: the reader (header, packets, message assembly, deliveries)
//! and the writer (channels, batching, heartbeats, the close).

use crate::file::{OutFile, Spool};
use crate::stream::StreamWriter;
use crate::{Closed, Config, Id, Message, Out, Peer, Reply, Shared, StreamReader, TOO_LARGE, wire};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use wire::{Event, Packet};

/// Close codes this crate reports (Plexus's table, `docs/protocol.md`).
const NORMAL: u16 = 1000;
const LOST: u16 = 1006;
const TIMEOUT: u16 = 4002;
const BAD_FRAME: u16 = 4500;
const SLOW: u16 = 4001;

/// Bytes read from a file per packet sent.
const FILE_CHUNK: usize = 64 * 1024;
/// Bytes gathered before a write.
const WRITE_BATCH: usize = 64 * 1024;

/// Runs a connection over `read` and `write`: sends this side's header, reads the peer's, and
/// serves until either side closes. Returns the sending side and the messages the peer sends
/// (requests and messages; responses go to the requests that wait for them).
pub fn start<R, W>(read: R, write: W, config: Config) -> (Peer, mpsc::Receiver<Message>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (starts_tx, starts_rx) = mpsc::channel(config.write_queue.max(1));
    let (parts_tx, parts_rx) = mpsc::channel(config.write_queue.max(1));
    let (incoming_tx, incoming_rx) = mpsc::channel(config.incoming_queue.max(1));
    let (closed, _) = watch::channel(None);
    let shared = Arc::new(Shared {
        starts: starts_tx,
        parts: parts_tx,
        pending: Default::default(),
        closed,
        peer_going_away: AtomicBool::new(false),
        going_away: AtomicBool::new(false),
        next_key: AtomicU64::new(0),
        config,
    });
    let peer = Peer { shared };
    let (channels_tx, channels_rx) = oneshot::channel();
    tokio::spawn(reader(read, peer.clone(), incoming_tx, channels_tx));
    tokio::spawn(writer(
        write,
        peer.shared.clone(),
        (starts_rx, parts_rx),
        channels_rx,
    ));
    (peer, incoming_rx)
}

// --- reading -----------------------------------------------------------------------------------

/// A message being received on a channel.
struct Assembly {
    id: Id,
    parent: Option<Id>,
    action: String,
    expects_response: bool,
    /// The data's chunks as they came (usually one: no copy).
    data: Vec<Bytes>,
    data_len: u64,
    data_size: u64,
    files: Vec<Option<Spool>>,
    done_files: Vec<Option<crate::File>>,
    stream: Option<StreamWriter>,
    reader: Option<StreamReader>,
    delivered: bool,
    /// Over the bounds: its bytes are skipped.
    skipped: bool,
}

impl Assembly {
    fn ready(&self) -> bool {
        !self.delivered
            && !self.skipped
            && self.data_len == self.data_size
            && self.files.iter().all(Option::is_none)
    }
}

async fn reader<R: AsyncRead + Unpin>(
    mut read: R,
    peer: Peer,
    incoming: mpsc::Sender<Message>,
    channels: oneshot::Sender<u16>,
) {
    let shared = peer.shared.clone();
    let mut closed = shared.closed.subscribe();
    let outcome = tokio::select! {
        outcome = read_loop(&mut read, &peer, &incoming, channels) => outcome,
        _ = crate::until_closed(&mut closed) => return,
    };
    match outcome {
        Ok(()) => shared.close(NORMAL, "closed by the peer"),
        Err((code, reason)) => {
            tracing::debug!(code, %reason, "sockety connection ends");
            shared.close(code, reason)
        }
    }
}

type Fail = (u16, String);

async fn read_loop<R: AsyncRead + Unpin>(
    read: &mut R,
    peer: &Peer,
    incoming: &mpsc::Sender<Message>,
    channels: oneshot::Sender<u16>,
) -> Result<(), Fail> {
    let config = &peer.shared.config;
    let mut silence = Silence::new(config.timeout);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    // The peer's header first.
    let announced = loop {
        if let Some((announced, used)) =
            wire::decode_header(&buf).map_err(|e| (BAD_FRAME, e.to_string()))?
        {
            buf.advance(used);
            break announced;
        }
        fill(read, &mut buf, &mut silence).await?;
    };
    let _ = channels.send(announced);
    let mut wire_reader = wire::Reader::new(config.channels);
    let mut events = Vec::new();
    let mut assemblies: HashMap<u16, Assembly> = HashMap::new();
    loop {
        // The events' bytes are slices of what was read (no copy); a packet's incomplete rest
        // goes back into the buffer.
        let taken = buf.split().freeze();
        let used = wire_reader
            .read_shared(&taken, &mut events)
            .map_err(|e| (BAD_FRAME, e.to_string()))?;
        buf.extend_from_slice(&taken[used..]);
        for event in events.drain(..) {
            on_event(peer, incoming, &mut assemblies, event).await?;
        }
        fill(read, &mut buf, &mut silence).await?;
    }
}

/// The peer's silence: one timer for the connection, moved only when it fires early (not one
/// timer per read).
struct Silence {
    timeout: Duration,
    last: tokio::time::Instant,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Silence {
    fn new(timeout: Duration) -> Silence {
        let now = tokio::time::Instant::now();
        Silence {
            timeout,
            last: now,
            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    /// Waits until the peer has been silent for the whole timeout.
    async fn expired(&mut self) {
        loop {
            (&mut self.sleep).await;
            let deadline = self.last + self.timeout;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            self.sleep.as_mut().reset(deadline);
        }
    }
}

/// Reads more bytes; the peer's silence past the timeout, the end of the stream or an error
/// ends the connection.
async fn fill<R: AsyncRead + Unpin>(
    read: &mut R,
    buf: &mut BytesMut,
    silence: &mut Silence,
) -> Result<(), Fail> {
    buf.reserve(8 * 1024);
    let read = tokio::select! {
        read = read.read_buf(buf) => read,
        _ = silence.expired() => return Err((TIMEOUT, "no data within the timeout".into())),
    };
    match read {
        Ok(0) => Err((LOST, "connection closed by the peer".into())),
        Ok(_) => {
            silence.last = tokio::time::Instant::now();
            Ok(())
        }
        Err(e) => Err((LOST, e.to_string())),
    }
}

async fn on_event(
    peer: &Peer,
    incoming: &mpsc::Sender<Message>,
    assemblies: &mut HashMap<u16, Assembly>,
    event: Event,
) -> Result<(), Fail> {
    let shared = &peer.shared;
    let config = &shared.config;
    match event {
        Event::Header {
            channel,
            header,
            has_stream,
            expects_response,
        } => {
            let total: u64 = header.files.iter().map(|f| f.size).sum();
            let over = header.data_size > config.max_data_bytes
                || header.files.len() > config.max_files
                || total > config.max_files_bytes;
            let mut assembly = Assembly {
                id: header.id,
                parent: header.parent,
                action: header.action,
                expects_response,
                data: Vec::new(),
                data_len: 0,
                data_size: header.data_size,
                files: Vec::new(),
                done_files: Vec::new(),
                stream: None,
                reader: None,
                delivered: false,
                skipped: over,
            };
            if over {
                tracing::debug!(channel, "a message over the bounds: skipped");
                if assembly.parent.is_none() && expects_response {
                    let _ = peer.fast_reply(assembly.id, TOO_LARGE).await;
                }
            } else {
                for file in header.files {
                    let spool = Spool::new(
                        file.name,
                        file.size,
                        config.memory_file_bytes,
                        &config.spool_dir,
                    )
                    .await
                    .map_err(|e| (LOST, format!("spooling a file: {e}")))?;
                    assembly.files.push(Some(spool));
                    assembly.done_files.push(None);
                }
                if has_stream {
                    let (writer, reader) = crate::stream(config.stream_buffer_bytes);
                    assembly.stream = Some(writer);
                    assembly.reader = Some(reader);
                }
            }
            let ready = assembly.ready();
            assemblies.insert(channel, assembly);
            if ready {
                deliver(peer, incoming, assemblies, channel).await;
            }
        }
        Event::Data { channel, bytes } => {
            let Some(a) = assemblies.get_mut(&channel) else {
                return Ok(());
            };
            if a.skipped {
                return Ok(());
            }
            a.data_len += bytes.len() as u64;
            a.data.push(bytes);
            if a.ready() {
                deliver(peer, incoming, assemblies, channel).await;
            }
        }
        Event::File {
            channel,
            index,
            bytes,
        } => {
            let Some(a) = assemblies.get_mut(&channel) else {
                return Ok(());
            };
            if let Some(Some(spool)) = a.files.get_mut(index as usize) {
                spool
                    .write(&bytes)
                    .await
                    .map_err(|e| (LOST, format!("spooling a file: {e}")))?;
            }
        }
        Event::FileEnd { channel, index } => {
            let Some(a) = assemblies.get_mut(&channel) else {
                return Ok(());
            };
            if let Some(spool) = a.files.get_mut(index as usize).and_then(Option::take) {
                let file = spool
                    .finish()
                    .await
                    .map_err(|e| (LOST, format!("spooling a file: {e}")))?;
                a.done_files[index as usize] = Some(file);
            }
            if a.ready() {
                deliver(peer, incoming, assemblies, channel).await;
            }
        }
        Event::Stream { channel, bytes } => {
            let writer = assemblies.get(&channel).and_then(|a| a.stream.as_ref());
            if let Some(writer) = writer {
                // Waits while the stream's reader lags: reading the connection pauses.
                let mut closed = shared.closed.subscribe();
                tokio::select! {
                    _ = writer.send(bytes) => {}
                    _ = crate::until_closed(&mut closed) => return Err((LOST, "closed".into())),
                }
            }
        }
        Event::StreamEnd { channel } => {
            if let Some(a) = assemblies.get_mut(&channel) {
                a.stream = None;
            }
        }
        Event::Done { channel } => {
            assemblies.remove(&channel);
        }
        Event::Aborted { channel } => {
            if let Some(mut a) = assemblies.remove(&channel)
                && let Some(writer) = a.stream.take()
            {
                writer.abort();
            }
        }
        Event::FastReply { id, code } => {
            let waiting = shared.pending.lock().expect("pending").remove(&id);
            if let Some(tx) = waiting {
                let _ = tx.send(Reply::Fast(code));
            }
        }
        Event::Heartbeat => {}
        Event::GoAway => shared.peer_going_away.store(true, Ordering::Release),
    }
    Ok(())
}

/// Hands a received message (data and files complete) to whoever waits for it.
async fn deliver(
    peer: &Peer,
    incoming: &mpsc::Sender<Message>,
    assemblies: &mut HashMap<u16, Assembly>,
    channel: u16,
) {
    let Some(a) = assemblies.get_mut(&channel) else {
        return;
    };
    a.delivered = true;
    let message = Message {
        id: a.id,
        parent: a.parent,
        action: std::mem::take(&mut a.action),
        data: match a.data.len() {
            0 => Bytes::new(),
            1 => a.data.pop().expect("one chunk"),
            _ => {
                let mut all = BytesMut::with_capacity(a.data_len as usize);
                for chunk in a.data.drain(..) {
                    all.extend_from_slice(&chunk);
                }
                all.freeze()
            }
        },
        files: a.done_files.drain(..).flatten().collect(),
        stream: a.reader.take(),
        expects_response: a.expects_response,
        peer: peer.clone(),
    };
    match message.parent {
        Some(parent) => {
            let waiting = peer.shared.pending.lock().expect("pending").remove(&parent);
            match waiting {
                Some(tx) => {
                    let _ = tx.send(Reply::Response(message));
                }
                None => tracing::debug!("a response to no request waiting: dropped"),
            }
        }
        None => {
            if peer.going_away() && message.expects_response {
                let _ = message.fast_reply(crate::GOING_AWAY).await;
                return;
            }
            // Waits while the receiver lags: reading the connection pauses.
            let mut closed = peer.shared.closed.subscribe();
            tokio::select! {
                _ = incoming.send(message) => {}
                _ = crate::until_closed(&mut closed) => {}
            }
        }
    }
}

// --- writing -----------------------------------------------------------------------------------

async fn writer<W: AsyncWrite + Unpin>(
    mut write: W,
    shared: Arc<Shared>,
    (mut starts, mut parts): (mpsc::Receiver<Out>, mpsc::Receiver<Out>),
    channels: oneshot::Receiver<u16>,
) {
    let config = shared.config.clone();
    let mut closed = shared.closed.subscribe();
    let header = wire::encode_header(config.channels);
    if write_all(&mut write, &header, config.write_timeout)
        .await
        .is_err()
    {
        shared.close(LOST, "could not write the header");
        return;
    }
    let new_state = |announced| WriteState {
        channels: wire::Channels::new(announced),
        keys: HashMap::new(),
        out: Batch::default(),
    };
    let announced = tokio::select! {
        announced = channels => match announced {
            Ok(n) => n,
            // The reader ended before the peer's header: say why, if there is a reason.
            Err(_) => {
                farewell(&mut write, &shared, &mut new_state(1)).await;
                return;
            }
        },
        _ = crate::until_closed(&mut closed) => {
            farewell(&mut write, &shared, &mut new_state(1)).await;
            return;
        }
    };
    let mut state = new_state(announced);
    let heartbeat = config.timeout.mul_f64(0.75);
    loop {
        let free = state.channels.has_free();
        let item = tokio::select! {
            biased;
            _ = crate::until_closed(&mut closed) => {
                farewell(&mut write, &shared, &mut state).await;
                return;
            }
            item = parts.recv() => item,
            item = starts.recv(), if free => item,
            _ = tokio::time::sleep(heartbeat) => {
                state.out.extend(&[0xA0]);
                Some(Out::Raw(Vec::new()))
            }
        };
        let Some(item) = item else {
            break;
        };
        let mut close = state.place(item);
        while !close && state.out.len < WRITE_BATCH {
            let next = match parts.try_recv() {
                Ok(item) => item,
                Err(_) if state.channels.has_free() => match starts.try_recv() {
                    Ok(item) => item,
                    Err(_) => break,
                },
                Err(_) => break,
            };
            close = state.place(next);
        }
        if state.out.len > 0
            && let Err(code) = write_batch(&mut write, &mut state.out, config.write_timeout).await
        {
            shared.close(code, "write failed or timed out");
            return;
        }
        if close {
            break;
        }
    }
    let _ = tokio::time::timeout(config.write_timeout, write.shutdown()).await;
    shared.close(NORMAL, "closed");
}

/// A close for a reason: the `close` message (when configured) and go-away, then the end.
async fn farewell<W: AsyncWrite + Unpin>(write: &mut W, shared: &Shared, state: &mut WriteState) {
    let closed = shared.closed.borrow().clone();
    let Some(Closed { code, reason }) = closed else {
        return;
    };
    if shared.config.farewell && code != LOST && code != NORMAL {
        state.close_message(code, &reason);
    }
    state.out.extend(&[0xB0]);
    let limit = Duration::from_secs(1);
    let _ = write_batch(write, &mut state.out, limit).await;
    let _ = tokio::time::timeout(limit, write.shutdown()).await;
}

struct WriteState {
    channels: wire::Channels,
    /// The channel of each started message still being written.
    keys: HashMap<u64, u16>,
    out: Batch,
}

/// What goes out in one write: small pieces gathered in one buffer, large ones as they are
/// (written with one vectored write, never copied).
#[derive(Default)]
struct Batch {
    chunks: Vec<Bytes>,
    small: BytesMut,
    len: usize,
}

/// Pieces at least this large are written as they are; smaller ones are gathered.
const GATHER_BELOW: usize = 4096;

impl Batch {
    fn extend(&mut self, bytes: &[u8]) {
        self.small.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    fn push(&mut self, bytes: Bytes) {
        if bytes.len() < GATHER_BELOW {
            self.extend(&bytes);
            return;
        }
        self.seal();
        self.len += bytes.len();
        self.chunks.push(bytes);
    }

    fn push_all(&mut self, pieces: Vec<Bytes>) {
        for piece in pieces {
            self.push(piece);
        }
    }

    fn seal(&mut self) {
        if !self.small.is_empty() {
            self.chunks.push(self.small.split().freeze());
        }
    }

    /// Writes the switch to `channel` if needed.
    fn switch(&mut self, channels: &mut wire::Channels, channel: u16) {
        let mut packet = Vec::new();
        channels.switch(&mut packet, channel);
        self.extend(&packet);
    }
}

impl WriteState {
    /// Writes an item into the buffer; true for `Close`. A start comes only while a channel is
    /// free; a part only after its start (its sender waited for `placed`).
    fn place(&mut self, item: Out) -> bool {
        match item {
            Out::Close => return true,
            Out::Raw(bytes) => self.out.extend(&bytes),
            Out::Whole(pieces) => {
                let c = self.channels.take().expect("a free channel");
                self.out.switch(&mut self.channels, c);
                self.out.push_all(pieces);
                self.channels.release(c);
            }
            Out::Begin { key, bytes, placed } => {
                let c = self.channels.take().expect("a free channel");
                self.keys.insert(key, c);
                self.out.switch(&mut self.channels, c);
                self.out.push_all(bytes);
                let _ = placed.send(());
            }
            Out::Part { key, bytes } => {
                if let Some(&c) = self.keys.get(&key) {
                    self.out.switch(&mut self.channels, c);
                    self.out.push_all(bytes);
                }
            }
            Out::End { key, bytes } => {
                if let Some(c) = self.keys.remove(&key) {
                    self.out.switch(&mut self.channels, c);
                    self.out.extend(&bytes);
                    self.channels.release(c);
                }
            }
        }
        false
    }

    /// The `close` message on a free channel (none when every channel is busy).
    fn close_message(&mut self, code: u16, reason: &str) {
        let Some(c) = self.channels.take() else {
            return;
        };
        let data = serde_json::json!({"code": code, "reason": reason}).to_string();
        let header = wire::Header {
            id: crate::new_id(),
            parent: None,
            action: "close".into(),
            data_size: data.len() as u64,
            files: vec![],
        };
        self.out.switch(&mut self.channels, c);
        let mut bytes = Vec::new();
        wire::encode_start(&mut bytes, &header, false, false);
        wire::encode_data(&mut bytes, data.as_bytes());
        self.out.extend(&bytes);
        self.channels.release(c);
    }
}

/// Writes a batch (one vectored write per round, as the transport allows) and flushes.
async fn write_batch<W: AsyncWrite + Unpin>(
    write: &mut W,
    batch: &mut Batch,
    timeout: Duration,
) -> Result<(), u16> {
    batch.seal();
    let mut chunks = std::mem::take(&mut batch.chunks);
    batch.len = 0;
    let written = tokio::time::timeout(timeout, async {
        let mut first = 0;
        while first < chunks.len() {
            let mut n = {
                let slices: Vec<std::io::IoSlice<'_>> = chunks[first..]
                    .iter()
                    .take(64)
                    .map(|c| std::io::IoSlice::new(c))
                    .collect();
                write.write_vectored(&slices).await?
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while n > 0 {
                let len = chunks[first].len();
                if n >= len {
                    n -= len;
                    first += 1;
                } else {
                    chunks[first].advance(n);
                    n = 0;
                }
            }
        }
        write.flush().await
    })
    .await;
    chunks.clear();
    batch.chunks = chunks;
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(LOST),
        Err(_) => Err(SLOW),
    }
}

/// Writes bytes and flushes (the connection's header).
async fn write_all<W: AsyncWrite + Unpin>(
    write: &mut W,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), u16> {
    let mut batch = Batch::default();
    batch.extend(bytes);
    write_batch(write, &mut batch, timeout).await
}

// --- sending files and streams -------------------------------------------------------------------

/// Sends a streamed message's files, then its stream, then its end; an abort when a file's
/// reader ends early or the stream was aborted.
pub(crate) async fn pump(
    peer: Peer,
    key: u64,
    placed: oneshot::Receiver<()>,
    files: Vec<OutFile>,
    stream: Option<StreamReader>,
) {
    // The parts go after the start (which waits for a free channel).
    if placed.await.is_err() {
        return;
    }
    let send = |bytes: Vec<Bytes>| peer.shared.parts.send(Out::Part { key, bytes });
    let count = files.len();
    let mut chunk = vec![0u8; FILE_CHUNK];
    for (index, mut file) in files.into_iter().enumerate() {
        let index = index as u32;
        let mut left = file.size;
        while left > 0 {
            let want = (left.min(FILE_CHUNK as u64)) as usize;
            let n = match file.body.read(&mut chunk[..want]).await {
                Ok(0) | Err(_) => {
                    let _ = peer
                        .shared
                        .parts
                        .send(Out::End {
                            key,
                            bytes: vec![0x90],
                        })
                        .await;
                    return;
                }
                Ok(n) => n,
            };
            left -= n as u64;
            let mut bytes = Vec::with_capacity(n + 8);
            wire::encode_packet(
                &mut bytes,
                &Packet::File {
                    index,
                    bytes: &chunk[..n],
                },
            );
            if send(vec![Bytes::from(bytes)]).await.is_err() {
                return;
            }
        }
        let mut end = Vec::with_capacity(4);
        wire::encode_packet(&mut end, &Packet::FileEnd { index });
        let last = index as usize + 1 == count && stream.is_none();
        let sent = if last {
            peer.shared.parts.send(Out::End { key, bytes: end }).await
        } else {
            send(vec![Bytes::from(end)]).await
        };
        if sent.is_err() {
            return;
        }
    }
    let Some(mut stream) = stream else {
        return;
    };
    while let Some(chunk) = stream.next().await {
        // The stream's bytes go out as they are (slices, no copy) behind each packet's head.
        let mut offset = 0;
        while offset < chunk.len() {
            let n = (chunk.len() - offset).min(wire::MAX_PACKET_BYTES);
            let mut head = Vec::with_capacity(5);
            wire::encode_sized_head(&mut head, wire::STREAM, n);
            let piece = chunk.slice(offset..offset + n);
            offset += n;
            if send(vec![Bytes::from(head), piece]).await.is_err() {
                return;
            }
        }
    }
    let end = if stream.is_aborted() { 0x90 } else { 0x80 };
    let _ = peer
        .shared
        .parts
        .send(Out::End {
            key,
            bytes: vec![end],
        })
        .await;
}
