//! The scheduled-events POST body (§6.4), `{"StartRequests":[{"EventId":"…"},…]}`, as the
//! guest plane reads it (`guest::scheduled::start_requests`). The guest_request target sends
//! such bodies through the whole POST path as well.
//!
//! Asserted, beyond not panicking: a body accepted names exactly one id per StartRequest.
#![no_main]

use azimds::fuzzing::start_requests;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(ids) = start_requests(data) else {
        return;
    };
    let value: serde_json::Value = serde_json::from_slice(data).expect("an accepted body is JSON");
    let requests = value["StartRequests"]
        .as_array()
        .expect("StartRequests is an array");
    assert_eq!(ids.len(), requests.len());
    for (id, request) in ids.iter().zip(requests) {
        assert_eq!(request["EventId"].as_str(), Some(id.as_str()));
    }
});
