//! Fleet mode (issue 11): the real binary on the etcd store, against a real etcd this test
//! starts on loopback ports (`src/store/etcd/testing.rs`, shared with the unit tests).

use std::time::Duration;
#[cfg(feature = "fleet")]
use std::time::Instant;

#[cfg(feature = "fleet")]
use serde_json::json;

use crate::support::TempDir;
#[cfg(not(feature = "fleet"))]
use crate::support::serve_refused;
#[cfg(feature = "fleet")]
use crate::support::{ControlApi, Spawned, spawn_azimds};

#[cfg(feature = "fleet")]
#[path = "../../src/store/etcd/testing.rs"]
pub(crate) mod etcd;

/// The fleet's key-encryption key for the hosts of a test: 32 random bytes, owner-only, in
/// `dir` (written once; every host of the test uses the same file).
#[cfg(feature = "fleet")]
pub(crate) fn kek_file(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("fleet.kek");
    if !path.exists() {
        let mut key = [0u8; 32];
        openssl::rand::rand_bytes(&mut key).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, &key).unwrap();
    }
    path
}

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

/// etcd unreachable at start: azimds binds no guest listener (guests are served nothing,
/// rather than an empty store of its own), says why in its log and on its control listener's
/// `/readyz`, and keeps retrying; once etcd answers it serves, on the same control listener.
#[cfg(feature = "fleet")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_at_start_serves_nothing_until_it_answers() {
    let mut etcd = etcd::TestEtcd::reserve("it-down-at-start");
    let dir = TempDir::new("fleet-down-at-start");
    let data = dir.path().join("a");
    let endpoint = etcd.endpoint();
    let control_addr = unused_loopback_port();
    let starting = {
        let (endpoint, data) = (endpoint.clone(), data.clone());
        let control = control_addr.to_string();
        std::thread::spawn(move || serve_with(&endpoint, &data, "host-a", &["--control", &control]))
    };
    // Nothing to await: the host must stay down for as long as etcd is. 3 s covers its
    // first retries (1 s, then 2 s).
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !starting.is_finished(),
        "azimds came up (or exited) without etcd"
    );
    // Its control listener says why, and refuses the rest of the API with the reason.
    let waiting = ControlApi {
        addr: control_addr,
        token: None,
    };
    let (status, body) = readiness(&waiting).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "waiting-for-store", "{body}");
    assert_eq!(body["store"]["writable"], false);
    assert!(
        body["store"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(body["store"]["failingSince"].is_string(), "{body}");
    let refused = waiting.call_raw("GET", "/v1/vms", None, &[]).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "store_unavailable");
    assert_eq!(refused.header("retry-after"), Some("5"));
    let alive = waiting.call_raw("GET", "/healthz", None, &[]).await;
    assert_eq!(alive.status, 200, "{}", alive.text());
    etcd.restart();
    let host = tokio::task::spawn_blocking(move || starting.join().expect("azimds started"))
        .await
        .unwrap();
    assert!(
        host.wait_for_log(
            &format!(
                "cannot reach etcd at start; serving nothing until it answers endpoints={endpoint}"
            ),
            2,
            Duration::from_secs(1),
        ),
        "it said why, at each retry"
    );
    let control = host.control_api(&data);
    assert_eq!(
        control.addr, control_addr,
        "the same control listener serves the API"
    );
    assert_eq!(readiness(&control).await.0, 200);
    let vm = json!({"callers": ["127.0.0.1"], "instance": {"compute": {"name": "after-etcd"}}});
    let put = control.call("PUT", "/v1/vms/vm1", Some(&vm), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(guest_name(&host).await, (200, "after-etcd".into()));
}

/// A loopback port nothing listens on, below the kernel's ephemeral range (so no parallel
/// test's `bind(0)` takes it meanwhile) and below the test etcd members' range.
#[cfg(feature = "fleet")]
fn unused_loopback_port() -> std::net::SocketAddr {
    loop {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 12_000 + fastrand::u16(..8_000)));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
}

#[cfg(feature = "fleet")]
fn serve_on(etcd: &etcd::TestEtcd, data: &std::path::Path) -> Spawned {
    serve_as(etcd, data, "the-host")
}

/// An azimds on `etcd` named `host` (`--host-name`), with the KEK next to its data directory.
#[cfg(feature = "fleet")]
pub(crate) fn serve_as(etcd: &etcd::TestEtcd, data: &std::path::Path, host: &str) -> Spawned {
    serve_through(&etcd.endpoint(), data, host)
}

