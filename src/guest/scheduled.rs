//! `/metadata/scheduledevents` (spec §6): GET the VM's events document (with `ETag` and
//! `If-None-Match` → 304, §6.9), POST `StartRequests` to approve events (§6.4).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use crate::events::EventsVersion;
use crate::guest::error::GuestError;
use crate::guest::request::{Format, Query};
use crate::guest::response::{self, Body, CONTENT_TYPE_JSON};
use crate::maintenance::{self, Maintenance};
use crate::snapshot::ServedVm;

/// A StartRequests body is a few hundred bytes; anything past this is refused unread.
const MAX_BODY: usize = 64 * 1024;
/// The whole body must arrive within this time (issue 13: a slow POST must not hold a
/// connection open).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) async fn get(
    engine: &Arc<Maintenance>,
    vm: &ServedVm,
    query: &Query<'_>,
    headers: &HeaderMap,
) -> Result<Response<Body>, GuestError> {
    let version = events_version(query)?;
    let vm_id = &vm.definition().id;
    let delay = engine.activation_delay(vm_id);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (incarnation, document) = engine.document(vm_id, version);
    engine.record_fetch(vm_id, incarnation);
    // [UNCERTAIN] §6.9: the incarnation is the document's version, so it is the ETag.
    let etag = format!("\"{incarnation}\"");
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if unchanged {
        response::with_body(StatusCode::NOT_MODIFIED, CONTENT_TYPE_JSON, Bytes::new())
    } else {
        response::with_body(StatusCode::OK, CONTENT_TYPE_JSON, Bytes::from(document))
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

pub(super) async fn post<B>(
    engine: &Arc<Maintenance>,
    vm: &ServedVm,
    query: &Query<'_>,
    body: B,
) -> Result<Response<Body>, GuestError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    events_version(query)?;
    // Parsed as JSON whatever the Content-Type: curl -d sends a form type (§6.4).
    let body = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect())
        .await
        .map_err(|_| GuestError::BodyTimeout)?
        .map_err(|_| GuestError::BadStartRequests)?
        .to_bytes();
    let ids = start_requests(&body).ok_or(GuestError::BadStartRequests)?;
    let engine = Arc::clone(engine);
    let vm_id = vm.definition().id.clone();
    let approved = tokio::task::spawn_blocking(move || engine.approve(&vm_id, &ids)).await;
    match approved {
        Ok(Ok(())) => Ok(response::with_body(
            StatusCode::OK,
            CONTENT_TYPE_JSON,
            Bytes::new(),
        )),
        Ok(Err(maintenance::Error::Events(_))) => Err(GuestError::UnknownEvent),
        Ok(Err(error)) => {
            tracing::error!(%error, "recording a scheduled-event approval failed");
            Err(GuestError::Unavailable)
        }
        Err(_) => Err(GuestError::Internal),
    }
}

/// Whether a raw query asks for the preview (2017-03-01), which did not enforce the
/// `Metadata` header (§6.1). Read only after a request failed the header check.
pub(super) fn is_preview(raw_query: Option<&str>) -> bool {
    Query::parse(raw_query)
        .ok()
        .and_then(|query| {
            query
                .single("api-version")
                .ok()
                .flatten()
                .map(EventsVersion::parse)
        })
        .flatten()
        .is_some_and(|version| !version.requires_metadata_header())
}

fn events_version(query: &Query<'_>) -> Result<EventsVersion, GuestError> {
    let version = match query.single("api-version")? {
        Some(text) => EventsVersion::parse(text).ok_or(GuestError::EventsApiVersion)?,
        None => return Err(GuestError::EventsApiVersion),
    };
    query.reject_duplicates()?;
    // JSON only (§1.7: scheduled events have no text format).
    match query.format()? {
        Format::Json => Ok(version),
        Format::Text => Err(GuestError::BadFormat),
    }
}

/// `{"StartRequests":[{"EventId":"…"},…]}` → the ids.
pub(super) fn start_requests(body: &[u8]) -> Option<Vec<String>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let requests = value.get("StartRequests")?.as_array()?;
    requests
        .iter()
        .map(|r| r.get("EventId")?.as_str().map(str::to_string))
        .collect()
}
