//! Plezi's JSON auto-dispatch decoder on arbitrary text: every input is a dispatch or an error,
//! never a panic; what the server writes back for a decoded message (the `_EID_`
//! acknowledgement, the 404 `err` event, a handler's result) is JSON that carries the same
//! values back.
//!
//! Input: the message's bytes (only valid UTF-8 reaches the decoder, as over WebSocket).

#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_protocol::plezi::{ack, decode, event_message, not_found};
use serde_json::Value;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(dispatch) = decode(text) else {
        return;
    };
    if let Some(eid) = &dispatch.eid {
        let back: Value = serde_json::from_str(&ack(eid)).expect("an ack is JSON");
        assert_eq!(&back["_EID_"], eid);
        assert_eq!(back["event"], "_ack_");
    }
    let answer: Value = serde_json::from_str(&not_found(&dispatch.message)).expect("JSON");
    assert_eq!(answer["request"], Value::Object(dispatch.message.clone()));
    let own = dispatch.message.get("event").cloned();
    let echoed: Value =
        serde_json::from_str(&event_message(Some("e"), Value::Object(dispatch.message)))
            .expect("JSON");
    // An object's own `event` wins; otherwise the name given.
    assert_eq!(echoed["event"], own.unwrap_or(Value::String("e".into())));
});
