//! Plezi's identities (`register_as`, `notify`) on Plexus's durable mailboxes: a connection
//! registers as an identity for a lifetime; a notification to a registered identity is kept in
//! the identity's mailbox (bounded, expiring with the identity) and delivered to its newest
//! `max_connections` registered connections, on any node — at once when one of them is
//! connected, or when a connection registers again.
//!
//! State in the engine: the mailbox of `\u{1}identity:<name>` (registered = the mailbox exists;
//! Plezi's "placeholder" element) and the key `identity:<name>` holding the registered
//! connections, newest first, with the identity's lifetime as its expiry.

use super::{Socket, emit};
use plexus_core::engine::Mail;
use plexus_core::{ConnId, Error, ErrorCode, Node, Payload};
use serde_json::{Value, json};
use std::time::Duration;

/// Plezi's default lifetime: 7 days.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(604_800);
/// Registrations one identity keeps at most, whatever `max_connections` asks.
pub const MAX_CONNECTIONS: usize = 1000;
/// The longest identity name, in characters.
pub const MAX_NAME_CHARS: usize = 255;

fn mailbox(identity: &str) -> String {
    format!("\u{1}identity:{identity}")
}

fn key(identity: &str) -> String {
    format!("identity:{identity}")
}

fn engine_error(e: plexus_core::EngineError) -> Error {
    match e {
        plexus_core::EngineError::Limit(m) => Error::new(ErrorCode::LIMIT_EXCEEDED, m),
        other => Error::internal(other.to_string()),
    }
}

fn check_name(identity: &str) -> Result<(), Error> {
    if identity.is_empty() || identity.chars().count() > MAX_NAME_CHARS {
        return Err(Error::bad_request(format!(
            "an identity is 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if identity.chars().any(char::is_control) {
        return Err(Error::bad_request("control character in an identity"));
    }
    Ok(())
}

/// The registered connections of `identity`, newest first (none once it expired).
async fn registered(node: &Node, identity: &str) -> Result<Vec<ConnId>, Error> {
    let Some(bytes) = node
        .engine()
        .kv
        .get(&key(identity))
        .await
        .map_err(engine_error)?
    else {
        return Ok(Vec::new());
    };
    let ids: Vec<String> = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
}

/// Registers connection `conn` as `identity` for `lifetime` (default 7 days, clamped to at
/// least `Limits::identity_min_lifetime`, Plezi's 10 minutes); only the newest `max_connections` registrations (at least 1) receive.
/// Then delivers what waited in the identity's mailbox.
pub async fn register_as(
    node: &Node,
    conn: ConnId,
    identity: &str,
    lifetime: Option<Duration>,
    max_connections: Option<usize>,
) -> Result<(), Error> {
    check_name(identity)?;
    let lifetime = lifetime
        .unwrap_or(DEFAULT_LIFETIME)
        .max(node.limits().identity_min_lifetime);
    let max = max_connections.unwrap_or(1).clamp(1, MAX_CONNECTIONS);
    let mut conns = registered(node, identity).await?;
    conns.retain(|c| *c != conn);
    conns.insert(0, conn);
    conns.truncate(max);
    let ids: Vec<String> = conns.iter().map(ToString::to_string).collect();
    let value = serde_json::to_vec(&ids).expect("ids serialize");
    node.engine()
        .kv
        .set(&key(identity), value.into(), Some(lifetime))
        .await
        .map_err(engine_error)?;
    node.engine()
        .mailbox
        .register(&mailbox(identity), lifetime)
        .await
        .map_err(engine_error)?;
    deliver(node, identity, &conns).await
}

/// Whether `identity` is registered (and not expired).
pub async fn is_registered(node: &Node, identity: &str) -> Result<bool, Error> {
    check_name(identity)?;
    node.engine()
        .mailbox
        .is_registered(&mailbox(identity))
        .await
        .map_err(engine_error)
}

/// Sends `event` with `data` to `identity` (Plezi `notify`): false when the identity is not
/// registered (never, or expired). The notification waits in the identity's mailbox until one
/// of its registered connections is connected; a full mailbox refuses it (106).
pub async fn notify(
    node: &Node,
    identity: &str,
    event: Option<&str>,
    data: Value,
) -> Result<bool, Error> {
    // The message is checked whether or not anyone receives it.
    if let Some(name) = event {
        plexus_core::validate_event(name)?;
    }
    if !is_registered(node, identity).await? {
        return Ok(false);
    }
    let stored = json!({"event": event, "data": data});
    let payload = Payload::json(&stored).map_err(|e| Error::bad_request(e.to_string()))?;
    let limits = node.limits();
    node.engine()
        .mailbox
        .push(
            &mailbox(identity),
            payload,
            limits.mailbox_lifetime,
            limits.mailbox_max_messages,
        )
        .await
        .map_err(engine_error)?;
    let conns = registered(node, identity).await?;
    deliver(node, identity, &conns).await?;
    Ok(true)
}

/// Delivers the identity's waiting notifications to its registered connections; those that
/// reached at least one are taken out of the mailbox.
async fn deliver(node: &Node, identity: &str, conns: &[ConnId]) -> Result<(), Error> {
    let pending: Vec<Mail> = node
        .engine()
        .mailbox
        .pending(&mailbox(identity))
        .await
        .map_err(engine_error)?;
    let mut delivered_up_to = None;
    for mail in &pending {
        let Some(text) = mail.payload.as_json_str() else {
            continue;
        };
        let stored: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let event = stored["event"].as_str();
        let data = stored.get("data").cloned().unwrap_or(Value::Null);
        let mut reached = false;
        for conn in conns {
            if node
                .send_to_connection(*conn, emit(event, data.clone())?)
                .await?
            {
                reached = true;
            }
        }
        if !reached {
            // Nobody connected: this one and the later ones wait, in order.
            break;
        }
        delivered_up_to = Some(mail.seq);
    }
    if let Some(seq) = delivered_up_to {
        node.engine()
            .mailbox
            .ack(&mailbox(identity), seq)
            .await
            .map_err(engine_error)?;
    }
    Ok(())
}

impl Socket {
    /// Registers this connection as `identity` (Plezi `register_as`; lifetime default 7 days,
    /// at least 10 minutes; `max_connections` default 1). What waited for the identity is
    /// delivered now.
    pub async fn register_as(
        &self,
        identity: &str,
        lifetime: Option<Duration>,
        max_connections: Option<usize>,
    ) -> Result<(), Error> {
        register_as(&self.node, self.id(), identity, lifetime, max_connections).await
    }

    /// Sends to an identity (Plezi `notify`); false when it is not registered.
    pub async fn notify(
        &self,
        identity: &str,
        event: Option<&str>,
        data: Value,
    ) -> Result<bool, Error> {
        notify(&self.node, identity, event, data).await
    }
}
