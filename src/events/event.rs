//! One scheduled event as the server holds it (spec §6.2): what happens, to which VMs, when,
//! and where it is in its life.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::events::machine::{Input, Status};

/// What is going to happen to the VMs (§6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    Freeze,
    Reboot,
    Redeploy,
    Preempt,
    Terminate,
}

impl EventType {
    /// Every type, in the spec's order.
    pub const ALL: [EventType; 5] = [
        EventType::Freeze,
        EventType::Reboot,
        EventType::Redeploy,
        EventType::Preempt,
        EventType::Terminate,
    ];

    /// Minimum notice Azure gives (§6.5); Terminate's is user-configurable (5–15 min), and
    /// `terminate` is the configured value.
    pub fn default_notice(self, terminate: Duration) -> Duration {
        match self {
            EventType::Freeze | EventType::Reboot => Duration::from_secs(15 * 60),
            EventType::Redeploy => Duration::from_secs(10 * 60),
            EventType::Preempt => Duration::from_secs(30),
            EventType::Terminate => terminate,
        }
    }

    /// The name as the scheduled-events document spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Freeze => "Freeze",
            EventType::Reboot => "Reboot",
            EventType::Redeploy => "Redeploy",
            EventType::Preempt => "Preempt",
            EventType::Terminate => "Terminate",
        }
    }

    /// The type named `text`, in any case.
    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text))
    }
}

/// Who caused the event (§6.2, 2019-08-01+).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventSource {
    Platform,
    User,
}

impl EventSource {
    /// The name as the scheduled-events document spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Platform => "Platform",
            EventSource::User => "User",
        }
    }

    /// The source named `text`, in any case.
    pub fn parse(text: &str) -> Option<EventSource> {
        [EventSource::Platform, EventSource::User]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

/// One scheduled event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Upper-case GUID (§6.2), stable for the event's life.
    pub id: String,
    pub event_type: EventType,
    /// VM ids whose documents show the event.
    pub targets: Vec<String>,
    /// Names shown in `Resources` (the targets' `compute.name`, unless given).
    pub resources: Vec<String>,
    pub status: Status,
    pub not_before: SystemTime,
    pub description: String,
    pub source: EventSource,
    /// `DurationInSeconds`: `-1` unknown (default), `0` no impact.
    pub duration_seconds: i64,
    /// How long the event stays `Started` before it is removed.
    pub complete_after: Duration,
    pub started_at: Option<SystemTime>,
}

impl Event {
    /// When the next time-driven input is due.
    pub fn deadline(&self) -> (SystemTime, Input) {
        match (self.status, self.started_at) {
            (Status::Started, Some(started)) => (
                later(started, self.complete_after),
                Input::CompletionReached,
            ),
            (Status::Started, None) => (
                later(self.not_before, self.complete_after),
                Input::CompletionReached,
            ),
            (Status::Scheduled, _) => (self.not_before, Input::NotBeforeReached),
        }
    }
}

/// The longest notice, duration or completion time an event may ask for: a year. Far longer
/// ones overflow the clock when added to it, and put NotBefore past year 9999, where no date
/// shows it (found by fuzzing, RELIABILITY.md).
pub const MAX_EVENT_SECONDS: u64 = 365 * 86_400;

/// `at + by`, or, past what `SystemTime` holds, a time that never comes: a deadline so far
/// out (a definition's huge DurationInSeconds) must not panic whoever computes it.
fn later(at: SystemTime, by: Duration) -> SystemTime {
    at.checked_add(by)
        .unwrap_or(SystemTime::UNIX_EPOCH + Duration::MAX / 2)
}

/// A new upper-case GUID for an event id (§6.2).
pub fn new_event_id() -> String {
    uuid::Uuid::new_v4()
        .hyphenated()
        .to_string()
        .to_ascii_uppercase()
}

/// Azure's usual description for an event (§6.3); Preempt and Terminate carry none.
pub fn default_description(event_type: EventType, source: EventSource) -> &'static str {
    match (event_type, source) {
        (EventType::Freeze, _) => {
            "Virtual machine is being paused because of a memory-preserving Live Migration operation."
        }
        (EventType::Reboot, EventSource::User) => {
            "Virtual machine is going to be restarted as requested by authorized user."
        }
        (EventType::Redeploy, EventSource::User) => {
            "Virtual machine is going to be redeployed as requested by authorized user."
        }
        (EventType::Reboot, EventSource::Platform) => "Host server is undergoing maintenance.",
        (EventType::Redeploy, EventSource::Platform) => {
            "Host server is undergoing an emergency repair."
        }
        (EventType::Preempt | EventType::Terminate, _) => "",
    }
}
