//! Following the VM records: one etcd watch of `<prefix>vms/`, re-established from the last
//! revision seen whenever it breaks, until the receiver is dropped. And watches that only say
//! "something under this prefix changed" (keys, scheduled events): their readers read it all.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc;

use crate::metadata::json_path;
use crate::store::etcd::{Etcd, range_end, revision_of};
use crate::store::record;
use crate::store::watch::{OwnedRecord, VmChange, WatchEvent};

/// How long to wait before watching again after the watch broke (etcd is away): the first
/// retry, doubled after each failed one up to the maximum.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(2);

impl Etcd {
    /// Every VM record change after revision `after`, delivered on the returned channel.
    pub(in crate::store) fn watch_vms(&self, after: u64) -> mpsc::Receiver<WatchEvent> {
        let (send, receive) = mpsc::channel(64);
        let client = self.client.clone();
        let start = self.key("vms/");
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the store");
        runtime.spawn(follow(client, start, after, send));
        receive
    }

    /// A message whenever a key under `<prefix><name>` changed, and each time the watch was
    /// (re-)established: changes made before are not replayed, so the receiver reads it all
    /// again, which also covers anything written between its first read and the watch's
    /// start. Until the receiver is dropped.
    pub(in crate::store) fn watch_prefix(&self, name: &str) -> mpsc::Receiver<()> {
        let (send, receive) = mpsc::channel(1);
        let client = self.client.clone();
        let start = self.key(name);
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the store");
        runtime.spawn(notify_changes(client, start, send));
        receive
    }
}

async fn notify_changes(client: etcd_client::Client, start: String, send: mpsc::Sender<()>) {
    let end = range_end(&start);
    let mut retry = FIRST_RETRY;
    loop {
        let options = WatchOptions::new().with_range(end.clone());
        let watch = client
            .watch_client()
            .watch(start.as_str(), Some(options))
            .await;
        if let Ok(mut stream) = watch {
            while let Ok(Some(response)) = stream.message().await {
                if response.canceled() {
                    break;
                }
                let changed = !response.events().is_empty() || response.created();
                if response.created() {
                    retry = FIRST_RETRY;
                }
                // A full channel already says "changed": the reader reads everything.
                if changed && send.try_send(()).is_err() && send.is_closed() {
                    return;
                }
            }
        }
        if send.is_closed() {
            return;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

async fn follow(
    client: etcd_client::Client,
    start: String,
    mut seen: u64,
    send: mpsc::Sender<WatchEvent>,
) {
    let end = range_end(&start);
    let mut retry = FIRST_RETRY;
    let mut interrupted = false;
    loop {
        // The previous value names the host a VM moved away from (fencing the move).
        let options = WatchOptions::new()
            .with_range(end.clone())
            .with_prev_key()
            .with_start_revision(i64::try_from(seen + 1).unwrap_or(i64::MAX));
        let reason = match client
            .watch_client()
            .watch(start.as_str(), Some(options))
            .await
        {
            Err(error) => error.to_string(),
            Ok(mut stream) => loop {
                match stream.message().await {
                    Err(error) => break error.to_string(),
                    Ok(None) => break "the watch ended".to_string(),
                    Ok(Some(response)) if response.canceled() => {
                        if response.compact_revision() > 0 {
                            let _ = send.send(WatchEvent::Compacted).await;
                            return;
                        }
                        break format!("the watch was cancelled: {}", response.cancel_reason());
                    }
                    Ok(Some(response)) if response.created() => {
                        retry = FIRST_RETRY;
                        if std::mem::take(&mut interrupted)
                            && send.send(WatchEvent::Resumed).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(Some(response)) => {
                        let mut changes = Vec::new();
                        for event in response.events() {
                            let Some(kv) = event.kv() else { continue };
                            let Ok(key) = kv.key_str() else { continue };
                            let id = key[start.len()..].to_string();
                            let revision = revision_of(kv);
                            seen = seen.max(revision);
                            let record = match event.event_type() {
                                EventType::Delete => None,
                                EventType::Put => match record::decode(&id, kv.value()) {
                                    Ok(view) => Some(OwnedRecord {
                                        origin: view.origin,
                                        entry: view.entry.to_vec(),
                                        checked_by: view.checked.by,
                                        form: view.checked.form.to_vec(),
                                    }),
                                    Err(error) => {
                                        tracing::error!(vm = %id, %error, "a VM record from etcd is damaged; not served");
                                        None
                                    }
                                },
                            };
                            let previous_host = event.prev_kv().and_then(|previous| {
                                let view = record::decode(&id, previous.value()).ok()?;
                                json_path::string_at(view.entry, &["host"])
                            });
                            changes.push(VmChange {
                                id,
                                revision,
                                record,
                                previous_host,
                            });
                        }
                        let revision = response
                            .header()
                            .map_or(seen, |h| u64::try_from(h.revision()).unwrap_or(seen));
                        if changes.is_empty() {
                            continue;
                        }
                        if send
                            .send(WatchEvent::Changes { changes, revision })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            },
        };
        if !std::mem::replace(&mut interrupted, true)
            && send.send(WatchEvent::Interrupted(reason)).await.is_err()
        {
            return;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}
