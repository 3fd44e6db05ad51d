//! [`AttestedSigner`]: which certificate signs a VM's attested document, kept in a
//! [`KeyStore`] (layout in `generation.rs`) and rotated like managed identity's `KeyRing`.
//!
//! [`AttestedSigner::rotate`] retires the current generation; retired leaves stay in the store
//! until every document they signed has expired (`generation::RETENTION`), then are pruned. A
//! document carries its own leaf, so a verifier never needs a retired leaf from us.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use openssl::asn1::Asn1Time;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use crate::attested::Error;
use crate::attested::certs::{self, Cloud, LeafName};
use crate::attested::generation::{
    Ca, Generation, Leaf, RENEW_BEFORE, add_leaf, current_generation, new_generation, open_ca, pem,
    prune, retire_all_but, unix,
};
use crate::identity::keys::{KeyStore, MemoryKeyStore};

/// Signs attested documents. Cheap to share behind an `Arc`; signing never blocks on a
/// rotation (the current leaves are swapped atomically).
#[derive(Debug)]
pub struct AttestedSigner {
    source: Source,
    current: ArcSwap<Generation>,
    /// Serialises store writes (a new regional leaf, a rotation); never held while signing.
    writing: Mutex<()>,
}

#[derive(Debug)]
enum Source {
    Generated {
        store: Arc<dyn KeyStore>,
        ca: Ca,
        ca_issuers_url: Option<String>,
    },
    /// Certificates from the operator's PEM files (`operator.rs`): one leaf for every VM.
    Operator { chain: Vec<X509> },
}

impl AttestedSigner {
    /// Loads the CA and current leaves from `store`, making whatever is missing, expired or
    /// stale: a CA on first start, a new generation when the current one is near its end, was
    /// issued by another CA, or names a different `ca_issuers_url` (the AIA URL written into
    /// each leaf, §7.6; `None` writes no AIA extension). Blocking (key generation, store IO).
    pub fn open(
        store: Arc<dyn KeyStore>,
        ca_issuers_url: Option<String>,
        now: SystemTime,
    ) -> Result<AttestedSigner, Error> {
        let now = unix(now);
        let mut stored = store.load()?;
        let ca = open_ca(store.as_ref(), &stored, now)?;
        prune(store.as_ref(), &mut stored, now)?;
        let generation = match current_generation(&stored, &ca, ca_issuers_url.as_deref(), now)? {
            Some(generation) => generation,
            None => new_generation(store.as_ref(), &ca, ca_issuers_url.as_deref(), now)?,
        };
        // Leaves of any other generation (a stale one, or one a crash left unretired) retire.
        retire_all_but(store.as_ref(), &mut stored, Some(&generation.id), now)?;
        Ok(AttestedSigner::with(
            Source::Generated {
                store,
                ca,
                ca_issuers_url,
            },
            generation,
        ))
    }

    /// A signer whose CA and keys live in memory only (tests; no data directory).
    pub fn in_memory(now: SystemTime) -> Result<AttestedSigner, Error> {
        AttestedSigner::open(Arc::new(MemoryKeyStore::default()), None, now)
    }

    /// A signer for the operator's certificate `leaf` and its `key` (checked by the caller,
    /// `operator.rs`), with `chain` as what relying parties trust.
    pub(crate) fn operator(
        chain: Vec<X509>,
        leaf: X509,
        key: PKey<Private>,
    ) -> Result<AttestedSigner, Error> {
        let generation = Generation {
            id: "operator".into(),
            key: key.clone(),
            key_pem: String::new(),
            leaves: HashMap::new(),
            fixed: Some(Arc::new(Leaf::new(leaf, key)?)),
        };
        Ok(AttestedSigner::with(Source::Operator { chain }, generation))
    }

    fn with(source: Source, generation: Generation) -> AttestedSigner {
        AttestedSigner {
            source,
            current: ArcSwap::from_pointee(generation),
            writing: Mutex::new(()),
        }
    }

    /// The DER envelope of `content`, signed by the leaf for `cloud` and `location`
    /// (`compute.location`). The first document for a new (cloud, region) issues and stores
    /// that leaf (one CA signature and a store write); [`AttestedSigner::prepare`] does it
    /// ahead of time. About one RSA signature otherwise.
    pub fn sign(
        &self,
        cloud: Cloud,
        location: &str,
        content: &[u8],
        now: SystemTime,
    ) -> Result<Vec<u8>, Error> {
        let leaf = self.leaf(cloud, location, now)?;
        Ok(leaf.signer.sign(content)?)
    }

