//! Checks `docs/protocol.md` against the codecs: every example frame is parsed, encoded again in
//! JSON and in MessagePack and compared; every operation, push and result type must have an
//! example; the document's error-code and close-code tables must be `codes::ERROR_CODES` and
//! `codes::CLOSE_CODES`.
//!
//! Examples are fenced code blocks whose info string says what they hold:
//!
//! - `json client`, `json server`: one frame (a client request, a server push);
//! - `json server reply=<Type>`: one reply whose result decodes as `<Type>` (`ConnectResult`,
//!   `SubscribeResult`, `PublishResult`, `CallResult`, `HistoryResult`, `PresenceResult`,
//!   `PresenceStatsResult`, `LastSeenResult`, `MetaResult`, `AckResult`, `RecordResult`,
//!   `RecordWriteResult`, `Empty`), or
//!   `reply=error`;
//! - `json client error=<code>`: a frame the codec rejects with that error code;
//! - `json client close=4500`: a message that is not a frame at all;
//! - `json batch client`, `json batch server [reply=<Type>,<Type>…]`: one WebSocket message of
//!   several frames, one per line; the reply types are those of its replies, in order;
//! - `json session`: frames one per line, `→ ` from the client and `← ` from the server; a reply
//!   is typed by the operation of the request with the same id;
//! - `msgpack client|server`, `msgpack batch client|server`: MessagePack bytes in hex (`#` starts
//!   a comment). They must be exactly what the encoder writes, and the same frames as the JSON
//!   block just before them.
//!
//! Beyond one example of each operation, push and result type, the document must show the shapes
//! listed in [`FEATURES`] (a recovery that succeeds, one that fails, history on subscribe, the
//! durable-message backlog…), and its table of recovery reasons must list [`RECOVERY_REASONS`].

use plexus_protocol::client::{
    self, AckParams, CallParams, ChannelParams, ConnectParams, GetMetaParams, HistoryParams,
    LastSeenParams, Op, PresenceStateParams, PublishParams, RecordDeleteParams, RecordParams,
    RecordPatchParams, RecordSetParams, RecordSubscribeParams, RequestError, SetMetaParams,
    SubscribeParams, UnsubscribeParams,
};
use plexus_protocol::codes::{CLOSE_CODES, ERROR_CODES, ErrorCode};
use plexus_protocol::server::{
    self, AckResult, CallResult, ConnectResult, Empty, ErrorBody, HistoryResult, LastSeenResult,
    MetaResult, PresenceResult, PresenceStatsResult, PublishResult, Push, RecordResult,
    RecordWriteResult, ServerFrame, SubscribeResult,
};
use plexus_protocol::{Encoding, FrameWriter, Payload, split_frames};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const DOC_PATH: &str = "docs/protocol.md";

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The lists the coverage check compares against.

/// The wire name of every operation. The `match` stops compiling when a variant is added to
/// `Op`: add it to the list too, and an example to the document.
fn op_names() -> BTreeSet<&'static str> {
    let null = || Payload::null().to_fields().0.expect("null is a JSON value");
    let ops = [
        Op::Connect(ConnectParams::default()),
        Op::Pong,
        Op::Subscribe(SubscribeParams::new("")),
        Op::Unsubscribe(UnsubscribeParams {
            channel: String::new(),
        }),
        Op::Publish(PublishParams::new("", &Payload::null())),
        Op::Call(CallParams::new("", &Payload::null())),
        Op::History(HistoryParams::default()),
        Op::Presence(ChannelParams::default()),
        Op::PresenceStats(ChannelParams::default()),
        Op::PresenceState(PresenceStateParams {
            channel: String::new(),
            state: null(),
            expire_ms: None,
        }),
        Op::LastSeen(LastSeenParams {
            channel: String::new(),
            user: String::new(),
        }),
        Op::GetMeta(GetMetaParams::default()),
        Op::SetMeta(SetMetaParams {
            value: null(),
            merge: false,
        }),
        Op::Ack(AckParams { seq: 0 }),
        Op::RecordGet(RecordParams::default()),
        Op::RecordSet(RecordSetParams {
            id: String::new(),
            value: Value::Null,
            expect: None,
        }),
        Op::RecordPatch(RecordPatchParams {
            id: String::new(),
            patch: Value::Null,
            expect: None,
        }),
        Op::RecordDelete(RecordDeleteParams::default()),
        Op::RecordSubscribe(RecordSubscribeParams::default()),
        Op::RecordUnsubscribe(RecordParams::default()),
    ];
    for op in &ops {
        match op {
            Op::Connect(_)
            | Op::Pong
            | Op::Subscribe(_)
            | Op::Unsubscribe(_)
            | Op::Publish(_)
            | Op::Call(_)
            | Op::History(_)
            | Op::Presence(_)
            | Op::PresenceStats(_)
            | Op::PresenceState(_)
            | Op::LastSeen(_)
            | Op::GetMeta(_)
            | Op::SetMeta(_)
            | Op::Ack(_)
            | Op::RecordGet(_)
            | Op::RecordSet(_)
            | Op::RecordPatch(_)
            | Op::RecordDelete(_)
            | Op::RecordSubscribe(_)
            | Op::RecordUnsubscribe(_) => {}
        }
    }
    ops.iter().map(Op::name).collect()
}

