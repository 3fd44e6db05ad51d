use std::process::Command;
use std::time::Duration;

use crate::support::TempDir;

fn azimds() -> Command {
    Command::new(env!("CARGO_BIN_EXE_azimds"))
}

/// A bad definition file stops the server before it listens, naming file, VM and path.
#[test]
fn bad_definition_file_is_rejected_at_start() {
    let temp = TempDir::new("cli-bad");
    let dir = temp.path();
    let file = dir.join("vms.yaml");
    std::fs::write(&file, "vms:\n  - instance:\n      compute: {name: web-1, platformFaultDomain: 0}\n    colour: red\n").unwrap();
    let output = azimds()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--vms",
        ])
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
        "--wireserver-listen",
        "AZIMDS_WIRESERVER_LISTEN",
        "--hgap-listen",
        "port 32526",
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
    let temp = TempDir::new("cli-serve");
    let dir = temp.path();
    let file = dir.join("vms.json");
    std::fs::write(
        &file,
        r#"{"vms":[{"instance":{"compute":{"name":"cli-vm","newField":"x"}}}]}"#,
    )
    .unwrap();
    let server = spawn_server(&dir.join("data"), &["--vms", file.to_str().unwrap()]);
    // The warning is logged before the listening line, so it is in the log already.
    let log = server.log.lock().unwrap().clone();
    let warnings = log
        .iter()
        .filter(|l| l.contains("vms[0].instance.compute.newField"))
        .count();
    assert_eq!(warnings, 1, "{log:?}");
    let imds = server.imds();
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
    drop(server);
}

type Server = crate::support::Spawned;

fn spawn_server(data: &std::path::Path, extra: &[&str]) -> Server {
    crate::support::spawn_azimds(data, extra)
}

