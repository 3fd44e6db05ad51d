//! The WireServer companion in-process (wireserver.md): each VM's goal state and linked
//! documents, health reports recorded per VM and shown by the control API, the Host GA
//! Plugin's answers (§6.1), the traps of §6.7, and isolation: a stranger gets nothing, a VM
//! cannot report for another. VMs call from 127.0.0.2 and 127.0.0.3 (loopback aliases).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use azimds::config::WireServerListen;
use azimds::maintenance::MaintenanceConfig;
use azimds::snapshot::CallerMode;

use crate::support::{Reply, TempDir, TestConfig, TestImds, TestServer, Vms, request_bytes};

const VM_A: &str = "127.0.0.2";
const VM_B: &str = "127.0.0.3";
const STRANGER: &str = "127.0.0.9";

fn two_vms() -> String {
    json!({"vms": [
        {"id": "vm-a", "callers": [VM_A], "instance": {"compute": {
            "name": "web-a", "vmId": "0f3a1c2e-1111-4b5c-8d9e-0a1b2c3d4e5f",
            "osProfile": {"adminUsername": "azureuser", "computerName": "web-a"}},
            "network": {"interface": [{"ipv4": {"ipAddress": [{"privateIpAddress": "10.0.0.4"}]}}]}},
         "provisioning": {"customData": "I2Nsb3VkLWNvbmZpZwo="}},
        {"id": "vm-b", "callers": [VM_B], "instance": {"compute": {"name": "web-b"}}},
    ]})
    .to_string()
}

/// A server with the two VMs and the WireServer companion on ephemeral ports.
async fn start(events: MaintenanceConfig) -> (TestServer, Wire) {
    let server = TestServer::start(TestConfig {
        vms: Vms::Text(two_vms()),
        callers: CallerMode::SourceAddress,
        events,
        wireserver: Some(WireServerListen {
            wireserver: "127.0.0.1:0".parse().unwrap(),
            host_plugin: "127.0.0.1:0".parse().unwrap(),
        }),
        ..TestConfig::default()
    })
    .await;
    let (wireserver, host_plugin) = server.running.wireserver_addresses().unwrap();
    (
        server,
        Wire {
            wireserver: TestImds { addr: wireserver },
            host_plugin: TestImds { addr: host_plugin },
        },
    )
}

struct Wire {
    wireserver: TestImds,
    host_plugin: TestImds,
}

impl Wire {
    async fn call(
        &self,
        from: &str,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let host = self.wireserver.addr.to_string();
        send(&self.wireserver, from, method, target, &host, headers, body).await
    }

    async fn get(&self, from: &str, target: &str) -> Reply {
        self.call(from, "GET", target, WA_HEADERS, b"").await
    }

    async fn plugin(&self, from: &str, method: &str, target: &str, body: &[u8]) -> Reply {
        let host = self.host_plugin.addr.to_string();
        send(&self.host_plugin, from, method, target, &host, &[], body).await
    }
}

async fn send(
    to: &TestImds,
    from: &str,
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let from: IpAddr = from.parse().unwrap();
    to.raw_from(from, request_bytes(method, target, host, headers, body))
        .await
}

/// What waagent and cloud-init send with every WireServer GET (§4.1).
const WA_HEADERS: &[(&str, &str)] = &[
    ("x-ms-agent-name", "WALinuxAgent"),
    ("x-ms-version", "2012-11-30"),
    ("User-Agent", "WALinuxAgent/2.7.3.0"),
];

fn xml(reply: &Reply) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(reply.text()).unwrap_or_else(|e| panic!("{e}: {}", reply.text()))
}

fn text(doc: &roxmltree::Document<'_>, name: &str) -> String {
    doc.descendants()
        .find(|n| n.tag_name().name() == name)
        .and_then(|n| n.text())
        .unwrap_or_else(|| panic!("no {name}"))
        .to_string()
}

/// The target part of a URL the goal state links (`http://host:port/path?query`).
fn target(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    rest[rest.find('/').unwrap()..].to_string()
}

