//! Fleet mode (issue 11, item 7) in real network namespaces: two hypervisor hosts, each an
//! azimds serving `169.254.169.254:80` in its own namespace to a VM namespace behind a bridge,
//! both on one etcd. The two VMs have the same private address, as VMs on different
//! hypervisors may: each host serves only its own. Each host reaches etcd through its own
//! link to the test's namespace, where a proxy the test can cut stands in for the network.
//!
//! ```text
//!  test namespace: etcd on 127.0.0.1, proxy-a on 10.215.1.1, proxy-b on 10.215.2.1
//!   ├─ veth ── azfl-<pid>-a   10.215.1.2/30; br0 10.216.0.1/24; lo 169.254.169.254; azimds host-a
//!   │            └─ veth ── azfl-<pid>-a-vm   eth0 10.216.0.11/24 (vm-a)
//!   └─ veth ── azfl-<pid>-b   10.215.2.2/30; br0 10.216.0.1/24; lo 169.254.169.254; azimds host-b
//!                └─ veth ── azfl-<pid>-b-vm   eth0 10.216.0.11/24 (vm-b)
//! ```
//!
//! Guests use curl through `ip netns exec`; the control APIs are unix sockets. Everything is
//! removed on drop, also when an assertion fails. Needs root (the tests never skip).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use azimds::client::ControlClient;
use azimds::config::ControlAddress;
use http::Method;
use serde_json::{Value, json};

use crate::fleet::{CuttableProxy, etcd, kek_file};
use crate::isolation::{destroy_namespace, ip, require_root};

const NAME: &str = "/metadata/instance/compute/name?api-version=2021-02-01&format=text";
const VM_ADDRESS: &str = "10.216.0.11";
const BRIDGE_ADDRESS: &str = "10.216.0.1";

/// One hypervisor host: its namespaces, its azimds and its link to etcd.
struct Host {
    namespace: String,
    vm_namespace: String,
    server: Option<Child>,
    proxy: CuttableProxy,
    control: ControlClient,
}

impl Host {
    async fn start(etcd: &etcd::TestEtcd, dir: &Path, letter: char, index: u8) -> Host {
        let base = format!("azfl-{}-{letter}", std::process::id());
        let namespace = base.clone();
        let vm_namespace = format!("{base}-vm");
        remove_stale_namespaces();
        destroy_namespace(&namespace);
        destroy_namespace(&vm_namespace);
        let link = format!("azfl{}{letter}", std::process::id() % 100_000);
        let (outer, inner) = (format!("10.215.{index}.1"), format!("10.215.{index}.2"));
        ip(&["netns", "add", &namespace]);
        ip(&["netns", "add", &vm_namespace]);
        for ns in [&namespace, &vm_namespace] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // The host's link to the test namespace, where etcd's proxy listens.
        ip(&[
            "link", "add", &link, "type", "veth", "peer", "name", "uplink", "netns", &namespace,
        ]);
        ip(&["addr", "add", &format!("{outer}/30"), "dev", &link]);
        ip(&["link", "set", &link, "up"]);
        ip(&[
            "-n",
            &namespace,
            "addr",
            "add",
            &format!("{inner}/30"),
            "dev",
            "uplink",
        ]);
        ip(&["-n", &namespace, "link", "set", "uplink", "up"]);
        // The hypervisor side: 169.254.169.254 on lo, a bridge to the VM.
        ip(&[
            "-n",
            &namespace,
            "addr",
            "add",
            "169.254.169.254/32",
            "dev",
            "lo",
        ]);
        ip(&["-n", &namespace, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &namespace,
            "addr",
            "add",
            &format!("{BRIDGE_ADDRESS}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &namespace, "link", "set", "br0", "up"]);
        ip(&[
            "-n",
            &namespace,
            "link",
            "add",
            "tap0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &vm_namespace,
        ]);
        ip(&["-n", &namespace, "link", "set", "tap0", "master", "br0"]);
        ip(&["-n", &namespace, "link", "set", "tap0", "up"]);
        ip(&[
            "-n",
            &vm_namespace,
            "addr",
            "add",
            &format!("{VM_ADDRESS}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &vm_namespace, "link", "set", "eth0", "up"]);
        ip(&[
            "-n",
            &vm_namespace,
            "route",
            "add",
            "169.254.169.254/32",
            "via",
            BRIDGE_ADDRESS,
        ]);

        let proxy = CuttableProxy::start_on(&format!("{outer}:0"), etcd.endpoint()).await;
        let data = dir.join(format!("host-{letter}"));
        let socket = dir.join(format!("host-{letter}.sock"));
        let server = start_azimds(&namespace, &data, &socket, proxy.addr, letter);
        Host {
            namespace,
            vm_namespace,
            server: Some(server),
            proxy,
            control: ControlClient::new(ControlAddress::Unix(socket), None),
        }
    }

    /// A control request: status and JSON body (or null).
    async fn control(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        let reply = self
            .control
            .send(method, path, body, &[])
            .await
            .unwrap_or_else(|e| panic!("control API of {}: {e}", self.namespace));
        let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        (reply.status.as_u16(), json)
    }

    /// The name this host serves its VM, `None` when it closes the connection unanswered
    /// (it serves no VM at that address).
    fn guest_name(&self) -> Option<String> {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.vm_namespace, "curl", "-sS"])
            .args(["--noproxy", "*", "--max-time", "5", "-H", "Metadata: true"])
            .args(["-w", "\n%{http_code}"])
            .arg(format!("http://169.254.169.254{NAME}"))
            .env_remove("http_proxy")
            .env_remove("all_proxy")
            .output()
            .expect("curl in the VM namespace");
        match output.status.code() {
            Some(0) => {
                let text = String::from_utf8_lossy(&output.stdout).into_owned();
                let (body, status) = text.rsplit_once('\n').unwrap();
                assert_eq!(status, "200", "{body}");
                Some(body.to_string())
            }
            // Empty reply, send or receive failure: closed without an answer.
            Some(52 | 55 | 56) => None,
            other => panic!(
                "curl from {} exited {other:?}: {}",
                self.vm_namespace,
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// Waits (at most `within`) until the guest is served `expected`.
    async fn until_served(&self, expected: Option<&str>, within: Duration) {
        let started = Instant::now();
        loop {
            let served = self.guest_name();
            if served.as_deref() == expected {
                return;
            }
            assert!(
                started.elapsed() < within,
                "{} serves {served:?}, not {expected:?}, after {within:?}",
                self.vm_namespace
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        destroy_namespace(&self.vm_namespace);
        // Deleting the namespace deletes its end of the uplink, and so the pair.
        destroy_namespace(&self.namespace);
    }
}

/// azimds in `namespace` on `169.254.169.254:80`, on the etcd behind `proxy`; returns once it
/// printed its listening line.
fn start_azimds(
    namespace: &str,
    data: &Path,
    socket: &Path,
    proxy: std::net::SocketAddr,
    letter: char,
) -> Child {
    let kek: PathBuf = kek_file(data.parent().unwrap());
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            namespace,
            env!("CARGO_BIN_EXE_azimds"),
            "serve",
        ])
        .args([
            "--listen",
            "169.254.169.254:80",
            "--callers",
            "source-address",
        ])
        // The test polls faster than Azure's guest rate limit (spec §1.11) allows.
        .args(["--rate-limit", "0"])
        .args([
            "--store",
            &format!("etcd://{proxy}"),
            "--etcd-prefix",
            "/ns-fleet/",
        ])
        .arg("--kek-file")
        .arg(&kek)
        .args(["--host-name", &format!("host-{letter}")])
        .arg("--data")
        .arg(data)
        .arg("--control")
        .arg(format!("unix:{}", socket.display()))
        .env("AZIMDS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start azimds in the host namespace");
    let stderr = child.stderr.take().unwrap();
    let (listening, ready) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listen=") {
                let _ = listening.send(line);
            }
        }
    });
    let line = ready
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("azimds in {namespace} did not report listening in 30 s"));
    assert!(line.contains("listen=169.254.169.254:80"), "{line}");
    child
}

/// Removes namespaces an earlier run left when it was killed before its `Drop` ran (their
/// process id no longer exists).
fn remove_stale_namespaces() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let pid = name
            .strip_prefix("azfl-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            destroy_namespace(name);
        }
    }
}

