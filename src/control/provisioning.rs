//! `/v1/vms/{id}/provisioning[/wait]` and `/v1/vms/{id}/ovf-env`: what a VM's guest agents
//! reported to the WireServer, "wait until it is Ready" (a long poll, so scripts need no
//! polling loop), forgetting it (to provision again), and the VM's provisioning media.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::control::{ControlError, ControlState};
use crate::definition::VmDefinition;
use crate::maintenance::hooks::rfc3339;
use crate::provisioning::{self, NotReady, Observed, Record, report_json};
use crate::registry;

/// The longest one wait may be asked to last: under the control listener's 30 s read-stall
/// limit, which also counts the time hyper waits on an idle socket while a response is being
/// computed. The CLI chains waits for longer timeouts.
const MAX_WAIT: Duration = Duration::from_secs(25);

/// How often a wait for a VM another host of a fleet serves reads its record again (that
/// host's reports reach this one only through the store).
const FLEET_WAIT_POLL: Duration = Duration::from_millis(200);

/// The VM's definition, or 404. In a fleet, a VM another host serves is read from the store,
/// so any host's control API answers for every VM of the fleet.
async fn definition(state: &ControlState, id: &str) -> Result<VmDefinition, ControlError> {
    let not_found = || ControlError::Registry(registry::Error::NotFound(id.to_string()));
    if let Some(vm) = state.shared.snapshot().vm(id) {
        return Ok(vm.definition().clone());
    }
    if !state.store.is_shared() {
        return Err(not_found());
    }
    let (store, vm) = (Arc::clone(&state.store), id.to_string());
    let stored = tokio::task::spawn_blocking(move || store.vm(&vm))
        .await
        .map_err(|_| ControlError::Internal)?
        .map_err(|e| ControlError::Provisioning(e.into()))?
        .ok_or_else(not_found)?;
    crate::definition::vm_from_json(&stored.definition, id).map_err(|_| not_found())
}

/// The VM's record: in a fleet, as the store has it now (the serving host may be another).
async fn current_record(state: &ControlState, id: &str) -> Result<Record, ControlError> {
    let engine = Arc::clone(state.shared.provisioning());
    if !state.store.is_shared() {
        return Ok(engine.record(id));
    }
    let vm = id.to_string();
    tokio::task::spawn_blocking(move || engine.refresh(&vm))
        .await
        .map_err(|_| ControlError::Internal)?
        .map_err(ControlError::Provisioning)
}

/// The control API's view of a VM's provisioning.
pub(super) fn provisioning_json(vm: &str, record: &Record, observed: &Observed) -> Value {
    let agent_status = observed.agent_status.as_ref().map(|status| {
        json!({
            "status": status.status,
            "version": status.version,
            "message": status.message,
            "at": rfc3339(status.at),
        })
    });
    json!({
        "vm": vm,
        "state": record.state.as_str(),
        "readyAt": record.ready_at_ms.map(|ms| rfc3339(std::time::UNIX_EPOCH + Duration::from_millis(ms))),
        "readyAgent": record.ready_agent,
        "latest": record.latest().map(report_json),
        "reports": record.reports.iter().map(report_json).collect::<Vec<_>>(),
        "goalState": {
            "firstFetchedAt": observed.first_goal_state.map(rfc3339),
            "lastFetchedAt": observed.last_goal_state.map(rfc3339),
        },
        "agentStatus": agent_status,
    })
}

fn view(state: &ControlState, vm: &str, record: &Record) -> Value {
    provisioning_json(vm, record, &state.shared.provisioning().observed(vm))
}

pub(super) async fn get(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    definition(&state, &id).await?;
    let record = current_record(&state, &id).await?;
    Ok(axum::Json(view(&state, &id, &record)).into_response())
}

/// Forgets what the VM reported: it is Pending again (it is to be provisioned anew).
pub(super) async fn reset(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    definition(&state, &id).await?;
    let engine = Arc::clone(state.shared.provisioning());
    let vm = id.clone();
    let reset = tokio::task::spawn_blocking(move || engine.reset(&vm))
        .await
        .map_err(|_| ControlError::Internal)?
        .map_err(ControlError::Provisioning)?;
    Ok(axum::Json(json!({ "vm": id, "reset": reset })).into_response())
}

#[derive(serde::Deserialize)]
pub(super) struct WaitQuery {
    /// Seconds (default and at most 25).
    timeout: Option<u64>,
}

/// Long-polls until the VM reported Ready (200), reported a failure (409), or the time ran
/// out (408).
pub(super) async fn wait(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Response, ControlError> {
    definition(&state, &id).await?;
    let timeout = query
        .timeout
        .map_or(MAX_WAIT, Duration::from_secs)
        .min(MAX_WAIT);
    let waited = if state.store.is_shared() {
        wait_in_fleet(&state, &id, timeout).await?
    } else {
        state.shared.provisioning().wait_ready(&id, timeout).await
    };
    match waited {
        Ok(record) => Ok(axum::Json(view(&state, &id, &record)).into_response()),
        Err(NotReady::Failed(record)) => Err(ControlError::ProvisioningFailed {
            description: record
                .latest()
                .and_then(|r| r.description.clone())
                .unwrap_or_default(),
        }),
        Err(NotReady::TimedOut(record)) => Err(ControlError::NotReadyYet {
            state: record.state.as_str(),
        }),
    }
}

/// The VM's `ovf-env.xml` (wireserver.md §2.2), from its definition.
pub(super) async fn ovf_env(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let vm = definition(&state, &id).await?;
    let document = crate::ovf::ovf_env(&vm);
    Ok((
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        document,
    )
        .into_response())
}

/// [`Provisioning::wait_ready`](crate::provisioning::Provisioning::wait_ready) for a fleet:
/// the serving host may be another, so the record is read from the store until it is Ready
/// or failed, or the time runs out.
async fn wait_in_fleet(
    state: &ControlState,
    id: &str,
    timeout: Duration,
) -> Result<Result<Record, NotReady>, ControlError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let record = current_record(state, id).await?;
        match record.state {
            provisioning::State::Ready => return Ok(Ok(record)),
            provisioning::State::Failed => return Ok(Err(NotReady::Failed(record))),
            _ if tokio::time::Instant::now() >= deadline => {
                return Ok(Err(NotReady::TimedOut(record)));
            }
            _ => {
                tokio::time::sleep_until(
                    deadline.min(tokio::time::Instant::now() + FLEET_WAIT_POLL),
                )
                .await
            }
        }
    }
}

impl From<provisioning::Error> for ControlError {
    fn from(error: provisioning::Error) -> Self {
        ControlError::Provisioning(error)
    }
}
