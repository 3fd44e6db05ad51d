//! Why a server could not start: each variant names what failed and where.

use std::path::PathBuf;

use crate::definition::DefinitionError;
use crate::identity::keys;
use crate::{attested, maintenance, provisioning, registry, store};

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read VM definitions {path}: {source}")]
    ReadDefinitions {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Definitions(#[from] DefinitionError),
    #[error("cannot open the store {path}: {source}")]
    Store { path: PathBuf, source: store::Error },
    #[error("cannot open the etcd store at {endpoints}: {source}")]
    EtcdStore {
        endpoints: String,
        source: store::Error,
    },
    #[error("cannot load the VMs in the store: {0}")]
    Load(registry::Error),
    #[error("cannot use the key directory {path}: {source}")]
    KeyDir { path: PathBuf, source: keys::Error },
    #[error("{0}")]
    Kek(store::kek::KekError),
    #[error("cannot load the token signing keys: {0}")]
    Keys(keys::Error),
    #[error("cannot read the attested {what} {path}: {source}")]
    ReadAttested {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up attested-document signing: {0}")]
    Attested(attested::Error),
    #[error("cannot load the scheduled events in the store: {0}")]
    Events(maintenance::Error),
    #[error("cannot load the provisioning records in the store: {0}")]
    Provisioning(provisioning::Error),
    #[error("cannot apply {file}: {error}")]
    Apply {
        file: String,
        error: registry::Error,
    },
    #[error("cannot seed the demo VM: {0}")]
    Seed(registry::Error),
    #[error("cannot listen for {what} on {address}: {source}")]
    Listen {
        what: &'static str,
        address: String,
        source: std::io::Error,
    },
    #[error("cannot use the control token: {0}")]
    ControlToken(std::io::Error),
    #[error("refusing to use {path}: {reason}")]
    UnsafePath { path: PathBuf, reason: String },
    #[error("cannot add the config file's fault rules: {0}")]
    Faults(crate::faults::AddError),
    #[error("refusing a data directory that cannot be written: {0}")]
    ReadOnly(crate::writable_paths::ReadOnly),
    #[error("cannot restrict {path}: {source}")]
    Restrict {
        path: PathBuf,
        source: std::io::Error,
    },
}
