//! The token cache (spec §4.3): one token per (VM, identity, resource), served until shortly
//! before it expires, so the common request costs a map lookup instead of an RSA signature.
//!
//! Concurrent requests for a token that is missing or due for refresh collapse into one
//! signing (single-flight): the first takes the slot's async lock and signs; the others wait
//! on the lock and then find the new token. Reads of a fresh token take no lock but the map's
//! read lock.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwapOption;

use crate::identity::token::IssuedToken;

/// Entries kept at most. Resources are chosen by guests, so the key space is unbounded; past
/// this, expired entries are swept, and if that frees nothing new keys are served uncached
/// (the identity rate limit still bounds how often they are signed).
pub const MAX_ENTRIES: usize = 10_000;

/// Refresh margin: a cached token is replaced once it has less than this left, at most a
/// quarter of its lifetime (so short test lifetimes still get cache hits). Azure refreshes
/// "some time before expiry" (§4.3); five minutes matches the `nbf` skew Entra allows.
fn refresh_margin(lifetime: u64) -> u64 {
    (lifetime / 4).min(300)
}

/// Whether `token` may still be served at `now`.
pub fn is_fresh(token: &IssuedToken, now: u64) -> bool {
    now >= token.issued && now.saturating_add(refresh_margin(token.lifetime)) < token.expires_on
}

/// Tokens by (VM id, client id, resource).
#[derive(Debug, Default)]
pub struct TokenCache {
    slots: RwLock<HashMap<String, Arc<Slot>>>,
    /// Requests answered with a token already signed (metrics).
    hits: AtomicU64,
    /// Tokens signed (metrics).
    issued: AtomicU64,
}

#[derive(Debug, Default)]
struct Slot {
    token: ArcSwapOption<IssuedToken>,
    /// Bumped after each new token is stored: a waiter that sees it changed knows a token was
    /// signed after it arrived.
    generation: AtomicU64,
    /// Held while signing. An async lock, held across the signing `.await` by design: that is
    /// what makes concurrent misses wait for one signature instead of each making their own.
    refresh: tokio::sync::Mutex<()>,
}

impl TokenCache {
    pub fn new() -> TokenCache {
        TokenCache::default()
    }

    /// The cached token for the key if fresh at `now` (and `bypass` is false), else the one
    /// `issue` makes, which is then cached. Callers that arrive while `issue` runs get its token.
    pub async fn get_or_issue<E, F, Fut>(
        &self,
        vm_id: &str,
        client_id: &str,
        resource: &str,
        now: u64,
        bypass: bool,
        issue: F,
    ) -> Result<Arc<IssuedToken>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<IssuedToken, E>>,
    {
        let slot = self.slot(format!("{vm_id}\0{client_id}\0{resource}"), now);
        let seen = slot.generation.load(Ordering::Acquire);
        if !bypass && let Some(token) = slot.token.load_full().filter(|t| is_fresh(t, now)) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(token);
        }
        let _signing = slot.refresh.lock().await;
        if slot.generation.load(Ordering::Acquire) != seen
            && let Some(token) = slot
                .token
                .load_full()
                .filter(|t| bypass || is_fresh(t, now))
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(token);
        }
        let token = Arc::new(issue().await?);
        self.issued.fetch_add(1, Ordering::Relaxed);
        slot.token.store(Some(Arc::clone(&token)));
        slot.generation.fetch_add(1, Ordering::Release);
        Ok(token)
    }

    /// Requests answered with an already signed token (fresh, or signed while they waited).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Tokens signed.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, key: String, now: u64) -> Arc<Slot> {
        if let Some(slot) = self
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Arc::clone(slot);
        }
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= MAX_ENTRIES && !slots.contains_key(&key) {
            // Expired and not in use by a request (the map holds the only reference).
            slots.retain(|_, s| {
                Arc::strong_count(s) > 1
                    || s.token.load().as_ref().is_some_and(|t| t.expires_on > now)
            });
            if slots.len() >= MAX_ENTRIES {
                return Arc::new(Slot::default());
            }
        }
        Arc::clone(slots.entry(key).or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    fn token(now: u64, lifetime: u64, n: usize) -> IssuedToken {
        IssuedToken {
            access_token: format!("token-{n}"),
            client_id: "c".into(),
            resource: "r".into(),
            not_before: now - 300,
            expires_on: now + lifetime,
            issued: now,
            lifetime,
        }
    }

    #[tokio::test]
    async fn hits_until_the_refresh_margin_then_reissues() {
        let cache = TokenCache::new();
        let signed = AtomicUsize::new(0);
        let get = |now: u64, bypass: bool| {
            let signed = &signed;
            let cache = &cache;
            async move {
                cache
                    .get_or_issue("vm", "c", "r", now, bypass, || async move {
                        let n = signed.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, ()>(token(now, 3600, n))
                    })
                    .await
                    .unwrap()
                    .access_token
                    .clone()
            }
        };
        assert_eq!(get(1000, false).await, "token-0");
        assert_eq!(
            get(1000 + 3600 - 301, false).await,
            "token-0",
            "still outside the margin"
        );
        assert_eq!(
            get(1000 + 3600 - 300, false).await,
            "token-1",
            "refreshed 5 min before expiry"
        );
        assert_eq!(get(5000, true).await, "token-2", "bypass_cache signs anew");
        assert_eq!(
            get(5000, false).await,
            "token-2",
            "and the new token is cached"
        );
        assert_eq!(refresh_margin(60), 15);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_sign_once() {
        let cache = Arc::new(TokenCache::new());
        let signed = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, signed) = (Arc::clone(&cache), Arc::clone(&signed));
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_issue("vm", "c", "r", 1000, false, || async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, ()>(token(1000, 3600, signed.fetch_add(1, Ordering::SeqCst)))
                    })
                    .await
                    .unwrap()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().access_token, "token-0");
        }
        assert_eq!(signed.load(Ordering::SeqCst), 1);
        // Different resources are different entries.
        let other = cache
            .get_or_issue("vm", "c", "r2", 1000, false, || async {
                Ok::<_, ()>(token(1000, 3600, 9))
            })
            .await
            .unwrap();
        assert_eq!(other.access_token, "token-9");
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn a_failed_issue_is_not_cached() {
        let cache = TokenCache::new();
        let err = cache
            .get_or_issue("vm", "c", "r", 1000, false, || async {
                Err::<IssuedToken, _>("boom")
            })
            .await;
        assert_eq!(err.unwrap_err(), "boom");
        let ok = cache
            .get_or_issue("vm", "c", "r", 1000, false, || async {
                Ok::<_, ()>(token(1000, 60, 1))
            })
            .await
            .unwrap();
        assert_eq!(ok.access_token, "token-1");
    }
}
