//! Provisioning state per VM: what each VM's guest agents reported to the WireServer (Ready,
//! NotReady with a reason, which agent, when), kept durably in the store, waited on by
//! operators (`azimds vm wait-ready`), and reported to the operator's hook.
//!
//! [`Provisioning::report`] is the one write path, and a guest's: a health report is written
//! (serialized, committed, then published) before the WireServer acknowledges it, like a
//! scheduled-event approval. Synchronous (store IO): callers use `spawn_blocking`. Repeated
//! identical reports are acknowledged without a write, and each VM's writes are rate-limited,
//! so a guest cannot turn the WireServer into a disk-write loop.
//!
//! What is seen often (goal-state fetches every 6 s, waagent's status every 6 s) is kept in
//! memory only: it is observation, not a report.

mod observed;
pub mod record;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::maintenance::hooks::{HookSender, rfc3339};
pub use crate::provisioning::observed::{AgentStatus, Observed};
pub use crate::provisioning::record::{Channel, Health, Record, Report, State};
use crate::store::{self, Store};
use crate::throttle::{RateLimit, TokenBucket};

/// Health reports a VM may have written per second (burst as large); past it, 429.
pub const REPORTS_PER_SECOND: u32 = 5;

/// Why a report or reset was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("too many health reports from this VM")]
    Throttled,
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// What a wait ended with, when it was not Ready.
#[derive(Debug)]
pub enum NotReady {
    /// The VM reported a provisioning failure.
    Failed(Record),
    /// The time ran out; the record as it stands.
    TimedOut(Record),
}

/// What recording a report did.
#[derive(Debug, PartialEq, Eq)]
pub struct Recorded {
    pub record: Record,
    /// `false` for a repeat of the latest report (acknowledged, not rewritten).
    pub written: bool,
}

/// The provisioning engine.
#[derive(Debug)]
pub struct Provisioning {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    records: Mutex<HashMap<String, Record>>,
    /// Serializes writes so the store's order and the records' order agree.
    writes: Mutex<()>,
    budgets: Mutex<HashMap<String, Arc<TokenBucket>>>,
    changed: Notify,
    hooks: Option<HookSender>,
    observed: Mutex<HashMap<String, Observed>>,
}

impl Provisioning {
    /// Loads every stored record. A record that does not decode is logged and treated as
    /// Pending (the next report replaces it).
    pub fn load(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        hooks: Option<HookSender>,
    ) -> Result<Provisioning, Error> {
        let mut records = HashMap::new();
        for (vm, bytes) in store.provisioning_records()? {
            match serde_json::from_slice::<Record>(&bytes) {
                Ok(record) => {
                    records.insert(vm, record);
                }
                Err(error) => {
                    tracing::warn!(%vm, %error, "stored provisioning record is unreadable; treated as Pending")
                }
            }
        }
        Ok(Provisioning {
            store,
            clock,
            records: Mutex::new(records),
            writes: Mutex::new(()),
            budgets: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            hooks,
            observed: Mutex::new(HashMap::new()),
        })
    }

    /// Reads VM `vm`'s record from the store again, for a VM that another host of a fleet
    /// served until now (it moved here), or that another host serves (the control API asks
    /// here). Returns the record, Pending if there is none. Blocking (store IO).
    pub fn refresh(&self, vm: &str) -> Result<Record, Error> {
        let _serialized = lock(&self.writes);
        let record = self.stored_record(vm)?;
        self.changed.notify_waiters();
        Ok(record)
    }

