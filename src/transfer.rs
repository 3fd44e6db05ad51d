//! `azimds store export` / `import`: a store's contents as JSON lines, to move between the
//! embedded store and etcd, or to keep as a backup (docs/fleet.md, "Moving between stores").
//!
//! One JSON object per line, each with a `kind`; the first line is the header:
//!
//! ```text
//! {"kind":"header","format":"azimds-store","version":1,"backend":"redb","keys":true}
//! {"kind":"vm","id":…,"origin":"api"|"file"|"demo","entry":{…the entry as written…}}
//! {"kind":"event","event":{…}}             a scheduled event, as stored
//! {"kind":"incarnation","vm":…,"incarnation":N}
//! {"kind":"imported","key":"<vm>/<event>"} a definition event already imported
//! {"kind":"provisioning","vm":…,"record":"<base64>"}
//! {"kind":"key","collection":"identity"|"attested","key":{…sealed: sealed_keys.rs…}}
//! ```
//!
//! Private keys are in the file only sealed with the KEK (`--kek-file`), never in the clear.
//! Revisions (ETags) are not carried over: the target store gives its own.

use std::io::{BufRead, Write};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::definition::{self, checked};
use crate::events::Event;
use crate::identity::keys::KeyStore;
use crate::store::sealed_keys::SealedKey;
use crate::store::{self, Checked, Kek, Origin, Store};

/// The most records one import transaction writes on the embedded store.
const IMPORT_CHUNK: usize = 5_000;

pub const FORMAT: &str = "azimds-store";
pub const VERSION: u64 = 1;

/// One line of an export.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Line {
    Header {
        format: String,
        version: u64,
        backend: String,
        /// Whether signing keys follow (an export made with `--without-keys` has none).
        keys: bool,
    },
    Vm {
        id: String,
        origin: Origin,
        entry: Value,
    },
    Event {
        event: Event,
    },
    Incarnation {
        vm: String,
        incarnation: u64,
    },
    Imported {
        key: String,
    },
    Provisioning {
        vm: String,
        record: String,
    },
    Key {
        collection: String,
        key: SealedKey,
    },
}

/// The signing keys that go with a store: a key store per collection and the KEK that seals
/// them in the file.
pub struct Keys {
    pub kek: Kek,
    pub collections: Vec<(&'static str, Arc<dyn KeyStore>)>,
}

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the store: {0}")]
    Store(#[from] crate::store::Error),
    #[error("the signing keys: {0}")]
    Keys(#[from] crate::identity::keys::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error(
        "the target store is not empty ({what}); import only into an empty store, or give --force to write the file's records over it"
    )]
    NotEmpty { what: String },
    #[error(
        "the file has signing keys but no --kek-file was given to open them; give the KEK the export was made with"
    )]
    KeysWithoutKek,
}

/// Writes every record of `store` (and the keys, sealed, if given) to `out`. Returns how
/// many lines were written after the header.
pub fn export(store: &Store, keys: Option<&Keys>, out: &mut dyn Write) -> Result<usize, Error> {
    let mut lines = 0;
    let put = |line: &Line, out: &mut dyn Write| -> Result<(), Error> {
        serde_json::to_writer(&mut *out, line).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    let header = Line::Header {
        format: FORMAT.into(),
        version: VERSION,
        backend: store.backend_name().into(),
        keys: keys.is_some(),
    };
    put(&header, out)?;
    for vm in store.vms()? {
        put(
            &Line::Vm {
                id: vm.id,
                origin: vm.origin,
                entry: vm.definition,
            },
            out,
        )?;
        lines += 1;
    }
    let events = store.events()?;
    let mut incarnations: Vec<_> = events.incarnations.into_iter().collect();
    incarnations.sort();
    for event in events.events {
        put(&Line::Event { event }, out)?;
        lines += 1;
    }
    for (vm, incarnation) in incarnations {
        put(&Line::Incarnation { vm, incarnation }, out)?;
        lines += 1;
    }
    for key in events.imported {
        put(&Line::Imported { key }, out)?;
        lines += 1;
    }
    for (vm, record) in store.provisioning_records()? {
        let record = STANDARD.encode(record);
        put(&Line::Provisioning { vm, record }, out)?;
        lines += 1;
    }
    if let Some(keys) = keys {
        for (collection, key_store) in &keys.collections {
            let mut stored = key_store.load()?;
            stored.sort_by(|a, b| a.kid.cmp(&b.kid));
            for key in stored {
                let key = SealedKey::seal(&keys.kek, collection, &key).map_err(|message| {
                    Error::Line {
                        line: lines + 2,
                        message,
                    }
                })?;
                let collection = collection.to_string();
                put(&Line::Key { collection, key }, out)?;
                lines += 1;
            }
        }
    }
    out.flush()?;
    Ok(lines)
}

/// What an import wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub vms: usize,
    pub events: usize,
    pub provisioning: usize,
    pub keys: usize,
}

