//! Control API errors: the one place that picks a status and writes the body
//! `{"error":{"code":…,"message":…,"problems":[{"path":…,"message":…}]}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::problem::Problem;
use crate::{attested, events, maintenance, provisioning, registry, store};

/// A control request that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("no such route")]
    NoRoute,
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    BadHeader(&'static str),
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error(transparent)]
    Events(#[from] maintenance::Error),
    #[error(transparent)]
    Attested(attested::Error),
    #[error("the request body is not UTF-8 text")]
    NotText,
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the route does not take this method")]
    MethodNotAllowed,
    #[error("{1}")]
    Rejected(StatusCode, String),
    #[error("the VM has not fetched that incarnation yet (highest fetched: {fetched})")]
    WaitTimedOut { fetched: u64 },
    #[error("the VM reported a provisioning failure: {description}")]
    ProvisioningFailed { description: String },
    #[error("the VM has not reported Ready yet (state: {state})")]
    NotReadyYet { state: &'static str },
    #[error(transparent)]
    Provisioning(provisioning::Error),
    #[error("internal error")]
    Internal,
    /// A request body or query that parsed but does not hold up (422, with its problems).
    #[error("{0}")]
    Invalid(String, Vec<Problem>),
    /// A named thing that does not exist (a fault rule, a VM's journal).
    #[error("{0}")]
    NotFound(String),
    /// The request cannot apply in the server's current state (e.g. moving a system clock).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadQuery(String),
}

/// A write the store could not commit (a full disk): not acknowledged, worth retrying.
const STORE_UNAVAILABLE: (StatusCode, &str) =
    (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");

/// One write with more changes than one etcd transaction may hold (`--etcd-max-txn-ops`):
/// nothing was written; the message says how many and the limit.
const TOO_MANY_CHANGES: (StatusCode, &str) = (StatusCode::PAYLOAD_TOO_LARGE, "too_many_changes");

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ControlError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ControlError::NoRoute => (StatusCode::NOT_FOUND, "not_found"),
            ControlError::MalformedJson(_) | ControlError::BadHeader(_) | ControlError::NotText => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            ControlError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ControlError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            ControlError::Rejected(status, _) => (*status, "bad_request"),
            ControlError::Registry(error) => match error {
                registry::Error::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
                registry::Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                registry::Error::PreconditionFailed { .. } => {
                    (StatusCode::PRECONDITION_FAILED, "precondition_failed")
                }
                registry::Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                registry::Error::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                registry::Error::Store(store::Error::Unavailable { .. }) => STORE_UNAVAILABLE,
                registry::Error::Store(store::Error::BatchTooLarge { .. }) => TOO_MANY_CHANGES,
                registry::Error::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            ControlError::Events(error) => match error {
                maintenance::Error::Events(events::Error::UnknownEvent(_)) => {
                    (StatusCode::NOT_FOUND, "not_found")
                }
                maintenance::Error::Events(events::Error::IllegalTransition { .. }) => {
                    (StatusCode::CONFLICT, "conflict")
                }
                maintenance::Error::Events(events::Error::Invalid(_))
                | maintenance::Error::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
                maintenance::Error::Store(store::Error::Unavailable { .. }) => STORE_UNAVAILABLE,
                maintenance::Error::Store(store::Error::BatchTooLarge { .. }) => TOO_MANY_CHANGES,
                maintenance::Error::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            ControlError::Attested(attested::Error::OperatorRotation) => {
                (StatusCode::CONFLICT, "conflict")
            }
            ControlError::Attested(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ControlError::WaitTimedOut { .. } | ControlError::NotReadyYet { .. } => {
                (StatusCode::REQUEST_TIMEOUT, "timeout")
            }
            ControlError::ProvisioningFailed { .. } => {
                (StatusCode::CONFLICT, "provisioning_failed")
            }
            ControlError::Provisioning(provisioning::Error::Store(store::Error::Unavailable {
                ..
            })) => STORE_UNAVAILABLE,
            ControlError::Provisioning(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ControlError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ControlError::Invalid(..) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ControlError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ControlError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ControlError::BadQuery(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        let message = if code == STORE_UNAVAILABLE.1 {
            // The operator's own API: the reason (a full disk) is what they need to act on.
            tracing::warn!(error = %self, "control write refused: the store cannot write");
            format!(
                "{self}. Nothing was changed; retry once the store can write again (GET /readyz reports it)"
            )
        } else if status.is_server_error() {
            // Logged once, here; the client gets a generic message.
            tracing::error!(error = %self, "control request failed");
            "internal error; see the server log".to_string()
        } else {
            self.to_string()
        };
        let mut error = json!({ "code": code, "message": message });
        if let ControlError::Registry(registry::Error::Invalid(problems))
        | ControlError::Events(maintenance::Error::Invalid(problems))
        | ControlError::Invalid(_, problems) = &self
        {
            // `Problem` serializes as {"path":…,"message":…}.
            error["problems"] = json!(problems);
        }
        let mut response = (status, axum::Json(json!({ "error": error }))).into_response();
        match &self {
            ControlError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ if code == STORE_UNAVAILABLE.1 => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ControlError::Registry(registry::Error::PreconditionFailed {
                current: Some(revision),
            }) => {
                if let Ok(value) = HeaderValue::from_str(&super::etag::etag(*revision)) {
                    response.headers_mut().insert(header::ETAG, value);
                }
            }
            _ => {}
        }
        response
    }
}

/// Gives axum's own rejections our error shape: they answer in plain text (a body over the
/// limit: 413; an extractor that could not parse the request: 400) or with no body at all
/// (a known path with another method: 405, whose `Allow` header is kept).
pub(super) async fn framework_rejection(response: Response) -> Response {
    let status = response.status();
    let ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if ours || !status.is_client_error() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ControlError::BodyTooLarge {
            limit: super::MAX_BODY_BYTES,
        },
        StatusCode::METHOD_NOT_ALLOWED => ControlError::MethodNotAllowed,
        _ => {
            let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
            ControlError::Rejected(status, String::from_utf8_lossy(&text).trim().to_string())
        }
    };
    let mut converted = error.into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        converted.headers_mut().insert(header::ALLOW, allow.clone());
    }
    converted
}
