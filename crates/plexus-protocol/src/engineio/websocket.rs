//! The WebSocket transport: one packet per frame (v3 §WebSocket; v4 §Packet encoding >
//! WebSocket).
//!
//! A text frame is the packet's text form. A binary frame carries a `message` with binary data:
//! in revision 3 its first byte is the packet type (4), as a byte (v3 §Encoding > Packet); in
//! revision 4 the frame is the data as it is ("Binary payloads are sent as is").

use bytes::{BufMut, Bytes, BytesMut};

use super::packet::MESSAGE;
use super::{Data, DecodeError, Packet, Version};

/// A WebSocket frame to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsFrame {
    Text(String),
    Binary(Bytes),
}

/// Decodes a text frame.
pub fn decode_ws_text(version: Version, text: &str) -> Result<Packet, DecodeError> {
    Packet::from_text(version, text)
}

/// Decodes a binary frame. In revision 3 an empty frame, or one whose first byte is not 4
/// (`message`), is an error; in revision 4 every binary frame is a message, an empty one too.
pub fn decode_ws_binary(version: Version, frame: Bytes) -> Result<Packet, DecodeError> {
    match version {
        Version::V3 => Packet::from_v3_binary(frame),
        Version::V4 => Ok(Packet::Message(Data::Binary(frame))),
    }
}

/// Encodes a packet as one WebSocket frame.
///
/// `supports_binary` is false when the client asked for base64 (`b64` in the query, see
/// [`Query::b64`](super::Query::b64)): the reference server then sends binary data as a `b`
/// text packet over WebSocket too (`transports/websocket.ts` passes `supportsBinary` to
/// `encodePacket`).
pub fn encode_ws_frame(version: Version, packet: &Packet, supports_binary: bool) -> WsFrame {
    match packet {
        Packet::Message(Data::Binary(bytes)) if supports_binary => match version {
            Version::V3 => {
                let mut frame = BytesMut::with_capacity(1 + bytes.len());
                frame.put_u8(MESSAGE);
                frame.put_slice(bytes);
                WsFrame::Binary(frame.freeze())
            }
            Version::V4 => WsFrame::Binary(bytes.clone()),
        },
        _ => WsFrame::Text(packet.to_text(version)),
    }
}
