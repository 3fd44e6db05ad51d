//! `azimds serve` settings: command-line flags, environment variables and an optional TOML
//! config file, resolved once into [`Settings`]. Precedence: flag, then environment, then file,
//! then the documented default.
//!
//! The library never reads the environment itself: clap does (through `env = …`), and the
//! caller passes in the default data directory.

mod file;
mod flags;
mod parse;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::file::FileConfig;
pub use crate::config::flags::ServeArgs;
pub use crate::config::parse::{
    ClockMode, ControlAddress, LogFormat, parse_caller_mode, parse_clock, parse_control,
    parse_duration, parse_lifetime, parse_log_format, parse_log_level, parse_timeout,
};
pub use crate::config::store::StoreArgs;
use crate::faults::{FaultSpec, Rule};
use crate::identity::limits::{self, IdentityLimits};
use crate::identity::token;
use crate::maintenance::MaintenanceConfig;
use crate::snapshot::CallerMode;
use crate::store::StoreLocation;
use crate::telemetry::{DEFAULT_PER_VM_LIMIT, TelemetrySettings};
use crate::throttle::RateLimit;

/// Where the guest plane listens when nothing else is configured: loopback, so a bare
/// `azimds serve` is safe on any machine.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:16925";
/// Where the control API listens when nothing else is configured: loopback only.
pub const DEFAULT_CONTROL: &str = "127.0.0.1:16926";
/// Azure's documented per-VM limit (spec §1.11).
pub const DEFAULT_RATE_LIMIT: u32 = 5;

/// Resolved settings of `azimds serve`.
#[derive(Debug, PartialEq)]
pub struct Settings {
    pub listen: Vec<SocketAddr>,
    /// The WireServer and Host GA Plugin listeners; `None`: not served.
    pub wireserver: Option<WireServerListen>,
    pub vms: Option<PathBuf>,
    pub data: PathBuf,
    /// Where the store lives: the redb file in `data`, or an etcd cluster.
    pub store: StoreLocation,
    /// This host's name: which VMs it serves (their `host`), docs/fleet.md.
    pub host_name: String,
    pub rate_limit: RateLimit,
    pub callers: CallerMode,
    pub control: ControlAddress,
    pub workers: Option<usize>,
    /// Managed-identity token lifetime, seconds.
    pub token_lifetime: u64,
    pub identity_limits: IdentityLimits,
    pub events: MaintenanceConfig,
    pub connections: ConnectionSettings,
    pub attested: AttestedSettings,
    pub clock: ClockMode,
    /// Fault rules from the config file, checked; added when the server starts.
    pub faults: Vec<FaultSpec>,
    pub telemetry: TelemetrySettings,
    pub log: LogSettings,
    /// `--ready-file`: where the ready line is also written.
    pub ready_file: Option<PathBuf>,
}

/// How the binary logs (installed by `main.rs` once settings are resolved).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A level or filter directives; `None`: `info`.
    pub level: Option<String>,
}

/// Where attested documents' certificates come from (spec §7.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestedSettings {
    /// The operator's leaf, key and chain (PEM files); `None`: the generated CA's leaves.
    pub operator: Option<OperatorCertificate>,
    /// The AIA "CA Issuers" URL of generated leaves; `None` writes none.
    pub issuer_url: Option<String>,
}

/// An operator-supplied attested signing certificate: three PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub chain: PathBuf,
}

/// Default of `--attested-issuer-url`: the guest listener's issuer download, at the address
/// every guest reaches IMDS on. The trailing `?` is for Microsoft's IMDSSample.py, which
/// requests the URL with the newline of `openssl x509 -text`'s line still on it: the `%0A`
/// lands in the (ignored) query instead of the path.
pub const DEFAULT_ATTESTED_ISSUER_URL: &str = "http://169.254.169.254/metadata/attested/ca.cer?";

impl Default for AttestedSettings {
    fn default() -> AttestedSettings {
        AttestedSettings {
            operator: None,
            issuer_url: Some(DEFAULT_ATTESTED_ISSUER_URL.into()),
        }
    }
}

/// The Host GA Plugin's port on Azure (wireserver.md §6.1).
pub const HOST_PLUGIN_PORT: u16 = 32526;

/// Where the WireServer companion listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireServerListen {
    /// Port 80 on Azure (`--wireserver-listen`).
    pub wireserver: SocketAddr,
    /// Port 32526 on Azure (`--hgap-listen`).
    pub host_plugin: SocketAddr,
}

