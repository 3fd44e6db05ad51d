//! What the guest plane serves from: an immutable snapshot of every VM, swapped whole on change.
//!
//! Readers load the current `Arc<Snapshot>` and never block writers or each other. Each VM
//! renders its document lazily, once per (api-version, extended) pair, so the hot path only
//! slices bytes that already exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use crate::definition::{Definitions, VmDefinition};
use crate::metadata::render::Rendered;
use crate::metadata::shape;
use crate::metadata::version::ApiVersion;
use crate::throttle::{RateLimit, TokenBucket};

/// How a request's TCP peer address picks the VM it is served as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerMode {
    /// Every caller is the one VM (development; the default).
    Single,
    /// The peer address must be one of a VM's `callers`; any other address gets nothing.
    SourceAddress,
}

/// Every VM the guest plane knows, and how callers map to them.
#[derive(Debug)]
pub struct Snapshot {
    vms: Vec<ServedVm>,
    by_address: HashMap<IpAddr, usize>,
    mode: CallerMode,
}

/// Why a set of definitions cannot be served in a caller mode.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--callers single serves exactly one VM, but the definitions hold {0}; use --callers source-address"
    )]
    SingleModeNeedsOneVm(usize),
}

impl Snapshot {
    pub fn new(
        definitions: Definitions,
        mode: CallerMode,
        rate_limit: RateLimit,
    ) -> Result<Snapshot, Error> {
        if mode == CallerMode::Single && definitions.vms.len() != 1 {
            return Err(Error::SingleModeNeedsOneVm(definitions.vms.len()));
        }
        let mut by_address = HashMap::new();
        for (index, vm) in definitions.vms.iter().enumerate() {
            for caller in &vm.callers {
                by_address.insert(*caller, index);
            }
        }
        let vms = definitions
            .vms
            .into_iter()
            .map(|vm| ServedVm::new(vm, rate_limit))
            .collect();
        Ok(Snapshot {
            vms,
            by_address,
            mode,
        })
    }

    /// The VM a connection from `peer` is served as. Identity comes only from the connection.
    pub fn resolve(&self, peer: IpAddr) -> Option<&ServedVm> {
        match self.mode {
            CallerMode::Single => self.vms.first(),
            CallerMode::SourceAddress => self
                .by_address
                .get(&peer.to_canonical())
                .map(|&i| &self.vms[i]),
        }
    }

    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    pub fn mode(&self) -> CallerMode {
        self.mode
    }
}

/// One VM as the guest plane serves it.
#[derive(Debug)]
pub struct ServedVm {
    definition: VmDefinition,
    /// Indexed by `2 * version.index() + extended`.
    renders: Box<[OnceLock<Rendered>]>,
    throttle: TokenBucket,
}

impl ServedVm {
    fn new(definition: VmDefinition, rate_limit: RateLimit) -> ServedVm {
        let renders = (0..2 * ApiVersion::COUNT)
            .map(|_| OnceLock::new())
            .collect();
        ServedVm {
            definition,
            renders,
            throttle: TokenBucket::new(rate_limit),
        }
    }

    pub fn definition(&self) -> &VmDefinition {
        &self.definition
    }

    /// The instance document for `version`, rendered on first use and kept.
    pub fn instance(&self, version: ApiVersion, extended: bool) -> &Rendered {
        self.renders[2 * version.index() + usize::from(extended)].get_or_init(|| {
            Rendered::new(&shape::instance(
                &self.definition.instance,
                version,
                extended,
            ))
        })
    }

    pub fn throttle(&self) -> &TokenBucket {
        &self.throttle
    }
}
