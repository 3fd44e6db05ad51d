//! `GET /v1/vms/{id}/journal`: a VM's last guest requests, oldest first, made into JSON here
//! (recording copies bytes only). `after=N` returns the entries after sequence number N, and
//! with `wait=S` waits up to S seconds for one: `azimds journal VM --follow` polls with both.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::control::{ControlError, ControlState};
use crate::maintenance::hooks::rfc3339;
use crate::telemetry::journal::Entry;

/// The longest a read may wait for a new entry.
const MAX_WAIT: u64 = 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JournalQuery {
    after: Option<u64>,
    limit: Option<usize>,
    wait: Option<u64>,
}

/// One entry as the API shows it.
fn entry_json(entry: &Entry) -> Value {
    let target = String::from_utf8_lossy(&entry.target);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    json!({
        "seq": entry.seq,
        "time": rfc3339(entry.at),
        "method": entry.method.as_str(),
        "endpoint": entry.endpoint.as_str(),
        "path": path,
        "query": query,
        "status": (entry.status != 0).then_some(entry.status),
        "durationMs": entry.duration.as_secs_f64() * 1000.0,
        "fault": entry.fault.as_ref().map(|(rule, action)| json!({"rule": &**rule, "action": action})),
        "userAgent": entry.user_agent.as_ref().map(|ua| String::from_utf8_lossy(ua)),
        "metadataHeader": entry.metadata_header,
    })
}

pub(super) async fn get(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
    Query(query): Query<JournalQuery>,
) -> Result<Response, ControlError> {
    let capacity = state.shared.telemetry().settings.journal_size;
    let limit = query.limit.unwrap_or(capacity).clamp(1, capacity.max(1));
    let vm = state
        .shared
        .snapshot()
        .vm(&id)
        .cloned()
        .ok_or_else(|| ControlError::NotFound(format!("no VM {id:?}")))?;
    let journal = &vm.runtime().journal;
    if let (Some(after), Some(wait)) = (query.after, query.wait) {
        let wait = Duration::from_secs(wait.min(MAX_WAIT));
        journal.wait_after(after, wait).await;
    }
    let page = journal.read(query.after, limit);
    let entries: Vec<Value> = page.entries.iter().map(entry_json).collect();
    Ok(axum::Json(json!({
        "vm": id,
        "capacity": capacity,
        "entries": entries,
        "next": page.next,
        "missed": page.missed,
    }))
    .into_response())
}
