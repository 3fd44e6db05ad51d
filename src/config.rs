//! `azimds serve` settings: command-line flags, environment variables and an optional TOML
//! config file, resolved once into [`Settings`]. Precedence: flag, then environment, then file,
//! then the documented default.
//!
//! The library never reads the environment itself: clap does (through `env = …`), and the
//! caller passes in the default data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::identity::limits::{self, IdentityLimits};
use crate::identity::token;
use crate::maintenance::MaintenanceConfig;
use crate::snapshot::CallerMode;
use crate::throttle::RateLimit;
use std::time::Duration;

/// Where the guest plane listens when nothing else is configured: loopback, so a bare
/// `azimds serve` is safe on any machine.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:16925";
/// Where the control API listens when nothing else is configured: loopback only.
pub const DEFAULT_CONTROL: &str = "127.0.0.1:16926";
/// Azure's documented per-VM limit (spec §1.11).
pub const DEFAULT_RATE_LIMIT: u32 = 5;

/// Flags of `azimds serve`. Every flag also reads an `AZIMDS_*` environment variable and a key
/// of the same name in the `--config` file.
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below, keyed by flag name without the dashes (e.g.
    /// listen, vms, rate-limit, token-lifetime). Flags and environment variables override it.
    #[arg(long, env = "AZIMDS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Guest-plane address to listen on; repeat for several (e.g. 169.254.169.254:80).
    /// The environment variable takes a comma-separated list. [default: 127.0.0.1:16925]
    #[arg(
        long,
        env = "AZIMDS_LISTEN",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub listen: Vec<SocketAddr>,

    /// VM definitions (JSON or YAML; see README "VM definition file"). Without it, azimds
    /// serves a built-in demo VM.
    #[arg(long, env = "AZIMDS_VMS", value_name = "FILE")]
    pub vms: Option<PathBuf>,

    /// Directory for azimds's state (created owner-only if missing).
    /// [default: $XDG_STATE_HOME/azimds, else ~/.local/state/azimds]
    #[arg(long, env = "AZIMDS_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Requests per second allowed per VM before 429; 0 turns throttling off. [default: 5]
    #[arg(long, env = "AZIMDS_RATE_LIMIT", value_name = "N")]
    pub rate_limit: Option<u32>,

    /// How a request's source address picks its VM: `single` (every caller is the one VM) or
    /// `source-address` (the address must be in a VM's `callers`; others get the connection
    /// closed). [default: single]
    #[arg(long, env = "AZIMDS_CALLERS", value_name = "MODE", value_parser = parse_caller_mode)]
    pub callers: Option<CallerMode>,

    /// Control API address: a loopback TCP address (bearer token from the data directory's
    /// control-token file) or `unix:/path/to.sock` (no token; protect it with file
    /// permissions). [default: 127.0.0.1:16926]
    #[arg(long, env = "AZIMDS_CONTROL", value_name = "ADDR", value_parser = parse_control)]
    pub control: Option<ControlAddress>,

    /// Worker threads of the async runtime. [default: number of CPUs]
    #[arg(long, env = "AZIMDS_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,

    /// Lifetime of managed-identity tokens: seconds, or a number with s, m, h or d
    /// (60 s to 7 d). [default: 24h, as Azure]
    #[arg(long, env = "AZIMDS_TOKEN_LIFETIME", value_name = "DURATION", value_parser = parse_lifetime)]
    pub token_lifetime: Option<u64>,

    /// Identity requests per second allowed per VM before 429; 0 turns it off. [default: 20]
    #[arg(long, env = "AZIMDS_IDENTITY_RATE_LIMIT", value_name = "N")]
    pub identity_rate_limit: Option<u32>,

    /// Identity requests in flight allowed per VM before 429; 0 turns it off. [default: 5]
    #[arg(long, env = "AZIMDS_IDENTITY_CONCURRENCY", value_name = "N")]
    pub identity_concurrency: Option<u32>,

    /// Where scheduled-event transitions (approved, started, completed, canceled) are reported:
    /// an http:// URL (JSON POST) or a shell command (JSON on stdin). Retried, never blocking.
    #[arg(long, env = "AZIMDS_EVENT_HOOK", value_name = "URL|COMMAND")]
    pub event_hook: Option<String>,

    /// Notice given to Terminate events (Azure: user-configurable 5-15 min). [default: 5m]
    #[arg(long, env = "AZIMDS_TERMINATE_NOTICE", value_name = "DURATION", value_parser = parse_duration)]
    pub terminate_notice: Option<u64>,

    /// How long a Started event stays before it is removed, when its DurationInSeconds gives no
    /// length. [default: 60s]
    #[arg(long, env = "AZIMDS_EVENT_COMPLETION", value_name = "DURATION", value_parser = parse_duration)]
    pub event_completion: Option<u64>,

    /// Delay of each VM's first scheduled-events request, as Azure's activation (up to 2 min).
    /// [default: 0, off]
    #[arg(long, env = "AZIMDS_EVENTS_FIRST_CALL_DELAY", value_name = "DURATION", value_parser = parse_duration)]
    pub events_first_call_delay: Option<u64>,

    /// Guest connections open at once, all VMs together; past it new ones are closed
    /// unanswered. [default: derived from the file-descriptor limit, leaving room for the
    /// control API and the store]
    #[arg(long, env = "AZIMDS_MAX_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// Guest connections open at once from one source address (one VM) in source-address
    /// mode. [default: 32]
    #[arg(long, env = "AZIMDS_MAX_CONNECTIONS_PER_CALLER", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_caller: Option<u32>,

    /// How long a guest connection may wait for a request head: an idle keep-alive
    /// connection, or a client that stops mid-request, is closed after it. [default: 30s]
    #[arg(long, env = "AZIMDS_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_timeout)]
    pub idle_timeout: Option<u64>,
}

