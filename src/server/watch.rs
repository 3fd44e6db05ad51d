//! `--vms FILE`: read and parsed at start, then re-applied whenever the file changes (checked
//! every second). A bad edit is logged and ignored: the previous state keeps being served. An
//! edit the store cannot commit (a full disk) is retried every second until it can.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::definition::{self, Definitions, Syntax};
use crate::registry::{self, Registry};
use crate::server::error::Error;
use crate::store::FileMark;

/// How often the file's size and modification time are compared.
const POLL: Duration = Duration::from_secs(1);

/// A definitions file read whole: its text, and the mark that says whether the store has
/// already applied exactly these bytes (`store::FileMark`).
pub(super) struct DefinitionsFile {
    name: String,
    text: String,
    pub(super) mark: FileMark,
}

impl DefinitionsFile {
    pub(super) fn read(path: &Path) -> Result<DefinitionsFile, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadDefinitions {
            path: path.to_path_buf(),
            source,
        })?;
        let mark = FileMark {
            digest: openssl::sha::sha256(text.as_bytes()),
            by: definition::checked::fingerprint(),
        };
        Ok(DefinitionsFile {
            name: path.display().to_string(),
            text,
            mark,
        })
    }

    /// Parses and checks it, then lets its text go: a 100k-VM file is not held beside the VMs
    /// it gives while they are committed. Call it once.
    pub(super) fn parse(&mut self) -> Result<Definitions, Error> {
        let text = std::mem::take(&mut self.text);
        Ok(definition::parse(
            &text,
            Syntax::from_file_name(&self.name),
            &self.name,
        )?)
    }
}

/// Re-applies `path` through `registry` each time it changes, until `shutdown`.
pub(super) async fn watch_definitions(
    path: PathBuf,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()>,
) {
    let fingerprint = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut last = fingerprint(&path);
    // Set while an edit waits for the store to commit again: logged once, retried each poll.
    let mut waiting_for_store = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(POLL) => {}
        }
        let current = fingerprint(&path);
        if (current == last && !waiting_for_store) || current.is_none() {
            continue;
        }
        last = current;
        let parsed =
            DefinitionsFile::read(&path).and_then(|mut file| Ok((file.parse()?, file.mark)));
        let (definitions, mark) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::error!("{error}; keeping the previous VMs");
                continue;
            }
        };
        let writer = Arc::clone(&registry);
        match tokio::task::spawn_blocking(move || writer.reconcile_file(definitions, mark)).await {
            Ok(Ok(report)) => {
                waiting_for_store = false;
                tracing::info!(
                    file = %path.display(),
                    written = report.written.len(),
                    deleted = report.deleted.len(),
                    unchanged = report.unchanged,
                    "VM definitions file changed and was applied"
                )
            }
            Ok(Err(error @ registry::Error::Store(crate::store::Error::Unavailable { .. }))) => {
                if !std::mem::replace(&mut waiting_for_store, true) {
                    tracing::error!(file = %path.display(), "{error}; keeping the previous VMs and retrying every second");
                }
            }
            Ok(Err(error)) => {
                waiting_for_store = false;
                tracing::error!(file = %path.display(), "{error}; keeping the previous VMs")
            }
            Err(error) => tracing::error!(%error, "applying the definitions file failed"),
        }
    }
}
