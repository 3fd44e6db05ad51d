//! Attested documents (spec §7): `GET /metadata/attested/document` signs a small JSON
//! statement about the VM in a CMS envelope built exactly like Azure's. No HTTP here (the
//! endpoint belongs to `guest`); time is passed in; signing keys never reach `Debug` or logs.
//!
//! - `content` — the signed JSON per api-version (§7.3), [`Nonce`] rules (§7.1).
//! - `cms` — the DER envelope (§7.4); `der` — the small DER writer and reader it uses.
//! - `certs` — the generated root CA and the leaves named like Azure's (§7.5).
//! - `signer` — [`AttestedSigner`]: the current leaves, lazily per (cloud, region), and
//!   rotation, and reloading them from a store other hosts share (`reload_tests`);
//!   `generation` — their `KeyStore` layout and pruning; `operator` — operator-supplied
//!   leaf, key and chain instead.

pub mod certs;
pub mod cms;
pub mod content;
pub(crate) mod der;
pub mod generation;
mod operator;
pub mod signer;

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub use certs::Cloud;
pub use content::{AttestedVm, InstanceFacts, Nonce, NonceError, accepts, signed_content};
pub use signer::AttestedSigner;

use crate::identity::keys;
use crate::metadata::version::ApiVersion;

/// Why a document could not be signed, or the signer not opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Keys(#[from] keys::Error),
    #[error("attested signing: {0}")]
    Cms(#[from] cms::Error),
    #[error("attested certificates: openssl: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    #[error("operator-supplied attested certificate: {0}")]
    Operator(#[from] OperatorError),
    #[error(
        "the attested signing certificate is operator-supplied; replace its files to rotate it"
    )]
    OperatorRotation,
    /// Another host made the CA first (it was there when this one tried to), and then it was
    /// gone when read: a fleet's store changed under the start.
    #[error("the attested CA another host made is gone from the store; start again")]
    CaVanished,
}

/// What is wrong with an operator's leaf, key or chain.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("the {what} is not valid PEM: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: openssl::error::ErrorStack,
    },
    #[error("the private key is not RSA (attested documents are RSA-signed, spec §7.4)")]
    NotRsa,
    #[error("the private key does not belong to the leaf certificate")]
    KeyMismatch,
    #[error("the certificate chain holds no certificate besides the leaf")]
    EmptyChain,
    #[error("the certificate chain does not verify the leaf: {reason}")]
    ChainDoesNotVerify { reason: String },
}

impl AttestedSigner {
    /// The whole response body for `vm`'s attested document at `version`:
    /// `{"encoding":"pkcs7","signature":"<base64 DER>"}` (§7.2). The caller has checked
    /// [`accepts`]`(version)` and parsed the nonce. One RSA signature, see [`AttestedSigner::sign`].
    pub fn document(
        &self,
        vm: &AttestedVm<'_>,
        version: ApiVersion,
        nonce: Option<&Nonce>,
        now: SystemTime,
    ) -> Result<Vec<u8>, Error> {
        let content = signed_content(vm, version, nonce, now);
        let cloud = Cloud::from_az_environment(vm.az_environment);
        let signature = self.sign(cloud, vm.location, &content, now)?;
        Ok(response_body(&signature))
    }
}

/// `{"encoding":"pkcs7","signature":"…"}`: standard base64 with padding, no line breaks (§7.2).
pub fn response_body(signature_der: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(40 + signature_der.len().div_ceil(3) * 4);
    body.extend_from_slice(br#"{"encoding":"pkcs7","signature":""#);
    body.extend_from_slice(STANDARD.encode(signature_der).as_bytes());
    body.extend_from_slice(br#""}"#);
    body
}

#[cfg(test)]
mod reload_tests;
#[cfg(test)]
mod tests;
