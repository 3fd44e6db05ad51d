//! Issue 13: the data directory is not trusted as found. Another user's directory or files,
//! or ones others can write, are refused at start, naming the path; ones others can read are
//! used with a warning (files tightened to 0600); a short control token is refused; the store
//! file must be a store; the unix socket is owner-only and removed at shutdown. Against the
//! real binary (`AZIMDS_TEST_BIN` runs them against another build).

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::support::{TempDir, serve_refused, spawn_azimds};

/// uid and gid of `nobody` (the planted owner).
const NOBODY: u32 = 65534;
/// A token as azimds generates one: 256 bits as hex.
const GOOD_TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// A data directory made by a first start (store, keys, token), then stopped.
fn prepared(dir: &TempDir) -> std::path::PathBuf {
    let data = dir.path().join("data");
    drop(spawn_azimds(&data, &[]));
    data
}

/// Starts azimds on `data`, which must refuse within 10 s with exit code 1 and a message that
/// contains every one of `expected`.
fn assert_refused(data: &Path, extra: &[&str], expected: &[&str]) -> String {
    let Some((code, stderr)) = serve_refused(data, extra, Duration::from_secs(10)) else {
        panic!("azimds started on {} instead of refusing", data.display());
    };
    assert_eq!(code, 1, "{stderr}");
    for needle in expected {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
    stderr
}

#[test]
fn a_data_directory_others_can_write_or_own_is_refused() {
    let dir = TempDir::new("dir-loose");
    let data = prepared(&dir);
    let shown = data.display().to_string();
    set_mode(&data, 0o777);
    assert_refused(
        &data,
        &[],
        &[
            &shown,
            "other users can write to the data directory (mode 0777)",
        ],
    );
    set_mode(&data, 0o700);
    chown_nobody(&data);
    assert_refused(
        &data,
        &[],
        &[&shown, "the data directory is owned by uid 65534"],
    );
}

#[test]
fn a_data_directory_others_can_read_is_used_with_a_warning() {
    let dir = TempDir::new("dir-readable");
    let data = prepared(&dir);
    set_mode(&data, 0o755);
    let server = spawn_azimds(&data, &[]);
    assert!(
        server.log_contains("other users can list the data directory"),
        "{:?}",
        server.log.lock().unwrap()
    );
}

#[test]
fn control_tokens_others_can_change_or_that_are_short_are_refused() {
    let dir = TempDir::new("token-refused");
    let data = prepared(&dir);
    let token = data.join("control-token");
    let shown = token.display().to_string();
    set_mode(&token, 0o666);
    assert_refused(
        &data,
        &[],
        &[
            &shown,
            "other users can write to the control token (mode 0666)",
        ],
    );
    set_mode(&token, 0o600);
    chown_nobody(&token);
    assert_refused(&data, &[], &[&shown, "owned by uid 65534"]);
    std::fs::remove_file(&token).unwrap();
    std::fs::write(&token, "deadbeef\n").unwrap();
    set_mode(&token, 0o600);
    assert_refused(
        &data,
        &[],
        &[&shown, "the token has 8 characters; at least 32"],
    );
}

#[tokio::test]
async fn a_readable_control_token_is_tightened_with_a_warning() {
    let dir = TempDir::new("token-readable");
    let data = prepared(&dir);
    let token = data.join("control-token");
    std::fs::write(&token, GOOD_TOKEN).unwrap();
    set_mode(&token, 0o644);
    let server = spawn_azimds(&data, &[]);
    assert!(
        server.log_contains(
            "the control token was readable by other users; it is now owner-only (0600)"
        ),
        "{:?}",
        server.log.lock().unwrap()
    );
    assert_eq!(mode(&token), 0o600);
    let control = server.control_api(&data);
    assert_eq!(control.token.as_deref(), Some(GOOD_TOKEN));
    assert_eq!(
        control.call("GET", "/v1/status", None, &[]).await.status,
        200
    );
}

#[test]
fn a_store_file_others_could_read_is_tightened_and_another_users_is_refused() {
    let dir = TempDir::new("store-perms");
    let data = prepared(&dir);
    let store = data.join("azimds.redb");
    set_mode(&store, 0o644);
    let server = spawn_azimds(&data, &[]);
    assert!(
        server.log_contains("the store was readable by other users; it is now owner-only (0600)"),
        "{:?}",
        server.log.lock().unwrap()
    );
    drop(server);
    assert_eq!(mode(&store), 0o600);
    chown_nobody(&store);
    assert_refused(
        &data,
        &[],
        &[
            &store.display().to_string(),
            "the store is owned by uid 65534",
        ],
    );
}

/// A store file that exists must be a store: an empty one would silently be a new, empty
/// store (and get the demo VM seeded over it); a foreign or damaged one says so once.
#[test]
fn an_empty_or_foreign_store_file_is_refused_naming_it() {
    let dir = TempDir::new("store-not-redb");
    let data = prepared(&dir);
    let store = data.join("azimds.redb");
    let shown = store.display().to_string();
    let good = std::fs::read(&store).unwrap();

    std::fs::write(&store, b"").unwrap();
    let stderr = assert_refused(
        &data,
        &[],
        &[&format!(
            "cannot open the store {shown}: the file is empty (0 bytes)"
        )],
    );
    assert!(
        stderr.contains("delete it to start with an empty store"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::metadata(&store).unwrap().len(),
        0,
        "the empty file is left as it was"
    );

    std::fs::write(&store, "vms: []\n").unwrap();
    assert_refused(
        &data,
        &[],
        &[&format!(
            "cannot open the store {shown}: the file is not an azimds store"
        )],
    );

    // redb's signature, then the rest cut off: it says corrupted, once, not "failed to fill
    // whole buffer".
    std::fs::write(&store, &good[..20]).unwrap();
    let stderr = assert_refused(&data, &[], &[&shown, "the store file is corrupted"]);
    assert!(!stderr.contains("fill whole buffer"), "{stderr}");

    std::fs::write(&store, &good[..good.len() / 2]).unwrap();
    let stderr = assert_refused(&data, &[], &[&shown, "the store file is corrupted ("]);
    let detail = stderr
        .split("the store file is corrupted (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap();
    assert_eq!(stderr.matches(detail).count(), 1, "said once: {stderr}");
}

#[test]
fn the_control_socket_is_owner_only_and_removed_at_shutdown() {
    let dir = TempDir::new("socket");
    let data = dir.path().join("data");
    let socket = dir.path().join("control.sock");
    let address = format!("unix:{}", socket.display());
    let mut server = spawn_azimds(&data, &["--control", &address]);
    let metadata = std::fs::symlink_metadata(&socket).unwrap();
    assert!(metadata.file_type().is_socket());
    assert_eq!(mode(&socket), 0o600, "owner-only");
    assert_eq!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with(".azimds-socket"))
            .count(),
        0,
        "the private staging directory is gone"
    );
    // A second server does not steal a live socket.
    let other = dir.path().join("other-data");
    let Some((code, stderr)) =
        serve_refused(&other, &["--control", &address], Duration::from_secs(10))
    else {
        panic!("a second server started on a live socket");
    };
    assert_eq!(code, 1);
    assert!(
        stderr.contains("another server is listening on it"),
        "{stderr}"
    );
    assert!(socket.exists(), "the live socket is left alone");

    let status = server.terminate(Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "the socket is removed at shutdown");
}
