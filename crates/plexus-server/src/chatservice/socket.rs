//! One chat-service socket: its login, its commands (`rpc-client-requests.js`) on the core, its
//! notifications, and its disconnect. Commands run in order, each through chat-service's steps:
//! the argument checks, the message checker, the `before` hook, the command, the `after` hook.

use super::ChatService;
use super::format::payload_value;
use super::hooks::{ConnectInfo, DisconnectInfo, ExecInfo, JoinInfo};
use super::rooms;
use crate::socketio::pack;
use plexus_core::session::SubscribeRequest;
use plexus_core::{Emit, Error, ErrorCode, Exclude, Identity, Payload, Session};
use plexus_protocol::chatservice::{
    ChatError, ErrorKind, arg_to_value, check_args, command, valid_name, value_to_arg,
};
use plexus_protocol::socketio::{Arg, Packet};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A socket of the service, once connected to its namespace.
pub(crate) struct ChatSocket {
    service: Arc<ChatService>,
    /// The socket id clients know (`/chat-service#<sid>` for socket.io-client 2).
    id: String,
    query: Vec<(String, String)>,
    /// The logged-in user.
    user: Option<Arc<str>>,
}

type CommandResult = Result<Vec<Value>, ChatError>;

fn err(kind: ErrorKind, args: Vec<Value>) -> ChatError {
    ChatError::new(kind, args)
}

/// A core error as chat-service's: a reason the core gives (`{"reason", "args"}` in the
/// error's data), a refusal as `notAllowed`, anything else as `internalError`.
pub(super) fn chat_error(e: Error) -> ChatError {
    if let Some(data) = e.data.as_ref().and_then(payload_value)
        && let Some(kind) = data
            .get("reason")
            .and_then(Value::as_str)
            .and_then(ErrorKind::parse)
    {
        let args = data
            .get("args")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        return ChatError::new(kind, args);
    }
    match e.code {
        ErrorCode::PERMISSION_DENIED | ErrorCode::UNAUTHORIZED => {
            err(ErrorKind::NotAllowed, vec![])
        }
        _ => err(ErrorKind::InternalError, vec![json!(e.message)]),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn check_name(name: &str) -> Result<(), ChatError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(err(ErrorKind::InvalidName, vec![json!(name)]))
    }
}

