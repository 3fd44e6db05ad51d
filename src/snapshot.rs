//! What the guest plane serves from: an immutable snapshot of every VM, replaced whole on
//! change (one `Arc` swapped in [`Published`] by the write paths).
//!
//! The maps are persistent (`imbl`): deriving the next snapshot from the current one with one
//! VM changed costs O(log n) and shares everything else, so at 100k VMs a write does not copy
//! the fleet, and unchanged VMs keep the documents they already rendered.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use once_cell::race::OnceBox;

use crate::definition::VmDefinition;
use crate::metadata::render::Rendered;
use crate::metadata::shape;
use crate::metadata::version::ApiVersion;
use crate::throttle::{RateLimit, TokenBucket};
use crate::vm_runtime::VmRuntime;

/// How a request's TCP peer address picks the VM it is served as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerMode {
    /// Every caller is the one VM (development; the default).
    Single,
    /// The peer address must be one of a VM's `callers`; any other address gets nothing.
    SourceAddress,
}

impl CallerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CallerMode::Single => "single",
            CallerMode::SourceAddress => "source-address",
        }
    }
}

/// The snapshot being served: readers load it without locks, writers replace it whole. Writes
/// are serialized by their owners (the registry, the fleet watcher), so publication order is
/// commit order.
#[derive(Debug)]
pub struct Published(ArcSwap<Snapshot>);

impl Published {
    pub fn new(snapshot: Snapshot) -> Published {
        Published(ArcSwap::from_pointee(snapshot))
    }

    /// The current snapshot for the length of one request (no reference-count traffic).
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.0.load()
    }

    /// The current snapshot, kept (for work that outlives a request).
    pub fn current(&self) -> Arc<Snapshot> {
        self.0.load_full()
    }

    /// Makes `snapshot` the one every next request sees.
    pub fn publish(&self, snapshot: Snapshot) {
        self.0.store(Arc::new(snapshot));
    }
}

/// Every VM the guest plane knows, and how callers map to them.
#[derive(Clone, Debug)]
pub struct Snapshot {
    vms: imbl::OrdMap<String, Arc<ServedVm>>,
    by_address: imbl::HashMap<IpAddr, Arc<ServedVm>>,
    mode: CallerMode,
    rate_limit: RateLimit,
}

/// Why a change cannot be applied to a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(
        "--callers single serves exactly one VM, but there would be {0}; use --callers source-address"
    )]
    SingleModeNeedsOneVm(usize),
    #[error("{address} is already a caller of VM {owner:?}")]
    CallerTaken { address: IpAddr, owner: String },
}

impl Snapshot {
    /// A snapshot with no VMs.
    pub fn empty(mode: CallerMode, rate_limit: RateLimit) -> Snapshot {
        Snapshot {
            vms: imbl::OrdMap::new(),
            by_address: imbl::HashMap::new(),
            mode,
            rate_limit,
        }
    }

    /// A snapshot of `vms`, checked as a whole.
    pub fn new(
        vms: impl IntoIterator<Item = VmDefinition>,
        mode: CallerMode,
        rate_limit: RateLimit,
    ) -> Result<Snapshot, Error> {
        let mut snapshot = Snapshot::empty(mode, rate_limit);
        for vm in vms {
            snapshot.insert(vm)?;
        }
        if mode == CallerMode::Single && snapshot.vms.len() > 1 {
            return Err(Error::SingleModeNeedsOneVm(snapshot.vms.len()));
        }
        Ok(snapshot)
    }

    /// This snapshot with `vm` added or replacing the VM of the same id.
    pub fn with_vm(&self, vm: VmDefinition) -> Result<Snapshot, Error> {
        let mut next = self.clone();
        next.put_vm(vm)?;
        Ok(next)
    }

    /// This snapshot without the VM `id` (unchanged if there is none).
    pub fn without_vm(&self, id: &str) -> Snapshot {
        let mut next = self.clone();
        next.remove(id);
        next
    }

    /// Adds `vm` or replaces the VM of the same id, in place: building a snapshot of many
    /// changes this way copies no path of the maps per change, as [`Snapshot::with_vm`] does.
    pub fn put_vm(&mut self, vm: VmDefinition) -> Result<(), Error> {
        if self.mode == CallerMode::Single && !self.vms.contains_key(&vm.id) && !self.vms.is_empty()
        {
            return Err(Error::SingleModeNeedsOneVm(self.vms.len() + 1));
        }
        self.insert(vm)
    }

    /// Removes the VM `id` in place (nothing if there is none).
    pub fn delete_vm(&mut self, id: &str) {
        self.remove(id);
    }

