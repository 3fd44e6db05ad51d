//! The attested document's CMS `SignedData` envelope, written exactly as Azure writes it
//! (spec §7.4, decoded from real signatures):
//!
//! ```text
//! ContentInfo { id-signedData, [0] SignedData {
//!     version 1,
//!     digestAlgorithms { sha256WithRSAEncryption, NULL },      -- the quirk: not id-sha256
//!     encapContentInfo { id-data, [0] OCTET STRING <json> },  -- attached
//!     certificates [0] { <leaf> },                             -- the leaf only
//!     signerInfos { SignerInfo {
//!         version 1, issuerAndSerialNumber,
//!         digestAlgorithm { sha256WithRSAEncryption, NULL },
//!         -- no signedAttrs
//!         signatureAlgorithm { rsaEncryption, NULL },
//!         signature OCTET STRING <RSASSA-PKCS1-v1_5(SHA-256(json))>
//!         -- no unsignedAttrs
//! } } } }
//! ```
//!
//! Everything but the content and the signature depends only on the certificate and key, so
//! [`CmsSigner::new`] encodes it once and a document costs one RSA signature plus copies.

use std::fmt;

use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private};
use openssl::sign::Signer;
use openssl::x509::X509;

use crate::attested::der::{self, CONTEXT_0, INTEGER, OCTET_STRING, SEQUENCE, SET};

/// Why a signer could not be made or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the signing key is not RSA (the envelope says rsaEncryption)")]
    NotRsa,
    #[error("the signing certificate is not the DER we expected: {0}")]
    Certificate(#[from] der::Error),
    #[error("openssl: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// Signs attested documents with one certificate and its RSA key. `Debug` omits the key.
pub struct CmsSigner {
    key: PKey<Private>,
    /// `version` and `digestAlgorithms` of `SignedData`: the same for every document.
    version_and_digests: Vec<u8>,
    /// `[0] { certificate }`.
    certificates: Vec<u8>,
    /// `signerInfos` up to and including the signature's OCTET STRING header.
    signer_infos_head: Vec<u8>,
    /// RSA signatures are exactly the modulus size, so every length above is fixed.
    signature_len: usize,
}

impl fmt::Debug for CmsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CmsSigner")
            .field("signature_len", &self.signature_len)
            .finish_non_exhaustive()
    }
}

impl CmsSigner {
    /// Prepares the constant parts for `certificate` (which must be `key`'s).
    pub fn new(certificate: &X509, key: PKey<Private>) -> Result<CmsSigner, Error> {
        if key.id() != Id::RSA {
            return Err(Error::NotRsa);
        }
        let certificate_der = certificate.to_der()?;
        let (issuer, serial) = issuer_and_serial(&certificate_der)?;
        let digest_algorithm = algorithm(&der::OID_SHA256_WITH_RSA);
        let signature_algorithm = algorithm(&der::OID_RSA_ENCRYPTION);
        let signature_len = key.size();

        let mut version_and_digests = der::VERSION_1.to_vec();
        version_and_digests.extend(der::tlv(SET, &[&digest_algorithm]));

        let sid = der::tlv(SEQUENCE, &[issuer, serial]);
        let signer_info_len = der::VERSION_1.len()
            + sid.len()
            + digest_algorithm.len()
            + signature_algorithm.len()
            + der::tlv_len(signature_len);
        let mut signer_infos_head = Vec::new();
        der::push_header(&mut signer_infos_head, SET, der::tlv_len(signer_info_len));
        der::push_header(&mut signer_infos_head, SEQUENCE, signer_info_len);
        for part in [
            &der::VERSION_1[..],
            &sid,
            &digest_algorithm,
            &signature_algorithm,
        ] {
            signer_infos_head.extend_from_slice(part);
        }
        der::push_header(&mut signer_infos_head, OCTET_STRING, signature_len);

        Ok(CmsSigner {
            key,
            version_and_digests,
            certificates: der::tlv(CONTEXT_0, &[&certificate_der]),
            signer_infos_head,
            signature_len,
        })
    }

    /// The DER `ContentInfo` carrying `content` and its signature.
    pub fn sign(&self, content: &[u8]) -> Result<Vec<u8>, Error> {
        let e_content_len = der::tlv_len(content.len());
        let encap_len = der::OID_DATA.len() + der::tlv_len(e_content_len);
        let signed_data_len = self.version_and_digests.len()
            + der::tlv_len(encap_len)
            + self.certificates.len()
            + self.signer_infos_head.len()
            + self.signature_len;
        let content_info_len =
            der::OID_SIGNED_DATA.len() + der::tlv_len(der::tlv_len(signed_data_len));

        let mut out = Vec::with_capacity(der::tlv_len(content_info_len));
        der::push_header(&mut out, SEQUENCE, content_info_len);
        out.extend_from_slice(&der::OID_SIGNED_DATA);
        der::push_header(&mut out, CONTEXT_0, der::tlv_len(signed_data_len));
        der::push_header(&mut out, SEQUENCE, signed_data_len);
        out.extend_from_slice(&self.version_and_digests);
        der::push_header(&mut out, SEQUENCE, encap_len);
        out.extend_from_slice(&der::OID_DATA);
        der::push_header(&mut out, CONTEXT_0, e_content_len);
        der::push_header(&mut out, OCTET_STRING, content.len());
        out.extend_from_slice(content);
        out.extend_from_slice(&self.certificates);
        out.extend_from_slice(&self.signer_infos_head);

        // No signed attributes, so the signature is over the content itself (RFC 5652 §5.4).
        let start = out.len();
        out.resize(start + self.signature_len, 0);
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key)?;
        signer.update(content)?;
        let written = signer.sign(&mut out[start..])?;
        debug_assert_eq!(written, self.signature_len, "PKCS#1 v1.5 fills the modulus");
        debug_assert_eq!(out.len(), out.capacity());
        Ok(out)
    }
}