fn vm(host: &str, name: &str) -> Value {
    json!({"host": host, "callers": [VM_ADDRESS], "instance": {"compute": {"name": name}}})
}

/// Two hypervisors, one etcd: a VM written through either host is served by the host it
/// names, to its VM only (both VMs have one address); a host cut off from etcd keeps serving
/// its VM, refuses writes with 503, and converges when it is back; a VM moved between the
/// hosts is then served by the other hypervisor's VM namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hypervisors_on_one_etcd_serve_their_own_vms_through_an_outage_and_a_move() {
    require_root();
    let etcd = etcd::TestEtcd::start("it-namespaces");
    let dir = crate::support::TempDir::new("fleet-namespaces");
    let a = Host::start(&etcd, dir.path(), 'a', 1).await;
    let b = Host::start(&etcd, dir.path(), 'b', 2).await;
    let long = Duration::from_secs(20);

    let (status, body) = a
        .control(Method::PUT, "/v1/vms/vm-a", Some(vm("host-a", "ns-vm-a")))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = a
        .control(Method::PUT, "/v1/vms/vm-b", Some(vm("host-b", "ns-vm-b")))
        .await;
    assert_eq!(status, 201, "{body}");
    a.until_served(Some("ns-vm-a"), long).await;
    b.until_served(Some("ns-vm-b"), long).await;

    // Host A loses etcd: its guest is still served, its control writes are refused.
    a.proxy.cut();
    let patch = |name: &str| Some(json!({"instance": {"compute": {"name": name}}}));
    let (status, body) = a
        .control(Method::PATCH, "/v1/vms/vm-a", patch("while-cut"))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    assert_eq!(a.guest_name().as_deref(), Some("ns-vm-a"));
    let (status, body) = b
        .control(Method::PATCH, "/v1/vms/vm-a", patch("written-on-b"))
        .await;
    assert_eq!(status, 200, "host B still has etcd: {body}");
    assert_eq!(
        a.guest_name().as_deref(),
        Some("ns-vm-a"),
        "cut off, host A serves the last state it had"
    );
    a.proxy.reopen();
    a.until_served(Some("written-on-b"), long).await;
    let (status, body) = a.control(Method::GET, "/v1/vms/vm-a", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instance"]["compute"]["name"], "written-on-b");

    // vm-a moves to host B (whose VM namespace has the same address, once vm-b is gone).
    let (status, body) = b.control(Method::DELETE, "/v1/vms/vm-b", None).await;
    assert_eq!(status, 204, "{body}");
    b.until_served(None, long).await;
    let (status, body) = a
        .control(
            Method::PATCH,
            "/v1/vms/vm-a",
            Some(json!({"host": "host-b"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    b.until_served(Some("written-on-b"), long).await;
    a.until_served(None, long).await;
}
