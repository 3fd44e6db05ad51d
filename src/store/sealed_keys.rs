//! Signing keys kept in a shared store (fleet mode): every host of the fleet loads the same
//! keys, so a token or attested document from any host verifies with the fleet's one JWKS and
//! CA. The private key is sealed with the KEK (`kek.rs`) before it is written; the public
//! parts stay readable. One record per key, a JSON object:
//!
//! ```text
//! {"kid":…, "created":…, "retired":…|null, "certificatePem":…, "sealedPrivateKey":"<base64>"}
//! ```
//!
//! The seal's associated data is `<collection>/<kid>`, so a record copied under another name
//! does not open.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::identity::keys::{self, KeyStore, StoredKey};
use crate::store::{Kek, Store};

/// Managed identity's token signing keys.
pub const IDENTITY_KEYS: &str = "identity";
/// The attested documents' CA and leaves (`attested/generation.rs`'s layout).
pub const ATTESTED_KEYS: &str = "attested";

/// A key as written to the shared store: the private key sealed.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealedKey {
    pub kid: String,
    pub created: u64,
    pub retired: Option<u64>,
    pub certificate_pem: String,
    /// base64 of [`Kek::seal`]'s output over the PKCS#8 PEM.
    pub sealed_private_key: String,
}

impl SealedKey {
    /// Seals `key`'s private part for `collection`.
    pub fn seal(kek: &Kek, collection: &str, key: &StoredKey) -> Result<SealedKey, String> {
        let sealed = kek
            .seal(&aad(collection, &key.kid), key.private_key_pem.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(SealedKey {
            kid: key.kid.clone(),
            created: key.created,
            retired: key.retired,
            certificate_pem: key.certificate_pem.clone(),
            sealed_private_key: STANDARD.encode(sealed),
        })
    }

    /// Opens the private part again.
    pub fn open(&self, kek: &Kek, collection: &str) -> Result<StoredKey, String> {
        let sealed = STANDARD
            .decode(&self.sealed_private_key)
            .map_err(|e| format!("sealedPrivateKey is not base64: {e}"))?;
        let pem = kek
            .open(&aad(collection, &self.kid), &sealed)
            .map_err(|e| e.to_string())?;
        Ok(StoredKey {
            private_key_pem: String::from_utf8(pem)
                .map_err(|_| "the unsealed private key is not PEM text".to_string())?,
            kid: self.kid.clone(),
            created: self.created,
            retired: self.retired,
            certificate_pem: self.certificate_pem.clone(),
        })
    }
}

fn aad(collection: &str, kid: &str) -> String {
    format!("{collection}/{kid}")
}

/// A [`KeyStore`] over one collection of a shared [`Store`], sealing with the KEK.
pub struct SealedKeyStore {
    store: Arc<Store>,
    collection: &'static str,
    kek: Kek,
}

impl fmt::Debug for SealedKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedKeyStore")
            .field("collection", &self.collection)
            .finish_non_exhaustive()
    }
}

impl SealedKeyStore {
    pub fn new(store: Arc<Store>, collection: &'static str, kek: Kek) -> SealedKeyStore {
        SealedKeyStore {
            store,
            collection,
            kek,
        }
    }

    fn malformed(&self, name: &str, message: String) -> keys::Error {
        keys::Error::Malformed {
            path: format!("etcd keys/{}/{name}", self.collection).into(),
            message,
        }
    }

    fn unavailable(&self, error: crate::store::Error) -> keys::Error {
        keys::Error::Io {
            path: format!("etcd keys/{}/", self.collection).into(),
            source: std::io::Error::other(error.to_string()),
        }
    }
}

impl KeyStore for SealedKeyStore {
    fn load(&self) -> Result<Vec<StoredKey>, keys::Error> {
        let records = self
            .store
            .key_records(self.collection)
            .map_err(|e| self.unavailable(e))?;
        records
            .into_iter()
            .map(|(name, bytes)| {
                let sealed: SealedKey = serde_json::from_slice(&bytes)
                    .map_err(|e| self.malformed(&name, e.to_string()))?;
                if sealed.kid != name {
                    return Err(self.malformed(&name, format!("it names kid {:?}", sealed.kid)));
                }
                sealed
                    .open(&self.kek, self.collection)
                    .map_err(|message| self.malformed(&name, message))
            })
            .collect()
    }

    fn save(&self, key: &StoredKey) -> Result<(), keys::Error> {
        let sealed = SealedKey::seal(&self.kek, self.collection, key)
            .map_err(|message| self.malformed(&key.kid, message))?;
        let bytes = serde_json::to_vec(&sealed).expect("a sealed key serializes");
        self.store
            .put_key_record(self.collection, &key.kid, &bytes)
            .map_err(|e| self.unavailable(e))
    }

    fn create(&self, key: &StoredKey) -> Result<bool, keys::Error> {
        let sealed = SealedKey::seal(&self.kek, self.collection, key)
            .map_err(|message| self.malformed(&key.kid, message))?;
        let bytes = serde_json::to_vec(&sealed).expect("a sealed key serializes");
        self.store
            .create_key_record(self.collection, &key.kid, &bytes)
            .map_err(|e| self.unavailable(e))
    }

    fn remove(&self, kid: &str) -> Result<(), keys::Error> {
        self.store
            .delete_key_record(self.collection, kid)
            .map_err(|e| self.unavailable(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keys::SigningKey;

    #[test]
    fn a_sealed_key_holds_no_private_key_and_opens_to_the_same_key() {
        let kek = Kek::from_bytes([3; 32]);
        let key = SigningKey::generate(1_700_000_000).unwrap();
        let sealed = SealedKey::seal(&kek, IDENTITY_KEYS, &key).unwrap();
        let text = serde_json::to_string(&sealed).unwrap();
        assert!(!text.contains("PRIVATE"), "{text}");
        let der = openssl::pkey::PKey::private_key_from_pem(key.private_key_pem.as_bytes())
            .unwrap()
            .private_key_to_der()
            .unwrap();
        let raw = STANDARD.decode(&sealed.sealed_private_key).unwrap();
        assert!(!raw.windows(32).any(|w| der.windows(32).any(|d| d == w)));
        let moved: SealedKey = serde_json::from_str(&text).unwrap();
        assert!(
            moved.open(&kek, ATTESTED_KEYS).is_err(),
            "bound to its collection"
        );
        let back: SealedKey = serde_json::from_str(&text).unwrap();
        assert!(back.open(&kek, IDENTITY_KEYS).unwrap() == key);
    }
}
