//! Engine.IO, revisions 3 and 4: the transport layer under Socket.IO (sans-IO).
//!
//! The specification is `docs/engine.io-protocol/v3.md` and `v4-current.md` of the
//! `socketio/socket.io` repository; where the prose is silent, the reference parsers decide
//! (`packages/engine.io-parser/lib/` for revision 4, `engine.io-parser` 2.x `lib/index.js` for
//! revision 3, and the server in `packages/engine.io/lib/`). Section names below are theirs.
//!
//! - `packet.rs` — the seven packet types and their text form ([`Packet`]; v3 §Encoding >
//!   Packet, v4 §Protocol);
//! - `websocket.rs` — one packet per WebSocket frame ([`decode_ws_text`], [`decode_ws_binary`],
//!   [`encode_ws_frame`]; v3 §WebSocket, v4 §Packet encoding > WebSocket);
//! - `polling.rs` — HTTP long-polling payloads ([`decode_payload`], [`encode_payload`]): the
//!   length-prefixed formats of revision 3 and the `\x1e`-separated format of revision 4 (v3
//!   §Payload, v4 §Packet encoding > HTTP long-polling);
//! - `query.rs` — the query string of every request ([`parse_query`]) and the HTTP errors of the
//!   reference server ([`HttpError`]).
//!
//! Differences from the reference implementation, all on input it would also call broken or
//! that no real client sends, are written where they are made; in short: every malformed input
//! is an error here (the JavaScript parsers skip or coerce some), base64 must use the standard
//! alphabet, text must be valid UTF-8, and binary data is carried by `message` packets only.
//! WebTransport (v4.1) and JSONP are not implemented.

mod packet;
mod polling;
pub(crate) mod query;
mod websocket;

pub use packet::{Data, Handshake, Packet};
pub use polling::{
    CONTENT_TYPE_BINARY, CONTENT_TYPE_TEXT, EncodedPayload, POST_OK_BODY, POST_OK_CONTENT_TYPE,
    decode_payload, encode_payload, is_binary_content_type,
};
pub use query::{HttpError, Query, Transport, parse_query, query_pairs, query_value};
pub use websocket::{WsFrame, decode_ws_binary, decode_ws_text, encode_ws_frame};

/// The protocol revision a client speaks, from the `EIO` query parameter.
///
/// Revision 3 is Socket.IO 1.x/2.x (Socket.IO protocol 4); revision 4 is Socket.IO 3.x and later
/// (Socket.IO protocol 5). v4 §History > From v3 to v4 lists the differences: the server pings
/// (not the client), polling payloads are separated by `\x1e` instead of length-prefixed, and
/// binary data in polling payloads is always base64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    V3,
    V4,
}

impl Version {
    /// Reads the value of the `EIO` query parameter: `"3"` or `"4"`, nothing else.
    pub fn from_query_value(value: &str) -> Option<Version> {
        match value {
            "3" => Some(Version::V3),
            "4" => Some(Version::V4),
            _ => None,
        }
    }

    /// The value of the `EIO` query parameter for this revision.
    pub fn as_query_value(self) -> &'static str {
        match self {
            Version::V3 => "3",
            Version::V4 => "4",
        }
    }
}

/// Why a packet, a frame or a payload could not be decoded. The reference server answers every
/// one of these by closing the session ("parse error"; for a polling POST, HTTP 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// An empty packet (no type), or an empty binary frame in revision 3.
    #[error("empty packet")]
    Empty,
    /// The first character (text) or byte (v3 binary) is not one of the seven packet types.
    #[error("unknown packet type {0:?}")]
    UnknownType(u8),
    /// Binary data in a packet other than `message` (the JavaScript parsers would pass it on).
    #[error("binary data in a packet of type {0}")]
    BinaryNotMessage(u8),
    /// A `b` packet whose data is not standard base64.
    #[error("invalid base64 in a binary packet")]
    Base64,
    /// Text (a text frame, a text payload, a string packet of a v3 binary payload) that is not
    /// UTF-8.
    #[error("text is not UTF-8")]
    Utf8,
    /// An `open` packet whose data is not the handshake object.
    #[error("invalid handshake: {0}")]
    Handshake(String),
    /// The framing of a polling payload is broken (lengths, separators).
    #[error("malformed payload: {0}")]
    Payload(&'static str),
    /// A polling payload holds more packets than the caller allows.
    #[error("more than {max} packets in one payload")]
    TooManyPackets { max: usize },
    /// A binary (`application/octet-stream`) payload sent to a revision 4 session: the reference
    /// server answers HTTP 400 and closes the session (v4 §Headers; `polling.ts`).
    #[error("binary payloads do not exist in Engine.IO 4")]
    BinaryPayloadV4,
}

#[cfg(test)]
mod tests;