/// cloud-init's health report (helpers/azure.py `HEALTH_REPORT_XML_TEMPLATE`), §5.1.
fn health_xml(container: &str, instance: &str, state: &str, details: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Health xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\n  <GoalStateIncarnation>1</GoalStateIncarnation>\n  <Container>\n    <ContainerId>{container}</ContainerId>\n    <RoleInstanceList>\n      <Role>\n        <InstanceId>{instance}</InstanceId>\n        <Health>\n          <State>{state}</State>\n          {details}\n        </Health>\n      </Role>\n    </RoleInstanceList>\n  </Container>\n</Health>\n"
    )
}

const CLOUD_INIT_HEADERS: &[(&str, &str)] = &[
    ("x-ms-agent-name", "WALinuxAgent"),
    ("x-ms-version", "2012-11-30"),
    ("Content-Type", "text/xml; charset=utf-8"),
    ("User-Agent", "Cloud-Init/22.4.2"),
];

/// `(ContainerId, InstanceId)` of the goal state `from` sees.
async fn goal_state_ids(wire: &Wire, from: &str) -> (String, String) {
    let reply = wire.get(from, "/machine/?comp=goalstate").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let doc = xml(&reply);
    (text(&doc, "ContainerId"), text(&doc, "InstanceId"))
}

async fn provisioning(server: &TestServer, vm: &str) -> Value {
    let reply = server
        .control
        .call("GET", &format!("/v1/vms/{vm}/provisioning"), None, &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// §3: waagent's rule (2012-11-30 Preferred or Supported) and afterburn's (Supported).
#[tokio::test]
async fn versions_list_2012_11_30_as_supported() {
    let (_server, wire) = start(MaintenanceConfig::default()).await;
    // waagent sends no x-ms headers here (§3).
    let reply = wire.call(VM_A, "GET", "/?comp=versions", &[], b"").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/xml; charset=utf-8")
    );
    let doc = xml(&reply);
    let preferred = doc
        .descendants()
        .find(|n| n.has_tag_name("Preferred"))
        .unwrap();
    assert_eq!(
        preferred.first_element_child().unwrap().text(),
        Some("2015-04-05")
    );
    let supported: Vec<&str> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "Supported")
        .flat_map(|n| n.children().filter_map(|c| c.text()))
        .collect();
    assert!(supported.contains(&"2012-11-30"), "{supported:?}");
}

