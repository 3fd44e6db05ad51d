//! Fleet mode (issue 11, item 1): azimds on an etcd that requires TLS client certificates and
//! user/password auth, as a production cluster does. Real etcd, real openssl making the
//! certificates, real `etcdctl` turning auth on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::fleet::{etcd, kek_file, readiness};
use crate::support::{TempDir, serve_refused, spawn_azimds};

/// Runs openssl, failing the test with its message if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        output.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, etcd's server certificate for 127.0.0.1, and `clients` client certificates of it.
fn certificates(dir: &Path, ca: &str, clients: &[&str]) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-subj",
            &format!("/CN={ca}"),
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let mut issued = vec![("server", "server.ext")];
    issued.extend(clients.iter().map(|c| (*c, "client.ext")));
    for (name, ext) in issued {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                ext,
            ],
        );
    }
}

/// An owner-only file holding `text`.
fn secret_file(path: PathBuf, text: &str) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_on_an_etcd_with_client_certificates_and_passwords() {
    let dir = TempDir::new("fleet-security");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    certificates(&certs, "fleet-ca", &["host-a"]);
    let file = |name: &str| certs.join(name);
    let etcd = etcd::TestEtcd::start_with_client_tls(
        "it-security",
        file("server.pem"),
        file("server.key"),
        file("fleet-ca.pem"),
    );
    let endpoint = format!("https://{}", etcd.endpoint());
    let etcdctl = |args: &[&str]| {
        let output = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg("--cacert")
            .arg(file("fleet-ca.pem"))
            .arg("--cert")
            .arg(file("host-a.pem"))
            .arg("--key")
            .arg(file("host-a.key"))
            .args(args)
            .output()
            .expect("etcdctl (Debian etcd-client) is installed");
        assert!(output.status.success(), "etcdctl {args:?}: {output:?}");
    };
    etcdctl(&[
        "user",
        "add",
        "root",
        "--new-user-password",
        "fleet-secret-7Qx",
    ]);
    etcdctl(&["auth", "enable"]);

    let password = secret_file(dir.path().join("password"), "fleet-secret-7Qx\n");
    let wrong = secret_file(dir.path().join("wrong"), "not-the-password\n");
    let kek = kek_file(dir.path());
    let store = format!("etcd://{}", etcd.endpoint());
    let (ca, cert, key) = (file("fleet-ca.pem"), file("host-a.pem"), file("host-a.key"));
    let with = |password: &Path, client_cert: bool| -> Vec<String> {
        let mut args = vec![
            "--store".to_string(),
            store.clone(),
            "--kek-file".into(),
            kek.display().to_string(),
            "--etcd-ca-file".into(),
            ca.display().to_string(),
            "--etcd-user".into(),
            "root".into(),
            "--etcd-password-file".into(),
            password.display().to_string(),
            "--callers".into(),
            "source-address".into(),
        ];
        if client_cert {
            args.extend([
                "--etcd-cert-file".into(),
                cert.display().to_string(),
                "--etcd-key-file".into(),
                key.display().to_string(),
            ]);
        }
        args
    };

    // The right certificate and password: the host serves and writes.
    let good = with(&password, true);
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let data = dir.path().join("a");
    let host = spawn_azimds(&data, &good);
    let control = host.control_api(&data);
    let vm = json!({"callers": ["127.0.0.1"], "instance": {"compute": {"name": "over-tls"}}});
    let put = control.call("PUT", "/v1/vms/vm1", Some(&vm), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text());
    let name = host
        .imds()
        .get("/metadata/instance/compute/name?api-version=2021-02-01&format=text")
        .await;
    assert_eq!((name.status, name.text()), (200, "over-tls"));
    assert_eq!(readiness(&control).await.0, 200);
    assert!(
        !host.log_contains("fleet-secret-7Qx"),
        "the etcd password is never logged"
    );
    drop(host);

    // A wrong password is a setting no retry fixes: the start stops at once, saying so.
    let bad = with(&wrong, true);
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    let (code, stderr) = serve_refused(&dir.path().join("b"), &bad, Duration::from_secs(30))
        .expect("refused at start, not waiting");
    assert_ne!(code, 0);
    assert!(
        stderr.contains("etcd refused the user name or password"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");

    // No client certificate: etcd refuses the TLS handshake, which azimds waits out as it
    // waits out an etcd that does not answer (fleet.rs tests what it says meanwhile).
    let no_cert = with(&password, false);
    let no_cert: Vec<&str> = no_cert.iter().map(String::as_str).collect();
    assert!(
        serve_refused(&dir.path().join("c"), &no_cert, Duration::from_secs(4)).is_none(),
        "without a client certificate the host waits for etcd"
    );
}
