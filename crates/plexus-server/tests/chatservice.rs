//! chat-service's protocol (`docs/chat-service.md`) over real connections, for the cases of
//! chat-service 1.0.0's own tests that its client cannot reach (the Node suite's README, "Cases
//! of §2.4 not here"): hooks through the Rust library, backend HTTP hooks in the standalone
//! server, native clients in the same rooms, two nodes on one Redis, and disconnecting a user
//! everywhere. Each test names the chat-service case it re-expresses and asserts what that case
//! asserts (`test/hooks.js`, `test/api.js`, `test/serviceCluster.js` of `an-sh/chat-service`).
//!
//! The client is socket.io-client@2's protocol written by hand: Engine.IO 3 over a WebSocket,
//! Socket.IO protocol 4, the namespace `/chat-service` with the user in the CONNECT's query.
//! Single-node tests run on the suite's engine (`PLEXUS_TEST_ENGINE=redis` for Redis); the
//! two-node tests always run on a real `redis-server`. Every wait is bounded; an absence is proved
//! by a later answer it would have preceded, never by a sleep.

mod common;
mod support;

use async_trait::async_trait;
use axum::http::StatusCode;
use common::socketio::{SioWs, WsMsg};
use common::*;
use futures_util::StreamExt;
use plexus_core::access::Actor;
use plexus_core::auth::UpgradeDecision;
use plexus_core::rooms::RoomList;
use plexus_core::{CloseCode, Identity, UpgradeRequest};
use plexus_protocol::chatservice::{ChatError, ErrorKind};
use plexus_server::RunningServer;
use plexus_server::api::{ApiKey, ApiOptions, HttpEndpoints};
use plexus_server::chatservice::{
    ChatHooks, ChatServiceConfig, ConnectInfo, DisconnectInfo, ExecInfo, JoinInfo,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// chat-service's namespace.
const NSP: &str = "/chat-service";

// ---------------------------------------------------------------------------------------------
// A socket.io-client@2 client

/// A Socket.IO packet as the client sees it; binary attachments are put back in place as
/// [`bin`] values.
#[derive(Clone, Debug)]
enum Pkt {
    Connect {
        nsp: String,
    },
    Disconnect {
        nsp: String,
    },
    Event {
        nsp: String,
        args: Vec<Value>,
    },
    Ack {
        nsp: String,
        id: u64,
        args: Vec<Value>,
    },
    Error {
        nsp: String,
        data: Value,
    },
    Closed(u16),
}

/// Binary data where a packet carried an attachment.
fn bin(bytes: &[u8]) -> Value {
    json!({ "<binary>": bytes })
}

/// Replaces `{"_placeholder": true, "num": n}` with the n-th attachment.
fn revive(value: &mut Value, attachments: &[Vec<u8>]) {
    match value {
        Value::Object(o) if o.get("_placeholder") == Some(&Value::Bool(true)) => {
            let n = o["num"].as_u64().expect("a placeholder number") as usize;
            *value = bin(&attachments[n]);
        }
        Value::Object(o) => o.values_mut().for_each(|v| revive(v, attachments)),
        Value::Array(a) => a.iter_mut().for_each(|v| revive(v, attachments)),
        _ => {}
    }
}

/// A Socket.IO protocol 4 packet (`<type>[<attachments>-][<nsp>,][<id>][<json>]`): its type,
/// attachment count, namespace, ack id and data.
fn parse(text: &str) -> (u8, usize, String, Option<u64>, Value) {
    let kind = text.as_bytes()[0] - b'0';
    let mut rest = &text[1..];
    let mut attachments = 0;
    if kind == 5 || kind == 6 {
        let (n, tail) = rest.split_once('-').expect("an attachment count");
        attachments = n.parse().expect("an attachment count");
        rest = tail;
    }
    let mut nsp = "/".to_owned();
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        nsp = rest[..end].to_owned();
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let id = (digits > 0).then(|| rest[..digits].parse().unwrap());
    rest = &rest[digits..];
    let data = if rest.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(rest).unwrap_or_else(|e| panic!("{text}: {e}"))
    };
    (kind, attachments, nsp, id, data)
}

/// One chat-service socket, connected as chat-service's tests connect (`io(url +
/// '/chat-service', {query: 'user=NAME', transports: ['websocket'], multiplex: false})`).
struct Cs {
    ws: SioWs,
    buffered: VecDeque<Pkt>,
    next_ack: u64,
    /// The socket id `loginConfirmed` gave (`/chat-service#<sid>`).
    id: String,
    /// The user it logged in as.
    user: String,
}

impl Cs {
    /// Opens the Engine.IO 3 session (the user in the handshake's query, as socket.io-client 2
    /// sends it) and reads the protocol 4 CONNECT of `/`.
    async fn open(addr: SocketAddr, user: &str) -> Cs {
        let query = format!("EIO=3&transport=websocket&user={user}");
        let (ws, handshake) = SioWs::open(addr, &query).await;
        assert!(handshake["sid"].is_string(), "{handshake}");
        let mut cs = Cs {
            ws,
            buffered: VecDeque::new(),
            next_ack: 1,
            id: String::new(),
            user: String::new(),
        };
        let connect = cs.first(|p| matches!(p, Pkt::Connect { .. }).then(|| p.clone()));
        assert!(matches!(connect.await, Pkt::Connect { nsp } if nsp == "/"));
        cs
    }

    /// Sends the namespace's CONNECT with the query, and reads its answer.
    async fn connect_nsp(&mut self, user: &str) {
        self.send(&format!("0{NSP}?user={user},")).await;
        self.first(|p| matches!(p, Pkt::Connect { nsp } if nsp == NSP).then_some(()))
            .await;
    }

    /// The login's answer: `("loginConfirmed", [user, authData])` or `("loginRejected",
    /// [error])`.
    async fn login_answer(&mut self) -> (String, Vec<Value>) {
        self.first(|p| match p {
            Pkt::Event { nsp, args }
                if nsp == NSP && (args[0] == "loginConfirmed" || args[0] == "loginRejected") =>
            {
                Some((args[0].as_str().unwrap().to_owned(), args[1..].to_vec()))
            }
            _ => None,
        })
        .await
    }

    /// A socket of `user`, logged in.
    async fn login(addr: SocketAddr, user: &str) -> Cs {
        let mut cs = Cs::open(addr, user).await;
        cs.connect_nsp(user).await;
        let (event, args) = cs.login_answer().await;
        assert_eq!(event, "loginConfirmed", "{args:?}");
        assert_eq!(args[0], user);
        cs.id = args[1]["id"].as_str().expect("an id").to_owned();
        cs.user = user.to_owned();
        assert!(cs.id.starts_with("/chat-service#"), "{}", cs.id);
        cs
    }

    /// An Engine.IO message.
    async fn send(&mut self, packet: &str) {
        self.ws.send(&format!("4{packet}")).await;
    }

    async fn read(&mut self) -> Pkt {
        loop {
            let text = match self.ws.next().await {
                WsMsg::Closed(code) => return Pkt::Closed(code),
                WsMsg::Binary(b) => panic!("a binary frame outside a packet: {b:?}"),
                WsMsg::Text(text) => text,
            };
            // Engine.IO 3: `4` messages; pongs and noops are not the test's.
            let Some(packet) = text.strip_prefix('4') else {
                continue;
            };
            let (kind, attachments, nsp, id, mut data) = parse(packet);
            let mut blobs = Vec::new();
            for _ in 0..attachments {
                match self.ws.next().await {
                    // Engine.IO 3 binary frames start with the message type, 4.
                    WsMsg::Binary(b) => {
                        assert_eq!(b.first(), Some(&4), "{b:?}");
                        blobs.push(b[1..].to_vec());
                    }
                    other => panic!("expected an attachment, got {other:?}"),
                }
            }
            revive(&mut data, &blobs);
            let args = || match &data {
                Value::Array(a) => a.clone(),
                other => panic!("{packet}: arguments are an array, got {other}"),
            };
            return match kind {
                0 => Pkt::Connect { nsp },
                1 => Pkt::Disconnect { nsp },
                2 | 5 => Pkt::Event { nsp, args: args() },
                3 | 6 => Pkt::Ack {
                    nsp,
                    id: id.expect("an ack id"),
                    args: args(),
                },
                4 => Pkt::Error { nsp, data },
                _ => panic!("unknown packet {packet}"),
            };
        }
    }

    /// The first packet `pick` accepts; the others stay for later, in order.
    async fn first<T>(&mut self, mut pick: impl FnMut(&Pkt) -> Option<T>) -> T {
        let mut scanned = 0;
        loop {
            while scanned < self.buffered.len() {
                if let Some(found) = pick(&self.buffered[scanned]) {
                    self.buffered.remove(scanned);
                    return found;
                }
                match &self.buffered[scanned] {
                    Pkt::Closed(code) => {
                        panic!("closed ({code}) while waiting; got {:?}", self.buffered)
                    }
                    Pkt::Error { nsp, data } => panic!("an error packet in {nsp}: {data}"),
                    _ => {}
                }
                scanned += 1;
            }
            let packet = self.read().await;
            self.buffered.push_back(packet);
        }
    }

