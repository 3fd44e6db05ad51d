//! Every way a guest request can fail, and the exact status, headers and body Azure answers
//! with (spec §1.4, §1.10, §12.1). The one place that turns a guest error into bytes.
//!
//! Where the spec marks a body [UNCERTAIN], the text here is our pick; each lives in exactly
//! one string below so it is easy to change.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::guest::response::{self, Body, CONTENT_TYPE_JSON};
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
    #[error("malformed percent-encoding")]
    BadEncoding,
    #[error("rate limit exceeded")]
    Throttled,
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
const BAD_ENCODING: &str =
    r#"{"error":"Bad request. Malformed percent-encoding in the request URL"}"#;
// [UNCERTAIN] §1.10: Swagger's placeholder; no Retry-After is observed on real IMDS.
const THROTTLED: &str = r#"{"error":"Too many requests"}"#;

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

impl GuestError {
    pub fn status(self) -> StatusCode {
        match self {
            GuestError::NotFound => StatusCode::NOT_FOUND,
            GuestError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GuestError::ForwardedFor
            | GuestError::MissingMetadataHeader
            | GuestError::ApiVersion
            | GuestError::DuplicateParameter
            | GuestError::TooManyParameters
            | GuestError::BadFormat
            | GuestError::BadExtended
            | GuestError::LeafRequiresText
            | GuestError::BadEncoding => StatusCode::BAD_REQUEST,
            GuestError::Throttled => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn body(self) -> Bytes {
        let text = match self {
            GuestError::ApiVersion => return API_VERSION.clone(),
            GuestError::NotFound => NOT_FOUND,
            GuestError::MethodNotAllowed { .. } => METHOD_NOT_ALLOWED,
            GuestError::ForwardedFor => FORWARDED_FOR,
            GuestError::MissingMetadataHeader => MISSING_METADATA_HEADER,
            GuestError::DuplicateParameter => DUPLICATE_PARAMETER,
            GuestError::TooManyParameters => TOO_MANY_PARAMETERS,
            GuestError::BadFormat => BAD_FORMAT,
            GuestError::BadExtended => BAD_EXTENDED,
            GuestError::LeafRequiresText => LEAF_REQUIRES_TEXT,
            GuestError::BadEncoding => BAD_ENCODING,
            GuestError::Throttled => THROTTLED,
        };
        Bytes::from_static(text.as_bytes())
    }

    pub(super) fn into_response(self) -> http::Response<Body> {
        let mut response = response::with_body(self.status(), CONTENT_TYPE_JSON, self.body());
        if let GuestError::MethodNotAllowed { allow } = self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
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
            GuestError::BadEncoding,
            GuestError::Throttled,
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
