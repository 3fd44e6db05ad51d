//! What azimds keeps of a VM's provisioning: the health reports its guest agents sent to the
//! WireServer (wireserver.md §5) and the state they add up to (§5.4). Pure: no IO, time passed in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How many reports a record keeps, newest last (waagent sends two per boot, cloud-init one).
pub const HISTORY: usize = 16;
/// Longest description kept (waagent's own limit is 4096 bytes, §5.1).
pub const MAX_DESCRIPTION: usize = 4096;
/// Longest agent name kept.
pub const MAX_AGENT: usize = 256;

/// A VM's provisioning state, as the reports make it (§5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Nothing reported yet.
    Pending,
    /// `NotReady` with a sub-status other than `ProvisioningFailed`, before any `Ready`.
    Provisioning,
    /// A `Ready` arrived. Later `NotReady/Provisioning` reports (waagent sends them routinely
    /// after cloud-init's Ready) do not undo it.
    Ready,
    /// `NotReady/ProvisioningFailed`; only a later `Ready` clears it.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::Provisioning => "Provisioning",
            State::Ready => "Ready",
            State::Failed => "Failed",
        }
    }
}

/// The health a report states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    Ready,
    NotReady,
}

/// Which WireServer endpoint a report came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    /// `POST /machine?comp=health` (XML, §5.1): cloud-init, waagent, older azure-init.
    #[serde(rename = "machine-health")]
    MachineHealth,
    /// `POST /provisioning/health` (JSON, §5.2): azure-init.
    #[serde(rename = "provisioning-health")]
    ProvisioningHealth,
}

impl Channel {
    pub fn path(self) -> &'static str {
        match self {
            Channel::MachineHealth => "/machine?comp=health",
            Channel::ProvisioningHealth => "/provisioning/health",
        }
    }
}

/// One health report, as received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub health: Health,
    pub sub_status: Option<String>,
    pub description: Option<String>,
    /// Who sent it: the `User-Agent` (`Cloud-Init/22.4.2`, `WALinuxAgent/2.7.3.0`,
    /// `azure-init v0.1.1`), else the `x-ms-agent-name`.
    pub agent: String,
    pub channel: Channel,
    /// The goal state the report names (XML reports only); compared, never required (§5.4).
    pub incarnation: Option<String>,
    pub container_id: Option<String>,
    pub instance_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl Report {
    /// `at_ms` as a time.
    pub fn at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.at_ms)
    }

    /// Whether two reports say the same thing (ignoring when).
    pub fn same_as(&self, other: &Report) -> bool {
        Report {
            at_ms: 0,
            ..self.clone()
        } == Report {
            at_ms: 0,
            ..other.clone()
        }
    }
}

/// Milliseconds since the Unix epoch (0 for a clock before it).
pub fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `text` cut to at most `max` bytes on a character boundary.
pub fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// A VM's provisioning record, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub state: State,
    /// When the VM first became Ready (kept across later reports), and who said so.
    pub ready_at_ms: Option<u64>,
    pub ready_agent: Option<String>,
    /// The newest reports, oldest first; the last one is the latest.
    pub reports: Vec<Report>,
}

impl Record {
    /// A VM nothing was heard from.
    pub fn pending() -> Record {
        Record {
            state: State::Pending,
            ready_at_ms: None,
            ready_agent: None,
            reports: Vec::new(),
        }
    }

    pub fn latest(&self) -> Option<&Report> {
        self.reports.last()
    }

    /// The record after `report` (§5.4's state machine).
    pub fn with(&self, report: Report) -> Record {
        let state = next_state(self.state, &report);
        let mut next = self.clone();
        if state == State::Ready && self.state != State::Ready {
            next.ready_at_ms = Some(report.at_ms);
            next.ready_agent = Some(report.agent.clone());
        }
        next.state = state;
        next.reports.push(report);
        if next.reports.len() > HISTORY {
            let excess = next.reports.len() - HISTORY;
            next.reports.drain(..excess);
        }
        next
    }

    /// Whether `report` would change nothing but the time (a repeated report).
    pub fn repeats(&self, report: &Report) -> bool {
        self.latest().is_some_and(|latest| latest.same_as(report))
            && next_state(self.state, report) == self.state
    }
}

/// §5.4: Ready on any Ready; Failed on `ProvisioningFailed`; any other NotReady is "still
/// provisioning" and leaves Ready and Failed as they are.
fn next_state(current: State, report: &Report) -> State {
    match report.health {
        Health::Ready => State::Ready,
        Health::NotReady if report.sub_status.as_deref() == Some("ProvisioningFailed") => {
            State::Failed
        }
        Health::NotReady => match current {
            State::Ready | State::Failed => current,
            State::Pending | State::Provisioning => State::Provisioning,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(health: Health, sub_status: Option<&str>, agent: &str, at_ms: u64) -> Report {
        Report {
            health,
            sub_status: sub_status.map(str::to_string),
            description: None,
            agent: agent.to_string(),
            channel: Channel::MachineHealth,
            incarnation: Some("1".into()),
            container_id: None,
            instance_id: None,
            at_ms,
        }
    }

    #[test]
    fn the_state_follows_section_5_4() {
        let record = Record::pending();
        // waagent with cloud-init: NotReady/Provisioning, cloud-init's Ready, waagent's
        // routine NotReady/Provisioning after it, then waagent's Ready.
        let record = record.with(report(Health::NotReady, Some("Provisioning"), "WA", 1));
        assert_eq!(record.state, State::Provisioning);
        let record = record.with(report(Health::Ready, None, "Cloud-Init/22.4.2", 2));
        assert_eq!(record.state, State::Ready);
        assert_eq!(record.ready_at_ms, Some(2));
        assert_eq!(record.ready_agent.as_deref(), Some("Cloud-Init/22.4.2"));
        let record = record.with(report(Health::NotReady, Some("Provisioning"), "WA", 3));
        assert_eq!(
            record.state,
            State::Ready,
            "a later NotReady does not undo Ready"
        );
        let record = record.with(report(Health::Ready, None, "WA", 4));
        assert_eq!(record.ready_at_ms, Some(2), "the first Ready is kept");
        let record = record.with(report(
            Health::NotReady,
            Some("ProvisioningFailed"),
            "WA",
            5,
        ));
        assert_eq!(record.state, State::Failed);
        let record = record.with(report(Health::NotReady, Some("Provisioning"), "WA", 6));
        assert_eq!(record.state, State::Failed, "only a Ready clears a failure");
        let record = record.with(report(Health::Ready, None, "WA", 7));
        assert_eq!(record.state, State::Ready);
        assert_eq!(record.ready_at_ms, Some(7));
        assert_eq!(record.reports.len(), 7);
    }

    #[test]
    fn history_is_bounded_and_repeats_are_recognised() {
        let mut record = Record::pending();
        for at in 0..40 {
            record = record.with(report(Health::Ready, None, "WA", at));
        }
        assert_eq!(record.reports.len(), HISTORY);
        assert_eq!(record.reports[0].at_ms, 40 - HISTORY as u64);
        assert!(record.repeats(&report(Health::Ready, None, "WA", 99)));
        assert!(!record.repeats(&report(Health::Ready, None, "other", 99)));
        assert!(!Record::pending().repeats(&report(Health::Ready, None, "WA", 1)));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncated("héllo", 2), "h");
        assert_eq!(truncated("héllo", 3), "hé");
        assert_eq!(truncated("abc", 10), "abc");
    }
}
