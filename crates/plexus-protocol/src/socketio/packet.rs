//! Socket.IO packets and their string form (v5 §Packet encoding > Format; v4 §Encoding format):
//!
//! ```text
//! <packet type>[<# of binary attachments>-][<namespace>,][<acknowledgment id>][JSON-stringified payload without binary]
//! ```
//!
//! The namespace is written only when it is not `/`, always followed by a comma, and read only
//! when the character after the type (or the `-`) is `/`; it ends at the first comma or at the
//! end of the string (`40/custom` is a CONNECT to `/custom`). The id is the decimal digits that
//! follow; the rest, if any, is JSON.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::binary::{self, Arg};
use super::{DecodeError, Limits, Version};
use crate::engineio::query::form_urlencoded;
use crate::payload::depth_within;

/// The packet types, with their wire values (v5 §Exchange protocol, the table of types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    /// `ERROR` in protocol 4.
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketType {
    fn from_digit(digit: u8) -> Option<PacketType> {
        Some(match digit {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// Whether attachments follow the packet (`BINARY_EVENT`, `BINARY_ACK`).
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }

    /// `EVENT` or `BINARY_EVENT`.
    pub fn is_event(self) -> bool {
        matches!(self, PacketType::Event | PacketType::BinaryEvent)
    }

    /// `ACK` or `BINARY_ACK`.
    pub fn is_ack(self) -> bool {
        matches!(self, PacketType::Ack | PacketType::BinaryAck)
    }
}

/// One Socket.IO packet.
///
/// `data` is the JSON payload as text, kept exactly as it came (no re-encoding, key order
/// kept). In a binary packet it holds placeholders `{"_placeholder":true,"num":N}` and the bytes
/// are in `attachments`; [`Packet::args`] puts them back together, and [`Packet::event`] /
/// [`Packet::ack`] take them apart.
#[derive(Clone, Debug)]
pub struct Packet {
    pub kind: PacketType,
    pub nsp: String,
    pub id: Option<u64>,
    pub data: Option<Box<RawValue>>,
    pub attachments: Vec<Bytes>,
}

impl PartialEq for Packet {
    fn eq(&self, other: &Packet) -> bool {
        self.kind == other.kind
            && self.nsp == other.nsp
            && self.id == other.id
            && self.data.as_deref().map(RawValue::get) == other.data.as_deref().map(RawValue::get)
            && self.attachments == other.attachments
    }
}

impl Eq for Packet {}

/// The event names a peer may not send (`RESERVED_EVENTS` of the reference parser).
const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

impl Packet {
    fn new(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<Box<RawValue>>) -> Packet {
        Packet {
            kind,
            nsp: nsp.to_owned(),
            id,
            data,
            attachments: Vec::new(),
        }
    }

    /// The server's `CONNECT` answer: `0/nsp,{"sid":"…"}` in protocol 5 (`40{"sid":"…"}` for
    /// `/`, once wrapped in an Engine.IO message), `0/nsp,` (`40` for `/`) in protocol 4
    /// (`socket.ts` `_onconnect`). The `pid` of connection state recovery is not written.
    pub fn connect(version: Version, nsp: &str, sid: &str) -> Packet {
        let data = match version {
            Version::V4 => None,
            Version::V5 => Some(raw(&serde_json::json!({ "sid": sid }))),
        };
        Packet::new(PacketType::Connect, nsp, None, data)
    }

    /// The server's refusal of a namespace: `4/nsp,{"message":"…"}` (plus `"data"` when given)
    /// in protocol 5; in protocol 4 an `ERROR` with `data` when given, else the message as a
    /// JSON string, `4/nsp,"…"` (`namespace.ts`: `socket._error(err.data || err.message)`).
    pub fn connect_error(
        version: Version,
        nsp: &str,
        message: &str,
        data: Option<Box<RawValue>>,
    ) -> Packet {
        let payload = match (version, data) {
            (Version::V4, Some(data)) => data,
            (Version::V4, None) => raw(&message),
            (Version::V5, data) => {
                // `{message, data}` through JSON.stringify, which leaves out an undefined
                // `data`.
                let mut text = String::from("{\"message\":");
                text.push_str(raw(&message).get());
                if let Some(data) = data {
                    text.push_str(",\"data\":");
                    text.push_str(data.get());
                }
                text.push('}');
                RawValue::from_string(text).expect("built from JSON values")
            }
        };
        Packet::new(PacketType::ConnectError, nsp, None, Some(payload))
    }

    /// `DISCONNECT` from a namespace: `1/nsp,` (`1` for `/`).
    pub fn disconnect(nsp: &str) -> Packet {
        Packet::new(PacketType::Disconnect, nsp, None, None)
    }

    /// An `EVENT`, or a `BINARY_EVENT` when some argument holds binary data (`Encoder.encode`).
    /// The first argument is the event name, a JSON string.
    pub fn event(nsp: &str, id: Option<u64>, args: Vec<Arg>) -> Packet {
        Packet::with_args(PacketType::Event, nsp, id, args)
    }

    /// An `ACK` of the event with this id, or a `BINARY_ACK` when some argument holds binary
    /// data: `3/nsp,12[null,{…}]`.
    pub fn ack(nsp: &str, id: u64, args: Vec<Arg>) -> Packet {
        Packet::with_args(PacketType::Ack, nsp, Some(id), args)
    }

    fn with_args(kind: PacketType, nsp: &str, id: Option<u64>, args: Vec<Arg>) -> Packet {
        let (data, attachments) = binary::deconstruct(args);
        let kind = match (kind, attachments.is_empty()) {
            (PacketType::Event, false) => PacketType::BinaryEvent,
            (PacketType::Ack, false) => PacketType::BinaryAck,
            (kind, _) => kind,
        };
        Packet {
            attachments,
            ..Packet::new(kind, nsp, id, Some(data))
        }
    }

    /// The arguments of an event or an acknowledgement, with the attachments of a binary packet
    /// put back where their placeholders are (`reconstructPacket`). Placeholders in a packet
    /// that is not binary are plain JSON, as in the reference parser.
    pub fn args(&self) -> Result<Vec<Arg>, DecodeError> {
        if !(self.kind.is_event() || self.kind.is_ack()) {
            return Err(DecodeError::NoArguments);
        }
        let data = self
            .data
            .as_deref()
            .ok_or(DecodeError::InvalidPayload("no arguments"))?;
        if self.kind.is_binary() {
            binary::reconstruct(data, &self.attachments)
        } else {
            let args: Vec<Box<RawValue>> = serde_json::from_str(data.get())
                .map_err(|_| DecodeError::InvalidPayload("the arguments are not an array"))?;
            Ok(args.into_iter().map(Arg::Json).collect())
        }
    }

    /// The string form of the packet (`Encoder.encodeAsString`); its attachments, if any, go
    /// after it as binary messages, in order.
    pub fn encode(&self) -> String {
        let data = self.data.as_deref().map_or("", RawValue::get);
        let mut text = String::with_capacity(24 + self.nsp.len() + data.len());
        text.push(char::from(b'0' + self.kind as u8));
        if self.kind.is_binary() {
            text.push_str(&self.attachments.len().to_string());
            text.push('-');
        }
        if !self.nsp.is_empty() && self.nsp != "/" {
            text.push_str(&self.nsp);
            text.push(',');
        }
        if let Some(id) = self.id {
            text.push_str(&id.to_string());
        }
        text.push_str(data);
        text
    }

    /// Decodes the string form of a packet (`Decoder.decodeString`). For a binary packet the
    /// attachments are not there yet: the second value is how many must follow.
    ///
    /// Differences from the reference parser, all on input a real client does not send: an
    /// empty string, an attachment count or an id that is not plain decimal digits (the parser
    /// goes through `Number()`, which takes `""` and `" "`), an `EVENT`/`ACK` without payload
    /// (v5 §Sending and receiving data: "The payload is mandatory") and an id beyond 64 bits
    /// are errors here.
    pub(super) fn decode(
        version: Version,
        text: &str,
        limits: &Limits,
    ) -> Result<(Packet, usize), DecodeError> {
        if text.len() > limits.max_packet_bytes {
            return Err(DecodeError::TooLarge {
                max: limits.max_packet_bytes,
            });
        }
        let bytes = text.as_bytes();
        let first = *bytes.first().ok_or(DecodeError::Empty)?;
        let kind = PacketType::from_digit(first).ok_or(DecodeError::UnknownType(first))?;
        let mut at = 1;

        let mut attachments = 0;
        if kind.is_binary() {
            let dash = bytes[at..]
                .iter()
                .position(|&b| b == b'-')
                .ok_or(DecodeError::IllegalAttachments)?;
            let digits = &text[at..at + dash];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DecodeError::IllegalAttachments);
            }
            let too_many = DecodeError::TooManyAttachments {
                max: limits.max_attachments,
            };
            attachments = digits.parse::<usize>().map_err(|_| too_many.clone())?;
            if attachments > limits.max_attachments {
                return Err(too_many);
            }
            at += dash + 1;
        }

        let mut nsp = "/";
        if bytes.get(at) == Some(&b'/') {
            match bytes[at..].iter().position(|&b| b == b',') {
                Some(comma) => {
                    nsp = &text[at..at + comma];
                    at += comma + 1;
                }
                None => {
                    nsp = &text[at..];
                    at = text.len();
                }
            }
        }

        let digits = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let id = if digits > 0 {
            let id = text[at..at + digits]
                .parse::<u64>()
                .map_err(|_| DecodeError::InvalidId)?;
            at += digits;
            Some(id)
        } else {
            None
        };

        let json = &text[at..];
        let mut data = if json.is_empty() {
            None
        } else {
            // serde_json parses at most 128 levels; `Packet::args` needs it to parse all.
            let max_depth = limits.max_depth.min(128);
            if !depth_within(json, max_depth) {
                return Err(DecodeError::TooDeep { max: max_depth });
            }
            let data = RawValue::from_string(json.to_owned())
                .map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
            Some(data)
        };
        check_payload(kind, data.as_deref())?;

        // Protocol 4 over Engine.IO 3: the reference server reads the namespace of every packet
        // as a URL path and the query of a CONNECT as its auth payload (`client.ts`
        // `_parseNamespace`); a payload of that CONNECT is not used. The path is not
        // normalized here as `new URL()` would (`/a/../b`, percent-encoding).
        if version == Version::V4
            && let Some((path, query)) = nsp.split_once('?')
        {
            nsp = path;
            if kind == PacketType::Connect {
                data = Some(query_object(query));
            }
        } else if version == Version::V4 && kind == PacketType::Connect {
            data = None;
        }

        let packet = Packet {
            kind,
            nsp: nsp.to_owned(),
            id,
            data,
            attachments: Vec::new(),
        };
        Ok((packet, attachments))
    }
}