/// §4.2-§4.4: the goal state and every linked document, per VM, with stable ids.
#[tokio::test]
async fn each_vm_gets_its_own_goal_state_and_linked_documents() {
    let (_server, wire) = start(MaintenanceConfig::default()).await;
    let reply = wire.get(VM_A, "/machine/?comp=goalstate").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/xml; charset=utf-8")
    );
    let doc = xml(&reply);
    assert_eq!(doc.root_element().tag_name().name(), "GoalState");
    assert_eq!(text(&doc, "Version"), "2012-11-30");
    assert_eq!(text(&doc, "Incarnation"), "1");
    let container = text(&doc, "ContainerId");
    let instance = text(&doc, "InstanceId");
    assert!(instance.ends_with("._web-a"), "{instance}");
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("RoleInstance"))
            .count(),
        1
    );
    // /machine and /machine/ alike (§9.1), and the same ids every time (§4.5).
    assert_eq!(
        goal_state_ids(&wire, VM_A).await,
        (container.clone(), instance.clone())
    );
    let plain = wire.get(VM_A, "/machine?comp=goalstate").await;
    assert_eq!(plain.text(), reply.text());
    let (other_container, other_instance) = goal_state_ids(&wire, VM_B).await;
    assert_ne!(other_container, container);
    assert!(other_instance.ends_with("._web-b"), "{other_instance}");

    // Every linked document is served at its link, from this listener (§4.4).
    for (element, root) in [
        ("HostingEnvironmentConfig", "HostingEnvironmentConfig"),
        ("SharedConfig", "SharedConfig"),
        ("ExtensionsConfig", "Extensions"),
        ("FullConfig", "HostingEnvironmentConfig"),
    ] {
        let url = text(&doc, element);
        assert!(
            url.starts_with(&format!(
                "http://{}/machine/{container}/",
                wire.wireserver.addr
            )),
            "{url}"
        );
        let linked = wire.get(VM_A, &target(&url)).await;
        assert_eq!(linked.status, 200, "{element}: {}", linked.text());
        assert_eq!(
            xml(&linked).root_element().tag_name().name(),
            root,
            "{element}"
        );
        // Another VM cannot fetch this VM's container (identity is the connection).
        let foreign = wire.get(VM_B, &target(&url)).await;
        assert_eq!(foreign.status, 404, "{element} from another VM");
    }
    let shared = wire.get(VM_A, &target(&text(&doc, "SharedConfig"))).await;
    let shared = xml(&shared);
    let instance_node = shared
        .descendants()
        .find(|n| n.has_tag_name("Instance"))
        .unwrap();
    assert_eq!(instance_node.attribute("address"), Some("10.0.0.4"));
    assert_eq!(instance_node.attribute("id"), Some("_web-a"));
    let hosting = wire
        .get(VM_A, &target(&text(&doc, "HostingEnvironmentConfig")))
        .await;
    let hosting = xml(&hosting);
    let incarnation = hosting
        .descendants()
        .find(|n| n.has_tag_name("Incarnation"))
        .unwrap();
    assert_eq!(incarnation.attribute("instance"), Some("_web-a"));
    // §6.7: without StatusUploadBlob waagent refetches the goal state on every status report.
    let extensions = wire
        .get(VM_A, &target(&text(&doc, "ExtensionsConfig")))
        .await;
    let extensions = xml(&extensions);
    let blob = extensions
        .descendants()
        .find(|n| n.has_tag_name("StatusUploadBlob"))
        .unwrap();
    assert_eq!(blob.attribute("statusBlobType"), Some("BlockBlob"));
    let blob_put = wire
        .call(
            VM_A,
            "PUT",
            &target(blob.text().unwrap()),
            &[("x-ms-blob-type", "BlockBlob")],
            b"{}",
        )
        .await;
    assert_eq!(
        blob_put.status, 201,
        "Azure Storage's answer to a block-blob PUT (§6.2)"
    );
    // §6.5: no Certificates link, so cloud-init never needs real CMS.
    assert!(!doc.descendants().any(|n| n.has_tag_name("Certificates")));
}

