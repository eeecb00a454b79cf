//! The native protocol as a [`Dialect`] of the shared connection loop (`crate::conn`): frames
//! decoded from JSON or MessagePack messages, requests executed on the session, replies and
//! pushes joined into batched messages.

use super::format::{presence_member, pub_push};
use crate::conn::{Close, Dialect, Incoming, Replied, Step};
use bytes::Bytes;
use plexus_core::Metadata;
use plexus_core::session::{ConnectRequest, SubscribeRequest};
use plexus_core::{CloseCode, Emit, Error, Payload, Session};
use plexus_core::{Record, RecordMode, RecordWrite, Written};
use plexus_protocol::client::{Op, Request, RequestError, decode_request};
use plexus_protocol::server::{
    self, AckResult, CallResult, ConnectResult, Empty, ErrorBody, Hello, HelloLimits,
    HistoryResult, LastSeenResult, MetaResult, PresenceResult, PresenceStatsResult, PublishResult,
    Push, RecordResult, RecordWriteResult, SubscribeResult,
};
use plexus_protocol::{Encoding, FrameWriter, PROTOCOL_VERSION};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio_websockets::Message;

/// The native protocol in one encoding.
pub(crate) struct Native {
    encoding: Encoding,
    writer: FrameWriter,
}

impl Native {
    pub(crate) fn new(encoding: Encoding) -> Native {
        Native {
            encoding,
            writer: FrameWriter::new(encoding),
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

impl Dialect for Native {
    type Request = Request;

    async fn open(&mut self, session: &mut Session) {
        let hello = hello(session);
        session
            .connection()
            .send_frame(server::encode_push(self.encoding, &Push::Hello(hello)));
        session.finish_auth().await;
    }

    fn decode(&mut self, message: &Message, out: &mut Vec<Incoming<Request>>) {
        // §4.4: MessagePack frames come in binary messages; a JSON connection accepts binary
        // messages too (the bytes are read as JSON text).
        if self.encoding == Encoding::Msgpack && message.is_text() {
            out.push(Incoming::Broken((
                CloseCode::BAD_FRAME,
                "a text message on a MessagePack connection".into(),
            )));
            return;
        }
        // §3.7: the frames of a batch are handled as if they came alone, so the frames before
        // a broken one are handled before the close.
        for frame in plexus_protocol::frames(self.encoding, message.as_payload()) {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    out.push(Incoming::Broken((CloseCode::BAD_FRAME, e.to_string())));
                    return;
                }
            };
            match decode_request(self.encoding, frame) {
                Ok(Request { op: Op::Pong, .. }) => out.push(Incoming::Pong),
                Ok(request) => out.push(Incoming::Request(request)),
                Err(RequestError::Malformed(message)) => {
                    out.push(Incoming::Broken((CloseCode::BAD_FRAME, message)));
                    return;
                }
                Err(RequestError::Rejected { id, code, message }) => {
                    let error = Error::new(code, message);
                    out.push(Incoming::Rejected(Some(self.error_frame(id, &error))));
                }
            }
        }
    }

    fn is_concurrent(&self, session: &Session, request: &Request) -> bool {
        match &request.op {
            Op::Call(p) => session
                .node()
                .commands()
                .get(&p.method)
                .is_some_and(|c| c.is_concurrent()),
            _ => false,
        }
    }

    fn refusal(&self, request: &Request, error: &Error) -> Option<Bytes> {
        Some(self.error_frame(request.id, error))
    }

    async fn execute(&mut self, session: &mut Session, request: Request) -> Step {
        let encoding = self.encoding;
        let id = request.id;
        match request.op {
            Op::Pong => {
                session.pong();
                Step::Done(None)
            }
            Op::Connect(p) => {
                let result = session
                    .connect(connect_request(p))
                    .await
                    .map(|identity| connect_result(session, identity.as_ref()));
                let ok = result.is_ok();
                let step = done(encoding, session, id, result);
                if ok {
                    session.finish_auth().await;
                }
                step
            }
            Op::Subscribe(p) => {
                match session.subscribe(subscribe_request(p)).await {
                    Ok(sub) => {
                        let result = subscribe_result(&sub);
                        let step = done(encoding, session, id, Ok(result));
                        // Only now, after the reply, the publications held meanwhile go out.
                        drop(sub);
                        step
                    }
                    Err(e) => done(encoding, session, id, Err::<Empty, _>(e)),
                }
            }
            Op::Unsubscribe(p) => {
                let result = session.unsubscribe(&p.channel).await;
                done(encoding, session, id, result.map(|()| Empty {}))
            }
            Op::Publish(p) => {
                let result = match p.payload() {
                    Ok(payload) => {
                        let event = p.event.as_deref().map(Arc::from);
                        session.publish(&p.channel, Emit { event, payload }).await
                    }
                    Err(e) => Err(Error::bad_request(e.to_string())),
                };
                let result = result.map(|pos| PublishResult {
                    offset: pos.offset,
                    epoch: pos.epoch.to_string(),
                });
                done(encoding, session, id, result)
            }
            Op::History(p) => {
                let result = session
                    .history(&p.channel, p.since, p.limit, p.reverse)
                    .await
                    .map(|page| history_result(&page));
                done(encoding, session, id, result)
            }
            Op::Presence(p) => {
                let result = session
                    .presence(&p.channel)
                    .await
                    .map(|members| PresenceResult {
                        members: members.iter().map(presence_member).collect(),
                    });
                done(encoding, session, id, result)
            }
            Op::PresenceStats(p) => {
                let result =
                    session
                        .presence_stats(&p.channel)
                        .await
                        .map(|s| PresenceStatsResult {
                            connections: s.connections as u64,
                            users: s.users as u64,
                        });
                done(encoding, session, id, result)
            }
            Op::PresenceState(p) => {
                let state = Payload::Json(p.state.0);
                let state = (state.as_json_str() != Some("null")).then_some(state);
                let expire = p.expire_ms.map(Duration::from_millis);
                let result = session.set_presence_state(&p.channel, state, expire).await;
                done(encoding, session, id, result.map(|()| Empty {}))
            }
            Op::LastSeen(p) => {
                let result = session
                    .last_seen(&p.channel, &p.user)
                    .await
                    .map(|(online, at)| LastSeenResult {
                        online,
                        last_seen_ms: at
                            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                            .map(|d| d.as_millis() as u64),
                    });
                done(encoding, session, id, result)
            }
            Op::GetMeta(p) => {
                let conn = match p.conn.as_deref().map(str::parse) {
                    None => None,
                    Some(Ok(conn)) => Some(conn),
                    Some(Err(_)) => {
                        let e = Error::bad_request("`conn` is not a connection id");
                        return done(encoding, session, id, Err::<Empty, _>(e));
                    }
                };
                let result = session
                    .metadata(conn, p.user.as_deref(), p.channel.as_deref())
                    .await;
                done(encoding, session, id, result.and_then(|m| meta_result(&m)))
            }
            Op::SetMeta(p) => {
                let result = match serde_json::from_str::<Metadata>(p.value.0.get()) {
                    Ok(value) => session.set_metadata(value, p.merge).await,
                    Err(_) => Err(Error::bad_request("`value` must be a JSON object")),
                };
                done(encoding, session, id, result.map(|()| Empty {}))
            }
            Op::Ack(p) => {
                let result = session.ack(p.seq).await;
                done(
                    encoding,
                    session,
                    id,
                    result.map(|pending| AckResult { pending }),
                )
            }
            Op::RecordGet(p) => {
                let result = session
                    .record(&p.id)
                    .await
                    .map(|r| record_result(&p.id, r.as_ref()));
                done(encoding, session, id, result)
            }
            Op::RecordSet(p) => {
                let result = session
                    .write_record(&p.id, RecordWrite::Set(p.value), p.expect)
                    .await;
                done(encoding, session, id, result.map(write_result))
            }
            Op::RecordPatch(p) => {
                let result = session
                    .write_record(&p.id, RecordWrite::Patch(p.patch), p.expect)
                    .await;
                done(encoding, session, id, result.map(write_result))
            }
            Op::RecordDelete(p) => {
                let result = session
                    .write_record(&p.id, RecordWrite::Delete, p.expect)
                    .await;
                done(encoding, session, id, result.map(write_result))
            }
            Op::RecordSubscribe(p) => {
                let mode = match p.mode.as_deref().map(RecordMode::parse) {
                    None => RecordMode::Full,
                    Some(Some(mode)) => mode,
                    Some(None) => {
                        let e = Error::bad_request("`mode` is `full` or `patch`");
                        return done(encoding, session, id, Err::<Empty, _>(e));
                    }
                };
                match session.subscribe_record(&p.id, mode).await {
                    Ok(sub) => {
                        let result = record_result(&p.id, sub.record.as_ref());
                        let step = done(encoding, session, id, Ok(result));
                        // Only now, after the reply, the changes held meanwhile go out.
                        drop(sub);
                        step
                    }
                    Err(e) => done(encoding, session, id, Err::<Empty, _>(e)),
                }
            }
            Op::RecordUnsubscribe(p) => {
                let result = session.unsubscribe_record(&p.id).await;
                done(encoding, session, id, result.map(|()| Empty {}))
            }
            Op::Call(p) => {
                let payload = match p.payload() {
                    Ok(payload) => payload,
                    Err(e) => {
                        return done(
                            encoding,
                            session,
                            id,
                            Err::<Empty, _>(Error::bad_request(e.to_string())),
                        );
                    }
                };
                match session.call(&p.method, payload) {
                    Err(e) => done(encoding, session, id, Err::<Empty, _>(e)),
                    Ok(call) => {
                        let future = call.future;
                        let fut = Box::pin(async move {
                            let result = future.await.map(|p| CallResult::new(&p));
                            let (frame, close) = reply_frame(encoding, id, &result);
                            Replied { frame, close }
                        });
                        if call.concurrent {
                            Step::Concurrent(fut)
                        } else {
                            Step::Running(fut)
                        }
                    }
                }
            }
        }
    }

    fn write(&mut self, frame: Bytes, out: &mut Vec<Message>) {
        if self.writer.len() + frame.len() > crate::conn::BATCH_BYTES_MAX && !self.writer.is_empty()
        {
            out.push(message(self.encoding, self.writer.take()));
        }
        self.writer.push(&frame);
    }

    fn flush(&mut self, out: &mut Vec<Message>) {
        if !self.writer.is_empty() {
            out.push(message(self.encoding, self.writer.take()));
        }
    }
}

impl Native {
    fn error_frame(&self, id: Option<u64>, error: &Error) -> Bytes {
        reply_frame::<Empty>(self.encoding, id, &Err(error.clone()))
            .0
            .expect("an error always has a frame")
    }
}

/// The frame answering `id` (or, for a notification, an `error` push on failure) and the close
/// the error asks for.
fn reply_frame<R: serde::Serialize>(
    encoding: Encoding,
    id: Option<u64>,
    result: &Result<R, Error>,
) -> (Option<Bytes>, Option<Close>) {
    let frame = match (id, result) {
        (Some(id), Ok(r)) => Some(server::encode_result(encoding, id, r)),
        (Some(id), Err(e)) => Some(server::encode_error(encoding, id, &error_body(e))),
        (None, Ok(_)) => None,
        (None, Err(e)) => Some(server::encode_push(encoding, &Push::Error(error_body(e)))),
    };
    let close = result
        .as_ref()
        .err()
        .and_then(|e| e.close.map(|code| (code, e.message.clone())));
    (frame, close)
}

/// Queues the reply to `id` now: the request is done.
fn done<R: serde::Serialize>(
    encoding: Encoding,
    session: &Session,
    id: Option<u64>,
    result: Result<R, Error>,
) -> Step {
    Step::Done(reply(encoding, session, id, result))
}

/// Queues the reply to `id` now; returns the close its error asks for.
fn reply<R: serde::Serialize>(
    encoding: Encoding,
    session: &Session,
    id: Option<u64>,
    result: Result<R, Error>,
) -> Option<Close> {
    let (frame, close) = reply_frame(encoding, id, &result);
    if let Some(frame) = frame {
        session.connection().send_frame(frame);
    }
    close
}

/// A record (or its absence: `null` at version 0) as a `record_get` / `record_subscribe` result.
fn record_result(id: &str, record: Option<&Record>) -> RecordResult {
    RecordResult {
        id: id.to_owned(),
        value: record.map_or(serde_json::Value::Null, |r| r.value.clone()),
        version: record.map_or(0, |r| r.version),
        epoch: record.map_or_else(String::new, |r| r.epoch.to_string()),
    }
}

fn write_result(written: Written) -> RecordWriteResult {
    RecordWriteResult {
        version: written.version,
        epoch: written.epoch.to_string(),
    }
}

/// A `connect` request's params as the core's request (shared with the Sockety built-ins).
pub(crate) fn connect_request(p: plexus_protocol::client::ConnectParams) -> ConnectRequest {
    ConnectRequest {
        token: p.token,
        credentials: p.credentials.map(|d| Payload::Json(d.0)),
        version: p.version,
        sync: p.sync,
    }
}

/// `connect`'s result for the identity the session got.
pub(crate) fn connect_result(
    session: &Session,
    identity: Option<&plexus_core::Identity>,
) -> ConnectResult {
    ConnectResult {
        conn: session.id().to_string(),
        user: identity.map(|i| i.user.to_string()),
        info: identity
            .and_then(|i| i.info.as_ref())
            .and_then(|p| p.to_fields().0),
    }
}

/// A `subscribe` request's params as the core's request.
pub(crate) fn subscribe_request(p: plexus_protocol::client::SubscribeParams) -> SubscribeRequest {
    SubscribeRequest {
        channel: p.channel,
        token: p.token,
        since: p.since.map(|s| (s.offset, s.epoch)),
        history: p.history,
    }
}

/// `subscribe`'s result for a subscription.
pub(crate) fn subscribe_result(sub: &plexus_core::session::Subscription) -> SubscribeResult {
    SubscribeResult {
        offset: sub.position.offset,
        epoch: sub.position.epoch.to_string(),
        recovered: sub.recovered,
        reason: sub.reason.map(str::to_owned),
        publications: sub.publications.iter().map(pub_push).collect(),
    }
}

/// `history`'s result for a page (shared with Sockety's built-ins).
pub(crate) fn history_result(page: &plexus_core::engine::HistoryPage) -> HistoryResult {
    HistoryResult {
        publications: page.publications.iter().map(pub_push).collect(),
        offset: page.position.offset,
        epoch: page.position.epoch.to_string(),
    }
}
