//! Socket.IO protocols 4 and 5 as a [`Dialect`] of the shared connection loop: namespaces,
//! events with acknowledgements as Plexus commands, the built-in events, and refusals as error
//! acknowledgements (`docs/socketio.md`).

use super::SocketIoConfig;
use super::format::{pack, payload_arg, unpack};
use crate::chatservice::{ChatService, ChatSocket};
use crate::conn::{Close, Dialect, Incoming, Replied, Step};
use bytes::Bytes;
use plexus_core::session::{ConnectRequest, SubscribeRequest};
use plexus_core::{CloseCode, Emit, Error, ErrorCode, Payload, Publication, Session};
use plexus_protocol::socketio::{Arg, Decoder, Limits, Packet, PacketType, Version};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio_websockets::Message;

/// A decoded Socket.IO request.
pub(crate) enum Request {
    /// `CONNECT` to a namespace, with the v5 `auth` payload.
    Connect { nsp: String, auth: Option<Value> },
    /// `DISCONNECT` from a namespace.
    Disconnect { nsp: String },
    /// An event: its name, its arguments, and the ack id when the client waits for an answer.
    Event {
        nsp: String,
        id: Option<u64>,
        name: String,
        args: Vec<Arg>,
    },
}

/// One Engine.IO connection's Socket.IO state.
pub(crate) struct SocketIo {
    version: Version,
    config: Arc<SocketIoConfig>,
    decoder: Decoder,
    /// Namespaces this connection joined.
    namespaces: BTreeSet<String>,
    /// The v2 `token` query parameter.
    query_token: Option<String>,
    /// `connectTimeout`: when a connection that has joined no namespace is closed (once).
    connect_deadline: Option<std::time::Instant>,
    /// The handshake: its Engine.IO `sid` and query (chat-service's socket ids and login).
    sid: String,
    query: Vec<(String, String)>,
    /// chat-service, when the server serves it, and this connection's socket of it.
    chat: Option<Arc<ChatService>>,
    chat_socket: Option<ChatSocket>,
}

impl SocketIo {
    pub(crate) fn new(
        version: Version,
        config: Arc<SocketIoConfig>,
        sid: String,
        query: Vec<(String, String)>,
        chat: Option<Arc<ChatService>>,
    ) -> SocketIo {
        let query_token = query
            .iter()
            .rev()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.clone());
        let limits = Limits {
            max_attachments: config.max_attachments,
            max_depth: 128,
            max_packet_bytes: config.max_payload_bytes,
        };
        SocketIo {
            version,
            decoder: Decoder::new(version, limits),
            connect_deadline: Some(std::time::Instant::now() + config.connect_timeout),
            config,
            namespaces: BTreeSet::new(),
            query_token,
            sid,
            // Only chat-service logs in from the query: other connections keep none of it.
            query: if chat.is_some() { query } else { Vec::new() },
            chat,
            chat_socket: None,
        }
    }

    fn is_chat(&self, nsp: &str) -> bool {
        self.chat
            .as_ref()
            .is_some_and(|c| c.config().namespace == nsp)
    }
}

/// An error as `{code, message, data?}`.
fn error_value(error: &Error) -> Value {
    let mut value = json!({"code": error.code.0, "message": error.message});
    if let Some(data) = error.data.as_ref().and_then(|d| d.as_json_str())
        && let Ok(data) = serde_json::from_str::<Value>(data)
    {
        value["data"] = data;
    }
    value
}

/// The answer to a request: an ack when the client asked for one, else an error event for a
/// failure, else nothing.
fn answer(
    nsp: &str,
    id: Option<u64>,
    event: &str,
    result: Result<Vec<Arg>, &Error>,
) -> Option<Bytes> {
    match (id, result) {
        (Some(id), Ok(mut args)) => {
            args.insert(0, Arg::from(Value::Null));
            Some(pack(&Packet::ack(nsp, id, args)))
        }
        (Some(id), Err(e)) => Some(pack(&Packet::ack(nsp, id, vec![Arg::from(error_value(e))]))),
        (None, Ok(_)) => None,
        (None, Err(e)) => {
            let mut value = error_value(e);
            value["event"] = json!(event);
            Some(pack(&Packet::event(
                nsp,
                None,
                vec![Arg::from(json!("plexus:error")), Arg::from(value)],
            )))
        }
    }
}

