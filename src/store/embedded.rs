//! The embedded backend: one redb database in the data directory (the default). See the
//! module documentation of `store` for why redb.

use std::path::Path;

use redb::{ReadableTable, ReadableTableMetadata};
use std::collections::{BTreeSet, HashMap};

use crate::events::Event;
use crate::store::{
    Checked, EVENTS, Error, Expect, IMPORTED_EVENTS, INCARNATIONS, META, NEXT_REVISION, Origin,
    RecordView, StoreHealth, StoredEvents, StoredVm, VMS, check, db, file, health, migrations,
    record, stored_vm,
};
use crate::telemetry::histogram::Histogram;

/// The changes of one transaction ([`Redb::batch`]): all of them commit, or none.
pub(super) struct RedbBatch<'t> {
    table: redb::Table<'t, &'static str, &'static [u8]>,
    next_revision: u64,
}

impl RedbBatch<'_> {
    /// Writes VM `id` with a new revision (returned).
    pub(super) fn put(
        &mut self,
        id: &str,
        origin: Origin,
        entry: &[u8],
        checked: Checked<'_>,
    ) -> Result<u64, Error> {
        let revision = self.next_revision;
        self.next_revision += 1;
        let bytes = record::encode(revision, origin, entry, checked);
        self.table.insert(id, bytes.as_slice()).map_err(db)?;
        Ok(revision)
    }

    /// Deletes VM `id`; whether it existed.
    pub(super) fn delete(&mut self, id: &str) -> Result<bool, Error> {
        Ok(self.table.remove(id).map_err(db)?.is_some())
    }
}

/// The opened embedded store.
#[derive(Debug)]
pub(super) struct Redb {
    pub(super) db: health::Handle,
}

impl Redb {
    /// Opens (or creates) the store file and brings its schema up to date.
    pub(super) fn open(path: &Path) -> Result<Redb, Error> {
        let database = file::open_or_create(path)?;
        migrations::run(&database)?;
        Ok(Redb {
            db: health::Handle::new(path, database),
        })
    }

    /// How long commits have taken.
    pub(super) fn commit_times(&self) -> &Histogram {
        self.db.commit_times()
    }

    /// Whether the store can commit now (the last commit, or reopening it, succeeded).
    pub(super) fn health(&self) -> StoreHealth {
        self.db.health()
    }

    /// When the store is failing: reopens it and tries a commit, so it recovers when the cause
    /// is gone even if nothing writes. Cheap when it is healthy. Returns the health after.
    pub(super) fn probe(&self) -> StoreHealth {
        self.db.probe()
    }

    /// Hands every VM record to `visit`, in id order, borrowed from the table: loading 100k VMs
    /// holds no record longer than `visit` does. A damaged record stops the visit.
    pub(super) fn visit_records(
        &self,
        mut visit: impl FnMut(&str, RecordView<'_>),
    ) -> Result<(), Error> {
        self.db.read(|read| {
            let table = read.open_table(VMS).map_err(db)?;
            for entry in table.iter().map_err(db)? {
                let (key, value) = entry.map_err(db)?;
                let id = key.value();
                visit(id, record::decode(id, value.value())?);
            }
            Ok(())
        })
    }

    /// One VM record.
    pub(super) fn vm(&self, id: &str) -> Result<Option<StoredVm>, Error> {
        self.db.read(|read| {
            let table = read.open_table(VMS).map_err(db)?;
            let found = table.get(id).map_err(db)?;
            found
                .map(|value| stored_vm(id, &record::decode(id, value.value())?))
                .transpose()
        })
    }

    /// Writes one VM if `expect` holds; returns its new revision and whether it was created.
    pub(super) fn put_vm(
        &self,
        id: &str,
        origin: Origin,
        entry: &[u8],
        checked: Checked<'_>,
        expect: Expect,
    ) -> Result<(u64, bool), Error> {
        self.batch(|batch| {
            let current = batch.revision_of(id)?;
            check(expect, current)?;
            let revision = batch.put(id, origin, entry, checked)?;
            Ok::<_, Error>((revision, current.is_none()))
        })
    }

    /// How many VMs the store holds.
    pub(super) fn vm_count(&self) -> Result<u64, Error> {
        self.db
            .read(|read| read.open_table(VMS).map_err(db)?.len().map_err(db))
    }

    /// Deletes one VM if `expect` holds; `Ok(false)` if there was none (and none was expected).
    pub(super) fn delete_vm(&self, id: &str, expect: Expect) -> Result<bool, Error> {
        self.batch(|batch| {
            check(expect, batch.revision_of(id)?)?;
            batch.delete(id)
        })
    }

    /// Runs `fill` on one write transaction and commits it if `fill` succeeds: every change is
    /// durable when this returns `Ok`, and none is made if `fill` fails. Revisions come from
    /// one counter read and written once per transaction.
    pub(super) fn batch<T, E: From<Error>>(
        &self,
        fill: impl FnOnce(&mut RedbBatch<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        // `fill`'s own error is kept aside: the store's health only judges its own errors.
        let mut refused = None;
        let committed = self.db.write(|write| {
            let mut meta = write.open_table(META).map_err(db)?;
            let next_revision = meta
                .get(NEXT_REVISION)
                .map_err(db)?
                .map_or(1, |v| v.value());
            let mut batch = RedbBatch {
                table: write.open_table(VMS).map_err(db)?,
                next_revision,
            };
            match fill(&mut batch) {
                Ok(value) => {
                    meta.insert(NEXT_REVISION, batch.next_revision)
                        .map_err(db)?;
                    Ok(value)
                }
                Err(error) => {
                    refused = Some(error);
                    Err(Error::Abandoned)
                }
            }
        });
        match (committed, refused) {
            (_, Some(error)) => Err(error),
            (committed, None) => committed.map_err(E::from),
        }
    }

    /// Replaces the checked forms of VMs whose entries were checked again (by a newer azimds),
    /// keeping each record's revision, origin and entry. Records that changed meanwhile are left.
    pub(super) fn refresh_checked(
        &self,
        forms: &[(String, Vec<u8>)],
        by: u64,
    ) -> Result<(), Error> {
        self.db.write(|write| {
            let mut table = write.open_table(VMS).map_err(db)?;
            for (id, form) in forms {
                let updated = match table.get(id.as_str()).map_err(db)? {
                    Some(value) => {
                        let view = record::decode(id, value.value())?;
                        Some(record::encode(
                            view.revision,
                            view.origin,
                            view.entry,
                            Checked { by, form },
                        ))
                    }
                    None => None,
                };
                if let Some(bytes) = updated {
                    table.insert(id.as_str(), bytes.as_slice()).map_err(db)?;
                }
            }
            Ok(())
        })
    }
}

impl RedbBatch<'_> {
    /// The revision VM `id` has in this transaction, if it exists.
    fn revision_of(&self, id: &str) -> Result<Option<u64>, Error> {
        match self.table.get(id).map_err(db)? {
            Some(value) => Ok(Some(record::decode(id, value.value())?.revision)),
            None => Ok(None),
        }
    }
}

impl Redb {
    /// Every stored scheduled event, every VM's DocumentIncarnation, and the import record.
    pub(super) fn events(&self) -> Result<StoredEvents, Error> {
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
                revision: 0,
            })
        })
    }

    /// Records scheduled-event changes in one transaction: events written or removed, and the
    /// incarnations that moved.
    pub(super) fn write_events(
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
