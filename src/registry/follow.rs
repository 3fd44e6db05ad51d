//! Fleet mode: the snapshot follows the shared store. Every VM record change any host makes
//! arrives on the store's watch, in revision order; this host serves the VMs assigned to it
//! (their `host`, or none) and drops the others, so moving a VM is one write: the old host
//! drops it as it applies that revision, and the new one serves it once the old one says it
//! has (`fence.rs`). The watch is the only
//! publisher on a shared store, and a local write returns once the watch applied it, so the
//! writer reads its own write.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::definition::VmDefinition;
use crate::definition::checked;
use crate::registry::fence::{Held, HeldVms};
use crate::registry::{Followed, Registry, checked_vm, serves};
use crate::snapshot::Snapshot;
use crate::store::{self, VmChange};

/// How long a local write waits for the watch to apply it. It is durable already; past this
/// it is acknowledged anyway and the guest plane catches up when the watch does.
const WATCH_WAIT: Duration = Duration::from_secs(5);

impl Registry {
    /// Applies changes from the watch, up to store revision `revision`, and publishes once.
    /// A VM moved here from another host is held back (`fence.rs`) rather than served.
    /// Returns whether the batch handed a VM of this host over (moved away, deleted): this
    /// host's progress is then written at once, since the VM's new host waits for it.
    pub fn apply_changes(&self, changes: Vec<VmChange>, revision: u64) -> bool {
        let fingerprint = checked::fingerprint();
        let host = self.host.as_deref();
        let mut next = (*self.shared.snapshot()).clone();
        let mut warnings = Vec::new();
        let mut with_events = Vec::new();
        let mut handed_over = false;
        let mut held = self.followed.as_ref().map(Followed::held);
        for change in changes {
            let vm = change.record.as_ref().and_then(|record| {
                checked_vm(
                    &change.id,
                    &record.view(change.revision),
                    fingerprint,
                    &mut warnings,
                )
                .map_err(|warning| warnings.push(warning))
                .ok()
            });
            match vm {
                Some((vm, _)) if serves(host, &vm) => {
                    if let Some(held) = held.as_deref_mut()
                        && let Some(fenced) = fence(held, &next, host, &change, vm.clone())
                    {
                        tracing::info!(vm = %change.id, from = fenced, revision = change.revision, "a VM moved here; serving it once the host it left has applied the move");
                        continue;
                    }
                    let id = vm.id.clone();
                    let lists_events = vm.scheduled_events.is_some();
                    match next.put_vm(vm) {
                        Ok(()) if lists_events => with_events.push(id),
                        Ok(()) => {}
                        Err(error) => {
                            tracing::warn!(vm = %id, %error, "a VM assigned to this host cannot be served");
                            next.delete_vm(&id);
                        }
                    }
                }
                _ => {
                    // Served here, or named this host: its new host (if any) waits for
                    // this one's progress.
                    handed_over |= next.vm(&change.id).is_some()
                        || (host.is_some() && change.previous_host.as_deref() == host);
                    if let Some(held) = held.as_deref_mut() {
                        held.remove(&change.id);
                    }
                    next.delete_vm(&change.id);
                }
            }
        }
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        self.shared.published().publish(next);
        drop(held);
        self.applied(revision);
        // The host that serves a VM seeds the events its definition lists, whichever host
        // it was written through (seeding is recorded, so it happens once fleet-wide).
        self.import_events_of(&with_events);
        handed_over
    }

