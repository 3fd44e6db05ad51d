//! The control API's schedule request (`POST /v1/events`, `ScheduleRequest`), checked against
//! the demo VM as `Maintenance::schedule` checks it before writing.
//!
//! An event that checks is then run as the events engine runs it: scheduled into a book,
//! approved by the guest, its deadlines computed, and time moved a week on.
//!
//! Asserted, beyond not panicking: an event that checks targets only VMs that exist, and its
//! guest document (what `/metadata/scheduledevents` serves, every events api-version) is JSON
//! listing it.
#![no_main]

use std::time::Duration;

use azimds::events::{self, EventBook, EventsVersion, Input};
use azimds::fuzzing::{demo_vm, fixed_now, schedule_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(Ok(event)) = schedule_request(data) else {
        return;
    };
    assert!(!event.targets.is_empty() && event.targets.iter().all(|t| *t == demo_vm().id));
    for version in EventsVersion::all() {
        let document = events::render(1, &[&event], version);
        let parsed: serde_json::Value = match serde_json::from_slice(&document) {
            Ok(parsed) => parsed,
            Err(error) => panic!(
                "the events document is not JSON ({error}): {:?}",
                String::from_utf8_lossy(&document)
            ),
        };
        let listed = parsed["Events"].as_array().expect("Events is an array");
        assert!(
            listed.iter().all(|e| e["EventId"] == event.id.as_str()),
            "{parsed}"
        );
    }
    let now = fixed_now();
    let mut book = EventBook::default();
    book.schedule(event.clone(), now)
        .expect("a new event in an empty book");
    let _ = book.next_deadline();
    let _ = book.apply(&event.id, Input::Approve, now);
    let _ = book.next_deadline();
    let _ = book.advance(now + Duration::from_secs(7 * 86_400));
});