    /// Issues the leaf for (`cloud`, `location`) if it does not exist yet, so the guest plane's
    /// first request for such a VM does no IO. The control plane can call it when a VM is put.
    pub fn prepare(&self, cloud: Cloud, location: &str, now: SystemTime) -> Result<(), Error> {
        self.leaf(cloud, location, now).map(drop)
    }

    /// The leaf certificate (PEM) that signs for (`cloud`, `location`), issuing it if needed.
    pub fn leaf_pem(&self, cloud: Cloud, location: &str, now: SystemTime) -> Result<String, Error> {
        let leaf = self.leaf(cloud, location, now)?;
        Ok(pem(&leaf.certificate)?)
    }

    /// What relying parties trust (PEM): the generated root CA, or the operator's chain.
    /// Served at `GET /attested/ca.pem` on the control listener.
    pub fn ca_pem(&self) -> String {
        match &self.source {
            Source::Generated { ca, .. } => pem(&ca.certificate).expect("a certificate encodes"),
            Source::Operator { chain } => chain
                .iter()
                .map(|c| pem(c).expect("a certificate encodes"))
                .collect(),
        }
    }

    /// DER of the certificate that issued the leaves: what an AIA "CA Issuers" URL should
    /// serve (Microsoft's samples fetch it and convert it with `openssl x509 -inform der`).
    pub fn issuer_der(&self) -> Vec<u8> {
        let issuer = match &self.source {
            Source::Generated { ca, .. } => &ca.certificate,
            Source::Operator { chain } => {
                let leaf = &self.current.load().fixed.clone().expect("operator leaf");
                let issued =
                    |c: &&X509| c.issued(&leaf.certificate) == openssl::x509::X509VerifyResult::OK;
                chain.iter().find(issued).unwrap_or(&chain[0])
            }
        };
        issuer.to_der().expect("a certificate encodes")
    }

    /// The current generation's id (a new one after each rotation).
    pub fn generation(&self) -> String {
        self.current.load().id.clone()
    }

    /// Starts signing with a new key and new leaves; the old leaves are retired and pruned
    /// after [`RETENTION`](crate::attested::generation::RETENTION). Returns the new
    /// generation's id. Blocking (key generation, store writes).
    pub fn rotate(&self, now: SystemTime) -> Result<String, Error> {
        let Source::Generated {
            store,
            ca,
            ca_issuers_url,
        } = &self.source
        else {
            return Err(Error::OperatorRotation);
        };
        let _one_writer = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let now = unix(now);
        let mut stored = store.load()?;
        retire_all_but(store.as_ref(), &mut stored, None, now)?;
        prune(store.as_ref(), &mut stored, now)?;
        let generation = new_generation(store.as_ref(), ca, ca_issuers_url.as_deref(), now)?;
        let id = generation.id.clone();
        self.current.store(Arc::new(generation));
        Ok(id)
    }

    /// Reads the store again (fleet mode: another host rotated, renewed or issued a regional
    /// leaf) and signs with what it holds: its current generation when that is not this
    /// host's, or this host's with the leaves other hosts added. Returns whether anything
    /// changed. Never writes: a store with no usable current generation (a rotation half-done
    /// elsewhere, leaves under another CA or AIA URL) leaves this host's as it is. The CA is
    /// not reloaded: it is replaced only at a start within 30 days of its ten years, so a
    /// host then keeps its generation until it restarts too. Operator certificates are never
    /// reloaded. Blocking (store reads).
    pub fn reload(&self, now: SystemTime) -> Result<bool, Error> {
        let Source::Generated {
            store,
            ca,
            ca_issuers_url,
        } = &self.source
        else {
            return Ok(false);
        };
        // Not across a rotation or a leaf this host is issuing: either would be lost.
        let _one_writer = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let stored = store.load()?;
        let Some(mut found) =
            current_generation(&stored, ca, ca_issuers_url.as_deref(), unix(now))?
        else {
            return Ok(false);
        };
        let held = self.current.load();
        if found.id == held.id {
            let mut unchanged = true;
            for (name, leaf) in &found.leaves {
                unchanged &= match held.leaves.get(name) {
                    Some(mine) => mine.certificate.to_der()? == leaf.certificate.to_der()?,
                    None => false,
                };
            }
            if unchanged {
                return Ok(false);
            }
            // A leaf this host holds but the store lost keeps signing (it chains to the CA).
            for (name, leaf) in &held.leaves {
                found
                    .leaves
                    .entry(name.clone())
                    .or_insert_with(|| Arc::clone(leaf));
            }
        }
        self.current.store(Arc::new(found));
        Ok(true)
    }