fn publication_json(p: &Publication) -> Arg {
    let mut fields = vec![
        ("channel".into(), Arg::from(json!(&*p.channel))),
        ("offset".into(), Arg::from(json!(p.offset))),
        ("epoch".into(), Arg::from(json!(&*p.epoch))),
        ("data".into(), payload_arg(&p.payload)),
    ];
    if let Some(event) = &p.event {
        fields.push(("event".into(), Arg::from(json!(&**event))));
    }
    Arg::Object(fields)
}

/// The one argument of a call: the argument itself, an array of several, `null` for none.
fn call_payload(mut args: Vec<Arg>) -> Result<Payload, Error> {
    let arg = match args.len() {
        0 => return Ok(Payload::null()),
        1 => args.pop().expect("one"),
        _ => {
            // Several JSON arguments are one JSON array.
            let mut text = String::from("[");
            for (i, arg) in args.iter().enumerate() {
                let Some(raw) = arg.as_json() else {
                    return Err(Error::bad_request(
                        "binary data among several arguments is not supported: send the Buffer as the only argument",
                    ));
                };
                if i > 0 {
                    text.push(',');
                }
                text.push_str(raw.get());
            }
            text.push(']');
            return Payload::from_json_str(&text).map_err(|e| Error::bad_request(e.to_string()));
        }
    };
    match arg {
        Arg::Json(raw) => {
            Payload::from_json_str(raw.get()).map_err(|e| Error::bad_request(e.to_string()))
        }
        Arg::Binary(bytes) => Ok(Payload::Binary(bytes)),
        Arg::Array(_) | Arg::Object(_) => Err(Error::bad_request(
            "binary data inside an object or array is not supported: send the Buffer as the argument itself",
        )),
    }
}

fn arg_json(arg: Option<&Arg>) -> Option<Value> {
    arg.and_then(Arg::as_json)
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
}

/// A channel argument: `"name"` or `{channel, …}`.
fn channel_arg(arg: Option<&Value>) -> Result<String, Error> {
    match arg {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Object(o)) => match o.get("channel") {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(Error::bad_request("`channel` must be a string")),
        },
        _ => Err(Error::bad_request(
            "the first argument must be a channel name",
        )),
    }
}

/// Query parameters kept per connection (the handshake's and protocol 4 CONNECTs').
pub(crate) const MAX_QUERY_PAIRS: usize = 64;

/// The built-in events (`docs/socketio.md`, "Built-in events").
const BUILT_IN: [&str; 6] = [
    "subscribe",
    "unsubscribe",
    "publish",
    "history",
    "presence",
    "presence_stats",
];

impl Dialect for SocketIo {
    type Request = Request;

    async fn open(&mut self, session: &mut Session) {
        // Protocol 4 (socket.io-client 2): the server connects every client to `/` at once.
        if self.version == Version::V4 {
            let token = self.query_token.clone();
            let auth = token.map(|t| json!({ "token": t }));
            let step = self
                .execute(
                    session,
                    Request::Connect {
                        nsp: "/".into(),
                        auth,
                    },
                )
                .await;
            let _ = step;
        }
    }

    fn decode(&mut self, message: &Message, out: &mut Vec<Incoming<Request>>) {
        let decoded = if message.is_text() {
            match message.as_text() {
                Some(text) => self.decoder.text(text),
                None => return,
            }
        } else {
            self.decoder
                .binary(Bytes::copy_from_slice(message.as_payload()))
        };
        let packet = match decoded {
            Ok(Some(packet)) => packet,
            Ok(None) => return,
            Err(e) => {
                out.push(Incoming::Broken((CloseCode::BAD_FRAME, e.to_string())));
                return;
            }
        };
        let nsp = packet.nsp.clone();
        match packet.kind {
            PacketType::Connect => {
                let auth = packet
                    .data
                    .as_deref()
                    .and_then(|raw| serde_json::from_str(raw.get()).ok());
                out.push(Incoming::Request(Request::Connect { nsp, auth }));
            }
            PacketType::Disconnect => out.push(Incoming::Request(Request::Disconnect { nsp })),
            PacketType::Event | PacketType::BinaryEvent => {
                let mut args = match packet.args() {
                    Ok(args) => args,
                    Err(e) => {
                        out.push(Incoming::Broken((CloseCode::BAD_FRAME, e.to_string())));
                        return;
                    }
                };
                let name = if args.is_empty() {
                    None
                } else {
                    args.remove(0).to_str()
                };
                let Some(name) = name else {
                    out.push(Incoming::Broken((
                        CloseCode::BAD_FRAME,
                        "an event needs a name".into(),
                    )));
                    return;
                };
                out.push(Incoming::Request(Request::Event {
                    nsp,
                    id: packet.id,
                    name,
                    args,
                }));
            }
            // Acks of server-to-client emits: the server does not ask for any yet.
            PacketType::Ack | PacketType::BinaryAck => {}
            PacketType::ConnectError => out.push(Incoming::Broken((
                CloseCode::BAD_FRAME,
                "CONNECT_ERROR comes from servers only".into(),
            ))),
        }
    }