fn cli(server: &Server, data: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let output = azimds()
        .args(args)
        .env("AZIMDS_CONTROL", &server.control)
        .env("AZIMDS_DATA", data)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn guest_name(server: &Server) -> String {
    server
        .imds()
        .get("/metadata/instance/compute/name?api-version=2021-02-01&format=text")
        .await
        .text()
        .to_string()
}

/// The CLI end to end against a running server: tables, JSON, exit codes, persistence.
#[tokio::test]
async fn cli_drives_a_running_server() {
    let temp = TempDir::new("cli-cli-e2e");
    let dir = temp.path();
    let data = dir.join("data");
    let server = spawn_server(&data, &["--callers", "source-address"]);
    let vm_file = dir.join("web.yaml");
    std::fs::write(
        &vm_file,
        "callers: [127.0.0.1]\ninstance:\n  compute: {name: from-cli, vmSize: Standard_B1s}\n",
    )
    .unwrap();
    let file = vm_file.to_str().unwrap();

    let (code, out, err) = cli(&server, &data, &["vm", "put", "web", file]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("created VM web (ETag \""), "{out}");
    assert_eq!(guest_name(&server).await, "from-cli");

    let (code, out, _) = cli(&server, &data, &["vm", "list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("CALLERS"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("web")
            && lines[1].contains("from-cli")
            && lines[1].ends_with("127.0.0.1"),
        "{out}"
    );
    let (_, json_out, _) = cli(&server, &data, &["vm", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&json_out).unwrap();
    let etag = listed["vms"][0]["etag"].as_str().unwrap().to_string();

    let patch = dir.join("patch.json");
    std::fs::write(&patch, r#"{"instance":{"compute":{"name":"patched"}}}"#).unwrap();
    let (code, _, err) = cli(
        &server,
        &data,
        &[
            "vm",
            "patch",
            "web",
            patch.to_str().unwrap(),
            "--if-match",
            &etag,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(guest_name(&server).await, "patched");
    let (code, _, err) = cli(
        &server,
        &data,
        &[
            "vm",
            "patch",
            "web",
            patch.to_str().unwrap(),
            "--if-match",
            &etag,
        ],
    );
    assert_eq!(code, 4, "stale ETag: {err}");
    assert!(err.contains("412") && err.contains("current ETag"), "{err}");

    let (code, out, _) = cli(&server, &data, &["vm", "get", "web", "--json"]);
    assert_eq!(code, 0);
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got["instance"]["compute"]["name"], "patched");

    let (code, _, err) = cli(&server, &data, &["vm", "get", "nope"]);
    assert_eq!(code, 3, "{err}");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"instance":{"compute":{"zone":1}}}"#).unwrap();
    let (code, _, err) = cli(
        &server,
        &data,
        &["vm", "put", "web2", bad.to_str().unwrap()],
    );
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("instance.compute.zone: expected a string"),
        "{err}"
    );

    let (code, out, _) = cli(&server, &data, &["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("vms              1") && out.contains("source-address"),
        "{out}"
    );

    let wrong_token = azimds()
        .args(["vm", "list", "--token", "wrong"])
        .env("AZIMDS_CONTROL", &server.control)
        .output()
        .unwrap();
    assert_eq!(wrong_token.status.code(), Some(6));
    let unreachable = azimds()
        .args(["status", "--control", "127.0.0.1:1", "--token", "x"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(6));

    // Everything acknowledged survives a restart.
    drop(server);
    let server = spawn_server(&data, &["--callers", "source-address"]);
    assert_eq!(guest_name(&server).await, "patched");
    let (code, out, _) = cli(&server, &data, &["vm", "delete", "web"]);
    assert_eq!((code, out.trim()), (0, "deleted VM web"));
    let (code, _, _) = cli(&server, &data, &["vm", "delete", "web"]);
    assert_eq!(code, 3);
    drop(server);
}

/// `--vms FILE` is reconciled into the store and re-applied when it changes; a bad edit keeps
/// the previous VMs.
#[tokio::test]
async fn definitions_file_changes_are_picked_up_without_restart() {
    let temp = TempDir::new("cli-watch");
    let dir = temp.path();
    let data = dir.join("data");
    let file = dir.join("vms.yaml");
    let write = |name: &str| {
        std::fs::write(&file, format!("vms:\n  - id: local\n    callers: [127.0.0.1]\n    instance: {{compute: {{name: {name}}}}}\n")).unwrap()
    };
    write("one");
    let server = spawn_server(
        &data,
        &[
            "--callers",
            "source-address",
            "--vms",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(guest_name(&server).await, "one");
    // A different length, so the edit is a change even within the mtime's granularity.
    write("two-longer");
    assert!(
        server.wait_for_log(
            "definitions file changed and was applied",
            1,
            Duration::from_secs(10)
        ),
        "the edit is applied within a few seconds"
    );
    assert_eq!(guest_name(&server).await, "two-longer");
    let refusals = server.log_count("keeping the previous VMs");
    std::fs::write(&file, "vms: [ {instance: ").unwrap();
    assert!(
        server.wait_for_log(
            "keeping the previous VMs",
            refusals + 1,
            Duration::from_secs(10)
        ),
        "the bad edit is noticed and refused"
    );
    assert_eq!(
        guest_name(&server).await,
        "two-longer",
        "a bad edit keeps the previous VMs"
    );
    let (_, out, _) = cli(&server, &data, &["vm", "list"]);
    assert!(
        out.contains("local") && out.contains("file"),
        "file-owned: {out}"
    );
    drop(server);
}

/// SIGTERM stops the server promptly and cleanly, hook deliverer and timers included.
#[test]
fn sigterm_stops_the_server_cleanly() {
    let temp = TempDir::new("cli-sigterm");
    let dir = temp.path();
    let data = dir.join("data");
    let mut server = spawn_server(&data, &["--event-hook", "cat > /dev/null"]);
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    drop(server);
}

/// Faults, the manual clock and the journal from the CLI, against the real binary: one
/// command reproduces "IMDS is updating for 70 seconds", another ends it.
#[tokio::test]
async fn cli_reproduces_imds_updating_and_moves_the_manual_clock() {
    let temp = TempDir::new("cli-faults");
    let data = temp.path().join("data");
    let server = spawn_server(&data, &["--clock", "manual"]);
    let instance = "/metadata/instance?api-version=2021-02-01";
    let (code, out, err) = cli(
        &server,
        &data,
        &["faults", "add", "--preset", "imds-updating"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("added fault f1: status 410 on every endpoint of every VM, until "),
        "{out}"
    );
    assert_eq!(server.imds().get(instance).await.status, 410);
    let (code, out, _) = cli(&server, &data, &["faults", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("ID  PRESET         INJECTED  RULE\nf1  imds-updating  1 "),
        "{out}"
    );
    let (code, out, err) = cli(&server, &data, &["clock", "advance", "70s"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(manual clock)"), "{out}");
    assert_eq!(server.imds().get(instance).await.status, 200);
    let (code, out, _) = cli(&server, &data, &["journal", "azimds-demo"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains(" GET  410 ") && lines[0].contains("[fault f1 status]"),
        "{out}"
    );
    assert!(
        lines[1].contains(" GET  200 ") && lines[1].contains(instance),
        "{out}"
    );
    assert!(server.wait_for_log("injected a fault", 1, Duration::from_secs(10)));
    let (code, _, err) = cli(&server, &data, &["faults", "add", "--status", "418"]);
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("status: expected one of 400, 404, 410, 429, 500, 503"),
        "{err}"
    );
    let (code, _, _) = cli(&server, &data, &["faults", "remove", "f9"]);
    assert_eq!(code, 3);
}

#[tokio::test]
async fn a_system_clock_cannot_be_moved() {
    let temp = TempDir::new("cli-system-clock");
    let data = temp.path().join("data");
    let server = spawn_server(&data, &[]);
    let (code, out, _) = cli(&server, &data, &["clock"]);
    assert_eq!(code, 0);
    assert!(out.contains("(system clock)"), "{out}");
    let (code, _, err) = cli(&server, &data, &["clock", "advance", "10m"]);
    assert_eq!(code, 4, "409 conflict: {err}");
    assert!(err.contains("--clock manual"), "{err}");
}

/// Fault rules load from the config file; a bad one stops the start, naming where it is.
#[tokio::test]
async fn config_file_fault_rules_are_loaded_and_checked() {
    let temp = TempDir::new("cli-config-faults");
    let dir = temp.path();
    let config = dir.join("azimds.toml");
    std::fs::write(
        &config,
        "[[faults]]\npreset = \"entra-outage\"\nduration = \"10m\"\n\n[[faults]]\nendpoint = \"instance\"\nstatus = 503\ncount = 1\n",
    )
    .unwrap();
    let server = spawn_server(&dir.join("data"), &["--config", config.to_str().unwrap()]);
    let token =
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net";
    let reply = server.imds().get(token).await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.text(),
        r#"{"error":"unknown","error_description":"Failed to retrieve token from the Active directory"}"#
    );
    let instance = "/metadata/instance?api-version=2021-02-01";
    assert_eq!(server.imds().get(instance).await.status, 503);
    assert_eq!(server.imds().get(instance).await.status, 200, "count 1");
    assert!(server.wait_for_log("injected a fault", 2, Duration::from_secs(10)));

    std::fs::write(&config, "[[faults]]\nstatus = 302\n").unwrap();
    let output = azimds()
        .args(["serve", "--config", config.to_str().unwrap(), "--data"])
        .arg(dir.join("data2"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("faults[0].status: expected one of 400"),
        "{err}"
    );
}

/// `--log-format json`: every line one JSON object, the access log's fields among them.
#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::{BufRead, BufReader};
    let temp = TempDir::new("cli-json-logs");
    let mut child = azimds()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "--data",
        ])
        .arg(temp.path().join("data"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = loop {
        let line = lines.next().expect("a listening line").unwrap();
        let object: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            object["timestamp"].is_string() && object["level"].is_string(),
            "{line}"
        );
        if object["message"] == "azimds guest plane listening" {
            break object;
        }
    };
    assert_eq!(listening["level"], "INFO");
    assert!(
        listening["listen"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let _ = child.kill();
    let _ = child.wait();
}
