//! The etcd backend's client against a real three-member cluster with a member down.

use super::Etcd;
use super::testing::TestCluster;
use crate::store::EtcdOptions;

/// A follower killed (no election: only its endpoint is gone): every call still succeeds.
/// The client keeps picking the dead member for some calls (about one in four failed before
/// they were tried again); each is tried again on another member.
#[test]
fn calls_the_client_sends_to_a_dead_member_are_tried_on_another() {
    let mut cluster = TestCluster::start("unit-dead-member");
    let options = EtcdOptions {
        endpoints: cluster.endpoints().split(',').map(String::from).collect(),
        prefix: "/dead-member/".into(),
        tls: None,
        auth: None,
        kek_file: None,
        max_txn_ops: 128,
    };
    let etcd = Etcd::connect(&options).unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let follower = (cluster.leader() + 1) % 3;
    cluster.kill(follower);
    for n in 1..=100 {
        let written = etcd.put_provisioning(&format!("vm{n}"), b"record");
        assert!(written.is_ok(), "write {n}: {written:?}");
        let counted = etcd.count("provisioning/");
        assert_eq!(counted.ok(), Some(n), "read after write {n}");
    }
    assert!(etcd.health().writable());
}

/// A start reads the store 500 records a page. Found by the fleet benchmark: 601 VMs of
/// 9.7 KB each made a page larger than the client's 4 MiB gRPC default and the host could not
/// start. Records of 150 KB make a 75 MB page, past even the raised limit: the page is read
/// again in halves, and every record arrives.
#[test]
fn pages_larger_than_a_grpc_message_are_read_in_halves() {
    let etcd = super::testing::TestEtcd::start("unit-large-pages");
    let options = EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        prefix: "/large-pages/".into(),
        tls: None,
        auth: None,
        kek_file: None,
        max_txn_ops: 128,
    };
    let store = Etcd::connect(&options).unwrap_or_else(|e| panic!("{e}\n{}", etcd.log()));
    let record = vec![b'x'; 150_000];
    for n in 0..520 {
        store
            .put_provisioning(&format!("vm{n:04}"), &record)
            .unwrap();
    }
    let records = store.provisioning_records().unwrap();
    assert_eq!(records.len(), 520);
    assert!(records.iter().all(|(_, bytes)| bytes.len() == 150_000));
    assert_eq!(records[519].0, "vm0519");
    assert!(store.health().writable(), "a large page is not an outage");
}
