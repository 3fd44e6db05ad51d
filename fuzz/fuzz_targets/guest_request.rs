//! The guest request path end to end: an HTTP/1.1 request (method, target with path and
//! query, headers, body) as hyper would deliver it, answered by `guest::respond` on the demo
//! VM's in-memory state: caller, fault rules (none set), routing, method, throttle, header and
//! query rules, the endpoint, the error bodies. Covers the token query and the
//! scheduled-events POST body on their real paths too.
//!
//! Input: the request's bytes as a client sends them (`GET /metadata/instance?… HTTP/1.1`,
//! headers, an empty line, the body). Inputs hyper's parser (httparse) refuses are skipped.
//!
//! Asserted, beyond not panicking: no 5xx (with no fault rule and a healthy store, the spec
//! has no 5xx for any request, §1.10); every answer carries `Server: IMDS/…` and an
//! `x-ms-request-id` (§1.9); every error body is compact JSON with an `error` member (§1.10,
//! §5.3, §8.4); every 200 answer that says JSON and has a body is JSON
//! (an approval's has none, §6.4).
#![no_main]

use std::sync::LazyLock;

use azimds::fuzzing::GuestPlane;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

static PLANE: LazyLock<GuestPlane> = LazyLock::new(GuestPlane::demo);

fuzz_target!(|data: &[u8]| {
    let Some(request) = http_request(data) else {
        return;
    };
    let answer = PLANE.respond(request);
    let status = answer.status;
    let fail = |why: &str| {
        panic!(
            "{why}: {status} {:?} for {:?}",
            String::from_utf8_lossy(&answer.body),
            String::from_utf8_lossy(data)
        )
    };
    if status.is_server_error() {
        fail("a 5xx answer");
    }
    let server = answer
        .headers
        .get(header::SERVER)
        .map(HeaderValue::as_bytes);
    if !server.is_some_and(|s| s.starts_with(b"IMDS/"))
        || !answer.headers.contains_key("x-ms-request-id")
    {
        fail("an answer without IMDS's Server or x-ms-request-id header");
    }
    let json = answer
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if status.is_client_error() {
        let body: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
        if !json || !body.is_some_and(|b| b.get("error").is_some_and(serde_json::Value::is_string))
        {
            fail("an error answer whose body is not {\"error\":…} JSON");
        }
    } else if status == 200
        && json
        && !answer.body.is_empty()
        && serde_json::from_slice::<serde_json::Value>(&answer.body).is_err()
    {
        // An approval's 200 has no body (§6.4).
        fail("a 200 JSON answer that is not JSON");
    }
});

/// The request hyper's HTTP/1 server would hand to the guest service for `data`, if any.
fn http_request(data: &[u8]) -> Option<Request<Full<Bytes>>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let head = match parsed.parse(data) {
        Ok(httparse::Status::Complete(length)) => length,
        _ => return None,
    };
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    let uri = Uri::try_from(parsed.path?).ok()?;
    let mut request = Request::builder().method(method).uri(uri);
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        request = request.header(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    request
        .body(Full::new(Bytes::copy_from_slice(&data[head..])))
        .ok()
}