/// The wire name of every push; the `match` guards the list as in [`op_names`].
fn push_names() -> BTreeSet<&'static str> {
    let pushes = [
        "hello",
        "pub",
        "message",
        "subscribed",
        "unsubscribed",
        "ping",
        "latency",
        "join",
        "leave",
        "state",
        "mail",
        "echo",
        "notice",
        "record",
        "error",
    ];
    let guard = |push: &Push| match push {
        Push::Hello(_)
        | Push::Pub(_)
        | Push::Message(_)
        | Push::Subscribed(_)
        | Push::Unsubscribed(_)
        | Push::Ping
        | Push::Latency(_)
        | Push::Join(_)
        | Push::Leave(_)
        | Push::State(_)
        | Push::Mail(_)
        | Push::Echo(_)
        | Push::Notice(_)
        | Push::Record(_)
        | Push::Error(_) => push.name(),
    };
    assert_eq!(guard(&Push::Ping), "ping");
    pushes.into_iter().collect()
}

/// Example shapes the document must show, beyond one example of each operation, push and result
/// type (see [`features_of`]).
const FEATURES: [&str; 10] = [
    "subscribe with a token",
    "subscribe with since",
    "subscribe with history",
    "a recovery that recovers publications",
    "a recovery that fails with a reason",
    "publications of history on subscribe",
    "an unsubscribed push with reason insufficient_state",
    "a state push that clears the state",
    "connect with sync false",
    "mail pushes after the connect reply, in seq order, then ack",
];

/// The `reason`s of a failed recovery (`plexus_core::session::reason`), in the order the server
/// tries them.
const RECOVERY_REASONS: [&str; 5] = [
    "not_available",
    "epoch_changed",
    "invalid_position",
    "too_many",
    "history_trimmed",
];

/// The [`FEATURES`] one frame shows.
fn features_of(kind: Kind, value: &Value) -> Vec<&'static str> {
    let has = |pointer: &str| value.pointer(pointer).is_some();
    let is = |pointer: &str, expected: Value| value.pointer(pointer) == Some(&expected);
    let mut found = Vec::new();
    match kind {
        Kind::Client if is("/op", "subscribe".into()) => {
            for (param, feature) in [
                ("/params/token", FEATURES[0]),
                ("/params/since", FEATURES[1]),
                ("/params/history", FEATURES[2]),
            ] {
                if has(param) {
                    found.push(feature);
                }
            }
        }
        Kind::Client if is("/op", "connect".into()) && is("/params/sync", false.into()) => {
            found.push(FEATURES[8]);
        }
        Kind::Reply(Reply::Subscribe) => match value.pointer("/result/recovered") {
            Some(Value::Bool(true)) if has("/result/publications/0") => found.push(FEATURES[3]),
            Some(Value::Bool(false)) if has("/result/reason") && !has("/result/publications") => {
                found.push(FEATURES[4])
            }
            None if has("/result/publications/0") => found.push(FEATURES[5]),
            _ => {}
        },
        Kind::Push
            if is("/push", "unsubscribed".into()) && is("/reason", "insufficient_state".into()) =>
        {
            found.push(FEATURES[6]);
        }
        Kind::Push if is("/push", "state".into()) && !has("/state") => found.push(FEATURES[7]),
        _ => {}
    }
    found
}

/// What a reply example holds: the result type of an operation, or an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Reply {
    Connect,
    Subscribe,
    Publish,
    Call,
    History,
    Presence,
    PresenceStats,
    LastSeen,
    Meta,
    Ack,
    Record,
    RecordWrite,
    Empty,
    Error,
}

const REPLIES: [Reply; 14] = [
    Reply::Connect,
    Reply::Subscribe,
    Reply::Publish,
    Reply::Call,
    Reply::History,
    Reply::Presence,
    Reply::PresenceStats,
    Reply::LastSeen,
    Reply::Meta,
    Reply::Ack,
    Reply::Record,
    Reply::RecordWrite,
    Reply::Empty,
    Reply::Error,
];

