//! Mesa's wire format (`@cryb/mesa` 1.5.8 and `mesa-js-client` 1.4.8; `seeds-protocols.md`
//! §1): JSON text frames `{op, d, t?, s?, o?}` over WebSocket (§1.1), and the payload its
//! `Dispatcher` publishes on the `ws[_ns]` Redis channel (§1.2). Sans-IO: bytes in, frames out.
//!
//! Differences from Mesa, made here: a frame that is not JSON, not an object, or has no integer
//! `op` is an error the server answers with a close (Mesa's bare `JSON.parse` throws inside its
//! listener); the hello always carries `rules`, possibly empty (both Mesa clients crash on a
//! hello without it, §1.4).

use crate::payload::{MAX_PAYLOAD_DEPTH, depth_within};
use crate::{CloseCode, Payload};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;

/// Opcodes (§1.1, the opcode table).
pub mod op {
    /// An application event, both ways: `t` is its type.
    pub const DISPATCH: u64 = 0;
    /// Server → client heartbeat: `{}`, or `{tries, max}` after missed acks.
    pub const HEARTBEAT: u64 = 1;
    /// Client → server authentication: the app's data plus `shouldSync`.
    pub const AUTHENTICATION: u64 = 2;
    /// Redis only: `DISCONNECT_CLIENT` from a `Dispatcher`'s `DispatchEvent`.
    pub const INTERNAL: u64 = 5;
    /// Server → client, first frame: intervals and rules.
    pub const HELLO: u64 = 10;
    /// Client → server answer to op 1.
    pub const HEARTBEAT_ACK: u64 = 11;
    /// Server → client: authenticated, with the user object.
    pub const AUTHENTICATION_ACK: u64 = 22;
}

/// The op 5 event type that closes the recipients' connections with 1000.
pub const DISCONNECT_CLIENT: &str = "DISCONNECT_CLIENT";
/// The op 0 type a client sends its version under when the hello has `enforce_equal_versions`.
pub const CLIENT_VERSION: &str = "CLIENT_VERSION";

/// Mesa's close codes (§1.1 "Close codes"). Plexus adds its own for what Mesa does not close
/// for (`docs/mesa.md`): 4500 for a frame that does not decode, 4003 for the authentication
/// timeout, 4002 for missed heartbeats.
pub mod close {
    use crate::CloseCode;
    /// A `Dispatcher`'s `DispatchEvent('DISCONNECT_CLIENT')`.
    pub const DISCONNECT_CLIENT: CloseCode = CloseCode(1000);
    /// The client's `CLIENT_VERSION` differs from the server's.
    pub const VERSION_MISMATCH: CloseCode = CloseCode(1002);
    /// Authentication refused (`disconnectOnFail`).
    pub const AUTH_FAILED: CloseCode = CloseCode(1008);
}

/// Hello rules (`rules` of op 10).
pub mod rule {
    pub const ENFORCE_EQUAL_VERSIONS: &str = "enforce_equal_versions";
    pub const STORE_MESSAGES: &str = "store_messages";
    pub const SENDS_USER_OBJECT: &str = "sends_user_object";
}

/// Per-message options (`o`): `sync: false` is never kept for an offline user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Mesa's `parseOptions`: `true` unless given.
    #[serde(default = "yes")]
    pub sync: bool,
}

fn yes() -> bool {
    true
}

/// One decoded frame. `d` stays raw JSON text, passed through unparsed.
#[derive(Clone, Debug, Deserialize)]
pub struct Frame {
    pub op: u64,
    #[serde(default)]
    pub d: Option<Box<RawValue>>,
    #[serde(default)]
    pub t: Option<String>,
    #[serde(default)]
    pub s: Option<u64>,
    #[serde(default)]
    pub o: Option<Options>,
}

impl Frame {
    /// `d` as a payload (`{}` when absent or null, as Mesa's `Message` defaults it).
    pub fn payload(&self) -> Payload {
        match &self.d {
            Some(d) if d.get() != "null" => Payload::Json(Arc::from(d.clone())),
            _ => empty_object(),
        }
    }

