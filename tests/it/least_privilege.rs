//! Issue 14 item 6: azimds runs as an unprivileged user with one capability,
//! `CAP_NET_BIND_SERVICE`, to bind port 80 (what `packaging/azimds.service` grants with
//! `AmbientCapabilities=`), and writes nothing outside its data directory. Against the real
//! binary, as root: `setpriv` drops to `nobody` keeping only that capability, in a network
//! namespace this test creates (so port 80 is its own; removed on drop); and a mount namespace
//! where everything but the data directory is read-only and `/dev/shm` is a fresh tmpfs,
//! while the server is driven through every write it makes (VMs, events, approvals, key
//! rotations, health reports) and stopped.
//!
//! Socket activation (`LISTEN_FDS`) is not supported; the capability is the way to port 80.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::{
    ControlApi, TempDir, in_mount_namespace, serve_refused_through, spawn_azimds_through,
};

const NOBODY: u32 = 65534;
/// `CAP_NET_BIND_SERVICE` is capability 10 (linux/capability.h).
const NET_BIND_SERVICE_MASK: u64 = 1 << 10;

/// A network namespace with its loopback up, deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("azimds-lp-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }

    /// `ip netns exec NAME`, as a launcher prefix.
    fn exec(&self) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.0.clone()]
    }

    /// curl inside the namespace: the status code and body.
    fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "curl", "-sS", "--max-time", "10"])
            .args(["-o", "-", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), body.to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?} (needs root)");
}

/// `setpriv` to nobody:nogroup with no supplementary groups, `caps` (e.g.
/// `+net_bind_service`, or `-all`) as the only inheritable, ambient and bounding capabilities.
fn as_nobody(caps: &str) -> Vec<String> {
    let mut launcher = vec![
        "setpriv".to_string(),
        "--reuid=nobody".into(),
        "--regid=nogroup".into(),
        "--clear-groups".into(),
        format!("--inh-caps=-all,{caps}"),
        format!("--bounding-set=-all,{caps}"),
    ];
    if caps != "-all" {
        launcher.push(format!("--ambient-caps={caps}"));
    }
    launcher.push("--".into());
    launcher
}

/// A data directory owned by nobody, 0700, inside a directory nobody may traverse.
fn nobody_data_dir(dir: &TempDir) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&data, Some(NOBODY), Some(NOBODY)).unwrap();
    data
}

/// A `Name:\t…` line of /proc/PID/status.
fn proc_status(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

#[test]
fn nobody_with_only_cap_net_bind_service_serves_port_80() {
    let netns = Netns::new();
    let dir = TempDir::new("least-privilege");
    let data = nobody_data_dir(&dir);
    let port_80 = ["--listen", "127.0.0.1:80", "--control", "127.0.0.1:8080"];

    // Without the capability, port 80 is refused (the namespace keeps the kernel's default
    // unprivileged port start, 1024).
    let mut launcher = netns.exec();
    launcher.extend(as_nobody("-all"));
    let (code, stderr) = serve_refused_through(&launcher, &data, &port_80, Duration::from_secs(10))
        .expect("azimds bound port 80 without the capability");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot listen for") && stderr.contains("127.0.0.1:80: Permission denied"),
        "{stderr}"
    );

    let mut launcher = netns.exec();
    launcher.extend(as_nobody("+net_bind_service"));
    let server = spawn_azimds_through(&launcher, &data, &port_80);
    let pid = server.child.id();
    for ids in ["Uid", "Gid"] {
        assert_eq!(
            proc_status(pid, ids),
            "65534\t65534\t65534\t65534",
            "{ids}: real, effective, saved, filesystem"
        );
    }
    assert_eq!(proc_status(pid, "Groups"), "");
    for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        let mask = u64::from_str_radix(&proc_status(pid, set), 16).unwrap();
        assert_eq!(
            mask, NET_BIND_SERVICE_MASK,
            "{set}: only CAP_NET_BIND_SERVICE"
        );
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "0");

    let (status, body) = netns.curl(&[
        "-H",
        "Metadata: true",
        "http://127.0.0.1:80/metadata/instance/compute/name?api-version=2021-02-01&format=text",
    ]);
    assert_eq!((status, body.as_str()), (200, "azimds-demo"));
    let (status, _) = netns.curl(&["http://127.0.0.1:8080/readyz"]);
    assert_eq!(status, 200);
    // What it wrote is nobody's, owner-only.
    use std::os::unix::fs::MetadataExt;
    for name in ["azimds.redb", "control-token", "keys"] {
        let metadata = std::fs::metadata(data.join(name)).unwrap();
        assert_eq!(metadata.uid(), NOBODY, "{name}");
        assert_eq!(metadata.mode() & 0o077, 0, "{name} is owner-only");
    }
}