fn string_arg(args: &[Value], i: usize) -> String {
    args.get(i)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn names_arg(args: &[Value], i: usize) -> Vec<String> {
    args.get(i)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl ChatSocket {
    pub(crate) fn new(
        service: Arc<ChatService>,
        id: String,
        query: Vec<(String, String)>,
    ) -> ChatSocket {
        ChatSocket {
            service,
            id,
            query,
            user: None,
        }
    }

    fn nsp(&self) -> &str {
        &self.service.config.namespace
    }

    fn raw_errors(&self) -> bool {
        self.service.config.use_raw_error_objects
    }

    fn emit(&self, session: &Session, name: &str, args: Vec<Arg>) {
        session
            .connection()
            .send_frame(self.service.format.event(name, args));
    }

    /// Logs the socket in after its namespace CONNECT: the `onConnect` hook, else the login
    /// query parameter (development mode), else the connection's identity. Sends
    /// `loginConfirmed(user, {id, ...})`, or `loginRejected(error)` and the namespace's
    /// DISCONNECT; returns whether the socket is logged in.
    pub(crate) async fn login(&mut self, session: &mut Session) -> bool {
        match self.find_login(session).await {
            Ok((user, mut auth_data)) => {
                self.user = Some(user.clone());
                if let Err(e) = self.register(session, &user).await {
                    self.reject(session, &e);
                    return false;
                }
                let data = match auth_data.as_object_mut() {
                    Some(o) => {
                        o.insert("id".into(), json!(self.id));
                        auth_data
                    }
                    None => json!({"id": self.id}),
                };
                self.emit(
                    session,
                    "loginConfirmed",
                    vec![Arg::from(json!(&*user)), value_to_arg(data)],
                );
                true
            }
            Err(e) => {
                self.reject(session, &e);
                false
            }
        }
    }

    fn reject(&mut self, session: &Session, e: &ChatError) {
        self.user = None;
        self.emit(
            session,
            "loginRejected",
            vec![Arg::from(e.to_value(self.raw_errors()))],
        );
        session
            .connection()
            .send_frame(pack(&Packet::disconnect(self.nsp())));
    }

    async fn find_login(&self, session: &mut Session) -> Result<(Arc<str>, Value), ChatError> {
        let identity_user = session.connection().identity().map(|i| i.user.clone());
        if let Some(hooks) = &self.service.hooks {
            let info = ConnectInfo {
                id: self.id.clone(),
                query: self.query.clone(),
                user: identity_user.clone(),
            };
            if let Some((user, data)) = hooks.on_connect(&info).await? {
                check_name(&user)?;
                let user: Arc<str> = Arc::from(user);
                self.establish(session, &user)?;
                return Ok((user, data));
            }
        }
        if let Some(user) = identity_user {
            check_name(&user)?;
            return Ok((user, json!({})));
        }
        if let Some(key) = &self.service.config.login_query
            && let Some((_, user)) = self.query.iter().rev().find(|(k, _)| k == key)
        {
            check_name(user)?;
            let user: Arc<str> = Arc::from(user.as_str());
            self.establish(session, &user)?;
            return Ok((user, json!({})));
        }
        Err(err(ErrorKind::NoLogin, vec![]))
    }

    /// Makes `user` the connection's identity, unless it has one already (then it must be the
    /// same user).
    fn establish(&self, session: &mut Session, user: &Arc<str>) -> Result<(), ChatError> {
        match session.connection().identity() {
            Some(i) if i.user == *user => Ok(()),
            Some(_) => Err(err(ErrorKind::NotAllowed, vec![])),
            None => session
                .establish(Identity::new(user.clone()))
                .map_err(chat_error),
        }
    }

    /// Registers the socket: the user exists from now on, the socket is in its user's
    /// channel (whose presence lists the user's sockets and their rooms), and the user's
    /// other sockets hear `socketConnectEcho(id, nconnected)`.
    async fn register(&self, session: &mut Session, user: &Arc<str>) -> Result<(), ChatError> {
        let node = session.node().clone();
        rooms::ensure_user(&node, user).await?;
        let channel = self.service.config.user_channel(user);
        node.subscribe_connection(session.id(), &channel)
            .await
            .map_err(chat_error)?;
        self.publish_rooms(session, &[]).await?;
        let nconnected = self.user_sockets(session).await?.len();
        self.echo(session, "socketConnectEcho", json!([self.id, nconnected]))
            .await;
        Ok(())
    }

    /// Writes the socket's rooms into its presence state in the user's channel.
    async fn publish_rooms(&self, session: &Session, rooms: &[String]) -> Result<(), ChatError> {
        let user = self.user.as_deref().unwrap_or_default();
        let channel = self.service.config.user_channel(user);
        let state = Payload::json(&json!({"id": self.id, "rooms": rooms}))
            .map_err(|e| err(ErrorKind::InternalError, vec![json!(e.to_string())]))?;
        session
            .node()
            .set_presence_state(session.id(), &channel, Some(state), None)
            .await
            .map_err(chat_error)
    }

    /// The user's sockets on every node: `(socket id, rooms)`.
    async fn user_sockets(
        &self,
        session: &Session,
    ) -> Result<Vec<(String, Vec<String>)>, ChatError> {
        let user = self.user.as_deref().unwrap_or_default();
        let channel = self.service.config.user_channel(user);
        let entries = session
            .node()
            .presence(&channel)
            .await
            .map_err(chat_error)?;
        Ok(entries
            .iter()
            .filter_map(|e| payload_value(e.state.as_ref()?))
            .filter_map(|state| {
                let id = state.get("id")?.as_str()?.to_owned();
                let rooms = state
                    .get("rooms")?
                    .as_array()?
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect();
                Some((id, rooms))
            })
            .collect())
    }

    /// The rooms this socket is in (its subscriptions to room channels).
    fn joined_rooms(&self, session: &Session) -> Vec<String> {
        let mut rooms: Vec<String> = session
            .connection()
            .subscriptions()
            .into_iter()
            .filter_map(|c| self.service.config.room_of(&c).map(str::to_owned))
            .collect();
        rooms.sort();
        rooms
    }

    /// An event for the user's other sockets (chat-service's echo channel).
    async fn echo(&self, session: &Session, name: &str, args: Value) {
        let Some(user) = &self.user else { return };
        let Ok(payload) = Payload::json(&args) else {
            return;
        };
        let _ = session
            .node()
            .send_to_user(
                user,
                Emit::event(name, payload),
                Some(Exclude::conn(session.id())),
            )
            .await;
    }

    /// An event for every socket of the user.
    async fn to_user(&self, session: &Session, user: &str, name: &str, args: Value) {
        let Ok(payload) = Payload::json(&args) else {
            return;
        };
        let _ = session
            .node()
            .send_to_user(user, Emit::event(name, payload), None)
            .await;
    }

    /// A notice for a room's members (no offset: message ids stay contiguous).
    async fn to_room(&self, session: &Session, room: &str, name: &str, args: Value) {
        let Ok(payload) = Payload::json(&args) else {
            return;
        };
        let channel = self.service.config.room_channel(room);
        let _ = session
            .node()
            .notify(&channel, Emit::event(name, payload), None)
            .await;
    }

    /// Runs a command from the socket and sends the ack when the client asked for one:
    /// `[null, ...results]` or `[error, null]`.
    pub(crate) async fn command(
        &mut self,
        session: &mut Session,
        ack: Option<u64>,
        name: String,
        args: Vec<Arg>,
    ) {
        let values: Vec<Value> = args.into_iter().map(arg_to_value).collect();
        let result = self.run(session, &name, values).await;
        let Some(ack) = ack else { return };
        let args = match result {
            Ok(mut results) => {
                if results.is_empty() {
                    results.push(Value::Null);
                }
                let mut args = vec![Arg::from(Value::Null)];
                args.extend(results.into_iter().map(value_to_arg));
                args
            }
            Err(e) => vec![
                Arg::from(e.to_value(self.raw_errors())),
                Arg::from(Value::Null),
            ],
        };
        session
            .connection()
            .send_frame(pack(&Packet::ack(self.nsp(), ack, args)));
    }

    async fn run(
        &mut self,
        session: &mut Session,
        name: &str,
        values: Vec<Value>,
    ) -> CommandResult {
        let Some(spec) = command(name) else {
            // chat-service binds no handler and never answers; an answer is better.
            return Err(err(ErrorKind::NoCommand, vec![json!(name)]));
        };
        let hooks = self.service.hooks.clone();
        let custom = hooks.as_ref().is_some_and(|h| match spec.name {
            "roomMessage" => h.room_messages_checker(),
            "directMessage" => h.direct_messages_checker(),
            _ => false,
        });
        let checked = check_args(spec, values, custom)?;
        if custom && let Some(h) = &hooks {
            let message = checked.args.get(1).unwrap_or(&Value::Null);
            match spec.name {
                "roomMessage" => h.check_room_message(message).await?,
                _ => h.check_direct_message(message).await?,
            }
        }
        let mut exec = ExecInfo {
            command: spec.name,
            user: self.user.clone(),
            id: Some(self.id.clone()),
            args: checked.args,
            rest_args: checked.rest,
            bypass_permissions: false,
            bypass_hooks: false,
            is_local_call: false,
            error: None,
            results: Vec::new(),
        };
        if let Some(h) = &hooks
            && let Some(results) = h.before(&mut exec).await?
            && !results.is_empty()
        {
            return Ok(results);
        }
        match self.execute(session, &exec).await {
            Ok(value) => exec.results = vec![value],
            Err(e) => exec.error = Some(e),
        }
        if let Some(h) = &hooks
            && let Some(results) = h.after(&mut exec).await?
            && !results.is_empty()
        {
            return Ok(results);
        }
        match exec.error {
            Some(e) => Err(e),
            None => Ok(exec.results),
        }
    }

    /// One command on the core; its result.
    async fn execute(
        &mut self,
        session: &mut Session,
        exec: &ExecInfo,
    ) -> Result<Value, ChatError> {
        let user: Arc<str> = self
            .user
            .clone()
            .ok_or_else(|| err(ErrorKind::NoLogin, vec![]))?;
        let a = &exec.args;
        let config = &self.service.config;
        let node = session.node().clone();
        let bypass = exec.bypass_permissions;
        match exec.command {
            "roomJoin" => {
                let room = string_arg(a, 0);
                self.join(session, &user, &room).await.map(|n| json!(n))
            }
            "roomLeave" => {
                let room = string_arg(a, 0);
                self.leave(session, &user, &room).await.map(|n| json!(n))
            }
            "roomMessage" => {
                let room = string_arg(a, 0);
                let state = rooms::state(&node, config, &room).await?;
                let channel = config.room_channel(&room);
                if !bypass && !rooms::is_member(&node, &channel, &user).await? {
                    return Err(err(ErrorKind::NotJoined, vec![json!(room)]));
                }
                if !bypass && !state.has_access(&user) {
                    return Err(err(ErrorKind::NotAllowed, vec![]));
                }
                let message = process_message(a.get(1).cloned(), &user, now_ms());
                let payload = Payload::json(&message)
                    .map_err(|e| err(ErrorKind::InternalError, vec![json!(e.to_string())]))?;
                let position = node.publish(&channel, payload).await.map_err(chat_error)?;
                Ok(json!(position.offset))
            }
            "roomHistoryGet" => {
                let room = string_arg(a, 0);
                let after = a.get(1).and_then(Value::as_f64).unwrap_or(0.0) as u64;
                let mut limit = a.get(2).and_then(Value::as_f64).unwrap_or(1.0) as usize;
                if !bypass {
                    limit = limit.min(config.history_max_get_messages);
                }
                let state = self.readable(&node, &user, &room, bypass).await?;
                let messages = rooms::history(&node, config, &room, &state, after, limit).await?;
                Ok(Value::Array(messages))
            }
            "roomRecentHistory" => {
                let room = string_arg(a, 0);
                let state = self.readable(&node, &user, &room, bypass).await?;
                let messages = rooms::recent(&node, config, &room, &state).await?;
                Ok(Value::Array(messages))
            }
            "roomHistoryInfo" => {
                let room = string_arg(a, 0);
                let state = self.readable(&node, &user, &room, bypass).await?;
                rooms::history_info(&node, config, &room, &state).await
            }
            "roomUserSeen" => {
                let room = string_arg(a, 0);
                let other = string_arg(a, 1);
                self.readable(&node, &user, &room, bypass).await?;
                let (joined, seen) = node
                    .last_seen(&config.room_channel(&room), &other)
                    .await
                    .map_err(chat_error)?;
                let timestamp = seen
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64);
                let timestamp = match (joined, timestamp) {
                    (true, None) => Some(now_ms()),
                    (_, t) => t,
                };
                Ok(json!({"joined": joined, "timestamp": timestamp}))
            }
            "roomNotificationsInfo" => {
                let room = string_arg(a, 0);
                let state = self.readable(&node, &user, &room, bypass).await?;
                Ok(json!({
                    "enableUserlistUpdates": state.notify_userlist,
                    "enableAccessListsUpdates": state.notify_access_lists,
                }))
            }
            "roomGetOwner" => {
                let room = string_arg(a, 0);
                let state = self.readable(&node, &user, &room, bypass).await?;
                Ok(json!(state.owner.as_deref()))
            }
            "roomGetWhitelistMode" => {
                let room = string_arg(a, 0);
                let state = self.readable(&node, &user, &room, bypass).await?;
                Ok(json!(state.whitelist_only))
            }
            "roomGetAccessList" => {
                let room = string_arg(a, 0);
                let list = string_arg(a, 1);
                let state = self.readable(&node, &user, &room, bypass).await?;
                let names = if list == "userlist" {
                    rooms::userlist(&node, &config.room_channel(&room)).await?
                } else {
                    rooms::list(&state, &list)?
                };
                Ok(json!(names))
            }
            "roomCreate" => {
                if !config.enable_rooms_management && !bypass {
                    return Err(err(ErrorKind::NotAllowed, vec![]));
                }
                let room = string_arg(a, 0);
                check_name(&room)?;
                let whitelist_only = a.get(1).and_then(Value::as_bool).unwrap_or(false);
                rooms::create(&node, config, &room, Some(user.clone()), whitelist_only).await?;
                Ok(Value::Null)
            }
            "roomDelete" => {
                if !config.enable_rooms_management && !bypass {
                    return Err(err(ErrorKind::NotAllowed, vec![]));
                }
                let room = string_arg(a, 0);
                let state = rooms::state(&node, config, &room).await?;
                let members = rooms::delete(&node, config, &room, &user, bypass).await?;
                if state.notify_userlist {
                    for member in &members {
                        self.to_room(session, &room, "roomUserLeft", json!([room, &**member]))
                            .await;
                    }
                }
                Ok(Value::Null)
            }
            "roomAddToList" | "roomRemoveFromList" => {
                let room = string_arg(a, 0);
                let list = string_arg(a, 1);
                let names = names_arg(a, 2);
                let add = exec.command == "roomAddToList";
                let state = rooms::state(&node, config, &room).await?;
                let removed =
                    rooms::edit_list(&node, config, &room, &user, &list, &names, add, bypass)
                        .await?;
                if state.notify_access_lists {
                    let name = if add {
                        "roomAccessListAdded"
                    } else {
                        "roomAccessListRemoved"
                    };
                    self.to_room(session, &room, name, json!([room, list, names]))
                        .await;
                }
                self.removed(session, &room, &removed).await;
                Ok(Value::Null)
            }
            "roomSetWhitelistMode" => {
                let room = string_arg(a, 0);
                let mode = a.get(1).and_then(Value::as_bool).unwrap_or(false);
                let state = rooms::state(&node, config, &room).await?;
                let removed = rooms::set_mode(&node, config, &room, &user, mode, bypass).await?;
                if state.notify_access_lists {
                    self.to_room(session, &room, "roomModeChanged", json!([room, mode]))
                        .await;
                }
                self.removed(session, &room, &removed).await;
                Ok(Value::Null)
            }
            "directAddToList" | "directRemoveFromList" => {
                let list = string_arg(a, 0);
                let names = names_arg(a, 1);
                let add = exec.command == "directAddToList";
                rooms::direct_edit(&node, &user, &list, &names, add).await?;
                Ok(Value::Null)
            }
            "directGetAccessList" => {
                let list = string_arg(a, 0);
                Ok(json!(rooms::direct_list(&node, &user, &list).await?))
            }
            "directGetWhitelistMode" => Ok(json!(rooms::direct_mode(&node, &user).await?)),
            "directSetWhitelistMode" => {
                let mode = a.first().and_then(Value::as_bool).unwrap_or(false);
                rooms::direct_set_mode(&node, &user, mode).await?;
                Ok(Value::Null)
            }
            "directMessage" => {
                if !config.enable_direct_messages {
                    return Err(err(ErrorKind::NotAllowed, vec![]));
                }
                let to = string_arg(a, 0);
                if *to == *user {
                    return Err(err(ErrorKind::NotAllowed, vec![]));
                }
                let message = process_message(a.get(1).cloned(), &user, now_ms());
                rooms::check_direct(&node, &user, &to, bypass).await?;
                if !rooms::is_online(&node, config, &to).await? {
                    return Err(err(ErrorKind::NoUserOnline, vec![json!(to)]));
                }
                self.to_user(session, &to, "directMessage", json!([message]))
                    .await;
                self.echo(session, "directMessageEcho", json!([to, message]))
                    .await;
                Ok(message)
            }
            "listOwnSockets" => {
                let sockets: Map<String, Value> = self
                    .user_sockets(session)
                    .await?
                    .into_iter()
                    .map(|(id, rooms)| (id, json!(rooms)))
                    .collect();
                Ok(Value::Object(sockets))
            }
            "systemMessage" => {
                let data = a.first().cloned().unwrap_or(Value::Null);
                self.echo(session, "systemMessage", json!([data])).await;
                Ok(Value::Null)
            }
            other => Err(err(ErrorKind::NoCommand, vec![json!(other)])),
        }
    }

    /// The room's state, when `user` may read it: a member, an admin, or bypass.
    async fn readable(
        &self,
        node: &plexus_core::Node,
        user: &str,
        room: &str,
        bypass: bool,
    ) -> Result<rooms::RoomState, ChatError> {
        let state = rooms::state(node, &self.service.config, room).await?;
        if bypass || state.is_admin(user) {
            return Ok(state);
        }
        let channel = self.service.config.room_channel(room);
        if rooms::is_member(node, &channel, user).await? {
            Ok(state)
        } else {
            Err(err(ErrorKind::NotJoined, vec![json!(room)]))
        }
    }

    /// Joins the socket to a room; the user's sockets in it after.
    async fn join(
        &mut self,
        session: &mut Session,
        user: &Arc<str>,
        room: &str,
    ) -> Result<usize, ChatError> {
        let node = session.node().clone();
        let config = &self.service.config;
        let state = rooms::state(&node, &self.service.config, room).await?;
        let channel = config.room_channel(room);
        if session.connection().is_subscribed(&channel) {
            // Joined already: the same answer, no notifications.
            return rooms::joined_sockets(&node, &channel, user).await;
        }
        if !state.has_access(user) {
            return Err(err(ErrorKind::NotAllowed, vec![]));
        }
        let request = SubscribeRequest {
            channel: channel.clone(),
            token: None,
            since: None,
            history: None,
        };
        let subscription = session.subscribe(request).await.map_err(chat_error)?;
        drop(subscription);
        let njoined = rooms::joined_sockets(&node, &channel, user).await?;
        if let Some(hooks) = &self.service.hooks {
            let info = JoinInfo {
                id: self.id.clone(),
                user: user.clone(),
                room: room.to_owned(),
                njoined,
            };
            if let Err(e) = hooks.on_join(&info).await {
                // A refused join is rolled back.
                let _ = session.unsubscribe(&channel).await;
                return Err(e);
            }
        }
        let rooms = self.joined_rooms(session);
        self.publish_rooms(session, &rooms).await?;
        if njoined == 1 && state.notify_userlist {
            self.to_room(session, room, "roomUserJoined", json!([room, &**user]))
                .await;
        }
        self.echo(session, "roomJoinedEcho", json!([room, self.id, njoined]))
            .await;
        Ok(njoined)
    }

    /// Leaves a room; the user's sockets still in it.
    async fn leave(
        &mut self,
        session: &mut Session,
        user: &Arc<str>,
        room: &str,
    ) -> Result<usize, ChatError> {
        let node = session.node().clone();
        let state = rooms::state(&node, &self.service.config, room).await?;
        let channel = self.service.config.room_channel(room);
        if !session.connection().is_subscribed(&channel) {
            // Not joined: nothing changes, nobody is told.
            return rooms::joined_sockets(&node, &channel, user).await;
        }
        session.unsubscribe(&channel).await.map_err(chat_error)?;
        let njoined = rooms::joined_sockets(&node, &channel, user).await?;
        let rooms = self.joined_rooms(session);
        self.publish_rooms(session, &rooms).await?;
        self.echo(session, "roomLeftEcho", json!([room, self.id, njoined]))
            .await;
        if njoined == 0 && state.notify_userlist {
            self.to_room(session, room, "roomUserLeft", json!([room, &**user]))
                .await;
        }
        if let Some(hooks) = &self.service.hooks {
            let info = JoinInfo {
                id: self.id.clone(),
                user: user.clone(),
                room: room.to_owned(),
                njoined,
            };
            hooks.on_leave(&info).await;
        }
        Ok(njoined)
    }

    /// After users lost access to a room (the core removed their sockets): `roomUserLeft` for
    /// each when the room tells its user list.
    async fn removed(&self, session: &Session, room: &str, users: &[Arc<str>]) {
        let node = session.node().clone();
        let Ok(state) = rooms::state(&node, &self.service.config, room).await else {
            return;
        };
        if !state.notify_userlist {
            return;
        }
        for user in users {
            self.to_room(session, room, "roomUserLeft", json!([room, &**user]))
                .await;
        }
    }

    /// The socket leaves its namespace (a DISCONNECT, or the connection ends): it leaves its
    /// rooms with their notifications, its user's other sockets are told, `onDisconnect` runs.
    pub(crate) async fn disconnect(&mut self, session: &mut Session) {
        let Some(user) = self.user.take() else { return };
        self.user = Some(user.clone());
        let node = session.node().clone();
        let config = self.service.config.clone();
        let rooms = self.joined_rooms(session);
        let mut joined_sockets = Vec::with_capacity(rooms.len());
        for room in &rooms {
            let channel = config.room_channel(room);
            let _ = session.unsubscribe(&channel).await;
            let njoined = rooms::joined_sockets(&node, &channel, &user)
                .await
                .unwrap_or(0);
            joined_sockets.push(njoined);
            if let Some(hooks) = &self.service.hooks {
                let info = JoinInfo {
                    id: self.id.clone(),
                    user: user.clone(),
                    room: room.clone(),
                    njoined,
                };
                hooks.on_leave(&info).await;
            }
            self.echo(session, "roomLeftEcho", json!([room, self.id, njoined]))
                .await;
            if njoined == 0
                && let Ok(state) = rooms::state(&node, &self.service.config, room).await
                && state.notify_userlist
            {
                self.to_room(session, room, "roomUserLeft", json!([room, &*user]))
                    .await;
            }
        }
        let _ = session.unsubscribe(&config.user_channel(&user)).await;
        let _ = node
            .unsubscribe_connection(session.id(), &config.user_channel(&user))
            .await;
        let nconnected = self.user_sockets(session).await.map_or(0, |s| s.len());
        self.echo(
            session,
            "socketDisconnectEcho",
            json!([self.id, nconnected]),
        )
        .await;
        if let Some(hooks) = &self.service.hooks {
            let info = DisconnectInfo {
                id: self.id.clone(),
                user: user.clone(),
                nconnected,
                rooms_removed: rooms,
                joined_sockets,
            };
            hooks.on_disconnect(&info).await;
        }
        self.user = None;
    }
}

/// A message as chat-service stores it: the client's `id` and `timestamp` dropped, `author`
/// set, a new `timestamp`.
fn process_message(message: Option<Value>, author: &str, now: u64) -> Value {
    let mut message = match message {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    message.remove("id");
    message.insert("timestamp".into(), json!(now));
    message.insert("author".into(), json!(author));
    Value::Object(message)
}
