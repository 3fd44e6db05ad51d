//! Issue 11, shared keys: the token signing keys and the attested CA and leaves live in etcd,
//! sealed with the fleet's KEK, so a token issued on one host verifies with another host's
//! JWKS, an attested document from any host verifies against the one CA, and a rotation of
//! either on one host reaches the others. Real binaries on a real etcd.

#![cfg(feature = "fleet")]

use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::attested::{cms_verify, ok, openssl, signature_der};
use crate::fleet::{etcd, kek_file, serve_as, until_served};
use crate::support::{ControlApi, Spawned, TempDir, serve_refused};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "5a1e8c3b-6f2d-4b7a-9e0c-1d2f3a4b5c6d";
const TOKEN_PATH: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F";

/// A VM with a system-assigned identity, served by `host`.
fn vm_on(host: &str) -> Value {
    json!({
        "host": host,
        "callers": ["127.0.0.1"],
        "instance": {"compute": {
            "name": "vm-keys",
            "resourceId": "/subscriptions/6b1f6c3e-2f0a-4d8e-9c4b-7a1e5d3f9b20/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-keys",
            "subscriptionId": "6b1f6c3e-2f0a-4d8e-9c4b-7a1e5d3f9b20",
            "resourceGroupName": "rg",
        }},
        "identities": {
            "tenantId": TENANT,
            "systemAssigned": {"clientId": CLIENT, "objectId": "6b2f9d4c-7a3e-4c8b-8f1d-2e3a4b5c6d7e"},
        },
    })
}

/// Verifies `token` as a relying party does, with nothing but `jwks`; returns its `kid`.
fn verify(jwks: &Value, token: &str) -> String {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let set: JwkSet = serde_json::from_value(jwks.clone()).expect("a JWK set");
    let kid = decode_header(token).unwrap().kid.expect("a kid");
    let jwk = set
        .find(&kid)
        .unwrap_or_else(|| panic!("{kid} is not in {jwks}"));
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["https://management.azure.com/"]);
    validation.set_issuer(&[format!("https://sts.windows.net/{TENANT}/")]);
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the token verifies with the other host's JWKS");
    kid
}

