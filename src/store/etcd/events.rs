//! Scheduled events in etcd, shared by every host of a fleet: read at one revision, and written
//! as one transaction that compares the revision the writer read them at.
//!
//! Every events write also puts `<prefix>events-written`, so that key's `mod_revision` is the
//! revision of the whole events state (events, incarnations, imports). A writer's transaction
//! compares it with the revision its book was read at: when another host wrote in between
//! (a guest's approval there, its timer starting an event) the write is refused whole and the
//! writer reads again and redoes its change on what is there now. So no change is lost to a
//! concurrent one, and a transition (an event starting, completing) happens once fleet-wide:
//! the second host to try finds it done. Events are few and change at human pace, so one
//! guard for all of them costs nothing that matters and keeps every write simple.

use std::collections::{BTreeSet, HashMap};

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use tokio::sync::mpsc;

use crate::events::Event;
use crate::store::etcd::{Etcd, corrupt, revision_of};
use crate::store::{Error, StoredEvents};

/// The key every events write puts (see the module comment).
const WRITTEN: &str = "events-written";

impl Etcd {
    /// Every event, incarnation and import record, all at one store revision, and the events
    /// revision they are at.
    pub(in crate::store) fn events(&self) -> Result<StoredEvents, Error> {
        let key = self.key(WRITTEN);
        let response = self.call(move |mut kv| {
            let key = key.clone();
            async move { kv.get(key, None).await }
        })?;
        let at = response
            .header()
            .map_or(0, |h| u64::try_from(h.revision()).unwrap_or(0));
        let revision = response.kvs().first().map_or(0, revision_of);
        let mut events = Vec::new();
        self.scan_at("events/", at, |id, bytes, _| {
            events.push(serde_json::from_slice(bytes).map_err(|e| corrupt(id, &e))?);
            Ok(())
        })?;
        let mut incarnations = HashMap::new();
        self.scan_at("incarnations/", at, |vm, bytes, _| {
            let number = std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| corrupt(vm, &"an incarnation is not a number"))?;
            incarnations.insert(vm.to_string(), number);
            Ok(())
        })?;
        let mut imported = BTreeSet::new();
        self.scan_at("imported/", at, |key, _, _| {
            imported.insert(key.to_string());
            Ok(())
        })?;
        Ok(StoredEvents {
            events,
            incarnations,
            imported,
            revision,
        })
    }

    /// One transaction: the changes and the events revision put, if the events are still at
    /// revision `expect` (`None`: whatever they are at). Returns the new events revision;
    /// [`Error::PreconditionFailed`] when another writer came first, nothing written.
    pub(in crate::store) fn write_events(
        &self,
        expect: Option<u64>,
        written: &[&Event],
        removed: &[&str],
        incarnations: &[(&str, u64)],
        imported: &[&str],
    ) -> Result<u64, Error> {
        let guard = self.key(WRITTEN);
        let mut ops = vec![TxnOp::put(guard.as_str(), "", None)];
        for event in written {
            let bytes = serde_json::to_vec(event).expect("an Event serializes");
            ops.push(TxnOp::put(
                self.key(&format!("events/{}", event.id)),
                bytes,
                None,
            ));
        }
        for id in removed {
            ops.push(TxnOp::delete(self.key(&format!("events/{id}")), None));
        }
        for (vm, incarnation) in incarnations {
            let key = self.key(&format!("incarnations/{vm}"));
            ops.push(TxnOp::put(key, incarnation.to_string(), None));
        }
        for key in imported {
            ops.push(TxnOp::put(self.key(&format!("imported/{key}")), "1", None));
        }
        self.fits_one_transaction(ops.len())?;
        let compares = match expect {
            None => vec![],
            Some(0) => vec![Compare::version(guard.as_str(), CompareOp::Equal, 0)],
            Some(revision) => vec![Compare::mod_revision(
                guard.as_str(),
                CompareOp::Equal,
                i64::try_from(revision).unwrap_or(i64::MAX),
            )],
        };
        let txn = Txn::new().when(compares).and_then(ops);
        let response = self.commit(move |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })?;
        if !response.succeeded() {
            return Err(Error::PreconditionFailed { current: None });
        }
        Ok(response
            .header()
            .map_or(0, |h| u64::try_from(h.revision()).unwrap_or(0)))
    }

    /// A message whenever any host wrote scheduled events.
    pub(in crate::store) fn watch_events(&self) -> mpsc::Receiver<()> {
        self.watch_prefix(WRITTEN)
    }
}
