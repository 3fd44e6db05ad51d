//! Scheduled events (spec §6): the event model, its state machine, the per-VM document and the
//! book of all events with each VM's `DocumentIncarnation`.
//!
//! Pure: no clock, no IO. Callers pass `now`; persistence, timers and hooks live in
//! `maintenance.rs`, HTTP in `guest::scheduled` and `control::events`.

mod document;
pub mod version;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::problem::{Problem, Problems};

pub use document::{parse_rfc1123, render, rfc1123};
pub use version::EventsVersion;

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

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Freeze => "Freeze",
            EventType::Reboot => "Reboot",
            EventType::Redeploy => "Redeploy",
            EventType::Preempt => "Preempt",
            EventType::Terminate => "Terminate",
        }
    }

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
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Platform => "Platform",
            EventSource::User => "User",
        }
    }

    pub fn parse(text: &str) -> Option<EventSource> {
        [EventSource::Platform, EventSource::User]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

/// Where an event is in its life. Finished events are removed, not kept in a third state (§6.2:
/// there is no `Completed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Scheduled,
    Started,
}

/// What can happen to an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A guest POSTed a StartRequest for it.
    Approve,
    /// Its NotBefore time has come.
    NotBeforeReached,
    /// The operator started it now.
    Start,
    /// Its completion time (after starting) has come.
    CompletionReached,
    /// The operator completed it now.
    Complete,
    /// The platform (operator) canceled it.
    Cancel,
}

/// What an input does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Scheduled → Started.
    Start,
    /// Removed from every document.
    Remove(Removal),
    /// No visible change (e.g. approving an event that already started).
    Nothing,
}

/// Why an event left the documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Removal {
    Completed,
    Canceled,
}

/// An input the state machine refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("event {id} is {status:?}; {input:?} does not apply")]
    IllegalTransition {
        id: String,
        status: Status,
        input: Input,
    },
    #[error("no event {0}")]
    UnknownEvent(String),
    #[error("{0}")]
    Invalid(String),
}

/// The lifecycle of §6.5 as one match.
pub fn next(status: Status, input: Input) -> Option<Step> {
    match (status, input) {
        (Status::Scheduled, Input::Approve | Input::NotBeforeReached | Input::Start) => {
            Some(Step::Start)
        }
        // Approving again is a 200 with no change (§6.4); a late NotBefore is moot.
        (Status::Started, Input::Approve | Input::NotBeforeReached | Input::Start) => {
            Some(Step::Nothing)
        }
        (Status::Started, Input::CompletionReached | Input::Complete) => {
            Some(Step::Remove(Removal::Completed))
        }
        (Status::Scheduled | Status::Started, Input::Cancel) => {
            Some(Step::Remove(Removal::Canceled))
        }
        // An event that never started cannot complete.
        (Status::Scheduled, Input::CompletionReached | Input::Complete) => None,
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
            (Status::Started, Some(started)) => {
                (started + self.complete_after, Input::CompletionReached)
            }
            (Status::Started, None) => (
                self.not_before + self.complete_after,
                Input::CompletionReached,
            ),
            (Status::Scheduled, _) => (self.not_before, Input::NotBeforeReached),
        }
    }
}

/// A visible change: what the hooks are told and what the store records.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub event: Event,
    pub kind: TransitionKind,
    pub at: SystemTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionKind {
    Scheduled,
    Approved,
    Started,
    Completed,
    Canceled,
}

/// Every live event and each VM's DocumentIncarnation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventBook {
    events: BTreeMap<String, Event>,
    incarnations: HashMap<String, u64>,
    /// `<vm id>/<event id>` of every definition event ever imported, so a definition seeds
    /// each event once even after it completed or was canceled.
    imported: BTreeSet<String>,
}

impl EventBook {
    pub fn from_parts(
        events: Vec<Event>,
        incarnations: HashMap<String, u64>,
        imported: BTreeSet<String>,
    ) -> EventBook {
        EventBook {
            events: events.into_iter().map(|e| (e.id.clone(), e)).collect(),
            incarnations,
            imported,
        }
    }

