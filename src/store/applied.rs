//! The definitions file the embedded store last applied, and the VM table it left behind: a
//! start given the same file, by the same checker, over a table nothing has written since,
//! can skip parsing and checking 100,000 entries whose result is already stored.
//!
//! "Nothing has written since" is the revision counter (every VM write takes a revision) and
//! the record count (a delete takes none); both are read and recorded in one transaction.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, TableError};

use crate::store::embedded::Redb;
use crate::store::{Error, META, NEXT_REVISION, VMS, db};

/// `vms` → [`AppliedFile`] as 56 bytes: digest, checker, next revision, record count.
const APPLIED_FILE: TableDefinition<&str, &[u8]> = TableDefinition::new("applied_file");
const KEY: &str = "vms";

/// A definitions file as applied: the SHA-256 of its bytes and the checker's fingerprint
/// (`definition::checked::fingerprint`), so a newer azimds checks the file again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMark {
    pub digest: [u8; 32],
    pub by: u64,
}

impl FileMark {
    fn encode(self, (next_revision, count): (u64, u64)) -> Vec<u8> {
        let mut out = Vec::with_capacity(56);
        out.extend_from_slice(&self.digest);
        out.extend_from_slice(&self.by.to_le_bytes());
        out.extend_from_slice(&next_revision.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

impl Redb {
    /// Whether `mark` is the file applied last and no VM record changed since.
    pub(super) fn file_still_applied(&self, mark: FileMark) -> Result<bool, Error> {
        self.db.read(|read| {
            let table = match read.open_table(APPLIED_FILE) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(false),
                Err(error) => return Err(db(error)),
            };
            let Some(stored) = table.get(KEY).map_err(db)? else {
                return Ok(false);
            };
            let stored = stored.value();
            let next_revision = read
                .open_table(META)
                .map_err(db)?
                .get(NEXT_REVISION)
                .map_err(db)?
                .map_or(1, |v| v.value());
            let count = read.open_table(VMS).map_err(db)?.len().map_err(db)?;
            Ok(stored.len() == 56
                && stored[..32] == mark.digest
                && u64_at(stored, 32) == mark.by
                && u64_at(stored, 40) == next_revision
                && u64_at(stored, 48) == count)
        })
    }

    /// Records `mark` as applied, with the VM table as it is now.
    pub(super) fn mark_file_applied(&self, mark: FileMark) -> Result<(), Error> {
        self.db.write(|write| {
            let next_revision = write
                .open_table(META)
                .map_err(db)?
                .get(NEXT_REVISION)
                .map_err(db)?
                .map_or(1, |v| v.value());
            let count = write.open_table(VMS).map_err(db)?.len().map_err(db)?;
            write
                .open_table(APPLIED_FILE)
                .map_err(db)?
                .insert(KEY, mark.encode((next_revision, count)).as_slice())
                .map_err(db)?;
            Ok(())
        })
    }
}
