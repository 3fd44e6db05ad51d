use crate::support::start_demo;

/// Every answer to hostile input is a 4xx: never a 5xx, never a dropped connection.
fn assert_client_error(status: u16, what: &str) {
    assert!((400..500).contains(&status), "{what}: got {status}");
}

#[tokio::test]
async fn oversized_request_lines_and_headers() {
    let imds = start_demo().await;
    let long_query = format!(
        "/metadata/instance?api-version=2021-02-01&x={}",
        "a".repeat(20_000)
    );
    let reply = imds.get(&long_query).await;
    assert_client_error(reply.status, "20 kB request line");
    let big = "b".repeat(20_000);
    let reply = imds
        .request(
            "GET",
            "/metadata/instance?api-version=2021-02-01",
            &[("Metadata", "true"), ("X-Big", &big)],
        )
        .await;
    assert_eq!(reply.status, 431, "20 kB header");
    let many: Vec<(String, String)> = (0..200).map(|i| (format!("X-H{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let reply = imds
        .request("GET", "/metadata/instance?api-version=2021-02-01", &many)
        .await;
    assert_client_error(reply.status, "200 headers");
}

#[tokio::test]
async fn invalid_bytes_and_encodings() {
    let imds = start_demo().await;
    let raw_utf8 = imds.raw(b"GET /metadata/instance/compute/\xff\xfe?api-version=2021-02-01 HTTP/1.1\r\nMetadata: true\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_utf8.status, 400, "raw non-ASCII in the request target");
    for target in [
        "/metadata/instance/compute/%zz?api-version=2021-02-01",
        "/metadata/instance/compute/%e2%28%a1?api-version=2021-02-01",
        "/metadata/instance/compute/name%?api-version=2021-02-01",
        "/metadata/instance?api-version=2021-02-01&format=%G1",
        "/metadata/instance?api-version=2021-02-01&%ff=1",
    ] {
        let reply = imds.get(target).await;
        assert_eq!(reply.status, 400, "{target}");
        assert_eq!(
            reply.text(),
            r#"{"error":"Bad request. Malformed percent-encoding in the request URL"}"#
        );
    }
    let encoded = imds
        .get("/metadata/instance/compute/%76mId?api-version=2021-02-01&format=text")
        .await;
    assert_eq!(
        encoded.status, 200,
        "valid percent-encoding in a path is decoded"
    );
    let garbage = imds.raw(b"HELLO\r\n\r\n").await;
    assert_eq!(garbage.status, 400);
    let nul = imds
        .raw(b"GET /metadata/versions HTTP/1.1\r\nMetadata: tr\0ue\r\n\r\n")
        .await;
    assert_client_error(nul.status, "NUL in a header value");
}

#[tokio::test]
async fn absurd_indices_and_deep_paths() {
    let imds = start_demo().await;
    for index in [
        "99999999999999999999999999999",
        "-1",
        "01",
        "+0",
        "1e3",
        "0x0",
        " 0",
    ] {
        let target = format!(
            "/metadata/instance/network/interface/{}?api-version=2021-02-01",
            index.replace(' ', "%20")
        );
        assert_eq!(imds.get(&target).await.status, 404, "{index}");
    }
    let deep = format!(
        "/metadata/instance{}?api-version=2021-02-01",
        "/compute".repeat(1500)
    );
    assert_eq!(imds.get(&deep).await.status, 404);
    let through_leaf = imds
        .get("/metadata/instance/compute/vmId/0?api-version=2021-02-01&format=text")
        .await;
    assert_eq!(through_leaf.status, 404);
}

#[tokio::test]
async fn query_limits() {
    let imds = start_demo().await;
    let thirty = (0..30)
        .map(|i| format!("p{i}=1"))
        .collect::<Vec<_>>()
        .join("&");
    let ok = imds
        .get(&format!(
            "/metadata/instance?api-version=2021-02-01&{thirty}"
        ))
        .await;
    assert_eq!(ok.status, 200);
    let forty = (0..40)
        .map(|i| format!("p{i}=1"))
        .collect::<Vec<_>>()
        .join("&");
    let too_many = imds
        .get(&format!(
            "/metadata/instance?api-version=2021-02-01&{forty}"
        ))
        .await;
    assert_eq!(too_many.status, 400);
    let odd = imds
        .get("/metadata/instance?api-version=2021-02-01&&=x&flag")
        .await;
    assert_eq!(odd.status, 200, "empty pairs and bare names are harmless");
}

#[tokio::test]
async fn a_body_on_get_is_ignored() {
    let imds = start_demo().await;
    let reply = imds
        .raw(b"GET /metadata/versions HTTP/1.1\r\nMetadata: true\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        .await;
    assert_eq!(reply.status, 200);
}
