//! The store's flags (`--store`, `--etcd-*`) and how they resolve into a [`StoreLocation`].

use std::path::{Path, PathBuf};

use crate::config::file::FileConfig;
use crate::definition::is_valid_host_name;
use crate::store::location::{DEFAULT_ETCD_PREFIX, check_prefix, parse_store};
use crate::store::{EtcdAuth, EtcdTls, StoreLocation};

/// Where the store lives, and how to reach etcd (fleet mode, docs/fleet.md).
#[derive(Debug, Default, clap::Args)]
pub struct StoreArgs {
    /// Where VM records, events and provisioning records are kept: `redb` (a file in the data
    /// directory) or `etcd://host:port[,host:port…]`, an etcd v3 cluster shared by a fleet of
    /// hosts (needs a build with `--features fleet`; docs/fleet.md). [default: redb]
    #[arg(long, env = "AZIMDS_STORE", value_name = "redb|etcd://HOST:PORT,…")]
    pub store: Option<String>,

    /// Key prefix of every key azimds writes in etcd; it starts and ends with `/`.
    /// [default: /azimds/]
    #[arg(long, env = "AZIMDS_ETCD_PREFIX", value_name = "PREFIX")]
    pub etcd_prefix: Option<String>,

    /// CA certificate (PEM) that signed etcd's server certificates: turns TLS on.
    #[arg(long, env = "AZIMDS_ETCD_CA_FILE", value_name = "FILE")]
    pub etcd_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for etcd's --client-cert-auth; with --etcd-key-file.
    #[arg(long, env = "AZIMDS_ETCD_CERT_FILE", value_name = "FILE")]
    pub etcd_cert_file: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, env = "AZIMDS_ETCD_KEY_FILE", value_name = "FILE")]
    pub etcd_key_file: Option<PathBuf>,

    /// etcd user (etcd's auth); its password is read from --etcd-password-file.
    #[arg(long, env = "AZIMDS_ETCD_USER", value_name = "NAME")]
    pub etcd_user: Option<String>,

    /// File holding the etcd user's password (one line; kept off the command line, where
    /// every local user could read it).
    #[arg(long, env = "AZIMDS_ETCD_PASSWORD_FILE", value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,

    /// The most operations azimds puts in one etcd transaction: set it to etcd's own
    /// `--max-txn-ops` when that was raised. A larger batch (a `--vms` file of more changed
    /// VMs, an event touching more VMs) is refused whole with that reason. [default: 128]
    #[arg(long, env = "AZIMDS_ETCD_MAX_TXN_OPS", value_name = "N")]
    pub etcd_max_txn_ops: Option<usize>,

    /// Key-encryption key (exactly 32 random bytes, owner-only file) that seals signing keys
    /// before they are written to etcd; every host of a fleet uses the same one. Required
    /// with --store etcd://. Make one with `head -c 32 /dev/urandom > kek; chmod 600 kek`.
    #[arg(long, env = "AZIMDS_KEK_FILE", value_name = "FILE")]
    pub kek_file: Option<PathBuf>,

    /// This host's name in a fleet (with --store etcd://): it serves the VMs whose `host` is
    /// this name (and those with no `host`), and no others. On the embedded store every VM is
    /// served. [default: the machine's hostname]
    #[arg(long, env = "AZIMDS_HOST_NAME", value_name = "NAME")]
    pub host_name: Option<String>,
}

/// `--host-name`, else the config file's `host-name`, else the kernel's hostname.
pub(super) fn host_name(flag: Option<String>, file: &FileConfig) -> Result<String, String> {
    let name = flag.or_else(|| file.host_name.clone()).unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|text| text.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    });
    if is_valid_host_name(&name) {
        Ok(name)
    } else {
        Err(format!(
            "--host-name {name:?}: a host name is 1-253 of A-Z a-z 0-9 . _ -"
        ))
    }
}

/// Flags over the config file's keys of the same names; paths in the file are relative to it.
/// The error is the message of `config::Error::Invalid`.
pub(super) fn resolve(
    args: StoreArgs,
    file: &FileConfig,
    base: &Path,
) -> Result<StoreLocation, String> {
    resolve_with(args, file, base, true)
}

