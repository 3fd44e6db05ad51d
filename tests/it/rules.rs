use std::time::{Duration, Instant};

use crate::support::{start_demo, start_with};

const INSTANCE: &str = "/metadata/instance?api-version=2021-02-01";
const MISSING_HEADER: &str = r#"{"error":"Bad request. Required metadata header not specified"}"#;
const BAD_VERSION: &str = r#"{"error":"Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds","newest-versions":["2025-04-07","2024-07-17","2024-03-15"]}"#;

/// §1.3: name and value case-insensitive; anything but one `true` is a missing header.
#[tokio::test]
async fn metadata_header_rules() {
    let imds = start_demo().await;
    for headers in [
        vec![("Metadata", "true")],
        vec![("metadata", "True")],
        vec![("METADATA", "TRUE")],
    ] {
        assert_eq!(
            imds.request("GET", INSTANCE, &headers).await.status,
            200,
            "{headers:?}"
        );
    }
    for headers in [
        vec![],
        vec![("Metadata", "false")],
        vec![("Metadata", "1")],
        vec![("Metadata", "")],
        vec![("Metadata", "true"), ("Metadata", "true")],
        vec![("Meta-data", "true")],
    ] {
        let reply = imds.request("GET", INSTANCE, &headers).await;
        assert_eq!(reply.status, 400, "{headers:?}");
        assert_eq!(reply.text(), MISSING_HEADER);
        assert_eq!(
            reply.header("content-length"),
            Some("63"),
            "§12.1: 63 bytes"
        );
    }
    // Every endpoint needs it, /metadata/versions included (§2.3).
    let versions = imds.request("GET", "/metadata/versions", &[]).await;
    assert_eq!((versions.status, versions.text()), (400, MISSING_HEADER));
}

#[tokio::test]
async fn x_forwarded_for_is_rejected() {
    let imds = start_demo().await;
    let reply = imds
        .request(
            "GET",
            INSTANCE,
            &[("Metadata", "true"), ("X-Forwarded-For", "10.0.0.9")],
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json()["error"].as_str().unwrap().split('.').next(),
        Some("Bad request")
    );
    let lower = imds
        .request(
            "GET",
            "/metadata/versions",
            &[("Metadata", "true"), ("x-forwarded-for", "")],
        )
        .await;
    assert_eq!(lower.status, 400);
}

