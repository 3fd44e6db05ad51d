//! Fleet mode (issue 11): a VM's provisioning record is one state across the fleet. What its
//! guest agents report to the WireServer of the host serving it is seen, waited for and reset
//! through any host's control API. Real etcd, real azimds processes.

use std::time::Duration;

use serde_json::json;

use crate::fleet::{etcd, serve_with, until_served};
use crate::support::{TempDir, TestImds, request_bytes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_on_the_serving_host_is_seen_waited_for_and_reset_through_another() {
    let etcd = etcd::TestEtcd::start("it-provisioning");
    let dir = TempDir::new("fleet-provisioning");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let host_a = serve_with(&etcd.endpoint(), &data_a, "host-a", &[]);
    let host_b = serve_with(
        &etcd.endpoint(),
        &data_b,
        "host-b",
        &["--wireserver-listen", "127.0.0.1:0"],
    );
    let (control_a, control_b) = (host_a.control_api(&data_a), host_b.control_api(&data_b));
    let vm = json!({"host": "host-b", "callers": ["127.0.0.1"],
                    "instance": {"compute": {"name": "vm-provisioned"}}});
    let put = control_a.call("PUT", "/v1/vms/vm1", Some(&vm), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text());
    until_served(&host_b, Some("vm-provisioned")).await;

    // Host A does not serve vm1, and still answers for it.
    let before = control_a
        .call("GET", "/v1/vms/vm1/provisioning", None, &[])
        .await;
    assert_eq!(before.status, 200, "{}", before.text());
    assert_eq!(before.json()["state"], "Pending");
    let ovf = control_a
        .call("GET", "/v1/vms/vm1/ovf-env", None, &[])
        .await;
    assert_eq!(ovf.status, 200, "{}", ovf.text());
    assert!(ovf.text().contains("<Environment"), "{}", ovf.text());
    let unknown = control_a
        .call("GET", "/v1/vms/nope/provisioning", None, &[])
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());

    // An operator waits through host A while the guest reports Ready to host B (§5.2).
    let waiting = {
        let control_a = control_a.clone();
        tokio::spawn(async move {
            control_a
                .call("GET", "/v1/vms/vm1/provisioning/wait?timeout=20", None, &[])
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let wireserver = TestImds {
        addr: host_b.field("wireserver").parse().unwrap(),
    };
    let reported = wireserver
        .raw(request_bytes(
            "POST",
            "/provisioning/health",
            "168.63.129.16",
            &[("content-type", "application/json")],
            br#"{"state":"Ready"}"#,
        ))
        .await;
    assert_eq!(reported.status, 200, "{}", reported.text());
    let waited = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("the wait through host A ended")
        .unwrap();
    assert_eq!(waited.status, 200, "{}", waited.text());
    assert_eq!(waited.json()["state"], "Ready");
    assert_eq!(
        waited.json()["latest"]["endpoint"],
        "/provisioning/health",
        "{}",
        waited.text()
    );

    // Reset through host A: host B's control API sees the VM pending again at once.
    let reset = control_a
        .call("DELETE", "/v1/vms/vm1/provisioning", None, &[])
        .await;
    assert_eq!(reset.status, 200, "{}", reset.text());
    assert_eq!(reset.json()["reset"], true);
    let on_b = control_b
        .call("GET", "/v1/vms/vm1/provisioning", None, &[])
        .await;
    assert_eq!(on_b.json()["state"], "Pending", "{}", on_b.text());

    // The guest's next report starts from the reset record, not from host B's memory.
    let again = wireserver
        .raw(request_bytes(
            "POST",
            "/provisioning/health",
            "168.63.129.16",
            &[("content-type", "application/json")],
            br#"{"state":"NotReady","details":{"subStatus":"Provisioning","description":"again"}}"#,
        ))
        .await;
    assert_eq!(again.status, 200, "{}", again.text());
    let after = control_a
        .call("GET", "/v1/vms/vm1/provisioning", None, &[])
        .await
        .json();
    assert_eq!(
        after["reports"].as_array().map(Vec::len),
        Some(1),
        "only the report made after the reset: {after}"
    );
}
