//! The durable store: VM records with revisions, conditional writes and batches; scheduled
//! events, incarnations and import records; provisioning records. Two backends behind one
//! [`Store`]: an embedded redb database in the data directory (`embedded.rs`, the default), and
//! an etcd v3 cluster shared by a fleet of hosts (`etcd/`, cargo feature `fleet`,
//! `--store etcd://…`; docs/fleet.md). Both pass one suite of store semantics (`semantics.rs`).
//!
//! Why redb for one host: pure Rust (no C toolchain), ACID transactions whose commit returns only after an
//! fsync, copy-on-write pages so a crash (kill -9, power loss) at any moment leaves either the
//! old or the new state and never a torn file, a stable on-disk format, and ~250 µs per durable
//! commit here. The guest plane never touches it: it serves from the in-memory snapshot.
//!
//! Synchronous by design: callers run it on a blocking thread.
//!
//! Failures (issue 13): a file that exists but is empty or not a redb file is refused at open
//! (`file`); an I/O error such as a full disk makes writes [`Error::Unavailable`] (never
//! acknowledged) and the store reopens itself, so writes work again once there is room
//! (`health`).

mod applied;
mod embedded;
#[cfg(feature = "fleet")]
mod etcd;
mod file;
mod health;
pub mod kek;
pub(crate) mod location;
mod migrations;
mod progress;
mod provisioning;
mod record;
pub mod sealed_keys;
#[cfg(test)]
mod semantics;
mod watch;

use std::path::Path;

use redb::TableDefinition;
use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::Event;
use crate::telemetry::histogram::Histogram;

pub use applied::FileMark;
pub use health::{StoreFailure, StoreHealth};
pub use kek::Kek;
pub use location::{EtcdAuth, EtcdOptions, EtcdTls, StoreLocation};
pub use progress::ProgressReporter;
pub use record::{Checked, RecordView};
pub use sealed_keys::{ATTESTED_KEYS, IDENTITY_KEYS, SealedKeyStore};
pub use watch::{OwnedRecord, VmChange, WatchEvent};

use embedded::{Redb, RedbBatch};

/// VM id → the VM record (`record.rs`: checksum, revision, origin, entry, checked form).
const VMS: TableDefinition<&str, &[u8]> = TableDefinition::new("vms");
/// Small counters: the schema version, the revision sequence.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Scheduled-event id → JSON-encoded `events::Event`.
const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");
/// VM id → its scheduled-events DocumentIncarnation.
const INCARNATIONS: TableDefinition<&str, u64> = TableDefinition::new("incarnations");
/// `<vm id>/<event id>` of definition events already imported (value unused).
const IMPORTED_EVENTS: TableDefinition<&str, u64> = TableDefinition::new("imported_events");

const NEXT_REVISION: &str = "next_revision";

/// redb's page cache (its default is 1 GiB). Everything served is in memory already, and a
/// start reads every record once: a large cache would only keep a second copy of the store in
/// the process (measured: 1.3 GB RSS at 100k VMs with the default, see BENCHMARKS.md). The
/// kernel's page cache still holds the file.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Why a store operation failed. Messages do not repeat the store's path: whoever reports
/// one (a start-up error, the log) names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Database(#[source] Box<redb::Error>),
    /// The store cannot commit (a full disk, an I/O error): nothing was changed or
    /// acknowledged. It reopens itself and recovers once the cause is gone.
    #[error("the store cannot write: {reason}")]
    Unavailable { reason: String },
    #[error(
        "the file is empty (0 bytes), so it is not a store azimds wrote; starting on it would silently serve no VMs. Restore it from a backup, or delete it to start with an empty store"
    )]
    Empty,
    #[error(
        "the file is not an azimds store (it does not begin with redb's file signature). Restore the store from a backup, or move the file aside to start with an empty store"
    )]
    NotAStore,
    #[error("the store file is gone")]
    Missing,
    #[error(
        "the store file is corrupted ({0}). Restore it from a backup, or move it aside to start with an empty store"
    )]
    Damaged(String),
    #[error("store record {key:?} is corrupted: {message}")]
    Corrupt { key: String, message: String },
    #[error("store schema version {found} is newer than this azimds understands ({supported})")]
    TooNew { found: u64, supported: u64 },
    #[error("precondition failed")]
    PreconditionFailed { current: Option<u64> },
    /// A batch its caller gave up (its own error is returned instead); never returned.
    #[error("the batch was abandoned")]
    Abandoned,
    /// More changes than one etcd transaction may hold: nothing was written.
    #[error(
        "{changes} changes in one transaction are more than etcd allows ({limit}, etcd's --max-txn-ops); nothing was written. Write fewer at a time, or raise both etcd's --max-txn-ops and azimds' --etcd-max-txn-ops"
    )]
    BatchTooLarge { changes: usize, limit: usize },
    /// `--store etcd://…` on a build without the `fleet` feature.
    #[error(
        "this azimds was built without fleet mode (the etcd store); build it with `cargo build --release --features fleet`"
    )]
    FleetNotBuilt,
    /// etcd settings that no retry can fix (an unreadable TLS file).
    #[error("{reason}")]
    Settings { reason: String },
    /// Key records on the embedded store, which keeps keys in files (`<data>/keys`).
    #[error("the embedded store keeps signing keys in files, not in the store")]
    NoKeyRecords,
}

