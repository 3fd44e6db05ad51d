//! The noisy-neighbour benchmark (`scripts/bench-neighbour.sh`, issue 13): the latency one VM
//! sees while another VM attacks the same azimds.
//!
//! ```text
//! noisy_neighbour --azimds target/release/azimds [--requests 2000] [--flood 1100] [--pin]
//! ```
//!
//! Two VMs in `source-address` mode on loopback: the attacker 127.0.0.2 and the victim
//! 127.0.0.3. The server starts, for each phase afresh, under a soft descriptor limit of 1024
//! (systemd's default; the hard limit stays this process's), unthrottled (`--rate-limit 0`, so
//! the victim's requests measure serving, not its budget). Phases:
//!
//! * `quiet`: no attack;
//! * `connection-flood`: the attacker opens `--flood` idle connections and holds them (more
//!   than a soft limit of 1024 descriptors can hold: issue 13's exhaustion);
//! * `slow-post`: the same with scheduled-events POSTs that announce 60,000 bytes of body,
//!   send 1,000 and stop;
//! * `reconnect-storm`: the connection flood, but every connection the server closes is
//!   replaced at once, as fast as the attacker can (the worst a VM can do to a server that
//!   refuses at accept: each refusal costs an accept and a close).
//!
//! The attacker is this program again (`--attack KIND --guest ADDR`), a separate process at
//! `nice 19`: an attacking VM burns its own CPUs, not the victim's, which on a small machine is
//! the closest stand-in. With `--pin` the server runs on CPU 0, the victim and the attacker on
//! CPU 1. Once the attack has run 2 s, the victim makes `--requests` sequential requests
//! (`GET /metadata/instance/compute/name?format=text`, a new connection each, as most agents
//! do), each given 2 s; after 20 failures the phase gives up. Prints one JSON object per
//! phase: the victim's p50/p99/max in ms, how many requests failed, the server's CPU use
//! (CPU-seconds per second) while the victim measured, and the connections it refused.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const VICTIM: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const VMS: &str = "vms:
  - id: attacker
    callers: [127.0.0.2]
    instance: {compute: {name: attacker}}
  - id: victim
    callers: [127.0.0.3]
    instance: {compute: {name: victim}}
";

struct Args {
    azimds: PathBuf,
    requests: usize,
    flood: usize,
    pin: bool,
    /// Set in the attacker process: what to send, and where.
    attack: Option<(String, SocketAddr)>,
}

fn args() -> Args {
    let mut args = Args {
        azimds: PathBuf::from("target/release/azimds"),
        requests: 2000,
        flood: 1100,
        pin: false,
        attack: None,
    };
    let (mut kind, mut guest) = (None, None);
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || {
            given
                .next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--azimds" => args.azimds = value().into(),
            "--requests" => args.requests = value().parse().expect("--requests N"),
            "--flood" => args.flood = value().parse().expect("--flood N"),
            "--pin" => args.pin = true,
            "--attack" => kind = Some(value()),
            "--guest" => guest = Some(value().parse().expect("--guest ADDR")),
            other => panic!("unknown argument {other}"),
        }
    }
    args.attack = kind.zip(guest);
    args
}

/// A process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server for one phase; killed and its directory removed on drop.
struct Server {
    process: Killed,
    guest: SocketAddr,
    control: SocketAddr,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `program`, on CPU `cpu` if given.
fn on_cpu(cpu: Option<&str>, program: &str) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpu, program]);
            command
        }
        None => Command::new(program),
    }
}

