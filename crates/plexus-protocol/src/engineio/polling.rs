//! HTTP long-polling payloads: several packets in one request or response body.
//!
//! Revision 4 (v4 §Packet encoding > HTTP long-polling): the text forms of the packets separated
//! by the record separator `\x1e`; binary data always in base64 (`b<base64>`); the body is
//! always text.
//!
//! Revision 3 (v3 §Payload; `engine.io-parser` 2.x `encodePayload` / `decodePayload`) has two
//! formats, and the client chooses which one it reads and writes:
//! - text, `<length>:<packet>` repeated, where the length counts the packet's characters as
//!   JavaScript counts them, in UTF-16 code units (`€` is 1, `😀` is 2); binary data is a
//!   `b4<base64>` packet. A server writes it when the client asked for base64 (`b64=1`) or when
//!   no packet carries binary data;
//! - binary (`application/octet-stream`), for every packet `<0 = text | 1 = binary>`, the
//!   length as one byte per decimal digit (`12` is `01 02`), `ff`, then the packet: a text
//!   packet as UTF-8 (the length counts bytes), a binary packet as its type byte (4) and its
//!   data. A server writes it when the client did not ask for base64 and some packet is binary.

use bytes::{BufMut, Bytes, BytesMut};

use super::packet::MESSAGE;
use super::{Data, DecodeError, Packet, Version};

/// The content type of a text payload (`polling.ts` `doWrite`).
pub const CONTENT_TYPE_TEXT: &str = "text/plain; charset=UTF-8";
/// The content type of a binary payload (revision 3 only).
pub const CONTENT_TYPE_BINARY: &str = "application/octet-stream";
/// The body of the answer to a successful POST (v4 §Sending data) …
pub const POST_OK_BODY: &str = "ok";
/// … and its content type (`polling.ts`: `text/html`, "to avoid an unwanted download dialog on
/// certain user-agents").
pub const POST_OK_CONTENT_TYPE: &str = "text/html";

/// The record separator between the packets of a revision 4 payload.
const SEPARATOR: char = '\x1e';

/// Whether a POST body with this `Content-Type` is a binary payload.
///
/// The reference server compares the whole header with `application/octet-stream`; this also
/// accepts other letter cases and parameters (`application/octet-stream; x=y`), which it would
/// have read as a text payload and then rejected.
pub fn is_binary_content_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case(CONTENT_TYPE_BINARY)
}

/// Decodes the body of a polling POST into its packets.
///
/// `binary` says whether the body is a binary payload ([`is_binary_content_type`] of the
/// request's `Content-Type`); a revision 4 client never sends one. The caller bounds the body's
/// size; `max_packets` bounds how many packets it may hold. Every length read from the body is
/// checked against the bytes that are really there before it is used, and nothing is allocated
/// from it.
///
/// The reference server stops reading a payload at a `close` packet; this returns every packet,
/// and the caller stops at the first `close`.
pub fn decode_payload(
    version: Version,
    body: &Bytes,
    binary: bool,
    max_packets: usize,
) -> Result<Vec<Packet>, DecodeError> {
    let mut packets = Packets {
        packets: Vec::new(),
        max: max_packets,
    };
    match (version, binary) {
        (Version::V4, true) => return Err(DecodeError::BinaryPayloadV4),
        (Version::V4, false) => {
            // `decodePayload`: split on the separator; every part is a packet, an empty one
            // (an empty body, a trailing separator) is an error.
            for text in utf8(body)?.split(SEPARATOR) {
                packets.push(Packet::from_text(Version::V4, text)?)?;
            }
        }
        (Version::V3, false) => decode_v3_text(utf8(body)?, &mut packets)?,
        (Version::V3, true) => decode_v3_binary(body, &mut packets)?,
    }
    Ok(packets.packets)
}

/// A payload's packets, refusing more than the caller's bound.
struct Packets {
    packets: Vec<Packet>,
    max: usize,
}

impl Packets {
    fn push(&mut self, packet: Packet) -> Result<(), DecodeError> {
        if self.packets.len() >= self.max {
            return Err(DecodeError::TooManyPackets { max: self.max });
        }
        self.packets.push(packet);
        Ok(())
    }
}

fn utf8(body: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(body).map_err(|_| DecodeError::Utf8)
}

/// `<length>:<packet>` repeated (v3 §Payload). An empty body is an error; `0:` is a payload with
/// no packet (what a server writes for an empty list).
///
/// The reference parser reads the length with `Number()`, so it also takes ` 6`, `6.0`, `0x6` or
/// `+6`; here a length is one or more ASCII digits.
fn decode_v3_text(mut text: &str, packets: &mut Packets) -> Result<(), DecodeError> {
    if text.is_empty() {
        return Err(DecodeError::Payload("empty payload"));
    }
    while !text.is_empty() {
        let Some(colon) = text.find(':') else {
            return Err(DecodeError::Payload("a length without `:`"));
        };
        let length = parse_decimal(text[..colon].bytes().map(|b| b.wrapping_sub(b'0')))
            .ok_or(DecodeError::Payload("a length that is not a number"))?;
        let rest = &text[colon + 1..];
        let end = utf16_prefix(rest, length).ok_or(DecodeError::Payload(
            "a length beyond the end of the payload",
        ))?;
        if end > 0 {
            packets.push(Packet::from_text(Version::V3, &rest[..end])?)?;
        }
        text = &rest[end..];
    }
    Ok(())
}

