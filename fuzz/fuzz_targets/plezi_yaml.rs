//! The safe YAML subset of Plezi 0.12's Redis bus messages on arbitrary text: every input is a
//! value or an error within the bounds, never a panic, a stack overflow or an allocation sized
//! by the input beyond its own length.
//!
//! Input: the message's bytes (Redis delivers bytes; only UTF-8 is read).

#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_protocol::plezi_yaml::{bus_message, parse};

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if let Ok(value) = parse(text) {
        // What was read serializes (no NaN, no broken strings).
        serde_json::to_string(&value).expect("a read value is JSON");
    }
    if let Ok(message) = bus_message(text) {
        assert!(!message.method.is_empty());
        assert!(message.kind.is_some() || message.target.is_some());
    }
});
