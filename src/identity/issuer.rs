//! The token issuer: signing keys, the token cache and the lifetime, behind one handle the
//! guest plane calls per request and the control plane calls to rotate keys and publish them.
//!
//! Also the relying party's side: [`Issuer::jwks`] and [`openid_configuration`], the documents
//! a service fetches to validate azimds tokens exactly as it validates Entra ID tokens.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::identity::cache::TokenCache;
use crate::identity::definition::Identity;
use crate::identity::keys::{self, KeyRing, KeyStore, MemoryKeyStore};
use crate::identity::token::{self, Grant, IssuedToken, NOT_BEFORE_SKEW};
use crate::identity::{Error, unix_seconds};

/// Signs and caches managed-identity tokens.
#[derive(Debug)]
pub struct Issuer {
    store: Arc<dyn KeyStore>,
    keys: ArcSwap<KeyRing>,
    /// Serialises rotations (store writes); never taken on the request path.
    rotating: Mutex<()>,
    lifetime: u64,
    cache: TokenCache,
}

impl Issuer {
    /// Loads the keys in `store` (making the first one if it is empty). `lifetime` is the
    /// token lifetime in seconds.
    pub fn open(
        store: Arc<dyn KeyStore>,
        lifetime: u64,
        now: SystemTime,
    ) -> Result<Issuer, keys::Error> {
        let keys = KeyRing::open(store.as_ref(), unix_seconds(now), retention(lifetime))?;
        Ok(Issuer {
            store,
            keys: ArcSwap::from_pointee(keys),
            rotating: Mutex::new(()),
            lifetime,
            cache: TokenCache::new(),
        })
    }

    /// An issuer whose keys live in memory only (tests; a plane built without a data directory).
    pub fn in_memory(lifetime: u64, now: SystemTime) -> Result<Issuer, keys::Error> {
        Issuer::open(Arc::new(MemoryKeyStore::default()), lifetime, now)
    }

    /// Token lifetime in seconds.
    pub fn lifetime(&self) -> u64 {
        self.lifetime
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// A token for `identity` of VM `vm_id` and `resource`: the cached one while fresh, else a
    /// new one signed on a blocking thread (an RSA signature would stall the worker for about
    /// 260 µs). `bypass` forces a new token (`bypass_cache=true`).
    pub async fn token(
        &self,
        vm_id: &str,
        tenant_id: &str,
        identity: &Identity,
        resource: &str,
        now: SystemTime,
        bypass: bool,
    ) -> Result<Arc<IssuedToken>, Error> {
        let now = unix_seconds(now);
        self.cache
            .get_or_issue(
                vm_id,
                &identity.client_id,
                resource,
                now,
                bypass,
                || async {
                    let key = Arc::clone(self.keys.load().current());
                    let (identity, tenant_id, resource) = (
                        identity.clone(),
                        tenant_id.to_string(),
                        resource.to_string(),
                    );
                    let lifetime = self.lifetime;
                    tokio::task::spawn_blocking(move || {
                        let grant = Grant {
                            identity: &identity,
                            tenant_id: &tenant_id,
                            resource: &resource,
                        };
                        token::sign(&key, grant, now, lifetime)
                    })
                    .await
                    .map_err(|e| Error::Task(e.to_string()))?
                    .map_err(Error::Keys)
                },
            )
            .await
    }

    /// Starts signing with a new key. The previous keys stay published (in [`Issuer::jwks`])
    /// until every token they signed has expired. Returns the new key's `kid`. Blocking (key
    /// generation and store writes): call it from a blocking context.
    pub fn rotate(&self, now: SystemTime) -> Result<String, keys::Error> {
        let _one_at_a_time = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        let ring = KeyRing::rotate(
            self.store.as_ref(),
            unix_seconds(now),
            retention(self.lifetime),
        )?;
        let kid = ring.current().kid().to_string();
        self.keys.store(Arc::new(ring));
        Ok(kid)
    }

    /// Reads the keys from the store again (fleet mode: another host rotated them), so this
    /// host signs with the fleet's current key and publishes the same JWKS. Returns whether
    /// the key set changed. Blocking (store reads).
    pub fn reload(&self, now: SystemTime) -> Result<bool, keys::Error> {
        let _one_at_a_time = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ring) = KeyRing::reload(
            self.store.as_ref(),
            unix_seconds(now),
            retention(self.lifetime),
        )?
        else {
            return Ok(false);
        };
        let kids = |ring: &KeyRing| -> Vec<String> {
            ring.published()
                .iter()
                .map(|k| k.kid().to_string())
                .collect()
        };
        let changed = kids(&ring) != kids(&self.keys.load());
        if changed {
            self.keys.store(Arc::new(ring));
        }
        Ok(changed)
    }

