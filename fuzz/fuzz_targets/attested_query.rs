//! The attested document's query (§7.1): the api-version gate (§2.2), duplicates, `format`,
//! and `nonce` (1 to 32 ASCII letters and digits), then the JSON that is signed for the demo
//! VM (`attested::signed_content`, §7.3), as `/metadata/attested/document` does before its
//! signature (`azimds::fuzzing::attested_query`).
//!
//! Asserted, beyond not panicking: a request is refused with a 4xx and a JSON `error` body,
//! or its signed content is a JSON object whose `nonce` is 1 to 32 letters and digits, or, when none was asked for, the time made up as `yyyyMMdd-HHmmss`.
#![no_main]

use std::sync::LazyLock;

use azimds::attested::InstanceFacts;
use azimds::fuzzing::{attested_query, demo_vm, fixed_now};
use libfuzzer_sys::fuzz_target;

static FACTS: LazyLock<InstanceFacts<'static>> = LazyLock::new(|| {
    InstanceFacts::parse(demo_vm().instance.compact_json()).expect("the demo VM's facts")
});

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Some(checked) = attested_query(query, &FACTS.attested(), fixed_now()) else {
        return;
    };
    match checked {
        Ok(content) => {
            let signed: serde_json::Value =
                serde_json::from_slice(&content).expect("signed content is JSON");
            let nonce = signed["nonce"].as_str().expect("a nonce");
            let made_up = nonce.len() == 15 && nonce.as_bytes()[8] == b'-';
            let asked =
                (1..=32).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_alphanumeric());
            assert!(made_up || asked, "nonce {nonce:?}");
        }
        Err(error) => {
            assert!(
                error.status().is_client_error(),
                "{error:?} answers {}",
                error.status()
            );
            let body: serde_json::Value =
                serde_json::from_slice(&error.body()).expect("error bodies are JSON");
            assert!(body["error"].is_string(), "{body}");
        }
    }
});
