//! Generates a VM definitions file for the scale benchmark (`scripts/bench-scale.sh`).
//!
//! ```text
//! cargo run --release --example scale_vms -- COUNT OUT.json [--yaml] [--bad INDEX]
//! ```
//!
//! Writes `{"vms":[...]}` (with `--yaml`, the same VMs as a YAML block list: `vms:` then one
//! `- ` item per VM) with `COUNT` realistic VMs plus one more, `vm-local`, whose caller is
//! `127.0.0.1` (the VM a load generator on the same host is served as). Every VM is the
//! built-in demo VM's full instance document (about 4 KB of JSON, every field of the newest
//! schema) with its own id, name, computer name, vmId, resource ids, disk names, MAC, private
//! and public address, tags, fault/update domain and zone, and managed identities (a
//! system-assigned one and a user-assigned one, every id given); VM `i` (1-based) calls from
//! `10.(i / 62500 + 1).(i / 250 % 250).(i % 250 + 4)`, so callers are distinct 10/8 addresses.
//! `COUNT = 0` writes only `vm-local` (the one-VM baseline). `--bad INDEX` makes VM INDEX
//! invalid (its `compute.zone` a number instead of a string), for the check that a file with one
//! bad entry changes nothing. Deterministic: the same arguments give the same bytes.

use std::io::Write;

use serde_json::{Value, json};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(count), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: scale_vms COUNT OUT [--yaml] [--bad INDEX]");
        std::process::exit(2);
    };
    let count: u32 = count.parse().unwrap_or_else(|_| {
        eprintln!("COUNT must be a number");
        std::process::exit(2);
    });
    let yaml = args.iter().any(|a| a == "--yaml");
    let bad: Option<u32> = args
        .iter()
        .position(|a| a == "--bad")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--bad takes a VM index"));
    let demo: Value = serde_json::from_str(include_str!("../src/definition/demo.json"))
        .expect("the demo definition is JSON");
    let template = demo["vms"][0]["instance"].clone();

    let file = std::fs::File::create(out).unwrap_or_else(|e| {
        eprintln!("cannot create {out}: {e}");
        std::process::exit(1);
    });
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut rng = fastrand::Rng::with_seed(0x00a2_1d5e);
    let write = |out: &mut std::io::BufWriter<std::fs::File>, i: u32, entry: &Value| {
        if yaml {
            let text = serde_yaml_ng::to_string(entry).expect("a VM serializes as YAML");
            for (n, line) in text.lines().enumerate() {
                out.write_all(if n == 0 { b"- " } else { b"  " }).unwrap();
                out.write_all(line.as_bytes()).unwrap();
                out.write_all(b"\n").unwrap();
            }
        } else {
            if i > 0 {
                out.write_all(b",\n").unwrap();
            }
            serde_json::to_writer(&mut *out, entry).unwrap();
        }
    };
    out.write_all(if yaml { b"vms:\n" } else { b"{\"vms\":[\n" })
        .unwrap();
    for i in 0..=count {
        let (id, caller) = match i {
            0 => ("vm-local".to_string(), "127.0.0.1".to_string()),
            _ => (
                format!("vm-{i:06}"),
                format!("10.{}.{}.{}", i / 62_500 + 1, i / 250 % 250, i % 250 + 4),
            ),
        };
        let mut entry = vm(&template, &mut rng, i, &id, &caller);
        if bad == Some(i) {
            entry["instance"]["compute"]["zone"] = json!(1);
        }
        write(&mut out, i, &entry);
    }
    if !yaml {
        out.write_all(b"\n]}\n").unwrap();
    }
    out.flush().unwrap();
}

/// One VM: the template with every per-VM field replaced.
fn vm(template: &Value, rng: &mut fastrand::Rng, i: u32, id: &str, caller: &str) -> Value {
    let mut instance = template.clone();
    let hex = |rng: &mut fastrand::Rng, n: usize| -> String {
        (0..n)
            .map(|_| char::from_digit(rng.u32(0..16), 16).unwrap())
            .collect()
    };
    let vm_id = format!(
        "{}-{}-4{}-{}{}-{}",
        hex(rng, 8),
        hex(rng, 4),
        hex(rng, 3),
        ['8', '9', 'a', 'b'][rng.usize(0..4)],
        hex(rng, 3),
        hex(rng, 12)
    );
    let subscription = "8d3c2a51-7f0e-4b2c-9a61-3e5f4c7d2b10";
    let group = format!("rg-fleet-{:03}", i % 400);
    let name = id.to_string();
    let base = format!("/subscriptions/{subscription}/resourceGroups/{group}/providers");
    let os_disk = format!("{name}_OsDisk_1_{}", hex(rng, 32));
    let data_disk = format!("{name}_DataDisk_0");
    let public = format!("20.{}.{}.{}", 60 + i % 40, i / 250 % 250, i % 250 + 4);
    let c = &mut instance["compute"];
    c["name"] = json!(name);
    c["vmId"] = json!(vm_id);
    c["osProfile"]["computerName"] = json!(name);
    c["resourceGroupName"] = json!(group);
    c["resourceId"] = json!(format!("{base}/Microsoft.Compute/virtualMachines/{name}"));
    c["platformFaultDomain"] = json!((i % 3).to_string());
    c["platformUpdateDomain"] = json!((i % 5).to_string());
    c["zone"] = json!((i % 3 + 1).to_string());
    c["physicalZone"] = json!(format!("westeurope-AZ0{}", i % 3 + 1));
    let team = ["web", "data", "batch", "platform"][(i % 4) as usize];
    c["tags"] = json!(format!("environment:prod;team:{team};index:{i}"));
    c["tagsList"] = json!([
        {"name": "environment", "value": "prod"},
        {"name": "team", "value": team},
        {"name": "index", "value": i.to_string()},
    ]);
    c["storageProfile"]["osDisk"]["name"] = json!(os_disk);
    c["storageProfile"]["osDisk"]["managedDisk"]["id"] =
        json!(format!("{base}/Microsoft.Compute/disks/{os_disk}"));
    c["storageProfile"]["dataDisks"][0]["name"] = json!(data_disk);
    c["storageProfile"]["dataDisks"][0]["managedDisk"]["id"] =
        json!(format!("{base}/Microsoft.Compute/disks/{data_disk}"));
    c["publicKeys"][0]["keyData"] = json!(format!(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} azureuser@{name}\n",
        hex(rng, 43)
    ));
    let interface = &mut instance["network"]["interface"][0];
    interface["macAddress"] = json!(format!("000D3A{}", hex(rng, 6).to_uppercase()));
    interface["ipv4"]["ipAddress"][0] =
        json!({"privateIpAddress": caller, "publicIpAddress": public});
    let (network, prefix) = match caller.rsplit_once('.') {
        Some((net, _)) if caller.starts_with("10.") => (format!("{net}.0"), "24"),
        _ => ("127.0.0.0".to_string(), "8"),
    };
    interface["ipv4"]["subnet"][0] = json!({"address": network, "prefix": prefix});
    let guid = |rng: &mut fastrand::Rng| {
        format!(
            "{}-{}-4{}-a{}-{}",
            hex(rng, 8),
            hex(rng, 4),
            hex(rng, 3),
            hex(rng, 3),
            hex(rng, 12)
        )
    };
    let identities = json!({
        "systemAssigned": {"clientId": guid(rng), "objectId": guid(rng)},
        "userAssigned": [{
            "clientId": guid(rng),
            "objectId": guid(rng),
            "resourceId": format!(
                "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}-app"
            ),
        }],
    });
    json!({
        "id": id,
        "callers": [caller],
        "instance": instance,
        "identities": identities,
    })
}