/// The `--config` file: the same settings as the flags, kebab-case keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    listen: Option<Vec<SocketAddr>>,
    vms: Option<PathBuf>,
    data: Option<PathBuf>,
    rate_limit: Option<u32>,
    #[serde(default, deserialize_with = "deserialize_caller_mode")]
    callers: Option<CallerMode>,
    #[serde(default, deserialize_with = "deserialize_control")]
    control: Option<ControlAddress>,
    workers: Option<u16>,
    #[serde(default, deserialize_with = "deserialize_lifetime")]
    token_lifetime: Option<u64>,
    identity_rate_limit: Option<u32>,
    identity_concurrency: Option<u32>,
    event_hook: Option<String>,
    terminate_notice: Option<u64>,
    event_completion: Option<u64>,
    events_first_call_delay: Option<u64>,
    max_connections: Option<u32>,
    max_connections_per_caller: Option<u32>,
    idle_timeout: Option<u64>,
}

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

/// Where the control API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ControlAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlAddress::Tcp(address) => write!(f, "{address}"),
            ControlAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `unix:/path` or `host:port`.
pub fn parse_control(text: &str) -> Result<ControlAddress, String> {
    match text.strip_prefix("unix:") {
        Some("") => Err("unix: needs a socket path, e.g. unix:/run/azimds.sock".into()),
        Some(path) => Ok(ControlAddress::Unix(PathBuf::from(path))),
        None => text.parse().map(ControlAddress::Tcp).map_err(|_| {
            format!("{text:?} is neither host:port (e.g. 127.0.0.1:16926) nor unix:/path")
        }),
    }
}

fn deserialize_control<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<ControlAddress>, D::Error> {
    let text = String::deserialize(d)?;
    parse_control(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
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

/// A duration for event settings: seconds, or a number with s, m, h or d (0 to 7 d).
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: expected seconds, or a number with s, m, h or d"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|seconds| *seconds <= 7 * 86_400)
        .ok_or_else(|| {
            format!("{text:?}: expected 0 to 7d, as seconds or a number with s, m, h or d")
        })
}

/// A timeout: like [`parse_duration`], but at least one second.
pub fn parse_timeout(text: &str) -> Result<u64, String> {
    match parse_duration(text)? {
        0 => Err(format!("{text:?}: a timeout must be at least 1s")),
        seconds => Ok(seconds),
    }
}

/// A token lifetime: `3600`, `90s`, `45m`, `24h`, `1d`; 60 seconds to 7 days.
pub fn parse_lifetime(text: &str) -> Result<u64, String> {
    let seconds = parse_duration(text)?;
    if !(60..=7 * 86_400).contains(&seconds) {
        return Err(format!(
            "{text:?}: a token lifetime must be between 60s and 7d"
        ));
    }
    Ok(seconds)
}

fn deserialize_lifetime<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lifetime {
        Seconds(u64),
        Text(String),
    }
    let text = match Lifetime::deserialize(d)? {
        Lifetime::Seconds(n) => n.to_string(),
        Lifetime::Text(text) => text,
    };
    parse_lifetime(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn parse_caller_mode(text: &str) -> Result<CallerMode, String> {
    match text {
        "single" => Ok(CallerMode::Single),
        "source-address" => Ok(CallerMode::SourceAddress),
        other => Err(format!(
            "unknown caller mode {other:?}; expected single or source-address"
        )),
    }
}

fn deserialize_caller_mode<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<CallerMode>, D::Error> {
    let text = String::deserialize(d)?;
    parse_caller_mode(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
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
