//! The native protocol's per-connection loop: one task per connection that reads frames, runs
//! requests in order (or concurrently for concurrent commands), and writes queued frames in
//! batches.

use super::format::{presence_member, pub_push};
use crate::ws::WsStream;
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use plexus_core::Metadata;
use plexus_core::commands::{BoxFuture, CommandResult};
use plexus_core::session::{ConnectRequest, SubscribeRequest};
use plexus_core::stats::NodeStats;
use plexus_core::{CloseCode, Connection, Error, ErrorCode, Payload, Session};
use plexus_protocol::client::{Op, Request, RequestError, decode_request};
use plexus_protocol::server::{
    self, AckResult, CallResult, ConnectResult, Empty, ErrorBody, Hello, HelloLimits,
    HistoryResult, LastSeenResult, MetaResult, PresenceResult, PresenceStatsResult, PublishResult,
    Push, SubscribeResult,
};
use plexus_protocol::{Encoding, FrameWriter, PROTOCOL_VERSION, split_frames};
use std::collections::VecDeque;
use std::pin::Pin;
use std::time::{Duration, UNIX_EPOCH};
use tokio_websockets::Message;

/// Bytes of queued frames joined into one WebSocket message.
const BATCH_BYTES_MAX: usize = 64 * 1024;

type Reply = (Option<u64>, CommandResult);

struct Loop {
    session: Session,
    encoding: Encoding,
    /// Requests waiting behind an ordered call that is still running.
    queued: VecDeque<Request>,
    current: Option<Pin<Box<dyn Future<Output = Reply> + Send>>>,
    concurrent: FuturesUnordered<BoxFuture<Reply>>,
}

/// Runs a native-protocol connection until it closes.
pub(crate) async fn run(mut ws: WsStream, session: Session, encoding: Encoding) {
    let hello = hello(&session);
    session
        .connection()
        .send_frame(server::encode_push(encoding, &Push::Hello(hello)));
    let mut session = session;
    session.finish_auth().await;
    let mut state = Loop {
        session,
        encoding,
        queued: VecDeque::new(),
        current: None,
        concurrent: FuturesUnordered::new(),
    };
    let mut writer = FrameWriter::new(encoding);
    let mut batch = Vec::new();
    loop {
        let conn = state.session.connection().clone();
        // A client that stops reading blocks the write; past the write timeout it is dropped
        // (its queue is bounded meanwhile, so it never grows the server's memory).
        let write_timeout = state.session.node().limits().write_timeout;
        let written = tokio::time::timeout(
            write_timeout,
            write_queued(
                &mut ws,
                &conn,
                encoding,
                &mut writer,
                &mut batch,
                state.session.node().stats(),
            ),
        )
        .await;
        match written {
            Err(_) => {
                tracing::debug!(conn = %conn.id, "write timed out: dropping the connection");
                break;
            }
            Ok(Some(close)) => {
                if let Ok(close) = close {
                    crate::ws::close(&mut ws, close.code, &close.reason).await;
                }
                break;
            }
            Ok(None) => {}
        }
        let auth_deadline = state.session.auth_deadline();
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(message)) => {
                    if message.is_close() {
                        break;
                    }
                    if message.is_text() || message.is_binary() {
                        let stats = state.session.node().stats();
                        NodeStats::add(&stats.messages_in, 1);
                        NodeStats::add(&stats.bytes_in, message.as_payload().len() as u64);
                        state.on_message(message.as_payload()).await;
                    }
                }
                // A transport or protocol error (the framing layer already answered protocol
                // errors and oversized messages with their close codes).
                Some(Err(e)) => {
                    tracing::debug!(conn = %state.session.id(), error = %e, "websocket error");
                    let _ = ws.flush().await;
                    break;
                }
                None => break,
            },
            _ = conn.outbox().ready() => {}
            reply = async { state.current.as_mut().expect("guarded").await }, if state.current.is_some() => {
                state.current = None;
                state.reply(reply.0, reply.1.map(|p| CallResult::new(&p)));
                state.run_queued().await;
            }
            Some(reply) = state.concurrent.next(), if !state.concurrent.is_empty() => {
                state.reply(reply.0, reply.1.map(|p| CallResult::new(&p)));
            }
            _ = sleep_until(auth_deadline), if auth_deadline.is_some() => {
                state.session.connection().close(CloseCode::AUTH_TIMEOUT, "authentication timed out");
            }
        }
    }
    state.session.close().await;
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// Writes everything queued as few messages as possible. `Some(Ok(close))` when the
/// connection must now be closed with that request, `Some(Err(()))` when the socket failed.
async fn write_queued(
    ws: &mut WsStream,
    conn: &Connection,
    encoding: Encoding,
    writer: &mut FrameWriter,
    batch: &mut Vec<Bytes>,
    stats: &NodeStats,
) -> Option<Result<plexus_core::outbox::CloseRequest, ()>> {
    let outbox = conn.outbox();
    let feed = async |ws: &mut WsStream, bytes: Bytes| {
        NodeStats::add(&stats.messages_out, 1);
        NodeStats::add(&stats.bytes_out, bytes.len() as u64);
        ws.feed(message(encoding, bytes)).await
    };
    loop {
        batch.clear();
        let close = outbox.drain(batch, BATCH_BYTES_MAX);
        if batch.is_empty() {
            return close.map(Ok);
        }
        let mut wrote = false;
        for frame in batch.drain(..) {
            if writer.len() + frame.len() > BATCH_BYTES_MAX && !writer.is_empty() {
                if feed(ws, writer.take()).await.is_err() {
                    return Some(Err(()));
                }
                wrote = true;
            }
            writer.push(&frame);
        }
        if !writer.is_empty() {
            if feed(ws, writer.take()).await.is_err() {
                return Some(Err(()));
            }
            wrote = true;
        }
        if wrote && ws.flush().await.is_err() {
            return Some(Err(()));
        }
        if close.is_some() {
            return close.map(Ok);
        }
    }
}

