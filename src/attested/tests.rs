//! The envelope checked with the openssl command line, the way clients check it (spec §7.6):
//! `openssl cms -verify` against our CA, Microsoft's `openssl smime -verify -noverify` recipe,
//! and every §7.4 field read back from `openssl cms -cmsout -print`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::attested::{AttestedSigner, AttestedVm, Cloud, Nonce};
use crate::metadata::version::ApiVersion;

const VM: AttestedVm<'static> = AttestedVm {
    vm_id: "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
    subscription_id: "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e",
    sku: "22_04-lts-gen2",
    plan_name: "",
    plan_product: "",
    plan_publisher: "",
    license_type: "",
    location: "eastus",
    az_environment: "AzurePublicCloud",
};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("azimds-attested-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(args: &[&str], dir: &Path) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is installed")
}

/// A document at the newest version with a fixed nonce: (signer, DER, signed JSON).
fn document() -> (AttestedSigner, Vec<u8>, Vec<u8>) {
    let now = SystemTime::now();
    let signer = AttestedSigner::in_memory(now).unwrap();
    let nonce = Nonce::parse("1234567890").unwrap();
    let body = signer
        .document(&VM, ApiVersion::NEWEST, Some(&nonce), now)
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["encoding"], "pkcs7");
    let der = STANDARD
        .decode(body["signature"].as_str().unwrap())
        .unwrap();
    let content = crate::attested::signed_content(&VM, ApiVersion::NEWEST, Some(&nonce), now);
    (signer, der, content)
}

#[test]
fn cms_verify_against_our_ca_returns_the_exact_content() {
    let (signer, der, content) = document();
    let dir = Scratch::new("cms-verify");
    dir.write("ca.pem", signer.ca_pem().as_bytes());
    dir.write("doc.der", &der);
    let out = openssl(
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-CAfile",
            "ca.pem",
            "-in",
            "doc.der",
            "-out",
            "content.json",
        ],
        &dir.0,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(dir.path("content.json")).unwrap(), content);
    let json = String::from_utf8(content).unwrap();
    assert!(
        json.starts_with(r#"{"licenseType":"","nonce":"1234567890","plan":"#),
        "{json}"
    );
}

