//! Test support: one way to start a server in-process ([`TestServer`], through the library's
//! `Server`), one raw HTTP/1.1 client that sees every byte ([`TestImds`] for guests,
//! [`ControlApi`] for the control API), one temporary directory ([`TempDir`]), and the real
//! binary ([`spawn_azimds`]).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use azimds::clock::ManualClock;
use azimds::identity::limits::IdentityLimits;
use azimds::maintenance::MaintenanceConfig;
use azimds::server::Ready;
use azimds::snapshot::CallerMode;
use azimds::state::Shared;
use azimds::testing;

/// A directory under the system temp dir, unique per process and call, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("azimds-it-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The VMs a [`TestServer`] starts with.
pub(crate) enum Vms {
    /// None given: an empty store in single mode is seeded with the demo VM.
    Demo,
    /// No VMs at all (the control API adds them).
    Empty,
    /// A definitions file's text (JSON or YAML).
    Text(String),
}

/// How to start a [`TestServer`]; every field has the tests' usual default.
pub(crate) struct TestConfig {
    pub(crate) vms: Vms,
    pub(crate) callers: CallerMode,
    /// Requests per second per VM; 0 (the default here) turns throttling off.
    pub(crate) rate_limit: u32,
    pub(crate) identity_limits: IdentityLimits,
    pub(crate) events: MaintenanceConfig,
    /// The server's clock starts here and moves only when the test moves it.
    pub(crate) start: SystemTime,
    pub(crate) token_lifetime: u64,
}

impl Default for TestConfig {
    fn default() -> TestConfig {
        TestConfig {
            vms: Vms::Demo,
            callers: CallerMode::Single,
            rate_limit: 0,
            identity_limits: IdentityLimits::default(),
            events: MaintenanceConfig::default(),
            start: SystemTime::now(),
            token_lifetime: 86_400,
        }
    }
}

/// A whole server in-process on ephemeral loopback ports, on a manual clock; stopped on drop.
/// The public `azimds::testing::TestServer` with this suite's raw clients beside it.
pub(crate) struct TestServer {
    pub(crate) guest: TestImds,
    pub(crate) control: ControlApi,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) server: testing::TestServer,
}

impl std::ops::Deref for TestServer {
    type Target = TestImds;
    fn deref(&self) -> &TestImds {
        &self.guest
    }
}

impl TestServer {
    pub(crate) async fn start(config: TestConfig) -> TestServer {
        let builder = testing::TestServer::builder()
            .callers(config.callers)
            .rate_limit(config.rate_limit)
            .identity_limits(config.identity_limits)
            .events(config.events)
            .clock_at(config.start)
            .token_lifetime(config.token_lifetime);
        let builder = match config.vms {
            Vms::Demo => builder,
            Vms::Empty => builder.no_vms(),
            Vms::Text(text) => builder.definitions(&text),
        };
        let server = builder.start().await.expect("the test server starts");
        TestServer {
            guest: TestImds {
                addr: server.guest_address(),
            },
            control: ControlApi {
                addr: server.control_address(),
                token: Some(server.control_token().to_string()),
            },
            clock: Arc::clone(server.clock().expect("a manual clock")),
            server,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        self.server.running().shared()
    }
}

/// A server serving `definitions` (JSON or YAML text) at `rate_limit` requests per second.
pub(crate) async fn start_with(definitions: &str, rate_limit: u32) -> TestServer {
    TestServer::start(TestConfig {
        vms: Vms::Text(definitions.to_string()),
        rate_limit,
        ..TestConfig::default()
    })
    .await
}

/// A server serving one VM whose `instance` is `instance`, unthrottled.
pub(crate) async fn start_instance(instance: &Value) -> TestServer {
    start_with(
        &serde_json::json!({ "vms": [{ "instance": instance }] }).to_string(),
        0,
    )
    .await
}

/// A server serving the built-in demo VM, unthrottled.
pub(crate) async fn start_demo() -> TestServer {
    TestServer::start(TestConfig::default()).await
}

/// The demo definition's `instance`, as the file has it.
pub(crate) fn demo_instance() -> Value {
    let file: Value = serde_json::from_str(include_str!("../../src/definition/demo.json")).unwrap();
    file["vms"][0]["instance"].clone()
}

pub(crate) fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A response as it came off the wire.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// A guest's view of a server: raw HTTP/1.1 to its guest listener.
#[derive(Clone, Debug)]
pub(crate) struct TestImds {
    pub(crate) addr: SocketAddr,
}

impl TestImds {
    /// `GET` with `Metadata: true`.
    pub(crate) async fn get(&self, target: &str) -> Reply {
        self.request("GET", target, &[("Metadata", "true")]).await
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.raw(request_bytes(
            method,
            target,
            "169.254.169.254",
            headers,
            b"",
        ))
        .await
    }

    /// Sends `bytes` as they are and reads the answer until the server closes.
    pub(crate) async fn raw(&self, bytes: impl AsRef<[u8]>) -> Reply {
        exchange(None, self.addr, bytes.as_ref()).await
    }

