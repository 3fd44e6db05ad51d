//! Fleet mode (issue 11): the real binary on the etcd store, against a real etcd this test
//! starts on loopback ports (`src/store/etcd/testing.rs`, shared with the unit tests).

use std::time::Duration;
#[cfg(feature = "fleet")]
use std::time::Instant;

#[cfg(feature = "fleet")]
use serde_json::json;

#[cfg(feature = "fleet")]
use crate::support::{ControlApi, Spawned, spawn_azimds};
use crate::support::{TempDir, serve_refused};

#[cfg(feature = "fleet")]
#[path = "../../src/store/etcd/testing.rs"]
mod etcd;

/// Without the `fleet` feature, an etcd store is refused at start with how to get one.
#[cfg(not(feature = "fleet"))]
#[test]
fn a_build_without_fleet_mode_says_how_to_get_it() {
    let dir = TempDir::new("fleet-not-built");
    let (code, stderr) = serve_refused(
        &dir.path().join("data"),
        &["--store", "etcd://127.0.0.1:2379"],
        Duration::from_secs(20),
    )
    .expect("refused at start");
    assert_ne!(code, 0);
    assert!(stderr.contains("--features fleet"), "{stderr}");
}

/// etcd unreachable at start: azimds serves nothing and says why (it does not come up on an
/// empty store of its own).
#[cfg(feature = "fleet")]
#[test]
fn etcd_down_at_start_serves_nothing_and_says_why() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = closed.local_addr().unwrap().to_string();
    drop(closed);
    let dir = TempDir::new("fleet-down-at-start");
    let (code, stderr) = serve_refused(
        &dir.path().join("data"),
        &["--store", &format!("etcd://{endpoint}")],
        Duration::from_secs(30),
    )
    .expect("refused at start");
    assert_ne!(code, 0);
    assert!(
        stderr.contains(&format!("cannot open the etcd store at {endpoint}")),
        "{stderr}"
    );
}

#[cfg(feature = "fleet")]
fn serve_on(etcd: &etcd::TestEtcd, data: &std::path::Path) -> Spawned {
    spawn_azimds(
        data,
        &[
            "--store",
            &format!("etcd://{}", etcd.endpoint()),
            "--etcd-prefix",
            "/fleet-test/",
            "--callers",
            "source-address",
        ],
    )
}

#[cfg(feature = "fleet")]
async fn guest_name(server: &Spawned) -> (u16, String) {
    let reply = server
        .imds()
        .get("/metadata/instance/compute/name?api-version=2021-02-01&format=text")
        .await;
    (reply.status, reply.text().to_string())
}

#[cfg(feature = "fleet")]
async fn readiness(control: &ControlApi) -> (u16, serde_json::Value) {
    let reply = control
        .anonymous()
        .call_raw("GET", "/readyz", None, &[])
        .await;
    (reply.status, reply.json())
}

/// A VM written through one azimds is in etcd: a second azimds with its own, empty data
/// directory serves it. With etcd stopped the guest is still served, writes are 503 (never
/// acknowledged) and readiness says since when; etcd back, the host recovers by itself.
#[cfg(feature = "fleet")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_written_through_one_host_is_served_by_another_and_survives_an_outage() {
    let mut etcd = etcd::TestEtcd::start("it-fleet");
    let dir = TempDir::new("fleet");
    let first = serve_on(&etcd, &dir.path().join("host-a"));
    let control = first.control_api(&dir.path().join("host-a"));
    let vm = json!({"callers": ["127.0.0.1"], "instance": {"compute": {"name": "vm-fleet"}}});
    let put = control.call("PUT", "/v1/vms/vm1", Some(&vm), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(guest_name(&first).await, (200, "vm-fleet".into()));
    drop(first);

    let second_data = dir.path().join("host-b");
    let second = serve_on(&etcd, &second_data);
    assert_eq!(
        guest_name(&second).await,
        (200, "vm-fleet".into()),
        "served from etcd by a host that never saw the write"
    );
    let control = second.control_api(&second_data);
    let got = control.call("GET", "/v1/vms/vm1", None, &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.header("etag"),
        put.header("etag"),
        "one revision, fleet-wide"
    );

    etcd.stop();
    assert_eq!(
        guest_name(&second).await,
        (200, "vm-fleet".into()),
        "guests are served from memory while etcd is away"
    );
    let vm2 = json!({"callers": ["127.0.0.2"]});
    let refused = control.call("PUT", "/v1/vms/vm2", Some(&vm2), &[]).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "store_unavailable");
    let (status, body) = readiness(&control).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["store"]["writable"], false);
    assert!(body["store"]["failingSince"].is_string(), "{body}");

    etcd.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = readiness(&control).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status} {body}");
        // The server probes on its own backoff (5 s first); readiness has no event to await.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let missing = control.call("GET", "/v1/vms/vm2", None, &[]).await;
    assert_eq!(missing.status, 404, "the refused write was not applied");
    let put = control.call("PUT", "/v1/vms/vm2", Some(&vm2), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text());
}
