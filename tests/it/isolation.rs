//! Host mode in real network namespaces: the `azimds` binary serves `169.254.169.254:80` in a
//! "host" namespace with a bridge; three "VM" namespaces and one rogue namespace reach it
//! through veth pairs, each from its own address, exactly as guests on a hypervisor would.
//!
//! Topology (one per test; names carry the test's tag and the process id, so parallel tests and
//! parallel runs never share anything):
//!
//! ```text
//!  azimds-it-<tag>-<pid>-host   br0 10.213.0.1/24, lo 169.254.169.254/32, runs azimds
//!     ├─ veth ── …-vm1   eth0 10.213.0.11/24, 169.254.169.254 via 10.213.0.1
//!     ├─ veth ── …-vm2   eth0 10.213.0.12/24
//!     ├─ veth ── …-vm3   eth0 10.213.0.13/24
//!     └─ veth ── …-rogue eth0 10.213.0.66/24 (no VM has this address)
//! ```
//!
//! Guests use curl through `ip netns exec`; the control API is a unix socket in a temporary
//! directory (a filesystem object, so reachable from the test's own namespace). Everything is
//! removed by [`Topology`]'s `Drop`, also when an assertion fails. Needs root; without it the
//! tests fail with a message saying so (they are never skipped).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use azimds::client::ControlClient;
use azimds::config::ControlAddress;
use http::Method;
use serde_json::{Value, json};

const IMDS: &str = "http://169.254.169.254";
const SUBNET_PREFIX: &str = "10.213.0";
const HOST_ADDRESS: &str = "10.213.0.1";
const ROGUE_ADDRESS: &str = "10.213.0.66";
const NEWEST: &str = "2025-04-07";
const INSTANCE: &str = "/metadata/instance?api-version=2025-04-07";
const NAME: &str = "/metadata/instance/compute/name?api-version=2021-02-01&format=text";
const VM_ID: &str = "/metadata/instance/compute/vmId?api-version=2021-02-01&format=text";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const TOKEN: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F";
const IDENTITY_NOT_FOUND: &str =
    r#"{"error":"invalid_request","error_description":"Identity not found"}"#;
/// What every namespace this module creates is called; the rest is `<tag>-<pid>-<role>`.
const NETNS_PREFIX: &str = "azimds-it-";

/// One guest VM of the topology.
struct Guest {
    id: String,
    address: String,
    namespace: String,
    /// The VM's definition entry (what the file says, and what `PUT` replaces).
    entry: Value,
}

impl Guest {
    fn name(&self) -> &str {
        self.entry["instance"]["compute"]["name"].as_str().unwrap()
    }

    fn vm_id(&self) -> &str {
        self.entry["instance"]["compute"]["vmId"].as_str().unwrap()
    }
}

/// The namespaces, the server and its files; torn down on drop.
struct Topology {
    host: String,
    guests: Vec<Guest>,
    rogue: String,
    /// Every namespace created so far, in creation order (deleted in reverse).
    namespaces: Vec<String>,
    server: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
    control: ControlClient,
    runtime: tokio::runtime::Runtime,
}

/// What curl got: its exit code, and the response if there was one.
#[derive(Debug)]
struct Fetched {
    exit: i32,
    status: Option<u16>,
    body: String,
    stderr: String,
}

impl Fetched {
    fn ok_text(&self, what: &str) -> &str {
        assert_eq!(self.status, Some(200), "{what}: {self:?}");
        &self.body
    }

    fn ok_json(&self, what: &str) -> Value {
        let text = self.ok_text(what);
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
    }

    /// The server closed the connection without a byte of HTTP: curl's "empty reply" (52),
    /// "recv failure" (56, a reset) or "send failure" (55). Refused (7) or timed out (28) would
    /// mean the request never reached azimds, which is not what these tests mean to show (the
    /// tests also check azimds counted the connection).
    fn assert_closed_unanswered(&self, what: &str) {
        assert!(
            matches!(self.exit, 52 | 55 | 56) && self.status.is_none() && self.body.is_empty(),
            "{what}: expected the connection closed without an answer, got {self:?} (curl: {})",
            self.stderr.trim()
        );
    }
}

pub(crate) fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "the isolation tests create network namespaces (ip netns) and must run as root; \
         run `cargo test --test it` as root (effective uid here: {euid})"
    );
}

