//! The events engine's settings.

use std::time::Duration;

/// Settings of the events engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintenanceConfig {
    /// Notice for Terminate events (user-configurable on Azure, 5–15 min).
    pub terminate_notice: Duration,
    /// How long an event stays Started when its DurationInSeconds gives no length.
    pub default_complete_after: Duration,
    /// Delay of a VM's first scheduled-events GET (§6.6; Azure: up to 2 min). Zero: off.
    pub first_call_delay: Duration,
    /// Where transitions are reported: `http://…` (POST) or a shell command (JSON on stdin).
    pub hook: Option<String>,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            terminate_notice: Duration::from_secs(5 * 60),
            default_complete_after: Duration::from_secs(60),
            first_call_delay: Duration::ZERO,
            hook: None,
        }
    }
}
