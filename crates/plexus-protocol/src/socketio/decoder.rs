//! The stateful decoder: Engine.IO messages in, complete Socket.IO packets out (the reference
//! `Decoder.add` and `BinaryReconstructor`).
//!
//! A text message is a packet's string form. A `BINARY_EVENT` or `BINARY_ACK` announces N
//! attachments: the decoder then waits for exactly N binary messages and yields the packet with
//! the last one. A binary message when none is awaited, or a text message while some are, is an
//! error.

use bytes::Bytes;

use super::binary::check_placeholders;
use super::{DecodeError, Packet, Version};

/// The bounds of a [`Decoder`], chosen by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Attachments one packet may announce (the reference parser's `maxAttachments`, 10 by
    /// default).
    pub max_attachments: usize,
    /// How deep a payload may nest arrays and objects; a bound above 128, serde_json's own
    /// limit, counts as 128.
    pub max_depth: usize,
    /// Bytes of one packet: its string form plus all its attachments.
    pub max_packet_bytes: usize,
}

/// Decodes the Engine.IO messages of one connection into Socket.IO packets.
#[derive(Debug)]
pub struct Decoder {
    version: Version,
    limits: Limits,
    pending: Option<Pending>,
}

/// A binary packet waiting for its attachments.
#[derive(Debug)]
struct Pending {
    packet: Packet,
    expected: usize,
    bytes: usize,
}

impl Decoder {
    pub fn new(version: Version, limits: Limits) -> Decoder {
        Decoder {
            version,
            limits,
            pending: None,
        }
    }

    /// Takes a text message. Returns the packet when it is complete, `None` when it is a binary
    /// packet whose attachments must follow.
    pub fn text(&mut self, text: &str) -> Result<Option<Packet>, DecodeError> {
        if self.pending.take().is_some() {
            return Err(DecodeError::UnexpectedText);
        }
        let (packet, expected) = Packet::decode(self.version, text, &self.limits)?;
        if !packet.kind.is_binary() {
            return Ok(Some(packet));
        }
        if let Some(data) = &packet.data {
            check_placeholders(data, expected)?;
        }
        if expected == 0 {
            return Ok(Some(packet));
        }
        self.pending = Some(Pending {
            packet,
            expected,
            bytes: text.len(),
        });
        Ok(None)
    }

    /// Takes a binary message: the next attachment of the awaited packet. Returns the packet
    /// with its last attachment.
    pub fn binary(&mut self, data: Bytes) -> Result<Option<Packet>, DecodeError> {
        let Some(mut pending) = self.pending.take() else {
            return Err(DecodeError::UnexpectedBinary);
        };
        pending.bytes = pending.bytes.saturating_add(data.len());
        if pending.bytes > self.limits.max_packet_bytes {
            return Err(DecodeError::TooLarge {
                max: self.limits.max_packet_bytes,
            });
        }
        pending.packet.attachments.push(data);
        if pending.packet.attachments.len() == pending.expected {
            return Ok(Some(pending.packet));
        }
        self.pending = Some(pending);
        Ok(None)
    }

    /// Whether attachments are awaited.
    pub fn is_awaiting_attachments(&self) -> bool {
        self.pending.is_some()
    }

    /// Drops a packet waiting for its attachments (the reference `destroy()`); the next message
    /// starts a new packet. After an error the decoder is in this state already.
    pub fn reset(&mut self) {
        self.pending = None;
    }
}