/// Runs `ip ARGS`, failing the test with ip's message if it fails.
pub(crate) fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2): {e}"));
    assert!(
        output.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Deletes a namespace, killing (by pid) anything still running in it. Never panics.
pub(crate) fn destroy_namespace(name: &str) {
    if let Ok(output) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// Removes namespaces of this module left by an earlier run that was killed before its `Drop`
/// ran (their process id no longer exists). Namespaces of live processes are left alone.
fn remove_stale_namespaces() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        // <tag>-<pid>-<role>
        let pid = rest.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            destroy_namespace(name);
            // …and that run's directory, named like its namespaces without the role.
            if let Some((base, _role)) = name.rsplit_once('-') {
                let _ = std::fs::remove_dir_all(std::env::temp_dir().join(base));
            }
        }
    }
}

/// A full instance document: the demo VM's with this VM's identity filled in.
fn instance(name: &str, vm_id: &str, address: &str) -> Value {
    let mut instance = crate::support::demo_instance();
    let compute = &mut instance["compute"];
    compute["name"] = json!(name);
    compute["vmId"] = json!(vm_id);
    compute["osProfile"]["computerName"] = json!(name);
    compute["resourceId"] = json!(format!(
        "/subscriptions/8d3c2a51-7f0e-4b2c-9a61-3e5f4c7d2b10/resourceGroups/azimds-demo-rg/providers/Microsoft.Compute/virtualMachines/{name}"
    ));
    instance["network"]["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"] =
        json!(address);
    instance
}

/// Managed identities of VM `n`: every id distinct per VM (the digit `n` runs through them).
fn identities(n: usize, name: &str) -> Value {
    json!({
        "tenantId": TENANT,
        "systemAssigned": {
            "clientId": format!("{n}{n}{n}{n}a001-0000-4000-8000-00000000000{n}"),
            "objectId": format!("{n}{n}{n}{n}a002-0000-4000-8000-00000000000{n}"),
        },
        "userAssigned": [{
            "clientId": format!("{n}{n}{n}{n}b001-0000-4000-8000-00000000000{n}"),
            "objectId": format!("{n}{n}{n}{n}b002-0000-4000-8000-00000000000{n}"),
            "resourceId": format!(
                "/subscriptions/8d3c2a51-7f0e-4b2c-9a61-3e5f4c7d2b10/resourceGroups/azimds-demo-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}-app"
            ),
        }],
    })
}

/// What the newest api-version serves for `entry`: the instance without the `extended` section
/// (served only with `extended=true`). The demo document fills in every field of the newest
/// schema, so nothing is added.
fn served_document(entry: &Value) -> Value {
    let mut document = entry["instance"].clone();
    document.as_object_mut().unwrap().remove("extended");
    document
}