    /// Whether the message may be kept for an offline recipient (`o.sync`, default true).
    pub fn sync(&self) -> bool {
        self.o.is_none_or(|o| o.sync)
    }
}

/// `{}` as a payload.
pub fn empty_object() -> Payload {
    Payload::from_json_str("{}").expect("valid JSON")
}

/// Why a frame did not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("nests deeper than {MAX_PAYLOAD_DEPTH} levels")]
    TooDeep,
}

impl DecodeError {
    /// The close a connection gets for it (4500, `bad_frame`).
    pub fn close_code(&self) -> CloseCode {
        CloseCode::BAD_FRAME
    }
}

/// Decodes one client frame (a text or binary WebSocket message's bytes).
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    object(text)
}

/// Parses `text` as a JSON object of `T`'s shape (an array would fill the fields in order).
fn object<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, DecodeError> {
    if !depth_within(text, MAX_PAYLOAD_DEPTH) {
        return Err(DecodeError::TooDeep);
    }
    if !text.trim_start().starts_with('{') {
        return Err(DecodeError::Json("not a JSON object".into()));
    }
    serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))
}

#[derive(Serialize)]
struct Out<'a> {
    op: u64,
    d: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<u64>,
}

/// Encodes a server frame. `d` must be JSON text (a payload's); `s` only on redelivered sync
/// messages.
pub fn encode(op: u64, d: &RawValue, t: Option<&str>, s: Option<u64>) -> Bytes {
    Bytes::from(serde_json::to_vec(&Out { op, d, t, s }).expect("serializable"))
}

/// An op 0 frame carrying `payload` (JSON; a binary payload has no Mesa form).
pub fn dispatch(payload: &Payload, t: Option<&str>, s: Option<u64>) -> Option<Bytes> {
    let d = match payload {
        Payload::Json(raw) => raw,
        Payload::Binary(_) => return None,
    };
    Some(encode(op::DISPATCH, d, t, s))
}

/// The op 1 heartbeat: `{}` while acks come, then `{tries, max}`.
pub fn heartbeat(tries: u32, max: u32) -> Bytes {
    if tries == 0 {
        return Bytes::from_static(br#"{"op":1,"d":{}}"#);
    }
    let d = serde_json::value::to_raw_value(&serde_json::json!({"tries": tries, "max": max}))
        .expect("serializable");
    encode(op::HEARTBEAT, &d, None, None)
}

/// Op 10's `d` (`IClientConnectionConfig`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c_heartbeat_interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c_reconnect_interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c_authentication_timeout: Option<u64>,
    /// Always written, even empty (§1.4: both clients crash without it).
    pub rules: Vec<String>,
}

impl Hello {
    pub fn encode(&self) -> Bytes {
        let d = serde_json::value::to_raw_value(self).expect("serializable");
        encode(op::HELLO, &d, None, None)
    }
}

/// Op 2's `d`, split into what the server reads and the rest (the application's data).
#[derive(Clone, Debug, PartialEq)]
pub struct Authentication {
    /// `token`, when it is a string.
    pub token: Option<String>,
    /// `shouldSync` (default true): `false` drops the stored backlog.
    pub should_sync: bool,
    /// The whole `d` but `shouldSync`, as the application's auth hook sees it.
    pub data: Payload,
}

/// Reads op 2's `d`: it must be an object.
pub fn authentication(d: &Payload) -> Option<Authentication> {
    let mut map: serde_json::Map<String, serde_json::Value> = d.to_value().ok()?;
    let should_sync = match map.remove("shouldSync") {
        Some(serde_json::Value::Bool(b)) => b,
        _ => true,
    };
    let token = map.get("token").and_then(|t| t.as_str()).map(str::to_owned);
    let data = Payload::json(&map).ok()?;
    Some(Authentication {
        token,
        should_sync,
        data,
    })
}

/// What a `Dispatcher` publishes on `ws[_ns]` (`IInternalMessage`, §1.2).
#[derive(Clone, Debug, Deserialize)]
pub struct InternalMessage {
    pub message: Frame,
    pub recipients: Vec<String>,
}

/// The recipient that means "every client".
pub const ALL: &str = "*";

