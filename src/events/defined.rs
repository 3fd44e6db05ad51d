//! Scheduled events as a VM definition file writes them (`scheduledEvents`): each entry checked
//! into a [`DefinedEvent`], with problems at JSON paths relative to the entry.

use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::events::document::parse_rfc1123;
use crate::events::event::{EventSource, EventType, MAX_EVENT_SECONDS};
use crate::events::machine::Status;
use crate::problem::{Problem, Problems};

/// An event as a VM definition file writes it: the shape of a scheduled-events document entry
/// (§6.2), with `EventStatus` optional (default `Scheduled`) and `EventId` optional.
#[derive(Clone, Debug, PartialEq)]
pub struct DefinedEvent {
    pub id: Option<String>,
    pub event_type: EventType,
    pub resources: Option<Vec<String>>,
    pub status: Status,
    pub not_before: Option<SystemTime>,
    pub description: String,
    pub source: EventSource,
    pub duration_seconds: i64,
}

/// The members of a defined event, in the order of a scheduled-events document entry.
const DEFINED_EVENT_MEMBERS: [&str; 9] = [
    "EventId",
    "EventStatus",
    "EventType",
    "ResourceType",
    "Resources",
    "NotBefore",
    "Description",
    "EventSource",
    "DurationInSeconds",
];

/// Checks one `scheduledEvents` entry; problems carry paths relative to the entry.
pub fn parse_defined_event(value: &Value) -> Result<DefinedEvent, Vec<Problem>> {
    let Value::Object(entry) = value else {
        return Err(vec![Problem::new("", "expected an event object")]);
    };
    let mut problems = Problems::new();
    problems.unknown_members(
        "",
        entry,
        &DEFINED_EVENT_MEMBERS,
        &format!(
            "unknown member; an event has {}",
            DEFINED_EVENT_MEMBERS.join(", ")
        ),
    );
    let id = event_id(entry, &mut problems);
    let event_type = event_type(entry, &mut problems);
    let status = status(entry, &mut problems);
    let not_before = not_before(entry, status, &mut problems);
    let source = source(entry, &mut problems);
    let duration_seconds = duration_seconds(entry, &mut problems);
    let resources = resources(entry, &mut problems);
    let description = text(entry, "Description", &mut problems).unwrap_or_default();
    let Some(event_type) = event_type else {
        return Err(problems.into_vec());
    };
    problems.into_result(DefinedEvent {
        id,
        event_type,
        resources,
        status,
        not_before,
        description,
        source,
        duration_seconds,
    })
}

/// `EventId`: a GUID, upper-cased as Azure shows it; `None` when left out.
fn event_id(entry: &Map<String, Value>, problems: &mut Problems) -> Option<String> {
    let id = text(entry, "EventId", problems)?;
    if uuid::Uuid::parse_str(&id).is_err() {
        problems.push("EventId", format!("{id:?} is not a GUID"));
    }
    Some(id.to_ascii_uppercase())
}

/// `EventType`, required; any case.
fn event_type(entry: &Map<String, Value>, problems: &mut Problems) -> Option<EventType> {
    let Some(text) = text(entry, "EventType", problems) else {
        problems.push("EventType", "missing");
        return None;
    };
    let event_type = EventType::parse(&text);
    if event_type.is_none() {
        problems.push(
            "EventType",
            format!("{text:?} is not Freeze, Reboot, Redeploy, Preempt or Terminate"),
        );
    }
    event_type
}

/// `EventStatus`: `Scheduled` (the default) or `Started`.
fn status(entry: &Map<String, Value>, problems: &mut Problems) -> Status {
    match text(entry, "EventStatus", problems).as_deref() {
        None | Some("Scheduled") => Status::Scheduled,
        Some("Started") => Status::Started,
        Some(other) => {
            problems.push(
                "EventStatus",
                format!("{other:?} is not Scheduled or Started"),
            );
            Status::Scheduled
        }
    }
}

/// `NotBefore`: an RFC 1123 time, or empty as a Started event shows it. A Scheduled event
/// needs one.
fn not_before(
    entry: &Map<String, Value>,
    status: Status,
    problems: &mut Problems,
) -> Option<SystemTime> {
    let text = match entry.get("NotBefore") {
        None | Some(Value::Null) => "",
        Some(Value::String(text)) => text,
        Some(_) => {
            problems.push("NotBefore", "expected a string");
            return None;
        }
    };
    if text.is_empty() {
        if status == Status::Scheduled {
            problems.push("NotBefore", "a Scheduled event needs a NotBefore time");
        }
        return None;
    }
    let not_before = parse_rfc1123(text);
    if not_before.is_none() {
        problems.push(
            "NotBefore",
            format!("{text:?} is not an RFC 1123 time like \"Wed, 24 Jan 2018 21:20:44 GMT\" (from 1970 on)"),
        );
    }
    not_before
}

/// `EventSource`: `Platform` (the default) or `User`, any case.
fn source(entry: &Map<String, Value>, problems: &mut Problems) -> EventSource {
    let Some(text) = text(entry, "EventSource", problems) else {
        return EventSource::Platform;
    };
    EventSource::parse(&text).unwrap_or_else(|| {
        problems.push("EventSource", format!("{text:?} is not Platform or User"));
        EventSource::Platform
    })
}

/// `DurationInSeconds`: `-1` (unknown, the default) up to a year ([`MAX_EVENT_SECONDS`]).
fn duration_seconds(entry: &Map<String, Value>, problems: &mut Problems) -> i64 {
    let in_range = |n: i64| (-1..=MAX_EVENT_SECONDS as i64).contains(&n);
    match entry.get("DurationInSeconds") {
        None | Some(Value::Null) => -1,
        Some(Value::Number(n)) if n.as_i64().is_some_and(in_range) => n.as_i64().unwrap_or(-1),
        Some(_) => {
            problems.push(
                "DurationInSeconds",
                "expected an integer from -1 up to a year (31536000)",
            );
            -1
        }
    }
}

/// `Resources`: VM names to show instead of the targets' `compute.name`.
fn resources(entry: &Map<String, Value>, problems: &mut Problems) -> Option<Vec<String>> {
    match entry.get("Resources") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        Some(_) => {
            problems.push("Resources", "expected a list of VM names");
            None
        }
    }
}

/// A string member; `None` when left out or not a string (then a problem).
fn text(entry: &Map<String, Value>, key: &str, problems: &mut Problems) -> Option<String> {
    match entry.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            problems.push(key, "expected a string");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Found with the fuzz targets (RELIABILITY.md): a `DurationInSeconds` too long to add to
    /// the clock made a Started event's completion time overflow, a panic in the events engine.
    #[test]
    fn duration_past_a_year_is_a_problem() {
        let event = |duration: Value| json!({"EventType": "Freeze", "EventStatus": "Started", "DurationInSeconds": duration});
        for too_long in [json!(i64::MAX), json!(365 * 86_400 + 1)] {
            let problems = parse_defined_event(&event(too_long.clone())).unwrap_err();
            let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
            assert_eq!(paths, ["DurationInSeconds"], "{too_long}");
        }
        let year = parse_defined_event(&event(json!(365 * 86_400))).unwrap();
        assert_eq!(year.duration_seconds, 365 * 86_400);
    }
}