impl Topology {
    /// Builds the namespaces and starts azimds in the host namespace with three VMs.
    fn start(tag: &str) -> Topology {
        require_root();
        remove_stale_namespaces();
        let base = format!("{NETNS_PREFIX}{tag}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&base);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("control.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let vm_ids = [
            "6a1e5b2c-1111-4f3a-9c0d-7e2b8a4d1f01",
            "6a1e5b2c-2222-4f3a-9c0d-7e2b8a4d1f02",
            "6a1e5b2c-3333-4f3a-9c0d-7e2b8a4d1f03",
        ];
        let guests = ["one", "two", "three"]
            .iter()
            .zip(vm_ids)
            .enumerate()
            .map(|(i, (word, vm_id))| {
                let address = format!("{SUBNET_PREFIX}.{}", 11 + i);
                let name = format!("iso-vm-{word}");
                let mut entry = json!({
                    "id": format!("vm-{word}"),
                    "callers": [address],
                    "instance": instance(&name, vm_id, &address),
                });
                // VMs 1 and 2 have a system- and a user-assigned identity; VM 3 has none.
                if i < 2 {
                    entry["identities"] = identities(i + 1, &name);
                }
                Guest {
                    id: format!("vm-{word}"),
                    namespace: format!("{base}-vm{}", i + 1),
                    entry,
                    address,
                }
            })
            .collect();
        let mut topology = Topology {
            host: format!("{base}-host"),
            guests,
            rogue: format!("{base}-rogue"),
            namespaces: Vec::new(),
            server: None,
            log: Arc::new(Mutex::new(Vec::new())),
            dir,
            control: ControlClient::new(ControlAddress::Unix(socket.clone()), None),
            runtime,
        };
        topology.build_network();
        topology.start_server(&socket);
        topology
    }

    fn add_namespace(&mut self, name: &str) {
        // Recorded first, so a half-made namespace is still removed.
        self.namespaces.push(name.to_string());
        ip(&["netns", "add", name]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    fn build_network(&mut self) {
        let host = self.host.clone();
        self.add_namespace(&host);
        ip(&["-n", &host, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &host,
            "addr",
            "add",
            &format!("{HOST_ADDRESS}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &host, "link", "set", "br0", "up"]);
        ip(&[
            "-n",
            &host,
            "addr",
            "add",
            "169.254.169.254/32",
            "dev",
            "lo",
        ]);
        let mut attach: Vec<(String, String)> = self
            .guests
            .iter()
            .map(|g| (g.namespace.clone(), g.address.clone()))
            .collect();
        attach.push((self.rogue.clone(), ROGUE_ADDRESS.to_string()));
        for (index, (namespace, address)) in attach.into_iter().enumerate() {
            self.add_namespace(&namespace);
            let port = format!("veth{index}");
            ip(&[
                "-n", &host, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &namespace,
            ]);
            ip(&["-n", &host, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &host, "link", "set", &port, "up"]);
            ip(&[
                "-n",
                &namespace,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &namespace, "link", "set", "eth0", "up"]);
            ip(&[
                "-n",
                &namespace,
                "route",
                "add",
                "169.254.169.254/32",
                "via",
                HOST_ADDRESS,
            ]);
        }
    }

    fn start_server(&mut self, socket: &Path) {
        let file = self.dir.join("vms.json");
        let entries: Vec<&Value> = self.guests.iter().map(|g| &g.entry).collect();
        std::fs::write(&file, json!({ "vms": entries }).to_string()).unwrap();
        let mut child = Command::new("ip")
            // `ip netns exec` execs the command, so the child is azimds itself.
            .args([
                "netns",
                "exec",
                &self.host,
                env!("CARGO_BIN_EXE_azimds"),
                "serve",
            ])
            .args(["--listen", "169.254.169.254:80"])
            .args(["--callers", "source-address", "--rate-limit", "0"])
            .arg("--vms")
            .arg(&file)
            .arg("--data")
            .arg(self.dir.join("data"))
            .arg("--control")
            .arg(format!("unix:{}", socket.display()))
            .env("AZIMDS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start azimds in the host namespace");
        let stderr = child.stderr.take().unwrap();
        self.server = Some(child);
        let (listening, ready) = mpsc::channel();
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listen=") {
                    let _ = listening.send(line.clone());
                }
                log.lock().unwrap().push(line);
            }
        });
        let line = ready
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| {
                panic!(
                    "azimds did not report listening within 15 s; log:\n{}",
                    self.log()
                )
            });
        assert!(line.contains("listen=169.254.169.254:80"), "{line}");
        assert!(line.contains("vms=3"), "{line}");
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `GET` from inside `namespace` with curl, `Metadata: true` plus `headers`.
    fn fetch(&self, namespace: &str, path: &str, headers: &[&str]) -> Fetched {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", namespace, "curl", "-sS", "-i"])
            .args(["--noproxy", "*", "--max-time", "5"])
            .args(["-H", "Metadata: true"]);
        for header in headers {
            command.args(["-H", header]);
        }
        let output = command
            .arg(format!("{IMDS}{path}"))
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .stdin(Stdio::null())
            .output()
            .expect("run curl (apt-get install curl)");
        let exit = output.status.code().unwrap_or(-1);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (status, body) = match text.split_once("\r\n\r\n") {
            Some((head, body)) => (
                head.split(' ').nth(1).and_then(|s| s.parse().ok()),
                body.to_string(),
            ),
            None => (None, text),
        };
        Fetched {
            exit,
            status,
            body,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// A control request over the unix socket: status, ETag, JSON body (or null).
    fn control(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Option<String>, Value) {
        let body = body.map(|b| serde_json::to_vec(b).unwrap());
        let reply = self
            .runtime
            .block_on(self.control.send(method, path, body, &[]))
            .unwrap_or_else(|e| panic!("control API: {e}\nlog:\n{}", self.log()));
        let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        (reply.status.as_u16(), reply.etag, json)
    }

    fn unknown_callers(&self) -> u64 {
        let (status, _, body) = self.control(Method::GET, "/v1/status", None);
        assert_eq!(status, 200, "{body}");
        body["unknownCallers"]
            .as_u64()
            .unwrap_or_else(|| panic!("/v1/status has no unknownCallers: {body}"))
    }

    /// Asserts `guest` is served exactly `entry`'s document, name and vmId.
    fn assert_serves(&self, guest: &Guest, entry: &Value, what: &str) {
        let ns = &guest.namespace;
        let document = self.fetch(ns, INSTANCE, &[]).ok_json(what);
        assert_eq!(document, served_document(entry), "{what}: full document");
        let name = entry["instance"]["compute"]["name"].as_str().unwrap();
        let vm_id = entry["instance"]["compute"]["vmId"].as_str().unwrap();
        assert_eq!(self.fetch(ns, NAME, &[]).ok_text(what), name, "{what}");
        assert_eq!(self.fetch(ns, VM_ID, &[]).ok_text(what), vm_id, "{what}");
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        for namespace in self.namespaces.iter().rev() {
            destroy_namespace(namespace);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Each VM namespace gets exactly its own metadata; the rogue address gets no answer at all and
/// is counted; no header can make a caller another VM.
#[test]
fn each_vm_namespace_sees_only_itself_and_strangers_get_nothing() {
    let net = Topology::start("iso");
    let unknown_before = net.unknown_callers();
    let (status, _, body) = net.control(Method::GET, "/v1/status", None);
    assert_eq!(status, 200);
    assert_eq!(body["vms"], 3, "{body}");
    assert_eq!(body["callers"], "source-address", "{body}");

    for guest in &net.guests {
        net.assert_serves(
            guest,
            &guest.entry,
            &format!("{} from {}", guest.id, guest.address),
        );
        // An older api-version and a sub-tree are that VM's too.
        let compute = net
            .fetch(
                &guest.namespace,
                "/metadata/instance/compute?api-version=2019-03-11",
                &[],
            )
            .ok_json("compute at 2019-03-11");
        assert_eq!(compute["name"], guest.name());
        assert_eq!(compute["vmId"], guest.vm_id());
        let versions = net.fetch(&guest.namespace, "/metadata/versions", &[]);
        assert!(versions.ok_text("versions").contains(NEWEST));
    }
    assert_eq!(
        net.unknown_callers(),
        unknown_before,
        "registered VMs are never counted as unknown callers"
    );

    // Headers claiming another VM's address are ignored (or, X-Forwarded-For, refused).
    let [one, two, three] = &net.guests[..] else {
        unreachable!()
    };
    let claims = |other: &Guest| {
        vec![
            format!("X-Real-IP: {}", other.address),
            format!("Forwarded: for={}", other.address),
            format!("X-Client-IP: {}", other.address),
            format!("True-Client-IP: {}", other.address),
            format!("X-Originating-IP: {}", other.address),
            format!("Client-IP: {}", other.address),
            format!("Host: {}", other.address),
        ]
    };
    for (guest, other) in [(one, two), (two, three), (three, one)] {
        let what = format!("{} claiming to be {}", guest.id, other.id);
        for header in claims(other) {
            let fetched = net.fetch(&guest.namespace, NAME, &[&header]);
            assert_eq!(
                fetched.ok_text(&format!("{what} with {header}")),
                guest.name(),
                "{what} with {header}"
            );
        }
        let all = claims(other);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let document = net.fetch(&guest.namespace, INSTANCE, &all).ok_json(&what);
        assert_eq!(
            document,
            served_document(&guest.entry),
            "{what} with every header"
        );
        let forwarded = format!("X-Forwarded-For: {}", other.address);
        let refused = net.fetch(&guest.namespace, INSTANCE, &[&forwarded]);
        assert_eq!(
            refused.status,
            Some(400),
            "{what} via X-Forwarded-For: {refused:?}"
        );
        for vm in &net.guests {
            assert!(
                !refused.body.contains(vm.name()) && !refused.body.contains(vm.vm_id()),
                "the X-Forwarded-For refusal leaks {}: {}",
                vm.id,
                refused.body
            );
        }
    }
    assert_eq!(net.unknown_callers(), unknown_before);

    // The rogue namespace: every attempt is closed unanswered, whatever it claims, and counted.
    let attempts: [(&str, Vec<String>); 5] = [
        (INSTANCE, vec![]),
        (NAME, vec![format!("X-Forwarded-For: {}", one.address)]),
        (NAME, vec![format!("X-Real-IP: {}", one.address)]),
        (INSTANCE, claims(two)),
        ("/metadata/versions", vec![]),
    ];
    for (path, headers) in &attempts {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        net.fetch(&net.rogue, path, &headers)
            .assert_closed_unanswered(&format!("rogue {path} with {headers:?}"));
    }
    assert_eq!(
        net.unknown_callers(),
        unknown_before + attempts.len() as u64,
        "each refused connection is counted once"
    );

    // The VMs are unaffected by the rogue's attempts.
    for guest in &net.guests {
        assert_eq!(
            net.fetch(&guest.namespace, NAME, &[])
                .ok_text("after rogue"),
            guest.name()
        );
    }
}

/// Changes through the control API (unix socket) reach exactly the VM they change, on its next
/// request: replace VM 2, give VM 3 the rogue's address, delete VM 3.
#[test]
fn control_plane_changes_reach_only_the_changed_vm() {
    let net = Topology::start("ctl");
    let [one, two, three] = &net.guests[..] else {
        unreachable!()
    };
    for guest in &net.guests {
        net.assert_serves(guest, &guest.entry, &format!("{} before", guest.id));
    }

    // Replace VM 2: new name, vmId, tags.
    let mut replaced = two.entry.clone();
    replaced["instance"] = instance(
        "iso-vm-two-replaced",
        "6a1e5b2c-2222-4f3a-9c0d-7e2b8a4d1f99",
        &two.address,
    );
    replaced["instance"]["compute"]["tags"] = json!("stage:replaced");
    replaced["instance"]["compute"]["tagsList"] = json!([{"name": "stage", "value": "replaced"}]);
    let (status, etag, body) =
        net.control(Method::PUT, &format!("/v1/vms/{}", two.id), Some(&replaced));
    assert_eq!(status, 200, "{body}");
    assert!(etag.is_some(), "PUT answers with an ETag");
    net.assert_serves(two, &replaced, "VM 2 after PUT");
    net.assert_serves(one, &one.entry, "VM 1 after VM 2's PUT");
    net.assert_serves(three, &three.entry, "VM 3 after VM 2's PUT");

    // Give VM 3 the rogue's address too: the rogue namespace is now VM 3.
    let unknown_before = net.unknown_callers();
    net.fetch(&net.rogue, NAME, &[])
        .assert_closed_unanswered("rogue before it is registered");
    let patch = json!({"callers": [three.address, ROGUE_ADDRESS]});
    let (status, _, body) = net.control(
        Method::PATCH,
        &format!("/v1/vms/{}", three.id),
        Some(&patch),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        net.fetch(&net.rogue, NAME, &[])
            .ok_text("rogue registered as VM 3"),
        three.name()
    );
    net.assert_serves(three, &three.entry, "VM 3 after gaining an address");
    net.assert_serves(one, &one.entry, "VM 1 after VM 3's PATCH");
    assert_eq!(
        net.fetch(&two.namespace, NAME, &[]).ok_text("VM 2"),
        "iso-vm-two-replaced"
    );

    // Delete VM 3: both of its addresses get nothing again; VMs 1 and 2 are untouched.
    let (status, _, body) = net.control(Method::DELETE, &format!("/v1/vms/{}", three.id), None);
    assert_eq!(status, 204, "{body}");
    net.fetch(&three.namespace, NAME, &[])
        .assert_closed_unanswered("VM 3 after DELETE");
    net.fetch(&net.rogue, NAME, &[])
        .assert_closed_unanswered("rogue after VM 3's DELETE");
    assert_eq!(net.unknown_callers(), unknown_before + 3);
    net.assert_serves(one, &one.entry, "VM 1 at the end");
    net.assert_serves(two, &replaced, "VM 2 at the end");
    let (status, _, body) = net.control(Method::GET, "/v1/vms", None);
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| vm["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["vm-one", "vm-two"]);
}

/// Verifies a token as a relying party would (signature with the JWKS the control API
/// publishes, audience, issuer, lifetime) and returns its claims.
fn verify_token(jwks: &Value, token: &str) -> Value {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let set: JwkSet = serde_json::from_value(jwks.clone()).expect("a JWK set");
    let kid = decode_header(token).expect("a JWT").kid.expect("a kid");
    let key = DecodingKey::from_jwk(set.find(&kid).expect("the kid is published")).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["https://management.azure.com/"]);
    validation.set_issuer(&[format!("https://sts.windows.net/{TENANT}/")]);
    decode::<Value>(token, &key, &validation)
        .expect("the token verifies with the published keys")
        .claims
}

/// Managed identity through the namespaces: each VM gets tokens for its own identities only;
/// naming another VM's identity (client id, object id or resource id) finds nothing; a VM
/// without identities gets none; the rogue address gets no answer.
#[test]
fn each_vm_gets_tokens_only_for_its_own_identities() {
    let net = Topology::start("mi");
    let (status, _, jwks) = net.control(Method::GET, "/common/discovery/keys", None);
    assert_eq!(status, 200, "{jwks}");
    let unknown_before = net.unknown_callers();
    let with_identities = &net.guests[..2];
    let token = |guest: &Guest, selector: &str| {
        net.fetch(&guest.namespace, &format!("{TOKEN}{selector}"), &[])
    };
    for guest in with_identities {
        let ids = &guest.entry["identities"];
        let system = &ids["systemAssigned"];
        let user = &ids["userAssigned"][0];
        let vm_resource = &guest.entry["instance"]["compute"]["resourceId"];

        // No selector: the system-assigned identity.
        let reply = token(guest, "").ok_json(&format!("{} system token", guest.id));
        assert_eq!(reply["client_id"], system["clientId"]);
        let claims = verify_token(&jwks, reply["access_token"].as_str().unwrap());
        assert_eq!(claims["appid"], system["clientId"], "{claims}");
        assert_eq!(claims["oid"], system["objectId"], "{claims}");
        assert_eq!(claims["xms_mirid"], *vm_resource, "{claims}");
        assert_eq!(claims["tid"], TENANT);

        // Its user-assigned identity, by each kind of selector.
        for selector in [
            format!("&client_id={}", user["clientId"].as_str().unwrap()),
            format!("&object_id={}", user["objectId"].as_str().unwrap()),
            format!("&msi_res_id={}", user["resourceId"].as_str().unwrap()),
        ] {
            let what = format!("{} user token by {selector}", guest.id);
            let reply = token(guest, &selector).ok_json(&what);
            assert_eq!(reply["client_id"], user["clientId"], "{what}");
            let claims = verify_token(&jwks, reply["access_token"].as_str().unwrap());
            assert_eq!(claims["appid"], user["clientId"], "{what}: {claims}");
            assert_eq!(claims["oid"], user["objectId"], "{what}: {claims}");
            assert_eq!(claims["xms_mirid"], user["resourceId"], "{what}: {claims}");
        }

        // Every other VM's identities, by every selector, are not found — from this VM.
        for other in net.guests.iter().filter(|g| g.id != guest.id) {
            let theirs = &other.entry["identities"];
            let mut selectors = Vec::new();
            if !theirs.is_null() {
                for identity in [&theirs["systemAssigned"], &theirs["userAssigned"][0]] {
                    selectors.push(format!(
                        "&client_id={}",
                        identity["clientId"].as_str().unwrap()
                    ));
                    selectors.push(format!(
                        "&object_id={}",
                        identity["objectId"].as_str().unwrap()
                    ));
                }
                selectors.push(format!(
                    "&msi_res_id={}",
                    theirs["userAssigned"][0]["resourceId"].as_str().unwrap()
                ));
            }
            for selector in selectors {
                let refused = token(guest, &selector);
                assert_eq!(
                    (refused.status, refused.body.as_str()),
                    (Some(400), IDENTITY_NOT_FOUND),
                    "{} asking for {}'s identity with {selector}",
                    guest.id,
                    other.id
                );
            }
        }
    }

    // VM 3 has no identity: nothing by default, nothing by naming VM 1's.
    let three = &net.guests[2];
    let one_user = net.guests[0].entry["identities"]["userAssigned"][0]["clientId"]
        .as_str()
        .unwrap();
    for selector in [String::new(), format!("&client_id={one_user}")] {
        let refused = token(three, &selector);
        assert_eq!(
            (refused.status, refused.body.as_str()),
            (Some(400), IDENTITY_NOT_FOUND),
            "VM 3 (no identities) with {selector:?}"
        );
    }

    // The rogue address gets no token, whatever it names.
    for selector in [String::new(), format!("&client_id={one_user}")] {
        net.fetch(&net.rogue, &format!("{TOKEN}{selector}"), &[])
            .assert_closed_unanswered(&format!("rogue token request {selector:?}"));
    }
    assert_eq!(net.unknown_callers(), unknown_before + 2);
}
