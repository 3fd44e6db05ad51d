//! `azimds serve` settings: command-line flags, environment variables and an optional TOML
//! config file, resolved once into [`Settings`]. Precedence: flag, then environment, then file,
//! then the documented default.
//!
//! The library never reads the environment itself: clap does (through `env = …`), and the
//! caller passes in the default data directory.

mod file;
mod flags;
mod parse;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::file::FileConfig;
pub use crate::config::flags::ServeArgs;
pub use crate::config::parse::{
    ControlAddress, parse_caller_mode, parse_control, parse_duration, parse_lifetime, parse_timeout,
};
use crate::identity::limits::{self, IdentityLimits};
use crate::identity::token;
use crate::maintenance::MaintenanceConfig;
use crate::snapshot::CallerMode;
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
    pub vms: Option<PathBuf>,
    pub data: PathBuf,
    pub rate_limit: RateLimit,
    pub callers: CallerMode,
    pub control: ControlAddress,
    pub workers: Option<usize>,
    /// Managed-identity token lifetime, seconds.
    pub token_lifetime: u64,
    pub identity_limits: IdentityLimits,
    pub events: MaintenanceConfig,
    pub connections: ConnectionSettings,
    /// `--ready-file`: where the ready line is also written.
    pub ready_file: Option<PathBuf>,
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
        let listen = if !args.listen.is_empty() {
            args.listen
        } else {
            file.listen.unwrap_or_else(|| {
                vec![DEFAULT_LISTEN.parse().expect("the default address parses")]
            })
        };
        Ok(Settings {
            listen,
            vms: args.vms.or_else(|| file.vms.map(|p| base.join(p))),
            data: args
                .data
                .or_else(|| file.data.map(|p| base.join(p)))
                .unwrap_or_else(default_data),
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
            ready_file: args
                .ready_file
                .or_else(|| file.ready_file.map(|p| base.join(p))),
        })
    }
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
