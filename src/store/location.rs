//! Where the store lives (`--store`): the embedded redb file in the data directory, or an etcd
//! cluster. Parsed and checked here whether or not this build has the etcd backend, so a
//! build without it says so instead of rejecting the flag as unknown.

use std::fmt;
use std::path::PathBuf;

/// The default key prefix in etcd: every key azimds writes starts with it.
pub(crate) const DEFAULT_ETCD_PREFIX: &str = "/azimds/";

/// Which backend holds the store.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum StoreLocation {
    /// `azimds.redb` in the data directory (the default).
    #[default]
    Embedded,
    /// An etcd v3 cluster (`etcd://host:port[,host:port…]`).
    Etcd(EtcdOptions),
}

/// How to reach the etcd cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// `host:port` of each member; the client balances over them and fails over.
    pub endpoints: Vec<String>,
    /// Every key starts with this (ends with `/`), so several fleets or other tools can share
    /// one cluster.
    pub prefix: String,
    /// TLS towards etcd: set when a CA or a client certificate is given.
    pub tls: Option<EtcdTls>,
    /// etcd's user/password authentication.
    pub auth: Option<EtcdAuth>,
    /// The key-encryption key's file (`--kek-file`): signing keys are sealed with it before
    /// they are written to etcd. Required to serve on etcd.
    pub kek_file: Option<PathBuf>,
    /// How many operations one transaction may hold (`--etcd-max-txn-ops`, etcd's own
    /// `--max-txn-ops`): larger batches are refused before they are sent.
    pub max_txn_ops: usize,
}

/// etcd's default `--max-txn-ops`.
pub(crate) const DEFAULT_MAX_TXN_OPS: usize = 128;

/// TLS files (PEM): the CA that signed etcd's server certificates, and this host's client
/// certificate and key when etcd requires them (`--client-cert-auth`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EtcdTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// etcd user and password (the password read from a file, never from the command line).
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdAuth {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("tls", &self.tls)
            .field("auth", &self.auth)
            .field("kek_file", &self.kek_file)
            .field("max_txn_ops", &self.max_txn_ops)
            .finish()
    }
}

impl fmt::Debug for EtcdAuth {
    /// The password is left out: options are logged at start.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdAuth")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Parses `--store`: `redb` (or left out) for the embedded file, `etcd://host:port[,…]`.
pub(crate) fn parse_store(text: &str) -> Result<StoreLocation, String> {
    if text == "redb" {
        return Ok(StoreLocation::Embedded);
    }
    let Some(list) = text.strip_prefix("etcd://") else {
        return Err(format!(
            "{text:?} is not a store: use `redb` (the file in the data directory) or etcd://host:port[,host:port…]"
        ));
    };
    let endpoints = parse_endpoints(list)?;
    Ok(StoreLocation::Etcd(EtcdOptions {
        endpoints,
        prefix: DEFAULT_ETCD_PREFIX.to_string(),
        tls: None,
        auth: None,
        kek_file: None,
        max_txn_ops: DEFAULT_MAX_TXN_OPS,
    }))
}

fn parse_endpoints(list: &str) -> Result<Vec<String>, String> {
    let mut endpoints = Vec::new();
    for endpoint in list.split(',') {
        let valid = endpoint.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return Err(format!(
                "{endpoint:?} is not an etcd endpoint: give host:port (e.g. etcd://10.0.0.1:2379,10.0.0.2:2379)"
            ));
        }
        endpoints.push(endpoint.to_string());
    }
    Ok(endpoints)
}

/// Checks `--etcd-prefix`: non-empty, starting and ending with `/` (so `/a/` never matches the
/// keys of `/ab/`).
pub(crate) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() >= 2 && prefix.starts_with('/') && prefix.ends_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{prefix:?} is not a key prefix: it starts and ends with `/` (e.g. {DEFAULT_ETCD_PREFIX})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_redb_or_etcd_endpoints() {
        assert_eq!(parse_store("redb"), Ok(StoreLocation::Embedded));
        let StoreLocation::Etcd(options) = parse_store("etcd://10.0.0.1:2379,etcd-b:2379").unwrap()
        else {
            panic!("an etcd store")
        };
        assert_eq!(options.endpoints, ["10.0.0.1:2379", "etcd-b:2379"]);
        assert_eq!(options.prefix, "/azimds/");
        for bad in [
            "etcd://",
            "etcd://host",
            "etcd://host:0",
            "etcd://a:2379,",
            "etcd://h:x",
            "postgres://h:1",
            "",
        ] {
            assert!(parse_store(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefixes_are_delimited_by_slashes() {
        assert!(check_prefix("/azimds/").is_ok());
        assert!(check_prefix("/fleet/a/").is_ok());
        for bad in ["", "/", "azimds/", "/azimds"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_password_is_not_in_debug_output() {
        let auth = EtcdAuth {
            user: "azimds".into(),
            password: "hunter2-secret".into(),
        };
        let shown = format!("{auth:?}");
        assert!(shown.contains("azimds") && !shown.contains("hunter2"));
    }
}
