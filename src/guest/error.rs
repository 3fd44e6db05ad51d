//! Every way a guest request can fail, and the exact status, headers and body Azure answers
//! with (spec §1.4, §1.10, §12.1). The one place that turns a guest error into bytes.
//!
//! Where the spec marks a body [UNCERTAIN], the text here is our pick; each lives in exactly
//! one string below so it is easy to change.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::guest::response::{self, Body, CONTENT_TYPE_JSON};
use crate::metadata::loadbalancer;
use crate::metadata::version::ApiVersion;

/// A guest request that cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// Unknown path, unknown element, or a field newer than the requested version.
    #[error("not found")]
    NotFound,
    /// The path exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("X-Forwarded-For present")]
    ForwardedFor,
    #[error("Metadata header missing or not true")]
    MissingMetadataHeader,
    #[error("api-version missing or unsupported")]
    ApiVersion,
    #[error("duplicate query parameter")]
    DuplicateParameter,
    #[error("too many query parameters")]
    TooManyParameters,
    #[error("format is neither json nor text")]
    BadFormat,
    #[error("extended is not true or false")]
    BadExtended,
    #[error("leaf requested without format=text")]
    LeafRequiresText,
    /// `format=text` on an endpoint that only has JSON (attested, §1.7).
    #[error("format is not json")]
    JsonOnly,
    /// An attested `nonce` that is not 1 to 32 letters and digits (§7.1).
    #[error("the nonce is not 1 to 32 letters and digits")]
    BadNonce,
    /// `/metadata/reprovisiondata` before an operator assigned the VM (§9.2).
    #[error("no reprovisioning data assigned")]
    NotAssigned,
    #[error("malformed percent-encoding")]
    BadEncoding,
    #[error("rate limit exceeded")]
    Throttled,
    /// Scheduled events take their own api-version list (§6.1).
    #[error("scheduled-events api-version missing or unsupported")]
    EventsApiVersion,
    #[error("the StartRequests body is malformed")]
    BadStartRequests,
    #[error("no such scheduled event for this VM")]
    UnknownEvent,
    #[error("internal error")]
    Internal,
    /// The store cannot record a change right now (a full disk, say); the guest may retry.
    #[error("service unavailable")]
    Unavailable,
    /// The request body did not arrive in time; the connection is closed after the answer.
    #[error("request body timed out")]
    BodyTimeout,
    /// A failure on `/metadata/identity/*`, answered in the OAuth style (spec §5.3).
    #[error("identity: {0}")]
    Identity(IdentityError),
    /// Injected by a fault rule: IMDS is restarting during an update (§1.11, §5.5).
    #[error("gone (injected)")]
    Gone,
    /// Injected by a fault rule: a 400 with no more specific cause.
    #[error("bad request (injected)")]
    BadRequest,
}

/// Failures of the identity endpoints (spec §5.3, §5.4): `{"error":…,"error_description":…}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("Metadata header missing or not true")]
    MissingMetadataHeader,
    #[error("X-Forwarded-For present")]
    ForwardedFor,
    #[error("resource missing")]
    MissingResource,
    #[error("no identity, or none matching the selector")]
    IdentityNotFound,
    #[error("several user-assigned identities and no selector")]
    MultipleUserAssigned,
    #[error("more than one of client_id, object_id, msi_res_id")]
    ConflictingSelectors,
    #[error("bypass_cache is not true or false")]
    BadBypassCache,
    #[error("duplicate query parameter")]
    DuplicateParameter,
    #[error("too many query parameters")]
    TooManyParameters,
    #[error("malformed percent-encoding")]
    BadEncoding,
    #[error("identity rate or concurrency limit exceeded")]
    Throttled,
    #[error("token could not be issued")]
    ServerError,
    /// Injected: the token endpoint's transient 404 (§1.10, §4.3).
    #[error("IMDS endpoint is updating (404, injected)")]
    Updating,
    /// Injected: the token endpoint's transient 410 (§4.3).
    #[error("IMDS endpoint is updating (410, injected)")]
    Gone,
    /// Injected: Entra ID cannot issue tokens (§4.3, §5.4).
    #[error("Entra ID failed (injected)")]
    EntraFailure,
    /// Injected: 503.
    #[error("service unavailable (injected)")]
    Unavailable,
}

