//! `GET /metrics`: Prometheus text format (OpenMetrics when the scraper's `Accept` asks for
//! it), behind the control token like the rest of the API: the series name VMs and show their
//! traffic. Give Prometheus the token file (`authorization: {credentials_file: …}`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::control::ControlState;
use crate::telemetry::exposition::{OPENMETRICS_TEXT, PROMETHEUS_TEXT, Scrape};

pub(super) async fn get(State(state): State<Arc<ControlState>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let text = collect(&state).encode(openmetrics);
    let content_type = if openmetrics {
        OPENMETRICS_TEXT
    } else {
        PROMETHEUS_TEXT
    };
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

fn collect(state: &ControlState) -> Scrape {
    let shared = &state.shared;
    let snapshot = shared.snapshot();
    let mut scrape = Scrape::default();
    shared.telemetry().guest.collect(
        &mut scrape,
        snapshot
            .vms()
            .map(|vm| (vm.definition().id.as_str(), &vm.runtime().counters)),
    );
    scrape.counter(
        "azimds_guest_unknown_callers",
        "Guest connections and requests from addresses that belong to no VM (closed unanswered).",
        Vec::new(),
        shared.unknown_callers(),
    );
    let connections = &state.guest_connections;
    scrape.gauge(
        "azimds_guest_connections_open",
        "Guest connections open now.",
        Vec::new(),
        connections.open() as i64,
    );
    scrape.counter(
        "azimds_guest_connections_refused",
        "Guest connections closed at accept because a connection cap was reached.",
        Vec::new(),
        connections.refused(),
    );
    scrape.gauge(
        "azimds_vms",
        "VMs served.",
        Vec::new(),
        snapshot.vm_count() as i64,
    );
    scrape.gauge(
        "azimds_fault_rules",
        "Fault rules in force.",
        Vec::new(),
        shared.faults().list(shared.clock().now()).len() as i64,
    );
    let cache = shared.issuer().cache();
    scrape.counter(
        "azimds_tokens_issued",
        "Managed-identity tokens signed.",
        Vec::new(),
        cache.issued(),
    );
    scrape.counter(
        "azimds_token_cache_hits",
        "Token requests answered from the token cache.",
        Vec::new(),
        cache.hits(),
    );
    for (kid, current) in shared.issuer().key_ids() {
        scrape.gauge(
            "azimds_signing_key",
            "Published token signing keys by kid (the certificate's SHA-1 thumbprint, base64url); current=\"true\" signs new tokens.",
            vec![("kid", kid), ("current", current.to_string())],
            1,
        );
    }
    scrape.histogram(
        "azimds_store_commit_duration_seconds",
        "Durable store commits (redb, fsync'd), from the start of the commit to its return.",
        Vec::new(),
        state.registry.store().commit_times().values(),
    );
    scrape
}
