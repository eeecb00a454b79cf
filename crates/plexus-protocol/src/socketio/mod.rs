//! Socket.IO, protocols 4 and 5: namespaces, events and acknowledgements over Engine.IO
//! (sans-IO).
//!
//! The specification is `docs/socket.io-protocol/v4.md` and `v5-current.md` of the
//! `socketio/socket.io` repository; the reference parser (`packages/socket.io-parser/lib/`)
//! decides what the prose leaves open, and the reference server (`packages/socket.io/lib/`) how
//! a revision 3 Engine.IO client (Socket.IO 2.x) is served. Section names below are theirs.
//!
//! - `packet.rs` — [`Packet`] and its string form
//!   `<type>[<attachments>-][<nsp>,][<id>][<json>]` (v5 §Packet encoding > Format), the payload
//!   each type may carry, and the packets a server sends in each version;
//! - `binary.rs` — [`Arg`]: event arguments with binary parts, which travel as placeholders
//!   `{"_placeholder":true,"num":N}` in the JSON and as attachments after it;
//! - `decoder.rs` — [`Decoder`]: text and binary Engine.IO messages in, complete packets out.
//!
//! Every Socket.IO packet travels as one Engine.IO `message`: the string form as text, each
//! attachment as binary data, in order.

mod binary;
mod decoder;
mod packet;

pub use binary::Arg;
pub use decoder::{Decoder, Limits};
pub use packet::{Packet, PacketType};

/// The Socket.IO protocol a client speaks, decided by its Engine.IO revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// Socket.IO 1.x/2.x clients, over Engine.IO 3. The server connects every client to `/`
    /// without being asked (v4 §Connection to the default namespace), a `CONNECT` carries no
    /// payload but may carry a query in the namespace (`0/admin?token=1,`), and a refusal is
    /// `ERROR` with a string.
    V4,
    /// socket.io-client 3.x/4.x, over Engine.IO 4. The client asks for every namespace, `/`
    /// included; `CONNECT` may carry an object (the auth payload) and its answer carries the
    /// socket id; a refusal is `CONNECT_ERROR` with `{"message", "data"?}` (v5 §History >
    /// Difference between v5 and v4).
    V5,
}

impl From<crate::engineio::Version> for Version {
    fn from(version: crate::engineio::Version) -> Version {
        match version {
            crate::engineio::Version::V3 => Version::V4,
            crate::engineio::Version::V4 => Version::V5,
        }
    }
}

/// Why a packet could not be decoded. The reference server closes the connection on each.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// An empty string (the reference parser reads it as `CONNECT` to `/`, through `Number("")`).
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type `0`–`6`.
    #[error("unknown packet type {0:?}")]
    UnknownType(u8),
    /// A `BINARY_EVENT`/`BINARY_ACK` whose attachment count is missing, not decimal digits or
    /// not followed by `-`.
    #[error("Illegal attachments")]
    IllegalAttachments,
    /// More attachments announced than the decoder's limit.
    #[error("too many attachments (more than {max})")]
    TooManyAttachments { max: usize },
    /// An acknowledgement id that does not fit in 64 bits.
    #[error("invalid acknowledgement id")]
    InvalidId,
    /// The payload is not JSON.
    #[error("invalid JSON payload: {0}")]
    InvalidJson(String),
    /// The payload nests arrays and objects deeper than the decoder's limit.
    #[error("the payload nests deeper than {max} levels")]
    TooDeep { max: usize },
    /// The payload is JSON, but not what the packet type carries (v5 §Exchange protocol).
    #[error("invalid payload: {0}")]
    InvalidPayload(&'static str),
    /// A placeholder whose `num` is not an integer from 0 to the attachment count − 1.
    #[error("illegal attachments: a placeholder does not name an attachment")]
    IllegalPlaceholder,
    /// A text message while the attachments of a binary packet are awaited.
    #[error("got plaintext data when reconstructing a packet")]
    UnexpectedText,
    /// A binary message when no attachment is awaited.
    #[error("got binary data when not reconstructing a packet")]
    UnexpectedBinary,
    /// A packet (its text and its attachments together) larger than the decoder's limit.
    #[error("packet larger than {max} bytes")]
    TooLarge { max: usize },
    /// [`Packet::args`] of a packet that is not an event or an acknowledgement.
    #[error("the packet carries no arguments")]
    NoArguments,
}

#[cfg(test)]
mod tests;