/// [`resolve`]; `serving` requires the KEK with etcd (a server writes keys there).
fn resolve_with(
    args: StoreArgs,
    file: &FileConfig,
    base: &Path,
    serving: bool,
) -> Result<StoreLocation, String> {
    let store = args.store.or_else(|| file.store.clone());
    let in_file = |path: &Option<PathBuf>| path.as_ref().map(|p| base.join(p));
    let prefix = args.etcd_prefix.or_else(|| file.etcd_prefix.clone());
    let tls = EtcdTls {
        ca: args.etcd_ca_file.or_else(|| in_file(&file.etcd_ca_file)),
        cert: args
            .etcd_cert_file
            .or_else(|| in_file(&file.etcd_cert_file)),
        key: args.etcd_key_file.or_else(|| in_file(&file.etcd_key_file)),
    };
    let user = args.etcd_user.or_else(|| file.etcd_user.clone());
    let password_file = args
        .etcd_password_file
        .or_else(|| in_file(&file.etcd_password_file));
    let max_txn_ops = args.etcd_max_txn_ops.or(file.etcd_max_txn_ops);
    let kek_file = args.kek_file.or_else(|| in_file(&file.kek_file));
    let location = match store.as_deref() {
        None => StoreLocation::Embedded,
        Some(text) => parse_store(text)?,
    };
    let StoreLocation::Etcd(mut options) = location else {
        let etcd_only = prefix.is_some()
            || tls != EtcdTls::default()
            || user.is_some()
            || password_file.is_some()
            || max_txn_ops.is_some()
            || kek_file.is_some();
        if etcd_only {
            return Err(
                "the --etcd-* settings and --kek-file need --store etcd://host:port".into(),
            );
        }
        return Ok(StoreLocation::Embedded);
    };
    options.prefix = prefix.unwrap_or_else(|| DEFAULT_ETCD_PREFIX.into());
    check_prefix(&options.prefix).map_err(|e| format!("--etcd-prefix: {e}"))?;
    if tls != EtcdTls::default() {
        options.tls = Some(tls);
    }
    if let Some(ops) = max_txn_ops {
        if ops == 0 {
            return Err("--etcd-max-txn-ops: at least 1".into());
        }
        options.max_txn_ops = ops;
    }
    // A build without fleet mode says so first (at start), rather than asking for a KEK.
    if kek_file.is_none() && serving && cfg!(feature = "fleet") {
        return Err("--store etcd:// needs --kek-file: signing keys are shared through etcd, sealed with that key-encryption key (32 random bytes, owner-only; make one with `head -c 32 /dev/urandom > kek; chmod 600 kek`) and never written in the clear".into());
    }
    options.kek_file = kek_file;
    options.auth = match (user, password_file) {
        (Some(user), Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "--etcd-password-file {}: cannot read it: {e}",
                    path.display()
                )
            })?;
            Some(EtcdAuth {
                user,
                password: text.trim_end_matches(['\r', '\n']).to_string(),
            })
        }
        (None, None) => None,
        _ => {
            return Err("--etcd-user and --etcd-password-file go together".into());
        }
    };
    Ok(StoreLocation::Etcd(options))
}

