//! Health reports as the clients send them (wireserver.md §5.1 XML, §5.2 JSON), read into the
//! provisioning engine's [`Report`]. Parsing is namespace-agnostic and tolerates whitespace, a
//! missing XML declaration and missing `xmlns` attributes (§5.1).

use http::HeaderMap;
use serde_json::Value;

use crate::provisioning::record::{MAX_AGENT, MAX_DESCRIPTION, truncated};
use crate::provisioning::{Channel, Health, Report};
use crate::wireserver::error::WireError;

/// `POST /machine?comp=health`'s body: `<Health>…<State>Ready|NotReady</State>…</Health>`.
pub(super) fn from_xml(body: &[u8], headers: &HeaderMap) -> Result<Report, WireError> {
    let text = std::str::from_utf8(body).map_err(|_| WireError::BadReport)?;
    // waagent strips a UTF-8 BOM from what it reads; accept one in what it sends too.
    let text = text.trim_start_matches('\u{feff}');
    let document = roxmltree::Document::parse(text).map_err(|_| WireError::BadReport)?;
    let root = document.root_element();
    if root.tag_name().name() != "Health" {
        return Err(WireError::BadReport);
    }
    let find = |name: &str| {
        root.descendants()
            .find(|node| node.is_element() && node.tag_name().name() == name)
            .map(|node| node.text().unwrap_or("").trim().to_string())
    };
    let health = match find("State").as_deref() {
        Some("Ready") => Health::Ready,
        Some("NotReady") => Health::NotReady,
        _ => return Err(WireError::BadReport),
    };
    Ok(Report {
        health,
        sub_status: find("SubStatus").filter(|s| !s.is_empty()),
        description: find("Description")
            .filter(|s| !s.is_empty())
            .map(|d| truncated(&d, MAX_DESCRIPTION)),
        agent: agent(headers),
        channel: Channel::MachineHealth,
        incarnation: find("GoalStateIncarnation"),
        container_id: find("ContainerId"),
        instance_id: find("InstanceId"),
        at_ms: 0,
    })
}

/// `POST /provisioning/health`'s body: `{"state":"Ready"}` or
/// `{"state":"NotReady","details":{"subStatus":…,"description":…}}`.
pub(super) fn from_json(body: &[u8], headers: &HeaderMap) -> Result<Report, WireError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| WireError::BadReport)?;
    let health = match value.get("state").and_then(Value::as_str) {
        Some("Ready") => Health::Ready,
        Some("NotReady") => Health::NotReady,
        _ => return Err(WireError::BadReport),
    };
    let detail = |key: &str| {
        value
            .get("details")
            .and_then(|details| details.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| truncated(s, MAX_DESCRIPTION))
    };
    Ok(Report {
        health,
        sub_status: detail("subStatus"),
        description: detail("description"),
        agent: agent(headers),
        channel: Channel::ProvisioningHealth,
        incarnation: None,
        container_id: None,
        instance_id: None,
        at_ms: 0,
    })
}

/// Who sent a request: its `User-Agent` (the clients' own names and versions, §4.1), else the
/// agent-name headers, else `unknown`.
pub(super) fn agent(headers: &HeaderMap) -> String {
    ["user-agent", "x-ms-guest-agent-name", "x-ms-agent-name"]
        .iter()
        .find_map(|name| {
            headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        })
        .map_or_else(|| "unknown".to_string(), |v| truncated(v, MAX_AGENT))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    /// cloud-init's `HEALTH_REPORT_XML_TEMPLATE` (helpers/azure.py), filled in as it sends it.
    const CLOUD_INIT_READY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Health xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <GoalStateIncarnation>1</GoalStateIncarnation>
  <Container>
    <ContainerId>c6d5526c-5ac2-4200-b6e2-56f2b70c5ab2</ContainerId>
    <RoleInstanceList>
      <Role>
        <InstanceId>b61f93d0-e1ed-40b2-b067-22c243233448._vm1</InstanceId>
        <Health>
          <State>Ready</State>
          
        </Health>
      </Role>
    </RoleInstanceList>
  </Container>
</Health>
"#;

    fn headers(user_agent: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", HeaderValue::from_str(user_agent).unwrap());
        headers.insert("x-ms-agent-name", HeaderValue::from_static("WALinuxAgent"));
        headers
    }

    #[test]
    fn cloud_init_ready_report() {
        let report = from_xml(CLOUD_INIT_READY.as_bytes(), &headers("Cloud-Init/22.4.2")).unwrap();
        assert_eq!(report.health, Health::Ready);
        assert_eq!(report.sub_status, None);
        assert_eq!(report.agent, "Cloud-Init/22.4.2");
        assert_eq!(report.incarnation.as_deref(), Some("1"));
        assert_eq!(
            report.container_id.as_deref(),
            Some("c6d5526c-5ac2-4200-b6e2-56f2b70c5ab2")
        );
        assert_eq!(
            report.instance_id.as_deref(),
            Some("b61f93d0-e1ed-40b2-b067-22c243233448._vm1")
        );
    }

    #[test]
    fn not_ready_with_details_without_declaration_or_namespaces() {
        let body = "<Health><GoalStateIncarnation>1</GoalStateIncarnation><Container>\
            <ContainerId>c</ContainerId><RoleInstanceList><Role><InstanceId>i</InstanceId>\
            <Health><State>NotReady</State><Details><SubStatus>ProvisioningFailed</SubStatus>\
            <Description>result=error|reason=a &amp; b</Description></Details></Health>\
            </Role></RoleInstanceList></Container></Health>";
        let report = from_xml(body.as_bytes(), &HeaderMap::new()).unwrap();
        assert_eq!(report.health, Health::NotReady);
        assert_eq!(report.sub_status.as_deref(), Some("ProvisioningFailed"));
        assert_eq!(
            report.description.as_deref(),
            Some("result=error|reason=a & b")
        );
        assert_eq!(report.agent, "unknown");
    }

    #[test]
    fn what_is_not_a_report_is_refused() {
        for body in [
            "",
            "not xml",
            "<Other><State>Ready</State></Other>",
            "<Health><State>Fine</State></Health>",
            "<Health></Health>",
            "<!DOCTYPE x [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\"><!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\">]><Health><State>&e;</State></Health>",
        ] {
            assert_eq!(
                from_xml(body.as_bytes(), &HeaderMap::new()),
                Err(WireError::BadReport),
                "{body}"
            );
        }
    }

    #[test]
    fn azure_init_json_reports() {
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", HeaderValue::from_static("azure-init v0.1.1"));
        let ready = from_json(br#"{"state":"Ready"}"#, &headers).unwrap();
        assert_eq!(ready.health, Health::Ready);
        assert_eq!(ready.channel, Channel::ProvisioningHealth);
        assert_eq!(ready.agent, "azure-init v0.1.1");
        let failed = from_json(
            br#"{"state":"NotReady","details":{"subStatus":"ProvisioningFailed","description":"result=error"}}"#,
            &headers,
        )
        .unwrap();
        assert_eq!(failed.sub_status.as_deref(), Some("ProvisioningFailed"));
        assert_eq!(failed.description.as_deref(), Some("result=error"));
        for body in [&b"{}"[..], b"[]", b"{\"state\":\"ready\"}", b"nope"] {
            assert_eq!(from_json(body, &headers), Err(WireError::BadReport));
        }
    }
}
