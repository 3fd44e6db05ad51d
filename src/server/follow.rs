//! Fleet mode: follows the shared store's watch into the registry's snapshot for as long as
//! the server lives. A broken watch (etcd away) marks the store failing, so readiness and
//! status say the host serves stale state since then; the store's watch re-establishes itself
//! from the last revision; a compaction makes the registry read everything again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::registry::Registry;
use crate::state::Shared;
use crate::store::{ProgressReporter, Store, WatchEvent};

/// After a resync failed (etcd away again), how long before the next attempt.
const RESYNC_RETRY: Duration = Duration::from_secs(1);

/// How often VMs held back for a move are checked again without a progress change (the
/// progress watch broken): a backstop, not the usual path.
const RECHECK_HELD: Duration = Duration::from_secs(1);

/// Started by `open` before anything writes (a local write waits for the watch to apply it);
/// aborted when the server stops. `progress` tells the fleet what this host applied.
pub(super) fn start(
    registry: Arc<Registry>,
    store: Arc<Store>,
    after: u64,
    progress: Option<ProgressReporter>,
) -> Follower {
    Follower(tokio::spawn(follow(registry, store, after, progress)))
}

/// The task following the store; aborted when dropped.
#[derive(Debug)]
pub(super) struct Follower(tokio::task::JoinHandle<()>);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the follower waits for next.
enum Next {
    Watch(Option<WatchEvent>),
    /// A host's progress changed, or it is time to look again: VMs may be released.
    Progress,
}

async fn follow(
    registry: Arc<Registry>,
    store: Arc<Store>,
    mut after: u64,
    progress: Option<ProgressReporter>,
) {
    let mut acks = store.watch_progress();
    loop {
        let Some(mut events) = store.watch_vms(after) else {
            return;
        };
        loop {
            let holding = registry.holds_moves();
            let next = tokio::select! {
                event = events.recv() => Next::Watch(event),
                Some(()) = progress_changed(&mut acks), if holding => Next::Progress,
                () = tokio::time::sleep(RECHECK_HELD), if holding => Next::Progress,
            };
            let event = match next {
                Next::Watch(Some(event)) => event,
                Next::Watch(None) => break,
                Next::Progress => {
                    release(&registry, &store).await;
                    continue;
                }
            };
            match event {
                WatchEvent::Changes { changes, revision } => {
                    after = revision;
                    let applying = Arc::clone(&registry);
                    let Ok(handed_over) = tokio::task::spawn_blocking(move || {
                        applying.apply_changes(changes, revision)
                    })
                    .await
                    else {
                        return;
                    };
                    if let Some(progress) = &progress {
                        progress.applied(revision, handed_over);
                    }
                    if registry.holds_moves() {
                        release(&registry, &store).await;
                    }
                }
                WatchEvent::Interrupted(reason) => {
                    tracing::warn!(%reason, after, "the store watch broke; guests are served the last known state until it resumes");
                    // Marks the store failing (readiness 503, "failing since") until etcd
                    // answers again; the server's store probe clears it.
                    let probing = Arc::clone(&store);
                    let _ = tokio::task::spawn_blocking(move || probing.probe()).await;
                }
                WatchEvent::Resumed => {
                    tracing::info!(after, "the store watch resumed");
                    // Clears the failure at once rather than at the store probe's next try.
                    let probing = Arc::clone(&store);
                    let _ = tokio::task::spawn_blocking(move || probing.probe()).await;
                }
                WatchEvent::Compacted => {
                    tracing::warn!(
                        after,
                        "the store watch fell behind a compaction; reading every VM again"
                    );
                    let resyncing = Arc::clone(&registry);
                    match tokio::task::spawn_blocking(move || resyncing.resync()).await {
                        Ok(Ok(revision)) => {
                            after = revision;
                            // What it dropped may be what another host waits for.
                            if let Some(progress) = &progress {
                                progress.applied(revision, true);
                            }
                        }
                        Ok(Err(error)) => {
                            tracing::warn!(%error, "cannot resynchronise yet");
                            tokio::time::sleep(RESYNC_RETRY).await;
                        }
                        Err(_) => return,
                    }
                    break;
                }
            }
        }
    }
}

/// The next progress change; never, without a progress watch (the embedded store).
async fn progress_changed(acks: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match acks {
        Some(acks) => acks.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads every host's progress and serves the held VMs it releases. A failed read (etcd
/// away) keeps them held: the next change or recheck tries again.
async fn release(registry: &Arc<Registry>, store: &Arc<Store>) {
    let (registry, store) = (Arc::clone(registry), Arc::clone(store));
    let _ = tokio::task::spawn_blocking(move || match store.progress() {
        Ok(progress) => {
            registry.release_moves(&progress);
        }
        Err(error) => {
            tracing::debug!(%error, "cannot read the hosts' progress; the moved VMs stay held");
        }
    })
    .await;
}

/// Follows the fleet's signing keys: whenever a key record changes (a rotation, a renewal or
/// a new regional leaf on any host), the token issuer and the attested signer read theirs
/// again, so this host signs tokens with the fleet's current key, publishes the same JWKS,
/// and signs attested documents with the fleet's current generation of leaves. One watch
/// covers both collections; each reload finds out whether its own keys changed.
pub(super) fn follow_keys(shared: Arc<Shared>, mut changes: mpsc::Receiver<()>) -> Follower {
    Follower(tokio::spawn(async move {
        while changes.recv().await.is_some() {
            let shared = Arc::clone(&shared);
            let reloaded = tokio::task::spawn_blocking(move || {
                let now = shared.clock().now();
                (
                    shared.issuer().reload(now),
                    shared
                        .attested()
                        .reload(now)
                        .map(|changed| changed.then(|| shared.attested().generation())),
                )
            })
            .await;
            let Ok((tokens, attested)) = reloaded else {
                return;
            };
            match tokens {
                Ok(true) => tracing::info!("token signing keys changed in the store; reloaded"),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot reload the token signing keys; keeping the current ones")
                }
            }
            match attested {
                Ok(Some(generation)) => tracing::info!(
                    %generation,
                    "attested signing certificates changed in the store; reloaded"
                ),
                Ok(None) => {}
                Err(error) => tracing::warn!(
                    %error,
                    "cannot reload the attested signing certificates; keeping the current ones"
                ),
            }
        }
    }))
}

/// Follows the fleet's scheduled events: whenever any host wrote them (a guest's approval
/// there, its timer starting an event, an operator's command), this host reads them again,
/// so its guests and its control API see the fleet's one state.
pub(super) fn follow_events(shared: Arc<Shared>, mut changes: mpsc::Receiver<()>) -> Follower {
    Follower(tokio::spawn(async move {
        while changes.recv().await.is_some() {
            let shared = Arc::clone(&shared);
            match tokio::task::spawn_blocking(move || shared.events().reload()).await {
                Ok(Ok(true)) => tracing::debug!("scheduled events changed in the store; reloaded"),
                Ok(Ok(false)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot read the scheduled events again; serving the last known ones")
                }
                Err(_) => return,
            }
        }
    }))
}
