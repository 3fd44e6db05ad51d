//! The guest plane's counters: plain atomics in fixed tables, indexed by (endpoint, status,
//! api-version), so counting a request is a few relaxed adds and never a lookup by label
//! strings. Labels are made only when scraped ([`GuestMetrics::collect`]).
//!
//! Why not a metrics facade on this path: measured with callgrind (BENCHMARKS.md), a counter
//! and a histogram observation cost 41 instructions as atomics here, 120 with
//! `prometheus-client`'s pre-resolved handles (its histogram takes a lock) and 2,500 through
//! its label families; the `metrics` crate's handles cost 279 (its histogram buffers samples
//! until an upkeep task drains them) and its `counter!` macros 3,600.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::events::EventsVersion;
use crate::metadata::version::{ApiVersion, date_number};
use crate::telemetry::endpoint::GuestEndpoint;
use crate::telemetry::exposition::Scrape;
use crate::telemetry::histogram::{self, Histogram};

/// Status codes with their own label; anything else is `other`, and an injected stall or
/// reset (no answer at all) is `none`.
const STATUSES: [u16; 12] = [200, 304, 400, 404, 405, 408, 410, 429, 500, 503, 0, 1];
const STATUS_NONE: usize = 10;
const STATUS_OTHER: usize = 11;

fn status_index(status: u16) -> usize {
    match status {
        200 => 0,
        304 => 1,
        400 => 2,
        404 => 3,
        405 => 4,
        408 => 5,
        410 => 6,
        429 => 7,
        500 => 8,
        503 => 9,
        0 => STATUS_NONE,
        _ => STATUS_OTHER,
    }
}

fn status_label(index: usize) -> String {
    match index {
        STATUS_NONE => "none".into(),
        STATUS_OTHER => "other".into(),
        i => STATUSES[i].to_string(),
    }
}

/// What a fault did, as the `action` label names it (`faults::Action::label_index`).
pub const FAULT_ACTIONS: [&str; 5] = ["status", "delay", "stall", "reset", "truncate"];

/// The `api_version` label: every version of the instance list and of scheduled events'
/// own list, `none` when the parameter is absent, `other` when it names no version.
struct VersionLabels {
    /// (YYYYMMDD, label index), sorted.
    by_date: Vec<(u32, u8)>,
    names: Vec<&'static str>,
}

static VERSIONS: LazyLock<VersionLabels> = LazyLock::new(|| {
    let mut names: Vec<&'static str> = ApiVersion::all().map(ApiVersion::as_str).collect();
    for events in EventsVersion::all().map(EventsVersion::as_str) {
        if !names.contains(&events) {
            names.push(events);
        }
    }
    let mut by_date: Vec<(u32, u8)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (date_number(name).expect("versions are dates"), i as u8))
        .collect();
    by_date.sort_unstable();
    VersionLabels { by_date, names }
});

impl VersionLabels {
    fn count(&self) -> usize {
        self.names.len() + 2
    }

    fn index(&self, value: Option<&str>) -> usize {
        let Some(value) = value else {
            return self.names.len();
        };
        date_number(value)
            .and_then(|n| self.by_date.binary_search_by_key(&n, |(d, _)| *d).ok())
            .map_or(self.names.len() + 1, |at| usize::from(self.by_date[at].1))
    }

    fn label(&self, index: usize) -> &'static str {
        match index.checked_sub(self.names.len()) {
            None => self.names[index],
            Some(0) => "none",
            Some(_) => "other",
        }
    }
}

/// The `api_version` label of a parameter value: a known version, `none` or `other` (never
/// the raw text, which is the client's to choose).
pub fn api_version_label(value: Option<&str>) -> &'static str {
    VERSIONS.label(VERSIONS.index(value))
}

/// Why a request was refused, for the counters that watch for misuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `Metadata: true` header.
    MissingMetadataHeader,
    /// `X-Forwarded-For` present: the request came through a proxy (an SSRF signal).
    ForwardedFor,
    /// The general or identity rate limit.
    Throttled,
}

/// One answered (or, for a stall or reset, abandoned) guest request.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    pub endpoint: GuestEndpoint,
    /// 0 when nothing was answered.
    pub status: u16,
    /// The `api-version` parameter as sent.
    pub api_version: Option<&'a str>,
    pub elapsed: Duration,
    /// `FAULT_ACTIONS` index of the fault that answered, if one did.
    pub injected: Option<usize>,
    pub refusal: Option<Refusal>,
}

/// Per-VM counts, kept with the VM; labeled series only behind `--metrics-per-vm`.
#[derive(Debug, Default)]
pub struct VmCounters {
    /// 0: not decided yet; 1: has its own series; 2: counted under `vm="_other"`.
    labeled: AtomicU8,
    /// By status class: 2xx, 3xx, 4xx, 5xx, none.
    requests: [AtomicU64; 5],
    injected: AtomicU64,
}

const CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "none"];

fn class_index(status: u16) -> usize {
    match status {
        0 => 4,
        200..=299 => 0,
        300..=399 => 1,
        400..=499 => 2,
        _ => 3,
    }
}

impl VmCounters {
    fn count(&self, status: u16, injected: bool) {
        self.requests[class_index(status)].fetch_add(1, Ordering::Relaxed);
        if injected {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Per-VM series: at most `limit` VMs (the first to make a request) get their own; the rest
/// are added up under `vm="_other"`.
#[derive(Debug)]
struct PerVm {
    limit: usize,
    assigned: AtomicUsize,
    other: VmCounters,
}

/// The guest plane's counters.
#[derive(Debug)]
pub struct GuestMetrics {
    /// `[endpoint][status][api-version]`, flattened.
    requests: Box<[AtomicU64]>,
    latency: Box<[Histogram]>,
    throttled: [AtomicU64; GuestEndpoint::COUNT],
    missing_metadata_header: AtomicU64,
    forwarded_for: AtomicU64,
    injected: [AtomicU64; FAULT_ACTIONS.len()],
    per_vm: Option<PerVm>,
}

impl GuestMetrics {
    /// `per_vm_limit`: `Some(n)` turns on per-VM series for at most `n` VMs.
    pub fn new(per_vm_limit: Option<usize>) -> GuestMetrics {
        let cells = GuestEndpoint::COUNT * STATUSES.len() * VERSIONS.count();
        GuestMetrics {
            requests: (0..cells).map(|_| AtomicU64::new(0)).collect(),
            latency: (0..GuestEndpoint::COUNT)
                .map(|_| Histogram::new(histogram::GUEST_BOUNDS))
                .collect(),
            throttled: Default::default(),
            missing_metadata_header: AtomicU64::new(0),
            forwarded_for: AtomicU64::new(0),
            injected: Default::default(),
            per_vm: per_vm_limit.map(|limit| PerVm {
                limit,
                assigned: AtomicUsize::new(0),
                other: VmCounters::default(),
            }),
        }
    }

    /// Counts one request (and, with per-VM series on, against its VM's counters).
    pub fn record(&self, observation: &Observation<'_>, vm: Option<&VmCounters>) {
        let endpoint = observation.endpoint.index();
        let cell = (endpoint * STATUSES.len() + status_index(observation.status))
            * VERSIONS.count()
            + VERSIONS.index(observation.api_version);
        self.requests[cell].fetch_add(1, Ordering::Relaxed);
        self.latency[endpoint].observe(observation.elapsed);
        if let Some(action) = observation.injected {
            self.injected[action].fetch_add(1, Ordering::Relaxed);
        }
        match observation.refusal {
            None => {}
            Some(Refusal::Throttled) => {
                self.throttled[endpoint].fetch_add(1, Ordering::Relaxed);
            }
            Some(Refusal::MissingMetadataHeader) => {
                self.missing_metadata_header.fetch_add(1, Ordering::Relaxed);
            }
            Some(Refusal::ForwardedFor) => {
                self.forwarded_for.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let (Some(per_vm), Some(vm)) = (&self.per_vm, vm) {
            let counters = if self.has_own_series(per_vm, vm) {
                vm
            } else {
                &per_vm.other
            };
            counters.count(observation.status, observation.injected.is_some());
        }
    }

    /// Decided once per VM: its own series while the cap allows.
    fn has_own_series(&self, per_vm: &PerVm, vm: &VmCounters) -> bool {
        match vm.labeled.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let granted = per_vm
                    .assigned
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        (n < per_vm.limit).then_some(n + 1)
                    })
                    .is_ok();
                let state = if granted { 1 } else { 2 };
                // Another request of the same VM may have decided first; keep its decision.
                match vm
                    .labeled
                    .compare_exchange(0, state, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => granted,
                    Err(decided) => {
                        if granted {
                            per_vm.assigned.fetch_sub(1, Ordering::Relaxed);
                        }
                        decided == 1
                    }
                }
            }
        }
    }

    /// Whether per-VM series are on.
    pub fn per_vm(&self) -> bool {
        self.per_vm.is_some()
    }

    /// The guest families, and the per-VM ones for `vms` (id, counters) when on.
    pub fn collect<'v>(
        &self,
        scrape: &mut Scrape,
        vms: impl Iterator<Item = (&'v str, &'v VmCounters)>,
    ) {
        const REQUESTS: &str = "azimds_guest_requests";
        const REQUESTS_HELP: &str = "Guest requests answered, by endpoint, status and api-version (status none: a stall or reset fault answered nothing).";
        scrape.declare_counter(REQUESTS, REQUESTS_HELP);
        for (cell, count) in self.requests.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let version = cell % VERSIONS.count();
            let status = (cell / VERSIONS.count()) % STATUSES.len();
            let endpoint = GuestEndpoint::ALL[cell / VERSIONS.count() / STATUSES.len()];
            let labels = vec![
                ("endpoint", endpoint.as_str().to_string()),
                ("status", status_label(status)),
                ("api_version", VERSIONS.label(version).to_string()),
            ];
            scrape.counter(REQUESTS, REQUESTS_HELP, labels, count);
        }
        for endpoint in GuestEndpoint::ALL {
            let values = self.latency[endpoint.index()].values();
            if values.count > 0 {
                scrape.histogram(
                    "azimds_guest_request_duration_seconds",
                    "Time from a guest request's head to its answer, by endpoint.",
                    vec![("endpoint", endpoint.as_str().to_string())],
                    values,
                );
            }
        }
        const THROTTLED: &str = "azimds_guest_throttled";
        const THROTTLED_HELP: &str =
            "Guest requests refused with 429 by the per-VM rate or identity limits.";
        scrape.declare_counter(THROTTLED, THROTTLED_HELP);
        for endpoint in GuestEndpoint::ALL {
            let count = self.throttled[endpoint.index()].load(Ordering::Relaxed);
            if count > 0 {
                let labels = vec![("endpoint", endpoint.as_str().to_string())];
                scrape.counter(THROTTLED, THROTTLED_HELP, labels, count);
            }
        }
        scrape.counter(
            "azimds_guest_missing_metadata_header",
            "Guest requests refused for lacking the Metadata: true header.",
            Vec::new(),
            self.missing_metadata_header.load(Ordering::Relaxed),
        );
        scrape.counter(
            "azimds_guest_forwarded_for",
            "Guest requests refused for carrying X-Forwarded-For (they came through a proxy: an SSRF signal).",
            Vec::new(),
            self.forwarded_for.load(Ordering::Relaxed),
        );
        for (action, count) in FAULT_ACTIONS.iter().zip(&self.injected) {
            scrape.counter(
                "azimds_faults_injected",
                "Guest requests answered by a fault rule, by action.",
                vec![("action", action.to_string())],
                count.load(Ordering::Relaxed),
            );
        }
        if self.per_vm.is_some() {
            self.collect_per_vm(scrape, vms);
        }
    }

    fn collect_per_vm<'v>(
        &self,
        scrape: &mut Scrape,
        vms: impl Iterator<Item = (&'v str, &'v VmCounters)>,
    ) {
        let Some(per_vm) = &self.per_vm else { return };
        let own = vms.filter(|(_, c)| c.labeled.load(Ordering::Relaxed) == 1);
        for (vm, counters) in own {
            Self::collect_vm(scrape, vm, counters);
        }
        Self::collect_vm(scrape, "_other", &per_vm.other);
    }

    fn collect_vm(scrape: &mut Scrape, vm: &str, counters: &VmCounters) {
        for (class, count) in CLASSES.iter().zip(&counters.requests) {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                scrape.counter(
                    "azimds_vm_requests",
                    "Guest requests per VM by status class (the first --metrics-per-vm-limit VMs; the rest under vm=\"_other\").",
                    vec![("vm", vm.to_string()), ("class", class.to_string())],
                    count,
                );
            }
        }
        scrape.counter(
            "azimds_vm_faults_injected",
            "Guest requests per VM answered by a fault rule.",
            vec![("vm", vm.to_string())],
            counters.injected.load(Ordering::Relaxed),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_labels_cover_both_lists() {
        let v = &*VERSIONS;
        assert_eq!(v.label(v.index(Some("2021-02-01"))), "2021-02-01");
        assert_eq!(v.label(v.index(Some("2017-11-01"))), "2017-11-01");
        assert_eq!(v.label(v.index(Some("2025-04-07"))), "2025-04-07");
        assert_eq!(v.label(v.index(Some("2021-02-02"))), "other");
        assert_eq!(v.label(v.index(Some("latest"))), "other");
        assert_eq!(v.label(v.index(None)), "none");
        // 35 instance versions and the four scheduled-events versions not among them.
        assert_eq!(v.names.len(), 39);
    }

    #[test]
    fn per_vm_series_stop_at_the_cap() {
        let metrics = GuestMetrics::new(Some(1));
        let (a, b) = (VmCounters::default(), VmCounters::default());
        let seen = Observation {
            endpoint: GuestEndpoint::Instance,
            status: 200,
            api_version: Some("2021-02-01"),
            elapsed: Duration::from_micros(40),
            injected: None,
            refusal: None,
        };
        metrics.record(&seen, Some(&a));
        metrics.record(&seen, Some(&b));
        metrics.record(&seen, Some(&a));
        assert_eq!(a.requests[0].load(Ordering::Relaxed), 2);
        assert_eq!(b.requests[0].load(Ordering::Relaxed), 0);
        let other = &metrics.per_vm.as_ref().unwrap().other;
        assert_eq!(other.requests[0].load(Ordering::Relaxed), 1);
    }
}
