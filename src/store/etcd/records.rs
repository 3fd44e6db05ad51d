//! The store's records as etcd keys: VMs (conditional writes by `mod_revision`, batches as one
//! transaction), scheduled events, provisioning records.

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};

use crate::store::etcd::{Etcd, revision_of};
use crate::store::{Checked, Error, Expect, Origin, RecordView, StoredVm, record, stored_vm};

/// The changes of one batch, sent as one transaction when it commits.
#[derive(Default)]
pub(in crate::store) struct EtcdBatch {
    prefix: String,
    ops: Vec<TxnOp>,
}

impl EtcdBatch {
    pub(in crate::store) fn put(
        &mut self,
        id: &str,
        origin: Origin,
        entry: &[u8],
        checked: Checked<'_>,
    ) {
        let bytes = record::encode(0, origin, entry, checked);
        self.ops
            .push(TxnOp::put(format!("{}vms/{id}", self.prefix), bytes, None));
    }

    pub(in crate::store) fn delete(&mut self, id: &str) {
        self.ops
            .push(TxnOp::delete(format!("{}vms/{id}", self.prefix), None));
    }
}

/// A VM record read from etcd: the layout's checksum checked, the revision the key's.
fn view<'a>(id: &str, bytes: &'a [u8], revision: u64) -> Result<RecordView<'a>, Error> {
    let stored = record::decode(id, bytes)?;
    Ok(RecordView { revision, ..stored })
}

/// The compares that make a write conditional on `expect` (none: unconditional).
fn compare(key: &str, expect: Expect) -> Vec<Compare> {
    match expect {
        Expect::Anything => vec![],
        Expect::Absent => vec![Compare::version(key, CompareOp::Equal, 0)],
        Expect::Present => vec![Compare::version(key, CompareOp::Greater, 0)],
        Expect::Revision(revision) => vec![Compare::mod_revision(
            key,
            CompareOp::Equal,
            i64::try_from(revision).unwrap_or(i64::MAX),
        )],
    }
}

/// The current revision of the key the `or_else` get of a refused transaction read.
fn refused_current(responses: &[TxnOpResponse]) -> Option<u64> {
    responses.iter().find_map(|response| match response {
        TxnOpResponse::Get(get) => get.kvs().first().map(revision_of),
        _ => None,
    })
}

