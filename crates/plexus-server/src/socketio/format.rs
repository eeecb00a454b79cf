//! How Socket.IO clients receive core events (`docs/socketio.md`, "The mapping onto Plexus"),
//! and the outbox entry that carries one Socket.IO packet with its attachments.

use bytes::{BufMut, Bytes, BytesMut};
use plexus_core::engine::PresenceEvent;
use plexus_core::model::{Event, WireFormat};
use plexus_protocol::Payload;
use plexus_protocol::server::Target;
use plexus_protocol::socketio::{Arg, Packet};
use serde_json::json;
use tokio_websockets::Message;

/// The wire-format id of the Socket.IO dialect (see `WireFormat::id`; the native formats are 0
/// and 1).
pub(crate) const SOCKETIO_FORMAT_ID: usize = 2;

/// Socket.IO events for the connections of namespace `/`. The same bytes serve protocols 4 and
/// 5 and both Engine.IO revisions: the outbox holds Socket.IO packets, and the transport wraps
/// them into Engine.IO packets for its revision.
pub struct SocketIoFormat;

/// A payload as one event argument: JSON as it is, bytes as an attachment.
pub(crate) fn payload_arg(payload: &Payload) -> Arg {
    match payload {
        Payload::Json(raw) => Arg::Json((**raw).to_owned()),
        Payload::Binary(bytes) => Arg::Binary(bytes.clone()),
    }
}

fn payload_json(payload: &Option<Payload>) -> serde_json::Value {
    payload
        .as_ref()
        .and_then(|p| p.as_json_str())
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// An outbox entry: a packet's string form, then each attachment, each part as a kind byte
/// (0 text, 1 binary), a big-endian `u32` length and the bytes.
pub(crate) fn pack(packet: &Packet) -> Bytes {
    let text = packet.encode();
    let size: usize = 5
        + text.len()
        + packet
            .attachments
            .iter()
            .map(|a| 5 + a.len())
            .sum::<usize>();
    let mut out = BytesMut::with_capacity(size);
    out.put_u8(0);
    out.put_u32(text.len() as u32);
    out.put_slice(text.as_bytes());
    for attachment in &packet.attachments {
        out.put_u8(1);
        out.put_u32(attachment.len() as u32);
        out.put_slice(attachment);
    }
    out.freeze()
}

/// The messages of an outbox entry written by [`pack`].
pub(crate) fn unpack(mut entry: Bytes, out: &mut Vec<Message>) {
    while entry.len() >= 5 {
        let kind = entry[0];
        let len = u32::from_be_bytes([entry[1], entry[2], entry[3], entry[4]]) as usize;
        if entry.len() < 5 + len {
            return;
        }
        let part = entry.slice(5..5 + len);
        entry = entry.slice(5 + len..);
        out.push(if kind == 0 {
            // Written from a `String` by `pack`.
            Message::text(part)
        } else {
            Message::binary(part)
        });
    }
}

/// An event in namespace `/`, packed for the outbox.
pub(crate) fn event(name: &str, args: Vec<Arg>) -> Bytes {
    event_in("/", name, args)
}

/// An event in namespace `nsp`, packed for the outbox.
pub(crate) fn event_in(nsp: &str, name: &str, args: Vec<Arg>) -> Bytes {
    let mut all = Vec::with_capacity(args.len() + 1);
    all.push(Arg::from(json!(name)));
    all.extend(args);
    pack(&Packet::event(nsp, None, all))
}

impl WireFormat for SocketIoFormat {
    fn id(&self) -> usize {
        SOCKETIO_FORMAT_ID
    }

    fn encode(&self, event: &Event<'_>) -> Option<Bytes> {
        Some(match event {
            Event::Publication(p) => {
                let mut meta = json!({
                    "channel": &*p.channel,
                    "offset": p.offset,
                    "epoch": &*p.epoch,
                });
                if let Some(publisher) = &p.publisher {
                    meta["publisher"] = json!({
                        "conn": publisher.conn.to_string(),
                        "user": publisher.user.as_deref(),
                        "info": payload_json(&publisher.info),
                    });
                }
                let name = p.event.as_deref().unwrap_or("message");
                self::event(name, vec![payload_arg(&p.payload), Arg::from(meta)])
            }
            Event::Message { to, payload, event } => {
                let to = match to {
                    Target::Connection => "connection",
                    Target::User => "user",
                    Target::All => "all",
                };
                self::event(
                    event.unwrap_or("message"),
                    vec![payload_arg(payload), Arg::from(json!({"to": to}))],
                )
            }
            Event::Subscribed { channel, position } => self::event(
                "subscribed",
                vec![Arg::from(json!({
                    "channel": channel,
                    "offset": position.offset,
                    "epoch": &*position.epoch,
                }))],
            ),
            Event::Unsubscribed { channel, reason } => self::event(
                "unsubscribed",
                vec![Arg::from(json!({"channel": channel, "reason": reason}))],
            ),
            Event::Presence {
                channel,
                conn,
                event,
            } => {
                let (name, value) = match event {
                    PresenceEvent::Join { user, info } => (
                        "join",
                        json!({"channel": channel, "conn": conn.to_string(), "user": user.as_deref(), "info": payload_json(info)}),
                    ),
                    PresenceEvent::Leave { user } => (
                        "leave",
                        json!({"channel": channel, "conn": conn.to_string(), "user": user.as_deref()}),
                    ),
                    PresenceEvent::State { user, state } => (
                        "state",
                        json!({"channel": channel, "conn": conn.to_string(), "user": user.as_deref(), "state": payload_json(state)}),
                    ),
                };
                self::event(name, vec![Arg::from(value)])
            }
            Event::Mail(mail) => self::event(
                "mail",
                vec![
                    payload_arg(&mail.payload),
                    Arg::from(json!({"seq": mail.seq, "sent_ms": mail.sent_ms})),
                ],
            ),
            Event::Notice {
                channel,
                event,
                payload,
            } => self::event(
                event.unwrap_or("notice"),
                vec![payload_arg(payload), Arg::from(json!({"channel": channel}))],
            ),
            Event::Record(record) => self::event(
                "record",
                vec![Arg::from(
                    serde_json::to_value(crate::native::record_push(record))
                        .expect("a record push serializes"),
                )],
            ),
            // Engine.IO has its own heartbeat (`node_heartbeat` below); latency and echoes have
            // no Socket.IO event.
            Event::Ping | Event::Latency(_) | Event::Echo { .. } => return None,
        })
    }

    fn node_heartbeat(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_and_unpack_keep_the_parts_in_order() {
        let packet = Packet::event(
            "/",
            Some(3),
            vec![Arg::from(json!("e")), Arg::from(vec![1u8, 2, 3])],
        );
        let mut out = Vec::new();
        unpack(pack(&packet), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].as_text(),
            Some(r#"51-3["e",{"_placeholder":true,"num":0}]"#)
        );
        assert_eq!(&out[1].as_payload()[..], &[1u8, 2, 3][..]);
    }
}
