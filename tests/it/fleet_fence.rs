//! Issue 11, item 2: moving a VM is one write and is fenced: the new host serves it only
//! once the old host has stopped (its progress key reached the move), or once the old host's
//! lease expired (it stopped, or lost etcd). Real etcd, real azimds processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fleet::{CuttableProxy, etcd, serve_as, serve_through};
use crate::support::{ControlApi, Spawned, TempDir};

/// `<prefix>progress/<host>`'s lease (src/store/etcd/progress.rs); its keep-alive is sent
/// every 3.3 s, so a lease outlives a host by 6.7 s at least and 10 s (plus etcd's expiry
/// check, up to 0.5 s) at most.
const LEASE_TTL: Duration = Duration::from_secs(10);
const LEASE_AT_LEAST: Duration = Duration::from_millis(6700);

/// A loopback TCP proxy that holds every byte for `delay` in each direction: a host whose
/// link to etcd is slow learns of a move later than the others (without the fence, the
/// new host would serve the VM while the slow old host still does).
struct DelayProxy {
    addr: std::net::SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    async fn start(to: String, delay: Duration) -> DelayProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let to = to.clone();
                connections.spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        delayed(client_read, server_write, delay),
                        delayed(server_read, client_write, delay)
                    );
                });
            }
        });
        DelayProxy { addr, accept }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.accept.abort();
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read, in order.
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (send, mut receive) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buffer).await {
            if send
                .send((Instant::now() + delay, buffer[..n].to_vec()))
                .is_err()
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = receive.recv().await {
            tokio::time::sleep_until(due.into()).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// One guest request to a host: when it was sent, when its answer came, whether the host
/// served the VM.
#[derive(Clone, Copy)]
struct Sample {
    sent: Instant,
    answered: Instant,
    served: bool,
}

/// Whether `host` answers 127.0.0.1 with the VM now. A host that does not serve it closes
/// the connection unanswered, or, when it dropped the VM between accepting the connection
/// and reading the request, answers 404: neither is the VM served.
async fn serves_now(host: &Spawned) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(host.field("listen"))
        .await
        .unwrap();
    let request = "GET /metadata/instance/compute/name?api-version=2021-02-01&format=text HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer or a close within 10 s");
    if answer.is_empty() {
        return false;
    }
    let reply = crate::support::parse_reply(&answer);
    match reply.status {
        200 => {
            assert_eq!(reply.text(), "vm-moving");
            true
        }
        404 => false,
        status => panic!("{status} {}", reply.text()),
    }
}

/// Asks `host` for the VM as fast as it answers until `stop`.
fn poll(host: Arc<Spawned>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let mut samples = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let sent = Instant::now();
            let served = serves_now(&host).await;
            samples.push(Sample {
                sent,
                answered: Instant::now(),
                served,
            });
        }
        samples
    })
}

/// Moves the VM `vm1` between `hosts` `moves` times (each write through `control`) while
/// both hosts are polled, and asserts for every move that the old host never served it
/// after the new one had: no request to the old host *sent* after a request to the new host
/// was *answered* with the VM got the VM. Each host changes once per move (the old one stops,
/// the new one starts), so that is exactly "never both at one instant". Returns each move's
/// latency: from the write sent to the new host's first answer with the VM.
async fn move_back_and_forth(
    hosts: [Arc<Spawned>; 2],
    names: [&str; 2],
    control: &ControlApi,
    moves: usize,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for n in 0..moves {
        let (old, new) = (n % 2, (n + 1) % 2);
        assert!(serves_now(&hosts[old]).await, "move {n}");
        assert!(!serves_now(&hosts[new]).await, "move {n}");
        let stop = Arc::new(AtomicBool::new(false));
        let pollers = [
            poll(Arc::clone(&hosts[old]), Arc::clone(&stop)),
            poll(Arc::clone(&hosts[new]), Arc::clone(&stop)),
        ];
        tokio::time::sleep(Duration::from_millis(20)).await;
        let written = Instant::now();
        let moved = control
            .call(
                "PATCH",
                "/v1/vms/vm1",
                Some(&json!({"host": names[new]})),
                &[],
            )
            .await;
        assert_eq!(moved.status, 200, "{}", moved.text());
        until_served(&hosts[new], true, Duration::from_secs(10)).await;
        // Long enough for a slow old host to be caught still serving, were it not fenced.
        tokio::time::sleep(Duration::from_millis(150)).await;
        stop.store(true, Ordering::SeqCst);
        let [old_samples, new_samples] = pollers;
        let (old_samples, new_samples) = (old_samples.await.unwrap(), new_samples.await.unwrap());
        let first_new = new_samples
            .iter()
            .filter(|s| s.served)
            .map(|s| s.answered)
            .min()
            .expect("the new host served the VM while it was polled");
        let late_old = old_samples
            .iter()
            .filter(|s| s.served && s.sent > first_new)
            .count();
        assert_eq!(
            late_old,
            0,
            "move {n}: the old host {} served the VM after the new host {} had ({} of {} requests)",
            names[old],
            names[new],
            late_old,
            old_samples.len()
        );
        assert!(
            old_samples.iter().any(|s| !s.served),
            "move {n}: the old host stopped serving it"
        );
        assert!(!serves_now(&hosts[old]).await, "move {n}");
        latencies.push(first_new - written);
    }
    latencies
}

