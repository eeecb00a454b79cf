//! An endpoint of the standalone server (`[[endpoints]]`): its handlers are HTTP requests to
//! the application's backend (`[backend] endpoints_url`), for the hooks the endpoint names.
//! Each is a POST of `{"hook", "endpoint", "conn", "user", …}` answered `{"result": …}`
//! (`docs/endpoints.md`, "Backend hooks").

use super::{Endpoint, EndpointLimits, RawMessage, Socket, UnknownEvent};
use crate::backend::Backend;
use axum::http::Uri;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The hooks an endpoint may send to the backend.
pub const HOOKS: [&str; 6] = [
    "pre_connect",
    "open",
    "message",
    "event",
    "close",
    "shutdown",
];

/// How an endpoint of the configuration behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Raw: messages go to the `message` hook.
    Raw,
    /// Raw, writing every message back (no hook needed).
    Echo,
    /// JSON auto-dispatch: events go to the `event` hook.
    Dispatch,
}

/// An endpoint as the configuration describes it, checked.
#[derive(Clone, Debug)]
pub struct EndpointSpec {
    pub path: String,
    pub name: String,
    pub kind: Kind,
    pub unknown: UnknownEvent,
    pub hooks: BTreeSet<String>,
    pub limits: EndpointLimits,
}

/// What a backend hook may answer: messages to write to the connection, a reply (auto-dispatch:
/// written as a handler's result), that the event is unknown, or a refusal (`pre_connect`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HookResult {
    send: Vec<Send>,
    reply: Option<Value>,
    unknown: bool,
    refuse: Option<Refuse>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Refuse {
    status: u16,
    #[serde(default)]
    reason: String,
}

/// One message to write: `{"text": …}`, `{"binary": <base64>}` or `{"json": …}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Send {
    text: Option<String>,
    binary: Option<String>,
    json: Option<Value>,
}

struct Hooks {
    backend: Arc<Backend>,
    url: Uri,
    endpoint: String,
}

impl Hooks {
    /// POSTs one hook; a failure (the backend down, slow or answering nonsense) is logged and
    /// counted by the backend, and taken as an empty answer.
    async fn call(
        &self,
        hook: &str,
        socket: Option<&Socket>,
        mut body: Map<String, Value>,
    ) -> HookResult {
        body.insert("hook".into(), json!(hook));
        body.insert("endpoint".into(), json!(self.endpoint));
        if let Some(socket) = socket {
            body.insert("conn".into(), json!(socket.id().to_string()));
            body.insert("user".into(), json!(socket.user()));
        }
        match self.backend.endpoint_hook(&self.url, &Value::Object(body)).await {
            Ok(result) => serde_json::from_value(result).unwrap_or_else(|e| {
                tracing::warn!(hook, endpoint = %self.endpoint, "unexpected endpoint hook result: {e}");
                HookResult::default()
            }),
            Err(e) => {
                tracing::debug!(hook, endpoint = %self.endpoint, error = %e, "endpoint hook failed");
                HookResult::default()
            }
        }
    }
}

/// Writes what a hook asked for.
fn deliver(socket: &Socket, result: &HookResult) {
    for send in &result.send {
        if let Some(text) = &send.text {
            socket.send_text(text.clone());
        }
        if let Some(binary) = &send.binary
            && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(binary)
        {
            socket.send_binary(bytes);
        }
        if let Some(value) = &send.json {
            socket.send_json(value);
        }
    }
}

/// The endpoint a spec describes; its hooks go to `backend` at `url`.
pub fn endpoint(spec: &EndpointSpec, backend: Option<(Arc<Backend>, Uri)>) -> Endpoint {
    let mut endpoint = match spec.kind {
        Kind::Echo => Endpoint::echo(spec.name.clone()),
        Kind::Raw => Endpoint::raw(spec.name.clone()),
        Kind::Dispatch => Endpoint::dispatch(spec.name.clone()).unknown(spec.unknown),
    }
    .limits(spec.limits.clone());
    let Some((backend, url)) = backend else {
        return endpoint;
    };
    let hooks = Arc::new(Hooks {
        backend,
        url,
        endpoint: spec.name.clone(),
    });
    let has = |name: &str| spec.hooks.contains(name);
    if has("pre_connect") {
        let hooks = hooks.clone();
        endpoint = endpoint.pre_connect(move |request| {
            let hooks = hooks.clone();
            async move {
                let body = json!({
                    "path": request.path,
                    "query": request.query,
                    "headers": request.headers,
                    "peer": request.peer.map(|p| p.to_string()),
                });
                let Value::Object(body) = body else {
                    unreachable!()
                };
                match hooks.call("pre_connect", None, body).await.refuse {
                    Some(refuse) => Err((refuse.status, refuse.reason)),
                    None => Ok(()),
                }
            }
        });
    }
    for (name, set) in [("open", 0), ("close", 1), ("shutdown", 2)] {
        if !has(name) {
            continue;
        }
        let hooks = hooks.clone();
        let handler = move |socket: Socket| {
            let hooks = hooks.clone();
            async move {
                let result = hooks.call(name, Some(&socket), Map::new()).await;
                deliver(&socket, &result);
            }
        };
        endpoint = match set {
            0 => endpoint.on_open(handler),
            1 => endpoint.on_close(handler),
            _ => endpoint.on_shutdown(handler),
        };
    }
    if has("message") && spec.kind == Kind::Raw {
        let hooks = hooks.clone();
        endpoint = endpoint.on_message(move |socket, message| {
            let hooks = hooks.clone();
            async move {
                let mut body = Map::new();
                match message {
                    RawMessage::Text(text) => body.insert("text".into(), json!(text)),
                    RawMessage::Binary(bytes) => body.insert(
                        "binary".into(),
                        json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
                    ),
                };
                let result = hooks.call("message", Some(&socket), body).await;
                deliver(&socket, &result);
            }
        });
    }
    if has("event") && spec.kind == Kind::Dispatch {
        let unknown = spec.unknown;
        let hooks = hooks.clone();
        endpoint = endpoint.fallback(move |socket, message| {
            let hooks = hooks.clone();
            async move {
                let mut body = Map::new();
                body.insert(
                    "event".into(),
                    message.get("event").cloned().unwrap_or(Value::Null),
                );
                body.insert("message".into(), Value::Object(message.clone()));
                let result = hooks.call("event", Some(&socket), body).await;
                deliver(&socket, &result);
                if result.unknown {
                    return match unknown {
                        UnknownEvent::NotFound => {
                            Some(Value::String(plexus_protocol::plezi::not_found(&message)))
                        }
                        UnknownEvent::Close => {
                            socket.close(plexus_core::CloseCode::BAD_FRAME, "unknown event");
                            None
                        }
                    };
                }
                result.reply
            }
        });
    }
    endpoint
}
