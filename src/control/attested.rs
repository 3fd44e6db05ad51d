//! The attested-document certificates on the control listener: `GET /attested/ca.pem` and
//! `GET /attested/ca.cer` (public material, no token: what relying parties pin or download),
//! `GET /v1/attested/keys` (the generation signing now) and `POST /v1/attested/keys/rotate` (a
//! new signing key and leaves; `azimds keys rotate`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::control::{ControlError, ControlState};

/// The trust anchor(s) as PEM: the generated root CA, or the operator's chain.
pub(super) async fn ca_pem(State(state): State<Arc<ControlState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.shared.attested().ca_pem(),
    )
        .into_response()
}

/// The certificate that issues the signing leaves, DER (what their AIA URL serves).
pub(super) async fn ca_der(State(state): State<Arc<ControlState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/pkix-cert")],
        state.shared.attested().issuer_der(),
    )
        .into_response()
}

/// The generation of leaves this host signs with (`operator` for operator certificates): in
/// fleet mode every host reports the same one once it has followed a rotation.
pub(super) async fn keys(State(state): State<Arc<ControlState>>) -> Response {
    let generation = state.shared.attested().generation();
    axum::Json(serde_json::json!({ "generation": generation })).into_response()
}

/// New documents are signed with a new key and new leaves; retired leaves are kept until
/// every document they signed has expired (6 h). Operator certificates are not rotated here.
pub(super) async fn rotate(
    State(state): State<Arc<ControlState>>,
) -> Result<Response, ControlError> {
    let shared = Arc::clone(&state.shared);
    let rotated =
        tokio::task::spawn_blocking(move || shared.attested().rotate(shared.clock().now())).await;
    match rotated {
        Ok(Ok(generation)) => {
            tracing::info!(%generation, "attested signing certificates rotated");
            Ok(axum::Json(serde_json::json!({ "generation": generation })).into_response())
        }
        Ok(Err(error)) => Err(ControlError::Attested(error)),
        Err(_) => Err(ControlError::Internal),
    }
}