#[test]
fn smime_noverify_as_in_microsofts_samples() {
    // IMDSSample.sh: base64 -d, `openssl pkcs7 ... -out sign.pk7`, `-print_certs`, then
    // `openssl smime -verify -in sign.pk7 -inform pem -noverify`; and the DER form directly.
    let (_, der, content) = document();
    let dir = Scratch::new("smime");
    dir.write("decodedsignature", &der);
    let steps: [&[&str]; 3] = [
        &[
            "pkcs7",
            "-in",
            "decodedsignature",
            "-inform",
            "DER",
            "-out",
            "sign.pk7",
        ],
        &[
            "pkcs7",
            "-in",
            "decodedsignature",
            "-inform",
            "DER",
            "-print_certs",
            "-out",
            "signer.pem",
        ],
        &[
            "smime",
            "-verify",
            "-in",
            "sign.pk7",
            "-inform",
            "pem",
            "-noverify",
        ],
    ];
    let mut last = None;
    for step in steps {
        let out = openssl(step, &dir.0);
        assert!(
            out.status.success(),
            "{step:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        last = Some(out);
    }
    assert_eq!(last.unwrap().stdout, content);
    let out = openssl(
        &[
            "smime",
            "-verify",
            "-noverify",
            "-inform",
            "DER",
            "-in",
            "decodedsignature",
        ],
        &dir.0,
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, content);
    // The certificate the sample prints: subject and regional SAN like Azure's (§7.5).
    let out = openssl(
        &[
            "x509",
            "-in",
            "signer.pem",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName",
        ],
        &dir.0,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("subject=CN = metadata.azure.com"), "{text}");
    assert!(
        text.contains("DNS:eastus.metadata.azure.com, DNS:metadata.azure.com"),
        "{text}"
    );
}

#[test]
fn verification_fails_for_a_wrong_ca_a_flipped_signature_or_changed_content() {
    let (signer, der, _) = document();
    let other = AttestedSigner::in_memory(SystemTime::now()).unwrap();
    let dir = Scratch::new("tamper");
    dir.write("ca.pem", signer.ca_pem().as_bytes());
    dir.write("other-ca.pem", other.ca_pem().as_bytes());
    let verify = |doc: &[u8], ca: &str| {
        dir.write("doc.der", doc);
        let cms = openssl(
            &[
                "cms", "-verify", "-binary", "-inform", "DER", "-CAfile", ca, "-in", "doc.der",
            ],
            &dir.0,
        );
        let smime = openssl(
            &[
                "smime",
                "-verify",
                "-noverify",
                "-inform",
                "DER",
                "-in",
                "doc.der",
            ],
            &dir.0,
        );
        (cms.status.success(), smime.status.success())
    };
    assert_eq!(
        verify(&der, "ca.pem"),
        (true, true),
        "the untouched document"
    );
    assert!(!verify(&der, "other-ca.pem").0, "another CA");

    let mut flipped = der.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    assert_eq!(
        verify(&flipped, "ca.pem"),
        (false, false),
        "a flipped signature byte"
    );

    let mut changed = der.clone();
    let at = changed
        .windows(10)
        .position(|w| w == b"1234567890")
        .expect("the nonce is in the content");
    changed[at] = b'9';
    assert_eq!(
        verify(&changed, "ca.pem"),
        (false, false),
        "changed content"
    );
}

#[test]
fn cmsout_print_shows_every_spec_field() {
    let (_, der, _) = document();
    let dir = Scratch::new("print");
    dir.write("doc.der", &der);
    let out = openssl(
        &[
            "cms", "-cmsout", "-print", "-inform", "DER", "-in", "doc.der",
        ],
        &dir.0,
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // Three parts: SignedData up to the certificates, the certificates, the signer infos.
    let section = |from: &str, to: Option<&str>| -> Vec<String> {
        let start = text
            .find(from)
            .unwrap_or_else(|| panic!("no {from:?} in {text}"));
        let end = to.map_or(text.len(), |to| start + text[start..].find(to).unwrap());
        text[start..end]
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    };
    let head = section("CMS_ContentInfo:", Some("certificates:"));
    let certificates = section("certificates:", Some("crls:"));
    let signer = section("signerInfos:", None);
    // `key:` followed by exactly `values` on the next lines.
    let followed_by = |lines: &[String], key: &str, values: &[&str]| {
        let at = lines
            .iter()
            .position(|l| l == key)
            .unwrap_or_else(|| panic!("no {key:?} in {text}"));
        assert_eq!(
            &lines[at + 1..at + 1 + values.len()],
            values,
            "after {key:?} in {text}"
        );
    };
    let sha256_with_rsa = [
        "algorithm: sha256WithRSAEncryption (1.2.840.113549.1.1.11)",
        "parameter: NULL",
    ];

    followed_by(
        &head,
        "CMS_ContentInfo:",
        &[
            "contentType: pkcs7-signedData (1.2.840.113549.1.7.2)",
            "d.signedData:",
            "version: 1",
        ],
    );
    followed_by(&head, "digestAlgorithms:", &sha256_with_rsa);
    followed_by(
        &head,
        "encapContentInfo:",
        &[
            "eContentType: pkcs7-data (1.2.840.113549.1.7.1)",
            "eContent:",
        ],
    );
    assert!(
        text.contains(r#"{"licenseType":"#),
        "the content is attached: {text}"
    );

    assert_eq!(
        certificates
            .iter()
            .filter(|l| *l == "d.certificate:")
            .count(),
        1,
        "{text}"
    );
    assert!(
        certificates
            .iter()
            .any(|l| l == "subject: CN=metadata.azure.com"),
        "{text}"
    );

    followed_by(
        &signer,
        "signerInfos:",
        &[
            "version: 1",
            "d.issuerAndSerialNumber:",
            "issuer: CN=azimds Attestation Root CA",
        ],
    );
    followed_by(&signer, "digestAlgorithm:", &sha256_with_rsa);
    followed_by(&signer, "signedAttrs:", &["<ABSENT>"]);
    followed_by(
        &signer,
        "signatureAlgorithm:",
        &[
            "algorithm: rsaEncryption (1.2.840.113549.1.1.1)",
            "parameter: NULL",
        ],
    );
    followed_by(&signer, "unsignedAttrs:", &["<ABSENT>"]);
    assert_eq!(
        signer
            .iter()
            .filter(|l| *l == "d.issuerAndSerialNumber:")
            .count(),
        1,
        "one signer"
    );
}

#[test]
fn imds_sample_py_finds_and_uses_the_ca_issuers_url() {
    // IMDSSample.py's certificate steps: print the signer, find "CA Issuers" in `x509 -text`,
    // download the issuer (DER), convert it, verify the signer with it.
    let url = "http://169.254.169.254/attested/ca.crt?";
    let now = SystemTime::now();
    let store = std::sync::Arc::new(crate::identity::keys::MemoryKeyStore::default());
    let signer = AttestedSigner::open(store, Some(url.into()), now).unwrap();
    let der = signer.sign(Cloud::Public, "eastus", b"{}", now).unwrap();
    let dir = Scratch::new("aia");
    dir.write("decoded_signature", &der);
    let out = openssl(
        &[
            "pkcs7",
            "-in",
            "decoded_signature",
            "-inform",
            "DER",
            "-print_certs",
            "-out",
            "signer.pem",
        ],
        &dir.0,
    );
    assert!(out.status.success());
    let out = openssl(&["x509", "-in", "signer.pem", "-text", "-noout"], &dir.0);
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("CA Issuers"))
        .expect("a CA Issuers line");
    assert_eq!(line.split_once("URI:").unwrap().1, url);
    dir.write("intermediate.cer", &signer.issuer_der());
    let out = openssl(
        &[
            "x509",
            "-inform",
            "der",
            "-in",
            "intermediate.cer",
            "-out",
            "intermediate.pem",
        ],
        &dir.0,
    );
    assert!(out.status.success());
    let out = openssl(
        &["verify", "-CAfile", "intermediate.pem", "signer.pem"],
        &dir.0,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "signer.pem: OK\n");
}

#[test]
fn government_vm_is_signed_by_a_government_leaf() {
    let now = SystemTime::now();
    let signer = AttestedSigner::in_memory(now).unwrap();
    let vm = AttestedVm {
        location: "usgovvirginia",
        az_environment: "AzureUSGovernmentCloud",
        ..VM
    };
    let body = signer.document(&vm, ApiVersion::NEWEST, None, now).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let der = STANDARD
        .decode(body["signature"].as_str().unwrap())
        .unwrap();
    let pkcs7 = openssl::pkcs7::Pkcs7::from_der(&der).unwrap();
    let certs = pkcs7.signed().unwrap().certificates().unwrap();
    assert_eq!(certs.len(), 1);
    let pem = String::from_utf8(certs.get(0).unwrap().to_pem().unwrap()).unwrap();
    assert_eq!(
        pem,
        signer
            .leaf_pem(Cloud::UsGovernment, "usgovvirginia", now)
            .unwrap()
    );
    let leaf = certs.get(0).unwrap();
    let cn = leaf
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .unwrap()
        .data()
        .to_string()
        .unwrap();
    assert_eq!(cn, "metadata.azure.us");
}

#[test]
fn response_body_is_compact_with_padded_base64() {
    let body = crate::attested::response_body(&[0xff, 0xfe]);
    assert_eq!(body, br#"{"encoding":"pkcs7","signature":"//4="}"#);
}
