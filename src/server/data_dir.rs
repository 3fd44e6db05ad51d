//! The data directory: the store, signing keys and the control token live here, so it is
//! created owner-only, and one found already there is checked before anything in it is used:
//! refused when another user could write to it (or owns it), a warning when another user can
//! read it. The same goes for the files in it that hold secrets.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::server::error::Error;

/// The store's file inside the data directory.
pub const STORE_FILE: &str = "azimds.redb";
/// The token signing keys' directory inside the data directory.
pub const KEYS_DIR: &str = "keys";
/// The attested-document CA and leaves, inside [`KEYS_DIR`].
pub const ATTESTED_KEYS_DIR: &str = "attested";

/// Creates the data directory owner-only, or checks an existing one.
pub(super) fn prepare(path: &Path) -> Result<(), Error> {
    let existed = path.exists();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| Error::DataDir {
            path: path.to_path_buf(),
            source,
        })?;
    if !existed {
        return Ok(());
    }
    let metadata = std::fs::metadata(path).map_err(|source| Error::DataDir {
        path: path.to_path_buf(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(unsafe_path(path, "it is not a directory".into()));
    }
    check_owner_and_mode(path, &metadata, "data directory")
}

/// Checks a file that holds secrets (the store, the control token), if it exists. One that
/// others can read is tightened to owner-only, with a warning.
pub(super) fn check_private_file(path: &Path, what: &str) -> Result<(), Error> {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if metadata.file_type().is_symlink() {
        return Err(unsafe_path(
            path,
            format!("the {what} is a symbolic link; azimds uses only a regular file it owns"),
        ));
    }
    check_owner_and_mode(path, &metadata, what)?;
    if metadata.mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| Error::Restrict {
                path: path.to_path_buf(),
                source,
            },
        )?;
        tracing::warn!(path = %path.display(), "the {what} was readable by other users; it is now owner-only (0600)");
    }
    Ok(())
}

fn check_owner_and_mode(
    path: &Path,
    metadata: &std::fs::Metadata,
    what: &str,
) -> Result<(), Error> {
    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me {
        return Err(unsafe_path(
            path,
            format!(
                "the {what} is owned by uid {}, not by this process's uid {me}",
                metadata.uid()
            ),
        ));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(unsafe_path(
            path,
            format!(
                "other users can write to the {what} (mode {mode:04o}); make it owner-only, e.g. chmod 0700 for a directory, 0600 for a file"
            ),
        ));
    }
    if metadata.is_dir() && mode & 0o055 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:04o}"), "other users can list the {what}; 0700 is recommended");
    }
    Ok(())
}

fn unsafe_path(path: &Path, reason: String) -> Error {
    Error::UnsafePath {
        path: path.to_path_buf(),
        reason,
    }
}
