//! Frames a server sends: replies (with the request's `id`) and pushes (with a `push` type).
//!
//! - Reply: `{"id": u64, "result": map}` or `{"id": u64, "error": {"code", "message", "data"?}}`.
//! - Push: `{"push": "<type>", ...fields}`; the types are the variants of [`Push`].

use crate::codes::ErrorCode;
use crate::encoding::{DecodeError, Encoding, decode, encode};
use crate::payload::{BinaryField, DataField, Payload};
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DataField>, D::Error> {
    DataField::deserialize(d).map(Some)
}

/// The payload of a received frame's two fields (`None` when absent or both set).
fn received(data: &Option<DataField>, binary: &Option<BinaryField>) -> Option<Payload> {
    Payload::from_fields(data.clone(), binary.clone())
        .ok()
        .flatten()
}

/// The body of an error reply or `error` push.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// Optional details (any JSON value) chosen by the handler that failed.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<DataField>,
}

/// How the connection authenticates, announced in the hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthState {
    /// The client must send `connect` (within `auth_timeout_ms`) before any other request.
    Required,
    /// Anonymous use is allowed; `connect` may still authenticate.
    Optional,
    /// The connection was authenticated at the WebSocket upgrade; `user` is set.
    Done,
}

/// The limits a client must respect, announced in the hello.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelloLimits {
    /// The largest WebSocket message the server accepts; larger ones close with 1009 (message_too_big).
    pub max_message_bytes: u64,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: u32,
    /// The longest channel name, in bytes.
    pub max_channel_bytes: u32,
    /// Sustained requests per second per connection.
    pub requests_per_second: u32,
    /// Requests that may be sent at once above the sustained rate.
    pub requests_burst: u32,
    /// Requests that may wait for an answer at once.
    pub max_pending_requests: u32,
}

/// The first frame on every connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version of the server.
    pub version: u32,
    /// The id of the node (server process) the client is connected to.
    pub node: String,
    /// The connection's id, unique across nodes.
    pub conn: String,
    pub auth: AuthState,
    /// Milliseconds to send a successful `connect` in, when `auth` is `required`.
    pub auth_timeout_ms: u64,
    /// The user, when `auth` is `done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The user's info, when `auth` is `done` and the server provided one.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub info: Option<DataField>,
    /// The server sends a `ping` push at this interval; answer each with `pong`.
    pub ping_interval_ms: u64,
    /// After this many unanswered pings the server closes with 4002.
    pub max_missed_pongs: u32,
    pub limits: HelloLimits,
}

/// Who published a publication (when the server attaches it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub conn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub info: Option<DataField>,
}

/// A publication delivered to a subscriber.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PubPush {
    pub channel: String,
    /// The publication's position in the channel: +1 for every publication.
    pub offset: u64,
    /// The channel's epoch; it changes when the channel's history was lost.
    pub epoch: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<DataField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<ClientInfo>,
    /// The event name it was published under; absent for the default event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

impl PubPush {
    pub fn payload(&self) -> Option<Payload> {
        received(&self.data, &self.binary)
    }
}

/// To whom a `message` push was addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// This connection only.
    Connection,
    /// Every connection of this connection's user.
    User,
    /// Every connection of the server (a broadcast).
    All,
}

/// A message sent to this connection, its user, or everyone (not through a channel).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessagePush {
    pub to: Target,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<DataField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryField>,
    /// The event name it was sent under; absent for the default event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

impl MessagePush {
    pub fn new(to: Target, payload: &Payload) -> MessagePush {
        let (data, binary) = payload.to_fields();
        MessagePush {
            to,
            data,
            binary,
            event: None,
        }
    }

    /// The same message under an event name.
    pub fn with_event(mut self, event: Option<&str>) -> MessagePush {
        self.event = event.map(str::to_owned);
        self
    }

    pub fn payload(&self) -> Option<Payload> {
        received(&self.data, &self.binary)
    }
}

/// The server subscribed this connection to a channel (server-side subscription).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubscribedPush {
    pub channel: String,
    pub offset: u64,
    pub epoch: String,
}

/// The server removed this connection from a channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnsubscribedPush {
    pub channel: String,
    pub reason: String,
}

/// An event for a channel's subscribers that is not a publication: no offset, not in history
/// (room notices such as a changed access list).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoticePush {
    pub channel: String,
    /// The event name it was sent under; absent for the default event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<DataField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryField>,
}

