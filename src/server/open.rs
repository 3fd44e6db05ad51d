//! Assembling a server's state, in one order: data directory → definitions file → KEK
//! ([`prepare`]) → store ([`connect`]: on etcd, waited for until it answers) → snapshot → issuer → attested signer → events
//! engine → provisioning records → shared state → registry → the file (or given VMs) applied,
//! or the demo VM seeded → definition events imported.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::attested::AttestedSigner;
use crate::clock::Clock;
use crate::config::{AttestedSettings, Settings};
use crate::definition::Definitions;
use crate::identity::Issuer;
use crate::identity::keys::{FileKeyStore, KeyStore};
use crate::maintenance::{HookDelivery, Maintenance};
use crate::provisioning::Provisioning;
use crate::registry::Registry;
use crate::server::error::Error;
use crate::server::waiting::WaitingForStore;
use crate::server::{data_dir, follow, watch};
use crate::snapshot::{CallerMode, Published};
use crate::state::{Parts, Shared};
use crate::store::{self, ATTESTED_KEYS, IDENTITY_KEYS, Kek, SealedKeyStore, Store, StoreLocation};
use crate::writable_paths::WritablePaths;

/// Everything a server serves from, before any listener is bound.
pub(super) struct Opened {
    pub(super) shared: Arc<Shared>,
    pub(super) store: Arc<Store>,
    pub(super) registry: Arc<Registry>,
    pub(super) hooks: Option<HookDelivery>,
    /// Fleet mode: the task following the shared store.
    pub(super) follower: Option<follow::Follower>,
    /// Fleet mode: reads the scheduled events again whenever any host wrote them.
    pub(super) events_follower: Option<follow::Follower>,
    /// Fleet mode: the task following the shared signing keys.
    pub(super) key_follower: Option<follow::Follower>,
    /// What must stay writable, for readiness.
    pub(super) writable: WritablePaths,
}

/// What is checked before the store is touched.
pub(super) struct Prepared {
    definitions: Option<Definitions>,
    /// The `--vms` file, when `definitions` did not come from the caller (parsed already, or
    /// left for `apply` to parse only if the store does not hold its result).
    file: Option<watch::DefinitionsFile>,
    kek: Option<Kek>,
    writable: WritablePaths,
}

/// The data directory, the definitions file and the KEK: a bad file stops the start cleanly,
/// before anything is read or written (or waited for).
pub(super) fn prepare(settings: &Settings, given: Option<Definitions>) -> Result<Prepared, Error> {
    data_dir::prepare(&settings.data)?;
    let writable = writable_paths(settings);
    if let Some(read_only) = writable.check() {
        return Err(Error::ReadOnly(read_only));
    }
    // A bad file stops the start before a store is created for it. A store that exists may
    // already hold what the file gives (`apply`), so there the file is parsed only if needed.
    let mut file = match (&given, &settings.vms) {
        (None, Some(path)) => Some(watch::DefinitionsFile::read(path)?),
        _ => None,
    };
    // etcd never holds a file's result for this host alone (other hosts write): parse now.
    let store_exists = match settings.store {
        StoreLocation::Embedded => settings.data.join(data_dir::STORE_FILE).exists(),
        StoreLocation::Etcd(_) => false,
    };
    let definitions = match (given, &mut file) {
        (Some(given), _) => Some(given),
        (None, Some(file)) if !store_exists => Some(file.parse()?),
        (None, _) => None,
    };
    let kek = open_kek(settings)?;
    Ok(Prepared {
        definitions,
        file,
        kek,
        writable,
    })
}

/// The first wait for an etcd that does not answer at start, doubled after each try up to
/// the maximum.
const ETCD_FIRST_RETRY: Duration = Duration::from_secs(1);
const ETCD_MAX_RETRY: Duration = Duration::from_secs(30);

