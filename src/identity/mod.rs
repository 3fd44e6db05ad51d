//! Managed identity (spec §4, §5): which identities a VM has, which one a request selects,
//! tokens signed like Entra ID's, their cache and limits, and the keys relying parties verify
//! them with. No HTTP here: the endpoints are in `guest::identity`; time is passed in.
//!
//! - `definition` — the `identities` member of a VM definition, ids derived when left out.
//! - `selection` — §4.2's rules: selector, else system-assigned, else the one user-assigned.
//! - `keys` — RSA keys with certificates, the [`keys::KeyStore`] trait and its file store.
//! - `token` — the JWT claim set and RS256 signing.
//! - `cache` — per (VM, identity, resource) tokens with single-flight refresh.
//! - `limits` — 20 requests/s and 5 concurrent per VM.
//! - `issuer` — ties keys, cache and lifetime together; JWKS and OpenID discovery documents.

pub mod cache;
pub mod definition;
pub mod issuer;
pub mod keys;
pub mod limits;
pub mod selection;
pub mod token;

use std::time::{SystemTime, UNIX_EPOCH};

pub use definition::{Identities, Identity, Kind};
pub use issuer::{Issuer, openid_configuration};

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Keys(#[from] keys::Error),
    #[error("the token signing task failed: {0}")]
    Task(String),
}

/// Whole seconds since the Unix epoch (0 for times before it).
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
