//! `GET /metadata/loadbalancer` (spec §8) against a whole server: §8.2's example byte for
//! byte, the version gate (≥ 2020-10-01), the gateway variant, every §8.4 answer with the
//! troubleshooting page's exact text, and `loadBalancer` checked when a definition is loaded
//! or written, set and removed through the control API like any VM member.

use serde_json::{Value, json};

use crate::support::{Reply, TestConfig, TestServer, Vms, request_bytes};

const LB: &str = "/metadata/loadbalancer";

/// §8.2's example, compact as the wire carries it.
const SPEC_EXAMPLE: &str = r#"{"loadbalancer":{"publicIpAddresses":[{"frontendIpAddress":"51.0.0.1","privateIpAddress":"10.1.0.4"}],"inboundRules":[{"frontendIpAddress":"50.0.0.1","protocol":"tcp","frontendPort":80,"backendPort":443,"privateIpAddress":"10.1.0.4"},{"frontendIpAddress":"2603:10e1:100:2::1:1","protocol":"tcp","frontendPort":80,"backendPort":443,"privateIpAddress":"ace:cab:deca:deed::1"}],"outboundRules":[{"frontendIpAddress":"50.0.0.1","privateIpAddress":"10.1.0.4"},{"frontendIpAddress":"2603:10e1:100:2::1:1","privateIpAddress":"ace:cab:deca:deed::1"}]}}"#;

/// A definition holding §8.2's example, written in YAML with members in another order.
const VM: &str = r#"
vms:
  - id: lb-vm
    instance: {compute: {name: lb-vm}}
    loadBalancer:
      outboundRules:
        - {privateIpAddress: 10.1.0.4, frontendIpAddress: 50.0.0.1}
        - {privateIpAddress: "ace:cab:deca:deed::1", frontendIpAddress: "2603:10e1:100:2::1:1"}
      inboundRules:
        - {backendPort: 443, frontendPort: 80, protocol: tcp, privateIpAddress: 10.1.0.4, frontendIpAddress: 50.0.0.1}
        - {backendPort: 443, frontendPort: 80, protocol: tcp, privateIpAddress: "ace:cab:deca:deed::1", frontendIpAddress: "2603:10e1:100:2::1:1"}
      publicIpAddresses:
        - {privateIpAddress: 10.1.0.4, frontendIpAddress: 51.0.0.1}
"#;

async fn start(definitions: &str, rate_limit: u32) -> TestServer {
    TestServer::start(TestConfig {
        vms: Vms::Text(definitions.to_string()),
        rate_limit,
        ..TestConfig::default()
    })
    .await
}

/// `{"error":"<message>"}` (§8.4: wrapped "by analogy" with the other endpoints).
fn error(message: &str) -> String {
    json!({ "error": message }).to_string()
}