/// §5.1, §5.4: a report is recorded for the caller's VM, shown by the control API, and a
/// wait returns on Ready; the other VM is untouched.
#[tokio::test]
async fn health_reports_are_recorded_for_the_reporting_vm() {
    let (server, wire) = start(MaintenanceConfig::default()).await;
    let pending = provisioning(&server, "vm-a").await;
    assert_eq!(pending["state"], "Pending");
    assert_eq!(pending["latest"], Value::Null);
    let waiting = tokio::spawn({
        let control = server.control.clone();
        async move {
            control
                .call(
                    "GET",
                    "/v1/vms/vm-a/provisioning/wait?timeout=20",
                    None,
                    &[],
                )
                .await
        }
    });
    let (container, instance) = goal_state_ids(&wire, VM_A).await;
    // waagent first says it is still provisioning (§5.1 table).
    let provisioning_report = health_xml(
        &container,
        &instance,
        "NotReady",
        "<Details><SubStatus>Provisioning</SubStatus><Description>Starting</Description></Details>",
    );
    let reply = wire
        .call(
            VM_A,
            "POST",
            "/machine?comp=health",
            WA_HEADERS,
            provisioning_report.as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.is_empty(),
        "the WireServer's 200 is 0 bytes long (§5.2)"
    );
    assert_eq!(provisioning(&server, "vm-a").await["state"], "Provisioning");
    let ready = health_xml(&container, &instance, "Ready", "");
    let reply = wire
        .call(
            VM_A,
            "POST",
            "/machine?comp=health",
            CLOUD_INIT_HEADERS,
            ready.as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 200);
    let waited = waiting.await.unwrap();
    assert_eq!(waited.status, 200, "{}", waited.text());
    let record = waited.json();
    assert_eq!(record["state"], "Ready");
    assert_eq!(record["readyAgent"], "Cloud-Init/22.4.2");
    assert_eq!(record["latest"]["health"], "Ready");
    assert_eq!(record["latest"]["endpoint"], "/machine?comp=health");
    assert_eq!(record["latest"]["containerId"], container);
    assert_eq!(record["latest"]["instanceId"], instance);
    assert_eq!(record["reports"].as_array().unwrap().len(), 2);
    assert_eq!(record["reports"][0]["subStatus"], "Provisioning");
    assert_eq!(record["reports"][0]["description"], "Starting");
    assert_eq!(record["reports"][0]["agent"], "WALinuxAgent/2.7.3.0");
    assert!(record["goalState"]["lastFetchedAt"].is_string());
    // A NotReady after Ready (waagent's routine one) does not undo it (§5.4).
    let reply = wire
        .call(
            VM_A,
            "POST",
            "/machine/?comp=health",
            WA_HEADERS,
            provisioning_report.as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(provisioning(&server, "vm-a").await["state"], "Ready");
    let other = provisioning(&server, "vm-b").await;
    assert_eq!(other["state"], "Pending", "{other}");
}

/// A VM cannot report for another: the report names vm-a's goal state but comes from vm-b's
/// address, so it is vm-b's. A stranger's connection is closed unanswered, on both ports.
#[tokio::test]
async fn a_vm_cannot_report_for_another_and_strangers_get_nothing() {
    let (server, wire) = start(MaintenanceConfig::default()).await;
    let (container_a, instance_a) = goal_state_ids(&wire, VM_A).await;
    let forged = health_xml(&container_a, &instance_a, "Ready", "");
    let reply = wire
        .call(
            VM_B,
            "POST",
            "/machine?comp=health",
            CLOUD_INIT_HEADERS,
            forged.as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(provisioning(&server, "vm-a").await["state"], "Pending");
    let b = provisioning(&server, "vm-b").await;
    assert_eq!(b["state"], "Ready");
    assert_eq!(b["latest"]["containerId"], container_a, "recorded as sent");
    let json_report = wire
        .call(
            VM_B,
            "POST",
            "/provisioning/health",
            &[],
            br#"{"state":"Ready"}"#,
        )
        .await;
    assert_eq!(json_report.status, 200);
    assert_eq!(provisioning(&server, "vm-a").await["state"], "Pending");

    for (listener, target, method) in [
        (&wire.wireserver, "/machine/?comp=goalstate", "GET"),
        (&wire.wireserver, "/machine?comp=health", "POST"),
        (&wire.host_plugin, "/versions", "GET"),
    ] {
        let body = forged.as_bytes();
        let stranger: IpAddr = STRANGER.parse().unwrap();
        let answer = raw_exchange(
            stranger,
            listener.addr,
            &request_bytes(method, target, "168.63.129.16", WA_HEADERS, body),
        )
        .await;
        assert!(answer.is_empty(), "a stranger got an answer: {answer:?}");
    }
    assert_eq!(provisioning(&server, "vm-a").await["state"], "Pending");
    let status = server
        .control
        .call("GET", "/v1/status", None, &[])
        .await
        .json();
    assert!(status["unknownCallers"].as_u64().unwrap() >= 3, "{status}");
}

/// The bytes a connection from `from` gets back, read until the server closes.
async fn raw_exchange(from: IpAddr, to: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    let _ = read
        .await
        .expect("the server closes a stranger's connection");
    answer
}

/// §5.2 (azure-init's JSON), a failure report, and `wait` failing fast on it.
#[tokio::test]
async fn a_failure_report_ends_the_wait_with_its_reason() {
    let (server, wire) = start(MaintenanceConfig::default()).await;
    let reply = wire
        .call(
            VM_A,
            "POST",
            "/provisioning/health",
            &[
                ("User-Agent", "azure-init v0.1.1"),
                ("x-ms-guest-agent-name", "azure-init v0.1.1"),
                ("content-type", "application/json"),
            ],
            br#"{"state":"NotReady","details":{"subStatus":"ProvisioningFailed","description":"result=error|reason=no imds"}}"#,
        )
        .await;
    assert_eq!(reply.status, 200);
    let record = provisioning(&server, "vm-a").await;
    assert_eq!(record["state"], "Failed");
    assert_eq!(record["latest"]["agent"], "azure-init v0.1.1");
    assert_eq!(record["latest"]["endpoint"], "/provisioning/health");
    let waited = server
        .control
        .call(
            "GET",
            "/v1/vms/vm-a/provisioning/wait?timeout=20",
            None,
            &[],
        )
        .await;
    assert_eq!(waited.status, 409);
    assert_eq!(waited.json()["error"]["code"], "provisioning_failed");
    assert!(
        waited.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reason=no imds")
    );
    let timed_out = server
        .control
        .call("GET", "/v1/vms/vm-b/provisioning/wait?timeout=1", None, &[])
        .await;
    assert_eq!(timed_out.status, 408);
    let unknown = server
        .control
        .call("GET", "/v1/vms/nope/provisioning", None, &[])
        .await;
    assert_eq!(unknown.status, 404);
    // Reset: Pending again (to provision anew).
    let reset = server
        .control
        .call("DELETE", "/v1/vms/vm-a/provisioning", None, &[])
        .await;
    assert_eq!(reset.json(), json!({"vm": "vm-a", "reset": true}));
    assert_eq!(provisioning(&server, "vm-a").await["state"], "Pending");
}

/// §6.1: the Host GA Plugin's answers, and waagent's status kept as the agent status.
#[tokio::test]
async fn the_host_ga_plugin_answers_as_section_6_1_says() {
    use base64::Engine;
    let (server, wire) = start(MaintenanceConfig::default()).await;
    let vm_settings = wire.plugin(VM_A, "GET", "/vmSettings", b"").await;
    assert_eq!(
        vm_settings.status, 404,
        "vmSettings not supported: waagent uses ExtensionsConfig"
    );
    let versions = wire.plugin(VM_A, "GET", "/versions", b"").await;
    assert_eq!(versions.status, 200);
    assert!(versions.text().contains("2015-09-01"));
    let health = wire.plugin(VM_A, "GET", "/health", b"").await;
    assert_eq!((health.status, health.body.len()), (200, 0));
    let status = br#"{"version":"1.1","aggregateStatus":{"guestAgentStatus":{"version":"2.7.3.0","status":"Ready","formattedMessage":{"lang":"en-US","message":"Guest Agent is running"}},"handlerAggregateStatus":[]}}"#;
    let upload = json!({
        "requestUri": "http://168.63.129.16/status/x?sv=2014-02-14",
        "headers": [{"headerName": "x-ms-blob-type", "headerValue": "BlockBlob"}],
        "content": base64::engine::general_purpose::STANDARD.encode(status),
    });
    let put = wire
        .plugin(VM_A, "PUT", "/status", upload.to_string().as_bytes())
        .await;
    assert_eq!(put.status, 200);
    let record = provisioning(&server, "vm-a").await;
    assert_eq!(record["agentStatus"]["status"], "Ready");
    assert_eq!(record["agentStatus"]["version"], "2.7.3.0");
    assert_eq!(record["agentStatus"]["message"], "Guest Agent is running");
    assert_eq!(
        provisioning(&server, "vm-b").await["agentStatus"],
        Value::Null
    );
    let log = wire.plugin(VM_A, "PUT", "/vmAgentLog", &[0u8; 4096]).await;
    assert_eq!(log.status, 200);
    assert_eq!(
        wire.plugin(VM_A, "GET", "/extensionArtifact", b"")
            .await
            .status,
        404
    );
    let wrong = wire.plugin(VM_A, "POST", "/status", b"{}").await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("PUT"));
}

/// §6.3, §6.4 and §9.1's "anything else": accepted where clients need a 2xx, a 4xx with an
/// empty body for what is not a WireServer request, never a 5xx.
#[tokio::test]
async fn mismatched_requests_are_answered_sanely() {
    let (server, wire) = start(MaintenanceConfig::default()).await;
    let telemetry = r#"<?xml version="1.0"?><TelemetryData version="1.0"><Provider id="69B669B9-4AF8-4C50-BDC4-6006FA76E975"><Event id="1"><![CDATA[<Param Name="Name" Value="WALinuxAgent" T="mt:wstr" />]]></Event></Provider></TelemetryData>"#;
    let cases: [(&str, &str, &[u8], u16); 11] = [
        (
            "POST",
            "/machine?comp=telemetrydata",
            telemetry.as_bytes(),
            200,
        ),
        (
            "POST",
            "/HealthService",
            br#"{"Api":"reporttargethealth","Observations":[]}"#,
            200,
        ),
        (
            "POST",
            "/machine?comp=roleProperties",
            b"<RoleProperties/>",
            200,
        ),
        ("GET", "/machine?comp=bogus", b"", 400),
        ("GET", "/?comp=nothing", b"", 400),
        ("GET", "/metadata/instance?api-version=2021-02-01", b"", 404),
        ("GET", "/machine?comp=health", b"", 405),
        ("POST", "/machine?comp=goalstate", b"", 405),
        (
            "POST",
            "/machine?comp=health",
            b"<Health><State>Fine</State></Health>",
            400,
        ),
        ("POST", "/machine?comp=health", b"not xml at all", 400),
        ("POST", "/provisioning/health", b"{\"state\":42}", 400),
    ];
    for (method, path, body, status) in cases {
        let reply = wire.call(VM_A, method, path, WA_HEADERS, body).await;
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text());
        assert!(reply.body.is_empty(), "{method} {path}: empty body");
    }
    let allow = wire
        .call(VM_A, "GET", "/machine?comp=health", &[], b"")
        .await;
    assert_eq!(allow.header("allow"), Some("POST"));
    let huge = vec![b'x'; 100 * 1024];
    let too_large = wire
        .call(VM_A, "POST", "/machine?comp=health", WA_HEADERS, &huge)
        .await;
    assert_eq!(too_large.status, 413);
    assert_eq!(provisioning(&server, "vm-a").await["state"], "Pending");
}

