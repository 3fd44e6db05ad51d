//! The ready announcement: once every listener accepts and the control API answers ready,
//! a server says so in one JSON line with the bound addresses (`--listen 127.0.0.1:0` resolved),
//! so a test fixture in any language can start azimds on port 0 and wait for that line instead
//! of polling a port. `main.rs` prints it on stdout, writes it to `--ready-file` and tells
//! systemd (`Type=notify`); embedders get the same [`Ready`] from [`super::Server::serve_announcing`].

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a ready server tells its starter. The JSON line's members, in this order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// The bound guest addresses (`ADDR:PORT`), in `--listen` order.
    pub guest: Vec<String>,
    /// The bound control address: `ADDR:PORT`, or `unix:/path`.
    pub control: String,
    /// Where the control API's bearer token is (TCP control only; the token itself is never
    /// printed).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_file: Option<PathBuf>,
    /// VMs served at start.
    pub vms: usize,
    /// `single` or `source-address`.
    pub callers: String,
    /// The data directory.
    pub data: PathBuf,
    /// The server's process id.
    pub pid: u32,
    /// azimds' version.
    pub version: String,
}

impl Ready {
    /// The announcement as one line of compact JSON, without the newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a Ready serializes")
    }

    /// Writes the line (with its newline) to `path` atomically: a reader that sees the file
    /// sees all of it. The file is made next to `path` and renamed over it.
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let name = path.file_name().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name")
        })?;
        let mut partial = name.to_os_string();
        partial.push(format!(".{}.partial", std::process::id()));
        let partial = path.with_file_name(partial);
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(format!("{}\n", self.to_line()).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
    }
}

/// Removes a ready file left by an earlier run, so whoever waits for it sees only this run's.
pub fn remove_stale(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Tells the service manager the server is ready (the sd_notify protocol: `READY=1` as one
/// datagram to `$NOTIFY_SOCKET`, a path or an abstract name starting with `@`).
pub fn notify_systemd(socket: &std::ffi::OsStr) -> std::io::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let sender = UnixDatagram::unbound()?;
    let message = b"READY=1\nSTATUS=serving\n";
    let bytes = socket.as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sender.send_to_addr(message, &address)?;
        }
        None => {
            sender.send_to(message, socket)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_compact_json_in_a_stable_member_order() {
        let ready = Ready {
            guest: vec!["127.0.0.1:4000".into()],
            control: "unix:/run/azimds.sock".into(),
            token_file: None,
            vms: 1,
            callers: "single".into(),
            data: "/var/lib/azimds".into(),
            pid: 7,
            version: "0.1.0".into(),
        };
        assert_eq!(
            ready.to_line(),
            r#"{"guest":["127.0.0.1:4000"],"control":"unix:/run/azimds.sock","vms":1,"callers":"single","data":"/var/lib/azimds","pid":7,"version":"0.1.0"}"#
        );
    }
}
