//! The two encodings of the native protocol and batching.
//!
//! A WebSocket message carries one or more frames:
//! - JSON (`plexus.v1.json`, text messages): frames are JSON objects separated by a newline (the
//!   server writes exactly one `\n` between frames; a reader accepts any JSON whitespace);
//! - MessagePack (`plexus.v1.msgpack`, binary messages): frames are MessagePack maps written back
//!   to back.

use bytes::{Bytes, BytesMut};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The encoding of a connection's frames, chosen by its WebSocket subprotocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Json,
    Msgpack,
}

impl Encoding {
    /// The subprotocol token for protocol v1 in this encoding.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Json => crate::SUBPROTOCOL_JSON,
            Encoding::Msgpack => crate::SUBPROTOCOL_MSGPACK,
        }
    }

    /// Whether messages in this encoding are WebSocket binary messages (else text).
    pub fn is_binary(self) -> bool {
        matches!(self, Encoding::Msgpack)
    }

    /// A small index (0 for JSON, 1 for MessagePack), for per-encoding caches.
    pub fn index(self) -> usize {
        match self {
            Encoding::Json => 0,
            Encoding::Msgpack => 1,
        }
    }
}

/// A frame or message that could not be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are not JSON / MessagePack at all, or not a sequence of values.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message holds no frame.
    #[error("empty message")]
    Empty,
    /// A frame decoded, but not into the expected shape (missing or mistyped fields).
    #[error("invalid frame: {0}")]
    Invalid(String),
}

/// The deepest nesting a MessagePack frame may have (serde_json's own limit for JSON is 128).
/// It keeps a hostile frame from overflowing the stack of the task that decodes it.
const MAX_DEPTH: usize = 100;

/// Splits one WebSocket message into the bytes of its frames, without decoding them.
///
/// The number of frames is bounded by the message size (which the transport limits). Fails
/// when any part of the message is not a frame; use [`frames`] to handle the frames before a
/// broken one.
pub fn split_frames(encoding: Encoding, message: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let frames = frames(encoding, message).collect::<Result<Vec<_>, _>>()?;
    if frames.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(frames)
}

/// The frames of one WebSocket message, one after the other: each item is a frame's bytes, or
/// the error that ends the message (nothing follows an error). A message with no frame yields
/// nothing.
///
/// A server handles the frames before a broken one exactly as if they had come alone (§3.7 of
/// `docs/protocol.md`), then closes.
pub fn frames(encoding: Encoding, message: &[u8]) -> Frames<'_> {
    Frames {
        encoding,
        message,
        start: 0,
        failed: false,
    }
}

/// The iterator of [`frames`].
#[derive(Debug)]
pub struct Frames<'a> {
    encoding: Encoding,
    message: &'a [u8],
    start: usize,
    failed: bool,
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<&'a [u8], DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = &self.message[self.start..];
        let found = match self.encoding {
            Encoding::Json => {
                let mut stream =
                    serde_json::Deserializer::from_slice(rest).into_iter::<&RawValue>();
                match stream.next()? {
                    Ok(raw) => {
                        let end = stream.byte_offset();
                        // The raw value is a sub-slice of `rest`; where it starts is where
                        // the whitespace before it ends.
                        let begin = raw.get().as_ptr() as usize - rest.as_ptr() as usize;
                        Ok((begin, end))
                    }
                    Err(e) => Err(DecodeError::Malformed(e.to_string())),
                }
            }
            Encoding::Msgpack => {
                if rest.is_empty() {
                    return None;
                }
                // A cursor reader never allocates a length a header claims: it reads what is
                // there.
                let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(rest));
                de.set_max_depth(MAX_DEPTH);
                match IgnoredAny::deserialize(&mut de) {
                    Ok(_) => Ok((0, de.position() as usize)),
                    Err(e) => Err(DecodeError::Malformed(e.to_string())),
                }
            }
        };
        Some(match found {
            Ok((begin, end)) => {
                self.start += end;
                Ok(&rest[begin..end])
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        })
    }
}

/// Decodes one frame (as returned by [`split_frames`]) into `T`.
pub fn decode<'a, T: Deserialize<'a>>(
    encoding: Encoding,
    frame: &'a [u8],
) -> Result<T, DecodeError> {
    match encoding {
        Encoding::Json => {
            serde_json::from_slice(frame).map_err(|e| DecodeError::Invalid(e.to_string()))
        }
        Encoding::Msgpack => {
            let mut de = rmp_serde::Deserializer::from_read_ref(frame);
            de.set_max_depth(MAX_DEPTH);
            T::deserialize(&mut de).map_err(|e| DecodeError::Invalid(e.to_string()))
        }
    }
}

