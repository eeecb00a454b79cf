//! Frames a client sends: requests.
//!
//! Every client frame is a map `{"id"?: u64, "op": string, "params"?: map}`. A frame with an `id`
//! is a request and gets exactly one reply with the same `id`; a frame without `id` is a
//! notification (only `pong` is sent that way) and gets no reply, except an `error` push when it
//! cannot be handled.

use crate::codes::ErrorCode;
use crate::encoding::{DecodeError, Encoding, decode, encode};
use crate::payload::{BinaryField, DataField, Payload, PayloadError};
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;

/// One decoded client frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The client-chosen id the reply will carry; `None` for a notification.
    pub id: Option<u64>,
    pub op: Op,
}

/// The operations of protocol v1.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// In-band authentication (and the protocol version check), before any other request.
    Connect(ConnectParams),
    /// The answer to a server `ping` push. Sent without `id`.
    Pong,
    Subscribe(SubscribeParams),
    Unsubscribe(UnsubscribeParams),
    Publish(PublishParams),
    /// A call of a named command (RPC) registered on the server.
    Call(CallParams),
    /// Read a channel's history.
    History(HistoryParams),
    /// Who is in a channel.
    Presence(ChannelParams),
    /// How many connections and unique users are in a channel.
    PresenceStats(ChannelParams),
    /// Set (or clear, with `null`) this connection's ephemeral presence state in a channel.
    PresenceState(PresenceStateParams),
    /// When a user was last seen in a channel.
    LastSeen(LastSeenParams),
    /// Read metadata of a connection, a user or a channel.
    GetMeta(GetMetaParams),
    /// Set or merge this connection's metadata.
    SetMeta(SetMetaParams),
    /// Acknowledge durable messages up to a sequence number.
    Ack(AckParams),
    /// Read a record.
    RecordGet(RecordParams),
    /// Replace a record's value.
    RecordSet(RecordSetParams),
    /// Apply an RFC 6902 JSON Patch to a record.
    RecordPatch(RecordPatchParams),
    /// Delete a record.
    RecordDelete(RecordDeleteParams),
    /// Receive a record's changes (`record` pushes) in `full` or `patch` mode.
    RecordSubscribe(RecordSubscribeParams),
    RecordUnsubscribe(RecordParams),
}

impl Op {
    /// The wire name of the operation.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Connect(_) => "connect",
            Op::Pong => "pong",
            Op::Subscribe(_) => "subscribe",
            Op::Unsubscribe(_) => "unsubscribe",
            Op::Publish(_) => "publish",
            Op::Call(_) => "call",
            Op::History(_) => "history",
            Op::Presence(_) => "presence",
            Op::PresenceStats(_) => "presence_stats",
            Op::PresenceState(_) => "presence_state",
            Op::LastSeen(_) => "last_seen",
            Op::GetMeta(_) => "get_meta",
            Op::SetMeta(_) => "set_meta",
            Op::Ack(_) => "ack",
            Op::RecordGet(_) => "record_get",
            Op::RecordSet(_) => "record_set",
            Op::RecordPatch(_) => "record_patch",
            Op::RecordDelete(_) => "record_delete",
            Op::RecordSubscribe(_) => "record_subscribe",
            Op::RecordUnsubscribe(_) => "record_unsubscribe",
        }
    }
}

/// Deserializes a present payload field, keeping JSON `null` as a value rather than "absent".
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DataField>, D::Error> {
    DataField::deserialize(d).map(Some)
}

/// `connect`: authenticate with a token or credentials.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectParams {
    /// A connection token (for example a JWT) checked by the server's auth hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Free-form credentials (any JSON value) checked by the server's auth hook.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub credentials: Option<DataField>,
    /// The protocol version the client speaks; the server closes with
    /// `unsupported_version` (4501) when it differs from its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// A name and version of the client library, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Whether to receive the user's unacknowledged durable messages now (default true; `false`
    /// drops the backlog, Mesa `shouldSync: false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<bool>,
}

/// A position in a channel: the offset of the last publication seen and the channel's epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

/// `subscribe`: start receiving a channel's publications.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscribeParams {
    pub channel: String,
    /// A subscription token, for channels that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Recover: deliver every publication after this position, then the live stream, or say
    /// `recovered: false` when that is impossible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Position>,
    /// Also return the last `history` publications (oldest first), when the namespace keeps
    /// history (Mesh "history on subscribe"). Ignored with `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<u32>,
}

