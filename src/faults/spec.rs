//! A fault rule as users write it (the control API's JSON, the config file's TOML): every
//! member optional, durations with units. `rule.rs` checks it into a `Rule`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest delay or window a rule may ask for.
const MAX_DURATION: Duration = Duration::from_secs(7 * 86_400);

/// A duration as written: seconds (a number, fractions allowed), or a number with ms, s, m or
/// h (`500ms`, `70s`, `2m`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationText {
    Seconds(f64),
    Text(String),
}

impl DurationText {
    pub fn parse(&self) -> Result<Duration, String> {
        let seconds = match self {
            DurationText::Seconds(s) => *s,
            DurationText::Text(text) => {
                let at = text
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(text.len());
                let (number, unit) = text.split_at(at);
                let scale = match unit {
                    "ms" => 0.001,
                    "" | "s" => 1.0,
                    "m" => 60.0,
                    "h" => 3600.0,
                    _ => return Err(format!("{text:?}: expected a number with ms, s, m or h")),
                };
                let number: f64 = number
                    .parse()
                    .map_err(|_| format!("{text:?}: expected a number with ms, s, m or h"))?;
                number * scale
            }
        };
        if !seconds.is_finite() || seconds < 0.0 {
            return Err("expected a duration of zero or more".into());
        }
        Duration::try_from_secs_f64(seconds)
            .ok()
            .filter(|d| *d <= MAX_DURATION)
            .ok_or_else(|| "expected at most 7 days".into())
    }
}

/// A fault rule as users write it. Every member is optional; a `preset` fills in the rest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// `imds-updating`, `identity-not-ready`, `throttled`, `entra-outage`, `slow-first-call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The VM id the rule applies to; every VM when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// An endpoint name: instance, versions, scheduledevents, token, identity, attested,
    /// loadbalancer, reprovisiondata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// A path prefix, as sent (before percent-decoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Token requests naming this identity (client_id, object_id or msi_res_id; `system` for
    /// requests naming none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Token requests for this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// status, delay, stall, reset or truncate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DurationText>,
    /// At most this many answers per VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Active for this long after it is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<DurationText>,
    /// Takes each matching request with this probability (0 < p ≤ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Seeds the draws, so a run is reproducible (each VM draws from its own sequence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}
