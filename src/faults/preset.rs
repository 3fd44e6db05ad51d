//! Presets: fault rules named after what Azure does, each one command away
//! (`azimds faults add --preset NAME`). The user's match and limit members (vm, endpoint,
//! path, method, identity, resource, count, duration, probability, seed) override the preset's.

use crate::faults::spec::{DurationText, FaultSpec};

/// A preset: its name, what it reproduces, and the rule it stands for.
pub struct Preset {
    pub name: &'static str,
    pub summary: &'static str,
    endpoint: Option<&'static str>,
    action: &'static str,
    status: Option<u16>,
    /// The window (`duration`) by default; for a delay preset, the delay.
    default_seconds: f64,
    count: Option<u64>,
}

/// Every preset, in the order `azimds faults presets` lists them.
pub const PRESETS: [Preset; 5] = [
    Preset {
        name: "imds-updating",
        summary: "410 Gone on every endpoint for 70 s: IMDS restarting during an update (spec §1.11, §5.5)",
        endpoint: None,
        action: "status",
        status: Some(410),
        default_seconds: 70.0,
        count: None,
    },
    Preset {
        name: "identity-not-ready",
        summary: "404 on the token endpoint for 30 s: the identity is not assigned yet or IMDS is updating (§4.3)",
        endpoint: Some("token"),
        action: "status",
        status: Some(404),
        default_seconds: 30.0,
        count: None,
    },
    Preset {
        name: "throttled",
        summary: "429 Too Many Requests on every endpoint for 30 s (§1.11; narrow it with --endpoint token)",
        endpoint: None,
        action: "status",
        status: Some(429),
        default_seconds: 30.0,
        count: None,
    },
    Preset {
        name: "entra-outage",
        summary: "500 on the token endpoint for 30 s: Entra ID cannot issue tokens (§4.3, §5.4)",
        endpoint: Some("token"),
        action: "status",
        status: Some(500),
        default_seconds: 30.0,
        count: None,
    },
    Preset {
        name: "slow-first-call",
        summary: "each VM's first scheduled-events call takes 2 minutes, as Azure's activation (§6.6); --duration sets the delay",
        endpoint: Some("scheduledevents"),
        action: "delay",
        status: None,
        default_seconds: 120.0,
        count: Some(1),
    },
];

/// `spec` with preset `name` filled in under it.
pub fn expand(name: &str, spec: &FaultSpec) -> Result<FaultSpec, String> {
    let preset = PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        format!(
            "unknown preset {name:?}; expected one of {}",
            names.join(", ")
        )
    })?;
    let is_delay = preset.action == "delay";
    if spec.action.is_some() || spec.status.is_some() || (spec.delay.is_some() && !is_delay) {
        return Err(format!(
            "the {name} preset sets the action; leave out action and status"
        ));
    }
    let default = Some(DurationText::Seconds(preset.default_seconds));
    let mut expanded = spec.clone();
    expanded.preset = None;
    expanded.action = Some(preset.action.to_string());
    expanded.status = preset.status;
    if spec.endpoint.is_none() && spec.path.is_none() {
        expanded.endpoint = preset.endpoint.map(str::to_string);
    }
    if is_delay {
        // "The first call takes D": --duration is the delay, unless a delay is given.
        expanded.delay = spec.delay.clone().or(spec.duration.clone()).or(default);
        expanded.duration = spec.delay.as_ref().and(spec.duration.clone());
    } else {
        expanded.duration = spec.duration.clone().or(default);
    }
    expanded.count = spec.count.or(preset.count);
    Ok(expanded)
}
