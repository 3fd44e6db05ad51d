//! What azimds tells about its guests (issue 10): the request journal, the Prometheus metrics
//! moving as requests arrive, and the manual clock driving an event's lifecycle and a token's
//! refresh through the control API, without sleeping.

use std::time::{Duration, SystemTime};

use azimds::clock::Clock;
use base64::Engine;
use serde_json::{Value, json};

use crate::support::{TestConfig, TestServer, Vms, request_bytes};

const INSTANCE: &str = "/metadata/instance?api-version=2021-02-01";
const TOKEN: &str =
    "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/";
const DEMO: &str = "azimds-demo";

async fn journal(server: &TestServer, query: &str) -> Value {
    let reply = server
        .control
        .call("GET", &format!("/v1/vms/{DEMO}/journal{query}"), None, &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

async fn metrics(server: &TestServer) -> String {
    let reply = server.control.call("GET", "/metrics", None, &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    reply.text().to_string()
}

/// The value of the sample `series` (name and labels exactly as exposed), 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

/// "My agent called /metadata/instance with api-version X and the Metadata header."
#[tokio::test]
async fn the_journal_says_what_each_request_asked_and_got() {
    let server = crate::support::start_demo().await;
    let agent = [("Metadata", "true"), ("User-Agent", "cloud-init/23.1")];
    assert_eq!(server.request("GET", INSTANCE, &agent).await.status, 200);
    let headerless = server
        .request(
            "GET",
            "/metadata/instance/compute/vmId?api-version=2019-06-01&format=text",
            &[("User-Agent", "curl/8")],
        )
        .await;
    assert_eq!(headerless.status, 400);
    let token = server.get(TOKEN).await;
    assert_eq!(token.status, 200);
    assert_eq!(server.get("/metadata/nothing").await.status, 404);

    let page = journal(&server, "").await;
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    let first = &entries[0];
    assert_eq!(first["seq"], 1);
    assert_eq!(first["method"], "GET");
    assert_eq!(first["endpoint"], "instance");
    assert_eq!(first["path"], "/metadata/instance");
    assert_eq!(first["query"], "api-version=2021-02-01");
    assert_eq!(first["status"], 200);
    assert_eq!(first["metadataHeader"], true);
    assert_eq!(first["userAgent"], "cloud-init/23.1");
    assert_eq!(first["fault"], Value::Null);
    assert_eq!(
        first["time"],
        azimds::maintenance::hooks::rfc3339(server.clock.now())
    );
    assert_eq!(entries[1]["metadataHeader"], false);
    assert_eq!(entries[1]["status"], 400);
    assert_eq!(entries[2]["endpoint"], "token");
    assert_eq!(entries[3]["endpoint"], "other");
    assert_eq!(entries[3]["status"], 404);
    // Nothing secret: the token the VM got is nowhere in its journal.
    let access_token = token.json()["access_token"].as_str().unwrap().to_string();
    assert!(!page.to_string().contains(&access_token));

    // Paging: after a sequence number, with a limit.
    let after = journal(&server, "?after=2&limit=1").await;
    assert_eq!(after["entries"][0]["seq"], 3);
    assert_eq!(after["entries"].as_array().unwrap().len(), 1);
    assert_eq!(after["next"], 5);
    let missing = server
        .control
        .call("GET", "/v1/vms/nope/journal", None, &[])
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn the_journal_keeps_the_last_n_and_says_when_it_dropped_some() {
    let server = crate::support::start_demo().await;
    for _ in 0..70 {
        server.get(INSTANCE).await;
    }
    let page = journal(&server, "?after=1").await;
    assert_eq!(page["capacity"], 64);
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 64);
    assert_eq!(entries[0]["seq"], 7, "the 64 newest of 70");
    assert_eq!(page["missed"], true);
}

#[tokio::test]
async fn a_follower_waits_for_the_next_request() {
    let server = crate::support::start_demo().await;
    server.get(INSTANCE).await;
    let control = server.control.clone();
    let mut follower = tokio::spawn(async move {
        control
            .call(
                "GET",
                &format!("/v1/vms/{DEMO}/journal?after=1&wait=30"),
                None,
                &[],
            )
            .await
            .json()
    });
    let early = tokio::time::timeout(Duration::from_millis(300), &mut follower).await;
    assert!(early.is_err(), "nothing new yet: the follower waits");
    server.get("/metadata/versions").await;
    let page = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("woken by the request")
        .unwrap();
    assert_eq!(page["entries"][0]["seq"], 2);
    assert_eq!(page["entries"][0]["endpoint"], "versions");
}

#[tokio::test]
async fn metrics_count_requests_refusals_tokens_faults_and_commits() {
    let server = TestServer::start(TestConfig {
        rate_limit: 2,
        ..TestConfig::default()
    })
    .await;
    let before = metrics(&server).await;
    assert!(before.contains("# TYPE azimds_guest_requests_total counter"));
    for _ in 0..2 {
        assert_eq!(server.get(INSTANCE).await.status, 200);
    }
    assert_eq!(
        server.get(INSTANCE).await.status,
        429,
        "over the limit of 2"
    );
    server.clock.advance(Duration::from_secs(1));
    let headerless = server.request("GET", INSTANCE, &[]).await;
    assert_eq!(headerless.status, 400);
    server.clock.advance(Duration::from_secs(1));
    let forwarded = server
        .request(
            "GET",
            INSTANCE,
            &[("Metadata", "true"), ("X-Forwarded-For", "10.0.0.9")],
        )
        .await;
    assert_eq!(forwarded.status, 400);
    for _ in 0..2 {
        assert_eq!(server.get(TOKEN).await.status, 200);
    }
    server
        .control
        .call(
            "POST",
            "/v1/faults",
            Some(&json!({"endpoint": "versions", "status": 503})),
            &[],
        )
        .await;
    assert_eq!(server.get("/metadata/versions").await.status, 503);
    server
        .control
        .call(
            "PATCH",
            &format!("/v1/vms/{DEMO}"),
            Some(&json!({"instance": {"compute": {"zone": "2"}}})),
            &[],
        )
        .await;

    let text = metrics(&server).await;
    let instance = |status: &str| {
        sample(
            &text,
            &format!(
                r#"azimds_guest_requests_total{{endpoint="instance",status="{status}",api_version="2021-02-01"}}"#
            ),
        )
    };
    assert_eq!(instance("200"), 2.0);
    assert_eq!(instance("429"), 1.0);
    assert_eq!(instance("400"), 2.0);
    assert_eq!(
        sample(
            &text,
            r#"azimds_guest_throttled_total{endpoint="instance"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&text, "azimds_guest_missing_metadata_header_total"),
        1.0
    );
    assert_eq!(sample(&text, "azimds_guest_forwarded_for_total"), 1.0);
    assert_eq!(sample(&text, "azimds_tokens_issued_total"), 1.0);
    assert_eq!(sample(&text, "azimds_token_cache_hits_total"), 1.0);
    assert_eq!(
        sample(&text, r#"azimds_faults_injected_total{action="status"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"azimds_guest_requests_total{endpoint="versions",status="503",api_version="none"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"azimds_guest_request_duration_seconds_count{endpoint="instance"}"#
        ),
        5.0
    );
    assert_eq!(sample(&text, "azimds_fault_rules"), 1.0);
    assert_eq!(sample(&text, "azimds_vms"), 1.0);
    assert!(sample(&text, "azimds_store_commit_duration_seconds_count") >= 1.0);
    // Per-VM series (the test servers turn them on): 2 + 2 answered, 5 refused or faulted.
    assert_eq!(
        sample(
            &text,
            &format!(r#"azimds_vm_requests_total{{vm="{DEMO}",class="2xx"}}"#)
        ),
        4.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"azimds_vm_requests_total{{vm="{DEMO}",class="4xx"}}"#)
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"azimds_vm_faults_injected_total{{vm="{DEMO}"}}"#)
        ),
        1.0
    );
    // The signing key's kid, as the JWKS publishes it.
    let jwks = server
        .control
        .call("GET", "/common/discovery/keys", None, &[])
        .await
        .json();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap();
    assert_eq!(
        sample(
            &text,
            &format!(r#"azimds_signing_key{{kid="{kid}",current="true"}}"#)
        ),
        1.0
    );

    // Behind the token; OpenMetrics on request.
    assert_eq!(
        server
            .control
            .anonymous()
            .call("GET", "/metrics", None, &[])
            .await
            .status,
        401
    );
    let open = server
        .control
        .call(
            "GET",
            "/metrics",
            None,
            &[("Accept", "application/openmetrics-text; version=1.0.0")],
        )
        .await;
    assert!(
        open.header("Content-Type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(open.text().ends_with("# EOF\n"));
}

/// A scheduled event walked from Scheduled to Started to gone by moving the clock through the
/// control API (§6.5), no sleeping.
#[tokio::test]
async fn the_manual_clock_walks_an_event_through_its_lifecycle() {
    // A whole second: NotBefore is shown in whole seconds, rounded up.
    let server = TestServer::start(TestConfig {
        start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000),
        ..TestConfig::default()
    })
    .await;
    let event = server
        .control
        .call(
            "POST",
            "/v1/events",
            Some(&json!({"type": "Freeze", "vms": [DEMO], "noticeSeconds": 600, "completeAfterSeconds": 60})),
            &[],
        )
        .await;
    assert_eq!(event.status, 201, "{}", event.text());
    let events = "/metadata/scheduledevents?api-version=2020-07-01";
    let status = |doc: &Value| doc["Events"][0]["EventStatus"].as_str().map(str::to_string);
    assert_eq!(
        status(&server.get(events).await.json()).as_deref(),
        Some("Scheduled")
    );
    let advance = |by: Value| {
        let control = server.control.clone();
        async move {
            let reply = control
                .call("POST", "/v1/clock/advance", Some(&json!({ "by": by })), &[])
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.json()
        }
    };
    let moved = advance(json!("9m")).await;
    assert_eq!(moved["transitions"], 0);
    assert_eq!(moved["manual"], true);
    assert_eq!(
        advance(json!(60)).await["transitions"],
        1,
        "NotBefore reached"
    );
    let started = server.get(events).await.json();
    assert_eq!(status(&started).as_deref(), Some("Started"));
    assert_eq!(started["Events"][0]["NotBefore"], "");
    assert_eq!(advance(json!("1m")).await["transitions"], 1);
    assert_eq!(server.get(events).await.json()["Events"], json!([]));
    let bad = server
        .control
        .call(
            "POST",
            "/v1/clock/advance",
            Some(&json!({"by": "soon"})),
            &[],
        )
        .await;
    assert_eq!(bad.status, 422);
}

/// Tokens carry the manual clock's time, and the cache refreshes them when it says so.
#[tokio::test]
async fn the_manual_clock_drives_token_lifetimes_and_refresh() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let server = TestServer::start(TestConfig {
        vms: Vms::Demo,
        start,
        ..TestConfig::default()
    })
    .await;
    let claims = |token: &Value| -> Value {
        let jwt = token["access_token"].as_str().unwrap();
        let payload = jwt.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let first = server.get(TOKEN).await.json();
    let t0 = unix(start);
    assert_eq!(first["expires_on"], (t0 + 86_400).to_string());
    assert_eq!(claims(&first)["exp"], t0 + 86_400);
    // Entra's 5-minute skew (§4.3: expires_on − not_before = 86700).
    assert_eq!(claims(&first)["nbf"], t0 - 300);
    assert_eq!(first["not_before"], (t0 - 300).to_string());
    // Set the clock to just before the refresh margin (5 min): still the cached token.
    let set = |to: SystemTime| {
        let control = server.control.clone();
        async move {
            let to = azimds::maintenance::hooks::rfc3339(to);
            let reply = control
                .call("POST", "/v1/clock/set", Some(&json!({ "to": to })), &[])
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text());
        }
    };
    set(start + Duration::from_secs(86_400 - 301)).await;
    let cached = server.get(TOKEN).await.json();
    assert_eq!(cached["access_token"], first["access_token"]);
    assert_eq!(cached["expires_in"], "301");
    set(start + Duration::from_secs(86_400 - 300)).await;
    let refreshed = server.get(TOKEN).await.json();
    assert_ne!(refreshed["access_token"], first["access_token"]);
    assert_eq!(
        refreshed["expires_on"],
        (t0 + 86_400 - 300 + 86_400).to_string()
    );
    let clock = server
        .control
        .call("GET", "/v1/clock", None, &[])
        .await
        .json();
    assert_eq!(clock["unix"], (t0 + 86_400 - 300) as f64);
}

/// An injected answer is logged as injected (the in-process capture sees it).
#[tokio::test]
async fn injected_answers_are_logged_as_injected() {
    let server = crate::support::start_demo().await;
    let rule = server
        .control
        .call(
            "POST",
            "/v1/faults",
            Some(&json!({"path": "/metadata/versions/", "status": 500})),
            &[],
        )
        .await
        .json();
    let id = rule["id"].as_str().unwrap();
    let reply = server
        .raw(request_bytes(
            "GET",
            "/metadata/versions/",
            "x",
            &[("Metadata", "true")],
            b"",
        ))
        .await;
    assert_eq!(reply.status, 500);
    let line = format!(r#""rule":"{id}","action":"status","endpoint":"versions","status":500"#);
    assert!(
        crate::secrets::captured_lines_containing(&line) > 0,
        "{line}"
    );
}