/// Decodes a `ws[_ns]` payload.
pub fn decode_internal(bytes: &[u8]) -> Result<InternalMessage, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    object(text)
}

/// Encodes a `ws[_ns]` payload as a Mesa `Dispatcher` does (`message.serialize(true)`:
/// `{op, d, t[, o]}`).
pub fn encode_internal(
    op: u64,
    d: &RawValue,
    t: Option<&str>,
    o: Option<Options>,
    recipients: &[&str],
) -> Bytes {
    #[derive(Serialize)]
    struct Message<'a> {
        op: u64,
        d: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        t: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        o: Option<Options>,
    }
    #[derive(Serialize)]
    struct Internal<'a> {
        message: Message<'a>,
        recipients: &'a [&'a str],
    }
    let internal = Internal {
        message: Message { op, d, t, o },
        recipients,
    };
    Bytes::from(serde_json::to_vec(&internal).expect("serializable"))
}

/// What a Mesa server hands its Portals (`IPortalInternalMessage`, §1.2): a client
/// `connection`, `authentication`, `message` or `disconnection`, with the client's id once it
/// has one, and — on Mesa's `portal[_ns]` channel — the chosen portal's id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PortalEvent {
    #[serde(rename = "type")]
    pub kind: PortalEventKind,
    #[serde(rename = "clientId", default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The client's frame, `{op, d, t}`, for `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Box<RawValue>>,
    #[serde(rename = "portalId", default, skip_serializing_if = "Option::is_none")]
    pub portal_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortalEventKind {
    Connection,
    Authentication,
    Message,
    Disconnection,
}

impl PortalEvent {
    pub fn new(kind: PortalEventKind, client_id: Option<&str>) -> PortalEvent {
        PortalEvent {
            kind,
            client_id: client_id.map(str::to_owned),
            message: None,
            portal_id: None,
        }
    }

    /// A `message` event carrying a client's op 0.
    pub fn message(client_id: Option<&str>, d: &RawValue, t: Option<&str>) -> PortalEvent {
        let frame = encode(op::DISPATCH, d, t, None);
        let raw = RawValue::from_string(String::from_utf8(frame.to_vec()).expect("JSON is UTF-8"))
            .expect("valid JSON");
        PortalEvent {
            message: Some(raw),
            ..PortalEvent::new(PortalEventKind::Message, client_id)
        }
    }

    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("serializable"))
    }
}

/// Decodes a portal event (as queued, or as published on `portal[_ns]`).
pub fn decode_portal_event(bytes: &[u8]) -> Result<PortalEvent, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    object(text)
}

/// A Portal's announcement on `available_portals_pool[_ns]` (`IPortalUpdate`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalUpdate {
    pub id: String,
    pub ready: bool,
}

pub fn decode_portal_update(bytes: &[u8]) -> Result<PortalUpdate, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    object(text)
}

