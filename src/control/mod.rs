//! The control plane's HTTP API: VMs (list, get, put, merge-patch, delete with ETags), status
//! and health, the OpenAPI document. Served on its own listener (loopback TCP with a bearer
//! token, or a unix socket protected by file permissions), never on a guest listener.
//!
//! Routes (all JSON):
//! - `GET /healthz`, `GET /readyz` (unauthenticated; ready once the snapshot is loaded, and
//!   503 while the store cannot write or the data directory is read-only)
//! - `GET /openapi.json` (unauthenticated)
//! - `GET /{tenant}/.well-known/openid-configuration`, `GET /common/discovery/keys`
//!   (unauthenticated: what relying parties fetch to validate managed-identity tokens)
//! - `GET /attested/ca.pem`, `GET /attested/ca.cer` (unauthenticated: the attested-document
//!   trust anchor, PEM, and the leaves' issuer, DER)
//! - `GET /v1/status`
//! - `GET /v1/vms`, `GET|PUT|PATCH|DELETE /v1/vms/{id}`
//! - `POST /v1/identity/keys/rotate` (new token signing key; old ones stay published)
//! - `POST /v1/attested/keys/rotate` (new attested signing key and leaves)
//! - `PUT|DELETE /v1/vms/{id}/reprovisiondata` (assign or take back the VM's OVF environment)
//! - `GET|POST /v1/events`, `GET /v1/events/{id}`, `POST /v1/events/{id}/{start|complete|cancel}`
//! - `GET /v1/vms/{id}/events` (the VM's document), `GET /v1/vms/{id}/events/wait?incarnation=N`
//! - `GET|POST|DELETE /v1/faults`, `GET|DELETE /v1/faults/{id}`, `GET /v1/faults/presets`
//! - `GET /v1/clock`, `POST /v1/clock/advance`, `POST /v1/clock/set` (with `--clock manual`)
//! - `GET /v1/vms/{id}/journal` (the VM's last guest requests)
//! - `GET /metrics` (Prometheus text; needs the token like `/v1`)
//! - `GET|DELETE /v1/vms/{id}/provisioning` (WireServer health reports; reset),
//!   `GET /v1/vms/{id}/provisioning/wait?timeout=S`, `GET /v1/vms/{id}/ovf-env` (XML)

mod attested;
mod clock;
mod error;
mod etag;
mod events;
mod faults;
mod journal;
mod metrics;
mod provisioning;
pub mod token;
mod vms;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use crate::control::error::ControlError;
use crate::registry::{MAX_VM_BYTES, Registry};
use crate::state::Shared;
use crate::store::{Store, StoreHealth};
use crate::writable_paths::WritablePaths;

/// Largest request body read: a VM entry at its limit, plus room for the JSON around it.
pub const MAX_BODY_BYTES: usize = MAX_VM_BYTES + 4096;

/// The checked-in OpenAPI description of this API (kept in step by a test).
pub const OPENAPI: &str = include_str!("openapi.json");

/// Everything a control request may touch.
#[derive(Debug)]
pub struct ControlState {
    /// What both planes share: the issuer and events engine live here.
    pub shared: Arc<Shared>,
    /// The only write path for VMs.
    pub registry: Arc<Registry>,
    /// Set once the snapshot is loaded and the guest listeners are up.
    pub ready: AtomicBool,
    /// Guest listener addresses, for `status`.
    pub guest_listeners: Vec<String>,
    /// The guest plane's open connections and refusals, for `status`.
    pub guest_connections: Arc<crate::connections::Tracker>,
    /// For readiness and `status`: whether the store can commit.
    pub store: Arc<Store>,
    /// For readiness and `status`: the data directory, store file and key directories.
    pub writable: WritablePaths,
}

/// How a control listener authenticates callers.
#[derive(Clone, Debug)]
pub enum Access {
    /// TCP: every request but health and documents needs `Authorization: Bearer <token>`.
    Token(Arc<token::ControlToken>),
    /// A unix socket: whoever can open it (file permissions) is trusted.
    Socket,
}

