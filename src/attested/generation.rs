//! A generation of attested signing certificates and its key-store layout (one `StoredKey`
//! per entry, in a store of its own, e.g. `<data>/keys/attested`):
//!
//! - `ca`: the generated root CA (key and self-signed certificate), kept across restarts.
//! - `leaf-<generation>-<cloud>[-<region>]`: a leaf certificate. The leaves of one
//!   generation share one key; `leaf-<generation>-public` is made with the generation so its
//!   key survives a restart before any VM asked; regional leaves are added on first use.
//!
//! Retired leaves stay until every document they signed has expired ([`RETENTION`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use openssl::asn1::Asn1Time;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use crate::attested::Error;
use crate::attested::certs::{self, Cloud, LeafName};
use crate::attested::cms::CmsSigner;
use crate::attested::content::DOCUMENT_LIFETIME;
use crate::identity::keys::{KeyStore, StoredKey};

/// How long a retired leaf is kept: a document's lifetime and an hour's margin.
pub const RETENTION: Duration = Duration::from_secs(DOCUMENT_LIFETIME.as_secs() + 3600);
/// Certificates closer than this to their end are replaced when the signer is opened or
/// renewed.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

const CA_KID: &str = "ca";

/// The leaf every generation is made with (its regional leaves come on first use).
const ANCHOR: LeafName = LeafName {
    cloud: Cloud::Public,
    region: None,
};

/// The generated root. `Debug` omits the key.
pub(crate) struct Ca {
    pub(crate) certificate: X509,
    pub(crate) key: PKey<Private>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// The leaves signing now.
#[derive(Clone)]
pub(crate) struct Generation {
    /// Shared by the generation's key-store ids; `operator` for operator certificates.
    pub(crate) id: String,
    /// The key every leaf of this generation certifies.
    pub(crate) key: PKey<Private>,
    /// `key` as stored (PKCS#8 PEM); empty for operator certificates, which are not stored.
    pub(crate) key_pem: String,
    pub(crate) leaves: HashMap<LeafName, Arc<Leaf>>,
    /// Operator mode: this leaf signs for every name.
    pub(crate) fixed: Option<Arc<Leaf>>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("id", &self.id)
            .field("leaves", &self.leaves.len())
            .finish_non_exhaustive()
    }
}

/// A leaf certificate and its prepared envelope writer.
#[derive(Debug)]
pub(crate) struct Leaf {
    pub(crate) certificate: X509,
    pub(crate) signer: CmsSigner,
}

impl Leaf {
    pub(crate) fn new(certificate: X509, key: PKey<Private>) -> Result<Leaf, Error> {
        let signer = CmsSigner::new(&certificate, key)?;
        Ok(Leaf {
            certificate,
            signer,
        })
    }
}

/// The stored root CA, or a new one when there is none or it ends within [`RENEW_BEFORE`].
pub(crate) fn open_ca(store: &dyn KeyStore, stored: &[StoredKey], now: i64) -> Result<Ca, Error> {
    let existing = stored.iter().find(|k| k.kid == CA_KID);
    if let Some(entry) = existing {
        let ca = parse_ca(entry)?;
        let due = Asn1Time::from_unix(now + RENEW_BEFORE.as_secs() as i64)?;
        if ca.certificate.not_after().compare(&due)?.is_gt() {
            return Ok(ca);
        }
        // An expiring root is replaced (relying parties must trust the new `ca_pem`); its
        // leaves no longer verify against it, so `current_generation` starts a new one.
    }
    let key = certs::generate_key()?;
    let certificate = certs::generate_ca(&key, now)?;
    let entry = StoredKey {
        kid: CA_KID.into(),
        created: now as u64,
        retired: None,
        private_key_pem: private_pem(&key)?,
        certificate_pem: pem(&certificate)?,
    };
    if existing.is_some() {
        store.save(&entry)?;
    } else if !store.create(&entry)? {
        // Another host sharing the store (a fleet) made the first CA meanwhile: every host
        // must sign under the one CA, so this one uses it.
        let winner = store.load()?.into_iter().find(|k| k.kid == CA_KID);
        return winner.as_ref().map_or(Err(Error::CaVanished), parse_ca);
    }
    Ok(Ca { certificate, key })
}

