//! `/v1/faults`: add, list, get, remove and clear fault rules (the rules are `crate::faults`;
//! the guest plane applies them from the next request on).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::control::{ControlError, ControlState};
use crate::faults::{Action, AddError, FaultSpec, IdentityMatch, PRESETS, Rule, Scope};
use crate::maintenance::hooks::rfc3339;

/// The control API's view of a rule: what it was given, and what it does.
pub(super) fn rule_json(rule: &Rule) -> Value {
    let (status, delay) = match rule.action {
        Action::Status(status) => (Some(status), None),
        Action::Delay(delay) => (None, Some(delay.as_secs_f64())),
        _ => (None, None),
    };
    let scope = match &rule.scope {
        Scope::Everything => Value::Null,
        Scope::Under(root) => json!(root),
        Scope::Prefix(prefix) => json!(format!("{prefix}*")),
    };
    json!({
        "id": &*rule.id,
        "preset": rule.spec.preset,
        "vm": rule.vm,
        "paths": scope,
        "method": rule.method.as_ref().map(|m| m.as_str()),
        "identity": rule.identity.as_ref().map(|i| match i {
            IdentityMatch::Unnamed => "system",
            IdentityMatch::Named(id) => id.as_str(),
        }),
        "resource": rule.resource,
        "action": rule.action.name(),
        "status": status,
        "delaySeconds": delay,
        "count": rule.count,
        "probability": rule.probability,
        "seed": rule.seed,
        "created": rfc3339(rule.created),
        "expires": rule.until.map(rfc3339),
        "injected": rule.injected.load(std::sync::atomic::Ordering::Relaxed),
        "spec": rule.spec,
    })
}

pub(super) async fn add(
    State(state): State<Arc<ControlState>>,
    body: Bytes,
) -> Result<Response, ControlError> {
    let spec: FaultSpec =
        serde_json::from_slice(&body).map_err(|e| ControlError::MalformedJson(e.to_string()))?;
    let shared = &state.shared;
    let rule = shared
        .faults()
        .add(spec, shared.clock().now())
        .map_err(|error| match error {
            AddError::Invalid(problems) => {
                ControlError::Invalid("invalid fault rule".into(), problems)
            }
            AddError::TooMany => ControlError::Conflict(error.to_string()),
        })?;
    tracing::info!(rule = %rule.id, action = rule.action.name(), vm = ?rule.vm, "fault rule added");
    Ok((StatusCode::CREATED, axum::Json(rule_json(&rule))).into_response())
}

pub(super) async fn list(State(state): State<Arc<ControlState>>) -> Response {
    let shared = &state.shared;
    let rules: Vec<Value> = shared
        .faults()
        .list(shared.clock().now())
        .iter()
        .map(|r| rule_json(r))
        .collect();
    axum::Json(json!({ "faults": rules })).into_response()
}

pub(super) async fn get(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let rule = state.shared.faults().get(&id).ok_or_else(|| no_rule(&id))?;
    Ok(axum::Json(rule_json(&rule)).into_response())
}

pub(super) async fn remove(
    State(state): State<Arc<ControlState>>,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let rule = state
        .shared
        .faults()
        .remove(&id)
        .ok_or_else(|| no_rule(&id))?;
    tracing::info!(rule = %rule.id, "fault rule removed");
    Ok(axum::Json(rule_json(&rule)).into_response())
}

pub(super) async fn clear(State(state): State<Arc<ControlState>>) -> Response {
    let removed = state.shared.faults().clear();
    tracing::info!(removed, "fault rules cleared");
    axum::Json(json!({ "removed": removed })).into_response()
}

/// The presets and what each reproduces.
pub(super) async fn presets() -> Response {
    let presets: Vec<Value> = PRESETS
        .iter()
        .map(|p| json!({ "name": p.name, "summary": p.summary }))
        .collect();
    axum::Json(json!({ "presets": presets })).into_response()
}

fn no_rule(id: &str) -> ControlError {
    ControlError::NotFound(format!("no fault rule {id:?}"))
}
