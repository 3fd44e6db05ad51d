//! Operator-supplied signing certificates: a leaf, its key and the chain relying parties trust,
//! from PEM files, instead of the generated CA. Checked once, at start, with errors that say
//! which file is wrong.

use std::time::SystemTime;

use openssl::pkey::{Id, PKey};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509, X509StoreContext};

use crate::attested::signer::AttestedSigner;
use crate::attested::{Error, OperatorError};

impl AttestedSigner {
    /// Signs with the operator's `leaf_pem` certificate and `key_pem` key (any PEM private key
    /// openssl reads; RSA, as Azure's envelope names rsaEncryption). `chain_pem` holds one or
    /// more certificates (intermediates and/or root) that must verify the leaf at `now`; any of
    /// them may be the trust anchor. [`AttestedSigner::ca_pem`] then returns that chain, and
    /// rotation is the operator's (replace the files, restart).
    pub fn from_operator_pem(
        leaf_pem: &str,
        key_pem: &str,
        chain_pem: &str,
        now: SystemTime,
    ) -> Result<AttestedSigner, Error> {
        let leaf = X509::from_pem(leaf_pem.as_bytes()).map_err(|source| OperatorError::Pem {
            what: "leaf certificate",
            source,
        })?;
        let key = PKey::private_key_from_pem(key_pem.as_bytes()).map_err(|source| {
            OperatorError::Pem {
                what: "private key",
                source,
            }
        })?;
        if key.id() != Id::RSA {
            return Err(OperatorError::NotRsa.into());
        }
        if !leaf.public_key()?.public_eq(&key) {
            return Err(OperatorError::KeyMismatch.into());
        }
        let leaf_der = leaf.to_der()?;
        let chain: Vec<X509> = X509::stack_from_pem(chain_pem.as_bytes())
            .map_err(|source| OperatorError::Pem {
                what: "certificate chain",
                source,
            })?
            .into_iter()
            // The leaf itself is no anchor for itself.
            .filter(|c| c.to_der().is_ok_and(|der| der != leaf_der))
            .collect();
        if chain.is_empty() {
            return Err(OperatorError::EmptyChain.into());
        }
        verify(&leaf, &chain, now)?;
        AttestedSigner::operator(chain, leaf, key)
    }
}

