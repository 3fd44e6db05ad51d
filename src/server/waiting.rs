//! Fleet mode: while a host waits for etcd at start it serves guests nothing (no guest
//! listener is bound), but its control listener is, and says why: `GET /readyz` is 503
//! `{"status":"waiting-for-store","store":{"writable":false,"error":…,"failingSince":…}}`
//! (the shape of the store part as when the store fails later), `GET /healthz` is 200 (the
//! process is alive and retrying), and every other request is 503 `store_unavailable` with
//! the reason. Once etcd answers, the same listener serves the control API.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::maintenance::hooks::rfc3339;
use crate::server::CONTROL_POLICY;
use crate::server::listeners::{ControlListener, serve_router};

/// Why the store could not be reached yet, and since when (the first failure).
#[derive(Debug, Default)]
pub(super) struct WaitingForStore {
    failure: Mutex<Option<(String, SystemTime)>>,
}

impl WaitingForStore {
    /// Records a failed attempt to reach the store.
    pub(super) fn failed(&self, reason: &str) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        let since = failure.as_ref().map_or_else(SystemTime::now, |f| f.1);
        *failure = Some((reason.to_string(), since));
    }

    fn store_json(&self) -> serde_json::Value {
        let failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        json!({
            "writable": false,
            "error": failure.as_ref().map(|f| f.0.as_str()),
            "failingSince": failure.as_ref().map(|f| rfc3339(f.1)),
        })
    }

    fn reason(&self) -> String {
        let failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure
            .as_ref()
            .map_or_else(|| "it has not answered yet".to_string(), |f| f.0.clone())
    }
}

/// Answers on `listener` as the module says until `until` completes, and returns its output.
/// The listener stays bound for the server.
pub(super) async fn answer_until<T>(
    listener: &ControlListener,
    waiting: Arc<WaitingForStore>,
    until: impl Future<Output = T>,
) -> T {
    let router = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .fallback(unavailable)
        .with_state(waiting);
    let never = std::future::pending::<()>();
    let serving = async {
        // serve_router returns only at its shutdown, which never comes: this ends only when
        // `until` does.
        match listener {
            ControlListener::Tcp { listener, .. } => {
                serve_router(listener, router, CONTROL_POLICY, never).await;
            }
            ControlListener::Unix { listener, .. } => {
                serve_router(listener, router, CONTROL_POLICY, never).await;
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        // Dropping `serving` drops the answers in flight: they are only "not yet".
        out = until => out,
        () = serving => unreachable!("`serving` never ends"),
    }
}

async fn readyz(State(waiting): State<Arc<WaitingForStore>>) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"status": "waiting-for-store", "store": waiting.store_json()})),
    )
        .into_response()
}

async fn unavailable(State(waiting): State<Arc<WaitingForStore>>) -> Response {
    let message = format!(
        "azimds is starting and waits for etcd ({}); it serves nothing until etcd answers. Retry once GET /readyz is 200",
        waiting.reason()
    );
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"error": {"code": "store_unavailable", "message": message}})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}
