//! The control plane's write path: every change to the set of VMs goes through [`Registry`],
//! which validates it, makes it durable in the store, publishes the next snapshot to the
//! guest plane, then seeds the scheduled events the VM's definition lists (once per EventId).
//! A write is acknowledged (returns `Ok`) only after the store commit.
//!
//! Writes are serialized by one mutex, so the store's order and the snapshots' order agree.
//! Every method is synchronous (store IO): async callers run them on a blocking thread. The
//! mutex is a `std::sync::Mutex` and is never held across an `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::definition::{self, DefinedVm, Definitions, Problem};
use crate::snapshot::{self, CallerMode, Snapshot};
use crate::state::Shared;
use crate::store::{self, Change, Expect, Origin, Store, StoredVm};
use crate::throttle::RateLimit;

/// Largest VM entry accepted, as compact JSON. Azure caps userData at 64 KiB of base64; the rest
/// of a document is a few KiB, so this leaves ample room while bounding memory per VM.
pub const MAX_VM_BYTES: usize = 256 * 1024;

/// Why a control-plane change was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the VM definition is invalid")]
    Invalid(Vec<Problem>),
    #[error("no VM with id {0:?}")]
    NotFound(String),
    #[error(
        "the VM does not match the precondition (it changed since it was read, or exists / does not exist)"
    )]
    PreconditionFailed {
        /// The VM's current revision, if it exists.
        current: Option<u64>,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("the VM definition is {size} bytes; the limit is {MAX_VM_BYTES}")]
    TooLarge { size: usize },
    #[error(transparent)]
    Store(store::Error),
}

impl From<store::Error> for Error {
    fn from(error: store::Error) -> Self {
        match error {
            store::Error::PreconditionFailed { current } => Error::PreconditionFailed { current },
            other => Error::Store(other),
        }
    }
}

impl From<snapshot::Error> for Error {
    fn from(error: snapshot::Error) -> Self {
        Error::Conflict(error.to_string())
    }
}

/// What reconciling a definition file changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub written: Vec<String>,
    pub deleted: Vec<String>,
    pub unchanged: usize,
}

/// Owns the store's VM records and publishes them to the guest plane.
#[derive(Debug)]
pub struct Registry {
    store: Arc<Store>,
    shared: Arc<Shared>,
    writes: Mutex<()>,
}

