//! Plezi's JSON auto-dispatch (`docs/endpoints.md`), sans-IO: a text message that is a JSON
//! object names its handler with `event`; `_EID_` asks for an acknowledgement, written before
//! the handler runs; an unknown event is answered with Plezi 0.12's 404 `err` event.

use serde_json::{Map, Value, json};

/// A message for a handler: its event (absent or not a string: `None`, an unknown event), the
/// acknowledgement id it asked for, and the whole object (what the handler gets, as in Plezi).
#[derive(Clone, Debug, PartialEq)]
pub struct Dispatch {
    pub event: Option<String>,
    pub eid: Option<Value>,
    pub message: Map<String, Value>,
}

/// Why a message cannot be dispatched: the connection closes (Plezi closes too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DispatchError {
    /// A binary message: auto-dispatch takes JSON text only.
    Binary,
    /// Not JSON, or JSON that is not an object.
    NotAnObject(String),
}

impl std::fmt::Display for DispatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DispatchError::Binary => f.write_str("auto-dispatch takes JSON text, not binary"),
            DispatchError::NotAnObject(why) => {
                write!(f, "auto-dispatch takes a JSON object: {why}")
            }
        }
    }
}

impl std::error::Error for DispatchError {}

/// The event name an acknowledgement carries (`{"event":"_ack_","_EID_":…}`).
pub const ACK_EVENT: &str = "_ack_";

/// Decodes a text message for auto-dispatch.
pub fn decode(text: &str) -> Result<Dispatch, DispatchError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| DispatchError::NotAnObject(e.to_string()))?;
    let Value::Object(message) = value else {
        return Err(DispatchError::NotAnObject(format!(
            "got {}",
            kind_of(&value)
        )));
    };
    let event = message
        .get("event")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let eid = message.get("_EID_").cloned();
    Ok(Dispatch {
        event,
        eid,
        message,
    })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The acknowledgement of `_EID_` `eid`: `{"event":"_ack_","_EID_":<eid>}`.
pub fn ack(eid: &Value) -> String {
    json!({"event": ACK_EVENT, "_EID_": eid}).to_string()
}

/// Plezi 0.12's answer to an event nobody handles:
/// `{"event":"err","status":404,"result":"not found","request":<the message>}`.
pub fn not_found(message: &Map<String, Value>) -> String {
    json!({"event": "err", "status": 404, "result": "not found", "request": message}).to_string()
}

/// What a handler's result writes: a string as it is, anything else as JSON text (Plezi wrote a
/// Hash as JSON and a String as is).
pub fn reply_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A message for a connection as auto-dispatch clients receive it: an object payload gets
/// `"event": name` added (Plezi's `{event: …, …}`) unless it has an `event` of its own, which
/// wins; any other payload is `{"event": name, "data": payload}`. Without a name, the payload
/// as it is.
pub fn event_message(name: Option<&str>, payload: Value) -> String {
    match (name, payload) {
        (None, payload) => reply_text(&payload),
        (Some(name), Value::Object(mut object)) => {
            object
                .entry("event")
                .or_insert_with(|| Value::String(name.to_owned()));
            Value::Object(object).to_string()
        }
        (Some(name), data) => json!({"event": name, "data": data}).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_object_names_its_event_and_may_ask_for_an_ack() {
        let d = decode(r#"{"event":"chat","text":"hi","_EID_":17}"#).unwrap();
        assert_eq!(d.event.as_deref(), Some("chat"));
        assert_eq!(d.eid, Some(json!(17)));
        assert_eq!(d.message["text"], "hi");
        assert_eq!(
            ack(d.eid.as_ref().unwrap()),
            r#"{"event":"_ack_","_EID_":17}"#
        );
        let d = decode(r#"{"text":"no event"}"#).unwrap();
        assert_eq!((d.event, d.eid), (None, None));
        let d = decode(r#"{"event":7}"#).unwrap();
        assert_eq!(d.event, None, "a non-string event is no event");
    }

    #[test]
    fn anything_but_a_json_object_is_refused() {
        for bad in [
            "",
            "hello",
            "[1,2]",
            "\"chat\"",
            "null",
            "{\"event\":",
            "17",
        ] {
            assert!(
                matches!(decode(bad), Err(DispatchError::NotAnObject(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unknown_events_and_results() {
        let d = decode(r#"{"event":"nope","x":1}"#).unwrap();
        let answer: Value = serde_json::from_str(&not_found(&d.message)).unwrap();
        assert_eq!(
            answer,
            json!({"event":"err","status":404,"result":"not found","request":{"event":"nope","x":1}})
        );
        assert_eq!(reply_text(&json!("as is")), "as is");
        assert_eq!(reply_text(&json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(
            event_message(Some("news"), json!({"text": "t"})),
            r#"{"text":"t","event":"news"}"#
        );
        assert_eq!(
            event_message(Some("news"), json!({"event": "own", "x": 1})),
            r#"{"event":"own","x":1}"#
        );
        assert_eq!(
            event_message(Some("n"), json!([1])),
            r#"{"event":"n","data":[1]}"#
        );
        assert_eq!(event_message(None, json!("plain")), "plain");
    }
}
