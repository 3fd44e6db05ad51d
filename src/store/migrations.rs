//! Schema versions of the store. Each migration upgrades the file by one version inside the
//! same transaction that records the new version, so an interrupted upgrade leaves the old
//! version intact. Add a function to [`MIGRATIONS`]; never edit a released one.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::store::provisioning::PROVISIONING;
use crate::store::record::{self, Checked};
use crate::store::{EVENTS, Error, IMPORTED_EVENTS, INCARNATIONS, META, Origin, VMS, db};

const SCHEMA_VERSION: &str = "schema_version";

type Migration = fn(&WriteTransaction) -> Result<(), Error>;

/// `MIGRATIONS[n]` upgrades version `n` to `n + 1`. Version 0 is an empty file.
const MIGRATIONS: &[Migration] = &[
    create_vm_table,
    create_event_tables,
    create_import_record,
    binary_vm_records,
    create_provisioning_table,
];

/// Brings the store to the newest schema; refuses a store written by a newer azimds.
pub(super) fn run(database: &Database) -> Result<(), Error> {
    let current = current_version(database)?;
    let supported = MIGRATIONS.len() as u64;
    if current > supported {
        return Err(Error::TooNew {
            found: current,
            supported,
        });
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let write = database.begin_write().map_err(db)?;
        migration(&write)?;
        write
            .open_table(META)
            .map_err(db)?
            .insert(SCHEMA_VERSION, from as u64 + 1)
            .map_err(db)?;
        write.commit().map_err(db)?;
        tracing::info!(version = from + 1, "store schema migrated");
    }
    Ok(())
}

fn current_version(database: &Database) -> Result<u64, Error> {
    let read = database.begin_read().map_err(db)?;
    let meta: TableDefinition<&str, u64> = META;
    match read.open_table(meta) {
        Ok(table) => Ok(table
            .get(SCHEMA_VERSION)
            .map_err(db)?
            .map_or(0, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(error) => Err(db(error)),
    }
}

/// Version 1: the VM table and the revision sequence.
fn create_vm_table(write: &WriteTransaction) -> Result<(), Error> {
    write.open_table(VMS).map_err(db)?;
    write.open_table(META).map_err(db)?;
    Ok(())
}

/// Version 2: scheduled events and each VM's DocumentIncarnation.
fn create_event_tables(write: &WriteTransaction) -> Result<(), Error> {
    write.open_table(EVENTS).map_err(db)?;
    write.open_table(INCARNATIONS).map_err(db)?;
    Ok(())
}

/// Version 3: which definition events were already imported, so each is seeded once.
fn create_import_record(write: &WriteTransaction) -> Result<(), Error> {
    write.open_table(IMPORTED_EVENTS).map_err(db)?;
    Ok(())
}

/// Version 4: VM records in `record.rs`'s layout (checksum, entry as written kept as bytes, a
/// checked form beside it) instead of JSON with the entry nested in it. Upgraded records have
/// no checked form yet: the next load checks each entry and stores its form.
fn binary_vm_records(write: &WriteTransaction) -> Result<(), Error> {
    #[derive(serde::Deserialize)]
    struct JsonRecord {
        revision: u64,
        origin: Origin,
        definition: serde_json::Value,
    }
    let mut table = write.open_table(VMS).map_err(db)?;
    let ids: Vec<String> = table
        .iter()
        .map_err(db)?
        .map(|entry| entry.map(|(key, _)| key.value().to_string()))
        .collect::<Result<_, _>>()
        .map_err(db)?;
    for id in ids {
        let old = table.get(id.as_str()).map_err(db)?.map(|value| {
            serde_json::from_slice::<JsonRecord>(value.value()).map_err(|e| Error::Corrupt {
                key: id.clone(),
                message: e.to_string(),
            })
        });
        let Some(old) = old.transpose()? else {
            continue;
        };
        let entry = serde_json::to_vec(&old.definition).expect("a JSON value serializes");
        let bytes = record::encode(old.revision, old.origin, &entry, Checked::NONE);
        table.insert(id.as_str(), bytes.as_slice()).map_err(db)?;
    }
    Ok(())
}

/// Version 5: each VM's provisioning record (WireServer health reports).
fn create_provisioning_table(write: &WriteTransaction) -> Result<(), Error> {
    write.open_table(PROVISIONING).map_err(db)?;
    Ok(())
}
