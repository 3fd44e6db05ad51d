//! The anti-spoofing ruleset documented in docs/host-mode.md (docs/antispoof.nft), checked in
//! real network namespaces: without it a VM can borrow another VM's address and read its
//! metadata; with it the spoofed packets are dropped and the VM still reaches its own.
//!
//! Topology: a host namespace with a bridge (10.214.0.1/24) and 169.254.169.254 where azimds
//! listens; one VM namespace ("attacker", 10.214.0.12) attached through a veth "tap". VM
//! "victim" is defined with caller 10.214.0.11 but has no namespace, so the attacker is the only
//! one on the wire that can answer for that address: the spoof works deterministically.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Namespaces {
    names: Vec<String>,
    server: Option<Child>,
    dir: std::path::PathBuf,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(args: &[&str]) {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all);
}

/// GET the VM name from inside `ns`, sourcing from `source`; `None` when nothing answers.
fn name_seen(ns: &str, source: &str) -> Option<String> {
    let script = "import http.client,sys\n\
        c=http.client.HTTPConnection('169.254.169.254',80,timeout=2,source_address=(sys.argv[1],0))\n\
        c.request('GET','/metadata/instance/compute/name?api-version=2021-02-01&format=text',headers={'Metadata':'true'})\n\
        r=c.getresponse(); sys.stdout.write(r.read().decode())";
    let output = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", script, source])
        .output()
        .unwrap();
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn documented_nftables_rules_stop_address_spoofing() {
    assert!(
        Command::new("id").arg("-u").output().unwrap().stdout == b"0\n",
        "network-namespace tests need root (CI runs as root)"
    );
    let pid = std::process::id();
    let host = format!("azas-h-{pid}");
    let attacker = format!("azas-a-{pid}");
    let dir = std::env::temp_dir().join(format!("azimds-antispoof-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut guard = Namespaces {
        names: vec![host.clone(), attacker.clone()],
        server: None,
        dir: dir.clone(),
    };
    for ns in &guard.names {
        run(&["ip", "netns", "add", ns]);
        in_ns(ns, &["ip", "link", "set", "lo", "up"]);
    }
    in_ns(&host, &["ip", "link", "add", "br0", "type", "bridge"]);
    in_ns(&host, &["ip", "addr", "add", "10.214.0.1/24", "dev", "br0"]);
    in_ns(
        &host,
        &["ip", "addr", "add", "169.254.169.254/32", "dev", "br0"],
    );
    in_ns(&host, &["ip", "link", "set", "br0", "up"]);
    in_ns(
        &host,
        &[
            "ip", "link", "add", "tap2", "type", "veth", "peer", "name", "eth0", "netns", &attacker,
        ],
    );
    in_ns(&host, &["ip", "link", "set", "tap2", "master", "br0", "up"]);
    in_ns(
        &attacker,
        &["ip", "link", "set", "eth0", "address", "52:54:00:00:02:12"],
    );
    in_ns(
        &attacker,
        &["ip", "addr", "add", "10.214.0.12/24", "dev", "eth0"],
    );
    in_ns(&attacker, &["ip", "link", "set", "eth0", "up"]);
    in_ns(
        &attacker,
        &["ip", "route", "add", "default", "via", "10.214.0.1"],
    );

    let vms = dir.join("vms.yaml");
    std::fs::write(
        &vms,
        "vms:\n  - {id: victim, callers: [10.214.0.11], instance: {compute: {name: victim}}}\n  - {id: attacker, callers: [10.214.0.12], instance: {compute: {name: attacker}}}\n",
    )
    .unwrap();
    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &host,
            env!("CARGO_BIN_EXE_azimds"),
            "serve",
            "--listen",
            "169.254.169.254:80",
        ])
        .args(["--callers", "source-address", "--rate-limit", "0", "--vms"])
        .arg(&vms)
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--control")
        .arg(format!("unix:{}", dir.join("control.sock").display()))
        .env("AZIMDS_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    while !lines
        .next()
        .expect("server log")
        .unwrap()
        .contains("listen=")
    {}
    std::thread::spawn(move || for _ in lines {});
    guard.server = Some(server);

    assert_eq!(
        name_seen(&attacker, "10.214.0.12").as_deref(),
        Some("attacker")
    );
    // The threat: borrowing the victim's address reads the victim's metadata.
    in_ns(
        &attacker,
        &["ip", "addr", "add", "10.214.0.11/24", "dev", "eth0"],
    );
    assert_eq!(
        name_seen(&attacker, "10.214.0.11").as_deref(),
        Some("victim"),
        "spoofing works without the rules"
    );

    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/antispoof.nft"))
        .unwrap()
        .replace("@VM_ID@", "attacker")
        .replace("@TAP@", "tap2")
        .replace("@MAC@", "52:54:00:00:02:12")
        .replace("@IP@", "10.214.0.12");
    let rules_file = dir.join("antispoof.nft");
    std::fs::write(&rules_file, rules).unwrap();
    in_ns(&host, &["nft", "-f", rules_file.to_str().unwrap()]);

    assert_eq!(
        name_seen(&attacker, "10.214.0.11"),
        None,
        "spoofed packets are dropped"
    );
    assert_eq!(
        name_seen(&attacker, "10.214.0.12").as_deref(),
        Some("attacker"),
        "its own address still works"
    );
    in_ns(
        &attacker,
        &["ip", "link", "set", "eth0", "address", "52:54:00:00:02:99"],
    );
    assert_eq!(
        name_seen(&attacker, "10.214.0.12"),
        None,
        "a forged MAC is dropped too"
    );
}
