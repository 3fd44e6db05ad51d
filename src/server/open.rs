//! Assembling a server's state, in one order and synchronously (store IO, key generation):
//! data directory → definitions file → store → snapshot → issuer → attested signer → events
//! engine → provisioning records → shared state → registry → the file (or given VMs) applied,
//! or the demo VM seeded → definition events imported.

use std::path::Path;
use std::sync::Arc;

use crate::attested::AttestedSigner;
use crate::clock::Clock;
use crate::config::{AttestedSettings, Settings};
use crate::definition::Definitions;
use crate::identity::Issuer;
use crate::identity::keys::FileKeyStore;
use crate::maintenance::{HookDelivery, Maintenance};
use crate::provisioning::Provisioning;
use crate::registry::Registry;
use crate::server::error::Error;
use crate::server::{data_dir, follow, watch};
use crate::snapshot::{CallerMode, Published};
use crate::state::{Parts, Shared};
use crate::store::{Store, StoreLocation};
use crate::writable_paths::WritablePaths;

/// Everything a server serves from, before any listener is bound.
pub(super) struct Opened {
    pub(super) shared: Arc<Shared>,
    pub(super) store: Arc<Store>,
    pub(super) registry: Arc<Registry>,
    pub(super) hooks: Option<HookDelivery>,
    /// Fleet mode: the task following the shared store.
    pub(super) follower: Option<follow::Follower>,
    /// What must stay writable, for readiness.
    pub(super) writable: WritablePaths,
}

pub(super) fn open(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    given: Option<Definitions>,
) -> Result<Opened, Error> {
    data_dir::prepare(&settings.data)?;
    let writable = writable_paths(settings);
    if let Some(read_only) = writable.check() {
        return Err(Error::ReadOnly(read_only));
    }
    // Parse the file before touching anything, so a bad file stops the start cleanly.
    let definitions = match (given, &settings.vms) {
        (Some(given), _) => Some(given),
        (None, Some(path)) => Some(watch::load_definitions(path)?),
        (None, None) => None,
    };
    let store = Arc::new(open_store(settings)?);
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
    let issuer = open_issuer(&settings.data, settings.token_lifetime, clock.as_ref())?;
    let attested = open_attested(&settings.data, &settings.attested, clock.as_ref())?;
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
    let follower = store
        .is_shared()
        .then(|| follow::start(Arc::clone(&registry), Arc::clone(&store), loaded.revision));
    apply(settings, &registry, definitions)?;
    registry.import_all_events();
    Ok(Opened {
        shared,
        store,
        registry,
        hooks,
        follower,
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

/// The store `--store` names: the redb file in the data directory, or an etcd cluster.
fn open_store(settings: &Settings) -> Result<Store, Error> {
    match &settings.store {
        StoreLocation::Embedded => {
            let path = settings.data.join(data_dir::STORE_FILE);
            data_dir::check_private_file(&path, "store")?;
            Store::open(&path).map_err(|source| Error::Store { path, source })
        }
        StoreLocation::Etcd(options) => {
            let store = Store::open_etcd(options).map_err(|source| Error::EtcdStore {
                endpoints: options.endpoints.join(","),
                source,
            })?;
            tracing::info!(endpoints = %options.endpoints.join(","), prefix = %options.prefix, "store: etcd");
            Ok(store)
        }
    }
}

/// Token signing keys: made on the first start, reused after (owner-only files).
fn open_issuer(data: &Path, lifetime: u64, clock: &dyn Clock) -> Result<Issuer, Error> {
    let keys_dir = data.join(data_dir::KEYS_DIR);
    let key_store = FileKeyStore::open(&keys_dir).map_err(|source| Error::KeyDir {
        path: keys_dir,
        source,
    })?;
    Issuer::open(Arc::new(key_store), lifetime, clock.now()).map_err(Error::Keys)
}

/// Attested-document certificates: the operator's PEM files, checked now; else a CA and leaves
/// made on the first start under `<data>/keys/attested` and reused after (owner-only files).
fn open_attested(
    data: &Path,
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
    let dir = data
        .join(data_dir::KEYS_DIR)
        .join(data_dir::ATTESTED_KEYS_DIR);
    let store = FileKeyStore::open(&dir).map_err(|source| Error::KeyDir { path: dir, source })?;
    AttestedSigner::open(Arc::new(store), settings.issuer_url.clone(), now).map_err(Error::Attested)
}

/// Reconciles the definitions into the store; without any, an empty store in single mode
/// gets the demo VM (the zero-config start).
fn apply(
    settings: &Settings,
    registry: &Registry,
    definitions: Option<Definitions>,
) -> Result<(), Error> {
    let Some(definitions) = definitions else {
        let seeded =
            settings.callers == CallerMode::Single && registry.seed_demo().map_err(Error::Seed)?;
        if seeded {
            tracing::info!("empty store: serving the built-in demo VM");
        }
        return Ok(());
    };
    for path in definitions.unknown_fields() {
        tracing::warn!(field = %path, "unknown instance field kept; served from the newest api-version only");
    }
    let file = settings.vms.as_deref().map_or_else(
        || "the given VM definitions".into(),
        |p| p.display().to_string(),
    );
    let report = registry
        .reconcile(definitions)
        .map_err(|error| Error::Apply { file, error })?;
    tracing::info!(
        written = report.written.len(),
        deleted = report.deleted.len(),
        unchanged = report.unchanged,
        "VM definitions file applied"
    );
    Ok(())
}
