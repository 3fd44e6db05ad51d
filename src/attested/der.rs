//! Just enough DER (X.690) to write the attested document's CMS envelope byte for byte and to
//! read two fields out of a certificate: definite lengths, a handful of pre-encoded OIDs, and a
//! reader that splits one tag-length-value at a time.
//!
//! Why our own: openssl's `Pkcs7::sign` always adds signed attributes and writes `id-sha256` as
//! the digest algorithm, and Azure's envelope has neither (spec §7.4).

/// Universal and context tags used by the envelope.
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;
/// `[0]`, constructed: EXPLICIT content of `ContentInfo` and `EncapsulatedContentInfo`, and
/// `SignedData.certificates` (IMPLICIT SET OF).
pub(crate) const CONTEXT_0: u8 = 0xa0;
/// `[6]` primitive: a `GeneralName` of kind uniformResourceIdentifier (RFC 5280 §4.2.1.6).
pub(crate) const CONTEXT_6_PRIMITIVE: u8 = 0x86;

/// `NULL`: the parameters of both RSA algorithm identifiers.
pub(crate) const NULL: [u8; 2] = [0x05, 0x00];
/// `INTEGER 1`: `SignedData.version` and `SignerInfo.version` with `issuerAndSerialNumber`.
pub(crate) const VERSION_1: [u8; 3] = [INTEGER, 0x01, 0x01];

/// 1.2.840.113549.1.7.2 `id-signedData`.
pub(crate) const OID_SIGNED_DATA: [u8; 11] =
    oid9([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]);
/// 1.2.840.113549.1.7.1 `id-data`.
pub(crate) const OID_DATA: [u8; 11] = oid9([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01]);
/// 1.2.840.113549.1.1.11 `sha256WithRSAEncryption`: Azure's *digest* algorithm (the quirk).
pub(crate) const OID_SHA256_WITH_RSA: [u8; 11] =
    oid9([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]);
/// 1.2.840.113549.1.1.1 `rsaEncryption`: the signature algorithm.
pub(crate) const OID_RSA_ENCRYPTION: [u8; 11] =
    oid9([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]);
/// 1.3.6.1.5.5.7.48.2 `id-ad-caIssuers` (an AIA access method).
pub(crate) const OID_CA_ISSUERS: [u8; 10] =
    [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];

const fn oid9(arcs: [u8; 9]) -> [u8; 11] {
    let mut out = [0x06, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut i = 0;
    while i < 9 {
        out[i + 2] = arcs[i];
        i += 1;
    }
    out
}

/// Why bytes are not the DER we expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated DER")]
    Truncated,
    #[error("unsupported DER length encoding")]
    BadLength,
    #[error("expected DER tag {expected:#04x}, found {found:#04x}")]
    UnexpectedTag { expected: u8, found: u8 },
}

/// Size of a whole TLV whose value is `content_len` bytes.
pub(crate) fn tlv_len(content_len: usize) -> usize {
    1 + length_octets(content_len) + content_len
}

/// Appends a tag and a definite length (the value follows, written by the caller).
pub(crate) fn push_header(out: &mut Vec<u8>, tag: u8, content_len: usize) {
    out.push(tag);
    match content_len {
        0..=0x7f => out.push(content_len as u8),
        _ => {
            let n = length_octets(content_len) - 1;
            out.push(0x80 | n as u8);
            out.extend_from_slice(&content_len.to_be_bytes()[size_of::<usize>() - n..]);
        }
    }
}

/// One TLV from parts concatenated.
pub(crate) fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(tlv_len(len));
    push_header(&mut out, tag, len);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

fn length_octets(content_len: usize) -> usize {
    match content_len {
        0..=0x7f => 1,
        _ => 1 + (usize::BITS as usize / 8 - content_len.leading_zeros() as usize / 8),
    }
}

/// One TLV read from the front of some DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    /// Tag, length and value, as encoded.
    pub(crate) whole: &'a [u8],
    pub(crate) content: &'a [u8],
}