/// The store flags of `azimds store export|import`, from flags and the environment only: the
/// location, and the KEK's file, which seals keys whichever store it is (on the embedded
/// store too, where `serve` refuses it).
pub fn resolve_for_tool(mut args: StoreArgs) -> Result<(StoreLocation, Option<PathBuf>), String> {
    let kek_file = args.kek_file.clone();
    if args.store.as_deref().is_none_or(|s| s == "redb") {
        args.kek_file = None;
    }
    let location = resolve_with(args, &FileConfig::default(), Path::new(""), false)?;
    Ok((location, kek_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_args(args: StoreArgs) -> Result<StoreLocation, String> {
        resolve(args, &FileConfig::default(), Path::new(""))
    }

    fn etcd(endpoints: &str) -> StoreArgs {
        StoreArgs {
            store: Some(endpoints.into()),
            kek_file: Some("/etc/azimds/kek".into()),
            ..StoreArgs::default()
        }
    }

    #[test]
    fn the_host_name_defaults_to_the_kernels() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let file = FileConfig::default();
        assert_eq!(host_name(None, &file).unwrap(), kernel.trim());
        assert_eq!(host_name(Some("hv-03".into()), &file).unwrap(), "hv-03");
        assert!(host_name(Some("hv 03".into()), &file).is_err());
    }

    #[test]
    fn the_embedded_file_is_the_default() {
        assert_eq!(
            resolve_args(StoreArgs::default()),
            Ok(StoreLocation::Embedded)
        );
        let redb = StoreArgs {
            store: Some("redb".into()),
            ..StoreArgs::default()
        };
        assert_eq!(resolve_args(redb), Ok(StoreLocation::Embedded));
        let stray = StoreArgs {
            etcd_prefix: Some("/x/".into()),
            ..StoreArgs::default()
        };
        assert!(resolve_args(stray).unwrap_err().contains("--store etcd://"));
    }

    #[test]
    fn an_etcd_store_needs_a_kek_file_and_takes_the_txn_limit() {
        let no_kek = StoreArgs {
            kek_file: None,
            ..etcd("etcd://h:2379")
        };
        let refused = resolve_args(no_kek);
        if cfg!(feature = "fleet") {
            assert!(refused.unwrap_err().contains("needs --kek-file"));
        } else {
            assert!(
                refused.is_ok(),
                "without fleet mode the start says to build it"
            );
        }
        let StoreLocation::Etcd(options) = resolve_args(etcd("etcd://h:2379")).unwrap() else {
            panic!("an etcd store")
        };
        assert_eq!(options.max_txn_ops, 128, "etcd's default");
        assert_eq!(
            options.kek_file.as_deref(),
            Some(Path::new("/etc/azimds/kek"))
        );
        let raised = StoreArgs {
            etcd_max_txn_ops: Some(1024),
            ..etcd("etcd://h:2379")
        };
        let StoreLocation::Etcd(options) = resolve_args(raised).unwrap() else {
            panic!("an etcd store")
        };
        assert_eq!(options.max_txn_ops, 1024);
        let zero = StoreArgs {
            etcd_max_txn_ops: Some(0),
            ..etcd("etcd://h:2379")
        };
        assert!(resolve_args(zero).is_err());
    }

    #[test]
    fn etcd_options_come_from_the_flags() {
        let dir = std::env::temp_dir().join(format!("azimds-store-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let password = dir.join("password");
        std::fs::write(&password, "s3cret\n").unwrap();
        let args = StoreArgs {
            etcd_prefix: Some("/fleet-a/".into()),
            etcd_ca_file: Some("/etc/etcd/ca.pem".into()),
            etcd_user: Some("azimds".into()),
            etcd_password_file: Some(password.clone()),
            ..etcd("etcd://10.0.0.1:2379,10.0.0.2:2379")
        };
        let StoreLocation::Etcd(options) = resolve_args(args).unwrap() else {
            panic!("an etcd store")
        };
        assert_eq!(options.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(options.prefix, "/fleet-a/");
        let tls = options.tls.unwrap();
        assert_eq!(tls.ca.as_deref(), Some(Path::new("/etc/etcd/ca.pem")));
        assert_eq!(tls.cert, None);
        let auth = options.auth.unwrap();
        assert_eq!(
            (auth.user.as_str(), auth.password.as_str()),
            ("azimds", "s3cret")
        );
        let alone = StoreArgs {
            etcd_user: Some("azimds".into()),
            ..etcd("etcd://h:2379")
        };
        assert!(resolve_args(alone).unwrap_err().contains("go together"));
        let bad_prefix = StoreArgs {
            etcd_prefix: Some("azimds".into()),
            ..etcd("etcd://h:2379")
        };
        assert!(
            resolve_args(bad_prefix)
                .unwrap_err()
                .contains("--etcd-prefix")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
