//! Issue 14: what schemathesis (scripts/test-schema.sh) and the probing around it found in the
//! control API, each pinned here: answers as src/control/openapi.json documents them, and a
//! 4xx, never a 500, for values no schema-valid client should be refused or crash the server
//! with. Also the parameters the schemathesis run pins (the long polls' waits).

use serde_json::{Value, json};

use crate::support::{Reply, TestConfig, TestServer, Vms};

/// The demo VM (single mode, empty store): every test here has one VM to name.
const DEMO: &str = "azimds-demo";

async fn start() -> TestServer {
    TestServer::start(TestConfig::default()).await
}

async fn call(server: &TestServer, method: &str, path: &str, body: Option<&Value>) -> Reply {
    server.control.call(method, path, body, &[]).await
}

/// A documented client error: its status, and the `{"error":{"code","message"}}` body.
fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// A member given as null is as if left out (the entry is kept as written): the list shows a
/// VM with `"callers": null` as calling from nowhere, `[]`, as the document's VmSummary says.
#[tokio::test]
async fn a_vm_written_with_null_callers_is_listed_with_no_callers() {
    let server = TestServer::start(TestConfig {
        vms: Vms::Empty,
        ..TestConfig::default()
    })
    .await;
    let entry = json!({"callers": null, "instance": {"compute": {"name": "a"}}});
    let put = call(&server, "PUT", "/v1/vms/a", Some(&entry)).await;
    assert_eq!(put.status, 201, "{}", put.text());
    let listed = call(&server, "GET", "/v1/vms", None).await.json();
    assert_eq!(listed["vms"][0]["id"], "a");
    assert_eq!(listed["vms"][0]["callers"], json!([]), "{listed}");
}

/// Numbers the request's types allow but no event can hold: a notice or stay past what time
/// can add (it panicked: a 500, and a stay that large then failed every later clock move), and
/// a NotBefore before 1970 (the store could not write it: a 500). Each is a 422 naming the
/// member, and the engine goes on.
#[tokio::test]
async fn event_times_out_of_range_are_refused_and_the_engine_goes_on() {
    let server = start().await;
    for (member, value) in [
        ("noticeSeconds", json!(u64::MAX)),
        ("completeAfterSeconds", json!(u64::MAX)),
        ("durationSeconds", json!(i64::MAX)),
        ("noticeSeconds", json!(365 * 24 * 3600 + 1)),
        ("notBefore", json!("1969-12-31T23:59:59Z")),
        ("notBefore", json!("Mon, 01 Jan 1900 00:00:00 GMT")),
    ] {
        let mut request = json!({"type": "Reboot", "vms": [DEMO]});
        request[member] = value.clone();
        let reply = call(&server, "POST", "/v1/events", Some(&request)).await;
        assert_error(&reply, 422, "invalid");
        assert_eq!(
            reply.json()["error"]["problems"][0]["path"],
            member,
            "{member} = {value}: {}",
            reply.text()
        );
    }
    // A year is allowed, and the clock still moves (and applies what became due).
    let request = json!({"type": "Reboot", "vms": [DEMO], "noticeSeconds": 60,
                         "completeAfterSeconds": 365 * 24 * 3600});
    let event = call(&server, "POST", "/v1/events", Some(&request)).await;
    assert_eq!(event.status, 201, "{}", event.text());
    let id = event.json()["id"].as_str().unwrap().to_string();
    let started = call(&server, "POST", &format!("/v1/events/{id}/start"), None).await;
    assert_eq!(started.status, 200, "{}", started.text());
    let moved = call(
        &server,
        "POST",
        "/v1/clock/advance",
        Some(&json!({"by": "2m"})),
    )
    .await;
    assert_eq!(moved.status, 200, "{}", moved.text());
    assert_eq!(moved.json()["manual"], true);
}

/// A manual clock stops a year short of 9999-12-31 (the last time RFC 3339 and RFC 1123 can
/// write): past it, `now` came back as "" and an event's NotBefore could not be shown.
#[tokio::test]
async fn the_clock_cannot_be_moved_past_the_year_9999() {
    let server = start().await;
    let past = call(
        &server,
        "POST",
        "/v1/clock/set",
        Some(&json!({"to": "9999-06-01T00:00:00Z"})),
    )
    .await;
    assert_error(&past, 422, "invalid");
    assert_eq!(past.json()["error"]["problems"][0]["path"], "to");
    let last = call(
        &server,
        "POST",
        "/v1/clock/set",
        Some(&json!({"to": "9998-12-31T12:00:00Z"})),
    )
    .await;
    assert_eq!(last.status, 200, "{}", last.text());
    assert_eq!(last.json()["now"], "9998-12-31T12:00:00Z");
    let over = call(
        &server,
        "POST",
        "/v1/clock/advance",
        Some(&json!({"by": "1d"})),
    )
    .await;
    assert_error(&over, 422, "invalid");
    assert_eq!(over.json()["error"]["problems"][0]["path"], "by");
    let now = call(&server, "GET", "/v1/clock", None).await.json();
    assert_eq!(
        now["now"], "9998-12-31T12:00:00Z",
        "a refused move moves nothing"
    );
}

/// A VM's events document and its wait answer 404 for a VM that is not served, like the VM's
/// other routes (they answered an empty document, and waited for a fetch that cannot come).
#[tokio::test]
async fn the_events_of_an_unknown_or_deleted_vm_are_404() {
    let server = start().await;
    for path in [
        "/v1/vms/nobody/events",
        "/v1/vms/nobody/events/wait?incarnation=1&timeout=5",
    ] {
        assert_error(&call(&server, "GET", path, None).await, 404, "not_found");
    }
    let document = call(&server, "GET", &format!("/v1/vms/{DEMO}/events"), None).await;
    assert_eq!(document.status, 200, "{}", document.text());
    assert_eq!(document.json()["document"]["Events"], json!([]));
    let deleted = call(&server, "DELETE", &format!("/v1/vms/{DEMO}"), None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    for route in ["events", "provisioning", "journal", "ovf-env"] {
        let reply = call(&server, "GET", &format!("/v1/vms/{DEMO}/{route}"), None).await;
        assert_error(&reply, 404, "not_found");
    }
}

/// The long polls' numbers, which the schemathesis run pins to 1 s: what is not a whole
/// number of seconds is a 400 with the error body, and more than the longest wait waits
/// that long (here the condition holds at once, so nothing waits).
#[tokio::test]
async fn long_poll_parameters_that_are_not_numbers_are_400() {
    let server = start().await;
    let events = format!("/v1/vms/{DEMO}/events/wait");
    let provisioning = format!("/v1/vms/{DEMO}/provisioning/wait");
    let journal = format!("/v1/vms/{DEMO}/journal");
    for path in [
        format!("{events}?incarnation=0&timeout=-1"),
        format!("{events}?incarnation=0&timeout=soon"),
        format!("{events}?incarnation=x"),
        format!("{events}?timeout=1"),
        format!("{provisioning}?timeout=1.5"),
        format!("{provisioning}?timeout=99999999999999999999"),
        format!("{journal}?after=0&wait=-3"),
        format!("{journal}?limit=many"),
        format!("{journal}?tail=3"),
    ] {
        assert_error(&call(&server, "GET", &path, None).await, 400, "bad_request");
    }
    let fetched = call(
        &server,
        "GET",
        &format!("{events}?incarnation=0&timeout=100000"),
        None,
    )
    .await;
    assert_eq!(
        (fetched.status, fetched.json()["fetched"].as_u64()),
        (200, Some(0))
    );
}
