//! One chat-service socket: its login, its commands (`rpc-client-requests.js`) on the core, its
//! notifications, and its disconnect. Commands run in order, each through chat-service's steps:
//! the argument checks, the message checker, the `before` hook, the command, the `after` hook.

use super::ChatService;
use super::format::payload_value;
use super::hooks::{ConnectInfo, DisconnectInfo, ExecInfo, JoinInfo};
use super::rooms;
use crate::socketio::pack;
use plexus_core::rooms::Reason;
use plexus_core::session::SubscribeRequest;
use plexus_core::{
    ConnId, Connection, Emit, Error, ErrorCode, Exclude, Identity, Node, Payload, Session,
};
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
    if let Some((reason, args)) = Reason::of(&e)
        && let Some(kind) = ErrorKind::parse(reason.as_str())
    {
        return ChatError::new(kind, args.into_iter().map(Value::String).collect());
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

    /// The socket a server-side command runs as: a user (and a socket id), no connection.
    pub(crate) fn server(
        service: Arc<ChatService>,
        id: String,
        user: Option<Arc<str>>,
    ) -> ChatSocket {
        ChatSocket {
            service,
            id,
            query: Vec::new(),
            user,
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
        self.publish_rooms(&node, session.id(), &[]).await?;
        let nconnected = self.user_sockets(&node).await?.len();
        self.echo(
            &node,
            Some(session.id()),
            "socketConnectEcho",
            json!([self.id, nconnected]),
        )
        .await;
        Ok(())
    }

    /// Writes the socket's rooms into its presence state in the user's channel.
    async fn publish_rooms(
        &self,
        node: &Node,
        conn: ConnId,
        rooms: &[String],
    ) -> Result<(), ChatError> {
        let user = self.user.as_deref().unwrap_or_default();
        let channel = self.service.config.user_channel(user);
        let state = Payload::json(&json!({"id": self.id, "rooms": rooms}))
            .map_err(|e| err(ErrorKind::InternalError, vec![json!(e.to_string())]))?;
        node.set_presence_state(conn, &channel, Some(state), None)
            .await
            .map_err(chat_error)
    }

    /// The user's sockets on every node: `(socket id, rooms)`.
    async fn user_sockets(&self, node: &Node) -> Result<Vec<(String, Vec<String>)>, ChatError> {
        let user = self.user.as_deref().unwrap_or_default();
        Ok(sockets_of(node, &self.service.config, user)
            .await?
            .into_iter()
            .map(|(_, id, rooms)| (id, rooms))
            .collect())
    }

    /// The rooms this socket is in (its subscriptions to room channels).
    fn joined_rooms(&self, conn: &Connection) -> Vec<String> {
        let mut rooms: Vec<String> = conn
            .subscriptions()
            .into_iter()
            .filter_map(|c| self.service.config.room_of(&c).map(str::to_owned))
            .collect();
        rooms.sort();
        rooms
    }

    /// An event for the user's sockets (chat-service's echo channel), except `except` — the
    /// socket that caused it; a server-side call tells every socket.
    async fn echo(&self, node: &Node, except: Option<ConnId>, name: &str, args: Value) {
        let Some(user) = &self.user else { return };
        let Ok(payload) = Payload::json(&args) else {
            return;
        };
        let _ = node
            .send_to_user(user, Emit::event(name, payload), except.map(Exclude::conn))
            .await;
    }

    /// An event for every socket of the user.
    async fn to_user(&self, node: &Node, user: &str, name: &str, args: Value) {
        let Ok(payload) = Payload::json(&args) else {
            return;
        };
        let _ = node
            .send_to_user(user, Emit::event(name, payload), None)
            .await;
    }

    /// An event for one socket (connection) only.
    async fn to_self(&self, node: &Node, conn: ConnId, name: &str, args: Value) {
        let Ok(payload) = Payload::json(&args) else {
            return;
        };
        let _ = node
            .send_to_connection(conn, Emit::event(name, payload))
            .await;
    }

    /// A notice for a room's members (no offset: message ids stay contiguous).
    async fn to_room(&self, node: &Node, room: &str, name: &str, args: Value) {
        let Ok(payload) = Payload::json(&args) else {
            return;
        };
        let channel = self.service.config.room_channel(room);
        let _ = node
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
        let conn = session.connection().clone();
        let mut ctx = Ctx {
            node: session.node().clone(),
            conn: Some(conn),
            session: Some(session),
            bypass_permissions: false,
            bypass_hooks: false,
            is_local_call: false,
        };
        let result = self.run(&mut ctx, &name, values).await;
        let Some(session) = ctx.session else { return };
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

    pub(crate) async fn run(
        &mut self,
        ctx: &mut Ctx<'_>,
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
            id: Some(self.id.clone()).filter(|id| !id.is_empty()),
            args: checked.args,
            rest_args: checked.rest,
            bypass_permissions: ctx.bypass_permissions,
            bypass_hooks: ctx.bypass_hooks,
            is_local_call: ctx.is_local_call,
            error: None,
            results: Vec::new(),
        };
        let hooks = hooks.filter(|_| !exec.bypass_hooks);
        if let Some(h) = &hooks
            && let Some(results) = h.before(&mut exec).await?
            && !results.is_empty()
        {
            return Ok(results);
        }
        match self.execute(ctx, &exec).await {
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
    async fn execute(&mut self, ctx: &mut Ctx<'_>, exec: &ExecInfo) -> Result<Value, ChatError> {
        let a = &exec.args;
        let config = self.service.config.clone();
        let config = &config;
        let node = ctx.node.clone();
        let bypass = exec.bypass_permissions;
        let except = ctx.except();
        // A server-side call without a user may only send room messages (as no one).
        let user: Arc<str> = match (&self.user, exec.command) {
            (Some(user), _) => user.clone(),
            (None, "roomMessage") if bypass => Arc::from(""),
            (None, _) => return Err(err(ErrorKind::NoLogin, vec![])),
        };
        match exec.command {
            "roomJoin" | "roomLeave" if ctx.conn.is_none() => {
                Err(err(ErrorKind::NoSocket, vec![json!(exec.command)]))
            }
            "roomJoin" => {
                let room = string_arg(a, 0);
                self.join(ctx, &user, &room, bypass).await.map(|n| json!(n))
            }
            "roomLeave" => {
                let room = string_arg(a, 0);
                self.leave(ctx, &user, &room).await.map(|n| json!(n))
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
                let author = Some(&*user).filter(|u| !u.is_empty());
                let message = process_message(a.get(1).cloned(), author, now_ms());
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
                let before = self.sockets_in(ctx, &node, &room).await;
                let members = rooms::delete(&node, config, &room, &user, bypass).await?;
                self.removed(&node, &room, &members, before).await;
                Ok(Value::Null)
            }
            "roomAddToList" | "roomRemoveFromList" => {
                let room = string_arg(a, 0);
                let list = string_arg(a, 1);
                let names = names_arg(a, 2);
                let add = exec.command == "roomAddToList";
                let state = rooms::state(&node, config, &room).await?;
                let before = self.sockets_in(ctx, &node, &room).await;
                let removed =
                    rooms::edit_list(&node, config, &room, &user, &list, &names, add, bypass)
                        .await?;
                if state.notify_access_lists {
                    let name = if add {
                        "roomAccessListAdded"
                    } else {
                        "roomAccessListRemoved"
                    };
                    self.to_room(&node, &room, name, json!([room, list, names]))
                        .await;
                }
                self.removed(&node, &room, &removed, before).await;
                Ok(Value::Null)
            }
            "roomSetWhitelistMode" => {
                let room = string_arg(a, 0);
                let mode = a.get(1).and_then(Value::as_bool).unwrap_or(false);
                let state = rooms::state(&node, config, &room).await?;
                let before = self.sockets_in(ctx, &node, &room).await;
                let removed = rooms::set_mode(&node, config, &room, &user, mode, bypass).await?;
                if state.notify_access_lists {
                    self.to_room(&node, &room, "roomModeChanged", json!([room, mode]))
                        .await;
                }
                self.removed(&node, &room, &removed, before).await;
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
                let message = process_message(a.get(1).cloned(), Some(&user), now_ms());
                rooms::check_direct(&node, &user, &to, bypass).await?;
                if !rooms::is_online(&node, config, &to).await? {
                    return Err(err(ErrorKind::NoUserOnline, vec![json!(to)]));
                }
                self.to_user(&node, &to, "directMessage", json!([message]))
                    .await;
                self.echo(&node, except, "directMessageEcho", json!([to, message]))
                    .await;
                Ok(message)
            }
            "listOwnSockets" => {
                let sockets: Map<String, Value> = self
                    .user_sockets(&node)
                    .await?
                    .into_iter()
                    .map(|(id, rooms)| (id, json!(rooms)))
                    .collect();
                Ok(Value::Object(sockets))
            }
            "systemMessage" => {
                let data = a.first().cloned().unwrap_or(Value::Null);
                self.echo(&node, except, "systemMessage", json!([data]))
                    .await;
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
        ctx: &mut Ctx<'_>,
        user: &Arc<str>,
        room: &str,
        bypass: bool,
    ) -> Result<usize, ChatError> {
        let node = ctx.node.clone();
        let config = self.service.config.clone();
        let conn = ctx
            .conn
            .clone()
            .ok_or_else(|| err(ErrorKind::NoSocket, vec![json!("roomJoin")]))?;
        let state = rooms::state(&node, &config, room).await?;
        let channel = config.room_channel(room);
        if conn.is_subscribed(&channel) {
            // Joined already: the same answer, no notifications.
            return rooms::joined_sockets(&node, &channel, user).await;
        }
        if !bypass && !state.has_access(user) {
            return Err(err(ErrorKind::NotAllowed, vec![]));
        }
        // `onJoin` runs before the socket joins, with the count it will make, so that a refused
        // join is never seen by anyone (chat-service joins first and rolls back, after the
        // room's other sockets may have heard of it).
        if let Some(hooks) = self.service.hooks.clone().filter(|_| !ctx.bypass_hooks) {
            let info = JoinInfo {
                id: self.id.clone(),
                user: user.clone(),
                room: room.to_owned(),
                njoined: rooms::joined_sockets(&node, &channel, user).await? + 1,
            };
            hooks.on_join(&info).await?;
        }
        match ctx.session.as_deref_mut() {
            // The socket's own command: a subscribe with every check of the core.
            Some(session) => {
                let request = SubscribeRequest {
                    channel: channel.clone(),
                    token: None,
                    since: None,
                    history: None,
                };
                let subscription = session.subscribe(request).await.map_err(chat_error)?;
                drop(subscription);
            }
            // A server-side call for a socket of this node.
            None => {
                node.subscribe_connection(conn.id, &channel)
                    .await
                    .map_err(chat_error)?;
            }
        }
        let njoined = rooms::joined_sockets(&node, &channel, user).await?;
        let rooms = self.joined_rooms(&conn);
        self.publish_rooms(&node, conn.id, &rooms).await?;
        // The core tells the room's other sockets that the user joined (its presence store
        // counts atomically); chat-service tells the joining socket too.
        if njoined == 1 && state.notify_userlist {
            self.to_self(&node, conn.id, "roomUserJoined", json!([room, &**user]))
                .await;
        }
        self.echo(
            &node,
            ctx.except(),
            "roomJoinedEcho",
            json!([room, self.id, njoined]),
        )
        .await;
        Ok(njoined)
    }

    /// Leaves a room; the user's sockets still in it.
    async fn leave(
        &mut self,
        ctx: &mut Ctx<'_>,
        user: &Arc<str>,
        room: &str,
    ) -> Result<usize, ChatError> {
        let node = ctx.node.clone();
        let config = self.service.config.clone();
        let conn = ctx
            .conn
            .clone()
            .ok_or_else(|| err(ErrorKind::NoSocket, vec![json!("roomLeave")]))?;
        // A room that does not exist: `noRoom`.
        rooms::state(&node, &config, room).await?;
        let channel = config.room_channel(room);
        if !conn.is_subscribed(&channel) {
            // Not joined: nothing changes, nobody is told.
            return rooms::joined_sockets(&node, &channel, user).await;
        }
        node.unsubscribe_connection(conn.id, &channel)
            .await
            .map_err(chat_error)?;
        let njoined = rooms::joined_sockets(&node, &channel, user).await?;
        let rooms = self.joined_rooms(&conn);
        self.publish_rooms(&node, conn.id, &rooms).await?;
        self.left(&node, ctx.except(), user, room, njoined, ctx.bypass_hooks)
            .await;
        Ok(njoined)
    }

    /// What follows a socket leaving a room (a `roomLeave`, or its disconnect): the user's other
    /// sockets hear `roomLeftEcho`, `onLeave` runs. The room hears `roomUserLeft` from the core
    /// when it was the user's last socket there and the room tells its user list.
    async fn left(
        &self,
        node: &Node,
        except: Option<ConnId>,
        user: &Arc<str>,
        room: &str,
        njoined: usize,
        bypass_hooks: bool,
    ) {
        self.echo(
            node,
            except,
            "roomLeftEcho",
            json!([room, self.id, njoined]),
        )
        .await;
        if let Some(hooks) = self.service.hooks.clone().filter(|_| !bypass_hooks) {
            let info = JoinInfo {
                id: self.id.clone(),
                user: user.clone(),
                room: room.to_owned(),
                njoined,
            };
            hooks.on_leave(&info).await;
        }
    }

    /// The room's sockets before a change that may remove some (connection, user), when
    /// `onLeave` is to run for those removed; `None` otherwise or when unreadable.
    async fn sockets_in(
        &self,
        ctx: &Ctx<'_>,
        node: &Node,
        room: &str,
    ) -> Option<Vec<(ConnId, Arc<str>)>> {
        if ctx.bypass_hooks || self.service.hooks.is_none() {
            return None;
        }
        let channel = self.service.config.room_channel(room);
        let entries = node.presence(&channel).await.ok()?;
        Some(
            entries
                .into_iter()
                .filter_map(|e| Some((e.conn, e.user?)))
                .collect(),
        )
    }

    /// After users lost access to a room (the core removed every socket of theirs, on every
    /// node, told them `roomAccessRemoved` and the room `roomUserLeft`): `onLeave` for each of
    /// their sockets that was in it (`before`), with `njoined` 0, as chat-service does.
    async fn removed(
        &self,
        node: &Node,
        room: &str,
        users: &[Arc<str>],
        before: Option<Vec<(ConnId, Arc<str>)>>,
    ) {
        let (Some(hooks), Some(before)) = (self.service.hooks.clone(), before) else {
            return;
        };
        for user in users {
            let conns: Vec<ConnId> = before
                .iter()
                .filter(|(_, u)| u == user)
                .map(|(c, _)| *c)
                .collect();
            if conns.is_empty() {
                continue;
            }
            let Ok(sockets) = socket_ids(node, &self.service.config, user).await else {
                continue;
            };
            for (conn, id) in sockets {
                if conns.contains(&conn) {
                    let info = JoinInfo {
                        id,
                        user: user.clone(),
                        room: room.to_owned(),
                        njoined: 0,
                    };
                    hooks.on_leave(&info).await;
                }
            }
        }
    }

    /// The socket leaves its namespace (a DISCONNECT, or the connection ends): it leaves its
    /// rooms with their notifications, its user's other sockets are told, `onDisconnect` runs.
    pub(crate) async fn disconnect(&mut self, session: &mut Session) {
        let Some(user) = self.user.clone() else {
            return;
        };
        let node = session.node().clone();
        let config = self.service.config.clone();
        let conn = session.connection().clone();
        let rooms = self.joined_rooms(&conn);
        let mut joined_sockets = Vec::with_capacity(rooms.len());
        for room in &rooms {
            let channel = config.room_channel(room);
            let _ = node.unsubscribe_connection(conn.id, &channel).await;
            let njoined = rooms::joined_sockets(&node, &channel, &user)
                .await
                .unwrap_or(0);
            joined_sockets.push(njoined);
            self.left(&node, Some(conn.id), &user, room, njoined, false)
                .await;
        }
        let _ = node
            .unsubscribe_connection(conn.id, &config.user_channel(&user))
            .await;
        let nconnected = self.user_sockets(&node).await.map_or(0, |s| s.len());
        self.echo(
            &node,
            Some(conn.id),
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

/// Where a command runs: a socket's own command (with its session), or a server-side call
/// (`execUserCommand`) for a socket of this node or for none.
pub(crate) struct Ctx<'s> {
    pub(crate) node: Node,
    /// The socket's connection, when the command concerns a socket.
    pub(crate) conn: Option<Arc<Connection>>,
    /// Its session, when the socket sent the command itself.
    pub(crate) session: Option<&'s mut Session>,
    pub(crate) bypass_permissions: bool,
    pub(crate) bypass_hooks: bool,
    pub(crate) is_local_call: bool,
}

impl Ctx<'_> {
    /// The socket an echo skips: the one that sent the command; a server-side call tells
    /// every socket of the user (chat-service's `isLocalCall`).
    fn except(&self) -> Option<ConnId> {
        if self.is_local_call {
            None
        } else {
            self.conn.as_ref().map(|c| c.id)
        }
    }
}

/// The user's sockets as its user channel's presence records them: connection, socket id,
/// and the rooms the socket last wrote.
async fn user_sockets(
    node: &Node,
    config: &super::ChatServiceConfig,
    user: &str,
) -> Result<Vec<(ConnId, String, Vec<String>)>, ChatError> {
    let entries = node
        .presence(&config.user_channel(user))
        .await
        .map_err(chat_error)?;
    Ok(entries
        .iter()
        .filter_map(|e| {
            let state = payload_value(e.state.as_ref()?)?;
            let id = state.get("id")?.as_str()?.to_owned();
            let rooms = state
                .get("rooms")?
                .as_array()?
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
            Some((e.conn, id, rooms))
        })
        .collect())
}

/// The user's sockets: connection and socket id.
async fn socket_ids(
    node: &Node,
    config: &super::ChatServiceConfig,
    user: &str,
) -> Result<Vec<(ConnId, String)>, ChatError> {
    Ok(user_sockets(node, config, user)
        .await?
        .into_iter()
        .map(|(conn, id, _)| (conn, id))
        .collect())
}

/// The sockets of `user` on every node: `(connection, socket id, rooms)`, from the presence of
/// its user channel.
pub(crate) async fn sockets_of(
    node: &Node,
    config: &super::ChatServiceConfig,
    user: &str,
) -> Result<Vec<(ConnId, String, Vec<String>)>, ChatError> {
    let mut sockets = user_sockets(node, config, user).await?;
    // A socket the core removed from a room (access lost, room deleted) never wrote its new
    // rooms: keep only the rooms whose presence still has it.
    let mut members: std::collections::HashMap<String, Vec<ConnId>> =
        std::collections::HashMap::new();
    for (conn, _, rooms) in &mut sockets {
        let mut kept = Vec::with_capacity(rooms.len());
        for room in rooms.drain(..) {
            if !members.contains_key(&room) {
                let entries = node
                    .presence(&config.room_channel(&room))
                    .await
                    .map_err(chat_error)?;
                members.insert(room.clone(), entries.iter().map(|e| e.conn).collect());
            }
            if members[&room].contains(conn) {
                kept.push(room);
            }
        }
        *rooms = kept;
    }
    Ok(sockets)
}

/// A message as chat-service stores it: the client's `id` and `timestamp` dropped, `author`
/// set, a new `timestamp`.
fn process_message(message: Option<Value>, author: Option<&str>, now: u64) -> Value {
    let mut message = match message {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    message.remove("id");
    message.insert("timestamp".into(), json!(now));
    if let Some(author) = author {
        message.insert("author".into(), json!(author));
    }
    Value::Object(message)
}
