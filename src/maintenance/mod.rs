//! The scheduled-events engine: the live [`EventBook`], its persistence, the timer that starts
//! and completes events, guests' approvals, operator commands, "wait until a VM fetched
//! incarnation N", and imports from VM definitions. Hooks are in [`hooks`]; making events
//! from requests and definitions in `schedule`.
//!
//! Reads (guest GETs) load an immutable book from an `ArcSwap`; writes are serialized by one
//! mutex, persisted to the store, then published, all synchronously (callers use
//! `spawn_blocking`). No lock is held across an `.await`. A guest's approval is the one write
//! a guest request causes; it goes through [`Maintenance::approve`] like every other change.

mod config;
pub mod hooks;
mod schedule;
mod writes;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::Value;
use tokio::sync::Notify;

pub use crate::maintenance::config::MaintenanceConfig;
pub use crate::maintenance::hooks::{HookDelivery, HookSender};
pub use crate::maintenance::schedule::ScheduleRequest;
#[cfg(feature = "fuzzing")]
pub(crate) use crate::maintenance::schedule::event_from_request;

use crate::clock::Clock;
use crate::events::{self, Event, EventBook, EventsVersion, Input, Transition};
use crate::problem::Problem;
use crate::snapshot::Published;
use crate::store::{self, Store};

/// Why an events operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Events(#[from] events::Error),
    #[error("invalid event")]
    Invalid(Vec<Problem>),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// The events engine.
#[derive(Debug)]
pub struct Maintenance {
    store: Arc<Store>,
    /// For the names and existence of the VMs an operator schedules for.
    snapshot: Arc<Published>,
    clock: Arc<dyn Clock>,
    config: MaintenanceConfig,
    book: ArcSwap<EventBook>,
    /// Serializes writes; holds the events revision the book is at (`StoredEvents::revision`),
    /// which a write on a shared store expects to still be current.
    writes: Mutex<u64>,
    /// Highest incarnation each VM has fetched, for `wait_fetched`.
    fetched: Mutex<HashMap<String, u64>>,
    fetched_changed: Notify,
    /// Wakes the timer when the schedule changes.
    book_changed: Notify,
    activated: Mutex<HashSet<String>>,
    hooks: Option<HookSender>,
}

impl Maintenance {
    /// Loads persisted events. Run [`Maintenance::run_timer`] and the returned hook delivery
    /// (when a hook is configured) as tasks to drive them.
    pub fn load(
        store: Arc<Store>,
        snapshot: Arc<Published>,
        clock: Arc<dyn Clock>,
        config: MaintenanceConfig,
    ) -> Result<(Maintenance, Option<HookDelivery>), Error> {
        let stored = store.events()?;
        let (hooks, delivery) = match config.hook.clone() {
            Some(target) => {
                let (sender, delivery) = hooks::queue(target);
                (Some(sender), Some(delivery))
            }
            None => (None, None),
        };
        let engine = Maintenance {
            store,
            snapshot,
            clock,
            config,
            book: ArcSwap::from_pointee(EventBook::from_parts(
                stored.events,
                stored.incarnations,
                stored.imported,
            )),
            writes: Mutex::new(stored.revision),
            fetched: Mutex::new(HashMap::new()),
            fetched_changed: Notify::new(),
            book_changed: Notify::new(),
            activated: Mutex::new(HashSet::new()),
            hooks,
        };
        Ok((engine, delivery))
    }

    /// The hook queue, for other reporters (provisioning) to share; `None` without a hook.
    pub fn hook_sender(&self) -> Option<HookSender> {
        self.hooks.clone()
    }

    /// A VM's document at `version`, and its incarnation.
    pub fn document(&self, vm: &str, version: EventsVersion) -> (u64, Vec<u8>) {
        let book = self.book.load();
        let incarnation = book.incarnation(vm);
        (
            incarnation,
            events::render(incarnation, &book.for_vm(vm), version),
        )
    }

