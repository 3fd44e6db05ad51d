//! RFC 7396 merge patch (`registry::merge_patch`), as `PATCH /v1/vms/{id}` applies it: the
//! body is read by the control API's JSON reader (`definition::json_from_slice`), merged into
//! the stored entry, and the result checked as a VM entry (`vm_from_json`).
//!
//! Input: `target 0xFF patch` (two JSON texts; 0xFF never occurs in UTF-8), or a patch alone,
//! applied to the demo VM's entry.
//!
//! Asserted, beyond not panicking, RFC 7396's properties: a patch that is not an object
//! replaces the target; applying a patch twice gives what applying it once gave; members the
//! patch does not name keep their values; a member the patch sets to `null` is gone.
#![no_main]

use std::sync::LazyLock;

use azimds::definition::{self, json_from_slice};
use azimds::registry::merge_patch;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static DEMO_ENTRY: LazyLock<Value> = LazyLock::new(|| {
    let definitions = definition::demo();
    serde_json::from_slice(&definitions.vms[0].entry).expect("the demo entry is JSON")
});

fuzz_target!(|data: &[u8]| {
    let (target, patch) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => match json_from_slice(&data[..at]) {
            Ok(target) => (target, &data[at + 1..]),
            Err(_) => return,
        },
        None => (DEMO_ENTRY.clone(), data),
    };
    let Ok(patch) = json_from_slice(patch) else {
        return;
    };
    let mut patched = target.clone();
    merge_patch(&mut patched, &patch);
    let mut twice = patched.clone();
    merge_patch(&mut twice, &patch);
    assert_eq!(
        twice, patched,
        "a merge patch applied twice changed the result again"
    );
    match (&patch, &target) {
        (Value::Object(members), Value::Object(before)) => {
            let after = patched
                .as_object()
                .expect("an object patch gives an object");
            for (key, value) in before {
                if !members.contains_key(key) {
                    assert_eq!(
                        after.get(key),
                        Some(value),
                        "member {key:?} not in the patch changed"
                    );
                }
            }
            for (key, value) in members {
                assert_eq!(value.is_null(), !after.contains_key(key), "member {key:?}");
            }
        }
        (Value::Object(_), _) => {}
        (replacement, _) => assert_eq!(&patched, replacement, "a non-object patch must replace"),
    }
    // What the registry does next with a patched entry.
    let _ = definition::vm_from_json(&patched, "fuzz-vm");
});
