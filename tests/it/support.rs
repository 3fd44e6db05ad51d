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
use azimds::config::{
    AttestedSettings, ClockMode, ConnectionSettings, ControlAddress, LogSettings, Settings,
    WireServerListen,
};
use azimds::control::token::ControlToken;
use azimds::definition::{self, Definitions};
use azimds::faults::FaultSpec;
use azimds::identity::limits::IdentityLimits;
use azimds::maintenance::MaintenanceConfig;
use azimds::server::{Options, Running, Server};
use azimds::snapshot::CallerMode;
use azimds::state::Shared;
use azimds::telemetry::TelemetrySettings;
use azimds::throttle::RateLimit;

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
    pub(crate) attested: AttestedSettings,
    /// Fault rules in force from the start, as a config file gives them.
    pub(crate) faults: Vec<FaultSpec>,
    /// The WireServer companion's listeners (`None`: not served).
    pub(crate) wireserver: Option<WireServerListen>,
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
            attested: AttestedSettings::default(),
            faults: Vec::new(),
            wireserver: None,
        }
    }
}

/// A whole server in-process on ephemeral loopback ports, on a manual clock; stopped on drop.
pub(crate) struct TestServer {
    pub(crate) guest: TestImds,
    pub(crate) control: ControlApi,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) running: Running,
    _dir: TempDir,
}

impl std::ops::Deref for TestServer {
    type Target = TestImds;
    fn deref(&self) -> &TestImds {
        &self.guest
    }
}

impl TestServer {
    pub(crate) async fn start(config: TestConfig) -> TestServer {
        crate::secrets::install();
        let dir = TempDir::new("server");
        let data = dir.path().join("data");
        let settings = Settings {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            wireserver: config.wireserver,
            vms: None,
            data: data.clone(),
            store: azimds::store::StoreLocation::Embedded,
            host_name: "test-host".into(),
            rate_limit: RateLimit(config.rate_limit),
            callers: config.callers,
            control: ControlAddress::Tcp("127.0.0.1:0".parse().unwrap()),
            workers: None,
            token_lifetime: config.token_lifetime,
            identity_limits: config.identity_limits,
            events: config.events,
            connections: ConnectionSettings::default(),
            attested: config.attested,
            clock: ClockMode::Manual,
            faults: config.faults,
            // Everything on, so every test also exercises what is recorded (and the
            // secret-free-logs check sees the access log).
            telemetry: TelemetrySettings {
                access_log: true,
                metrics_per_vm: Some(100),
                ..TelemetrySettings::default()
            },
            log: LogSettings::default(),
            ready_file: None,
        };
        let clock = Arc::new(ManualClock::new(config.start));
        let definitions = match config.vms {
            Vms::Demo => None,
            Vms::Empty => Some(Definitions { vms: Vec::new() }),
            Vms::Text(text) => {
                crate::secrets::definitions(&text);
                Some(
                    definition::parse(&text, None, "test definitions")
                        .expect("valid test definitions"),
                )
            }
        };
        let options = Options {
            clock: clock.clone(),
            definitions,
        };
        let server = Server::start_with(settings, options)
            .await
            .expect("the test server starts");
        let running = server.spawn();
        crate::secrets::data_dir(&data);
        let token = ControlToken::read(&data).unwrap().expose().to_string();
        TestServer {
            guest: TestImds {
                addr: running.guest_addresses()[0],
            },
            control: ControlApi {
                addr: running.control_address().parse().unwrap(),
                token: Some(token),
            },
            clock,
            running,
            _dir: dir,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        self.running.shared()
    }

    /// The server's data directory (store, keys, control token).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Keys rotated during the test are secrets too.
        crate::secrets::data_dir(&self._dir.path().join("data"));
        crate::secrets::check();
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
        guest_exchange(None, self.addr, bytes.as_ref()).await
    }

    /// Like [`TestImds::raw`], from the local address `from` (a 127.0.0.x in source-address
    /// tests).
    pub(crate) async fn raw_from(&self, from: IpAddr, bytes: impl AsRef<[u8]>) -> Reply {
        guest_exchange(Some(from), self.addr, bytes.as_ref()).await
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

/// A guest exchange, whose nonce, token or signed document is registered as a secret.
async fn guest_exchange(from: Option<IpAddr>, to: SocketAddr, bytes: &[u8]) -> Reply {
    let reply = exchange(from, to, bytes).await;
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(16 * 1024)]);
    let target = head.split(' ').nth(1).unwrap_or("");
    crate::secrets::guest_exchange(target, &reply.body);
    reply
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
    /// The control listener as the log line gives it (`127.0.0.1:PORT` or `unix:PATH`).
    pub(crate) control: String,
    pub(crate) log: Arc<std::sync::Mutex<Vec<String>>>,
    log_grew: Arc<std::sync::Condvar>,
    /// The "listening" log line.
    listening: String,
    /// Collects stderr until the process exits.
    reader: Option<std::thread::JoinHandle<()>>,
    data: PathBuf,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        crate::secrets::data_dir(&self.data);
        crate::secrets::lines(self.log.lock().unwrap().iter().cloned());
        crate::secrets::check();
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

    /// Sends SIGTERM and waits for the exit, which must come within `within`.
    pub(crate) fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let signalled = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            let waited = signalled.elapsed();
            assert!(waited < within, "still running {waited:?} after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A control client for this server (TCP), with the token from its data directory.
    pub(crate) fn control_api(&self, data: &Path) -> ControlApi {
        ControlApi {
            addr: self.control.parse().unwrap(),
            token: Some(ControlToken::read(data).unwrap().expose().to_string()),
        }
    }

    /// A `name=value` field of the "listening" log line (`listen`, `control`, `vms`, …).
    pub(crate) fn field(&self, name: &str) -> &str {
        log_field(&self.listening, name)
    }
}

fn log_field<'l>(line: &'l str, name: &str) -> &'l str {
    line.split(&format!(" {name}="))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

