//! Fault rules over HTTP (issue 10): every action (status with Azure's body, delay, stall,
//! reset, truncate) and limit (count, window, seeded probability), matching by VM, endpoint,
//! path, method, identity and resource, presets, the config file, and isolation between VMs.
//! Bodies are typed out from the spec where Azure's are known (§1.10, §5.4).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use azimds::faults::FaultSpec;
use azimds::snapshot::CallerMode;

use crate::support::{Reply, TestConfig, TestServer, Vms, request_bytes};

const INSTANCE: &str = "/metadata/instance?api-version=2021-02-01";
const TOKEN: &str =
    "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/";

async fn add(server: &TestServer, rule: Value) -> Value {
    let reply = server
        .control
        .call("POST", "/v1/faults", Some(&rule), &[])
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()
}

fn two_vms() -> String {
    json!({"vms": [
        {"id": "a", "callers": ["127.0.0.2"], "instance": {"compute": {"name": "a"}},
         "identities": {"systemAssigned": {}}},
        {"id": "b", "callers": ["127.0.0.3"], "instance": {"compute": {"name": "b"}},
         "identities": {"systemAssigned": {}}},
    ]})
    .to_string()
}

async fn start_two() -> TestServer {
    TestServer::start(TestConfig {
        vms: Vms::Text(two_vms()),
        callers: CallerMode::SourceAddress,
        ..TestConfig::default()
    })
    .await
}

async fn get_from(server: &TestServer, from: &str, target: &str) -> Reply {
    let from: IpAddr = from.parse().unwrap();
    let bytes = request_bytes(
        "GET",
        target,
        "169.254.169.254",
        &[("Metadata", "true")],
        b"",
    );
    server.guest.raw_from(from, bytes).await
}

/// Azure's bodies for each injected status, instance style and identity style.
#[tokio::test]
async fn injected_statuses_answer_with_azures_bodies() {
    let server = crate::support::start_demo().await;
    for (status, instance_body, token_body) in [
        // §1.10: the azure-init test server's wording; §8.4's 503 text.
        (
            500,
            r#"{"error":"Internal server error."}"#,
            r#"{"error":"unknown","error_description":"Failed to retrieve token from the Active directory"}"#,
        ),
        (
            503,
            r#"{"error":"Internal service unavailable. Please retry later."}"#,
            r#"{"error":"service_unavailable","error_description":"Internal service unavailable. Please retry later."}"#,
        ),
        (
            410,
            r#"{"error":"Gone"}"#,
            r#"{"error":"service_unavailable","error_description":"IMDS endpoint is updating"}"#,
        ),
        (
            429,
            r#"{"error":"Too many requests"}"#,
            r#"{"error":"too_many_requests","error_description":"IMDS Throttling limit exceeded"}"#,
        ),
        // §5.4: the real 68-byte body; §1.10: "IMDS endpoint is updating".
        (
            400,
            r#"{"error":"Bad request"}"#,
            r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
        ),
        (
            404,
            r#"{"error":"Not found"}"#,
            r#"{"error":"not_found","error_description":"IMDS endpoint is updating"}"#,
        ),
    ] {
        let rule = add(&server, json!({"status": status})).await;
        for (target, body) in [(INSTANCE, instance_body), (TOKEN, token_body)] {
            let reply = server.get(target).await;
            assert_eq!(reply.status, status, "{target}");
            assert_eq!(reply.text(), body, "{status} on {target}");
            assert_eq!(
                reply.header("Content-Type"),
                Some("application/json; charset=utf-8")
            );
            assert!(reply.header("Server").unwrap().contains("IMDS"));
        }
        let path = format!("/v1/faults/{}", rule["id"].as_str().unwrap());
        assert_eq!(
            server.control.call("DELETE", &path, None, &[]).await.status,
            200
        );
    }
    assert_eq!(server.get(INSTANCE).await.status, 200, "no rule left");
}