/// Opens the store `--store` names. An etcd that cannot be reached is waited for, retrying
/// on a backoff and saying why each time: until it answers nothing is bound, so guests are
/// served nothing rather than an empty or stale state. Settings etcd refuses for good (an
/// unreadable TLS file) stop the start instead.
pub(super) async fn connect(
    settings: &Settings,
    waiting: Option<&WaitingForStore>,
) -> Result<Store, Error> {
    let StoreLocation::Etcd(options) = &settings.store else {
        return open_store(settings);
    };
    let endpoints = options.endpoints.join(",");
    let mut retry = ETCD_FIRST_RETRY;
    loop {
        let attempt = options.clone();
        let opened = tokio::task::spawn_blocking(move || Store::open_etcd(&attempt))
            .await
            .map_err(|e| Error::EtcdStore {
                endpoints: endpoints.clone(),
                source: store::Error::Unavailable {
                    reason: e.to_string(),
                },
            })?;
        match opened {
            Ok(store) => {
                tracing::info!(endpoints = %endpoints, prefix = %options.prefix, "store: etcd");
                return Ok(store);
            }
            Err(store::Error::Unavailable { reason }) => {
                if let Some(waiting) = waiting {
                    waiting.failed(&reason);
                }
                tracing::warn!(
                    endpoints = %endpoints,
                    %reason,
                    retry_in_seconds = retry.as_secs(),
                    "cannot reach etcd at start; serving nothing until it answers"
                );
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(ETCD_MAX_RETRY);
            }
            Err(source) => return Err(Error::EtcdStore { endpoints, source }),
        }
    }
}

pub(super) fn open(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    prepared: Prepared,
    store: Store,
) -> Result<Opened, Error> {
    let Prepared {
        definitions,
        file,
        kek,
        writable,
    } = prepared;
    let store = Arc::new(store);
    // The host name picks this host's VMs only on a shared store; alone, it serves them all.
    let host_name = store.is_shared().then(|| settings.host_name.clone());
    let loaded = Registry::load(
        &store,
        settings.callers,
        settings.rate_limit,
        host_name.as_deref(),
    )
    .map_err(Error::Load)?;
    let (snapshot, warnings) = (loaded.snapshot, loaded.warnings);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let key_store = |collection: &'static str, dir: &Path| -> Result<Arc<dyn KeyStore>, Error> {
        match &kek {
            Some(kek) => Ok(Arc::new(SealedKeyStore::new(
                Arc::clone(&store),
                collection,
                kek.clone(),
            ))),
            None => FileKeyStore::open(dir)
                .map(|files| Arc::new(files) as Arc<dyn KeyStore>)
                .map_err(|source| Error::KeyDir {
                    path: dir.to_path_buf(),
                    source,
                }),
        }
    };
    let keys_dir = settings.data.join(data_dir::KEYS_DIR);
    let issuer = Issuer::open(
        key_store(IDENTITY_KEYS, &keys_dir)?,
        settings.token_lifetime,
        clock.now(),
    )
    .map_err(Error::Keys)?;
    let attested_dir = keys_dir.join(data_dir::ATTESTED_KEYS_DIR);
    let attested = open_attested(
        || key_store(ATTESTED_KEYS, &attested_dir),
        &settings.attested,
        clock.as_ref(),
    )?;
    let snapshot = Arc::new(Published::new(snapshot));
    let (events, hooks) = Maintenance::load(
        Arc::clone(&store),
        Arc::clone(&snapshot),
        Arc::clone(&clock),
        settings.events.clone(),
    )
    .map_err(Error::Events)?;
    let provisioning =
        Provisioning::load(Arc::clone(&store), Arc::clone(&clock), events.hook_sender())
            .map_err(Error::Provisioning)?;
    let shared = Arc::new(Shared::new(Parts {
        snapshot,
        clock,
        issuer: Arc::new(issuer),
        identity_limits: settings.identity_limits,
        attested: Arc::new(attested),
        events: Arc::new(events),
        telemetry: settings.telemetry,
        provisioning: Arc::new(provisioning),
    }));
    for spec in &settings.faults {
        let rule = shared
            .faults()
            .add(spec.clone(), shared.clock().now())
            .map_err(Error::Faults)?;
        tracing::info!(rule = %rule.id, action = rule.action.name(), "fault rule from the config file");
    }
    let registry = Arc::new(Registry::new(
        Arc::clone(&store),
        Arc::clone(&shared),
        host_name,
        loaded.revision,
    ));
    // Written before any listener binds: a host serving VMs has a progress key, so a VM
    // moved away from it is served by its new host only once this one dropped it.
    let progress = match registry.host() {
        Some(host) => store
            .start_progress(host, loaded.revision)
            .map_err(|e| Error::Load(e.into()))?,
        None => None,
    };
    let follower = store.is_shared().then(|| {
        follow::start(
            Arc::clone(&registry),
            Arc::clone(&store),
            loaded.revision,
            progress,
        )
    });
    let key_follower = store
        .watch_keys()
        .map(|changes| follow::follow_keys(Arc::clone(&shared), changes));
    let events_follower = store
        .watch_events()
        .map(|changes| follow::follow_events(Arc::clone(&shared), changes));
    apply(settings, &registry, definitions, file)?;
    registry.import_all_events();
    Ok(Opened {
        shared,
        store,
        registry,
        hooks,
        follower,
        key_follower,
        events_follower,
        writable,
    })
}

