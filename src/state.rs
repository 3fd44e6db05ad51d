//! What the guest and control planes share: the published snapshot, the clock, the token
//! issuer with its per-VM limits, the attested-document signer with its own, the
//! scheduled-events engine, the provisioning engine (the WireServer's health reports), the
//! fault rules, and the guest plane's counters and metrics.
//!
//! Built once, in one order (snapshot → engine → [`Shared`]), by `server` (or a test), and
//! owned by neither plane: `guest` reads it to answer VMs, `control` and `registry` change
//! what it holds. Neither plane depends on the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::attested::AttestedSigner;
use crate::clock::Clock;
use crate::faults::FaultBook;
use crate::identity::Issuer;
use crate::identity::limits::{IdentityLimits, Limiters};
use crate::maintenance::Maintenance;
use crate::provisioning::Provisioning;
use crate::snapshot::{Published, Snapshot};
use crate::telemetry::{Telemetry, TelemetrySettings};

/// The pieces [`Shared`] is made of.
#[derive(Debug)]
pub struct Parts {
    pub snapshot: Arc<Published>,
    pub clock: Arc<dyn Clock>,
    pub issuer: Arc<Issuer>,
    pub identity_limits: IdentityLimits,
    pub attested: Arc<AttestedSigner>,
    pub events: Arc<Maintenance>,
    pub telemetry: TelemetrySettings,
    pub provisioning: Arc<Provisioning>,
}

/// Per-VM limits of `/metadata/attested/document`, on top of the general 5/s (spec §1.11 has
/// no attested figure; these are its two nearest): 5 documents a second, Azure's general
/// per-VM rate, and 5 signing at once, the identity category's concurrency for the same
/// work (one RSA signature a request). One VM can so keep at most 5 of the blocking pool's
/// threads busy, and use at most 5 of the ~1,800 signatures a second a core makes
/// (BENCHMARKS.md).
pub const ATTESTED_LIMITS: IdentityLimits = IdentityLimits {
    per_second: 5,
    concurrent: 5,
};

/// State shared by every guest connection and every control request.
#[derive(Debug)]
pub struct Shared {
    snapshot: Arc<Published>,
    clock: Arc<dyn Clock>,
    issuer: Arc<Issuer>,
    identity_limiters: Limiters,
    attested: Arc<AttestedSigner>,
    attested_limiters: Limiters,
    events: Arc<Maintenance>,
    provisioning: Arc<Provisioning>,
    unknown_callers: AtomicU64,
    faults: FaultBook,
    telemetry: Telemetry,
}

impl Shared {
    pub fn new(parts: Parts) -> Shared {
        Shared {
            snapshot: parts.snapshot,
            clock: parts.clock,
            issuer: parts.issuer,
            identity_limiters: Limiters::new(parts.identity_limits),
            attested: parts.attested,
            attested_limiters: Limiters::new(ATTESTED_LIMITS),
            events: parts.events,
            provisioning: parts.provisioning,
            unknown_callers: AtomicU64::new(0),
            faults: FaultBook::default(),
            telemetry: Telemetry::new(parts.telemetry),
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

    /// The attested-document signer (spec §7): its CA, leaves and rotation.
    pub fn attested(&self) -> &Arc<AttestedSigner> {
        &self.attested
    }

    /// Per-VM attested-document limits ([`ATTESTED_LIMITS`]), kept across snapshots.
    pub fn attested_limiters(&self) -> &Limiters {
        &self.attested_limiters
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

    /// The fault rules in force.
    pub fn faults(&self) -> &FaultBook {
        &self.faults
    }

    /// The guest plane's metrics and what is recorded (journal, access log).
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }
}
