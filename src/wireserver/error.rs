//! Every way a WireServer or Host GA Plugin request can fail, and the exact answer: the one
//! place that turns a failure into a response (wireserver.md §9.1, §5.3, §6.7).
//!
//! The real WireServer's error bodies are unknown (§10); clients act on the status alone, so
//! every error here has an empty body. What each status makes the clients do is why it was
//! picked: waagent gives up on a health report at once on most 4xx and retries 5xx for
//! minutes (§5.3), so a client mistake is a 4xx and a failed commit a 503 (retried, never
//! acknowledged).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// WireServer bodies are always complete in memory.
pub type Body = Full<Bytes>;

/// A request that cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum WireError {
    /// No such path, a container that is not the caller's, or an API the emulated host does
    /// not offer (`/vmSettings`: "not supported", §6.1).
    #[error("not found")]
    NotFound,
    /// A known path with a `comp` (or `type`) it does not have (§9.1, "anything else").
    #[error("unknown comp or type")]
    UnknownComp,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// A health report that is not one (§5.1, §5.2 give the only shapes).
    #[error("malformed health report")]
    BadReport,
    /// A status upload whose wrapper is not HGAP's JSON (§6.1).
    #[error("malformed status upload")]
    BadStatus,
    #[error("request body too large")]
    TooLarge,
    /// The body did not arrive in time; the connection is closed after the answer.
    #[error("request body timed out")]
    BodyTimeout,
    /// The VM sent health reports faster than they are recorded (waagent waits 1 s, §5.3).
    #[error("too many health reports")]
    Throttled,
    /// The store could not record a report; the guest retries.
    #[error("service unavailable")]
    Unavailable,
}

impl WireError {
    pub(super) fn status(self) -> StatusCode {
        match self {
            WireError::NotFound => StatusCode::NOT_FOUND,
            WireError::UnknownComp | WireError::BadReport | WireError::BadStatus => {
                StatusCode::BAD_REQUEST
            }
            WireError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            WireError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WireError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            WireError::Throttled => StatusCode::TOO_MANY_REQUESTS,
            WireError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The answer: the status, an empty body, and the headers the status calls for.
    pub(super) fn into_response(self) -> Response<Body> {
        let mut response = empty(self.status());
        let headers = response.headers_mut();
        match self {
            WireError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            WireError::BodyTimeout => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            WireError::Throttled => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// A response with `status` and no body ("The official WireServer 200 response is currently
/// 0 bytes long", §5.2).
pub(super) fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// A response with `status`, `content_type` and `body`.
pub(super) fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// XML documents (§3 [UNCERTAIN exact header]).
pub(super) const CONTENT_TYPE_XML: &str = "text/xml; charset=utf-8";
pub(super) const CONTENT_TYPE_JSON: &str = "application/json; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_an_empty_answer_with_its_status() {
        for (error, status) in [
            (WireError::NotFound, 404),
            (WireError::UnknownComp, 400),
            (WireError::BadReport, 400),
            (WireError::MethodNotAllowed { allow: "GET" }, 405),
            (WireError::TooLarge, 413),
            (WireError::BodyTimeout, 408),
            (WireError::Throttled, 429),
            (WireError::Unavailable, 503),
        ] {
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status, "{error:?}");
            assert!(response.headers().get(header::CONTENT_TYPE).is_none());
        }
        let response = WireError::MethodNotAllowed { allow: "POST" }.into_response();
        assert_eq!(response.headers()[header::ALLOW], "POST");
    }
}
