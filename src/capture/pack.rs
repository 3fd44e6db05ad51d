//! The fixture pack: what `azimds capture` writes and `azimds replay` serves. A directory:
//!
//! ```text
//! DIR/pack.json                       the manifest: source, time, and per response its
//!                                     request, status, headers and body file
//! DIR/vms.yaml                        the VM as a definition (`azimds serve --vms`)
//! DIR/versions.json                   one body file per response, named by endpoint and
//! DIR/instance/2021-02-01.json        api-version (`-extended` with extended=true),
//! DIR/instance/2021-02-01-extended.json  exactly the bytes the service sent
//! DIR/scheduledevents/2020-07-01.json
//! DIR/errors/no-metadata-header.json  …
//! ```
//!
//! Header names are kept lower-case (HTTP field names are case-insensitive); `Date`,
//! `Content-Length` and hop-by-hop headers are not recorded: a server computes them per answer.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The manifest's file name.
pub const MANIFEST: &str = "pack.json";
/// The VM definition's file name.
pub const VMS_FILE: &str = "vms.yaml";
/// The manifest format this build reads and writes.
pub const FORMAT: u32 = 1;

/// Headers a server computes for each answer, never replayed from a recording.
pub const COMPUTED_HEADERS: [&str; 6] = [
    "date",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
];

/// The manifest (`pack.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The base URL captured (`http://169.254.169.254`).
    pub source: String,
    /// When, RFC 3339 UTC.
    pub captured_at: String,
    /// The azimds version that captured it.
    pub azimds_version: String,
    /// Whether secrets and personal values were replaced (README "Capture and replay").
    pub scrubbed: bool,
    pub responses: Vec<Recorded>,
}

/// One recorded exchange.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// Endpoint and version, e.g. `instance/2021-02-01-extended`; also the body's file stem.
    pub name: String,
    pub request: RecordedRequest,
    pub status: u16,
    /// In the order received, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body file, relative to the pack directory.
    pub body: String,
}

/// The request that got a recorded answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query as sent, e.g. `/metadata/instance?api-version=2021-02-01`.
    pub target: String,
    /// Whether the request carried `Metadata: true`.
    pub metadata: bool,
}

/// A pack loaded in memory: the manifest and each response's body, in manifest order.
#[derive(Clone, Debug)]
pub struct Pack {
    pub manifest: Manifest,
    pub bodies: Vec<Bytes>,
}

/// Why a pack cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a fixture pack manifest: {message}")]
    Manifest { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Pack {
    /// Reads `dir/pack.json` and every body it names.
    pub fn read(dir: &Path) -> Result<Pack, Error> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read(&path).map_err(io(&path))?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| Error::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if manifest.format != FORMAT {
            return Err(Error::Manifest {
                path,
                message: format!(
                    "format {} (this azimds reads format {FORMAT})",
                    manifest.format
                ),
            });
        }
        let mut bodies = Vec::with_capacity(manifest.responses.len());
        for response in &manifest.responses {
            let file = body_path(dir, &response.body).ok_or_else(|| Error::Manifest {
                path: path.clone(),
                message: format!("body {:?} is not a path inside the pack", response.body),
            })?;
            bodies.push(Bytes::from(std::fs::read(&file).map_err(io(&file))?));
        }
        Ok(Pack { manifest, bodies })
    }

    /// Writes every body, then the manifest (so a pack with a manifest is complete).
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        for (response, body) in self.manifest.responses.iter().zip(&self.bodies) {
            let file = body_path(dir, &response.body).ok_or_else(|| Error::Manifest {
                path: dir.join(MANIFEST),
                message: format!("body {:?} is not a path inside the pack", response.body),
            })?;
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::write(&file, body).map_err(io(&file))?;
        }
        let path = dir.join(MANIFEST);
        let mut text = serde_json::to_vec_pretty(&self.manifest).expect("a manifest serializes");
        text.push(b'\n');
        std::fs::write(&path, text).map_err(io(&path))
    }

    /// The position of the recorded response named `name`.
    pub fn get_index(&self, name: &str) -> Option<usize> {
        self.manifest.responses.iter().position(|r| r.name == name)
    }

    /// The recorded response named `name`, with its body.
    pub fn get(&self, name: &str) -> Option<(&Recorded, &Bytes)> {
        self.manifest
            .responses
            .iter()
            .zip(&self.bodies)
            .find(|(r, _)| r.name == name)
    }
}

/// `relative` inside `dir`, refusing absolute paths and `..` (a manifest is input).
fn body_path(dir: &Path, relative: &str) -> Option<PathBuf> {
    let relative = Path::new(relative);
    let inside = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (inside && !relative.as_os_str().is_empty()).then(|| dir.join(relative))
}

/// The body file for a response named `name` whose `Content-Type` is `content_type`.
pub fn body_file(name: &str, content_type: Option<&str>) -> String {
    let extension = match content_type {
        Some(t) if t.starts_with("application/json") => "json",
        Some(t) if t.starts_with("text/") => "txt",
        _ => "bin",
    };
    format!("{name}.{extension}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_stay_inside_the_pack() {
        let dir = Path::new("/pack");
        assert_eq!(
            body_path(dir, "instance/2021-02-01.json"),
            Some(PathBuf::from("/pack/instance/2021-02-01.json"))
        );
        assert_eq!(body_path(dir, "../etc/passwd"), None);
        assert_eq!(body_path(dir, "/etc/passwd"), None);
        assert_eq!(body_path(dir, "a/./b"), Some(PathBuf::from("/pack/a/b")));
        assert_eq!(body_path(dir, ""), None);
    }
}