/// Does `chain` verify `leaf` at `now`? Every chain certificate is trusted (partial chains
/// allowed), so an operator may stop at an intermediate their relying parties already trust.
fn verify(leaf: &X509, chain: &[X509], now: SystemTime) -> Result<(), Error> {
    let mut store = X509StoreBuilder::new()?;
    for certificate in chain {
        store.add_cert(certificate.clone())?;
    }
    let mut param = X509VerifyParam::new()?;
    param.set_flags(X509VerifyFlags::PARTIAL_CHAIN)?;
    let seconds = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    param.set_time(seconds.try_into().unwrap_or(i64::MAX) as _);
    store.set_param(&param)?;
    let store = store.build();
    let untrusted = Stack::new()?;
    let mut context = X509StoreContext::new()?;
    let (verified, reason) = context.init(&store, leaf, &untrusted, |c| {
        let verified = c.verify_cert()?;
        Ok((verified, c.error().error_string().to_string()))
    })?;
    if !verified {
        return Err(OperatorError::ChainDoesNotVerify { reason }.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attested::certs::{self, Cloud, LeafName};
    use crate::attested::signer::AttestedSigner;

    const NOW: i64 = 1_800_000_000;

    fn at(seconds: i64) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds as u64)
    }

    fn pem(cert: &X509) -> String {
        String::from_utf8(cert.to_pem().unwrap()).unwrap()
    }

    /// (leaf PEM, key PEM, chain PEM) from a throwaway CA.
    fn operator_files() -> (String, String, String) {
        let ca_key = certs::generate_key().unwrap();
        let ca = certs::generate_ca(&ca_key, NOW).unwrap();
        let key = certs::generate_key().unwrap();
        let name = LeafName {
            cloud: Cloud::Public,
            region: Some("eastus".into()),
        };
        let leaf = certs::issue_leaf(&ca, &ca_key, &key, &name, None, NOW).unwrap();
        let key_pem = String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        (pem(&leaf), key_pem, pem(&ca))
    }

    #[test]
    fn accepts_a_matching_leaf_key_and_chain() {
        let (leaf, key, chain) = operator_files();
        let signer = AttestedSigner::from_operator_pem(&leaf, &key, &chain, at(NOW)).unwrap();
        assert_eq!(signer.ca_pem(), chain);
        // One leaf for every VM, whatever its cloud and region.
        assert_eq!(
            signer
                .leaf_pem(Cloud::China, "chinanorth", at(NOW))
                .unwrap(),
            leaf
        );
        assert_eq!(
            signer.issuer_der(),
            X509::from_pem(chain.as_bytes()).unwrap().to_der().unwrap()
        );
        let der = signer
            .sign(Cloud::Public, "westus", b"{}", at(NOW))
            .unwrap();
        openssl::pkcs7::Pkcs7::from_der(&der).unwrap();
        assert!(matches!(
            signer.rotate(at(NOW)),
            Err(Error::OperatorRotation)
        ));
        assert!(!signer.renew_if_due(at(NOW)).unwrap());
        assert!(!signer.reload(at(NOW)).unwrap(), "nothing to follow");
    }

    #[test]
    fn refuses_a_key_of_another_certificate() {
        let (leaf, _, chain) = operator_files();
        let (_, other_key, _) = operator_files();
        let err =
            AttestedSigner::from_operator_pem(&leaf, &other_key, &chain, at(NOW)).unwrap_err();
        assert!(
            matches!(err, Error::Operator(OperatorError::KeyMismatch)),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_chain_that_does_not_verify_the_leaf() {
        let (leaf, key, _) = operator_files();
        let (_, _, other_chain) = operator_files();
        let err =
            AttestedSigner::from_operator_pem(&leaf, &key, &other_chain, at(NOW)).unwrap_err();
        let Error::Operator(OperatorError::ChainDoesNotVerify { reason }) = &err else {
            panic!("{err}");
        };
        assert!(reason.contains("issuer certificate"), "{reason}");
        // Expired by then: a clear reason too.
        let (leaf, key, chain) = operator_files();
        let later = NOW + 2 * 365 * 86_400;
        let err = AttestedSigner::from_operator_pem(&leaf, &key, &chain, at(later)).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn refuses_bad_pem_an_empty_chain_and_non_rsa_keys() {
        let (leaf, key, chain) = operator_files();
        let err = AttestedSigner::from_operator_pem("junk", &key, &chain, at(NOW)).unwrap_err();
        assert!(
            err.to_string()
                .contains("leaf certificate is not valid PEM"),
            "{err}"
        );
        let err = AttestedSigner::from_operator_pem(&leaf, "junk", &chain, at(NOW)).unwrap_err();
        assert!(
            err.to_string().contains("private key is not valid PEM"),
            "{err}"
        );
        let err = AttestedSigner::from_operator_pem(&leaf, &key, &leaf, at(NOW)).unwrap_err();
        assert!(
            matches!(err, Error::Operator(OperatorError::EmptyChain)),
            "{err}"
        );
        let ec = openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap();
        let ec_pem = String::from_utf8(
            PKey::from_ec_key(ec)
                .unwrap()
                .private_key_to_pem_pkcs8()
                .unwrap(),
        )
        .unwrap();
        let err = AttestedSigner::from_operator_pem(&leaf, &ec_pem, &chain, at(NOW)).unwrap_err();
        assert!(
            matches!(err, Error::Operator(OperatorError::NotRsa)),
            "{err}"
        );
        assert!(!format!("{err:?}").contains("PRIVATE"));
    }
}