    /// How long this VM's first GET should wait (§6.6); zero after the first.
    pub fn activation_delay(&self, vm: &str) -> Duration {
        if self.config.first_call_delay.is_zero() {
            return Duration::ZERO;
        }
        let mut activated = self.activated.lock().unwrap_or_else(|p| p.into_inner());
        if activated.insert(vm.to_string()) {
            self.config.first_call_delay
        } else {
            Duration::ZERO
        }
    }

    /// Notes that `vm` received a document with `incarnation`.
    pub fn record_fetch(&self, vm: &str, incarnation: u64) {
        let mut fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        let seen = fetched.entry(vm.to_string()).or_insert(0);
        if incarnation > *seen {
            *seen = incarnation;
            drop(fetched);
            self.fetched_changed.notify_waiters();
        }
    }

    /// Waits until `vm` has fetched a document with an incarnation of at least `incarnation`.
    /// `Err` carries the highest fetched so far when `timeout` passes first.
    pub async fn wait_fetched(
        &self,
        vm: &str,
        incarnation: u64,
        timeout: Duration,
    ) -> Result<u64, u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.fetched_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let seen = self
                .fetched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(vm)
                .copied()
                .unwrap_or(0);
            if seen >= incarnation {
                return Ok(seen);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(seen);
            }
        }
    }

    /// Every live event.
    pub fn events(&self) -> Vec<Event> {
        self.book.load().events().cloned().collect()
    }

    pub fn event(&self, id: &str) -> Option<Event> {
        self.book.load().event(id).cloned()
    }

    /// The current incarnation of a VM's document.
    pub fn incarnation(&self, vm: &str) -> u64 {
        self.book.load().incarnation(vm)
    }

    /// A guest approves events (§6.4): every id must be an event the VM can see; approving one
    /// starts it for all its VMs. All or nothing.
    pub fn approve(&self, vm: &str, ids: &[String]) -> Result<(), Error> {
        let now = self.clock.now();
        self.change(|book| {
            let mut transitions = Vec::new();
            for id in ids {
                let visible = book.event(id).is_some_and(|e| e.targets.iter().any(|t| t == vm));
                if !visible {
                    return Err(events::Error::UnknownEvent(id.clone()).into());
                }
                transitions.extend(book.apply(id, Input::Approve, now)?);
            }
            Ok(transitions)
        })
        .map(|transitions| {
            for t in &transitions {
                tracing::info!(vm, event = %t.event.id, kind = ?t.kind, "guest approved a scheduled event");
            }
        })
    }

    /// Operator commands: start now, complete now, cancel.
    pub fn command(&self, id: &str, input: Input) -> Result<Option<Event>, Error> {
        let now = self.clock.now();
        let transitions =
            self.change(|book| Ok(book.apply(id, input, now)?.into_iter().collect()))?;
        Ok(transitions.into_iter().next().map(|t| t.event))
    }

    /// Schedules a new event from an operator's request.
    pub fn schedule(&self, request: ScheduleRequest) -> Result<Event, Error> {
        let now = self.clock.now();
        let event =
            schedule::event_from_request(request, |id| self.label_of(id), &self.config, now)
                .map_err(Error::Invalid)?;
        let transitions = self.change(|book| Ok(vec![book.schedule(event.clone(), now)?]))?;
        Ok(transitions.into_iter().next().map_or(event, |t| t.event))
    }

    /// The name of VM `id`, `None` if there is none. In a fleet an operator may schedule
    /// through any host for VMs other hosts serve: those are read from the store.
    fn label_of(&self, id: &str) -> Option<String> {
        if let Some(served) = self.snapshot.load().vm(id) {
            return Some(served.definition().label().to_string());
        }
        if !self.store.is_shared() {
            return None;
        }
        let stored = self.store.vm(id).ok()??;
        let vm = crate::definition::vm_from_json(&stored.definition, id).ok()?;
        Some(vm.label().to_string())
    }

    /// Imports the `scheduledEvents` of a VM definition: each entry is seeded once (recorded
    /// per VM and EventId in the store); after that the server owns its lifecycle, so a
    /// restart or a file edit never brings back a completed or canceled event.
    pub fn import(&self, vm_id: &str, vm_name: &str, defined: &[Value]) -> Result<usize, Error> {
        let now = self.clock.now();
        let mut imported = 0;
        for (index, value) in defined.iter().enumerate() {
            let Ok(event) = events::parse_defined_event(value) else {
                continue;
            };
            let event = schedule::event_from_definition(
                vm_id,
                vm_name,
                index,
                value,
                event,
                &self.config,
                now,
            );
            if self.book.load().was_imported(vm_id, &event.id) {
                continue;
            }
            let mut seeded = false;
            self.change(|book| {
                // Asked again here: in a fleet another host serving this VM may have just
                // imported it (the write is then redone on what that host stored).
                seeded = !book.was_imported(vm_id, &event.id);
                if !seeded {
                    return Ok(Vec::new());
                }
                book.mark_imported(vm_id, &event.id);
                // Several VMs listing one EventId share one event (§6.7).
                if book.event(&event.id).is_some() {
                    book.add_target(&event.id, vm_id, vm_name)?;
                    return Ok(Vec::new());
                }
                Ok(vec![book.schedule(event.clone(), now)?])
            })?;
            imported += usize::from(seeded);
        }
        Ok(imported)
    }

    /// Takes a deleted VM out of its events; events it alone was in are dropped.
    pub fn forget_vm(&self, vm: &str) -> Result<(), Error> {
        self.change(|book| {
            book.forget_vm(vm);
            Ok(Vec::new())
        })?;
        Ok(())
    }

    /// Applies every time-driven transition due now. Returns how many happened.
    /// In a fleet, only the events whose timer this host runs (those of the VMs it serves).
    pub fn advance(&self) -> Result<usize, Error> {
        let now = self.clock.now();
        let due = self
            .book
            .load()
            .next_deadline_where(|e| self.runs_timer_of(e))
            .is_some_and(|d| d <= now);
        if !due {
            return Ok(0);
        }
        Ok(self
            .change(|book| Ok(book.advance_where(now, |e| self.runs_timer_of(e))))?
            .len())
    }

    /// Whether this host moves `event` along in time. Alone, it runs every event's timer. In
    /// a fleet, the hosts serving the event's VMs do (the timer follows a moved VM to its new
    /// host); as transitions are conditional writes, when two hosts serve an event's VMs the
    /// second to try finds it done, so each transition still happens once.
    fn runs_timer_of(&self, event: &Event) -> bool {
        if !self.store.is_shared() {
            return true;
        }
        let snapshot = self.snapshot.load();
        event.targets.iter().any(|vm| snapshot.vm(vm).is_some())
    }

    fn report(&self, transition: &Transition) {
        if let Some(hooks) = &self.hooks {
            hooks.report(transition);
        }
    }

    /// Applies time-driven transitions as they come due, until `shutdown`. Not for a manual
    /// clock: who moves it calls [`Maintenance::advance`].
    pub async fn run_timer(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        // A failing store fails every retry (once a second): logged once, and its recovery.
        let mut failing = false;
        loop {
            let wait = self
                .book
                .load()
                .next_deadline_where(|e| self.runs_timer_of(e))
                .map(|d| d.duration_since(self.clock.now()).unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(3600))
                // Re-check at least every second: the clock may be moved by an operator.
                .min(Duration::from_secs(1));
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(wait) => {}
                () = self.book_changed.notified() => continue,
            }
            let engine = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || engine.advance()).await {
                Ok(Ok(_)) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("due scheduled-event transitions applied again");
                    }
                }
                Ok(Err(error)) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::error!(%error, "applying due scheduled-event transitions failed; retrying every second")
                    }
                }
                Err(error) => tracing::error!(%error, "the scheduled-events timer task failed"),
            }
        }
    }
}
