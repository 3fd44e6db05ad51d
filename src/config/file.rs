//! The `--config` TOML file: the same settings as the flags, under their kebab-case names.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::parse::{
    ClockMode, ControlAddress, LogFormat, parse_caller_mode, parse_clock, parse_control,
    parse_lifetime, parse_log_format, parse_log_level,
};
use crate::faults::FaultSpec;
use crate::snapshot::CallerMode;

/// The `--config` file: the same settings as the flags, kebab-case keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct FileConfig {
    pub(super) listen: Option<Vec<SocketAddr>>,
    pub(super) wireserver_listen: Option<SocketAddr>,
    pub(super) hgap_listen: Option<SocketAddr>,
    pub(super) vms: Option<PathBuf>,
    pub(super) data: Option<PathBuf>,
    pub(super) store: Option<String>,
    pub(super) etcd_prefix: Option<String>,
    pub(super) etcd_ca_file: Option<PathBuf>,
    pub(super) etcd_cert_file: Option<PathBuf>,
    pub(super) etcd_key_file: Option<PathBuf>,
    pub(super) etcd_user: Option<String>,
    pub(super) etcd_password_file: Option<PathBuf>,
    pub(super) etcd_max_txn_ops: Option<usize>,
    pub(super) kek_file: Option<PathBuf>,
    pub(super) host_name: Option<String>,
    pub(super) rate_limit: Option<u32>,
    #[serde(default, deserialize_with = "deserialize_caller_mode")]
    pub(super) callers: Option<CallerMode>,
    #[serde(default, deserialize_with = "deserialize_control")]
    pub(super) control: Option<ControlAddress>,
    pub(super) workers: Option<u16>,
    #[serde(default, deserialize_with = "deserialize_lifetime")]
    pub(super) token_lifetime: Option<u64>,
    pub(super) identity_rate_limit: Option<u32>,
    pub(super) identity_concurrency: Option<u32>,
    pub(super) event_hook: Option<String>,
    pub(super) terminate_notice: Option<u64>,
    pub(super) event_completion: Option<u64>,
    pub(super) events_first_call_delay: Option<u64>,
    pub(super) max_connections: Option<u32>,
    pub(super) max_connections_per_caller: Option<u32>,
    pub(super) idle_timeout: Option<u64>,
    pub(super) attested_cert: Option<PathBuf>,
    pub(super) attested_key: Option<PathBuf>,
    pub(super) attested_chain: Option<PathBuf>,
    pub(super) attested_issuer_url: Option<String>,
    #[serde(default, deserialize_with = "deserialize_clock")]
    pub(super) clock: Option<ClockMode>,
    pub(super) journal_size: Option<usize>,
    pub(super) access_log: Option<bool>,
    pub(super) metrics_per_vm: Option<bool>,
    pub(super) metrics_per_vm_limit: Option<usize>,
    #[serde(default, deserialize_with = "deserialize_log_format")]
    pub(super) log_format: Option<LogFormat>,
    #[serde(default, deserialize_with = "deserialize_log_level")]
    pub(super) log_level: Option<String>,
    /// Fault rules in force from the start (`[[faults]]` tables, members as in the control
    /// API: preset, vm, endpoint, status, duration, …).
    #[serde(default)]
    pub(super) faults: Vec<FaultSpec>,
    pub(super) ready_file: Option<PathBuf>,
}

/// A string member read with `parse`.
fn with_parser<'de, D, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = String::deserialize(d)?;
    parse(&text).map(Some).map_err(serde::de::Error::custom)
}

fn deserialize_clock<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<ClockMode>, D::Error> {
    with_parser(d, parse_clock)
}

fn deserialize_log_format<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<LogFormat>, D::Error> {
    with_parser(d, parse_log_format)
}

fn deserialize_log_level<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    with_parser(d, parse_log_level)
}

fn deserialize_control<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<ControlAddress>, D::Error> {
    let text = String::deserialize(d)?;
    parse_control(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
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

fn deserialize_caller_mode<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<CallerMode>, D::Error> {
    let text = String::deserialize(d)?;
    parse_caller_mode(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}
