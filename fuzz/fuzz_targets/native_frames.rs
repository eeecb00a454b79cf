//! The native protocol's decoders on arbitrary messages: splitting a WebSocket message into
//! frames and decoding each frame as a client request, in both encodings.
//!
//! Input: one byte (bit 0: MessagePack), then the message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_protocol::client::decode_request;
use plexus_protocol::{Encoding, frames, split_frames};

fuzz_target!(|input: &[u8]| {
    let Some((&flags, message)) = input.split_first() else {
        return;
    };
    let encoding = if flags & 1 == 0 {
        Encoding::Json
    } else {
        Encoding::Msgpack
    };
    let split = split_frames(encoding, message);
    let iterated: Result<Vec<&[u8]>, _> = frames(encoding, message).collect();
    if let Ok(split) = &split {
        assert_eq!(iterated.as_ref(), Ok(split));
    }
    for frame in frames(encoding, message).flatten() {
        let _ = decode_request(encoding, frame);
    }
});