#[tokio::test]
async fn count_limits_each_vm_and_rules_for_one_vm_leave_the_others_alone() {
    let server = start_two().await;
    add(
        &server,
        json!({"vm": "a", "endpoint": "instance", "status": 500}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(get_from(&server, "127.0.0.2", INSTANCE).await.status, 500);
        assert_eq!(get_from(&server, "127.0.0.3", INSTANCE).await.status, 200);
    }
    server.control.call("DELETE", "/v1/faults", None, &[]).await;
    // A rule for every VM counts per VM: a's answers do not use up b's.
    let rule = add(&server, json!({"status": 503, "count": 2})).await;
    let statuses = |from: &'static str| {
        let server = &server;
        async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                seen.push(get_from(server, from, INSTANCE).await.status);
            }
            seen
        }
    };
    assert_eq!(statuses("127.0.0.2").await, [503, 503, 200]);
    assert_eq!(statuses("127.0.0.3").await, [503, 503, 200]);
    let listed = server
        .control
        .call(
            "GET",
            &format!("/v1/faults/{}", rule["id"].as_str().unwrap()),
            None,
            &[],
        )
        .await
        .json();
    assert_eq!(listed["injected"], 4);
}

#[tokio::test]
async fn a_window_ends_when_the_clock_passes_it() {
    let server = crate::support::start_demo().await;
    let rule = add(&server, json!({"preset": "imds-updating"})).await;
    assert_eq!(rule["status"], 410);
    assert!(rule["expires"].is_string());
    assert_eq!(server.get(INSTANCE).await.status, 410);
    assert_eq!(server.get("/metadata/versions").await.status, 410);
    server.clock.advance(Duration::from_secs(69));
    assert_eq!(server.get(INSTANCE).await.status, 410);
    server.clock.advance(Duration::from_secs(1));
    assert_eq!(
        server.get(INSTANCE).await.status,
        200,
        "70 s later IMDS is back (§1.11)"
    );
    let listed = server
        .control
        .call("GET", "/v1/faults", None, &[])
        .await
        .json();
    assert_eq!(listed["faults"], json!([]), "an ended window is dropped");
}

#[tokio::test]
async fn seeded_probability_repeats_from_server_to_server() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let server = crate::support::start_demo().await;
        add(
            &server,
            json!({"status": 500, "probability": 0.5, "seed": 42}),
        )
        .await;
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(server.get(INSTANCE).await.status);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1], "the same seed, the same answers");
    let faulted = runs[0].iter().filter(|s| **s == 500).count();
    assert!((8..=32).contains(&faulted), "{faulted} of 40 at p = 0.5");
    assert!(runs[0].iter().all(|s| *s == 500 || *s == 200));
}

#[tokio::test]
async fn delay_answers_as_usual_after_waiting() {
    let server = crate::support::start_demo().await;
    add(
        &server,
        json!({"endpoint": "instance", "delay": "300ms", "count": 1}),
    )
    .await;
    let started = Instant::now();
    let reply = server.get(INSTANCE).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["compute"]["name"], "azimds-demo");
    let journal = server
        .control
        .call("GET", "/v1/vms/azimds-demo/journal", None, &[])
        .await
        .json();
    let entry = &journal["entries"][0];
    assert_eq!(entry["fault"]["action"], "delay");
    assert!(entry["durationMs"].as_f64().unwrap() >= 300.0, "{entry}");
}

/// Connects and sends one request, returning the stream to read from.
async fn send(addr: SocketAddr, target: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let bytes = request_bytes(
        "GET",
        target,
        "169.254.169.254",
        &[("Metadata", "true")],
        b"",
    );
    stream.write_all(&bytes).await.unwrap();
    stream
}

#[tokio::test]
async fn reset_drops_the_connection_with_a_tcp_reset() {
    let server = crate::support::start_demo().await;
    add(&server, json!({"endpoint": "token", "action": "reset"})).await;
    let mut stream = send(server.addr, TOKEN).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the connection ends");
    let error = read.expect_err("a reset, not an orderly close");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(answer.is_empty(), "nothing answered");
    assert_eq!(
        server.get(INSTANCE).await.status,
        200,
        "only the token endpoint"
    );
}

#[tokio::test]
async fn truncate_closes_the_connection_mid_body() {
    let server = crate::support::start_demo().await;
    let full = server.get(INSTANCE).await;
    add(
        &server,
        json!({"endpoint": "instance", "action": "truncate"}),
    )
    .await;
    let mut stream = send(server.addr, INSTANCE).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the connection ends");
    let reply = crate::support::parse_reply(&answer);
    assert_eq!(reply.status, 200);
    let promised: usize = reply.header("Content-Length").unwrap().parse().unwrap();
    assert_eq!(promised, full.body.len(), "the whole body is promised");
    assert_eq!(reply.body, full.body[..promised / 2], "half of it arrives");
}

