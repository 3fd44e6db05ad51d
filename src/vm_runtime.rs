//! What the server keeps for each VM besides its definition and throttle: its view of the
//! fault rules, its request journal and its per-VM counters. Kept with the VM's snapshot
//! entry and carried across edits of its definition (like the throttle bucket), so the guest
//! plane reaches it with no lookup; dropped with the VM.

use crate::faults::VmFaults;
use crate::telemetry::journal::Journal;
use crate::telemetry::metrics::VmCounters;

/// One VM's run-time state.
#[derive(Debug, Default)]
pub struct VmRuntime {
    pub faults: VmFaults,
    pub journal: Journal,
    pub counters: VmCounters,
}