    /// The `kid` of the key signing new tokens.
    pub fn current_kid(&self) -> String {
        self.keys.load().current().kid().to_string()
    }

    /// Every published key's `kid`, and whether it is the one signing new tokens.
    pub fn key_ids(&self) -> Vec<(String, bool)> {
        let ring = self.keys.load();
        let current = ring.current().kid();
        ring.published()
            .iter()
            .map(|k| (k.kid().to_string(), k.kid() == current))
            .collect()
    }

    /// The JSON Web Key Set of every published key, public parts only, in the shape of Entra's
    /// `https://login.microsoftonline.com/common/discovery/keys`.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .load()
            .published()
            .iter()
            .map(|k| k.jwk())
            .collect();
        json!({ "keys": keys })
    }
}

/// How long a retired key stays published: a token signed just before retirement lives
/// `lifetime`, plus Entra's `nbf` skew and a margin for relying parties' clock skew.
fn retention(lifetime: u64) -> u64 {
    lifetime + NOT_BEFORE_SKEW + 600
}

/// The OpenID Connect discovery document of `tenant` as Entra ID v1 publishes it at
/// `https://login.microsoftonline.com/<tenant>/.well-known/openid-configuration`, with
/// azimds' `base_url` (where the control listener serves `/common/discovery/keys`) in place of
/// Entra's host. `issuer` is what the tokens carry: `https://sts.windows.net/<tenant>/`.
/// The authorization and token endpoints are listed because OpenID discovery requires them;
/// azimds serves neither (tokens come from the guest plane).
pub fn openid_configuration(tenant: &str, base_url: &str) -> Value {
    let base = base_url.trim_end_matches('/');
    json!({
        "token_endpoint": format!("{base}/{tenant}/oauth2/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/common/discovery/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "scopes_supported": ["openid"],
        "issuer": token::issuer_url(tenant),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/authorize"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "oid", "tid", "appid", "appidacr", "idtyp", "xms_mirid"],
        "tenant_region_scope": null,
        "cloud_instance_name": "microsoftonline.com",
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::identity::definition::Kind;

    #[tokio::test]
    async fn rotation_publishes_both_keys_and_signs_with_the_new_one() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let issuer = Issuer::in_memory(3600, t0).unwrap();
        let old = issuer.current_kid();
        let identity = Identity {
            kind: Kind::System,
            client_id: "11111111-1111-4111-8111-111111111111".into(),
            object_id: "22222222-2222-4222-8222-222222222222".into(),
            resource_id:
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v"
                    .into(),
        };
        let first = issuer
            .token("vm", "t", &identity, "https://a", t0, false)
            .await
            .unwrap();
        let new = issuer.rotate(t0).unwrap();
        assert_ne!(new, old);
        let kids: Vec<String> = issuer.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(kids, [new.clone(), old]);
        // Cached tokens signed by the old key are still served (its key is still published)...
        let cached = issuer
            .token("vm", "t", &identity, "https://a", t0, false)
            .await
            .unwrap();
        assert_eq!(cached.access_token, first.access_token);
        // ...and new tokens carry the new kid.
        let fresh = issuer
            .token("vm", "t", &identity, "https://b", t0, false)
            .await
            .unwrap();
        assert!(
            fresh
                .access_token
                .starts_with(issuer.keys.load().current().header())
        );
        let jwks = issuer.jwks().to_string();
        assert!(
            !jwks.contains("PRIVATE") && !jwks.contains("\"d\""),
            "public parts only"
        );
    }

    #[test]
    fn openid_configuration_points_at_the_keys() {
        let doc = openid_configuration(
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "http://127.0.0.1:16926/",
        );
        assert_eq!(
            doc["issuer"],
            "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"
        );
        assert_eq!(
            doc["jwks_uri"],
            "http://127.0.0.1:16926/common/discovery/keys"
        );
        assert_eq!(doc["id_token_signing_alg_values_supported"][0], "RS256");
    }
}
