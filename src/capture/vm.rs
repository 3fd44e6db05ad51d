//! The VM definition a capture writes (`vms.yaml`): what `azimds serve --vms` needs to serve
//! the captured VM again. The instance is the newest version's document (with `extended`
//! when the service served it), so every older version is derived from it as azimds derives
//! any; the identity is the one the captured token was issued for; the load balancer and the
//! pending scheduled events are the newest versions' answers.

use base64::Engine;

use crate::capture::json::Json;
use crate::capture::pack::Pack;
use crate::capture::plan::TOKEN_VERSION;

/// Members of a scheduled event that a definition's `scheduledEvents` entry takes.
const EVENT_MEMBERS: [&str; 9] = [
    "EventId",
    "EventStatus",
    "EventType",
    "ResourceType",
    "Resources",
    "NotBefore",
    "Description",
    "EventSource",
    "DurationInSeconds",
];

/// The identity a token names (its claims, read without verifying: the capture is the
/// relying party of nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenIdentity {
    pub tenant_id: String,
    pub client_id: String,
    pub object_id: String,
    pub resource_id: String,
}

impl TokenIdentity {
    /// The identity named by a token response's `access_token`, if it is a JWT with the
    /// managed-identity claims.
    pub fn from_token_response(body: &[u8]) -> Option<TokenIdentity> {
        let response = Json::parse(body)?;
        let token = response.get("access_token")?.as_str()?;
        let payload = token.split('.').nth(1)?;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
        let claim = |name: &str| claims.get(name)?.as_str().map(str::to_string);
        Some(TokenIdentity {
            tenant_id: claim("tid")?,
            client_id: claim("appid")?,
            object_id: claim("oid")?,
            resource_id: claim("xms_mirid")?,
        })
    }
}

/// The definitions file's content for the captured VM, given the versions the service
/// listed (oldest first).
pub fn definitions(pack: &Pack, versions: &[String], identity: Option<&TokenIdentity>) -> Json {
    let ok = |name: &str| {
        pack.get(name)
            .filter(|(recorded, _)| recorded.status == 200)
            .and_then(|(_, body)| Json::parse(body))
    };
    let newest_ok = |name: &dyn Fn(&str) -> String| {
        versions.iter().rev().find_map(|version| ok(&name(version)))
    };
    let mut vm = Vec::new();
    let instance = newest_ok(&|v| format!("instance/{v}-extended"))
        .or_else(|| newest_ok(&|v| format!("instance/{v}")));
    if let Some(instance) = instance {
        vm.push(("instance".to_string(), instance));
    }
    if let Some(identity) = identity {
        vm.push(("identities".to_string(), identities(identity)));
    }
    if let Some(balancer) =
        newest_ok(&|v| format!("loadbalancer/{v}")).and_then(|doc| doc.get("loadbalancer").cloned())
    {
        vm.push(("loadBalancer".to_string(), balancer));
    }
    let events = crate::events::version::EventsVersion::all()
        .filter_map(|v| ok(&format!("scheduledevents/{}", v.as_str())))
        .last();
    let pending: Vec<Json> = match events.as_ref().and_then(|doc| doc.get("Events")) {
        Some(Json::Array(events)) => events.iter().map(definable_event).collect(),
        _ => Vec::new(),
    };
    if !pending.is_empty() {
        vm.push(("scheduledEvents".to_string(), Json::Array(pending)));
    }
    Json::Object(vec![(
        "vms".to_string(),
        Json::Array(vec![Json::Object(vm)]),
    )])
}

/// A token for a user-assigned identity names the identity's resource; the system-assigned
/// identity's token names the VM.
fn identities(identity: &TokenIdentity) -> Json {
    let string = |s: &str| Json::String(s.to_string());
    let ids = vec![
        ("clientId".to_string(), string(&identity.client_id)),
        ("objectId".to_string(), string(&identity.object_id)),
    ];
    let user_assigned = identity
        .resource_id
        .to_ascii_lowercase()
        .contains("/providers/microsoft.managedidentity/userassignedidentities/");
    let chosen = if user_assigned {
        let mut ids = ids;
        ids.push(("resourceId".to_string(), string(&identity.resource_id)));
        (
            "userAssigned".to_string(),
            Json::Array(vec![Json::Object(ids)]),
        )
    } else {
        ("systemAssigned".to_string(), Json::Object(ids))
    };
    Json::Object(vec![
        ("tenantId".to_string(), string(&identity.tenant_id)),
        chosen,
    ])
}

fn definable_event(event: &Json) -> Json {
    match event {
        Json::Object(members) => Json::Object(
            members
                .iter()
                .filter(|(key, _)| EVENT_MEMBERS.contains(&key.as_str()))
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The file's text: a comment saying where it came from, then YAML.
pub fn to_yaml(definitions: &Json, source: &str, scrubbed: bool) -> String {
    let yaml = serde_yaml_ng::to_string(definitions).expect("a definition serializes as YAML");
    let scrub_note = if scrubbed {
        "# Secrets and personal values (userData, customData, SSH keys) were emptied (--no-scrub keeps them).\n"
    } else {
        "# Not scrubbed: this file may hold userData, customData and SSH public keys.\n"
    };
    format!(
        "# Captured by azimds capture from {source}; serve it with: azimds serve --vms vms.yaml\n\
         # The identity is the one a {TOKEN_VERSION} token was issued for (other user-assigned\n\
         # identities cannot be listed through IMDS).\n{scrub_note}{yaml}"
    )
}