#[tokio::test]
async fn stall_answers_nothing_until_the_client_gives_up() {
    let server = crate::support::start_demo().await;
    add(
        &server,
        json!({"path": "/metadata/instance/compute", "action": "stall"}),
    )
    .await;
    let mut stream = send(
        server.addr,
        "/metadata/instance/compute?api-version=2021-02-01",
    )
    .await;
    let mut byte = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(700), stream.read(&mut byte)).await;
    assert!(waited.is_err(), "no answer while stalled");
    drop(stream);
    // The client gave up: the stalled connection is released (polled: no event says so).
    let released = Instant::now();
    loop {
        let status = server
            .control
            .call("GET", "/v1/status", None, &[])
            .await
            .json();
        if status["connections"]["open"] == 0 {
            break;
        }
        assert!(
            released.elapsed() < Duration::from_secs(5),
            "still open: {status}"
        );
        tokio::task::yield_now().await;
    }
    // Other paths are answered, and the stall was journaled with no status.
    assert_eq!(server.get(INSTANCE).await.status, 200);
    let journal = server
        .control
        .call("GET", "/v1/vms/azimds-demo/journal", None, &[])
        .await
        .json();
    let entry = &journal["entries"][0];
    assert_eq!(entry["fault"]["action"], "stall");
    assert_eq!(entry["status"], Value::Null);
}

#[tokio::test]
async fn token_rules_match_identity_and_resource() {
    let server = crate::support::start_demo().await;
    add(
        &server,
        json!({"endpoint": "token", "resource": "https://vault.azure.net", "status": 500}),
    )
    .await;
    add(
        &server,
        json!({"endpoint": "token", "identity": "1111", "status": 404}),
    )
    .await;
    let vault = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net%2F";
    assert_eq!(server.get(vault).await.status, 500);
    assert_eq!(server.get(TOKEN).await.status, 200, "another resource");
    assert_eq!(
        server.get(&format!("{TOKEN}&client_id=1111")).await.status,
        404
    );
    assert_eq!(
        server.get(&format!("{TOKEN}&client_id=2222")).await.status,
        400,
        "another identity: the VM has none such"
    );
}

#[tokio::test]
async fn method_and_unknown_paths_can_be_matched() {
    let server = crate::support::start_demo().await;
    add(
        &server,
        json!({"endpoint": "scheduledevents", "method": "POST", "status": 503}),
    )
    .await;
    add(
        &server,
        json!({"path": "/metadata/attested", "status": 410}),
    )
    .await;
    let events = "/metadata/scheduledevents?api-version=2020-07-01";
    assert_eq!(server.get(events).await.status, 200);
    let post = server
        .request("POST", events, &[("Metadata", "true")])
        .await;
    assert_eq!(post.status, 503);
    assert_eq!(
        server
            .get("/metadata/attested/document?api-version=2021-02-01")
            .await
            .status,
        410
    );
}

#[tokio::test]
async fn bad_rules_are_422_with_every_problem() {
    let server = crate::support::start_demo().await;
    let reply = server
        .control
        .call(
            "POST",
            "/v1/faults",
            Some(&json!({"endpoint": "nope", "status": 418, "count": 0})),
            &[],
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    let problems: Vec<String> = reply.json()["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(problems, ["endpoint", "status", "count"]);
    let unknown = server
        .control
        .call(
            "POST",
            "/v1/faults",
            Some(&json!({"preset": "volcano"})),
            &[],
        )
        .await;
    assert_eq!(unknown.status, 422);
    let malformed = server
        .control
        .call(
            "POST",
            "/v1/faults",
            Some(&json!({"status": 500, "colour": 1})),
            &[],
        )
        .await;
    assert_eq!(malformed.status, 400);
    let missing = server
        .control
        .call("DELETE", "/v1/faults/f99", None, &[])
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn rules_from_the_config_file_are_in_force_from_the_start() {
    let spec: FaultSpec = serde_json::from_value(json!({"preset": "throttled"})).unwrap();
    let server = TestServer::start(TestConfig {
        faults: vec![spec],
        ..TestConfig::default()
    })
    .await;
    assert_eq!(server.get(INSTANCE).await.status, 429);
    let listed = server
        .control
        .call("GET", "/v1/faults", None, &[])
        .await
        .json();
    assert_eq!(listed["faults"][0]["preset"], "throttled");
}