/// The `azimds` binary the tests run: this build's, or the one `AZIMDS_TEST_BIN` names (to
/// check that a test fails against an older build).
pub(crate) fn azimds_binary() -> PathBuf {
    std::env::var_os("AZIMDS_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_azimds")),
        PathBuf::from,
    )
}

/// `azimds serve` on ephemeral guest and control ports, unthrottled, with `--data data` and
/// `extra` (which may set `--listen`, `--control` or `--rate-limit` instead), run through
/// `launcher` (a command and its arguments that end by running the binary that follows them:
/// `prlimit … --`, `unshare … sh -c '…; exec "$@"' sh`), if any.
fn serve_command(data: &Path, extra: &[&str], launcher: &[String]) -> std::process::Command {
    let mut command = match launcher.split_first() {
        None => std::process::Command::new(azimds_binary()),
        Some((program, args)) => {
            let mut command = std::process::Command::new(program);
            command.args(args).arg(azimds_binary());
            command
        }
    };
    command.arg("serve");
    for (flag, value) in [
        ("--listen", "127.0.0.1:0"),
        ("--control", "127.0.0.1:0"),
        ("--rate-limit", "0"),
    ] {
        if !extra.contains(&flag) {
            command.args([flag, value]);
        }
    }
    command
        .arg("--data")
        .arg(data)
        .args(extra)
        // The most verbose level, for the secret-free-logs check.
        .args(["--access-log", "--journal-size", "64"])
        .env("AZIMDS_LOG", "trace")
        // The ready line (tests/it/ready.rs reads it itself).
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    command
}

/// Starts the real binary on ephemeral guest and control ports with `--data data` plus
/// `extra`, and returns once it logs where it listens. Its stderr keeps being collected, so the
/// server never blocks on a full pipe.
pub(crate) fn spawn_azimds(data: &Path, extra: &[&str]) -> Spawned {
    spawn_serving(data, extra, &[])
}

/// [`spawn_azimds`] through `launcher` (see [`serve_command`]).
pub(crate) fn spawn_azimds_through(launcher: &[String], data: &Path, extra: &[&str]) -> Spawned {
    spawn_serving(data, extra, launcher)
}

/// [`spawn_azimds`] under a file-descriptor limit (soft, hard), as systemd sets one.
pub(crate) fn spawn_azimds_limited(data: &Path, extra: &[&str], nofile: (u64, u64)) -> Spawned {
    let (soft, hard) = nofile;
    let launcher = [
        "prlimit".into(),
        format!("--nofile={soft}:{hard}"),
        "--".into(),
    ];
    spawn_serving(data, extra, &launcher)
}

/// Runs `azimds serve` expecting it to refuse to start: its exit code and stderr, or `None`
/// (after killing it) if it was still running `within` later.
pub(crate) fn serve_refused(
    data: &Path,
    extra: &[&str],
    within: Duration,
) -> Option<(i32, String)> {
    serve_refused_through(&[], data, extra, within)
}

/// [`serve_refused`] through `launcher` (see [`serve_command`]).
pub(crate) fn serve_refused_through(
    launcher: &[String],
    data: &Path,
    extra: &[&str],
    within: Duration,
) -> Option<(i32, String)> {
    let mut child = serve_command(data, extra, launcher).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // stderr reaches its end when the process exits.
    let (done, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = done.send(text);
    });
    match ended.recv_timeout(within) {
        Ok(stderr) => Some((child.wait().unwrap().code().unwrap_or(-1), stderr)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

fn spawn_serving(data: &Path, extra: &[&str], launcher: &[String]) -> Spawned {
    use std::io::{BufRead, BufReader};
    let mut child = serve_command(data, extra, launcher).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let line = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!(
                "the server exited before listening:\n{}",
                log.lock().unwrap().join("\n")
            );
        };
        log.lock().unwrap().push(line.clone());
        if line.contains("listen=") {
            break line;
        }
    };
    register_spawned_secrets(data, extra);
    let log_grew = Arc::new(std::sync::Condvar::new());
    let (kept, grew) = (Arc::clone(&log), Arc::clone(&log_grew));
    let reader = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
            grew.notify_all();
        }
    });
    Spawned {
        guest: log_field(&line, "listen").parse().unwrap(),
        control: log_field(&line, "control").to_string(),
        child,
        log,
        log_grew,
        listening: line,
        reader: Some(reader),
        data: data.to_path_buf(),
    }
}

/// A spawned server's secrets: its data directory's, and its `--vms` file's user data.
fn register_spawned_secrets(data: &Path, extra: &[&str]) {
    crate::secrets::data_dir(data);
    if let Some(at) = extra.iter().position(|a| *a == "--vms")
        && let Some(file) = extra.get(at + 1)
        && let Ok(text) = std::fs::read_to_string(file)
    {
        crate::secrets::definitions(&text);
    }
}

/// The seed of a randomised test: `AZIMDS_TEST_SEED` when set (to replay a failure), else a
/// fresh one; printed under `label` either way so a failing run can be repeated.
pub(crate) fn test_seed(label: &str) -> u64 {
    let seed = std::env::var("AZIMDS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{label}: AZIMDS_TEST_SEED={seed}");
    seed
}

/// A launcher that runs the server in a private mount namespace: `sh -c SCRIPT sh PATH
/// COMMAND…`, where the script sees `path` as `$1` and execs the rest.
pub(crate) fn in_mount_namespace(script: &str, path: &Path) -> Vec<String> {
    [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([path.display().to_string()])
    .collect()
}
