//! Sockety's decoders on arbitrary bytes: the connection header, every packet, and the
//! reader's multiplexing rules, fed in two pieces at an arbitrary cut — never a panic, the same
//! events however the bytes are cut; every packet that decodes encodes to bytes that decode to
//! the same packet.
//!
//! Input: one byte (the channels the reader announced, 1 + the byte), one byte (the cut), then
//! the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_protocol::sockety::{Reader, decode_header, decode_packet, encode_packet};

fuzz_target!(|input: &[u8]| {
    let [channels, cut, stream @ ..] = input else {
        return;
    };
    let _ = decode_header(stream);
    let mut rest = stream;
    while let Ok(Some((packet, used))) = decode_packet(rest) {
        let mut bytes = Vec::new();
        encode_packet(&mut bytes, &packet);
        assert_eq!(decode_packet(&bytes), Ok(Some((packet, bytes.len()))));
        rest = &rest[used..];
    }
    let channels = u16::from(*channels) + 1;
    // In one piece, then in two: the same events, or an error in both.
    let mut whole = Vec::new();
    let one = Reader::new(channels).read(stream, &mut whole);
    let cut = usize::from(*cut).min(stream.len());
    let mut reader = Reader::new(channels);
    let mut pieces = Vec::new();
    let two = reader.read(&stream[..cut], &mut pieces).and_then(|used| {
        let mut buf = stream[used..cut].to_vec();
        buf.extend_from_slice(&stream[cut..]);
        reader.read(&buf, &mut pieces).map(|more| used + more)
    });
    match (one, two) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert_eq!(whole, pieces);
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("one piece: {a:?}, two: {b:?}"),
    }
});
