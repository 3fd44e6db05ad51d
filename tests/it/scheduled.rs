//! Scheduled events (spec §6) over HTTP.
//!
//! In-process: a real guest listener and a real control listener share one registry and one
//! events engine on a [`ManualClock`]; time moves only with `tick` (clock, then
//! `Maintenance::advance`), so no test sleeps. Every expected value is written from the spec:
//! documents byte for byte (§6.2), version gating (§6.1), approval (§6.4), lifecycle and notice
//! (§6.5), activation (§6.6), ETag (§6.9).
//!
//! Real binary: persistence across a restart, the timer on the real clock, hooks (command and
//! HTTP, failing ones too), and `scheduledEvents` in a definitions file.
//!

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use azimds::clock::ManualClock;
use azimds::maintenance::{Maintenance, MaintenanceConfig};
use azimds::snapshot::CallerMode;

use crate::support::{Reply, TempDir, TestConfig, TestImds, TestServer, Vms};

/// Three loopback addresses, three VMs in `source-address` mode.
const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const C: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

const EVENTS: &str = "/metadata/scheduledevents";
/// §6.1: the scheduled-events list, oldest first, the 2017-03-01 preview included.
const VERSIONS: [&str; 7] = [
    "2017-03-01",
    "2017-08-01",
    "2017-11-01",
    "2019-01-01",
    "2019-04-01",
    "2019-08-01",
    "2020-07-01",
];
/// §1.4's wording with §6.1's three newest versions.
const EVENTS_API_VERSION_ERROR: &str = r#"{"error":"Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds","newest-versions":["2020-07-01","2019-08-01","2019-04-01"]}"#;
/// §1.10, §12.1.
const MISSING_METADATA: &str = r#"{"error":"Bad request. Required metadata header not specified"}"#;
/// §6.3.
const FREEZE_DESCRIPTION: &str =
    "Virtual machine is being paused because of a memory-preserving Live Migration operation.";

/// Mon, 11 Apr 2022 22:11:58 GMT: 15 minutes before the NotBefore of spec §6.2's example.
fn spec_example_minus_15_min() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_649_715_118)
}

/// Tue, 05 Mar 2024 10:00:00 GMT.
fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_632_800)
}

// ------------------------------------------------------------------ raw HTTP

/// One HTTP/1.1 exchange from a chosen source address; reads until the server closes.
async fn exchange(from: IpAddr, to: SocketAddr, bytes: &[u8]) -> Reply {
    TestImds { addr: to }.raw_from(from, bytes).await
}

/// Where a server's two planes listen, and how to talk to them.
#[derive(Clone)]
struct Api {
    guest: SocketAddr,
    control: SocketAddr,
    /// Bearer token of a TCP control listener; `None` when it trusts every caller.
    token: Option<String>,
}

impl Api {
    /// A guest request from `from`; `Metadata: true` is not added.
    async fn guest(
        &self,
        from: IpAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut head =
            format!("{method} {target} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n");
        if method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        exchange(from, self.guest, &bytes).await
    }

    /// `GET /metadata/scheduledevents?api-version=…` with `Metadata: true`.
    async fn get(&self, from: IpAddr, version: &str) -> Reply {
        self.guest(
            from,
            "GET",
            &format!("{EVENTS}?api-version={version}"),
            &[("Metadata", "true")],
            b"",
        )
        .await
    }