// [DOC][REAL] §1.10, §12.1: 63 bytes.
const MISSING_METADATA_HEADER: &str =
    r#"{"error":"Bad request. Required metadata header not specified"}"#;
// [UNCERTAIN] §1.7: Swagger's placeholder.
const NOT_FOUND: &str = r#"{"error":"Not found"}"#;
// [UNCERTAIN] §1.6: Swagger's placeholder family.
const METHOD_NOT_ALLOWED: &str = r#"{"error":"Method not allowed"}"#;
// [UNCERTAIN] §1.3: the docs say "rejected"; the body is our pick in the "Bad request." family.
const FORWARDED_FOR: &str =
    r#"{"error":"Bad request. Requests with X-Forwarded-For header are not allowed"}"#;
// [UNCERTAIN] §1.5.
const DUPLICATE_PARAMETER: &str =
    r#"{"error":"Bad request. Duplicate query parameters are not allowed"}"#;
const TOO_MANY_PARAMETERS: &str = r#"{"error":"Bad request. Too many query parameters"}"#;
// [INFERRED] §1.5.
const BAD_FORMAT: &str =
    r#"{"error":"Bad request. Invalid format parameter; supported values are json and text"}"#;
const BAD_EXTENDED: &str =
    r#"{"error":"Bad request. Invalid extended parameter; supported values are true and false"}"#;
// [UNCERTAIN] §1.7: the docs name the condition, not the text.
const LEAF_REQUIRES_TEXT: &str =
    r#"{"error":"Bad request. Querying a leaf node requires format=text"}"#;
// [UNCERTAIN] §1.7: attested documents are JSON only; the text is ours.
const JSON_ONLY: &str = r#"{"error":"Bad request. This endpoint supports only format=json"}"#;
// [UNCERTAIN] §7.1: the validation text is unknown; the rule is the Swagger's.
const BAD_NONCE: &str =
    r#"{"error":"Bad request. The nonce must be 1 to 32 ASCII letters and digits"}"#;
// [UNCERTAIN] §9.2: the 404 body is unknown; cloud-init only reads the status and polls on.
const NOT_ASSIGNED: &str =
    r#"{"error":"Not found. This VM has not been assigned reprovisioning data yet"}"#;
const BAD_ENCODING: &str =
    r#"{"error":"Bad request. Malformed percent-encoding in the request URL"}"#;
// [UNCERTAIN] §1.10: Swagger's placeholder; no Retry-After is observed on real IMDS.
const THROTTLED: &str = r#"{"error":"Too many requests"}"#;

// Identity endpoints (§5.4, §12.1). [REAL] with the Content-Length captured from Azure: 88 bytes.
const ID_MISSING_METADATA_HEADER: &str =
    r#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#;
// [REAL] user capture and Azure.Identity .NET's mock.
const ID_MISSING_RESOURCE: &str = r#"{"error":"invalid_request","error_description":"Required query variable 'resource' is missing"}"#;
// [REAL] 68 bytes.
const ID_NOT_FOUND: &str =
    r#"{"error":"invalid_request","error_description":"Identity not found"}"#;
