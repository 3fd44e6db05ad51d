//! What azimds tells about its guest plane: Prometheus metrics ([`metrics`], exposed by
//! [`exposition`]), the per-VM request journal ([`journal`]) and the settings of both and of
//! the access log. A leaf below the planes: the guest plane records into it, the control plane
//! reads it; it knows neither.

pub mod endpoint;
pub mod exposition;
pub mod histogram;
pub mod journal;
pub mod metrics;

pub use crate::telemetry::endpoint::GuestEndpoint;
use crate::telemetry::metrics::GuestMetrics;

/// Default of `--journal-size`: enough to see an agent's start-up, about 20 KiB per VM that
/// made requests.
pub const DEFAULT_JOURNAL_SIZE: usize = 64;
/// Default of `--metrics-per-vm-limit`.
pub const DEFAULT_PER_VM_LIMIT: usize = 100;

/// How much is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// Requests kept per VM; 0 turns the journal off.
    pub journal_size: usize,
    /// One log line per guest request (target `azimds::access`).
    pub access_log: bool,
    /// Per-VM metric series for at most this many VMs; `None`: off.
    pub metrics_per_vm: Option<usize>,
}

impl Default for TelemetrySettings {
    fn default() -> TelemetrySettings {
        TelemetrySettings {
            journal_size: DEFAULT_JOURNAL_SIZE,
            access_log: false,
            metrics_per_vm: None,
        }
    }
}

/// The guest plane's metrics and the recording settings, held in `state::Shared`.
#[derive(Debug)]
pub struct Telemetry {
    pub guest: GuestMetrics,
    pub settings: TelemetrySettings,
}

impl Telemetry {
    pub fn new(settings: TelemetrySettings) -> Telemetry {
        Telemetry {
            guest: GuestMetrics::new(settings.metrics_per_vm),
            settings,
        }
    }
}
