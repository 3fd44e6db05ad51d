//! Certificates for attested documents (spec §7.5): a generated root CA, and leaf signing
//! certificates named like Azure's, one per (cloud, region).
//!
//! Why a leaf per (cloud, region): the real leaf is `CN=metadata.azure.com` with SANs
//! `<region>.metadata.azure.com` and `metadata.azure.com`, and clients match the *subject CN*
//! (coder/coder's `^(.*\.)?metadata\.(azure\.(com|us|cn)|microsoftazure\.de)$` on
//! `Subject.CommonName`; stackrox the same) or print the SANs. One leaf listing every region
//! would change whenever a VM in a new region appears. All leaves of one generation share one
//! RSA key, so a new region costs one CA signature, not a key generation, and a document
//! still costs one RSA operation.
//!
//! Leaves carry no extendedKeyUsage: `openssl cms -verify -CAfile` checks the S/MIME signing
//! purpose and refuses a leaf restricted to TLS, while a leaf without the extension is valid for
//! every purpose (Go's `x509.Verify` and .NET accept it too).

use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Extension, X509Name, X509NameBuilder, X509Ref};

use crate::attested::der::{self, CONTEXT_6_PRIMITIVE, SEQUENCE};

/// Subject of the generated root.
pub const CA_COMMON_NAME: &str = "azimds Attestation Root CA";
/// The generated root is valid for 10 years, a leaf for one.
pub const CA_VALIDITY_SECONDS: i64 = 10 * 365 * 86_400;
pub const LEAF_VALIDITY_SECONDS: i64 = 365 * 86_400;
/// Certificates start an hour in the past, so a guest whose clock lags ours still accepts a
/// leaf made a moment ago.
const BACKDATE_SECONDS: i64 = 3600;

/// An Azure cloud, which names the leaf certificate (spec §7.5, §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cloud {
    Public,
    UsGovernment,
    China,
    Germany,
}

impl Cloud {
    /// From `compute.azEnvironment` (§10), ignoring case. Anything else, `AzureStack` included
    /// (which has no attested endpoint, §2.1), signs as the public cloud.
    pub fn from_az_environment(name: &str) -> Cloud {
        match name.to_ascii_lowercase().as_str() {
            "azureusgovernmentcloud" => Cloud::UsGovernment,
            "azurechinacloud" => Cloud::China,
            "azuregermancloud" => Cloud::Germany,
            _ => Cloud::Public,
        }
    }

    /// The leaf's common name and the parent of its regional SAN.
    pub fn domain(self) -> &'static str {
        match self {
            Cloud::Public => "metadata.azure.com",
            Cloud::UsGovernment => "metadata.azure.us",
            Cloud::China => "metadata.azure.cn",
            Cloud::Germany => "metadata.microsoftazure.de",
        }
    }

    /// A short stable name, used in key-store ids.
    pub fn tag(self) -> &'static str {
        match self {
            Cloud::Public => "public",
            Cloud::UsGovernment => "usgov",
            Cloud::China => "china",
            Cloud::Germany => "germany",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Cloud> {
        [
            Cloud::Public,
            Cloud::UsGovernment,
            Cloud::China,
            Cloud::Germany,
        ]
        .into_iter()
        .find(|c| c.tag() == tag)
    }

    /// Subject attributes before the CN, in DER order (the government leaf's, §7.5).
    fn organisation(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Cloud::UsGovernment => &[
                ("C", "US"),
                ("ST", "WA"),
                ("L", "Redmond"),
                ("O", "Microsoft Corporation"),
            ],
            Cloud::Public | Cloud::China | Cloud::Germany => &[],
        }
    }
}

/// `compute.location` as a DNS label (`East US` is not one: Azure's are like `eastus`), or
/// `None` when it cannot be one; that VM's leaf then names only `metadata.<cloud>`.
pub fn region_label(location: &str) -> Option<String> {
    let label = location.trim().to_ascii_lowercase();
    let valid = !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    valid.then_some(label)
}

/// A fresh RSA-2048 key (50–200 ms).
pub fn generate_key() -> Result<PKey<Private>, openssl::error::ErrorStack> {
    PKey::from_rsa(Rsa::generate(2048)?)
}