    /// Emits a command with an ack id; the id.
    async fn emit(&mut self, command: &str, args: &[Value]) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        let mut all = vec![json!(command)];
        all.extend_from_slice(args);
        self.send(&format!("2{NSP},{id}{}", Value::from(all))).await;
        id
    }

    /// The ack of command `id`: `[error, result, ...]`.
    async fn ack(&mut self, id: u64) -> Vec<Value> {
        self.first(|p| match p {
            Pkt::Ack { nsp, id: got, args } if nsp == NSP && *got == id => Some(args.clone()),
            _ => None,
        })
        .await
    }

    /// Runs a command; its ack.
    async fn call(&mut self, command: &str, args: &[Value]) -> Vec<Value> {
        let id = self.emit(command, args).await;
        self.ack(id).await
    }

    /// `roomGetAccessList(room, 'userlist')`; its ack.
    async fn userlist(&mut self, room: &str) -> Vec<Value> {
        self.call("roomGetAccessList", &[json!(room), json!("userlist")])
            .await
    }

    /// `roomAddToList(room, 'blacklist', [user])`; its ack.
    async fn blacklist(&mut self, room: &str, user: &str) -> Vec<Value> {
        self.call(
            "roomAddToList",
            &[json!(room), json!("blacklist"), json!([user])],
        )
        .await
    }

    /// The next event `name` in the namespace (others stay for later); its arguments.
    async fn event(&mut self, name: &str) -> Vec<Value> {
        self.first(|p| match p {
            Pkt::Event { nsp, args } if nsp == NSP && args[0] == name => Some(args[1..].to_vec()),
            _ => None,
        })
        .await
    }

    /// The next `roomUserJoined` or `roomUserLeft` (`event`) about another user (a joiner hears
    /// its own `roomUserJoined` too): `[room, user]`.
    async fn other_user(&mut self, event: &str) -> Vec<Value> {
        let me = json!(self.user);
        self.first(|p| match p {
            Pkt::Event { nsp, args } if nsp == NSP && args[0] == event && args[2] != me => {
                Some(args[1..].to_vec())
            }
            _ => None,
        })
        .await
    }

    /// The events `name` received and not read yet.
    fn unread(&self, name: &str) -> Vec<Vec<Value>> {
        self.buffered
            .iter()
            .filter_map(|p| match p {
                Pkt::Event { nsp, args } if nsp == NSP && args[0] == name => {
                    Some(args[1..].to_vec())
                }
                _ => None,
            })
            .collect()
    }

    /// Waits for the server's DISCONNECT of the namespace.
    async fn nsp_disconnected(&mut self) {
        self.first(|p| matches!(p, Pkt::Disconnect { nsp } if nsp == NSP).then_some(()))
            .await;
    }

    /// Waits for the server's DISCONNECT of the namespace, then for the end of the connection,
    /// answering the server's close frame as a browser does.
    async fn disconnected(&mut self) {
        self.nsp_disconnected().await;
        self.first(|p| matches!(p, Pkt::Closed(_)).then_some(()))
            .await;
        let drain = async { while let Some(Ok(_)) = self.ws.ws.next().await {} };
        let _ = tokio::time::timeout(WAIT, drain).await;
    }

    /// `socket.disconnect()`: the namespace's DISCONNECT, then the transport closes.
    async fn close(mut self) {
        self.send(&format!("1{NSP},")).await;
        let _ = self.ws.ws.close(None).await;
    }
}

/// An ack's `[null, result]`.
fn ok(result: Value) -> Vec<Value> {
    vec![Value::Null, result]
}

/// An ack's `[error, null]` for chat-service's error string.
fn refused(message: &str) -> Vec<Value> {
    vec![json!(format!("ChatServiceError: {message}")), Value::Null]
}

/// `listOwnSockets`' answer: socket id → rooms.
fn sockets(entries: &[(&str, &[&str])]) -> Value {
    let map: BTreeMap<&str, Vec<&str>> = entries.iter().map(|(id, r)| (*id, r.to_vec())).collect();
    json!(map)
}

