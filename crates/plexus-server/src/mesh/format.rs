//! How Mesh clients see core events (`seeds-protocols.md` §3.1 "Server pushes").

use bytes::Bytes;
use plexus_core::engine::PresenceEvent;
use plexus_core::model::{Event, WireFormat};
use plexus_core::{Payload, RecordChange};
use plexus_protocol::mesh::{self as wire, push};
use serde_json::{Value, json};

/// The wire-format id of Mesh (see `WireFormat::id`).
pub(crate) const MESH_FORMAT_ID: usize = 7;

/// Mesh's pushes for core events:
/// - a publication of a channel is `mesh/subscription-message {channel, message}`; one published
///   under an event name (a room broadcast, `MeshApi::broadcast_room`) is `{command: event,
///   payload}`;
/// - a message to the connection, its user or everyone is `{command: event | "message",
///   payload}` (Mesh's `broadcast(cmd, payload)`);
/// - presence is `mesh/presence-update`, records `mesh/record-update` / `mesh/record-deleted`;
/// - the node's ping is `ping`, the measured round trip `latency` (milliseconds).
///
/// Binary payloads have no Mesh frame.
pub struct MeshFormat;

/// A payload as a Mesh `message`: Mesh channels carry strings, so a JSON string is the string
/// itself and any other JSON value is its JSON text.
pub(crate) fn message_of(payload: &Payload) -> Option<Value> {
    let text = payload.as_json_str()?;
    Some(match serde_json::from_str::<Value>(text) {
        Ok(Value::String(s)) => Value::String(s),
        _ => Value::String(text.to_owned()),
    })
}

pub(crate) fn value_of(payload: &Payload) -> Option<Value> {
    payload.to_value().ok()
}

/// Unix milliseconds now (Mesh's `timestamp`).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl WireFormat for MeshFormat {
    fn id(&self) -> usize {
        MESH_FORMAT_ID
    }

    fn encode(&self, event: &Event<'_>) -> Option<Bytes> {
        match event {
            Event::Ping => Some(wire::push(push::PING, &json!({}))),
            Event::Latency(rtt) => Some(wire::push(
                push::LATENCY,
                &json!(rtt.as_secs_f64() * 1000.0),
            )),
            Event::Publication(p) => match &p.event {
                Some(command) => Some(wire::push(command, &value_of(&p.payload)?)),
                None => Some(wire::push(
                    push::SUBSCRIPTION_MESSAGE,
                    &json!({"channel": &*p.channel, "message": message_of(&p.payload)?}),
                )),
            },
            Event::Message { payload, event, .. } | Event::Notice { payload, event, .. } => {
                Some(wire::push(event.unwrap_or("message"), &value_of(payload)?))
            }
            Event::Presence {
                channel,
                conn,
                event,
            } => {
                let mut update = json!({
                    "connectionId": conn.to_string(),
                    "roomName": channel,
                    "timestamp": now_ms(),
                });
                match event {
                    PresenceEvent::Join { .. } => update["type"] = json!("join"),
                    PresenceEvent::Leave { .. } => update["type"] = json!("leave"),
                    PresenceEvent::State { state, .. } => {
                        update["type"] = json!("state");
                        update["state"] = state.as_ref().and_then(value_of).unwrap_or(Value::Null);
                    }
                }
                Some(wire::push(push::PRESENCE_UPDATE, &update))
            }
            Event::Record(r) => Some(match &r.change {
                RecordChange::Full(value) => wire::push(
                    push::RECORD_UPDATE,
                    &json!({"recordId": &*r.id, "full": value, "version": r.version}),
                ),
                RecordChange::Patch(patch) => wire::push(
                    push::RECORD_UPDATE,
                    &json!({"recordId": &*r.id, "patch": patch, "version": r.version}),
                ),
                RecordChange::Deleted => wire::push(
                    push::RECORD_DELETED,
                    &json!({"recordId": &*r.id, "version": r.version}),
                ),
            }),
            Event::Unsubscribed { channel, reason } => Some(wire::push(
                push::UNSUBSCRIBED,
                &json!({"channel": channel, "reason": reason}),
            )),
            Event::Mail(mail) => Some(wire::push("mail", &value_of(&mail.payload)?)),
            Event::Subscribed { .. } | Event::Echo { .. } => None,
        }
    }
}
