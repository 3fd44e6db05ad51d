//! The control plane's write path: every change to the set of VMs goes through [`Registry`],
//! which validates it, makes it durable in the store, publishes the next snapshot to the
//! guest plane, then seeds the scheduled events the VM's definition lists (once per EventId)
//! and has the attested signer issue the VM's regional leaf, so no guest request waits for it.
//! A write is acknowledged (returns `Ok`) only after the store commit.
//!
//! Writes are serialized by one mutex, so the store's order and the snapshots' order agree.
//! Every method is synchronous (store IO): async callers run them on a blocking thread. The
//! mutex is a `std::sync::Mutex` and is never held across an `.await`.

mod fence;
mod follow;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex};

use serde_json::Value;

use crate::attested::Cloud;
use crate::definition::{self, DefinedVm, Definitions, Problem, VmDefinition, checked};
use crate::snapshot::{self, CallerMode, Snapshot};
use crate::state::Shared;
use crate::store::{self, Checked, Expect, FileMark, Origin, Store, StoredVm};
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
///
/// On a shared store (etcd, fleet mode) other hosts write too, so the snapshot follows the
/// store's watch instead (`follow.rs`): the watch is then the only publisher, in revision
/// order, and a local write returns once the watch has applied it.
#[derive(Debug)]
pub struct Registry {
    store: Arc<Store>,
    shared: Arc<Shared>,
    writes: Mutex<()>,
    /// On a shared store, `--host-name`: this host serves the VMs whose `host` is this name
    /// or none. `None` (the embedded store, one host): every VM is served.
    host: Option<String>,
    /// On a shared store: the newest store revision the watch has applied.
    followed: Option<Followed>,
}

/// The revision the watch has applied, and a condvar local writers wait on; the VMs moved
/// here that wait for the host they left (`fence.rs`).
#[derive(Debug, Default)]
struct Followed {
    applied: Mutex<u64>,
    moved: Condvar,
    held: Mutex<fence::HeldVms>,
}

