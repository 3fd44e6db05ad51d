//! The request journal: per VM, the last N guest requests, kept in memory (issue 10), so a
//! test can assert what its software asked IMDS.
//!
//! Recording is cheap and bounded: the ring's slots are reused, so once a VM's journal is full
//! an entry costs copying the request target and User-Agent into buffers that already have
//! room, under the VM's own lock, and never an allocation or a formatting step. Entries become
//! JSON only when read. What is kept: time, method, path and query as sent, status, duration,
//! the fault that answered, the User-Agent and whether `Metadata: true` was sent. Never a
//! header value but the User-Agent, never a body (no token, no signed document, no user data).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::Method;
use tokio::sync::Notify;

use crate::telemetry::endpoint::GuestEndpoint;

/// Longest request target kept (a request head may be 16 KiB; journals are for reading).
pub const MAX_TARGET: usize = 2048;
/// Longest User-Agent kept.
pub const MAX_USER_AGENT: usize = 512;

/// One journaled request.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Increases by one per request of this VM, from 1.
    pub seq: u64,
    /// When the request arrived, on the server's clock.
    pub at: SystemTime,
    pub method: Method,
    pub endpoint: GuestEndpoint,
    /// Path and query as sent (at most [`MAX_TARGET`] bytes).
    pub target: Vec<u8>,
    /// 0 when a stall or reset fault answered nothing.
    pub status: u16,
    pub duration: Duration,
    /// The fault rule that answered, and its action.
    pub fault: Option<(Arc<str>, &'static str)>,
    pub user_agent: Option<Vec<u8>>,
    /// Whether exactly one `Metadata: true` header was sent.
    pub metadata_header: bool,
}

impl Default for Entry {
    fn default() -> Entry {
        Entry {
            seq: 0,
            at: SystemTime::UNIX_EPOCH,
            method: Method::GET,
            endpoint: GuestEndpoint::Other,
            target: Vec::new(),
            status: 0,
            duration: Duration::ZERO,
            fault: None,
            user_agent: None,
            metadata_header: false,
        }
    }
}

/// Copies `from` into `into`, reusing its room, at most `max` bytes.
pub fn copy_bounded(into: &mut Vec<u8>, from: &[u8], max: usize) {
    into.clear();
    into.extend_from_slice(&from[..from.len().min(max)]);
}

/// The kept entries, oldest first from `oldest` (wrapping). A full ring's next entry is
/// written over its oldest in place: no entry moves.
#[derive(Debug, Default)]
struct Ring {
    slots: Vec<Entry>,
    oldest: usize,
    /// The sequence number of the next entry.
    next: u64,
}

impl Ring {
    /// Oldest first.
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        let (newer, older) = self.slots.split_at(self.oldest);
        older.iter().chain(newer)
    }
}

/// What a read returns.
#[derive(Debug)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// The sequence number the next entry will have: pass `next - 1` as `after` to follow.
    pub next: u64,
    /// Whether entries after `after` were already pushed out of the ring.
    pub missed: bool,
}

/// One VM's journal.
#[derive(Debug, Default)]
pub struct Journal {
    ring: Mutex<Ring>,
    /// Readers waiting for a new entry; recording notifies only when there are some.
    followers: AtomicUsize,
    grew: Notify,
}

impl Journal {
    /// Appends one entry (dropping the oldest beyond `capacity`); `fill` sets its fields.
    pub fn record(&self, capacity: usize, fill: impl FnOnce(&mut Entry)) {
        {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            let ring = &mut *ring;
            ring.next = ring.next.max(1);
            let seq = ring.next;
            ring.next += 1;
            let entry = if ring.slots.len() >= capacity.max(1) {
                let at = ring.oldest;
                ring.oldest = (at + 1) % ring.slots.len();
                &mut ring.slots[at]
            } else {
                // Not full yet: the newest is last, and the oldest stays first. Grown by
                // doubling from one slot, not Vec's four: at 100k VMs most journals hold a
                // request or two, and a slot is about 130 bytes.
                if ring.slots.len() == ring.slots.capacity() {
                    let more = ring
                        .slots
                        .len()
                        .max(1)
                        .min(capacity.max(1) - ring.slots.len());
                    ring.slots.reserve_exact(more);
                }
                ring.slots.push(Entry::default());
                ring.slots.last_mut().expect("just pushed")
            };
            entry.seq = seq;
            fill(entry);
        }
        if self.followers.load(Ordering::Relaxed) > 0 {
            self.grew.notify_waiters();
        }
    }

    /// Entries after sequence number `after` (all kept ones if `None`), oldest first, at most
    /// `limit`: the newest `limit` when `after` is `None`, else the oldest after it.
    pub fn read(&self, after: Option<u64>, limit: usize) -> Page {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let next = ring.next.max(1);
        let oldest = ring.entries().next().map_or(next, |e| e.seq);
        let (entries, missed) = match after {
            None => {
                let skip = ring.slots.len().saturating_sub(limit);
                (ring.entries().skip(skip).cloned().collect(), false)
            }
            Some(after) => (
                ring.entries()
                    .filter(|e| e.seq > after)
                    .take(limit)
                    .cloned()
                    .collect(),
                after + 1 < oldest,
            ),
        };
        Page {
            entries,
            next,
            missed,
        }
    }

    /// Waits until an entry after `after` exists, or `timeout` passes.
    pub async fn wait_after(&self, after: u64, timeout: Duration) {
        struct Following<'j>(&'j AtomicUsize);
        impl Drop for Following<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.followers.fetch_add(1, Ordering::Relaxed);
        let _following = Following(&self.followers);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.grew.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = self.ring.lock().unwrap_or_else(|p| p.into_inner()).next;
            if next > after + 1 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(journal: &Journal, capacity: usize, path: &str) {
        journal.record(capacity, |e| {
            copy_bounded(&mut e.target, path.as_bytes(), MAX_TARGET);
            e.status = 200;
        });
    }

    #[test]
    fn keeps_the_last_entries_and_reuses_their_room() {
        let journal = Journal::default();
        for i in 0..5 {
            record(&journal, 3, &format!("/p{i}"));
        }
        let page = journal.read(None, 10);
        let targets: Vec<_> = page.entries.iter().map(|e| e.target.clone()).collect();
        assert_eq!(targets, [b"/p2".to_vec(), b"/p3".to_vec(), b"/p4".to_vec()]);
        assert_eq!(page.entries[0].seq, 3);
        assert_eq!(page.next, 6);
        let after = journal.read(Some(1), 10);
        assert!(after.missed, "entry 2 was pushed out");
        assert_eq!(after.entries.len(), 3);
        let tail = journal.read(Some(4), 10);
        assert_eq!(tail.entries.len(), 1);
        assert!(!tail.missed);
        assert_eq!(journal.read(None, 1).entries[0].seq, 5);
    }

    #[test]
    fn long_targets_are_cut() {
        let mut buffer = Vec::new();
        copy_bounded(&mut buffer, &[b'a'; 5000], MAX_TARGET);
        assert_eq!(buffer.len(), MAX_TARGET);
    }

    #[tokio::test]
    async fn a_follower_wakes_on_the_next_entry() {
        let journal = Arc::new(Journal::default());
        record(&journal, 8, "/a");
        let waiting = {
            let journal = Arc::clone(&journal);
            tokio::spawn(async move { journal.wait_after(1, Duration::from_secs(30)).await })
        };
        while journal.followers.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        record(&journal, 8, "/b");
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by the entry")
            .unwrap();
    }
}