    /// Rotates when a current leaf ends within [`RENEW_BEFORE`] (a long-running server calls
    /// this, say, daily). Returns whether it rotated.
    pub fn renew_if_due(&self, now: SystemTime) -> Result<bool, Error> {
        if matches!(self.source, Source::Operator { .. }) {
            return Ok(false);
        }
        let due = Asn1Time::from_unix(unix(now) + RENEW_BEFORE.as_secs() as i64)?;
        let generation = self.current.load();
        let mut due_now = false;
        for leaf in generation.leaves.values() {
            due_now |= leaf.certificate.not_after().compare(&due)?.is_lt();
        }
        if due_now {
            self.rotate(now)?;
        }
        Ok(due_now)
    }

    fn leaf(&self, cloud: Cloud, location: &str, now: SystemTime) -> Result<Arc<Leaf>, Error> {
        let name = LeafName {
            cloud,
            region: certs::region_label(location),
        };
        let generation = self.current.load();
        if let Some(leaf) = generation
            .fixed
            .as_ref()
            .or_else(|| generation.leaves.get(&name))
        {
            return Ok(Arc::clone(leaf));
        }
        let Source::Generated {
            store,
            ca,
            ca_issuers_url,
        } = &self.source
        else {
            unreachable!("an operator generation always has its fixed leaf");
        };
        let _one_writer = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        // Another request may have issued it while we waited.
        let mut generation = Generation::clone(&self.current.load());
        if let Some(leaf) = generation.leaves.get(&name) {
            return Ok(Arc::clone(leaf));
        }
        let leaf = add_leaf(
            store.as_ref(),
            ca,
            &mut generation,
            name,
            ca_issuers_url.as_deref(),
            unix(now),
        )?;
        self.current.store(Arc::new(generation));
        Ok(leaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::attested::generation::RETENTION;
    use crate::identity::keys::{FileKeyStore, StoredKey};

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    const T0: u64 = 1_800_000_000;

    fn kids(store: &dyn KeyStore) -> Vec<String> {
        let mut kids: Vec<String> = store.load().unwrap().into_iter().map(|k| k.kid).collect();
        kids.sort();
        kids
    }

    fn entry(store: &dyn KeyStore, kid: &str) -> StoredKey {
        store
            .load()
            .unwrap()
            .into_iter()
            .find(|k| k.kid == kid)
            .unwrap()
    }

    #[test]
    fn first_start_makes_a_ca_and_a_public_leaf_and_restarts_reuse_them() {
        let dir = std::env::temp_dir().join(format!("azimds-attested-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(FileKeyStore::open(&dir).unwrap());
        let signer = AttestedSigner::open(store.clone(), None, at(T0)).unwrap();
        let generation = signer.generation();
        assert_eq!(
            kids(store.as_ref()),
            ["ca".to_string(), format!("leaf-{generation}-public")]
        );
        let mode = std::fs::metadata(dir.join("ca.json"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );

        let eastus = signer
            .leaf_pem(Cloud::Public, "eastus", at(T0 + 10))
            .unwrap();
        let again = AttestedSigner::open(
            Arc::new(FileKeyStore::open(&dir).unwrap()),
            None,
            at(T0 + 100),
        )
        .unwrap();
        assert_eq!(again.ca_pem(), signer.ca_pem());
        assert_eq!(again.generation(), generation);
        assert_eq!(
            again
                .leaf_pem(Cloud::Public, "eastus", at(T0 + 100))
                .unwrap(),
            eastus,
            "the regional leaf was stored, not issued again"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leaves_are_per_cloud_and_region_and_share_the_generations_key() {
        let store = Arc::new(MemoryKeyStore::default());
        let signer = AttestedSigner::open(store.clone(), None, at(T0)).unwrap();
        let pem = |cloud, location| {
            X509::from_pem(signer.leaf_pem(cloud, location, at(T0)).unwrap().as_bytes()).unwrap()
        };
        let eastus = pem(Cloud::Public, "eastus");
        let westus = pem(Cloud::Public, "WestUS");
        let unnamed = pem(Cloud::Public, "not a region");
        let china = pem(Cloud::China, "chinanorth");
        assert_eq!(
            pem(Cloud::Public, "eastus").to_der().unwrap(),
            eastus.to_der().unwrap()
        );
        assert_ne!(eastus.to_der().unwrap(), westus.to_der().unwrap());
        let key = eastus.public_key().unwrap();
        for leaf in [&westus, &unnamed, &china] {
            assert!(leaf.public_key().unwrap().public_eq(&key));
        }
        let g = signer.generation();
        assert_eq!(
            kids(store.as_ref()),
            [
                "ca".to_string(),
                format!("leaf-{g}-china-chinanorth"),
                format!("leaf-{g}-public"),
                format!("leaf-{g}-public-eastus"),
                format!("leaf-{g}-public-westus"),
            ]
        );
    }

    #[test]
    fn rotation_keeps_retired_leaves_until_their_documents_expire() {
        let store = Arc::new(MemoryKeyStore::default());
        let signer = AttestedSigner::open(store.clone(), None, at(T0)).unwrap();
        let old = signer.generation();
        let old_leaf = signer.leaf_pem(Cloud::Public, "eastus", at(T0)).unwrap();
        let new = signer.rotate(at(T0 + 1000)).unwrap();
        assert_ne!(new, old);
        assert_eq!(signer.generation(), new);
        assert_ne!(
            signer
                .leaf_pem(Cloud::Public, "eastus", at(T0 + 1000))
                .unwrap(),
            old_leaf
        );
        let retired = entry(store.as_ref(), &format!("leaf-{old}-public-eastus"));
        assert_eq!(retired.retired, Some(T0 + 1000));

        let end = T0 + 1000 + RETENTION.as_secs();
        let reopened = AttestedSigner::open(store.clone(), None, at(end)).unwrap();
        assert_eq!(
            reopened.generation(),
            new,
            "reopening keeps the current generation"
        );
        assert!(kids(store.as_ref()).contains(&format!("leaf-{old}-public")));
        AttestedSigner::open(store.clone(), None, at(end + 1)).unwrap();
        assert!(
            kids(store.as_ref()).iter().all(|k| !k.contains(&old)),
            "pruned after retention: {:?}",
            kids(store.as_ref())
        );
        assert_eq!(reopened.ca_pem(), signer.ca_pem(), "rotation keeps the CA");
    }

    #[test]
    fn stale_generations_are_replaced_at_open() {
        let store = Arc::new(MemoryKeyStore::default());
        let first = AttestedSigner::open(store.clone(), None, at(T0))
            .unwrap()
            .generation();
        // A different AIA URL: the leaves must say the new one.
        let url = Some("http://169.254.169.254/attested/ca.crt".to_string());
        let second = AttestedSigner::open(store.clone(), url.clone(), at(T0 + 1)).unwrap();
        assert_ne!(second.generation(), first);
        let leaf = X509::from_pem(
            second
                .leaf_pem(Cloud::Public, "", at(T0 + 1))
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(certs::ca_issuers_url(&leaf), url);
        assert!(
            entry(store.as_ref(), &format!("leaf-{first}-public"))
                .retired
                .is_some()
        );
        // Within 30 days of the leaf's end (1 year), a new generation; the CA (10 years) stays.
        let late = T0 + 340 * 86_400;
        let third = AttestedSigner::open(store.clone(), url.clone(), at(late)).unwrap();
        assert_ne!(third.generation(), second.generation());
        assert_eq!(third.ca_pem(), second.ca_pem());
        // Near the CA's end, a new CA, and so new leaves.
        let ca_end = T0 + 10 * 365 * 86_400 - 86_400;
        let fourth = AttestedSigner::open(store.clone(), url, at(ca_end)).unwrap();
        assert_ne!(fourth.ca_pem(), third.ca_pem());
        assert_ne!(fourth.generation(), third.generation());
    }

    #[test]
    fn renew_if_due_rotates_only_near_the_end() {
        let signer = AttestedSigner::in_memory(at(T0)).unwrap();
        let generation = signer.generation();
        assert!(!signer.renew_if_due(at(T0 + 300 * 86_400)).unwrap());
        assert_eq!(signer.generation(), generation);
        assert!(signer.renew_if_due(at(T0 + 340 * 86_400)).unwrap());
        assert_ne!(signer.generation(), generation);
    }

    #[test]
    fn concurrent_first_requests_for_a_region_issue_one_leaf() {
        let store = Arc::new(MemoryKeyStore::default());
        let signer = Arc::new(AttestedSigner::open(store.clone(), None, at(T0)).unwrap());
        let leaves: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let signer = Arc::clone(&signer);
                    s.spawn(move || {
                        signer
                            .leaf_pem(Cloud::Public, "northeurope", at(T0))
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(leaves.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(
            kids(store.as_ref()).len(),
            3,
            "ca, public, public-northeurope"
        );
    }

    #[test]
    fn debug_never_shows_keys() {
        let store = Arc::new(MemoryKeyStore::default());
        let signer = AttestedSigner::open(store.clone(), None, at(T0)).unwrap();
        signer.prepare(Cloud::Public, "eastus", at(T0)).unwrap();
        let shown = format!("{signer:?}{:?}", store.load().unwrap());
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert!(!shown.contains("MII"), "{shown}");
    }
}
