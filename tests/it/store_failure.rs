//! Issue 13: a full disk. The data directory is a small tmpfs this test mounts (root), filled
//! to the last byte; writes then get 503 with the reason (never acknowledged), readiness and
//! `azimds status` say the store cannot write, the guest plane keeps serving, and once space
//! is freed writes work again without a restart: on the next write, on the server's own
//! probe, and for the events timer. Against the real binary (`AZIMDS_TEST_BIN` runs them
//! against another build).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{ControlApi, Spawned, TempDir, azimds_binary, spawn_azimds};

/// A tmpfs of `MiB` megabytes mounted for one test, unmounted and removed on drop.
struct Tmpfs {
    mount: PathBuf,
    _parent: TempDir,
}

impl Tmpfs {
    fn mount(name: &str, mib: u32) -> Tmpfs {
        let parent = TempDir::new(name);
        let mount = parent.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(&mount)
            .status()
            .unwrap();
        assert!(mounted.success(), "mounting a tmpfs needs root");
        Tmpfs {
            mount,
            _parent: parent,
        }
    }

    /// Writes a filler file until the file system is full; returns it.
    fn fill(&self) -> PathBuf {
        let path = self.mount.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in [1 << 20, 4096, 1] {
            let bytes = vec![0xA5u8; chunk];
            while file.write_all(&bytes).and_then(|()| file.flush()).is_ok() {}
        }
        assert_eq!(
            rustix::fs::statvfs(&self.mount).unwrap().f_bavail,
            0,
            "the file system is full"
        );
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.mount).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
    }
}

/// VM `a`, the guest this test plays (from 127.0.0.1), owned by the definitions file.
const VM_A: &str = "vms:
  - id: a
    callers: [127.0.0.1]
    instance: {compute: {name: vm-a}}
";

fn start(dir: &Path, data: &Path) -> Spawned {
    let file = dir.join("vms.yaml");
    std::fs::write(&file, VM_A).unwrap();
    spawn_azimds(
        data,
        &[
            "--callers",
            "source-address",
            "--vms",
            file.to_str().unwrap(),
        ],
    )
}

/// A VM entry for `id`, answering `caller`, with `payload` bytes of userData.
fn vm(caller: &str, payload: usize) -> Value {
    json!({"callers": [caller], "instance": {"compute": {"userData": "A".repeat(payload)}}})
}

/// Schedules an event for VM `a` whose record is large (so rewriting it needs room).
async fn schedule_large_event(control: &ControlApi, notice_seconds: u64) -> String {
    let request = json!({
        "type": "Reboot",
        "vms": ["a"],
        "noticeSeconds": notice_seconds,
        "description": "d".repeat(150_000),
    });
    let reply = control
        .call("POST", "/v1/events", Some(&request), &[])
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["id"].as_str().unwrap().to_string()
}

/// What happened to the writes made until the store refused one.
struct Exhausted {
    /// VM ids acknowledged while filling.
    acknowledged: Vec<String>,
    /// The VM whose write got the 503.
    refused: String,
    /// That 503.
    reply: crate::support::Reply,
}

/// With the file system full: writes large VMs until one is refused, then small ones until
/// one is, so even the pages redb has free inside its file are used up.
async fn exhaust(control: &ControlApi, round: &str) -> Exhausted {
    let mut acknowledged = Vec::new();
    let mut first = None;
    for (size, count) in [(200_000, 100), (10, 4000)] {
        for n in 0..count {
            let id = format!("{round}-{size}-{n}");
            let caller = format!(
                "10.{}.{}.{}",
                acknowledged.len() / 250 % 250,
                acknowledged.len() % 250,
                size % 250
            );
            let reply = control
                .call(
                    "PUT",
                    &format!("/v1/vms/{id}"),
                    Some(&vm(&caller, size)),
                    &[],
                )
                .await;
            match reply.status {
                201 => acknowledged.push(id),
                503 => {
                    first.get_or_insert((id, reply));
                    break;
                }
                other => panic!("PUT {id}: {other} {}", reply.text()),
            }
            assert!(
                n + 1 < count,
                "no write was refused after {count} of {size} bytes"
            );
        }
    }
    let (refused, reply) = first.unwrap();
    Exhausted {
        acknowledged,
        refused,
        reply,
    }
}