/// The keys of a message object, sorted.
fn keys(message: &Value) -> Vec<String> {
    let mut keys: Vec<String> = message
        .as_object()
        .unwrap_or_else(|| panic!("an object, got {message}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

// ---------------------------------------------------------------------------------------------
// Hooks through the Rust library

type ExecFn = Box<dyn Fn(&mut ExecInfo) -> Result<Option<Vec<Value>>, ChatError> + Send + Sync>;
type ConnectFn =
    Box<dyn Fn(&ConnectInfo) -> Result<Option<(String, Value)>, ChatError> + Send + Sync>;
type JoinFn = Box<dyn Fn(&JoinInfo) -> Result<(), ChatError> + Send + Sync>;
type CheckFn = Box<dyn Fn(&Value) -> Result<(), ChatError> + Send + Sync>;

/// What a hook was called with.
#[derive(Clone, Debug)]
enum Seen {
    Connect(ConnectInfo),
    Before(ExecInfo),
    After(ExecInfo),
    Join(JoinInfo),
    Leave(JoinInfo),
    Disconnect(DisconnectInfo),
    RoomMessage(Value),
    DirectMessage(Value),
}

/// Hooks whose behaviour each test sets, telling the test every call.
struct Hooks {
    seen: mpsc::UnboundedSender<Seen>,
    on_connect: Option<ConnectFn>,
    before: Option<ExecFn>,
    after: Option<ExecFn>,
    on_join: Option<JoinFn>,
    room_checker: Option<CheckFn>,
    direct_checker: Option<CheckFn>,
}

/// The calls the hooks saw, in order.
struct Record(mpsc::UnboundedReceiver<Seen>);

fn hooks() -> (Hooks, Record) {
    let (seen, record) = mpsc::unbounded_channel();
    let hooks = Hooks {
        seen,
        on_connect: None,
        before: None,
        after: None,
        on_join: None,
        room_checker: None,
        direct_checker: None,
    };
    (hooks, Record(record))
}

impl Hooks {
    fn tell(&self, seen: Seen) {
        let _ = self.seen.send(seen);
    }
}

#[async_trait]
impl ChatHooks for Hooks {
    async fn on_connect(&self, info: &ConnectInfo) -> Result<Option<(String, Value)>, ChatError> {
        self.tell(Seen::Connect(info.clone()));
        self.on_connect.as_ref().map_or(Ok(None), |f| f(info))
    }

    async fn before(&self, exec: &mut ExecInfo) -> Result<Option<Vec<Value>>, ChatError> {
        self.tell(Seen::Before(exec.clone()));
        self.before.as_ref().map_or(Ok(None), |f| f(exec))
    }

    async fn after(&self, exec: &mut ExecInfo) -> Result<Option<Vec<Value>>, ChatError> {
        self.tell(Seen::After(exec.clone()));
        self.after.as_ref().map_or(Ok(None), |f| f(exec))
    }

    async fn on_disconnect(&self, info: &DisconnectInfo) {
        self.tell(Seen::Disconnect(info.clone()));
    }

    async fn on_join(&self, info: &JoinInfo) -> Result<(), ChatError> {
        self.tell(Seen::Join(info.clone()));
        self.on_join.as_ref().map_or(Ok(()), |f| f(info))
    }

    async fn on_leave(&self, info: &JoinInfo) {
        self.tell(Seen::Leave(info.clone()));
    }

    fn room_messages_checker(&self) -> bool {
        self.room_checker.is_some()
    }

    async fn check_room_message(&self, message: &Value) -> Result<(), ChatError> {
        self.tell(Seen::RoomMessage(message.clone()));
        self.room_checker.as_ref().map_or(Ok(()), |f| f(message))
    }

    fn direct_messages_checker(&self) -> bool {
        self.direct_checker.is_some()
    }

    async fn check_direct_message(&self, message: &Value) -> Result<(), ChatError> {
        self.tell(Seen::DirectMessage(message.clone()));
        self.direct_checker.as_ref().map_or(Ok(()), |f| f(message))
    }
}

impl Record {
    /// The first call `pick` accepts among those made already (the others are dropped): a hook
    /// that must have run before the answer the test holds.
    fn ran<T>(&mut self, mut pick: impl FnMut(Seen) -> Option<T>) -> Option<T> {
        while let Ok(seen) = self.0.try_recv() {
            if let Some(found) = pick(seen) {
                return Some(found);
            }
        }
        None
    }

    /// The first call `pick` accepts, waiting for it (bounded).
    async fn find<T>(&mut self, mut pick: impl FnMut(Seen) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = tokio::time::timeout_at(deadline, self.0.recv())
                .await
                .expect("the hook runs within the wait bound")
                .expect("the hooks live");
            if let Some(found) = pick(seen) {
                return found;
            }
        }
    }
}

fn before_of(command: &'static str) -> impl FnMut(Seen) -> Option<ExecInfo> {
    move |s| match s {
        Seen::Before(e) if e.command == command => Some(e),
        _ => None,
    }
}

fn after_of(command: &'static str) -> impl FnMut(Seen) -> Option<ExecInfo> {
    move |s| match s {
        Seen::After(e) if e.command == command => Some(e),
        _ => None,
    }
}

fn leave_of(id: String) -> impl FnMut(Seen) -> Option<JoinInfo> {
    move |s| match s {
        Seen::Leave(j) if j.id == id => Some(j),
        _ => None,
    }
}

/// A server in development mode (rooms management, direct messages and user list updates on,
/// login from the `user` query parameter) with `hooks`, on the suite's engine.
async fn with_hooks(hooks: Hooks) -> RunningServer {
    start(
        dev()
            .chat_service(ChatServiceConfig::development())
            .chat_hooks(Arc::new(hooks)),
    )
    .await
}

/// hooks.js "should stop commands if before hook returns a data": the ack is `[null, 'asdf']`
/// and the command does not run.
#[tokio::test]
async fn a_before_hook_returning_results_stops_the_command() {
    let (mut hooks, mut seen) = hooks();
    hooks.before = Some(Box::new(|exec| {
        Ok(match exec.command {
            "listOwnSockets" => Some(vec![json!("asdf")]),
            "roomCreate" if exec.args[0] == "stopped" => Some(vec![json!("not created")]),
            _ => None,
        })
    }));
    let server = with_hooks(hooks).await;
    let mut alice = Cs::login(server.local_addr(), "alice").await;
    assert_eq!(alice.call("listOwnSockets", &[]).await, ok(json!("asdf")));
    assert!(
        seen.ran(after_of("listOwnSockets")).is_none(),
        "a stopped command has no after hook"
    );
    assert_eq!(
        alice
            .call("roomCreate", &[json!("stopped"), json!(false)])
            .await,
        ok(json!("not created"))
    );
    assert_eq!(
        alice.call("roomJoin", &[json!("stopped")]).await,
        refused("No such room stopped"),
        "the command did not run"
    );
}

/// hooks.js "should execute before and after hooks": both see the user, the socket id and the
/// arguments; the after hook sees the results and no error, and its value is the answer.
#[tokio::test]
async fn before_and_after_hooks_see_the_command_and_the_after_hook_replaces_the_results() {
    let (mut hooks, mut seen) = hooks();
    hooks.after = Some(Box::new(|exec| {
        Ok((exec.command == "roomCreate").then(|| vec![json!("data")]))
    }));
    let server = with_hooks(hooks).await;
    let mut alice = Cs::login(server.local_addr(), "alice").await;
    assert_eq!(
        alice
            .call("roomCreate", &[json!("room1"), json!(true)])
            .await,
        ok(json!("data"))
    );
    let before = seen
        .ran(before_of("roomCreate"))
        .expect("the before hook ran");
    assert_eq!(before.user.as_deref(), Some("alice"));
    assert_eq!(before.id.as_deref(), Some(alice.id.as_str()));
    assert_eq!(before.args, [json!("room1"), json!(true)]);
    assert!(before.rest_args.is_empty());
    assert!(before.error.is_none() && before.results.is_empty());
    let after = seen
        .ran(after_of("roomCreate"))
        .expect("the after hook ran");
    assert_eq!(after.user.as_deref(), Some("alice"));
    assert_eq!(after.id.as_deref(), Some(alice.id.as_str()));
    assert_eq!(after.args, [json!("room1"), json!(true)]);
    assert_eq!(after.results, [Value::Null], "roomCreate's result");
    assert_eq!(after.error, None);
    // The command ran: the room exists, in whitelist mode.
    assert_eq!(
        alice.call("roomGetWhitelistMode", &[json!("room1")]).await,
        ok(json!(true))
    );
}

/// chat-service runs `<command>After` after a failed command too, with its error; results from
/// the after hook replace the error (`CommandBinder.makeCommand`).
#[tokio::test]
async fn an_after_hook_sees_the_error_of_a_failed_command() {
    let (mut hooks, mut seen) = hooks();
    hooks.after = Some(Box::new(|exec| {
        Ok((exec.error.is_some() && exec.args[0] == "recover").then(|| vec![json!("recovered")]))
    }));
    let server = with_hooks(hooks).await;
    let mut alice = Cs::login(server.local_addr(), "alice").await;
    assert_eq!(
        alice.call("roomJoin", &[json!("ghost")]).await,
        refused("No such room ghost")
    );
    let after = seen.ran(after_of("roomJoin")).expect("the after hook ran");
    assert_eq!(
        after.error,
        Some(ChatError::new(ErrorKind::NoRoom, vec![json!("ghost")]))
    );
    assert!(after.results.is_empty(), "{:?}", after.results);
    assert_eq!(
        alice.call("roomJoin", &[json!("recover")]).await,
        ok(json!("recovered"))
    );
}

/// hooks.js "should support changing arguments in before hooks".
#[tokio::test]
async fn a_before_hook_rewrites_the_arguments() {
    let (mut hooks, _seen) = hooks();
    hooks.before = Some(Box::new(|exec| {
        if exec.command == "roomGetWhitelistMode" {
            exec.args = vec![json!("room2")];
        }
        Ok(None)
    }));
    let server = with_hooks(hooks).await;
    let mut alice = Cs::login(server.local_addr(), "alice").await;
    assert_eq!(
        alice
            .call("roomCreate", &[json!("room2"), json!(false)])
            .await,
        ok(Value::Null)
    );
    assert_eq!(
        alice
            .call("roomCreate", &[json!("room1"), json!(true)])
            .await,
        ok(Value::Null)
    );
    assert_eq!(
        alice.call("roomGetWhitelistMode", &[json!("room1")]).await,
        ok(json!(false)),
        "room2's mode"
    );
}

/// hooks.js "should store commands additional arguments": `listOwnSockets(true)` gives the hooks
/// `restArgs` `[true]`.
#[tokio::test]
async fn extra_arguments_reach_the_hooks_as_rest_args() {
    let (hooks, mut seen) = hooks();
    let server = with_hooks(hooks).await;
    let mut alice = Cs::login(server.local_addr(), "alice").await;
    let answer = alice.call("listOwnSockets", &[json!(true)]).await;
    assert_eq!(answer, ok(sockets(&[(alice.id.as_str(), &[])])));
    let before = seen.ran(before_of("listOwnSockets")).expect("before ran");
    assert_eq!((before.args, before.rest_args), (vec![], vec![json!(true)]));
    let after = seen.ran(after_of("listOwnSockets")).expect("after ran");
    assert_eq!(after.rest_args, [json!(true)]);
}

/// hooks.js "should support additional values from after hooks": `(error, data, moredata)`.
#[tokio::test]
async fn an_after_hook_adds_values_to_the_answer() {
    let (mut hooks, _seen) = hooks();
    hooks.after = Some(Box::new(|exec| {
        Ok((exec.command == "listOwnSockets").then(|| vec![exec.results[0].clone(), json!(true)]))
    }));
    let server = with_hooks(hooks).await;
    let mut alice = Cs::login(server.local_addr(), "alice").await;
    let answer = alice.call("listOwnSockets", &[]).await;
    assert_eq!(
        answer,
        [
            Value::Null,
            sockets(&[(alice.id.as_str(), &[])]),
            json!(true)
        ]
    );
}

/// connection.js "should use an username and a data passed by onConnect": `loginConfirmed(name,
/// {token, id})`, and the socket acts as that user.
#[tokio::test]
async fn on_connect_gives_the_user_name_and_auth_data() {
    let (mut hooks, mut seen) = hooks();
    hooks.on_connect = Some(Box::new(|_| {
        Ok(Some(("someUser".into(), json!({"token": "token"}))))
    }));
    let server = with_hooks(hooks).await;
    let mut socket = Cs::open(server.local_addr(), "alice").await;
    socket.connect_nsp("alice").await;
    let (event, args) = socket.login_answer().await;
    assert_eq!(event, "loginConfirmed");
    assert_eq!(args[0], "someUser");
    let id = args[1]["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("/chat-service#"), "{id}");
    assert_eq!(args[1], json!({"token": "token", "id": id}));
    let info = seen
        .ran(|s| match s {
            Seen::Connect(c) => Some(c),
            _ => None,
        })
        .expect("onConnect ran");
    assert_eq!(info.id, id);
    assert!(
        info.query.contains(&("user".into(), "alice".into())),
        "{:?}",
        info.query
    );
    assert_eq!(info.user, None, "no identity before the hook");
    assert_eq!(
        socket.call("roomCreate", &[json!("r"), json!(false)]).await,
        ok(Value::Null)
    );
    assert_eq!(
        socket.call("roomGetOwner", &[json!("r")]).await,
        ok(json!("someUser"))
    );
}

/// connection.js "should reject a login if onConnect passes an error": `loginRejected(error)`,
/// then the namespace's DISCONNECT.
#[tokio::test]
async fn an_on_connect_error_rejects_the_login() {
    let (mut hooks, _seen) = hooks();
    hooks.on_connect = Some(Box::new(|_| {
        Err(ChatError::new(
            ErrorKind::InternalError,
            vec![json!("some error")],
        ))
    }));
    let server = with_hooks(hooks).await;
    let mut socket = Cs::open(server.local_addr(), "alice").await;
    socket.connect_nsp("alice").await;
    let (event, args) = socket.login_answer().await;
    assert_eq!(
        (event.as_str(), args),
        ("loginRejected", vec![json!("ChatServiceError: some error")])
    );
    socket.nsp_disconnected().await;
}

/// hooks.js "should execute onJoin hook" (`{id, roomName, njoined: 1}`), and an onJoin
/// rejection rolls the join back: the socket is not in the room's user list, cannot post, and
/// nobody heard it join.
#[tokio::test]
async fn an_on_join_rejection_rolls_the_join_back() {
    let (mut hooks, mut seen) = hooks();
    hooks.on_join = Some(Box::new(|info| {
        if &*info.user == "mallory" {
            Err(ChatError::new(ErrorKind::NotAllowed, vec![]))
        } else {
            Ok(())
        }
    }));
    let server = with_hooks(hooks).await;
    let addr = server.local_addr();
    let mut alice = Cs::login(addr, "alice").await;
    assert_eq!(
        alice.call("roomCreate", &[json!("r"), json!(false)]).await,
        ok(Value::Null)
    );
    assert_eq!(alice.call("roomJoin", &[json!("r")]).await, ok(json!(1)));
    let join = seen
        .ran(|s| match s {
            Seen::Join(j) => Some(j),
            _ => None,
        })
        .expect("onJoin ran before the answer");
    assert_eq!(
        (
            join.id.as_str(),
            &*join.user,
            join.room.as_str(),
            join.njoined
        ),
        (alice.id.as_str(), "alice", "r", 1)
    );

    let mut mallory = Cs::login(addr, "mallory").await;
    assert_eq!(
        mallory.call("roomJoin", &[json!("r")]).await,
        refused("Action is not allowed")
    );
    assert_eq!(alice.userlist("r").await, ok(json!(["alice"])));
    assert_eq!(
        mallory
            .call("roomMessage", &[json!("r"), json!({"textMessage": "hi"})])
            .await,
        refused("Not joined to room r")
    );
    assert_eq!(
        mallory.call("listOwnSockets", &[]).await,
        ok(sockets(&[(mallory.id.as_str(), &[])]))
    );
    // The first user alice hears joining is bob, who came after mallory.
    let mut bob = Cs::login(addr, "bob").await;
    assert_eq!(bob.call("roomJoin", &[json!("r")]).await, ok(json!(1)));
    assert_eq!(
        alice.other_user("roomUserJoined").await,
        [json!("r"), json!("bob")]
    );
}

/// hooks.js "should execute onLeave hook when leaving": `{id, roomName, njoined: 0}`, before the
/// answer.
#[tokio::test]
async fn on_leave_runs_when_leaving() {
    let (hooks, mut seen) = hooks();
    let server = with_hooks(hooks).await;
    let mut alice = Cs::login(server.local_addr(), "alice").await;
    alice.call("roomCreate", &[json!("r"), json!(false)]).await;
    assert_eq!(alice.call("roomJoin", &[json!("r")]).await, ok(json!(1)));
    assert_eq!(alice.call("roomLeave", &[json!("r")]).await, ok(json!(0)));
    let leave = seen.ran(leave_of(alice.id.clone())).expect("onLeave ran");
    assert_eq!(
        (&*leave.user, leave.room.as_str(), leave.njoined),
        ("alice", "r", 0)
    );
}

/// hooks.js "should execute onLeave hook when disconnecting": the socket that left, with the
/// user's other socket still in the room (`njoined: 1`), before the other socket hears
/// `socketDisconnectEcho`.
#[tokio::test]
async fn on_leave_runs_when_a_socket_disconnects() {
    let (hooks, mut seen) = hooks();
    let server = with_hooks(hooks).await;
    let addr = server.local_addr();
    let mut socket1 = Cs::login(addr, "alice").await;
    socket1
        .call("roomCreate", &[json!("r"), json!(false)])
        .await;
    assert_eq!(socket1.call("roomJoin", &[json!("r")]).await, ok(json!(1)));
    let mut socket2 = Cs::login(addr, "alice").await;
    assert_eq!(socket2.call("roomJoin", &[json!("r")]).await, ok(json!(2)));
    let id1 = socket1.id.clone();
    socket1.close().await;
    assert_eq!(
        socket2.event("socketDisconnectEcho").await,
        [json!(id1), json!(1)]
    );
    let leave = seen
        .ran(leave_of(id1))
        .expect("onLeave ran before the echo");
    assert_eq!(
        (&*leave.user, leave.room.as_str(), leave.njoined),
        ("alice", "r", 1)
    );
}

/// hooks.js "should execute onLeave hook on removal": every socket of a user who loses access
/// (a blacklisting; then a room's deletion) gets `onLeave` with `njoined: 0`, before the
/// command's answer; the room hears `roomUserLeft` once.
#[tokio::test]
async fn on_leave_runs_for_every_socket_a_removal_takes() {
    let (hooks, mut seen) = hooks();
    let server = with_hooks(hooks).await;
    let addr = server.local_addr();
    let mut alice = Cs::login(addr, "alice").await;
    alice.call("roomCreate", &[json!("r"), json!(false)]).await;
    alice.call("roomJoin", &[json!("r")]).await;
    let mut bob1 = Cs::login(addr, "bob").await;
    let mut bob2 = Cs::login(addr, "bob").await;
    assert_eq!(bob1.call("roomJoin", &[json!("r")]).await, ok(json!(1)));
    assert_eq!(bob2.call("roomJoin", &[json!("r")]).await, ok(json!(2)));
    let mut carol = Cs::login(addr, "carol").await;
    assert_eq!(carol.call("roomJoin", &[json!("r")]).await, ok(json!(1)));

    assert_eq!(alice.blacklist("r", "bob").await, ok(Value::Null));
    // In any order: the removal's calls, all made before the answer.
    let mut leaves = Vec::new();
    while let Some(leave) = seen.ran(|s| match s {
        Seen::Leave(j) => Some(j),
        _ => None,
    }) {
        leaves.push((leave.id, leave.user.to_string(), leave.room, leave.njoined));
    }
    leaves.sort();
    let mut expected = vec![
        (bob1.id.clone(), "bob".to_owned(), "r".to_owned(), 0),
        (bob2.id.clone(), "bob".to_owned(), "r".to_owned(), 0),
    ];
    expected.sort();
    assert_eq!(leaves, expected);
    assert_eq!(bob1.event("roomAccessRemoved").await, [json!("r")]);
    assert_eq!(bob2.event("roomAccessRemoved").await, [json!("r")]);
    assert_eq!(
        alice.other_user("roomUserLeft").await,
        [json!("r"), json!("bob")]
    );

    assert_eq!(
        alice.call("roomDelete", &[json!("r")]).await,
        ok(Value::Null)
    );
    let leave = seen
        .ran(leave_of(carol.id.clone()))
        .expect("onLeave ran before the answer");
    assert_eq!((leave.room.as_str(), leave.njoined), ("r", 0));
    assert_eq!(carol.event("roomAccessRemoved").await, [json!("r")]);
    // Told once: the blacklisting's single `roomUserLeft` for bob is all alice received.
    assert_eq!(
        alice
            .unread("roomUserLeft")
            .iter()
            .filter(|a| a[1] == "bob")
            .count(),
        0
    );
}

/// A socket removed from a room is no longer in it in its user's socket list
/// (`listOwnSockets`), as chat-service removes it from `socketsToRooms`.
#[tokio::test]
async fn a_removed_socket_leaves_its_room_in_list_own_sockets() {
    let (hooks, _seen) = hooks();
    let server = with_hooks(hooks).await;
    let addr = server.local_addr();
    let mut bob = Cs::login(addr, "bob").await;
    bob.call("roomCreate", &[json!("r"), json!(false)]).await;
    let mut alice = Cs::login(addr, "alice").await;
    alice.call("roomJoin", &[json!("r")]).await;
    assert_eq!(
        alice.call("listOwnSockets", &[]).await,
        ok(sockets(&[(alice.id.as_str(), &["r"])]))
    );
    bob.emit(
        "roomAddToList",
        &[json!("r"), json!("blacklist"), json!(["alice"])],
    )
    .await;
    assert_eq!(alice.event("roomAccessRemoved").await, [json!("r")]);
    assert_eq!(
        alice.call("listOwnSockets", &[]).await,
        ok(sockets(&[(alice.id.as_str(), &[])]))
    );
}

/// hooks.js "should execute onDisconnect hook": `{id, nconnected, roomsRemoved, joinedSockets}`
/// — here with their values: the socket's rooms, and for each the user's sockets still in it.
#[tokio::test]
async fn on_disconnect_reports_the_socket_and_its_rooms() {
    let (hooks, mut seen) = hooks();
    let server = with_hooks(hooks).await;
    let addr = server.local_addr();
    let mut socket1 = Cs::login(addr, "alice").await;
    for room in ["r1", "r2"] {
        socket1
            .call("roomCreate", &[json!(room), json!(false)])
            .await;
        assert_eq!(socket1.call("roomJoin", &[json!(room)]).await, ok(json!(1)));
    }
    let mut socket2 = Cs::login(addr, "alice").await;
    assert_eq!(socket2.call("roomJoin", &[json!("r1")]).await, ok(json!(2)));
    let id1 = socket1.id.clone();
    socket1.close().await;
    let info = seen
        .find(|s| match s {
            Seen::Disconnect(d) => Some(d),
            _ => None,
        })
        .await;
    assert_eq!(info.id, id1);
    assert_eq!(&*info.user, "alice");
    assert_eq!(info.nconnected, 1);
    assert_eq!(info.rooms_removed, ["r1", "r2"]);
    assert_eq!(info.joined_sockets, [1, 0]);
    assert_eq!(
        socket2.event("socketDisconnectEcho").await,
        [json!(id1), json!(1)]
    );
}

/// hooks.js "should accept custom room messages using a hook": with a `roomMessagesChecker` any
/// object is a message (`{htmlMessage, author, timestamp, id: 1}`); the checker's error refuses
/// one.
#[tokio::test]
async fn a_room_messages_checker_accepts_custom_messages_and_its_error_refuses_them() {
    let (mut hooks, mut seen) = hooks();
    hooks.room_checker = Some(Box::new(|message| {
        if message.get("spam").is_some() {
            Err(ChatError::new(ErrorKind::NotAllowed, vec![]))
        } else {
            Ok(())
        }
    }));
    let server = with_hooks(hooks).await;
    let mut alice = Cs::login(server.local_addr(), "alice").await;
    alice.call("roomCreate", &[json!("r"), json!(false)]).await;
    alice.call("roomJoin", &[json!("r")]).await;
    let html = "<b>HTML message.</b>";
    let message = json!({ "htmlMessage": html });
    assert_eq!(
        alice
            .call("roomMessage", &[json!("r"), message.clone()])
            .await,
        ok(json!(1))
    );
    let checked = seen.ran(|s| match s {
        Seen::RoomMessage(m) => Some(m),
        _ => None,
    });
    assert_eq!(checked, Some(message));
    let got = alice.event("roomMessage").await;
    assert_eq!(got[0], "r");
    assert_eq!(keys(&got[1]), ["author", "htmlMessage", "id", "timestamp"]);
    assert_eq!(got[1]["htmlMessage"], html);
    assert_eq!(got[1]["author"], "alice");
    assert!(got[1]["timestamp"].is_u64(), "{}", got[1]);
    assert_eq!(got[1]["id"], 1);
    assert_eq!(
        alice
            .call("roomMessage", &[json!("r"), json!({"spam": true})])
            .await,
        refused("Action is not allowed")
    );
    let info = alice.call("roomHistoryInfo", &[json!("r")]).await;
    assert_eq!(
        info[1]["lastMessageId"], 1,
        "the refused message is not kept"
    );
}

/// hooks.js "should accept custom direct messages using a hook".
#[tokio::test]
async fn a_direct_messages_checker_accepts_custom_messages() {
    let (mut hooks, mut seen) = hooks();
    hooks.direct_checker = Some(Box::new(|_| Ok(())));
    let server = with_hooks(hooks).await;
    let addr = server.local_addr();
    let mut alice = Cs::login(addr, "alice").await;
    let mut bob = Cs::login(addr, "bob").await;
    let html = "<b>HTML message.</b>";
    let answer = alice
        .call(
            "directMessage",
            &[json!("bob"), json!({ "htmlMessage": html })],
        )
        .await;
    assert_eq!(answer[0], Value::Null, "{answer:?}");
    let checked = seen.ran(|s| match s {
        Seen::DirectMessage(m) => Some(m),
        _ => None,
    });
    assert_eq!(checked, Some(json!({ "htmlMessage": html })));
    let got = bob.event("directMessage").await;
    assert_eq!(keys(&got[0]), ["author", "htmlMessage", "timestamp"]);
    assert_eq!(got[0]["htmlMessage"], html);
    assert_eq!(got[0]["author"], "alice");
    assert!(got[0]["timestamp"].is_u64(), "{}", got[0]);
    assert_eq!(got[0], answer[1]);
}

/// hooks.js "should correctly send room messages with a binary data": a Buffer inside a custom
/// message is a binary attachment on the way in, on the way out, and out of the history.
#[tokio::test]
async fn binary_data_in_a_room_message_survives_history() {
    let (mut hooks, mut seen) = hooks();
    hooks.room_checker = Some(Box::new(|_| Ok(())));
    let server = with_hooks(hooks).await;
    let mut alice = Cs::login(server.local_addr(), "alice").await;
    alice.call("roomCreate", &[json!("r"), json!(false)]).await;
    alice.call("roomJoin", &[json!("r")]).await;
    let bytes = [5u8, 0, 255];
    // socket.io-client 2: a BINARY_EVENT with a placeholder, then the attachment.
    let id = alice.next_ack;
    alice.next_ack += 1;
    alice
        .send(&format!(
            r#"51-{NSP},{id}["roomMessage","r",{{"data":{{"_placeholder":true,"num":0}}}}]"#
        ))
        .await;
    let mut frame = vec![4u8];
    frame.extend_from_slice(&bytes);
    alice.ws.send_binary(&frame).await;
    assert_eq!(alice.ack(id).await, ok(json!(1)));
    let checked = seen.ran(|s| match s {
        Seen::RoomMessage(m) => Some(m),
        _ => None,
    });
    assert_eq!(
        checked,
        Some(json!({"data": {"type": "Buffer", "data": [5, 0, 255]}})),
        "hooks see a Buffer as chat-service stores it"
    );
    let got = alice.event("roomMessage").await;
    assert_eq!(got[0], "r");
    let message = got[1].clone();
    assert_eq!(keys(&message), ["author", "data", "id", "timestamp"]);
    assert_eq!(message["data"], bin(&bytes));
    assert_eq!(message["author"], "alice");
    assert_eq!(message["id"], 1);
    assert_eq!(
        alice.call("roomRecentHistory", &[json!("r")]).await,
        ok(json!([message])),
        "the history gives the binary data back as an attachment"
    );
}

// ---------------------------------------------------------------------------------------------
// Backend HTTP hooks in the standalone server

/// A standalone server whose chat-service hooks go to `url`.
fn backend_config(url: &str, chat_service_extra: &str) -> String {
    format!(
        r#"
[client]
anonymous = true
[socketio]
enabled = true
[chat_service]
enabled = true
login_query = "user"
enable_rooms_management = true
backend_hooks = ["roomJoinBefore", "roomMessageAfter", "onJoin", "roomMessagesChecker"]
{chat_service_extra}
[backend]
timeout_ms = 300
chat_service_url = "{url}"
"#
    )
}

/// The application's backend: joins of `short` are answered, of `denied` refused with
/// chat-service's code, of `slow` never in time; joins of room `locked` refused by onJoin;
/// messages with `bad` refused by the checker (a plain error: an internalError); messages with
/// `replace` get other results from the after hook.
async fn hook_script(r: support::Received) -> axum::response::Response {
    let body = r.body;
    let first_arg = body["exec"]["args"][0].clone();
    let answer = match body["hook"].as_str().unwrap_or_default() {
        "roomJoinBefore" if first_arg == "short" => json!({"result": {"results": [42]}}),
        "roomJoinBefore" if first_arg == "denied" => json!({"error": {
            "code": 1001, "message": "no", "data": {"code": "notAllowed", "args": []}
        }}),
        "roomJoinBefore" if first_arg == "slow" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            json!({"result": {}})
        }
        "onJoin" if body["room"] == "locked" => json!({"error": {
            "code": 1001, "message": "locked", "data": {"code": "notAllowed", "args": []}
        }}),
        "roomMessagesChecker" if body["message"].get("bad").is_some() => {
            json!({"error": {"code": 1001, "message": "bad message"}})
        }
        "roomMessageAfter" if body["exec"]["args"][1].get("replace").is_some() => {
            json!({"result": {"results": ["replaced"]}})
        }
        _ => json!({"result": {}}),
    };
    support::answer(answer)
}

/// The hook requests the backend received, by hook name.
fn hook_requests(backend: &support::Backend, hook: &str) -> Vec<Value> {
    backend
        .requests("/hooks")
        .into_iter()
        .map(|r| r.body)
        .filter(|b| b["hook"] == hook)
        .collect()
}

/// The backend receives `{"hook", "exec"}` for `roomJoinBefore` and `{"hook", id, user, room,
/// njoined}` for onJoin; its results short-circuit the command, and its error with chat-service's
/// code is that error (`Action is not allowed`) — from the before hook and from onJoin, whose
/// refusal rolls the join back.
#[tokio::test]
async fn backend_hooks_see_the_command_and_their_answers_apply() {
    let backend = support::Backend::start(hook_script).await;
    let server = support::serve(&backend_config(&backend.url("/hooks"), "")).await;
    let mut alice = Cs::login(server.local_addr(), "alice").await;
    assert_eq!(
        alice.call("roomCreate", &[json!("r"), json!(false)]).await,
        ok(Value::Null)
    );
    assert_eq!(alice.call("roomJoin", &[json!("r")]).await, ok(json!(1)));
    let before = hook_requests(&backend, "roomJoinBefore");
    assert_eq!(before.len(), 1, "{before:?}");
    let exec = &before[0]["exec"];
    assert_eq!(exec["command"], "roomJoin");
    assert_eq!(exec["user"], "alice");
    assert_eq!(exec["id"], alice.id);
    assert_eq!(exec["args"], json!(["r"]));
    assert_eq!(exec["rest_args"], json!([]));
    assert_eq!(exec["error"], Value::Null);
    assert_eq!(exec["results"], json!([]));
    assert_eq!(
        hook_requests(&backend, "onJoin"),
        [json!({"hook": "onJoin", "id": alice.id, "user": "alice", "room": "r", "njoined": 1})]
    );

    // Results short-circuit: no such room, yet the answer is the backend's.
    assert_eq!(
        alice.call("roomJoin", &[json!("short")]).await,
        ok(json!(42))
    );
    assert_eq!(
        alice.call("roomJoin", &[json!("denied")]).await,
        refused("Action is not allowed")
    );
    assert_eq!(
        hook_requests(&backend, "onJoin").len(),
        1,
        "neither joined anything"
    );

    // onJoin's refusal rolls the join back.
    alice
        .call("roomCreate", &[json!("locked"), json!(false)])
        .await;
    assert_eq!(
        alice.call("roomJoin", &[json!("locked")]).await,
        refused("Action is not allowed")
    );
    assert_eq!(
        alice
            .call("roomGetAccessList", &[json!("locked"), json!("userlist")])
            .await,
        ok(json!([]))
    );
    assert_eq!(
        alice.call("listOwnSockets", &[]).await,
        ok(sockets(&[(alice.id.as_str(), &["r"])]))
    );
}

/// The backend's `roomMessagesChecker` makes any object a message, and its error refuses one; its
/// `roomMessageAfter` sees the message id and may replace it.
#[tokio::test]
async fn backend_message_checker_and_after_hook() {
    let backend = support::Backend::start(hook_script).await;
    let server = support::serve(&backend_config(&backend.url("/hooks"), "")).await;
    let mut alice = Cs::login(server.local_addr(), "alice").await;
    alice.call("roomCreate", &[json!("r"), json!(false)]).await;
    alice.call("roomJoin", &[json!("r")]).await;
    let message = json!({"html": "<b>hi</b>"});
    assert_eq!(
        alice
            .call("roomMessage", &[json!("r"), message.clone()])
            .await,
        ok(json!(1))
    );
    assert_eq!(
        hook_requests(&backend, "roomMessagesChecker"),
        [json!({"hook": "roomMessagesChecker", "message": message})]
    );
    let after = hook_requests(&backend, "roomMessageAfter");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["exec"]["args"], json!(["r", message]));
    assert_eq!(after[0]["exec"]["results"], json!([1]));
    assert_eq!(after[0]["exec"]["error"], Value::Null);
    let got = alice.event("roomMessage").await;
    assert_eq!(keys(&got[1]), ["author", "html", "id", "timestamp"]);
    assert_eq!(got[1]["html"], "<b>hi</b>");

    assert_eq!(
        alice
            .call("roomMessage", &[json!("r"), json!({"bad": 1})])
            .await,
        refused("bad message")
    );
    assert_eq!(
        alice
            .call(
                "roomMessage",
                &[json!("r"), json!({"html": "x", "replace": 1})]
            )
            .await,
        ok(json!("replaced"))
    );
}

/// A backend that is down, or does not answer in time, fails the command with an internalError;
/// the socket goes on answering.
#[tokio::test]
async fn a_backend_that_is_down_or_slow_fails_the_command_and_the_socket_goes_on() {
    let raw = "use_raw_error_objects = true";
    let down = support::serve(&backend_config(&support::dead_url(), raw)).await;
    let mut alice = Cs::login(down.local_addr(), "alice").await;
    let answer = alice.call("roomJoin", &[json!("r")]).await;
    assert_eq!(answer[0]["code"], "internalError", "{answer:?}");
    assert_eq!(answer[1], Value::Null);
    assert_eq!(
        alice.call("listOwnSockets", &[]).await,
        ok(sockets(&[(alice.id.as_str(), &[])]))
    );

    let backend = support::Backend::start(hook_script).await;
    let slow = support::serve(&backend_config(&backend.url("/hooks"), raw)).await;
    let mut bob = Cs::login(slow.local_addr(), "bob").await;
    let answer = bob.call("roomJoin", &[json!("slow")]).await;
    assert_eq!(answer[0]["code"], "internalError", "{answer:?}");
    assert_eq!(
        bob.call("listOwnSockets", &[]).await,
        ok(sockets(&[(bob.id.as_str(), &[])]))
    );
}

// ---------------------------------------------------------------------------------------------
// Native clients and chat-service clients in one room

/// A chat-service room is the channel `chat-service:<room>`: a native client subscribed to it
/// gets a chat-service client's messages as publications whose offset is the message id; its
/// publications reach the chat-service client as `roomMessage` with the offset as id; its history
/// read gives the room's messages.
#[tokio::test]
async fn native_and_chat_service_clients_share_a_room() {
    let builder = dev()
        .chat_service(ChatServiceConfig::development())
        .upgrade_hook(|req: Arc<UpgradeRequest>| async move {
            UpgradeDecision::Accept(req.query_param("user").map(Identity::new))
        });
    let server = start(builder).await;
    let mut alice = Cs::login(server.local_addr(), "alice").await;
    assert_eq!(
        alice.call("roomCreate", &[json!("r"), json!(false)]).await,
        ok(Value::Null)
    );
    assert_eq!(alice.call("roomJoin", &[json!("r")]).await, ok(json!(1)));
    let mut bob = support::Client::connect(&format!("{}?user=bob", server.ws_url())).await;
    assert_eq!(bob.hello["user"], "bob");
    bob.request("subscribe", json!({"channel": "chat-service:r"}))
        .await
        .expect("a native client subscribes to the room's channel");
    // A user joining by any dialect is a user joining.
    assert_eq!(
        alice.other_user("roomUserJoined").await,
        [json!("r"), json!("bob")]
    );

    let sent = alice
        .call("roomMessage", &[json!("r"), json!({"textMessage": "hi"})])
        .await;
    let id = sent[1].as_u64().expect("a message id");
    let mine = alice.event("roomMessage").await;
    let publication = bob.push("pub").await;
    assert_eq!(publication["channel"], "chat-service:r");
    assert_eq!(publication["offset"], id, "the offset is the message id");
    let data = &publication["data"];
    assert_eq!(keys(data), ["author", "textMessage", "timestamp"]);
    assert_eq!(data["textMessage"], "hi");
    assert_eq!(data["author"], "alice");
    assert_eq!(data["timestamp"], mine[1]["timestamp"]);

    let published = bob
        .request(
            "publish",
            json!({"channel": "chat-service:r", "data": {"textMessage": "yo"}}),
        )
        .await
        .expect("a member publishes");
    let offset = published["offset"].as_u64().expect("an offset");
    assert_eq!(offset, id + 1);
    assert_eq!(
        alice.event("roomMessage").await,
        [json!("r"), json!({"textMessage": "yo", "id": offset})]
    );

    let history = bob
        .request("history", json!({"channel": "chat-service:r"}))
        .await
        .expect("a member reads the history");
    let mut natively: Vec<Value> = history["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| {
            let mut message = p["data"].clone();
            message["id"] = p["offset"].clone();
            message
        })
        .collect();
    natively.reverse();
    let recent = alice.call("roomRecentHistory", &[json!("r")]).await;
    assert_eq!(recent, ok(json!(natively)));
    assert_eq!(natively.len(), 2, "{natively:?}");
    assert_eq!(natively[1], mine[1]);

    // The server's own API takes bob's access away: his native subscription ends, and the
    // room's chat-service sockets hear that he left.
    let update = server
        .node()
        .rooms()
        .add_to_list(
            Actor::Server,
            "chat-service:r",
            RoomList::Blacklist,
            &["bob"],
        )
        .await
        .expect("the server blacklists bob");
    assert_eq!(update.removed, [Arc::<str>::from("bob")]);
    let unsubscribed = bob.push("unsubscribed").await;
    assert_eq!(unsubscribed["channel"], "chat-service:r");
    assert_eq!(
        alice.other_user("roomUserLeft").await,
        [json!("r"), json!("bob")]
    );
}