/// The control router for one listener.
pub fn router(state: Arc<ControlState>, access: Access) -> Router {
    let api = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/vms", get(vms::list))
        .route(
            "/v1/vms/{id}",
            get(vms::get)
                .put(vms::put)
                .patch(vms::patch)
                .delete(vms::delete),
        )
        .route(
            "/v1/vms/{id}/reprovisiondata",
            axum::routing::put(vms::assign).delete(vms::unassign),
        )
        .route("/v1/vms/{id}/events", get(events::vm_document))
        .route("/v1/vms/{id}/events/wait", get(events::wait))
        .route(
            "/v1/vms/{id}/provisioning",
            get(provisioning::get).delete(provisioning::reset),
        )
        .route("/v1/vms/{id}/provisioning/wait", get(provisioning::wait))
        .route("/v1/vms/{id}/ovf-env", get(provisioning::ovf_env))
        .route("/v1/identity/keys/rotate", post(rotate_keys))
        .route("/v1/attested/keys", get(attested::keys))
        .route("/v1/attested/keys/rotate", post(attested::rotate))
        .route("/v1/events", get(events::list).post(events::schedule))
        .route("/v1/events/{id}", get(events::get))
        .route("/v1/events/{id}/{action}", post(events::command))
        .route(
            "/v1/faults",
            get(faults::list).post(faults::add).delete(faults::clear),
        )
        .route("/v1/faults/presets", get(faults::presets))
        .route("/v1/faults/{id}", get(faults::get).delete(faults::remove))
        .route("/v1/clock", get(clock::get))
        .route("/v1/clock/advance", post(clock::advance))
        .route("/v1/clock/set", post(clock::set))
        .route("/v1/vms/{id}/journal", get(journal::get))
        .route("/metrics", get(metrics::get))
        // Every path that is not public needs the token, known or not: an unauthenticated
        // caller cannot tell which routes exist (the fallback is behind the check too).
        .fallback(|| async { ControlError::NoRoute })
        .layer(middleware::from_fn_with_state(access, authenticate));
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/common/discovery/keys", get(discovery_keys))
        .route("/attested/ca.pem", get(attested::ca_pem))
        .route("/attested/ca.cer", get(attested::ca_der))
        .merge(api)
        // Bodies are parsed by the handlers; this bounds what they will buffer.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // axum's own rejections (a body over the limit, a wrong method) get our error shape.
        .layer(middleware::map_response(error::framework_rejection))
        .with_state(state)
}

async fn authenticate(State(access): State<Access>, request: Request, next: Next) -> Response {
    match access {
        Access::Socket => next.run(request).await,
        Access::Token(expected) => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_token);
            match presented {
                Some(presented) if expected.matches(presented) => next.run(request).await,
                _ => ControlError::Unauthorized.into_response(),
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 7235 §2.1), so `bearer` and `BEARER` work as well.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// 200 once serving; 503 while loading, or while the store cannot write (the guest plane
/// still serves then, but no change can be made).
async fn readyz(State(state): State<Arc<ControlState>>) -> Response {
    if !state.ready.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "loading"})),
        )
            .into_response();
    }
    if let Some(read_only) = state.writable.check() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "status": "data-read-only",
                "path": read_only.path,
                "error": read_only.reason,
            })),
        )
            .into_response();
    }
    let health = state.store.health();
    if health.writable() {
        return axum::Json(serde_json::json!({"status": "ready"})).into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(
            serde_json::json!({"status": "store-unavailable", "store": store_json(&health)}),
        ),
    )
        .into_response()
}

/// `{"writable", "error", "failingSince"}` of the store.
fn store_json(health: &StoreHealth) -> serde_json::Value {
    let failure = health.failure.as_ref();
    serde_json::json!({
        "writable": health.writable(),
        "error": failure.map(|f| f.reason.as_str()),
        "failingSince": failure.map(|f| crate::maintenance::hooks::rfc3339(f.since)),
    })
}

/// Entra's OpenID discovery document for `tenant`, pointing at this listener's keys. The base
/// URL is taken from the request's `Host`, so it is right behind a port forward too.
async fn openid_configuration(
    axum::extract::Path(tenant): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ControlError> {
    let tenant_ok = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !tenant_ok {
        return Err(ControlError::NoRoute);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    let base = format!("http://{host}");
    Ok(axum::Json(crate::identity::openid_configuration(&tenant, &base)).into_response())
}

/// The JSON Web Key Set of the token signing keys (public parts only).
async fn discovery_keys(State(state): State<Arc<ControlState>>) -> Response {
    axum::Json(state.shared.issuer().jwks()).into_response()
}

/// Makes a new token signing key current; older keys stay published until their tokens expire.
async fn rotate_keys(State(state): State<Arc<ControlState>>) -> Result<Response, ControlError> {
    let shared = Arc::clone(&state.shared);
    let rotated = tokio::task::spawn_blocking(move || {
        shared
            .issuer()
            .rotate(shared.clock().now())
            .map_err(|error| {
                tracing::error!(%error, "rotating the token signing key failed");
            })
    })
    .await;
    match rotated {
        Ok(Ok(kid)) => {
            tracing::info!(%kid, "token signing key rotated");
            Ok(axum::Json(serde_json::json!({ "kid": kid })).into_response())
        }
        _ => Err(ControlError::Internal),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn status(State(state): State<Arc<ControlState>>) -> Response {
    let shared = &state.shared;
    let snapshot = shared.snapshot();
    axum::Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ready": state.ready.load(Ordering::Acquire),
        "vms": snapshot.vm_count(),
        "callers": snapshot.mode().as_str(),
        "unknownCallers": shared.unknown_callers(),
        "connections": {
            "open": state.guest_connections.open(),
            "refused": state.guest_connections.refused(),
            "max": state.guest_connections.caps().total,
            "maxPerCaller": state.guest_connections.caps().per_caller,
        },
        "store": store_json(&state.store.health()),
        "guestListeners": state.guest_listeners,
    }))
    .into_response()
}
