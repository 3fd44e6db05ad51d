//! Making events: from an operator's schedule request (checked, every problem with its field)
//! and from a VM definition's `scheduledEvents` entry. Pure: time and VM names are passed in.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::events::{self, DefinedEvent, Event, EventSource, EventType, Status};
use crate::maintenance::config::MaintenanceConfig;
use crate::problem::Problem;

const AT_MOST_A_YEAR: &str = "must be at most a year (31536000 seconds)";
/// [`events::MAX_EVENT_SECONDS`] as `durationSeconds` is typed.
const MAX_SECONDS: i64 = events::MAX_EVENT_SECONDS as i64;

/// What an operator asks for when scheduling.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleRequest {
    #[serde(rename = "type")]
    pub event_type: String,
    pub vms: Vec<String>,
    /// RFC 3339 (`2026-01-02T03:04:05Z`) or RFC 1123.
    pub not_before: Option<String>,
    pub notice_seconds: Option<u64>,
    pub duration_seconds: Option<i64>,
    pub description: Option<String>,
    pub source: Option<String>,
    pub resources: Option<Vec<String>>,
    pub complete_after_seconds: Option<u64>,
    pub event_id: Option<String>,
}

/// The event an operator's request describes, or every problem with it. VM ids are checked
/// with `label_of` (a VM's name, `None` when there is no such VM); the names become the
/// default `Resources`.
pub(crate) fn event_from_request(
    request: ScheduleRequest,
    label_of: impl Fn(&str) -> Option<String>,
    config: &MaintenanceConfig,
    now: SystemTime,
) -> Result<Event, Vec<Problem>> {
    let mut problems = Vec::new();
    let event_type = EventType::parse(&request.event_type);
    if event_type.is_none() {
        problems.push(Problem::new(
            "type",
            format!(
                "{:?} is not Freeze, Reboot, Redeploy, Preempt or Terminate",
                request.event_type
            ),
        ));
    }
    let source = source(request.source.as_deref(), &mut problems);
    let names = vm_names(&request.vms, label_of, &mut problems);
    let default_notice = event_type.map_or(Duration::ZERO, |t| {
        t.default_notice(config.terminate_notice)
    });
    let not_before = not_before(&request, default_notice, now, &mut problems);
    let duration_seconds = request.duration_seconds.unwrap_or(-1);
    if duration_seconds < -1 {
        problems.push(Problem::new(
            "durationSeconds",
            "must be -1 (unknown) or more",
        ));
    } else if duration_seconds > MAX_SECONDS {
        problems.push(Problem::new("durationSeconds", AT_MOST_A_YEAR));
    }
    if request.complete_after_seconds > Some(events::MAX_EVENT_SECONDS) {
        problems.push(Problem::new("completeAfterSeconds", AT_MOST_A_YEAR));
    }
    let id = event_id(request.event_id.as_deref(), &mut problems);
    let (Some(event_type), true) = (event_type, problems.is_empty()) else {
        return Err(problems);
    };
    Ok(Event {
        id,
        event_type,
        targets: request.vms,
        resources: request.resources.unwrap_or(names),
        status: Status::Scheduled,
        not_before,
        description: request
            .description
            .unwrap_or_else(|| events::default_description(event_type, source).into()),
        source,
        duration_seconds,
        complete_after: request
            .complete_after_seconds
            .map(Duration::from_secs)
            .unwrap_or_else(|| complete_after(config, duration_seconds)),
        started_at: None,
    })
}

fn source(text: Option<&str>, problems: &mut Vec<Problem>) -> EventSource {
    match text {
        None => EventSource::Platform,
        Some(s) => EventSource::parse(s).unwrap_or_else(|| {
            problems.push(Problem::new(
                "source",
                format!("{s:?} is not Platform or User"),
            ));
            EventSource::Platform
        }),
    }
}

