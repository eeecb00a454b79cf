//! The application payload: any JSON value, or raw bytes.
//!
//! On the wire a payload is one of two fields of a frame:
//! - `data`: a JSON value. In JSON frames it is the value itself; in MessagePack frames it is the
//!   same value written as MessagePack (maps with string keys, arrays, strings, numbers, booleans,
//!   nil). A JSON payload is kept as validated JSON text and never parsed again on the way through
//!   the server.
//! - `binary`: bytes. In JSON frames a base64 string (standard alphabet, padded); in MessagePack
//!   frames a `bin` value.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use std::sync::Arc;

/// An application payload: a JSON value (kept as JSON text) or bytes.
#[derive(Clone)]
pub enum Payload {
    Json(Arc<RawValue>),
    Binary(Bytes),
}

/// Why a payload could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("a frame may carry `data` or `binary`, not both")]
    Both,
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
}

impl Payload {
    /// The JSON `null` payload.
    pub fn null() -> Payload {
        Payload::Json(Arc::from(RawValue::NULL.to_owned()))
    }

    /// Serializes any value as a JSON payload.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Payload, PayloadError> {
        serde_json::value::to_raw_value(value)
            .map(|raw| Payload::Json(Arc::from(raw)))
            .map_err(|e| PayloadError::InvalidJson(e.to_string()))
    }

    /// Validates JSON text and wraps it without re-encoding.
    pub fn from_json_str(text: &str) -> Result<Payload, PayloadError> {
        if !depth_within(text, MAX_PAYLOAD_DEPTH) {
            return Err(PayloadError::InvalidJson(format!(
                "nests deeper than {MAX_PAYLOAD_DEPTH} levels"
            )));
        }
        RawValue::from_string(text.to_owned())
            .map(|raw| Payload::Json(Arc::from(raw)))
            .map_err(|e| PayloadError::InvalidJson(e.to_string()))
    }

    /// Wraps bytes.
    pub fn binary(bytes: impl Into<Bytes>) -> Payload {
        Payload::Binary(bytes.into())
    }

    /// The JSON text of a JSON payload.
    pub fn as_json_str(&self) -> Option<&str> {
        match self {
            Payload::Json(raw) => Some(raw.get()),
            Payload::Binary(_) => None,
        }
    }

    /// The bytes of a binary payload.
    pub fn as_binary(&self) -> Option<&Bytes> {
        match self {
            Payload::Binary(bytes) => Some(bytes),
            Payload::Json(_) => None,
        }
    }

    /// Deserializes a JSON payload into `T`.
    pub fn to_value<T: serde::de::DeserializeOwned>(&self) -> Result<T, PayloadError> {
        match self {
            Payload::Json(raw) => serde_json::from_str(raw.get())
                .map_err(|e| PayloadError::InvalidJson(e.to_string())),
            Payload::Binary(_) => Err(PayloadError::InvalidJson("payload is binary".into())),
        }
    }

    /// Size of the payload in bytes (JSON text length or byte count).
    pub fn len(&self) -> usize {
        match self {
            Payload::Json(raw) => raw.get().len(),
            Payload::Binary(bytes) => bytes.len(),
        }
    }

    /// Whether the payload has no bytes (never true for JSON, which is at least `null`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds a payload from the two wire fields. `None` when both are absent.
    pub fn from_fields(
        data: Option<DataField>,
        binary: Option<BinaryField>,
    ) -> Result<Option<Payload>, PayloadError> {
        match (data, binary) {
            (Some(_), Some(_)) => Err(PayloadError::Both),
            (Some(DataField(raw)), None) => Ok(Some(Payload::Json(raw))),
            (None, Some(BinaryField(bytes))) => Ok(Some(Payload::Binary(bytes))),
            (None, None) => Ok(None),
        }
    }

    /// Splits the payload into the two wire fields, exactly one of which is set.
    pub fn to_fields(&self) -> (Option<DataField>, Option<BinaryField>) {
        match self {
            Payload::Json(raw) => (Some(DataField(raw.clone())), None),
            Payload::Binary(bytes) => (None, Some(BinaryField(bytes.clone()))),
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Json(raw) => write!(f, "Json({})", raw.get()),
            Payload::Binary(bytes) => write!(f, "Binary({} bytes)", bytes.len()),
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Payload::Json(a), Payload::Json(b)) => a.get() == b.get(),
            (Payload::Binary(a), Payload::Binary(b)) => a == b,
            _ => false,
        }
    }
}

