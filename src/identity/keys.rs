//! Token signing keys: RSA-2048 key pairs with a self-signed certificate each (Entra publishes
//! certificates too, and some relying parties read `x5c`), their storage behind [`KeyStore`],
//! and the [`KeyRing`] of keys currently published.
//!
//! A key's id is Entra's: `kid` = `x5t` = base64url(SHA-1(certificate DER)). A rotated key
//! stays published until every token it signed has expired.
//!
//! Keys are secrets: nothing here implements `Debug` over key material or logs it.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::{X509, X509NameBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Why keys could not be loaded, stored or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("signing key store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signing key file {path} is malformed: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("openssl: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// A key as persisted. `Debug` shows only the id and dates.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredKey {
    pub kid: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds when a newer key replaced it; `None` for the current key.
    pub retired: Option<u64>,
    /// PKCS#8 PEM.
    pub private_key_pem: String,
    pub certificate_pem: String,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("created", &self.created)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

/// Where signing keys live. Synchronous and small, so a file directory, the redb store or a
/// test's memory can back it; called at start and on rotation only, never per request.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// Every stored key, in any order.
    fn load(&self) -> Result<Vec<StoredKey>, Error>;
    /// Creates or replaces the key with this `kid`, durably.
    fn save(&self, key: &StoredKey) -> Result<(), Error>;
    /// Forgets a key; removing a missing key is not an error.
    fn remove(&self, kid: &str) -> Result<(), Error>;
    /// Saves `key` unless one with its `kid` exists; `Ok(false)` then. Hosts sharing a store
    /// race to make a first key of a fixed name (the attested CA): the loser reads the
    /// winner's. A store only one process writes checks and saves.
    fn create(&self, key: &StoredKey) -> Result<bool, Error> {
        if self.load()?.iter().any(|k| k.kid == key.kid) {
            return Ok(false);
        }
        self.save(key)?;
        Ok(true)
    }
}

/// Keys as owner-only files `<dir>/<kid>.json` (mode 0600) in an owner-only directory (0700).
#[derive(Debug)]
pub struct FileKeyStore {
    dir: PathBuf,
}

impl FileKeyStore {
    /// Uses `dir`, creating it (0700) if needed and tightening its mode if it is looser.
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileKeyStore, Error> {
        let dir = dir.into();
        let io = |source| Error::Io {
            path: dir.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        let mode = std::fs::metadata(&dir).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        remove_partial_saves(&dir).map_err(io)?;
        Ok(FileKeyStore { dir })
    }

    fn path(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("{kid}.json"))
    }
}

impl KeyStore for FileKeyStore {
    fn load(&self) -> Result<Vec<StoredKey>, Error> {
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |source| Error::Io { path, source }
        };
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let key: StoredKey = serde_json::from_str(&text).map_err(|e| Error::Malformed {
                path: path.clone(),
                message: e.to_string(),
            })?;
            keys.push(key);
        }
        Ok(keys)
    }

    fn save(&self, key: &StoredKey) -> Result<(), Error> {
        // Write a temporary file created 0600, sync it, then rename: a crash leaves either the
        // old file or the new one, never half a key, and the key is never world-readable.
        let path = self.path(&key.kid);
        let tmp = self.dir.join(format!(".{}.tmp", key.kid));
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_vec_pretty(key).expect("a stored key serializes");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    fn remove(&self, kid: &str) -> Result<(), Error> {
        let path = self.path(kid);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::Io { path, source: e })
            }
            _ => Ok(()),
        }
    }
}