// ---------------------------------------------------------------------------------------------
// Two nodes on one Redis

/// A node in development mode on the Redis engine with key prefix `prefix`.
async fn redis_node(prefix: &str) -> RunningServer {
    redis_node_with_broker(prefix).await.0
}

/// A node as [`redis_node`] makes it, with its broker (to halt it as if the node died).
async fn redis_node_with_broker(prefix: &str) -> (RunningServer, Arc<plexus_redis::RedisBroker>) {
    let (engine, broker) =
        plexus_redis::redis_engine_with_broker(redis_config(&redis().url(), prefix))
            .await
            .expect("redis engine");
    let builder = plexus_server::Server::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .dev_mode()
        .engine(engine);
    let server = start_as_is(builder).await;
    wait_healthy(&server).await;
    (server, broker)
}

async fn two_nodes() -> (RunningServer, RunningServer) {
    let prefix = plexus_redis::testing::unique_prefix();
    (redis_node(&prefix).await, redis_node(&prefix).await)
}

/// Users on two nodes in one room see each other's messages with consecutive ids, in order, and
/// each other's `roomUserJoined` / `roomUserLeft`.
#[tokio::test]
async fn two_nodes_share_room_messages_and_user_lists() {
    let (a, b) = two_nodes().await;
    let mut alice = Cs::login(a.local_addr(), "alice").await;
    alice.call("roomCreate", &[json!("r"), json!(false)]).await;
    assert_eq!(alice.call("roomJoin", &[json!("r")]).await, ok(json!(1)));
    let mut bob = Cs::login(b.local_addr(), "bob").await;
    assert_eq!(bob.call("roomJoin", &[json!("r")]).await, ok(json!(1)));
    assert_eq!(
        alice.other_user("roomUserJoined").await,
        [json!("r"), json!("bob")]
    );
    assert_eq!(bob.userlist("r").await, ok(json!(["alice", "bob"])));

    let mut ids = Vec::new();
    for (n, (who, text)) in [(0, "one"), (1, "two"), (0, "three")]
        .into_iter()
        .enumerate()
    {
        let sender = if who == 0 { &mut alice } else { &mut bob };
        let answer = sender
            .call("roomMessage", &[json!("r"), json!({"textMessage": text})])
            .await;
        let id = answer[1].as_u64().expect("a message id");
        if n > 0 {
            assert_eq!(id, ids[n - 1] + 1, "consecutive ids");
        }
        ids.push(id);
    }
    for socket in [&mut alice, &mut bob] {
        for (n, (text, author)) in [("one", "alice"), ("two", "bob"), ("three", "alice")]
            .into_iter()
            .enumerate()
        {
            let got = socket.event("roomMessage").await;
            assert_eq!(got[0], "r");
            assert_eq!(
                (&got[1]["textMessage"], &got[1]["author"], &got[1]["id"]),
                (&json!(text), &json!(author), &json!(ids[n]))
            );
        }
    }

    assert_eq!(bob.call("roomLeave", &[json!("r")]).await, ok(json!(0)));
    assert_eq!(
        alice.other_user("roomUserLeft").await,
        [json!("r"), json!("bob")]
    );
    assert_eq!(alice.userlist("r").await, ok(json!(["alice"])));
}