/// The data directory, the store file and the key directories (those this server uses).
fn writable_paths(settings: &Settings) -> WritablePaths {
    let mut paths = WritablePaths::default();
    paths.add(&settings.data);
    if matches!(settings.store, StoreLocation::Embedded) {
        paths.add(settings.data.join(data_dir::STORE_FILE));
    }
    let keys = settings.data.join(data_dir::KEYS_DIR);
    paths.add(&keys);
    if settings.attested.operator.is_none() {
        paths.add(keys.join(data_dir::ATTESTED_KEYS_DIR));
    }
    paths
}

/// The embedded store: the redb file in the data directory.
pub(super) fn open_store(settings: &Settings) -> Result<Store, Error> {
    let path = settings.data.join(data_dir::STORE_FILE);
    data_dir::check_private_file(&path, "store")?;
    Store::open(&path).map_err(|source| Error::Store { path, source })
}

/// The key-encryption key: fleet mode seals signing keys with it (the config requires it
/// with an etcd store); the embedded store keeps them in owner-only files instead.
fn open_kek(settings: &Settings) -> Result<Option<Kek>, Error> {
    match &settings.store {
        StoreLocation::Etcd(options) => options
            .kek_file
            .as_deref()
            .map(|path| Kek::from_file(path).map_err(Error::Kek))
            .transpose(),
        StoreLocation::Embedded => Ok(None),
    }
}

/// Attested-document certificates: the operator's PEM files, checked now; else a CA and leaves
/// made on the first start and reused after, in `key_store` (`<data>/keys/attested`, or the
/// fleet's sealed keys).
fn open_attested(
    key_store: impl FnOnce() -> Result<Arc<dyn KeyStore>, Error>,
    settings: &AttestedSettings,
    clock: &dyn Clock,
) -> Result<AttestedSigner, Error> {
    let now = clock.now();
    if let Some(operator) = &settings.operator {
        let read = |what: &'static str, path: &Path| {
            std::fs::read_to_string(path).map_err(|source| Error::ReadAttested {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let cert = read("certificate", &operator.cert)?;
        let key = read("private key", &operator.key)?;
        let chain = read("certificate chain", &operator.chain)?;
        return AttestedSigner::from_operator_pem(&cert, &key, &chain, now)
            .map_err(Error::Attested);
    }
    AttestedSigner::open(key_store()?, settings.issuer_url.clone(), now).map_err(Error::Attested)
}

/// Reconciles the definitions into the store; without any, an empty store in single mode
/// gets the demo VM (the zero-config start). A `--vms` file whose bytes the store applied
/// last, with no VM written since, is not parsed again: the store already holds its result.
fn apply(
    settings: &Settings,
    registry: &Registry,
    definitions: Option<Definitions>,
    file: Option<watch::DefinitionsFile>,
) -> Result<(), Error> {
    let name = || {
        settings.vms.as_deref().map_or_else(
            || "the given VM definitions".into(),
            |p| p.display().to_string(),
        )
    };
    let apply_error = |error| Error::Apply {
        file: name(),
        error,
    };
    let (definitions, mark) = match (definitions, file) {
        (None, None) => {
            let seeded = settings.callers == CallerMode::Single
                && registry.seed_demo().map_err(Error::Seed)?;
            if seeded {
                tracing::info!("empty store: serving the built-in demo VM");
            }
            return Ok(());
        }
        (Some(given), None) => (given, None),
        (parsed, Some(mut file)) => {
            if parsed.is_none()
                && registry
                    .file_still_applied(file.mark)
                    .map_err(apply_error)?
            {
                tracing::info!(
                    file = %name(),
                    "VM definitions file unchanged since it was last applied, and no VM written since: not parsed again"
                );
                return Ok(());
            }
            let definitions = match parsed {
                Some(parsed) => parsed,
                None => file.parse()?,
            };
            (definitions, Some(file.mark))
        }
    };
    for path in definitions.unknown_fields() {
        tracing::warn!(field = %path, "unknown instance field kept; served from the newest api-version only");
    }
    let report = match mark {
        Some(mark) => registry.reconcile_file(definitions, mark),
        None => registry.reconcile(definitions),
    }
    .map_err(apply_error)?;
    tracing::info!(
        written = report.written.len(),
        deleted = report.deleted.len(),
        unchanged = report.unchanged,
        "VM definitions file applied"
    );
    Ok(())
}
