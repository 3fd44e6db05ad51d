//! Attested documents (spec §7): `GET /metadata/attested/document` signs a small JSON
//! statement about the VM in a CMS envelope built exactly like Azure's. No HTTP here (the
//! endpoint belongs to `guest`); time is passed in; signing keys never reach `Debug` or logs.
//!
//! - `content` — the signed JSON per api-version (§7.3), [`Nonce`] rules (§7.1).
//! - `cms` — the DER envelope (§7.4); `der` — the small DER writer and reader it uses.
//! - `certs` — the generated root CA and the leaves named like Azure's (§7.5).

pub mod certs;
pub mod cms;
pub mod content;
pub(crate) mod der;

pub use certs::Cloud;
pub use content::{AttestedVm, Nonce, NonceError, accepts, signed_content};
