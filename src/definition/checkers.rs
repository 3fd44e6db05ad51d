//! A large definitions file's entries parsed and checked on every core. `split.rs` cuts the
//! file into its entries' texts; here each entry is parsed by the thread that checks it, so
//! its tree is allocated and freed on one thread (glibc's malloc pays for every cross-thread
//! free: handing parsed trees to workers took 32 CPU-s at 100k VMs, against 9.7 inline), and
//! the results are taken back in file order. Small files are parsed and checked inline, as one
//! document ([`workers_for`]).

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;

use crate::definition::strict::{StrictValue, Strictness};
use crate::definition::syntax::{MAX_DEPTH, Syntax};
use crate::definition::vm::{VmDefinition, is_valid_id, vm_from_json, written_entry};
use crate::definition::yaml_depth;
use crate::problem::Problem;

/// Files smaller than this are read inline, as one document: threads would cost more than
/// they save.
pub(super) const PARALLEL_ABOVE_BYTES: usize = 1 << 20;

/// Entries a thread takes at a time: few enough to keep the cores evenly busy, many enough
/// that taking them costs nothing.
const BATCH: usize = 64;

/// One entry, checked.
pub(super) struct EntryCheck {
    /// `compute.name`, or `unnamed`: how messages name the VM.
    pub(super) label: String,
    /// The checked VM and its entry as the store keeps it, or every problem in it.
    pub(super) result: Result<(VmDefinition, Box<[u8]>), Vec<Problem>>,
}