fn message(encoding: Encoding, bytes: Bytes) -> Message {
    match encoding {
        // Our JSON encoder only writes valid UTF-8.
        Encoding::Json => Message::text(bytes),
        Encoding::Msgpack => Message::binary(bytes),
    }
}

fn hello(session: &Session) -> Hello {
    let limits = session.node().limits();
    let identity = session.connection().identity();
    Hello {
        version: PROTOCOL_VERSION,
        node: session.node().id().to_string(),
        conn: session.id().to_string(),
        auth: session.auth_state(),
        auth_timeout_ms: limits.auth_timeout.as_millis() as u64,
        user: identity.map(|i| i.user.to_string()),
        info: identity
            .and_then(|i| i.info.as_ref())
            .and_then(|p| p.to_fields().0),
        ping_interval_ms: limits.ping_interval.as_millis() as u64,
        max_missed_pongs: limits.max_missed_pongs,
        limits: HelloLimits {
            max_message_bytes: limits.max_message_bytes as u64,
            max_subscriptions: limits.max_subscriptions as u32,
            max_channel_bytes: limits.max_channel_bytes as u32,
            requests_per_second: limits.requests_per_second,
            requests_burst: limits.requests_burst,
            max_pending_requests: limits.max_pending_requests as u32,
        },
    }
}

fn meta_result(value: &Metadata) -> Result<MetaResult, Error> {
    let raw = serde_json::value::to_raw_value(value).map_err(|e| Error::internal(e.to_string()))?;
    Ok(MetaResult {
        value: plexus_protocol::DataField(std::sync::Arc::from(raw)),
    })
}

fn error_body(error: &Error) -> ErrorBody {
    ErrorBody {
        code: error.code,
        message: error.message.clone(),
        data: error.data.as_ref().and_then(|p| p.to_fields().0),
    }
}

