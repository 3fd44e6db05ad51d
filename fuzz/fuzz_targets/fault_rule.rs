//! Fault rules (issue 10): the control API's `POST /v1/faults` body (the same `FaultSpec` the
//! config file's `[[faults]]` and the CLI's flags fill in), checked into a rule by
//! `FaultBook::add` (presets expanded, `Rule::check`), then applied by a VM's view of the book
//! to a request, as the guest plane does before routing.
//!
//! Input: `spec 0xFF METHOD SP path[?query]` (the request part optional: a token request with
//! a selector is used without it).
//!
//! Asserted, beyond not panicking: a rule that checks answers only with one of `STATUSES`, and
//! the answer it injects has that status (spec §1.10, §5.4); a rule scoped to one VM never
//! takes another VM's request.
#![no_main]

use azimds::faults::{Action, FaultBook, FaultSpec, STATUSES, VmFaults};
use azimds::fuzzing::fixed_now;
use azimds::guest::GuestError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (spec, request) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], std::str::from_utf8(&data[at + 1..]).ok()),
        None => (
            data,
            Some("GET /metadata/identity/oauth2/token?resource=x&client_id=a"),
        ),
    };
    let Ok(spec) = serde_json::from_slice::<FaultSpec>(spec) else {
        return;
    };
    let book = FaultBook::default();
    let Ok(rule) = book.add(spec, fixed_now()) else {
        return;
    };
    if let Action::Status(status) = rule.action {
        assert!(STATUSES.contains(&status), "rule answers {status}");
        for identity in [false, true] {
            assert_eq!(
                GuestError::injected(status, identity).status().as_u16(),
                status
            );
        }
    }
    let Some((method, target)) = request.and_then(|r| r.split_once(' ')) else {
        return;
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    for vm in ["fuzz-vm", "other-vm"] {
        let view = VmFaults::default();
        let taken = view.take(&book, vm, fixed_now, &method, path, query);
        if taken.is_some() {
            assert!(
                rule.vm.as_deref().is_none_or(|only| only == vm),
                "rule for {:?} took {vm}'s request",
                rule.vm
            );
            assert!(
                rule.covers(&method, path, query),
                "a rule took a request it does not cover"
            );
        }
    }
});
