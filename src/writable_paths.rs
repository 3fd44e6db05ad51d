//! The paths azimds must be able to write: the data directory, the store file, the key
//! directories. A read-only one (a read-only mount, an immutable file, a mode that denies this
//! user) is refused at start, and found by readiness if it turns read-only later, so a
//! server never half-uses its data: serving reads while the next key rotation or event
//! approval would fail.
//!
//! The check is `faccessat(W_OK)` with the effective ids: no IO, cheap enough for every
//! readiness probe, and it sees what permission bits cannot show root (a read-only mount
//! answers `EROFS`, an immutable file `EPERM`, even to root).

use std::path::{Path, PathBuf};

use rustix::fs::{Access, AtFlags, CWD, accessat};

/// A path that cannot be written, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOnly {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for ReadOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is not writable: {}",
            self.path.display(),
            self.reason
        )
    }
}

/// The paths to keep writable, in the order they are checked.
#[derive(Clone, Debug, Default)]
pub struct WritablePaths {
    paths: Vec<PathBuf>,
}

impl WritablePaths {
    /// Adds a path; one that does not exist yet is skipped by [`WritablePaths::check`] (its
    /// directory is checked, and creating it fails loudly).
    pub fn add(&mut self, path: impl Into<PathBuf>) {
        self.paths.push(path.into());
    }

    /// The first path that exists and cannot be written.
    pub fn check(&self) -> Option<ReadOnly> {
        self.paths.iter().find_map(|path| not_writable(path))
    }
}

fn not_writable(path: &Path) -> Option<ReadOnly> {
    match accessat(CWD, path, Access::WRITE_OK, AtFlags::EACCESS) {
        Ok(()) => None,
        Err(rustix::io::Errno::NOENT) => None,
        Err(errno) => Some(ReadOnly {
            path: path.to_path_buf(),
            reason: match errno {
                rustix::io::Errno::ROFS => "it is on a read-only file system".into(),
                rustix::io::Errno::PERM => "it is immutable (chattr +i)".into(),
                rustix::io::Errno::ACCESS => "this user may not write to it".into(),
                other => std::io::Error::from(other).to_string(),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Read-only mounts and immutable files need root and a mount: tests/it/read_only.rs.
    #[test]
    fn missing_paths_are_skipped_and_writable_ones_pass() {
        let dir = std::env::temp_dir().join(format!("azimds-writable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut paths = WritablePaths::default();
        paths.add(&dir);
        paths.add(dir.join("not-there"));
        assert_eq!(paths.check(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