impl WireServerListen {
    /// The listeners for `--wireserver-listen` and `--hgap-listen`: the Host GA Plugin defaults
    /// to the WireServer's address on port 32526, as on Azure.
    pub fn resolve(
        wireserver: Option<SocketAddr>,
        host_plugin: Option<SocketAddr>,
    ) -> Option<WireServerListen> {
        let wireserver = wireserver?;
        Some(WireServerListen {
            wireserver,
            host_plugin: host_plugin
                .unwrap_or_else(|| SocketAddr::new(wireserver.ip(), HOST_PLUGIN_PORT)),
        })
    }
}

/// Limits on guest connections (issue 13: one VM must not take the service from the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// `None`: derived from the file-descriptor limit at start.
    pub max_total: Option<u32>,
    pub max_per_caller: u32,
    pub idle_timeout: Duration,
}

/// Default of `--max-connections-per-caller`: a VM's agents and SDKs use a few connections.
pub const DEFAULT_CONNECTIONS_PER_CALLER: u32 = 32;
/// Default of `--idle-timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ConnectionSettings {
    fn default() -> ConnectionSettings {
        ConnectionSettings {
            max_total: None,
            max_per_caller: DEFAULT_CONNECTIONS_PER_CALLER,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Why settings could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// Merges flags/environment (`args`), the config file they name, and defaults. Relative
    /// paths in the config file are relative to the file's directory.
    pub fn resolve(
        args: ServeArgs,
        default_data: impl FnOnce() -> PathBuf,
    ) -> Result<Settings, Error> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let base = args
            .config
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new(""));
        let attested = attested_settings(&args, &file, base)?;
        let host_name =
            store::host_name(args.store.host_name.clone(), &file).map_err(Error::Invalid)?;
        let store_location = store::resolve(args.store, &file, base).map_err(Error::Invalid)?;
        let listen = if !args.listen.is_empty() {
            args.listen
        } else {
            file.listen.unwrap_or_else(|| {
                vec![DEFAULT_LISTEN.parse().expect("the default address parses")]
            })
        };
        Ok(Settings {
            listen,
            wireserver: WireServerListen::resolve(
                args.wireserver_listen.or(file.wireserver_listen),
                args.hgap_listen.or(file.hgap_listen),
            ),
            vms: args.vms.or_else(|| file.vms.map(|p| base.join(p))),
            data: args
                .data
                .or_else(|| file.data.map(|p| base.join(p)))
                .unwrap_or_else(default_data),
            store: store_location,
            host_name,
            rate_limit: RateLimit(
                args.rate_limit
                    .or(file.rate_limit)
                    .unwrap_or(DEFAULT_RATE_LIMIT),
            ),
            callers: args.callers.or(file.callers).unwrap_or(CallerMode::Single),
            control: args.control.or(file.control).unwrap_or_else(|| {
                parse_control(DEFAULT_CONTROL).expect("the default control address parses")
            }),
            workers: args.workers.or(file.workers).map(usize::from),
            token_lifetime: args
                .token_lifetime
                .or(file.token_lifetime)
                .unwrap_or(token::DEFAULT_LIFETIME),
            identity_limits: IdentityLimits {
                per_second: args
                    .identity_rate_limit
                    .or(file.identity_rate_limit)
                    .unwrap_or(limits::DEFAULT_RATE),
                concurrent: args
                    .identity_concurrency
                    .or(file.identity_concurrency)
                    .unwrap_or(limits::DEFAULT_CONCURRENCY),
            },
            events: {
                let defaults = MaintenanceConfig::default();
                let seconds = |value: Option<u64>, default: Duration| {
                    value.map_or(default, Duration::from_secs)
                };
                MaintenanceConfig {
                    terminate_notice: seconds(
                        args.terminate_notice.or(file.terminate_notice),
                        defaults.terminate_notice,
                    ),
                    default_complete_after: seconds(
                        args.event_completion.or(file.event_completion),
                        defaults.default_complete_after,
                    ),
                    first_call_delay: seconds(
                        args.events_first_call_delay
                            .or(file.events_first_call_delay),
                        defaults.first_call_delay,
                    ),
                    hook: args.event_hook.or(file.event_hook),
                }
            },
            connections: ConnectionSettings {
                max_total: args.max_connections.or(file.max_connections),
                max_per_caller: args
                    .max_connections_per_caller
                    .or(file.max_connections_per_caller)
                    .unwrap_or(DEFAULT_CONNECTIONS_PER_CALLER),
                idle_timeout: args
                    .idle_timeout
                    .or(file.idle_timeout)
                    .map_or(DEFAULT_IDLE_TIMEOUT, Duration::from_secs),
            },
            attested,
            clock: args.clock.or(file.clock).unwrap_or_default(),
            faults: check_faults(file.faults, args.config.as_deref())?,
            telemetry: TelemetrySettings {
                journal_size: args
                    .journal_size
                    .or(file.journal_size)
                    .unwrap_or(crate::telemetry::DEFAULT_JOURNAL_SIZE),
                access_log: args.access_log || file.access_log.unwrap_or(false),
                metrics_per_vm: (args.metrics_per_vm || file.metrics_per_vm.unwrap_or(false)).then(
                    || {
                        args.metrics_per_vm_limit
                            .or(file.metrics_per_vm_limit)
                            .unwrap_or(DEFAULT_PER_VM_LIMIT)
                    },
                ),
            },
            log: LogSettings {
                format: args.log_format.or(file.log_format).unwrap_or_default(),
                level: args.log_level.or(file.log_level),
            },
            ready_file: args
                .ready_file
                .or_else(|| file.ready_file.map(|p| base.join(p))),
        })
    }
}

