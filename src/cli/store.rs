//! `azimds store export` / `import`: a store's records (and its signing keys, sealed with the
//! KEK) as JSON lines (`transfer.rs`), read from or written into the store directly, not
//! through a server: stop the server of an embedded store first (redb allows one process).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::Failure;
use crate::config::store::{StoreArgs, resolve_for_tool};
use crate::identity::keys::{FileKeyStore, KeyStore};
use crate::server::{ATTESTED_KEYS_DIR, KEYS_DIR, STORE_FILE};
use crate::store::{ATTESTED_KEYS, IDENTITY_KEYS, Kek, SealedKeyStore, Store, StoreLocation};
use crate::transfer::{self, Keys};

/// `azimds store …`
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Write every VM, scheduled event, provisioning record and signing key of a store as JSON
    /// lines (keys sealed with --kek-file). Also a backup.
    ///
    /// Example: azimds store export --data /var/lib/azimds --kek-file kek > backup.jsonl
    Export {
        /// Where to write; `-` for stdout. [default: -]
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Leave the signing keys out (then no --kek-file is needed); a store imported from
        /// it makes new keys, so tokens and documents issued before do not verify after.
        #[arg(long)]
        without_keys: bool,
        #[command(flatten)]
        store: StoreToolArgs,
    },
    /// Read an export into a store, which must be empty unless --force.
    ///
    /// Example: azimds store import --store etcd://10.0.0.1:2379 --kek-file kek backup.jsonl
    Import {
        /// The export; `-` for stdin.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Write the file's records over a store that already holds some (records the file
        /// does not name are kept).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        store: StoreToolArgs,
    },
}

/// Which store: `--data` (the embedded file and `<data>/keys`) or `--store etcd://…`.
#[derive(Debug, clap::Args)]
pub struct StoreToolArgs {
    /// The data directory of the embedded store. [default: as for `serve`]
    #[arg(long, env = "AZIMDS_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Runs `azimds store …`.
pub async fn store(
    command: StoreCommand,
    default_data: impl FnOnce() -> PathBuf,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let failed = |message: String| Failure::new(1, message);
    match command {
        StoreCommand::Export {
            output,
            without_keys,
            store,
        } => {
            let keys = if without_keys {
                KeysWanted::No
            } else {
                KeysWanted::Required
            };
            let opened = open(store, default_data, keys, false)?;
            let mut file;
            let target: &mut dyn Write = match output.as_deref() {
                None => out,
                Some(path) if path == Path::new("-") => out,
                Some(path) => {
                    file =
                        std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| {
                            failed(format!("cannot create {}: {e}", path.display()))
                        })?);
                    &mut file
                }
            };
            let store = Arc::clone(&opened.store);
            let keys = opened.keys;
            let lines = transfer::export(&store, keys.as_ref(), target)
                .map_err(|e| failed(format!("export: {e}")))?;
            eprintln!(
                "azimds: exported {lines} records from the {} store",
                store.backend_name()
            );
            Ok(())
        }
        StoreCommand::Import { file, force, store } => {
            // A file without keys needs no KEK; one with keys and none given is refused
            // with the reason when its first key line is read, before anything is written.
            let opened = open(store, default_data, KeysWanted::IfGiven, true)?;
            let input: Box<dyn std::io::BufRead> = if file == Path::new("-") {
                Box::new(std::io::BufReader::new(std::io::stdin()))
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(&file)
                        .map_err(|e| failed(format!("cannot read {}: {e}", file.display())))?,
                ))
            };
            let imported = transfer::import(&opened.store, opened.keys.as_ref(), input, force)
                .map_err(|e| failed(format!("import: {e}")))?;
            eprintln!(
                "azimds: imported {} VMs, {} scheduled events, {} provisioning records, {} signing keys into the {} store",
                imported.vms,
                imported.events,
                imported.provisioning,
                imported.keys,
                opened.store.backend_name()
            );
            Ok(())
        }
    }
}

