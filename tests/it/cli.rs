use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::TestImds;

fn azimds() -> Command {
    Command::new(env!("CARGO_BIN_EXE_azimds"))
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("azimds-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A bad definition file stops the server before it listens, naming file, VM and path.
#[test]
fn bad_definition_file_is_rejected_at_start() {
    let dir = temp_dir("bad");
    let file = dir.join("vms.yaml");
    std::fs::write(&file, "vms:\n  - instance:\n      compute: {name: web-1, platformFaultDomain: 0}\n    colour: red\n").unwrap();
    let output = azimds()
        .args(["serve", "--listen", "127.0.0.1:0", "--vms"])
        .arg(&file)
        .arg("--data")
        .arg(dir.join("data"))
        .env("AZIMDS_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let name = file.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{name}: VM 0 (web-1): vms[0].instance.compute.platformFaultDomain: expected a string"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{name}: VM 0 (web-1): vms[0].colour: unknown member"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");

    std::fs::write(&file, "vms: [\n").unwrap();
    let output = azimds()
        .args(["serve", "--vms"])
        .arg(&file)
        .arg("--data")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not valid YAML"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    let output = azimds().args(["serve", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--listen",
        "AZIMDS_LISTEN",
        "--vms",
        "AZIMDS_VMS",
        "--data",
        "AZIMDS_DATA",
        "--rate-limit",
        "AZIMDS_RATE_LIMIT",
        "--config",
        "--callers",
        "127.0.0.1:16925",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    let bad = azimds()
        .args(["serve", "--rate-limit", "lots"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "usage errors exit 2");
}

/// The real binary starts on defaults, logs one line naming its address, serves, warns once
/// about an unknown field, and creates its data directory owner-only.
#[tokio::test]
async fn binary_serves_and_logs_where_it_listens() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("serve");
    let file = dir.join("vms.json");
    std::fs::write(
        &file,
        r#"{"vms":[{"instance":{"compute":{"name":"cli-vm","newField":"x"}}}]}"#,
    )
    .unwrap();
    let mut child = azimds()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rate-limit",
            "0",
            "--vms",
        ])
        .arg(&file)
        .arg("--data")
        .arg(dir.join("data"))
        .env("AZIMDS_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let addr = loop {
        let line = lines.next().expect("a log line").unwrap();
        log.push(line.clone());
        if let Some(rest) = line.split("listen=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let warnings = log
        .iter()
        .filter(|l| l.contains("vms[0].instance.compute.newField"))
        .count();
    assert_eq!(warnings, 1, "{log:?}");
    let imds = TestImds {
        addr,
        plane: std::sync::Arc::new(test_plane()),
    };
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        imds.get("/metadata/instance/compute/name?api-version=2021-02-01&format=text"),
    )
    .await
    .unwrap();
    assert_eq!((reply.status, reply.text()), (200, "cli-vm"));
    let mode = std::fs::metadata(dir.join("data"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

fn test_plane() -> azimds::guest::GuestPlane {
    let snapshot = azimds::snapshot::Snapshot::new(
        azimds::definition::demo().vms,
        azimds::snapshot::CallerMode::Single,
        azimds::throttle::RateLimit(0),
    )
    .unwrap();
    azimds::guest::GuestPlane::new(snapshot)
}