/// An azimds on the etcd at `endpoint` named `host`, with the KEK next to its data directory.
#[cfg(feature = "fleet")]
pub(crate) fn serve_through(endpoint: &str, data: &std::path::Path, host: &str) -> Spawned {
    serve_with(endpoint, data, host, &[])
}

/// [`serve_through`] with `extra` flags.
#[cfg(feature = "fleet")]
pub(crate) fn serve_with(
    endpoint: &str,
    data: &std::path::Path,
    host: &str,
    extra: &[&str],
) -> Spawned {
    let kek = kek_file(data.parent().unwrap());
    let endpoint = format!("etcd://{endpoint}");
    let mut args = vec![
        "--kek-file",
        kek.to_str().unwrap(),
        "--store",
        &endpoint,
        "--etcd-prefix",
        "/fleet-test/",
        "--callers",
        "source-address",
        "--host-name",
        host,
    ];
    args.extend_from_slice(extra);
    spawn_azimds(data, &args)
}

/// The `compute.name` a host serves to 127.0.0.1, or `None` when it closes the connection
/// unanswered (it serves no VM with that caller: spec'd fail-closed behaviour).
#[cfg(feature = "fleet")]
pub(crate) async fn served_name(server: &Spawned) -> Option<String> {
    served_to(server, std::net::Ipv4Addr::LOCALHOST).await
}

/// [`served_name`] for a guest connecting from `caller` (any 127/8 address is local).
#[cfg(feature = "fleet")]
pub(crate) async fn served_to(server: &Spawned, caller: std::net::Ipv4Addr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from((caller, 0)))
        .unwrap();
    let mut stream = socket.connect(server.guest).await.unwrap();
    let request = "GET /metadata/instance/compute/name?api-version=2021-02-01&format=text HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer or a close within 10 s");
    if answer.is_empty() {
        return None;
    }
    let reply = crate::support::parse_reply(&answer);
    assert_eq!(reply.status, 200, "{}", reply.text());
    Some(reply.text().to_string())
}

/// Waits until `server` serves `expected` to 127.0.0.1 (the other host's write reaches it
/// through etcd's watch; there is nothing on this side to await but the answer).
#[cfg(feature = "fleet")]
pub(crate) async fn until_served(server: &Spawned, expected: Option<&str>) -> Duration {
    until_served_to(server, std::net::Ipv4Addr::LOCALHOST, expected).await
}

