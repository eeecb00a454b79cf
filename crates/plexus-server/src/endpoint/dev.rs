//! Development mode's endpoints: a raw echo at `/echo` and an auto-dispatch demo at `/plezi`
//! that exercises every addressing form (`docs/endpoints.md`, "Development mode").

use super::{Endpoint, Socket};
use plexus_core::ConnId;
use serde_json::{Map, Value, json};

/// `(path, endpoint)` of development mode.
pub(crate) fn development() -> Vec<(&'static str, Endpoint)> {
    vec![("/echo", Endpoint::echo("echo")), ("/plezi", plezi())]
}

fn field<'a>(message: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    message.get(name).and_then(Value::as_str)
}

fn failed(message: impl std::fmt::Display) -> Option<Value> {
    Some(json!({"event": "error", "message": message.to_string()}))
}

/// The auto-dispatch demo: what Plezi 0.12's self-test did, as events.
fn plezi() -> Endpoint {
    Endpoint::dispatch("plezi")
        .on_open(|ws: Socket| async move {
            ws.send_json(&json!({"event": "connected", "id": ws.id().to_string()}));
        })
        .on("echo", |_ws, message| async move {
            Some(Value::Object(message))
        })
        .on("whoami", |ws, _| async move {
            Some(json!({"event": "whoami", "id": ws.id().to_string(), "user": ws.user()}))
        })
        .on("broadcast", |ws, message| async move {
            match ws
                .broadcast(Some("broadcast"), Value::Object(message))
                .await
            {
                Ok(()) => None,
                Err(e) => failed(e),
            }
        })
        .on("multicast", |ws, message| async move {
            match ws
                .multicast(Some("multicast"), Value::Object(message))
                .await
            {
                Ok(()) => None,
                Err(e) => failed(e),
            }
        })
        .on("unicast", |ws, message| async move {
            let Some(target) = field(&message, "to").and_then(|t| t.parse::<ConnId>().ok()) else {
                return failed("`to` must be a connection id");
            };
            match ws
                .unicast(target, Some("unicast"), Value::Object(message))
                .await
            {
                Ok(delivered) => Some(json!({"event": "unicast_result", "delivered": delivered})),
                Err(e) => failed(e),
            }
        })
        .on("subscribe", |ws, message| async move {
            let Some(channel) = field(&message, "channel") else {
                return failed("`channel` is required");
            };
            match ws.subscribe(channel).await {
                Ok(_) => Some(json!({"event": "subscribed", "channel": channel})),
                Err(e) => failed(e),
            }
        })
        .on("register", |ws, message| async move {
            let Some(identity) = field(&message, "identity") else {
                return failed("`identity` is required");
            };
            let lifetime = message
                .get("lifetime")
                .and_then(Value::as_u64)
                .map(std::time::Duration::from_secs);
            let max = message
                .get("max_connections")
                .and_then(Value::as_u64)
                .map(|m| m as usize);
            match ws.register_as(identity, lifetime, max).await {
                Ok(()) => Some(json!({"event": "registered", "identity": identity})),
                Err(e) => failed(e),
            }
        })
        .on("notify", |ws, message| async move {
            let Some(identity) = field(&message, "identity") else {
                return failed("`identity` is required");
            };
            let event = field(&message, "notification").unwrap_or("notification");
            let data = message.get("data").cloned().unwrap_or(Value::Null);
            match ws.notify(identity, Some(event), data).await {
                Ok(result) => Some(json!({"event": "notified", "result": result})),
                Err(e) => failed(e),
            }
        })
        .on("publish", |ws, message| async move {
            let Some(channel) = field(&message, "channel") else {
                return failed("`channel` is required");
            };
            let data = message.get("data").cloned().unwrap_or(Value::Null);
            match ws.publish(channel, data).await {
                Ok(position) => Some(json!({"event": "published", "offset": position.offset})),
                Err(e) => failed(e),
            }
        })
}
