//! chat-service's hooks as HTTP requests to the application's backend (the standalone
//! server's `[backend] chat_service_url`, `[chat_service] backend_hooks`): each hook the
//! configuration names is a POST of `{"hook", …}` answered `{"result": …}` or
//! `{"error": {"code", "message", "data"?}}` (`docs/chat-service.md`, "Hooks").

use super::hooks::{ChatHooks, ConnectInfo, DisconnectInfo, ExecInfo, JoinInfo};
use crate::backend::Backend;
use async_trait::async_trait;
use axum::http::Uri;
use plexus_core::Error;
use plexus_protocol::chatservice::{COMMANDS, ChatError, ErrorKind};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The hooks a backend may take besides `<command>Before` / `<command>After`.
pub const OTHER_HOOKS: [&str; 5] = [
    "onDisconnect",
    "onJoin",
    "onLeave",
    "roomMessagesChecker",
    "directMessagesChecker",
];

/// Whether `name` is a chat-service hook a backend may take.
pub fn is_hook(name: &str) -> bool {
    OTHER_HOOKS.contains(&name)
        || COMMANDS.iter().any(|c| {
            name.strip_prefix(c.name)
                .is_some_and(|rest| rest == "Before" || rest == "After")
        })
}

/// The configured hooks, sent to one URL.
pub struct BackendChatHooks {
    backend: Arc<Backend>,
    url: Uri,
    hooks: BTreeSet<String>,
}

impl BackendChatHooks {
    pub fn new(backend: Arc<Backend>, url: Uri, hooks: BTreeSet<String>) -> BackendChatHooks {
        BackendChatHooks {
            backend,
            url,
            hooks,
        }
    }

    fn has(&self, hook: &str) -> bool {
        self.hooks.contains(hook)
    }

    async fn request(&self, body: Value) -> Result<Value, ChatError> {
        self.backend
            .chat_hook(&self.url, &body)
            .await
            .map_err(backend_error)
    }
}

/// A backend's refusal as chat-service's error: `data` may name chat-service's code and
/// arguments (`{"code": "notAllowed", "args": []}`); otherwise the message is an
/// `internalError`, as chat-service converts errors of its own kind.
fn backend_error(e: Error) -> ChatError {
    let data = e
        .data
        .as_ref()
        .and_then(|d| d.as_json_str())
        .and_then(|d| serde_json::from_str::<Value>(d).ok());
    if let Some(data) = &data
        && let Some(kind) = data
            .get("code")
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
    ChatError::new(ErrorKind::InternalError, vec![json!(e.message)])
}

fn exec_json(exec: &ExecInfo) -> Value {
    json!({
        "command": exec.command,
        "user": exec.user.as_deref(),
        "id": exec.id,
        "args": exec.args,
        "rest_args": exec.rest_args,
        "bypass_permissions": exec.bypass_permissions,
        "is_local_call": exec.is_local_call,
        "error": exec.error.as_ref().map(ChatError::raw),
        "results": exec.results,
    })
}

/// A `Before`/`After` answer: `{"results": [...]}` replaces (or short-circuits), `{"args":
/// [...]}` (before hooks) rewrites the arguments, `{}` changes nothing.
fn apply(answer: Value, exec: &mut ExecInfo) -> Option<Vec<Value>> {
    if let Some(args) = answer.get("args").and_then(Value::as_array) {
        exec.args = args.clone();
    }
    answer
        .get("results")
        .and_then(Value::as_array)
        .cloned()
        .filter(|r| !r.is_empty())
}

#[async_trait]
impl ChatHooks for BackendChatHooks {
    async fn on_connect(&self, _info: &ConnectInfo) -> Result<Option<(String, Value)>, ChatError> {
        // The standalone server logs sockets in with its connection's identity: the `connect`
        // hook (or a token) is the backend's `onConnect`.
        Ok(None)
    }

    async fn before(&self, exec: &mut ExecInfo) -> Result<Option<Vec<Value>>, ChatError> {
        let hook = format!("{}Before", exec.command);
        if !self.has(&hook) {
            return Ok(None);
        }
        let answer = self
            .request(json!({"hook": hook, "exec": exec_json(exec)}))
            .await?;
        Ok(apply(answer, exec))
    }

    async fn after(&self, exec: &mut ExecInfo) -> Result<Option<Vec<Value>>, ChatError> {
        let hook = format!("{}After", exec.command);
        if !self.has(&hook) {
            return Ok(None);
        }
        let answer = self
            .request(json!({"hook": hook, "exec": exec_json(exec)}))
            .await?;
        Ok(apply(answer, exec))
    }

    async fn on_disconnect(&self, info: &DisconnectInfo) {
        if self.has("onDisconnect") {
            let body = json!({
                "hook": "onDisconnect",
                "id": info.id,
                "user": &*info.user,
                "nconnected": info.nconnected,
                "rooms_removed": info.rooms_removed,
                "joined_sockets": info.joined_sockets,
            });
            let _ = self.request(body).await;
        }
    }

    async fn on_join(&self, info: &JoinInfo) -> Result<(), ChatError> {
        if !self.has("onJoin") {
            return Ok(());
        }
        let body = json!({"hook": "onJoin", "id": info.id, "user": &*info.user, "room": info.room, "njoined": info.njoined});
        self.request(body).await.map(|_| ())
    }

    async fn on_leave(&self, info: &JoinInfo) {
        if self.has("onLeave") {
            let body = json!({"hook": "onLeave", "id": info.id, "user": &*info.user, "room": info.room, "njoined": info.njoined});
            let _ = self.request(body).await;
        }
    }

    fn room_messages_checker(&self) -> bool {
        self.has("roomMessagesChecker")
    }

    async fn check_room_message(&self, message: &Value) -> Result<(), ChatError> {
        self.request(json!({"hook": "roomMessagesChecker", "message": message}))
            .await
            .map(|_| ())
    }

    fn direct_messages_checker(&self) -> bool {
        self.has("directMessagesChecker")
    }

    async fn check_direct_message(&self, message: &Value) -> Result<(), ChatError> {
        self.request(json!({"hook": "directMessagesChecker", "message": message}))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_names() {
        for name in [
            "roomJoinBefore",
            "roomMessageAfter",
            "onJoin",
            "roomMessagesChecker",
        ] {
            assert!(is_hook(name), "{name}");
        }
        for name in [
            "roomJoin",
            "roomJoinBeforeX",
            "onConnect",
            "teleportBefore",
            "",
        ] {
            assert!(!is_hook(name), "{name}");
        }
    }

    #[test]
    fn refusals_keep_chat_service_codes() {
        let mut e = Error::new(plexus_core::ErrorCode(1001), "nope");
        e.data = plexus_core::Payload::json(&json!({"code": "notAllowed", "args": []})).ok();
        assert_eq!(
            backend_error(e),
            ChatError::new(ErrorKind::NotAllowed, vec![])
        );
        let e = Error::new(plexus_core::ErrorCode(1001), "custom reason");
        assert_eq!(
            backend_error(e),
            ChatError::new(ErrorKind::InternalError, vec![json!("custom reason")])
        );
    }
}
