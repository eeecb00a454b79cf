//! JSON Patch application (`plexus_core::records`): a document and a patch (split at the first
//! NUL byte) never panic; a patch applies whole or not at all (a failure leaves the document
//! unchanged); and the patch `diff` computes from the document before to the one after turns
//! the one into the other (what a `full` write sends to `patch` subscribers).
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_core::records::{apply_patch, diff, parse_patch};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|b| *b == 0) else {
        return;
    };
    let (Ok(doc), Ok(ops)) = (
        serde_json::from_slice::<Value>(&data[..split]),
        serde_json::from_slice::<Value>(&data[split + 1..]),
    ) else {
        return;
    };
    let Ok(patch) = parse_patch(&ops) else {
        return;
    };
    let mut after = doc.clone();
    match apply_patch(&mut after, &patch) {
        Err(_) => assert_eq!(after, doc, "a failed patch changes nothing"),
        Ok(()) => {
            let forward = parse_patch(&diff(&doc, &after)).expect("a diff is a patch");
            let mut again = doc.clone();
            apply_patch(&mut again, &forward).expect("a diff applies to its source");
            assert_eq!(again, after);
        }
    }
});