impl Reply {
    fn name(self) -> &'static str {
        match self {
            Reply::Connect => "ConnectResult",
            Reply::Subscribe => "SubscribeResult",
            Reply::Publish => "PublishResult",
            Reply::Call => "CallResult",
            Reply::History => "HistoryResult",
            Reply::Presence => "PresenceResult",
            Reply::PresenceStats => "PresenceStatsResult",
            Reply::LastSeen => "LastSeenResult",
            Reply::Meta => "MetaResult",
            Reply::Ack => "AckResult",
            Reply::Record => "RecordResult",
            Reply::RecordWrite => "RecordWriteResult",
            Reply::Empty => "Empty",
            Reply::Error => "error",
        }
    }

    fn parse(name: &str) -> Result<Reply, String> {
        REPLIES
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| format!("unknown reply type `{name}`"))
    }

    /// The result type of a successful reply to `op`.
    fn of_op(op: &str) -> Result<Reply, String> {
        Ok(match op {
            "connect" => Reply::Connect,
            "subscribe" => Reply::Subscribe,
            "unsubscribe" => Reply::Empty,
            "publish" => Reply::Publish,
            "call" => Reply::Call,
            "history" => Reply::History,
            "presence" => Reply::Presence,
            "presence_stats" => Reply::PresenceStats,
            "presence_state" => Reply::Empty,
            "last_seen" => Reply::LastSeen,
            "get_meta" => Reply::Meta,
            "set_meta" => Reply::Empty,
            "ack" => Reply::Ack,
            "record_get" | "record_subscribe" => Reply::Record,
            "record_set" | "record_patch" | "record_delete" => Reply::RecordWrite,
            "record_unsubscribe" => Reply::Empty,
            other => return Err(format!("`{other}` gets no reply")),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding and encoding one frame.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Client,
    Push,
    Reply(Reply),
}

/// Decodes `frame` (in `from`) as `kind` and encodes it again in `to`. Returns the name of the
/// operation, push or result type, for the coverage check.
fn transcode(
    kind: Kind,
    from: Encoding,
    to: Encoding,
    frame: &[u8],
) -> Result<(&'static str, Vec<u8>), String> {
    match kind {
        Kind::Client => {
            let request = client::decode_request(from, frame)
                .map_err(|e| format!("decode_request ({from:?}): {e}"))?;
            let bytes = client::encode_request(to, &request);
            Ok((request.op.name(), bytes.to_vec()))
        }
        Kind::Push => match server::decode_server_frame(from, frame)
            .map_err(|e| format!("decode_server_frame ({from:?}): {e}"))?
        {
            ServerFrame::Push(push) => {
                if let Push::Error(body) = &push {
                    known_error_code(body)?;
                }
                Ok((push.name(), server::encode_push(to, &push).to_vec()))
            }
            ServerFrame::Reply { id } => Err(format!(
                "frame is the reply to {id}: mark it with reply=<result type>"
            )),
        },
        Kind::Reply(reply) => {
            let id = match server::decode_server_frame(from, frame)
                .map_err(|e| format!("decode_server_frame ({from:?}): {e}"))?
            {
                ServerFrame::Reply { id } => id,
                ServerFrame::Push(push) => {
                    return Err(format!("a `{}` push, marked as a reply", push.name()));
                }
            };
            let bytes = match reply {
                Reply::Connect => reencode_result::<ConnectResult>(from, to, id, frame),
                Reply::Subscribe => reencode_result::<SubscribeResult>(from, to, id, frame),
                Reply::Publish => reencode_result::<PublishResult>(from, to, id, frame),
                Reply::Call => reencode_result::<CallResult>(from, to, id, frame),
                Reply::History => reencode_result::<HistoryResult>(from, to, id, frame),
                Reply::Presence => reencode_result::<PresenceResult>(from, to, id, frame),
                Reply::PresenceStats => reencode_result::<PresenceStatsResult>(from, to, id, frame),
                Reply::LastSeen => reencode_result::<LastSeenResult>(from, to, id, frame),
                Reply::Meta => reencode_result::<MetaResult>(from, to, id, frame),
                Reply::Ack => reencode_result::<AckResult>(from, to, id, frame),
                Reply::Record => reencode_result::<RecordResult>(from, to, id, frame),
                Reply::RecordWrite => reencode_result::<RecordWriteResult>(from, to, id, frame),
                Reply::Empty => reencode_result::<Empty>(from, to, id, frame),
                Reply::Error => match decode_reply::<Empty>(from, frame)? {
                    Err(body) => {
                        known_error_code(&body)?;
                        Ok(server::encode_error(to, id, &body).to_vec())
                    }
                    Ok(_) => Err("a result, marked reply=error".to_string()),
                },
            }?;
            Ok((reply.name(), bytes))
        }
    }
}

fn decode_reply<R: DeserializeOwned>(
    from: Encoding,
    frame: &[u8],
) -> Result<Result<R, ErrorBody>, String> {
    server::decode_reply::<R>(from, frame).map_err(|e| format!("decode_reply ({from:?}): {e}"))
}

fn reencode_result<R: DeserializeOwned + Serialize>(
    from: Encoding,
    to: Encoding,
    id: u64,
    frame: &[u8],
) -> Result<Vec<u8>, String> {
    match decode_reply::<R>(from, frame)? {
        Ok(result) => Ok(server::encode_result(to, id, &result).to_vec()),
        Err(body) => Err(format!(
            "an error reply (code {}), marked as a result",
            body.code
        )),
    }
}

/// An example may only use codes of the table, or application codes.
fn known_error_code(body: &ErrorBody) -> Result<(), String> {
    let code = body.code;
    if code.0 >= ErrorCode::APPLICATION_MIN || ERROR_CODES.iter().any(|row| row.code == code) {
        Ok(())
    } else {
        Err(format!("error code {code} is not in the table"))
    }
}

fn json_value(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))
}

fn same(expected: &Value, bytes: &[u8], how: &str) -> Result<(), String> {
    let actual = json_value(bytes)?;
    if &actual == expected {
        Ok(())
    } else {
        Err(format!(
            "{how} it becomes\n    {actual}\n  but the document has\n    {expected}"
        ))
    }
}