/// Reads an export into `store` (and the keys into `keys`). The whole file is read and
/// checked first (every VM entry checked as a write would be), so a bad file writes nothing.
/// Refused into a store that holds anything unless `force`.
pub fn import(
    store: &Store,
    keys: Option<&Keys>,
    input: impl BufRead,
    force: bool,
) -> Result<Imported, Error> {
    let lines = read(input)?;
    if !force {
        check_empty(store, keys)?;
    }
    let mut imported = Imported::default();
    let fingerprint = checked::fingerprint();
    let mut vms = Vec::new();
    let mut events = Vec::new();
    let mut incarnations = Vec::new();
    let mut marks = Vec::new();
    let mut provisioning = Vec::new();
    let mut opened_keys = Vec::new();
    for (at, line) in &lines {
        let at = *at;
        match line {
            Line::Header { .. } => {}
            Line::Key { collection, key } => {
                let keys = keys.ok_or(Error::KeysWithoutKek)?;
                let Some((name, key_store)) = keys
                    .collections
                    .iter()
                    .find(|(name, _)| *name == collection.as_str())
                else {
                    return Err(Error::Line {
                        line: at,
                        message: format!("{collection:?} is not a key collection"),
                    });
                };
                let stored = key
                    .open(&keys.kek, name)
                    .map_err(|message| Error::Line { line: at, message })?;
                opened_keys.push((key_store, stored));
            }
            Line::Vm { id, origin, entry } => {
                let vm = definition::vm_from_json(entry, id).map_err(|problems| Error::Line {
                    line: at,
                    message: format!("VM {id:?} is not valid: {}", problem_list(&problems)),
                })?;
                let written = definition::written_entry(entry.clone(), id);
                vms.push((id, *origin, written, checked::encode(&vm)));
            }
            Line::Event { event } => events.push(event),
            Line::Incarnation { vm, incarnation } => incarnations.push((vm.as_str(), *incarnation)),
            Line::Imported { key } => marks.push(key.as_str()),
            Line::Provisioning { vm, record } => {
                let bytes = STANDARD.decode(record).map_err(|e| Error::Line {
                    line: at,
                    message: format!("provisioning record of {vm:?} is not base64: {e}"),
                })?;
                provisioning.push((vm, bytes));
            }
        }
    }
    // Records are written in transactions as large as the store takes (etcd's
    // `--max-txn-ops`; an events write also puts the events revision, one more), and at most
    // IMPORT_CHUNK at a time on the embedded store, whose transaction holds its pages in memory.
    let per_transaction = store.changes_per_transaction().clamp(2, IMPORT_CHUNK);
    for chunk in vms.chunks(per_transaction) {
        store.batch(|batch| {
            for (id, origin, written, form) in chunk {
                let checked = Checked {
                    by: fingerprint,
                    form,
                };
                batch.put(id, *origin, written, checked)?;
            }
            Ok::<_, store::Error>(())
        })?;
        imported.vms += chunk.len();
    }
    for (vm, bytes) in &provisioning {
        store.put_provisioning(vm, bytes)?;
        imported.provisioning += 1;
    }
    let per_events_write = per_transaction - 1;
    for chunk in events.chunks(per_events_write) {
        store.write_events(None, chunk, &[], &[], &[])?;
        imported.events += chunk.len();
    }
    for chunk in incarnations.chunks(per_events_write) {
        store.write_events(None, &[], &[], chunk, &[])?;
    }
    for chunk in marks.chunks(per_events_write) {
        store.write_events(None, &[], &[], &[], chunk)?;
    }
    for (key_store, stored) in &opened_keys {
        key_store.save(stored)?;
        imported.keys += 1;
    }
    Ok(imported)
}

/// Parses every line (with its number), checking the header and opening nothing yet.
fn read(input: impl BufRead) -> Result<Vec<(usize, Line)>, Error> {
    let mut lines = Vec::new();
    for (at, text) in input.lines().enumerate() {
        let text = text?;
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(&text).map_err(|e| Error::Line {
            line: at + 1,
            message: e.to_string(),
        })?;
        match (&line, lines.is_empty()) {
            (
                Line::Header {
                    format, version, ..
                },
                true,
            ) if format != FORMAT || *version != VERSION => {
                return Err(Error::Line {
                    line: at + 1,
                    message: format!(
                        "format {format:?} version {version}; this azimds reads {FORMAT:?} version {VERSION}"
                    ),
                });
            }
            (Line::Header { .. }, true) => {}
            (_, true) => {
                return Err(Error::Line {
                    line: at + 1,
                    message: "the first line is not a header: not an azimds store export".into(),
                });
            }
            (Line::Header { .. }, false) => {
                return Err(Error::Line {
                    line: at + 1,
                    message: "a second header".into(),
                });
            }
            _ => {}
        }
        lines.push((at + 1, line));
    }
    if lines.is_empty() {
        return Err(Error::Line {
            line: 1,
            message: "the file is empty".into(),
        });
    }
    Ok(lines)
}

fn check_empty(store: &Store, keys: Option<&Keys>) -> Result<(), Error> {
    let mut held = Vec::new();
    let vms = store.vm_count()?;
    if vms > 0 {
        held.push(format!("{vms} VMs"));
    }
    let events = store.events()?;
    if !events.events.is_empty() || !events.incarnations.is_empty() {
        held.push("scheduled events".into());
    }
    if !store.provisioning_records()?.is_empty() {
        held.push("provisioning records".into());
    }
    if let Some(keys) = keys {
        for (collection, key_store) in &keys.collections {
            if !key_store.load()?.is_empty() {
                held.push(format!("{collection} keys"));
            }
        }
    }
    if held.is_empty() {
        Ok(())
    } else {
        Err(Error::NotEmpty {
            what: held.join(", "),
        })
    }
}

fn problem_list(problems: &[crate::problem::Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}