    /// Whether VM `vm`'s definition already seeded event `id`.
    pub fn was_imported(&self, vm: &str, id: &str) -> bool {
        self.imported.contains(&import_key(vm, id))
    }

    pub fn mark_imported(&mut self, vm: &str, id: &str) {
        self.imported.insert(import_key(vm, id));
    }

    pub fn imported(&self) -> &BTreeSet<String> {
        &self.imported
    }

    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.values()
    }

    pub fn event(&self, id: &str) -> Option<&Event> {
        self.events.get(&id.to_ascii_uppercase())
    }

    /// A VM's DocumentIncarnation. Azure's start somewhere above zero; ours start at 1.
    pub fn incarnation(&self, vm: &str) -> u64 {
        self.incarnations.get(vm).copied().unwrap_or(1)
    }

    pub fn incarnations(&self) -> &HashMap<String, u64> {
        &self.incarnations
    }

    /// The events a VM's document lists, in NotBefore order, then id.
    pub fn for_vm<'a>(&'a self, vm: &'a str) -> Vec<&'a Event> {
        let mut events: Vec<&Event> = self
            .events
            .values()
            .filter(|e| e.targets.iter().any(|t| t == vm))
            .collect();
        events.sort_by(|a, b| {
            a.not_before
                .cmp(&b.not_before)
                .then_with(|| a.id.cmp(&b.id))
        });
        events
    }

    /// Adds an event; every target's document changes.
    pub fn schedule(&mut self, event: Event, now: SystemTime) -> Result<Transition, Error> {
        if self.events.contains_key(&event.id) {
            return Err(Error::Invalid(format!("event {} already exists", event.id)));
        }
        if event.targets.is_empty() {
            return Err(Error::Invalid(
                "an event needs at least one target VM".into(),
            ));
        }
        self.bump(&event.targets);
        self.events.insert(event.id.clone(), event.clone());
        Ok(Transition {
            event,
            kind: TransitionKind::Scheduled,
            at: now,
        })
    }

    /// Applies `input` to event `id`. Bumps the incarnation of every target exactly when its
    /// document changes.
    pub fn apply(
        &mut self,
        id: &str,
        input: Input,
        now: SystemTime,
    ) -> Result<Option<Transition>, Error> {
        let id = id.to_ascii_uppercase();
        let event = self
            .events
            .get(&id)
            .ok_or_else(|| Error::UnknownEvent(id.clone()))?;
        let step = next(event.status, input).ok_or_else(|| Error::IllegalTransition {
            id: id.clone(),
            status: event.status,
            input,
        })?;
        let targets = event.targets.clone();
        match step {
            Step::Nothing => Ok(None),
            Step::Start => {
                let event = self.events.get_mut(&id).expect("checked above");
                event.status = Status::Started;
                event.started_at = Some(now);
                let kind = if input == Input::Approve {
                    TransitionKind::Approved
                } else {
                    TransitionKind::Started
                };
                let transition = Transition {
                    event: event.clone(),
                    kind,
                    at: now,
                };
                self.bump(&targets);
                Ok(Some(transition))
            }
            Step::Remove(why) => {
                let event = self.events.remove(&id).expect("checked above");
                self.bump(&targets);
                let kind = match why {
                    Removal::Completed => TransitionKind::Completed,
                    Removal::Canceled => TransitionKind::Canceled,
                };
                Ok(Some(Transition {
                    event,
                    kind,
                    at: now,
                }))
            }
        }
    }

    /// Applies every time-driven input due at `now`, oldest deadline first.
    pub fn advance(&mut self, now: SystemTime) -> Vec<Transition> {
        let mut transitions = Vec::new();
        // Starting an event creates its completion deadline, which may itself be due.
        loop {
            let mut due: Vec<(SystemTime, String, Input)> = self
                .events
                .values()
                .map(|e| {
                    let (at, input) = e.deadline();
                    (at, e.id.clone(), input)
                })
                .filter(|(at, _, _)| *at <= now)
                .collect();
            if due.is_empty() {
                return transitions;
            }
            due.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            for (at, id, input) in due {
                if let Ok(Some(transition)) = self.apply(&id, input, at.min(now)) {
                    transitions.push(transition);
                }
            }
        }
    }

    /// The earliest time-driven input.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        self.events.values().map(|e| e.deadline().0).min()
    }

    /// Adds a VM to an existing event (several definitions listing one EventId); only that
    /// VM's document changes.
    pub fn add_target(&mut self, id: &str, vm: &str, resource: &str) -> Result<(), Error> {
        let event = self
            .events
            .get_mut(&id.to_ascii_uppercase())
            .ok_or_else(|| Error::UnknownEvent(id.into()))?;
        if event.targets.iter().any(|t| t == vm) {
            return Ok(());
        }
        event.targets.push(vm.to_string());
        if !event.resources.iter().any(|r| r == resource) {
            event.resources.push(resource.to_string());
        }
        self.bump(&[vm.to_string()]);
        Ok(())
    }

    /// Removes a deleted VM from every event; events left with no target are removed. The VM's
    /// incarnation is kept: a VM re-created under the same id must not see it go backwards.
    pub fn forget_vm(&mut self, vm: &str) -> Vec<String> {
        let mut emptied = Vec::new();
        for event in self.events.values_mut() {
            event.targets.retain(|t| t != vm);
            if event.targets.is_empty() {
                emptied.push(event.id.clone());
            }
        }
        for id in &emptied {
            self.events.remove(id);
        }
        emptied
    }

    fn bump(&mut self, vms: &[String]) {
        let unique: BTreeSet<&String> = vms.iter().collect();
        for vm in unique {
            *self.incarnations.entry(vm.clone()).or_insert(1) += 1;
        }
    }
}

