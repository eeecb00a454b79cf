//! Engine.IO packets and their text form: `<packet type id>[<data>]`.
//!
//! v3 §Encoding > Packet and v4 §Protocol: seven packet types, each one digit; the data, if any,
//! follows the digit. A text packet whose first character is `b` carries binary data in base64:
//! `b<type><base64>` in revision 3 (v3 §Payload), `b<base64>` for a `message` in revision 4
//! (v4 §Packet encoding > HTTP long-polling). The reference parsers accept the `b` form wherever
//! they read text, WebSocket text frames included, and so does this module.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{DecodeError, Version};

/// One Engine.IO packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// `0`: sent by the server when a transport opens, with the handshake (v4 §Handshake).
    Open(Handshake),
    /// `1`: the transport (polling) or the session may close.
    Close,
    /// `2`: heartbeat. Revision 3: the client pings and the server answers `pong`; revision 4:
    /// the server pings and the client answers. The upgrade probe is `ping` with `probe`, from
    /// the client, in both revisions (v4 §Upgrade).
    Ping(Option<String>),
    /// `3`: the heartbeat answer (`3probe` answers the upgrade probe).
    Pong(Option<String>),
    /// `4`: application data, text or binary.
    Message(Data),
    /// `5`: the client completes an upgrade to WebSocket.
    Upgrade,
    /// `6`: no operation; the server ends a pending poll with it during an upgrade.
    Noop,
}

/// The data of a `message` packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Text(String),
    Binary(Bytes),
}

/// The data of the `open` packet (v4 §Handshake; v3 §Anatomy of an Engine.IO session).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The session id the client sends back as `sid` in every later request.
    pub sid: String,
    /// The transports the client may upgrade to (`["websocket"]` for polling, `[]` for a
    /// WebSocket-only session).
    pub upgrades: Vec<String>,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    /// The largest payload the server accepts, in bytes. Written in revision 4 only (v4
    /// §Handshake); the revision 3 servers did not send it, so it reads as 0 from a v3 handshake.
    pub max_payload: u64,
}

/// The JSON of the handshake, keys in the order the reference server writes them (`socket.ts`
/// `onOpen`): `sid, upgrades, pingInterval, pingTimeout[, maxPayload]`.
#[derive(Serialize)]
struct HandshakeOut<'a> {
    sid: &'a str,
    upgrades: &'a [String],
    #[serde(rename = "pingInterval")]
    ping_interval: u64,
    #[serde(rename = "pingTimeout")]
    ping_timeout: u64,
    #[serde(rename = "maxPayload", skip_serializing_if = "Option::is_none")]
    max_payload: Option<u64>,
}

#[derive(Deserialize)]
struct HandshakeIn {
    sid: String,
    /// The v3 sample session "with WebSocket only" leaves it out; real servers always write it.
    #[serde(default)]
    upgrades: Vec<String>,
    #[serde(rename = "pingInterval")]
    ping_interval: u64,
    #[serde(rename = "pingTimeout")]
    ping_timeout: u64,
    #[serde(rename = "maxPayload", default)]
    max_payload: Option<u64>,
}

impl Handshake {
    /// The JSON text of the `open` packet for this revision.
    pub fn to_json(&self, version: Version) -> String {
        let json = HandshakeOut {
            sid: &self.sid,
            upgrades: &self.upgrades,
            ping_interval: self.ping_interval_ms,
            ping_timeout: self.ping_timeout_ms,
            max_payload: (version == Version::V4).then_some(self.max_payload),
        };
        serde_json::to_string(&json).expect("strings and numbers always serialize")
    }

    /// Reads the JSON text of an `open` packet (extra keys are ignored, as a client does).
    pub fn from_json(text: &str) -> Result<Handshake, DecodeError> {
        let json: HandshakeIn =
            serde_json::from_str(text).map_err(|e| DecodeError::Handshake(e.to_string()))?;
        Ok(Handshake {
            sid: json.sid,
            upgrades: json.upgrades,
            ping_interval_ms: json.ping_interval,
            ping_timeout_ms: json.ping_timeout,
            max_payload: json.max_payload.unwrap_or(0),
        })
    }
}

/// The packet type ids (v4 §Protocol, the table of packet types).
pub(super) const OPEN: u8 = 0;
pub(super) const CLOSE: u8 = 1;
pub(super) const PING: u8 = 2;
pub(super) const PONG: u8 = 3;
pub(super) const MESSAGE: u8 = 4;
pub(super) const UPGRADE: u8 = 5;
pub(super) const NOOP: u8 = 6;