async fn approve(server: &Spawned, event: &str) -> crate::support::Reply {
    let body = json!({"StartRequests": [{"EventId": event}]}).to_string();
    server
        .imds()
        .raw(crate::support::request_bytes(
            "POST",
            "/metadata/scheduledevents?api-version=2020-07-01",
            "169.254.169.254",
            &[("Metadata", "true")],
            body.as_bytes(),
        ))
        .await
}

async fn event_status(control: &ControlApi, event: &str) -> String {
    let reply = control
        .call("GET", &format!("/v1/events/{event}"), None, &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["status"].as_str().unwrap().to_string()
}

async fn guest_name(server: &Spawned) -> String {
    let reply = server
        .imds()
        .get("/metadata/instance/compute/name?api-version=2021-02-01&format=text")
        .await;
    assert_eq!(reply.status, 200);
    reply.text().to_string()
}

async fn readiness(control: &ControlApi) -> (u16, Value) {
    let reply = control
        .anonymous()
        .call_raw("GET", "/readyz", None, &[])
        .await;
    (reply.status, reply.json())
}

/// Every 503, readiness, status and the guest plane while the disk is full; writes work again
/// as soon as it has room; everything acknowledged survives a restart, nothing refused does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_503_and_heals_without_a_restart() {
    let dir = TempDir::new("disk-full");
    let tmpfs = Tmpfs::mount("disk-full-fs", 16);
    let data = tmpfs.mount.join("data");
    let mut server = start(dir.path(), &data);
    let control = server.control_api(&data);
    let run = async {
        let event = schedule_large_event(&control, 3600).await;
        let filler = tmpfs.fill();
        let full = exhaust(&control, "full").await;

        // The refused write: a 503 that says why and that nothing was changed.
        assert_eq!(full.reply.header("retry-after"), Some("5"));
        let error = &full.reply.json()["error"];
        assert_eq!(error["code"], "store_unavailable");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("No space left on device") && message.contains("Nothing was changed"),
            "{message}"
        );
        let refused = control
            .call("GET", &format!("/v1/vms/{}", full.refused), None, &[])
            .await;
        assert_eq!(refused.status, 404, "the refused VM was not written");

        // Readiness and status say so; so does `azimds status`.
        let (status, body) = readiness(&control).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "store-unavailable");
        assert_eq!(body["store"]["writable"], false);
        assert!(
            body["store"]["error"]
                .as_str()
                .unwrap()
                .contains("No space left on device"),
            "{body}"
        );
        let reported = control.call("GET", "/v1/status", None, &[]).await.json();
        assert_eq!(reported["store"]["writable"], false, "{reported}");
        let cli = Command::new(azimds_binary())
            .args(["status", "--control", &server.control, "--token"])
            .arg(control.token.as_deref().unwrap())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&cli.stdout);
        assert!(
            out.lines()
                .any(|l| l.starts_with("store") && l.contains("cannot write since")),
            "{out}"
        );

        // The guest plane serves on; an approval that cannot be recorded is §8.4's 503.
        let name = server
            .imds()
            .get("/metadata/instance/compute/name?api-version=2021-02-01&format=text")
            .await;
        assert_eq!((name.status, name.text()), (200, "vm-a"));
        let document = server
            .imds()
            .get("/metadata/scheduledevents?api-version=2020-07-01")
            .await;
        assert_eq!(document.status, 200);
        assert_eq!(document.json()["Events"][0]["EventId"], event);
        let approval = approve(&server, &event).await;
        assert_eq!(
            (approval.status, approval.text()),
            (
                503,
                r#"{"error":"Internal service unavailable. Please retry later."}"#
            )
        );
        let start = control
            .call("POST", &format!("/v1/events/{event}/start"), None, &[])
            .await;
        assert_eq!(
            (start.status, start.json()["error"]["code"].as_str()),
            (503, Some("store_unavailable"))
        );
        assert_eq!(event_status(&control, &event).await, "Scheduled");
        // Reads still work.
        let listed = control.call("GET", "/v1/vms", None, &[]).await;
        assert_eq!(listed.status, 200);
        assert_eq!(
            listed.json()["vms"].as_array().unwrap().len(),
            full.acknowledged.len() + 1
        );

        // Room again: the next write works, without a restart.
        std::fs::remove_file(filler).unwrap();
        let after = control
            .call("PUT", "/v1/vms/after", Some(&vm("10.250.0.1", 10)), &[])
            .await;
        assert_eq!(after.status, 201, "{}", after.text());
        assert_eq!(readiness(&control).await.0, 200);
        let reported = control.call("GET", "/v1/status", None, &[]).await.json();
        assert_eq!(
            reported["store"],
            json!({"writable": true, "error": null, "failingSince": null})
        );
        assert_eq!(approve(&server, &event).await.status, 200);
        assert_eq!(event_status(&control, &event).await, "Started");
        full
    };
    let full = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the test finishes within 120 s");

    // What was acknowledged is durable; what was refused never appears.
    assert!(server.terminate(Duration::from_secs(5)).success());
    let server = start(dir.path(), &data);
    let control = server.control_api(&data);
    let listed = control.call("GET", "/v1/vms", None, &[]).await.json();
    let ids: Vec<&str> = listed["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    for id in full
        .acknowledged
        .iter()
        .map(String::as_str)
        .chain(["a", "after"])
    {
        assert!(ids.contains(&id), "{id} was acknowledged: {ids:?}");
    }
    assert!(
        !ids.contains(&full.refused.as_str()),
        "{} was refused",
        full.refused
    );
    assert_eq!(ids.len(), full.acknowledged.len() + 2);
    drop(server);
    drop(tmpfs);
}