    /// The store's record of `vm` (Pending if none), also kept in memory. Call it holding
    /// `writes`.
    fn stored_record(&self, vm: &str) -> Result<Record, Error> {
        let stored = self.store.provisioning_record(vm)?;
        let record = stored.and_then(|bytes| match serde_json::from_slice::<Record>(&bytes) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::warn!(%vm, %error, "stored provisioning record is unreadable; treated as Pending");
                None
            }
        });
        let mut records = lock(&self.records);
        match &record {
            Some(record) => records.insert(vm.to_string(), record.clone()),
            None => records.remove(vm),
        };
        drop(records);
        Ok(record.unwrap_or_else(Record::pending))
    }

    /// VM `vm`'s record (Pending if nothing was reported).
    pub fn record(&self, vm: &str) -> Record {
        lock(&self.records)
            .get(vm)
            .cloned()
            .unwrap_or_else(Record::pending)
    }

    /// What was observed of VM `vm` since this server started.
    pub fn observed(&self, vm: &str) -> Observed {
        lock(&self.observed).get(vm).cloned().unwrap_or_default()
    }

    /// Records a health report from VM `vm`'s guest: durable when it returns `Ok`.
    pub fn report(&self, vm: &str, mut report: Report) -> Result<Recorded, Error> {
        report.at_ms = record::millis(self.clock.now());
        let _serialized = lock(&self.writes);
        let current = self.record(vm);
        if current.repeats(&report) {
            return Ok(Recorded {
                record: current,
                written: false,
            });
        }
        if !self.budget(vm).try_acquire(self.clock.now()) {
            return Err(Error::Throttled);
        }
        // In a fleet the store's record is the current one: the VM may have moved here
        // since this host last saw it, or an operator reset it through another host.
        let current = if self.store.is_shared() {
            self.stored_record(vm)?
        } else {
            current
        };
        let next = current.with(report);
        let bytes = serde_json::to_vec(&next).expect("a provisioning record serializes");
        self.store.put_provisioning(vm, &bytes)?;
        lock(&self.records).insert(vm.to_string(), next.clone());
        self.changed.notify_waiters();
        self.report_to_hook(vm, current.state, &next);
        Ok(Recorded {
            record: next,
            written: true,
        })
    }

    /// Forgets VM `vm`'s provisioning (the VM was deleted, or is to be provisioned again).
    /// Returns whether there was anything to forget.
    pub fn reset(&self, vm: &str) -> Result<bool, Error> {
        let _serialized = lock(&self.writes);
        let existed = self.store.delete_provisioning(vm)?;
        let had = lock(&self.records).remove(vm).is_some();
        lock(&self.observed).remove(vm);
        lock(&self.budgets).remove(vm);
        self.changed.notify_waiters();
        Ok(existed || had)
    }

    /// Waits until VM `vm` is Ready; a reported failure ends the wait at once.
    pub async fn wait_ready(&self, vm: &str, timeout: Duration) -> Result<Record, NotReady> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let record = self.record(vm);
            match record.state {
                State::Ready => return Ok(record),
                State::Failed => return Err(NotReady::Failed(record)),
                State::Pending | State::Provisioning => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(NotReady::TimedOut(self.record(vm)));
            }
        }
    }

    /// Notes that VM `vm` fetched its goal state now.
    pub fn note_goal_state(&self, vm: &str) {
        let now = self.clock.now();
        let mut observed = lock(&self.observed);
        let entry = observed.entry(vm.to_string()).or_default();
        entry.first_goal_state.get_or_insert(now);
        entry.last_goal_state = Some(now);
    }

    /// Keeps the latest guest-agent status VM `vm` uploaded (waagent's status blob, §6.1).
    pub fn note_agent_status(&self, vm: &str, status: AgentStatus) {
        lock(&self.observed)
            .entry(vm.to_string())
            .or_default()
            .agent_status = Some(status);
    }

    fn budget(&self, vm: &str) -> Arc<TokenBucket> {
        Arc::clone(
            lock(&self.budgets)
                .entry(vm.to_string())
                .or_insert_with(|| Arc::new(TokenBucket::new(RateLimit(REPORTS_PER_SECOND)))),
        )
    }

    fn report_to_hook(&self, vm: &str, previous: State, record: &Record) {
        if let Some(hooks) = &self.hooks {
            hooks.send(hook_message(vm, previous, record));
        }
    }
}

/// The JSON the operator's hook receives for one recorded report.
pub fn hook_message(vm: &str, previous: State, record: &Record) -> Value {
    let report = record.latest();
    json!({
        "transition": "provisioning-reported",
        "at": report.map(|r| rfc3339(r.at())),
        "provisioning": {
            "vm": vm,
            "state": record.state.as_str(),
            "previousState": previous.as_str(),
            "report": report.map(report_json),
        },
    })
}

/// A report as the control API and hooks show it.
pub fn report_json(report: &Report) -> Value {
    json!({
        "health": match report.health { Health::Ready => "Ready", Health::NotReady => "NotReady" },
        "subStatus": report.sub_status,
        "description": report.description,
        "agent": report.agent,
        "endpoint": report.channel.path(),
        "incarnation": report.incarnation,
        "containerId": report.container_id,
        "instanceId": report.instance_id,
        "at": rfc3339(report.at()),
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere mid-update of plain data.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
