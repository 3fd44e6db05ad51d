//! The secret-free-logs check (issue 10): every log line the integration suite produces, at
//! the most verbose level, is captured here — the in-process servers' through one global
//! `tracing` subscriber (JSON, `trace`), every spawned `azimds serve`'s stderr (run with
//! `AZIMDS_LOG=trace --access-log`) — and so is every secret the run produced: control
//! tokens, signing keys, access tokens, user data, nonces and signed documents, registered by
//! `support` where they appear (server start, guest answers, definitions given). Each
//! `TestServer` and `Spawned` checks, when it is dropped, that no line captured so far holds
//! any secret registered so far; so the whole run is checked, test by test.

use std::io::Write;
use std::sync::{Mutex, Once};

use serde_json::Value;

/// Shorter values are not secrets worth the name, and would match by chance.
const MIN_SECRET: usize = 12;

#[derive(Default)]
struct Capture {
    lines: Vec<String>,
    /// (what, value).
    secrets: Vec<(&'static str, String)>,
    /// Lines and secrets already compared with each other.
    checked_lines: usize,
    checked_secrets: usize,
}

static CAPTURE: Mutex<Capture> = Mutex::new(Capture {
    lines: Vec::new(),
    secrets: Vec::new(),
    checked_lines: 0,
    checked_secrets: 0,
});

fn capture() -> std::sync::MutexGuard<'static, Capture> {
    CAPTURE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A writer for one event: its bytes become captured lines when the event is written.
struct EventWriter(Vec<u8>);

impl Write for EventWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        lines(text.lines().map(str::to_string));
    }
}

/// Installs the process-wide subscriber the in-process servers log to (once).
pub(crate) fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| EventWriter(Vec::new()))
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other subscriber in the integration tests");
    });
}

/// Captures log lines (a spawned server's stderr).
pub(crate) fn lines(lines: impl IntoIterator<Item = String>) {
    capture().lines.extend(lines);
}

/// Registers a secret the run produced; the checks fail if any log line holds it.
pub(crate) fn secret(what: &'static str, value: &str) {
    if value.len() >= MIN_SECRET {
        capture().secrets.push((what, value.to_string()));
    }
}

/// A signing key file's secrets: its PEM body's lines.
pub(crate) fn key_file(text: &str) {
    let Ok(key) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let pem = key["private_key_pem"].as_str().unwrap_or_default();
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        secret("private signing key", line);
    }
}

/// The secrets of a data directory: the control token and every signing key.
pub(crate) fn data_dir(data: &std::path::Path) {
    if let Ok(token) = std::fs::read_to_string(data.join("control-token")) {
        secret("control token", token.trim());
    }
    // Token keys in keys/, attested keys and leaves in keys/attested/.
    let mut dirs = vec![data.join("keys")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                key_file(&text);
            }
        }
    }
}

/// The user data (and custom data) of VM definitions (JSON or YAML text).
pub(crate) fn definitions(text: &str) {
    let Ok(parsed) = azimds::definition::parse(text, None, "secret scan") else {
        return;
    };
    for vm in &parsed.vms {
        let entry: Value = serde_json::from_slice(&vm.entry).expect("entries are JSON");
        let compute = &entry["instance"]["compute"];
        for member in ["userData", "customData"] {
            if let Some(data) = compute[member].as_str() {
                secret("user data", data);
            }
        }
    }
}

/// What a guest request sent and got that must never be logged: a nonce it chose, a token
/// or a signed document it was given.
pub(crate) fn guest_exchange(target: &str, body: &[u8]) {
    if let Some(query) = target.split_once('?').map(|(_, q)| q) {
        for nonce in query.split('&').filter_map(|p| p.strip_prefix("nonce=")) {
            secret("nonce", nonce);
        }
    }
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if let Some(token) = answer["access_token"].as_str() {
        secret("access token", token);
        // Its signature alone would be as bad.
        if let Some(signature) = token.rsplit('.').next() {
            secret("access token signature", signature);
        }
    }
    if let Some(signature) = answer["signature"].as_str() {
        secret("signed document", signature);
    }
}

/// The secrets found in lines, as (what, line).
fn leaks(lines: &[String], secrets: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for line in lines {
        for (what, secret) in secrets {
            if line.contains(secret.as_str()) {
                found.push((*what, line.clone()));
            }
        }
    }
    found
}

/// Fails if a log line captured so far holds a secret registered so far.
pub(crate) fn check() {
    let mut capture = capture();
    let Capture {
        lines,
        secrets,
        checked_lines,
        checked_secrets,
    } = &mut *capture;
    // New lines against every secret, old lines against the new secrets.
    let mut found = leaks(&lines[*checked_lines..], secrets);
    found.extend(leaks(
        &lines[..*checked_lines],
        &secrets[*checked_secrets..],
    ));
    *checked_lines = lines.len();
    *checked_secrets = secrets.len();
    drop(capture);
    if !found.is_empty() && !std::thread::panicking() {
        let report: Vec<String> = found
            .iter()
            .map(|(what, line)| format!("a {what} in: {line}"))
            .collect();
        panic!("secrets in the logs:\n{}", report.join("\n"));
    }
}

/// How many lines have been captured (tests of the capture itself).
pub(crate) fn captured_lines_containing(needle: &str) -> usize {
    capture()
        .lines
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn the_checker_finds_a_secret_anywhere_in_a_line() {
    let secrets = vec![("token", "eyJ0eXAiOiJKV1Qi.abc".to_string())];
    let lines = vec![
        "clean".to_string(),
        r#"{"fields":{"message":"x eyJ0eXAiOiJKV1Qi.abc y"}}"#.to_string(),
    ];
    assert_eq!(leaks(&lines, &secrets), vec![("token", lines[1].clone())]);
}

/// The capture sees the in-process servers' lines: a test server's access log, at the most
/// verbose level.
#[tokio::test]
async fn in_process_server_logs_are_captured() {
    let server = crate::support::start_demo().await;
    let reply = server
        .request(
            "GET",
            "/metadata/versions?capture-check=1",
            &[("Metadata", "true"), ("User-Agent", "capture-check")],
        )
        .await;
    assert_eq!(reply.status, 200);
    // One access-log line per request, captured through the global subscriber.
    assert!(captured_lines_containing(r#""endpoint":"versions""#) > 0);
    assert!(captured_lines_containing(r#""target":"azimds::access""#) > 0);
}
