//! Scheduled events (spec §6): the event model, its state machine, the per-VM document and the
//! book of all events with each VM's `DocumentIncarnation`.
//!
//! Pure: no clock, no IO. Callers pass `now`; persistence, timers and hooks live in
//! `maintenance.rs`, HTTP in `guest::scheduled` and `control::events`.
//!
//! - `event.rs`: [`Event`], its type and source, Azure's default descriptions.
//! - `machine.rs`: [`Status`], [`Input`] and [`next`], the lifecycle as one match.
//! - `book.rs`: [`EventBook`], every live event and each VM's incarnation; [`Transition`].
//! - `defined.rs`: [`parse_defined_event`], an event as a definition file writes it.
//! - `document.rs`: the guest's scheduled-events document; `version.rs`: its api-versions.

mod book;
mod defined;
mod document;
mod event;
mod machine;
pub mod version;

pub use book::{Error, EventBook, Transition, TransitionKind};
pub use defined::{DefinedEvent, parse_defined_event};
pub use document::{parse_rfc1123, render, rfc1123};
pub use event::{
    Event, EventSource, EventType, MAX_EVENT_SECONDS, default_description, new_event_id,
};
pub use machine::{Input, Removal, Status, Step, next};
pub use version::EventsVersion;