fn log_field(line: &str, name: &str) -> Option<SocketAddr> {
    let rest = line.split(&format!(" {name}=")).nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn start(args: &Args, phase: &str) -> Server {
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(format!("azimds-neighbour-{}-{phase}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vms.yaml"), VMS).unwrap();
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .map_or_else(|| "unlimited".to_string(), |h| h.to_string());
    let mut command = on_cpu(args.pin.then_some("0"), "prlimit");
    command
        .arg(format!("--nofile=1024:{hard}"))
        .arg("--")
        .arg(&args.azimds)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ])
        .args(["--rate-limit", "0", "--callers", "source-address", "--vms"])
        .arg(dir.join("vms.yaml"))
        .arg("--data")
        .arg(dir.join("data"))
        .env("AZIMDS_LOG", "info")
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("azimds starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (guest, control) = loop {
        let line = lines.next().expect("azimds logs where it listens").unwrap();
        if let (Some(guest), Some(control)) =
            (log_field(&line, "listen"), log_field(&line, "control"))
        {
            break (guest, control);
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server {
        process: Killed(child),
        guest,
        control,
        dir,
    }
}

/// CPU-seconds (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|t| t.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

/// The server's `/v1/status` (null for a build without one).
async fn status(control: SocketAddr, data: &Path) -> Value {
    let Ok(token) = std::fs::read_to_string(data.join("control-token")) else {
        return Value::Null;
    };
    let request = format!(
        "GET /v1/status HTTP/1.1\r\nHost: azimds\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    );
    let exchange = async {
        let mut stream = TcpStream::connect(control).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        std::io::Result::Ok(answer)
    };
    let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(5), exchange).await else {
        return Value::Null;
    };
    let body = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |at| &answer[at + 4..]);
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// How long the attacker waits for its connection attempts before saying it is ready anyway
/// (a server that stopped accepting leaves the last ones waiting for a SYN retransmission).
const READY_WITHIN: Duration = Duration::from_secs(5);

/// The attacker process, until killed: opens `flood` connections, each sending `opening`
/// first, and holds them; with `reconnect`, replaces each one the server closes at once.
/// Prints `ready` once every first attempt has connected and sent (or failed), or after
/// [`READY_WITHIN`], so the victim measures a flood at its full size.
async fn attack(guest: SocketAddr, flood: usize, opening: Vec<u8>, reconnect: bool) {
    let opening = Arc::new(opening);
    let settled = Arc::new(tokio::sync::Semaphore::new(0));
    let mut held = tokio::task::JoinSet::new();
    let mut opened = 0;
    let started = Instant::now();
    let mut ready = false;
    loop {
        while held.len() < flood && (reconnect || opened < flood) {
            opened += 1;
            let (opening, settled) = (Arc::clone(&opening), Arc::clone(&settled));
            held.spawn(async move {
                let connected = connect_from(ATTACKER, guest).await;
                let Ok(mut stream) = connected else {
                    settled.add_permits(1);
                    return;
                };
                let sent = opening.is_empty() || stream.write_all(&opening).await.is_ok();
                settled.add_permits(1);
                if !sent {
                    return;
                }
                // Held until the server closes it.
                let mut sink = [0u8; 1024];
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
        if !ready {
            let all = u32::try_from(flood).expect("--flood fits in u32");
            let left = READY_WITHIN.saturating_sub(started.elapsed());
            let _ = tokio::time::timeout(left, settled.acquire_many(all)).await;
            println!("ready");
            ready = true;
        }
        if held.join_next().await.is_none() {
            // Everything was closed and nothing is reopened: wait to be killed.
            std::future::pending::<()>().await;
        }
    }
}

/// Starts the attacker and returns once its flood is at full size.
fn spawn_attacker(args: &Args, kind: &str, guest: SocketAddr) -> Killed {
    use std::io::{BufRead, BufReader};
    let mut command = on_cpu(args.pin.then_some("1"), "nice");
    command
        .args(["-n", "19"])
        .arg(std::env::current_exe().unwrap())
        .args(["--attack", kind, "--guest", &guest.to_string()])
        .args(["--flood", &args.flood.to_string()])
        .stdout(Stdio::piped());
    let mut child = command.spawn().expect("the attacker starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("the attacker says when it is ready");
    assert_eq!(line.unwrap(), "ready");
    Killed(child)
}

/// The victim's requests: latencies of the answered ones, and how many failed. Gives up after
/// 20 failures (a server that no longer answers would otherwise take 2 s per request).
async fn victim(guest: SocketAddr, requests: usize) -> (Vec<Duration>, usize) {
    let request = b"GET /metadata/instance/compute/name?api-version=2021-02-01&format=text HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nConnection: close\r\n\r\n";
    let mut latencies = Vec::with_capacity(requests);
    let mut failed = 0;
    for _ in 0..requests {
        let started = Instant::now();
        let exchange = async {
            let mut stream = connect_from(VICTIM, guest).await?;
            stream.write_all(request).await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            std::io::Result::Ok(answer)
        };
        match tokio::time::timeout(Duration::from_secs(2), exchange).await {
            Ok(Ok(answer))
                if answer.starts_with(b"HTTP/1.1 200") && answer.ends_with(b"victim") =>
            {
                latencies.push(started.elapsed());
            }
            _ => failed += 1,
        }
        if failed == 20 {
            break;
        }
    }
    (latencies, failed)
}

fn ms(latencies: &[Duration], p: usize) -> Option<f64> {
    if latencies.is_empty() {
        return None;
    }
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let at = (sorted.len() * p / 100).min(sorted.len() - 1);
    Some((sorted[at].as_secs_f64() * 1e6).round() / 1e3)
}

fn opening(kind: &str) -> Vec<u8> {
    match kind {
        "connection-flood" | "reconnect-storm" => Vec::new(),
        "slow-post" => {
            let mut bytes = b"POST /metadata/scheduledevents?api-version=2020-07-01 HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{\"StartRequests\":[".to_vec();
            bytes.resize(bytes.len() + 1000, b' ');
            bytes
        }
        other => panic!("unknown attack {other}"),
    }
}

fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = args();
    raise_fd_limit();
    if let Some((kind, guest)) = &args.attack {
        attack(*guest, args.flood, opening(kind), kind == "reconnect-storm").await;
        return;
    }
    if args.pin {
        let _ = Command::new("taskset")
            .args(["-p", "-c", "1", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status();
    }
    for phase in ["quiet", "connection-flood", "slow-post", "reconnect-storm"] {
        let server = start(&args, phase);
        let attacker = (phase != "quiet").then(|| spawn_attacker(&args, phase, server.guest));
        let (cpu_before, started) = (cpu_seconds(server.process.0.id()), Instant::now());
        let (latencies, failed) = victim(server.guest, args.requests).await;
        let server_cpu =
            (cpu_seconds(server.process.0.id()) - cpu_before) / started.elapsed().as_secs_f64();
        let status = status(server.control, &server.dir.join("data")).await;
        drop(attacker);
        println!(
            "{}",
            json!({
                "phase": phase,
                "answered": latencies.len(),
                "failed": failed,
                "p50_ms": ms(&latencies, 50),
                "p99_ms": ms(&latencies, 99),
                "max_ms": ms(&latencies, 100),
                "server_cpu": (server_cpu * 100.0).round() / 100.0,
                "refused": status["connections"]["refused"],
            })
        );
    }
}