/// A self-signed root: `CN=azimds Attestation Root CA`, CA:true, keyCertSign and cRLSign.
pub fn generate_ca(key: &PKeyRef<Private>, now: i64) -> Result<X509, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", CA_COMMON_NAME)?;
    let name = name.build();
    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    cert.set_serial_number(random_serial()?.as_ref())?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(&name)?;
    cert.set_pubkey(key)?;
    cert.set_not_before(Asn1Time::from_unix(now - BACKDATE_SECONDS)?.as_ref())?;
    cert.set_not_after(Asn1Time::from_unix(now + CA_VALIDITY_SECONDS)?.as_ref())?;
    cert.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    cert.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&cert.x509v3_context(None, None))?;
    cert.append_extension(ski)?;
    cert.sign(key, MessageDigest::sha256())?;
    Ok(cert.build())
}

/// What a leaf says, besides its key and validity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeafName {
    pub cloud: Cloud,
    /// A [`region_label`], or `None` for the leaf without a regional SAN.
    pub region: Option<String>,
}

/// A leaf for `name`, issued by `ca`: RSA `key`, digitalSignature only, SANs
/// `<region>.<domain>` (when there is a region) and `<domain>`, and an AIA "CA Issuers" URL
/// when `ca_issuers_url` is given (Microsoft's samples download the issuer from it, §7.6).
pub fn issue_leaf(
    ca: &X509Ref,
    ca_key: &PKeyRef<Private>,
    key: &PKeyRef<Private>,
    name: &LeafName,
    ca_issuers_url: Option<&str>,
    now: i64,
) -> Result<X509, openssl::error::ErrorStack> {
    let domain = name.cloud.domain();
    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    cert.set_serial_number(random_serial()?.as_ref())?;
    cert.set_subject_name(leaf_subject(name.cloud)?.as_ref())?;
    cert.set_issuer_name(ca.subject_name())?;
    cert.set_pubkey(key)?;
    cert.set_not_before(Asn1Time::from_unix(now - BACKDATE_SECONDS)?.as_ref())?;
    cert.set_not_after(Asn1Time::from_unix(now + LEAF_VALIDITY_SECONDS)?.as_ref())?;
    cert.append_extension(BasicConstraints::new().critical().build()?)?;
    cert.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    let mut san = SubjectAlternativeName::new();
    if let Some(region) = &name.region {
        san.dns(&format!("{region}.{domain}"));
    }
    san.dns(domain);
    let context = cert.x509v3_context(Some(ca), None);
    let san = san.build(&context)?;
    let ski = SubjectKeyIdentifier::new().build(&context)?;
    let aki = AuthorityKeyIdentifier::new().keyid(true).build(&context)?;
    cert.append_extension(san)?;
    cert.append_extension(ski)?;
    cert.append_extension(aki)?;
    if let Some(url) = ca_issuers_url {
        cert.append_extension(authority_info_access(url)?)?;
    }
    cert.sign(ca_key, MessageDigest::sha256())?;
    Ok(cert.build())
}

/// The "CA Issuers" URL of a certificate's AIA extension, if it has one.
pub fn ca_issuers_url(cert: &X509Ref) -> Option<String> {
    cert.authority_info()?
        .iter()
        .find(|d| d.method().nid() == Nid::AD_CA_ISSUERS)
        .and_then(|d| d.location().uri().map(str::to_string))
}

fn leaf_subject(cloud: Cloud) -> Result<X509Name, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    for (field, value) in cloud.organisation() {
        name.append_entry_by_text(field, value)?;
    }
    name.append_entry_by_text("CN", cloud.domain())?;
    Ok(name.build())
}

/// AuthorityInfoAccess { AccessDescription { id-ad-caIssuers, uniformResourceIdentifier } },
/// written with our DER writer: the openssl crate has no builder for it.
fn authority_info_access(url: &str) -> Result<X509Extension, openssl::error::ErrorStack> {
    let location = der::tlv(CONTEXT_6_PRIMITIVE, &[url.as_bytes()]);
    let description = der::tlv(SEQUENCE, &[&der::OID_CA_ISSUERS, &location]);
    let value = der::tlv(SEQUENCE, &[&description]);
    let oid = Asn1Object::from_str("1.3.6.1.5.5.7.1.1")?;
    let value = Asn1OctetString::new_from_bytes(&value)?;
    X509Extension::new_from_der(&oid, false, &value)
}

