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