/// Removes the temporary files of saves a crash cut short (`.<kid>.tmp`, never renamed into
/// place, so never a key): the store holds only whole keys, and no litter.
fn remove_partial_saves(dir: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let partial = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
        if partial {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Keys in memory only: tests, and a guest plane started without a data directory.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    keys: Mutex<Vec<StoredKey>>,
}

impl KeyStore for MemoryKeyStore {
    fn load(&self) -> Result<Vec<StoredKey>, Error> {
        Ok(self.keys.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn save(&self, key: &StoredKey) -> Result<(), Error> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.retain(|k| k.kid != key.kid);
        keys.push(key.clone());
        Ok(())
    }

    fn remove(&self, kid: &str) -> Result<(), Error> {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k| k.kid != kid);
        Ok(())
    }
}

/// A loaded key, ready to sign: the parsed `PKey` is kept, because parsing costs as much as
/// signing (dependencies-and-ceilings.md §4.3).
pub struct SigningKey {
    kid: String,
    created: u64,
    retired: Option<u64>,
    pkey: PKey<Private>,
    certificate_der: Vec<u8>,
    n: String,
    e: String,
    /// base64url of the JWT header, which is the same for every token this key signs.
    header: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created", &self.created)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh RSA-2048 key and a self-signed certificate for it (about 50-200 ms).
    pub fn generate(now: u64) -> Result<StoredKey, Error> {
        let pkey = PKey::from_rsa(Rsa::generate(2048)?)?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("CN", "azimds managed identity token signing")?;
        let name = name.build();
        let mut cert = X509::builder()?;
        cert.set_version(2)?;
        let serial = BigNum::from_slice(&rand_bytes::<16>()?)?;
        cert.set_serial_number(Asn1Integer::from_bn(&serial)?.as_ref())?;
        cert.set_subject_name(&name)?;
        cert.set_issuer_name(&name)?;
        cert.set_pubkey(&pkey)?;
        let start = i64::try_from(now).unwrap_or(i64::MAX);
        cert.set_not_before(Asn1Time::from_unix(start)?.as_ref())?;
        // Entra's signing certificates are valid for about five years.
        cert.set_not_after(Asn1Time::from_unix(start.saturating_add(5 * 365 * 86_400))?.as_ref())?;
        cert.sign(&pkey, MessageDigest::sha256())?;
        let cert = cert.build();
        let kid = URL_SAFE_NO_PAD.encode(openssl::sha::sha1(&cert.to_der()?));
        Ok(StoredKey {
            kid,
            created: now,
            retired: None,
            private_key_pem: String::from_utf8(pkey.private_key_to_pem_pkcs8()?)
                .expect("PEM is ASCII"),
            certificate_pem: String::from_utf8(cert.to_pem()?).expect("PEM is ASCII"),
        })
    }

    /// Parses a stored key.
    pub fn from_stored(stored: &StoredKey) -> Result<SigningKey, Error> {
        let pkey = PKey::private_key_from_pem(stored.private_key_pem.as_bytes())?;
        let cert = X509::from_pem(stored.certificate_pem.as_bytes())?;
        let rsa = pkey.rsa()?;
        // Written out, not built from a map: Entra's member order, whatever serde_json's map does.
        let kid = serde_json::to_string(&stored.kid).expect("a string serializes");
        let header = format!(r#"{{"typ":"JWT","alg":"RS256","x5t":{kid},"kid":{kid}}}"#);
        Ok(SigningKey {
            kid: stored.kid.clone(),
            created: stored.created,
            retired: stored.retired,
            n: URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
            e: URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
            certificate_der: cert.to_der()?,
            header: URL_SAFE_NO_PAD.encode(header),
            pkey,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// base64url of this key's JWT header (`typ`, `alg`, `x5t`, `kid`, in Entra's order).
    pub fn header(&self) -> &str {
        &self.header
    }

    /// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of `message`. About 260 µs.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.pkey)?;
        signer.update(message)?;
        Ok(signer.sign_to_vec()?)
    }

    /// The public key as a JWK in the shape of Entra's `discovery/keys` entries.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": self.n,
            "e": self.e,
            "x5c": [STANDARD.encode(&self.certificate_der)],
        })
    }
}

/// The keys in use: the newest unretired one signs, every one is published.
#[derive(Debug)]
pub struct KeyRing {
    /// Newest first; `keys[0]` is the signing key.
    keys: Vec<Arc<SigningKey>>,
}

impl KeyRing {
    /// Loads the store's keys, dropping retired keys older than `retention` seconds, and
    /// creates a first key if there is none.
    pub fn open(store: &dyn KeyStore, now: u64, retention: u64) -> Result<KeyRing, Error> {
        let mut stored = store.load()?;
        prune(store, &mut stored, now, retention)?;
        if !stored.iter().any(|k| k.retired.is_none()) {
            let key = SigningKey::generate(now)?;
            store.save(&key)?;
            stored.push(key);
        }
        KeyRing::from_stored(stored)
    }

    /// The store's keys as they are now (another host of a fleet changed them), dropping
    /// expired retired keys; `None` when there is no unretired key to sign with (a rotation
    /// elsewhere half done: its new key follows), so the caller keeps what it has.
    pub fn reload(
        store: &dyn KeyStore,
        now: u64,
        retention: u64,
    ) -> Result<Option<KeyRing>, Error> {
        let mut stored = store.load()?;
        prune(store, &mut stored, now, retention)?;
        if !stored.iter().any(|k| k.retired.is_none()) {
            return Ok(None);
        }
        KeyRing::from_stored(stored).map(Some)
    }

    /// Makes a new signing key; the previous one is retired but stays published until
    /// `retention` seconds have passed (a token's lifetime and then some).
    pub fn rotate(store: &dyn KeyStore, now: u64, retention: u64) -> Result<KeyRing, Error> {
        let mut stored = store.load()?;
        for key in stored.iter_mut().filter(|k| k.retired.is_none()) {
            key.retired = Some(now);
            store.save(key)?;
        }
        prune(store, &mut stored, now, retention)?;
        let key = SigningKey::generate(now)?;
        store.save(&key)?;
        stored.push(key);
        KeyRing::from_stored(stored)
    }

    fn from_stored(mut stored: Vec<StoredKey>) -> Result<KeyRing, Error> {
        // Unretired first, then newest first; kid breaks ties so the order is total.
        stored.sort_by(|a, b| {
            (a.retired.is_some(), std::cmp::Reverse(a.created), &a.kid).cmp(&(
                b.retired.is_some(),
                std::cmp::Reverse(b.created),
                &b.kid,
            ))
        });
        let keys = stored
            .iter()
            .map(|k| SigningKey::from_stored(k).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(KeyRing { keys })
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> &Arc<SigningKey> {
        &self.keys[0]
    }

    /// Every published key, signing key first.
    pub fn published(&self) -> &[Arc<SigningKey>] {
        &self.keys
    }
}

fn prune(
    store: &dyn KeyStore,
    stored: &mut Vec<StoredKey>,
    now: u64,
    retention: u64,
) -> Result<(), Error> {
    let expired = |k: &StoredKey| k.retired.is_some_and(|r| now > r.saturating_add(retention));
    for key in stored.iter().filter(|k| expired(k)) {
        store.remove(&key.kid)?;
    }
    stored.retain(|k| !expired(k));
    Ok(())
}

fn rand_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    openssl::rand::rand_bytes(&mut bytes)?;
    bytes[0] &= 0x7f; // a positive serial number
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_store_is_owner_only_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("azimds-keys-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FileKeyStore::open(dir.join("keys")).unwrap();
        let ring = KeyRing::open(&store, 1_700_000_000, 90_000).unwrap();
        let kid = ring.current().kid().to_string();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("keys")), 0o700);
        assert_eq!(mode(&dir.join("keys").join(format!("{kid}.json"))), 0o600);
        // Reopening reuses the key instead of making a new one.
        let again = KeyRing::open(
            &FileKeyStore::open(dir.join("keys")).unwrap(),
            1_700_000_100,
            90_000,
        )
        .unwrap();
        assert_eq!(again.current().kid(), kid);
        assert_eq!(again.published().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_save_cut_short_leaves_a_partial_file_that_open_removes() {
        let dir = std::env::temp_dir().join(format!("azimds-keys-partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FileKeyStore::open(&dir).unwrap();
        let ring = KeyRing::open(&store, 1_700_000_000, 90_000).unwrap();
        // What a kill between the temporary file's write and its rename leaves.
        std::fs::write(dir.join(".half-written-kid.tmp"), b"{\"kid\":").unwrap();
        let reopened = FileKeyStore::open(&dir).unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [format!("{}.json", ring.current().kid())]);
        assert_eq!(reopened.load().unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_keeps_the_old_key_published_until_retention_ends() {
        let store = MemoryKeyStore::default();
        let first = KeyRing::open(&store, 1000, 500).unwrap();
        let old = first.current().kid().to_string();
        let rotated = KeyRing::rotate(&store, 2000, 500).unwrap();
        assert_ne!(rotated.current().kid(), old);
        let kids: Vec<&str> = rotated.published().iter().map(|k| k.kid()).collect();
        assert_eq!(kids, [rotated.current().kid(), old.as_str()]);
        // Still published at the end of retention, gone after it.
        assert_eq!(
            KeyRing::open(&store, 2500, 500).unwrap().published().len(),
            2
        );
        let later = KeyRing::open(&store, 2501, 500).unwrap();
        assert_eq!(later.published().len(), 1);
        assert_eq!(later.current().kid(), rotated.current().kid());
        assert_eq!(
            store.load().unwrap().len(),
            1,
            "the expired key is removed from the store"
        );
    }

    #[test]
    fn kid_is_the_certificate_thumbprint_and_debug_hides_the_key() {
        let stored = SigningKey::generate(1000).unwrap();
        let key = SigningKey::from_stored(&stored).unwrap();
        let cert = X509::from_pem(stored.certificate_pem.as_bytes()).unwrap();
        assert_eq!(
            key.kid(),
            URL_SAFE_NO_PAD.encode(openssl::sha::sha1(&cert.to_der().unwrap()))
        );
        assert_eq!(key.kid().len(), 27, "like Entra's kids");
        let header = URL_SAFE_NO_PAD.decode(key.header()).unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(
                r#"{{"typ":"JWT","alg":"RS256","x5t":"{0}","kid":"{0}"}}"#,
                key.kid()
            )
        );
        assert_eq!(key.jwk()["e"], "AQAB");
        assert!(!format!("{stored:?}{key:?}").contains("PRIVATE"));
    }
}