/// serviceCluster.js "should recover from a dead instance" without `instanceRecovery`: a node
/// that dies takes its sockets out of their rooms by itself — once their presence expires, the
/// room hears `roomUserLeft` and its user list no longer names them.
#[tokio::test]
async fn a_dead_nodes_sockets_leave_their_rooms_by_themselves() {
    let prefix = plexus_redis::testing::unique_prefix();
    let a = redis_node(&prefix).await;
    let (doomed, doomed_engine) = redis_node_with_broker(&prefix).await;
    let mut alice = Cs::login(a.local_addr(), "alice").await;
    alice.call("roomCreate", &[json!("r"), json!(false)]).await;
    alice.call("roomJoin", &[json!("r")]).await;
    let mut bob = Cs::login(doomed.local_addr(), "bob").await;
    assert_eq!(bob.call("roomJoin", &[json!("r")]).await, ok(json!(1)));
    assert_eq!(
        alice.other_user("roomUserJoined").await,
        [json!("r"), json!("bob")]
    );

    // The node dies: nothing refreshes bob's presence, nothing says goodbye.
    std::mem::forget(bob);
    doomed_engine.halt();
    doomed.abort();
    let left = tokio::time::timeout(Duration::from_secs(20), alice.other_user("roomUserLeft"))
        .await
        .expect("the room hears that bob left, within the presence bound");
    assert_eq!(left, [json!("r"), json!("bob")]);
    assert_eq!(alice.userlist("r").await, ok(json!(["alice"])));
}