/// Repeats are acknowledged without a write; changing reports are limited per VM.
#[tokio::test]
async fn a_guest_cannot_turn_reports_into_a_write_loop() {
    let (server, wire) = start(MaintenanceConfig::default()).await;
    let (container, instance) = goal_state_ids(&wire, VM_A).await;
    let ready = health_xml(&container, &instance, "Ready", "");
    let not_ready = health_xml(
        &container,
        &instance,
        "NotReady",
        "<Details><SubStatus>Provisioning</SubStatus></Details>",
    );
    for _ in 0..20 {
        let reply = wire
            .call(
                VM_A,
                "POST",
                "/machine?comp=health",
                WA_HEADERS,
                ready.as_bytes(),
            )
            .await;
        assert_eq!(reply.status, 200, "repeats are acknowledged");
    }
    assert_eq!(
        provisioning(&server, "vm-a").await["reports"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The clock stands still: alternating reports spend the 5-per-second budget.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let body = if i % 2 == 0 { &not_ready } else { &ready };
        let reply = wire
            .call(
                VM_A,
                "POST",
                "/machine?comp=health",
                WA_HEADERS,
                body.as_bytes(),
            )
            .await;
        statuses.push(reply.status);
    }
    // The first Ready spent one token; a refused NotReady changes nothing, so the Ready after
    // it repeats the latest report and is acknowledged without a write.
    assert_eq!(statuses, [200, 200, 200, 200, 429, 200, 429, 200]);
    let other = wire
        .call(
            VM_B,
            "POST",
            "/machine?comp=health",
            WA_HEADERS,
            ready.as_bytes(),
        )
        .await;
    assert_eq!(other.status, 200, "another VM's budget is its own");
    server.clock.advance(Duration::from_secs(1));
    let later = wire
        .call(
            VM_A,
            "POST",
            "/machine?comp=health",
            WA_HEADERS,
            not_ready.as_bytes(),
        )
        .await;
    assert_eq!(later.status, 200);
}

/// Each recorded report reaches the operator's hook as JSON.
#[tokio::test]
async fn reports_reach_the_operator_hook() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let (_server, wire) = start(MaintenanceConfig {
        hook: Some(hook),
        ..MaintenanceConfig::default()
    })
    .await;
    let (container, instance) = goal_state_ids(&wire, VM_A).await;
    let ready = health_xml(&container, &instance, "Ready", "");
    let reply = wire
        .call(
            VM_A,
            "POST",
            "/machine?comp=health",
            CLOUD_INIT_HEADERS,
            ready.as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 200);
    let message = tokio::time::timeout(Duration::from_secs(10), receive_hook(&listener))
        .await
        .expect("the hook is called within 10 s");
    assert_eq!(message["transition"], "provisioning-reported");
    assert_eq!(message["provisioning"]["vm"], "vm-a");
    assert_eq!(message["provisioning"]["state"], "Ready");
    assert_eq!(message["provisioning"]["previousState"], "Pending");
    assert_eq!(
        message["provisioning"]["report"]["agent"],
        "Cloud-Init/22.4.2"
    );
    assert!(message["at"].as_str().unwrap().ends_with('Z'));
}

