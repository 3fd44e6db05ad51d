//! The fault rules in force ([`FaultBook`]) and each VM's view of them ([`VmFaults`]).
//!
//! The book is changed by the control API and read by the guest plane only through a VM's
//! view, which holds the rules that apply to that VM and its own limit state: a rule for every
//! VM counts `count` and draws its probability per VM, so one VM's traffic never changes what
//! another sees. A view is rebuilt on the VM's first request after the book changed (the
//! book's generation moved); with no rule for a VM, its request pays two atomic loads and a
//! flag check, and a rule on another VM costs it one rebuild, once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::faults::rule::{Action, FaultSpec, Rule};
use crate::problem::Problem;

/// Rules kept at most: each is a few hundred bytes, and every VM's view scans its own.
pub const MAX_RULES: usize = 1000;

/// Why a rule was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("invalid fault rule")]
    Invalid(Vec<Problem>),
    #[error("there are already {MAX_RULES} fault rules; remove some first")]
    TooMany,
}

#[derive(Debug, Default)]
struct Written {
    rules: Vec<Arc<Rule>>,
    next_id: u64,
}

/// Every rule in force, in the order added (the first that takes a request answers it).
#[derive(Debug, Default)]
pub struct FaultBook {
    written: Mutex<Written>,
    published: ArcSwap<Vec<Arc<Rule>>>,
    /// Moves on every change; views compare it with the generation they were built from.
    generation: AtomicU64,
}