/// The Redis name Mesa gives `prefix` in `namespace` (`getNamespace`: a suffix, §1.2).
pub fn namespaced(prefix: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{prefix}_{ns}"),
        _ => prefix.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    // §1.5 message tests: the constructor unpacks, serialization writes {op, d, t}.
    #[test]
    fn message_round_trip() {
        let f = decode_frame(br#"{"op":0,"d":{"x":0,"y":"1"},"t":"TEST"}"#).unwrap();
        assert_eq!(f.op, 0);
        assert_eq!(f.d.as_ref().unwrap().get(), r#"{"x":0,"y":"1"}"#);
        assert_eq!(f.t.as_deref(), Some("TEST"));
        assert!(f.sync());
        assert_eq!(
            &encode(0, &raw("{}"), Some("TEST"), None)[..],
            br#"{"op":0,"d":{},"t":"TEST"}"#
        );
    }

    // The golden traces of §1.5.
    #[test]
    fn golden_frames() {
        let hello = Hello {
            c_heartbeat_interval: Some(500),
            c_reconnect_interval: Some(300),
            c_authentication_timeout: None,
            rules: vec![rule::SENDS_USER_OBJECT.into()],
        };
        assert_eq!(
            &hello.encode()[..],
            br#"{"op":10,"d":{"c_heartbeat_interval":500,"c_reconnect_interval":300,"rules":["sends_user_object"]}}"#
        );
        assert_eq!(&heartbeat(0, 2)[..], br#"{"op":1,"d":{}}"#);
        assert_eq!(&heartbeat(1, 2)[..], br#"{"op":1,"d":{"tries":1,"max":2}}"#);
        let greeting = Payload::from_json_str(r#"{"hello":1}"#).unwrap();
        assert_eq!(
            &dispatch(&greeting, Some("GREETING"), Some(3)).unwrap()[..],
            br#"{"op":0,"d":{"hello":1},"t":"GREETING","s":3}"#
        );
        let f = decode_frame(br#"{"op":2,"d":{"token":"x","shouldSync":true}}"#).unwrap();
        let auth = authentication(&f.payload()).unwrap();
        assert_eq!(auth.token.as_deref(), Some("x"));
        assert!(auth.should_sync);
        assert_eq!(auth.data.as_json_str(), Some(r#"{"token":"x"}"#));
        let f = decode_frame(br#"{"op":11,"d":{}}"#).unwrap();
        assert_eq!(f.op, op::HEARTBEAT_ACK);
    }

    #[test]
    fn empty_rules_are_written() {
        assert_eq!(
            &Hello::default().encode()[..],
            br#"{"op":10,"d":{"rules":[]}}"#
        );
    }

    #[test]
    fn bad_frames() {
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            b"{}",
            br#"{"op":-1}"#,
            br#"{"op":"0"}"#,
            br#"{"op":1.5}"#,
            b"\xff\xfe",
        ] {
            assert!(
                decode_frame(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!("{{\"op\":0,\"d\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            decode_frame(deep.as_bytes()).unwrap_err(),
            DecodeError::TooDeep
        );
        // `d` that is not an object cannot authenticate.
        let f = decode_frame(br#"{"op":2,"d":[1]}"#).unwrap();
        assert!(authentication(&f.payload()).is_none());
        // No `d`: `{}`.
        let f = decode_frame(br#"{"op":0,"t":"X"}"#).unwrap();
        assert_eq!(f.payload().as_json_str(), Some("{}"));
    }

    #[test]
    fn internal_messages() {
        let m = decode_internal(
            br#"{"message":{"op":0,"d":{"a":1},"t":"T","o":{"sync":false}},"recipients":["*"]}"#,
        )
        .unwrap();
        assert_eq!(m.recipients, vec![ALL]);
        assert!(!m.message.sync());
        let bytes = encode_internal(0, &raw(r#"{"a":1}"#), Some("T"), None, &["alice", "bob"]);
        assert_eq!(
            &bytes[..],
            br#"{"message":{"op":0,"d":{"a":1},"t":"T"},"recipients":["alice","bob"]}"#
        );
        let m = decode_internal(&bytes).unwrap();
        assert_eq!(m.recipients, vec!["alice", "bob"]);
        // Portal events as Mesa's Portal reads them.
        let mut e = PortalEvent::message(Some("alice"), &raw(r#"{"x":1}"#), Some("T"));
        e.portal_id = Some("p1".into());
        assert_eq!(
            &e.encode()[..],
            br#"{"type":"message","clientId":"alice","message":{"op":0,"d":{"x":1},"t":"T"},"portalId":"p1"}"#
        );
        let back = decode_portal_event(&e.encode()).unwrap();
        assert_eq!(back.kind, PortalEventKind::Message);
        assert_eq!(
            &PortalEvent::new(PortalEventKind::Connection, None).encode()[..],
            br#"{"type":"connection"}"#
        );
        assert_eq!(
            decode_portal_update(br#"{"id":"u","ready":false}"#).unwrap(),
            PortalUpdate {
                id: "u".into(),
                ready: false
            }
        );
        assert!(decode_portal_event(br#"{"type":"teleport"}"#).is_err());
        let o: Options = serde_json::from_str("{}").unwrap();
        assert!(o.sync);
        assert_eq!(namespaced("ws", None), "ws");
        assert_eq!(namespaced("ws", Some("app")), "ws_app");
    }
}
