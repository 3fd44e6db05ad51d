//! The data directory: the store, signing keys and the control token live here, so it is
//! created owner-only.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use crate::server::Error;

/// The store's file inside the data directory.
pub const STORE_FILE: &str = "azimds.redb";
/// The token signing keys' directory inside the data directory.
pub const KEYS_DIR: &str = "keys";

/// Creates the data directory owner-only, or checks an existing one is a directory we can use.
pub(super) fn prepare(path: &Path) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| Error::DataDir {
            path: path.to_path_buf(),
            source,
        })
}