impl Etcd {
    /// Every VM record at one revision, which is returned.
    pub(in crate::store) fn visit_records(
        &self,
        mut visit: impl FnMut(&str, RecordView<'_>),
    ) -> Result<u64, Error> {
        self.scan("vms/", |id, bytes, revision| {
            visit(id, view(id, bytes, revision)?);
            Ok(())
        })
    }

    pub(in crate::store) fn vm(&self, id: &str) -> Result<Option<StoredVm>, Error> {
        let key = self.key(&format!("vms/{id}"));
        let mut response = self.call(move |mut kv| {
            let key = key.clone();
            async move { kv.get(key, None).await }
        })?;
        response
            .take_kvs()
            .first()
            .map(|kv| stored_vm(id, &view(id, kv.value(), revision_of(kv))?))
            .transpose()
    }

    /// One transaction: the compare `expect` makes, the put; if refused, the current revision.
    pub(in crate::store) fn put_vm(
        &self,
        id: &str,
        origin: Origin,
        entry: &[u8],
        checked: Checked<'_>,
        expect: Expect,
    ) -> Result<(u64, bool), Error> {
        let key = self.key(&format!("vms/{id}"));
        let bytes = record::encode(0, origin, entry, checked);
        let txn = Txn::new()
            .when(compare(&key, expect))
            .and_then([TxnOp::put(
                key.as_str(),
                bytes,
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = self.commit(move |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })?;
        let responses = response.op_responses();
        if !response.succeeded() {
            return Err(Error::PreconditionFailed {
                current: refused_current(&responses),
            });
        }
        self.wrote_vms(response.header());
        let revision = response.header().map_or(0, |h| h.revision());
        let created = !responses
            .iter()
            .any(|r| matches!(r, TxnOpResponse::Put(put) if put.prev_key().is_some()));
        Ok((u64::try_from(revision).unwrap_or(0), created))
    }

    pub(in crate::store) fn vm_count(&self) -> Result<u64, Error> {
        self.count("vms/")
    }

    pub(in crate::store) fn delete_vm(&self, id: &str, expect: Expect) -> Result<bool, Error> {
        let key = self.key(&format!("vms/{id}"));
        let txn = Txn::new()
            .when(compare(&key, expect))
            .and_then([TxnOp::delete(key.as_str(), None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = self.commit(move |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })?;
        let responses = response.op_responses();
        if !response.succeeded() {
            return Err(Error::PreconditionFailed {
                current: refused_current(&responses),
            });
        }
        let deleted = responses
            .iter()
            .any(|r| matches!(r, TxnOpResponse::Delete(delete) if delete.deleted() > 0));
        if deleted {
            self.wrote_vms(response.header());
        }
        Ok(deleted)
    }

    /// `fill`'s changes as one transaction (at most `--etcd-max-txn-ops`).
    pub(in crate::store) fn batch<T, E: From<Error>>(
        &self,
        fill: impl FnOnce(&mut EtcdBatch) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut batch = EtcdBatch {
            prefix: self.prefix.clone(),
            ops: Vec::new(),
        };
        let value = fill(&mut batch)?;
        self.transaction(batch.ops)?;
        Ok(value)
    }

    /// Refuses `ops` operations when they are more than one transaction may hold.
    pub(super) fn fits_one_transaction(&self, ops: usize) -> Result<(), Error> {
        if ops > self.max_txn_ops {
            return Err(Error::BatchTooLarge {
                changes: ops,
                limit: self.max_txn_ops,
            });
        }
        Ok(())
    }

    /// Commits `ops` together, or refuses them all when they are more than one transaction
    /// may hold.
    fn transaction(&self, ops: Vec<TxnOp>) -> Result<(), Error> {
        if ops.is_empty() {
            return Ok(());
        }
        self.fits_one_transaction(ops.len())?;
        let txn = Txn::new().and_then(ops);
        let response = self.commit(move |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })?;
        self.wrote_vms(response.header());
        Ok(())
    }

    /// Not rewritten on etcd: a record's revision is its key's mod_revision, so storing a new
    /// checked form would change every VM's ETag (and wake every host's watch) for a change
    /// no user made. Each start checks such entries again instead; the cost is CPU at start
    /// after an upgrade, until the VM is next written.
    pub(in crate::store) fn refresh_checked(
        &self,
        _forms: &[(String, Vec<u8>)],
        _by: u64,
    ) -> Result<(), Error> {
        Ok(())
    }

    pub(in crate::store) fn provisioning_records(&self) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let mut records = Vec::new();
        self.scan("provisioning/", |vm, bytes, _| {
            records.push((vm.to_string(), bytes.to_vec()));
            Ok(())
        })?;
        Ok(records)
    }

    pub(in crate::store) fn provisioning_record(&self, vm: &str) -> Result<Option<Vec<u8>>, Error> {
        let key = self.key(&format!("provisioning/{vm}"));
        let mut response = self.call(move |mut kv| {
            let key = key.clone();
            async move { kv.get(key, None).await }
        })?;
        Ok(response.take_kvs().first().map(|kv| kv.value().to_vec()))
    }

    pub(in crate::store) fn put_provisioning(&self, vm: &str, bytes: &[u8]) -> Result<(), Error> {
        let key = self.key(&format!("provisioning/{vm}"));
        let bytes = bytes.to_vec();
        self.commit(move |mut kv| {
            let (key, bytes) = (key.clone(), bytes.clone());
            async move { kv.put(key, bytes, None).await }
        })?;
        Ok(())
    }

    pub(in crate::store) fn delete_provisioning(&self, vm: &str) -> Result<bool, Error> {
        let key = self.key(&format!("provisioning/{vm}"));
        let response = self.commit(move |mut kv| {
            let key = key.clone();
            async move { kv.delete(key, None).await }
        })?;
        Ok(response.deleted() > 0)
    }
}