    fn is_concurrent(&self, session: &Session, request: &Request) -> bool {
        match request {
            Request::Event { name, .. } if !BUILT_IN.contains(&name.as_str()) => session
                .node()
                .commands()
                .get(name)
                .is_some_and(|c| c.is_concurrent()),
            _ => false,
        }
    }

    fn refusal(&self, request: &Request, error: &Error) -> Option<Bytes> {
        match request {
            Request::Event { nsp, id, name, .. } => answer(nsp, *id, name, Err(error)),
            Request::Connect { nsp, .. } => Some(self.connect_error(nsp, error)),
            Request::Disconnect { .. } => None,
        }
    }

    async fn execute(&mut self, session: &mut Session, request: Request) -> Step {
        match request {
            Request::Connect { nsp, auth } => {
                self.connect(session, nsp, auth).await;
                Step::Done(None)
            }
            Request::Disconnect { nsp } => {
                if self.namespaces.remove(&nsp)
                    && self.is_chat(&nsp)
                    && let Some(mut socket) = self.chat_socket.take()
                {
                    socket.disconnect(session).await;
                }
                Step::Done(None)
            }
            Request::Event {
                nsp,
                id,
                name,
                args,
            } => {
                if !self.namespaces.contains(&nsp) {
                    // Socket.IO ignores packets for a namespace the socket did not join.
                    return Step::Done(None);
                }
                if self.is_chat(&nsp)
                    && let Some(socket) = self.chat_socket.as_mut()
                {
                    socket.command(session, id, name, args).await;
                    return Step::Done(None);
                }
                self.event(session, nsp, id, name, args).await
            }
        }
    }

    fn write(&mut self, frame: Bytes, out: &mut Vec<Message>) {
        unpack(frame, out);
    }

    fn flush(&mut self, _out: &mut Vec<Message>) {}

    async fn closed(&mut self, session: &mut Session) {
        if let Some(mut socket) = self.chat_socket.take() {
            socket.disconnect(session).await;
        }
    }

    /// A close that means "do not reconnect" (4500–4999, e.g. a server-side disconnect) is a
    /// DISCONNECT of every namespace first, so the client reports `"io server disconnect"` and
    /// stays away; any other close is a transport close, and the client reconnects.
    fn farewell(&mut self, code: CloseCode, out: &mut Vec<Message>) {
        if (4500..5000).contains(&code.0) {
            for nsp in &self.namespaces {
                unpack(pack(&Packet::disconnect(nsp)), out);
            }
        }
    }

    fn deadline(&self) -> Option<std::time::Instant> {
        self.connect_deadline
    }

    /// `connectTimeout` (socket.io `client.ts`): a connection in no namespace when it passes is
    /// closed, as "authentication timed out" — joining a namespace is how a Socket.IO client
    /// authenticates. The protocol 4 connection to `/` made at the handshake counts, when it was
    /// not refused.
    fn expired(&mut self) -> Option<Close> {
        self.connect_deadline = None;
        self.namespaces.is_empty().then(|| {
            (
                CloseCode::AUTH_TIMEOUT,
                "no namespace joined within connectTimeout".to_owned(),
            )
        })
    }
}

impl SocketIo {
    fn connect_error(&self, nsp: &str, error: &Error) -> Bytes {
        // Protocol 4 sends `data` instead of the message when there is one: a socket.io-client 2
        // app reads the message string, so only protocol 5 gets the code.
        let data = (self.version == Version::V5)
            .then(|| serde_json::value::to_raw_value(&json!({"code": error.code.0})).ok())
            .flatten();
        pack(&Packet::connect_error(
            self.version,
            nsp,
            &error.message,
            data,
        ))
    }