/// 16 random bytes, positive (RFC 5280 §4.1.2.2: at most 20 octets, non-negative).
fn random_serial() -> Result<Asn1Integer, openssl::error::ErrorStack> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // never a leading zero byte, so always 16 octets
    Asn1Integer::from_bn(BigNum::from_slice(&bytes)?.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(name: &openssl::x509::X509NameRef) -> Vec<(String, String)> {
        name.entries()
            .map(|e| {
                (
                    e.object().nid().short_name().unwrap().to_string(),
                    e.data().to_string().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn clouds_come_from_az_environment() {
        assert_eq!(
            Cloud::from_az_environment("AzurePublicCloud"),
            Cloud::Public
        );
        assert_eq!(
            Cloud::from_az_environment("AzureUSGovernmentCloud"),
            Cloud::UsGovernment
        );
        assert_eq!(Cloud::from_az_environment("azurechinacloud"), Cloud::China);
        assert_eq!(
            Cloud::from_az_environment("AzureGermanCloud"),
            Cloud::Germany
        );
        assert_eq!(Cloud::from_az_environment("AzureStack"), Cloud::Public);
        assert_eq!(Cloud::from_az_environment(""), Cloud::Public);
        for cloud in [
            Cloud::Public,
            Cloud::UsGovernment,
            Cloud::China,
            Cloud::Germany,
        ] {
            assert_eq!(Cloud::from_tag(cloud.tag()), Some(cloud));
        }
    }

    #[test]
    fn regions_become_dns_labels_or_nothing() {
        assert_eq!(region_label("eastus").as_deref(), Some("eastus"));
        assert_eq!(region_label(" WestEurope ").as_deref(), Some("westeurope"));
        assert_eq!(region_label("East US"), None);
        assert_eq!(region_label(""), None);
        assert_eq!(region_label("-x"), None);
        assert_eq!(region_label(&"a".repeat(64)), None);
        assert_eq!(region_label("a.b"), None);
    }

    #[test]
    fn leaf_is_named_like_azures_and_chains_to_the_ca() {
        let now = 1_700_000_000;
        let ca_key = generate_key().unwrap();
        let ca = generate_ca(&ca_key, now).unwrap();
        let key = generate_key().unwrap();
        let name = LeafName {
            cloud: Cloud::UsGovernment,
            region: Some("usgovvirginia".into()),
        };
        let url = "http://169.254.169.254/attested/ca.crt";
        let leaf = issue_leaf(&ca, &ca_key, &key, &name, Some(url), now).unwrap();

        assert!(leaf.verify(&ca_key).unwrap(), "signed by the CA");
        assert!(ca.verify(&ca_key).unwrap(), "the CA is self-signed");
        assert_eq!(
            texts(leaf.subject_name()),
            [
                ("C".into(), "US".into()),
                ("ST".into(), "WA".into()),
                ("L".into(), "Redmond".into()),
                ("O".into(), "Microsoft Corporation".into()),
                ("CN".into(), "metadata.azure.us".into()),
            ]
        );
        assert_eq!(
            texts(leaf.issuer_name()),
            [("CN".to_string(), CA_COMMON_NAME.to_string())]
        );
        let sans: Vec<String> = leaf
            .subject_alt_names()
            .unwrap()
            .iter()
            .map(|n| n.dnsname().unwrap().to_string())
            .collect();
        assert_eq!(
            sans,
            ["usgovvirginia.metadata.azure.us", "metadata.azure.us"]
        );
        assert_eq!(ca_issuers_url(&leaf).as_deref(), Some(url));
        assert_eq!(ca_issuers_url(&ca), None);
        assert!(leaf.public_key().unwrap().public_eq(&key));
        let serial = leaf.serial_number().to_bn().unwrap();
        assert_eq!(serial.num_bytes(), 16);
        assert!(!serial.is_negative());
    }

    #[test]
    fn public_leaf_without_region_names_only_the_domain() {
        let ca_key = generate_key().unwrap();
        let ca = generate_ca(&ca_key, 1_700_000_000).unwrap();
        let name = LeafName {
            cloud: Cloud::Public,
            region: None,
        };
        let leaf = issue_leaf(&ca, &ca_key, &ca_key, &name, None, 1_700_000_000).unwrap();
        assert_eq!(
            texts(leaf.subject_name()),
            [("CN".to_string(), "metadata.azure.com".to_string())]
        );
        let sans: Vec<String> = leaf
            .subject_alt_names()
            .unwrap()
            .iter()
            .map(|n| n.dnsname().unwrap().to_string())
            .collect();
        assert_eq!(sans, ["metadata.azure.com"]);
        assert_eq!(ca_issuers_url(&leaf), None);
    }
}
