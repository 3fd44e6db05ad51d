//! What a watch of the store's VM records delivers (etcd: every host follows the records its
//! fleet shares). The embedded store has no watch: one process owns it.

use crate::store::{Checked, Origin, RecordView};

/// A VM record as it came off a watch, owned.
#[derive(Debug, Clone)]
pub struct OwnedRecord {
    pub origin: Origin,
    pub entry: Vec<u8>,
    pub checked_by: u64,
    pub form: Vec<u8>,
}

impl OwnedRecord {
    /// Borrowed, as a read of the store lends it.
    pub fn view(&self, revision: u64) -> RecordView<'_> {
        RecordView {
            revision,
            origin: self.origin,
            entry: &self.entry,
            checked: Checked {
                by: self.checked_by,
                form: &self.form,
            },
        }
    }
}

/// One VM record written (`Some`) or deleted (`None`) at `revision`.
#[derive(Debug, Clone)]
pub struct VmChange {
    pub id: String,
    pub revision: u64,
    pub record: Option<OwnedRecord>,
    /// The `host` the record named before this change: `None` when it was created, named no
    /// host, or etcd no longer had the previous value (compacted). A host gaining a VM from
    /// another waits for that one's progress (`registry/fence.rs`).
    pub previous_host: Option<String>,
}

/// What a watch reports, in revision order.
#[derive(Debug)]
pub enum WatchEvent {
    /// Changes of one revision or more, in order; `revision` is the newest the watch has seen.
    Changes {
        changes: Vec<VmChange>,
        revision: u64,
    },
    /// The revisions after the last one seen were compacted away: the watcher must read
    /// everything again, then watch from there.
    Compacted,
    /// The watch broke (etcd unreachable); it is being re-established from the last revision.
    /// Reported once per outage, not at every retry.
    Interrupted(String),
    /// The watch is established again after an interruption, from the last revision seen.
    Resumed,
}
