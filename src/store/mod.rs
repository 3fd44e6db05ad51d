//! The durable store: an embedded redb database in the data directory holding every VM
//! definition (later also identities, events, keys and certificates).
//!
//! Why redb: pure Rust (no C toolchain), ACID transactions whose commit returns only after an
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

mod file;
mod health;
mod migrations;

use std::path::Path;

use redb::{ReadableTable, TableDefinition};
use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::Event;

/// VM id → JSON-encoded [`StoredVm`] (without the id).
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

pub use health::{StoreFailure, StoreHealth};

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

/// A VM record as stored.
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

/// One change of a batch.
#[derive(Clone, Debug)]
pub enum Change {
    Put {
        id: String,
        origin: Origin,
        definition: Value,
    },
    Delete {
        id: String,
    },
}

/// The opened store.
#[derive(Debug)]
pub struct Store {
    db: health::Handle,
}

impl Store {
    /// Opens the store file (creating it if it does not exist; refusing one that is empty or
    /// not a redb file) and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, Error> {
        let database = file::open_or_create(path)?;
        migrations::run(&database)?;
        Ok(Store {
            db: health::Handle::new(path, database),
        })
    }

    /// Whether the store can commit now (the last commit, or reopening it, succeeded).
    pub fn health(&self) -> StoreHealth {
        self.db.health()
    }

    /// When the store is failing: reopens it and tries a commit, so it recovers when the cause
    /// is gone even if nothing writes. Cheap when it is healthy. Returns the health after.
    pub fn probe(&self) -> StoreHealth {
        self.db.probe()
    }

    /// Every VM record, in id order.
    pub fn vms(&self) -> Result<Vec<StoredVm>, Error> {
        let mut out = Vec::new();
        self.visit_vms(|vm| out.push(vm))?;
        Ok(out)
    }

    /// Hands every VM record to `visit`, in id order, one at a time (loading 100k VMs must not
    /// hold every decoded record at once).
    pub fn visit_vms(&self, mut visit: impl FnMut(StoredVm)) -> Result<(), Error> {
        self.db.read(|read| {
            let table = read.open_table(VMS).map_err(db)?;
            for entry in table.iter().map_err(db)? {
                let (key, value) = entry.map_err(db)?;
                visit(decode(key.value(), value.value())?);
            }
            Ok(())
        })
    }

    /// One VM record.
    pub fn vm(&self, id: &str) -> Result<Option<StoredVm>, Error> {
        self.db.read(|read| {
            let table = read.open_table(VMS).map_err(db)?;
            let found = table.get(id).map_err(db)?;
            found.map(|value| decode(id, value.value())).transpose()
        })
    }

    /// Writes one VM if `expect` holds; returns the new record and whether it was created.
    /// Durable when it returns.
    pub fn put_vm(
        &self,
        id: &str,
        origin: Origin,
        definition: &Value,
        expect: Expect,
    ) -> Result<(StoredVm, bool), Error> {
        self.db.write(|write| {
            let stored = {
                let mut table = write.open_table(VMS).map_err(db)?;
                let current = match table.get(id).map_err(db)? {
                    Some(value) => Some(decode(id, value.value())?.revision),
                    None => None,
                };
                check(expect, current)?;
                let revision = next_revision(write)?;
                let stored = StoredVm {
                    id: id.to_string(),
                    revision,
                    origin,
                    definition: definition.clone(),
                };
                table.insert(id, encode(&stored).as_slice()).map_err(db)?;
                (stored, current.is_none())
            };
            Ok(stored)
        })
    }

    /// Deletes one VM if `expect` holds; `Ok(false)` if there was none (and none was expected).
    pub fn delete_vm(&self, id: &str, expect: Expect) -> Result<bool, Error> {
        self.db.write(|write| {
            let existed = {
                let mut table = write.open_table(VMS).map_err(db)?;
                let current = match table.get(id).map_err(db)? {
                    Some(value) => Some(decode(id, value.value())?.revision),
                    None => None,
                };
                check(expect, current)?;
                table.remove(id).map_err(db)?.is_some()
            };
            Ok(existed)
        })
    }

    /// Applies every change in one transaction: all of them are durable, or none.
    pub fn apply(&self, changes: &[Change]) -> Result<Vec<StoredVm>, Error> {
        self.db.write(|write| {
            let mut written = Vec::new();
            {
                let mut table = write.open_table(VMS).map_err(db)?;
                for change in changes {
                    match change {
                        Change::Put {
                            id,
                            origin,
                            definition,
                        } => {
                            let stored = StoredVm {
                                id: id.clone(),
                                revision: next_revision(write)?,
                                origin: *origin,
                                definition: definition.clone(),
                            };
                            table
                                .insert(id.as_str(), encode(&stored).as_slice())
                                .map_err(db)?;
                            written.push(stored);
                        }
                        Change::Delete { id } => {
                            table.remove(id.as_str()).map_err(db)?;
                        }
                    }
                }
            }
            Ok(written)
        })
    }
}

