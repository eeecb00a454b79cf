//! Binary data in events and acknowledgements (v5 §Packet encoding > Format: "JSON-stringified
//! payload without binary + binary attachments extracted"; the reference `binary.ts`).
//!
//! Every binary value in the arguments becomes a placeholder `{"_placeholder":true,"num":N}` in
//! the JSON, N counting from 0 in the order of a depth-first walk, and its bytes become the Nth
//! attachment. Reading puts them back: a placeholder is an object whose `_placeholder` is `true`;
//! its `num` must then be an integer naming one of the attachments.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::DecodeError;

/// One argument of an event or an acknowledgement: JSON, binary data, or an array or object
/// with binary data somewhere inside.
///
/// A caller emits `["event", {"a":1}, <bytes>]` as
/// `vec![Arg::from(json!("event")), Arg::from(json!({"a":1})), Arg::from(bytes)]`, and acks
/// with `[null, {…}]` as two `Arg::Json`. [`Packet::args`](super::Packet::args) returns
/// `Array`/`Object` only around binary data: any part without binary is one `Json` value, kept
/// as the text that came (or, inside a binary packet, as that text re-serialized in the same key
/// order).
#[derive(Clone, Debug)]
pub enum Arg {
    Json(Box<RawValue>),
    Binary(Bytes),
    Array(Vec<Arg>),
    Object(Vec<(String, Arg)>),
}