/// [`until_served`] for a guest connecting from `caller`.
#[cfg(feature = "fleet")]
pub(crate) async fn until_served_to(
    server: &Spawned,
    caller: std::net::Ipv4Addr,
    expected: Option<&str>,
) -> Duration {
    let started = Instant::now();
    while served_to(server, caller).await.as_deref() != expected {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{caller} not served {expected:?} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
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
pub(crate) async fn readiness(control: &ControlApi) -> (u16, serde_json::Value) {
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
    // Nothing writes: the broken watch alone makes the host say it is stale, and since when.
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = readiness(&control).await;
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "still {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["status"], "store-unavailable");
    assert_eq!(body["store"]["writable"], false);
    assert!(body["store"]["failingSince"].is_string(), "{body}");
    let vm2 = json!({"callers": ["127.0.0.2"]});
    let refused = control.call("PUT", "/v1/vms/vm2", Some(&vm2), &[]).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "store_unavailable");
    // Forgetting a VM's provisioning record is a store write like the others (it was a 500).
    let reset = control
        .call("DELETE", "/v1/vms/vm1/provisioning", None, &[])
        .await;
    assert_eq!(reset.status, 503, "{}", reset.text());
    assert_eq!(reset.json()["error"]["code"], "store_unavailable");
    assert_eq!(guest_name(&second).await, (200, "vm-fleet".into()));

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
    // The watch resumed: a write is served as soon as it is acknowledged.
    let renamed = json!({"instance": {"compute": {"name": "vm-renamed"}}});
    let patched = control
        .call("PATCH", "/v1/vms/vm1", Some(&renamed), &[])
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(guest_name(&second).await, (200, "vm-renamed".into()));
}

/// A frozen etcd (alive, its port open, answering nothing) is an outage too: nothing fails at
/// once, so only the client's keep-alive pings notice it. The host says it is stale, serves
/// its guests meanwhile, and recovers when etcd goes on. docs/fleet.md "Not built yet" gives
/// how long the noticing takes.
#[cfg(feature = "fleet")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_etcd_is_noticed_and_guests_are_served_through_it() {
    let etcd = etcd::TestEtcd::start("it-frozen");
    let dir = TempDir::new("fleet-frozen");
    let host = serve_on(&etcd, &dir.path().join("host"));
    let control = host.control_api(&dir.path().join("host"));
    let vm = json!({"callers": ["127.0.0.1"], "instance": {"compute": {"name": "vm-frozen"}}});
    let put = control.call("PUT", "/v1/vms/vm1", Some(&vm), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(readiness(&control).await.0, 200);

    etcd.freeze();
    let frozen = Instant::now();
    let body = loop {
        let (status, body) = readiness(&control).await;
        if status == 503 {
            break body;
        }
        assert!(
            frozen.elapsed() < Duration::from_secs(40),
            "etcd frozen for 40 s and readiness still {status} {body}"
        );
        assert_eq!(guest_name(&host).await, (200, "vm-frozen".into()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let noticed = frozen.elapsed();
    assert_eq!(body["status"], "store-unavailable", "{body}");
    assert!(body["store"]["failingSince"].is_string(), "{body}");
    assert_eq!(
        guest_name(&host).await,
        (200, "vm-frozen".into()),
        "guests are served from memory while etcd is frozen"
    );

    etcd.thaw();
    let thawed = Instant::now();
    loop {
        let (status, body) = readiness(&control).await;
        if status == 200 {
            break;
        }
        assert!(
            thawed.elapsed() < Duration::from_secs(60),
            "etcd went on 60 s ago and readiness still {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let renamed = json!({"instance": {"compute": {"name": "vm-thawed"}}});
    let patched = control
        .call("PATCH", "/v1/vms/vm1", Some(&renamed), &[])
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(guest_name(&host).await, (200, "vm-thawed".into()));
    eprintln!(
        "a frozen etcd was noticed after {noticed:?}; recovered {:?} after it went on",
        thawed.elapsed()
    );
}

/// Two hosts on one etcd, live: a VM assigned to host B and written through host A's control
/// API is served by B and not by A; moving it to A is one write through B, after which B no
/// longer serves it (at once: a write returns once its own host applied it) and A does.
#[cfg(feature = "fleet")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_host_is_served_by_the_host_it_names() {
    let etcd = etcd::TestEtcd::start("it-hosts");
    let dir = TempDir::new("fleet-hosts");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let host_a = serve_as(&etcd, &data_a, "host-a");
    let host_b = serve_as(&etcd, &data_b, "host-b");
    let (control_a, control_b) = (host_a.control_api(&data_a), host_b.control_api(&data_b));
    assert_eq!(served_name(&host_a).await, None);
    assert_eq!(served_name(&host_b).await, None);

    let vm = json!({
        "host": "host-b",
        "callers": ["127.0.0.1"],
        "instance": {"compute": {"name": "vm-moving"}},
    });
    let put = control_a.call("PUT", "/v1/vms/vm1", Some(&vm), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text());
    until_served(&host_b, Some("vm-moving")).await;
    assert_eq!(served_name(&host_a).await, None, "host A only wrote it");

    let moved = control_b
        .call(
            "PATCH",
            "/v1/vms/vm1",
            Some(&json!({"host": "host-a"})),
            &[],
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text());
    assert_eq!(
        served_name(&host_b).await,
        None,
        "host B stopped serving it before acknowledging the move"
    );
    until_served(&host_a, Some("vm-moving")).await;
    assert_eq!(served_name(&host_b).await, None);

    let deleted = control_b.call("DELETE", "/v1/vms/vm1", None, &[]).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    until_served(&host_a, None).await;
    let gone = control_a.call("GET", "/v1/vms/vm1", None, &[]).await;
    assert_eq!(gone.status, 404);
}

/// A loopback TCP proxy in front of etcd that the test can cut (every connection dropped,
/// new ones refused) and reopen: one host losing etcd while the others keep it.
#[cfg(feature = "fleet")]
pub(crate) struct CuttableProxy {
    pub(crate) addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

#[cfg(feature = "fleet")]
impl CuttableProxy {
    pub(crate) async fn start(to: String) -> CuttableProxy {
        CuttableProxy::start_on("127.0.0.1:0", to).await
    }

    /// A proxy listening on `bind` (an address of another namespace's link, say).
    pub(crate) async fn start_on(bind: &str, to: String) -> CuttableProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (is_open, live) = (open.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !is_open.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let to = to.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                live.lock().unwrap().push(task.abort_handle());
            }
        });
        CuttableProxy {
            addr,
            open,
            connections,
            accept,
        }
    }

    pub(crate) fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    pub(crate) fn reopen(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(feature = "fleet")]
impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Host B loses etcd while host A writes and etcd compacts the revisions B has not seen: when
/// B is back, its watch cannot resume, so it reads everything again and serves the new state
/// (never a mix), and goes on following.
#[cfg(feature = "fleet")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_while_a_host_is_cut_off_forces_a_clean_resync() {
    let etcd = etcd::TestEtcd::start("it-compaction");
    let proxy = CuttableProxy::start(etcd.endpoint()).await;
    let dir = TempDir::new("fleet-compaction");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let host_a = serve_as(&etcd, &data_a, "host-a");
    let host_b = serve_through(&proxy.addr.to_string(), &data_b, "host-b");
    let control_a = host_a.control_api(&data_a);
    let vm = json!({"host": "host-b", "callers": ["127.0.0.1"], "instance": {"compute": {"name": "before"}}});
    let put = control_a.call("PUT", "/v1/vms/vm1", Some(&vm), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text());
    until_served(&host_b, Some("before")).await;

    proxy.cut();
    // Two writes B does not see; compacting at the second removes the first, where B's watch
    // would resume (etcd still serves a watch from the compaction revision itself).
    let mut patched = None;
    for name in ["between", "after"] {
        let renamed = json!({"instance": {"compute": {"name": name}}});
        let reply = control_a
            .call("PATCH", "/v1/vms/vm1", Some(&renamed), &[])
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        patched = Some(reply);
    }
    let patched = patched.unwrap();
    let revision: String = patched
        .header("etag")
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let compacted = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoint(), "compact", &revision])
        .output()
        .expect("etcdctl (apt: etcd-client)");
    assert!(compacted.status.success(), "{compacted:?}");
    assert_eq!(
        served_name(&host_b).await.as_deref(),
        Some("before"),
        "cut off, host B serves the last state it had"
    );

    proxy.reopen();
    until_served(&host_b, Some("after")).await;
    assert!(
        host_b.wait_for_log("resynchronised from the store", 1, Duration::from_secs(5)),
        "the host resynchronised rather than resumed"
    );
    // And it follows again from the resync's revision.
    let again = json!({"instance": {"compute": {"name": "followed"}}});
    let patched = control_a
        .call("PATCH", "/v1/vms/vm1", Some(&again), &[])
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    until_served(&host_b, Some("followed")).await;
}

/// One write with more changes than one etcd transaction may hold (`--etcd-max-txn-ops`, here
/// 4) is refused whole with a 413 that says why and how to raise the limit, not a 500; at the
/// limit it is written.
#[cfg(feature = "fleet")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_over_the_transaction_limit_is_refused_with_the_reason() {
    let etcd = etcd::TestEtcd::start("it-txn-limit");
    let dir = TempDir::new("fleet-txn-limit");
    let data = dir.path().join("a");
    let host = serve_with(
        &etcd.endpoint(),
        &data,
        "host-a",
        &["--etcd-max-txn-ops", "4"],
    );
    let control = host.control_api(&data);
    for n in 1..=4 {
        let vm = json!({"callers": [format!("127.0.0.{n}")]});
        let put = control
            .call("PUT", &format!("/v1/vms/vm{n}"), Some(&vm), &[])
            .await;
        assert_eq!(put.status, 201, "{}", put.text());
    }
    // An event is one transaction: the event, each VM's DocumentIncarnation and the events
    // revision (`store/etcd/events.rs`).
    let four_vms = json!({"type": "Reboot", "vms": ["vm1", "vm2", "vm3", "vm4"]});
    let refused = control
        .call("POST", "/v1/events", Some(&four_vms), &[])
        .await;
    assert_eq!(refused.status, 413, "{}", refused.text());
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "too_many_changes");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("6 changes in one transaction")
            && message.contains("(4, etcd's --max-txn-ops)"),
        "{message}"
    );
    assert!(message.contains("--etcd-max-txn-ops"), "{message}");
    let listed = control.call("GET", "/v1/events", None, &[]).await.json();
    assert_eq!(listed, json!({"events": []}), "nothing written");

    let two_vms = json!({"type": "Reboot", "vms": ["vm1", "vm2"]});
    let written = control
        .call("POST", "/v1/events", Some(&two_vms), &[])
        .await;
    assert_eq!(written.status, 201, "{}", written.text());
}
