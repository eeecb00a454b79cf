//! One Mesh connection as a [`Dialect`] of the shared connection loop (`crate::conn`): the
//! built-in commands of `seeds-protocols.md` §3.1 on the [`Session`], any other command as a
//! Plexus command (RPC, with its middleware), `pong` for the node's heartbeat.

use super::MeshService;
use super::format::{message_of, value_of};
use crate::conn::{Dialect, Incoming, Replied, Step};
use bytes::Bytes;
use plexus_core::session::SubscribeRequest;
use plexus_core::{ConnId, Error, ErrorCode, Metadata, Payload, RecordMode, RecordWrite, Session};
use plexus_protocol::mesh::{self as wire, Frame};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_websockets::Message;

pub(crate) struct MeshSocket {
    service: Arc<MeshService>,
    /// Rooms whose presence this connection watches without being in them.
    observed: HashSet<String>,
}

impl MeshSocket {
    pub(crate) fn new(service: Arc<MeshService>) -> MeshSocket {
        MeshSocket {
            service,
            observed: HashSet::new(),
        }
    }
}

/// Mesh's error payload for a Plexus error: `ENOTFOUND` for an unknown command, `ETIMEOUT` for a
/// handler that did not answer in time, `ESERVER` otherwise (what Mesh sends for a throw).
pub(crate) fn error_payload(command: &str, e: &Error) -> Value {
    match e.code {
        ErrorCode::METHOD_NOT_FOUND => wire::not_found(command),
        ErrorCode::TIMEOUT => wire::error_payload(&e.message, "ETIMEOUT", "TimeoutError"),
        _ => wire::error_payload(&e.message, "ESERVER", "Error"),
    }
}

fn reply(session: &Session, id: u64, command: &str, payload: Value) -> Step {
    session
        .connection()
        .send_frame(wire::reply(id, command, &payload));
    Step::Done(None)
}

fn str_field<'a>(payload: &'a Value, key: &str) -> Option<&'a str> {
    payload.get(key).and_then(Value::as_str)
}

impl Dialect for MeshSocket {
    type Request = Frame;

    async fn open(&mut self, session: &mut Session) {
        if self.service.config.assign_id {
            let id = Value::String(session.id().to_string());
            session
                .connection()
                .send_frame(wire::push(wire::push::ASSIGN_ID, &id));
        }
        session.finish_auth().await;
    }

    fn decode(&mut self, message: &Message, out: &mut Vec<Incoming<Frame>>) {
        match wire::decode_frame(message.as_payload()) {
            Ok(frame) if frame.command == wire::PONG => out.push(Incoming::Pong),
            Ok(frame) => out.push(Incoming::Request(frame)),
            // Answered, not fatal: Mesh ignored such frames; a client learns why here.
            Err(e) => {
                let payload = wire::error_payload(&e.to_string(), "EBADFRAME", "ProtocolError");
                out.push(Incoming::Rejected(Some(wire::push(
                    wire::push::ERROR,
                    &payload,
                ))));
            }
        }
    }

    fn is_concurrent(&self, session: &Session, request: &Frame) -> bool {
        !request.command.starts_with("mesh/")
            && session
                .node()
                .commands()
                .get(&request.command)
                .is_some_and(|c| c.is_concurrent())
    }

    fn refusal(&self, request: &Frame, error: &Error) -> Option<Bytes> {
        let payload = error_payload(&request.command, error);
        Some(match request.id {
            Some(id) if request.is_request() => wire::reply(id, &request.command, &payload),
            _ => wire::push(wire::push::ERROR, &payload),
        })
    }

