//! How a VM record is laid out in the `vms` table (schema version 4 on), and its checksum.
//!
//! ```text
//! [0]       2: this layout (version-1..3 records are JSON objects, starting with `{`)
//! [1..9]    checksum of bytes [9..], u64 little-endian
//! [9..17]   revision
//! [17]      origin: 0 api, 1 file, 2 demo
//! [18..26]  fingerprint of the checker that made the checked form (0: none)
//! [26..30]  length of the entry, u32
//! [30..]    the entry as written, compact JSON; then the checked form (`definition::checked`)
//! ```
//!
//! The entry is kept as the bytes it was written as (no JSON-in-JSON), so loading reads it
//! without parsing it, and a re-import compares bytes. redb checksums its pages but verifies
//! them only when repairing after a crash, so a byte flipped on disk inside a record would be
//! served: the record's own checksum makes it an error instead (issue #13, finding 3).

use crate::store::{Error, Origin};

const LAYOUT: u8 = 2;
const HEADER: usize = 30;

/// A VM record as stored, borrowed from the table for the length of a read.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub revision: u64,
    pub origin: Origin,
    /// The entry as written, compact JSON.
    pub entry: &'a [u8],
    pub checked: Checked<'a>,
}

/// A VM's checked form and the fingerprint of the checker that made it.
#[derive(Debug, Clone, Copy)]
pub struct Checked<'a> {
    /// `definition::checked::fingerprint()` of the writer; 0 when there is no form.
    pub by: u64,
    pub form: &'a [u8],
}

impl Checked<'_> {
    /// No checked form (an upgraded record): the entry is checked at the next load.
    pub const NONE: Checked<'static> = Checked { by: 0, form: &[] };
}

pub(super) fn encode(revision: u64, origin: Origin, entry: &[u8], checked: Checked<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + entry.len() + checked.form.len());
    out.push(LAYOUT);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&revision.to_le_bytes());
    out.push(match origin {
        Origin::Api => 0,
        Origin::File => 1,
        Origin::Demo => 2,
    });
    out.extend_from_slice(&checked.by.to_le_bytes());
    let entry_len = u32::try_from(entry.len()).expect("a VM entry is far below 4 GiB");
    out.extend_from_slice(&entry_len.to_le_bytes());
    out.extend_from_slice(entry);
    out.extend_from_slice(checked.form);
    let sum = checksum(&out[9..]);
    out[1..9].copy_from_slice(&sum.to_le_bytes());
    out
}

pub(super) fn decode<'a>(id: &str, bytes: &'a [u8]) -> Result<RecordView<'a>, Error> {
    let corrupt = |message: &str| Error::Corrupt {
        key: id.to_string(),
        message: message.to_string(),
    };
    if bytes.len() < HEADER || bytes[0] != LAYOUT {
        return Err(corrupt("not a VM record of this store's layout"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if u64_at(1) != checksum(&bytes[9..]) {
        return Err(corrupt(
            "its checksum does not match: the record was changed on disk",
        ));
    }
    let origin = match bytes[17] {
        0 => Origin::Api,
        1 => Origin::File,
        2 => Origin::Demo,
        _ => return Err(corrupt("unknown origin")),
    };
    let entry_len = u32::from_le_bytes(bytes[26..30].try_into().expect("4 bytes")) as usize;
    let Some(rest) = bytes.get(HEADER..) else {
        return Err(corrupt("cut short"));
    };
    if rest.len() < entry_len {
        return Err(corrupt("cut short"));
    }
    let (entry, form) = rest.split_at(entry_len);
    Ok(RecordView {
        revision: u64_at(9),
        origin,
        entry,
        checked: Checked {
            by: u64_at(18),
            form,
        },
    })
}

/// A 64-bit checksum over four interleaved lanes of 8-byte words (a multiply and a rotation
/// per word: several GB/s, so checking 100,000 records of 8 KB at every start costs tens of
/// milliseconds). Each step is a bijection of the lane for a fixed word and of the word for a
/// fixed lane, so any change confined to one 8-byte word — a flipped bit or byte — always
/// changes the sum; other damage goes unnoticed with probability about 2^-64. Not a defence
/// against deliberate tampering: the data directory's permissions are.
pub(super) fn checksum(bytes: &[u8]) -> u64 {
    const K: [u64; 4] = [
        0x9E37_79B9_7F4A_7C15,
        0xC2B2_AE3D_27D4_EB4F,
        0x1656_67B1_9E37_79F9,
        0x85EB_CA77_C2B2_AE63,
    ];
    fn mix(lane: u64, word: u64, k: u64) -> u64 {
        (lane ^ word).wrapping_mul(k).rotate_left(29)
    }
    let mut lanes = [
        0x243F_6A88_85A3_08D3_u64,
        0x1319_8A2E_0370_7344,
        0xA409_3822_299F_31D0,
        0x082E_FA98_EC4E_6C89,
    ];
    let mut blocks = bytes.chunks_exact(32);
    let mut absorb = |block: &[u8]| {
        for (i, word) in block.chunks_exact(8).enumerate() {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            lanes[i] = mix(lanes[i], word, K[i]);
        }
    };
    for block in &mut blocks {
        absorb(block);
    }
    let mut tail = [0u8; 32];
    tail[..blocks.remainder().len()].copy_from_slice(blocks.remainder());
    absorb(&tail);
    let sum = lanes
        .iter()
        .zip(K)
        .fold(bytes.len() as u64, |sum, (&lane, k)| {
            (sum ^ lane).wrapping_mul(k).rotate_left(31)
        });
    sum ^ (sum >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let form = [1, 2, 3];
        let bytes = encode(
            7,
            Origin::File,
            br#"{"id":"a"}"#,
            Checked { by: 9, form: &form },
        );
        let view = decode("a", &bytes).unwrap();
        assert_eq!(view.revision, 7);
        assert_eq!(view.origin, Origin::File);
        assert_eq!(view.entry, br#"{"id":"a"}"#);
        assert_eq!((view.checked.by, view.checked.form), (9, &form[..]));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let entry = vec![b'x'; 301];
        let bytes = encode(1, Origin::Api, &entry, Checked::NONE);
        for at in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut damaged = bytes.clone();
                damaged[at] ^= flip;
                assert!(decode("a", &damaged).is_err(), "byte {at} ^ {flip:#x}");
            }
        }
        assert!(
            decode("a", &bytes[..bytes.len() - 1]).is_err(),
            "a truncated record"
        );
    }
}