fn assert_answer(reply: &Reply, status: u16, message: &str) {
    assert_eq!(
        (reply.status, reply.text()),
        (status, error(message).as_str())
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
}

#[tokio::test]
async fn the_docs_example_comes_out_byte_for_byte_at_every_served_version() {
    let server = start(VM, 0).await;
    let versions: Value = server.get("/metadata/versions").await.json();
    let mut served = 0;
    for version in versions["apiVersions"].as_array().unwrap() {
        let version = version.as_str().unwrap();
        let reply = server.get(&format!("{LB}?api-version={version}")).await;
        if version < "2020-10-01" {
            let message = format!(
                "Parameter value is not allowed, or parameter value \"{version}\" is not allowed for parameter \"api-version\". Please fix the request and retry."
            );
            assert_answer(&reply, 400, &message);
            continue;
        }
        served += 1;
        assert_eq!(
            (reply.status, reply.text()),
            (200, SPEC_EXAMPLE),
            "{version}"
        );
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
    assert_eq!(served, 16, "2020-10-01 and the 15 after it");
    // insights-core's request (spec §8.1), with its curl-style headers.
    let insights = server
        .request(
            "GET",
            &format!("{LB}?api-version=2021-12-13&format=json"),
            &[
                ("Metadata", "true"),
                ("User-Agent", "curl/7.88.1"),
                ("Accept", "*/*"),
            ],
        )
        .await;
    assert_eq!((insights.status, insights.text()), (200, SPEC_EXAMPLE));
    let trailing = server.get(&format!("{LB}/?api-version=2021-12-13")).await;
    assert_eq!(trailing.text(), SPEC_EXAMPLE);
}

#[tokio::test]
async fn gateway_tunnels_and_empty_lists_are_served_in_the_docs_order() {
    let definitions = r#"
vms:
  - id: gw
    loadBalancer:
      inboundRules:
        - {frontendIpAddress: 10.0.0.10, protocol: all, frontendPort: 0, backendPort: 0, privateIpAddress: 10.0.0.4}
      tunnelInterfaces:
        - {localPort: 10800, localIpAddress: 10.0.0.4, protocol: vxlan, type: internal, identifier: 800, gatewayPort: 10800, gatewayIpAddress: 10.0.1.4}
        - {localPort: 10801, localIpAddress: 10.0.0.4, protocol: vxlan, type: external, identifier: 801, gatewayPort: 10801, gatewayIpAddress: 10.0.1.4}
"#;
    let server = start(definitions, 0).await;
    let reply = server.get(&format!("{LB}?api-version=2023-07-01")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text(),
        r#"{"loadbalancer":{"publicIpAddresses":[],"inboundRules":[{"frontendIpAddress":"10.0.0.10","protocol":"all","frontendPort":0,"backendPort":0,"privateIpAddress":"10.0.0.4"}],"outboundRules":[],"tunnelInterfaces":[{"gatewayIpAddress":"10.0.1.4","gatewayPort":10800,"identifier":800,"type":"internal","protocol":"vxlan","localIpAddress":"10.0.0.4","localPort":10800},{"gatewayIpAddress":"10.0.1.4","gatewayPort":10801,"identifier":801,"type":"external","protocol":"vxlan","localIpAddress":"10.0.0.4","localPort":10801}]}}"#
    );
}

/// Every row of §8.4's table, each from the request (or definition) that causes it.
#[tokio::test]
async fn every_troubleshooting_answer() {
    let server = start(VM, 0).await;
    let url = |query: &str| format!("{LB}?api-version=2021-12-13{query}");
    assert_answer(
        &server.get(LB).await,
        400,
        r#"Missing required parameter "api-version". Please fix the request and retry."#,
    );
    assert_answer(
        &server.get(&url("&format=text")).await,
        400,
        r#"Parameter value is not allowed, or parameter value "text" is not allowed for parameter "format". Please fix the request and retry."#,
    );
    assert_answer(
        &server.get(&format!("{LB}?api-version=latest")).await,
        400,
        r#"Parameter value is not allowed, or parameter value "latest" is not allowed for parameter "api-version". Please fix the request and retry."#,
    );
    for query in ["&nonce=1", "&api-version=2021-12-13", "&Format=json"] {
        assert_answer(
            &server.get(&url(query)).await,
            400,
            "Unexpected request. Please check the query parameters and retry.",
        );
    }
    assert_answer(
        &server
            .get(&format!("{LB}/publicIpAddresses?api-version=2021-12-13"))
            .await,
        404,
        r#"API is not found: Path = "/metadata/loadbalancer/publicIpAddresses", Method = "GET""#,
    );
    let post = server
        .request("POST", &url(""), &[("Metadata", "true")])
        .await;
    assert_answer(
        &post,
        405,
        r#"Http method is not allowed: Path = "/metadata/loadbalancer", Method = "POST""#,
    );
    assert_eq!(post.header("allow"), Some("GET"));
    // The four length limits (§8.4 names them; the values are ours: guest::LB_LIMITS).
    let with_body = server
        .raw(request_bytes(
            "GET",
            &url(""),
            "169.254.169.254",
            &[("Metadata", "true")],
            b"{}",
        ))
        .await;
    assert_answer(
        &with_body,
        400,
        "Request body is larger than MaxBodyLength: 0",
    );
    assert_answer(
        &server.get(&url(&format!("&{}=1", "k".repeat(65)))).await,
        400,
        "Parameter key length is larger than MaxParameterKeyLength: 64",
    );
    assert_answer(
        &server
            .get(&url(&format!("&format={}", "j".repeat(257))))
            .await,
        400,
        "Parameter value length is larger than MaxParameterValueLength: 256",
    );
    let long_header = "h".repeat(4097);
    assert_answer(
        &server
            .request(
                "GET",
                &url(""),
                &[("Metadata", "true"), ("X-Long", &long_header)],
            )
            .await,
        400,
        "Parameter header value length is larger than MaxHeaderValueLength: 4096",
    );
    // Outages an operator sets in the definition, and no load balancer at all.
    for (outage, status, message) in [
        (
            "notAvailableRightNow",
            404,
            "Load Balancer metadata API is not available right now. Please retry later",
        ),
        (
            "notCurrentlyAvailable",
            404,
            "/metadata/loadbalancer is not currently available",
        ),
        (
            "serviceUnavailable",
            503,
            "Internal service unavailable. Please retry later.",
        ),
    ] {
        let patch = json!({ "loadBalancer": outage });
        let patched = server
            .control
            .call("PATCH", "/v1/vms/lb-vm", Some(&patch), &[])
            .await;
        assert_eq!(patched.status, 200, "{}", patched.text());
        assert_answer(&server.get(&url("")).await, status, message);
    }
    let removed = server
        .control
        .call(
            "PATCH",
            "/v1/vms/lb-vm",
            Some(&json!({"loadBalancer": null})),
            &[],
        )
        .await;
    assert_eq!(removed.status, 200);
    assert_answer(
        &server.get(&url("")).await,
        404,
        "No load balancer metadata is found. Please check if your VM is using any nonbasic SKU load balancer and retry later.",
    );
    // Header rules shared by every endpoint keep the general bodies (§1.3).
    let headerless = server.request("GET", &url(""), &[]).await;
    assert_eq!(
        (headerless.status, headerless.text()),
        (
            400,
            r#"{"error":"Bad request. Required metadata header not specified"}"#
        )
    );
}

#[tokio::test]
async fn throttled_requests_get_the_catalogues_429() {
    let server = start(VM, 1).await;
    let url = format!("{LB}?api-version=2021-12-13");
    assert_eq!(server.get(&url).await.status, 200);
    assert_answer(&server.get(&url).await, 429, "Too many requests");
}

#[tokio::test]
async fn load_balancers_are_checked_when_written_and_set_like_any_member() {
    let server = start(r#"{"vms":[{"id":"lb-vm"}]}"#, 0).await;
    let bad = json!({
        "loadBalancer": {
            "inboundRules": [{"frontendIpAddress": "50.0.0.1", "protocol": "icmp",
                              "frontendPort": 70000, "backendPort": 443,
                              "privateIpAddress": "10.1.0"}],
            "outboundRule": []
        }
    });
    let refused = server
        .control
        .call("PATCH", "/v1/vms/lb-vm", Some(&bad), &[])
        .await;
    assert_eq!(refused.status, 422, "{}", refused.text());
    let mut paths: Vec<String> = refused.json()["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "loadBalancer.inboundRules[0].frontendPort",
            "loadBalancer.inboundRules[0].privateIpAddress",
            "loadBalancer.inboundRules[0].protocol",
            "loadBalancer.outboundRule",
        ]
    );
    let good: Value = serde_json::from_str(SPEC_EXAMPLE).unwrap();
    let set = server
        .control
        .call(
            "PATCH",
            "/v1/vms/lb-vm",
            Some(&json!({"loadBalancer": good["loadbalancer"]})),
            &[],
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    let reply = server.get(&format!("{LB}?api-version=2020-10-01")).await;
    assert_eq!(reply.text(), SPEC_EXAMPLE);
    let outage = server
        .control
        .call(
            "PATCH",
            "/v1/vms/lb-vm",
            Some(&json!({"loadBalancer": "down"})),
            &[],
        )
        .await;
    assert_eq!(outage.status, 422);
    assert_eq!(
        outage.json()["error"]["problems"][0]["path"],
        "loadBalancer"
    );
}

/// A definitions file with a bad `loadBalancer` is refused with the problem's full path.
#[test]
fn a_definition_file_names_the_load_balancer_problem() {
    let text = r#"
vms:
  - id: a
    loadBalancer:
      publicIpAddresses: [{frontendIpAddress: 51.0.0.1}]
"#;
    let error = azimds::definition::parse(text, None, "vms.yaml").unwrap_err();
    assert_eq!(
        error.to_string(),
        "vms.yaml: 1 problem in the VM definitions\n  vms.yaml: VM 0 (unnamed): vms[0].loadBalancer.publicIpAddresses[0].privateIpAddress: missing"
    );
}
