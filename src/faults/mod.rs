//! Fault injection (issue 10): rules that make the guest plane answer as Azure does when it
//! is updating, throttling or failing — a status with Azure's exact body, added latency, a
//! stall, a reset connection or a truncated body — limited by count, window or seeded
//! probability. Pure: no HTTP serving and no IO; time is passed in. The guest plane applies
//! what a rule decides (`guest/faults.rs`); the control API and the config file add rules.

mod book;
pub mod preset;
mod rule;
mod spec;

pub use crate::faults::book::{AddError, FaultBook, Injection, MAX_RULES, VmFaults};
pub use crate::faults::preset::PRESETS;
pub use crate::faults::rule::{
    Action, DurationText, FaultSpec, IdentityMatch, Rule, STATUSES, Scope,
};