impl NoticePush {
    pub fn new(channel: &str, event: Option<&str>, payload: &Payload) -> NoticePush {
        let (data, binary) = payload.to_fields();
        NoticePush {
            channel: channel.to_owned(),
            event: event.map(str::to_owned),
            data,
            binary,
        }
    }

    pub fn payload(&self) -> Option<Payload> {
        received(&self.data, &self.binary)
    }
}

/// The connection's measured round-trip time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyPush {
    pub rtt_ms: f64,
}

/// Every push of protocol v1, tagged by its `push` field.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "push", rename_all = "snake_case")]
pub enum Push {
    Hello(Hello),
    Pub(PubPush),
    Message(MessagePush),
    Subscribed(SubscribedPush),
    Unsubscribed(UnsubscribedPush),
    /// Answer with a `pong` frame.
    Ping,
    Latency(LatencyPush),
    /// A connection (first of its user, or each where the namespace asks) joined a channel.
    Join(JoinPush),
    /// A connection (last of its user, or each) left a channel.
    Leave(JoinPush),
    /// A connection's presence state changed.
    State(StatePush),
    /// A durable message.
    Mail(MailPush),
    /// Another connection of this user changed.
    Echo(EchoPush),
    /// An event for a subscribed channel's subscribers, outside its publications.
    Notice(NoticePush),
    /// A change of a subscribed record.
    Record(RecordPush),
    /// A notification (a frame without `id`) could not be handled.
    Error(ErrorBody),
}

impl Push {
    pub fn name(&self) -> &'static str {
        match self {
            Push::Hello(_) => "hello",
            Push::Pub(_) => "pub",
            Push::Message(_) => "message",
            Push::Subscribed(_) => "subscribed",
            Push::Unsubscribed(_) => "unsubscribed",
            Push::Ping => "ping",
            Push::Latency(_) => "latency",
            Push::Join(_) => "join",
            Push::Leave(_) => "leave",
            Push::State(_) => "state",
            Push::Mail(_) => "mail",
            Push::Echo(_) => "echo",
            Push::Notice(_) => "notice",
            Push::Record(_) => "record",
            Push::Error(_) => "error",
        }
    }
}

/// A change of a record: exactly one of `value` (the whole value: in `full` mode, and in `patch`
/// mode after a gap), `patch` (RFC 6902 operations from `version - 1`, in `patch` mode) or
/// `deleted`.
///
/// A client applies `patch` only when `epoch` is its own and `version` is its own plus one;
/// otherwise it reads the record again (`record_get`). `value` and `deleted` apply whatever the
/// client holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordPush {
    /// The record's id.
    pub record: String,
    pub version: u64,
    pub epoch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// Result of `record_get` and `record_subscribe`: `value` is `null` and `version` 0 when the
/// record does not exist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordResult {
    pub id: String,
    pub value: serde_json::Value,
    pub version: u64,
    pub epoch: String,
}

/// Result of `record_set`, `record_patch` and `record_delete`: the version written (for a
/// delete, the version the deletion took).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordWriteResult {
    pub version: u64,
    pub epoch: String,
}

/// Result of `connect`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectResult {
    pub conn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub info: Option<DataField>,
}

/// Result of `subscribe`: the channel's current position, and what recovery or history
/// delivered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscribeResult {
    pub offset: u64,
    pub epoch: String,
    /// With `since`: whether every missed publication is in `publications` (in order, followed
    /// seamlessly by the live stream). `false` delivers nothing and says why in `reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// Why recovery failed: `epoch_changed`, `history_trimmed`, `too_many`, `not_available`,
    /// `invalid_position`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Recovered publications (with `since`) or the last publications (with `history`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<PubPush>,
}

/// Result of `history`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryResult {
    pub publications: Vec<PubPush>,
    /// The channel's current top offset and epoch.
    pub offset: u64,
    pub epoch: String,
}

/// One member of a channel's presence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PresenceMember {
    pub conn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub info: Option<DataField>,
    /// The connection's ephemeral presence state, if set.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub state: Option<DataField>,
}

/// Result of `presence`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PresenceResult {
    pub members: Vec<PresenceMember>,
}

/// Result of `presence_stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PresenceStatsResult {
    pub connections: u64,
    pub users: u64,
}

/// Result of `last_seen`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LastSeenResult {
    /// Whether the user is in the channel now.
    pub online: bool,
    /// When the user was last in the channel (Unix milliseconds); absent if never seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<u64>,
}

/// Result of `get_meta`: a JSON object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetaResult {
    pub value: DataField,
}

