//! Sealed signing keys in etcd, `<prefix>keys/<collection>/<name>` (`sealed_keys.rs` says what
//! a value holds), and a watch that says when any of them changed.

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use tokio::sync::mpsc;

use crate::store::Error;
use crate::store::etcd::Etcd;

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

    /// A message whenever a key under `<prefix>keys/` changed (see [`Etcd::watch_prefix`]).
    pub(in crate::store) fn watch_keys(&self) -> mpsc::Receiver<()> {
        self.watch_prefix("keys/")
    }
}