impl Loop {
    async fn on_message(&mut self, bytes: &[u8]) {
        let frames = match split_frames(self.encoding, bytes) {
            Ok(frames) => frames,
            Err(e) => {
                self.session
                    .connection()
                    .close(CloseCode::BAD_FRAME, e.to_string());
                return;
            }
        };
        for frame in frames {
            if self.session.connection().outbox().is_closing() {
                return;
            }
            match decode_request(self.encoding, frame) {
                Ok(request) => self.on_request(request).await,
                Err(RequestError::Malformed(message)) => {
                    self.session
                        .connection()
                        .close(CloseCode::BAD_FRAME, message);
                    return;
                }
                Err(RequestError::Rejected { id, code, message }) => {
                    self.reply::<Empty>(id, Err(Error::new(code, message)));
                }
            }
        }
    }

    async fn on_request(&mut self, request: Request) {
        if matches!(request.op, Op::Pong) {
            self.session.pong();
            return;
        }
        if let Err(e) = self.session.admit_request() {
            self.reply::<Empty>(request.id, Err(e));
            return;
        }
        let in_flight =
            self.queued.len() + usize::from(self.current.is_some()) + self.concurrent.len();
        if in_flight >= self.session.node().limits().max_pending_requests {
            let e = Error::new(
                ErrorCode::TOO_MANY_PENDING,
                "too many requests waiting for an answer",
            );
            self.reply::<Empty>(request.id, Err(e));
            return;
        }
        let busy = self.current.is_some() || !self.queued.is_empty();
        if busy && !self.is_concurrent_call(&request) {
            self.queued.push_back(request);
            return;
        }
        self.execute(request).await;
    }

    fn is_concurrent_call(&self, request: &Request) -> bool {
        match &request.op {
            Op::Call(p) => self
                .session
                .node()
                .commands()
                .get(&p.method)
                .is_some_and(|c| c.is_concurrent()),
            _ => false,
        }
    }

    /// Runs queued requests until one of them is an ordered call still running.
    async fn run_queued(&mut self) {
        while self.current.is_none() {
            let Some(request) = self.queued.pop_front() else {
                return;
            };
            self.execute(request).await;
        }
    }