impl PartialEq for Arg {
    fn eq(&self, other: &Arg) -> bool {
        match (self, other) {
            (Arg::Json(a), Arg::Json(b)) => a.get() == b.get(),
            (Arg::Binary(a), Arg::Binary(b)) => a == b,
            (Arg::Array(a), Arg::Array(b)) => a == b,
            (Arg::Object(a), Arg::Object(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Arg {}

impl From<serde_json::Value> for Arg {
    fn from(value: serde_json::Value) -> Arg {
        Arg::Json(serde_json::value::to_raw_value(&value).expect("a JSON value always serializes"))
    }
}

impl From<Box<RawValue>> for Arg {
    fn from(raw: Box<RawValue>) -> Arg {
        Arg::Json(raw)
    }
}

impl From<Bytes> for Arg {
    fn from(bytes: Bytes) -> Arg {
        Arg::Binary(bytes)
    }
}

impl From<Vec<u8>> for Arg {
    fn from(bytes: Vec<u8>) -> Arg {
        Arg::Binary(Bytes::from(bytes))
    }
}

impl Arg {
    /// Serializes any value as a JSON argument.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Arg, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Arg::Json)
    }

    /// The JSON text of a `Json` argument.
    pub fn as_json(&self) -> Option<&RawValue> {
        match self {
            Arg::Json(raw) => Some(raw),
            _ => None,
        }
    }

    /// The bytes of a `Binary` argument.
    pub fn as_binary(&self) -> Option<&Bytes> {
        match self {
            Arg::Binary(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The string of a `Json` argument that is a JSON string (an event name).
    pub fn to_str(&self) -> Option<String> {
        serde_json::from_str(self.as_json()?.get()).ok()
    }

    fn write(self, json: &mut String, attachments: &mut Vec<Bytes>) {
        match self {
            Arg::Json(raw) => json.push_str(raw.get()),
            Arg::Binary(bytes) => {
                json.push_str("{\"_placeholder\":true,\"num\":");
                json.push_str(&attachments.len().to_string());
                json.push('}');
                attachments.push(bytes);
            }
            Arg::Array(items) => {
                json.push('[');
                for (n, item) in items.into_iter().enumerate() {
                    if n > 0 {
                        json.push(',');
                    }
                    item.write(json, attachments);
                }
                json.push(']');
            }
            Arg::Object(entries) => {
                json.push('{');
                for (n, (key, value)) in entries.into_iter().enumerate() {
                    if n > 0 {
                        json.push(',');
                    }
                    json.push_str(&serde_json::to_string(&key).expect("a string serializes"));
                    json.push(':');
                    value.write(json, attachments);
                }
                json.push('}');
            }
        }
    }
}

/// The JSON array of the arguments, with a placeholder for each binary value, and the
/// attachments in placeholder order (`deconstructPacket`).
pub(super) fn deconstruct(args: Vec<Arg>) -> (Box<RawValue>, Vec<Bytes>) {
    let mut attachments = Vec::new();
    let mut json = String::new();
    Arg::Array(args).write(&mut json, &mut attachments);
    let json = RawValue::from_string(json).expect("built from JSON values and placeholders");
    (json, attachments)
}

/// The arguments of a binary packet with the attachments in place of their placeholders
/// (`reconstructPacket`). An argument with no placeholder inside stays the JSON text it was.
pub(super) fn reconstruct(data: &RawValue, attachments: &[Bytes]) -> Result<Vec<Arg>, DecodeError> {
    rebuild(data, attachments.len(), |num| {
        Arg::Binary(attachments[num].clone())
    })
}

/// Checks that every placeholder of a binary packet names one of its `count` attachments, before
/// they arrive.
pub(super) fn check_placeholders(data: &RawValue, count: usize) -> Result<(), DecodeError> {
    rebuild(data, count, |_| Arg::Binary(Bytes::new())).map(drop)
}

fn rebuild(
    data: &RawValue,
    count: usize,
    mut attachment: impl FnMut(usize) -> Arg,
) -> Result<Vec<Arg>, DecodeError> {
    let not_an_array = || DecodeError::InvalidPayload("the arguments are not an array");
    let args: Vec<&RawValue> = serde_json::from_str(data.get()).map_err(|_| not_an_array())?;
    let mut rebuilt = Vec::with_capacity(args.len());
    for arg in args {
        // A placeholder needs the key `_placeholder`, written as such or with escapes.
        let text = arg.get();
        if !text.contains("_placeholder") && !text.contains('\\') {
            rebuilt.push(Arg::Json(arg.to_owned()));
            continue;
        }
        let node: Node = serde_json::from_str(text).map_err(|_| not_an_array())?;
        rebuilt.push(match node.rebuild(count, &mut attachment)? {
            Rebuilt::Plain(node) => node.into_arg(),
            Rebuilt::Arg(arg) => arg,
        });
    }
    Ok(rebuilt)
}

/// A JSON value with the order of object keys kept (serde_json's `Value` sorts them). Duplicate
/// keys stay: whoever parses the JSON again keeps the last value, as `JSON.parse` did here.
enum Node {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

enum Rebuilt {
    /// No placeholder inside.
    Plain(Node),
    Arg(Arg),
}

impl Rebuilt {
    fn into_arg(self) -> Arg {
        match self {
            Rebuilt::Plain(node) => node.into_arg(),
            Rebuilt::Arg(arg) => arg,
        }
    }
}

impl Node {
    fn into_arg(self) -> Arg {
        Arg::Json(serde_json::value::to_raw_value(&self).expect("a parsed value serializes"))
    }

    /// The attachment index of a placeholder; `None` when this is not one. As in `JSON.parse`,
    /// the last of repeated keys counts.
    fn placeholder(&self, count: usize) -> Option<Result<usize, DecodeError>> {
        let Node::Object(entries) = self else {
            return None;
        };
        let last = |name: &str| entries.iter().rev().find(|(key, _)| key == name);
        if !matches!(last("_placeholder"), Some((_, Node::Bool(true)))) {
            return None;
        }
        let num = match last("num") {
            Some((_, Node::Number(num))) => num.as_u64().or_else(|| {
                let num = num.as_f64()?;
                (num.fract() == 0.0 && num >= 0.0 && num < u64::MAX as f64).then_some(num as u64)
            }),
            _ => None,
        };
        Some(match num.and_then(|num| usize::try_from(num).ok()) {
            Some(num) if num < count => Ok(num),
            _ => Err(DecodeError::IllegalPlaceholder),
        })
    }

    /// Replaces placeholders, each node visited once: a subtree without placeholder comes back
    /// `Plain` and becomes one JSON value only when its parent holds binary data.
    fn rebuild(
        self,
        count: usize,
        attachment: &mut impl FnMut(usize) -> Arg,
    ) -> Result<Rebuilt, DecodeError> {
        if let Some(num) = self.placeholder(count) {
            return Ok(Rebuilt::Arg(attachment(num?)));
        }
        match self {
            Node::Array(items) => {
                let items = items
                    .into_iter()
                    .map(|item| item.rebuild(count, attachment))
                    .collect::<Result<Vec<_>, _>>()?;
                if items.iter().all(|item| matches!(item, Rebuilt::Plain(_))) {
                    let items = items.into_iter().map(|item| match item {
                        Rebuilt::Plain(node) => node,
                        Rebuilt::Arg(_) => unreachable!("all items are plain"),
                    });
                    Ok(Rebuilt::Plain(Node::Array(items.collect())))
                } else {
                    Ok(Rebuilt::Arg(Arg::Array(
                        items.into_iter().map(Rebuilt::into_arg).collect(),
                    )))
                }
            }
            Node::Object(entries) => {
                let entries = entries
                    .into_iter()
                    .map(|(key, value)| Ok((key, value.rebuild(count, attachment)?)))
                    .collect::<Result<Vec<_>, DecodeError>>()?;
                if entries
                    .iter()
                    .all(|(_, value)| matches!(value, Rebuilt::Plain(_)))
                {
                    let entries = entries.into_iter().map(|(key, value)| match value {
                        Rebuilt::Plain(node) => (key, node),
                        Rebuilt::Arg(_) => unreachable!("all values are plain"),
                    });
                    Ok(Rebuilt::Plain(Node::Object(entries.collect())))
                } else {
                    Ok(Rebuilt::Arg(Arg::Object(
                        entries
                            .into_iter()
                            .map(|(key, value)| (key, value.into_arg()))
                            .collect(),
                    )))
                }
            }
            node => Ok(Rebuilt::Plain(node)),
        }
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Number(n) => n.serialize(s),
            Node::String(text) => s.serialize_str(text),
            Node::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
                Ok(Node::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Node, E> {
                Ok(Node::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Node, E> {
                Ok(Node::Number(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Node, E> {
                serde_json::Number::from_f64(n)
                    .map(Node::Number)
                    .ok_or_else(|| E::custom("a number that is not finite"))
            }
            fn visit_str<E>(self, text: &str) -> Result<Node, E> {
                Ok(Node::String(text.to_owned()))
            }
            fn visit_string<E>(self, text: String) -> Result<Node, E> {
                Ok(Node::String(text))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Node::Object(entries))
            }
        }
        d.deserialize_any(NodeVisitor)
    }
}