fn parse_ca(entry: &StoredKey) -> Result<Ca, Error> {
    Ok(Ca {
        certificate: X509::from_pem(entry.certificate_pem.as_bytes())?,
        key: PKey::private_key_from_pem(entry.private_key_pem.as_bytes())?,
    })
}

/// The newest unretired generation, if every one of its leaves is still good to sign with.
/// Newest by its anchor (the regionless public leaf, made with the generation): a regional
/// leaf a host added to its generation just after another host rotated is newer than the new
/// anchor, but its generation is retired.
pub(crate) fn current_generation(
    stored: &[StoredKey],
    ca: &Ca,
    ca_issuers_url: Option<&str>,
    now: i64,
) -> Result<Option<Generation>, Error> {
    let Some(newest) = stored
        .iter()
        .filter(|k| k.retired.is_none())
        .filter_map(|k| match parse_leaf_kid(&k.kid) {
            Some((generation, name)) if name == ANCHOR => Some((k.created, generation)),
            _ => None,
        })
        .max()
    else {
        return Ok(None);
    };
    let id = newest.1.to_string();
    let due = Asn1Time::from_unix(now + RENEW_BEFORE.as_secs() as i64)?;
    let mut generation: Option<Generation> = None;
    for entry in stored.iter().filter(|k| k.retired.is_none()) {
        let Some((entry_generation, name)) = parse_leaf_kid(&entry.kid) else {
            continue;
        };
        if entry_generation != id {
            continue;
        }
        // An unreadable leaf is stale, not fatal: a new generation replaces it.
        let (Ok(certificate), Ok(key)) = (
            X509::from_pem(entry.certificate_pem.as_bytes()),
            PKey::private_key_from_pem(entry.private_key_pem.as_bytes()),
        ) else {
            return Ok(None);
        };
        let good = certificate.verify(&ca.key)?
            && certificate.public_key()?.public_eq(&key)
            && certificate.not_after().compare(&due)?.is_gt()
            && certs::ca_issuers_url(&certificate).as_deref() == ca_issuers_url
            && generation.as_ref().is_none_or(|g| g.key.public_eq(&key));
        if !good {
            return Ok(None);
        }
        let generation = generation.get_or_insert_with(|| Generation {
            id: id.clone(),
            key: key.clone(),
            key_pem: entry.private_key_pem.clone(),
            leaves: HashMap::new(),
            fixed: None,
        });
        generation
            .leaves
            .insert(name, Arc::new(Leaf::new(certificate, key)?));
    }
    Ok(generation)
}

/// A new key and its regionless public-cloud leaf, stored.
pub(crate) fn new_generation(
    store: &dyn KeyStore,
    ca: &Ca,
    ca_issuers_url: Option<&str>,
    now: i64,
) -> Result<Generation, Error> {
    let key = certs::generate_key()?;
    let mut id_bytes = [0u8; 6];
    openssl::rand::rand_bytes(&mut id_bytes)?;
    let mut generation = Generation {
        id: id_bytes.iter().map(|b| format!("{b:02x}")).collect(),
        key_pem: private_pem(&key)?,
        key,
        leaves: HashMap::new(),
        fixed: None,
    };
    add_leaf(store, ca, &mut generation, ANCHOR, ca_issuers_url, now)?;
    Ok(generation)
}

