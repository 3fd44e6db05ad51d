//! Fleet mode's fencing handover: what this host tells the fleet it has applied. Each host
//! keeps `<prefix>progress/<host>` (on etcd: attached to a lease it keeps alive) holding the
//! newest store revision its published snapshot reflects; a host gaining a VM moved from
//! another serves it once the other's progress reached the move (docs/fleet.md, "Moving a
//! VM"). The embedded store has no fleet, so no progress.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// This host's side: told every revision the snapshot applied, it writes the newest at once
/// when the batch handed a VM over (`urgent`), else with the lease's next keep-alive.
#[derive(Debug)]
pub struct ProgressReporter {
    urgent: watch::Sender<u64>,
    latest: Arc<AtomicU64>,
}

/// What the writer task reads from a [`ProgressReporter`]. It ends when the reporter is
/// dropped (the server stopping).
#[cfg_attr(not(feature = "fleet"), allow(dead_code))]
pub(super) struct ProgressFeed {
    pub(super) urgent: watch::Receiver<u64>,
    pub(super) latest: Arc<AtomicU64>,
}

impl ProgressReporter {
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub(super) fn new(applied: u64) -> (ProgressReporter, ProgressFeed) {
        let (urgent, receiver) = watch::channel(applied);
        let latest = Arc::new(AtomicU64::new(applied));
        let feed = ProgressFeed {
            urgent: receiver,
            latest: Arc::clone(&latest),
        };
        (ProgressReporter { urgent, latest }, feed)
    }

    /// The snapshot now reflects every revision up to `revision` (call after publishing).
    pub fn applied(&self, revision: u64, urgent: bool) {
        self.latest.fetch_max(revision, Ordering::SeqCst);
        if urgent {
            self.urgent.send_if_modified(|written| {
                let newer = *written < revision;
                *written = (*written).max(revision);
                newer
            });
        }
    }
}

impl ProgressFeed {
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub(super) fn latest(&self) -> u64 {
        self.latest.load(Ordering::SeqCst)
    }
}