async fn jwks(control: &ControlApi) -> Value {
    let reply = control
        .call("GET", "/common/discovery/keys", None, &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

async fn token(host: &Spawned, bypass: bool) -> String {
    let path = if bypass {
        format!("{TOKEN_PATH}&bypass_cache=true")
    } else {
        TOKEN_PATH.to_string()
    };
    let reply = host.imds().get(&path).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["access_token"].as_str().unwrap().to_string()
}

/// Every key record under `prefix`keys/ as etcd holds it: (key, value), read with etcdctl.
fn raw_key_records(etcd: &etcd::TestEtcd, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &etcd.endpoint(),
            "get",
            "--prefix",
            "-w",
            "json",
        ])
        .arg(format!("{prefix}keys/"))
        .output()
        .expect("etcdctl (apt: etcd-client)");
    assert!(out.status.success(), "{out:?}");
    let listing: Value = serde_json::from_slice(&out.stdout).unwrap();
    listing["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| {
                    let field = |name: &str| STANDARD.decode(kv[name].as_str().unwrap()).unwrap();
                    (String::from_utf8(field("key")).unwrap(), field("value"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Opens a sealed record the documented way (AES-256-GCM: `v1`, 12-byte nonce, ciphertext,
/// 16-byte tag; `<collection>/<kid>` as associated data) with the test's own openssl calls.
fn unseal(kek: &[u8], aad: &str, sealed: &[u8]) -> Vec<u8> {
    assert_eq!(&sealed[..2], b"v1");
    let (nonce, rest) = sealed[2..].split_at(12);
    let (ciphertext, tag) = rest.split_at(rest.len() - 16);
    openssl::symm::decrypt_aead(
        openssl::symm::Cipher::aes_256_gcm(),
        kek,
        Some(nonce),
        aad.as_bytes(),
        ciphertext,
        tag,
    )
    .expect("the record opens with the fleet's KEK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_one_host_verifies_with_another_hosts_jwks_and_rotation_reaches_it() {
    let etcd = etcd::TestEtcd::start("it-keys");
    let dir = TempDir::new("fleet-keys");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let host_a = serve_as(&etcd, &data_a, "host-a");
    let host_b = serve_as(&etcd, &data_b, "host-b");
    let (control_a, control_b) = (host_a.control_api(&data_a), host_b.control_api(&data_b));
    let put = control_b
        .call("PUT", "/v1/vms/vm1", Some(&vm_on("host-a")), &[])
        .await;
    assert_eq!(put.status, 201, "{}", put.text());
    until_served(&host_a, Some("vm-keys")).await;

    let first = token(&host_a, false).await;
    let jwks_b = jwks(&control_b).await;
    let first_kid = verify(&jwks_b, &first);
    assert_eq!(
        kids(&jwks(&control_a).await),
        kids(&jwks_b),
        "one JWKS for the fleet"
    );

    let rotated = control_a
        .call("POST", "/v1/identity/keys/rotate", None, &[])
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let new_kid = rotated.json()["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, first_kid);
    // Host B learns of it through its watch of the key records: nothing to await but its JWKS.
    let started = Instant::now();
    let jwks_b = loop {
        let jwks_b = jwks(&control_b).await;
        if kids(&jwks_b).first() == Some(&new_kid) {
            break jwks_b;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "host B still publishes {jwks_b}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(kids(&jwks_b), [new_kid.clone(), first_kid.clone()]);
    assert_eq!(
        verify(&jwks_b, &first),
        first_kid,
        "the old key stays published"
    );
    let fresh = token(&host_a, true).await;
    assert_eq!(verify(&jwks_b, &fresh), new_kid);

    // What etcd holds: no private key in the clear, each sealed one opens with the KEK to the
    // private half of the key the JWKS publishes.
    let kek = std::fs::read(kek_file(dir.path())).unwrap();
    let records = raw_key_records(&etcd, "/fleet-test/");
    let names: Vec<&str> = records.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.contains(&"/fleet-test/keys/attested/ca"), "{names:?}");
    for (key, value) in &records {
        let text = String::from_utf8_lossy(value);
        assert!(
            !text.contains("PRIVATE KEY"),
            "{key} holds a PEM private key"
        );
        let record: Value = serde_json::from_slice(value).unwrap();
        let sealed = STANDARD
            .decode(record["sealedPrivateKey"].as_str().unwrap())
            .unwrap();
        let name = key.strip_prefix("/fleet-test/keys/").unwrap();
        let pem = unseal(&kek, name, &sealed);
        let private = openssl::pkey::PKey::private_key_from_pem(&pem).unwrap();
        let der = private.private_key_to_der().unwrap();
        assert!(
            !value.windows(64).any(|w| der.windows(64).any(|d| d == w)),
            "{key} holds DER of its private key"
        );
        if let Some(kid) = name.strip_prefix("identity/") {
            let jwk = jwks_b["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kid"] == kid)
                .unwrap_or_else(|| panic!("{kid} is stored but not published"));
            let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
            assert_eq!(private.rsa().unwrap().n().to_vec(), n, "{kid}");
        }
    }
    assert_eq!(
        records
            .iter()
            .filter(|(k, _)| k.contains("/keys/identity/"))
            .count(),
        2
    );

    // A host with another KEK cannot open the fleet's keys: it refuses to start, saying so.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let wrong = kek_file(&other);
    let (code, stderr) = serve_refused(
        &other.join("data"),
        &[
            "--store",
            &format!("etcd://{}", etcd.endpoint()),
            "--etcd-prefix",
            "/fleet-test/",
            "--kek-file",
            wrong.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    )
    .expect("refused at start");
    assert_ne!(code, 0);
    assert!(
        stderr.contains("does not open with this key-encryption key"),
        "{stderr}"
    );
}

/// Fleet mode without a KEK would have to write private keys in the clear: refused, with how
/// to make one. A world-readable KEK file is refused too.
#[test]
fn an_etcd_store_without_a_private_kek_file_is_refused() {
    let dir = TempDir::new("fleet-no-kek");
    let (code, stderr) = serve_refused(
        &dir.path().join("data"),
        &["--store", "etcd://127.0.0.1:1"],
        Duration::from_secs(20),
    )
    .expect("refused at start");
    assert_ne!(code, 0);
    assert!(stderr.contains("needs --kek-file"), "{stderr}");
    assert!(stderr.contains("head -c 32 /dev/urandom"), "{stderr}");

    let loose = kek_file(dir.path());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stderr) = serve_refused(
        &dir.path().join("data"),
        &[
            "--store",
            "etcd://127.0.0.1:1",
            "--kek-file",
            loose.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    )
    .expect("refused at start");
    assert_ne!(code, 0);
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

/// A VM in eastus served by `host` (its documents are signed by the eastus leaf).
fn attested_vm_on(host: &str) -> Value {
    json!({
        "host": host,
        "callers": ["127.0.0.1"],
        "instance": {"compute": {"name": "vm-attested", "location": "eastus"}},
    })
}

async fn attested_generation(control: &ControlApi) -> String {
    let reply = control.call("GET", "/v1/attested/keys", None, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["generation"].as_str().unwrap().to_string()
}

/// The certificate a document's envelope carries (its signer), as the openssl command line
/// prints it, DER.
fn signer_der(dir: &std::path::Path, document: &[u8]) -> Vec<u8> {
    std::fs::write(dir.join("signed.der"), document).unwrap();
    let printed = ok(&openssl(
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "signed.der",
            "-print_certs",
        ],
        dir,
    ));
    let certificate = openssl::x509::X509::from_pem(printed.as_bytes()).unwrap();
    certificate.to_der().unwrap()
}

/// The certificate of the attested leaf record `kid` as etcd holds it, DER.
fn stored_leaf_der(etcd: &etcd::TestEtcd, kid: &str) -> Vec<u8> {
    let name = format!("/fleet-test/keys/attested/{kid}");
    let records = raw_key_records(etcd, "/fleet-test/");
    let (_, value) = records
        .iter()
        .find(|(key, _)| *key == name)
        .unwrap_or_else(|| panic!("no {name} in etcd"));
    let record: Value = serde_json::from_slice(value).unwrap();
    let pem = record["certificatePem"].as_str().unwrap();
    openssl::x509::X509::from_pem(pem.as_bytes())
        .unwrap()
        .to_der()
        .unwrap()
}

/// Host B's attested document (`nonce`), checked: a 200 with §7.2's envelope that the stock
/// openssl verifies against `ca` (the fleet's one CA, `ca.pem` in `dir`). Its DER.
async fn verified_document(host: &Spawned, dir: &std::path::Path, nonce: &str) -> Vec<u8> {
    let path = format!("/metadata/attested/document?api-version=2025-04-07&nonce={nonce}");
    let document = signature_der(&host.imds().get(&path).await);
    let (verified, content) = cms_verify(dir, &document, "ca.pem", SystemTime::now());
    assert!(verified, "openssl cms -verify against the fleet's CA");
    let content: Value = serde_json::from_slice(&content).unwrap();
    assert_eq!(content["nonce"], nonce);
    document
}

/// Issue 11 item 5 for attested documents: an attested rotation through host A's control API
/// reaches host B through its watch of the key records, without a restart. B then reports
/// A's new generation and signs with that generation's leaf, the one etcd holds, under the
/// one CA; the document B signed before still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attested_rotation_on_one_host_reaches_another_hosts_documents() {
    let etcd = etcd::TestEtcd::start("it-attested-keys");
    let dir = TempDir::new("fleet-attested-keys");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let host_a = serve_as(&etcd, &data_a, "host-a");
    let host_b = serve_as(&etcd, &data_b, "host-b");
    let (control_a, control_b) = (host_a.control_api(&data_a), host_b.control_api(&data_b));
    let ca = control_a.call("GET", "/attested/ca.pem", None, &[]).await;
    assert_eq!(ca.status, 200);
    assert_eq!(
        control_b
            .call("GET", "/attested/ca.pem", None, &[])
            .await
            .text(),
        ca.text(),
        "one CA for the fleet"
    );
    std::fs::write(dir.path().join("ca.pem"), ca.text()).unwrap();
    // Written through A, which issues the eastus leaf as it writes the VM; B serves it.
    let put = control_a
        .call("PUT", "/v1/vms/vm1", Some(&attested_vm_on("host-b")), &[])
        .await;
    assert_eq!(put.status, 201, "{}", put.text());
    until_served(&host_b, Some("vm-attested")).await;

    let first = attested_generation(&control_a).await;
    assert_eq!(attested_generation(&control_b).await, first);
    let before = verified_document(&host_b, dir.path(), "before").await;
    let first_leaf = stored_leaf_der(&etcd, &format!("leaf-{first}-public-eastus"));
    assert_eq!(
        signer_der(dir.path(), &before),
        first_leaf,
        "B signs with the leaf A issued and stored, not one of its own"
    );

    let rotated = control_a
        .call("POST", "/v1/attested/keys/rotate", None, &[])
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let second = rotated.json()["generation"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(attested_generation(&control_a).await, second);
    // Nothing on B's side to await but its answer: it learns of it through the key watch.
    let started = Instant::now();
    loop {
        let generation = attested_generation(&control_b).await;
        if generation == second {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "host B still signs with generation {generation}, A rotated to {second}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        host_b.wait_for_log(
            &format!(
                "attested signing certificates changed in the store; reloaded generation={second}"
            ),
            1,
            Duration::from_secs(1),
        ),
        "B says it reloaded"
    );

    let after = verified_document(&host_b, dir.path(), "after").await;
    let signer = signer_der(dir.path(), &after);
    assert_ne!(signer, first_leaf, "a new leaf signs");
    assert_eq!(
        signer,
        stored_leaf_der(&etcd, &format!("leaf-{second}-public-eastus")),
        "the new generation's eastus leaf, as etcd holds it"
    );
    // The CA stayed: the document from before the rotation still verifies against it.
    assert!(cms_verify(dir.path(), &before, "ca.pem", SystemTime::now()).0);
    assert_eq!(attested_generation(&control_a).await, second);
    assert_eq!(attested_generation(&control_b).await, second);
}
