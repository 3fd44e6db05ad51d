//! The control API's VM entry body (`PUT /v1/vms/{id}`, and each entry of a definitions file):
//! read by the control API's JSON reader (`definition::json_from_slice`, every key once),
//! checked by `definition::vm_from_json`, then kept as the registry keeps it and served as the
//! guest plane serves it.
//!
//! Asserted, beyond not panicking: a VM that checks survives the store (its written entry
//! checks to the same VM; its checked form decodes to the same VM), and its instance document
//! renders as JSON at the newest api-version and one more picked by the input, with and
//! without `extended`, and indexes for sub-paths and `format=text`.
#![no_main]

use azimds::definition::{self, checked, json_from_slice};
use azimds::metadata::version::ApiVersion;
use azimds::snapshot::{CallerMode, Snapshot};
use azimds::throttle::RateLimit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = json_from_slice(data) else {
        return;
    };
    let Ok(vm) = definition::vm_from_json(&entry, "fuzz-vm") else {
        return;
    };
    let written: serde_json::Value =
        serde_json::from_slice(&definition::written_entry(entry, &vm.id))
            .expect("written entries are JSON");
    assert_eq!(
        definition::vm_from_json(&written, &vm.id).as_ref(),
        Ok(&vm),
        "the written entry checks to another VM"
    );
    let decoded = checked::decode(&vm.id, &checked::encode(&vm));
    assert_eq!(
        decoded.as_ref(),
        Ok(&vm),
        "the checked form decodes to another VM"
    );
    let Ok(snapshot) = Snapshot::empty(CallerMode::Single, RateLimit(0)).with_vm(vm) else {
        return;
    };
    let served = snapshot.vms().next().expect("the VM just added");
    let other = ApiVersion::all()
        .nth(data.len() % ApiVersion::COUNT)
        .expect("in range");
    for version in [ApiVersion::NEWEST, other] {
        for extended in [false, true] {
            let document = served.document(version, extended);
            if let Err(error) = serde_json::from_slice::<serde_json::Value>(&document) {
                panic!(
                    "the {version:?} document is not JSON ({error}): {:?}",
                    String::from_utf8_lossy(&document)
                );
            }
        }
        let indexed = served.indexed(version, false);
        let _ = indexed.text(indexed.root());
    }
});
