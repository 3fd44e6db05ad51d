//! What the guest and control planes share: the published snapshot, the clock, the token
//! issuer with its per-VM limits, the scheduled-events engine, the provisioning engine (the
//! WireServer's health reports), and the guest plane's counters.
//!
//! Built once, in one order (snapshot → engine → [`Shared`]), by `server` (or a test), and
//! owned by neither plane: `guest` reads it to answer VMs, `control` and `registry` change
//! what it holds. Neither plane depends on the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::Clock;
use crate::identity::Issuer;
use crate::identity::limits::{IdentityLimits, Limiters};
use crate::maintenance::Maintenance;
use crate::provisioning::Provisioning;
use crate::snapshot::{Published, Snapshot};

/// The pieces [`Shared`] is made of.
#[derive(Debug)]
pub struct Parts {
    pub snapshot: Arc<Published>,
    pub clock: Arc<dyn Clock>,
    pub issuer: Arc<Issuer>,
    pub identity_limits: IdentityLimits,
    pub events: Arc<Maintenance>,
    pub provisioning: Arc<Provisioning>,
}

/// State shared by every guest connection and every control request.
#[derive(Debug)]
pub struct Shared {
    snapshot: Arc<Published>,
    clock: Arc<dyn Clock>,
    issuer: Arc<Issuer>,
    identity_limiters: Limiters,
    events: Arc<Maintenance>,
    provisioning: Arc<Provisioning>,
    unknown_callers: AtomicU64,
}

impl Shared {
    pub fn new(parts: Parts) -> Shared {
        Shared {
            snapshot: parts.snapshot,
            clock: parts.clock,
            issuer: parts.issuer,
            identity_limiters: Limiters::new(parts.identity_limits),
            events: parts.events,
            provisioning: parts.provisioning,
            unknown_callers: AtomicU64::new(0),
        }
    }

    /// The published-snapshot cell (writers publish through it).
    pub fn published(&self) -> &Arc<Published> {
        &self.snapshot
    }

    /// The current snapshot, kept.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.current()
    }

    /// Wall-clock time as both planes see it.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The managed-identity token issuer.
    pub fn issuer(&self) -> &Arc<Issuer> {
        &self.issuer
    }

    /// Per-VM identity limits (20/s and 5 in flight by default), kept across snapshots.
    pub fn identity_limiters(&self) -> &Limiters {
        &self.identity_limiters
    }

    /// The scheduled-events engine.
    pub fn events(&self) -> &Arc<Maintenance> {
        &self.events
    }

    /// Each VM's provisioning state (WireServer health reports).
    pub fn provisioning(&self) -> &Arc<Provisioning> {
        &self.provisioning
    }

    /// Counts a connection or request from an address that belongs to no VM.
    pub fn count_unknown_caller(&self) {
        self.unknown_callers.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections refused because their address belongs to no VM.
    pub fn unknown_callers(&self) -> u64 {
        self.unknown_callers.load(Ordering::Relaxed)
    }
}
