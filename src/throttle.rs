//! Per-VM request throttling (spec §1.11): a token bucket refilled at N tokens per second with a
//! burst of N, so a VM may make N requests in any one second and no more.
//!
//! Time is passed in (the injected clock's), so tests and `--clock manual` drive it without
//! sleeping. A clock stepped backwards refills nothing for that one request.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Requests per second allowed per VM; `0` means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit(pub u32);

/// One VM's bucket.
#[derive(Debug)]
pub struct TokenBucket {
    per_second: u32,
    /// (tokens available, when they were counted). The lock is never held across `.await`:
    /// `try_acquire` is synchronous.
    state: Mutex<(f64, Option<SystemTime>)>,
}

impl TokenBucket {
    pub fn new(limit: RateLimit) -> TokenBucket {
        TokenBucket {
            per_second: limit.0,
            state: Mutex::new((f64::from(limit.0), None)),
        }
    }

    /// Whether this bucket limits at all (callers skip reading the clock when it does not).
    pub fn is_limited(&self) -> bool {
        self.per_second != 0
    }

    /// Takes one token if there is one.
    pub fn try_acquire(&self, now: SystemTime) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let capacity = f64::from(self.per_second);
        // A poisoned lock only means another request panicked mid-update of two plain numbers;
        // the numbers are still usable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (tokens, last) = &mut *state;
        if let Some(last) = *last {
            let elapsed = now
                .duration_since(last)
                .unwrap_or(Duration::ZERO)
                .min(Duration::from_secs(3600));
            *tokens = (*tokens + elapsed.as_secs_f64() * capacity).min(capacity);
        }
        *last = Some(now);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refills_at_the_rate() {
        let bucket = TokenBucket::new(RateLimit(5));
        let t0 = SystemTime::now();
        assert!((0..5).all(|_| bucket.try_acquire(t0)));
        assert!(!bucket.try_acquire(t0));
        assert!(!bucket.try_acquire(t0 + Duration::from_millis(150)));
        assert!(bucket.try_acquire(t0 + Duration::from_millis(210)));
        assert!(!bucket.try_acquire(t0 + Duration::from_millis(220)));
        // A long idle period refills to the burst size, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.try_acquire(later)).count(), 5);
    }

    #[test]
    fn zero_means_unlimited() {
        let bucket = TokenBucket::new(RateLimit(0));
        let now = SystemTime::now();
        assert!((0..10_000).all(|_| bucket.try_acquire(now)));
    }
}
