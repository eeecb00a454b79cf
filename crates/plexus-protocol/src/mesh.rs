//! Mesh's wire format (`seeds-protocols.md` §3.1): JSON text frames
//! `{"id"?: <int>, "command": "<string>", "payload": <any>}` over WebSocket.
//!
//! - A **request** carries an `id` (from 0: `id: 0` is a request, and an id may be used again
//!   once answered) and gets exactly one **reply** `{id, command, payload}`.
//! - `pong` and `latency:response` carry an id but are answers to the server, not requests.
//! - A **push** is `{command, payload}` without `id`.
//! - An error reply's payload is `{"error": <message>, "code": <"ENOTFOUND"|"ESERVER"|…>,
//!   "name": <"CommandError"|"Error"|…>}` and the client resolves with it (§3.1).
//!
//! Differences from Mesh, made here: a frame that is not a JSON object with a string `command`
//! is a [`DecodeError`] (Mesh turned unparseable text into `{command:"",payload:{}}` and ignored
//! it silently); a frame without `id` gets no reply, as in Mesh, but one the server cannot
//! handle gets a `mesh/error` push instead of nothing.

use crate::payload::{MAX_PAYLOAD_DEPTH, depth_within};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Commands a client sends that are answers, not requests (no reply).
pub const PONG: &str = "pong";
pub const LATENCY_RESPONSE: &str = "latency:response";

/// Pushes the server sends.
pub mod push {
    pub const ASSIGN_ID: &str = "mesh/assign-id";
    pub const PING: &str = "ping";
    pub const LATENCY: &str = "latency";
    pub const SUBSCRIPTION_MESSAGE: &str = "mesh/subscription-message";
    pub const PRESENCE_UPDATE: &str = "mesh/presence-update";
    pub const RECORD_UPDATE: &str = "mesh/record-update";
    pub const RECORD_DELETED: &str = "mesh/record-deleted";
    /// Plexus's: a frame without id could not be handled (`{error, code, name}`).
    pub const ERROR: &str = "mesh/error";
    /// Plexus's: the server ended a channel subscription (`{channel, reason}`).
    pub const UNSUBSCRIBED: &str = "mesh/unsubscribed";
}

/// One decoded client frame.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Frame {
    #[serde(default)]
    pub id: Option<u64>,
    pub command: String,
    /// Mesh clients send `payload ?? {}`; an absent payload is `{}`.
    #[serde(default = "empty_object")]
    pub payload: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

impl Frame {
    /// Whether the frame asks for a reply: it has an id and is not an answer to the server.
    pub fn is_request(&self) -> bool {
        self.id.is_some() && self.command != PONG && self.command != LATENCY_RESPONSE
    }
}

/// Why a message is not a Mesh frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a Mesh frame: {0}")]
    Invalid(String),
    #[error("nests deeper than {MAX_PAYLOAD_DEPTH} levels")]
    TooDeep,
}

/// Decodes one client frame (a WebSocket text message).
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::Invalid(e.to_string()))?;
    if !depth_within(text, MAX_PAYLOAD_DEPTH) {
        return Err(DecodeError::TooDeep);
    }
    if !text.trim_start().starts_with('{') {
        return Err(DecodeError::Invalid("a frame is a JSON object".into()));
    }
    serde_json::from_str(text).map_err(|e| DecodeError::Invalid(e.to_string()))
}

#[derive(Serialize)]
struct Out<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    command: &'a str,
    payload: &'a Value,
}

/// A reply `{id, command, payload}`.
pub fn reply(id: u64, command: &str, payload: &Value) -> Bytes {
    encode(Some(id), command, payload)
}

/// A push `{command, payload}`.
pub fn push(command: &str, payload: &Value) -> Bytes {
    encode(None, command, payload)
}

fn encode(id: Option<u64>, command: &str, payload: &Value) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&Out {
            id,
            command,
            payload,
        })
        .expect("serializable"),
    )
}

/// Mesh's error payload: `{"error": message, "code": code, "name": name}`.
pub fn error_payload(message: &str, code: &str, name: &str) -> Value {
    serde_json::json!({ "error": message, "code": code, "name": name })
}

/// The error payload of an unknown command (`ENOTFOUND`, `CommandError`).
pub fn not_found(command: &str) -> Value {
    error_payload(
        &format!("Command \"{command}\" not found"),
        "ENOTFOUND",
        "CommandError",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_decode_as_mesh_writes_them() {
        let f = decode_frame(br#"{"id":0,"command":"echo","payload":"hi"}"#).unwrap();
        assert_eq!(
            (f.id, f.command.as_str(), &f.payload),
            (Some(0), "echo", &json!("hi"))
        );
        assert!(f.is_request(), "id 0 is a request");
        let f = decode_frame(br#"{"command":"noop"}"#).unwrap();
        assert_eq!((f.id, &f.payload), (None, &json!({})));
        assert!(!f.is_request());
        let pong = decode_frame(br#"{"id":4,"command":"pong","payload":{}}"#).unwrap();
        assert!(!pong.is_request(), "pong answers the server");
        for bad in [
            &b"nope"[..],
            b"[1,2]",
            br#"{"id":1}"#,
            br#"{"id":-1,"command":"x"}"#,
            b"\xff",
        ] {
            assert!(decode_frame(bad).is_err(), "{bad:?}");
        }
        let deep = format!(
            "{{\"command\":\"x\",\"payload\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(decode_frame(deep.as_bytes()), Err(DecodeError::TooDeep));
    }

    #[test]
    fn replies_and_pushes() {
        assert_eq!(
            &reply(3, "echo", &json!("x"))[..],
            br#"{"id":3,"command":"echo","payload":"x"}"#
        );
        assert_eq!(
            &push("ping", &json!({}))[..],
            br#"{"command":"ping","payload":{}}"#
        );
        assert_eq!(
            not_found("unknown-command"),
            json!({"code":"ENOTFOUND","error":"Command \"unknown-command\" not found","name":"CommandError"})
        );
    }
}