impl SubscribeParams {
    pub fn new(channel: impl Into<String>) -> SubscribeParams {
        SubscribeParams {
            channel: channel.into(),
            ..Default::default()
        }
    }
}

/// Parameters naming one channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelParams {
    pub channel: String,
}

/// `history`: read a channel's kept publications.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryParams {
    pub channel: String,
    /// Only publications with an offset greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// At most this many (the server caps it; 0 returns only the position).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Newest first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverse: bool,
}

/// `presence_state`: this connection's ephemeral state in a channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PresenceStateParams {
    pub channel: String,
    /// Any JSON value; `null` clears the state.
    #[serde(deserialize_with = "present_required")]
    pub state: DataField,
    /// Clear the state after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_ms: Option<u64>,
}

fn present_required<'de, D: Deserializer<'de>>(d: D) -> Result<DataField, D::Error> {
    DataField::deserialize(d)
}

/// `last_seen`: when `user` was last present in `channel`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastSeenParams {
    pub channel: String,
    pub user: String,
}

/// `get_meta`: exactly one of `conn`, `user`, `channel`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetMetaParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// Parameters naming one record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordParams {
    pub id: String,
}

/// `record_set`: replace a record's value (creating it), optionally only at version `expect`
/// (0: only if it does not exist).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordSetParams {
    pub id: String,
    pub value: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<u64>,
}

/// `record_patch`: apply an RFC 6902 JSON Patch (an array of operations), optionally only at
/// version `expect`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordPatchParams {
    pub id: String,
    pub patch: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<u64>,
}

/// `record_delete`: delete a record, optionally only at version `expect`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordDeleteParams {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<u64>,
}

/// `record_subscribe`: `mode` is `full` (default) or `patch`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordSubscribeParams {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// `set_meta`: replace (or with `merge`, shallow-merge) this connection's metadata object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetMetaParams {
    pub value: DataField,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub merge: bool,
}

/// `ack`: acknowledge every durable message with a sequence number up to `seq`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AckParams {
    pub seq: u64,
}

/// `unsubscribe`: stop receiving a channel's publications.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnsubscribeParams {
    pub channel: String,
}

/// `publish`: publish a payload to a channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishParams {
    pub channel: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<DataField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryField>,
    /// An event name for the publication (subscribers see it; Socket.IO clients receive the
    /// publication as this event instead of `message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

impl PublishParams {
    pub fn new(channel: impl Into<String>, payload: &Payload) -> PublishParams {
        let (data, binary) = payload.to_fields();
        PublishParams {
            channel: channel.into(),
            data,
            binary,
            event: None,
        }
    }

    /// The published payload; required.
    pub fn payload(&self) -> Result<Payload, PayloadError> {
        Payload::from_fields(self.data.clone(), self.binary.clone())?
            .ok_or_else(|| PayloadError::InvalidJson("publish needs `data` or `binary`".into()))
    }
}

/// `call`: invoke a command (RPC) by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallParams {
    pub method: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<DataField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryField>,
}

impl CallParams {
    pub fn new(method: impl Into<String>, payload: &Payload) -> CallParams {
        let (data, binary) = payload.to_fields();
        CallParams {
            method: method.into(),
            data,
            binary,
        }
    }

    /// The call's payload; JSON `null` when absent.
    pub fn payload(&self) -> Result<Payload, PayloadError> {
        Ok(
            Payload::from_fields(self.data.clone(), self.binary.clone())?
                .unwrap_or_else(Payload::null),
        )
    }
}

/// Why a client frame could not become a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not a frame at all (not a map, or an `id` that is not an unsigned integer). The server
    /// closes the connection with `bad_frame` (4500).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A frame whose request is invalid; the server replies with this error (to `id` when
    /// present, otherwise as an `error` push) and goes on.
    #[error("{message}")]
    Rejected {
        id: Option<u64>,
        code: ErrorCode,
        message: String,
    },
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default, borrow)]
    op: Option<Cow<'a, str>>,
    #[serde(default)]
    params: ParamsShape,
}

