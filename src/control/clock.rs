//! `/v1/clock`: read the server's time, and, with `--clock manual`, move it. Moving it applies
//! whatever became due at once (scheduled events start and complete); tokens, throttles and
//! fault windows read it on their next request.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::clock::ManualClock;
use crate::control::{ControlError, ControlState};
use crate::faults::DurationText;
use crate::maintenance::hooks::rfc3339;
use crate::problem::Problem;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    /// Seconds, or a number with ms, s, m or h.
    by: DurationText,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Set {
    /// RFC 3339.
    to: String,
}

pub(super) async fn get(State(state): State<Arc<ControlState>>) -> Response {
    axum::Json(now_json(&state, None)).into_response()
}

pub(super) async fn advance(
    State(state): State<Arc<ControlState>>,
    body: Bytes,
) -> Result<Response, ControlError> {
    let request: Advance =
        serde_json::from_slice(&body).map_err(|e| ControlError::MalformedJson(e.to_string()))?;
    let by = request
        .by
        .parse()
        .map_err(|m| invalid(Problem::new("by", m)))?;
    let clock = manual(&state)?;
    if state
        .shared
        .clock()
        .now()
        .checked_add(by)
        .is_none_or(|to| to > latest())
    {
        return Err(invalid(Problem::new("by", too_late())));
    }
    clock.advance(by);
    apply_due(state, |now| format!("clock advanced by {by:?} to {now}")).await
}

pub(super) async fn set(
    State(state): State<Arc<ControlState>>,
    body: Bytes,
) -> Result<Response, ControlError> {
    let request: Set =
        serde_json::from_slice(&body).map_err(|e| ControlError::MalformedJson(e.to_string()))?;
    let to =
        time::OffsetDateTime::parse(&request.to, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                invalid(Problem::new(
                    "to",
                    format!("expected an RFC 3339 time: {e}"),
                ))
            })?;
    let to = SystemTime::UNIX_EPOCH
        + Duration::try_from(to - time::OffsetDateTime::UNIX_EPOCH)
            .map_err(|_| invalid(Problem::new("to", "expected a time after 1970")))?;
    if to > latest() {
        return Err(invalid(Problem::new("to", too_late())));
    }
    manual(&state)?.set(to);
    apply_due(state, |now| format!("clock set to {now}")).await
}

fn manual(state: &ControlState) -> Result<&ManualClock, ControlError> {
    state.shared.clock().as_manual().ok_or_else(|| {
        ControlError::Conflict(
            "the server runs on the system clock; start it with --clock manual to move time".into(),
        )
    })
}

/// Applies the scheduled-event transitions that became due, then answers with the time.
async fn apply_due(
    state: Arc<ControlState>,
    log: impl FnOnce(String) -> String,
) -> Result<Response, ControlError> {
    let engine = Arc::clone(state.shared.events());
    let applied = tokio::task::spawn_blocking(move || engine.advance())
        .await
        .map_err(|_| ControlError::Internal)?
        .map_err(ControlError::from)?;
    let now = rfc3339(state.shared.clock().now());
    tracing::info!(transitions = applied, "{}", log(now));
    Ok(axum::Json(now_json(&state, Some(applied))).into_response())
}

fn now_json(state: &ControlState, transitions: Option<usize>) -> serde_json::Value {
    let clock = state.shared.clock();
    let now = clock.now();
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut body = json!({ "now": rfc3339(now), "unix": unix, "manual": clock.is_manual() });
    if let Some(transitions) = transitions {
        body["transitions"] = json!(transitions);
    }
    body
}

/// The latest time a manual clock may show: a year (the longest event notice) before the
/// last time RFC 3339 and RFC 1123 can write, so every time derived from it can be shown.
fn latest() -> SystemTime {
    SystemTime::from(time::macros::datetime!(9999-01-01 00:00 UTC))
}

fn too_late() -> String {
    format!("the clock cannot go past {}", rfc3339(latest()))
}

fn invalid(problem: Problem) -> ControlError {
    ControlError::Invalid("invalid clock change".into(), vec![problem])
}