/// One hook request's JSON body, answered 200.
async fn receive_hook(listener: &tokio::net::TcpListener) -> Value {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the hook request ended early");
        buffer.extend_from_slice(&chunk[..n]);
        let Some(split) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..split]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap();
        if buffer.len() >= split + 4 + length {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            return serde_json::from_slice(&buffer[split + 4..split + 4 + length]).unwrap();
        }
    }
}

/// The provisioning media: the VM's ovf-env.xml from its definition (§2.2).
#[tokio::test]
async fn ovf_env_is_written_from_the_definition() {
    let (server, _wire) = start(MaintenanceConfig::default()).await;
    let reply = server
        .control
        .call("GET", "/v1/vms/vm-a/ovf-env", None, &[])
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    let doc = xml(&reply);
    assert_eq!(text(&doc, "HostName"), "web-a");
    assert_eq!(text(&doc, "UserName"), "azureuser");
    assert_eq!(text(&doc, "CustomData"), "I2Nsb3VkLWNvbmZpZwo=");
    assert_eq!(
        server
            .control
            .call("GET", "/v1/vms/nope/ovf-env", None, &[])
            .await
            .status,
        404
    );
}

/// Records are durable: the real binary, SIGKILLed after an acknowledged report, shows it
/// after a restart.
#[test]
fn a_recorded_report_survives_a_kill_and_restart() {
    let dir = TempDir::new("wire-restart");
    let data = dir.path().join("data");
    let vms = dir.path().join("vms.json");
    std::fs::write(&vms, two_vms()).unwrap();
    let vms = vms.to_str().unwrap().to_string();
    let args = [
        "--callers",
        "source-address",
        "--vms",
        &vms,
        "--wireserver-listen",
        "127.0.0.1:0",
        "--hgap-listen",
        "127.0.0.1:0",
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut first = crate::support::spawn_azimds(&data, &args);
    let wire = TestImds {
        addr: first.field("wireserver").parse().unwrap(),
    };
    let report = health_xml("c", "i", "Ready", "");
    let reply = runtime.block_on(send(
        &wire,
        VM_A,
        "POST",
        "/machine?comp=health",
        "168.63.129.16",
        CLOUD_INIT_HEADERS,
        report.as_bytes(),
    ));
    assert_eq!(reply.status, 200);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let second = crate::support::spawn_azimds(&data, &args);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_azimds"))
        .args([
            "vm",
            "provisioning",
            "vm-a",
            "--json",
            "--control",
            &second.control,
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let record: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["state"], "Ready");
    assert_eq!(record["readyAgent"], "Cloud-Init/22.4.2");
    let text_output = std::process::Command::new(env!("CARGO_BIN_EXE_azimds"))
        .args([
            "vm",
            "provisioning",
            "vm-a",
            "--control",
            &second.control,
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let text_output = String::from_utf8(text_output.stdout).unwrap();
    assert!(
        text_output.starts_with("VM vm-a: Ready since "),
        "{text_output}"
    );
    assert!(
        text_output.contains("(reported by Cloud-Init/22.4.2)"),
        "{text_output}"
    );
    let wait = std::process::Command::new(env!("CARGO_BIN_EXE_azimds"))
        .args([
            "vm",
            "wait-ready",
            "vm-b",
            "--timeout",
            "1",
            "--control",
            &second.control,
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(wait.status.code(), Some(7), "timed out: exit 7");
    let ready = std::process::Command::new(env!("CARGO_BIN_EXE_azimds"))
        .args([
            "vm",
            "wait-ready",
            "vm-a",
            "--control",
            &second.control,
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(ready.status.success());
    assert!(String::from_utf8_lossy(&ready.stdout).starts_with("VM vm-a is Ready"));
}