/// The byte length of the first `units` UTF-16 code units of `text`, or `None` when `text` is
/// shorter or the count ends inside a character that takes two units.
fn utf16_prefix(text: &str, units: usize) -> Option<usize> {
    let mut counted = 0usize;
    for (index, c) in text.char_indices() {
        if counted == units {
            return Some(index);
        }
        counted += c.len_utf16();
        if counted > units {
            return None;
        }
    }
    (counted == units).then_some(text.len())
}

/// Reads decimal digits (as values 0–9, one per item) into a number: `None` when there are none,
/// when one is not a digit, or when the number does not fit.
fn parse_decimal(digits: impl Iterator<Item = u8>) -> Option<usize> {
    let (mut value, mut any) = (0usize, false);
    for digit in digits {
        if digit > 9 {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(usize::from(digit))?;
        any = true;
    }
    any.then_some(value)
}

/// The binary payload of revision 3 (v3 §Payload, "When XHR2 is supported").
///
/// The reference parser treats any first byte other than 0 as "binary" and reads past the end of
/// the body when a length lies; here the first byte is 0 or 1, the length's digits are bytes 0–9
/// ended by `ff`, and the length must fit in what is left. An empty body is a payload with no
/// packet, as there.
fn decode_v3_binary(body: &Bytes, packets: &mut Packets) -> Result<(), DecodeError> {
    let mut at = 0usize;
    while at < body.len() {
        let is_text = match body[at] {
            0 => true,
            1 => false,
            _ => return Err(DecodeError::Payload("a packet header that is not 0 or 1")),
        };
        at += 1;
        let Some(end_of_length) = body[at..].iter().position(|&b| b == 0xff) else {
            return Err(DecodeError::Payload("a length without its `ff` end"));
        };
        let length = parse_decimal(body[at..at + end_of_length].iter().copied())
            .ok_or(DecodeError::Payload("a length that is not a number"))?;
        at += end_of_length + 1;
        if length > body.len() - at {
            return Err(DecodeError::Payload(
                "a length beyond the end of the payload",
            ));
        }
        let packet = body.slice(at..at + length);
        at += length;
        packets.push(if is_text {
            Packet::from_text(Version::V3, utf8(&packet)?)?
        } else {
            Packet::from_v3_binary(packet)?
        })?;
    }
    Ok(())
}

/// An encoded polling response body and its `Content-Type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPayload {
    pub content_type: &'static str,
    pub body: Bytes,
}

/// Encodes packets as the body of a polling GET response.
///
/// `supports_binary` is false when the client asked for base64 (`b64` in the query, see
/// [`Query::b64`](super::Query::b64)); it only matters in revision 3, where a payload with
/// binary data is then written as text (`b4<base64>`), and otherwise in the binary format.
/// Revision 4 payloads are always text.
pub fn encode_payload(
    version: Version,
    packets: &[Packet],
    supports_binary: bool,
) -> EncodedPayload {
    match version {
        Version::V4 => {
            let mut text = String::new();
            for (index, packet) in packets.iter().enumerate() {
                if index > 0 {
                    text.push(SEPARATOR);
                }
                text.push_str(&packet.to_text(Version::V4));
            }
            text_payload(text)
        }
        Version::V3 if supports_binary && packets.iter().any(Packet::is_binary) => EncodedPayload {
            content_type: CONTENT_TYPE_BINARY,
            body: encode_v3_binary(packets),
        },
        Version::V3 => {
            if packets.is_empty() {
                // `encodePayload` of no packet.
                return text_payload("0:".to_owned());
            }
            let mut text = String::new();
            for packet in packets {
                let packet = packet.to_text(Version::V3);
                text.push_str(&packet.encode_utf16().count().to_string());
                text.push(':');
                text.push_str(&packet);
            }
            text_payload(text)
        }
    }
}

fn text_payload(text: String) -> EncodedPayload {
    EncodedPayload {
        content_type: CONTENT_TYPE_TEXT,
        body: Bytes::from(text),
    }
}

/// `encodePayloadAsBinary`: text packets as UTF-8 with their byte length, binary packets as the
/// type byte and the data.
fn encode_v3_binary(packets: &[Packet]) -> Bytes {
    let mut body = BytesMut::new();
    let header = |body: &mut BytesMut, kind: u8, length: usize| {
        body.put_u8(kind);
        body.extend(length.to_string().bytes().map(|digit| digit - b'0'));
        body.put_u8(0xff);
    };
    for packet in packets {
        match packet {
            Packet::Message(Data::Binary(bytes)) => {
                header(&mut body, 1, 1 + bytes.len());
                body.put_u8(MESSAGE);
                body.put_slice(bytes);
            }
            _ => {
                let text = packet.to_text(Version::V3);
                header(&mut body, 0, text.len());
                body.put_slice(text.as_bytes());
            }
        }
    }
    body.freeze()
}
