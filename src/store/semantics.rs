//! One suite of store semantics, run against every backend: the embedded redb file and (with
//! the `fleet` feature) a real etcd started on loopback. What the registry, the events engine
//! and the control API's ETags rely on: conditional writes, all-or-nothing batches,
//! revisions that increase and are never reused, id order, deletes, events and provisioning
//! records as written.

use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::events::{Event, EventSource, EventType, Status};
use crate::store::{Checked, Error, Expect, Origin, Store, StoredVm};

/// Every case, in order; each gets a fresh, empty store from `fresh`.
pub(super) fn run_all(mut fresh: impl FnMut(&str) -> Store) {
    revisions_increase_and_are_never_reused(&fresh("revisions"));
    writes_are_conditional(&fresh("conditional"));
    batches_apply_together_or_not_at_all(&fresh("batch"));
    records_list_in_id_order_and_deletes_remove_them(&fresh("order"));
    records_come_back_as_written(&fresh("bytes"));
    events_and_provisioning_records_come_back(&fresh("events"));
}

fn put(store: &Store, id: &str, entry: &str, expect: Expect) -> Result<(StoredVm, bool), Error> {
    let checked = Checked {
        by: 1,
        form: &[7, 7],
    };
    store.put_vm(id, Origin::Api, entry.as_bytes(), checked, expect)
}

fn ids(store: &Store) -> Vec<String> {
    store.vms().unwrap().into_iter().map(|v| v.id).collect()
}

