//! The Socket.IO decoder on arbitrary messages: text and binary Engine.IO messages in any
//! order. Every message must decode or fail cleanly; a complete event or ack must give its
//! arguments; and (protocol 5, which reads a packet as it is written) a complete packet must
//! encode and decode back to itself, and its arguments must build a packet with the same
//! arguments.
//!
//! Input: one byte of flags (bit 0: protocol 5), one byte each for the attachment and depth
//! limits, then messages: a tag byte (bit 0: binary), a length byte, that many bytes.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use plexus_protocol::socketio::{Decoder, Limits, Packet, Version};

const MAX_PACKET_BYTES: usize = 4096;

fuzz_target!(|input: &[u8]| {
    let [flags, attachments, depth, rest @ ..] = input else {
        return;
    };
    let version = if flags & 1 == 0 {
        Version::V4
    } else {
        Version::V5
    };
    let limits = Limits {
        max_attachments: usize::from(attachments % 16),
        max_depth: usize::from(*depth),
        max_packet_bytes: MAX_PACKET_BYTES,
    };
    let mut decoder = Decoder::new(version, limits);
    let mut rest = rest;
    while let [tag, length, tail @ ..] = rest {
        let length = usize::from(*length).min(tail.len());
        let (message, tail) = tail.split_at(length);
        rest = tail;
        let decoded = if tag & 1 == 1 {
            decoder.binary(Bytes::copy_from_slice(message))
        } else {
            match std::str::from_utf8(message) {
                Ok(text) => decoder.text(text),
                Err(_) => continue,
            }
        };
        if let Ok(Some(packet)) = decoded {
            check(version, &packet);
        }
    }
});

fn check(version: Version, packet: &Packet) {
    let args = (packet.kind.is_event() || packet.kind.is_ack()).then(|| {
        packet
            .args()
            .expect("the decoder checked the payload and the placeholders")
    });
    if version == Version::V4 {
        return;
    }
    let lax = Limits {
        max_attachments: usize::MAX,
        max_depth: 128,
        max_packet_bytes: usize::MAX,
    };
    assert_eq!(decode(version, lax, packet).as_ref(), Ok(packet));
    let Some(args) = args else {
        return;
    };
    let rebuilt = match (packet.kind.is_event(), packet.id) {
        (true, id) => Packet::event(&packet.nsp, id, args.clone()),
        (false, Some(id)) => Packet::ack(&packet.nsp, id, args.clone()),
        // An ack without id decodes (the reference parser reads one), but none is built.
        (false, None) => return,
    };
    let decoded = decode(version, lax, &rebuilt).expect("a built packet decodes");
    assert_eq!(decoded.args().as_ref(), Ok(&args));
}

/// Encodes a packet and decodes it with a fresh decoder.
fn decode(
    version: Version,
    limits: Limits,
    packet: &Packet,
) -> Result<Packet, plexus_protocol::socketio::DecodeError> {
    let mut decoder = Decoder::new(version, limits);
    let mut decoded = decoder.text(&packet.encode())?;
    for attachment in &packet.attachments {
        decoded = decoder.binary(attachment.clone())?;
    }
    Ok(decoded.expect("a complete packet"))
}