    /// Like [`TestImds::raw`], from the local address `from` (a 127.0.0.x in source-address
    /// tests).
    pub(crate) async fn raw_from(&self, from: IpAddr, bytes: impl AsRef<[u8]>) -> Reply {
        exchange(Some(from), self.addr, bytes.as_ref()).await
    }
}

/// The control API of a server: raw HTTP/1.1 with its bearer token.
#[derive(Clone, Debug)]
pub(crate) struct ControlApi {
    pub(crate) addr: SocketAddr,
    /// `None` sends no `Authorization` header.
    pub(crate) token: Option<String>,
}

impl ControlApi {
    /// A JSON request (`body` serialized) with the token.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.call_raw(method, path, body.map(Value::to_string), headers)
            .await
    }

    /// A request with `body` sent as it is, with the token and `headers`.
    pub(crate) async fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let body = body.unwrap_or_default();
        if !body.is_empty() {
            all.push(("Content-Type", "application/json"));
        }
        all.extend_from_slice(headers);
        exchange(
            None,
            self.addr,
            &request_bytes(method, path, "azimds", &all, body.as_bytes()),
        )
        .await
    }

    /// The same API without the token.
    pub(crate) fn anonymous(&self) -> ControlApi {
        ControlApi {
            addr: self.addr,
            token: None,
        }
    }
}

/// One request, `Connection: close`, with a `Content-Length` whenever there is a body or the
/// method usually carries one.
pub(crate) fn request_bytes(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One exchange, optionally from a chosen local address; reads until the server closes.
async fn exchange(from: Option<IpAddr>, to: SocketAddr, bytes: &[u8]) -> Reply {
    let run = async {
        let mut stream = match from {
            None => TcpStream::connect(to).await.unwrap(),
            Some(from) => {
                let socket = TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::new(from, 0)).unwrap();
                socket.connect(to).await.unwrap()
            }
        };
        stream.write_all(bytes).await.unwrap();
        let mut answer = Vec::new();
        // A reset after the answer (the server closing on a request it refused) still
        // leaves the answer read.
        let _ = stream.read_to_end(&mut answer).await;
        answer
    };
    let answer = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("an answer within 15 s");
    parse_reply(&answer)
}

/// Parses a whole HTTP/1.1 response as read off the wire.
pub(crate) fn parse_reply(answer: &[u8]) -> Reply {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(answer)));
    let head = std::str::from_utf8(&answer[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_string(), value.trim().to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body: answer[split + 4..].to_vec(),
    }
}

/// A running `azimds serve` child process (killed on drop), where it listens, and its log.
pub(crate) struct Spawned {
    pub(crate) child: std::process::Child,
    pub(crate) guest: SocketAddr,
    /// The control listener as the ready line gives it (`127.0.0.1:PORT` or `unix:PATH`).
    pub(crate) control: String,
    /// The ready line the server printed on stdout.
    pub(crate) ready: Ready,
    pub(crate) log: Arc<std::sync::Mutex<Vec<String>>>,
    log_grew: Arc<std::sync::Condvar>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Spawned {
    pub(crate) fn log_contains(&self, needle: &str) -> bool {
        self.log_count(needle) > 0
    }

    /// How many lines logged so far contain `needle`.
    pub(crate) fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until the server has logged `count` lines containing `needle` (true), or
    /// `timeout` passed (false). Woken by each new line, so it never sleeps a fixed time.
    pub(crate) fn wait_for_log(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut log = self.log.lock().unwrap();
        loop {
            if log.iter().filter(|l| l.contains(needle)).count() >= count {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            log = self.log_grew.wait_timeout(log, left).unwrap().0;
        }
    }

    /// A guest client for this server.
    pub(crate) fn imds(&self) -> TestImds {
        TestImds { addr: self.guest }
    }
}

/// Starts the real binary on ephemeral guest and control ports with `--data data` plus
/// `extra`, and returns once it prints its ready line (stdout) with the bound addresses. Its
/// stderr keeps being collected, so the server never blocks on a full pipe; everything it
/// logged before it was ready is in [`Spawned::log`] on return.
pub(crate) fn spawn_azimds(data: &Path, extra: &[&str]) -> Spawned {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_azimds"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--rate-limit",
            "0",
            "--data",
        ])
        .arg(data)
        .args(extra)
        .env("AZIMDS_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log_grew = Arc::new(std::sync::Condvar::new());
    let (kept, grew) = (Arc::clone(&log), Arc::clone(&log_grew));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let collector = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            kept.lock().unwrap().push(line);
            grew.notify_all();
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    if stdout.read_line(&mut line).unwrap_or(0) == 0 {
        let _ = child.wait();
        let _ = collector.join();
        panic!(
            "the server exited before it was ready:\n{}",
            log.lock().unwrap().join("\n")
        );
    }
    let ready: Ready = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the ready line {line:?} is not the documented JSON: {e}"));
    // Nothing more is printed on stdout (tests/it/ready.rs checks); drained all the same so
    // the child can never block on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let server = Spawned {
        guest: ready.guest[0].parse().unwrap(),
        control: ready.control.clone(),
        ready,
        child,
        log,
        log_grew,
    };
    // The "listening" log line precedes the ready line: once it is collected, so is
    // everything logged during start-up.
    assert!(
        server.wait_for_log("azimds guest plane listening", 1, Duration::from_secs(10)),
        "no listening log line"
    );
    server
}