    async fn execute(&mut self, session: &mut Session, frame: Frame) -> Step {
        let Some(id) = frame.id.filter(|_| frame.is_request()) else {
            // `latency:response` and frames without id: nothing to answer (Mesh ignores them).
            return Step::Done(None);
        };
        let command = frame.command.as_str();
        let p = &frame.payload;
        let result = match command {
            "mesh/noop" => json!(true),
            "mesh/subscribe-channel" => return self.subscribe_channel(session, id, p).await,
            "mesh/unsubscribe-channel" => {
                let channel = str_field(p, "channel").unwrap_or_default();
                json!(session.unsubscribe(channel).await.is_ok())
            }
            "mesh/get-channel-history" => {
                let channel = str_field(p, "channel").unwrap_or_default();
                let limit = p.get("limit").and_then(Value::as_u64).unwrap_or(50);
                let limit = u32::try_from(limit).unwrap_or(u32::MAX);
                match session.history(channel, None, Some(limit), true).await {
                    Ok(page) => json!({
                        "history": page.publications.iter().filter_map(|p| message_of(&p.payload)).collect::<Vec<_>>()
                    }),
                    Err(_) => json!({"history": []}),
                }
            }
            "mesh/join-room" => self.join_room(session, p).await,
            "mesh/leave-room" => {
                let room = str_field(p, "roomName").unwrap_or_default();
                let _ = session.unsubscribe(room).await;
                json!({"success": true})
            }
            "mesh/get-connection-metadata" => self.connection_metadata(session, p).await,
            "mesh/get-my-connection-metadata" => {
                json!({"metadata": Value::Object(session.connection().metadata())})
            }
            "mesh/set-my-connection-metadata" => {
                let merge = str_field(p, "strategy") == Some("merge");
                match p.get("metadata").and_then(Value::as_object) {
                    Some(m) => {
                        let result = session.set_metadata(Metadata::from(m.clone()), merge).await;
                        match result {
                            Ok(()) => json!({"success": true}),
                            Err(e) => error_payload(command, &e),
                        }
                    }
                    None => json!({"success": false}),
                }
            }
            "mesh/get-room-metadata" => {
                let room = str_field(p, "roomName").unwrap_or_default();
                let metadata = session.node().channel_metadata(room).await.ok().flatten();
                json!({"metadata": metadata.map(Value::Object)})
            }
            "mesh/subscribe-record" => return self.subscribe_record(session, id, p).await,
            "mesh/unsubscribe-record" => {
                let record = str_field(p, "recordId").unwrap_or_default();
                json!(session.unsubscribe_record(record).await.is_ok())
            }
            "mesh/publish-record-update" | "mesh/patch-record" => {
                self.write_record(session, command, p).await
            }
            "mesh/subscribe-presence" => self.subscribe_presence(session, p).await,
            "mesh/unsubscribe-presence" => {
                let room = str_field(p, "roomName").unwrap_or_default();
                let watched = self.observed.remove(room);
                json!(watched && session.unobserve(room).await)
            }
            "mesh/publish-presence-state" => {
                let room = str_field(p, "roomName").unwrap_or_default();
                match p.get("state") {
                    None => json!(false),
                    Some(state) => {
                        let expire = p
                            .get("expireAfter")
                            .and_then(Value::as_u64)
                            .map(Duration::from_millis);
                        let state = Payload::json(state).expect("a JSON value");
                        let result = session.set_presence_state(room, Some(state), expire);
                        json!(result.await.is_ok())
                    }
                }
            }
            "mesh/clear-presence-state" => {
                let room = str_field(p, "roomName").unwrap_or_default();
                json!(session.set_presence_state(room, None, None).await.is_ok())
            }
            _ => return self.call(session, id, frame),
        };
        reply(session, id, command, result)
    }

    fn write(&mut self, frame: Bytes, out: &mut Vec<Message>) {
        // Every Mesh frame is one text message; our frames are JSON, hence UTF-8.
        out.push(Message::text(frame));
    }

    fn flush(&mut self, _out: &mut Vec<Message>) {}
}

impl MeshSocket {
    /// An application command: a Plexus command with its middleware; its result (or Mesh's
    /// error payload) is the reply's payload.
    fn call(&mut self, session: &mut Session, id: u64, frame: Frame) -> Step {
        let command = frame.command;
        let payload = Payload::json(&frame.payload).expect("a JSON value");
        match session.call(&command, payload) {
            Err(e) => reply(session, id, &command, error_payload(&command, &e)),
            Ok(call) => {
                let future = call.future;
                let fut = Box::pin(async move {
                    let payload = match future.await {
                        Ok(result) => value_of(&result).unwrap_or(Value::Null),
                        Err(e) => error_payload(&command, &e),
                    };
                    Replied {
                        frame: Some(wire::reply(id, &command, &payload)),
                        close: None,
                    }
                });
                if call.concurrent {
                    Step::Concurrent(fut)
                } else {
                    Step::Running(fut)
                }
            }
        }
    }

    /// `{success, history}` with the last `historyLimit` messages, newest first (Mesh's order).
    async fn subscribe_channel(&mut self, session: &mut Session, id: u64, p: &Value) -> Step {
        let command = "mesh/subscribe-channel";
        let channel = str_field(p, "channel").unwrap_or_default().to_owned();
        let history = p
            .get("historyLimit")
            .and_then(Value::as_u64)
            .filter(|n| *n > 0)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let request = SubscribeRequest {
            channel,
            history,
            ..SubscribeRequest::default()
        };
        match session.subscribe(request).await {
            Ok(sub) => {
                let history: Vec<Value> = sub
                    .publications
                    .iter()
                    .rev()
                    .filter_map(|p| message_of(&p.payload))
                    .collect();
                let step = reply(
                    session,
                    id,
                    command,
                    json!({"success": true, "history": history}),
                );
                // After the reply: what was published meanwhile.
                drop(sub);
                step
            }
            Err(_) => reply(
                session,
                id,
                command,
                json!({"success": false, "history": []}),
            ),
        }
    }

