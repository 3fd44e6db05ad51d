//! Changing the events: an edit of a copy of the book, persisted, then published. On a shared
//! store (a fleet) other hosts change the same events, so a write is conditional on the events
//! revision this host last read or wrote: when another host came first, this host reads the
//! fleet's events again and redoes the edit on them (`store/etcd/events.rs`). The watch of the
//! events ([`Maintenance::reload`]) brings other hosts' writes in between.

use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use crate::events::{Event, EventBook, Transition};
use crate::maintenance::{Error, Maintenance};
use crate::store;

/// How many times an edit is redone after other hosts' writes came first before giving up
/// with a 503 (each try reads the events again; at human-paced event changes one is plenty).
const ATTEMPTS: usize = 16;

impl Maintenance {
    /// Runs `edit` on a copy of the book; persists and publishes the result if it succeeds.
    /// Transitions are reported (hooks) only once their write is stored, by the host that
    /// stored them.
    pub(super) fn change(
        &self,
        mut edit: impl FnMut(&mut EventBook) -> Result<Vec<Transition>, Error>,
    ) -> Result<Vec<Transition>, Error> {
        let mut revision = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 1..=ATTEMPTS {
            let old = self.book.load_full();
            let mut new = (*old).clone();
            let transitions = edit(&mut new)?;
            if new != *old {
                match self.persist(&old, &new, *revision) {
                    Ok(written) => *revision = written,
                    Err(store::Error::PreconditionFailed { .. }) => {
                        tracing::debug!(
                            attempt,
                            "another host changed the scheduled events first; redoing the change on theirs"
                        );
                        // A little jitter so that hosts racing for the same change do not
                        // collide again in lockstep.
                        std::thread::sleep(Duration::from_millis(fastrand::u64(
                            0..=5 * attempt as u64,
                        )));
                        self.read_again(&mut revision)?;
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                }
                self.book.store(Arc::new(new));
                self.book_changed.notify_one();
            }
            for transition in &transitions {
                self.report(transition);
            }
            return Ok(transitions);
        }
        Err(store::Error::Unavailable {
            reason: format!(
                "other hosts kept changing the fleet's scheduled events during this change ({ATTEMPTS} tries); try again"
            ),
        }
        .into())
    }

    /// Reads the events from the store again when another host changed them (the store's
    /// events watch says so), and serves them from then on. Blocking (store reads).
    pub fn reload(&self) -> Result<bool, Error> {
        let mut revision = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        self.read_again(&mut revision)
    }

    /// Replaces the book with the store's, unless it is at the revision already held.
    fn read_again(&self, revision: &mut MutexGuard<'_, u64>) -> Result<bool, Error> {
        let stored = self.store.events()?;
        if stored.revision == **revision {
            return Ok(false);
        }
        **revision = stored.revision;
        self.book.store(Arc::new(EventBook::from_parts(
            stored.events,
            stored.incarnations,
            stored.imported,
        )));
        self.book_changed.notify_one();
        Ok(true)
    }

    /// Writes what changed from `old` to `new`, expecting the events to be at `revision`
    /// (on a shared store). Returns the new events revision.
    fn persist(
        &self,
        old: &EventBook,
        new: &EventBook,
        revision: u64,
    ) -> Result<u64, store::Error> {
        let written: Vec<&Event> = new
            .events()
            .filter(|e| old.event(&e.id) != Some(*e))
            .collect();
        let removed: Vec<&str> = old
            .events()
            .filter(|e| new.event(&e.id).is_none())
            .map(|e| e.id.as_str())
            .collect();
        let incarnations: Vec<(&str, u64)> = new
            .incarnations()
            .iter()
            .filter(|(vm, n)| old.incarnations().get(*vm) != Some(n))
            .map(|(vm, n)| (vm.as_str(), *n))
            .collect();
        let imported: Vec<&str> = new
            .imported()
            .difference(old.imported())
            .map(String::as_str)
            .collect();
        self.store
            .write_events(Some(revision), &written, &removed, &incarnations, &imported)
    }
}