/// Two hosts, host A's link to etcd 25 ms slow each way: moving a VM back and forth twenty
/// times, tightly polled on both hosts, it is never served by both. (Without the fence the
/// moves from A to B fail this: B applies the move 25 ms before A drops the VM.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_vm_is_never_served_by_two_hosts_at_once() {
    let etcd = etcd::TestEtcd::start("it-fence-moves");
    let slow = DelayProxy::start(etcd.endpoint(), Duration::from_millis(25)).await;
    let dir = TempDir::new("fleet-fence-moves");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let host_a = Arc::new(serve_through(&slow.addr.to_string(), &data_a, "host-a"));
    let host_b = Arc::new(serve_as(&etcd, &data_b, "host-b"));
    let control = host_b.control_api(&data_b);
    let vm = json!({"host": "host-a", "callers": ["127.0.0.1"], "instance": {"compute": {"name": "vm-moving"}}});
    let put = control.call("PUT", "/v1/vms/vm1", Some(&vm), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text());
    until_served(&host_a, true, Duration::from_secs(10)).await;

    let latencies = move_back_and_forth(
        [Arc::clone(&host_a), Arc::clone(&host_b)],
        ["host-a", "host-b"],
        &control,
        20,
    )
    .await;
    report("A slow (25 ms each way)", &latencies);
    assert!(
        host_b
            .log_contains("a VM moved here; serving it once the host it left has applied the move"),
        "host B held the VM moved from A"
    );
}

/// The same on a plain loopback (both hosts as fast): never served by both, and the moves'
/// latency printed (`--nocapture`), first with only the new host polled (every 5 ms), then
/// with both polled as fast as they answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_between_two_fast_hosts_are_never_served_twice() {
    let etcd = etcd::TestEtcd::start("it-fence-fast");
    let dir = TempDir::new("fleet-fence-fast");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let host_a = Arc::new(serve_as(&etcd, &data_a, "host-a"));
    let host_b = Arc::new(serve_as(&etcd, &data_b, "host-b"));
    let control = host_b.control_api(&data_b);
    let vm = json!({"host": "host-a", "callers": ["127.0.0.1"], "instance": {"compute": {"name": "vm-moving"}}});
    let put = control.call("PUT", "/v1/vms/vm1", Some(&vm), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text());
    until_served(&host_a, true, Duration::from_secs(10)).await;
    let hosts = [host_a, host_b];
    let names = ["host-a", "host-b"];
    let mut quiet = Vec::new();
    for n in 0..20 {
        let (old, new) = (n % 2, (n + 1) % 2);
        let written = Instant::now();
        let moved = control
            .call(
                "PATCH",
                "/v1/vms/vm1",
                Some(&json!({"host": names[new]})),
                &[],
            )
            .await;
        assert_eq!(moved.status, 200, "{}", moved.text());
        until_served(&hosts[new], true, Duration::from_secs(10)).await;
        quiet.push(written.elapsed());
        assert!(!serves_now(&hosts[old]).await, "move {n}");
    }
    report("loopback, the new host polled every 5 ms", &quiet);
    let latencies = move_back_and_forth(hosts, names, &control, 20).await;
    report("loopback, both hosts polled flat out", &latencies);
}