// [REAL] 168 bytes.
const ID_MULTIPLE_USER_ASSIGNED: &str = r#"{"error":"invalid_request","error_description":"Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"}"#;
// [UNCERTAIN] §5.4 recommends invalid_request with a descriptive text; the texts are ours.
const ID_FORWARDED_FOR: &str = r#"{"error":"invalid_request","error_description":"Requests with X-Forwarded-For header are not allowed"}"#;
const ID_CONFLICTING_SELECTORS: &str = r#"{"error":"invalid_request","error_description":"Only one of client_id, object_id and msi_res_id may be specified"}"#;
const ID_BAD_BYPASS_CACHE: &str = r#"{"error":"invalid_request","error_description":"Invalid bypass_cache value; the supported value is true"}"#;
const ID_DUPLICATE_PARAMETER: &str = r#"{"error":"invalid_request","error_description":"Duplicate query parameters are not allowed"}"#;
const ID_TOO_MANY_PARAMETERS: &str =
    r#"{"error":"invalid_request","error_description":"Too many query parameters"}"#;
const ID_BAD_ENCODING: &str = r#"{"error":"invalid_request","error_description":"Malformed percent-encoding in the request URL"}"#;
// [UNCERTAIN] Swagger's error code; the text is the docs' retry table's wording.
const ID_THROTTLED: &str =
    r#"{"error":"too_many_requests","error_description":"IMDS Throttling limit exceeded"}"#;
// [UNCERTAIN] Swagger's error code.
const ID_SERVER_ERROR: &str =
    r#"{"error":"server_error","error_description":"Failed to issue a token"}"#;

// Injected answers (fault rules, issue 10). [DOC] §1.10, §4.3 name the conditions; the bodies
// are not captured, so these are ours, in the families above.
// [UNCERTAIN] Swagger's placeholder family, like NOT_FOUND and THROTTLED.
const GONE: &str = r#"{"error":"Gone"}"#;
const BAD_REQUEST: &str = r#"{"error":"Bad request"}"#;
// [DOC] "IMDS endpoint is updating" is the docs' wording of the transient 404; `not_found` and
// `service_unavailable` are Swagger's error codes.
const ID_UPDATING: &str =
    r#"{"error":"not_found","error_description":"IMDS endpoint is updating"}"#;
const ID_GONE: &str =
    r#"{"error":"service_unavailable","error_description":"IMDS endpoint is updating"}"#;
// [DOC] the docs' error table: 500, `unknown`, "Failed to retrieve token from the Active
// directory".
const ID_ENTRA_FAILURE: &str = r#"{"error":"unknown","error_description":"Failed to retrieve token from the Active directory"}"#;
const ID_UNAVAILABLE: &str = r#"{"error":"service_unavailable","error_description":"Internal service unavailable. Please retry later."}"#;

// [UNCERTAIN] §6.4: 400 "when the header or payload is malformed"; the text is our pick.
const BAD_START_REQUESTS: &str =
    r#"{"error":"Bad request. The body must be {\"StartRequests\":[{\"EventId\":\"<id>\"}]}"}"#;
// [UNCERTAIN] §6.4: an unknown id is undocumented; 400 as the spec recommends.
const UNKNOWN_EVENT: &str = r#"{"error":"Bad request. Unknown EventId"}"#;
// The azure-init test server's wording (§1.10); only a failed task reaches it.
const INTERNAL: &str = r#"{"error":"Internal server error."}"#;
// [DOC] §8.4's 503 text, wrapped like the other errors.
const UNAVAILABLE: &str = r#"{"error":"Internal service unavailable. Please retry later."}"#;
// [UNCERTAIN] Azure's behaviour for a stalled body is unknown; 408 and a close are HTTP's.
const BODY_TIMEOUT: &str = r#"{"error":"Request timeout"}"#;

/// The api-version error of scheduled events: the same wording, their own newest versions.
static EVENTS_API_VERSION: LazyLock<Bytes> = LazyLock::new(|| {
    let body = serde_json::json!({
        "error": "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds",
        "newest-versions": crate::events::EventsVersion::newest_three(),
    });
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value serializes"))
});

/// [DOC][REAL] §1.4: the current wording, `newest-versions` computed from our version table.
static API_VERSION: LazyLock<Bytes> = LazyLock::new(|| {
    let newest: Vec<&str> = ApiVersion::newest_three()
        .iter()
        .map(|v| v.as_str())
        .collect();
    let body = serde_json::json!({
        "error": "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds",
        "newest-versions": newest,
    });
    // serde_json's map is sorted: "error" < "newest-versions", the order Azure sends.
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value serializes"))
});

