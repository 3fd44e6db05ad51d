//! VM definition files: the user-facing format that says which VMs exist, who calls as each,
//! and what each one's metadata is. JSON or YAML (README, "VM definition file").
//!
//! Pure: parses and checks text; reading the file is the caller's job. Every problem is
//! reported with the file, the VM and the JSON path, all at once, so a user fixes a file in
//! one pass.
//!
//! - `file.rs`: a whole file ([`parse`] into [`Definitions`], or a located [`DefinitionError`]).
//! - `vm.rs`: one VM entry ([`vm_from_json`] into a [`VmDefinition`]).
//! - `split.rs`: a large file cut into its entries' texts (JSON and YAML in the plain shape).
//! - `checkers.rs`: those entries parsed and checked on every core, in file order.
//! - `checked.rs`: a checked VM as bytes, kept by the store so a restart need not check again.
//! - `strict.rs`: JSON values read with every key given once ([`json_from_slice`]).
//! - `yaml_depth.rs`: YAML nesting bounded before parsing (libyaml is quadratic in it).
//! - `provisioning.rs`: an entry's `provisioning` member (custom data, password).
//! - `demo.json`: the built-in demo VM, parsed by the same code.

pub mod checked;
mod checkers;
mod file;
pub mod provisioning;
mod split;
mod strict;
mod syntax;
mod vm;
mod yaml_depth;

pub use file::{DefinedVm, DefinitionError, Definitions, Located, demo, parse};
pub use strict::json_from_slice;
pub use syntax::{MAX_DEPTH, Syntax};
pub use vm::{VmDefinition, is_valid_host_name, is_valid_id, vm_from_json, written_entry};

/// Something wrong in one VM entry, at `path` relative to the entry (e.g. `instance.compute.name`).
pub use crate::problem::Problem;
