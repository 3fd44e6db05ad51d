//! `GET /metadata/reprovisiondata` (spec §9.2): 404 while a pre-provisioned VM waits in its
//! pool, 200 with the OVF environment once an operator assigns it (`PUT
//! /v1/vms/{id}/reprovisiondata`, `azimds vm assign`), 404 again after `unassign`; the
//! assignment is stored with the VM and survives a restart. cloud-init's own polling loop is
//! run against it in the client suite (tests/clients/test_reprovision.py).

use std::process::Command;

use serde_json::json;

use crate::support::{TempDir, TestConfig, TestServer, Vms, spawn_azimds};

const URL: &str = "/metadata/reprovisiondata?api-version=2019-06-01";
const NOT_ASSIGNED: &str =
    r#"{"error":"Not found. This VM has not been assigned reprovisioning data yet"}"#;

/// A minimal OVF environment as the provisioning ISO's ovf-env.xml carries it.
const OVF: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
 <wa:ProvisioningSection>
  <wa:Version>1.0</wa:Version>
  <LinuxProvisioningConfigurationSet xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
   <ConfigurationSetType>LinuxProvisioningConfiguration</ConfigurationSetType>
   <HostName>customer-vm</HostName>
   <UserName>azureuser</UserName>
   <DisableSshPasswordAuthentication>true</DisableSshPasswordAuthentication>
  </LinuxProvisioningConfigurationSet>
 </wa:ProvisioningSection>
 <wa:PlatformSettingsSection>
  <wa:Version>1.0</wa:Version>
  <PlatformSettings xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
   <ProvisionGuestAgent>true</ProvisionGuestAgent>
  </PlatformSettings>
 </wa:PlatformSettingsSection>
</Environment>"#;

const POOL_VM: &str = r#"{"vms":[{"id":"pool-1","instance":{"compute":{"name":"pool-1"},
  "extended":{"compute":{"ppsType":"Running"}}}}]}"#;

async fn start() -> TestServer {
    TestServer::start(TestConfig {
        vms: Vms::Text(POOL_VM.to_string()),
        ..TestConfig::default()
    })
    .await
}

