//! The definitions-file parser (`definition::parse`), JSON and YAML: the `--vms` file and the
//! `definitions` of the testing API. The first byte picks the syntax (0: JSON, 1: YAML, else
//! what the file name would not tell: JSON, then YAML); the rest is the file's text.
//!
//! Asserted, beyond not panicking: each VM read is what the store keeps of it, so it survives
//! a restart unchanged: its entry as written, checked again, gives the same VM, and its
//! checked form decodes to the same VM (`definition::checked`).
#![no_main]

use azimds::definition::{self, Syntax, checked};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let syntax = match selector {
        0 => Some(Syntax::Json),
        1 => Some(Syntax::Yaml),
        _ => None,
    };
    let Ok(definitions) = definition::parse(text, syntax, "fuzz input") else {
        return;
    };
    for defined in &definitions.vms {
        let vm = &defined.vm;
        let entry: serde_json::Value =
            serde_json::from_slice(&defined.entry).expect("the entry as written is JSON");
        let again = definition::vm_from_json(&entry, &vm.id);
        assert_eq!(
            again.as_ref(),
            Ok(vm),
            "the written entry checks to another VM"
        );
        let decoded = checked::decode(&vm.id, &checked::encode(vm));
        assert_eq!(
            decoded.as_ref(),
            Ok(vm),
            "the checked form decodes to another VM"
        );
    }
});
