//! Arbitrary JSON Patch documents against a node-like document: applying must never
//! panic, only add/replace/remove may succeed, and the size bound measures truly.
#![no_main]

#[path = "../../src/api/patch.rs"]
#[allow(dead_code)]
mod patch;

use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(ops) = serde_json::from_slice::<Vec<patch::Operation>>(data) else {
        return;
    };
    let mut doc = json!({
        "name": "n", "driver_info": {"ipmi_password": "p", "list": [1, {"a": 2}]},
        "extra": {}, "properties": {"cpus": 2}, "instance_info": {}
    });
    match patch::apply(&mut doc, &ops) {
        Ok(()) => {
            assert!(ops
                .iter()
                .all(|o| matches!(o.op.as_str(), "add" | "replace" | "remove")));
            assert!(ops.iter().all(|o| o.from.is_none()));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let _ = patch::check_size(&doc, "node");
    assert_eq!(
        patch::json_len(&doc),
        serde_json::to_vec(&doc).unwrap().len()
    );
});
