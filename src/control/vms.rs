//! `/v1/vms` handlers: translate HTTP (JSON bodies, ETag / If-Match / If-None-Match) to
//! [`Registry`] calls run on a blocking thread, and results back.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::control::etag::etag;
use crate::control::{ControlError, ControlState};
use crate::registry::{self, Registry};
use crate::store::{Expect, StoredVm};

pub(super) async fn list(State(state): State<Arc<ControlState>>) -> Result<Response, ControlError> {
    let vms = blocking(&state, |registry| registry.list()).await?;
    let summaries: Vec<Value> = vms.iter().map(summary).collect();
    Ok(axum::Json(json!({ "vms": summaries })).into_response())
}

pub(super) async fn get(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let vm = blocking(&state, move |registry| registry.get(&id)).await?;
    Ok(with_etag(StatusCode::OK, &vm))
}

pub(super) async fn put(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ControlError> {
    let expect = precondition(&headers)?;
    let entry = parse_json(&body)?;
    let (vm, created) = blocking(&state, move |registry| registry.put(&id, &entry, expect)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_etag(status, &vm))
}

pub(super) async fn patch(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ControlError> {
    let expect = precondition(&headers)?;
    let patch = parse_json(&body)?;
    let vm = blocking(&state, move |registry| registry.patch(&id, &patch, expect)).await?;
    Ok(with_etag(StatusCode::OK, &vm))
}

pub(super) async fn delete(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ControlError> {
    let expect = precondition(&headers)?;
    blocking(&state, move |registry| registry.delete(&id, expect)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /v1/vms/{id}/reprovisiondata`: the body (the OVF environment XML, any content type)
/// becomes the VM's `reprovisionData`, so `/metadata/reprovisiondata` answers 200 with it.
/// Stored with the VM (a merge patch of that member), checked like the rest of the entry.
pub(super) async fn assign(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ControlError> {
    let expect = precondition(&headers)?;
    let xml = String::from_utf8(body.to_vec()).map_err(|_| ControlError::NotText)?;
    let patch = json!({ "reprovisionData": xml });
    let vm = blocking(&state, move |registry| registry.patch(&id, &patch, expect)).await?;
    Ok(with_etag(StatusCode::OK, &vm))
}

/// `DELETE /v1/vms/{id}/reprovisiondata`: back to 404 (the VM waits in the pool again).
pub(super) async fn unassign(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ControlError> {
    let expect = precondition(&headers)?;
    let patch = json!({ "reprovisionData": null });
    let vm = blocking(&state, move |registry| registry.patch(&id, &patch, expect)).await?;
    Ok(with_etag(StatusCode::OK, &vm))
}

/// Runs a registry operation (store IO, fsync) off the async workers.
async fn blocking<T: Send + 'static>(
    state: &Arc<ControlState>,
    operation: impl FnOnce(&Registry) -> Result<T, registry::Error> + Send + 'static,
) -> Result<T, ControlError> {
    let registry = Arc::clone(&state.registry);
    match tokio::task::spawn_blocking(move || operation(&registry)).await {
        Ok(result) => result.map_err(ControlError::from),
        Err(_) => Err(ControlError::Internal),
    }
}

/// A VM's line in the list. The entry is kept as written, where a `null` member means the
/// member was left out: no callers is an empty list, never `null`.
fn summary(vm: &StoredVm) -> Value {
    let callers = vm.definition.get("callers").filter(|c| !c.is_null());
    json!({
        "id": vm.id,
        "etag": etag(vm.revision),
        "origin": vm.origin,
        "name": vm.definition.pointer("/instance/compute/name").cloned().unwrap_or(Value::Null),
        "callers": callers.cloned().unwrap_or(json!([])),
    })
}

fn with_etag(status: StatusCode, vm: &StoredVm) -> Response {
    let mut response = (status, axum::Json(&vm.definition)).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag(vm.revision)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// A key given twice is refused with its path, as in definition files.
fn parse_json(body: &Bytes) -> Result<Value, ControlError> {
    crate::definition::json_from_slice(body).map_err(ControlError::MalformedJson)
}

/// `If-Match: "<etag>"` or `*`, `If-None-Match: *` (create only). Weak validators and lists
/// are not accepted: writes need an exact revision.
fn precondition(headers: &HeaderMap) -> Result<Expect, ControlError> {
    let text = |name| {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map(str::trim)
                    .map_err(|_| ControlError::BadHeader("unreadable precondition header"))
            })
            .transpose()
    };
    match (text(header::IF_MATCH)?, text(header::IF_NONE_MATCH)?) {
        (Some(_), Some(_)) => Err(ControlError::BadHeader(
            "give If-Match or If-None-Match, not both",
        )),
        (None, Some("*")) => Ok(Expect::Absent),
        (None, Some(_)) => Err(ControlError::BadHeader("If-None-Match supports only *")),
        (Some("*"), None) => Ok(Expect::Present),
        (Some(tag), None) => tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|t| t.parse().ok())
            .map(Expect::Revision)
            .ok_or(ControlError::BadHeader(
                "If-Match must be * or an ETag such as \"12\"",
            )),
        (None, None) => Ok(Expect::Anything),
    }
}