/// A user whose two sockets, on two nodes, leave a room at the same moment left it once: the
/// room hears one `roomUserLeft` (the presence store counts the user's sockets atomically), and
/// then dave's `roomUserJoined`, told after both leaves.
#[tokio::test]
async fn a_user_leaving_from_two_nodes_at_once_is_told_once() {
    let (a, b) = two_nodes().await;
    let mut alice = Cs::login(a.local_addr(), "alice").await;
    alice.call("roomCreate", &[json!("r"), json!(false)]).await;
    alice.call("roomJoin", &[json!("r")]).await;
    for round in 0..5 {
        let mut bob_a = Cs::login(a.local_addr(), "bob").await;
        let mut bob_b = Cs::login(b.local_addr(), "bob").await;
        bob_a.call("roomJoin", &[json!("r")]).await;
        bob_b.call("roomJoin", &[json!("r")]).await;
        assert_eq!(
            alice.other_user("roomUserJoined").await,
            [json!("r"), json!("bob")],
            "round {round}"
        );
        let (id_a, id_b) = (
            bob_a.emit("roomLeave", &[json!("r")]).await,
            bob_b.emit("roomLeave", &[json!("r")]).await,
        );
        let (left_a, left_b) = tokio::join!(bob_a.ack(id_a), bob_b.ack(id_b));
        // Each answer counts the user's sockets still in the room when it was read: the
        // second leave's 0, the first's 1 or (read after both) 0.
        let mut counts = [left_a[1].as_u64(), left_b[1].as_u64()];
        counts.sort();
        assert!(
            counts == [Some(0), Some(1)] || counts == [Some(0), Some(0)],
            "round {round}: {counts:?}"
        );

        let mut dave = Cs::login(b.local_addr(), "dave").await;
        dave.call("roomJoin", &[json!("r")]).await;
        assert_eq!(
            alice.other_user("roomUserJoined").await,
            [json!("r"), json!("dave")],
            "round {round}"
        );
        let bob_left = alice
            .unread("roomUserLeft")
            .iter()
            .filter(|a| a[1] == "bob")
            .count();
        assert_eq!(bob_left, 1, "round {round}: roomUserLeft for bob, once");
        alice.buffered.clear();
        dave.call("roomLeave", &[json!("r")]).await;
        assert_eq!(
            alice.other_user("roomUserLeft").await,
            [json!("r"), json!("dave")]
        );
        alice.buffered.clear();
    }
}

