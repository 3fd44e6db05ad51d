//! Fleet mode's fencing handover: a VM moved here from another host (one write changing its
//! `host`) is held back, not served, until the host it left has applied the move (its
//! `<prefix>progress/<host>` reached the move's revision) or is gone (its progress key
//! vanished with its lease). So the old host stops serving it before this one starts, never
//! after. A VM without `host` (every host serves it) and a VM created are not fenced.
//!
//! Only the follower task calls these (after applying a batch, and when progress changes),
//! so the held VMs and the published snapshot change in one order.

use std::collections::BTreeMap;

use crate::definition::VmDefinition;
use crate::registry::Registry;

/// A VM assigned to this host, held until `from` applied `revision`.
#[derive(Debug)]
pub(super) struct Held {
    /// Its newest definition (a write while it is held replaces it; the fence stays).
    pub(super) vm: VmDefinition,
    /// The host it moved from; `None`: unknown (found by a resync), so every other host's
    /// progress must reach `revision`.
    pub(super) from: Option<String>,
    /// The revision of the move (for `from: None`, of the record as the resync read it).
    pub(super) revision: u64,
}

/// Whether every host's `progress` (as just read) lets host `host` serve a VM that moved
/// from `from` at `revision`.
fn released(
    from: Option<&str>,
    revision: u64,
    host: Option<&str>,
    progress: &BTreeMap<String, u64>,
) -> bool {
    match from {
        // Absent: the old host's lease expired (it stopped, or lost etcd for longer than
        // the TTL), or it never ran.
        Some(from) => progress.get(from).is_none_or(|&at| at >= revision),
        None => progress
            .iter()
            .filter(|(name, _)| Some(name.as_str()) != host)
            .all(|(_, &at)| at >= revision),
    }
}

/// The VMs held back, by id.
pub(super) type HeldVms = BTreeMap<String, Held>;

impl Registry {
    /// Whether VMs are held back waiting for other hosts' progress.
    pub fn holds_moves(&self) -> bool {
        self.followed
            .as_ref()
            .is_some_and(|followed| !followed.held().is_empty())
    }

    /// Serves the held VMs whose old host's progress (`progress`, every live host's, as just
    /// read) reached their move, in one publish. Returns how many are still held.
    pub fn release_moves(&self, progress: &BTreeMap<String, u64>) -> usize {
        let Some(followed) = &self.followed else {
            return 0;
        };
        let mut held = followed.held();
        let ready: Vec<String> = held
            .iter()
            .filter(|(_, vm)| {
                released(
                    vm.from.as_deref(),
                    vm.revision,
                    self.host.as_deref(),
                    progress,
                )
            })
            .map(|(id, _)| id.clone())
            .collect();
        if ready.is_empty() {
            return held.len();
        }
        let mut next = (*self.shared.snapshot()).clone();
        let mut with_events = Vec::new();
        for id in &ready {
            let Some(Held { vm, from, revision }) = held.remove(id) else {
                continue;
            };
            let lists_events = vm.scheduled_events.is_some();
            match next.put_vm(vm) {
                Ok(()) => {
                    tracing::info!(vm = %id, from = from.as_deref().unwrap_or("any host"), revision, "serving a VM moved here: the host it left has applied the move, or is gone");
                    if lists_events {
                        with_events.push(id.clone());
                    }
                }
                Err(error) => {
                    tracing::warn!(vm = %id, %error, "a VM assigned to this host cannot be served");
                }
            }
        }
        let left = held.len();
        self.shared.published().publish(next);
        drop(held);
        self.import_events_of(&with_events);
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_is_released_by_its_old_hosts_progress_or_its_absence() {
        let progress: BTreeMap<String, u64> = [("a".to_string(), 10), ("b".to_string(), 20)].into();
        let me = Some("b");
        assert!(
            !released(Some("a"), 11, me, &progress),
            "a has not applied 11"
        );
        assert!(released(Some("a"), 10, me, &progress));
        assert!(released(Some("gone"), 99, me, &progress), "no lease: gone");
        // Unknown old host (a resync): every other host, not this one.
        assert!(released(None, 10, me, &progress));
        assert!(!released(None, 11, me, &progress));
        assert!(released(
            None,
            11,
            Some("a"),
            &[("a".to_string(), 0)].into()
        ));
    }
}
