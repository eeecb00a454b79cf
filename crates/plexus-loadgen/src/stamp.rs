//! The payload every scenario sends: a timestamp, a sequence number and the publisher's index,
//! padded to the requested size.
//!
//! `{"t":<µs>,"s":<seq>,"p":<publisher>,"x":"xxxx…"}`. `t` is microseconds since this process's
//! clock epoch, so publishers and subscribers of one load generator share a clock and the
//! difference on receipt is the publish-to-receive latency. The same JSON value travels through
//! every dialect (Plexus transcodes it to MessagePack for MessagePack subscribers; Socket.IO and
//! plain WebSocket carry it as JSON text), and [`MaybeStamp`] reads it back from either encoding.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt::{self, Write as _};
use std::sync::OnceLock;
use std::time::Instant;

/// The clock every connection of this process stamps with.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
pub fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// What a payload carries for measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Stamp {
    /// When it was sent, microseconds since [`epoch`].
    pub t: u64,
    /// The publisher's sequence number.
    pub s: u64,
    /// The publisher's index.
    pub p: u32,
}

impl Stamp {
    /// The stamp as JSON text of about `bytes` bytes (never less than the stamp itself).
    pub fn to_json(self, bytes: usize) -> String {
        let mut out = String::with_capacity(bytes.max(64));
        let _ = write!(
            out,
            r#"{{"t":{},"s":{},"p":{},"x":""#,
            self.t, self.s, self.p
        );
        let pad = bytes.saturating_sub(out.len() + 2);
        out.extend(std::iter::repeat_n('x', pad));
        out.push_str("\"}");
        out
    }
}

/// A payload that may be a [`Stamp`]; any other value reads as `None` instead of failing, so a
/// frame with foreign data is skipped rather than an error. Reads JSON and MessagePack alike,
/// without allocating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaybeStamp(pub Option<Stamp>);

enum Key {
    T,
    S,
    P,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                self.visit_bytes(v.as_bytes())
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Key, E> {
                Ok(match v {
                    b"t" => Key::T,
                    b"s" => Key::S,
                    b"p" => Key::P,
                    _ => Key::Other,
                })
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Key, E> {
                Ok(Key::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Key, E> {
                Ok(Key::Other)
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

struct StampVisitor;

impl<'de> Visitor<'de> for StampVisitor {
    type Value = MaybeStamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaybeStamp, A::Error> {
        let (mut t, mut s, mut p) = (None, None, None);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::T => t = map.next_value::<Number>()?.0,
                Key::S => s = map.next_value::<Number>()?.0,
                Key::P => p = map.next_value::<Number>()?.0,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(MaybeStamp(match (t, s, p) {
            (Some(t), Some(s), Some(p)) => Some(Stamp {
                t,
                s,
                p: u32::try_from(p).unwrap_or(u32::MAX),
            }),
            _ => None,
        }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MaybeStamp, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeStamp(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<MaybeStamp, E> {
        Ok(MaybeStamp(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<MaybeStamp, E> {
        Ok(MaybeStamp(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<MaybeStamp, E> {
        Ok(MaybeStamp(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<MaybeStamp, E> {
        Ok(MaybeStamp(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<MaybeStamp, E> {
        Ok(MaybeStamp(None))
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<MaybeStamp, E> {
        Ok(MaybeStamp(None))
    }
    fn visit_unit<E>(self) -> Result<MaybeStamp, E> {
        Ok(MaybeStamp(None))
    }
    fn visit_none<E>(self) -> Result<MaybeStamp, E> {
        Ok(MaybeStamp(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<MaybeStamp, D::Error> {
        d.deserialize_any(StampVisitor)
    }
}

impl<'de> Deserialize<'de> for MaybeStamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MaybeStamp, D::Error> {
        d.deserialize_any(StampVisitor)
    }
}

/// A stamp field: a non-negative integer, `None` for anything else.
struct Number(Option<u64>);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Number, D::Error> {
        struct NumberVisitor;
        impl<'de> Visitor<'de> for NumberVisitor {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Number, E> {
                Ok(Number(Some(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Number, E> {
                Ok(Number(u64::try_from(v).ok()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Number, E> {
                Ok(Number(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Number, E> {
                Ok(Number(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Number, E> {
                Ok(Number(None))
            }
            fn visit_unit<E>(self) -> Result<Number, E> {
                Ok(Number(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Number, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Number(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Number, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Number(None))
            }
        }
        d.deserialize_any(NumberVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_protocol::{Encoding, decode, encode};

    #[test]
    fn json_has_the_requested_size_and_reads_back() {
        let stamp = Stamp {
            t: 123_456,
            s: 7,
            p: 2,
        };
        let json = stamp.to_json(100);
        assert_eq!(json.len(), 100);
        let back: MaybeStamp = serde_json::from_str(&json).unwrap();
        assert_eq!(back.0, Some(stamp));
        // Too small a size still gives a whole stamp.
        let small = stamp.to_json(1);
        assert_eq!(
            serde_json::from_str::<MaybeStamp>(&small).unwrap().0,
            Some(stamp)
        );
    }

    #[test]
    fn reads_messagepack_in_any_key_order() {
        let value = serde_json::json!({"x": "pad", "p": 1, "t": 5, "s": 9});
        let bytes = encode(Encoding::Msgpack, &value);
        let back: MaybeStamp = decode(Encoding::Msgpack, &bytes).unwrap();
        assert_eq!(back.0, Some(Stamp { t: 5, s: 9, p: 1 }));
    }

    #[test]
    fn other_values_are_none_not_errors() {
        for text in [
            r#""ok""#,
            "[1,[2]]",
            "null",
            "3.5",
            r#"{"t":"x","s":1,"p":1}"#,
            r#"{"a":{"b":[1]}}"#,
        ] {
            let back: MaybeStamp = serde_json::from_str(text).unwrap();
            assert_eq!(back.0, None, "{text}");
        }
    }
}