/// Checks `entry`, taking `default_id` when it names no `id`.
pub(super) fn check(entry: Value, default_id: &str) -> EntryCheck {
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

/// The default id of entry `index` when no earlier entry holds its name as an id.
pub(super) fn default_id(entry: &Value, index: usize, claimed: &HashSet<String>) -> String {
    match entry
        .pointer("/instance/compute/name")
        .and_then(Value::as_str)
    {
        Some(name) if is_valid_id(name) && !claimed.contains(name) => name.to_string(),
        _ => format!("vm-{index}"),
    }
}

/// The id an entry holds: its `id` if that is a string (any other `id` is a problem found by
/// the check), else its default.
pub(super) fn claimed_id(entry: &Value, default_id: &str) -> String {
    match entry.get("id") {
        Some(Value::String(id)) => id.clone(),
        _ => default_id.to_string(),
    }
}

/// The thread count for a file of `bytes`: every core (at most 8) for a large file, none for
/// a small one.
pub(super) fn workers_for(bytes: usize) -> usize {
    if bytes < PARALLEL_ABOVE_BYTES {
        0
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    }
}

/// An entry checked on a thread, with what the file-order pass needs to settle its id.
struct Checked {
    check: EntryCheck,
    /// The default id it was checked with (its name, or `vm-<index>`, as if unclaimed).
    assumed_default: String,
    /// Its name, if that is a valid id (the default id, unless an earlier entry holds it).
    name: Option<String>,
    /// Its `id`, if that is a string.
    id: Option<String>,
}

/// Parses and checks every entry of `text` (`entries`: where each item of `vms` is) on
/// `workers` threads (the calling thread among them); the checks in file order. `None` if some
/// entries cannot be read on their own: the caller reads the whole file as one document, which
/// says what is wrong and where.
pub(super) fn check_all(
    text: &str,
    entries: &[Range<usize>],
    syntax: Syntax,
    workers: usize,
) -> Option<Vec<EntryCheck>> {
    let next = AtomicUsize::new(0);
    let work = || -> Option<Vec<(usize, Checked)>> {
        let mut done = Vec::new();
        loop {
            let start = next.fetch_add(BATCH, Ordering::Relaxed);
            if start >= entries.len() {
                return Some(done);
            }
            let batch = start..(start + BATCH).min(entries.len());
            let Some(values) = read_entries(text, &entries[batch], syntax) else {
                // The whole file is read again: the other threads need not go on.
                next.fetch_max(entries.len(), Ordering::Relaxed);
                return None;
            };
            for (index, entry) in (start..).zip(values) {
                done.push((index, checked(entry, index)));
            }
        }
    };
    let parts = std::thread::scope(|scope| {
        let threads: Vec<_> = (1..workers.max(1)).map(|_| scope.spawn(work)).collect();
        let mut parts = vec![work()];
        // A thread that panicked: its panic goes on here, as if checked inline.
        parts.extend(threads.into_iter().map(|t| {
            t.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }));
        parts
    });
    let mut slots: Vec<Option<Checked>> = Vec::new();
    slots.resize_with(entries.len(), || None);
    for part in parts {
        for (index, checked) in part? {
            slots[index] = Some(checked);
        }
    }
    in_file_order(text, entries, syntax, slots)
}

/// Entry `index` checked as if no earlier entry held its name as an id.
fn checked(entry: Value, index: usize) -> Checked {
    let name = entry
        .pointer("/instance/compute/name")
        .and_then(Value::as_str)
        .filter(|name| is_valid_id(name))
        .map(str::to_string);
    let assumed_default = name.clone().unwrap_or_else(|| format!("vm-{index}"));
    let id = match entry.get("id") {
        Some(Value::String(id)) => Some(id.clone()),
        _ => None,
    };
    Checked {
        check: check(entry, &assumed_default),
        assumed_default,
        name,
        id,
    }
}

/// Settles each entry's default id in file order, as reading the file inline does: an entry
/// whose name an earlier entry holds as its id gets `vm-<index>`, and is checked again with it
/// (rare: it takes a name that is someone else's id).
fn in_file_order(
    text: &str,
    entries: &[Range<usize>],
    syntax: Syntax,
    slots: Vec<Option<Checked>>,
) -> Option<Vec<EntryCheck>> {
    let mut claimed = HashSet::new();
    let mut all = Vec::with_capacity(slots.len());
    for (index, slot) in slots.into_iter().enumerate() {
        let Checked {
            mut check,
            assumed_default,
            name,
            id,
        } = slot?;
        let default = match name {
            Some(name) if !claimed.contains(&name) => name,
            _ => format!("vm-{index}"),
        };
        if default != assumed_default {
            let again = read_entries(text, &entries[index..=index], syntax)?;
            check = self::check(again.into_iter().next()?, &default);
        }
        claimed.insert(id.unwrap_or(default));
        all.push(check);
    }
    Some(all)
}

/// Consecutive entries of `text` read strictly: in JSON each is one value; in YAML they are
/// read together, as one block sequence (their text runs from the first's `-` to where the
/// next entry starts), which saves setting libyaml up per entry. `None` if they are not that.
fn read_entries(text: &str, entries: &[Range<usize>], syntax: Syntax) -> Option<Vec<Value>> {
    let mut strictness = Strictness::new();
    match syntax {
        Syntax::Json => entries
            .iter()
            .map(|entry| {
                let mut deserializer = serde_json::Deserializer::from_str(&text[entry.clone()]);
                let value = StrictValue(&mut strictness)
                    .deserialize(&mut deserializer)
                    .ok()?;
                deserializer.end().ok()?;
                Some(value)
            })
            .collect(),
        Syntax::Yaml => {
            let items = &text[entries.first()?.start..entries.last()?.end];
            // libyaml's time is quadratic in the nesting depth: bounded first, in the text
            // libyaml sees; the whole file read again says where it is too deep.
            yaml_depth::check(items, MAX_DEPTH).ok()?;
            Items {
                count: entries.len(),
                strictness: &mut strictness,
            }
            .deserialize(serde_yaml_ng::Deserializer::from_str(items))
            .ok()
        }
    }
}

/// A sequence of exactly `count` items, each read strictly.
struct Items<'a> {
    count: usize,
    strictness: &'a mut Strictness,
}

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = Vec<Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Value>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a sequence of {} items", self.count)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut items = Vec::with_capacity(self.count);
        while items.len() < self.count {
            match seq.next_element_seed(StrictValue(&mut *self.strictness))? {
                Some(item) => items.push(item),
                None => return Err(serde::de::Error::invalid_length(items.len(), &self)),
            }
        }
        match seq.next_element::<IgnoredAny>()? {
            None => Ok(items),
            Some(_) => Err(serde::de::Error::invalid_length(self.count + 1, &self)),
        }
    }
}