/// `AlgorithmIdentifier { oid, NULL }`.
fn algorithm(oid: &[u8]) -> Vec<u8> {
    der::tlv(SEQUENCE, &[oid, &der::NULL])
}

/// The issuer `Name` and `serialNumber` TLVs of a certificate, exactly as encoded there, so the
/// `issuerAndSerialNumber` matches the certificate byte for byte (negative or odd serials too).
fn issuer_and_serial(certificate: &[u8]) -> Result<(&[u8], &[u8]), der::Error> {
    let (certificate, _) = der::expect(certificate, SEQUENCE)?;
    let (tbs, _) = der::expect(certificate.content, SEQUENCE)?;
    let mut fields = tbs.content;
    // `version` is `[0] EXPLICIT`, absent for v1 certificates.
    let (first, rest) = der::read(fields)?;
    if first.tag == CONTEXT_0 {
        fields = rest;
    }
    let (serial, rest) = der::expect(fields, INTEGER)?;
    let (_signature_algorithm, rest) = der::expect(rest, SEQUENCE)?;
    let (issuer, _) = der::expect(rest, SEQUENCE)?;
    Ok((issuer.whole, serial.whole))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::{Asn1Integer, Asn1Time};
    use openssl::bn::BigNum;
    use openssl::rsa::Rsa;
    use openssl::x509::X509NameBuilder;

    fn self_signed(serial: &BigNum) -> (X509, PKey<Private>) {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "metadata.azure.com")
            .unwrap();
        let name = name.build();
        let mut cert = X509::builder().unwrap();
        cert.set_version(2).unwrap();
        cert.set_serial_number(&Asn1Integer::from_bn(serial).unwrap())
            .unwrap();
        cert.set_subject_name(&name).unwrap();
        cert.set_issuer_name(&name).unwrap();
        cert.set_pubkey(&key).unwrap();
        cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        cert.sign(&key, MessageDigest::sha256()).unwrap();
        (cert.build(), key)
    }

    #[test]
    fn issuer_and_serial_are_the_certificates_own_bytes() {
        // DER INTEGERs are signed: a top bit set needs a leading zero, a negative serial (which
        // some CAs issued) is two's complement. Either way the bytes must be the certificate's.
        for (serial, content) in [
            ("80112233", vec![0x00, 0x80, 0x11, 0x22, 0x33]),
            ("-5", vec![0xfb]),
            ("1", vec![0x01]),
        ] {
            let serial = match serial.strip_prefix('-') {
                Some(_) => BigNum::from_dec_str(serial).unwrap(),
                None => BigNum::from_hex_str(serial).unwrap(),
            };
            let (cert, _) = self_signed(&serial);
            let der = cert.to_der().unwrap();
            let (issuer, serial_tlv) = issuer_and_serial(&der).unwrap();
            assert_eq!(issuer, cert.issuer_name().to_der().unwrap());
            let (int, rest) = der::expect(serial_tlv, INTEGER).unwrap();
            assert!(rest.is_empty());
            assert_eq!(int.content, content, "serial {serial}");
        }
    }

    #[test]
    fn every_length_matches_the_bytes_written() {
        let (cert, key) = self_signed(&BigNum::from_u32(7).unwrap());
        let signer = CmsSigner::new(&cert, key).unwrap();
        for size in [0, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![b'x'; size];
            let doc = signer.sign(&content).unwrap();
            let (info, rest) = der::expect(&doc, SEQUENCE).unwrap();
            assert!(rest.is_empty(), "size {size}");
            assert_eq!(info.whole.len(), doc.len());
            // openssl parses it as well (a full structural check is in attested::tests).
            openssl::pkcs7::Pkcs7::from_der(&doc).unwrap();
        }
    }

    #[test]
    fn rejects_a_non_rsa_key() {
        let (cert, _) = self_signed(&BigNum::from_u32(9).unwrap());
        let ec = openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap();
        let key = PKey::from_ec_key(ec).unwrap();
        assert!(matches!(CmsSigner::new(&cert, key), Err(Error::NotRsa)));
    }
}
