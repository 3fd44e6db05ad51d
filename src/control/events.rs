//! `/v1/events` handlers: schedule, list, get, start/complete/cancel now, and
//! `/v1/vms/{id}/events[/wait]` — what a VM sees and "wait until it fetched incarnation N", so
//! tests and operators need no sleeps.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::control::{ControlError, ControlState};
use crate::events::{Event, EventsVersion, Input};
use crate::maintenance::hooks::{rfc3339, status_name};
use crate::maintenance::{self, Maintenance, ScheduleRequest};

/// The longest a wait may be asked to last.
const MAX_WAIT: Duration = Duration::from_secs(300);

fn engine(state: &ControlState) -> Arc<Maintenance> {
    Arc::clone(state.shared.events())
}

/// The control API's view of an event.
fn event_json(event: &Event) -> serde_json::Value {
    json!({
        "id": event.id,
        "type": event.event_type.as_str(),
        "status": status_name(event.status),
        "vms": event.targets,
        "resources": event.resources,
        "notBefore": rfc3339(event.not_before),
        "startedAt": event.started_at.map(rfc3339),
        "completeAfterSeconds": event.complete_after.as_secs(),
        "description": event.description,
        "source": event.source.as_str(),
        "durationInSeconds": event.duration_seconds,
    })
}

async fn blocking<T: Send + 'static>(
    engine: Arc<Maintenance>,
    operation: impl FnOnce(&Maintenance) -> Result<T, maintenance::Error> + Send + 'static,
) -> Result<T, ControlError> {
    match tokio::task::spawn_blocking(move || operation(&engine)).await {
        Ok(result) => result.map_err(ControlError::from),
        Err(_) => Err(ControlError::Internal),
    }
}

pub(super) async fn schedule(
    State(state): State<Arc<ControlState>>,
    body: Bytes,
) -> Result<Response, ControlError> {
    let request: ScheduleRequest =
        serde_json::from_slice(&body).map_err(|e| ControlError::MalformedJson(e.to_string()))?;
    let event = blocking(engine(&state), move |engine| engine.schedule(request)).await?;
    Ok((StatusCode::CREATED, axum::Json(event_json(&event))).into_response())
}

pub(super) async fn list(State(state): State<Arc<ControlState>>) -> Result<Response, ControlError> {
    let events: Vec<_> = engine(&state).events().iter().map(event_json).collect();
    Ok(axum::Json(json!({ "events": events })).into_response())
}

pub(super) async fn get(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let event =
        engine(&state)
            .event(&id)
            .ok_or(ControlError::Events(maintenance::Error::Events(
                crate::events::Error::UnknownEvent(id),
            )))?;
    Ok(axum::Json(event_json(&event)).into_response())
}

pub(super) async fn command(
    State(state): State<Arc<ControlState>>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, ControlError> {
    let input = match action.as_str() {
        "start" => Input::Start,
        "complete" => Input::Complete,
        "cancel" => Input::Cancel,
        _ => return Err(ControlError::NoRoute),
    };
    let changed = blocking(engine(&state), move |engine| engine.command(&id, input)).await?;
    Ok(axum::Json(
        json!({ "changed": changed.is_some(), "event": changed.as_ref().map(event_json) }),
    )
    .into_response())
}

/// 404 for a VM this server does not serve (as the VM's other routes answer), rather than
/// the empty document no guest can fetch.
fn served(state: &ControlState, vm: &str) -> Result<(), ControlError> {
    match state.shared.snapshot().vm(vm) {
        Some(_) => Ok(()),
        None => Err(ControlError::Registry(crate::registry::Error::NotFound(
            vm.to_string(),
        ))),
    }
}

/// What the VM's guest document looks like now (newest version), for operators.
pub(super) async fn vm_document(
    State(state): State<Arc<ControlState>>,
    Path(vm): Path<String>,
) -> Result<Response, ControlError> {
    served(&state, &vm)?;
    let engine = engine(&state);
    let (incarnation, document) = engine.document(&vm, EventsVersion::V2020_07_01);
    let document: serde_json::Value =
        serde_json::from_slice(&document).map_err(|_| ControlError::Internal)?;
    Ok(axum::Json(json!({ "incarnation": incarnation, "document": document })).into_response())
}

#[derive(serde::Deserialize)]
pub(super) struct WaitQuery {
    incarnation: u64,
    /// Seconds (default 30, at most 300).
    timeout: Option<u64>,
}

/// Long-polls until the VM has fetched a document with at least that incarnation.
pub(super) async fn wait(
    State(state): State<Arc<ControlState>>,
    Path(vm): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Response, ControlError> {
    served(&state, &vm)?;
    let timeout = Duration::from_secs(query.timeout.unwrap_or(30)).min(MAX_WAIT);
    match engine(&state)
        .wait_fetched(&vm, query.incarnation, timeout)
        .await
    {
        Ok(fetched) => Ok(axum::Json(json!({ "fetched": fetched })).into_response()),
        Err(fetched) => Err(ControlError::WaitTimedOut { fetched }),
    }
}
