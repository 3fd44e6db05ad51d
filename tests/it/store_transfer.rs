//! Issue 11, moving between stores: `azimds store export` / `import` (JSON lines), redb → etcd
//! → redb with nothing lost, keys sealed with the KEK throughout. Real binaries, real etcd.

#![cfg(feature = "fleet")]

use std::path::Path;
use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::fleet::{etcd, kek_file, serve_as, until_served};
use crate::support::{TempDir, azimds_binary, spawn_azimds};

fn azimds(args: &[&str]) -> Output {
    std::process::Command::new(azimds_binary())
        .args(args)
        .env_remove("AZIMDS_DATA")
        .output()
        .unwrap()
}

fn succeeded(output: Output) -> Output {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// An export as a comparable set: one JSON value per line, sorted; the header without the
/// backend it came from; each sealed private key opened (with the test's own AES-256-GCM
/// call, the documented layout) since a fresh nonce makes every sealing differ.
fn contents(path: &Path, kek: &[u8]) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<Value> = text
        .lines()
        .map(|line| {
            let mut value: Value = serde_json::from_str(line).unwrap();
            if value["kind"] == "header" {
                value.as_object_mut().unwrap().remove("backend");
            }
            if value["kind"] == "key" {
                let aad = format!(
                    "{}/{}",
                    value["collection"].as_str().unwrap(),
                    value["key"]["kid"].as_str().unwrap()
                );
                let sealed = STANDARD
                    .decode(value["key"]["sealedPrivateKey"].as_str().unwrap())
                    .unwrap();
                let (nonce, rest) = sealed[2..].split_at(12);
                let (ciphertext, tag) = rest.split_at(rest.len() - 16);
                let pem = openssl::symm::decrypt_aead(
                    openssl::symm::Cipher::aes_256_gcm(),
                    kek,
                    Some(nonce),
                    aad.as_bytes(),
                    ciphertext,
                    tag,
                )
                .expect("sealed with the KEK");
                assert!(!line.contains("PRIVATE KEY"), "sealed, not in the clear");
                value["key"]["sealedPrivateKey"] = json!(String::from_utf8(pem).unwrap());
            }
            value
        })
        .collect();
    lines.sort_by_key(|v| v.to_string());
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_moves_redb_to_etcd_and_back_with_nothing_lost() {
    let etcd = etcd::TestEtcd::start("it-transfer");
    let dir = TempDir::new("store-transfer");
    let kek_path = kek_file(dir.path());
    let kek = kek_path.to_str().unwrap();
    let kek_bytes = std::fs::read(&kek_path).unwrap();
    let endpoint = format!("etcd://{}", etcd.endpoint());
    let single = dir.path().join("single");

    // A single host on redb with two VMs (one with an identity), an event, rotated keys.
    let host = spawn_azimds(&single, &["--callers", "source-address"]);
    let control = host.control_api(&single);
    let with_identity = json!({
        "host": "host-b",
        "callers": ["127.0.0.1"],
        "instance": {"compute": {"name": "moved"}},
        "identities": {
            "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "systemAssigned": {"clientId": "5a1e8c3b-6f2d-4b7a-9e0c-1d2f3a4b5c6d", "objectId": "6b2f9d4c-7a3e-4c8b-8f1d-2e3a4b5c6d7e"},
        },
    });
    for (id, vm) in [
        ("vm1", with_identity),
        ("vm2", json!({"callers": ["127.0.0.2"]})),
    ] {
        let put = control
            .call("PUT", &format!("/v1/vms/{id}"), Some(&vm), &[])
            .await;
        assert_eq!(put.status, 201, "{}", put.text());
    }
    let event = json!({"type": "Reboot", "vms": ["vm2"]});
    let scheduled = control.call("POST", "/v1/events", Some(&event), &[]).await;
    assert_eq!(scheduled.status, 201, "{}", scheduled.text());
    let rotated = control
        .call("POST", "/v1/identity/keys/rotate", None, &[])
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let jwks = control
        .call("GET", "/common/discovery/keys", None, &[])
        .await
        .json();
    drop(host);

    let single_data = single.to_str().unwrap();
    let nowhere = dir.path().join("nowhere");
    let missing = azimds(&[
        "store",
        "export",
        "--without-keys",
        "--data",
        nowhere.to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("there is no store at"),
        "{missing:?}"
    );
    assert!(!nowhere.join("azimds.redb").exists(), "no empty store made");
    let refused = azimds(&["store", "export", "--data", single_data]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--without-keys"),
        "{refused:?}"
    );
    let first = dir.path().join("from-redb.jsonl");
    succeeded(azimds(&[
        "store",
        "export",
        "--data",
        single_data,
        "--kek-file",
        kek,
        "-o",
        first.to_str().unwrap(),
    ]));
    let exported = contents(&first, &kek_bytes);
    let count = |kind: &str| exported.iter().filter(|v| v["kind"] == kind).count();
    assert_eq!(
        (
            count("header"),
            count("vm"),
            count("event"),
            count("incarnation")
        ),
        (1, 2, 1, 1)
    );
    assert!(
        exported.iter().any(|v| v["kind"] == "key"
            && v["collection"] == "attested"
            && v["key"]["kid"] == "ca"),
        "the attested CA is exported"
    );
    assert_eq!(
        exported
            .iter()
            .filter(|v| v["kind"] == "key" && v["collection"] == "identity")
            .count(),
        2
    );

    let to_etcd = [
        "--store",
        &endpoint,
        "--etcd-prefix",
        "/fleet-test/",
        "--kek-file",
        kek,
    ];
    let import = |file: &Path, target: &[&str], force: bool| {
        let mut args = vec!["store", "import", file.to_str().unwrap()];
        args.extend_from_slice(target);
        if force {
            args.push("--force");
        }
        azimds(&args)
    };
    succeeded(import(&first, &to_etcd, false));
    let again = import(&first, &to_etcd, false);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("not empty (2 VMs"), "{stderr}");
    succeeded(import(&first, &to_etcd, true));

    // A host on that etcd serves the VM assigned to it and publishes the same JWKS.
    let data_b = dir.path().join("b");
    let fleet_host = serve_as(&etcd, &data_b, "host-b");
    until_served(&fleet_host, Some("moved")).await;
    let fleet_jwks = fleet_host
        .control_api(&data_b)
        .call("GET", "/common/discovery/keys", None, &[])
        .await
        .json();
    assert_eq!(fleet_jwks, jwks, "the keys moved with the store");
    drop(fleet_host);

    let second = dir.path().join("from-etcd.jsonl");
    let mut export_etcd = vec!["store", "export", "-o", second.to_str().unwrap()];
    export_etcd.extend_from_slice(&to_etcd);
    succeeded(azimds(&export_etcd));
    assert_eq!(
        contents(&second, &kek_bytes),
        exported,
        "etcd holds what redb did"
    );

    let back = dir.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    let back_data = ["--data", back.to_str().unwrap(), "--kek-file", kek];
    succeeded(import(&second, &back_data, false));
    let third = dir.path().join("back-in-redb.jsonl");
    let mut export_back = vec!["store", "export", "-o", third.to_str().unwrap()];
    export_back.extend_from_slice(&back_data);
    succeeded(azimds(&export_back));
    assert_eq!(
        contents(&third, &kek_bytes),
        exported,
        "and back, unchanged"
    );
}

/// A file of more records than one etcd transaction holds (`--etcd-max-txn-ops 4` here) is
/// written in several, and every record arrives; the same file into the embedded store too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_larger_than_one_transaction_writes_every_record() {
    let etcd = etcd::TestEtcd::start("it-transfer-chunks");
    let dir = TempDir::new("store-transfer-chunks");
    let file = dir.path().join("many.jsonl");
    let mut lines = vec![
        r#"{"kind":"header","format":"azimds-store","version":1,"backend":"redb","keys":false}"#
            .to_string(),
    ];
    for n in 0..25 {
        let entry = json!({"callers": [format!("10.1.0.{n}")],
                           "instance": {"compute": {"name": format!("chunk-{n}")}}});
        lines.push(
            json!({"kind": "vm", "id": format!("vm{n}"), "origin": "api", "entry": entry})
                .to_string(),
        );
        lines.push(
            json!({"kind": "incarnation", "vm": format!("vm{n}"), "incarnation": n + 2})
                .to_string(),
        );
    }
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let endpoint = format!("etcd://{}", etcd.endpoint());
    let kek_path = kek_file(dir.path());
    let kek = kek_path.to_str().unwrap();
    let etcd_store = [
        "--store",
        endpoint.as_str(),
        "--etcd-prefix",
        "/chunks/",
        "--kek-file",
        kek,
        "--etcd-max-txn-ops",
        "4",
    ];
    let mut import = vec!["store", "import", file.to_str().unwrap()];
    import.extend_from_slice(&etcd_store);
    succeeded(azimds(&import));
    let data = dir.path().join("redb");
    let data = data.to_str().unwrap();
    succeeded(azimds(&[
        "store",
        "import",
        file.to_str().unwrap(),
        "--data",
        data,
    ]));

    for target in [&etcd_store[..], &["--data", data][..]] {
        let out = dir.path().join("out.jsonl");
        let mut export = vec![
            "store",
            "export",
            "--without-keys",
            "-o",
            out.to_str().unwrap(),
        ];
        export.extend_from_slice(target);
        succeeded(azimds(&export));
        let text = std::fs::read_to_string(&out).unwrap();
        let kinds: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let count = |kind: &str| kinds.iter().filter(|v| v["kind"] == kind).count();
        assert_eq!((count("vm"), count("incarnation")), (25, 25), "{target:?}");
        let names: std::collections::BTreeSet<String> = kinds
            .iter()
            .filter(|v| v["kind"] == "vm")
            .map(|v| {
                v["entry"]["instance"]["compute"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(names.len(), 25);
        assert!(names.contains("chunk-24"), "{names:?}");
    }
}