impl FaultBook {
    /// Checks and adds a rule (ids are `f1`, `f2`, …, never reused).
    pub fn add(&self, spec: FaultSpec, now: SystemTime) -> Result<Arc<Rule>, AddError> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        written.rules.retain(|r| !r.expired(now));
        if written.rules.len() >= MAX_RULES {
            return Err(AddError::TooMany);
        }
        let id = format!("f{}", written.next_id + 1);
        let rule = Arc::new(Rule::check(&id, spec, now).map_err(AddError::Invalid)?);
        written.next_id += 1;
        written.rules.push(Arc::clone(&rule));
        self.publish(&written);
        Ok(rule)
    }

    /// Removes rule `id`; `None` if there is none.
    pub fn remove(&self, id: &str) -> Option<Arc<Rule>> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let at = written.rules.iter().position(|r| &*r.id == id)?;
        let removed = written.rules.remove(at);
        self.publish(&written);
        Some(removed)
    }

    /// Removes every rule; returns how many there were.
    pub fn clear(&self) -> usize {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let removed = written.rules.len();
        written.rules.clear();
        self.publish(&written);
        removed
    }

    /// The rules in force at `now` (those whose window has passed are dropped).
    pub fn list(&self, now: SystemTime) -> Vec<Arc<Rule>> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let before = written.rules.len();
        written.rules.retain(|r| !r.expired(now));
        if written.rules.len() != before {
            self.publish(&written);
        }
        written.rules.clone()
    }

    /// The rule `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Rule>> {
        self.published.load().iter().find(|r| &*r.id == id).cloned()
    }

    fn publish(&self, written: &Written) {
        self.published.store(Arc::new(written.rules.clone()));
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// A rule as one VM applies it: its own count and draws.
#[derive(Debug)]
struct VmRule {
    rule: Arc<Rule>,
    used: u64,
    draws: fastrand::Rng,
}

/// What a rule does to the request it took.
#[derive(Clone, Debug)]
pub struct Injection {
    pub rule: Arc<Rule>,
    pub action: Action,
}

/// One VM's view of the book (kept with the VM, across edits of its definition).
#[derive(Debug, Default)]
pub struct VmFaults {
    seen: AtomicU64,
    active: AtomicBool,
    rules: Mutex<Vec<VmRule>>,
}

impl VmFaults {
    /// The fault that takes this request of VM `vm_id`, if any. `now` is read only when a
    /// rule applies to the VM.
    #[inline]
    pub fn take(
        &self,
        book: &FaultBook,
        vm_id: &str,
        now: impl FnOnce() -> SystemTime,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
    ) -> Option<Injection> {
        let generation = book.generation.load(Ordering::Acquire);
        if generation != self.seen.load(Ordering::Acquire) {
            self.rebuild(book, vm_id, generation);
        }
        if !self.active.load(Ordering::Relaxed) {
            return None;
        }
        self.take_slow(now(), method, path, query)
    }

    #[cold]
    fn rebuild(&self, book: &FaultBook, vm_id: &str, generation: u64) {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        if self.seen.load(Ordering::Acquire) == generation {
            return;
        }
        let published = book.published.load();
        let mut previous = std::mem::take(&mut *rules);
        for rule in published.iter() {
            if rule.vm.as_deref().is_some_and(|vm| vm != vm_id) {
                continue;
            }
            let kept = previous
                .iter()
                .position(|r| Arc::ptr_eq(&r.rule, rule))
                .map(|at| previous.swap_remove(at));
            rules.push(kept.unwrap_or_else(|| VmRule {
                rule: Arc::clone(rule),
                used: 0,
                draws: fastrand::Rng::with_seed(rule.seed ^ fnv1a(vm_id)),
            }));
        }
        self.active.store(!rules.is_empty(), Ordering::Relaxed);
        self.seen.store(generation, Ordering::Release);
    }

    fn take_slow(
        &self,
        now: SystemTime,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
    ) -> Option<Injection> {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        for vm_rule in rules.iter_mut() {
            let rule = &vm_rule.rule;
            if rule.expired(now)
                || rule.count.is_some_and(|count| vm_rule.used >= count)
                || !rule.covers(method, path, query)
            {
                continue;
            }
            if let Some(p) = rule.probability
                && vm_rule.draws.f64() >= p
            {
                continue;
            }
            vm_rule.used += 1;
            rule.injected.fetch_add(1, Ordering::Relaxed);
            return Some(Injection {
                rule: Arc::clone(rule),
                action: rule.action,
            });
        }
        None
    }
}

/// A stable 64-bit hash of a VM id: each VM's draws differ, and repeat from run to run.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(json: serde_json::Value) -> FaultSpec {
        serde_json::from_value(json).unwrap()
    }

    fn hits(view: &VmFaults, book: &FaultBook, vm: &str, now: SystemTime, n: usize) -> usize {
        (0..n)
            .filter(|_| {
                view.take(
                    book,
                    vm,
                    || now,
                    &http::Method::GET,
                    "/metadata/instance",
                    None,
                )
                .is_some()
            })
            .count()
    }

    #[test]
    fn counts_and_draws_are_per_vm_and_reproducible() {
        let t0 = SystemTime::UNIX_EPOCH;
        let book = FaultBook::default();
        book.add(spec(serde_json::json!({"status": 500, "count": 2})), t0)
            .unwrap();
        let (a, b) = (VmFaults::default(), VmFaults::default());
        assert_eq!(hits(&a, &book, "a", t0, 5), 2);
        assert_eq!(
            hits(&b, &book, "b", t0, 5),
            2,
            "a's answers do not use up b's"
        );
        book.clear();
        book.add(
            spec(serde_json::json!({"status": 503, "probability": 0.5, "seed": 7})),
            t0,
        )
        .unwrap();
        let draws = |vm: &str| {
            let view = VmFaults::default();
            (0..64)
                .map(|_| {
                    view.take(&book, vm, || t0, &http::Method::GET, "/", None)
                        .is_some()
                })
                .collect::<Vec<bool>>()
        };
        assert_eq!(draws("a"), draws("a"), "a seed repeats");
        let taken = draws("a").iter().filter(|t| **t).count();
        assert!((16..=48).contains(&taken), "{taken} of 64 at p = 0.5");
    }

    #[test]
    fn a_rule_for_one_vm_leaves_the_others_alone_and_windows_end() {
        let t0 = SystemTime::UNIX_EPOCH;
        let book = FaultBook::default();
        let rule = book
            .add(
                spec(serde_json::json!({"vm": "a", "status": 410, "duration": "70s"})),
                t0,
            )
            .unwrap();
        let (a, b) = (VmFaults::default(), VmFaults::default());
        assert_eq!(hits(&b, &book, "b", t0, 3), 0);
        assert!(!b.active.load(Ordering::Relaxed));
        assert_eq!(hits(&a, &book, "a", t0, 3), 3);
        assert_eq!(hits(&a, &book, "a", t0 + Duration::from_secs(70), 3), 0);
        assert_eq!(rule.injected.load(Ordering::Relaxed), 3);
        assert!(book.list(t0 + Duration::from_secs(70)).is_empty());
        assert!(book.remove(&rule.id).is_none());
    }
}
