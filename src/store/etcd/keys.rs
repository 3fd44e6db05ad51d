//! Sealed signing keys in etcd, `<prefix>keys/<collection>/<name>` (`sealed_keys.rs` says what
//! a value holds), and a watch that says when any of them changed.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, WatchOptions};
use tokio::sync::mpsc;

use crate::store::Error;
use crate::store::etcd::{Etcd, range_end};

/// After the key watch broke (etcd away): the first retry, doubled up to the maximum.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(2);

impl Etcd {
    pub(in crate::store) fn key_records(
        &self,
        collection: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let mut records = Vec::new();
        self.scan(&format!("keys/{collection}/"), |name, bytes, _| {
            records.push((name.to_string(), bytes.to_vec()));
            Ok(())
        })?;
        Ok(records)
    }

    pub(in crate::store) fn put_key_record(
        &self,
        collection: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let key = self.key(&format!("keys/{collection}/{name}"));
        let bytes = bytes.to_vec();
        self.commit(move |mut kv| {
            let (key, bytes) = (key.clone(), bytes.clone());
            async move { kv.put(key, bytes, None).await }
        })?;
        Ok(())
    }

    /// One transaction: the put if the key is absent.
    pub(in crate::store) fn create_key_record(
        &self,
        collection: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<bool, Error> {
        let key = self.key(&format!("keys/{collection}/{name}"));
        let txn = Txn::new()
            .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), bytes.to_vec(), None)]);
        let response = self.commit(move |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })?;
        Ok(response.succeeded())
    }

    pub(in crate::store) fn delete_key_record(
        &self,
        collection: &str,
        name: &str,
    ) -> Result<(), Error> {
        let key = self.key(&format!("keys/{collection}/{name}"));
        self.commit(move |mut kv| {
            let key = key.clone();
            async move { kv.delete(key, None).await }
        })?;
        Ok(())
    }

    /// A message whenever a key under `<prefix>keys/` changed, and after the watch was
    /// re-established (changes made meanwhile are not replayed: the receiver reads them all
    /// again), until the receiver is dropped.
    pub(in crate::store) fn watch_keys(&self) -> mpsc::Receiver<()> {
        let (send, receive) = mpsc::channel(1);
        let client = self.client.clone();
        let start = self.key("keys/");
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the store");
        runtime.spawn(async move {
            let end = range_end(&start);
            let mut retry = FIRST_RETRY;
            let mut interrupted = false;
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
                        let changed = !response.events().is_empty()
                            || (response.created() && std::mem::take(&mut interrupted));
                        if response.created() {
                            retry = FIRST_RETRY;
                        }
                        // A full channel already says "changed": the reader reloads everything.
                        if changed && send.try_send(()).is_err() && send.is_closed() {
                            return;
                        }
                    }
                }
                if send.is_closed() {
                    return;
                }
                interrupted = true;
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
            }
        });
        receive
    }
}
