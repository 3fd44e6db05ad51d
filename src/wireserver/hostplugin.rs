//! The Host GA Plugin's status relay (wireserver.md §6.1): `PUT /status` carries the status
//! blob waagent would write to storage, as `{"content": <base64>, "headers": […],
//! "requestUri": …}`. azimds keeps the guest agent's own status from it, nothing else.

use std::time::SystemTime;

use base64::Engine;
use serde_json::Value;

use crate::provisioning::AgentStatus;
use crate::wireserver::error::WireError;

/// The agent status inside a status upload; `Ok(None)` for a well-formed upload that carries
/// none (a page-blob chunk, say).
pub(super) fn agent_status(body: &[u8], now: SystemTime) -> Result<Option<AgentStatus>, WireError> {
    let wrapper: Value = serde_json::from_slice(body).map_err(|_| WireError::BadStatus)?;
    let content = wrapper
        .get("content")
        .and_then(Value::as_str)
        .ok_or(WireError::BadStatus)?;
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(content) else {
        return Err(WireError::BadStatus);
    };
    Ok(from_status_json(&decoded, now))
}

/// `aggregateStatus.guestAgentStatus` of a status JSON (waagent's `vm_status_to_v1`).
pub(super) fn from_status_json(status: &[u8], now: SystemTime) -> Option<AgentStatus> {
    let status: Value = serde_json::from_slice(status).ok()?;
    let agent = status.pointer("/aggregateStatus/guestAgentStatus")?;
    let text = |pointer: &str| {
        agent
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(1024)
            .collect::<String>()
    };
    Some(AgentStatus {
        status: text("/status"),
        version: text("/version"),
        message: text("/formattedMessage/message"),
        at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_status_is_read_from_the_relayed_blob() {
        let status = br#"{"version":"1.1","timestampUTC":"2026-01-01T00:00:00Z","aggregateStatus":{"guestAgentStatus":{"version":"2.7.3.0","status":"Ready","formattedMessage":{"lang":"en-US","message":"Guest Agent is running"}},"handlerAggregateStatus":[]}}"#;
        let content = base64::engine::general_purpose::STANDARD.encode(status);
        let body = format!(
            r#"{{"requestUri":"http://x/status/c?sv=1","headers":[{{"headerName":"x-ms-blob-type","headerValue":"BlockBlob"}}],"content":"{content}"}}"#
        );
        let now = SystemTime::UNIX_EPOCH;
        let agent = agent_status(body.as_bytes(), now).unwrap().unwrap();
        assert_eq!(agent.status, "Ready");
        assert_eq!(agent.version, "2.7.3.0");
        assert_eq!(agent.message, "Guest Agent is running");
        assert_eq!(
            agent_status(br#"{"content":""}"#, now),
            Ok(None),
            "an empty blob carries no status"
        );
        assert_eq!(agent_status(b"{}", now), Err(WireError::BadStatus));
        assert_eq!(agent_status(b"junk", now), Err(WireError::BadStatus));
    }
}
