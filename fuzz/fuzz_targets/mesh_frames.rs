//! Mesh's decoder (`plexus_protocol::mesh`): any bytes decode to a frame or an error, never a
//! panic, and a decoded frame written back as a reply or a push decodes to the same command,
//! id and payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_protocol::mesh;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = mesh::decode_frame(data) else {
        return;
    };
    let _ = frame.is_request();
    let encoded = match frame.id {
        Some(id) => mesh::reply(id, &frame.command, &frame.payload),
        None => mesh::push(&frame.command, &frame.payload),
    };
    let again = mesh::decode_frame(&encoded).expect("what we encode decodes");
    assert_eq!(again.id, frame.id);
    assert_eq!(again.command, frame.command);
    assert_eq!(again.payload, frame.payload);
});