/// §1.4: missing, unknown, withdrawn, differently-cased name or `latest` → the exact 400.
#[tokio::test]
async fn api_version_rules() {
    let imds = start_demo().await;
    for target in [
        "/metadata/instance",
        "/metadata/instance?api-version=",
        "/metadata/instance?api-version=2017-07-01",
        "/metadata/instance?api-version=latest",
        "/metadata/instance?api-version=2021-02-1",
        "/metadata/instance?Api-Version=2021-02-01",
        "/metadata/instance?version=2021-10-01",
        "/metadata/instance/compute/location?format=text",
    ] {
        let reply = imds.get(target).await;
        assert_eq!(reply.status, 400, "{target}");
        assert_eq!(reply.text(), BAD_VERSION, "{target}");
    }
    let versions = imds.get("/metadata/versions").await;
    assert_eq!(versions.status, 200, "no api-version needed");
    let versions = versions.json();
    let list: Vec<&str> = versions["apiVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(list.len(), 35);
    assert_eq!((list[0], list[34]), ("2017-03-01", "2025-04-07"));
    assert!(list.windows(2).all(|w| w[0] < w[1]), "ascending (§2.3)");
    for version in list {
        let reply = imds
            .get(&format!("/metadata/instance?api-version={version}"))
            .await;
        assert_eq!(
            reply.status, 200,
            "every listed version is served: {version}"
        );
    }
}

#[tokio::test]
async fn query_parameter_rules() {
    let imds = start_demo().await;
    for target in [
        "/metadata/instance?api-version=2021-02-01&api-version=2021-02-01",
        "/metadata/instance?api-version=2021-02-01&format=json&format=json",
        "/metadata/instance?api-version=2021-02-01&foo=1&foo=2",
    ] {
        let reply = imds.get(target).await;
        assert_eq!(reply.status, 400, "{target}");
        assert_eq!(
            reply.text(),
            r#"{"error":"Bad request. Duplicate query parameters are not allowed"}"#
        );
    }
    for format in ["xml", "", "jsonp"] {
        let reply = imds.get(&format!("{INSTANCE}&format={format}")).await;
        assert_eq!(reply.status, 400, "format={format}");
        assert!(reply.text().contains("format"));
    }
    let upper = imds.get(&format!("{INSTANCE}&format=JSON")).await;
    assert_eq!(upper.status, 200);
    let unknown = imds
        .get(&format!("{INSTANCE}&unknown=1&x-ms-client-request-id=abc"))
        .await;
    assert_eq!(unknown.status, 200, "unknown parameters are ignored (§1.5)");
}

#[tokio::test]
async fn unknown_paths_are_not_found() {
    let imds = start_demo().await;
    for path in [
        "/",
        "/metadata",
        "/metadata/",
        "/metadata/foo?api-version=2021-02-01",
        "/metadata/instancex?api-version=2021-02-01",
        "/metadata/latest/instance",
        "/metadata/v1/instance",
        "/metadata/instance/compute/nonexistent?api-version=2021-02-01",
        "/metadata/instance/Compute?api-version=2021-02-01",
        "/metadata/instance/compute//name?api-version=2021-02-01&format=text",
        "/metadata/versions/extra",
        "/metadata/identity/getplatformmetadata?cred-api-version=2.0",
        "/control/vms",
        "/healthz",
    ] {
        let reply = imds.get(path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.text(), r#"{"error":"Not found"}"#, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
}

#[tokio::test]
async fn other_methods_are_not_allowed() {
    let imds = start_demo().await;
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"] {
        for target in [
            INSTANCE,
            "/metadata/versions",
            "/metadata/instance/compute/vmId?api-version=2021-02-01",
        ] {
            let reply = imds
                .request(
                    method,
                    target,
                    &[("Metadata", "true"), ("Content-Length", "0")],
                )
                .await;
            assert_eq!(reply.status, 405, "{method} {target}");
            assert_eq!(reply.header("allow"), Some("GET"));
            if method != "HEAD" {
                assert_eq!(reply.text(), r#"{"error":"Method not allowed"}"#);
            }
        }
    }
}

/// §1.9: Content-Type with charset, Server containing IMDS, exact Content-Length, a GUID
/// x-ms-request-id, and a Date, on successes and errors alike.
#[tokio::test]
async fn response_headers() {
    let imds = start_demo().await;
    let mut ids = Vec::new();
    for target in [
        INSTANCE,
        "/metadata/instance?api-version=bad",
        "/nope",
        "/metadata/versions",
    ] {
        let reply = imds.get(target).await;
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8"),
            "{target}"
        );
        assert!(reply.header("server").unwrap().contains("IMDS"), "{target}");
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str()),
            "{target}"
        );
        assert!(reply.header("transfer-encoding").is_none(), "never chunked");
        assert!(reply.header("date").is_some());
        let id = reply.header("x-ms-request-id").unwrap().to_string();
        assert!(
            uuid::Uuid::parse_str(&id).is_ok() && id.len() == 36 && id == id.to_lowercase(),
            "{id}"
        );
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "request ids are unique");
}

/// §1.11: 5 requests per second per VM by default, then 429; `0` turns it off.
#[tokio::test]
async fn throttling_per_vm() {
    let demo = include_str!("../../src/definition/demo.json");
    let imds = start_with(demo, 5).await;
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(imds.get(INSTANCE).await.status);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses[..5].iter().all(|s| *s == 200),
        "the burst of 5 is served: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(
        ok as f64 <= 5.0 + 5.0 * elapsed + 1.0,
        "{ok} served in {elapsed:.2} s: {statuses:?}"
    );
    let throttled = imds.get(INSTANCE).await;
    if throttled.status == 429 {
        assert_eq!(throttled.text(), r#"{"error":"Too many requests"}"#);
    }
    // The server's clock is the test's: a second and a bit later, without sleeping.
    imds.clock.advance(Duration::from_millis(1100));
    assert_eq!(imds.get(INSTANCE).await.status, 200, "tokens refill");

    let unlimited = start_with(demo, 0).await;
    for _ in 0..100 {
        assert_eq!(unlimited.get(INSTANCE).await.status, 200);
    }
}
