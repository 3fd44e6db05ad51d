//! docs/testing.md's Rust example (the page quotes this file whole).
//! Cargo.toml: [dev-dependencies] azimds = { version = "0.1", features = ["testing"] }

use std::time::Duration;

use azimds::testing::TestServer;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the code under test would do: GET a metadata URL with `Metadata: true`.
async fn get(base_url: &str, path: &str) -> String {
    let address = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nMetadata: true\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_once("\r\n\r\n").unwrap().1.to_string()
}

#[tokio::test]
async fn a_vm_given_as_a_value() {
    let imds = TestServer::builder()
        .instance(json!({
            "compute": {"name": "web-1", "location": "westeurope", "tags": "env:test"}
        }))
        .start()
        .await
        .unwrap();
    let name = get(
        &imds.url(),
        "/metadata/instance/compute/name?api-version=2021-02-01&format=text",
    )
    .await;
    assert_eq!(name, "web-1");
    let tags = get(
        &imds.url(),
        "/metadata/instance/compute/tagsList?api-version=2021-02-01",
    )
    .await;
    assert_eq!(tags, r#"[{"name":"env","value":"test"}]"#);
    imds.stop().await;
}

#[tokio::test]
async fn scheduled_events_on_a_clock_the_test_moves() {
    let imds = TestServer::builder()
        .vm(json!({
            "instance": {"compute": {"name": "web-1"}},
            "scheduledEvents": [{
                "EventId": "C7061BAC-AFDC-4513-B24B-AA5F13A16123",
                "EventType": "Reboot",
                "NotBefore": "Mon, 01 Jan 2035 00:15:00 GMT"
            }]
        }))
        .clock_at(std::time::UNIX_EPOCH + Duration::from_secs(2_051_222_400)) // 2035-01-01
        .start()
        .await
        .unwrap();
    let events = get(
        &imds.url(),
        "/metadata/scheduledevents?api-version=2020-07-01",
    )
    .await;
    assert!(events.contains(r#""EventStatus":"Scheduled""#), "{events}");
    imds.advance(Duration::from_secs(15 * 60)); // NotBefore passes: the event starts
    let events = get(
        &imds.url(),
        "/metadata/scheduledevents?api-version=2020-07-01",
    )
    .await;
    assert!(events.contains(r#""EventStatus":"Started""#), "{events}");
}