/// Checks one JSON frame: JSON → JSON, and JSON → MessagePack → JSON, both equal to the document.
fn check_json_frame(kind: Kind, frame: &[u8]) -> Result<(&'static str, Value), String> {
    let expected = json_value(frame)?;
    let (name, json) = transcode(kind, Encoding::Json, Encoding::Json, frame)?;
    same(&expected, &json, "encoded again in JSON,")?;
    let (_, msgpack) = transcode(kind, Encoding::Json, Encoding::Msgpack, frame)?;
    let (_, back) = transcode(kind, Encoding::Msgpack, Encoding::Json, &msgpack)?;
    same(&expected, &back, "after a round trip through MessagePack,")?;
    Ok((name, expected))
}

fn has_binary(value: &Value) -> bool {
    value.get("binary").is_some()
        || value.pointer("/params/binary").is_some()
        || value.pointer("/result/binary").is_some()
}

// ---------------------------------------------------------------------------------------------
// Reading the document.

struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    info: String,
    body: String,
}

fn fenced_blocks(doc: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in doc.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    line: index + 1,
                    info: info.trim().to_string(),
                    body: String::new(),
                })
            }
            (Some(_), Some("")) => blocks.extend(open.take()),
            (Some(block), _) => {
                block.body.push_str(line);
                block.body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code block in {DOC_PATH}");
    blocks
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Format {
    Json,
    Msgpack,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Dir {
    Client,
    Server,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    Single,
    Batch,
    Session,
}

/// What an example block's info string declares.
#[derive(Debug)]
struct Example {
    format: Format,
    shape: Shape,
    dir: Option<Dir>,
    replies: Vec<Reply>,
    error: Option<u32>,
    close: Option<u16>,
}

/// `None` for blocks that are not examples (`http`, plain text…).
fn parse_info(info: &str) -> Option<Result<Example, String>> {
    let mut words = info.split_whitespace();
    let format = match words.next()? {
        "json" => Format::Json,
        "msgpack" => Format::Msgpack,
        _ => return None,
    };
    Some(parse_example(format, words.collect()))
}

fn parse_example(format: Format, words: Vec<&str>) -> Result<Example, String> {
    let mut example = Example {
        format,
        shape: Shape::Single,
        dir: None,
        replies: Vec::new(),
        error: None,
        close: None,
    };
    for word in words {
        match word.split_once('=') {
            None => match word {
                "batch" => example.shape = Shape::Batch,
                "session" => example.shape = Shape::Session,
                "client" => example.dir = Some(Dir::Client),
                "server" => example.dir = Some(Dir::Server),
                _ => return Err(format!("unknown word `{word}` in the info string")),
            },
            Some(("reply", types)) => {
                example.replies = types
                    .split(',')
                    .map(Reply::parse)
                    .collect::<Result<_, _>>()?
            }
            Some(("error", code)) => {
                example.error = Some(code.parse().map_err(|_| format!("bad code `{code}`"))?)
            }
            Some(("close", code)) => {
                example.close = Some(code.parse().map_err(|_| format!("bad code `{code}`"))?)
            }
            Some((key, _)) => return Err(format!("unknown attribute `{key}`")),
        }
    }
    let valid = match (example.shape, example.dir) {
        (Shape::Session, None) => example.format == Format::Json,
        (Shape::Session, Some(_)) | (_, None) => false,
        (_, Some(Dir::Client)) => example.replies.is_empty(),
        (_, Some(Dir::Server)) => example.error.is_none() && example.close.is_none(),
    };
    let rejection = example.error.is_some() || example.close.is_some();
    let rejection_ok = !rejection
        || (example.format == Format::Json
            && example.shape == Shape::Single
            && example.replies.is_empty()
            && !(example.error.is_some() && example.close.is_some()));
    let reply_count_ok = example.shape == Shape::Batch || example.replies.len() <= 1;
    if valid && rejection_ok && reply_count_ok {
        Ok(example)
    } else {
        Err("this combination of info-string words is not an example shape".into())
    }
}

// ---------------------------------------------------------------------------------------------
// Checking the examples.

/// What the examples cover.
#[derive(Default, Debug)]
struct Seen {
    examples: usize,
    ops: BTreeSet<&'static str>,
    pushes: BTreeSet<&'static str>,
    replies: BTreeSet<&'static str>,
    rejected: BTreeSet<u32>,
    closed: BTreeSet<u16>,
    batches: BTreeSet<(Format, Dir)>,
    binary: BTreeSet<(Format, Dir)>,
    sessions: usize,
    features: BTreeSet<&'static str>,
    /// The `reason` of every failed recovery shown.
    recovery_reasons: BTreeSet<String>,
}

impl Seen {
    fn record(&mut self, kind: Kind, name: &'static str, format: Format, value: &Value) {
        let dir = match kind {
            Kind::Client => {
                self.ops.insert(name);
                Dir::Client
            }
            Kind::Push => {
                self.pushes.insert(name);
                Dir::Server
            }
            Kind::Reply(_) => {
                self.replies.insert(name);
                Dir::Server
            }
        };
        if has_binary(value) {
            self.binary.insert((format, dir));
        }
        self.features.extend(features_of(kind, value));
        if let Some(reason) = value.pointer("/result/reason").and_then(Value::as_str) {
            self.recovery_reasons.insert(reason.to_string());
        }
    }
}

/// The frames of the last JSON example, which a MessagePack example must repeat.
struct LastJson {
    dir: Dir,
    shape: Shape,
    frames: Vec<(Kind, Value)>,
}

/// Checks every example of the document; returns the failures (with line numbers) and coverage.
fn check_document(doc: &str) -> (Vec<String>, Seen) {
    let mut failures = Vec::new();
    let mut seen = Seen::default();
    let mut last_json: Option<LastJson> = None;
    for block in fenced_blocks(doc) {
        let Some(example) = parse_info(&block.info) else {
            continue;
        };
        seen.examples += 1;
        let result = example
            .and_then(|example| check_block(&example, &block.body, &mut seen, &mut last_json));
        if let Err(e) = result {
            failures.push(format!(
                "{DOC_PATH}:{} (```{}):\n  {e}",
                block.line, block.info
            ));
        }
    }
    (failures, seen)
}

fn check_block(
    example: &Example,
    body: &str,
    seen: &mut Seen,
    last_json: &mut Option<LastJson>,
) -> Result<(), String> {
    match (example.format, example.shape) {
        (Format::Json, Shape::Session) => {
            *last_json = None;
            check_session(body, seen)
        }
        (Format::Json, _) if example.error.is_some() || example.close.is_some() => {
            *last_json = None;
            check_rejected(example, body, seen)
        }
        (Format::Json, shape) => {
            let dir = example.dir.expect("checked by parse_example");
            *last_json = None;
            let frames = check_json_message(dir, shape, &example.replies, body, seen)?;
            *last_json = Some(LastJson { dir, shape, frames });
            Ok(())
        }
        (Format::Msgpack, shape) => {
            let dir = example.dir.expect("checked by parse_example");
            let json = last_json
                .take()
                .ok_or("a MessagePack example must follow the JSON example of the same frames")?;
            if json.dir != dir || json.shape != shape {
                return Err("the JSON example before it is not of the same shape".into());
            }
            check_msgpack_message(shape, &json.frames, body, seen)
        }
    }
}

/// The reply types of a server message, assigned to its replies in order.
fn kinds_of(dir: Dir, frames: &[Value], replies: &[Reply]) -> Result<Vec<Kind>, String> {
    let mut replies = replies.iter();
    let kinds = frames
        .iter()
        .map(|frame| match dir {
            Dir::Client => Ok(Kind::Client),
            Dir::Server if frame.get("id").is_none() => Ok(Kind::Push),
            Dir::Server => replies
                .next()
                .map(|r| Kind::Reply(*r))
                .ok_or_else(|| "a reply without a reply=<type> for it".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if replies.next().is_some() {
        return Err("more reply=<type>s than replies".into());
    }
    Ok(kinds)
}

fn check_json_message(
    dir: Dir,
    shape: Shape,
    replies: &[Reply],
    body: &str,
    seen: &mut Seen,
) -> Result<Vec<(Kind, Value)>, String> {
    let frames =
        split_frames(Encoding::Json, body.as_bytes()).map_err(|e| format!("split_frames: {e}"))?;
    check_frame_count(shape, frames.len())?;
    let values = frames
        .iter()
        .map(|f| json_value(f))
        .collect::<Result<Vec<_>, _>>()?;
    let kinds = kinds_of(dir, &values, replies)?;
    let mut checked = Vec::new();
    for (kind, frame) in kinds.into_iter().zip(&frames) {
        let (name, value) = check_json_frame(kind, frame)
            .map_err(|e| format!("frame {}: {e}", checked.len() + 1))?;
        seen.record(kind, name, Format::Json, &value);
        checked.push((kind, value));
    }
    if shape == Shape::Batch {
        seen.batches.insert((Format::Json, dir));
        check_batch_in_both_encodings(&checked, &frames)?;
    }
    Ok(checked)
}

fn check_frame_count(shape: Shape, count: usize) -> Result<(), String> {
    match shape {
        Shape::Single if count != 1 => Err(format!(
            "{count} frames in a single-frame example (use `batch`)"
        )),
        Shape::Batch if count < 2 => Err("a batch needs at least two frames".into()),
        _ => Ok(()),
    }
}

/// Writes the batch's frames into one message with `FrameWriter`, in each encoding, and splits it
/// again: the same frames must come out.
fn check_batch_in_both_encodings(
    frames: &[(Kind, Value)],
    json_frames: &[&[u8]],
) -> Result<(), String> {
    for encoding in [Encoding::Json, Encoding::Msgpack] {
        let mut writer = FrameWriter::new(encoding);
        for ((kind, _), frame) in frames.iter().zip(json_frames) {
            writer.push(&transcode(*kind, Encoding::Json, encoding, frame)?.1);
        }
        let message = writer.take();
        let split = split_frames(encoding, &message)
            .map_err(|e| format!("the batch written in {encoding:?} does not split: {e}"))?;
        if split.len() != frames.len() {
            return Err(format!(
                "the batch written in {encoding:?} splits into {} frames, not {}",
                split.len(),
                frames.len()
            ));
        }
        for ((kind, expected), frame) in frames.iter().zip(split) {
            let (_, json) = transcode(*kind, encoding, Encoding::Json, frame)?;
            same(expected, &json, &format!("batched in {encoding:?},"))?;
        }
    }
    Ok(())
}

fn check_rejected(example: &Example, body: &str, seen: &mut Seen) -> Result<(), String> {
    let message = body.as_bytes();
    if let Some(code) = example.close {
        if code != 4500 {
            return Err(format!(
                "the codec alone can only show close 4500, not {code}"
            ));
        }
        let not_a_frame = match split_frames(Encoding::Json, message) {
            Err(_) => true,
            Ok(frames) => frames.iter().any(|f| {
                matches!(
                    client::decode_request(Encoding::Json, f),
                    Err(RequestError::Malformed(_))
                )
            }),
        };
        if !not_a_frame {
            return Err("this message decodes; the server would not close with 4500".into());
        }
        seen.closed.insert(code);
        return Ok(());
    }
    let code = example.error.expect("checked by the caller");
    let frames = split_frames(Encoding::Json, message).map_err(|e| format!("split_frames: {e}"))?;
    check_frame_count(Shape::Single, frames.len())?;
    let id = json_value(frames[0])?.get("id").and_then(Value::as_u64);
    match client::decode_request(Encoding::Json, frames[0]) {
        Err(RequestError::Rejected {
            id: rejected_id,
            code: rejected_code,
            ..
        }) if rejected_code.0 == code && rejected_id == id => {
            seen.rejected.insert(code);
            Ok(())
        }
        other => Err(format!(
            "expected a rejection with code {code} for id {id:?}, got {other:?}"
        )),
    }
}

fn check_msgpack_message(
    shape: Shape,
    json_frames: &[(Kind, Value)],
    body: &str,
    seen: &mut Seen,
) -> Result<(), String> {
    let bytes = parse_hex(body)?;
    let frames =
        split_frames(Encoding::Msgpack, &bytes).map_err(|e| format!("split_frames: {e}"))?;
    check_frame_count(shape, frames.len())?;
    if frames.len() != json_frames.len() {
        return Err(format!(
            "{} frames, but the JSON example before it has {}",
            frames.len(),
            json_frames.len()
        ));
    }
    for (n, (frame, (kind, expected))) in frames.iter().zip(json_frames).enumerate() {
        let n = n + 1;
        let (name, again) = transcode(*kind, Encoding::Msgpack, Encoding::Msgpack, frame)
            .map_err(|e| format!("frame {n}: {e}"))?;
        if again != *frame {
            return Err(format!(
                "frame {n}: the encoder writes\n    {}\n  not\n    {}",
                hex(&again),
                hex(frame)
            ));
        }
        let (_, json) = transcode(*kind, Encoding::Msgpack, Encoding::Json, frame)
            .map_err(|e| format!("frame {n}: {e}"))?;
        same(
            expected,
            &json,
            &format!("frame {n}: read as JSON (to compare with the JSON example),"),
        )?;
        seen.record(*kind, name, Format::Msgpack, expected);
    }
    if shape == Shape::Batch {
        let dir = match json_frames[0].0 {
            Kind::Client => Dir::Client,
            _ => Dir::Server,
        };
        seen.batches.insert((Format::Msgpack, dir));
    }
    Ok(())
}

fn parse_hex(body: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    for line in body.lines() {
        let code = line.split('#').next().unwrap_or("");
        for token in code.split_whitespace() {
            let byte = (token.len() == 2)
                .then(|| u8::from_str_radix(token, 16).ok())
                .flatten()
                .ok_or_else(|| format!("`{token}` is not a hex byte"))?;
            bytes.push(byte);
        }
    }
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A session: each reply must answer an earlier request of the session, and is typed by it.
fn check_session(body: &str, seen: &mut Seen) -> Result<(), String> {
    let mut ops_by_id: BTreeMap<u64, &'static str> = BTreeMap::new();
    let mut backlog = Backlog::default();
    for (n, line) in body.lines().enumerate() {
        let n = n + 1;
        let at = |e: String| format!("line {n} of the session: {e}");
        let (dir, frame) = if let Some(frame) = line.strip_prefix("→ ") {
            (Dir::Client, frame)
        } else if let Some(frame) = line.strip_prefix("← ") {
            (Dir::Server, frame)
        } else {
            return Err(at("a session line starts with `→ ` or `← `".into()));
        };
        let value = json_value(frame.as_bytes()).map_err(at)?;
        let id = value.get("id").and_then(Value::as_u64);
        let kind = match (dir, id) {
            (Dir::Client, _) => Kind::Client,
            (Dir::Server, None) => Kind::Push,
            (Dir::Server, Some(_)) if value.get("error").is_some() => Kind::Reply(Reply::Error),
            (Dir::Server, Some(id)) => {
                let op = ops_by_id
                    .remove(&id)
                    .ok_or_else(|| at(format!("a reply to {id}, which no pending request has")))?;
                Kind::Reply(Reply::of_op(op).map_err(at)?)
            }
        };
        let (name, value) = check_json_frame(kind, frame.as_bytes()).map_err(at)?;
        if n == 1 && name != "hello" {
            return Err(at("a session starts with the server's hello".into()));
        }
        if let (Kind::Client, Some(id)) = (kind, id) {
            ops_by_id.insert(id, name);
        }
        backlog.next(kind, name, &value).map_err(at)?;
        seen.record(kind, name, Format::Json, &value);
    }
    if backlog.acked {
        seen.features.insert(FEATURES[9]);
    }
    seen.sessions += 1;
    Ok(())
}

/// Follows the durable messages of a session: after the `connect` result (or a `hello` of a
/// connection authenticated at the upgrade), `mail` pushes must come in `seq` order, +1 each;
/// `acked` once one of them was acknowledged.
#[derive(Default)]
struct Backlog {
    connected: bool,
    last_seq: Option<u64>,
    acked: bool,
}

impl Backlog {
    fn next(&mut self, kind: Kind, name: &str, value: &Value) -> Result<(), String> {
        match (kind, name) {
            (Kind::Reply(Reply::Connect), _) => self.connected = true,
            (Kind::Push, "hello") => self.connected = value.get("auth") == Some(&"done".into()),
            (Kind::Push, "mail") => {
                let seq = value.get("seq").and_then(Value::as_u64).unwrap_or(0);
                if !self.connected {
                    return Err("a `mail` push before the `connect` result".into());
                }
                if self.last_seq.is_some_and(|last| seq != last + 1) {
                    return Err(format!("`mail` {seq} does not follow {:?}", self.last_seq));
                }
                self.last_seq = Some(seq);
            }
            (Kind::Client, "ack") => {
                let seq = value.pointer("/params/seq").and_then(Value::as_u64);
                if seq.is_none() || seq > self.last_seq {
                    return Err("an `ack` of a `seq` not received".into());
                }
                self.acked = true;
            }
            _ => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the code tables.

/// The rows of the table that follows the line starting with `marker`, as trimmed cells without
/// backticks. The first row is the header.
fn table(doc: &str, marker: &str) -> Vec<Vec<String>> {
    let starts: Vec<usize> = doc.match_indices(marker).map(|(i, _)| i).collect();
    assert_eq!(
        starts.len(),
        1,
        "{DOC_PATH} must have `{marker}` exactly once"
    );
    let rows: Vec<Vec<String>> = doc[starts[0]..]
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect();
    assert!(rows.len() > 2, "no table after `{marker}`");
    let separator = &rows[1];
    assert!(
        separator.iter().all(|c| c.chars().all(|c| c == '-')),
        "row 2 of the table after `{marker}` is not a separator"
    );
    let mut rows = rows;
    rows.remove(1);
    rows
}

fn number<T: std::str::FromStr>(cell: &str) -> T {
    cell.parse()
        .unwrap_or_else(|_| panic!("`{cell}` in a code table is not a code"))
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn every_example_frame_round_trips() {
    let (failures, seen) = check_document(&doc());
    assert!(
        failures.is_empty(),
        "{} of {} examples in {DOC_PATH} failed:\n\n{}",
        failures.len(),
        seen.examples,
        failures.join("\n\n")
    );
}

#[test]
fn every_operation_push_and_reply_has_an_example() {
    let (_, seen) = check_document(&doc());
    let missing = |what: &str, all: BTreeSet<&'static str>, have: &BTreeSet<&'static str>| {
        let missing: Vec<_> = all.difference(have).collect();
        assert!(
            missing.is_empty(),
            "{DOC_PATH} has no example of the {what} {missing:?}"
        );
    };
    missing("operations", op_names(), &seen.ops);
    missing("pushes", push_names(), &seen.pushes);
    missing(
        "replies",
        REPLIES.iter().map(|r| r.name()).collect(),
        &seen.replies,
    );
    for wanted in [
        (Format::Json, Dir::Client),
        (Format::Json, Dir::Server),
        (Format::Msgpack, Dir::Client),
    ] {
        assert!(
            seen.batches.contains(&wanted),
            "{DOC_PATH} has no batch example {wanted:?}"
        );
    }
    for wanted in [
        (Format::Json, Dir::Client),
        (Format::Json, Dir::Server),
        (Format::Msgpack, Dir::Client),
        (Format::Msgpack, Dir::Server),
    ] {
        assert!(
            seen.binary.contains(&wanted),
            "{DOC_PATH} has no binary payload example {wanted:?}"
        );
    }
    assert!(
        seen.rejected.contains(&ErrorCode::UNKNOWN_OPERATION.0)
            && seen.rejected.contains(&ErrorCode::BAD_REQUEST.0),
        "{DOC_PATH} needs examples of frames rejected with 102 and 104"
    );
    assert!(
        seen.closed.contains(&4500),
        "{DOC_PATH} needs an example of a bad frame"
    );
    assert!(seen.sessions > 0, "{DOC_PATH} needs a session example");
    let missing: Vec<_> = FEATURES
        .iter()
        .filter(|f| !seen.features.contains(*f))
        .collect();
    assert!(
        missing.is_empty(),
        "{DOC_PATH} has no example of {missing:?}"
    );
}

#[test]
fn recovery_reason_table_lists_every_reason() {
    let doc = doc();
    let rows = table(&doc, "<!-- table: recovery-reasons");
    assert_eq!(
        rows[0],
        ["reason", "meaning"],
        "recovery reason table header"
    );
    let documented: Vec<&str> = rows[1..]
        .iter()
        .map(|row| {
            assert!(
                row.len() == 2 && !row[1].is_empty(),
                "recovery reason row {row:?}"
            );
            row[0].as_str()
        })
        .collect();
    assert_eq!(documented, RECOVERY_REASONS);
    let (_, seen) = check_document(&doc);
    for reason in &seen.recovery_reasons {
        assert!(
            RECOVERY_REASONS.contains(&reason.as_str()),
            "an example fails a recovery with `{reason}`, which is not a reason"
        );
    }
}

#[test]
fn error_code_table_is_the_code_table() {
    let rows = table(&doc(), "<!-- table: error-codes");
    assert_eq!(rows[0], ["code", "name", "meaning"], "error table header");
    let documented: Vec<(u32, String)> = rows[1..]
        .iter()
        .map(|row| {
            assert!(
                row.len() == 3 && !row[2].is_empty(),
                "error table row {row:?}"
            );
            (number(&row[0]), row[1].clone())
        })
        .collect();
    let actual: Vec<(u32, String)> = ERROR_CODES
        .iter()
        .map(|row| (row.code.0, row.name.to_string()))
        .collect();
    assert_eq!(documented, actual);
}

#[test]
fn close_code_table_is_the_code_table() {
    let rows = table(&doc(), "<!-- table: close-codes");
    assert_eq!(
        rows[0],
        ["code", "name", "reconnect", "meaning"],
        "close table header"
    );
    let documented: Vec<(u16, String, bool)> = rows[1..]
        .iter()
        .map(|row| {
            assert!(
                row.len() == 4 && !row[3].is_empty(),
                "close table row {row:?}"
            );
            let reconnect = match row[2].as_str() {
                "yes" => true,
                "no" => false,
                other => panic!("reconnect must be yes or no, not `{other}`"),
            };
            (number(&row[0]), row[1].clone(), reconnect)
        })
        .collect();
    let actual: Vec<(u16, String, bool)> = CLOSE_CODES
        .iter()
        .map(|row| {
            (
                row.code.0,
                row.name.to_string(),
                row.code.should_reconnect(),
            )
        })
        .collect();
    assert_eq!(documented, actual);
}

/// Section 3.6: a MessagePack `data` must be representable in JSON, and a payload is `data` or
/// `binary`, never both.
#[test]
fn payload_rules_of_section_3_6() {
    struct Bin(&'static [u8]);
    impl Serialize for Bin {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    #[derive(Serialize)]
    struct Params<D> {
        channel: &'static str,
        data: D,
    }
    #[derive(Serialize)]
    struct Frame<D> {
        id: u64,
        op: &'static str,
        params: Params<D>,
    }
    fn publish<D: Serialize>(data: D) -> Result<client::Request, RequestError> {
        let frame = Frame {
            id: 1,
            op: "publish",
            params: Params { channel: "c", data },
        };
        let bytes = rmp_serde::to_vec_named(&frame).expect("encodes");
        client::decode_request(Encoding::Msgpack, &bytes)
    }
    let bad_request = |r: Result<client::Request, RequestError>| {
        matches!(
            r,
            Err(RequestError::Rejected {
                code: ErrorCode::BAD_REQUEST,
                ..
            })
        )
    };
    assert!(bad_request(publish(BTreeMap::from([("b", Bin(&[1, 2]))]))));
    assert!(bad_request(publish(BTreeMap::from([(1, 2)]))));
    // `data` is the frame's last field: swap its `nil` for a fixext 1 (type 1, byte 0).
    let mut ext = rmp_serde::to_vec_named(&Frame {
        id: 1,
        op: "publish",
        params: Params {
            channel: "c",
            data: (),
        },
    })
    .expect("encodes");
    assert_eq!(ext.pop(), Some(0xc0));
    ext.extend_from_slice(&[0xd4, 0x01, 0x00]);
    assert!(bad_request(client::decode_request(Encoding::Msgpack, &ext)));
    let nan = publish(f64::NAN).expect("NaN is accepted");
    let Op::Publish(params) = nan.op else {
        panic!("{nan:?}")
    };
    assert_eq!(params.payload(), Ok(Payload::null()));

    let both = client::decode_request(
        Encoding::Json,
        br#"{"id":1,"op":"publish","params":{"channel":"c","data":1,"binary":"AQ=="}}"#,
    )
    .expect("decodes");
    let Op::Publish(params) = both.op else {
        panic!("{both:?}")
    };
    assert!(params.payload().is_err(), "data and binary together");
}