    async fn execute(&mut self, request: Request) {
        let id = request.id;
        match request.op {
            Op::Pong => {
                self.session.pong();
            }
            Op::Connect(p) => {
                let credentials = p.credentials.map(|d| Payload::Json(d.0));
                let request = ConnectRequest {
                    token: p.token,
                    credentials,
                    version: p.version,
                    sync: p.sync,
                };
                let result = self
                    .session
                    .connect(request)
                    .await
                    .map(|identity| ConnectResult {
                        conn: self.session.id().to_string(),
                        user: identity.as_ref().map(|i| i.user.to_string()),
                        info: identity
                            .as_ref()
                            .and_then(|i| i.info.as_ref())
                            .and_then(|p| p.to_fields().0),
                    });
                let ok = result.is_ok();
                self.reply(id, result);
                if ok {
                    self.session.finish_auth().await;
                }
            }
            Op::Subscribe(p) => {
                let request = SubscribeRequest {
                    channel: p.channel,
                    token: p.token,
                    since: p.since.map(|s| (s.offset, s.epoch)),
                    history: p.history,
                };
                match self.session.subscribe(request).await {
                    Ok(sub) => {
                        let result = SubscribeResult {
                            offset: sub.position.offset,
                            epoch: sub.position.epoch.to_string(),
                            recovered: sub.recovered,
                            reason: sub.reason.map(str::to_owned),
                            publications: sub.publications.iter().map(pub_push).collect(),
                        };
                        self.reply(id, Ok(result));
                        // Only now, after the reply, the publications held meanwhile go out.
                        drop(sub);
                    }
                    Err(e) => self.reply::<Empty>(id, Err(e)),
                }
            }
            Op::Unsubscribe(p) => {
                let result = self.session.unsubscribe(&p.channel).await;
                self.reply(id, result.map(|()| Empty {}));
            }
            Op::Publish(p) => {
                let result = match p.payload() {
                    Ok(payload) => self.session.publish(&p.channel, payload).await,
                    Err(e) => Err(Error::bad_request(e.to_string())),
                };
                self.reply(
                    id,
                    result.map(|pos| PublishResult {
                        offset: pos.offset,
                        epoch: pos.epoch.to_string(),
                    }),
                );
            }
            Op::History(p) => {
                let result = self
                    .session
                    .history(&p.channel, p.since, p.limit, p.reverse)
                    .await;
                self.reply(
                    id,
                    result.map(|page| HistoryResult {
                        publications: page.publications.iter().map(pub_push).collect(),
                        offset: page.position.offset,
                        epoch: page.position.epoch.to_string(),
                    }),
                );
            }
            Op::Presence(p) => {
                let result = self.session.presence(&p.channel).await;
                self.reply(
                    id,
                    result.map(|members| PresenceResult {
                        members: members.iter().map(presence_member).collect(),
                    }),
                );
            }
            Op::PresenceStats(p) => {
                let result = self.session.presence_stats(&p.channel).await;
                self.reply(
                    id,
                    result.map(|s| PresenceStatsResult {
                        connections: s.connections as u64,
                        users: s.users as u64,
                    }),
                );
            }
            Op::PresenceState(p) => {
                let state = Payload::Json(p.state.0);
                let state = (state.as_json_str() != Some("null")).then_some(state);
                let expire = p.expire_ms.map(Duration::from_millis);
                let result = self
                    .session
                    .set_presence_state(&p.channel, state, expire)
                    .await;
                self.reply(id, result.map(|()| Empty {}));
            }
            Op::LastSeen(p) => {
                let result = self.session.last_seen(&p.channel, &p.user).await;
                self.reply(
                    id,
                    result.map(|(online, at)| LastSeenResult {
                        online,
                        last_seen_ms: at
                            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                            .map(|d| d.as_millis() as u64),
                    }),
                );
            }
            Op::GetMeta(p) => {
                let conn = match p.conn.as_deref().map(str::parse) {
                    None => None,
                    Some(Ok(conn)) => Some(conn),
                    Some(Err(_)) => {
                        return self.reply::<Empty>(
                            id,
                            Err(Error::bad_request("`conn` is not a connection id")),
                        );
                    }
                };
                let result = self
                    .session
                    .metadata(conn, p.user.as_deref(), p.channel.as_deref())
                    .await;
                self.reply(id, result.and_then(|m| meta_result(&m)));
            }
            Op::SetMeta(p) => {
                let result = match serde_json::from_str::<Metadata>(p.value.0.get()) {
                    Ok(value) => self.session.set_metadata(value, p.merge).await,
                    Err(_) => Err(Error::bad_request("`value` must be a JSON object")),
                };
                self.reply(id, result.map(|()| Empty {}));
            }
            Op::Ack(p) => {
                let result = self.session.ack(p.seq).await;
                self.reply(id, result.map(|pending| AckResult { pending }));
            }
            Op::Call(p) => {
                let payload = match p.payload() {
                    Ok(payload) => payload,
                    Err(e) => {
                        return self.reply::<Empty>(id, Err(Error::bad_request(e.to_string())));
                    }
                };
                match self.session.call(&p.method, payload) {
                    Err(e) => self.reply::<Empty>(id, Err(e)),
                    Ok(call) => {
                        let future = call.future;
                        let fut: BoxFuture<Reply> = Box::pin(async move { (id, future.await) });
                        if call.concurrent {
                            self.concurrent.push(fut);
                        } else {
                            self.current = Some(fut);
                        }
                    }
                }
            }
        }
    }

    /// Queues the reply to `id` (or, for a notification, an `error` push on failure) and closes
    /// when the error asks for it.
    fn reply<R: serde::Serialize>(&mut self, id: Option<u64>, result: Result<R, Error>) {
        let conn = self.session.connection();
        let close = result.as_ref().err().and_then(|e| e.close);
        let frame = match (id, &result) {
            (Some(id), Ok(r)) => Some(server::encode_result(self.encoding, id, r)),
            (Some(id), Err(e)) => Some(server::encode_error(self.encoding, id, &error_body(e))),
            (None, Ok(_)) => None,
            (None, Err(e)) => Some(server::encode_push(
                self.encoding,
                &Push::Error(error_body(e)),
            )),
        };
        if let Some(frame) = frame {
            conn.send_frame(frame);
        }
        if let (Some(code), Err(e)) = (close, &result) {
            conn.close(code, e.message.clone());
        }
    }
}
