//! One Sockety connection on the core: the protocol runs in `plexus_sockety`; this loop owns
//! the [`Session`], turns messages into actions, built-ins and commands, writes the outbox's
//! pushes, and closes (go-away with the running requests answered on shutdown).

use super::{Answer, Request, SocketyService, fast_reply_code};
use crate::native::format::presence_member;
use crate::native::session::{
    connect_request, connect_result, history_result, subscribe_request, subscribe_result,
};
use crate::{ServerState, SessionGuard};
use bytes::Bytes;
use plexus_core::{CloseCode, Emit, Error, ErrorCode, Identity, Payload, Session, UpgradeRequest};
use plexus_protocol::client::{
    ChannelParams, ConnectParams, HistoryParams, PublishParams, SubscribeParams, UnsubscribeParams,
};
use plexus_protocol::server::{Empty, PresenceResult, PublishResult};
use plexus_sockety::{Draft, Message};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

/// Bytes of pushes taken from the outbox per round.
const BATCH_BYTES: usize = 64 * 1024;

/// Serves one connection until it closes.
pub(crate) async fn serve<R, W>(
    state: Arc<ServerState>,
    read: R,
    write: W,
    upgrade: Arc<UpgradeRequest>,
    identity: Option<Identity>,
    _guard: SessionGuard,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Some(service) = state.sockety.clone() else {
        return;
    };
    let node = state.node.clone();
    let (peer, mut incoming) = plexus_sockety::start(read, write, service.config.peer(&node));
    let format = state.formats.sockety();
    let mut session = match Session::open(&node, format, upgrade, identity) {
        Ok(session) => session,
        Err(e) => {
            let code = e.close.unwrap_or(CloseCode::DISCONNECTED);
            peer.abort(code.0, e.message);
            return;
        }
    };
    let conn = session.connection().clone();
    service
        .peers
        .lock()
        .expect("peers")
        .insert(conn.id, peer.clone());
    let mut tasks: JoinSet<()> = JoinSet::new();
    let max_running = node.limits().max_pending_requests.max(1);
    let mut batch = Vec::new();
    // Set on shutdown: go-away was said; the running requests finish, then the close.
    let mut draining: Option<tokio::time::Instant> = None;
    loop {
        if draining.is_some() && tasks.is_empty() {
            peer.close().await;
            break;
        }
        let auth_deadline = session.auth_deadline();
        tokio::select! {
            // At the bound of requests running, reading waits (TCP's backpressure): a client's
            // many concurrent requests are taken as others finish, never refused.
            message = incoming.recv(), if tasks.len() < max_running => match message {
                Some(message) => on_message(&service, &mut session, &mut tasks, message).await,
                None => break,
            },
            _ = conn.outbox().ready(), if draining.is_none() => {
                batch.clear();
                let close = conn.outbox().drain(&mut batch, BATCH_BYTES);
                for frame in batch.drain(..) {
                    if peer.send_encoded(frame).await.is_err() {
                        break;
                    }
                }
                if let Some(close) = close {
                    if close.code == CloseCode::SHUTDOWN {
                        let _ = peer.go_away().await;
                        draining = Some(tokio::time::Instant::now() + node.limits().shutdown_timeout);
                    } else {
                        peer.abort(close.code.0, close.reason);
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = sleep_until(draining), if draining.is_some() => {
                peer.abort(CloseCode::SHUTDOWN.0, "server shutting down");
            }
            _ = sleep_until(auth_deadline.map(Into::into)), if auth_deadline.is_some() => {
                peer.abort(CloseCode::AUTH_TIMEOUT.0, "authentication timed out");
            }
            _ = peer.closed() => break,
        }
    }
    let closed = peer.closed().await;
    tasks.abort_all();
    service.peers.lock().expect("peers").remove(&conn.id);
    session.close(CloseCode(closed.code), &closed.reason).await;
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

async fn on_message(
    service: &Arc<SocketyService>,
    session: &mut Session,
    tasks: &mut JoinSet<()>,
    message: Message,
) {
    if let Err(e) = session.admit_request() {
        refuse(&message, &e).await;
        if let Some(code) = e.close {
            message.peer().abort(code.0, e.message);
        }
        return;
    }
    if let Some(op) = message.action.strip_prefix("plexus.") {
        let op = op.to_owned();
        builtin(session, &op, message).await;
        return;
    }
    if let Some(action) = service.actions.get(&message.action).cloned() {
        let identity = session.connection().identity();
        let user = identity.map(|i| i.user.clone());
        if let Err(e) = session.require_admitted() {
            refuse(&message, &e).await;
            return;
        }
        let node = session.node().clone();
        let conn = session.id();
        run_or_spawn(tasks, async move {
            let peer = message.peer().clone();
            let id = message.id;
            let expects = message.expects_response;
            let answer = action
                .call(Request {
                    message,
                    node,
                    conn,
                    user,
                })
                .await;
            match answer {
                Answer::Respond(draft) if expects => {
                    let _ = peer.respond(id, draft).await;
                }
                Answer::Fast(code) if expects => {
                    let _ = peer.fast_reply(id, code).await;
                }
                _ => {}
            }
        })
        .await;
        return;
    }
    // A Plexus command.
    let payload = payload_of(&message.data);
    match session.call(&message.action, payload) {
        Err(e) => refuse(&message, &e).await,
        Ok(call) => {
            run_or_spawn(tasks, async move {
                let result = call.future.await;
                if !message.expects_response {
                    return;
                }
                let _ = match result {
                    Ok(payload) => {
                        message
                            .respond(Draft::response().data(data_of(&payload)))
                            .await
                    }
                    Err(e) => message.fast_reply(fast_reply_code(e.code)).await,
                };
            })
            .await;
        }
    }
}

/// Runs a request's handling in this turn when it completes at once (most handlers answer
/// without waiting: no task, no hop), else as a task of the connection.
async fn run_or_spawn(
    tasks: &mut JoinSet<()>,
    handling: impl Future<Output = ()> + Send + 'static,
) {
    let mut handling = Box::pin(handling);
    let done =
        std::future::poll_fn(|cx| std::task::Poll::Ready(handling.as_mut().poll(cx).is_ready()))
            .await;
    if !done {
        tasks.spawn(handling);
    }
}

/// Data as a command's payload: JSON when it is JSON text, bytes otherwise; no data is `null`.
fn payload_of(data: &Bytes) -> Payload {
    if data.is_empty() {
        return Payload::null();
    }
    match std::str::from_utf8(data) {
        Ok(text) => Payload::from_json_str(text).unwrap_or_else(|_| Payload::binary(data.clone())),
        Err(_) => Payload::binary(data.clone()),
    }
}

/// A payload as response data: JSON text, or the bytes.
fn data_of(payload: &Payload) -> Bytes {
    match payload {
        Payload::Json(raw) => Bytes::copy_from_slice(raw.get().as_bytes()),
        Payload::Binary(bytes) => bytes.clone(),
    }
}

async fn refuse(message: &Message, e: &Error) {
    if message.expects_response {
        let _ = message.fast_reply(fast_reply_code(e.code)).await;
    }
}

async fn answer<R: serde::Serialize>(message: &Message, result: Result<R, Error>) {
    match result {
        Ok(value) => {
            if message.expects_response {
                let data = serde_json::to_vec(&value).unwrap_or_default();
                let _ = message.respond(Draft::response().data(data)).await;
            }
        }
        Err(e) => refuse(message, &e).await,
    }
}

fn params<T: serde::de::DeserializeOwned>(message: &Message) -> Result<T, Error> {
    let data: &[u8] = if message.data.is_empty() {
        b"{}"
    } else {
        &message.data
    };
    serde_json::from_slice(data).map_err(|e| Error::bad_request(format!("bad data: {e}")))
}

/// The built-in actions: the native protocol's operations with its JSON params as data and
/// its JSON results as response data (`docs/sockety.md`, "Built-in actions").
async fn builtin(session: &mut Session, op: &str, message: Message) {
    match op {
        "connect" => {
            let p: ConnectParams = match params(&message) {
                Ok(p) => p,
                Err(e) => return refuse(&message, &e).await,
            };
            let result = session
                .connect(connect_request(p))
                .await
                .map(|identity| connect_result(session, identity.as_ref()));
            let ok = result.is_ok();
            let close = result
                .as_ref()
                .err()
                .and_then(|e| e.close.map(|c| (c, e.message.clone())));
            answer(&message, result).await;
            if ok {
                session.finish_auth().await;
            }
            if let Some((code, reason)) = close {
                message.peer().abort(code.0, reason);
            }
        }
        "subscribe" => {
            let p: SubscribeParams = match params(&message) {
                Ok(p) => p,
                Err(e) => return refuse(&message, &e).await,
            };
            match session.subscribe(subscribe_request(p)).await {
                Ok(sub) => {
                    let result = subscribe_result(&sub);
                    answer(&message, Ok(result)).await;
                    // Only now, after the response, the publications held meanwhile go out.
                    drop(sub);
                }
                Err(e) => refuse(&message, &e).await,
            }
        }
        "unsubscribe" => {
            let result = match params::<UnsubscribeParams>(&message) {
                Ok(p) => session.unsubscribe(&p.channel).await.map(|()| Empty {}),
                Err(e) => Err(e),
            };
            answer(&message, result).await;
        }
        "publish" => {
            let result = match params::<PublishParams>(&message) {
                Ok(p) => match p.payload() {
                    Ok(payload) => {
                        let event = p.event.as_deref().map(Arc::from);
                        session
                            .publish(&p.channel, Emit { event, payload })
                            .await
                            .map(|pos| PublishResult {
                                offset: pos.offset,
                                epoch: pos.epoch.to_string(),
                            })
                    }
                    Err(e) => Err(Error::bad_request(e.to_string())),
                },
                Err(e) => Err(e),
            };
            answer(&message, result).await;
        }
        "history" => {
            let result = match params::<HistoryParams>(&message) {
                Ok(p) => session
                    .history(&p.channel, p.since, p.limit, p.reverse)
                    .await
                    .map(|page| history_result(&page)),
                Err(e) => Err(e),
            };
            answer(&message, result).await;
        }
        "presence" => {
            let result = match params::<ChannelParams>(&message) {
                Ok(p) => session
                    .presence(&p.channel)
                    .await
                    .map(|members| PresenceResult {
                        members: members.iter().map(presence_member).collect(),
                    }),
                Err(e) => Err(e),
            };
            answer(&message, result).await;
        }
        _ => {
            let e = Error::new(
                ErrorCode::UNKNOWN_OPERATION,
                format!("no built-in action `plexus.{op}`"),
            );
            refuse(&message, &e).await;
        }
    }
}
