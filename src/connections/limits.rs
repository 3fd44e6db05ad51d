//! Connection caps: a total and a per-caller (source address) count of open connections,
//! checked the moment a connection is accepted, before anything is allocated for it. One VM
//! opening connections and never finishing them can hold at most its own share; the total
//! leaves file descriptors for the control listener and the store.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How many connections a listener keeps open at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// All callers together.
    pub total: usize,
    /// One source address (one VM in `source-address` mode).
    pub per_caller: usize,
}

/// Counts open connections of one listener.
#[derive(Debug)]
pub struct Tracker {
    caps: Caps,
    open: Mutex<Counts>,
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_caller: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerCaller,
}

/// One open connection; dropping it gives its place back.
#[derive(Debug)]
pub struct Permit {
    tracker: Arc<Tracker>,
    caller: Option<IpAddr>,
}

impl Tracker {
    pub fn new(caps: Caps) -> Arc<Tracker> {
        Arc::new(Tracker {
            caps,
            open: Mutex::new(Counts::default()),
            refused: AtomicU64::new(0),
        })
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// A place for a connection from `caller` (`None`: a unix socket, counted in the total
    /// only), or why there is none.
    pub fn admit(self: &Arc<Self>, caller: Option<IpAddr>) -> Result<Permit, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let refuse = |why| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(why)
        };
        if open.total >= self.caps.total {
            return refuse(Refused::Total);
        }
        if let Some(ip) = caller {
            let mine = open.by_caller.entry(ip.to_canonical()).or_insert(0);
            if *mine >= self.caps.per_caller {
                return refuse(Refused::PerCaller);
            }
            *mine += 1;
        }
        open.total += 1;
        Ok(Permit {
            tracker: Arc::clone(self),
            caller: caller.map(|ip| ip.to_canonical()),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// Connections closed unanswered because a cap was reached, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.tracker.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total -= 1;
        if let Some(ip) = self.caller
            && let Some(count) = open.by_caller.get_mut(&ip)
        {
            *count -= 1;
            if *count == 0 {
                open.by_caller.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_caller_and_in_total_and_places_come_back() {
        let tracker = Tracker::new(Caps {
            total: 3,
            per_caller: 2,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = tracker.admit(Some(a)).unwrap();
        let _a2 = tracker.admit(Some(a)).unwrap();
        assert_eq!(tracker.admit(Some(a)).unwrap_err(), Refused::PerCaller);
        assert_eq!(
            tracker
                .admit(Some("::ffff:10.0.0.1".parse().unwrap()))
                .unwrap_err(),
            Refused::PerCaller,
            "a v4-mapped address is the same caller"
        );
        let _b1 = tracker.admit(Some(b)).unwrap();
        assert_eq!(tracker.admit(Some(b)).unwrap_err(), Refused::Total);
        assert_eq!(tracker.admit(None).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(tracker.open(), 2);
        let _a3 = tracker.admit(Some(a)).unwrap();
        assert_eq!(tracker.open(), 3);
        assert_eq!(tracker.refused(), 4);
    }
}
