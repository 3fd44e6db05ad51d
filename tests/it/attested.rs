//! `GET /metadata/attested/document` (spec §7) against a whole server, checked the way relying
//! parties check it: the stock `openssl` command line verifies the CMS envelope against the CA
//! the control listener publishes (`cms -verify`), and without a CA as Microsoft documents it
//! (`smime -verify -noverify`); tampering fails both; the structure is read back field by
//! field from `openssl cms -cmsout -print` (§7.4), the signed JSON from what openssl returns
//! (§7.3). Expected values are the spec's: its §7.3 example is reproduced byte for byte.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use azimds::clock::Clock;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::{Reply, TempDir, TestConfig, TestServer, Vms, spawn_azimds};

/// 2024-03-01 06:00:00 UTC: the `createdOn` of spec §7.3's example.
fn spec_example_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_272_800)
}

/// The VM of spec §7.3's example, in eastus.
const VM: &str = r#"
vms:
  - id: attested-vm
    instance:
      compute:
        vmId: 02aab8a4-74ef-476e-8182-f6d2ba4166a6
        subscriptionId: aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e
        sku: 22_04-lts-gen2
        location: eastus
        azEnvironment: AzurePublicCloud
        licenseType: ""
"#;

/// §7.3's compact example at ≥ 2020-09-01, as the spec prints it.
const SPEC_EXAMPLE: &str = r#"{"licenseType":"","nonce":"20240301-060000","plan":{"name":"","product":"","publisher":""},"sku":"22_04-lts-gen2","subscriptionId":"aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e","timeStamp":{"createdOn":"03/01/24 06:00:00 -0000","expiresOn":"03/01/24 12:00:00 -0000"},"vmId":"02aab8a4-74ef-476e-8182-f6d2ba4166a6"}"#;

/// §1.4's api-version error.
const API_VERSION_ERROR: &str = r#"{"error":"Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds","newest-versions":["2025-04-07","2024-07-17","2024-03-15"]}"#;

const DOCUMENT: &str = "/metadata/attested/document";

async fn start() -> TestServer {
    TestServer::start(TestConfig {
        vms: Vms::Text(VM.to_string()),
        start: spec_example_time(),
        ..TestConfig::default()
    })
    .await
}

pub(crate) fn openssl(args: &[&str], dir: &Path) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is installed (scripts/install-test-deps.sh)")
}

pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn unix(at: SystemTime) -> String {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

/// The envelope of a 200 answer, after checking its bytes are §7.2's.
pub(crate) fn signature_der(reply: &Reply) -> Vec<u8> {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let text = reply.text();
    let signature = text
        .strip_prefix(r#"{"encoding":"pkcs7","signature":""#)
        .and_then(|rest| rest.strip_suffix(r#""}"#))
        .unwrap_or_else(|| panic!("not the §7.2 envelope: {text}"));
    assert!(
        signature
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
        "standard base64 on one line"
    );
    assert_eq!(signature.len() % 4, 0, "padded");
    STANDARD.decode(signature).unwrap()
}

/// The content openssl returns for `der` with Microsoft's `smime -verify -noverify`.
fn content_of(der: &[u8], dir: &Path) -> Vec<u8> {
    std::fs::write(dir.join("doc.der"), der).unwrap();
    let out = openssl(
        &[
            "smime",
            "-verify",
            "-noverify",
            "-inform",
            "DER",
            "-in",
            "doc.der",
        ],
        dir,
    );
    ok(&out);
    out.stdout
}

struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch {
            dir: TempDir::new(name),
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// `openssl cms -verify` of `der` against `ca` at time `at`: whether it verified, and the
/// content it wrote.
pub(crate) fn cms_verify(dir: &Path, der: &[u8], ca: &str, at: SystemTime) -> (bool, Vec<u8>) {
    std::fs::write(dir.join("doc.der"), der).unwrap();
    let _ = std::fs::remove_file(dir.join("content.out"));
    let out = openssl(
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "doc.der",
            "-CAfile",
            ca,
            "-attime",
            &unix(at),
            "-out",
            "content.out",
        ],
        dir,
    );
    let content = std::fs::read(dir.join("content.out")).unwrap_or_default();
    (out.status.success(), content)
}

#[tokio::test]
async fn the_spec_example_is_signed_and_verifies_with_stock_openssl() {
    let server = start().await;
    let reply = server
        .get(&format!("{DOCUMENT}?api-version=2025-04-07"))
        .await;
    let der = signature_der(&reply);
    let scratch = Scratch::new("attested-verify");
    // The trust anchor is public: the control listener serves it without the token.
    let ca = server
        .control
        .anonymous()
        .call("GET", "/attested/ca.pem", None, &[])
        .await;
    assert_eq!(ca.status, 200);
    assert_eq!(ca.header("content-type"), Some("application/x-pem-file"));
    assert!(ca.text().starts_with("-----BEGIN CERTIFICATE-----"));
    scratch.write("ca.pem", ca.text());

    let (verified, content) = cms_verify(scratch.path(), &der, "ca.pem", spec_example_time());
    assert!(verified, "openssl cms -verify against /attested/ca.pem");
    assert_eq!(String::from_utf8(content).unwrap(), SPEC_EXAMPLE);
    // Microsoft's documented recipe: the signature alone.
    assert_eq!(
        String::from_utf8(content_of(&der, scratch.path())).unwrap(),
        SPEC_EXAMPLE
    );
    // The same through the PEM detour of IMDSSample.sh (pkcs7 → PEM → smime -inform pem).
    ok(&openssl(
        &[
            "pkcs7", "-in", "doc.der", "-inform", "DER", "-out", "sign.pk7",
        ],
        scratch.path(),
    ));
    let pem = openssl(
        &[
            "smime",
            "-verify",
            "-in",
            "sign.pk7",
            "-inform",
            "pem",
            "-noverify",
        ],
        scratch.path(),
    );
    assert_eq!(ok(&pem), SPEC_EXAMPLE);
}

#[tokio::test]
async fn verification_fails_for_another_ca_a_flipped_byte_or_changed_content() {
    let server = start().await;
    let der = signature_der(
        &server
            .get(&format!(
                "{DOCUMENT}?api-version=2025-04-07&nonce=1234567890"
            ))
            .await,
    );
    let scratch = Scratch::new("attested-tamper");
    let ca = server
        .control
        .call("GET", "/attested/ca.pem", None, &[])
        .await;
    scratch.write("ca.pem", ca.text());
    let at = spec_example_time();
    // Another CA with our CA's very name: only the key tells them apart.
    ok(&openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
            "-days",
            "7300",
            "-subj",
            "/CN=azimds Attestation Root CA",
        ],
        scratch.path(),
    ));
    let smime_ok = |doc: &[u8]| {
        std::fs::write(scratch.path().join("t.der"), doc).unwrap();
        openssl(
            &[
                "smime",
                "-verify",
                "-noverify",
                "-inform",
                "DER",
                "-in",
                "t.der",
            ],
            scratch.path(),
        )
        .status
        .success()
    };

    assert!(cms_verify(scratch.path(), &der, "ca.pem", at).0);
    assert!(smime_ok(&der));
    assert!(
        !cms_verify(scratch.path(), &der, "other.pem", at).0,
        "another CA"
    );

    // The signature is the envelope's last field: flip its last byte.
    let mut flipped = der.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    assert!(
        !cms_verify(scratch.path(), &flipped, "ca.pem", at).0,
        "flipped"
    );
    assert!(!smime_ok(&flipped), "flipped, -noverify");

    // The content is attached: change one digit of the nonce in it.
    let at_nonce = der
        .windows(10)
        .position(|w| w == b"1234567890")
        .expect("the nonce is in the attached content");
    let mut changed = der.clone();
    changed[at_nonce] = b'9';
    assert!(
        !cms_verify(scratch.path(), &changed, "ca.pem", at).0,
        "changed"
    );
    assert!(!smime_ok(&changed), "changed, -noverify");

    // Expiry is the leaf's: long after it ends, the CA no longer vouches for it.
    let much_later = at + Duration::from_secs(2 * 365 * 86_400);
    assert!(!cms_verify(scratch.path(), &der, "ca.pem", much_later).0);
}

/// §7.4, read back by openssl: SignedData v1, the sha256WithRSAEncryption digest OID, attached
/// id-data, only the leaf, one SignerInfo v1 by issuerAndSerialNumber, no attributes.
#[tokio::test]
async fn the_envelope_is_azures_field_by_field() {
    let server = start().await;
    let der = signature_der(
        &server
            .get(&format!("{DOCUMENT}?api-version=2021-02-01"))
            .await,
    );
    let scratch = Scratch::new("attested-print");
    scratch.write("doc.der", &der);
    let text = ok(&openssl(
        &[
            "cms", "-cmsout", "-print", "-inform", "DER", "-in", "doc.der",
        ],
        scratch.path(),
    ));
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let after = |key: &str, from: usize| -> Vec<&str> {
        let at = lines[from..]
            .iter()
            .position(|l| *l == key)
            .unwrap_or_else(|| panic!("no {key:?} in {text}"))
            + from;
        lines[at + 1..(at + 4).min(lines.len())].to_vec()
    };
    let position = |key: &str| lines.iter().position(|l| *l == key).unwrap();
    let sha256_rsa = "algorithm: sha256WithRSAEncryption (1.2.840.113549.1.1.11)";
    assert_eq!(
        after("CMS_ContentInfo:", 0)[..3],
        [
            "contentType: pkcs7-signedData (1.2.840.113549.1.7.2)",
            "d.signedData:",
            "version: 1"
        ]
    );
    assert_eq!(
        after("digestAlgorithms:", 0)[..2],
        [sha256_rsa, "parameter: NULL"]
    );
    assert_eq!(
        after("encapContentInfo:", 0)[..2],
        [
            "eContentType: pkcs7-data (1.2.840.113549.1.7.1)",
            "eContent:"
        ]
    );
    assert_eq!(
        lines.iter().filter(|l| **l == "d.certificate:").count(),
        1,
        "only the leaf"
    );
    assert!(lines.contains(&"subject: CN=metadata.azure.com"), "{text}");
    assert_eq!(after("crls:", 0)[0], "<ABSENT>");
    let signers = position("signerInfos:");
    assert_eq!(
        lines[signers..]
            .iter()
            .filter(|l| **l == "d.issuerAndSerialNumber:")
            .count(),
        1,
        "one SignerInfo"
    );
    assert_eq!(
        after("signerInfos:", 0)[..3],
        [
            "version: 1",
            "d.issuerAndSerialNumber:",
            "issuer: CN=azimds Attestation Root CA"
        ]
    );
    assert_eq!(
        after("digestAlgorithm:", signers)[..2],
        [sha256_rsa, "parameter: NULL"]
    );
    assert_eq!(after("signedAttrs:", signers)[0], "<ABSENT>");
    assert_eq!(
        after("signatureAlgorithm:", signers)[..2],
        [
            "algorithm: rsaEncryption (1.2.840.113549.1.1.1)",
            "parameter: NULL"
        ]
    );
    assert_eq!(after("unsignedAttrs:", signers)[0], "<ABSENT>");

    // issuerAndSerialNumber names the embedded leaf: its serial as openssl prints it.
    ok(&openssl(
        &[
            "pkcs7",
            "-in",
            "doc.der",
            "-inform",
            "DER",
            "-print_certs",
            "-out",
            "signer.pem",
        ],
        scratch.path(),
    ));
    let serial = ok(&openssl(
        &["x509", "-in", "signer.pem", "-noout", "-serial"],
        scratch.path(),
    ));
    let serial = serial
        .trim()
        .strip_prefix("serial=")
        .unwrap()
        .to_ascii_lowercase();
    let printed = after("d.issuerAndSerialNumber:", signers)[1]
        .strip_prefix("serialNumber: ")
        .unwrap()
        .to_string();
    // `cms -print` shows the serial in decimal, `x509 -serial` in hex.
    assert_eq!(
        decimal_to_hex(&printed),
        serial.trim_start_matches('0'),
        "{printed}"
    );
    // The leaf is named like Azure's public-cloud leaf in the VM's region (§7.5).
    let names = ok(&openssl(
        &[
            "x509",
            "-in",
            "signer.pem",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName",
        ],
        scratch.path(),
    ));
    assert!(names.contains("subject=CN = metadata.azure.com"), "{names}");
    assert!(
        names.contains("DNS:eastus.metadata.azure.com, DNS:metadata.azure.com"),
        "{names}"
    );
}

/// A non-negative decimal number of any length in lower-case hex, no leading zeros.
fn decimal_to_hex(decimal: &str) -> String {
    // Little-endian base-2^16 limbs: multiply by 10 and add each digit.
    let mut limbs: Vec<u32> = vec![0];
    for digit in decimal.bytes() {
        assert!(digit.is_ascii_digit(), "{decimal:?}");
        let mut carry = u32::from(digit - b'0');
        for limb in &mut limbs {
            let value = *limb * 10 + carry;
            *limb = value & 0xffff;
            carry = value >> 16;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    let hex: String = limbs.iter().rev().map(|l| format!("{l:04x}")).collect();
    let hex = hex.trim_start_matches('0');
    if hex.is_empty() {
        "0".into()
    } else {
        hex.into()
    }
}

/// §7.3's table: nonce, plan, timeStamp and vmId since 2018-10-01, subscriptionId since
/// 2019-04-30, sku since 2019-11-01, licenseType since 2020-09-01; keys alphabetical.
#[tokio::test]
async fn the_signed_json_has_each_versions_fields() {
    let server = start().await;
    let scratch = Scratch::new("attested-versions");
    let versions: Value = server.get("/metadata/versions").await.json();
    let mut served = 0;
    for version in versions["apiVersions"].as_array().unwrap() {
        let version = version.as_str().unwrap();
        let reply = server
            .get(&format!("{DOCUMENT}?api-version={version}&nonce=abc"))
            .await;
        if version < "2018-10-01" {
            assert_eq!(
                (reply.status, reply.text()),
                (400, API_VERSION_ERROR),
                "{version}"
            );
            continue;
        }
        served += 1;
        let content = content_of(&signature_der(&reply), scratch.path());
        let document: Value = serde_json::from_slice(&content).unwrap();
        let keys: Vec<&str> = document
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec!["nonce", "plan", "timeStamp", "vmId"];
        if version >= "2019-04-30" {
            expected.push("subscriptionId");
        }
        if version >= "2019-11-01" {
            expected.push("sku");
        }
        if version >= "2020-09-01" {
            expected.push("licenseType");
        }
        expected.sort();
        assert_eq!(keys, expected, "{version}");
        assert_eq!(document["nonce"], "abc");
        assert_eq!(
            serde_json::to_vec(&document).unwrap(),
            content,
            "{version}: compact"
        );
        // The attested limit is 5 a second per VM: let the clock move on.
        server.clock.advance(Duration::from_millis(250));
    }
    assert_eq!(served, 28, "2018-10-01 and the 27 after it");
    // The oldest shape, byte for byte (the docs' 2018 sample's members).
    server.clock.advance(Duration::from_secs(1));
    let oldest = content_of(
        &signature_der(
            &server
                .get(&format!(
                    "{DOCUMENT}?api-version=2018-10-01&nonce=1234566766"
                ))
                .await,
        ),
        scratch.path(),
    );
    let created = server.clock.now();
    let expected = format!(
        r#"{{"nonce":"1234566766","plan":{{"name":"","product":"","publisher":""}},"timeStamp":{{"createdOn":"{}","expiresOn":"{}"}},"vmId":"02aab8a4-74ef-476e-8182-f6d2ba4166a6"}}"#,
        azure_time(created),
        azure_time(created + Duration::from_secs(6 * 3600))
    );
    assert_eq!(String::from_utf8(oldest).unwrap(), expected);
}

/// `MM/dd/yy HH:mm:ss -0000` for the seconds past 2024-03-01 06:00:00 the tests use.
fn azure_time(at: SystemTime) -> String {
    let seconds = at.duration_since(spec_example_time()).unwrap().as_secs();
    assert!(seconds < 18 * 3600, "same day in these tests");
    let (h, m, s) = (6 + seconds / 3600, seconds / 60 % 60, seconds % 60);
    format!("03/01/24 {h:02}:{m:02}:{s:02} -0000")
}

/// §7.1 (the Swagger's rule): 1 to 32 letters and digits; without one, `yyyyMMdd-HHmmss` of
/// `createdOn` (§7.3). Anything else is one 400.
#[tokio::test]
async fn nonce_rules() {
    let server = start().await;
    let scratch = Scratch::new("attested-nonce");
    let bad_nonce =
        r#"{"error":"Bad request. The nonce must be 1 to 32 ASCII letters and digits"}"#;
    let nonce_of = |reply: &Reply| -> String {
        let content = content_of(&signature_der(reply), scratch.path());
        serde_json::from_slice::<Value>(&content).unwrap()["nonce"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let url = |query: &str| format!("{DOCUMENT}?api-version=2021-02-01{query}");
    server.clock.advance(Duration::from_secs(3661));
    assert_eq!(nonce_of(&server.get(&url("")).await), "20240301-070101");
    let longest = "aZ09".repeat(8);
    assert_eq!(
        nonce_of(&server.get(&url(&format!("&nonce={longest}"))).await),
        longest
    );
    // Percent-encoded letters are letters.
    assert_eq!(nonce_of(&server.get(&url("&nonce=%41b1")).await), "Ab1");
    server.clock.advance(Duration::from_secs(1));
    for query in [
        "&nonce=",
        &format!("&nonce={longest}x"),
        "&nonce=12-34",
        "&nonce=12%2034",
        "&nonce=%C3%A9",
        "&nonce=a+b",
    ] {
        let reply = server.get(&url(query)).await;
        assert_eq!((reply.status, reply.text()), (400, bad_nonce), "{query}");
    }
    let twice = server.get(&url("&nonce=1&nonce=2")).await;
    assert_eq!(
        (twice.status, twice.text()),
        (
            400,
            r#"{"error":"Bad request. Duplicate query parameters are not allowed"}"#
        )
    );
}

/// §2.2 and §1.10: the version gate, format, method, sub-paths, headers, the limit.
#[tokio::test]
async fn request_rules() {
    let server = start().await;
    for query in [
        "api-version=2018-04-02",
        "api-version=2017-03-01",
        "api-version=2099-01-01",
        "",
    ] {
        let reply = server.get(&format!("{DOCUMENT}?{query}")).await;
        assert_eq!(
            (reply.status, reply.text()),
            (400, API_VERSION_ERROR),
            "{query}"
        );
    }
    // AKS secure TLS bootstrap sends format=json (§1.7); there is no text form.
    let json = server
        .get(&format!(
            "{DOCUMENT}?api-version=2023-07-01&format=json&nonce=abc"
        ))
        .await;
    assert_eq!(json.status, 200);
    let text = server
        .get(&format!("{DOCUMENT}?api-version=2023-07-01&format=text"))
        .await;
    assert_eq!(
        (text.status, text.text()),
        (
            400,
            r#"{"error":"Bad request. This endpoint supports only format=json"}"#
        )
    );
    let headerless = server
        .request("GET", &format!("{DOCUMENT}?api-version=2023-07-01"), &[])
        .await;
    assert_eq!(
        (headerless.status, headerless.text()),
        (
            400,
            r#"{"error":"Bad request. Required metadata header not specified"}"#
        )
    );
    // Real clients send `True` (IMDSSample.py, §1.3).
    let capital = server
        .request(
            "GET",
            &format!("{DOCUMENT}?api-version=2023-07-01"),
            &[("Metadata", "True")],
        )
        .await;
    assert_eq!(capital.status, 200);
    let post = server
        .request(
            "POST",
            &format!("{DOCUMENT}?api-version=2023-07-01"),
            &[("Metadata", "true")],
        )
        .await;
    assert_eq!((post.status, post.header("allow")), (405, Some("GET")));
    for path in [
        "/metadata/attested/document/x",
        "/metadata/attested",
        "/metadata/attested/",
    ] {
        let reply = server.get(&format!("{path}?api-version=2023-07-01")).await;
        assert_eq!(
            (reply.status, reply.text()),
            (404, r#"{"error":"Not found"}"#),
            "{path}"
        );
    }
    // 5 documents a second per VM (state::ATTESTED_LIMITS); the clock is paused.
    server.clock.advance(Duration::from_secs(1));
    let url = format!("{DOCUMENT}?api-version=2023-07-01");
    for _ in 0..5 {
        assert_eq!(server.get(&url).await.status, 200);
    }
    let throttled = server.get(&url).await;
    assert_eq!(
        (throttled.status, throttled.text()),
        (429, r#"{"error":"Too many requests"}"#)
    );
    assert_eq!(
        server
            .get("/metadata/instance?api-version=2023-07-01")
            .await
            .status,
        200
    );
    server.clock.advance(Duration::from_millis(200));
    assert_eq!(server.get(&url).await.status, 200, "refilled at 5/s");
}

/// A region's leaf is issued when the VM is written, not on its first request; rotation
/// switches to new leaves, and documents signed before still verify until they expire.
#[tokio::test]
async fn leaves_are_prepared_per_region_and_rotate() {
    let server = start().await;
    let scratch = Scratch::new("attested-rotate");
    let ca = server
        .control
        .call("GET", "/attested/ca.pem", None, &[])
        .await;
    scratch.write("ca.pem", ca.text());
    let keys_dir = server.shared().attested().generation();
    let patch = json!({"instance": {"compute": {"location": "westus2"}}});
    let patched = server
        .control
        .call("PATCH", "/v1/vms/attested-vm", Some(&patch), &[])
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    let leaf_files = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("leaf-"))
            .collect();
        names.sort();
        names
    };
    let attested_dir = server.data_dir().join("keys/attested");
    assert!(
        leaf_files(&attested_dir).contains(&format!("leaf-{keys_dir}-public-westus2.json")),
        "prepared on write: {:?}",
        leaf_files(&attested_dir)
    );
    let url = format!("{DOCUMENT}?api-version=2025-04-07&nonce=before");
    let before = signature_der(&server.get(&url).await);
    let signer_names = |der: &[u8], name: &str| {
        scratch.write(&format!("{name}.der"), der);
        ok(&openssl(
            &[
                "pkcs7",
                "-in",
                &format!("{name}.der"),
                "-inform",
                "DER",
                "-print_certs",
                "-out",
                &format!("{name}.pem"),
            ],
            scratch.path(),
        ));
        ok(&openssl(
            &[
                "x509",
                "-in",
                &format!("{name}.pem"),
                "-noout",
                "-fingerprint",
                "-ext",
                "subjectAltName",
            ],
            scratch.path(),
        ))
    };
    let before_leaf = signer_names(&before, "before");
    assert!(
        before_leaf.contains("DNS:westus2.metadata.azure.com"),
        "{before_leaf}"
    );

    let rotated = server
        .control
        .call("POST", "/v1/attested/keys/rotate", None, &[])
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let generation = rotated.json()["generation"].as_str().unwrap().to_string();
    assert_ne!(generation, keys_dir);
    server.clock.advance(Duration::from_secs(1));
    let after = signature_der(
        &server
            .get(&format!("{DOCUMENT}?api-version=2025-04-07"))
            .await,
    );
    let after_leaf = signer_names(&after, "after");
    assert_ne!(before_leaf, after_leaf, "a new leaf signs");
    assert!(after_leaf.contains("DNS:westus2.metadata.azure.com"));
    // The CA stays, so documents from both sides of the rotation verify against it.
    let now = server.clock.now();
    assert!(cms_verify(scratch.path(), &before, "ca.pem", now).0);
    assert!(cms_verify(scratch.path(), &after, "ca.pem", now).0);
    assert_eq!(
        server
            .control
            .call("GET", "/attested/ca.pem", None, &[])
            .await
            .text(),
        ca.text()
    );
    // Retired leaves are kept while their documents live (6 h + 1 h), then pruned.
    assert!(
        leaf_files(&attested_dir)
            .iter()
            .any(|f| f.contains(&keys_dir))
    );
    server.clock.advance(Duration::from_secs(7 * 3600 + 1));
    let again = server
        .control
        .call("POST", "/v1/attested/keys/rotate", None, &[])
        .await;
    assert_eq!(again.status, 200);
    let left = leaf_files(&attested_dir);
    assert!(left.iter().all(|f| !f.contains(&keys_dir)), "{left:?}");
    assert!(left.iter().any(|f| f.contains(&generation)), "{left:?}");
}

/// The issuer download generated leaves name (their AIA "CA Issuers" URL, §7.5), on the guest
/// listener without a Metadata header, and on the control listener; both the same DER.
#[tokio::test]
async fn the_issuer_is_downloadable_where_the_leaf_says() {
    let server = start().await;
    let scratch = Scratch::new("attested-aia");
    let der = signature_der(
        &server
            .get(&format!("{DOCUMENT}?api-version=2021-02-01"))
            .await,
    );
    scratch.write("doc.der", &der);
    ok(&openssl(
        &[
            "pkcs7",
            "-in",
            "doc.der",
            "-inform",
            "DER",
            "-print_certs",
            "-out",
            "signer.pem",
        ],
        scratch.path(),
    ));
    let info = ok(&openssl(
        &["x509", "-in", "signer.pem", "-text", "-noout"],
        scratch.path(),
    ));
    let line = info
        .lines()
        .find(|l| l.contains("CA Issuers"))
        .unwrap_or_else(|| panic!("no CA Issuers in {info}"));
    let url = line.split_once("URI:").unwrap().1;
    assert_eq!(url, "http://169.254.169.254/metadata/attested/ca.cer?");
    let path = url.strip_prefix("http://169.254.169.254").unwrap();
    // As IMDSSample.py requests it: the line's newline percent-encoded onto the URL.
    for target in [path.to_string(), format!("{path}%0A")] {
        let guest = server.request("GET", &target, &[]).await;
        assert_eq!(guest.status, 200, "{target}");
        assert_eq!(guest.header("content-type"), Some("application/pkix-cert"));
        let control = server
            .control
            .anonymous()
            .call("GET", "/attested/ca.cer", None, &[])
            .await;
        assert_eq!(control.status, 200);
        assert_eq!(guest.body, control.body);
        scratch.write("intermediate.cer", &guest.body);
    }
    ok(&openssl(
        &[
            "x509",
            "-inform",
            "der",
            "-in",
            "intermediate.cer",
            "-out",
            "intermediate.pem",
        ],
        scratch.path(),
    ));
    let verified = ok(&openssl(
        &[
            "verify",
            "-attime",
            &unix(spec_example_time()),
            "-CAfile",
            "intermediate.pem",
            "signer.pem",
        ],
        scratch.path(),
    ));
    assert_eq!(verified, "signer.pem: OK\n");
}

/// The CA and leaves are made on the first start, owner-only, and reused by the next.
#[test]
fn certificates_survive_a_restart_owner_only() {
    let dir = TempDir::new("attested-restart");
    let data = dir.path().join("data");
    let ca_of = |server: &crate::support::Spawned| {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://{}/attested/ca.pem", server.control)])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let first = spawn_azimds(&data, &[]);
    let ca = ca_of(&first);
    drop(first);
    let keys = data.join("keys/attested");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for entry in std::fs::read_dir(&keys).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let second = spawn_azimds(&data, &[]);
    assert_eq!(ca_of(&second), ca);
}

/// Operator-supplied certificates (`--attested-cert/-key/-chain`): documents carry the
/// operator's leaf, `/attested/ca.pem` is their chain, rotation is theirs; a key that does not
/// match the leaf stops the start with a message naming it.
#[test]
fn operator_certificates_sign_and_are_not_rotated_here() {
    let dir = TempDir::new("attested-operator");
    let at = dir.path();
    // A CA and a leaf named like Azure's, made with the openssl command line.
    ok(&openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=Operator Test Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        at,
    ));
    ok(&openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=metadata.azure.com",
        ],
        at,
    ));
    std::fs::write(
        at.join("ext.cnf"),
        "subjectAltName=DNS:eastus.metadata.azure.com,DNS:metadata.azure.com\n",
    )
    .unwrap();
    ok(&openssl(
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "7",
            "-extfile",
            "ext.cnf",
            "-out",
            "leaf.pem",
        ],
        at,
    ));
    let path = |name: &str| at.join(name).to_str().unwrap().to_string();
    let data = at.join("data");
    let server = spawn_azimds(
        &data,
        &[
            "--attested-cert",
            &path("leaf.pem"),
            "--attested-key",
            &path("leaf.key"),
            "--attested-chain",
            &path("ca.pem"),
        ],
    );
    let reply = tokio::runtime::Runtime::new().unwrap().block_on(
        server
            .imds()
            .get(&format!("{DOCUMENT}?api-version=2025-04-07&nonce=operator")),
    );
    let der = signature_der(&reply);
    let (verified, content) = cms_verify(at, &der, "ca.pem", SystemTime::now());
    assert!(verified, "verifies against the operator's own CA");
    assert!(
        String::from_utf8(content)
            .unwrap()
            .contains(r#""nonce":"operator""#)
    );
    std::fs::write(at.join("doc.der"), &der).unwrap();
    let embedded = ok(&openssl(
        &["pkcs7", "-in", "doc.der", "-inform", "DER", "-print_certs"],
        at,
    ));
    let leaf = std::fs::read_to_string(at.join("leaf.pem")).unwrap();
    assert!(
        embedded.contains(leaf.trim()),
        "the operator's leaf is the one embedded"
    );
    let curl = |url: &str, method: &str| {
        let out = Command::new("curl")
            .args(["-s", "-X", method, url])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let ca = curl(&format!("http://{}/attested/ca.pem", server.control), "GET");
    assert_eq!(ca, std::fs::read_to_string(at.join("ca.pem")).unwrap());
    // `azimds keys rotate` rotates the token key and says why the attested one is not.
    let rotate = Command::new(env!("CARGO_BIN_EXE_azimds"))
        .args(["keys", "rotate", "--control", &server.control, "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    let printed = String::from_utf8(rotate.stdout).unwrap();
    assert!(
        printed.starts_with("token signing key rotated; new kid "),
        "{printed}"
    );
    assert!(
        printed.contains("attested signing certificates not rotated: the attested signing certificate is operator-supplied; replace its files to rotate it"),
        "{printed}"
    );
    let only = Command::new(env!("CARGO_BIN_EXE_azimds"))
        .args([
            "keys",
            "rotate",
            "--only",
            "attested",
            "--control",
            &server.control,
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(only.status.code(), Some(4), "409 is a conflict");
    drop(server);

    // The CA's key is not the leaf's: refused at start, naming the problem.
    let wrong = Command::new(env!("CARGO_BIN_EXE_azimds"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(&data)
        .args([
            "--attested-cert",
            &path("leaf.pem"),
            "--attested-key",
            &path("ca.key"),
            "--attested-chain",
            &path("ca.pem"),
        ])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("operator-supplied attested certificate: the private key does not belong to the leaf certificate"),
        "{stderr}"
    );
    // The three files go together.
    let partial = Command::new(env!("CARGO_BIN_EXE_azimds"))
        .args(["serve", "--attested-cert", &path("leaf.pem")])
        .output()
        .unwrap();
    assert_eq!(partial.status.code(), Some(2), "a usage error");
}

/// `azimds keys rotate` without `--only` rotates both kinds of keys (generated CA).
#[test]
fn keys_rotate_rotates_tokens_and_attested_leaves() {
    let dir = TempDir::new("attested-cli-rotate");
    let data = dir.path().join("data");
    let server = spawn_azimds(&data, &[]);
    let rotate = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_azimds"))
            .args([
                "keys",
                "rotate",
                "--json",
                "--control",
                &server.control,
                "--data",
            ])
            .arg(&data)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let both = rotate(&[]);
    assert!(both["tokens"]["kid"].is_string(), "{both}");
    assert!(both["attested"]["generation"].is_string(), "{both}");
    let attested = rotate(&["--only", "attested"]);
    assert!(attested.get("tokens").is_none());
    assert_ne!(
        attested["attested"]["generation"],
        both["attested"]["generation"]
    );
    let tokens = rotate(&["--only", "tokens"]);
    assert!(tokens.get("attested").is_none());
}
