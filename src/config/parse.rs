//! Parsing setting values: addresses, durations, caller modes. Shared by flags and the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::snapshot::CallerMode;

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

pub fn parse_caller_mode(text: &str) -> Result<CallerMode, String> {
    match text {
        "single" => Ok(CallerMode::Single),
        "source-address" => Ok(CallerMode::SourceAddress),
        other => Err(format!(
            "unknown caller mode {other:?}; expected single or source-address"
        )),
    }
}

/// Where the server's time comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClockMode {
    /// The operating system's clock.
    #[default]
    System,
    /// Starts at the system time and moves only through the control API (`azimds clock`).
    Manual,
}

pub fn parse_clock(text: &str) -> Result<ClockMode, String> {
    match text {
        "system" => Ok(ClockMode::System),
        "manual" => Ok(ClockMode::Manual),
        other => Err(format!(
            "unknown clock {other:?}; expected system or manual"
        )),
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

pub fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!(
            "unknown log format {other:?}; expected text or json"
        )),
    }
}

/// A log level or `tracing` filter directives (`debug`, `info,azimds::access=off`).
pub fn parse_log_level(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("{text:?}: {e}; expected a level (error, warn, info, debug, trace) or filter directives"))
}
