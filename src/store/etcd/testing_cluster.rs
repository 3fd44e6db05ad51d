//! Three etcd members on loopback as one cluster (`--initial-cluster` of their peer URLs), for
//! the fleet tests that kill the leader or the whole cluster. Each member is a [`TestEtcd`]
//! with its own directory and client, peer and metrics ports; all are killed and removed when
//! the cluster is dropped.
//!
//! Health and leadership are read from each member's metrics listener (`/health`, and the
//! `etcd_server_is_leader` gauge of `/metrics`) over plain HTTP: etcdctl is not guaranteed to
//! be installed, and a synchronous read keeps this usable from any test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{READY_WITHIN, TestEtcd, free_ports};

/// Members of a test cluster.
const MEMBERS: usize = 3;

/// Three members started together as a new cluster.
pub(crate) struct TestCluster {
    members: Vec<TestEtcd>,
}

impl TestCluster {
    /// Starts three members and returns once every one is healthy (a leader elected and the
    /// member serving), within 20 s.
    pub(crate) fn start(name: &str) -> TestCluster {
        let ports: Vec<[SocketAddr; 3]> = (0..MEMBERS).map(|_| free_ports()).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(n, [_, peer, _])| format!("m{n}=http://{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = ports
            .into_iter()
            .enumerate()
            .map(|(n, ports)| {
                let label = format!("{name}-m{n}");
                TestEtcd::member(&label, &format!("m{n}"), ports, initial_cluster.clone())
            })
            .collect();
        let mut cluster = TestCluster { members };
        cluster.start_all();
        cluster
    }

    /// The client endpoints, comma-joined, as `--store etcd://…` takes them.
    pub(crate) fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(TestEtcd::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The running member that says it is the leader, waiting (20 s at most) while the
    /// cluster elects one. Panics with the members' logs if none is elected by then.
    pub(crate) fn leader(&self) -> usize {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let leaders: Vec<usize> = (0..MEMBERS)
                .filter(|&n| self.members[n].child.is_some() && self.is_leader(n))
                .collect();
            // Two during a hand-over (an old leader not yet stepped down): ask again.
            if let [leader] = leaders[..] {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no single leader within {READY_WITHIN:?} ({leaders:?}):\n{}",
                self.logs()
            );
            // The gauge is all there is to watch: an election has no event to await.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills member `n` (SIGKILL: a crashed machine, not a member leaving the cluster).
    pub(crate) fn kill(&mut self, n: usize) {
        self.members[n].stop();
    }

    /// Starts member `n` again on its data directory and returns once it is healthy.
    pub(crate) fn restart(&mut self, n: usize) {
        self.members[n].restart();
        self.wait_until_healthy(&[n]);
    }

    /// Kills every member.
    pub(crate) fn stop_all(&mut self) {
        for member in &mut self.members {
            member.stop();
        }
    }

    /// Starts every member (again) and returns once all are healthy. A member listens before
    /// it has joined, so each is started without waiting for the others.
    pub(crate) fn start_all(&mut self) {
        for member in &mut self.members {
            member.restart();
        }
        self.wait_until_healthy(&[0, 1, 2]);
    }

    /// Every member's log, for a failed test's message.
    pub(crate) fn logs(&self) -> String {
        self.members
            .iter()
            .enumerate()
            .map(|(n, member)| format!("--- member m{n}:\n{}", tail(&member.log())))
            .collect()
    }

    fn wait_until_healthy(&mut self, members: &[usize]) {
        let deadline = Instant::now() + READY_WITHIN;
        for &n in members {
            while !self.is_healthy(n) {
                if let Some(Ok(Some(status))) = self.members[n].child.as_mut().map(|c| c.try_wait())
                {
                    panic!("etcd member m{n} exited ({status}):\n{}", self.logs());
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd member m{n} not healthy within {READY_WITHIN:?}:\n{}",
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `/health` says `true`: the member has a leader and answers a read through it.
    fn is_healthy(&self, n: usize) -> bool {
        metrics_get(self.members[n].ports[2], "/health")
            .is_some_and(|body| body.contains(r#""health":"true""#))
    }

    fn is_leader(&self, n: usize) -> bool {
        metrics_get(self.members[n].ports[2], "/metrics").is_some_and(|body| {
            body.lines()
                .any(|line| line.trim() == "etcd_server_is_leader 1")
        })
    }
}

/// The body of `GET path` on a member's metrics listener, or `None` if it does not answer
/// (stopped, starting) within 2 s.
fn metrics_get(addr: SocketAddr, path: &str) -> Option<String> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    // HTTP/1.0: the member closes the connection after the answer, which ends the read.
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (_, body) = answer.split_once("\r\n\r\n")?;
    Some(body.to_string())
}

/// The last lines of a log: etcd logs a lot, and a failure message needs the end.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
