//! Memory cost of one served VM: builds N copies of the demo VM (distinct ids, names and
//! callers) into a snapshot and reports the resident-set growth per VM: loaded, after every
//! VM's newest document was served once, and after a sub-path of it was served too.
//!
//! `cargo run --release --example rss_per_vm -- 20000`

use serde_json::{Value, json};

use azimds::definition::vm_from_json;
use azimds::metadata::version::ApiVersion;
use azimds::snapshot::{CallerMode, Snapshot};
use azimds::throttle::RateLimit;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let demo: Value =
        serde_json::from_str(include_str!("../src/definition/demo.json")).expect("demo parses");
    let template = demo["vms"][0].clone();
    let before = rss_kib();
    let vms = (0..count).map(|i| {
        let mut entry = template.clone();
        entry["callers"] = json!([format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)]);
        entry["instance"]["compute"]["name"] = json!(format!("vm-{i}"));
        entry["instance"]["compute"]["vmId"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
        vm_from_json(&entry, &format!("vm-{i}")).expect("valid entry")
    });
    let snapshot =
        Snapshot::new(vms, CallerMode::SourceAddress, RateLimit(5)).expect("valid snapshot");
    let loaded = rss_kib();
    for vm in snapshot.vms() {
        vm.document(ApiVersion::NEWEST, false);
    }
    let rendered = rss_kib();
    for vm in snapshot.vms() {
        vm.indexed(ApiVersion::NEWEST, false);
    }
    let indexed = rss_kib();
    let per_vm = |kib: u64| kib as f64 * 1024.0 / count as f64;
    println!("VMs: {count}");
    println!(
        "loaded:   +{} KiB, {:.0} bytes per VM",
        loaded - before,
        per_vm(loaded - before)
    );
    println!(
        "rendered: +{} KiB, {:.0} bytes per VM (one api-version each)",
        rendered - before,
        per_vm(rendered - before)
    );
    println!(
        "indexed:  +{} KiB, {:.0} bytes per VM (sub-paths used too)",
        indexed - before,
        per_vm(indexed - before)
    );
}