/// Base64 as Node's `Buffer` writes it (standard alphabet, padded). Reading accepts a missing
/// padding and ignores trailing bits as Node does; unlike Node it refuses other characters
/// (Node skips them, and accepts the URL-safe alphabet too).
pub(super) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

impl Packet {
    /// The packet type id (`0`–`6`).
    pub fn type_id(&self) -> u8 {
        match self {
            Packet::Open(_) => OPEN,
            Packet::Close => CLOSE,
            Packet::Ping(_) => PING,
            Packet::Pong(_) => PONG,
            Packet::Message(_) => MESSAGE,
            Packet::Upgrade => UPGRADE,
            Packet::Noop => NOOP,
        }
    }

    /// Whether this is a `message` with binary data.
    pub fn is_binary(&self) -> bool {
        matches!(self, Packet::Message(Data::Binary(_)))
    }

    /// The text form of the packet; binary data is written in base64 (`b4…` in revision 3,
    /// `b…` in revision 4), as a transport that cannot carry bytes needs it.
    pub(super) fn to_text(&self, version: Version) -> String {
        match self {
            Packet::Message(Data::Binary(bytes)) => {
                let prefix = match version {
                    Version::V3 => "b4",
                    Version::V4 => "b",
                };
                let mut text = String::with_capacity(prefix.len() + bytes.len().div_ceil(3) * 4);
                text.push_str(prefix);
                BASE64.encode_string(bytes, &mut text);
                text
            }
            _ => {
                let data: std::borrow::Cow<'_, str> = match self {
                    Packet::Open(handshake) => handshake.to_json(version).into(),
                    Packet::Ping(Some(data)) | Packet::Pong(Some(data)) => data.as_str().into(),
                    Packet::Message(Data::Text(text)) => text.as_str().into(),
                    _ => "".into(),
                };
                let mut text = String::with_capacity(1 + data.len());
                text.push(char::from(b'0' + self.type_id()));
                text.push_str(&data);
                text
            }
        }
    }

    /// Decodes the text form of one packet (a WebSocket text frame, or one packet of a polling
    /// payload).
    ///
    /// Data after `close`, `upgrade` and `noop` is ignored, as the reference server ignores it.
    /// `open` must carry a handshake: a server never receives one from a real client, and
    /// answers any packet it does not expect by closing.
    pub(super) fn from_text(version: Version, text: &str) -> Result<Packet, DecodeError> {
        let Some(&first) = text.as_bytes().first() else {
            return Err(DecodeError::Empty);
        };
        if !first.is_ascii() {
            return Err(DecodeError::UnknownType(first));
        }
        let rest = &text[1..];
        if first == b'b' {
            let base64 = match version {
                // v3 §Payload: `b<packet type><base64>`.
                Version::V3 => match rest.as_bytes().first() {
                    Some(&b'4') => &rest[1..],
                    Some(&digit @ b'0'..=b'6') => {
                        return Err(DecodeError::BinaryNotMessage(digit - b'0'));
                    }
                    Some(&other) => return Err(DecodeError::UnknownType(other)),
                    None => return Err(DecodeError::Empty),
                },
                // v4 §Packet encoding > HTTP long-polling: `b<base64>`, always a message.
                Version::V4 => rest,
            };
            let bytes = BASE64.decode(base64).map_err(|_| DecodeError::Base64)?;
            return Ok(Packet::Message(Data::Binary(Bytes::from(bytes))));
        }
        let data = || (!rest.is_empty()).then(|| rest.to_owned());
        match first.wrapping_sub(b'0') {
            OPEN => Handshake::from_json(rest).map(Packet::Open),
            CLOSE => Ok(Packet::Close),
            PING => Ok(Packet::Ping(data())),
            PONG => Ok(Packet::Pong(data())),
            MESSAGE => Ok(Packet::Message(Data::Text(rest.to_owned()))),
            UPGRADE => Ok(Packet::Upgrade),
            NOOP => Ok(Packet::Noop),
            _ => Err(DecodeError::UnknownType(first)),
        }
    }

    /// Decodes a packet of revision 3 in binary form: the packet type as a byte (not a digit),
    /// then the data (v3 §Encoding > Packet: `4|0|1|2|3|4|5`).
    pub(super) fn from_v3_binary(mut bytes: Bytes) -> Result<Packet, DecodeError> {
        let Some(&kind) = bytes.first() else {
            return Err(DecodeError::Empty);
        };
        match kind {
            MESSAGE => {
                bytes = bytes.slice(1..);
                Ok(Packet::Message(Data::Binary(bytes)))
            }
            OPEN..=NOOP => Err(DecodeError::BinaryNotMessage(kind)),
            _ => Err(DecodeError::UnknownType(kind)),
        }
    }
}
