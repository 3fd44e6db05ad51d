//! The ready handshake of `azimds serve` (issue 12): one JSON line on stdout once serving,
//! the same in `--ready-file`, `READY=1` to `$NOTIFY_SOCKET`; how any language's test fixture
//! starts azimds on port 0 without polling.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use azimds::server::Ready;
use serde_json::Value;

use crate::support::{TempDir, TestImds};

fn serve(data: &std::path::Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_azimds"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command
}

fn terminate(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn the_ready_line_names_the_bound_addresses_and_the_ready_file_repeats_it() {
    let temp = TempDir::new("ready-line");
    let ready_file = temp.path().join("run/azimds.ready");
    std::fs::create_dir_all(ready_file.parent().unwrap()).unwrap();
    std::fs::write(&ready_file, "stale, from an earlier run\n").unwrap();
    let data = temp.path().join("data");
    let mut child = serve(&data, &["--ready-file", ready_file.to_str().unwrap()])
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();

    // The documented members, in order, as compact JSON on one line.
    assert!(
        line.ends_with("}\n") && line.matches('\n').count() == 1,
        "{line:?}"
    );
    let positions: Vec<usize> = [
        "guest",
        "control",
        "token_file",
        "vms",
        "callers",
        "data",
        "pid",
        "version",
    ]
    .iter()
    .map(|name| {
        line.find(&format!("\"{name}\":"))
            .unwrap_or_else(|| panic!("no {name}"))
    })
    .collect();
    assert!(positions.is_sorted(), "{line}");
    assert!(line.starts_with("{\"guest\":[\"127.0.0.1:"), "{line}");
    let Value::Object(members) = serde_json::from_str::<Value>(&line).unwrap() else {
        panic!("not an object: {line}")
    };
    assert_eq!(members.len(), 8, "{line}");
    let ready: Ready = serde_json::from_str(&line).unwrap();
    assert_eq!(ready.pid, child.id());
    assert_eq!((ready.vms, ready.callers.as_str()), (1, "single"));
    assert_eq!(ready.data, data);
    assert_eq!(ready.version, env!("CARGO_PKG_VERSION"));
    let token_file = ready.token_file.clone().unwrap();
    assert_eq!(token_file, data.join("control-token"));
    assert!(token_file.is_file());

    // Port 0 resolved: the guest address answers at once, no retry.
    let guest: std::net::SocketAddr = ready.guest[0].parse().unwrap();
    assert_ne!(guest.port(), 0);
    let reply = TestImds { addr: guest }
        .get("/metadata/instance/compute/name?api-version=2021-02-01&format=text")
        .await;
    assert_eq!(reply.status, 200);
    // So does the control API, already ready.
    let control: std::net::SocketAddr = ready.control.parse().unwrap();
    let readyz = crate::support::ControlApi {
        addr: control,
        token: None,
    }
    .call("GET", "/readyz", None, &[])
    .await;
    assert_eq!(readyz.status, 200, "{}", readyz.text());

    // The file holds the same line (the stale one is gone).
    assert_eq!(std::fs::read_to_string(&ready_file).unwrap(), line);

    // Stopped: nothing else was printed, and the ready file is removed.
    terminate(&child);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(rest, "", "stdout holds only the ready line");
    assert!(!ready_file.exists());
}

#[test]
fn a_server_that_cannot_start_leaves_no_ready_file_and_prints_no_ready_line() {
    let temp = TempDir::new("ready-fail");
    let ready_file = temp.path().join("ready.json");
    std::fs::write(&ready_file, "stale\n").unwrap();
    let vms = temp.path().join("vms.json");
    std::fs::write(&vms, r#"{"vms":[{"instance":{"compute":{"name":7}}}]}"#).unwrap();
    let output = serve(
        &temp.path().join("data"),
        &[
            "--vms",
            vms.to_str().unwrap(),
            "--ready-file",
            ready_file.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(
        !ready_file.exists(),
        "a stale ready file must not be taken for this run's"
    );
}

#[test]
fn systemd_is_told_ready_on_notify_socket() {
    let temp = TempDir::new("ready-notify");
    let socket_path = temp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = serve(&temp.path().join("data"), &[])
        .env("NOTIFY_SOCKET", &socket_path)
        .spawn()
        .unwrap();
    let mut buffer = [0u8; 256];
    let n = socket
        .recv(&mut buffer)
        .expect("a notification within 20 s");
    let message = std::str::from_utf8(&buffer[..n]).unwrap();
    assert!(message.lines().any(|l| l == "READY=1"), "{message:?}");
    // It comes after the ready line, which is therefore already on stdout.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(serde_json::from_str::<Ready>(&line).is_ok(), "{line}");
    terminate(&child);
    assert!(child.wait().unwrap().success());
}
