//! azimds: an Azure-compatible Instance Metadata Service.
//!
//! The library holds everything but process concerns: `main.rs` parses the command line,
//! installs logging and signal handling, and runs a [`server::Server`]. See ARCHITECTURE.md for
//! the map.

// Also set for every target in Cargo.toml's [lints]; here so that it holds for whoever
// builds this file without that table.
#![forbid(unsafe_code)]

pub mod attested;
pub mod capture;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod connections;
pub mod control;
pub mod definition;
pub mod events;
pub mod faults;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod guest;
pub mod identity;
pub mod maintenance;
pub mod metadata;
pub mod outbound;
pub mod ovf;
pub mod problem;
pub mod provisioning;
pub mod registry;
pub mod replay;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod throttle;
pub mod transfer;
pub mod vm_runtime;
pub mod wireserver;
pub mod writable_paths;
pub mod xml;
