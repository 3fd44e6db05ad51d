//! Wall-clock time, injected: token lifetimes and scheduled events read the time through
//! [`Clock`], so tests can pause and advance it instead of sleeping.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> SystemTime;

    /// Whether time moves only when someone moves it. Then nothing waits for it: whoever
    /// moves the clock applies what became due (the events engine's timer does not run).
    fn is_manual(&self) -> bool {
        false
    }

    /// The clock as a [`ManualClock`], for those that move it (`/v1/clock`).
    fn as_manual(&self) -> Option<&ManualClock> {
        None
    }
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to: tests, and `--clock manual` (`/v1/clock`).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }

    pub fn set(&self, to: SystemTime) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_manual(&self) -> bool {
        true
    }

    fn as_manual(&self) -> Option<&ManualClock> {
        Some(self)
    }
}
