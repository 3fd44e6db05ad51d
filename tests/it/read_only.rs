//! Issue 14 item 4: a data directory azimds cannot write is never half-used. A read-only data
//! directory, store file or key directory is refused at start with exit code 1 and a message
//! naming it; one that turns read-only while serving makes `/readyz` answer 503 naming it,
//! and ready again once it is writable. Against the real binary, as root: permission bits do
//! not stop root, so each path is made read-only for real, by a read-only bind mount in a
//! mount namespace of the server's own (`unshare --mount`: the mount ends with the process) or
//! by `chattr +i` (undone on drop).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{
    ControlApi, TempDir, in_mount_namespace, serve_refused_through, spawn_azimds,
};

/// A launcher that runs the server in a mount namespace of its own where `path` is a
/// read-only bind mount of itself.
fn read_only_mount(path: &Path) -> Vec<String> {
    in_mount_namespace(
        r#"mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" && shift && exec "$@""#,
        path,
    )
}

/// `chattr +i` on a path until dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        let status = Command::new("chattr").arg("+i").arg(path).status().unwrap();
        assert!(
            status.success(),
            "chattr +i needs root on ext4, xfs or btrfs"
        );
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// A data directory made by a first start (store, keys, token), then stopped.
fn prepared(dir: &TempDir) -> PathBuf {
    let data = dir.path().join("data");
    drop(spawn_azimds(&data, &[]));
    data
}

/// Starts azimds on `data` through `launcher`; it must refuse within 10 s with exit code 1 and
/// a message naming `path` and `why`.
fn assert_refused(launcher: &[String], data: &Path, path: &Path, why: &str) {
    let Some((code, stderr)) = serve_refused_through(launcher, data, &[], Duration::from_secs(10))
    else {
        panic!("azimds started on {} instead of refusing", data.display());
    };
    assert_eq!(code, 1, "{stderr}");
    let expected = format!(
        "azimds: error: refusing a data directory that cannot be written: {} is not writable: {why}",
        path.display()
    );
    assert!(stderr.contains(&expected), "{expected:?} not in {stderr:?}");
}

#[test]
fn a_read_only_data_directory_is_refused_at_start() {
    let dir = TempDir::new("ro-data");
    let data = prepared(&dir);
    assert_refused(
        &read_only_mount(&data),
        &data,
        &data,
        "it is on a read-only file system",
    );
    // An empty one, as a first start would find it, too: nothing is created in it.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::set_permissions(&empty, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    assert_refused(
        &read_only_mount(&empty),
        &empty,
        &empty,
        "it is on a read-only file system",
    );
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn a_read_only_store_file_is_refused_at_start() {
    let dir = TempDir::new("ro-store");
    let data = prepared(&dir);
    let store = data.join("azimds.redb");
    let before = std::fs::read(&store).unwrap();
    assert_refused(
        &read_only_mount(&store),
        &data,
        &store,
        "it is on a read-only file system",
    );
    let _immutable = Immutable::set(&store);
    assert_refused(&[], &data, &store, "it is immutable (chattr +i)");
    assert_eq!(
        std::fs::read(&store).unwrap(),
        before,
        "the store was not touched"
    );
}

#[test]
fn a_read_only_key_directory_is_refused_at_start() {
    let dir = TempDir::new("ro-keys");
    let data = prepared(&dir);
    let keys = data.join("keys");
    assert_refused(
        &read_only_mount(&keys),
        &data,
        &keys,
        "it is on a read-only file system",
    );
    let attested = keys.join("attested");
    let _immutable = Immutable::set(&attested);
    assert_refused(&[], &data, &attested, "it is immutable (chattr +i)");
}

/// A key directory that turns read-only while serving: not ready, naming it, and a rotation
/// fails (never acknowledged); writable again, ready again and rotations work.
#[tokio::test]
async fn a_data_directory_that_turns_read_only_is_reported_by_readiness() {
    let dir = TempDir::new("ro-later");
    let data = dir.path().join("data");
    let server = spawn_azimds(&data, &[]);
    let control: ControlApi = server.control_api(&data);
    assert_eq!(control.call("GET", "/readyz", None, &[]).await.status, 200);
    let keys = data.join("keys");
    let immutable = Immutable::set(&keys);
    let ready = control.call("GET", "/readyz", None, &[]).await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.json(),
        serde_json::json!({
            "status": "data-read-only",
            "path": keys.display().to_string(),
            "error": "it is immutable (chattr +i)",
        })
    );
    let rotated = control
        .call("POST", "/v1/identity/keys/rotate", None, &[])
        .await;
    assert_eq!(rotated.status, 500, "{}", rotated.text());
    // The guest plane keeps serving meanwhile.
    let instance = server
        .imds()
        .get("/metadata/instance/compute/name?api-version=2021-02-01&format=text")
        .await;
    assert_eq!(instance.status, 200);
    drop(immutable);
    assert_eq!(control.call("GET", "/readyz", None, &[]).await.status, 200);
    let rotated = control
        .call("POST", "/v1/identity/keys/rotate", None, &[])
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
}