impl Followed {
    fn held(&self) -> std::sync::MutexGuard<'_, fence::HeldVms> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether the azimds named `host` serves `vm`: its `host`, or every host when it has none;
/// with no host name (one host on its own store), every VM.
fn serves(host: Option<&str>, vm: &VmDefinition) -> bool {
    match (host, vm.host.as_deref()) {
        (Some(host), Some(assigned)) => host == assigned,
        _ => true,
    }
}

/// A stored record's checked VM: its checked form when this build's checker made it, else
/// its entry checked again (`rechecked` then says so). `Err` says why it is not served.
fn checked_vm(
    id: &str,
    record: &store::RecordView<'_>,
    fingerprint: u64,
    warnings: &mut Vec<String>,
) -> Result<(VmDefinition, bool), String> {
    if record.checked.by == fingerprint {
        match checked::decode(id, record.checked.form) {
            Ok(vm) => return Ok((vm, false)),
            Err(error) => warnings.push(format!(
                "stored VM {id:?}: its checked form is unreadable ({error}); checking its entry again"
            )),
        }
    }
    let entry = serde_json::from_slice(record.entry).unwrap_or(Value::Null);
    definition::vm_from_json(&entry, id)
        .map(|vm| (vm, true))
        .map_err(|problems| {
            format!(
                "stored VM {id:?} is not served: {}",
                problems
                    .iter()
                    .map(|p| format!("{}: {}", p.path, p.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
}

/// What [`Registry::load`] read: the snapshot, warnings, and the store revision it was read at.
#[derive(Debug)]
pub struct Loaded {
    pub snapshot: Snapshot,
    pub warnings: Vec<String>,
    /// Where a watch of the store starts (0 on the embedded store).
    pub revision: u64,
}

impl Registry {
    /// Reads every stored VM into a snapshot. A record that no longer validates is kept in the
    /// store but not served, and reported in the returned warnings.
    ///
    /// Each record carries its VM's checked form; a form made by this build's checker is used
    /// as it is, so a restart does not check every document again. Records checked by another
    /// build (an upgrade) are checked from their entries, and their new forms stored.
    pub fn load(
        store: &Store,
        mode: CallerMode,
        rate_limit: RateLimit,
        host: Option<&str>,
    ) -> Result<Loaded, Error> {
        let fingerprint = checked::fingerprint();
        let mut warnings = Vec::new();
        let mut vms = Vec::new();
        let mut rechecked = Vec::new();
        let revision = store.visit_records_at(|id, record| {
            match checked_vm(id, &record, fingerprint, &mut warnings) {
                Ok((vm, again)) => {
                    if again {
                        rechecked.push((id.to_string(), checked::encode(&vm)));
                    }
                    if serves(host, &vm) {
                        vms.push(vm);
                    }
                }
                Err(warning) => warnings.push(warning),
            }
        })?;
        if !rechecked.is_empty() {
            match store.refresh_checked(&rechecked, fingerprint) {
                Ok(()) => tracing::info!(
                    vms = rechecked.len(),
                    "stored VMs checked again (written by another azimds build); their checked forms are stored"
                ),
                Err(error) => warnings.push(format!(
                    "cannot store the checked forms of {} VMs (they are checked again at the next start): {error}",
                    rechecked.len()
                )),
            }
        }
        Ok(Loaded {
            snapshot: Snapshot::new(vms, mode, rate_limit)?,
            warnings,
            revision,
        })
    }

    /// A registry writing to `store` (shared with the events engine) and publishing to
    /// `shared`'s snapshot.
    /// `host` is `--host-name` on a shared store (see [`Registry::load`]); `revision` the one
    /// [`Registry::load`] read at.
    pub fn new(
        store: Arc<Store>,
        shared: Arc<Shared>,
        host: Option<String>,
        revision: u64,
    ) -> Registry {
        let followed = store.is_shared().then(|| Followed {
            applied: Mutex::new(revision),
            moved: Condvar::new(),
            held: Mutex::default(),
        });
        Registry {
            store,
            shared,
            writes: Mutex::new(()),
            host,
            followed,
        }
    }

    /// `--host-name` on a shared store; `None` alone.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The store it writes to (for its commit-latency metrics).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
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
    /// changes commit in one transaction; on any error nothing changes. An entry whose stored
    /// bytes are the file's is not written again, so re-applying an unchanged file writes
    /// nothing.
    pub fn reconcile(&self, definitions: Definitions) -> Result<Reconciled, Error> {
        let _serialized = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        self.reconcile_serialized(definitions)
    }

    /// [`Registry::reconcile`] for a definitions file, then records the file as applied
    /// (`mark`), under the same write lock: a next start given the same bytes, with no VM
    /// written in between, knows the store already holds what they give (see
    /// [`Registry::file_still_applied`]).
    pub fn reconcile_file(
        &self,
        definitions: Definitions,
        mark: FileMark,
    ) -> Result<Reconciled, Error> {
        let _serialized = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let report = self.reconcile_serialized(definitions)?;
        self.store.mark_file_applied(mark)?;
        Ok(report)
    }

    /// Whether the store holds what the file `mark` names gave when it was last applied, with
    /// no VM written since.
    pub fn file_still_applied(&self, mark: FileMark) -> Result<bool, Error> {
        Ok(self.store.file_still_applied(mark)?)
    }

    fn reconcile_serialized(&self, definitions: Definitions) -> Result<Reconciled, Error> {
        let listed: HashMap<&str, usize> = definitions
            .vms
            .iter()
            .enumerate()
            .map(|(i, defined)| (defined.vm.id.as_str(), i))
            .collect();
        // One pass over the records, comparing bytes: nothing is decoded.
        let mut unchanged = vec![false; definitions.vms.len()];
        let mut report = Reconciled::default();
        self.store
            .visit_records(|id, record| match listed.get(id) {
                Some(&i) => {
                    unchanged[i] =
                        record.origin == Origin::File && record.entry == &*definitions.vms[i].entry;
                }
                None if matches!(record.origin, Origin::File | Origin::Demo) => {
                    report.deleted.push(id.to_string());
                }
                None => {}
            })?;
        drop(listed);
        let signers: BTreeSet<_> = definitions
            .vms
            .iter()
            .map(|d| attested_signer_of(&d.vm))
            .collect();
        report.unchanged = unchanged.iter().filter(|&&u| u).count();
        if report.unchanged == definitions.vms.len() && report.deleted.is_empty() {
            self.prepare_attested(signers);
            return Ok(report);
        }
        let mut next = (*self.shared.snapshot()).clone();
        let by = checked::fingerprint();
        self.store.batch(|batch| {
            for id in &report.deleted {
                batch.delete(id)?;
                next.delete_vm(id);
            }
            for (DefinedVm { vm, entry }, unchanged) in definitions.vms.into_iter().zip(unchanged) {
                if unchanged {
                    continue;
                }
                // Encoded, written and dropped one VM at a time; the checked VM moves into the
                // snapshot: a 100k-VM file is not held twice.
                let form = checked::encode(&vm);
                batch.put(&vm.id, Origin::File, &entry, Checked { by, form: &form })?;
                report.written.push(vm.id.clone());
                if serves(self.host.as_deref(), &vm) {
                    next.put_vm(vm)?;
                } else {
                    next.delete_vm(&vm.id);
                }
            }
            Ok::<_, Error>(())
        })?;
        self.publish(next);
        self.forget_events_of(&report.deleted);
        self.import_events_of(&report.written);
        self.prepare_attested(signers);
        Ok(report)
    }

    /// Seeds the demo VM into an empty store (zero-config start).
    pub fn seed_demo(&self) -> Result<bool, Error> {
        let _serialized = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        if self.store.vm_count()? > 0 {
            return Ok(false);
        }
        for DefinedVm { vm, entry } in definition::demo().vms {
            self.commit(vm, &entry, Origin::Demo, Expect::Absent)?;
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

    /// Publishes `next` after a local write; on a shared store, waits for the watch to have
    /// applied the write instead (the watch publishes, in revision order).
    fn publish(&self, next: Snapshot) {
        match &self.followed {
            None => self.shared.published().publish(next),
            Some(followed) => self.wait_for_watch(followed),
        }
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
        self.commit(vm, &written, origin, expect)
    }

    /// Commits a checked VM and its entry as written (compact JSON), then publishes it and
    /// imports its events. Caller holds `writes`.
    fn commit(
        &self,
        vm: VmDefinition,
        entry: &[u8],
        origin: Origin,
        expect: Expect,
    ) -> Result<(StoredVm, bool), Error> {
        let id = vm.id.clone();
        let signer = attested_signer_of(&vm);
        let form = checked::encode(&vm);
        let next = if serves(self.host.as_deref(), &vm) {
            self.shared.snapshot().with_vm(vm)?
        } else {
            // Served by another host (or moved there): not checked against this host's VMs.
            self.shared.snapshot().without_vm(&id)
        };
        let checked = Checked {
            by: checked::fingerprint(),
            form: &form,
        };
        let (stored, created) = self.store.put_vm(&id, origin, entry, checked, expect)?;
        self.publish(next);
        self.import_events_of(std::slice::from_ref(&id));
        self.prepare_attested([signer]);
        Ok((stored, created))
    }

    /// Issues the attested leaves for these (cloud, location)s now. The VM write is already
    /// durable; a failure is logged, and the VM's first attested request issues it instead.
    fn prepare_attested(&self, signers: impl IntoIterator<Item = (Cloud, String)>) {
        let now = self.shared.clock().now();
        for (cloud, location) in signers {
            if let Err(error) = self.shared.attested().prepare(cloud, &location, now) {
                tracing::warn!(%location, %error, "cannot issue the attested signing certificate ahead of use");
            }
        }
    }
}

/// The cloud and location a VM's attested documents are signed for (spec §7.5), read from its
/// checked instance document: a member left out is the schema's default, which names the
/// public cloud and no region.
fn attested_signer_of(vm: &VmDefinition) -> (Cloud, String) {
    let text = |key: &str| vm.instance.string_at(&["compute", key]).unwrap_or_default();
    (
        Cloud::from_az_environment(&text("azEnvironment")),
        text("location"),
    )
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