fn import_key(vm: &str, id: &str) -> String {
    format!("{vm}/{}", id.to_ascii_uppercase())
}

/// A new upper-case GUID for an event id (§6.2).
pub fn new_event_id() -> String {
    uuid::Uuid::new_v4()
        .hyphenated()
        .to_string()
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUSES: [Status; 2] = [Status::Scheduled, Status::Started];
    const INPUTS: [Input; 6] = [
        Input::Approve,
        Input::NotBeforeReached,
        Input::Start,
        Input::CompletionReached,
        Input::Complete,
        Input::Cancel,
    ];

    /// Every state × input, against a table written from §6.5.
    #[test]
    fn state_machine_exhaustively() {
        use Step::*;
        let expected = |status, input| match (status, input) {
            (Status::Scheduled, Input::Approve) => Some(Start),
            (Status::Scheduled, Input::NotBeforeReached) => Some(Start),
            (Status::Scheduled, Input::Start) => Some(Start),
            (Status::Scheduled, Input::CompletionReached) => None,
            (Status::Scheduled, Input::Complete) => None,
            (Status::Scheduled, Input::Cancel) => Some(Remove(Removal::Canceled)),
            (Status::Started, Input::Approve) => Some(Nothing),
            (Status::Started, Input::NotBeforeReached) => Some(Nothing),
            (Status::Started, Input::Start) => Some(Nothing),
            (Status::Started, Input::CompletionReached) => Some(Remove(Removal::Completed)),
            (Status::Started, Input::Complete) => Some(Remove(Removal::Completed)),
            (Status::Started, Input::Cancel) => Some(Remove(Removal::Canceled)),
        };
        for status in STATUSES {
            for input in INPUTS {
                assert_eq!(
                    next(status, input),
                    expected(status, input),
                    "{status:?} × {input:?}"
                );
            }
        }
    }

    fn t(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn event(id: &str, targets: &[&str], not_before: u64) -> Event {
        Event {
            id: id.into(),
            event_type: EventType::Reboot,
            targets: targets.iter().map(|s| s.to_string()).collect(),
            resources: targets.iter().map(|s| s.to_string()).collect(),
            status: Status::Scheduled,
            not_before: t(not_before),
            description: String::new(),
            source: EventSource::Platform,
            duration_seconds: -1,
            complete_after: Duration::from_secs(60),
            started_at: None,
        }
    }

    #[test]
    fn incarnation_bumps_exactly_when_a_vms_document_changes() {
        let mut book = EventBook::default();
        assert_eq!(book.incarnation("a"), 1);
        book.schedule(event("E1", &["a", "b"], 100), t(0)).unwrap();
        assert_eq!(
            (
                book.incarnation("a"),
                book.incarnation("b"),
                book.incarnation("c")
            ),
            (2, 2, 1)
        );
        let approved = book.apply("e1", Input::Approve, t(10)).unwrap().unwrap();
        assert_eq!(approved.kind, TransitionKind::Approved);
        assert_eq!(
            book.event("E1").unwrap().status,
            Status::Started,
            "approval starts it for every VM"
        );
        assert_eq!((book.incarnation("a"), book.incarnation("b")), (3, 3));
        assert_eq!(
            book.apply("E1", Input::Approve, t(11)).unwrap(),
            None,
            "approving again changes nothing"
        );
        assert_eq!(book.incarnation("a"), 3);
        assert!(book.advance(t(69)).is_empty());
        let done = book.advance(t(70));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].kind, TransitionKind::Completed);
        assert_eq!((book.incarnation("a"), book.incarnation("b")), (4, 4));
        assert!(book.event("E1").is_none());
    }

    #[test]
    fn not_before_starts_and_completion_removes_on_the_clock() {
        let mut book = EventBook::default();
        book.schedule(event("E1", &["a"], 100), t(0)).unwrap();
        book.schedule(event("E2", &["a"], 500), t(0)).unwrap();
        assert_eq!(book.next_deadline(), Some(t(100)));
        assert!(book.advance(t(99)).is_empty());
        // A long pause: E1 starts at its NotBefore and completes 60 s later, in one advance.
        let transitions = book.advance(t(200));
        let kinds: Vec<_> = transitions
            .iter()
            .map(|t| (t.event.id.as_str(), t.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("E1", TransitionKind::Started),
                ("E1", TransitionKind::Completed)
            ]
        );
        assert_eq!(transitions[0].at, t(100));
        assert_eq!(book.next_deadline(), Some(t(500)));
        assert_eq!(book.incarnation("a"), 5);
    }

    #[test]
    fn cancel_complete_and_errors() {
        let mut book = EventBook::default();
        book.schedule(event("E1", &["a"], 100), t(0)).unwrap();
        assert!(matches!(
            book.apply("E1", Input::Complete, t(1)),
            Err(Error::IllegalTransition { .. })
        ));
        let canceled = book.apply("E1", Input::Cancel, t(2)).unwrap().unwrap();
        assert_eq!(canceled.kind, TransitionKind::Canceled);
        assert_eq!(
            canceled.event.status,
            Status::Scheduled,
            "canceled before it started"
        );
        assert!(matches!(
            book.apply("E1", Input::Approve, t(3)),
            Err(Error::UnknownEvent(_))
        ));
        assert!(book.schedule(event("E2", &[], 1), t(0)).is_err());
        book.schedule(event("E3", &["a", "b"], 100), t(0)).unwrap();
        assert!(
            book.schedule(event("E3", &["a"], 100), t(0)).is_err(),
            "ids are unique"
        );
        assert!(book.forget_vm("a").is_empty());
        assert_eq!(book.event("E3").unwrap().targets, ["b"]);
        assert_eq!(book.forget_vm("b"), ["E3"]);
    }
}

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
            format!("{text:?} is not an RFC 1123 time like \"Wed, 24 Jan 2018 21:20:44 GMT\""),
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

/// `DurationInSeconds`: `-1` (unknown, the default) or more.
fn duration_seconds(entry: &Map<String, Value>, problems: &mut Problems) -> i64 {
    match entry.get("DurationInSeconds") {
        None | Some(Value::Null) => -1,
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n >= -1) => n.as_i64().unwrap_or(-1),
        Some(_) => {
            problems.push("DurationInSeconds", "expected an integer, -1 or more");
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