/// serviceCluster.js "should remove other instances' sockets from a channel": a blacklisting by
/// the owner on node A removes the user's sockets on both nodes at once (`roomAccessRemoved`),
/// and they get no further `roomMessage`.
#[tokio::test]
async fn a_blacklisting_on_one_node_removes_the_member_on_both() {
    let (a, b) = two_nodes().await;
    let mut alice = Cs::login(a.local_addr(), "alice").await;
    alice.call("roomCreate", &[json!("r"), json!(false)]).await;
    alice.call("roomJoin", &[json!("r")]).await;
    let mut bob_a = Cs::login(a.local_addr(), "bob").await;
    let mut bob_b = Cs::login(b.local_addr(), "bob").await;
    let mut carol = Cs::login(b.local_addr(), "carol").await;
    assert_eq!(bob_a.call("roomJoin", &[json!("r")]).await, ok(json!(1)));
    assert_eq!(bob_b.call("roomJoin", &[json!("r")]).await, ok(json!(2)));
    assert_eq!(carol.call("roomJoin", &[json!("r")]).await, ok(json!(1)));

    assert_eq!(alice.blacklist("r", "bob").await, ok(Value::Null));
    for bob in [&mut bob_a, &mut bob_b] {
        assert_eq!(bob.event("roomAccessRemoved").await, [json!("r")]);
    }
    for member in [&mut alice, &mut carol] {
        assert_eq!(
            member.other_user("roomUserLeft").await,
            [json!("r"), json!("bob")]
        );
    }

    let answer = alice
        .call(
            "roomMessage",
            &[json!("r"), json!({"textMessage": "hello"})],
        )
        .await;
    let id = answer[1].clone();
    // Both nodes delivered the message (alice on A, carol on B) ...
    for member in [&mut alice, &mut carol] {
        let got = member.event("roomMessage").await;
        assert_eq!((&got[0], &got[1]["id"]), (&json!("r"), &id));
    }
    // ... and bob's sockets, asked after that, got none of it.
    for bob in [&mut bob_a, &mut bob_b] {
        assert_eq!(
            bob.call("roomMessage", &[json!("r"), json!({"textMessage": "x"})])
                .await,
            refused("Not joined to room r")
        );
        assert_eq!(
            bob.call("roomJoin", &[json!("r")]).await,
            refused("Action is not allowed")
        );
        assert!(bob.unread("roomMessage").is_empty(), "{:?}", bob.buffered);
    }
}

