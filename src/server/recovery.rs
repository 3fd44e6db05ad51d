//! A store that cannot commit (a full disk) heals on its own: every write reopens it first,
//! and while it is failing this task probes it, backing off, so readiness turns back to 200
//! once there is room even when nothing writes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;

/// How often the store's health is looked at while it is healthy (a cheap flag read).
const HEALTHY_CHECK: Duration = Duration::from_secs(1);
/// The first probe after a failure, doubled after each one that fails, up to the maximum.
const FIRST_PROBE: Duration = Duration::from_secs(5);
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(60);

/// Probes the store while it is failing, until `shutdown`.
pub(super) async fn watch_store(store: Arc<Store>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut backoff = FIRST_PROBE;
    loop {
        let failing = !store.health().writable();
        let wait = if failing { backoff } else { HEALTHY_CHECK };
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(wait) => {}
        }
        if !failing {
            backoff = FIRST_PROBE;
            continue;
        }
        let probing = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || probing.probe()).await {
            Ok(health) if health.writable() => backoff = FIRST_PROBE,
            _ => backoff = (backoff * 2).min(MAX_PROBE_INTERVAL),
        }
    }
}