/// The names of the target VMs, each of which must exist.
fn vm_names(
    vms: &[String],
    label_of: impl Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    if vms.is_empty() {
        problems.push(Problem::new("vms", "name at least one VM id"));
    }
    let mut names = Vec::new();
    for (i, vm) in vms.iter().enumerate() {
        match label_of(vm) {
            Some(label) => names.push(label),
            None => problems.push(Problem::new(
                format!("vms[{i}]"),
                format!("no VM with id {vm:?}"),
            )),
        }
    }
    names
}

fn not_before(
    request: &ScheduleRequest,
    default_notice: Duration,
    now: SystemTime,
    problems: &mut Vec<Problem>,
) -> SystemTime {
    match (&request.not_before, request.notice_seconds) {
        (Some(_), Some(_)) => {
            problems.push(Problem::new(
                "noticeSeconds",
                "give notBefore or noticeSeconds, not both",
            ));
            now
        }
        (Some(text), None) => parse_time(text).unwrap_or_else(|| {
            problems.push(Problem::new(
                "notBefore",
                format!("{text:?} is neither RFC 3339 nor RFC 1123 (from 1970 on)"),
            ));
            now
        }),
        (None, Some(seconds)) if seconds > events::MAX_EVENT_SECONDS => {
            problems.push(Problem::new("noticeSeconds", AT_MOST_A_YEAR));
            now
        }
        (None, Some(seconds)) => whole_second_after(now + Duration::from_secs(seconds)),
        (None, None) => whole_second_after(now + default_notice),
    }
}

fn event_id(requested: Option<&str>, problems: &mut Vec<Problem>) -> String {
    match requested {
        Some(id) if uuid::Uuid::parse_str(id).is_ok() => id.to_ascii_uppercase(),
        Some(id) => {
            problems.push(Problem::new("eventId", format!("{id:?} is not a GUID")));
            String::new()
        }
        None => events::new_event_id(),
    }
}

/// The event a definition's `scheduledEvents[index]` entry (`source`, already parsed into
/// `defined`) describes for VM `vm_id`.
pub(super) fn event_from_definition(
    vm_id: &str,
    vm_name: &str,
    index: usize,
    source: &Value,
    defined: DefinedEvent,
    config: &MaintenanceConfig,
    now: SystemTime,
) -> Event {
    Event {
        // An entry without an EventId gets one derived from where it is and what it says,
        // so the same entry maps to the same event on every start.
        id: defined
            .id
            .unwrap_or_else(|| derived_event_id(vm_id, index, source)),
        event_type: defined.event_type,
        targets: vec![vm_id.to_string()],
        resources: defined
            .resources
            .unwrap_or_else(|| vec![vm_name.to_string()]),
        status: defined.status,
        not_before: defined.not_before.unwrap_or(now),
        description: defined.description,
        source: defined.source,
        duration_seconds: defined.duration_seconds,
        complete_after: complete_after(config, defined.duration_seconds),
        started_at: (defined.status == Status::Started).then_some(now),
    }
}

fn complete_after(config: &MaintenanceConfig, duration_seconds: i64) -> Duration {
    if duration_seconds > 0 {
        Duration::from_secs(duration_seconds as u64)
    } else {
        config.default_complete_after
    }
}

/// Guests see NotBefore in whole seconds (RFC 1123); rounding up keeps the event from starting
/// before the time they were shown, and the notice from falling below the minimum.
fn whole_second_after(at: SystemTime) -> SystemTime {
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let whole = since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(whole)
}

/// An upper-case GUID from SHA-256 of the VM id, the entry's position and its JSON.
fn derived_event_id(vm_id: &str, index: usize, entry: &Value) -> String {
    let material = format!("azimds-event\0{vm_id}\0{index}\0{entry}");
    let digest = openssl::sha::sha256(material.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
        .to_ascii_uppercase()
}

fn parse_time(text: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
        .filter(|t| *t >= SystemTime::UNIX_EPOCH)
        .or_else(|| events::parse_rfc1123(text))
}
