//! The control API's bearer token: generated on first start into the data directory
//! (owner-only), read by the server and by the CLI. Never logged.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// File name of the token inside the data directory.
pub const FILE_NAME: &str = "control-token";
/// Shortest token accepted from the file: 128 bits as hex. Generated tokens have 256.
pub const MIN_LENGTH: usize = 32;

/// A bearer token. `Debug` hides it.
pub struct ControlToken(String);

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlToken(…)")
    }
}

impl ControlToken {
    /// Reads `<data>/control-token`, creating it (mode 0600, 256 random bits) if missing. A
    /// token in the file must be at least [`MIN_LENGTH`] visible ASCII characters.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<ControlToken> {
        let path = path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => {
                let token = text.trim();
                check_strength(token).map_err(|reason| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {reason}", path.display()),
                    )
                })?;
                return Ok(ControlToken(token.to_string()));
            }
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        let mut bytes = [0u8; 32];
        openssl::rand::rand_bytes(&mut bytes).map_err(std::io::Error::other)?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(token.as_bytes())?;
        file.sync_all()?;
        Ok(ControlToken(token))
    }

    /// Reads an existing token (the CLI's way).
    pub fn read(data_dir: &Path) -> std::io::Result<ControlToken> {
        Ok(ControlToken(
            std::fs::read_to_string(path(data_dir))?.trim().to_string(),
        ))
    }

    pub fn from_string(token: String) -> ControlToken {
        ControlToken(token)
    }

    /// Constant-time comparison, so response timing does not leak the token.
    pub fn matches(&self, presented: &str) -> bool {
        presented.len() == self.0.len()
            && openssl::memcmp::eq(presented.as_bytes(), self.0.as_bytes())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Whether `token` is long enough to guess at no better than 2^-128, and usable in a header.
fn check_strength(token: &str) -> Result<(), String> {
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be visible ASCII characters without spaces".into());
    }
    if token.len() < MIN_LENGTH {
        return Err(format!(
            "the token has {} characters; at least {MIN_LENGTH} (128 bits as hex) are required. Delete the file to have a new one generated",
            token.len()
        ));
    }
    Ok(())
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}
