//! The store file on disk, checked before redb sees it: redb turns an empty file into a new,
//! empty database, so a truncated `azimds.redb` would silently become a store without VMs
//! (and, in `single` mode, get the demo VM seeded over it). A file that exists must be a redb
//! file; only a missing one is created.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use redb::Database;

use crate::store::{CACHE_BYTES, Error, db};

/// The first bytes of every redb file (redb's `MAGICNUMBER`).
const REDB_SIGNATURE: [u8; 9] = *b"redb\x1A\x0A\xA9\x0D\x0A";

/// Opens the store file, creating it if it does not exist; refuses a file that exists but is
/// empty or is not a redb file. The file is made owner-only: it holds every VM's definition.
pub(super) fn open_or_create(path: &Path) -> Result<Database, Error> {
    let database = if check_existing(path)? {
        open_existing(path)?
    } else {
        Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(db)?
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| db(redb::StorageError::Io(e)))?;
    Ok(database)
}

/// Opens the store file again after an I/O error (it must still be the store it was).
pub(super) fn reopen(path: &Path) -> Result<Database, Error> {
    if !check_existing(path)? {
        return Err(Error::Missing);
    }
    open_existing(path)
}

/// Whether a store file exists at `path`; an error if one exists and is not a redb file.
fn check_existing(path: &Path) -> Result<bool, Error> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(db(redb::StorageError::Io(error))),
    };
    let mut start = Vec::with_capacity(REDB_SIGNATURE.len());
    (&mut file)
        .take(REDB_SIGNATURE.len() as u64)
        .read_to_end(&mut start)
        .map_err(|e| db(redb::StorageError::Io(e)))?;
    if start.is_empty() {
        return Err(Error::Empty);
    }
    if start != REDB_SIGNATURE {
        return Err(Error::NotAStore);
    }
    Ok(true)
}

/// Opens an existing redb file. redb may panic on a file damaged in ways its checks do not
/// catch; that is reported as corruption rather than crashing the process with a backtrace.
fn open_existing(path: &Path) -> Result<Database, Error> {
    let open = || Database::builder().set_cache_size(CACHE_BYTES).open(path);
    match std::panic::catch_unwind(open) {
        Ok(Ok(database)) => Ok(database),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(error))))
            if error.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            Err(Error::Damaged("the file ends inside its header".into()))
        }
        Ok(Err(error)) => Err(db(error)),
        Err(panic) => Err(Error::Damaged(panic_message(&panic))),
    }
}

/// What a panic inside redb said (it panics on some damaged pages).
pub(super) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .map_or_else(
            || "redb stopped reading it".to_string(),
            |detail| format!("redb stopped reading it: {detail}"),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("azimds-store-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_signature_is_redbs() {
        let dir = temp_dir("signature");
        let path = dir.join("s.redb");
        drop(Database::create(&path).unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes[..REDB_SIGNATURE.len()], REDB_SIGNATURE);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn only_a_missing_file_is_created() {
        let dir = temp_dir("existing");
        let path = dir.join("s.redb");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(open_or_create(&path), Err(Error::Empty)));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
        std::fs::write(&path, b"redb\x1A").unwrap();
        assert!(matches!(open_or_create(&path), Err(Error::NotAStore)));
        std::fs::remove_file(&path).unwrap();
        assert!(
            matches!(reopen(&path), Err(Error::Missing)),
            "a reopen never creates"
        );
        drop(open_or_create(&path).unwrap());
        drop(reopen(&path).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