/// A direct message from node A reaches the user's sockets on node B, and `listOwnSockets`
/// lists a user's sockets on both nodes with their rooms, asked from either.
#[tokio::test]
async fn direct_messages_and_own_sockets_across_nodes() {
    let (a, b) = two_nodes().await;
    let mut alice = Cs::login(a.local_addr(), "alice").await;
    let mut bob_a = Cs::login(a.local_addr(), "bob").await;
    let mut bob_b = Cs::login(b.local_addr(), "bob").await;
    let answer = alice
        .call(
            "directMessage",
            &[json!("bob"), json!({"textMessage": "psst"})],
        )
        .await;
    assert_eq!(answer[0], Value::Null, "{answer:?}");
    let message = answer[1].clone();
    assert_eq!(keys(&message), ["author", "textMessage", "timestamp"]);
    assert_eq!(message["author"], "alice");
    for bob in [&mut bob_a, &mut bob_b] {
        assert_eq!(
            bob.event("directMessage").await,
            std::slice::from_ref(&message)
        );
    }

    alice.call("roomCreate", &[json!("r"), json!(false)]).await;
    assert_eq!(bob_b.call("roomJoin", &[json!("r")]).await, ok(json!(1)));
    let expected = ok(sockets(&[
        (bob_a.id.as_str(), &[]),
        (bob_b.id.as_str(), &["r"]),
    ]));
    assert_eq!(bob_a.call("listOwnSockets", &[]).await, expected);
    assert_eq!(bob_b.call("listOwnSockets", &[]).await, expected);
}

// ---------------------------------------------------------------------------------------------
// Disconnecting a user everywhere

/// api.js "should be able to disconnect all user's sockets" through the HTTP API's `disconnect`:
/// every socket of the user gets the namespace's DISCONNECT, and the room's other members
/// A development-mode server with chat-service and the HTTP API (`support::API_KEY`).
async fn with_api() -> RunningServer {
    let builder = dev()
        .chat_service(ChatServiceConfig::development())
        .endpoints(HttpEndpoints {
            api: Some(ApiOptions {
                key: ApiKey::Required(support::API_KEY.into()),
                ..ApiOptions::default()
            }),
            ..HttpEndpoints::default()
        });
    start(builder).await
}

/// `roomUserLeft`.
#[tokio::test]
async fn the_http_api_disconnects_every_socket_of_a_user() {
    let server = with_api().await;
    let addr = server.local_addr();
    let mut bob = Cs::login(addr, "bob").await;
    bob.call("roomCreate", &[json!("r"), json!(false)]).await;
    bob.call("roomJoin", &[json!("r")]).await;
    let mut alice1 = Cs::login(addr, "alice").await;
    let mut alice2 = Cs::login(addr, "alice").await;
    assert_eq!(alice1.call("roomJoin", &[json!("r")]).await, ok(json!(1)));
    assert_eq!(alice2.call("roomJoin", &[json!("r")]).await, ok(json!(2)));
    assert_eq!(
        bob.other_user("roomUserJoined").await,
        [json!("r"), json!("alice")]
    );

    support::api_ok(&server, "disconnect", json!({"user": "alice"})).await;
    alice1.disconnected().await;
    alice2.disconnected().await;
    assert_eq!(
        bob.other_user("roomUserLeft").await,
        [json!("r"), json!("alice")]
    );
    assert_eq!(bob.userlist("r").await, ok(json!(["bob"])));
}

/// `chat_exec` over HTTP is chat-service's `execUserCommand`: a command as a user with the
/// socket's checks and notifications, echoes to the user's sockets, bypasses, a message without
/// an author, and chat-service's errors as API errors with their reason.
#[tokio::test]
async fn the_http_api_runs_chat_service_commands_as_a_user() {
    let server = with_api().await;
    let addr = server.local_addr();
    let mut alice = Cs::login(addr, "alice").await;
    let mut bob = Cs::login(addr, "bob").await;

    // As alice: the room is hers, her socket hears the echo of a join made for it.
    let created = support::api_ok(
        &server,
        "chat_exec",
        json!({"user": "alice", "command": "roomCreate", "args": ["r", false]}),
    )
    .await;
    assert_eq!(created, json!({"results": [null]}));
    let joined = support::api_ok(
        &server,
        "chat_exec",
        json!({"user": "alice", "id": alice.id, "command": "roomJoin", "args": ["r"]}),
    )
    .await;
    assert_eq!(joined, json!({"results": [1]}));
    assert_eq!(
        alice.event("roomJoinedEcho").await,
        [json!("r"), json!(alice.id), json!(1)]
    );
    assert_eq!(alice.userlist("r").await, ok(json!(["alice"])));

    // The rules hold for a user, not with `bypass_permissions`.
    let refused = support::api_ok(
        &server,
        "chat_exec",
        json!({"user": "bob", "command": "roomMessage", "args": ["r", {"textMessage": "hi"}]}),
    )
    .await;
    assert_eq!(
        refused,
        json!({"error": {"name": "ChatServiceError", "code": "notJoined", "args": ["r"],
                         "message": "Not joined to room r"}})
    );
    let sent = support::api_ok(
        &server,
        "chat_exec",
        json!({"user": "bob", "command": "roomMessage", "bypass_permissions": true,
               "args": ["r", {"textMessage": "hi"}]}),
    )
    .await;
    let id = sent["results"][0].as_u64().expect("a message id");
    let got = alice.event("roomMessage").await;
    assert_eq!(
        (&got[1]["textMessage"], &got[1]["author"], &got[1]["id"]),
        (&json!("hi"), &json!("bob"), &json!(id))
    );
    // No user: a room message with no author, only with `bypass_permissions`.
    support::api_ok(
        &server,
        "chat_exec",
        json!({"command": "roomMessage", "bypass_permissions": true,
               "args": ["r", {"textMessage": "system"}]}),
    )
    .await;
    let got = alice.event("roomMessage").await;
    assert_eq!(got[1]["textMessage"], "system");
    assert!(got[1].get("author").is_none(), "{}", got[1]);

    // Direct messages reach every socket of both users (the echo too).
    support::api_ok(
        &server,
        "chat_exec",
        json!({"user": "bob", "command": "directMessage",
               "args": ["alice", {"textMessage": "psst"}]}),
    )
    .await;
    assert_eq!(alice.event("directMessage").await[0]["textMessage"], "psst");
    assert_eq!(bob.event("directMessageEcho").await[0], "alice");

    for (body, code) in [
        (
            json!({"user": "bob", "command": "noSuchCommand"}),
            "noCommand",
        ),
        (
            json!({"user": "bob", "command": "roomCreate"}),
            "wrongArgumentsCount",
        ),
        (
            json!({"user": "bob", "command": "roomCreate", "args": ["r", false]}),
            "roomExists",
        ),
        (
            json!({"user": "bob", "command": "roomDelete", "args": ["r"]}),
            "notAllowed",
        ),
        (
            json!({"user": "bob", "id": "/chat-service#nope", "command": "roomJoin", "args": ["r"]}),
            "invalidSocket",
        ),
        (json!({"command": "roomJoin", "args": ["r"]}), "noLogin"),
    ] {
        let answer = support::api_ok(&server, "chat_exec", body.clone()).await;
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        assert!(answer.get("results").is_none(), "{body}: {answer}");
    }
    // Not a command: the API's own 400.
    let (got, answer) = support::api(&server, "chat_exec", json!({"command": 7})).await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], 104, "{answer}");
}

/// serviceCluster.js "should disconnect users sockets across all instances"
/// (`Node::disconnect_user` on node A reaches the user's socket on node B).
#[tokio::test]
async fn disconnecting_a_user_reaches_its_sockets_on_every_node() {
    let (a, b) = two_nodes().await;
    let mut carol = Cs::login(a.local_addr(), "carol").await;
    carol.call("roomCreate", &[json!("r"), json!(false)]).await;
    carol.call("roomJoin", &[json!("r")]).await;
    let mut alice_a = Cs::login(a.local_addr(), "alice").await;
    let mut alice_b = Cs::login(b.local_addr(), "alice").await;
    alice_b.call("roomJoin", &[json!("r")]).await;
    assert_eq!(
        carol.other_user("roomUserJoined").await,
        [json!("r"), json!("alice")]
    );
    a.node()
        .disconnect_user("alice", CloseCode::DISCONNECTED, "bye")
        .await
        .expect("disconnects");
    alice_a.disconnected().await;
    alice_b.disconnected().await;
    assert_eq!(
        carol.other_user("roomUserLeft").await,
        [json!("r"), json!("alice")]
    );
}