    fn insert(&mut self, vm: VmDefinition) -> Result<(), Error> {
        for address in &vm.callers {
            if let Some(owner) = self.by_address.get(address)
                && owner.definition.id != vm.id
            {
                return Err(Error::CallerTaken {
                    address: *address,
                    owner: owner.definition.id.clone(),
                });
            }
        }
        // A replaced VM keeps its throttle bucket: editing a VM must not reset its budget.
        // Nor its journal, fault state and counters.
        let previous = self.remove(&vm.id);
        let (throttle, runtime) = match previous {
            Some(previous) => (
                Arc::clone(&previous.throttle),
                Arc::clone(&previous.runtime),
            ),
            None => (
                Arc::new(TokenBucket::new(self.rate_limit)),
                Arc::new(VmRuntime::default()),
            ),
        };
        let served = Arc::new(ServedVm::new(vm, throttle, runtime));
        for address in &served.definition.callers {
            self.by_address.insert(*address, Arc::clone(&served));
        }
        self.vms.insert(served.definition.id.clone(), served);
        Ok(())
    }

    fn remove(&mut self, id: &str) -> Option<Arc<ServedVm>> {
        let removed = self.vms.remove(id)?;
        for address in &removed.definition.callers {
            self.by_address.remove(address);
        }
        Some(removed)
    }

    /// The VM a connection from `peer` is served as. Identity comes only from the connection.
    pub fn resolve(&self, peer: IpAddr) -> Option<&Arc<ServedVm>> {
        match self.mode {
            // The leftmost entry, without building an iterator.
            CallerMode::Single => self.vms.get_min().map(|(_, vm)| vm),
            CallerMode::SourceAddress => self.by_address.get(&peer.to_canonical()),
        }
    }

    /// The VM with this id.
    pub fn vm(&self, id: &str) -> Option<&Arc<ServedVm>> {
        self.vms.get(id)
    }

    /// Every VM, in id order.
    pub fn vms(&self) -> impl Iterator<Item = &Arc<ServedVm>> {
        self.vms.values()
    }

    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    pub fn mode(&self) -> CallerMode {
        self.mode
    }
}

/// One api-version of a VM's document: its bytes, and the index once a sub-path needs it.
#[derive(Debug)]
struct VersionSlot {
    json: Bytes,
    indexed: OnceBox<Rendered>,
}

/// The first version a VM asked for, with the slot index (`2 * version.index() + extended`)
/// it stands for.
#[derive(Debug)]
struct FirstVersion {
    key: usize,
    slot: VersionSlot,
}

/// One VM as the guest plane serves it.
#[derive(Debug)]
pub struct ServedVm {
    definition: VmDefinition,
    /// The version of the VM's first instance request. Nearly every guest asks for one
    /// api-version only, so a large host keeps one slot per fetched VM rather than a table of
    /// 70 (560 bytes each: 55 MB at 100k VMs fetched once, BENCHMARKS.md "Memory per VM").
    first: OnceBox<FirstVersion>,
    /// Every other version, indexed by slot index; allocated when a VM asks for a second one.
    /// Each entry is one pointer (`OnceBox`, 8 bytes, not `OnceLock`'s 16). Two first
    /// requests racing may both render; one result is kept.
    others: OnceLock<Box<[OnceBox<VersionSlot>]>>,
    throttle: Arc<TokenBucket>,
    runtime: Arc<VmRuntime>,
}

impl ServedVm {
    fn new(
        definition: VmDefinition,
        throttle: Arc<TokenBucket>,
        runtime: Arc<VmRuntime>,
    ) -> ServedVm {
        ServedVm {
            definition,
            first: OnceBox::new(),
            others: OnceLock::new(),
            throttle,
            runtime,
        }
    }

    pub fn definition(&self) -> &VmDefinition {
        &self.definition
    }

    /// The whole instance document for `version`, rendered on first use and kept.
    pub fn document(&self, version: ApiVersion, extended: bool) -> Bytes {
        self.slot(version, extended).json.clone()
    }

    /// The document with its index, for sub-paths and `format=text`: built on the first such
    /// request for this version, since many VMs only ever fetch whole documents.
    pub fn indexed(&self, version: ApiVersion, extended: bool) -> &Rendered {
        self.slot(version, extended)
            .indexed
            .get_or_init(|| Box::new(self.render(version, extended)))
    }

    fn slot(&self, version: ApiVersion, extended: bool) -> &VersionSlot {
        let key = 2 * version.index() + usize::from(extended);
        let first = self.first.get_or_init(|| {
            Box::new(FirstVersion {
                key,
                slot: self.new_slot(version, extended),
            })
        });
        if first.key == key {
            return &first.slot;
        }
        let others = self
            .others
            .get_or_init(|| (0..2 * ApiVersion::COUNT).map(|_| OnceBox::new()).collect());
        others[key].get_or_init(|| Box::new(self.new_slot(version, extended)))
    }

    fn new_slot(&self, version: ApiVersion, extended: bool) -> VersionSlot {
        VersionSlot {
            json: self.render(version, extended).bytes(),
            indexed: OnceBox::new(),
        }
    }