/// Serializes a value that always serializes (strings, `json!` objects) as a raw JSON value.
fn raw<T: serde::Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("strings and string maps always serialize")
}

/// What each packet type may carry (`Decoder.isPayloadValid`; v5 §Exchange protocol): CONNECT
/// an object or nothing, DISCONNECT nothing, EVENT an array whose first element is a number or
/// a string that is not a reserved event name, ACK an array, CONNECT_ERROR a string or an
/// object. An EVENT or ACK without payload is refused here too (the reference parser lets it
/// through; v5 says "The payload is mandatory").
fn check_payload(kind: PacketType, data: Option<&RawValue>) -> Result<(), DecodeError> {
    let Some(data) = data else {
        return match kind {
            PacketType::Connect | PacketType::Disconnect | PacketType::ConnectError => Ok(()),
            _ => Err(DecodeError::InvalidPayload(
                "an event or ack without payload",
            )),
        };
    };
    let text = data.get().trim_start();
    let starts = |c: u8| text.as_bytes().first() == Some(&c);
    match kind {
        PacketType::Connect if starts(b'{') => Ok(()),
        PacketType::Connect => Err(DecodeError::InvalidPayload("CONNECT carries an object")),
        PacketType::Disconnect => Err(DecodeError::InvalidPayload("DISCONNECT carries nothing")),
        PacketType::ConnectError if starts(b'{') || starts(b'"') => Ok(()),
        PacketType::ConnectError => Err(DecodeError::InvalidPayload(
            "CONNECT_ERROR carries a string or an object",
        )),
        PacketType::Ack | PacketType::BinaryAck if starts(b'[') => Ok(()),
        PacketType::Ack | PacketType::BinaryAck => {
            Err(DecodeError::InvalidPayload("ACK carries an array"))
        }
        PacketType::Event | PacketType::BinaryEvent => check_event_name(text),
    }
}