/// Issues the leaf `name` for `generation`'s key, stores it and adds it to the generation.
pub(crate) fn add_leaf(
    store: &dyn KeyStore,
    ca: &Ca,
    generation: &mut Generation,
    name: LeafName,
    ca_issuers_url: Option<&str>,
    now: i64,
) -> Result<Arc<Leaf>, Error> {
    let mut certificate = certs::issue_leaf(
        &ca.certificate,
        &ca.key,
        &generation.key,
        &name,
        ca_issuers_url,
        now,
    )?;
    let entry = StoredKey {
        kid: leaf_kid(&generation.id, &name),
        created: now as u64,
        retired: None,
        private_key_pem: generation.key_pem.clone(),
        certificate_pem: pem(&certificate)?,
    };
    if !store.create(&entry)? {
        // Another host sharing the store (a fleet) issued this leaf meanwhile: this one signs
        // with the stored leaf too, so there is one leaf per name whichever host signed.
        if let Some(stored) = stored_leaf(store, &entry.kid, &generation.key)? {
            certificate = stored;
        }
    }
    let leaf = Arc::new(Leaf::new(certificate, generation.key.clone())?);
    generation.leaves.insert(name, Arc::clone(&leaf));
    Ok(leaf)
}

/// The stored certificate `kid`, if it certifies `key` (else the caller keeps its own, which
/// chains to the same CA).
fn stored_leaf(
    store: &dyn KeyStore,
    kid: &str,
    key: &PKey<Private>,
) -> Result<Option<X509>, Error> {
    let Some(entry) = store.load()?.into_iter().find(|k| k.kid == kid) else {
        return Ok(None);
    };
    let Ok(certificate) = X509::from_pem(entry.certificate_pem.as_bytes()) else {
        return Ok(None);
    };
    Ok(certificate
        .public_key()?
        .public_eq(key)
        .then_some(certificate))
}

/// Retires every unretired leaf except those of generation `keep`.
pub(crate) fn retire_all_but(
    store: &dyn KeyStore,
    stored: &mut [StoredKey],
    keep: Option<&str>,
    now: i64,
) -> Result<(), Error> {
    for entry in stored.iter_mut().filter(|k| k.retired.is_none()) {
        let Some((generation, _)) = parse_leaf_kid(&entry.kid) else {
            continue;
        };
        if Some(generation) == keep {
            continue;
        }
        entry.retired = Some(now as u64);
        store.save(entry)?;
    }
    Ok(())
}

/// Removes leaves retired more than [`RETENTION`] ago, from the store and from `stored`.
pub(crate) fn prune(
    store: &dyn KeyStore,
    stored: &mut Vec<StoredKey>,
    now: i64,
) -> Result<(), Error> {
    let expired = |k: &StoredKey| {
        k.retired
            .is_some_and(|r| now as u64 > r.saturating_add(RETENTION.as_secs()))
    };
    for entry in stored.iter().filter(|k| expired(k)) {
        store.remove(&entry.kid)?;
    }
    stored.retain(|k| !expired(k));
    Ok(())
}

fn leaf_kid(generation: &str, name: &LeafName) -> String {
    match &name.region {
        Some(region) => format!("leaf-{generation}-{}-{region}", name.cloud.tag()),
        None => format!("leaf-{generation}-{}", name.cloud.tag()),
    }
}

/// `leaf-<generation>-<cloud>[-<region>]` back into its parts (regions may contain `-`).
fn parse_leaf_kid(kid: &str) -> Option<(&str, LeafName)> {
    let mut parts = kid.strip_prefix("leaf-")?.splitn(3, '-');
    let generation = parts.next()?;
    let cloud = Cloud::from_tag(parts.next()?)?;
    let region = parts.next().map(str::to_string);
    Some((generation, LeafName { cloud, region }))
}

pub(crate) fn pem(certificate: &X509) -> Result<String, openssl::error::ErrorStack> {
    Ok(String::from_utf8(certificate.to_pem()?).expect("PEM is ASCII"))
}

fn private_pem(key: &PKey<Private>) -> Result<String, openssl::error::ErrorStack> {
    Ok(String::from_utf8(key.private_key_to_pem_pkcs8()?).expect("PEM is ASCII"))
}

pub(crate) fn unix(time: SystemTime) -> i64 {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(seconds).unwrap_or(i64::MAX)
}