/// The operator's three PEM files come together or not at all (clap checks the flags; this
/// checks them merged with the file).
fn attested_settings(
    args: &ServeArgs,
    file: &FileConfig,
    base: &Path,
) -> Result<AttestedSettings, Error> {
    let path = |flag: &Option<PathBuf>, key: &Option<PathBuf>| {
        flag.clone().or_else(|| key.as_ref().map(|p| base.join(p)))
    };
    let cert = path(&args.attested_cert, &file.attested_cert);
    let key = path(&args.attested_key, &file.attested_key);
    let chain = path(&args.attested_chain, &file.attested_chain);
    let operator = match (cert, key, chain) {
        (None, None, None) => None,
        (Some(cert), Some(key), Some(chain)) => Some(OperatorCertificate { cert, key, chain }),
        _ => {
            return Err(Error::Invalid(
                "attested-cert, attested-key and attested-chain must be given together".into(),
            ));
        }
    };
    let issuer_url = match args
        .attested_issuer_url
        .clone()
        .or_else(|| file.attested_issuer_url.clone())
    {
        None => Some(DEFAULT_ATTESTED_ISSUER_URL.to_string()),
        Some(url) if url.is_empty() => None,
        Some(url)
            if (url.starts_with("http://") || url.starts_with("https://"))
                && url.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Some(url)
        }
        Some(url) => {
            return Err(Error::Invalid(format!(
                "attested-issuer-url {url:?} is not an http:// or https:// URL (ASCII, no spaces)"
            )));
        }
    };
    Ok(AttestedSettings {
        operator,
        issuer_url,
    })
}

/// The config file's fault rules, each checked now so a bad one stops the start with its
/// place in the file.
fn check_faults(faults: Vec<FaultSpec>, file: Option<&Path>) -> Result<Vec<FaultSpec>, Error> {
    let mut messages = Vec::new();
    for (i, spec) in faults.iter().enumerate() {
        if let Err(problems) = Rule::check("check", spec.clone(), std::time::SystemTime::now()) {
            for problem in problems {
                let path = crate::problem::join(&format!("faults[{i}]"), &problem.path);
                messages.push(format!("{path}: {}", problem.message));
            }
        }
    }
    if messages.is_empty() {
        return Ok(faults);
    }
    Err(Error::Parse {
        path: file.map(Path::to_path_buf).unwrap_or_default(),
        message: messages.join("; "),
    })
}

