//! [`AttestedSigner::reload`]: two signers on one key store stand for two hosts of a fleet
//! (the etcd store itself is exercised by `tests/it/fleet_keys.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use crate::attested::AttestedSigner;
use crate::attested::certs::Cloud;
use crate::attested::generation::retire_all_but;
use crate::identity::keys::{self, KeyStore, MemoryKeyStore, StoredKey};

const T0: u64 = 1_800_000_000;

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

/// A shared store that counts writes, so a test can say a reload made none.
#[derive(Debug, Default)]
struct Counted {
    keys: MemoryKeyStore,
    writes: AtomicUsize,
}

impl KeyStore for Counted {
    fn load(&self) -> Result<Vec<StoredKey>, keys::Error> {
        self.keys.load()
    }
    fn save(&self, key: &StoredKey) -> Result<(), keys::Error> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.keys.save(key)
    }
    fn remove(&self, kid: &str) -> Result<(), keys::Error> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.keys.remove(kid)
    }
}

fn two_hosts() -> (Arc<Counted>, AttestedSigner, AttestedSigner) {
    let store = Arc::new(Counted::default());
    let a = AttestedSigner::open(store.clone(), None, at(T0)).unwrap();
    let b = AttestedSigner::open(store.clone(), None, at(T0 + 1)).unwrap();
    assert_eq!(
        a.generation(),
        b.generation(),
        "the second host opens the first's"
    );
    (store, a, b)
}

#[test]
fn a_host_follows_another_hosts_regional_leaves_and_rotation_without_writing() {
    let (store, a, b) = two_hosts();
    let writes = || store.writes.load(Ordering::SeqCst);
    assert!(!b.reload(at(T0 + 2)).unwrap(), "nothing changed");

    let eastus = a.leaf_pem(Cloud::Public, "eastus", at(T0 + 10)).unwrap();
    let before = writes();
    assert!(b.reload(at(T0 + 11)).unwrap(), "B gained A's leaf");
    assert_eq!(writes(), before, "a reload writes nothing");
    assert_eq!(
        b.leaf_pem(Cloud::Public, "eastus", at(T0 + 12)).unwrap(),
        eastus
    );
    assert_eq!(writes(), before, "B signs with A's leaf, issuing none");
    assert!(!b.reload(at(T0 + 13)).unwrap());

    let old = a.generation();
    let new = a.rotate(at(T0 + 1000)).unwrap();
    assert_ne!(new, old);
    assert_eq!(b.generation(), old, "not followed before a reload");
    let before = writes();
    assert!(b.reload(at(T0 + 1001)).unwrap());
    assert_eq!(writes(), before);
    assert_eq!(b.generation(), new);
    assert_eq!(
        b.leaf_pem(Cloud::Public, "", at(T0 + 1002)).unwrap(),
        a.leaf_pem(Cloud::Public, "", at(T0 + 1002)).unwrap(),
        "one anchor leaf for the fleet"
    );
    assert!(!a.reload(at(T0 + 1003)).unwrap(), "A already signs with it");
}

#[test]
fn a_rotation_half_done_elsewhere_leaves_the_current_generation() {
    let (store, _a, b) = two_hosts();
    let generation = b.generation();
    // What a rotation writes first: every leaf retired, the new generation not yet stored.
    let mut stored = store.load().unwrap();
    retire_all_but(store.as_ref(), &mut stored, None, T0 as i64 + 5).unwrap();
    let before = store.writes.load(Ordering::SeqCst);
    assert!(!b.reload(at(T0 + 6)).unwrap());
    assert_eq!(b.generation(), generation);
    assert_eq!(store.writes.load(Ordering::SeqCst), before, "nothing made");
    assert!(b.leaf_pem(Cloud::Public, "", at(T0 + 6)).is_ok());
}

#[test]
fn two_hosts_issuing_one_regional_leaf_sign_with_the_stored_one() {
    let (store, a, b) = two_hosts();
    // B has not reloaded since A issued westus: it issues its own, finds A's stored, uses it.
    let from_a = a.leaf_pem(Cloud::Public, "westus", at(T0 + 10)).unwrap();
    let from_b = b.leaf_pem(Cloud::Public, "westus", at(T0 + 11)).unwrap();
    assert_eq!(from_b, from_a);
    let stored: Vec<String> = store
        .load()
        .unwrap()
        .into_iter()
        .filter(|k| k.kid.ends_with("-public-westus"))
        .map(|k| k.certificate_pem)
        .collect();
    assert_eq!(stored, [from_a]);
    assert!(
        !b.reload(at(T0 + 12)).unwrap(),
        "B already holds the stored leaf"
    );
}

#[test]
fn a_leaf_added_to_a_retired_generation_does_not_bring_it_back() {
    let (_store, a, b) = two_hosts();
    let new = a.rotate(at(T0 + 1000)).unwrap();
    // B, not reloaded yet, issues a leaf of its (now retired) generation after the rotation.
    b.prepare(Cloud::Public, "northeurope", at(T0 + 2000))
        .unwrap();
    assert!(b.reload(at(T0 + 2001)).unwrap());
    assert_eq!(
        b.generation(),
        new,
        "newest by the generation's anchor leaf"
    );
    assert!(!a.reload(at(T0 + 2002)).unwrap());
    assert_eq!(a.generation(), new);
}

#[test]
fn a_signer_no_other_host_shares_reloads_nothing() {
    let signer = AttestedSigner::in_memory(at(T0)).unwrap();
    let generation = signer.generation();
    signer.prepare(Cloud::Public, "eastus", at(T0)).unwrap();
    assert!(!signer.reload(at(T0 + 1)).unwrap());
    assert_eq!(signer.generation(), generation);
}
