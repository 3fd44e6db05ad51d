//! The book of every live event and each VM's `DocumentIncarnation`: scheduling, applying
//! inputs through the state machine, and the time-driven inputs due at `now`. Every change that
//! a VM's document shows bumps that VM's incarnation, here and nowhere else.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use serde::Serialize;

use crate::events::event::Event;
use crate::events::machine::{Input, Removal, Status, Step, next};

/// Why the book refused a change: the state machine does not take the input, there is no such
/// event, or a new event is not valid.
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

/// A visible change: what the hooks are told and what the store records.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The event after the change (as it was last, when it was removed).
    pub event: Event,
    pub kind: TransitionKind,
    /// When it happened: `now`, or the deadline that caused it when `advance` caught up.
    pub at: SystemTime,
}

/// What a transition did to its event, as hooks name it (`"approved"`, …).
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
    /// A book as the store holds it: events, incarnations and the import record.
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

    /// Records that VM `vm`'s definition seeded event `id`.
    pub fn mark_imported(&mut self, vm: &str, id: &str) {
        self.imported.insert(import_key(vm, id));
    }

    /// Every `<vm id>/<event id>` ever imported (for persisting).
    pub fn imported(&self) -> &BTreeSet<String> {
        &self.imported
    }

    /// Every live event, in id order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.values()
    }

    /// The live event `id` (any case).
    pub fn event(&self, id: &str) -> Option<&Event> {
        self.events.get(&id.to_ascii_uppercase())
    }

    /// A VM's DocumentIncarnation. Azure's start somewhere above zero; ours start at 1.
    pub fn incarnation(&self, vm: &str) -> u64 {
        self.incarnations.get(vm).copied().unwrap_or(1)
    }

    /// The incarnation of every VM whose document has changed (the rest are at 1); for
    /// persisting.
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
        self.advance_where(now, |_| true)
    }

    /// [`EventBook::advance`] for the events `owned` picks (in a fleet, those whose timer
    /// this host runs).
    pub fn advance_where(
        &mut self,
        now: SystemTime,
        owned: impl Fn(&Event) -> bool,
    ) -> Vec<Transition> {
        let mut transitions = Vec::new();
        // Starting an event creates its completion deadline, which may itself be due.
        loop {
            let mut due: Vec<(SystemTime, String, Input)> = self
                .events
                .values()
                .filter(|e| owned(e))
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
        self.next_deadline_where(|_| true)
    }

    /// The earliest time-driven input of the events `owned` picks.
    pub fn next_deadline_where(&self, owned: impl Fn(&Event) -> bool) -> Option<SystemTime> {
        self.events
            .values()
            .filter(|e| owned(e))
            .map(|e| e.deadline().0)
            .min()
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::events::event::{EventSource, EventType};

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
