//! What the WireServer sees of a VM without it being a report: when it fetched its goal state,
//! and the latest status waagent uploaded (§6.1). In memory only; reset by a restart.

use std::time::SystemTime;

/// One VM's observations since the server started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub first_goal_state: Option<SystemTime>,
    pub last_goal_state: Option<SystemTime>,
    pub agent_status: Option<AgentStatus>,
}

/// The guest agent's own view, from the status JSON waagent uploads every few seconds
/// (`aggregateStatus.guestAgentStatus`): what the Azure portal shows as "VM agent status".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentStatus {
    pub status: String,
    pub version: String,
    pub message: String,
    pub at: SystemTime,
}