fn db<E: Into<redb::Error>>(error: E) -> Error {
    match error.into() {
        redb::Error::Corrupted(detail) => Error::Damaged(detail),
        other => Error::Database(Box::new(other)),
    }
}

/// Scheduled-event state as stored.
#[derive(Debug, Default)]
pub struct StoredEvents {
    pub events: Vec<Event>,
    pub incarnations: HashMap<String, u64>,
    pub imported: BTreeSet<String>,
    /// The revision of this state, for a conditional [`Store::write_events`] (always 0 on the
    /// embedded store, which has one writer).
    pub revision: u64,
}

/// Where a VM definition came from: decides what reconciling a `--vms` file may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Written through the control API (or the CLI).
    Api,
    /// Owned by the `--vms` file: reconciling the file updates and deletes it.
    File,
    /// The built-in demo VM seeded into an empty store.
    Demo,
}

/// A VM record, its entry read as JSON (what the control API returns and patches).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredVm {
    #[serde(skip)]
    pub id: String,
    /// Unique across the store and never reused, so it is a safe ETag.
    pub revision: u64,
    pub origin: Origin,
    /// The VM entry as written (the control API returns and patches this).
    pub definition: Value,
}

/// What a write expects to find, for conditional writes (`If-Match` / `If-None-Match`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Anything,
    Absent,
    Present,
    Revision(u64),
}

/// The changes of one transaction ([`Store::batch`]): all of them commit, or none.
pub struct Batch<'b, 't> {
    inner: BatchInner<'b, 't>,
}

enum BatchInner<'b, 't> {
    Redb(&'b mut RedbBatch<'t>),
    #[cfg(feature = "fleet")]
    Etcd(&'b mut etcd::EtcdBatch),
}

impl Batch<'_, '_> {
    /// Writes VM `id` (a new revision, known once the batch commits).
    pub fn put(
        &mut self,
        id: &str,
        origin: Origin,
        entry: &[u8],
        checked: Checked<'_>,
    ) -> Result<(), Error> {
        match &mut self.inner {
            BatchInner::Redb(batch) => batch.put(id, origin, entry, checked).map(drop),
            #[cfg(feature = "fleet")]
            BatchInner::Etcd(batch) => {
                batch.put(id, origin, entry, checked);
                Ok(())
            }
        }
    }

    /// Deletes VM `id` (nothing if there is none).
    pub fn delete(&mut self, id: &str) -> Result<(), Error> {
        match &mut self.inner {
            BatchInner::Redb(batch) => batch.delete(id).map(drop),
            #[cfg(feature = "fleet")]
            BatchInner::Etcd(batch) => {
                batch.delete(id);
                Ok(())
            }
        }
    }
}

/// The opened store, on one of its backends.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Redb(Redb),
    /// Boxed: the client is a few kB, and there is one store per process.
    #[cfg(feature = "fleet")]
    Etcd(Box<etcd::Etcd>),
}

/// Runs the same call on whichever backend the store has.
macro_rules! on_backend {
    ($store:expr, $backend:ident => $call:expr) => {
        match &$store.backend {
            Backend::Redb($backend) => $call,
            #[cfg(feature = "fleet")]
            Backend::Etcd($backend) => $call,
        }
    };
}