    /// Reads every record again and serves exactly those assigned here (after the watch lost
    /// revisions to a compaction): one publish, so no mix of old and new is ever served.
    /// Held moves stay held; a VM that became this host's in the revisions the watch lost
    /// (its previous host unknown) is held until every other host's progress reached it.
    /// Returns the revision read at, where the watch goes on.
    pub fn resync(&self) -> Result<u64, store::Error> {
        let fingerprint = checked::fingerprint();
        let host = self.host.as_deref();
        let before = self.followed.as_ref().map_or(0, |followed| {
            *followed.applied.lock().unwrap_or_else(|p| p.into_inner())
        });
        let mut next = (*self.shared.snapshot()).clone();
        let mut kept = BTreeSet::new();
        let mut warnings = Vec::new();
        let mut held = self.followed.as_ref().map(Followed::held);
        let mut still_held = BTreeSet::new();
        let revision = self.store.visit_records_at(|id, record| {
            match checked_vm(id, &record, fingerprint, &mut warnings) {
                Ok((vm, _)) if serves(host, &vm) => {
                    if let Some(held) = held.as_deref_mut() {
                        let known = next.vm(id).is_some();
                        if let Some(waiting) = held.get_mut(id) {
                            waiting.vm = vm;
                            still_held.insert(id.to_string());
                            return;
                        }
                        if !known && vm.host.is_some() && record.revision > before {
                            held.insert(
                                id.to_string(),
                                Held {
                                    vm,
                                    from: None,
                                    revision: record.revision,
                                },
                            );
                            still_held.insert(id.to_string());
                            return;
                        }
                    }
                    kept.insert(id.to_string());
                    if let Err(error) = next.put_vm(vm) {
                        warnings.push(format!("VM {id:?} cannot be served: {error}"));
                    }
                }
                Ok(_) => {}
                Err(warning) => warnings.push(warning),
            }
        })?;
        if let Some(held) = held.as_deref_mut() {
            held.retain(|id, _| still_held.contains(id));
        }
        let gone: Vec<String> = next
            .vms()
            .map(|vm| vm.definition().id.clone())
            .filter(|id| !kept.contains(id))
            .collect();
        for id in &gone {
            next.delete_vm(id);
        }
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        self.shared.published().publish(next);
        drop(held);
        self.applied(revision);
        tracing::info!(
            revision,
            served = kept.len(),
            held = still_held.len(),
            "resynchronised from the store"
        );
        Ok(revision)
    }

    fn applied(&self, revision: u64) {
        if let Some(followed) = &self.followed {
            let mut applied = followed.applied.lock().unwrap_or_else(|p| p.into_inner());
            *applied = (*applied).max(revision);
            followed.moved.notify_all();
        }
    }

    /// Blocks until the watch applied the local write just made (the newest VM write this
    /// process committed), or [`WATCH_WAIT`] passed. Not the cluster's current revision:
    /// other keys' writes (hosts' progress, events) raise it and never reach the VM watch.
    pub(super) fn wait_for_watch(&self, followed: &Followed) {
        let target = self.store.vm_written();
        let deadline = Instant::now() + WATCH_WAIT;
        let mut applied = followed.applied.lock().unwrap_or_else(|p| p.into_inner());
        while *applied < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    target,
                    applied = *applied,
                    "the store watch is behind; the write is durable and served once it catches up"
                );
                return;
            }
            applied = followed
                .moved
                .wait_timeout(applied, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Holds `vm` back if `change` moved it here from another host: it names this host, this
/// host does not serve it yet, and its previous record named another one. A VM already held
/// stays held with its new definition (the fence is the move's). Returns the host it left.
fn fence(
    held: &mut HeldVms,
    next: &Snapshot,
    host: Option<&str>,
    change: &VmChange,
    vm: VmDefinition,
) -> Option<String> {
    if let Some(waiting) = held.get_mut(&change.id) {
        waiting.vm = vm;
        return waiting.from.clone().or_else(|| Some("any host".into()));
    }
    let from = change.previous_host.as_deref()?;
    if vm.host.is_none() || Some(from) == host || next.vm(&change.id).is_some() {
        return None;
    }
    held.insert(
        change.id.clone(),
        Held {
            vm,
            from: Some(from.to_string()),
            revision: change.revision,
        },
    );
    Some(from.to_string())
}