/// What the events timer and the definitions-file watcher log when the store refuses them.
const TRANSIENT_FAILURES: [&str; 2] = [
    "applying due scheduled-event transitions failed",
    "keeping the previous VMs and retrying every second",
];

/// Nobody writes: the server's own probe finds that the store can commit again. And the
/// events timer, whose due transition failed while the disk was full, and an edit of the
/// definitions file made meanwhile, are applied by themselves once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_and_the_events_timer_recover_by_themselves() {
    let dir = TempDir::new("disk-full-probe");
    let tmpfs = Tmpfs::mount("disk-full-probe-fs", 16);
    let data = tmpfs.mount.join("data");
    let server = start(dir.path(), &data);
    let control = server.control_api(&data);
    let run = async {
        let filler = tmpfs.fill();
        exhaust(&control, "probe").await;
        assert_eq!(readiness(&control).await.0, 503);
        std::fs::remove_file(filler).unwrap();
        assert!(
            server.wait_for_log("the store commits again", 1, Duration::from_secs(20)),
            "{:?}",
            server.log.lock().unwrap()
        );
        assert_eq!(readiness(&control).await.0, 200);

        // A transition that comes due, and a file edit, while the disk is full.
        let event = schedule_large_event(&control, 2).await;
        let filler = tmpfs.fill();
        exhaust(&control, "timer").await;
        let edited = format!(
            "vms:\n  - id: a\n    callers: [127.0.0.1]\n    instance: {{compute: {{name: vm-a-edited, userData: {}}}}}\n",
            "A".repeat(150_000)
        );
        std::fs::write(dir.path().join("vms.yaml"), edited).unwrap();
        for failure in TRANSIENT_FAILURES {
            assert!(
                server.wait_for_log(failure, 1, Duration::from_secs(15)),
                "{failure}: {:?}",
                server.log.lock().unwrap()
            );
        }
        assert_eq!(event_status(&control, &event).await, "Scheduled");
        assert_eq!(guest_name(&server).await, "vm-a");
        std::fs::remove_file(filler).unwrap();
        for recovered in [
            "due scheduled-event transitions applied again",
            "VM definitions file changed and was applied",
        ] {
            assert!(
                server.wait_for_log(recovered, 1, Duration::from_secs(15)),
                "{recovered}: {:?}",
                server.log.lock().unwrap()
            );
        }
        assert_eq!(event_status(&control, &event).await, "Started");
        assert_eq!(guest_name(&server).await, "vm-a-edited");
        for failure in TRANSIENT_FAILURES {
            assert_eq!(
                server.log_count(failure),
                1,
                "retried once a second, logged once: {failure}"
            );
        }
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the test finishes within 120 s");
    drop(server);
    drop(tmpfs);
}
