//! Identity-category limits per VM (spec §1.11): 20 requests per second and 5 concurrent
//! requests, separate from the general instance limit. Time is passed in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::throttle::{RateLimit, TokenBucket};

/// Azure's documented identity limits (spec §1.11).
pub const DEFAULT_RATE: u32 = 20;
pub const DEFAULT_CONCURRENCY: u32 = 5;

/// Configured limits; `0` turns a limit off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityLimits {
    pub per_second: u32,
    pub concurrent: u32,
}

impl Default for IdentityLimits {
    fn default() -> IdentityLimits {
        IdentityLimits {
            per_second: DEFAULT_RATE,
            concurrent: DEFAULT_CONCURRENCY,
        }
    }
}

/// One VM's identity limiter.
#[derive(Debug)]
pub struct Limiter {
    bucket: TokenBucket,
    concurrent: u32,
    in_flight: AtomicU32,
}

/// Admission of one request; the concurrency slot is released when it is dropped.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limiter {
    pub fn new(limits: IdentityLimits) -> Limiter {
        Limiter {
            bucket: TokenBucket::new(RateLimit(limits.per_second)),
            concurrent: limits.concurrent,
            in_flight: AtomicU32::new(0),
        }
    }

    /// A permit, or `None` when the VM has too many requests in flight or in the last second.
    /// A request refused for concurrency does not use up a rate token.
    pub fn try_enter(self: &Arc<Self>, now: SystemTime) -> Option<Permit> {
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (self.concurrent == 0 || n < self.concurrent).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            return None;
        }
        let permit = Permit {
            limiter: Arc::clone(self),
        };
        self.bucket.try_acquire(now).then_some(permit)
    }
}

/// Limiters by VM id. Kept outside the snapshot so that publishing a new snapshot does not
/// reset a VM's budget.
#[derive(Debug)]
pub struct Limiters {
    limits: IdentityLimits,
    by_vm: RwLock<HashMap<String, Arc<Limiter>>>,
}

impl Limiters {
    pub fn new(limits: IdentityLimits) -> Limiters {
        Limiters {
            limits,
            by_vm: RwLock::default(),
        }
    }

    /// The limiter of `vm_id`, created on first use.
    pub fn get(&self, vm_id: &str) -> Arc<Limiter> {
        if let Some(limiter) = self
            .by_vm
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(vm_id)
        {
            return Arc::clone(limiter);
        }
        let mut by_vm = self.by_vm.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            by_vm
                .entry(vm_id.to_string())
                .or_insert_with(|| Arc::new(Limiter::new(self.limits))),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn five_concurrent_and_twenty_per_second() {
        let limiters = Limiters::new(IdentityLimits::default());
        let vm = limiters.get("vm");
        let t0 = SystemTime::now();
        let held: Vec<Permit> = (0..5).map(|_| vm.try_enter(t0).unwrap()).collect();
        assert!(
            vm.try_enter(t0).is_none(),
            "a sixth concurrent request is refused"
        );
        drop(held);
        // 5 rate tokens used above; 15 more this second, then none.
        assert_eq!((0..30).filter(|_| vm.try_enter(t0).is_some()).count(), 15);
        assert!(
            vm.try_enter(t0 + Duration::from_millis(60)).is_some(),
            "refilled at 20/s"
        );
        assert!(Arc::ptr_eq(&vm, &limiters.get("vm")));
        assert!(limiters.get("other").try_enter(t0).is_some(), "per VM");
    }

    #[test]
    fn zero_turns_limits_off() {
        let limiter = Arc::new(Limiter::new(IdentityLimits {
            per_second: 0,
            concurrent: 0,
        }));
        let now = SystemTime::now();
        let held: Vec<Permit> = (0..1000).map(|_| limiter.try_enter(now).unwrap()).collect();
        assert_eq!(held.len(), 1000);
    }
}