/// Result of `ack`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AckResult {
    /// Durable messages still waiting for an acknowledgement.
    pub pending: u64,
}

/// A connection joined a channel (presence).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinPush {
    pub channel: String,
    pub conn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub info: Option<DataField>,
}

/// A connection's presence state changed (`state` absent: cleared).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatePush {
    pub channel: String,
    pub conn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub state: Option<DataField>,
}

/// A durable message for this connection's user; acknowledge it with `ack`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MailPush {
    /// The user's sequence number: +1 per durable message.
    pub seq: u64,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<DataField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryField>,
    /// When it was sent (Unix milliseconds).
    pub sent_ms: u64,
}

impl MailPush {
    pub fn payload(&self) -> Option<Payload> {
        received(&self.data, &self.binary)
    }
}

/// Another connection of this user connected, disconnected, joined or left a channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EchoPush {
    /// `connected`, `disconnected`, `joined` or `left`.
    pub event: String,
    pub conn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// Result of `publish`: where the publication landed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishResult {
    pub offset: u64,
    pub epoch: String,
}

/// Result of `call`: the handler's payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallResult {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<DataField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryField>,
}

impl CallResult {
    pub fn new(payload: &Payload) -> CallResult {
        let (data, binary) = payload.to_fields();
        CallResult { data, binary }
    }

    pub fn payload(&self) -> Payload {
        received(&self.data, &self.binary).unwrap_or_else(Payload::null)
    }
}

/// Result of operations that return nothing (`unsubscribe`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Serialize)]
struct ReplyOk<'a, R: Serialize> {
    id: u64,
    result: &'a R,
}

#[derive(Serialize)]
struct ReplyErr<'a> {
    id: u64,
    error: &'a ErrorBody,
}

/// Encodes a successful reply.
pub fn encode_result<R: Serialize>(encoding: Encoding, id: u64, result: &R) -> Bytes {
    encode(encoding, &ReplyOk { id, result })
}

/// Encodes an error reply.
pub fn encode_error(encoding: Encoding, id: u64, error: &ErrorBody) -> Bytes {
    encode(encoding, &ReplyErr { id, error })
}

/// Encodes a push.
pub fn encode_push(encoding: Encoding, push: &Push) -> Bytes {
    encode(encoding, push)
}

/// A decoded server frame, as a client sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerFrame {
    /// A reply; decode its result with [`decode_reply`] once the request's type is known.
    Reply {
        id: u64,
    },
    Push(Push),
}

#[derive(Deserialize)]
struct PeekServer<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default, borrow)]
    push: Option<Cow<'a, str>>,
}

/// Decodes a server frame (one of [`crate::split_frames`]'s frames).
pub fn decode_server_frame(encoding: Encoding, frame: &[u8]) -> Result<ServerFrame, DecodeError> {
    let peek: PeekServer<'_> = decode(encoding, frame)?;
    if let Some(id) = peek.id {
        return Ok(ServerFrame::Reply { id });
    }
    let Some(kind) = peek.push else {
        return Err(DecodeError::Invalid(
            "a server frame needs `id` or `push`".into(),
        ));
    };
    let push = match kind.as_ref() {
        "hello" => Push::Hello(decode(encoding, frame)?),
        "pub" => Push::Pub(decode(encoding, frame)?),
        "message" => Push::Message(decode(encoding, frame)?),
        "subscribed" => Push::Subscribed(decode(encoding, frame)?),
        "unsubscribed" => Push::Unsubscribed(decode(encoding, frame)?),
        "ping" => Push::Ping,
        "latency" => Push::Latency(decode(encoding, frame)?),
        "join" => Push::Join(decode(encoding, frame)?),
        "leave" => Push::Leave(decode(encoding, frame)?),
        "state" => Push::State(decode(encoding, frame)?),
        "mail" => Push::Mail(decode(encoding, frame)?),
        "echo" => Push::Echo(decode(encoding, frame)?),
        "notice" => Push::Notice(decode(encoding, frame)?),
        "record" => Push::Record(decode(encoding, frame)?),
        "error" => Push::Error(decode(encoding, frame)?),
        other => return Err(DecodeError::Invalid(format!("unknown push `{other}`"))),
    };
    Ok(ServerFrame::Push(push))
}

