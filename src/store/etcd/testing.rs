//! A real etcd for tests: Debian's `etcd` (package etcd-server) started on loopback ports in a
//! temporary directory, killed and removed when dropped. The start recipe and its pitfalls are
//! in dependencies-and-ceilings.md §2 (`--logger zap` with `--log-outputs`, a metrics port of
//! its own). `testing_cluster.rs` runs three of them as one cluster.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// Restarts and whole-cluster stops are used by tests/it/fleet_cluster.rs only.
#[allow(dead_code)]
#[path = "testing_cluster.rs"]
mod cluster;
pub(crate) use cluster::TestCluster;

/// How long etcd may take to answer after it was started (it measured 0.63 s here).
const READY_WITHIN: Duration = Duration::from_secs(20);

/// One etcd member on loopback.
pub(crate) struct TestEtcd {
    /// `None` until started ([`TestEtcd::reserve`]) and after [`TestEtcd::stop`].
    child: Option<Child>,
    dir: PathBuf,
    /// Client, peer and metrics listeners.
    ports: [SocketAddr; 3],
    /// `--name`, and `--initial-cluster` (`name=peer-url,…`): this member alone, or a cluster.
    name: String,
    initial_cluster: String,
    /// Client TLS: the member's certificate, key and the CA its clients' certificates must
    /// chain to (`--client-cert-auth`); `None`: plain HTTP.
    client_tls: Option<[PathBuf; 3]>,
}

impl TestEtcd {
    /// Starts etcd and returns once its client port accepts connections. Panics with how to
    /// install it when the binary is missing: the fleet tests never skip.
    pub(crate) fn start(name: &str) -> TestEtcd {
        let mut etcd = TestEtcd::reserve(name);
        etcd.restart();
        etcd
    }

    /// A member's directory and ports, not started yet ([`TestEtcd::restart`] starts it):
    /// for clients that must start before etcd does.
    pub(crate) fn reserve(name: &str) -> TestEtcd {
        let ports = free_ports();
        let alone = format!("t=http://{}", ports[1]);
        TestEtcd::member(name, "t", ports, alone)
    }

    /// A member named `member` of the cluster `initial_cluster`, on `ports`, not started yet;
    /// its directory is named after `label`.
    fn member(
        label: &str,
        member: &str,
        ports: [SocketAddr; 3],
        initial_cluster: String,
    ) -> TestEtcd {
        let dir = std::env::temp_dir().join(format!("azimds-etcd-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestEtcd {
            child: None,
            dir,
            ports,
            name: member.to_string(),
            initial_cluster,
            client_tls: None,
        }
    }

    /// [`TestEtcd::start`] serving its clients over TLS with `cert` and `key`, and requiring
    /// a client certificate issued by `ca`.
    #[allow(dead_code)] // tests/it/fleet_security.rs only
    pub(crate) fn start_with_client_tls(
        name: &str,
        cert: PathBuf,
        key: PathBuf,
        ca: PathBuf,
    ) -> TestEtcd {
        let mut etcd = TestEtcd::reserve(name);
        etcd.client_tls = Some([cert, key, ca]);
        etcd.restart();
        etcd
    }

    /// Kills the member (SIGKILL: what a crash or a lost host looks like to clients).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the member (SIGSTOP): alive, its ports open, answering nothing, as a hung
    /// process or a host paused under it looks. [`TestEtcd::thaw`] lets it go on.
    #[allow(dead_code)] // tests/it/fleet.rs only
    pub(crate) fn freeze(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    #[allow(dead_code)] // tests/it/fleet.rs only
    pub(crate) fn thaw(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let child = self.child.as_ref().expect("the member is running");
        rustix::process::kill_process(rustix::process::Pid::from_child(child), signal)
            .expect("the member can be signalled");
    }

    /// Starts the member (again) on its data directory and ports.
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.child = Some(spawn(self));
        self.wait_until_listening();
    }

    /// `host:port` of the client listener.
    pub(crate) fn endpoint(&self) -> String {
        self.ports[0].to_string()
    }

    /// etcd's own log, for a failed test's message.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        while TcpStream::connect_timeout(&self.ports[0], Duration::from_millis(200)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("etcd exited at start ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not listen within {READY_WITHIN:?}:\n{}",
                self.log()
            );
            // Nothing to wait on but the port: etcd says nothing else when it is up.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(member: &TestEtcd) -> Child {
    let [client, peer, metrics] = member.ports;
    let dir = &member.dir;
    let url = |addr: SocketAddr| format!("http://{addr}");
    let client_url = match member.client_tls {
        Some(_) => format!("https://{client}"),
        None => url(client),
    };
    let mut command = Command::new("etcd");
    if let Some([cert, key, ca]) = &member.client_tls {
        command
            .arg("--cert-file")
            .arg(cert)
            .arg("--key-file")
            .arg(key)
            .arg("--trusted-ca-file")
            .arg(ca)
            .arg("--client-cert-auth");
    }
    command
        .args(["--name", &member.name, "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &url(peer)])
        .args(["--initial-advertise-peer-urls", &url(peer)])
        .args(["--initial-cluster", &member.initial_cluster])
        .args(["--initial-cluster-state", "new"])
        .args(["--listen-metrics-urls", &url(metrics)])
        .args(["--logger", "zap", "--log-outputs"])
        .arg(dir.join("etcd.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run etcd ({e}): install it with scripts/install-test-deps.sh (apt: etcd-server)")
        })
}

/// Three distinct free loopback ports (held open together so they differ, then released).
fn free_ports() -> [SocketAddr; 3] {
    // Below the kernel's ephemeral range (32768-60999 by default): a port picked by binding
    // port 0 is free only until the next `bind(0)` or outgoing connection of a parallel test
    // takes it, and a member started again later (a restart, or a test that starts etcd after
    // azimds) would then find it taken. Ports here are never handed out by the kernel.
    // Never the same port twice in one test process, where members of parallel tests start.
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let mut ports = Vec::with_capacity(3);
    while ports.len() < 3 {
        let port = 20_000 + fastrand::u16(..12_000);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if !handed_out.contains(&port) && TcpListener::bind(addr).is_ok() {
            handed_out.push(port);
            ports.push(addr);
        }
    }
    [ports[0], ports[1], ports[2]]
}