/// Failures of `/metadata/loadbalancer`, which has its own catalogue (spec §8.4): every
/// message is the troubleshooting page's, wrapped as `{"error":"…"}` (§8.4: "by analogy").
/// The texts live in [`loadbalancer::messages`]; the limits they name are ours
/// ([`LB_LIMITS`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadBalancerError {
    /// A required query parameter (`api-version`) is absent.
    MissingParameter(&'static str),
    /// A parameter's value is not served (an api-version older than 2020-10-01, `format=text`).
    ValueNotAllowed {
        name: String,
        value: String,
    },
    /// A parameter the endpoint does not take, or one given twice.
    UnexpectedRequest,
    /// The VM's definition has no `loadBalancer`.
    NoLoadBalancer,
    /// A path below `/metadata/loadbalancer`.
    ApiNotFound {
        path: String,
        method: String,
    },
    MethodNotAllowed {
        path: String,
        method: String,
    },
    Throttled,
    BodyTooLong,
    ParameterKeyTooLong,
    ParameterValueTooLong,
    HeaderValueTooLong,
    /// Outages an operator set in the definition (`loadbalancer::Outage`).
    NotAvailableRightNow,
    NotCurrentlyAvailable,
    ServiceUnavailable,
}

/// The limits §8.4's length messages name; Azure's values are unknown, these are ours (a
/// GET takes no body; api-version and format are short).
#[derive(Debug)]
pub struct LoadBalancerLimits {
    pub body: usize,
    pub parameter_key: usize,
    pub parameter_value: usize,
    pub header_value: usize,
}

pub const LB_LIMITS: LoadBalancerLimits = LoadBalancerLimits {
    body: 0,
    parameter_key: 64,
    parameter_value: 256,
    header_value: 4096,
};