/// Encodes one frame. Structs become maps with named fields in both encodings.
pub fn encode<T: Serialize + ?Sized>(encoding: Encoding, value: &T) -> Bytes {
    let mut buf = Vec::with_capacity(128);
    encode_into(encoding, value, &mut buf);
    Bytes::from(buf)
}

fn encode_into<T: Serialize + ?Sized>(encoding: Encoding, value: &T, buf: &mut Vec<u8>) {
    // Our frame types serialize infallibly: every payload was validated when it was built.
    let result = match encoding {
        Encoding::Json => serde_json::to_writer(&mut *buf, value).map_err(|e| e.to_string()),
        Encoding::Msgpack => value
            .serialize(&mut rmp_serde::Serializer::new(&mut *buf).with_struct_map())
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = result {
        panic!("plexus-protocol: a frame failed to encode: {e}");
    }
}

/// Joins already-encoded frames into one WebSocket message.
#[derive(Debug)]
pub struct FrameWriter {
    encoding: Encoding,
    buf: BytesMut,
    frames: usize,
}

impl FrameWriter {
    pub fn new(encoding: Encoding) -> FrameWriter {
        FrameWriter {
            encoding,
            buf: BytesMut::new(),
            frames: 0,
        }
    }

    /// Appends one encoded frame.
    pub fn push(&mut self, frame: &[u8]) {
        if self.frames > 0 && self.encoding == Encoding::Json {
            self.buf.extend_from_slice(b"\n");
        }
        self.buf.extend_from_slice(frame);
        self.frames += 1;
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Frames written so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The message, leaving the writer empty for reuse.
    pub fn take(&mut self) -> Bytes {
        self.frames = 0;
        self.buf.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_batches_split_on_whitespace() {
        let msg = b"{\"op\":\"pong\"}\n{\"id\":1,\"op\":\"x\"}  {\"id\":2}";
        let frames = split_frames(Encoding::Json, msg).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1], b"{\"id\":1,\"op\":\"x\"}");
    }

    #[test]
    fn msgpack_batches_split_back_to_back() {
        let a = encode(Encoding::Msgpack, &serde_json::json!({"id": 1, "op": "a"}));
        let b = encode(Encoding::Msgpack, &serde_json::json!({"op": "pong"}));
        let mut w = FrameWriter::new(Encoding::Msgpack);
        w.push(&a);
        w.push(&b);
        let msg = w.take();
        let frames = split_frames(Encoding::Msgpack, &msg).unwrap();
        assert_eq!(frames, vec![&a[..], &b[..]]);
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            split_frames(Encoding::Json, b"{\"a\":"),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            split_frames(Encoding::Json, b"   "),
            Err(DecodeError::Empty)
        );
        // A str32 header that claims 4 GiB must not allocate it.
        let bomb = [0xdb, 0xff, 0xff, 0xff, 0xff, b'a'];
        assert!(matches!(
            split_frames(Encoding::Msgpack, &bomb),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn frames_before_a_broken_one_are_yielded() {
        let msg = b"{\"id\":1,\"op\":\"publish\"}\n{\"id\":2,";
        let mut it = frames(Encoding::Json, msg);
        assert_eq!(it.next(), Some(Ok(&b"{\"id\":1,\"op\":\"publish\"}"[..])));
        assert!(matches!(it.next(), Some(Err(DecodeError::Malformed(_)))));
        assert_eq!(it.next(), None);
        let a = encode(Encoding::Msgpack, &serde_json::json!({"id": 1, "op": "a"}));
        let mut msg = a.to_vec();
        msg.push(0xc1); // never used in MessagePack
        let mut it = frames(Encoding::Msgpack, &msg);
        assert_eq!(it.next(), Some(Ok(&a[..])));
        assert!(matches!(it.next(), Some(Err(DecodeError::Malformed(_)))));
        assert_eq!(it.next(), None);
        assert_eq!(frames(Encoding::Json, b"  \n ").next(), None);
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(split_frames(Encoding::Json, deep.as_bytes()).is_err());
        let deep = vec![0x91u8; 100_000]; // fixarray of one element, nested
        assert!(split_frames(Encoding::Msgpack, &deep).is_err());
    }
}
