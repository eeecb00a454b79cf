//! One Mesa connection as a [`Dialect`] of the shared connection loop (`crate::conn`):
//! op 10 on open, op 2 through the core's authentication, op 11 as the sweep's pong, op 0 to
//! the hooks and to the command named by its `t`.

use super::format::stored_frame;
use super::{MesaService, PortalMode, ReceivedMessage, redelivery_pause};
use crate::conn::{Close, Dialect, Incoming, Replied, Step};
use bytes::Bytes;
use plexus_core::outbox::PushOutcome;
use plexus_core::session::ConnectRequest;
use plexus_core::{CloseCode, Error, ErrorCode, Identity, Payload, Session};
use plexus_protocol::mesa::{self as wire, Frame, PortalEvent, PortalEventKind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_websockets::Message;

/// The type of the op 0 that tells a Mesa client a request was refused (Plexus's addition:
/// Mesa answers nothing): `d` = `{code, message, op, t}`.
pub const ERROR_TYPE: &str = "PLEXUS_ERROR";

pub(crate) struct MesaSocket {
    service: Arc<MesaService>,
    /// The enforced authentication timeout, until op 2 succeeds.
    deadline: Option<Instant>,
    authenticated: bool,
}

impl MesaSocket {
    pub(crate) fn new(service: Arc<MesaService>) -> MesaSocket {
        MesaSocket {
            service,
            deadline: None,
            authenticated: false,
        }
    }
}

/// The `PLEXUS_ERROR` dispatch for `error`, about a frame of opcode `op` and type `t`.
fn error_frame(error: &Error, op: u64, t: Option<&str>) -> Bytes {
    let d = serde_json::json!({
        "code": error.code.0,
        "message": error.message,
        "op": op,
        "t": t,
    });
    let d = serde_json::value::to_raw_value(&d).expect("serializable");
    wire::encode(wire::op::DISPATCH, &d, Some(ERROR_TYPE), None)
}

/// The op 22 `d`: the identity's `info` (the auth hook's or the token's user object), or
/// `{"id": user}`.
fn user_object(identity: &Identity) -> Payload {
    match &identity.info {
        Some(info @ Payload::Json(_)) => info.clone(),
        _ => Payload::json(&serde_json::json!({ "id": &*identity.user })).expect("serializable"),
    }
}

impl Dialect for MesaSocket {
    type Request = Frame;

    async fn open(&mut self, session: &mut Session) {
        let config = &self.service.config;
        let limits = session.node().limits();
        let authenticated = session.connection().identity().is_some();
        let hello = wire::Hello {
            c_heartbeat_interval: config
                .heartbeat
                .then_some(limits.ping_interval.as_millis() as u64),
            c_reconnect_interval: config.reconnect_interval_ms,
            c_authentication_timeout: (!authenticated).then_some(config.auth_timeout_ms),
            rules: config.rules(),
        };
        session.connection().send_frame(hello.encode());
        if !authenticated {
            self.deadline = Some(Instant::now() + Duration::from_millis(config.auth_timeout_ms));
        }
        self.authenticated = authenticated;
        let conn = session.id();
        self.service.hook(|h| h.connection(conn));
        self.service
            .portal(
                session.node(),
                conn,
                PortalEvent::new(PortalEventKind::Connection, None),
            )
            .await;
        // Authenticated at the upgrade: what follows an authentication (mailbox, channels).
        session.finish_auth().await;
    }

    fn decode(&mut self, message: &Message, out: &mut Vec<Incoming<Frame>>) {
        match wire::decode_frame(message.as_payload()) {
            Ok(frame) if frame.op == wire::op::HEARTBEAT_ACK => out.push(Incoming::Pong),
            Ok(frame) => out.push(Incoming::Request(frame)),
            Err(e) => out.push(Incoming::Broken((e.close_code(), e.to_string()))),
        }
    }

    fn is_concurrent(&self, _session: &Session, _request: &Frame) -> bool {
        false
    }

    fn refusal(&self, request: &Frame, error: &Error) -> Option<Bytes> {
        Some(error_frame(error, request.op, request.t.as_deref()))
    }

    async fn execute(&mut self, session: &mut Session, frame: Frame) -> Step {
        match frame.op {
            wire::op::AUTHENTICATION => self.authenticate(session, &frame).await,
            wire::op::DISPATCH => self.dispatch(session, frame).await,
            // Opcodes a client does not send (1, 5, 10, 22) and unknown ones: answered, not
            // forwarded (Mesa treats them as op 0, §1.4).
            op => {
                let e = Error::new(
                    ErrorCode::UNKNOWN_OPERATION,
                    format!("opcode {op} is not one a client sends (0, 2, 11)"),
                );
                let conn = session.id();
                self.service.hook(|h| h.error(Some(conn), &e));
                session
                    .connection()
                    .send_frame(error_frame(&e, op, frame.t.as_deref()));
                Step::Done(None)
            }
        }
    }

    fn write(&mut self, frame: Bytes, out: &mut Vec<Message>) {
        // Every Mesa frame is one text message (the clients parse each message as one JSON
        // value). Our frames are JSON, hence UTF-8.
        out.push(Message::text(frame));
    }

    fn flush(&mut self, _out: &mut Vec<Message>) {}

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn expired(&mut self) -> Option<Close> {
        self.deadline = None;
        Some((CloseCode::AUTH_TIMEOUT, "authentication timed out".into()))
    }

    async fn closed(&mut self, session: &mut Session) {
        let user = session.connection().user().map(str::to_owned);
        let event = PortalEvent::new(PortalEventKind::Disconnection, user.as_deref());
        self.service
            .portal(session.node(), session.id(), event)
            .await;
    }
}

impl MesaSocket {
    /// Op 0: `CLIENT_VERSION` when versions are enforced; otherwise the hooks see it and the
    /// command named by `t` (if any) runs with `d`, its non-null result coming back as an op 0
    /// of the same type.
    async fn dispatch(&mut self, session: &mut Session, frame: Frame) -> Step {
        let t = frame.t.clone();
        if let Some(version) = &self.service.config.enforce_version
            && t.as_deref() == Some(wire::CLIENT_VERSION)
        {
            let sent = frame
                .payload()
                .to_value::<serde_json::Value>()
                .ok()
                .and_then(|d| d.get("v").and_then(|v| v.as_str().map(str::to_owned)));
            if sent.as_deref() == Some(version.as_str()) {
                return Step::Done(None);
            }
            return Step::Done(Some((
                wire::close::VERSION_MISMATCH,
                format!("client version {sent:?} is not {version:?}"),
            )));
        }
        let d = frame.payload();
        let conn = session.id();
        let user = session.connection().user().map(str::to_owned);
        self.service.hook(|h| {
            h.message_received(&ReceivedMessage {
                conn,
                user: user.as_deref(),
                t: t.as_deref(),
                d: &d,
            })
        });
        let portals = self.service.config.portals != PortalMode::Off;
        // A Mesa frame's `d` is JSON (`Frame::payload`).
        if portals && let Payload::Json(raw) = &d {
            let event = PortalEvent::message(user.as_deref(), raw, t.as_deref());
            self.service.portal(session.node(), conn, event).await;
        }
        let Some(method) = t.clone() else {
            return Step::Done(None);
        };
        if session.node().commands().get(&method).is_none() {
            // Heard by the hooks or the portals; no command answers it.
            if self.service.hooks.is_some() || portals {
                return Step::Done(None);
            }
            let e = Error::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("no command handles the type `{method}`"),
            );
            session
                .connection()
                .send_frame(error_frame(&e, 0, Some(&method)));
            return Step::Done(None);
        }
        match session.call(&method, d) {
            Err(e) => {
                session
                    .connection()
                    .send_frame(error_frame(&e, 0, Some(&method)));
                Step::Done(None)
            }
            Ok(call) => {
                let future = call.future;
                Step::Running(Box::pin(async move {
                    match future.await {
                        Ok(result) if result.as_json_str() == Some("null") => Replied {
                            frame: None,
                            close: None,
                        },
                        Ok(result) => Replied {
                            frame: wire::dispatch(&result, Some(&method), None),
                            close: None,
                        },
                        Err(e) => Replied {
                            frame: Some(error_frame(&e, 0, Some(&method))),
                            close: e.close.map(|code| (code, e.message.clone())),
                        },
                    }
                }))
            }
        }
    }

    /// Op 2: development mode takes the user id from `token`; otherwise the core authenticates
    /// (JWT, the auth hook). Then op 22, and the kept messages with `s` = 1..n.
    async fn authenticate(&mut self, session: &mut Session, frame: &Frame) -> Step {
        let config = &self.service.config;
        let conn = session.id();
        if self.authenticated {
            let e = Error::new(ErrorCode::ALREADY_AUTHENTICATED, "already authenticated");
            session
                .connection()
                .send_frame(error_frame(&e, wire::op::AUTHENTICATION, None));
            return Step::Done(None);
        }
        let result = match wire::authentication(&frame.payload()) {
            None => Err(Error::new(
                ErrorCode::BAD_REQUEST,
                "op 2's `d` must be an object",
            )),
            Some(auth) => {
                let should_sync = auth.should_sync;
                let established = if config.token_is_user {
                    match auth
                        .token
                        .filter(|t| !t.is_empty() && t.len() <= super::MAX_USER_BYTES)
                    {
                        Some(user) => session.establish(Identity::new(user)),
                        None => Err(Error::new(
                            ErrorCode::AUTH_FAILED,
                            format!(
                                "development mode: `token` must be the user id (1 to {} bytes)",
                                super::MAX_USER_BYTES
                            ),
                        )),
                    }
                } else {
                    session
                        .connect(ConnectRequest {
                            token: auth.token,
                            credentials: Some(auth.data),
                            version: None,
                            sync: Some(true),
                        })
                        .await
                        .and_then(|identity| {
                            identity.map(|_| ()).ok_or_else(|| {
                                Error::new(ErrorCode::AUTH_FAILED, "no user: send a token")
                            })
                        })
                };
                established.map(|()| should_sync)
            }
        };
        let should_sync = match result {
            Ok(should_sync) => should_sync,
            Err(e) => {
                self.service.hook(|h| h.error(Some(conn), &e));
                let close = match e.close {
                    Some(CloseCode::AUTH_TIMEOUT) => CloseCode::AUTH_TIMEOUT,
                    Some(CloseCode::CONNECTION_LIMIT) => CloseCode::CONNECTION_LIMIT,
                    _ => wire::close::AUTH_FAILED,
                };
                if config.disconnect_on_fail || e.close.is_some_and(|c| c != CloseCode::AUTH_FAILED)
                {
                    return Step::Done(Some((close, e.message)));
                }
                session
                    .connection()
                    .send_frame(error_frame(&e, wire::op::AUTHENTICATION, None));
                return Step::Done(None);
            }
        };
        self.authenticated = true;
        self.deadline = None;
        let identity = session
            .connection()
            .identity()
            .cloned()
            .expect("just authenticated");
        let d = if config.send_user_object {
            user_object(&identity)
        } else {
            wire::empty_object()
        };
        if let Payload::Json(raw) = &d {
            session.connection().send_frame(wire::encode(
                wire::op::AUTHENTICATION_ACK,
                raw,
                None,
                None,
            ));
        }
        let user = identity.user.clone();
        self.service.hook(|h| h.authenticated(conn, &user));
        self.service
            .portal(
                session.node(),
                conn,
                PortalEvent::new(PortalEventKind::Authentication, Some(&user)),
            )
            .await;
        // Mesa reads the store, then deletes it (`shouldSync: false` deletes it unread).
        let kept = if config.sync {
            match session.node().take_mail(&user).await {
                Ok(kept) => kept,
                Err(e) => {
                    tracing::warn!(%user, error = %e, "reading kept Mesa messages failed");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        session.finish_auth().await;
        if should_sync && !kept.is_empty() {
            self.service
                .hook(|h| h.redelivered(conn, &user, kept.len()));
            let conn = session.connection().clone();
            let pause = redelivery_pause(config);
            let redeliver = async move {
                for (i, mail) in kept.iter().enumerate() {
                    if i > 0 && !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    if let Some(frame) = stored_frame(&mail.payload, Some(i as u64 + 1))
                        && conn.send_frame(frame) != PushOutcome::Queued
                    {
                        return;
                    }
                }
            };
            if pause.is_zero() {
                redeliver.await;
            } else {
                // Paced: bounded by the mailbox's size; ends early when the connection is gone
                // (its outbox refuses frames).
                tokio::spawn(redeliver);
            }
        }
        Step::Done(None)
    }
}