impl Store {
    /// Every stored scheduled event, every VM's DocumentIncarnation, and the import record.
    pub fn events(&self) -> Result<StoredEvents, Error> {
        self.db.read(|read| {
            let mut events = Vec::new();
            for entry in read.open_table(EVENTS).map_err(db)?.iter().map_err(db)? {
                let (key, value) = entry.map_err(db)?;
                let event = serde_json::from_slice(value.value()).map_err(|e| Error::Corrupt {
                    key: key.value().to_string(),
                    message: e.to_string(),
                })?;
                events.push(event);
            }
            let mut incarnations = HashMap::new();
            for entry in read
                .open_table(INCARNATIONS)
                .map_err(db)?
                .iter()
                .map_err(db)?
            {
                let (key, value) = entry.map_err(db)?;
                incarnations.insert(key.value().to_string(), value.value());
            }
            let mut imported = BTreeSet::new();
            for entry in read
                .open_table(IMPORTED_EVENTS)
                .map_err(db)?
                .iter()
                .map_err(db)?
            {
                imported.insert(entry.map_err(db)?.0.value().to_string());
            }
            Ok(StoredEvents {
                events,
                incarnations,
                imported,
            })
        })
    }

    /// Records scheduled-event changes in one transaction: events written or removed, and the
    /// incarnations that moved.
    pub fn write_events(
        &self,
        written: &[&Event],
        removed: &[&str],
        incarnations: &[(&str, u64)],
        imported: &[&str],
    ) -> Result<(), Error> {
        self.db.write(|write| {
            {
                let mut events = write.open_table(EVENTS).map_err(db)?;
                for event in written {
                    let bytes = serde_json::to_vec(event).expect("an Event serializes");
                    events
                        .insert(event.id.as_str(), bytes.as_slice())
                        .map_err(db)?;
                }
                for id in removed {
                    events.remove(*id).map_err(db)?;
                }
                let mut table = write.open_table(INCARNATIONS).map_err(db)?;
                for (vm, incarnation) in incarnations {
                    table.insert(*vm, *incarnation).map_err(db)?;
                }
                let mut table = write.open_table(IMPORTED_EVENTS).map_err(db)?;
                for key in imported {
                    table.insert(*key, 1).map_err(db)?;
                }
            }
            Ok(())
        })
    }
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

fn next_revision(write: &redb::WriteTransaction) -> Result<u64, Error> {
    let mut meta = write.open_table(META).map_err(db)?;
    let revision = meta
        .get(NEXT_REVISION)
        .map_err(db)?
        .map_or(1, |v| v.value());
    meta.insert(NEXT_REVISION, revision + 1).map_err(db)?;
    Ok(revision)
}

fn encode(vm: &StoredVm) -> Vec<u8> {
    serde_json::to_vec(vm).expect("a StoredVm serializes")
}

fn decode(id: &str, bytes: &[u8]) -> Result<StoredVm, Error> {
    let mut vm: StoredVm = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        key: id.to_string(),
        message: e.to_string(),
    })?;
    vm.id = id.to_string();
    Ok(vm)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn temp_store(name: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("azimds-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("azimds.redb");
        (Store::open(&path).unwrap(), dir)
    }

    #[test]
    fn writes_survive_reopening_and_revisions_never_repeat() {
        let (store, dir) = temp_store("reopen");
        let (a1, created) = store
            .put_vm("a", Origin::Api, &json!({"x": 1}), Expect::Absent)
            .unwrap();
        assert!(created);
        let (a2, created) = store
            .put_vm(
                "a",
                Origin::Api,
                &json!({"x": 2}),
                Expect::Revision(a1.revision),
            )
            .unwrap();
        assert!(!created, "a replacement is not a creation");
        assert!(a2.revision > a1.revision);
        assert!(store.delete_vm("a", Expect::Revision(a2.revision)).unwrap());
        let (a3, created) = store
            .put_vm("a", Origin::File, &json!({"x": 3}), Expect::Absent)
            .unwrap();
        assert!(created, "recreated after a delete");
        assert!(
            a3.revision > a2.revision,
            "a recreated VM never reuses an ETag"
        );
        drop(store);
        let store = Store::open(&dir.join("azimds.redb")).unwrap();
        assert_eq!(store.vm("a").unwrap(), Some(a3));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn conditional_writes() {
        let (store, dir) = temp_store("conditional");
        let (a, _) = store
            .put_vm("a", Origin::Api, &json!({}), Expect::Anything)
            .unwrap();
        assert!(matches!(
            store.put_vm("a", Origin::Api, &json!({}), Expect::Absent),
            Err(Error::PreconditionFailed { current: Some(r) }) if r == a.revision
        ));
        assert!(matches!(
            store.put_vm(
                "a",
                Origin::Api,
                &json!({}),
                Expect::Revision(a.revision + 100)
            ),
            Err(Error::PreconditionFailed { .. })
        ));
        assert!(matches!(
            store.delete_vm("b", Expect::Present),
            Err(Error::PreconditionFailed { current: None })
        ));
        assert!(!store.delete_vm("b", Expect::Anything).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn batches_apply_together() {
        let (store, dir) = temp_store("batch");
        store
            .put_vm("old", Origin::File, &json!({}), Expect::Anything)
            .unwrap();
        let written = store
            .apply(&[
                Change::Put {
                    id: "a".into(),
                    origin: Origin::File,
                    definition: json!({"n": 1}),
                },
                Change::Put {
                    id: "b".into(),
                    origin: Origin::File,
                    definition: json!({"n": 2}),
                },
                Change::Delete { id: "old".into() },
            ])
            .unwrap();
        assert_eq!(written.len(), 2);
        let ids: Vec<String> = store.vms().unwrap().into_iter().map(|v| v.id).collect();
        assert_eq!(ids, ["a", "b"]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