/// A launcher into a mount namespace where `/` is read-only, `data` is a writable bind mount
/// of itself, and `/dev/shm` a fresh, empty tmpfs.
fn only_data_writable(data: &Path) -> Vec<String> {
    let script = r#"mount --bind "$1" "$1" \
        && mount -o remount,ro,bind / \
        && mount -t tmpfs -o size=1m,mode=1777 tmpfs /dev/shm \
        && shift && exec "$@""#;
    in_mount_namespace(script, data)
}

#[tokio::test]
async fn nothing_is_written_outside_the_data_directory() {
    let dir = TempDir::new("writes");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let vms = dir.path().join("vms.yaml");
    std::fs::write(
        &vms,
        "vms:\n  - id: vm-a\n    callers: [127.0.0.1]\n    instance: {compute: {name: vm-a}}\n    identities: {tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47, systemAssigned: {clientId: 5a1e8c3b-6f2d-4b7a-9e0c-1d2f3a4b5c6d, objectId: 6b2f9d4c-7a3e-4c8b-8f1d-2e3a4b5c6d7e}}\n",
    )
    .unwrap();
    let vms = vms.display().to_string();
    let mut server = spawn_azimds_through(
        &only_data_writable(&data),
        &data,
        &["--callers", "source-address", "--vms", &vms],
    );
    let control: ControlApi = server.control_api(&data);
    let imds = server.imds();

    // Every kind of write azimds makes: a VM (and its regional attested leaf), an event and a
    // guest's approval, both key rotations; then a token and an attested document.
    let put = control
        .call(
            "PUT",
            "/v1/vms/vm-b",
            Some(&json!({"callers": ["127.0.0.2"], "instance": {"compute": {"name": "vm-b", "location": "northeurope"}}})),
            &[],
        )
        .await;
    assert!((200..300).contains(&put.status), "{}", put.text());
    let event = control
        .call(
            "POST",
            "/v1/events",
            Some(&json!({"type": "Reboot", "vms": ["vm-a"]})),
            &[],
        )
        .await;
    assert_eq!(event.status, 201, "{}", event.text());
    let id = event.json()["id"].as_str().unwrap().to_string();
    let approve = imds
        .raw_from(
            "127.0.0.1".parse().unwrap(),
            format!(
                "POST /metadata/scheduledevents?api-version=2020-07-01 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
                json!({"StartRequests": [{"EventId": id}]}).to_string().len(),
                json!({"StartRequests": [{"EventId": id}]})
            ),
        )
        .await;
    assert_eq!(approve.status, 200, "{}", approve.text());
    for rotate in ["/v1/identity/keys/rotate", "/v1/attested/keys/rotate"] {
        let reply = control.call("POST", rotate, None, &[]).await;
        assert_eq!(reply.status, 200, "{rotate}: {}", reply.text());
    }
    for path in [
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F",
        "/metadata/attested/document?api-version=2020-09-01&nonce=1234",
    ] {
        let reply = imds
            .raw_from(
                "127.0.0.1".parse().unwrap(),
                format!(
                    "GET {path} HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n"
                ),
            )
            .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    let (fresh_tmpfs, shm) = (
        format!("/proc/{}/root/dev/shm", server.child.id()),
        std::fs::read_dir(format!("/proc/{}/root/dev/shm", server.child.id())),
    );
    assert_eq!(
        shm.unwrap().count(),
        0,
        "{fresh_tmpfs}: nothing written to the server's /dev/shm"
    );
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "a clean stop: {status:?}");
    // Had it written anywhere else, it would have met a read-only file system and said so.
    let problems: Vec<String> = server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("Read-only"))
        .cloned()
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
}