fn report(what: &str, latencies: &[Duration]) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let ms = |d: &Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    eprintln!(
        "move latency, {what}: min {} ms, median {} ms, max {} ms; each: {}",
        ms(&sorted[0]),
        ms(&sorted[sorted.len() / 2]),
        ms(&sorted[sorted.len() - 1]),
        latencies.iter().map(ms).collect::<Vec<_>>().join(" ")
    );
}

/// Waits until `server` serves the VM (`true`) or does not (`false`), up to `limit`.
async fn until_served(server: &Spawned, expected: bool, limit: Duration) -> Duration {
    let started = Instant::now();
    while serves_now(server).await != expected {
        assert!(
            started.elapsed() < limit,
            "serving the VM is not {expected} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

/// Asserts `server` does not serve the VM until `until` (polling).
async fn not_served_until(server: &Spawned, until: Instant, why: &str) {
    while Instant::now() < until {
        assert!(!serves_now(server).await, "{why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The old host cut off from etcd cannot say it dropped the VM (and keeps serving its last
/// state, by design): the new host holds the VM until the old host's lease expires, and not
/// a moment before; once the old host is back it drops the VM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_away_from_a_cut_off_host_waits_for_its_lease() {
    let etcd = etcd::TestEtcd::start("it-fence-cut");
    let proxy = CuttableProxy::start(etcd.endpoint()).await;
    let dir = TempDir::new("fleet-fence-cut");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let host_a = serve_through(&proxy.addr.to_string(), &data_a, "host-a");
    let host_b = serve_as(&etcd, &data_b, "host-b");
    let control = host_b.control_api(&data_b);
    let vm = json!({"host": "host-a", "callers": ["127.0.0.1"], "instance": {"compute": {"name": "vm-moving"}}});
    let put = control.call("PUT", "/v1/vms/vm1", Some(&vm), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text());
    until_served(&host_a, true, Duration::from_secs(10)).await;

    proxy.cut();
    let cut = Instant::now();
    let moved = control
        .call(
            "PATCH",
            "/v1/vms/vm1",
            Some(&json!({"host": "host-b"})),
            &[],
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text());
    not_served_until(
        &host_b,
        cut + LEASE_AT_LEAST - Duration::from_millis(200),
        "host B served the VM while host A's lease was alive",
    )
    .await;
    assert!(
        serves_now(&host_a).await,
        "cut off, host A serves its last state"
    );
    until_served(&host_b, true, LEASE_TTL + Duration::from_secs(3)).await;
    let waited = cut.elapsed();
    eprintln!("cut-off old host: the new host served the VM {waited:?} after the cut");
    assert!(
        waited >= LEASE_AT_LEAST - Duration::from_millis(200),
        "{waited:?}"
    );

    proxy.reopen();
    until_served(&host_a, false, Duration::from_secs(15)).await;
    assert!(serves_now(&host_b).await);
}

/// A host killed does not hold its VMs hostage: a move away from it waits for its lease
/// (its progress key is still there, so the new host holds the VM), then the new host serves
/// it, within the lease's TTL of the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_blocks_a_move_away_only_until_its_lease_expires() {
    let etcd = etcd::TestEtcd::start("it-fence-killed");
    let dir = TempDir::new("fleet-fence-killed");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let host_a = serve_as(&etcd, &data_a, "host-a");
    let host_b = serve_as(&etcd, &data_b, "host-b");
    let control = host_b.control_api(&data_b);
    let vm = json!({"host": "host-a", "callers": ["127.0.0.1"], "instance": {"compute": {"name": "vm-moving"}}});
    let put = control.call("PUT", "/v1/vms/vm1", Some(&vm), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text());
    until_served(&host_a, true, Duration::from_secs(10)).await;

    drop(host_a); // SIGKILL: no goodbye, the lease lives on until its TTL
    let killed = Instant::now();
    let moved = control
        .call(
            "PATCH",
            "/v1/vms/vm1",
            Some(&json!({"host": "host-b"})),
            &[],
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text());
    not_served_until(
        &host_b,
        killed + Duration::from_secs(2),
        "host B served the VM while host A's lease was alive",
    )
    .await;
    until_served(&host_b, true, LEASE_TTL + Duration::from_secs(3)).await;
    eprintln!(
        "killed old host: the new host served the VM {:?} after the kill",
        killed.elapsed()
    );
    assert!(
        host_b.wait_for_log("serving a VM moved here", 1, Duration::from_secs(2)),
        "host B released the held VM"
    );
}