    /// The VM's document at 2020-07-01, parsed.
    async fn doc(&self, from: IpAddr) -> Value {
        let reply = self.get(from, "2020-07-01").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    async fn incarnation(&self, from: IpAddr) -> u64 {
        self.doc(from).await["DocumentIncarnation"]
            .as_u64()
            .expect("DocumentIncarnation is a JSON integer")
    }

    /// The event `id` as the VM at `from` sees it, if it does.
    async fn seen(&self, from: IpAddr, id: &str) -> Option<Value> {
        self.doc(from).await["Events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["EventId"] == id)
            .cloned()
    }

    /// POSTs `body` as a guest with `content_type` (none when `None`).
    async fn post(&self, from: IpAddr, body: &str, content_type: Option<&str>) -> Reply {
        let mut headers = vec![("Metadata", "true")];
        if let Some(content_type) = content_type {
            headers.push(("Content-Type", content_type));
        }
        self.guest(
            from,
            "POST",
            &format!("{EVENTS}?api-version=2020-07-01"),
            &headers,
            body.as_bytes(),
        )
        .await
    }

    /// Approves `ids` the way the documented samples do (§6.4).
    async fn approve(&self, from: IpAddr, ids: &[&str]) -> Reply {
        let requests: Vec<Value> = ids.iter().map(|id| json!({"EventId": id})).collect();
        let body = json!({ "StartRequests": requests }).to_string();
        self.post(from, &body, Some("application/json")).await
    }

    async fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        self.control_raw(method, path, body.map(Value::to_string))
            .await
    }

    async fn control_raw(&self, method: &str, path: &str, body: Option<String>) -> Reply {
        let body = body.unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: azimds\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(&body);
        exchange(A, self.control, head.as_bytes()).await
    }

    /// Schedules an event through the control API; returns the control view.
    async fn schedule(&self, request: Value) -> Value {
        let reply = self.control("POST", "/v1/events", Some(&request)).await;
        assert_eq!(reply.status, 201, "{request}: {}", reply.text());
        reply.json()
    }

    async fn schedule_id(&self, request: Value) -> String {
        self.schedule(request).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn command(&self, id: &str, action: &str) -> Reply {
        self.control("POST", &format!("/v1/events/{id}/{action}"), None)
            .await
    }

    /// The VM's incarnation as the control API reports it.
    async fn control_incarnation(&self, vm: &str) -> u64 {
        let reply = self
            .control("GET", &format!("/v1/vms/{vm}/events"), None)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["incarnation"].as_u64().unwrap()
    }
}

// ------------------------------------------------------------------ in-process host

/// Guest and control listeners in-process, on a paused clock.
struct Host {
    api: Api,
    clock: Arc<ManualClock>,
    engine: Arc<Maintenance>,
    _server: TestServer,
}

impl std::ops::Deref for Host {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A VM: id, `compute.name`, caller address (ignored in single mode).
type VmSpec = (&'static str, &'static str, IpAddr);

async fn start_host(mode: CallerMode, config: MaintenanceConfig, vms: &[VmSpec]) -> Host {
    start_host_at(mode, config, vms, t0()).await
}

async fn start_host_at(
    mode: CallerMode,
    config: MaintenanceConfig,
    vms: &[VmSpec],
    now: SystemTime,
) -> Host {
    let server = TestServer::start(TestConfig {
        vms: Vms::Empty,
        callers: mode,
        events: config,
        start: now,
        ..TestConfig::default()
    })
    .await;
    let host = Host {
        api: Api {
            guest: server.guest.addr,
            control: server.control.addr,
            token: server.control.token.clone(),
        },
        clock: Arc::clone(&server.clock),
        engine: Arc::clone(server.shared().events()),
        _server: server,
    };
    for (id, name, caller) in vms {
        let callers: Vec<String> = match mode {
            CallerMode::SourceAddress => vec![caller.to_string()],
            _ => Vec::new(),
        };
        let vm = json!({"callers": callers, "instance": {"compute": {"name": name}}});
        let reply = host
            .control("PUT", &format!("/v1/vms/{id}"), Some(&vm))
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    host
}

impl Host {
    /// Moves the paused clock and applies what became due; returns how many transitions.
    fn tick(&self, by: Duration) -> usize {
        self.clock.advance(by);
        self.engine.advance().unwrap()
    }
}

fn one_vm() -> [VmSpec; 1] {
    [("vm1", "vm-one", A)]
}

fn three_vms() -> [VmSpec; 3] {
    [("a", "app-0", A), ("b", "app-1", B), ("c", "db-0", C)]
}

fn ids(doc: &Value) -> Vec<String> {
    doc["Events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["EventId"].as_str().unwrap().to_string())
        .collect()
}

fn problem_paths(reply: &Reply) -> Vec<String> {
    let mut paths: Vec<String> = reply.json()["error"]["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems in {}", reply.text()))
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    paths
}

// ------------------------------------------------------------------ request rules

#[tokio::test]
async fn accepts_only_the_scheduled_events_versions() {
    let host = start_host(CallerMode::Single, MaintenanceConfig::default(), &one_vm()).await;
    for version in VERSIONS {
        let reply = host.get(A, version).await;
        assert_eq!(reply.status, 200, "{version}: {}", reply.text());
        assert!(reply.json()["Events"].as_array().unwrap().is_empty());
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
    // General (instance) versions, aliases (the previews' `{latest}` is gone, §6.1), a
    // case-changed name and no version at all: the api-version error with the
    // scheduled-events list.
    for query in [
        "api-version=2021-12-13",
        "api-version=2018-10-01",
        "api-version=2025-04-07",
        "api-version=latest",
        "api-version={latest}",
        "api-version=",
        "Api-Version=2020-07-01",
        "version=2020-07-01",
        "",
    ] {
        let reply = host
            .guest(
                A,
                "GET",
                &format!("{EVENTS}?{query}"),
                &[("Metadata", "true")],
                b"",
            )
            .await;
        assert_eq!(
            (reply.status, reply.text()),
            (400, EVENTS_API_VERSION_ERROR),
            "{query}"
        );
    }
    let no_query = host
        .guest(A, "GET", EVENTS, &[("Metadata", "true")], b"")
        .await;
    assert_eq!(
        (no_query.status, no_query.text()),
        (400, EVENTS_API_VERSION_ERROR)
    );
    let post = host
        .guest(
            A,
            "POST",
            &format!("{EVENTS}?api-version=2021-12-13"),
            &[("Metadata", "true")],
            br#"{"StartRequests":[]}"#,
        )
        .await;
    assert_eq!((post.status, post.text()), (400, EVENTS_API_VERSION_ERROR));
    // §1.6: only GET and POST.
    let put = host
        .guest(
            A,
            "PUT",
            &format!("{EVENTS}?api-version=2020-07-01"),
            &[("Metadata", "true")],
            b"",
        )
        .await;
    assert_eq!(put.status, 405);
}

#[tokio::test]
async fn requires_the_metadata_header_and_no_forwarded_for() {
    let host = start_host(CallerMode::Single, MaintenanceConfig::default(), &one_vm()).await;
    let target = format!("{EVENTS}?api-version=2020-07-01");
    for headers in [
        vec![],
        vec![("Metadata", "false")],
        vec![("Metadata", "1")],
        vec![("Metadata", "")],
    ] {
        let reply = host.guest(A, "GET", &target, &headers, b"").await;
        assert_eq!(
            (reply.status, reply.text()),
            (400, MISSING_METADATA),
            "{headers:?}"
        );
        let post = host
            .guest(A, "POST", &target, &headers, br#"{"StartRequests":[]}"#)
            .await;
        assert_eq!(
            (post.status, post.text()),
            (400, MISSING_METADATA),
            "POST {headers:?}"
        );
    }
    // §1.3: real clients send `True`, and a lower-case header name.
    for headers in [vec![("Metadata", "True")], vec![("metadata", "true")]] {
        let reply = host.guest(A, "GET", &target, &headers, b"").await;
        assert_eq!(reply.status, 200, "{headers:?}");
    }
    let forwarded = host
        .guest(
            A,
            "GET",
            &target,
            &[("Metadata", "true"), ("X-Forwarded-For", "10.0.0.9")],
            b"",
        )
        .await;
    assert_eq!(forwarded.status, 400);
}

/// §6.1: "2017-03-01 | Preview. Resource names prefixed with `_` for IaaS VMs; Metadata
/// header not enforced." 2017-08-01: "Underscore prefix removed from resource names;
/// `Metadata: true` enforced."
#[tokio::test]
async fn the_preview_prefixes_resources_and_does_not_require_the_header() {
    let host = start_host(CallerMode::Single, MaintenanceConfig::default(), &one_vm()).await;
    let preview = format!("{EVENTS}?api-version=2017-03-01");
    let id = host
        .schedule_id(json!({"type": "Reboot", "vms": ["vm1"]}))
        .await;
    let without_header = host.guest(A, "GET", &preview, &[], b"").await;
    assert_eq!(without_header.status, 200, "{}", without_header.text());
    let document = without_header.json();
    let [event] = document["Events"].as_array().unwrap().as_slice() else {
        panic!("one event: {document}");
    };
    assert_eq!(event["EventId"], id.as_str());
    assert_eq!(event["Resources"], json!(["_vm-one"]));
    // Only the fields of 2017-08-01's table, in §6.2's order: no Description or later fields.
    let expected = format!(
        r#"{{"DocumentIncarnation":{},"Events":[{{"EventId":"{id}","EventStatus":"Scheduled","EventType":"Reboot","ResourceType":"VirtualMachine","Resources":["_vm-one"],"NotBefore":"{}"}}]}}"#,
        document["DocumentIncarnation"],
        event["NotBefore"].as_str().unwrap()
    );
    assert_eq!(without_header.text(), expected);
    assert_eq!(
        host.guest(A, "GET", &preview, &[("Metadata", "true")], b"")
            .await
            .json(),
        document,
        "the header is allowed too"
    );
    // GA: the names are plain and the header is required again.
    let ga = host.get(A, "2017-08-01").await.json();
    assert_eq!(ga["Events"][0]["Resources"], json!(["vm-one"]));
    let ga_without_header = host
        .guest(
            A,
            "GET",
            &format!("{EVENTS}?api-version=2017-08-01"),
            &[],
            b"",
        )
        .await;
    assert_eq!(
        (ga_without_header.status, ga_without_header.text()),
        (400, MISSING_METADATA)
    );
    // The preview approves as GA does (§6.4's body), without the header, and X-Forwarded-For
    // is refused at every version (§1.3).
    let body = json!({"DocumentIncarnation": document["DocumentIncarnation"],
                      "StartRequests": [{"EventId": id}]})
    .to_string();
    let approved = host.guest(A, "POST", &preview, &[], body.as_bytes()).await;
    assert_eq!((approved.status, approved.text()), (200, ""));
    let started = host.get(A, "2017-03-01").await.json();
    assert_eq!(started["Events"][0]["EventStatus"], "Started");
    let forwarded = host
        .guest(A, "GET", &preview, &[("X-Forwarded-For", "10.0.0.9")], b"")
        .await;
    assert_eq!(forwarded.status, 400);
}

// ------------------------------------------------------------------ the document

/// Spec §6.2's example, reproduced on the paused clock: same bytes but for the incarnation.
#[tokio::test]
async fn document_is_byte_for_byte_azures() {
    let host = start_host_at(
        CallerMode::Single,
        MaintenanceConfig::default(),
        &one_vm(),
        spec_example_minus_15_min(),
    )
    .await;
    let empty = host.get(A, "2020-07-01").await;
    let n = empty.json()["DocumentIncarnation"].as_u64().unwrap();
    assert!(n >= 1);
    assert_eq!(
        empty.text(),
        format!(r#"{{"DocumentIncarnation":{n},"Events":[]}}"#),
        "Events is [] when nothing is pending"
    );

    // A lower-case id is upper-cased (§6.2: upper-case in every real sample).
    host.schedule(json!({
        "type": "Freeze", "vms": ["vm1"], "resources": ["WestNO_0", "WestNO_1"],
        "durationSeconds": 5, "eventId": "c7061bac-afdc-4513-b24b-aa5f13a16123",
    }))
    .await;
    let head = r#"{"EventId":"C7061BAC-AFDC-4513-B24B-AA5F13A16123","EventStatus":"Scheduled","EventType":"Freeze","ResourceType":"VirtualMachine","Resources":["WestNO_0","WestNO_1"],"NotBefore":"Mon, 11 Apr 2022 22:26:58 GMT""#;
    let description = format!(r#","Description":"{FREEZE_DESCRIPTION}""#);
    let source = r#","EventSource":"Platform""#;
    let duration = r#","DurationInSeconds":5"#;
    let n1 = n + 1;
    let wrap = |event: String| format!(r#"{{"DocumentIncarnation":{n1},"Events":[{event}]}}"#);
    // §6.1: Description from 2019-04-01, EventSource from 2019-08-01, DurationInSeconds from
    // 2020-07-01; the rest since 2017-08-01.
    let expected = [
        ("2017-08-01", wrap(format!("{head}}}"))),
        ("2017-11-01", wrap(format!("{head}}}"))),
        ("2019-01-01", wrap(format!("{head}}}"))),
        ("2019-04-01", wrap(format!("{head}{description}}}"))),
        ("2019-08-01", wrap(format!("{head}{description}{source}}}"))),
        (
            "2020-07-01",
            wrap(format!("{head}{description}{source}{duration}}}")),
        ),
    ];
    for (version, want) in &expected {
        let reply = host.get(A, version).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), want, "{version}");
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str())
        );
    }
    // The newest version is exactly the spec's sample document (whose incarnation is 2).
    let spec_sample = r#"{"DocumentIncarnation":2,"Events":[{"EventId":"C7061BAC-AFDC-4513-B24B-AA5F13A16123","EventStatus":"Scheduled","EventType":"Freeze","ResourceType":"VirtualMachine","Resources":["WestNO_0","WestNO_1"],"NotBefore":"Mon, 11 Apr 2022 22:26:58 GMT","Description":"Virtual machine is being paused because of a memory-preserving Live Migration operation.","EventSource":"Platform","DurationInSeconds":5}]}"#;
    assert_eq!(
        expected[5].1,
        spec_sample.replace(
            r#""DocumentIncarnation":2"#,
            &format!(r#""DocumentIncarnation":{n1}"#)
        )
    );

    // Started: same id, NotBefore "" (§6.2), the next incarnation.
    assert_eq!(
        host.approve(A, &["C7061BAC-AFDC-4513-B24B-AA5F13A16123"])
            .await
            .status,
        200
    );
    let started = host.get(A, "2020-07-01").await;
    assert_eq!(
        started.text(),
        format!(
            r#"{{"DocumentIncarnation":{},"Events":[{{"EventId":"C7061BAC-AFDC-4513-B24B-AA5F13A16123","EventStatus":"Started","EventType":"Freeze","ResourceType":"VirtualMachine","Resources":["WestNO_0","WestNO_1"],"NotBefore":"","Description":"{FREEZE_DESCRIPTION}","EventSource":"Platform","DurationInSeconds":5}}]}}"#,
            n + 2
        )
    );
    // DurationInSeconds 5: removed 5 s after it started.
    assert_eq!(host.tick(Duration::from_secs(4)), 0);
    assert_eq!(host.tick(Duration::from_secs(1)), 1);
    assert_eq!(
        host.get(A, "2017-08-01").await.text(),
        format!(r#"{{"DocumentIncarnation":{},"Events":[]}}"#, n + 3)
    );
}

/// §6.2's real pre-2019-04-01 document (two Reboots in 2018, same NotBefore, listed by id),
/// rebuilt through the control API: the same bytes but for the incarnation.
#[tokio::test]
async fn older_versions_serve_the_real_2018_document() {
    let host = start_host(CallerMode::Single, MaintenanceConfig::default(), &one_vm()).await;
    for (id, resource) in [
        ("A626E37F-793E-44E1-89B5-99AE0B96044C", "sample_1"),
        ("28512AF7-C957-4500-9BC4-842D6FB531E4", "sample_4"),
    ] {
        host.schedule(json!({
            "type": "Reboot", "vms": ["vm1"], "resources": [resource], "eventId": id,
            "notBefore": "Wed, 24 Jan 2018 21:20:44 GMT",
        }))
        .await;
    }
    let n = host.incarnation(A).await;
    let real = r#"{"DocumentIncarnation":192,"Events":[{"EventId":"28512AF7-C957-4500-9BC4-842D6FB531E4","EventStatus":"Scheduled","EventType":"Reboot","ResourceType":"VirtualMachine","Resources":["sample_4"],"NotBefore":"Wed, 24 Jan 2018 21:20:44 GMT"},{"EventId":"A626E37F-793E-44E1-89B5-99AE0B96044C","EventStatus":"Scheduled","EventType":"Reboot","ResourceType":"VirtualMachine","Resources":["sample_1"],"NotBefore":"Wed, 24 Jan 2018 21:20:44 GMT"}]}"#;
    let want = real.replace(
        r#""DocumentIncarnation":192"#,
        &format!(r#""DocumentIncarnation":{n}"#),
    );
    for version in ["2017-08-01", "2017-11-01", "2019-01-01"] {
        assert_eq!(host.get(A, version).await.text(), want, "{version}");
    }
}

#[tokio::test]
async fn newer_event_types_are_hidden_from_older_versions() {
    let host = start_host(CallerMode::Single, MaintenanceConfig::default(), &one_vm()).await;
    let preempt = host
        .schedule_id(json!({"type": "Preempt", "vms": ["vm1"]}))
        .await;
    let terminate = host
        .schedule_id(json!({"type": "Terminate", "vms": ["vm1"]}))
        .await;
    let reboot = host
        .schedule_id(json!({"type": "Reboot", "vms": ["vm1"]}))
        .await;
    let n = host.incarnation(A).await;
    // NotBefore order: Preempt (30 s), Terminate (5 min), Reboot (15 min).
    let expected: [(&str, Vec<&String>); 6] = [
        ("2017-08-01", vec![&reboot]),
        ("2017-11-01", vec![&preempt, &reboot]),
        ("2019-01-01", vec![&preempt, &terminate, &reboot]),
        ("2019-04-01", vec![&preempt, &terminate, &reboot]),
        ("2019-08-01", vec![&preempt, &terminate, &reboot]),
        ("2020-07-01", vec![&preempt, &terminate, &reboot]),
    ];
    for (version, want) in expected {
        let doc = host.get(A, version).await.json();
        let want: Vec<String> = want.into_iter().cloned().collect();
        assert_eq!(ids(&doc), want, "{version}");
        assert_eq!(
            doc["DocumentIncarnation"], n,
            "one incarnation for every version"
        );
    }
}

#[tokio::test]
async fn etag_is_the_incarnation_and_if_none_match_answers_304() {
    let host = start_host(CallerMode::Single, MaintenanceConfig::default(), &one_vm()).await;
    let target = format!("{EVENTS}?api-version=2020-07-01");
    let first = host.get(A, "2020-07-01").await;
    let n = first.json()["DocumentIncarnation"].as_u64().unwrap();
    let etag = format!("\"{n}\"");
    assert_eq!(first.header("etag"), Some(etag.as_str()));

    let unchanged = host
        .guest(
            A,
            "GET",
            &target,
            &[("Metadata", "true"), ("If-None-Match", &etag)],
            b"",
        )
        .await;
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.body.is_empty(), "{}", unchanged.text());
    assert_eq!(unchanged.header("etag"), Some(etag.as_str()));

    let other = host
        .guest(
            A,
            "GET",
            &target,
            &[("Metadata", "true"), ("If-None-Match", "\"999999\"")],
            b"",
        )
        .await;
    assert_eq!(
        (other.status, other.body.clone()),
        (200, first.body.clone())
    );

    // A new event: the old tag no longer matches, and the new one is the new incarnation.
    let id = host
        .schedule_id(json!({"type": "Reboot", "vms": ["vm1"]}))
        .await;
    let changed = host
        .guest(
            A,
            "GET",
            &target,
            &[("Metadata", "true"), ("If-None-Match", &etag)],
            b"",
        )
        .await;
    assert_eq!(changed.status, 200);
    let new_etag = format!("\"{}\"", n + 1);
    assert_eq!(changed.header("etag"), Some(new_etag.as_str()));
    assert_eq!(changed.json()["DocumentIncarnation"], n + 1);

    // The Node sample sends If-None-Match on its POST too (§6.9).
    let body = json!({"StartRequests": [{"EventId": id}]}).to_string();
    let approved = host
        .guest(
            A,
            "POST",
            &target,
            &[
                ("Metadata", "true"),
                ("Content-Type", "application/json"),
                ("If-None-Match", &new_etag),
            ],
            body.as_bytes(),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.text());
    assert_eq!(host.seen(A, &id).await.unwrap()["EventStatus"], "Started");
}

// ------------------------------------------------------------------ approval

/// §6.4: the body is JSON whatever the Content-Type; several ids in one call; 200, empty body.
#[tokio::test]
async fn approval_parses_json_whatever_the_content_type() {
    let host = start_host(CallerMode::Single, MaintenanceConfig::default(), &one_vm()).await;
    let mut events = Vec::new();
    for _ in 0..5 {
        events.push(
            host.schedule_id(json!({"type": "Reboot", "vms": ["vm1"]}))
                .await,
        );
    }
    let body = |ids: &[&String]| {
        let requests: Vec<Value> = ids.iter().map(|id| json!({"EventId": id})).collect();
        json!({"StartRequests": requests}).to_string()
    };
    let cases = [
        (vec![&events[0]], Some("application/json")),
        (vec![&events[1]], Some("application/x-www-form-urlencoded")),
        (vec![&events[2]], None),
        (vec![&events[3], &events[4]], Some("text/plain")),
    ];
    for (ids, content_type) in cases {
        let before = host.incarnation(A).await;
        let reply = host.post(A, &body(&ids), content_type).await;
        assert_eq!(reply.status, 200, "{content_type:?}: {}", reply.text());
        assert!(reply.body.is_empty(), "{}", reply.text());
        for id in &ids {
            let event = host.seen(A, id).await.unwrap();
            assert_eq!(
                (event["EventStatus"].as_str(), event["NotBefore"].as_str()),
                (Some("Started"), Some("")),
                "{content_type:?}"
            );
        }
        // §6.5: every transition increments DocumentIncarnation.
        assert_eq!(
            host.incarnation(A).await,
            before + ids.len() as u64,
            "{content_type:?}"
        );
    }
    // EventIds are matched case-insensitively (§6.4 recommendation).
    let lower = host
        .schedule_id(json!({"type": "Reboot", "vms": ["vm1"]}))
        .await;
    let reply = host.approve(A, &[&lower.to_ascii_lowercase()]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        host.seen(A, &lower).await.unwrap()["EventStatus"],
        "Started"
    );
}

/// §6.4: approving starts the event for every VM it lists; the incarnation of exactly those
/// VMs moves; approving again is a 200 that changes nothing.
#[tokio::test]
async fn approval_starts_the_event_for_every_vm_it_lists() {
    let host = start_host(
        CallerMode::SourceAddress,
        MaintenanceConfig::default(),
        &three_vms(),
    )
    .await;
    let (ia, ib, ic) = (
        host.incarnation(A).await,
        host.incarnation(B).await,
        host.incarnation(C).await,
    );
    let shared = host
        .schedule_id(json!({"type": "Reboot", "vms": ["a", "b"]}))
        .await;
    for from in [A, B] {
        let event = host.seen(from, &shared).await.expect("both VMs see it");
        assert_eq!(event["EventStatus"], "Scheduled");
        assert_eq!(
            event["Resources"],
            json!(["app-0", "app-1"]),
            "names of both VMs"
        );
    }
    assert!(host.seen(C, &shared).await.is_none(), "c is not listed");
    assert_eq!(
        (
            host.incarnation(A).await,
            host.incarnation(B).await,
            host.incarnation(C).await
        ),
        (ia + 1, ib + 1, ic),
        "only the listed VMs' documents changed"
    );

    // b (127.0.0.2) approves; a sees it Started too.
    let reply = host.approve(B, &[&shared]).await;
    assert_eq!((reply.status, reply.text()), (200, ""));
    for from in [A, B] {
        let event = host.seen(from, &shared).await.unwrap();
        assert_eq!(
            (event["EventStatus"].as_str(), event["NotBefore"].as_str()),
            (Some("Started"), Some(""))
        );
    }
    assert_eq!(
        (
            host.incarnation(A).await,
            host.incarnation(B).await,
            host.incarnation(C).await
        ),
        (ia + 2, ib + 2, ic)
    );

    // Approving again, from the other VM: 200, no change.
    let again = host.approve(A, &[&shared]).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        (host.incarnation(A).await, host.incarnation(B).await),
        (ia + 2, ib + 2),
        "re-approval changes no document"
    );

    // An event of another VM is not the caller's to approve.
    let theirs = host
        .schedule_id(json!({"type": "Redeploy", "vms": ["c"]}))
        .await;
    assert_eq!(host.incarnation(A).await, ia + 2);
    let refused = host.approve(A, &[&theirs]).await;
    assert_eq!(
        (refused.status, refused.text()),
        (400, r#"{"error":"Bad request. Unknown EventId"}"#)
    );
    assert_eq!(
        host.seen(C, &theirs).await.unwrap()["EventStatus"],
        "Scheduled"
    );
    assert_eq!(host.incarnation(C).await, ic + 1);

    // Unknown id: 400. All or nothing: a known id next to an unknown one is not approved.
    let own = host
        .schedule_id(json!({"type": "Reboot", "vms": ["a"]}))
        .await;
    let before = host.incarnation(A).await;
    for ids in [
        vec!["00000000-0000-0000-0000-000000000000"],
        vec![own.as_str(), "11111111-2222-3333-4444-555555555555"],
    ] {
        let reply = host.approve(A, &ids).await;
        assert_eq!(
            (reply.status, reply.text()),
            (400, r#"{"error":"Bad request. Unknown EventId"}"#),
            "{ids:?}"
        );
    }
    assert_eq!(
        host.seen(A, &own).await.unwrap()["EventStatus"],
        "Scheduled"
    );
    assert_eq!(host.incarnation(A).await, before);
}

#[tokio::test]
async fn malformed_start_requests_are_400() {
    let host = start_host(CallerMode::Single, MaintenanceConfig::default(), &one_vm()).await;
    let id = host
        .schedule_id(json!({"type": "Reboot", "vms": ["vm1"]}))
        .await;
    let before = host.incarnation(A).await;
    let malformed = [
        String::new(),
        "not json".into(),
        format!("StartRequests={id}"),
        "[]".into(),
        "{}".into(),
        r#"{"StartRequests":{}}"#.into(),
        format!(r#"{{"StartRequests":{{"EventId":"{id}"}}}}"#),
        r#"{"StartRequests":[{}]}"#.into(),
        r#"{"StartRequests":[{"EventId":7}]}"#.into(),
        format!(r#"{{"StartRequests":[{{"Id":"{id}"}}]}}"#),
        format!(r#"{{"StartRequests":[{{"EventId":"{id}"}}]"#),
    ];
    for body in &malformed {
        let reply = host.post(A, body, Some("application/json")).await;
        assert_eq!(reply.status, 400, "{body:?}: {}", reply.text());
        assert_eq!(
            reply.text(),
            r#"{"error":"Bad request. The body must be {\"StartRequests\":[{\"EventId\":\"<id>\"}]}"}"#,
            "{body:?}"
        );
    }
    assert_eq!(host.seen(A, &id).await.unwrap()["EventStatus"], "Scheduled");
    assert_eq!(host.incarnation(A).await, before);
}

// ------------------------------------------------------------------ lifecycle on the clock

/// §6.5: minimum notice per type; Terminate's is the configured one; overrides.
#[tokio::test]
async fn each_type_gets_azures_minimum_notice_unless_overridden() {
    let config = MaintenanceConfig {
        terminate_notice: Duration::from_secs(7 * 60),
        ..MaintenanceConfig::default()
    };
    let host = start_host(CallerMode::Single, config, &one_vm()).await;
    let cases = [
        (
            json!({"type": "Freeze"}),
            "Tue, 05 Mar 2024 10:15:00 GMT",
            "2024-03-05T10:15:00Z",
        ),
        (
            json!({"type": "Reboot"}),
            "Tue, 05 Mar 2024 10:15:00 GMT",
            "2024-03-05T10:15:00Z",
        ),
        (
            json!({"type": "Redeploy"}),
            "Tue, 05 Mar 2024 10:10:00 GMT",
            "2024-03-05T10:10:00Z",
        ),
        (
            json!({"type": "Preempt"}),
            "Tue, 05 Mar 2024 10:00:30 GMT",
            "2024-03-05T10:00:30Z",
        ),
        (
            json!({"type": "Terminate"}),
            "Tue, 05 Mar 2024 10:07:00 GMT",
            "2024-03-05T10:07:00Z",
        ),
        (
            json!({"type": "Reboot", "noticeSeconds": 120}),
            "Tue, 05 Mar 2024 10:02:00 GMT",
            "2024-03-05T10:02:00Z",
        ),
        (
            json!({"type": "Reboot", "notBefore": "2024-03-06T08:30:00Z"}),
            "Wed, 06 Mar 2024 08:30:00 GMT",
            "2024-03-06T08:30:00Z",
        ),
        (
            json!({"type": "Redeploy", "notBefore": "Wed, 06 Mar 2024 09:45:10 GMT"}),
            "Wed, 06 Mar 2024 09:45:10 GMT",
            "2024-03-06T09:45:10Z",
        ),
    ];
    for (mut request, guest_time, control_time) in cases {
        request["vms"] = json!(["vm1"]);
        let event = host.schedule(request.clone()).await;
        assert_eq!(event["notBefore"], control_time, "{request}");
        assert_eq!(event["status"], "Scheduled");
        let id = event["id"].as_str().unwrap();
        let seen = host.seen(A, id).await.unwrap();
        assert_eq!(seen["NotBefore"], guest_time, "{request}");
        assert_eq!(seen["EventType"], request["type"]);
    }
}

/// §6.5 on a paused clock: NotBefore starts an event, DurationInSeconds (or the configured
/// completion time) removes it; each step moves the incarnation by one, waiting moves nothing.
#[tokio::test]
async fn not_before_starts_and_completion_removes_on_a_paused_clock() {
    let config = MaintenanceConfig {
        default_complete_after: Duration::from_secs(10 * 60),
        ..MaintenanceConfig::default()
    };
    let host = start_host(CallerMode::Single, config, &one_vm()).await;
    let freeze = host
        .schedule_id(
            json!({"type": "Freeze", "vms": ["vm1"], "noticeSeconds": 60, "durationSeconds": 5}),
        )
        .await;
    let redeploy = host
        .schedule_id(json!({"type": "Redeploy", "vms": ["vm1"], "noticeSeconds": 120, "completeAfterSeconds": 30}))
        .await;
    let reboot = host
        .schedule_id(json!({"type": "Reboot", "vms": ["vm1"]}))
        .await;
    let n = host.incarnation(A).await;
    let status = |doc: &Value, id: &str| {
        doc["Events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["EventId"] == id)
            .map(|e| {
                (
                    e["EventStatus"].as_str().unwrap().to_string(),
                    e["NotBefore"].as_str().unwrap().to_string(),
                )
            })
    };
    let scheduled = |at: &str| Some(("Scheduled".to_string(), at.to_string()));
    let started = || Some(("Started".to_string(), String::new()));

    assert_eq!(host.tick(Duration::from_secs(59)), 0, "10:00:59");
    let doc = host.doc(A).await;
    assert_eq!(doc["DocumentIncarnation"], n, "time alone changes nothing");
    assert_eq!(
        status(&doc, &freeze),
        scheduled("Tue, 05 Mar 2024 10:01:00 GMT")
    );

    assert_eq!(host.tick(Duration::from_secs(1)), 1, "10:01:00");
    let doc = host.doc(A).await;
    assert_eq!(
        (doc["DocumentIncarnation"].as_u64(), status(&doc, &freeze)),
        (Some(n + 1), started())
    );
    assert_eq!(
        status(&doc, &redeploy),
        scheduled("Tue, 05 Mar 2024 10:02:00 GMT")
    );

    assert_eq!(host.tick(Duration::from_secs(4)), 0, "10:01:04");
    assert_eq!(host.tick(Duration::from_secs(1)), 1, "10:01:05: 5 s later");
    let doc = host.doc(A).await;
    assert_eq!(
        (doc["DocumentIncarnation"].as_u64(), status(&doc, &freeze)),
        (Some(n + 2), None)
    );

    assert_eq!(host.tick(Duration::from_secs(55)), 1, "10:02:00");
    let control = host
        .control("GET", &format!("/v1/events/{redeploy}"), None)
        .await
        .json();
    assert_eq!(
        (control["status"].as_str(), control["startedAt"].as_str()),
        (Some("Started"), Some("2024-03-05T10:02:00Z"))
    );
    assert_eq!(host.tick(Duration::from_secs(29)), 0);
    assert_eq!(host.tick(Duration::from_secs(1)), 1, "10:02:30");
    let doc = host.doc(A).await;
    assert_eq!(
        (doc["DocumentIncarnation"].as_u64(), status(&doc, &redeploy)),
        (Some(n + 4), None)
    );

    // The Reboot: NotBefore 10:15:00, then the configured 10 minutes.
    host.clock.set(t0() + Duration::from_secs(15 * 60 - 1));
    assert_eq!(host.engine.advance().unwrap(), 0);
    assert_eq!(host.tick(Duration::from_secs(1)), 1, "10:15:00");
    assert_eq!(status(&host.doc(A).await, &reboot), started());
    assert_eq!(host.tick(Duration::from_secs(10 * 60 - 1)), 0);
    assert_eq!(host.tick(Duration::from_secs(1)), 1, "10:25:00");
    assert_eq!(
        host.get(A, "2020-07-01").await.text(),
        format!(r#"{{"DocumentIncarnation":{},"Events":[]}}"#, n + 6)
    );

    // A long pause: start and completion both happen in one advance.
    host.schedule(json!({"type": "Reboot", "vms": ["vm1"], "noticeSeconds": 60}))
        .await;
    assert_eq!(host.tick(Duration::from_secs(3600)), 2);
    let doc = host.doc(A).await;
    assert_eq!(doc["DocumentIncarnation"], n + 9);
    assert!(ids(&doc).is_empty());
}

/// Every status × input of §6.5, each through its real interface: a guest POST, the control
/// API, or the paused clock. (The pure table is `events::machine::tests::state_machine_exhaustively`.)
#[tokio::test]
async fn every_status_and_input_over_http() {
    #[derive(Clone, Copy, Debug)]
    enum Input {
        GuestApprove,
        ClockToNotBefore,
        ControlStart,
        ClockToCompletion,
        ControlComplete,
        ControlCancel,
    }
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Seen {
        Scheduled,
        Started,
        Gone,
    }
    use Input::*;
    // Notice 300 s, completion 600 s after starting. Started cases start at 10:00:00 through
    // the control API, so their completion (10:10:00) comes after their NotBefore (10:05:00).
    // (status, input) → (HTTP status if the input has one, what the VM sees, incarnation delta)
    let table: [(Seen, Input, Option<u16>, Seen, u64); 12] = [
        (Seen::Scheduled, GuestApprove, Some(200), Seen::Started, 1),
        (Seen::Scheduled, ClockToNotBefore, None, Seen::Started, 1),
        (Seen::Scheduled, ControlStart, Some(200), Seen::Started, 1),
        // Its completion time passes before it ever started: it starts (at NotBefore), and
        // is not removed — an event that never started cannot complete.
        (Seen::Scheduled, ClockToCompletion, None, Seen::Started, 1),
        (
            Seen::Scheduled,
            ControlComplete,
            Some(409),
            Seen::Scheduled,
            0,
        ),
        (Seen::Scheduled, ControlCancel, Some(200), Seen::Gone, 1),
        (Seen::Started, GuestApprove, Some(200), Seen::Started, 0),
        (Seen::Started, ClockToNotBefore, None, Seen::Started, 0),
        (Seen::Started, ControlStart, Some(200), Seen::Started, 0),
        (Seen::Started, ClockToCompletion, None, Seen::Gone, 1),
        (Seen::Started, ControlComplete, Some(200), Seen::Gone, 1),
        (Seen::Started, ControlCancel, Some(200), Seen::Gone, 1),
    ];
    for (from, input, want_status, want_seen, want_delta) in table {
        let case = format!("{from:?} × {input:?}");
        let host = start_host(CallerMode::Single, MaintenanceConfig::default(), &one_vm()).await;
        let id = host
            .schedule_id(json!({"type": "Reboot", "vms": ["vm1"], "noticeSeconds": 300, "completeAfterSeconds": 600}))
            .await;
        if from == Seen::Started {
            assert_eq!(host.command(&id, "start").await.status, 200, "{case}");
        }
        let before = host.incarnation(A).await;
        let status = match input {
            GuestApprove => Some(host.approve(A, &[&id]).await.status),
            ControlStart => Some(host.command(&id, "start").await.status),
            ControlComplete => Some(host.command(&id, "complete").await.status),
            ControlCancel => Some(host.command(&id, "cancel").await.status),
            ClockToNotBefore => {
                host.tick(Duration::from_secs(300));
                None
            }
            ClockToCompletion => {
                host.tick(Duration::from_secs(600));
                None
            }
        };
        let seen = match host.seen(A, &id).await {
            None => Seen::Gone,
            Some(e) if e["EventStatus"] == "Started" => {
                assert_eq!(e["NotBefore"], "", "{case}");
                Seen::Started
            }
            Some(e) => {
                assert_eq!(e["EventStatus"], "Scheduled", "{case}");
                Seen::Scheduled
            }
        };
        assert_eq!(
            (status, seen, host.incarnation(A).await - before),
            (want_status, want_seen, want_delta),
            "{case}"
        );
    }
}

#[tokio::test]
async fn operator_start_complete_and_cancel() {
    let host = start_host(
        CallerMode::SourceAddress,
        MaintenanceConfig::default(),
        &three_vms(),
    )
    .await;
    let id = host
        .schedule_id(json!({"type": "Reboot", "vms": ["a"]}))
        .await;
    let conflict = host.command(&id, "complete").await;
    assert_eq!(
        (conflict.status, conflict.json()["error"]["code"].as_str()),
        (409, Some("conflict")),
        "a Scheduled event cannot complete"
    );
    let started = host.command(&id, "start").await;
    assert_eq!(started.status, 200);
    assert_eq!(
        (
            started.json()["changed"].as_bool(),
            started.json()["event"]["status"].as_str()
        ),
        (Some(true), Some("Started"))
    );
    assert_eq!(host.seen(A, &id).await.unwrap()["EventStatus"], "Started");
    let again = host.command(&id, "start").await;
    assert_eq!(
        (again.status, again.json()["changed"].as_bool()),
        (200, Some(false))
    );
    let before = host.incarnation(A).await;
    let completed = host.command(&id, "complete").await;
    assert_eq!(
        (completed.status, completed.json()["changed"].as_bool()),
        (200, Some(true))
    );
    assert!(host.seen(A, &id).await.is_none());
    assert_eq!(host.incarnation(A).await, before + 1);
    for action in ["complete", "cancel", "start"] {
        let gone = host.command(&id, action).await;
        assert_eq!(
            (gone.status, gone.json()["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{action} on a removed event"
        );
    }
    let missing = host.control("GET", &format!("/v1/events/{id}"), None).await;
    assert_eq!(missing.status, 404);

    // Platform cancel: removed, never Started (§6.5), from every listed VM.
    let canceled = host
        .schedule_id(json!({"type": "Freeze", "vms": ["a", "b"]}))
        .await;
    let (ia, ib) = (host.incarnation(A).await, host.incarnation(B).await);
    let reply = host.command(&canceled, "cancel").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["event"]["status"], "Scheduled");
    assert!(host.seen(A, &canceled).await.is_none());
    assert!(host.seen(B, &canceled).await.is_none());
    assert_eq!(
        (host.incarnation(A).await, host.incarnation(B).await),
        (ia + 1, ib + 1)
    );

    let unknown = host
        .command("C7061BAC-AFDC-4513-B24B-AA5F13A16123", "start")
        .await;
    assert_eq!(unknown.status, 404);
    let other = host
        .schedule_id(json!({"type": "Reboot", "vms": ["c"]}))
        .await;
    assert_eq!(host.command(&other, "explode").await.status, 404);

    // The control API's view of a VM's document is the guest's.
    let view = host.control("GET", "/v1/vms/c/events", None).await.json();
    assert_eq!(view["document"], host.doc(C).await);
    assert_eq!(view["incarnation"], host.incarnation(C).await);
    let list = host.control("GET", "/v1/events", None).await.json();
    let listed: Vec<&str> = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [other.as_str()]);
}

/// Found with the fuzz targets (RELIABILITY.md): a notice, duration or completion time too long
/// to add to the clock, or putting NotBefore past year 9999 where no date can show it, panicked
/// in the handler (500) or later in the events timer. Each is a 422 naming its member; a year
/// is the most each may ask for, and a year is accepted and runs its course.
#[tokio::test]
async fn schedule_refuses_times_past_a_year() {
    let host = start_host(CallerMode::Single, MaintenanceConfig::default(), &one_vm()).await;
    let year: u64 = 365 * 86_400;
    let cases = [
        (json!({"noticeSeconds": u64::MAX}), "noticeSeconds"),
        (
            json!({"noticeSeconds": 1_000_000_000_000_u64}),
            "noticeSeconds",
        ),
        (json!({"noticeSeconds": year + 1}), "noticeSeconds"),
        (
            json!({"completeAfterSeconds": u64::MAX}),
            "completeAfterSeconds",
        ),
        (
            json!({"completeAfterSeconds": year + 1}),
            "completeAfterSeconds",
        ),
        (json!({"durationSeconds": i64::MAX}), "durationSeconds"),
        (json!({"durationSeconds": year + 1}), "durationSeconds"),
    ];
    for (mut request, path) in cases {
        request["type"] = json!("Freeze");
        request["vms"] = json!(["vm1"]);
        let reply = host.control("POST", "/v1/events", Some(&request)).await;
        assert_eq!(reply.status, 422, "{request}: {}", reply.text());
        assert_eq!(problem_paths(&reply), [path], "{request}");
    }
    let id = host
        .schedule_id(json!({"type": "Freeze", "vms": ["vm1"], "noticeSeconds": year, "durationSeconds": year}))
        .await;
    assert_eq!(host.approve(A, &[&id]).await.status, 200);
    assert_eq!(host.tick(Duration::from_secs(year - 1)), 0);
    assert_eq!(
        host.tick(Duration::from_secs(1)),
        1,
        "completed a year after it started"
    );
}

#[tokio::test]
async fn schedule_validation_names_every_problem() {
    let host = start_host(CallerMode::Single, MaintenanceConfig::default(), &one_vm()).await;
    let before = host.incarnation(A).await;
    let cases = [
        (
            json!({"type": "Nap", "vms": [], "source": "Nobody", "durationSeconds": -2, "eventId": "not-a-guid"}),
            vec!["durationSeconds", "eventId", "source", "type", "vms"],
        ),
        (
            json!({"type": "Reboot", "vms": ["vm1", "ghost"], "notBefore": "tomorrow"}),
            vec!["notBefore", "vms[1]"],
        ),
        (
            json!({"type": "Reboot", "vms": ["vm1"], "notBefore": "2024-03-06T08:30:00Z", "noticeSeconds": 60}),
            vec!["noticeSeconds"],
        ),
    ];
    for (request, paths) in cases {
        let reply = host.control("POST", "/v1/events", Some(&request)).await;
        assert_eq!(reply.status, 422, "{request}: {}", reply.text());
        assert_eq!(reply.json()["error"]["code"], "invalid");
        assert_eq!(problem_paths(&reply), paths, "{request}");
    }
    let unknown_member = host
        .control(
            "POST",
            "/v1/events",
            Some(&json!({"type": "Reboot", "vms": ["vm1"], "colour": "red"})),
        )
        .await;
    assert_eq!(
        (
            unknown_member.status,
            unknown_member.json()["error"]["code"].as_str()
        ),
        (400, Some("bad_request"))
    );
    let not_json = host
        .control_raw("POST", "/v1/events", Some("{nope".into()))
        .await;
    assert_eq!(not_json.status, 400);

    let id = "28512AF7-C957-4500-9BC4-842D6FB531E4";
    host.schedule(json!({"type": "Reboot", "vms": ["vm1"], "eventId": id}))
        .await;
    let duplicate = host
        .control(
            "POST",
            "/v1/events",
            Some(&json!({"type": "Freeze", "vms": ["vm1"], "eventId": id.to_ascii_lowercase()})),
        )
        .await;
    assert_eq!(duplicate.status, 422, "{}", duplicate.text());
    assert_eq!(ids(&host.doc(A).await), [id]);
    assert_eq!(
        host.incarnation(A).await,
        before + 1,
        "refused requests changed nothing"
    );
}

/// A deleted VM leaves its events (`EventBook::forget_vm`): an event it shared keeps its other
/// VMs, an event of its own disappears, and a new VM under the same id inherits nothing.
#[tokio::test]
async fn deleting_a_vm_removes_it_from_its_events() {
    let host = start_host(
        CallerMode::SourceAddress,
        MaintenanceConfig::default(),
        &three_vms(),
    )
    .await;
    let shared = host
        .schedule_id(json!({"type": "Reboot", "vms": ["a", "c"]}))
        .await;
    let own = host
        .schedule_id(json!({"type": "Freeze", "vms": ["c"]}))
        .await;
    assert_eq!(host.control("DELETE", "/v1/vms/c", None).await.status, 204);
    let listed = host.control("GET", "/v1/events", None).await.json();
    let events: Vec<(&str, &Value)> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), &e["vms"]))
        .collect();
    assert_eq!(
        events,
        [(shared.as_str(), &json!(["a"]))],
        "{own} was c's alone"
    );
    assert_eq!(ids(&host.doc(A).await), [shared.as_str()]);
    let vm = json!({"callers": [C.to_string()], "instance": {"compute": {"name": "db-0"}}});
    assert_eq!(
        host.control("PUT", "/v1/vms/c", Some(&vm)).await.status,
        201
    );
    assert!(
        ids(&host.doc(C).await).is_empty(),
        "a new VM named c inherits nothing"
    );
}

// ------------------------------------------------------------------ wait and activation

#[tokio::test]
async fn wait_returns_once_the_vm_fetched_the_incarnation() {
    let host = start_host(CallerMode::Single, MaintenanceConfig::default(), &one_vm()).await;
    host.schedule(json!({"type": "Reboot", "vms": ["vm1"]}))
        .await;
    let n = host.control_incarnation("vm1").await;
    let wait =
        |n: u64, timeout: u64| format!("/v1/vms/vm1/events/wait?incarnation={n}&timeout={timeout}");

    let timed_out = host.control("GET", &wait(n, 1), None).await;
    assert_eq!(timed_out.status, 408, "{}", timed_out.text());
    assert_eq!(timed_out.json()["error"]["code"], "timeout");
    assert!(
        timed_out.text().contains("highest fetched: 0"),
        "{}",
        timed_out.text()
    );

    assert_eq!(host.incarnation(A).await, n);
    let started = Instant::now();
    let done = host.control("GET", &wait(n, 10), None).await;
    assert_eq!(
        (done.status, done.json()["fetched"].as_u64()),
        (200, Some(n))
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A waiter parked before the change returns when the guest fetches the new document.
    let api = host.api.clone();
    let waiter = tokio::spawn(async move { api.control("GET", &wait(n + 1, 20), None).await });
    host.schedule(json!({"type": "Freeze", "vms": ["vm1"]}))
        .await;
    let started = Instant::now();
    assert_eq!(host.incarnation(A).await, n + 1);
    let woken = waiter.await.unwrap();
    assert_eq!(
        (woken.status, woken.json()["fetched"].as_u64()),
        (200, Some(n + 1))
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// §6.6: the first scheduled-events GET of each VM is slow; later ones and other endpoints
/// are not.
#[tokio::test]
async fn first_call_delay_delays_only_each_vms_first_get() {
    let delay = Duration::from_millis(700);
    let config = MaintenanceConfig {
        first_call_delay: delay,
        ..MaintenanceConfig::default()
    };
    let host = start_host(CallerMode::SourceAddress, config, &three_vms()).await;
    let timed = |from: IpAddr, target: &'static str| {
        let api = host.api.clone();
        async move {
            let started = Instant::now();
            let reply = api
                .guest(from, "GET", target, &[("Metadata", "true")], b"")
                .await;
            assert_eq!(reply.status, 200, "{target}: {}", reply.text());
            started.elapsed()
        }
    };
    let events = "/metadata/scheduledevents?api-version=2020-07-01";
    let instance = "/metadata/instance/compute/name?api-version=2021-02-01&format=text";
    assert!(
        timed(B, instance).await < delay,
        "instance metadata is not delayed"
    );
    assert!(timed(A, events).await >= delay, "a's first call");
    assert!(timed(A, events).await < delay, "a's second call");
    assert!(timed(A, events).await < delay, "a's third call");
    assert!(timed(B, events).await >= delay, "b's first call: per VM");
    assert!(timed(B, events).await < delay);
}

// ------------------------------------------------------------------ the real binary

fn azimds() -> Command {
    Command::new(env!("CARGO_BIN_EXE_azimds"))
}

/// The real binary, and an [`Api`] pointed at it.
struct Server {
    spawned: crate::support::Spawned,
    api: Api,
}

impl std::ops::Deref for Server {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Server {
    fn log_contains(&self, needle: &str) -> bool {
        self.spawned.log_contains(needle)
    }
}

fn spawn_server(data: &Path, extra: &[&str]) -> Server {
    let spawned = crate::support::spawn_azimds(data, extra);
    let token = std::fs::read_to_string(data.join("control-token"))
        .unwrap()
        .trim()
        .to_string();
    let api = Api {
        guest: spawned.guest,
        control: spawned.control.parse().unwrap(),
        token: Some(token),
    };
    Server { spawned, api }
}

/// Two VMs in source-address mode: web (127.0.0.1) and db (127.0.0.2).
const TWO_VMS: &str = "vms:
  - id: web
    callers: [127.0.0.1]
    instance: {compute: {name: web-1}}
  - id: db
    callers: [127.0.0.2]
    instance: {compute: {name: db-1}}
";

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Polls `check` every 50 ms for up to `within`.
async fn eventually<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events, their statuses, NotBefore and every VM's incarnation survive a restart (SIGKILL:
/// what was acknowledged was committed).
#[tokio::test]
async fn events_survive_a_restart_with_ids_statuses_and_incarnations() {
    let dir = TempDir::new("restart");
    let data = dir.path().join("data");
    let vms = write_file(dir.path(), "vms.yaml", TWO_VMS);
    let args = [
        "--callers",
        "source-address",
        "--vms",
        vms.as_str(),
        "--event-completion",
        "1h",
    ];
    let server = spawn_server(&data, &args);
    let reboot = server
        .schedule_id(json!({"type": "Reboot", "vms": ["web", "db"]}))
        .await;
    let freeze = server
        .schedule_id(json!({"type": "Freeze", "vms": ["web"], "noticeSeconds": 3600}))
        .await;
    let preempt = server
        .schedule_id(json!({"type": "Preempt", "vms": ["db"], "noticeSeconds": 7200}))
        .await;
    assert_eq!(server.approve(A, &[&freeze]).await.status, 200);
    let list_before = server.control("GET", "/v1/events", None).await.json();
    let docs_before = [
        server.get(A, "2020-07-01").await.body,
        server.get(B, "2020-07-01").await.body,
    ];
    let web: Value = serde_json::from_slice(&docs_before[0]).unwrap();
    assert_eq!(ids(&web).len(), 2);
    assert_eq!(
        web["Events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["EventId"] == freeze.as_str())
            .unwrap()["EventStatus"],
        "Started"
    );
    drop(server);

    let server = spawn_server(&data, &args);
    assert_eq!(
        server.control("GET", "/v1/events", None).await.json(),
        list_before,
        "ids, statuses, NotBefore, startedAt"
    );
    let docs_after = [
        server.get(A, "2020-07-01").await.body,
        server.get(B, "2020-07-01").await.body,
    ];
    for (before, after) in docs_before.iter().zip(&docs_after) {
        assert_eq!(
            String::from_utf8_lossy(after),
            String::from_utf8_lossy(before),
            "the same document, incarnation included"
        );
    }
    let db: Value = serde_json::from_slice(&docs_after[1]).unwrap();
    let mut db_ids = ids(&db);
    db_ids.sort();
    let mut want = vec![reboot.clone(), preempt.clone()];
    want.sort();
    assert_eq!(db_ids, want);

    // The restored engine goes on from the restored incarnations.
    let n_web = web["DocumentIncarnation"].as_u64().unwrap();
    let n_db = db["DocumentIncarnation"].as_u64().unwrap();
    assert_eq!(server.approve(B, &[&reboot]).await.status, 200);
    assert_eq!(server.incarnation(A).await, n_web + 1);
    assert_eq!(server.incarnation(B).await, n_db + 1);
    assert_eq!(
        server.seen(A, &reboot).await.unwrap()["EventStatus"],
        "Started"
    );
}

/// The real binary's timer on the real clock: NotBefore starts an event, `--event-completion`
/// removes it; `--terminate-notice` sets Terminate's notice.
#[tokio::test]
async fn timer_starts_and_completes_events_on_the_real_clock() {
    let dir = TempDir::new("timer");
    let vms = write_file(dir.path(), "vms.yaml", TWO_VMS);
    let server = spawn_server(
        &dir.path().join("data"),
        &[
            "--callers",
            "source-address",
            "--vms",
            &vms,
            "--event-completion",
            "1",
            "--terminate-notice",
            "7m",
        ],
    );
    let before = SystemTime::now();
    let terminate = server
        .schedule(json!({"type": "Terminate", "vms": ["db"]}))
        .await;
    let not_before = azimds::events::parse_rfc1123(
        server
            .seen(B, terminate["id"].as_str().unwrap())
            .await
            .unwrap()["NotBefore"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let notice = not_before.duration_since(before).unwrap();
    assert!(
        (Duration::from_secs(419)..=Duration::from_secs(421)).contains(&notice),
        "{notice:?}"
    );

    let id = server
        .schedule_id(json!({"type": "Reboot", "vms": ["web"], "noticeSeconds": 1}))
        .await;
    let n = server.incarnation(A).await;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        let doc = server.doc(A).await;
        let state = doc["Events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["EventId"] == id.as_str())
            .map(|e| e["EventStatus"].as_str().unwrap().to_string());
        let entry = (doc["DocumentIncarnation"].as_u64().unwrap(), state);
        if seen.last() != Some(&entry) {
            seen.push(entry);
        }
        if seen.last().unwrap().1.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen,
        [
            (n, Some("Scheduled".to_string())),
            (n + 1, Some("Started".to_string())),
            (n + 2, None),
        ]
    );
}

/// Drives one event through approve → complete and another through start → cancel; returns
/// their ids.
async fn drive_every_transition(server: &Server) -> (String, String) {
    let first = server
        .schedule_id(json!({"type": "Reboot", "vms": ["web"]}))
        .await;
    assert_eq!(server.approve(A, &[&first]).await.status, 200);
    assert_eq!(server.command(&first, "complete").await.status, 200);
    let second = server
        .schedule_id(json!({"type": "Preempt", "vms": ["web", "db"], "noticeSeconds": 3600}))
        .await;
    assert_eq!(server.command(&second, "start").await.status, 200);
    assert_eq!(server.command(&second, "cancel").await.status, 200);
    (first, second)
}

fn assert_transitions(messages: &[Value], first: &str, second: &str) {
    let got: Vec<(&str, &str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["transition"].as_str().unwrap(),
                m["event"]["id"].as_str().unwrap(),
                m["event"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("scheduled", first, "Scheduled"),
            ("approved", first, "Started"),
            ("completed", first, "Started"),
            ("scheduled", second, "Scheduled"),
            ("started", second, "Started"),
            ("canceled", second, "Started"),
        ],
        "{messages:#?}"
    );
    assert_eq!(messages[0]["event"]["type"], "Reboot");
    assert_eq!(messages[0]["event"]["vms"], json!(["web"]));
    assert_eq!(messages[3]["event"]["vms"], json!(["web", "db"]));
    assert_eq!(messages[3]["event"]["resources"], json!(["web-1", "db-1"]));
    for message in messages {
        let at = message["at"].as_str().unwrap();
        assert!(at.ends_with('Z') && at.contains('T'), "RFC 3339: {at}");
    }
}

#[tokio::test]
async fn command_hook_gets_every_transition_as_json() {
    let dir = TempDir::new("hook-cmd");
    let vms = write_file(dir.path(), "vms.yaml", TWO_VMS);
    let out = dir.path().join("hook.jsonl");
    let hook = format!("cat >> '{0}'; echo >> '{0}'", out.display());
    let server = spawn_server(
        &dir.path().join("data"),
        &[
            "--callers",
            "source-address",
            "--vms",
            &vms,
            "--event-hook",
            &hook,
        ],
    );
    let (first, second) = drive_every_transition(&server).await;
    let messages = eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines.len() >= 6).then_some(lines)
    })
    .await
    .expect("six hook messages within 10 s");
    assert_transitions(&messages, &first, &second);
}

#[tokio::test]
async fn http_hook_gets_every_transition_as_json() {
    let dir = TempDir::new("hook-http");
    let vms = write_file(dir.path(), "vms.yaml", TWO_VMS);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::<(String, Option<String>, Value)>::new()));
    let sink = Arc::clone(&received);
    let hook_server = tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the hook request ended early");
                buffer.extend_from_slice(&chunk[..n]);
                let Some(split) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8(buffer[..split].to_vec()).unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().unwrap())
                    })
                    .expect("a Content-Length");
                if buffer.len() >= split + 4 + length {
                    break (head, buffer[split + 4..split + 4 + length].to_vec());
                }
            };
            let request_line = head.lines().next().unwrap().to_string();
            let content_type = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-type")
                    .then(|| value.trim().to_string())
            });
            sink.lock().unwrap().push((
                request_line,
                content_type,
                serde_json::from_slice(&body).unwrap(),
            ));
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
        }
    });
    let hook = format!("http://127.0.0.1:{port}/hook");
    let server = spawn_server(
        &dir.path().join("data"),
        &[
            "--callers",
            "source-address",
            "--vms",
            &vms,
            "--event-hook",
            &hook,
        ],
    );
    let (first, second) = drive_every_transition(&server).await;
    let requests = eventually(Duration::from_secs(10), || {
        let got = received.lock().unwrap();
        (got.len() >= 6).then(|| got.clone())
    })
    .await
    .expect("six hook requests within 10 s");
    hook_server.abort();
    for (request_line, content_type, _) in &requests {
        assert_eq!(request_line, "POST /hook HTTP/1.1");
        assert_eq!(content_type.as_deref(), Some("application/json"));
    }
    let messages: Vec<Value> = requests.into_iter().map(|(_, _, m)| m).collect();
    assert_transitions(&messages, &first, &second);
}

/// Failing hooks — a command that exits 1, a closed port, and a URL that accepts but never
/// answers — are retried and given up on, and the guest plane answers as fast as ever
/// meanwhile (a hook that blocked it would hold guests for the 10 s attempt timeout).
#[tokio::test]
async fn failing_hooks_are_retried_and_never_slow_the_guest_plane() {
    let dir = TempDir::new("hook-fail");
    let vms = write_file(dir.path(), "vms.yaml", TWO_VMS);
    let attempts = dir.path().join("attempts");
    let failing_command = format!("echo attempt >> '{}'; exit 1", attempts.display());
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let closed_url = format!("http://127.0.0.1:{closed_port}/hook");
    // Accepts hook connections and never answers them (held until the test ends).
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = Arc::clone(&held);
    let silent_task = tokio::spawn(async move {
        while let Ok((stream, _)) = silent.accept().await {
            holder.lock().unwrap().push(stream);
        }
    });
    let mut servers = Vec::new();
    for (name, hook) in [
        ("command", &failing_command),
        ("closed", &closed_url),
        ("silent", &silent_url),
    ] {
        servers.push(spawn_server(
            &dir.path().join(name),
            &[
                "--callers",
                "source-address",
                "--vms",
                &vms,
                "--event-hook",
                hook,
            ],
        ));
    }
    let fast = Duration::from_secs(1);
    let started = Instant::now();
    for server in &servers {
        // Many transitions queue up behind the failing first one.
        for _ in 0..10 {
            let id = server
                .schedule_id(json!({"type": "Reboot", "vms": ["web"]}))
                .await;
            let t = Instant::now();
            assert_eq!(server.approve(A, &[&id]).await.status, 200);
            assert!(t.elapsed() < fast, "approval took {:?}", t.elapsed());
        }
    }
    assert!(
        eventually(Duration::from_secs(5), || (!held
            .lock()
            .unwrap()
            .is_empty())
        .then_some(()))
        .await
        .is_some(),
        "the silent hook was called"
    );
    // While the hooks fail, hang and back off (0.5 s, 1 s, 2 s), guest requests stay fast.
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(2) {
        for server in &servers {
            let t = Instant::now();
            assert_eq!(server.get(A, "2020-07-01").await.status, 200);
            slowest = slowest.max(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(slowest < fast, "slowest guest GET {slowest:?}");
    let count = || {
        std::fs::read_to_string(&attempts)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(count() >= 2, "the failing command was retried");
    let gave_up = eventually(Duration::from_secs(10), || {
        servers[..2]
            .iter()
            .all(|s| s.log_contains("event hook gave up after 4 attempts"))
            .then_some(())
    })
    .await;
    assert!(
        gave_up.is_some(),
        "{}",
        servers[1].spawned.log.lock().unwrap().join("\n")
    );
    assert!(count() >= 4, "four attempts for the first message");
    assert!(
        servers[1].log_contains("attempt=2"),
        "the closed-port hook was retried"
    );
    silent_task.abort();
}

// ------------------------------------------------------------------ definitions

#[tokio::test]
async fn definition_events_are_imported_and_served() {
    let dir = TempDir::new("defined");
    let vms = write_file(
        dir.path(),
        "vms.yaml",
        r#"vms:
  - id: web
    callers: [127.0.0.1]
    instance: {compute: {name: web-1}}
    scheduledEvents:
      - EventId: a626e37f-793e-44e1-89b5-99ae0b96044c
        EventType: Reboot
        ResourceType: VirtualMachine
        Resources: [sample_1]
        NotBefore: "Fri, 01 Jan 2100 00:00:00 GMT"
      - EventId: C7061BAC-AFDC-4513-B24B-AA5F13A16123
        EventStatus: Started
        EventType: Freeze
        NotBefore: ""
        Description: "Virtual machine is being paused because of a memory-preserving Live Migration operation."
        EventSource: User
        DurationInSeconds: 0
      - EventId: 28512AF7-C957-4500-9BC4-842D6FB531E4
        EventType: Redeploy
        Resources: [web-1, db-1]
        NotBefore: "Sat, 02 Jan 2100 00:00:00 GMT"
  - id: db
    callers: [127.0.0.2]
    instance: {compute: {name: db-1}}
    scheduledEvents:
      - EventId: 28512AF7-C957-4500-9BC4-842D6FB531E4
        EventType: Redeploy
        Resources: [web-1, db-1]
        NotBefore: "Sat, 02 Jan 2100 00:00:00 GMT"
"#,
    );
    let server = spawn_server(
        &dir.path().join("data"),
        &[
            "--callers",
            "source-address",
            "--vms",
            &vms,
            "--event-completion",
            "1h",
        ],
    );
    let web = server.get(A, "2020-07-01").await;
    let n = web.json()["DocumentIncarnation"].as_u64().unwrap();
    assert_eq!(
        web.text(),
        format!(
            concat!(
                r#"{{"DocumentIncarnation":{},"Events":["#,
                r#"{{"EventId":"C7061BAC-AFDC-4513-B24B-AA5F13A16123","EventStatus":"Started","EventType":"Freeze","ResourceType":"VirtualMachine","Resources":["web-1"],"NotBefore":"","Description":"{}","EventSource":"User","DurationInSeconds":0}},"#,
                r#"{{"EventId":"A626E37F-793E-44E1-89B5-99AE0B96044C","EventStatus":"Scheduled","EventType":"Reboot","ResourceType":"VirtualMachine","Resources":["sample_1"],"NotBefore":"Fri, 01 Jan 2100 00:00:00 GMT","Description":"","EventSource":"Platform","DurationInSeconds":-1}},"#,
                r#"{{"EventId":"28512AF7-C957-4500-9BC4-842D6FB531E4","EventStatus":"Scheduled","EventType":"Redeploy","ResourceType":"VirtualMachine","Resources":["web-1","db-1"],"NotBefore":"Sat, 02 Jan 2100 00:00:00 GMT","Description":"","EventSource":"Platform","DurationInSeconds":-1}}"#,
                r#"]}}"#
            ),
            n, FREEZE_DESCRIPTION
        )
    );
    // One EventId in two definitions is one event for both VMs (§6.7).
    let db = server.doc(B).await;
    assert_eq!(ids(&db), ["28512AF7-C957-4500-9BC4-842D6FB531E4"]);
    let list = server.control("GET", "/v1/events", None).await.json();
    assert_eq!(list["events"].as_array().unwrap().len(), 3);
    let shared = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "28512AF7-C957-4500-9BC4-842D6FB531E4")
        .unwrap();
    let mut targets: Vec<&str> = shared["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(targets, ["db", "web"]);
    // Imported events live like any other: db approves, web sees it Started.
    assert_eq!(
        server
            .approve(B, &["28512AF7-C957-4500-9BC4-842D6FB531E4"])
            .await
            .status,
        200
    );
    assert_eq!(
        server
            .seen(A, "28512AF7-C957-4500-9BC4-842D6FB531E4")
            .await
            .unwrap()["EventStatus"],
        "Started"
    );
}

/// README: definition events are "imported once per EventId at start". A restart must neither
/// duplicate an entry nor bring back an event the server has since removed.
#[tokio::test]
async fn definition_events_are_imported_once() {
    let dir = TempDir::new("defined-once");
    let data = dir.path().join("data");
    let vms = write_file(
        dir.path(),
        "vms.yaml",
        r#"vms:
  - id: web
    callers: [127.0.0.1]
    instance: {compute: {name: web-1}}
    scheduledEvents:
      - EventType: Reboot
        NotBefore: "Fri, 01 Jan 2100 00:00:00 GMT"
      - EventId: 28512AF7-C957-4500-9BC4-842D6FB531E4
        EventType: Redeploy
        NotBefore: "Sat, 02 Jan 2100 00:00:00 GMT"
"#,
    );
    let args = ["--callers", "source-address", "--vms", vms.as_str()];
    let server = spawn_server(&data, &args);
    let first = server.doc(A).await;
    assert_eq!(ids(&first).len(), 2, "{first}");
    let canceled = server
        .command("28512AF7-C957-4500-9BC4-842D6FB531E4", "cancel")
        .await;
    assert_eq!(canceled.status, 200);
    let kept = server.doc(A).await;
    drop(server);

    let server = spawn_server(&data, &args);
    assert_eq!(
        server.doc(A).await,
        kept,
        "after a restart: the same single event, the canceled one not back"
    );
}

/// The same VM entry with `scheduledEvents`, written three ways: through the control API (PUT),
/// by a definitions-file reconcile, and found in the store at a restart. Each way imports the
/// events at once, exactly once, so the guest sees the same document.
#[tokio::test]
async fn definition_events_are_imported_by_every_write_path() {
    let entry = json!({
        "callers": ["127.0.0.1"],
        "instance": {"compute": {"name": "web-1"}},
        "scheduledEvents": [
            {"EventId": "A626E37F-793E-44E1-89B5-99AE0B96044C", "EventType": "Reboot",
             "NotBefore": "Fri, 01 Jan 2100 00:00:00 GMT"},
        ],
    });
    let expected = r#"[{"EventId":"A626E37F-793E-44E1-89B5-99AE0B96044C","EventStatus":"Scheduled","EventType":"Reboot","ResourceType":"VirtualMachine","Resources":["web-1"],"NotBefore":"Fri, 01 Jan 2100 00:00:00 GMT","Description":"","EventSource":"Platform","DurationInSeconds":-1}]"#;
    // The document's bytes after the incarnation (which counts changes, not events).
    async fn events_of(server: &Server) -> String {
        let text = server.get(A, "2020-07-01").await.text().to_string();
        let (_, events) = text.split_once(r#""Events":"#).unwrap();
        events.strip_suffix('}').unwrap().to_string()
    }

    // 1. A control-API PUT: served right away, with no restart.
    let dir = TempDir::new("defined-put");
    let data = dir.path().join("data");
    let server = spawn_server(&data, &["--callers", "source-address"]);
    let put = server.control("PUT", "/v1/vms/web", Some(&entry)).await;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(events_of(&server).await, expected, "after the PUT");
    // Writing the same entry again imports nothing more.
    let again = server.control("PUT", "/v1/vms/web", Some(&entry)).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(events_of(&server).await, expected, "after a second PUT");
    drop(server);

    // 2. A restart on that store: the same single event.
    let server = spawn_server(&data, &["--callers", "source-address"]);
    assert_eq!(events_of(&server).await, expected, "after a restart");
    drop(server);

    // 3. A definitions file holding the same entry, applied at start.
    let file_dir = TempDir::new("defined-file");
    let file = json!({"vms": [{"id": "web", "callers": entry["callers"], "instance": entry["instance"],
                                "scheduledEvents": entry["scheduledEvents"]}]});
    let vms = write_file(file_dir.path(), "vms.json", &file.to_string());
    let server = spawn_server(
        &file_dir.path().join("data"),
        &["--callers", "source-address", "--vms", &vms],
    );
    assert_eq!(events_of(&server).await, expected, "from the file");
}

#[test]
fn invalid_definition_event_stops_the_start() {
    let dir = TempDir::new("defined-bad");
    let vms = write_file(
        dir.path(),
        "vms.yaml",
        r#"vms:
  - id: web
    instance: {compute: {name: web-1}}
    scheduledEvents:
      - EventType: Nap
        NotBefore: "tomorrow"
        DurationInSeconds: -5
        Colour: red
      - EventId: not-a-guid
        EventType: Reboot
        EventStatus: Done
        EventSource: Nobody
        Resources: web-1
      - EventType: Freeze
"#,
    );
    let output = azimds()
        .args(["serve", "--listen", "127.0.0.1:0", "--vms", &vms, "--data"])
        .arg(dir.path().join("data"))
        .env("AZIMDS_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for path in [
        "scheduledEvents[0].EventType",
        "scheduledEvents[0].NotBefore",
        "scheduledEvents[0].DurationInSeconds",
        "scheduledEvents[0].Colour",
        "scheduledEvents[1].EventId",
        "scheduledEvents[1].EventStatus",
        "scheduledEvents[1].EventSource",
        "scheduledEvents[1].Resources",
        "scheduledEvents[2].NotBefore",
    ] {
        assert!(
            stderr.contains(&format!("{vms}: VM 0 (web-1): vms[0].{path}: ")),
            "{path}:\n{stderr}"
        );
    }
    assert!(!stderr.contains("listening"), "{stderr}");

    let not_a_list = write_file(
        dir.path(),
        "list.yaml",
        "vms:\n  - instance: {compute: {name: web-1}}\n    scheduledEvents: {EventType: Reboot}\n",
    );
    let output = azimds()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--vms",
            &not_a_list,
            "--data",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{not_a_list}: VM 0 (web-1): vms[0].scheduledEvents: expected a list"
        )),
        "{stderr}"
    );
}
