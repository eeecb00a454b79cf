//! The application's side of the chat service: chat-service's hooks (`hooks-interface.js`) as
//! one trait. Every method has a default that does what chat-service does without the hook.

use async_trait::async_trait;
use plexus_protocol::chatservice::ChatError;
use serde_json::Value;
use std::sync::Arc;

/// A socket logging in (`onConnect(server, id)`).
#[derive(Clone, Debug)]
pub struct ConnectInfo {
    /// The socket id (`/chat-service#<sid>` for socket.io-client 2).
    pub id: String,
    /// The handshake's query parameters.
    pub query: Vec<(String, String)>,
    /// The connection's identity (a token's or an auth hook's user), if any.
    pub user: Option<Arc<str>>,
}

/// A command's execution (`ExecInfo`): hooks may read everything and rewrite `args`.
#[derive(Clone, Debug)]
pub struct ExecInfo {
    pub command: &'static str,
    /// The user running it; `None` for a server-side call without a user.
    pub user: Option<Arc<str>>,
    /// The socket it came from; `None` for a server-side call.
    pub id: Option<String>,
    /// The arguments the command takes (hooks may change them in a `before` hook).
    pub args: Vec<Value>,
    /// Extra arguments the client sent.
    pub rest_args: Vec<Value>,
    pub bypass_permissions: bool,
    pub bypass_hooks: bool,
    pub is_local_call: bool,
    /// After the command: its error, if it failed.
    pub error: Option<ChatError>,
    /// After the command: its results.
    pub results: Vec<Value>,
}

/// A socket that disconnected (`onDisconnect(server, {id, nconnected, roomsRemoved,
/// joinedSockets})`).
#[derive(Clone, Debug)]
pub struct DisconnectInfo {
    pub id: String,
    pub user: Arc<str>,
    /// The user's sockets still connected.
    pub nconnected: usize,
    pub rooms_removed: Vec<String>,
    /// For each room removed, the user's sockets still in it.
    pub joined_sockets: Vec<usize>,
}

/// A socket that joined or left a room (`onJoin` / `onLeave(server, {id, roomName,
/// njoined})`).
#[derive(Clone, Debug)]
pub struct JoinInfo {
    pub id: String,
    pub user: Arc<str>,
    pub room: String,
    /// The user's sockets in the room now.
    pub njoined: usize,
}

/// chat-service's hooks. Hooks run on the socket's task, in command order; a hook that fails
/// fails its command with its error (`internalError` for errors of its own).
#[async_trait]
pub trait ChatHooks: Send + Sync + 'static {
    /// `onConnect`: the user name (and auth data sent back in `loginConfirmed`) for a socket,
    /// or an error (`loginRejected`). The default: the connection's user, or `noLogin`.
    async fn on_connect(&self, info: &ConnectInfo) -> Result<Option<(String, Value)>, ChatError> {
        let _ = info;
        Ok(None)
    }

    /// `<command>Before`: results short-circuit the command (and are its answer); an error
    /// stops it.
    async fn before(&self, exec: &mut ExecInfo) -> Result<Option<Vec<Value>>, ChatError> {
        let _ = exec;
        Ok(None)
    }

    /// `<command>After`, run after every command (`exec.error` says whether it failed): results
    /// replace the command's.
    async fn after(&self, exec: &mut ExecInfo) -> Result<Option<Vec<Value>>, ChatError> {
        let _ = exec;
        Ok(None)
    }

    /// `onDisconnect`.
    async fn on_disconnect(&self, info: &DisconnectInfo) {
        let _ = info;
    }

    /// `onJoin`: an error rolls the join back.
    async fn on_join(&self, info: &JoinInfo) -> Result<(), ChatError> {
        let _ = info;
        Ok(())
    }

    /// `onLeave` (after a leave, a disconnect, or a removal).
    async fn on_leave(&self, info: &JoinInfo) {
        let _ = info;
    }

    /// `roomMessagesChecker`: `Some` when the application checks room messages itself — any
    /// object is then a message, if the checker accepts it.
    fn room_messages_checker(&self) -> bool {
        false
    }

    async fn check_room_message(&self, message: &Value) -> Result<(), ChatError> {
        let _ = message;
        Ok(())
    }

    /// `directMessagesChecker`, as [`ChatHooks::room_messages_checker`].
    fn direct_messages_checker(&self) -> bool {
        false
    }

    async fn check_direct_message(&self, message: &Value) -> Result<(), ChatError> {
        let _ = message;
        Ok(())
    }
}