fn revisions_increase_and_are_never_reused(store: &Store) {
    let (a1, created) = put(store, "a", r#"{"x":1}"#, Expect::Absent).unwrap();
    assert!(created);
    assert_eq!(a1.definition, json!({"x": 1}));
    assert_eq!(
        store.vm("a").unwrap(),
        Some(a1.clone()),
        "a read sees the write"
    );
    let (b1, _) = put(store, "b", "{}", Expect::Absent).unwrap();
    assert!(
        b1.revision > a1.revision,
        "revisions are store-wide and increase"
    );
    let (a2, created) = put(store, "a", r#"{"x":2}"#, Expect::Revision(a1.revision)).unwrap();
    assert!(!created, "a replacement is not a creation");
    assert!(a2.revision > b1.revision);
    assert!(store.delete_vm("a", Expect::Revision(a2.revision)).unwrap());
    let (a3, created) = put(store, "a", r#"{"x":3}"#, Expect::Absent).unwrap();
    assert!(created, "recreated after a delete");
    assert!(
        a3.revision > a2.revision,
        "a recreated VM never reuses an ETag"
    );
    assert_eq!(store.vm("a").unwrap(), Some(a3));
}

fn writes_are_conditional(store: &Store) {
    let (a, created) = put(store, "a", "{}", Expect::Anything).unwrap();
    assert!(created, "an unconditional write creates a missing VM");
    assert!(matches!(
        put(store, "a", "{}", Expect::Absent),
        Err(Error::PreconditionFailed { current: Some(r) }) if r == a.revision
    ));
    assert!(matches!(
        put(store, "a", "{}", Expect::Revision(a.revision + 100)),
        Err(Error::PreconditionFailed { current: Some(r) }) if r == a.revision
    ));
    assert!(matches!(
        put(store, "b", "{}", Expect::Present),
        Err(Error::PreconditionFailed { current: None })
    ));
    assert!(matches!(
        store.delete_vm("b", Expect::Present),
        Err(Error::PreconditionFailed { current: None })
    ));
    assert!(matches!(
        store.delete_vm("a", Expect::Revision(a.revision + 1)),
        Err(Error::PreconditionFailed { current: Some(r) }) if r == a.revision
    ));
    assert_eq!(ids(store), ["a"], "refused writes change nothing");
    assert_eq!(store.vm("a").unwrap().unwrap().revision, a.revision);
    let (a2, created) = put(store, "a", r#"{"y":1}"#, Expect::Present).unwrap();
    assert!(!created && a2.revision > a.revision);
    let (a3, created) = put(store, "a", r#"{"y":2}"#, Expect::Anything).unwrap();
    assert!(!created && a3.revision > a2.revision);
    assert!(!store.delete_vm("b", Expect::Anything).unwrap());
    assert!(store.delete_vm("a", Expect::Present).unwrap());
    assert!(!store.delete_vm("a", Expect::Anything).unwrap());
}

fn batches_apply_together_or_not_at_all(store: &Store) {
    put(store, "old", "{}", Expect::Anything).unwrap();
    store
        .batch(|batch| {
            batch.put("a", Origin::File, br#"{"n":1}"#, Checked::NONE)?;
            batch.put("b", Origin::File, br#"{"n":2}"#, Checked::NONE)?;
            batch.delete("old")?;
            batch.delete("never-was")?;
            Ok::<_, Error>(())
        })
        .unwrap();
    assert_eq!(ids(store), ["a", "b"]);
    let a = store.vm("a").unwrap().unwrap();
    assert_eq!((a.origin, a.definition), (Origin::File, json!({"n": 1})));
    let failed: Result<(), Error> = store.batch(|batch| {
        batch.delete("a")?;
        batch.put("c", Origin::File, b"{}", Checked::NONE)?;
        Err(Error::PreconditionFailed { current: None })
    });
    assert!(matches!(failed, Err(Error::PreconditionFailed { .. })));
    assert_eq!(ids(store), ["a", "b"], "a failed batch changes nothing");
    assert_eq!(store.vm_count().unwrap(), 2);
    let empty: Result<u8, Error> = store.batch(|_| Ok(5));
    assert_eq!(
        empty.unwrap(),
        5,
        "an empty batch commits nothing and succeeds"
    );
}

fn records_list_in_id_order_and_deletes_remove_them(store: &Store) {
    // More than one page of etcd's range reads (500), written in batches of 100.
    let mut written: Vec<String> = (0..1100)
        .map(|n| format!("vm-{}", n * 7919 % 1100))
        .collect();
    for chunk in written.chunks(100) {
        store
            .batch(|batch| {
                for id in chunk {
                    batch.put(id, Origin::Api, br#"{}"#, Checked::NONE)?;
                }
                Ok::<_, Error>(())
            })
            .unwrap();
    }
    for id in ["web-2", "web-10", "api", "db.1", "Z"] {
        put(store, id, "{}", Expect::Absent).unwrap();
        written.push(id.to_string());
    }
    written.sort();
    assert_eq!(
        ids(store),
        written,
        "byte order of ids, as redb and etcd keys sort"
    );
    assert_eq!(store.vm_count().unwrap(), 1105);
    assert!(store.delete_vm("web-10", Expect::Present).unwrap());
    assert_eq!(store.vm("web-10").unwrap(), None);
    assert_eq!(store.vm_count().unwrap(), 1104);
    assert!(!ids(store).contains(&"web-10".to_string()));
    assert_eq!(store.vm("web-1").unwrap(), None, "no prefix match on ids");
}

fn records_come_back_as_written(store: &Store) {
    let entry = br#"{"instance":{"compute":{"name":"a"}}}"#;
    let checked = Checked {
        by: 42,
        form: &[1, 2, 3, 255],
    };
    let (a, _) = store
        .put_vm("a", Origin::Demo, entry, checked, Expect::Absent)
        .unwrap();
    let mut seen = Vec::new();
    store
        .visit_records(|id, record| {
            seen.push((
                id.to_string(),
                record.revision,
                record.origin,
                record.entry.to_vec(),
                record.checked.by,
                record.checked.form.to_vec(),
            ))
        })
        .unwrap();
    assert_eq!(
        seen,
        [(
            "a".to_string(),
            a.revision,
            Origin::Demo,
            entry.to_vec(),
            42,
            vec![1, 2, 3, 255]
        )]
    );
}

fn event(id: &str, target: &str) -> Event {
    Event {
        id: id.into(),
        event_type: EventType::Reboot,
        targets: vec![target.into()],
        resources: vec![target.into()],
        status: Status::Scheduled,
        not_before: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        description: "host update".into(),
        source: EventSource::Platform,
        duration_seconds: -1,
        complete_after: Duration::from_secs(60),
        started_at: None,
    }
}

fn events_and_provisioning_records_come_back(store: &Store) {
    let (e1, e2) = (event("E1", "a"), event("E2", "b"));
    let first = store
        .write_events(None, &[&e1, &e2], &[], &[("a", 2), ("b", 5)], &["a/E1"])
        .unwrap();
    let second = store
        .write_events(Some(first), &[], &["E2"], &[("b", 6)], &["b/E2"])
        .unwrap();
    let stored = store.events().unwrap();
    assert_eq!(stored.revision, second);
    if store.is_shared() {
        assert!(second > first, "{first} then {second}");
        // Another host wrote after `first`: a write made on what was read at `first` is
        // refused whole, and nothing of it is stored.
        let refused = store.write_events(Some(first), &[], &["E1"], &[("a", 9)], &[]);
        assert!(
            matches!(refused, Err(Error::PreconditionFailed { .. })),
            "{refused:?}"
        );
    } else {
        assert_eq!((first, second), (0, 0), "the embedded store has one writer");
    }
    let stored = store.events().unwrap();
    assert_eq!(stored.events, [e1]);
    assert_eq!(stored.incarnations.get("a"), Some(&2));
    assert_eq!(stored.incarnations.get("b"), Some(&6));
    assert_eq!(
        stored.imported.into_iter().collect::<Vec<_>>(),
        ["a/E1", "b/E2"]
    );
    assert!(store.provisioning_records().unwrap().is_empty());
    store.put_provisioning("b", b"two").unwrap();
    store.put_provisioning("a", b"one").unwrap();
    store.put_provisioning("a", b"three").unwrap();
    assert_eq!(
        store.provisioning_records().unwrap(),
        [
            ("a".to_string(), b"three".to_vec()),
            ("b".into(), b"two".to_vec())
        ]
    );
    assert!(store.delete_provisioning("a").unwrap());
    assert!(!store.delete_provisioning("a").unwrap());
    assert_eq!(store.provisioning_records().unwrap().len(), 1);
}

#[test]
fn the_embedded_store_keeps_the_semantics() {
    let root = std::env::temp_dir().join(format!("azimds-semantics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    run_all(|case| {
        let dir = root.join(case);
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&dir.join("azimds.redb")).unwrap()
    });
    std::fs::remove_dir_all(root).unwrap();
}

#[cfg(feature = "fleet")]
#[test]
fn the_etcd_store_keeps_the_semantics() {
    use crate::store::EtcdOptions;
    use crate::store::etcd::testing::TestEtcd;
    let etcd = TestEtcd::start("semantics");
    run_all(|case| {
        Store::open_etcd(&EtcdOptions {
            endpoints: vec![etcd.endpoint()],
            prefix: format!("/semantics/{case}/"),
            tls: None,
            auth: None,
            kek_file: None,
            max_txn_ops: 128,
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", etcd.log()))
    });
}

/// etcd stopped: writes are refused as unavailable (never acknowledged), health says since
/// when; etcd back: the same store recovers without reopening, nothing acknowledged is lost
/// and nothing refused was applied.
#[cfg(feature = "fleet")]
#[test]
fn an_etcd_outage_refuses_writes_and_loses_nothing_acknowledged() {
    use crate::store::EtcdOptions;
    use crate::store::etcd::testing::TestEtcd;
    use std::time::Instant;
    let mut etcd = TestEtcd::start("outage");
    let store = Store::open_etcd(&EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        prefix: "/outage/".into(),
        tls: None,
        auth: None,
        kek_file: None,
        max_txn_ops: 128,
    })
    .unwrap();
    let (a, _) = put(&store, "a", r#"{"x":1}"#, Expect::Absent).unwrap();
    assert!(store.health().writable());
    etcd.stop();
    let stopped = SystemTime::now();
    let refused = put(&store, "b", "{}", Expect::Absent);
    assert!(
        matches!(refused, Err(Error::Unavailable { .. })),
        "{refused:?}"
    );
    let failure = store
        .health()
        .failure
        .expect("the store reports the outage");
    assert!(failure.since >= stopped - Duration::from_secs(1));
    assert!(matches!(store.vm("a"), Err(Error::Unavailable { .. })));
    assert!(!store.probe().writable());
    assert_eq!(
        store.health().failure.unwrap().since,
        failure.since,
        "failing since the first failure, not the latest"
    );
    etcd.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !store.probe().writable() {
        assert!(Instant::now() < deadline, "no recovery:\n{}", etcd.log());
        // The client's reconnect has no event to wait on; each probe is one bounded call.
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        store.vm("a").unwrap(),
        Some(a),
        "acknowledged before the outage"
    );
    assert_eq!(store.vm("b").unwrap(), None, "refused during the outage");
    put(&store, "b", "{}", Expect::Absent).unwrap();
}

/// The etcd watch delivers every VM change after the revision it starts from, in order
/// (writes with their records, deletes as `None`); a start revision etcd compacted away is
/// reported as `Compacted`, so the follower reads everything again instead of missing
/// changes.
#[cfg(feature = "fleet")]
#[test]
fn the_etcd_watch_delivers_changes_in_order_and_reports_compaction() {
    use crate::store::etcd::testing::TestEtcd;
    use crate::store::{EtcdOptions, WatchEvent};
    let etcd = TestEtcd::start("watch");
    let store = Store::open_etcd(&EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        prefix: "/watch/".into(),
        tls: None,
        auth: None,
        kek_file: None,
        max_txn_ops: 128,
    })
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = store.revision().unwrap();
    let (a, _) = put(&store, "a", r#"{"n":1}"#, Expect::Absent).unwrap();
    let (b, _) = put(&store, "b", r#"{"n":2}"#, Expect::Absent).unwrap();
    assert!(store.delete_vm("a", Expect::Present).unwrap());
    let mut events = store.watch_vms(start).expect("etcd is watchable");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), events.recv()).await })
            .expect("changes within 10 s")
            .expect("the watch goes on");
        let WatchEvent::Changes { changes, .. } = event else {
            panic!("{event:?}")
        };
        for change in changes {
            let entry = change.record.map(|r| String::from_utf8(r.entry).unwrap());
            seen.push((change.id, change.revision, entry));
        }
    }
    assert_eq!(seen[0], ("a".into(), a.revision, Some(r#"{"n":1}"#.into())));
    assert_eq!(seen[1], ("b".into(), b.revision, Some(r#"{"n":2}"#.into())));
    assert_eq!((seen[2].0.as_str(), seen[2].2.as_ref()), ("a", None));
    assert!(seen[2].1 > b.revision);
    drop(events);

    let now = store.revision().unwrap();
    let compacted = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoint(), "compact", &now.to_string()])
        .output()
        .expect("etcdctl (apt: etcd-client)");
    assert!(compacted.status.success(), "{compacted:?}");
    let mut events = store.watch_vms(start).unwrap();
    let event = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), events.recv()).await })
        .expect("an answer within 10 s")
        .expect("one event");
    assert!(matches!(event, WatchEvent::Compacted), "{event:?}");
}

/// Fencing a move (`registry/fence.rs`): the watch names the host a record named before each
/// change, and a host's progress key holds what its reporter was told, written at once when
/// urgent.
#[cfg(feature = "fleet")]
#[test]
fn the_etcd_watch_names_the_previous_host_and_progress_is_written() {
    use crate::store::etcd::testing::TestEtcd;
    use crate::store::{EtcdOptions, WatchEvent};
    let etcd = TestEtcd::start("progress");
    let store = Store::open_etcd(&EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        prefix: "/progress/".into(),
        tls: None,
        auth: None,
        kek_file: None,
        max_txn_ops: 128,
    })
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = store.revision().unwrap();
    put(&store, "a", r#"{"host":"h1"}"#, Expect::Absent).unwrap();
    put(&store, "a", r#"{"host":"h2"}"#, Expect::Present).unwrap();
    put(&store, "a", r#"{}"#, Expect::Present).unwrap();
    assert!(store.delete_vm("a", Expect::Present).unwrap());
    let mut events = store.watch_vms(start).expect("etcd is watchable");
    let mut previous = Vec::new();
    while previous.len() < 4 {
        let event = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), events.recv()).await })
            .expect("changes within 10 s")
            .expect("the watch goes on");
        let WatchEvent::Changes { changes, .. } = event else {
            panic!("{event:?}")
        };
        previous.extend(changes.into_iter().map(|c| c.previous_host));
    }
    assert_eq!(
        previous,
        [None, Some("h1".into()), Some("h2".into()), None],
        "created; moved from h1; from h2 to every host; deleted from every host"
    );

    assert_eq!(store.progress().unwrap().len(), 0);
    let reporter = store
        .start_progress("h1", 5)
        .unwrap()
        .expect("etcd keeps progress");
    assert_eq!(
        store.progress().unwrap().get("h1"),
        Some(&5),
        "written before returning"
    );
    reporter.applied(9, true);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.progress().unwrap().get("h1") != Some(&9) {
        assert!(
            std::time::Instant::now() < deadline,
            "an urgent progress is written at once"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
