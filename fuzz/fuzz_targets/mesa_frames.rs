//! Mesa's decoders (`plexus_protocol::mesa`): client frames, op 2's data, the Dispatcher's `ws`
//! payloads, portal events and announcements never panic, and what decodes encodes back to the
//! same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_protocol::mesa;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = mesa::decode_frame(data) {
        let payload = frame.payload();
        let _ = mesa::authentication(&payload);
        let _ = frame.sync();
        let encoded = mesa::dispatch(&payload, frame.t.as_deref(), frame.s)
            .expect("a JSON payload has a frame");
        let again = mesa::decode_frame(&encoded).expect("what we encode decodes");
        assert_eq!(again.op, mesa::op::DISPATCH);
        assert_eq!(again.t, frame.t);
        assert_eq!(again.s, frame.s);
        assert_eq!(again.payload().as_json_str(), payload.as_json_str());
    }
    if let Ok(internal) = mesa::decode_internal(data) {
        let _ = internal.message.payload();
        let _ = internal.recipients.iter().any(|r| r == mesa::ALL);
    }
    // Portal events and announcements (as a Portal or the pool channel would send them).
    if let Ok(event) = mesa::decode_portal_event(data) {
        let again = mesa::decode_portal_event(&event.encode()).expect("what we encode decodes");
        assert_eq!(again.kind, event.kind);
        assert_eq!(again.client_id, event.client_id);
    }
    let _ = mesa::decode_portal_update(data);
});
