//! How core events reach endpoint clients: publications of the channels a connection is
//! subscribed to, messages (unicast, a send to its user) and notices (broadcast, multicast) as
//! their payload — a JSON string as its text, other JSON as JSON text, bytes as a binary frame;
//! an auto-dispatch client gets a message with an event name as `{"event": name, …}`. The
//! heartbeat is a WebSocket ping frame. Nothing else is written: a raw client sees no envelope.
//!
//! Frames queued for an endpoint connection carry their WebSocket message type in a first byte
//! ([`frame_message`] writes it, [`to_message`] reads it).

use super::RawMessage;
use bytes::{BufMut, Bytes, BytesMut};
use plexus_core::model::{Event, WireFormat};
use plexus_protocol::Payload;
use plexus_protocol::plezi::{event_message, reply_text};
use tokio_websockets::Message;

/// The wire-format ids of endpoint connections (native 0 and 1, Socket.IO 2, chat-service 3,
/// Mesa 4).
pub(crate) const RAW_FORMAT_ID: usize = 5;
pub(crate) const DISPATCH_FORMAT_ID: usize = 6;

const TEXT: u8 = b'T';
const BINARY: u8 = b'B';
const PING: u8 = b'P';

fn tagged(tag: u8, body: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(body.len() + 1);
    frame.put_u8(tag);
    frame.put_slice(body);
    frame.freeze()
}

/// A queued frame for `message`.
pub(crate) fn frame_message(message: &RawMessage) -> Bytes {
    match message {
        RawMessage::Text(text) => tagged(TEXT, text.as_bytes()),
        RawMessage::Binary(bytes) => tagged(BINARY, bytes),
    }
}

/// The WebSocket message of a queued frame.
pub(crate) fn to_message(frame: Bytes) -> Option<Message> {
    let tag = *frame.first()?;
    let body = frame.slice(1..);
    match tag {
        // Built from a `String` by `frame_message` or from JSON text here: valid UTF-8.
        TEXT => Message::text(String::from_utf8(body.to_vec()).ok()?).into(),
        BINARY => Some(Message::binary(body)),
        PING => Some(Message::ping(body)),
        _ => None,
    }
}

/// The wire format of a raw or an auto-dispatch endpoint.
pub(crate) struct EndpointFormat {
    raw: bool,
}

impl EndpointFormat {
    pub(crate) fn new(raw: bool) -> EndpointFormat {
        EndpointFormat { raw }
    }

    fn payload(&self, event: Option<&str>, payload: &Payload) -> Option<Bytes> {
        if let Some(bytes) = payload.as_binary() {
            return Some(tagged(BINARY, bytes));
        }
        let value: serde_json::Value = serde_json::from_str(payload.as_json_str()?).ok()?;
        let text = if self.raw {
            reply_text(&value)
        } else {
            event_message(event, value)
        };
        Some(tagged(TEXT, text.as_bytes()))
    }
}

impl WireFormat for EndpointFormat {
    fn id(&self) -> usize {
        if self.raw {
            RAW_FORMAT_ID
        } else {
            DISPATCH_FORMAT_ID
        }
    }

    fn encode(&self, event: &Event<'_>) -> Option<Bytes> {
        match event {
            Event::Publication(p) => self.payload(p.event.as_deref(), &p.payload),
            Event::Message { payload, event, .. } | Event::Notice { payload, event, .. } => {
                self.payload(*event, payload)
            }
            Event::Ping => Some(tagged(PING, b"")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_core::Target;

    fn text(frame: Option<Bytes>) -> String {
        let message = to_message(frame.expect("a frame")).expect("a message");
        message.as_text().expect("text").to_owned()
    }

    #[test]
    fn payloads_are_written_as_they_are() {
        let raw = EndpointFormat::new(true);
        let dispatch = EndpointFormat::new(false);
        let string = Payload::json(&"hello").unwrap();
        let object = Payload::json(&serde_json::json!({"a": 1})).unwrap();
        let message = |payload, event| Event::Message {
            to: Target::Connection,
            payload,
            event,
        };
        assert_eq!(text(raw.encode(&message(&string, None))), "hello");
        assert_eq!(text(raw.encode(&message(&object, Some("x")))), r#"{"a":1}"#);
        assert_eq!(
            text(dispatch.encode(&message(&object, Some("x")))),
            r#"{"a":1,"event":"x"}"#
        );
        assert_eq!(
            text(dispatch.encode(&message(&string, Some("x")))),
            r#"{"event":"x","data":"hello"}"#
        );
        let bytes = Payload::binary(vec![0u8, 255]);
        let frame = raw.encode(&message(&bytes, None)).unwrap();
        let m = to_message(frame).unwrap();
        assert!(m.is_binary());
        assert_eq!(&*m.into_payload(), &[0u8, 255]);
        assert!(
            to_message(raw.encode(&Event::Ping).unwrap())
                .unwrap()
                .is_ping()
        );
        assert!(
            raw.encode(&Event::Latency(std::time::Duration::ZERO))
                .is_none()
        );
    }
}