    async fn connect(&mut self, session: &mut Session, nsp: String, auth: Option<Value>) {
        let conn = session.connection().clone();
        if !self.config.allows_namespace(&nsp) {
            let e = Error::new(ErrorCode::BAD_REQUEST, "Invalid namespace");
            conn.send_frame(pack(&Packet::connect_error(
                self.version,
                &nsp,
                &e.message,
                None,
            )));
            return;
        }
        if self.namespaces.len() >= self.config.max_namespaces && !self.namespaces.contains(&nsp) {
            let e = Error::new(
                ErrorCode::LIMIT_EXCEEDED,
                "too many namespaces on one connection",
            );
            conn.send_frame(self.connect_error(&nsp, &e));
            return;
        }
        // Protocol 4 has no `auth`: a CONNECT's query (`/nsp?user=alice`) is the namespace
        // socket's handshake query (socket.io 2 merges it into `socket.handshake.query`), and
        // its `token` the connection's token.
        let auth = match (self.version, auth) {
            (Version::V4, Some(Value::Object(query))) => {
                let mut token = None;
                for (key, value) in query {
                    let Value::String(value) = value else {
                        continue;
                    };
                    if key == "token" {
                        token = Some(value.clone());
                    }
                    if self.chat.is_some() && self.query.len() < MAX_QUERY_PAIRS {
                        self.query.push((key, value));
                    }
                }
                token.map(|t| json!({ "token": t }))
            }
            (_, auth) => auth,
        };
        // The first namespace authenticates the connection; later ones reuse its identity.
        if conn.identity().is_none() {
            let token = auth
                .as_ref()
                .and_then(|a| a.get("token"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let credentials = auth
                .as_ref()
                .filter(|a| {
                    a.as_object()
                        .is_some_and(|o| o.keys().any(|k| k != "token"))
                })
                .and_then(|a| Payload::json(a).ok());
            let request = ConnectRequest {
                token,
                credentials,
                version: None,
                sync: None,
            };
            if let Err(e) = session.connect(request).await {
                conn.send_frame(self.connect_error(&nsp, &e));
                return;
            }
        }
        self.namespaces.insert(nsp.clone());
        conn.send_frame(pack(&Packet::connect(
            self.version,
            &nsp,
            &session.id().to_string(),
        )));
        session.finish_auth().await;
        if let Some(chat) = self.chat.clone().filter(|c| c.config().namespace == nsp)
            && self.chat_socket.is_none()
        {
            // socket.io-client 2 names the socket `<nsp>#<sid>`; 3 and 4 take the CONNECT's.
            let id = match self.version {
                Version::V4 => format!("{nsp}#{}", self.sid),
                Version::V5 => session.id().to_string(),
            };
            conn.switch_format(chat.format.clone());
            let mut socket = ChatSocket::new(chat, id, self.query.clone());
            if socket.login(session).await {
                session.finish_auth().await;
                self.chat_socket = Some(socket);
            } else {
                self.namespaces.remove(&nsp);
            }
        }
    }

    async fn event(
        &mut self,
        session: &mut Session,
        nsp: String,
        id: Option<u64>,
        name: String,
        args: Vec<Arg>,
    ) -> Step {
        let conn = session.connection().clone();
        let reply = |result: Result<Vec<Arg>, Error>| {
            let frame = match result {
                Ok(args) => answer(&nsp, id, &name, Ok(args)),
                Err(e) => answer(&nsp, id, &name, Err(&e)),
            };
            if let Some(frame) = frame {
                conn.send_frame(frame);
            }
            Step::Done(None)
        };
        let first = arg_json(args.first());
        // Pushes (publications, messages, presence) go to namespace `/`: rooms are joined there.
        if nsp != "/" && matches!(name.as_str(), "subscribe" | "unsubscribe") {
            return reply(Err(Error::bad_request(
                "rooms are joined in namespace `/`, where their messages arrive",
            )));
        }
        match name.as_str() {
            "subscribe" => {
                let request = match channel_arg(first.as_ref()) {
                    Ok(channel) => {
                        let options = first.as_ref().and_then(Value::as_object);
                        SubscribeRequest {
                            channel,
                            token: options
                                .and_then(|o| o.get("token"))
                                .and_then(Value::as_str)
                                .map(str::to_owned),
                            since: options.and_then(|o| o.get("since")).and_then(|s| {
                                Some((
                                    s.get("offset")?.as_u64()?,
                                    s.get("epoch")?.as_str()?.to_owned(),
                                ))
                            }),
                            history: options
                                .and_then(|o| o.get("history"))
                                .and_then(Value::as_u64)
                                .map(|h| h.min(u32::MAX as u64) as u32),
                        }
                    }
                    Err(e) => return reply(Err(e)),
                };
                match session.subscribe(request).await {
                    Ok(sub) => {
                        let mut fields = vec![
                            ("channel".to_owned(), Arg::from(json!(&*sub.channel))),
                            ("offset".to_owned(), Arg::from(json!(sub.position.offset))),
                            ("epoch".to_owned(), Arg::from(json!(&*sub.position.epoch))),
                            (
                                "publications".to_owned(),
                                Arg::Array(sub.publications.iter().map(publication_json).collect()),
                            ),
                        ];
                        if let Some(recovered) = sub.recovered {
                            fields.push(("recovered".into(), Arg::from(json!(recovered))));
                        }
                        if let Some(reason) = sub.reason {
                            fields.push(("reason".into(), Arg::from(json!(reason))));
                        }
                        let step = reply(Ok(vec![Arg::Object(fields)]));
                        // The publications held during the subscribe follow the ack.
                        drop(sub);
                        step
                    }
                    Err(e) => reply(Err(e)),
                }
            }
            "unsubscribe" => match channel_arg(first.as_ref()) {
                Ok(channel) => {
                    let result = session.unsubscribe(&channel).await;
                    reply(result.map(|()| vec![Arg::from(json!({}))]))
                }
                Err(e) => reply(Err(e)),
            },
            "publish" => {
                let channel = match channel_arg(first.as_ref()) {
                    Ok(channel) => channel,
                    Err(e) => return reply(Err(e)),
                };
                let event = match first.as_ref().and_then(|o| o.get("event")) {
                    None => None,
                    Some(Value::String(event)) => Some(Arc::<str>::from(event.as_str())),
                    Some(_) => return reply(Err(Error::bad_request("`event` must be a string"))),
                };
                let data: Vec<Arg> = args.into_iter().skip(1).take(1).collect();
                let payload = match call_payload(data) {
                    Ok(payload) => payload,
                    Err(e) => return reply(Err(e)),
                };
                let result = session.publish(&channel, Emit { event, payload }).await;
                reply(result.map(|pos| {
                    vec![Arg::from(
                        json!({"offset": pos.offset, "epoch": &*pos.epoch}),
                    )]
                }))
            }
            "history" => {
                let channel = match channel_arg(first.as_ref()) {
                    Ok(channel) => channel,
                    Err(e) => return reply(Err(e)),
                };
                let options = first.as_ref().and_then(Value::as_object);
                let since = options.and_then(|o| o.get("since")).and_then(Value::as_u64);
                let limit = options
                    .and_then(|o| o.get("limit"))
                    .and_then(Value::as_u64)
                    .map(|l| l.min(u32::MAX as u64) as u32);
                let reverse = options
                    .and_then(|o| o.get("reverse"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let result = session.history(&channel, since, limit, reverse).await;
                reply(result.map(|page| {
                    vec![Arg::Object(vec![
                        (
                            "publications".into(),
                            Arg::Array(page.publications.iter().map(publication_json).collect()),
                        ),
                        ("offset".into(), Arg::from(json!(page.position.offset))),
                        ("epoch".into(), Arg::from(json!(&*page.position.epoch))),
                    ])]
                }))
            }
            "presence" => match channel_arg(first.as_ref()) {
                Ok(channel) => {
                    let result = session.presence(&channel).await;
                    reply(result.map(|members| {
                        let members: Vec<Value> = members
                            .iter()
                            .map(|m| {
                                json!({
                                    "conn": m.conn.to_string(),
                                    "user": m.user.as_deref(),
                                    "info": m.info.as_ref().and_then(|i| i.as_json_str()).and_then(|s| serde_json::from_str::<Value>(s).ok()),
                                })
                            })
                            .collect();
                        vec![Arg::from(json!({ "members": members }))]
                    }))
                }
                Err(e) => reply(Err(e)),
            },
            "presence_stats" => match channel_arg(first.as_ref()) {
                Ok(channel) => {
                    let result = session.presence_stats(&channel).await;
                    reply(result.map(|s| {
                        vec![Arg::from(
                            json!({"connections": s.connections, "users": s.users}),
                        )]
                    }))
                }
                Err(e) => reply(Err(e)),
            },
            _ => {
                let payload = match call_payload(args) {
                    Ok(payload) => payload,
                    Err(e) => return reply(Err(e)),
                };
                match session.call(&name, payload) {
                    Err(e) => reply(Err(e)),
                    Ok(call) => {
                        let future = call.future;
                        let fut = Box::pin(async move {
                            let result = future.await;
                            let frame = answer(
                                &nsp,
                                id,
                                &name,
                                result.as_ref().map(|p| vec![payload_arg(p)]),
                            );
                            // A command's error never closes a Socket.IO connection.
                            Replied {
                                frame,
                                close: None::<Close>,
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
        }
    }
}