impl Store {
    /// Opens (or creates) the embedded store file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, Error> {
        Ok(Store {
            backend: Backend::Redb(Redb::open(path)?),
        })
    }

    /// Connects to the etcd cluster `options` names and checks that it answers.
    #[cfg(feature = "fleet")]
    pub fn open_etcd(options: &EtcdOptions) -> Result<Store, Error> {
        Ok(Store {
            backend: Backend::Etcd(Box::new(etcd::Etcd::connect(options)?)),
        })
    }

    /// Without the `fleet` feature there is no etcd backend: a clear error, not a panic.
    #[cfg(not(feature = "fleet"))]
    pub fn open_etcd(_options: &EtcdOptions) -> Result<Store, Error> {
        Err(Error::FleetNotBuilt)
    }

    /// Whether `mark` names the definitions file applied last, over a VM table nothing has
    /// written since: a start can then skip parsing the file. Always `false` on etcd, where
    /// other hosts write.
    pub fn file_still_applied(&self, mark: FileMark) -> Result<bool, Error> {
        match &self.backend {
            Backend::Redb(b) => b.file_still_applied(mark),
            #[cfg(feature = "fleet")]
            Backend::Etcd(_) => Ok(false),
        }
    }

    /// Records `mark` as the file just applied, with the VM table as it is now (nothing on
    /// etcd).
    pub fn mark_file_applied(&self, mark: FileMark) -> Result<(), Error> {
        match &self.backend {
            Backend::Redb(b) => b.mark_file_applied(mark),
            #[cfg(feature = "fleet")]
            Backend::Etcd(_) => Ok(()),
        }
    }

    /// Which backend this is, for logs and status: `redb` or `etcd`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Redb(_) => "redb",
            #[cfg(feature = "fleet")]
            Backend::Etcd(_) => "etcd",
        }
    }

    /// How long commits have taken.
    pub fn commit_times(&self) -> &Histogram {
        on_backend!(self, b => b.commit_times())
    }

    /// Whether the store can commit now (the last commit, or reopening it, succeeded).
    pub fn health(&self) -> StoreHealth {
        on_backend!(self, b => b.health())
    }

    /// When the store is failing: tries it again (reopening redb, reaching etcd), so it
    /// recovers when the cause is gone even if nothing writes. Cheap when it is healthy.
    /// Returns the health after.
    pub fn probe(&self) -> StoreHealth {
        on_backend!(self, b => b.probe())
    }

    /// Every VM record, in id order.
    pub fn vms(&self) -> Result<Vec<StoredVm>, Error> {
        let mut out = Vec::new();
        let mut failed = None;
        self.visit_records(|id, record| match stored_vm(id, &record) {
            Ok(vm) => out.push(vm),
            Err(error) => failed = failed.take().or(Some(error)),
        })?;
        failed.map_or(Ok(out), Err)
    }

    /// Hands every VM record to `visit`, in id order: loading 100k VMs holds no record longer
    /// than `visit` does (redb lends them from the table; etcd reads them a page at a time, all
    /// pages at one revision). A damaged record stops the visit.
    pub fn visit_records(&self, visit: impl FnMut(&str, RecordView<'_>)) -> Result<(), Error> {
        self.visit_records_at(visit).map(drop)
    }

    /// [`Store::visit_records`], returning the store revision the records were read at (a
    /// watch from there misses nothing and repeats nothing); 0 on the embedded store.
    pub fn visit_records_at(&self, visit: impl FnMut(&str, RecordView<'_>)) -> Result<u64, Error> {
        match &self.backend {
            Backend::Redb(b) => b.visit_records(visit).map(|()| 0),
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => b.visit_records(visit),
        }
    }

    /// Whether other processes write this store too (etcd): a server then follows its changes
    /// ([`Store::watch_vms`]) instead of publishing its own writes.
    pub fn is_shared(&self) -> bool {
        self.backend_name() != "redb"
    }

    /// The store-wide revision now (etcd's); 0 on the embedded store.
    pub fn revision(&self) -> Result<u64, Error> {
        match &self.backend {
            Backend::Redb(_) => Ok(0),
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => b.revision(),
        }
    }

    /// The revision of the newest VM write this process committed, what a local write waits
    /// for the watch to reach; 0 on the embedded store (no watch).
    pub fn vm_written(&self) -> u64 {
        match &self.backend {
            Backend::Redb(_) => 0,
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => b.vm_written(),
        }
    }

    /// Every VM record change after revision `after`, in order, until the receiver is
    /// dropped; `None` on the embedded store, which only this process writes.
    pub fn watch_vms(&self, after: u64) -> Option<tokio::sync::mpsc::Receiver<WatchEvent>> {
        match &self.backend {
            Backend::Redb(_) => {
                let _ = after;
                None
            }
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => Some(b.watch_vms(after)),
        }
    }

    /// One VM record.
    pub fn vm(&self, id: &str) -> Result<Option<StoredVm>, Error> {
        on_backend!(self, b => b.vm(id))
    }

    /// Writes one VM if `expect` holds; returns the new record and whether it was created.
    /// `entry` is the entry as written (compact JSON). Durable when it returns.
    pub fn put_vm(
        &self,
        id: &str,
        origin: Origin,
        entry: &[u8],
        checked: Checked<'_>,
        expect: Expect,
    ) -> Result<(StoredVm, bool), Error> {
        let (revision, created) =
            on_backend!(self, b => b.put_vm(id, origin, entry, checked, expect))?;
        let record = RecordView {
            revision,
            origin,
            entry,
            checked,
        };
        Ok((stored_vm(id, &record)?, created))
    }

    /// How many VMs the store holds.
    pub fn vm_count(&self) -> Result<u64, Error> {
        on_backend!(self, b => b.vm_count())
    }

    /// Deletes one VM if `expect` holds; `Ok(false)` if there was none (and none was expected).
    pub fn delete_vm(&self, id: &str, expect: Expect) -> Result<bool, Error> {
        on_backend!(self, b => b.delete_vm(id, expect))
    }

    /// The most changes one transaction may hold: etcd's (`--etcd-max-txn-ops`); the
    /// embedded store has no such limit.
    pub fn changes_per_transaction(&self) -> usize {
        match &self.backend {
            Backend::Redb(_) => usize::MAX,
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => b.max_txn_ops(),
        }
    }

    /// Runs `fill` on one transaction and commits it if `fill` succeeds: every change is
    /// durable when this returns `Ok`, and none is made if `fill` fails (or the commit does).
    pub fn batch<T, E: From<Error>>(
        &self,
        fill: impl FnOnce(&mut Batch<'_, '_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match &self.backend {
            Backend::Redb(b) => b.batch(|batch| {
                fill(&mut Batch {
                    inner: BatchInner::Redb(batch),
                })
            }),
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => b.batch(|batch| {
                fill(&mut Batch {
                    inner: BatchInner::Etcd(batch),
                })
            }),
        }
    }

    /// Replaces the checked forms of VMs whose entries were checked again (by a newer azimds),
    /// keeping each record's revision, origin and entry. Records that changed meanwhile are
    /// left. (etcd: nothing is rewritten; see `etcd::Etcd::refresh_checked`.)
    pub fn refresh_checked(&self, forms: &[(String, Vec<u8>)], by: u64) -> Result<(), Error> {
        on_backend!(self, b => b.refresh_checked(forms, by))
    }

    /// Every stored scheduled event, every VM's DocumentIncarnation, and the import record.
    pub fn events(&self) -> Result<StoredEvents, Error> {
        on_backend!(self, b => b.events())
    }

    /// Records scheduled-event changes in one transaction: events written or removed, and the
    /// incarnations that moved. Returns the new events revision.
    ///
    /// `expect` is the revision the writer's events were read at ([`StoredEvents::revision`],
    /// or what the writer's last write returned); `None` writes whatever is there. On a shared
    /// store, where other hosts write events too, a write whose `expect` is no longer current
    /// is refused whole ([`Error::PreconditionFailed`]): read again and redo the change. The
    /// embedded store has one writer, so it never refuses and returns 0.
    pub fn write_events(
        &self,
        expect: Option<u64>,
        written: &[&Event],
        removed: &[&str],
        incarnations: &[(&str, u64)],
        imported: &[&str],
    ) -> Result<u64, Error> {
        match &self.backend {
            Backend::Redb(b) => {
                // This process is the only writer: there is nothing to compare `expect` with.
                let _ = expect;
                b.write_events(written, removed, incarnations, imported)
                    .map(|()| 0)
            }
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => b.write_events(expect, written, removed, incarnations, imported),
        }
    }

    /// Every VM's provisioning record, in VM id order.
    pub fn provisioning_records(&self) -> Result<Vec<(String, Vec<u8>)>, Error> {
        on_backend!(self, b => b.provisioning_records())
    }

    /// VM `vm`'s provisioning record, if it has one.
    pub fn provisioning_record(&self, vm: &str) -> Result<Option<Vec<u8>>, Error> {
        on_backend!(self, b => b.provisioning_record(vm))
    }

    /// Replaces VM `vm`'s provisioning record. Durable when it returns.
    pub fn put_provisioning(&self, vm: &str, record: &[u8]) -> Result<(), Error> {
        on_backend!(self, b => b.put_provisioning(vm, record))
    }

    /// Every sealed key record of `collection` (`identity`, `attested`): (name, value).
    /// Shared stores only: the embedded store keeps keys in files.
    pub fn key_records(&self, collection: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
        match &self.backend {
            Backend::Redb(_) => {
                let _ = collection;
                Err(Error::NoKeyRecords)
            }
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => b.key_records(collection),
        }
    }

    /// Creates or replaces one key record. Durable when it returns.
    pub fn put_key_record(&self, collection: &str, name: &str, value: &[u8]) -> Result<(), Error> {
        match &self.backend {
            Backend::Redb(_) => {
                let _ = (collection, name, value);
                Err(Error::NoKeyRecords)
            }
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => b.put_key_record(collection, name, value),
        }
    }

    /// Writes one key record unless one of that name exists; `Ok(false)` then.
    pub fn create_key_record(
        &self,
        collection: &str,
        name: &str,
        value: &[u8],
    ) -> Result<bool, Error> {
        match &self.backend {
            Backend::Redb(_) => {
                let _ = (collection, name, value);
                Err(Error::NoKeyRecords)
            }
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => b.create_key_record(collection, name, value),
        }
    }

    /// Removes one key record (a missing one is not an error).
    pub fn delete_key_record(&self, collection: &str, name: &str) -> Result<(), Error> {
        match &self.backend {
            Backend::Redb(_) => {
                let _ = (collection, name);
                Err(Error::NoKeyRecords)
            }
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => b.delete_key_record(collection, name),
        }
    }

    /// A message whenever another host (or this one) changed a key record; `None` on the
    /// embedded store.
    pub fn watch_keys(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        match &self.backend {
            Backend::Redb(_) => None,
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => Some(b.watch_keys()),
        }
    }

    /// Fleet mode: writes `host`'s progress (`applied`) under a lease kept alive from now on,
    /// before returning; `None` on the embedded store (no fleet).
    pub fn start_progress(
        &self,
        host: &str,
        applied: u64,
    ) -> Result<Option<ProgressReporter>, Error> {
        match &self.backend {
            Backend::Redb(_) => {
                let _ = (host, applied);
                Ok(None)
            }
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => b.start_progress(host, applied).map(Some),
        }
    }

    /// Every live host's progress (host name → the newest revision its snapshot applied);
    /// empty on the embedded store.
    pub fn progress(&self) -> Result<std::collections::BTreeMap<String, u64>, Error> {
        match &self.backend {
            Backend::Redb(_) => Ok(std::collections::BTreeMap::new()),
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => b.progress(),
        }
    }

    /// A message whenever a host's progress changed or vanished; `None` on the embedded store.
    pub fn watch_progress(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        match &self.backend {
            Backend::Redb(_) => None,
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => Some(b.watch_progress()),
        }
    }

    /// A message whenever any host (this one too) wrote scheduled events; `None` on the
    /// embedded store, where this process is the only writer.
    pub fn watch_events(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        match &self.backend {
            Backend::Redb(_) => None,
            #[cfg(feature = "fleet")]
            Backend::Etcd(b) => Some(b.watch_events()),
        }
    }

    /// Removes VM `vm`'s provisioning record; `Ok(false)` if it had none.
    pub fn delete_provisioning(&self, vm: &str) -> Result<bool, Error> {
        on_backend!(self, b => b.delete_provisioning(vm))
    }
}

/// A record with its entry read as JSON.
fn stored_vm(id: &str, record: &RecordView<'_>) -> Result<StoredVm, Error> {
    let definition = serde_json::from_slice(record.entry).map_err(|e| Error::Corrupt {
        key: id.to_string(),
        message: format!("its entry is not JSON: {e}"),
    })?;
    Ok(StoredVm {
        id: id.to_string(),
        revision: record.revision,
        origin: record.origin,
        definition,
    })
}

fn check(expect: Expect, current: Option<u64>) -> Result<(), Error> {
    let holds = match expect {
        Expect::Anything => true,
        Expect::Absent => current.is_none(),
        Expect::Present => current.is_some(),
        Expect::Revision(revision) => current == Some(revision),
    };
    if holds {
        Ok(())
    } else {
        Err(Error::PreconditionFailed { current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store(name: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("azimds-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("azimds.redb");
        (Store::open(&path).unwrap(), dir)
    }

    fn put(
        store: &Store,
        id: &str,
        entry: &str,
        expect: Expect,
    ) -> Result<(StoredVm, bool), Error> {
        let form = [7, 7];
        let checked = Checked { by: 1, form: &form };
        store.put_vm(id, Origin::Api, entry.as_bytes(), checked, expect)
    }

    #[test]
    fn writes_survive_reopening_and_revisions_never_repeat() {
        let (store, dir) = temp_store("reopen");
        let (a1, created) = put(&store, "a", r#"{"x":1}"#, Expect::Absent).unwrap();
        assert!(created);
        assert_eq!(a1.definition, serde_json::json!({"x": 1}));
        let (a2, created) = put(&store, "a", r#"{"x":2}"#, Expect::Revision(a1.revision)).unwrap();
        assert!(!created, "a replacement is not a creation");
        assert!(a2.revision > a1.revision);
        assert!(store.delete_vm("a", Expect::Revision(a2.revision)).unwrap());
        let (a3, created) = put(&store, "a", r#"{"x":3}"#, Expect::Absent).unwrap();
        assert!(created, "recreated after a delete");
        assert!(
            a3.revision > a2.revision,
            "a recreated VM never reuses an ETag"
        );
        drop(store);
        let store = Store::open(&dir.join("azimds.redb")).unwrap();
        assert_eq!(store.vm("a").unwrap(), Some(a3));
        let mut seen = Vec::new();
        store
            .visit_records(|id, record| {
                seen.push((
                    id.to_string(),
                    record.entry.to_vec(),
                    record.checked.form.to_vec(),
                ))
            })
            .unwrap();
        assert_eq!(seen, [("a".into(), br#"{"x":3}"#.to_vec(), vec![7, 7])]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    // Conditional writes and batches: `semantics.rs`, run on both backends.

    #[test]
    fn refreshing_checked_forms_keeps_revisions_and_entries() {
        let (store, dir) = temp_store("refresh");
        let (a, _) = put(&store, "a", r#"{"x":1}"#, Expect::Anything).unwrap();
        store
            .refresh_checked(&[("a".into(), vec![1, 2, 3]), ("gone".into(), vec![])], 42)
            .unwrap();
        store
            .visit_records(|_, record| {
                assert_eq!(record.revision, a.revision);
                assert_eq!(record.entry, br#"{"x":1}"#);
                assert_eq!(
                    (record.checked.by, record.checked.form),
                    (42, &[1, 2, 3][..])
                );
            })
            .unwrap();
        assert_eq!(
            store.vm_count().unwrap(),
            1,
            "no record is made for a missing VM"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A store written by azimds before schema version 4 (VM records as JSON) upgrades: every
    /// VM keeps its revision, origin and entry; the revision counter goes on.
    #[test]
    fn a_version_3_store_upgrades() {
        use redb::Database;
        let dir = std::env::temp_dir().join(format!("azimds-store-v3-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("azimds.redb");
        {
            // Exactly what schema version 3 wrote: JSON records and the counters.
            let database = Database::create(&path).unwrap();
            let write = database.begin_write().unwrap();
            {
                let mut vms = write.open_table(VMS).unwrap();
                let a = br#"{"revision":3,"origin":"file","definition":{"id":"a","instance":{"compute":{"name":"a"}}}}"#;
                let b = br#"{"revision":5,"origin":"api","definition":{"callers":["10.0.0.4"],"id":"b"}}"#;
                vms.insert("a", a.as_slice()).unwrap();
                vms.insert("b", b.as_slice()).unwrap();
                let mut meta = write.open_table(META).unwrap();
                meta.insert(NEXT_REVISION, 6).unwrap();
                meta.insert("schema_version", 3).unwrap();
                write.open_table(EVENTS).unwrap();
                write.open_table(INCARNATIONS).unwrap();
                write.open_table(IMPORTED_EVENTS).unwrap();
            }
            write.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let vms = store.vms().unwrap();
        assert_eq!(vms.len(), 2);
        assert_eq!((vms[0].revision, vms[0].origin), (3, Origin::File));
        assert_eq!(
            vms[0].definition,
            serde_json::json!({"id": "a", "instance": {"compute": {"name": "a"}}})
        );
        assert_eq!((vms[1].revision, vms[1].origin), (5, Origin::Api));
        store
            .visit_records(|_, record| assert_eq!(record.checked.by, 0, "no checked form yet"))
            .unwrap();
        let (c, _) = put(&store, "c", "{}", Expect::Absent).unwrap();
        assert_eq!(c.revision, 6, "the revision counter survives the upgrade");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