struct Opened {
    store: Arc<Store>,
    keys: Option<Keys>,
}

/// Whether a store tool opens the store's signing keys (with the KEK).
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeysWanted {
    /// An export with keys: the KEK is required.
    Required,
    /// An import: the keys are opened when a KEK is given.
    IfGiven,
    /// `--without-keys`.
    No,
}

/// Opens the store and, as `keys` says, its key stores and the KEK. An embedded store is
/// made only when `creating` (an import); an export of a data directory without one is
/// refused rather than exporting a new, empty store.
fn open(
    args: StoreToolArgs,
    default_data: impl FnOnce() -> PathBuf,
    keys: KeysWanted,
    creating: bool,
) -> Result<Opened, Failure> {
    let usage = |message: String| Failure::new(2, message);
    let failed = |message: String| Failure::new(1, message);
    let (location, kek_file) = resolve_for_tool(args.store).map_err(usage)?;
    let with_keys = keys != KeysWanted::No;
    let kek = match (kek_file, keys) {
        (Some(path), _) => Some(Kek::from_file(&path).map_err(|e| usage(e.to_string()))?),
        (None, KeysWanted::Required) => {
            return Err(usage(
                "signing keys are exported sealed with a key-encryption key: give --kek-file (32 random bytes, owner-only), or --without-keys to leave them out".into(),
            ));
        }
        (None, _) => None,
    };
    match location {
        StoreLocation::Embedded => {
            let data = args.data.unwrap_or_else(default_data);
            let path = data.join(STORE_FILE);
            if !creating && !path.exists() {
                return Err(failed(format!(
                    "there is no store at {} (give the server's --data)",
                    path.display()
                )));
            }
            if creating && !data.exists() {
                // Owner-only, as `serve` makes it (it holds the control token and keys).
                std::os::unix::fs::DirBuilderExt::mode(
                    std::fs::DirBuilder::new().recursive(true),
                    0o700,
                )
                .create(&data)
                .map_err(|e| failed(format!("cannot create {}: {e}", data.display())))?;
            }
            let store =
                Arc::new(Store::open(&path).map_err(|e| {
                    failed(format!("cannot open the store {}: {e}", path.display()))
                })?);
            let keys = kek
                .filter(|_| with_keys)
                .map(|kek| -> Result<Keys, Failure> {
                    let files = |dir: PathBuf| -> Result<Arc<dyn KeyStore>, Failure> {
                        FileKeyStore::open(&dir)
                            .map(|s| Arc::new(s) as Arc<dyn KeyStore>)
                            .map_err(|e| failed(e.to_string()))
                    };
                    let identity = data.join(KEYS_DIR);
                    let attested = identity.join(ATTESTED_KEYS_DIR);
                    Ok(Keys {
                        kek,
                        collections: vec![
                            (IDENTITY_KEYS, files(identity)?),
                            (ATTESTED_KEYS, files(attested)?),
                        ],
                    })
                });
            Ok(Opened {
                store,
                keys: keys.transpose()?,
            })
        }
        StoreLocation::Etcd(options) => {
            let store = Arc::new(Store::open_etcd(&options).map_err(|e| {
                failed(format!(
                    "cannot open the etcd store at {}: {e}",
                    options.endpoints.join(",")
                ))
            })?);
            let keys = kek.filter(|_| with_keys).map(|kek| {
                let sealed = |collection| -> Arc<dyn KeyStore> {
                    Arc::new(SealedKeyStore::new(
                        Arc::clone(&store),
                        collection,
                        kek.clone(),
                    ))
                };
                Keys {
                    collections: vec![
                        (IDENTITY_KEYS, sealed(IDENTITY_KEYS)),
                        (ATTESTED_KEYS, sealed(ATTESTED_KEYS)),
                    ],
                    kek,
                }
            });
            Ok(Opened { store, keys })
        }
    }
}
