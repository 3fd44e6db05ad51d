//! A definitions file's entries checked on every core while the parser reads on: parsing is
//! sequential, but each entry's check (`vm_from_json`, the written form) depends only on the
//! entry and its default id, so at 100k VMs it is spread over worker threads and the results
//! are taken back in file order. Small files are checked inline, without threads, and so is
//! every file unless the binary allocates with mimalloc ([`Checkers::workers_for`]).

use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::Scope;

use serde_json::Value;

use crate::definition::vm::{VmDefinition, vm_from_json, written_entry};
use crate::problem::Problem;

/// Files smaller than this are checked inline: threads would cost more than they save.
pub(super) const PARALLEL_ABOVE_BYTES: usize = 1 << 20;

/// Entries read but not yet checked, per worker: bounds what the parser runs ahead.
const QUEUE: usize = 64;

/// One entry, checked.
pub(super) struct EntryCheck {
    /// `compute.name`, or `unnamed`: how messages name the VM.
    pub(super) label: String,
    /// The checked VM and its entry as the store keeps it, or every problem in it.
    pub(super) result: Result<(VmDefinition, Box<[u8]>), Vec<Problem>>,
}

/// Checks `entry`, taking `default_id` when it names no `id`.
fn check(entry: Value, default_id: &str) -> EntryCheck {
    let label = entry
        .pointer("/instance/compute/name")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .unwrap_or("unnamed")
        .to_string();
    let result = vm_from_json(&entry, default_id).map(|vm| {
        let written = written_entry(entry, &vm.id);
        (vm, written)
    });
    EntryCheck { label, result }
}

/// Where entries go to be checked: worker threads fed round-robin, or inline.
pub(super) struct Checkers {
    /// Entry `i` goes to worker `i % n`; empty when checking inline.
    to_workers: Vec<SyncSender<(String, Value)>>,
    from_workers: Vec<Receiver<EntryCheck>>,
    inline: Vec<EntryCheck>,
    submitted: usize,
}

impl Checkers {
    /// `workers` threads in `scope` (0: check inline).
    pub(super) fn start<'scope>(scope: &'scope Scope<'scope, '_>, workers: usize) -> Checkers {
        let mut checkers = Checkers {
            to_workers: Vec::with_capacity(workers),
            from_workers: Vec::with_capacity(workers),
            inline: Vec::new(),
            submitted: 0,
        };
        for _ in 0..workers {
            let (to_worker, entries) = sync_channel::<(String, Value)>(QUEUE);
            let (results, from_worker) = channel();
            scope.spawn(move || {
                for (default_id, entry) in entries {
                    if results.send(check(entry, &default_id)).is_err() {
                        return;
                    }
                }
            });
            checkers.to_workers.push(to_worker);
            checkers.from_workers.push(from_worker);
        }
        checkers
    }

    /// The worker count for a file of `bytes`: every core for a large file, none for a small.
    ///
    /// Only with the `mimalloc` feature. The parser allocates each entry's tree and a worker
    /// frees it, and glibc's malloc pays for every such cross-thread free. At 100k VMs,
    /// checking on workers took 32 CPU-s and 25.9 s with glibc, and 15 CPU-s and 11.8 s with
    /// mimalloc (BENCHMARKS.md, "Start and import at 100,000 VMs"). Parsing on the workers
    /// too would remove the cross-thread frees; that is not built yet.
    pub(super) fn workers_for(bytes: usize) -> usize {
        if bytes < PARALLEL_ABOVE_BYTES || !cfg!(feature = "mimalloc") {
            0
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
        }
    }

    /// Hands the next entry (in file order) to be checked.
    pub(super) fn submit(&mut self, default_id: String, entry: Value) {
        let n = self.to_workers.len();
        if n == 0 {
            self.inline.push(check(entry, &default_id));
        } else {
            // A worker only stops early if its results are dropped, i.e. never here.
            let _ = self.to_workers[self.submitted % n].send((default_id, entry));
        }
        self.submitted += 1;
    }

    /// Every result, in the order the entries were submitted.
    pub(super) fn finish(mut self) -> Vec<EntryCheck> {
        self.to_workers.clear(); // the workers end once their queues are drained
        if self.from_workers.is_empty() {
            return self.inline;
        }
        let n = self.from_workers.len();
        let mut all = Vec::with_capacity(self.submitted);
        for i in 0..self.submitted {
            match self.from_workers[i % n].recv() {
                Ok(checked) => all.push(checked),
                // A worker that panicked: its scope re-raises the panic when it ends.
                Err(_) => break,
            }
        }
        all
    }
}