/// Whether a frame's `params` is a map (or absent, or `null`) as §3.2 requires. Serde would
/// otherwise read a struct from an array too (`"params":["chan"]`).
#[derive(Default, PartialEq)]
enum ParamsShape {
    #[default]
    MapOrAbsent,
    Other(&'static str),
}

impl<'de> Deserialize<'de> for ParamsShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ParamsShape, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ParamsShape;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ParamsShape, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(ParamsShape::MapOrAbsent)
            }
            fn visit_unit<E>(self) -> Result<ParamsShape, E> {
                Ok(ParamsShape::MapOrAbsent)
            }
            fn visit_none<E>(self) -> Result<ParamsShape, E> {
                Ok(ParamsShape::MapOrAbsent)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ParamsShape, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(ParamsShape::Other("an array"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<ParamsShape, E> {
                Ok(ParamsShape::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<ParamsShape, E> {
                Ok(ParamsShape::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<ParamsShape, E> {
                Ok(ParamsShape::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<ParamsShape, E> {
                Ok(ParamsShape::Other("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<ParamsShape, E> {
                Ok(ParamsShape::Other("a string"))
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<ParamsShape, E> {
                Ok(ParamsShape::Other("bytes"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
struct WithParams<P> {
    params: P,
}

#[derive(Deserialize)]
struct WithOptionalParams<P> {
    #[serde(default = "Option::default")]
    params: Option<P>,
}

/// Decodes one client frame (see [`crate::split_frames`] for messages with several frames).
pub fn decode_request(encoding: Encoding, frame: &[u8]) -> Result<Request, RequestError> {
    if !is_map(encoding, frame) {
        return Err(RequestError::Malformed("a frame must be a map".into()));
    }
    let peek: Peek<'_> =
        decode(encoding, frame).map_err(|e| RequestError::Malformed(e.to_string()))?;
    let id = peek.id;
    let reject = |code: ErrorCode, message: String| RequestError::Rejected { id, code, message };
    let Some(op) = peek.op else {
        return Err(reject(
            ErrorCode::BAD_REQUEST,
            "the frame has no `op`".into(),
        ));
    };
    if let ParamsShape::Other(kind) = peek.params {
        return Err(reject(
            ErrorCode::BAD_REQUEST,
            format!("`params` must be a map, not {kind}"),
        ));
    }
    fn params<'a, P: Deserialize<'a>>(
        encoding: Encoding,
        frame: &'a [u8],
    ) -> Result<P, DecodeError> {
        decode::<WithParams<P>>(encoding, frame).map(|w| w.params)
    }
    let bad = |e: DecodeError| {
        reject(
            ErrorCode::BAD_REQUEST,
            format!("invalid params for `{op}`: {e}"),
        )
    };
    let op = match op.as_ref() {
        "connect" => Op::Connect(
            decode::<WithOptionalParams<ConnectParams>>(encoding, frame)
                .map_err(bad)?
                .params
                .unwrap_or_default(),
        ),
        "pong" => Op::Pong,
        "subscribe" => Op::Subscribe(params(encoding, frame).map_err(bad)?),
        "unsubscribe" => Op::Unsubscribe(params(encoding, frame).map_err(bad)?),
        "publish" => Op::Publish(params(encoding, frame).map_err(bad)?),
        "call" => Op::Call(params(encoding, frame).map_err(bad)?),
        "history" => Op::History(params(encoding, frame).map_err(bad)?),
        "presence" => Op::Presence(params(encoding, frame).map_err(bad)?),
        "presence_stats" => Op::PresenceStats(params(encoding, frame).map_err(bad)?),
        "presence_state" => Op::PresenceState(params(encoding, frame).map_err(bad)?),
        "last_seen" => Op::LastSeen(params(encoding, frame).map_err(bad)?),
        "get_meta" => Op::GetMeta(params(encoding, frame).map_err(bad)?),
        "set_meta" => Op::SetMeta(params(encoding, frame).map_err(bad)?),
        "ack" => Op::Ack(params(encoding, frame).map_err(bad)?),
        "record_get" => Op::RecordGet(params(encoding, frame).map_err(bad)?),
        "record_set" => Op::RecordSet(params(encoding, frame).map_err(bad)?),
        "record_patch" => Op::RecordPatch(params(encoding, frame).map_err(bad)?),
        "record_delete" => Op::RecordDelete(params(encoding, frame).map_err(bad)?),
        "record_subscribe" => Op::RecordSubscribe(params(encoding, frame).map_err(bad)?),
        "record_unsubscribe" => Op::RecordUnsubscribe(params(encoding, frame).map_err(bad)?),
        other => {
            return Err(reject(
                ErrorCode::UNKNOWN_OPERATION,
                format!("unknown operation `{other}`"),
            ));
        }
    };
    Ok(Request { id, op })
}

/// Whether the frame's first value is a map (serde would read a struct from an array too).
fn is_map(encoding: Encoding, frame: &[u8]) -> bool {
    match encoding {
        Encoding::Json => frame.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
        Encoding::Msgpack => {
            matches!(frame.first(), Some(0x80..=0x8f | 0xde | 0xdf))
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a, P: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    op: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a P>,
}

/// Encodes one client frame.
pub fn encode_request(encoding: Encoding, request: &Request) -> Bytes {
    fn env<P: Serialize>(encoding: Encoding, id: Option<u64>, op: &str, p: Option<&P>) -> Bytes {
        encode(encoding, &Envelope { id, op, params: p })
    }
    let (id, name) = (request.id, request.op.name());
    match &request.op {
        Op::Connect(p) => env(encoding, id, name, Some(p)),
        Op::Pong => env::<()>(encoding, id, name, None),
        Op::Subscribe(p) => env(encoding, id, name, Some(p)),
        Op::Unsubscribe(p) => env(encoding, id, name, Some(p)),
        Op::Publish(p) => env(encoding, id, name, Some(p)),
        Op::Call(p) => env(encoding, id, name, Some(p)),
        Op::History(p) => env(encoding, id, name, Some(p)),
        Op::Presence(p) | Op::PresenceStats(p) => env(encoding, id, name, Some(p)),
        Op::PresenceState(p) => env(encoding, id, name, Some(p)),
        Op::LastSeen(p) => env(encoding, id, name, Some(p)),
        Op::GetMeta(p) => env(encoding, id, name, Some(p)),
        Op::SetMeta(p) => env(encoding, id, name, Some(p)),
        Op::Ack(p) => env(encoding, id, name, Some(p)),
        Op::RecordGet(p) | Op::RecordUnsubscribe(p) => env(encoding, id, name, Some(p)),
        Op::RecordSet(p) => env(encoding, id, name, Some(p)),
        Op::RecordPatch(p) => env(encoding, id, name, Some(p)),
        Op::RecordDelete(p) => env(encoding, id, name, Some(p)),
        Op::RecordSubscribe(p) => env(encoding, id, name, Some(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(f: impl Fn(Encoding)) {
        f(Encoding::Json);
        f(Encoding::Msgpack);
    }

    #[test]
    fn every_op_round_trips_in_both_encodings() {
        let requests = vec![
            Request {
                id: Some(1),
                op: Op::Connect(ConnectParams {
                    token: Some("t".into()),
                    ..Default::default()
                }),
            },
            Request {
                id: None,
                op: Op::Pong,
            },
            Request {
                id: Some(2),
                op: Op::Subscribe(SubscribeParams::new("chat")),
            },
            Request {
                id: Some(20),
                op: Op::Subscribe(SubscribeParams {
                    channel: "chat".into(),
                    token: Some("t".into()),
                    since: Some(Position {
                        offset: 4,
                        epoch: "e".into(),
                    }),
                    history: Some(10),
                }),
            },
            Request {
                id: Some(21),
                op: Op::History(HistoryParams {
                    channel: "c".into(),
                    since: Some(3),
                    limit: Some(10),
                    reverse: true,
                }),
            },
            Request {
                id: Some(22),
                op: Op::Presence(ChannelParams {
                    channel: "c".into(),
                }),
            },
            Request {
                id: Some(23),
                op: Op::PresenceStats(ChannelParams {
                    channel: "c".into(),
                }),
            },
            Request {
                id: Some(24),
                op: Op::PresenceState(PresenceStateParams {
                    channel: "c".into(),
                    state: Payload::null().to_fields().0.unwrap(),
                    expire_ms: Some(5),
                }),
            },
            Request {
                id: Some(25),
                op: Op::LastSeen(LastSeenParams {
                    channel: "c".into(),
                    user: "u".into(),
                }),
            },
            Request {
                id: Some(26),
                op: Op::GetMeta(GetMetaParams {
                    conn: Some("x-1".into()),
                    ..Default::default()
                }),
            },
            Request {
                id: Some(27),
                op: Op::SetMeta(SetMetaParams {
                    value: Payload::json(&serde_json::json!({"a": 1}))
                        .unwrap()
                        .to_fields()
                        .0
                        .unwrap(),
                    merge: true,
                }),
            },
            Request {
                id: Some(28),
                op: Op::Ack(AckParams { seq: 9 }),
            },
            Request {
                id: Some(3),
                op: Op::Unsubscribe(UnsubscribeParams {
                    channel: "chat".into(),
                }),
            },
            Request {
                id: Some(4),
                op: Op::Publish(PublishParams::new(
                    "chat",
                    &Payload::json(&serde_json::json!({"t": "hi"})).unwrap(),
                )),
            },
            Request {
                id: Some(5),
                op: Op::Publish(PublishParams::new(
                    "chat",
                    &Payload::binary(vec![1u8, 2, 3]),
                )),
            },
            Request {
                id: Some(6),
                op: Op::Call(CallParams::new("echo", &Payload::null())),
            },
        ];
        both(|enc| {
            for r in &requests {
                let bytes = encode_request(enc, r);
                assert_eq!(&decode_request(enc, &bytes).unwrap(), r, "{enc:?}");
            }
        });
    }

    #[test]
    fn json_null_data_is_a_payload_not_absent() {
        let r = decode_request(
            Encoding::Json,
            br#"{"id":1,"op":"publish","params":{"channel":"c","data":null}}"#,
        )
        .unwrap();
        let Op::Publish(p) = r.op else { panic!() };
        assert_eq!(p.payload().unwrap(), Payload::null());
    }

    #[test]
    fn unknown_op_and_bad_params_are_rejected_with_the_id() {
        let e = decode_request(Encoding::Json, br#"{"id":7,"op":"fly"}"#).unwrap_err();
        assert!(matches!(
            e,
            RequestError::Rejected {
                id: Some(7),
                code: ErrorCode::UNKNOWN_OPERATION,
                ..
            }
        ));
        let e = decode_request(
            Encoding::Json,
            br#"{"id":8,"op":"subscribe","params":{"chan":1}}"#,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            RequestError::Rejected {
                id: Some(8),
                code: ErrorCode::BAD_REQUEST,
                ..
            }
        ));
        for params in [r#"["chan"]"#, r#""chan""#, "7", "true"] {
            let frame = format!(r#"{{"id":10,"op":"subscribe","params":{params}}}"#);
            let e = decode_request(Encoding::Json, frame.as_bytes()).unwrap_err();
            assert!(
                matches!(
                    e,
                    RequestError::Rejected {
                        id: Some(10),
                        code: ErrorCode::BAD_REQUEST,
                        ..
                    }
                ),
                "{params}"
            );
        }
        let array = encode(
            Encoding::Msgpack,
            &serde_json::json!({"id": 11, "op": "subscribe", "params": ["chan"]}),
        );
        assert!(matches!(
            decode_request(Encoding::Msgpack, &array),
            Err(RequestError::Rejected {
                id: Some(11),
                code: ErrorCode::BAD_REQUEST,
                ..
            })
        ));
        let pong = decode_request(Encoding::Json, br#"{"op":"pong","params":null}"#).unwrap();
        assert_eq!(pong.op, Op::Pong);
        let e = decode_request(Encoding::Json, br#"{"id":9}"#).unwrap_err();
        assert!(matches!(
            e,
            RequestError::Rejected {
                id: Some(9),
                code: ErrorCode::BAD_REQUEST,
                ..
            }
        ));
    }

    #[test]
    fn non_frames_are_malformed() {
        for f in [
            &b"42"[..],
            b"[1,2]",
            br#"{"id":"x","op":"pong"}"#,
            br#"{"id":-1,"op":"pong"}"#,
            br#"[1,"subscribe",{"channel":"c"}]"#,
        ] {
            assert!(
                matches!(
                    decode_request(Encoding::Json, f),
                    Err(RequestError::Malformed(_))
                ),
                "{f:?}"
            );
        }
    }

    #[test]
    fn binary_in_json_is_base64() {
        let r = decode_request(
            Encoding::Json,
            br#"{"id":1,"op":"publish","params":{"channel":"c","binary":"AQID"}}"#,
        )
        .unwrap();
        let Op::Publish(p) = r.op else { panic!() };
        assert_eq!(p.payload().unwrap(), Payload::binary(vec![1u8, 2, 3]));
        let e = decode_request(
            Encoding::Json,
            br#"{"id":1,"op":"publish","params":{"channel":"c","binary":"!!"}}"#,
        );
        assert!(matches!(
            e,
            Err(RequestError::Rejected {
                code: ErrorCode::BAD_REQUEST,
                ..
            })
        ));
    }
}