    fn render(&self, version: ApiVersion, extended: bool) -> Rendered {
        Rendered::new(&shape::instance(
            &self.definition.instance,
            version,
            extended,
        ))
    }

    pub fn throttle(&self) -> &TokenBucket {
        &self.throttle
    }

    /// Its fault view, journal and counters.
    pub fn runtime(&self) -> &VmRuntime {
        &self.runtime
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::definition::vm_from_json;

    fn vm(id: &str, callers: &[&str]) -> VmDefinition {
        vm_from_json(
            &json!({"callers": callers, "instance": {"compute": {"name": id}}}),
            id,
        )
        .unwrap()
    }

    #[test]
    fn callers_resolve_to_their_vm_and_others_to_nothing() {
        let snapshot = Snapshot::new(
            [
                vm("a", &["10.0.0.1"]),
                vm("b", &["10.0.0.2", "::ffff:10.0.0.3"]),
            ],
            CallerMode::SourceAddress,
            RateLimit(5),
        )
        .unwrap();
        let id = |ip: &str| {
            snapshot
                .resolve(ip.parse().unwrap())
                .map(|vm| vm.definition().id.clone())
        };
        assert_eq!(id("10.0.0.1").as_deref(), Some("a"));
        assert_eq!(id("10.0.0.2").as_deref(), Some("b"));
        assert_eq!(
            id("::ffff:10.0.0.2").as_deref(),
            Some("b"),
            "v4-mapped v6 peers"
        );
        assert_eq!(id("10.0.0.3").as_deref(), Some("b"));
        assert_eq!(id("10.0.0.9"), None);
    }

    #[test]
    fn updates_are_incremental_and_checked() {
        let one = Snapshot::new(
            [vm("a", &["10.0.0.1"])],
            CallerMode::SourceAddress,
            RateLimit(5),
        )
        .unwrap();
        let two = one.with_vm(vm("b", &["10.0.0.2"])).unwrap();
        assert_eq!(
            two.with_vm(vm("c", &["10.0.0.1"])).unwrap_err(),
            Error::CallerTaken {
                address: "10.0.0.1".parse().unwrap(),
                owner: "a".into()
            }
        );
        let moved = two.with_vm(vm("a", &["10.0.0.5"])).unwrap();
        assert!(moved.resolve("10.0.0.1".parse().unwrap()).is_none());
        assert_eq!(
            moved
                .resolve("10.0.0.5".parse().unwrap())
                .unwrap()
                .definition()
                .id,
            "a"
        );
        assert!(
            Arc::ptr_eq(two.vm("b").unwrap(), moved.vm("b").unwrap()),
            "unchanged VMs are shared"
        );
        let gone = moved.without_vm("a");
        assert_eq!(gone.vm_count(), 1);
        assert!(gone.resolve("10.0.0.5".parse().unwrap()).is_none());
        assert_eq!(one.vm_count(), 1, "older snapshots are unaffected");
    }

    #[test]
    fn every_version_is_rendered_once_whichever_came_first() {
        let served = |first: ApiVersion| {
            let snapshot = Snapshot::new([vm("a", &[])], CallerMode::Single, RateLimit(5)).unwrap();
            let vm = Arc::clone(snapshot.vm("a").unwrap());
            vm.document(first, false);
            vm
        };
        let oldest = ApiVersion::all().next().unwrap();
        let newest_first = served(ApiVersion::NEWEST);
        let oldest_first = served(oldest);
        for version in ApiVersion::all() {
            for extended in [false, true] {
                let kept = newest_first.document(version, extended);
                assert_eq!(
                    kept,
                    oldest_first.document(version, extended),
                    "{version:?}"
                );
                assert_eq!(
                    kept.as_ptr(),
                    newest_first.document(version, extended).as_ptr(),
                    "{version:?} is kept, not rendered again"
                );
                assert_eq!(
                    newest_first.indexed(version, extended).bytes(),
                    kept,
                    "the index is over the same document"
                );
            }
        }
        assert_ne!(
            newest_first.document(ApiVersion::NEWEST, false),
            newest_first.document(oldest, false),
            "versions shape the document differently"
        );
    }

    #[test]
    fn single_mode_serves_exactly_one_vm() {
        let single = Snapshot::new([vm("a", &[])], CallerMode::Single, RateLimit(5)).unwrap();
        assert_eq!(
            single
                .resolve("192.0.2.1".parse().unwrap())
                .unwrap()
                .definition()
                .id,
            "a"
        );
        assert_eq!(
            single.with_vm(vm("b", &[])).unwrap_err(),
            Error::SingleModeNeedsOneVm(2)
        );
        assert!(
            single.with_vm(vm("a", &["10.0.0.1"])).is_ok(),
            "replacing is fine"
        );
        assert!(
            Snapshot::empty(CallerMode::Single, RateLimit(5))
                .resolve("192.0.2.1".parse().unwrap())
                .is_none()
        );
    }
}