impl Registry {
    /// Reads every stored VM into a snapshot. A record that no longer validates is kept in the
    /// store but not served, and reported in the returned warnings.
    pub fn load(
        store: &Store,
        mode: CallerMode,
        rate_limit: RateLimit,
    ) -> Result<(Snapshot, Vec<String>), Error> {
        let mut warnings = Vec::new();
        let mut vms = Vec::new();
        store.visit_vms(|stored| {
            match definition::vm_from_json(&stored.definition, &stored.id) {
                Ok(vm) => vms.push(vm),
                Err(problems) => warnings.push(format!(
                    "stored VM {:?} is not served: {}",
                    stored.id,
                    problems
                        .iter()
                        .map(|p| format!("{}: {}", p.path, p.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                )),
            }
        })?;
        Ok((Snapshot::new(vms, mode, rate_limit)?, warnings))
    }

    /// A registry writing to `store` (shared with the events engine) and publishing to
    /// `shared`'s snapshot.
    pub fn new(store: Arc<Store>, shared: Arc<Shared>) -> Registry {
        Registry {
            store,
            shared,
            writes: Mutex::new(()),
        }
    }

    /// Every stored VM, in id order.
    pub fn list(&self) -> Result<Vec<StoredVm>, Error> {
        Ok(self.store.vms()?)
    }

    pub fn get(&self, id: &str) -> Result<StoredVm, Error> {
        self.store
            .vm(id)?
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// Creates or replaces VM `id` with `entry`. Returns the record and whether it was created.
    pub fn put(&self, id: &str, entry: &Value, expect: Expect) -> Result<(StoredVm, bool), Error> {
        let _serialized = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        self.write(id, entry, Origin::Api, expect)
    }

    /// Applies an RFC 7396 merge patch to VM `id`'s stored entry.
    pub fn patch(&self, id: &str, patch: &Value, expect: Expect) -> Result<StoredVm, Error> {
        let _serialized = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.get(id)?;
        if let Expect::Revision(revision) = expect
            && revision != current.revision
        {
            return Err(Error::PreconditionFailed {
                current: Some(current.revision),
            });
        }
        let mut entry = current.definition.clone();
        merge_patch(&mut entry, patch);
        // Writes are serialized, so the revision read above is still current.
        let (stored, _) =
            self.write(id, &entry, Origin::Api, Expect::Revision(current.revision))?;
        Ok(stored)
    }

    /// Deletes VM `id`.
    pub fn delete(&self, id: &str, expect: Expect) -> Result<(), Error> {
        let _serialized = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let expect = match expect {
            Expect::Anything => Expect::Present,
            other => other,
        };
        match self.store.delete_vm(id, expect) {
            Ok(_) => {}
            Err(store::Error::PreconditionFailed { current: None }) => {
                return Err(Error::NotFound(id.to_string()));
            }
            Err(error) => return Err(error.into()),
        }
        self.publish(self.shared.snapshot().without_vm(id));
        self.forget_events_of(&[id.to_string()]);
        Ok(())
    }

    /// Takes deleted VMs out of their scheduled events and drops their provisioning records
    /// (a VM created again under the same id provisions anew). The VM deletion is already
    /// durable; a failure here only leaves state no guest can reach, so it is logged.
    fn forget_events_of(&self, ids: &[String]) {
        for id in ids {
            if let Err(error) = self.shared.events().forget_vm(id) {
                tracing::error!(vm = %id, %error, "cannot remove a deleted VM from its scheduled events");
            }
            if let Err(error) = self.shared.provisioning().reset(id) {
                tracing::error!(vm = %id, %error, "cannot drop a deleted VM's provisioning record");
            }
        }
    }

    /// Makes the store match a definition file: the file's VMs are written (marked as owned by
    /// the file), file-owned VMs it no longer lists are deleted, and the demo VM gives way.
    /// VMs created through the API are left alone unless the file lists the same id. All
    /// changes commit in one transaction; on any error nothing changes.
    pub fn reconcile(&self, definitions: Definitions) -> Result<Reconciled, Error> {
        let _serialized = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let stored: BTreeMap<String, StoredVm> = self
            .store
            .vms()?
            .into_iter()
            .map(|vm| (vm.id.clone(), vm))
            .collect();
        let mut report = Reconciled::default();
        let mut changes = Vec::new();
        let mut next = (*self.shared.snapshot()).clone();
        let listed: std::collections::BTreeSet<String> =
            definitions.vms.iter().map(|d| d.vm.id.clone()).collect();
        for (id, vm) in &stored {
            let owned = matches!(vm.origin, Origin::File | Origin::Demo);
            if owned && !listed.contains(id) {
                changes.push(Change::Delete { id: id.clone() });
                next = next.without_vm(id);
                report.deleted.push(id.clone());
            }
        }
        for DefinedVm { vm, entry } in definitions.vms {
            let unchanged = stored
                .get(&vm.id)
                .is_some_and(|s| s.origin == Origin::File && s.definition == entry);
            if unchanged {
                report.unchanged += 1;
                continue;
            }
            // The entry moves into the store's batch, the checked VM into the snapshot: a
            // 100k-VM file is not held twice.
            changes.push(Change::Put {
                id: vm.id.clone(),
                origin: Origin::File,
                definition: entry,
            });
            report.written.push(vm.id.clone());
            next = next.with_vm(vm)?;
        }
        if !changes.is_empty() {
            self.store.apply(&changes)?;
            self.publish(next);
            self.forget_events_of(&report.deleted);
            self.import_events_of(&report.written);
        }
        Ok(report)
    }

    /// Seeds the demo VM into an empty store (zero-config start).
    pub fn seed_demo(&self) -> Result<bool, Error> {
        let _serialized = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        if !self.store.vms()?.is_empty() {
            return Ok(false);
        }
        for DefinedVm { vm, entry } in definition::demo().vms {
            self.write(&vm.id, &entry, Origin::Demo, Expect::Absent)?;
        }
        Ok(true)
    }

    /// Seeds the scheduled events every served VM's definition lists that the engine has not
    /// imported yet (at start: the store may hold VMs written before their events were).
    pub fn import_all_events(&self) {
        let ids: Vec<String> = self
            .shared
            .snapshot()
            .vms()
            .filter(|vm| vm.definition().scheduled_events.is_some())
            .map(|vm| vm.definition().id.clone())
            .collect();
        self.import_events_of(&ids);
    }

    /// Seeds the definition events of VMs just written. The VM write is already durable; a
    /// failure here is logged, and retried at the next start by [`Registry::import_all_events`].
    fn import_events_of(&self, ids: &[String]) {
        let snapshot = self.shared.snapshot();
        for id in ids {
            let Some(vm) = snapshot.vm(id) else { continue };
            let definition = vm.definition();
            let Some(list) = definition
                .scheduled_events
                .as_ref()
                .and_then(Value::as_array)
            else {
                continue;
            };
            match self.shared.events().import(id, definition.label(), list) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(vm = %id, events = n, "scheduled events imported from the VM definition")
                }
                Err(error) => {
                    tracing::error!(vm = %id, %error, "cannot import the VM's scheduled events")
                }
            }
        }
    }

    fn publish(&self, next: Snapshot) {
        self.shared.published().publish(next);
    }

    /// Validate, check against the current snapshot, commit, publish, import the VM's events.
    /// Returns the record and whether it was created. Caller holds `writes`.
    fn write(
        &self,
        id: &str,
        entry: &Value,
        origin: Origin,
        expect: Expect,
    ) -> Result<(StoredVm, bool), Error> {
        let size = serde_json::to_vec(entry).map_or(0, |bytes| bytes.len());
        if size > MAX_VM_BYTES {
            return Err(Error::TooLarge { size });
        }
        if let Some(Value::String(body_id)) = entry.get("id")
            && body_id != id
        {
            return Err(Error::Invalid(vec![Problem {
                path: "id".into(),
                message: format!("{body_id:?} does not match the VM id in the URL ({id:?})"),
            }]));
        }
        let vm = definition::vm_from_json(entry, id).map_err(Error::Invalid)?;
        let written = definition::written_entry(entry.clone(), id);
        let next = self.shared.snapshot().with_vm(vm)?;
        let (stored, created) = self.store.put_vm(id, origin, &written, expect)?;
        self.publish(next);
        self.import_events_of(&[id.to_string()]);
        Ok((stored, created))
    }
}

/// RFC 7396 JSON merge patch: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The examples of RFC 7396 appendix A.
    #[test]
    fn merge_patch_follows_rfc_7396() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "patch {patch}");
        }
    }
}