fn check_event_name(array: &str) -> Result<(), DecodeError> {
    let not_an_event =
        DecodeError::InvalidPayload("EVENT carries an array whose first element is an event name");
    let First(name) = serde_json::from_str(array).map_err(|_| not_an_event.clone())?;
    let name = name.ok_or(not_an_event.clone())?.get().trim_start();
    match name.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => Ok(()),
        Some(b'"') => {
            let name: Cow<'_, str> =
                serde_json::from_str(name).map_err(|_| not_an_event.clone())?;
            if RESERVED_EVENTS.contains(&name.as_ref()) {
                Err(DecodeError::InvalidPayload("a reserved event name"))
            } else {
                Ok(())
            }
        }
        _ => Err(not_an_event),
    }
}

/// The first element of a JSON array, without collecting the others.
struct First<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for First<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<First<'a>, D::Error> {
        struct FirstVisitor;
        impl<'de> Visitor<'de> for FirstVisitor {
            type Value = First<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<First<'de>, A::Error> {
                let first = seq.next_element::<&RawValue>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        d.deserialize_seq(FirstVisitor).map_err(de::Error::custom)
    }
}

/// The query of a protocol 4 CONNECT as the JSON object the reference server makes of it
/// (`Object.fromEntries(url.searchParams.entries())`: a repeated key keeps its first place and
/// its last value).
fn query_object(query: &str) -> Box<RawValue> {
    let mut entries: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
    let mut index: HashMap<Cow<'_, str>, usize> = HashMap::new();
    for (key, value) in form_urlencoded(query) {
        match index.get(&key) {
            Some(&at) => entries[at].1 = value,
            None => {
                index.insert(key.clone(), entries.len());
                entries.push((key, value));
            }
        }
    }
    let mut text = String::from("{");
    for (n, (key, value)) in entries.iter().enumerate() {
        if n > 0 {
            text.push(',');
        }
        text.push_str(raw(key.as_ref()).get());
        text.push(':');
        text.push_str(raw(value.as_ref()).get());
    }
    text.push('}');
    RawValue::from_string(text).expect("built from JSON strings")
}
