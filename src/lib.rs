//! azimds: an Azure-compatible Instance Metadata Service.
//!
//! The library holds everything but process concerns: `main.rs` parses the command line,
//! binds sockets and installs logging, then hands listeners to [`guest::serve`].
//! See ARCHITECTURE.md for the map.

pub mod attested;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod control;
pub mod definition;
pub mod events;
pub mod guest;
pub mod identity;
pub mod maintenance;
pub mod metadata;
pub mod registry;
pub mod snapshot;
pub mod store;
pub mod throttle;
