use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use azimds::definition;
use azimds::guest::{self, GuestPlane};
use azimds::snapshot::{CallerMode, Snapshot};
use azimds::throttle::RateLimit;

pub(crate) struct TestImds {
    pub(crate) addr: SocketAddr,
    #[allow(dead_code)]
    pub(crate) plane: Arc<GuestPlane>,
}

/// Starts a guest listener serving `definitions` (JSON or YAML text) as one VM.
pub(crate) async fn start_with(definitions: &str, rate_limit: u32) -> TestImds {
    let definitions =
        definition::parse(definitions, None, "test definitions").expect("valid test definitions");
    let snapshot =
        Snapshot::new(definitions.vms, CallerMode::Single, RateLimit(rate_limit)).unwrap();
    let plane = Arc::new(GuestPlane::new(snapshot));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(guest::serve(
        listener,
        Arc::clone(&plane),
        std::future::pending(),
    ));
    TestImds { addr, plane }
}

/// Starts a guest listener serving one VM whose `instance` is `instance`, unthrottled.
pub(crate) async fn start_instance(instance: &Value) -> TestImds {
    start_with(
        &serde_json::json!({ "vms": [{ "instance": instance }] }).to_string(),
        0,
    )
    .await
}

/// Starts a guest listener serving the built-in demo VM, unthrottled.
pub(crate) async fn start_demo() -> TestImds {
    start_with(include_str!("../../src/definition/demo.json"), 0).await
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
        let mut head =
            format!("{method} {target} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.raw(head.as_bytes()).await
    }

    /// Sends `bytes` as they are and reads the answer until the server closes.
    pub(crate) async fn raw(&self, bytes: &[u8]) -> Reply {
        let exchange = async {
            let mut stream = TcpStream::connect(self.addr).await.unwrap();
            stream.write_all(bytes).await.unwrap();
            let mut answer = Vec::new();
            // A reset after the answer (the server closing on a request it refused) still
            // leaves the answer read.
            let _ = stream.read_to_end(&mut answer).await;
            answer
        };
        let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("answer within 10 s");
        parse_reply(&answer)
    }
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
    pub(crate) log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Spawned {
    pub(crate) fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

/// Starts the real binary on ephemeral guest and control ports with `--data data` plus
/// `extra`, and returns once it logs where it listens. Its stderr keeps being collected, so the
/// server never blocks on a full pipe.
pub(crate) fn spawn_azimds(data: &std::path::Path, extra: &[&str]) -> Spawned {
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
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
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
    let field = |name: &str| {
        line.split(&format!("{name}="))
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let kept = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    Spawned {
        guest: field("listen").parse().unwrap(),
        control: field("control"),
        child,
        log,
    }
}