    /// A room is a Plexus channel: joining subscribes to it (with presence where its namespace
    /// tracks presence). `present` lists the connections in its presence.
    async fn join_room(&mut self, session: &mut Session, p: &Value) -> Value {
        let room = str_field(p, "roomName").unwrap_or_default().to_owned();
        if self.observed.remove(&room) {
            session.unobserve(&room).await;
        }
        if !session.connection().is_subscribed(&room) {
            let request = SubscribeRequest {
                channel: room.clone(),
                ..SubscribeRequest::default()
            };
            match session.subscribe(request).await {
                Ok(sub) => drop(sub),
                Err(e) => return json!({"success": false, "present": [], "error": e.message}),
            }
        }
        let present: Vec<String> = session
            .presence(&room)
            .await
            .map(|m| m.iter().map(|e| e.conn.to_string()).collect())
            .unwrap_or_default();
        json!({"success": true, "present": present})
    }

    /// Mesh lets any connection read any connection's metadata; Plexus only when
    /// [`super::MeshConfig::metadata_readable`] says so (a connection may always read its own).
    async fn connection_metadata(&mut self, session: &mut Session, p: &Value) -> Value {
        let Some(conn) = str_field(p, "connectionId").and_then(|c| c.parse::<ConnId>().ok()) else {
            return json!({"metadata": null});
        };
        if conn == session.id() {
            return json!({"metadata": Value::Object(session.connection().metadata())});
        }
        if !self.service.config.metadata_readable {
            return error_payload(
                "mesh/get-connection-metadata",
                &Error::permission_denied(
                    "connection metadata is readable by its own connection only",
                ),
            );
        }
        let metadata = session
            .node()
            .connection_metadata(conn)
            .await
            .ok()
            .flatten();
        json!({"metadata": metadata.map(Value::Object)})
    }

    async fn subscribe_record(&mut self, session: &mut Session, id: u64, p: &Value) -> Step {
        let command = "mesh/subscribe-record";
        let record = str_field(p, "recordId").unwrap_or_default().to_owned();
        let mode = match str_field(p, "mode") {
            Some("patch") => RecordMode::Patch,
            _ => RecordMode::Full,
        };
        match session.subscribe_record(&record, mode).await {
            Ok(sub) => {
                let (value, version) = sub
                    .record
                    .as_ref()
                    .map_or((Value::Null, 0), |r| (r.value.clone(), r.version));
                let step = reply(
                    session,
                    id,
                    command,
                    json!({"success": true, "record": value, "version": version}),
                );
                drop(sub);
                step
            }
            Err(_) => reply(
                session,
                id,
                command,
                json!({"success": false, "record": null, "version": 0}),
            ),
        }
    }

    /// `mesh/publish-record-update {recordId, newValue, expectedVersion?}` and Plexus's
    /// `mesh/patch-record {recordId, patch, expectedVersion?}`: `{success: true, version}`.
    async fn write_record(&mut self, session: &mut Session, command: &str, p: &Value) -> Value {
        let record = str_field(p, "recordId").unwrap_or_default().to_owned();
        let expect = p.get("expectedVersion").and_then(Value::as_u64);
        let write = if command == "mesh/patch-record" {
            RecordWrite::Patch(p.get("patch").cloned().unwrap_or(Value::Null))
        } else {
            RecordWrite::Set(p.get("newValue").cloned().unwrap_or(Value::Null))
        };
        match session.write_record(&record, write, expect).await {
            Ok(written) => json!({"success": true, "version": written.version}),
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::PERMISSION_DENIED | ErrorCode::UNAUTHORIZED
                ) =>
            {
                wire::error_payload(
                    &format!("Record \"{record}\" is not writable by this connection."),
                    "ESERVER",
                    "Error",
                )
            }
            Err(e) => {
                let mut payload = error_payload(command, &e);
                if e.code == ErrorCode::VERSION_CONFLICT {
                    payload["code"] = json!("ECONFLICT");
                    payload["version"] = e
                        .data
                        .as_ref()
                        .and_then(value_of)
                        .and_then(|d| d.get("version").cloned())
                        .unwrap_or(Value::Null);
                }
                payload
            }
        }
    }

    /// Watches a room's presence: `{success, present, states}`; then its updates. A member of
    /// the room already receives them.
    async fn subscribe_presence(&mut self, session: &mut Session, p: &Value) -> Value {
        let room = str_field(p, "roomName").unwrap_or_default().to_owned();
        let tracked = session
            .node()
            .channels()
            .namespace(&room)
            .is_some_and(|ns| ns.presence);
        let failed = json!({"success": false, "present": [], "states": {}});
        if !tracked {
            return failed;
        }
        if !session.connection().is_subscribed(&room) {
            if session.observe(&room).await.is_err() {
                return failed;
            }
            self.observed.insert(room.clone());
        }
        let members = session.presence(&room).await.unwrap_or_default();
        let mut states = Map::new();
        for m in &members {
            if let Some(state) = m.state.as_ref().and_then(value_of) {
                states.insert(m.conn.to_string(), state);
            }
        }
        let present: Vec<String> = members.iter().map(|m| m.conn.to_string()).collect();
        json!({"success": true, "present": present, "states": states})
    }
}