#[derive(Deserialize)]
struct ReplyAny<R> {
    #[serde(default = "Option::default")]
    result: Option<R>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

/// Decodes the result (or error) of a reply frame.
pub fn decode_reply<'a, R: Deserialize<'a>>(
    encoding: Encoding,
    frame: &'a [u8],
) -> Result<Result<R, ErrorBody>, DecodeError> {
    let reply: ReplyAny<R> = decode(encoding, frame)?;
    match (reply.result, reply.error) {
        (_, Some(error)) => Ok(Err(error)),
        (Some(result), None) => Ok(Ok(result)),
        (None, None) => Err(DecodeError::Invalid(
            "a reply needs `result` or `error`".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            version: 1,
            node: "n1".into(),
            conn: "n1-1".into(),
            auth: AuthState::Optional,
            auth_timeout_ms: 10_000,
            user: None,
            info: None,
            ping_interval_ms: 25_000,
            max_missed_pongs: 2,
            limits: HelloLimits {
                max_message_bytes: 65536,
                max_subscriptions: 128,
                max_channel_bytes: 255,
                requests_per_second: 100,
                requests_burst: 200,
                max_pending_requests: 64,
            },
        }
    }

    #[test]
    fn every_push_round_trips_in_both_encodings() {
        let json = Payload::json(&serde_json::json!({"x": [1, "two", null]})).unwrap();
        let bin = Payload::binary(vec![9u8, 8, 7]);
        let (d, b) = bin.to_fields();
        let pushes = vec![
            Push::Hello(hello()),
            Push::Pub(PubPush {
                channel: "c".into(),
                offset: 3,
                epoch: "e".into(),
                data: json.to_fields().0,
                binary: None,
                publisher: Some(ClientInfo {
                    conn: "n-2".into(),
                    user: Some("u".into()),
                    info: None,
                }),
                event: Some("chat".into()),
            }),
            Push::Pub(PubPush {
                channel: "c".into(),
                offset: 4,
                epoch: "e".into(),
                data: d,
                binary: b,
                publisher: None,
                event: None,
            }),
            Push::Message(MessagePush::new(Target::User, &json)),
            Push::Message(MessagePush::new(Target::All, &json).with_event(Some("news"))),
            Push::Subscribed(SubscribedPush {
                channel: "c".into(),
                offset: 0,
                epoch: "e".into(),
            }),
            Push::Unsubscribed(UnsubscribedPush {
                channel: "c".into(),
                reason: "server".into(),
            }),
            Push::Ping,
            Push::Latency(LatencyPush { rtt_ms: 1.5 }),
            Push::Notice(NoticePush::new("c", Some("roomModeChanged"), &json)),
            Push::Notice(NoticePush::new("c", None, &bin)),
            Push::Error(ErrorBody {
                code: ErrorCode::UNKNOWN_OPERATION,
                message: "x".into(),
                data: None,
            }),
        ];
        for enc in [Encoding::Json, Encoding::Msgpack] {
            for p in &pushes {
                let bytes = encode_push(enc, p);
                assert_eq!(
                    decode_server_frame(enc, &bytes).unwrap(),
                    ServerFrame::Push(p.clone()),
                    "{enc:?}"
                );
            }
        }
    }

    #[test]
    fn replies_round_trip() {
        for enc in [Encoding::Json, Encoding::Msgpack] {
            let ok = encode_result(
                enc,
                5,
                &PublishResult {
                    offset: 9,
                    epoch: "ab".into(),
                },
            );
            assert_eq!(
                decode_server_frame(enc, &ok).unwrap(),
                ServerFrame::Reply { id: 5 }
            );
            let r: Result<PublishResult, _> = decode_reply(enc, &ok).unwrap();
            assert_eq!(r.unwrap().offset, 9);
            let body = ErrorBody {
                code: ErrorCode(1001),
                message: "nope".into(),
                data: Payload::json(&1).unwrap().to_fields().0,
            };
            let err = encode_error(enc, 6, &body);
            let r: Result<Empty, _> = decode_reply(enc, &err).unwrap();
            assert_eq!(r.unwrap_err(), body);
        }
    }

    #[test]
    fn json_wire_shape_is_flat() {
        let p = Push::Pub(PubPush {
            channel: "c".into(),
            offset: 1,
            epoch: "e".into(),
            data: Payload::json(&serde_json::json!({"a":1}))
                .unwrap()
                .to_fields()
                .0,
            binary: None,
            publisher: None,
            event: None,
        });
        assert_eq!(
            &encode_push(Encoding::Json, &p)[..],
            br#"{"push":"pub","channel":"c","offset":1,"epoch":"e","data":{"a":1}}"#
        );
        assert_eq!(
            &encode_push(Encoding::Json, &Push::Ping)[..],
            br#"{"push":"ping"}"#
        );
    }
}