impl LoadBalancerError {
    pub fn status(&self) -> StatusCode {
        match self {
            LoadBalancerError::NoLoadBalancer
            | LoadBalancerError::ApiNotFound { .. }
            | LoadBalancerError::NotAvailableRightNow
            | LoadBalancerError::NotCurrentlyAvailable => StatusCode::NOT_FOUND,
            LoadBalancerError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            LoadBalancerError::Throttled => StatusCode::TOO_MANY_REQUESTS,
            LoadBalancerError::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The message, before wrapping.
    pub fn message(&self) -> String {
        use loadbalancer::messages as m;
        match self {
            LoadBalancerError::MissingParameter(name) => m::missing_parameter(name),
            LoadBalancerError::ValueNotAllowed { name, value } => {
                m::parameter_value_not_allowed(name, value)
            }
            LoadBalancerError::UnexpectedRequest => m::UNEXPECTED_REQUEST.into(),
            LoadBalancerError::NoLoadBalancer => m::NO_LOAD_BALANCER.into(),
            LoadBalancerError::ApiNotFound { path, method } => m::api_not_found(path, method),
            LoadBalancerError::MethodNotAllowed { path, method } => {
                m::method_not_allowed(path, method)
            }
            LoadBalancerError::Throttled => m::TOO_MANY_REQUESTS.into(),
            LoadBalancerError::BodyTooLong => {
                format!("{}{}", m::BODY_TOO_LONG_PREFIX, LB_LIMITS.body)
            }
            LoadBalancerError::ParameterKeyTooLong => {
                format!(
                    "{}{}",
                    m::PARAMETER_KEY_TOO_LONG_PREFIX,
                    LB_LIMITS.parameter_key
                )
            }
            LoadBalancerError::ParameterValueTooLong => format!(
                "{}{}",
                m::PARAMETER_VALUE_TOO_LONG_PREFIX,
                LB_LIMITS.parameter_value
            ),
            LoadBalancerError::HeaderValueTooLong => {
                format!(
                    "{}{}",
                    m::HEADER_VALUE_TOO_LONG_PREFIX,
                    LB_LIMITS.header_value
                )
            }
            LoadBalancerError::NotAvailableRightNow => m::NOT_AVAILABLE_RIGHT_NOW.into(),
            LoadBalancerError::NotCurrentlyAvailable => m::NOT_CURRENTLY_AVAILABLE.into(),
            LoadBalancerError::ServiceUnavailable => m::SERVICE_UNAVAILABLE.into(),
        }
    }

    /// `{"error":"<message>"}`, compact (request paths and values are JSON-escaped).
    pub fn body(&self) -> Bytes {
        let body = serde_json::json!({ "error": self.message() });
        Bytes::from(serde_json::to_vec(&body).expect("a JSON value serializes"))
    }

    pub(super) fn into_response(self) -> http::Response<Body> {
        let mut response = response::with_body(self.status(), CONTENT_TYPE_JSON, self.body());
        if let LoadBalancerError::MethodNotAllowed { .. } = self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        response
    }
}

impl From<IdentityError> for GuestError {
    fn from(error: IdentityError) -> GuestError {
        GuestError::Identity(error)
    }
}

impl GuestError {
    /// The answer a fault rule injects for `status` (one of 400, 404, 410, 429, 500, 503),
    /// in the identity endpoints' OAuth style when `identity` (spec §5.3), else the instance
    /// style. A 400 on the token endpoint is "Identity not found", the real body of the 400 a
    /// newly assigned identity gets while it propagates (§5.5).
    pub fn injected(status: u16, identity: bool) -> GuestError {
        match (status, identity) {
            (400, false) => GuestError::BadRequest,
            (404, false) => GuestError::NotFound,
            (410, false) => GuestError::Gone,
            (429, false) => GuestError::Throttled,
            (503, false) => GuestError::Unavailable,
            (400, true) => IdentityError::IdentityNotFound.into(),
            (404, true) => IdentityError::Updating.into(),
            (410, true) => IdentityError::Gone.into(),
            (429, true) => IdentityError::Throttled.into(),
            (503, true) => IdentityError::Unavailable.into(),
            (_, true) => IdentityError::EntraFailure.into(),
            (_, false) => GuestError::Internal,
        }
    }

    /// The identity-style form of a request-level failure on an identity endpoint. The
    /// api-version error keeps the general body (spec §5.4's recommendation), as do 404 and 405.
    pub(super) fn on_identity_endpoint(self) -> GuestError {
        let identity = match self {
            GuestError::MissingMetadataHeader => IdentityError::MissingMetadataHeader,
            GuestError::ForwardedFor => IdentityError::ForwardedFor,
            GuestError::DuplicateParameter => IdentityError::DuplicateParameter,
            GuestError::TooManyParameters => IdentityError::TooManyParameters,
            GuestError::BadEncoding => IdentityError::BadEncoding,
            GuestError::Throttled => IdentityError::Throttled,
            other => return other,
        };
        GuestError::Identity(identity)
    }

    pub fn status(self) -> StatusCode {
        match self {
            GuestError::NotFound | GuestError::NotAssigned => StatusCode::NOT_FOUND,
            GuestError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GuestError::ForwardedFor
            | GuestError::MissingMetadataHeader
            | GuestError::ApiVersion
            | GuestError::DuplicateParameter
            | GuestError::TooManyParameters
            | GuestError::BadFormat
            | GuestError::BadExtended
            | GuestError::LeafRequiresText
            | GuestError::JsonOnly
            | GuestError::BadNonce
            | GuestError::BadEncoding
            | GuestError::EventsApiVersion
            | GuestError::BadStartRequests
            | GuestError::UnknownEvent => StatusCode::BAD_REQUEST,
            GuestError::Throttled => StatusCode::TOO_MANY_REQUESTS,
            GuestError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            GuestError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            GuestError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GuestError::Gone | GuestError::Identity(IdentityError::Gone) => StatusCode::GONE,
            GuestError::BadRequest => StatusCode::BAD_REQUEST,
            GuestError::Identity(IdentityError::Updating) => StatusCode::NOT_FOUND,
            GuestError::Identity(IdentityError::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            GuestError::Identity(IdentityError::Throttled) => StatusCode::TOO_MANY_REQUESTS,
            GuestError::Identity(IdentityError::ServerError | IdentityError::EntraFailure) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            GuestError::Identity(_) => StatusCode::BAD_REQUEST,
        }
    }

    pub fn body(self) -> Bytes {
        let text = match self {
            GuestError::ApiVersion => return API_VERSION.clone(),
            GuestError::EventsApiVersion => return EVENTS_API_VERSION.clone(),
            GuestError::BadStartRequests => BAD_START_REQUESTS,
            GuestError::UnknownEvent => UNKNOWN_EVENT,
            GuestError::Internal => INTERNAL,
            GuestError::Unavailable => UNAVAILABLE,
            GuestError::BodyTimeout => BODY_TIMEOUT,
            GuestError::NotFound => NOT_FOUND,
            GuestError::MethodNotAllowed { .. } => METHOD_NOT_ALLOWED,
            GuestError::ForwardedFor => FORWARDED_FOR,
            GuestError::MissingMetadataHeader => MISSING_METADATA_HEADER,
            GuestError::DuplicateParameter => DUPLICATE_PARAMETER,
            GuestError::TooManyParameters => TOO_MANY_PARAMETERS,
            GuestError::BadFormat => BAD_FORMAT,
            GuestError::BadExtended => BAD_EXTENDED,
            GuestError::LeafRequiresText => LEAF_REQUIRES_TEXT,
            GuestError::JsonOnly => JSON_ONLY,
            GuestError::BadNonce => BAD_NONCE,
            GuestError::NotAssigned => NOT_ASSIGNED,
            GuestError::BadEncoding => BAD_ENCODING,
            GuestError::Throttled => THROTTLED,
            GuestError::Gone => GONE,
            GuestError::BadRequest => BAD_REQUEST,
            GuestError::Identity(error) => match error {
                IdentityError::MissingMetadataHeader => ID_MISSING_METADATA_HEADER,
                IdentityError::ForwardedFor => ID_FORWARDED_FOR,
                IdentityError::MissingResource => ID_MISSING_RESOURCE,
                IdentityError::IdentityNotFound => ID_NOT_FOUND,
                IdentityError::MultipleUserAssigned => ID_MULTIPLE_USER_ASSIGNED,
                IdentityError::ConflictingSelectors => ID_CONFLICTING_SELECTORS,
                IdentityError::BadBypassCache => ID_BAD_BYPASS_CACHE,
                IdentityError::DuplicateParameter => ID_DUPLICATE_PARAMETER,
                IdentityError::TooManyParameters => ID_TOO_MANY_PARAMETERS,
                IdentityError::BadEncoding => ID_BAD_ENCODING,
                IdentityError::Throttled => ID_THROTTLED,
                IdentityError::ServerError => ID_SERVER_ERROR,
                IdentityError::Updating => ID_UPDATING,
                IdentityError::Gone => ID_GONE,
                IdentityError::EntraFailure => ID_ENTRA_FAILURE,
                IdentityError::Unavailable => ID_UNAVAILABLE,
            },
        };
        Bytes::from_static(text.as_bytes())
    }

    pub(super) fn into_response(self) -> http::Response<Body> {
        let mut response = response::with_body(self.status(), CONTENT_TYPE_JSON, self.body());
        match self {
            GuestError::MethodNotAllowed { allow } => {
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            // hyper closes the connection instead of draining a body that is not coming.
            GuestError::BodyTimeout => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_real_bodies_are_byte_exact() {
        assert_eq!(GuestError::MissingMetadataHeader.body().len(), 63);
        assert_eq!(
            &GuestError::ApiVersion.body()[..],
            br#"{"error":"Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds","newest-versions":["2025-04-07","2024-07-17","2024-03-15"]}"#
        );
    }

    #[test]
    fn identity_bodies_match_the_real_captures() {
        // Spec §12.1, typed out here rather than copied from the constants above.
        for (error, body, len) in [
            (
                IdentityError::MissingMetadataHeader,
                r#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#,
                88,
            ),
            (
                IdentityError::IdentityNotFound,
                r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
                68,
            ),
            (
                IdentityError::MultipleUserAssigned,
                r#"{"error":"invalid_request","error_description":"Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"}"#,
                168,
            ),
            (
                IdentityError::MissingResource,
                r#"{"error":"invalid_request","error_description":"Required query variable 'resource' is missing"}"#,
                95,
            ),
        ] {
            let error = GuestError::Identity(error);
            assert_eq!(&error.body()[..], body.as_bytes());
            assert_eq!(error.body().len(), len, "{error:?}");
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        }
        assert_eq!(
            GuestError::Identity(IdentityError::ServerError).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn injected_answers_have_the_status_asked_for_in_the_endpoint_style() {
        for status in [400, 404, 410, 429, 500, 503] {
            for identity in [false, true] {
                let error = GuestError::injected(status, identity);
                assert_eq!(error.status().as_u16(), status, "{error:?}");
                let body: serde_json::Value = serde_json::from_slice(&error.body()).unwrap();
                assert!(body["error"].is_string());
                assert_eq!(body.get("error_description").is_some(), identity, "{body}");
            }
        }
        // The real 68-byte body (§5.4), and the docs' wording of the transient 404 (§1.10).
        assert_eq!(GuestError::injected(400, true).body().len(), 68);
        assert_eq!(
            &GuestError::injected(404, true).body()[..],
            br#"{"error":"not_found","error_description":"IMDS endpoint is updating"}"#
        );
        assert_eq!(
            &GuestError::injected(500, false).body()[..],
            br#"{"error":"Internal server error."}"#
        );
    }

    #[test]
    fn every_body_is_compact_json_with_an_error_member() {
        let all = [
            GuestError::NotFound,
            GuestError::MethodNotAllowed { allow: "GET" },
            GuestError::ForwardedFor,
            GuestError::MissingMetadataHeader,
            GuestError::ApiVersion,
            GuestError::DuplicateParameter,
            GuestError::TooManyParameters,
            GuestError::BadFormat,
            GuestError::BadExtended,
            GuestError::LeafRequiresText,
            GuestError::JsonOnly,
            GuestError::BadNonce,
            GuestError::NotAssigned,
            GuestError::BadEncoding,
            GuestError::Throttled,
            GuestError::EventsApiVersion,
            GuestError::BadStartRequests,
            GuestError::UnknownEvent,
            GuestError::Identity(IdentityError::MissingMetadataHeader),
            GuestError::Identity(IdentityError::ForwardedFor),
            GuestError::Identity(IdentityError::MissingResource),
            GuestError::Identity(IdentityError::IdentityNotFound),
            GuestError::Identity(IdentityError::MultipleUserAssigned),
            GuestError::Identity(IdentityError::ConflictingSelectors),
            GuestError::Identity(IdentityError::BadBypassCache),
            GuestError::Identity(IdentityError::DuplicateParameter),
            GuestError::Identity(IdentityError::TooManyParameters),
            GuestError::Identity(IdentityError::BadEncoding),
            GuestError::Identity(IdentityError::Throttled),
        ];
        for error in all {
            let body = error.body();
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(value["error"].is_string(), "{error:?}");
            assert_eq!(
                serde_json::to_vec(&value).unwrap(),
                body.to_vec(),
                "{error:?} is compact"
            );
            assert!(error.status().is_client_error());
        }
    }
}