#[tokio::test]
async fn not_found_until_assigned_then_the_xml_then_not_found_again() {
    let server = start().await;
    // What makes cloud-init poll at all (§9.2): a pre-provisioning type in extended.
    let extended = server
        .get("/metadata/instance/extended/compute/ppsType?api-version=2021-08-01&extended=true&format=text")
        .await;
    assert_eq!(extended.text(), "Running");
    let waiting = server.get(URL).await;
    assert_eq!((waiting.status, waiting.text()), (404, NOT_ASSIGNED));

    let assigned = server
        .control
        .call_raw(
            "PUT",
            "/v1/vms/pool-1/reprovisiondata",
            Some(OVF.to_string()),
            &[("Content-Type", "application/xml")],
        )
        .await;
    assert_eq!(assigned.status, 200, "{}", assigned.text());
    assert_eq!(assigned.json()["reprovisionData"], OVF);
    let etag = assigned.header("etag").unwrap().to_string();
    let reply = server.get(URL).await;
    assert_eq!((reply.status, reply.text()), (200, OVF));
    assert_eq!(
        reply.header("content-type"),
        Some("application/xml; charset=utf-8")
    );

    // Conditional like every VM write.
    let stale = server
        .control
        .call(
            "DELETE",
            "/v1/vms/pool-1/reprovisiondata",
            None,
            &[("If-Match", "\"1\"")],
        )
        .await;
    assert_eq!(stale.status, 412);
    let unassigned = server
        .control
        .call(
            "DELETE",
            "/v1/vms/pool-1/reprovisiondata",
            None,
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(unassigned.status, 200, "{}", unassigned.text());
    assert!(unassigned.json().get("reprovisionData").is_none());
    let again = server.get(URL).await;
    assert_eq!((again.status, again.text()), (404, NOT_ASSIGNED));
}

#[tokio::test]
async fn request_rules_and_what_an_assignment_must_be() {
    let server = start().await;
    for query in ["api-version=2019-03-11", ""] {
        let reply = server
            .get(&format!("/metadata/reprovisiondata?{query}"))
            .await;
        assert_eq!(reply.status, 400, "{query}");
        assert!(reply.text().contains("newest-versions"), "{}", reply.text());
    }
    let headerless = server.request("GET", URL, &[]).await;
    assert_eq!(headerless.status, 400);
    let post = server.request("POST", URL, &[("Metadata", "true")]).await;
    assert_eq!(post.status, 405);

    let assign = |body: Vec<u8>| {
        let control = server.control.clone();
        async move {
            let text = String::from_utf8_lossy(&body).into_owned();
            if std::str::from_utf8(&body).is_err() {
                let mut head = format!(
                    "PUT /v1/vms/pool-1/reprovisiondata HTTP/1.1\r\nHost: azimds\r\nConnection: close\r\nContent-Length: {}\r\nAuthorization: Bearer {}\r\n\r\n",
                    body.len(),
                    control.token.as_deref().unwrap()
                )
                .into_bytes();
                head.extend_from_slice(&body);
                return crate::support::TestImds { addr: control.addr }
                    .raw(head)
                    .await;
            }
            control
                .call_raw("PUT", "/v1/vms/pool-1/reprovisiondata", Some(text), &[])
                .await
        }
    };
    for (body, message) in [
        ("".as_bytes(), "not well-formed XML"),
        (b"<Environment>".as_slice(), "not well-formed XML"),
        (b"{\"not\":\"xml\"}".as_slice(), "not well-formed XML"),
        (
            b"<Other xmlns=\"x\"/>".as_slice(),
            "the root element is <Other>; an OVF environment's is <Environment>",
        ),
    ] {
        let reply = assign(body.to_vec()).await;
        assert_eq!(reply.status, 422, "{}", reply.text());
        let problem = &reply.json()["error"]["problems"][0];
        assert_eq!(problem["path"], "reprovisionData");
        assert!(
            problem["message"].as_str().unwrap().starts_with(message),
            "{problem}"
        );
    }
    let binary = assign(vec![0xff, 0xfe, 0x00]).await;
    assert_eq!(binary.status, 400, "{}", binary.text());
    let missing = server
        .control
        .call_raw("PUT", "/v1/vms/nope/reprovisiondata", Some(OVF.into()), &[])
        .await;
    assert_eq!(missing.status, 404);
    // The member is checked in a whole VM entry too.
    let put = server
        .control
        .call(
            "PUT",
            "/v1/vms/pool-1",
            Some(&json!({"reprovisionData": 3})),
            &[],
        )
        .await;
    assert_eq!(put.status, 422);
    assert_eq!(
        put.json()["error"]["problems"][0]["message"],
        "expected a string (the OVF environment XML)"
    );
    assert_eq!(server.get(URL).await.status, 404, "nothing was assigned");
}

/// `azimds vm assign` and `unassign` against the real binary; the assignment is durable.
#[test]
fn the_cli_assigns_and_the_assignment_survives_a_restart() {
    let dir = TempDir::new("reprovision-cli");
    let data = dir.path().join("data");
    let vms = dir.path().join("vms.json");
    std::fs::write(&vms, POOL_VM).unwrap();
    let ovf = dir.path().join("ovf-env.xml");
    std::fs::write(&ovf, OVF).unwrap();
    let vms_arg = vms.to_str().unwrap();
    let cli = |server: &crate::support::Spawned, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_azimds"))
            .args(["vm"])
            .args(args)
            .args(["--control", &server.control, "--data"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let curl = |server: &crate::support::Spawned| {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "-H", "Metadata: true"])
            .arg(format!("http://{}{URL}", server.guest))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let server = spawn_azimds(&data, &["--vms", vms_arg]);
    assert_eq!(curl(&server), format!("{NOT_ASSIGNED}\n404"));
    let out = cli(&server, &["assign", "pool-1", ovf.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.starts_with("assigned VM pool-1 its OVF environment (ETag \""),
        "{printed}"
    );
    assert_eq!(curl(&server), format!("{OVF}\n200"));
    drop(server);

    let server = spawn_azimds(&data, &[]);
    assert_eq!(
        curl(&server),
        format!("{OVF}\n200"),
        "kept across a restart"
    );
    let out = cli(&server, &["unassign", "pool-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(curl(&server), format!("{NOT_ASSIGNED}\n404"));
    let missing = cli(&server, &["assign", "nope", ovf.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(3), "not found");
    let bad = dir.path().join("bad.xml");
    std::fs::write(&bad, "<Nope/>").unwrap();
    let invalid = cli(&server, &["assign", "pool-1", bad.to_str().unwrap()]);
    assert_eq!(invalid.status.code(), Some(5), "invalid");
    assert!(
        String::from_utf8_lossy(&invalid.stderr)
            .contains("reprovisionData: the root element is <Nope>"),
        "{}",
        String::from_utf8_lossy(&invalid.stderr)
    );
}
