//! `<prefix>progress/<host>`: the newest store revision a host's snapshot applied, attached
//! to a lease the host keeps alive (TTL [`LEASE_TTL`]), so the key vanishes when the host is
//! gone. A host gaining a moved VM reads them (`registry/fence.rs`) and watches them.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, PutOptions};
use tokio::sync::mpsc;

use crate::store::Error;
use crate::store::etcd::{CALL_TIMEOUT, Etcd};
use crate::store::progress::{ProgressFeed, ProgressReporter};

/// How long a host's progress key outlives its last keep-alive: how long a move away from a
/// host that stopped (or lost etcd) waits before the new host serves the VM anyway.
pub(in crate::store) const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often the lease is kept alive (and a progress not written yet is written): a third of
/// the TTL, so two keep-alives may be lost before it expires.
const KEEP_ALIVE: Duration = Duration::from_millis(3300);
/// After a failed grant (etcd away), the first retry, doubled up to the maximum.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(2);

impl Etcd {
    /// Grants this host's lease and writes its progress (`applied`) before returning, so the
    /// key exists before the host serves anything; then keeps both up on the client's
    /// runtime for as long as the reporter lives.
    pub(in crate::store) fn start_progress(
        &self,
        host: &str,
        applied: u64,
    ) -> Result<ProgressReporter, Error> {
        let key = self.key(&format!("progress/{host}"));
        let (client, put_key) = (self.client.clone(), key.clone());
        // Retried only when the client could not reach a member (nothing was sent); a grant
        // that was made and whose put was not is a lease nobody keeps alive: it expires.
        let lease = self.call(move |_| {
            let (client, put_key) = (client.clone(), put_key.clone());
            async move { grant_and_put(client, put_key, applied).await }
        })?;
        let (reporter, feed) = ProgressReporter::new(applied);
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the store");
        runtime.spawn(keep(self.client.clone(), key, lease, applied, feed));
        Ok(reporter)
    }

    /// Every host's progress now. A value that is not a revision counts as 0 (not applied
    /// anything): a move waits for that host's lease rather than trusting it.
    pub(in crate::store) fn progress(&self) -> Result<BTreeMap<String, u64>, Error> {
        let mut hosts = BTreeMap::new();
        self.scan("progress/", |host, value, _| {
            let revision = std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(0);
            hosts.insert(host.to_string(), revision);
            Ok(())
        })?;
        Ok(hosts)
    }

    /// A message whenever a host's progress changed or its key vanished (see
    /// [`Etcd::watch_prefix`]).
    pub(in crate::store) fn watch_progress(&self) -> mpsc::Receiver<()> {
        self.watch_prefix("progress/")
    }
}

/// A new lease, and the key written under it: the lease's id.
async fn grant_and_put(
    client: Client,
    key: String,
    applied: u64,
) -> Result<i64, etcd_client::Error> {
    let ttl = i64::try_from(LEASE_TTL.as_secs()).unwrap_or(10);
    let lease = client.lease_client().grant(ttl, None).await?.id();
    put(&client, &key, lease, applied).await?;
    Ok(lease)
}

async fn put(
    client: &Client,
    key: &str,
    lease: i64,
    applied: u64,
) -> Result<(), etcd_client::Error> {
    let options = PutOptions::new().with_lease(lease);
    client
        .kv_client()
        .put(key, applied.to_string(), Some(options))
        .await?;
    Ok(())
}

/// Keeps the lease alive and the key current until the reporter is dropped; a lease lost
/// (etcd away longer than its TTL, or the connection broken) is replaced by a new one and
/// the key written again.
async fn keep(
    client: Client,
    key: String,
    mut lease: i64,
    mut written: u64,
    mut feed: ProgressFeed,
) {
    let mut retry = FIRST_RETRY;
    loop {
        if lease == 0 {
            let latest = feed.latest();
            match tokio::time::timeout(
                CALL_TIMEOUT,
                grant_and_put(client.clone(), key.clone(), latest),
            )
            .await
            {
                Ok(Ok(id)) => {
                    tracing::info!(
                        applied = latest,
                        "this host's progress lease is granted again"
                    );
                    (lease, written, retry) = (id, latest, FIRST_RETRY);
                }
                _ => {
                    tokio::select! {
                        () = tokio::time::sleep(retry) => {}
                        closed = feed.urgent.changed() => if closed.is_err() { return },
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                    continue;
                }
            }
        }
        match keep_lease(&client, &key, lease, &mut written, &mut feed).await {
            None => return,
            Some(reason) => {
                tracing::warn!(%reason, "this host's progress lease is lost; granting a new one");
                lease = 0;
            }
        }
    }
}

/// One lease's life: keep-alives every [`KEEP_ALIVE`] (writing a progress not written yet),
/// an urgent progress at once. `None` when the reporter is gone, else why the lease is lost.
async fn keep_lease(
    client: &Client,
    key: &str,
    lease: i64,
    written: &mut u64,
    feed: &mut ProgressFeed,
) -> Option<String> {
    let (mut keeper, mut answers) = match client.lease_client().keep_alive(lease).await {
        Ok(pair) => pair,
        Err(error) => return Some(error.to_string()),
    };
    let mut tick = tokio::time::interval(KEEP_ALIVE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(error) = keeper.keep_alive().await {
                    return Some(error.to_string());
                }
                match tokio::time::timeout(CALL_TIMEOUT, answers.message()).await {
                    Ok(Ok(Some(answer))) if answer.ttl() > 0 => {}
                    Ok(Ok(Some(_))) => return Some("the lease expired".into()),
                    Ok(Ok(None)) => return Some("the keep-alive stream ended".into()),
                    Ok(Err(error)) => return Some(error.to_string()),
                    Err(_) => return Some("etcd did not answer a keep-alive".into()),
                }
            }
            changed = feed.urgent.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
        }
        let latest = feed.latest();
        if latest > *written {
            match tokio::time::timeout(CALL_TIMEOUT, put(client, key, lease, latest)).await {
                Ok(Ok(())) => *written = latest,
                Ok(Err(error)) => return Some(error.to_string()),
                Err(_) => return Some("etcd did not answer a progress write".into()),
            }
        }
    }
}
