//! Fleet mode (issue 11, item 4): scheduled events are one state across the hosts of a fleet.
//! Real etcd, real azimds processes: an event scheduled through one host reaches the guest of
//! the host serving its VM; that guest's approval is seen by the others; each transition
//! happens once fleet-wide (the event hooks of every host together report it once); the event
//! timer runs on the host serving the VM and moves with it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fleet::{etcd, serve_with, until_served};
use crate::support::{ControlApi, Spawned, TempDir};

const EVENTS: &str = "/metadata/scheduledevents?api-version=2020-07-01";

/// A host of the test: its process, control API and event-hook output file.
struct Host {
    server: Spawned,
    control: ControlApi,
    hook: PathBuf,
}

fn host(etcd: &etcd::TestEtcd, dir: &Path, name: &str) -> Host {
    let data = dir.join(name);
    let hook = dir.join(format!("{name}-hook.jsonl"));
    let command = format!("cat >> '{0}'; echo >> '{0}'", hook.display());
    let server = serve_with(&etcd.endpoint(), &data, name, &["--event-hook", &command]);
    let control = server.control_api(&data);
    Host {
        server,
        control,
        hook,
    }
}

/// `(transition, event id)` of every message `host`'s event hook received.
fn hooked(host: &Host) -> Vec<(String, String)> {
    std::fs::read_to_string(&host.hook)
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let message: Value = serde_json::from_str(line).unwrap();
            (
                message["transition"].as_str().unwrap().to_string(),
                message["event"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// How many times the hooks of all `hosts` reported `transition` of event `id`.
fn reported(hosts: &[&Host], transition: &str, id: &str) -> usize {
    hosts
        .iter()
        .flat_map(|host| hooked(host))
        .filter(|(t, e)| t == transition && e == id)
        .count()
}

/// Waits (at most 10 s) until the hooks of `hosts` reported each of `expected` at least once,
/// then a little more for a second report that should not come, and returns the counts.
async fn settled_reports(hosts: &[&Host], expected: &[(&str, &str)]) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while expected.iter().any(|(t, id)| reported(hosts, t, id) == 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Hooks run one after another after the write that made the transition.
    tokio::time::sleep(Duration::from_millis(500)).await;
    expected
        .iter()
        .map(|(t, id)| reported(hosts, t, id))
        .collect()
}

/// The guest's scheduled-events document (127.0.0.1's VM on `host`).
async fn document(host: &Host) -> Value {
    let reply = host.server.imds().get(EVENTS).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// The status of event `id` in the guest's document on `host`, `None` while it is not there.
async fn guest_status(host: &Host, id: &str) -> Option<String> {
    document(host).await["Events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["EventId"] == id)
        .map(|event| event["EventStatus"].as_str().unwrap().to_string())
}

/// The status of event `id` through `host`'s control API, `None` once it is gone.
async fn control_status(host: &Host, id: &str) -> Option<String> {
    let reply = host
        .control
        .call("GET", &format!("/v1/events/{id}"), None, &[])
        .await;
    match reply.status {
        200 => Some(reply.json()["status"].as_str().unwrap().to_string()),
        404 => None,
        other => panic!("GET /v1/events/{id}: {other} {}", reply.text()),
    }
}

/// Polls `probe` every 20 ms until it gives `expected`, for at most 10 s.
async fn until<F, Fut>(what: &str, expected: Option<&str>, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let started = Instant::now();
    loop {
        let got = probe().await;
        if got.as_deref() == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: {got:?}, not {expected:?}, after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn put_vm(through: &Host, id: &str, vm: Value) {
    let reply = through
        .control
        .call("PUT", &format!("/v1/vms/{id}"), Some(&vm), &[])
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
}

async fn schedule(through: &Host, request: Value) -> String {
    let reply = through
        .control
        .call("POST", "/v1/events", Some(&request), &[])
        .await;
    assert_eq!(reply.status, 201, "{request}: {}", reply.text());
    reply.json()["id"].as_str().unwrap().to_string()
}

/// Scheduled through host A for a VM host B serves: B's guest sees it, approves it there
/// (spec §6.4), and A's control API sees it started; the hooks of both hosts together report
/// its scheduling and its approval once each. An event the VM's definition lists is seeded
/// by the serving host, once, although the VM was written through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_scheduled_on_one_host_is_approved_by_the_guest_of_another() {
    let etcd = etcd::TestEtcd::start("it-events");
    let dir = TempDir::new("fleet-events");
    let a = host(&etcd, dir.path(), "host-a");
    let b = host(&etcd, dir.path(), "host-b");
    put_vm(
        &a,
        "vm1",
        json!({
            "host": "host-b",
            "callers": ["127.0.0.1"],
            "instance": {"compute": {"name": "vm-events"}},
            "scheduledEvents": [{
                "EventId": "28512AF7-C957-4500-9BC4-842D6FB531E4",
                "EventType": "Redeploy",
                "NotBefore": "Sat, 02 Jan 2100 00:00:00 GMT",
            }],
        }),
    )
    .await;
    until_served(&b.server, Some("vm-events")).await;

    let defined = "28512AF7-C957-4500-9BC4-842D6FB531E4";
    until("the defined event on B's guest", Some("Scheduled"), || {
        guest_status(&b, defined)
    })
    .await;
    until("the defined event on A", Some("Scheduled"), || {
        control_status(&a, defined)
    })
    .await;

    let id = schedule(
        &a,
        json!({"type": "Reboot", "vms": ["vm1"], "noticeSeconds": 3600}),
    )
    .await;
    until("the event on B's guest", Some("Scheduled"), || {
        guest_status(&b, &id)
    })
    .await;
    let before = document(&b).await["DocumentIncarnation"].as_u64().unwrap();

    let body = json!({"StartRequests": [{"EventId": id}]}).to_string();
    let approval = b
        .server
        .imds()
        .raw(crate::support::request_bytes(
            "POST",
            EVENTS,
            "169.254.169.254",
            &[("Metadata", "true"), ("Content-Type", "application/json")],
            body.as_bytes(),
        ))
        .await;
    assert_eq!(approval.status, 200, "{}", approval.text());
    until("the approved event on A", Some("Started"), || {
        control_status(&a, &id)
    })
    .await;
    assert_eq!(guest_status(&b, &id).await.as_deref(), Some("Started"));
    assert_eq!(
        document(&b).await["DocumentIncarnation"].as_u64().unwrap(),
        before + 1,
        "the approval changed the document once"
    );

    let hosts = [&a, &b];
    let counts = settled_reports(
        &hosts,
        &[
            ("scheduled", &id),
            ("approved", &id),
            ("scheduled", defined),
        ],
    )
    .await;
    assert_eq!(
        counts,
        [1, 1, 1],
        "scheduled, approved, the defined event seeded: A {:?}, B {:?}",
        hooked(&a),
        hooked(&b)
    );
    assert!(
        hooked(&b).contains(&("approved".to_string(), id.clone())),
        "the host whose guest approved reported it: {:?}",
        hooked(&b)
    );
}

/// The timer of an event runs on the host serving its VM: with that host gone, the other
/// does not start the event when its time comes; once the VM is moved to it, it does (and
/// completes it), and the transitions are reported once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_timer_runs_where_the_vm_is_served_and_moves_with_it() {
    let etcd = etcd::TestEtcd::start("it-event-timer");
    let dir = TempDir::new("fleet-event-timer");
    let a = host(&etcd, dir.path(), "host-a");
    let mut b = host(&etcd, dir.path(), "host-b");
    put_vm(
        &a,
        "vm1",
        json!({"host": "host-b", "callers": ["127.0.0.1"],
               "instance": {"compute": {"name": "vm-timer"}}}),
    )
    .await;
    until_served(&b.server, Some("vm-timer")).await;
    b.server.terminate(Duration::from_secs(10));

    let id = schedule(
        &a,
        json!({"type": "Reboot", "vms": ["vm1"], "noticeSeconds": 1,
               "completeAfterSeconds": 1}),
    )
    .await;
    // Past its NotBefore (1 s) with margin: host A does not serve vm1, so it leaves it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        control_status(&a, &id).await.as_deref(),
        Some("Scheduled"),
        "a host that does not serve the VM does not run the event's timer"
    );

    let moved = a
        .control
        .call(
            "PATCH",
            "/v1/vms/vm1",
            Some(&json!({"host": "host-a"})),
            &[],
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text());
    until_served(&a.server, Some("vm-timer")).await;
    // Started when its time came, completed a second later: then it is gone.
    until("the event on A after the move", None, || {
        control_status(&a, &id)
    })
    .await;
    let counts = settled_reports(&[&a, &b], &[("started", &id), ("completed", &id)]).await;
    assert_eq!(counts, [1, 1], "started, completed: {:?}", hooked(&a));
}

/// A VM that names no host is served by every host, so every host's timer may move its
/// event: the transitions are conditional writes, so each happens once fleet-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_serving_one_vm_start_its_event_once() {
    let etcd = etcd::TestEtcd::start("it-event-race");
    let dir = TempDir::new("fleet-event-race");
    let a = host(&etcd, dir.path(), "host-a");
    let b = host(&etcd, dir.path(), "host-b");
    put_vm(
        &a,
        "vm1",
        json!({"callers": ["127.0.0.1"], "instance": {"compute": {"name": "vm-both"}}}),
    )
    .await;
    until_served(&a.server, Some("vm-both")).await;
    until_served(&b.server, Some("vm-both")).await;

    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            schedule(
                &b,
                json!({"type": "Freeze", "vms": ["vm1"], "noticeSeconds": 1,
                       "completeAfterSeconds": 1}),
            )
            .await,
        );
    }
    for id in &ids {
        until("the event on A", None, || control_status(&a, id)).await;
        until("the event on B", None, || control_status(&b, id)).await;
    }
    let hosts = [&a, &b];
    let expected: Vec<(&str, &str)> = ids
        .iter()
        .flat_map(|id| {
            [
                ("scheduled", id.as_str()),
                ("started", id),
                ("completed", id),
            ]
        })
        .collect();
    let counts = settled_reports(&hosts, &expected).await;
    assert!(
        counts.iter().all(|&n| n == 1),
        "each transition once: {counts:?}\nA {:?}\nB {:?}",
        hooked(&a),
        hooked(&b)
    );
    // Each start and each completion bumped the document once: 5 events, scheduled,
    // started and removed, from incarnation 1.
    let incarnation = document(&a).await["DocumentIncarnation"].as_u64().unwrap();
    assert_eq!(incarnation, 1 + 3 * 5, "{}", document(&b).await);
    assert_eq!(
        document(&b).await["DocumentIncarnation"].as_u64().unwrap(),
        incarnation
    );
}