/// Splits the first TLV off `input`: `(tlv, rest)`. Single-byte tags only (all we read are).
pub(crate) fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), Error> {
    let (&tag, after_tag) = input.split_first().ok_or(Error::Truncated)?;
    let (&first, after_first) = after_tag.split_first().ok_or(Error::Truncated)?;
    let (len, after_len) = match first {
        0..=0x7f => (first as usize, after_first),
        0x81..=0x84 => {
            let n = (first & 0x7f) as usize;
            if after_first.len() < n {
                return Err(Error::Truncated);
            }
            let len = after_first[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | b as usize);
            (len, &after_first[n..])
        }
        // 0x80 is BER's indefinite length, never DER; more than 4 length bytes is absurd here.
        _ => return Err(Error::BadLength),
    };
    if after_len.len() < len {
        return Err(Error::Truncated);
    }
    let header = input.len() - after_len.len();
    let tlv = Tlv {
        tag,
        whole: &input[..header + len],
        content: &after_len[..len],
    };
    Ok((tlv, &after_len[len..]))
}

/// [`read`], insisting on `tag`.
pub(crate) fn expect(input: &[u8], tag: u8) -> Result<(Tlv<'_>, &[u8]), Error> {
    let (tlv, rest) = read(input)?;
    if tlv.tag != tag {
        return Err(Error::UnexpectedTag {
            expected: tag,
            found: tlv.tag,
        });
    }
    Ok((tlv, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_shortest_form() {
        for (len, header) in [
            (0usize, vec![0x04, 0x00]),
            (0x7f, vec![0x04, 0x7f]),
            (0x80, vec![0x04, 0x81, 0x80]),
            (0xff, vec![0x04, 0x81, 0xff]),
            (0x100, vec![0x04, 0x82, 0x01, 0x00]),
            (0x1_0000, vec![0x04, 0x83, 0x01, 0x00, 0x00]),
        ] {
            let mut out = Vec::new();
            push_header(&mut out, OCTET_STRING, len);
            assert_eq!(out, header, "length {len}");
            assert_eq!(tlv_len(len), header.len() + len);
        }
    }

    #[test]
    fn read_round_trips_what_tlv_writes() {
        let inner = tlv(OCTET_STRING, &[&[7u8; 300]]);
        let outer = tlv(SEQUENCE, &[&inner, &VERSION_1]);
        let (seq, rest) = expect(&outer, SEQUENCE).unwrap();
        assert!(rest.is_empty());
        assert_eq!(seq.whole, &outer[..]);
        let (octets, rest) = expect(seq.content, OCTET_STRING).unwrap();
        assert_eq!(octets.content, &[7u8; 300]);
        assert_eq!(rest, &VERSION_1);
    }

    #[test]
    fn read_rejects_truncation_and_indefinite_lengths() {
        assert_eq!(read(&[0x30]), Err(Error::Truncated));
        assert_eq!(read(&[0x30, 0x05, 0x00]), Err(Error::Truncated));
        assert_eq!(read(&[0x30, 0x82, 0x01]), Err(Error::Truncated));
        assert_eq!(read(&[0x30, 0x80, 0x00, 0x00]), Err(Error::BadLength));
        assert_eq!(
            expect(&VERSION_1, SEQUENCE),
            Err(Error::UnexpectedTag {
                expected: SEQUENCE,
                found: INTEGER
            })
        );
    }

    #[test]
    fn oids_are_the_spec_ones() {
        // Decodes the arcs by hand: the first byte is 40 * a + b, then base-128 groups.
        let dotted = |der: &[u8]| {
            let (tlv, _) = read(der).unwrap();
            let c = tlv.content;
            let mut arcs = vec![u64::from(c[0] / 40), u64::from(c[0] % 40)];
            let mut acc = 0u64;
            for &b in &c[1..] {
                acc = (acc << 7) | u64::from(b & 0x7f);
                if b & 0x80 == 0 {
                    arcs.push(acc);
                    acc = 0;
                }
            }
            arcs.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(".")
        };
        assert_eq!(dotted(&OID_SIGNED_DATA), "1.2.840.113549.1.7.2");
        assert_eq!(dotted(&OID_DATA), "1.2.840.113549.1.7.1");
        assert_eq!(dotted(&OID_SHA256_WITH_RSA), "1.2.840.113549.1.1.11");
        assert_eq!(dotted(&OID_RSA_ENCRYPTION), "1.2.840.113549.1.1.1");
        assert_eq!(dotted(&OID_CA_ISSUERS), "1.3.6.1.5.5.7.48.2");
    }
}