fn load_file(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| Error::Parse {
        path: path.into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let settings = Settings::resolve(ServeArgs::default(), || PathBuf::from("/d")).unwrap();
        assert_eq!(settings.listen, vec!["127.0.0.1:16925".parse().unwrap()]);
        assert_eq!(settings.rate_limit, RateLimit(5));
        assert_eq!(settings.callers, CallerMode::Single);
        assert_eq!(settings.data, PathBuf::from("/d"));
        assert_eq!(settings.vms, None);
        assert_eq!(settings.token_lifetime, 86_400);
        assert_eq!(
            settings.identity_limits,
            IdentityLimits {
                per_second: 20,
                concurrent: 5
            }
        );
    }

    #[test]
    fn attested_files_go_together_and_the_issuer_url_is_checked() {
        let resolve = |args: ServeArgs| Settings::resolve(args, || PathBuf::from("/d"));
        let defaults = resolve(ServeArgs::default()).unwrap().attested;
        assert_eq!(defaults.operator, None);
        assert_eq!(
            defaults.issuer_url.as_deref(),
            Some("http://169.254.169.254/metadata/attested/ca.cer?")
        );
        let operator = resolve(ServeArgs {
            attested_cert: Some("leaf.pem".into()),
            attested_key: Some("leaf.key".into()),
            attested_chain: Some("chain.pem".into()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(
            operator.attested.operator,
            Some(OperatorCertificate {
                cert: "leaf.pem".into(),
                key: "leaf.key".into(),
                chain: "chain.pem".into()
            })
        );
        let partial = resolve(ServeArgs {
            attested_cert: Some("leaf.pem".into()),
            ..ServeArgs::default()
        });
        assert!(
            partial
                .unwrap_err()
                .to_string()
                .contains("must be given together")
        );
        let url = |text: &str| {
            resolve(ServeArgs {
                attested_issuer_url: Some(text.into()),
                ..ServeArgs::default()
            })
            .map(|s| s.attested.issuer_url)
        };
        assert_eq!(url("").unwrap(), None, "empty: no AIA extension");
        assert_eq!(
            url("https://pki.example/ca.cer").unwrap().as_deref(),
            Some("https://pki.example/ca.cer")
        );
        for bad in ["ftp://x/ca.cer", "http://x/a b", "ca.cer", "http://é/"] {
            assert!(url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_host_ga_plugin_defaults_to_the_wireserver_address_on_32526() {
        let wireserver: SocketAddr = "168.63.129.16:80".parse().unwrap();
        assert_eq!(WireServerListen::resolve(None, None), None);
        assert_eq!(
            WireServerListen::resolve(Some(wireserver), None),
            Some(WireServerListen {
                wireserver,
                host_plugin: "168.63.129.16:32526".parse().unwrap(),
            })
        );
        let elsewhere: SocketAddr = "10.0.0.1:9000".parse().unwrap();
        assert_eq!(
            WireServerListen::resolve(Some(wireserver), Some(elsewhere)).map(|w| w.host_plugin),
            Some(elsewhere)
        );
        let settings = Settings::resolve(ServeArgs::default(), || PathBuf::from("/d")).unwrap();
        assert_eq!(settings.wireserver, None, "off by default");
    }

    #[test]
    fn token_lifetimes_take_units_and_stay_in_range() {
        assert_eq!(parse_lifetime("3600"), Ok(3600));
        assert_eq!(parse_lifetime("90s"), Ok(90));
        assert_eq!(parse_lifetime("45m"), Ok(2700));
        assert_eq!(parse_lifetime("24h"), Ok(86_400));
        assert_eq!(parse_lifetime("7d"), Ok(604_800));
        assert!(parse_lifetime("59").is_err());
        assert!(parse_lifetime("8d").is_err());
        assert!(parse_lifetime("1w").is_err());
        assert!(parse_lifetime("").is_err());
        assert!(parse_lifetime("99999999999999999999h").is_err());
    }

    #[test]
    fn flags_override_the_file_and_file_paths_are_relative_to_it() {
        let dir = std::env::temp_dir().join(format!("azimds-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("azimds.toml");
        std::fs::write(
            &file,
            "listen = [\"127.0.0.1:1\"]\nvms = \"vms.yaml\"\nrate-limit = 7\ncallers = \"source-address\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            rate_limit: Some(0),
            ..ServeArgs::default()
        };
        let settings = Settings::resolve(args, || PathBuf::from("/d")).unwrap();
        assert_eq!(settings.listen, vec!["127.0.0.1:1".parse().unwrap()]);
        assert_eq!(settings.vms, Some(dir.join("vms.yaml")));
        assert_eq!(settings.rate_limit, RateLimit(0));
        assert_eq!(settings.callers, CallerMode::SourceAddress);

        std::fs::write(&file, "listen = [\"127.0.0.1:1\"]\nport = 3\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let error = Settings::resolve(args, || PathBuf::from("/d"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `port`"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
