//! Plexus wire types and codecs, with no IO (sans-IO).
//!
//! This crate is the only place that knows byte layouts. It defines the native protocol v1
//! (`docs/protocol.md`): the frames a client sends ([`client`]), the frames a server sends
//! ([`server`]), the two encodings ([`Encoding`]: JSON text frames and MessagePack binary frames,
//! one schema), batching of several frames in one WebSocket message, the application payload
//! ([`Payload`]: any JSON value or raw bytes) and the one table of error and close codes
//! ([`codes`]).
//!
//! It also holds the sans-IO codecs of the Socket.IO dialect: [`engineio`] (Engine.IO revisions
//! 3 and 4: packets, WebSocket frames, polling payloads, the handshake query) and [`socketio`]
//! (Socket.IO protocols 4 and 5: packets, binary attachments, the stateful decoder).
//!
//! Everything here is plain data plus pure functions over byte slices, so every frame can be
//! tested without a socket.

pub mod chatservice;
pub mod client;
pub mod codes;
mod encoding;
pub mod engineio;
pub mod mesa;
pub mod mesh;
mod payload;
pub mod plezi;
pub mod plezi_yaml;
pub mod server;
pub mod socketio;
pub mod sockety;

pub use codes::{CloseCode, ErrorCode};
pub use encoding::{
    DecodeError, Encoding, FrameWriter, Frames, decode, encode, frames, split_frames,
};
pub use payload::{BinaryField, DataField, Payload, PayloadError};

/// The protocol version this crate speaks. A server closes a client that asks for another one
/// with [`CloseCode::UNSUPPORTED_VERSION`].
pub const PROTOCOL_VERSION: u32 = 1;

/// WebSocket subprotocol for JSON text frames.
pub const SUBPROTOCOL_JSON: &str = "plexus.v1.json";
/// WebSocket subprotocol for MessagePack binary frames.
pub const SUBPROTOCOL_MSGPACK: &str = "plexus.v1.msgpack";

/// Reads a `plexus.v<N>.<encoding>` subprotocol token.
///
/// Returns the version and the encoding (`None` when the encoding part is unknown), or `None`
/// when the token is not a Plexus subprotocol at all.
pub fn parse_subprotocol(token: &str) -> Option<(u32, Option<Encoding>)> {
    let rest = token.trim().strip_prefix("plexus.v")?;
    let (version, encoding) = rest.split_once('.')?;
    let version: u32 = version.parse().ok()?;
    let encoding = match encoding {
        "json" => Some(Encoding::Json),
        "msgpack" => Some(Encoding::Msgpack),
        _ => None,
    };
    Some((version, encoding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subprotocol_tokens() {
        assert_eq!(
            parse_subprotocol("plexus.v1.json"),
            Some((1, Some(Encoding::Json)))
        );
        assert_eq!(
            parse_subprotocol("plexus.v1.msgpack"),
            Some((1, Some(Encoding::Msgpack)))
        );
        assert_eq!(
            parse_subprotocol("plexus.v2.json"),
            Some((2, Some(Encoding::Json)))
        );
        assert_eq!(parse_subprotocol("plexus.v1.cbor"), Some((1, None)));
        assert_eq!(parse_subprotocol("graphql-ws"), None);
        assert_eq!(parse_subprotocol("plexus.vX.json"), None);
    }
}
