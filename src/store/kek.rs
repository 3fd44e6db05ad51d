//! The key-encryption key (`--kek-file`): private keys are sealed with it before they leave the
//! process for a shared store (etcd) or an export file, so neither holds a key in the clear.
//!
//! The file holds exactly 32 random bytes (`head -c 32 /dev/urandom > kek`), readable by its
//! owner only. Sealing is AES-256-GCM (openssl) with a fresh random 96-bit nonce per write and
//! the key's name as associated data, so a sealed key moved under another name does not open.
//! A sealed value is `v1` ‖ nonce (12) ‖ ciphertext ‖ tag (16).

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};

/// How many bytes a KEK file holds.
pub const KEK_BYTES: usize = 32;
const VERSION: &[u8] = b"v1";
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

/// Why a KEK file cannot be used, or a sealed value cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("--kek-file {}: cannot read it: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--kek-file {}: it is readable or writable by other users (mode {mode:03o}); make it owner-only: chmod 600 {}", .path.display(), .path.display()
    )]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error(
        "--kek-file {}: it holds {found} bytes; a key-encryption key is exactly 32 random bytes (make one with `head -c 32 /dev/urandom > FILE; chmod 600 FILE`)", .path.display()
    )]
    WrongSize { path: PathBuf, found: u64 },
    #[error(
        "sealed key {name:?} does not open with this key-encryption key (another --kek-file, or the value was changed)"
    )]
    Unseal { name: String },
    #[error("openssl: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// The key-encryption key. `Debug` never shows it.
#[derive(Clone)]
pub struct Kek {
    key: [u8; KEK_BYTES],
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek").finish_non_exhaustive()
    }
}

impl Kek {
    /// Reads `path`: refused unless it is owner-only and exactly [`KEK_BYTES`] long.
    pub fn from_file(path: &Path) -> Result<Kek, KekError> {
        let read = |source| KekError::Read {
            path: path.to_path_buf(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(read)?;
        let mode = metadata.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KekError::NotPrivate {
                path: path.to_path_buf(),
                mode,
            });
        }
        if metadata.len() != KEK_BYTES as u64 {
            return Err(KekError::WrongSize {
                path: path.to_path_buf(),
                found: metadata.len(),
            });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        let key = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KekError::WrongSize {
                path: path.to_path_buf(),
                found: bytes.len() as u64,
            })?;
        Ok(Kek { key })
    }

    /// A KEK from bytes (tests).
    pub fn from_bytes(key: [u8; KEK_BYTES]) -> Kek {
        Kek { key }
    }

    /// Encrypts `plaintext` under a new random nonce, bound to `name`.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, KekError> {
        let mut nonce = [0u8; NONCE_BYTES];
        openssl::rand::rand_bytes(&mut nonce)?;
        let mut tag = [0u8; TAG_BYTES];
        let ciphertext = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.key,
            Some(&nonce),
            name.as_bytes(),
            plaintext,
            &mut tag,
        )?;
        let mut out =
            Vec::with_capacity(VERSION.len() + NONCE_BYTES + ciphertext.len() + TAG_BYTES);
        out.extend_from_slice(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Decrypts what [`Kek::seal`] made for `name`; any change to it, or another name or
    /// key, is refused.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, KekError> {
        let refused = || KekError::Unseal {
            name: name.to_string(),
        };
        let body = sealed.strip_prefix(VERSION).ok_or_else(refused)?;
        if body.len() < NONCE_BYTES + TAG_BYTES {
            return Err(refused());
        }
        let (nonce, rest) = body.split_at(NONCE_BYTES);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_BYTES);
        decrypt_aead(
            Cipher::aes_256_gcm(),
            &self.key,
            Some(nonce),
            name.as_bytes(),
            ciphertext,
            tag,
        )
        .map_err(|_| refused())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_name() {
        let kek = Kek::from_bytes([7; KEK_BYTES]);
        let secret = b"-----BEGIN PRIVATE KEY-----";
        let one = kek.seal("identity/k1", secret).unwrap();
        let two = kek.seal("identity/k1", secret).unwrap();
        assert_ne!(one, two, "a fresh nonce per write");
        assert_eq!(one.len(), 2 + 12 + secret.len() + 16);
        assert!(!one.windows(secret.len()).any(|w| w == secret));
        assert_eq!(kek.open("identity/k1", &one).unwrap(), secret);
        assert!(kek.open("identity/k2", &one).is_err(), "bound to its name");
        assert!(
            Kek::from_bytes([8; KEK_BYTES])
                .open("identity/k1", &one)
                .is_err()
        );
        let mut flipped = one.clone();
        flipped[20] ^= 1;
        assert!(kek.open("identity/k1", &flipped).is_err(), "authenticated");
        assert!(kek.open("identity/k1", b"v1short").is_err());
    }

    /// The same AES-256-GCM as the `openssl enc`-independent reference: a sealed value is
    /// decrypted by openssl's EVP with the documented layout (version, nonce, ciphertext, tag).
    #[test]
    fn the_layout_is_the_documented_one() {
        let key = [0x42; KEK_BYTES];
        let sealed = Kek::from_bytes(key).seal("n", b"hello").unwrap();
        assert_eq!(&sealed[..2], b"v1");
        let (nonce, rest) = sealed[2..].split_at(12);
        let (ciphertext, tag) = rest.split_at(rest.len() - 16);
        let mut crypter = openssl::symm::Crypter::new(
            Cipher::aes_256_gcm(),
            openssl::symm::Mode::Decrypt,
            &key,
            Some(nonce),
        )
        .unwrap();
        crypter.aad_update(b"n").unwrap();
        crypter.set_tag(tag).unwrap();
        let mut out = vec![0; ciphertext.len() + 16];
        let n = crypter.update(ciphertext, &mut out).unwrap();
        let n = n + crypter.finalize(&mut out[n..]).unwrap();
        assert_eq!(&out[..n], b"hello");
    }

    #[test]
    fn kek_files_must_be_private_and_32_bytes() {
        let dir = std::env::temp_dir().join(format!("azimds-kek-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kek");
        let write = |bytes: &[u8], mode: u32| {
            std::fs::write(&path, bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&[1; 32], 0o600);
        assert!(Kek::from_file(&path).is_ok());
        write(&[1; 32], 0o644);
        let error = Kek::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
        write(&[1; 33], 0o600);
        let error = Kek::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("holds 33 bytes"), "{error}");
        write(b"", 0o400);
        assert!(Kek::from_file(&path).is_err());
        assert!(Kek::from_file(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
