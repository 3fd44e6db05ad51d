//! The open database and whether it can commit. After an I/O error (a full disk, typically)
//! redb refuses every later write with "Previous I/O error occurred" until the database is
//! closed and opened again, so a failed operation marks the store as failing and the next one
//! reopens the file first: once the disk has room again, writes work without a restart.
//! [`Handle::probe`] lets a background task find that out when nobody writes.
//!
//! Lock order: `open` before `state`; `state` is never held while `open` is being taken.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::SystemTime;

use redb::{Database, ReadTransaction, ReadableDatabase, TableDefinition, WriteTransaction};

use crate::store::{Error, db, file};
use crate::telemetry::histogram::{self, Histogram};

/// What the probe writes: as much as the largest VM record, so a probe that commits means a
/// real write has room too. Deleted again by the probe's second commit.
const PROBE: TableDefinition<&str, &[u8]> = TableDefinition::new("health_probe");
const PROBE_BYTES: usize = 256 * 1024;

/// Whether the store can commit, for readiness and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreHealth {
    /// `None` while commits succeed.
    pub failure: Option<StoreFailure>,
}

impl StoreHealth {
    pub fn writable(&self) -> bool {
        self.failure.is_none()
    }
}

/// Why the store cannot commit, since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreFailure {
    pub reason: String,
    pub since: SystemTime,
}

#[derive(Debug, Default)]
struct State {
    failure: Option<StoreFailure>,
    /// The database must be closed and opened again before its next use.
    reopen: bool,
}

/// The open database (`None` when reopening it failed) and its health.
#[derive(Debug)]
pub(super) struct Handle {
    path: PathBuf,
    open: RwLock<Option<Database>>,
    state: Mutex<State>,
    /// How long durable commits take (metrics).
    commits: Histogram,
}

impl Handle {
    pub(super) fn new(path: &Path, database: Database) -> Handle {
        Handle {
            path: path.to_path_buf(),
            open: RwLock::new(Some(database)),
            state: Mutex::new(State::default()),
            commits: Histogram::new(histogram::COMMIT_BOUNDS),
        }
    }

    pub(super) fn commit_times(&self) -> &Histogram {
        &self.commits
    }

    pub(super) fn health(&self) -> StoreHealth {
        StoreHealth {
            failure: self.state().failure.clone(),
        }
    }

    /// Runs `read` in a read transaction.
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.with_database(|database| read(&database.begin_read().map_err(db)?))
    }

    /// Runs `write` in a write transaction and commits it; durable when it returns `Ok`. An
    /// I/O error is [`Error::Unavailable`]: nothing was acknowledged, and the store reopens
    /// before its next use.
    pub(super) fn write<T>(
        &self,
        write: impl FnOnce(&WriteTransaction) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let written = self.with_database(|database| {
            let transaction = database.begin_write().map_err(db)?;
            let value = write(&transaction)?;
            let started = std::time::Instant::now();
            let committed = transaction.commit().map_err(db);
            self.commits.observe(started.elapsed());
            committed.map(|()| value)
        })?;
        self.committed();
        Ok(written)
    }

    /// When the store is failing: reopens it and tries a commit the size of the largest record.
    /// Returns the health afterwards.
    pub(super) fn probe(&self) -> StoreHealth {
        if self.state().failure.is_some() {
            let probed = self
                .write(|write| {
                    let mut table = write.open_table(PROBE).map_err(db)?;
                    table
                        .insert("probe", vec![0u8; PROBE_BYTES].as_slice())
                        .map_err(db)?;
                    Ok(())
                })
                .and_then(|()| self.write(|write| write.delete_table(PROBE).map(drop).map_err(db)));
            if let Err(error) = probed {
                tracing::debug!(%error, "the store still cannot commit");
            }
        }
        self.health()
    }

    /// Runs `operation` on the database, reopening it first if an earlier one failed. Errors
    /// that mean the file cannot be used (I/O, a panic inside redb) mark the store failing.
    fn with_database<T>(
        &self,
        operation: impl FnOnce(&Database) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.state().reopen {
            self.reopen()?;
        }
        let open = self.open.read().unwrap_or_else(|p| p.into_inner());
        let Some(database) = open.as_ref() else {
            drop(open);
            return Err(self.unavailable(Error::Missing));
        };
        let result = match catch_unwind(AssertUnwindSafe(|| operation(database))) {
            Ok(result) => result,
            Err(panic) => Err(Error::Damaged(file::panic_message(&panic))),
        };
        drop(open);
        result.map_err(|error| self.classify(error))
    }

    /// Closes the database and opens the file again. Concurrent callers reopen once.
    fn reopen(&self) -> Result<(), Error> {
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        if !self.state().reopen {
            return Ok(());
        }
        // Dropping closes the file and releases its lock, so it can be opened again.
        drop(open.take());
        match file::reopen(&self.path) {
            Ok(database) => {
                *open = Some(database);
                self.state().reopen = false;
                tracing::info!(path = %self.path.display(), "store reopened after an error");
                Ok(())
            }
            Err(error) => Err(self.unavailable(error)),
        }
    }

    /// Turns an error that means the store cannot be used into [`Error::Unavailable`], and
    /// records it; other errors (a precondition, a bad record) pass unchanged.
    fn classify(&self, error: Error) -> Error {
        match &error {
            Error::Database(inner) if cannot_commit(inner) => self.unavailable(error),
            Error::Damaged(_) => {
                self.failed(error.to_string());
                error
            }
            _ => error,
        }
    }

    fn unavailable(&self, error: Error) -> Error {
        let reason = match error {
            Error::Database(inner) => inner.to_string(),
            other => other.to_string(),
        };
        self.failed(reason.clone());
        Error::Unavailable { reason }
    }

    fn failed(&self, reason: String) {
        let mut state = self.state();
        state.reopen = true;
        match &mut state.failure {
            Some(failure) => failure.reason = reason,
            None => {
                tracing::error!(path = %self.path.display(), %reason, "the store cannot commit; writes are refused until it can");
                state.failure = Some(StoreFailure {
                    reason,
                    since: SystemTime::now(),
                });
            }
        }
    }

    fn committed(&self) {
        let mut state = self.state();
        if let Some(failure) = state.failure.take() {
            let seconds = failure.since.elapsed().map_or(0, |d| d.as_secs());
            tracing::info!(path = %self.path.display(), failing_for_s = seconds, "the store commits again");
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether a redb error means the file cannot be written now (as opposed to a bad request).
fn cannot_commit(error: &redb::Error) -> bool {
    matches!(
        error,
        redb::Error::Io(_)
            | redb::Error::PreviousIo
            | redb::Error::DatabaseClosed
            | redb::Error::LockPoisoned(_)
    )
}