/// The `data` field: a JSON value, as JSON in JSON frames and as MessagePack in MessagePack frames.
#[derive(Clone)]
pub struct DataField(pub Arc<RawValue>);

impl fmt::Debug for DataField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl PartialEq for DataField {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Serialize for DataField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            self.0.serialize(serializer)
        } else {
            // MessagePack: transcode the JSON text once per encoding.
            let value: serde_json::Value =
                serde_json::from_str(self.0.get()).map_err(serde::ser::Error::custom)?;
            value.serialize(serializer)
        }
    }
}

/// The deepest nesting a JSON payload may have, so that converting it for MessagePack
/// subscribers (which parses it) can never hit a recursion limit.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// Whether JSON text nests arrays and objects at most `max` deep (strings are skipped).
pub(crate) fn depth_within(text: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

impl<'de> Deserialize<'de> for DataField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let raw = Box::<RawValue>::deserialize(deserializer)?;
            if !depth_within(raw.get(), MAX_PAYLOAD_DEPTH) {
                return Err(de::Error::custom(format!(
                    "data nests deeper than {MAX_PAYLOAD_DEPTH} levels"
                )));
            }
            Ok(DataField(Arc::from(raw)))
        } else {
            let value = serde_json::Value::deserialize(deserializer)?;
            let raw = serde_json::value::to_raw_value(&value).map_err(de::Error::custom)?;
            Ok(DataField(Arc::from(raw)))
        }
    }
}

/// The `binary` field: base64 text in JSON frames, `bin` in MessagePack frames.
#[derive(Clone, Debug, PartialEq)]
pub struct BinaryField(pub Bytes);

impl Serialize for BinaryField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&BASE64.encode(&self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for BinaryField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BinaryVisitor;
        impl<'de> Visitor<'de> for BinaryVisitor {
            type Value = BinaryField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes, or a base64 string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BinaryField, E> {
                BASE64
                    .decode(v)
                    .map(|b| BinaryField(Bytes::from(b)))
                    .map_err(|e| E::custom(format!("invalid base64: {e}")))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<BinaryField, E> {
                Ok(BinaryField(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<BinaryField, E> {
                Ok(BinaryField(Bytes::from(v)))
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(BinaryVisitor)
        } else {
            deserializer.deserialize_bytes(BinaryVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let p = Payload::json(&serde_json::json!({"a": [1, 2]})).unwrap();
        let (d, b) = p.to_fields();
        assert_eq!(Payload::from_fields(d, b).unwrap(), Some(p));
        let p = Payload::binary(vec![0u8, 255, 7]);
        let (d, b) = p.to_fields();
        assert_eq!(Payload::from_fields(d, b).unwrap(), Some(p));
        assert_eq!(Payload::from_fields(None, None).unwrap(), None);
    }

    #[test]
    fn both_fields_is_an_error() {
        let d = DataField(Arc::from(RawValue::from_string("1".into()).unwrap()));
        let b = BinaryField(Bytes::from_static(b"x"));
        assert_eq!(
            Payload::from_fields(Some(d), Some(b)),
            Err(PayloadError::Both)
        );
    }

    #[test]
    fn deep_json_is_refused_so_msgpack_conversion_cannot_fail() {
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_PAYLOAD_DEPTH),
            "]".repeat(MAX_PAYLOAD_DEPTH)
        );
        assert!(Payload::from_json_str(&ok).is_ok());
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_PAYLOAD_DEPTH + 1),
            "]".repeat(MAX_PAYLOAD_DEPTH + 1)
        );
        assert!(Payload::from_json_str(&deep).is_err());
        assert!(depth_within(r#"{"a":"[[[[\"[[["}"#, 1));
        let frame = format!(r#"{{"channel":"c","data":{deep}}}"#);
        assert!(serde_json::from_str::<crate::client::PublishParams>(&frame).is_err());
        let frame = format!(r#"{{"channel":"c","data":{ok}}}"#);
        let params: crate::client::PublishParams = serde_json::from_str(&frame).unwrap();
        let encoded = crate::encode(crate::Encoding::Msgpack, &params);
        assert!(!encoded.is_empty());
    }

    #[test]
    fn invalid_json_text_is_refused() {
        assert!(Payload::from_json_str("{nope").is_err());
        assert_eq!(
            Payload::from_json_str(" [1] ")
                .unwrap()
                .as_json_str()
                .map(str::trim),
            Some("[1]")
        );
    }
}
