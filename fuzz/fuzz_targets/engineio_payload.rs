//! Engine.IO decoders on arbitrary input: polling payloads of both revisions in both forms
//! (text; the binary form of revision 3), WebSocket text and binary frames, and the query
//! string. Every input must decode or fail cleanly, and whatever decodes must encode and decode
//! back to the same packets.
//!
//! Input: one byte of flags (bit 0: revision 4, bit 1: the body is a binary payload, bit 2: the
//! client reads binary), then the body.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use plexus_protocol::engineio::{
    Version, WsFrame, decode_payload, decode_ws_binary, decode_ws_text, encode_payload,
    encode_ws_frame, is_binary_content_type, parse_query,
};

const MAX_PACKETS: usize = 64;

fuzz_target!(|input: &[u8]| {
    let Some((&flags, body)) = input.split_first() else {
        return;
    };
    let version = if flags & 1 == 0 {
        Version::V3
    } else {
        Version::V4
    };
    let binary = flags & 2 != 0;
    let supports_binary = flags & 4 != 0;
    let body = Bytes::copy_from_slice(body);

    if let Ok(packets) = decode_payload(version, &body, binary, MAX_PACKETS) {
        assert!(packets.len() <= MAX_PACKETS);
        let encoded = encode_payload(version, &packets, supports_binary);
        let again = decode_payload(
            version,
            &encoded.body,
            is_binary_content_type(encoded.content_type),
            MAX_PACKETS,
        );
        assert_eq!(again.as_ref(), Ok(&packets), "{encoded:?}");
    }

    let mut frames = vec![decode_ws_binary(version, body.clone())];
    if let Ok(text) = std::str::from_utf8(&body) {
        frames.push(decode_ws_text(version, text));
        let _ = parse_query(text);
    }
    for packet in frames.into_iter().flatten() {
        let again = match encode_ws_frame(version, &packet, supports_binary) {
            WsFrame::Text(text) => decode_ws_text(version, &text),
            WsFrame::Binary(bytes) => decode_ws_binary(version, bytes),
        };
        assert_eq!(again.as_ref(), Ok(&packet));
    }
});
