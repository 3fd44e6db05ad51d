//! VM definition files: the user-facing format that says which VMs exist, who calls as each,
//! and what each one's metadata is. JSON or YAML (README, "VM definition file").
//!
//! Pure: parses and checks text; reading the file is the caller's job. Every problem is
//! reported with the file, the VM and the JSON path, all at once, so a user fixes a file in
//! one pass.
//!
//! - `file.rs`: a whole file ([`parse`] into [`Definitions`], or a located [`DefinitionError`]).
//! - `vm.rs`: one VM entry ([`vm_from_json`] into a [`VmDefinition`]).
//! - `provisioning.rs`: an entry's `provisioning` member (custom data, password).
//! - `demo.json`: the built-in demo VM, parsed by the same code.

mod file;
pub mod provisioning;
mod vm;

pub use file::{DefinedVm, DefinitionError, Definitions, Located, Syntax, demo, parse};
pub use vm::{VmDefinition, is_valid_id, vm_from_json, written_entry};

/// Something wrong in one VM entry, at `path` relative to the entry (e.g. `instance.compute.name`).
pub use crate::problem::Problem;
