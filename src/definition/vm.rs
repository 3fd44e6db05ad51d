//! One VM entry of a definition (an item of `vms`, or the body of `PUT /v1/vms/{id}`): checked
//! member by member into a [`VmDefinition`], every problem at a path relative to the entry.

use std::net::IpAddr;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::definition::provisioning::ProvisioningDefinition;
use crate::identity::definition::{Identities, VmContext};
use crate::metadata::document::InstanceDocument;
use crate::metadata::loadbalancer;
use crate::problem::{Problem, Problems};

/// One VM as its definition describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct VmDefinition {
    /// Unique id: the key in the control API and the store.
    pub id: String,
    /// Source addresses this VM calls from (used by `--callers source-address`).
    pub callers: Vec<IpAddr>,
    /// The checked instance document, newest schema.
    pub instance: InstanceDocument,
    /// Managed identities, every id filled in; `None` when the entry has no `identities`.
    pub identities: Option<Identities>,
    /// What `/metadata/loadbalancer` answers (spec §8); `None`: the VM has no load balancer.
    pub load_balancer: Option<loadbalancer::Served>,
    /// The OVF environment `/metadata/reprovisiondata` serves once an operator assigned the
    /// VM (spec §9.2); `None` until then.
    pub reprovision_data: Option<Bytes>,
    /// Scheduled events to seed, kept as written; the events engine imports each once.
    pub scheduled_events: Option<Value>,
    /// What the provisioning media carries beyond the instance document (custom data, a
    /// password); `None` when the entry has no `provisioning`.
    pub provisioning: Option<ProvisioningDefinition>,
    /// The host that serves this VM in a fleet (`--host-name` of one azimds); `None`: every
    /// host that has it serves it (docs/fleet.md).
    pub host: Option<String>,
}

impl VmDefinition {
    /// A short human label: the VM's `compute.name`, or `(unnamed)`.
    pub fn label(&self) -> &str {
        match self.instance.name() {
            "" => "(unnamed)",
            name => name,
        }
    }
}

const VM_MEMBERS: [&str; 9] = [
    "id",
    "callers",
    "instance",
    "identities",
    "loadBalancer",
    "scheduledEvents",
    "reprovisionData",
    "provisioning",
    "host",
];

/// Largest VM id: ids appear in URLs, logs and store keys.
const MAX_ID_LEN: usize = 64;

/// Whether `id` is a valid VM id: 1–64 of `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks one VM entry (the shape of an item of `vms`). `default_id` is the id to use when the
/// entry has none (the control API passes the URL's; files pass `compute.name` or
/// `vm-<index>`). The entry itself is not kept: the store keeps it as written (see
/// [`written_entry`]), the guest plane only what is checked here.
pub fn vm_from_json(entry: &Value, default_id: &str) -> Result<VmDefinition, Vec<Problem>> {
    let mut problems = Problems::new();
    let empty = Map::new();
    let entry = match entry {
        Value::Object(entry) => entry,
        _ => {
            problems.push("", "expected an object");
            &empty
        }
    };
    problems.unknown_members(
        "",
        entry,
        &VM_MEMBERS,
        &format!("unknown member; a VM has only {}", VM_MEMBERS.join(", ")),
    );
    let id = id(entry, default_id, &mut problems);
    let callers = callers(entry, &mut problems);
    let instance = instance(entry, &mut problems);
    let identities = identities(entry, &id, &mut problems);
    let load_balancer = load_balancer(entry, &mut problems);
    let scheduled_events = scheduled_events(entry, &mut problems);
    let reprovision_data = reprovision_data(entry, &mut problems);
    let provisioning = provisioning(entry, &mut problems);
    let host = host(entry, &mut problems);
    let Some(instance) = instance else {
        return Err(problems.into_vec());
    };
    problems.into_result(VmDefinition {
        id,
        callers,
        instance,
        identities,
        load_balancer,
        scheduled_events,
        reprovision_data,
        provisioning,
        host,
    })
}

/// The entry as the store keeps it (what the control API returns and patches): as written,
/// with its `id` filled in, as compact JSON. Object members are in key order, so the same entry
/// always gives the same bytes (a re-import compares them).
pub fn written_entry(entry: Value, id: &str) -> Box<[u8]> {
    let mut map = match entry {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    map.insert("id".into(), Value::String(id.to_string()));
    serde_json::to_vec(&map)
        .expect("a JSON value serializes")
        .into_boxed_slice()
}

/// A member, `None` when left out or `null` (a YAML `key:` with nothing after it).
fn member<'a>(entry: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    entry.get(key).filter(|value| !value.is_null())
}

/// `host`: a host name as `--host-name` takes it (1-253 of A-Z a-z 0-9 . _ -).
fn host(entry: &Map<String, Value>, problems: &mut Problems) -> Option<String> {
    match member(entry, "host")? {
        Value::String(name) if is_valid_host_name(name) => Some(name.clone()),
        _ => {
            problems.push(
                "host",
                "expected a host name (1-253 of A-Z a-z 0-9 . _ -), the --host-name of the azimds that serves the VM",
            );
            None
        }
    }
}

/// Whether `name` can name a host (`host`, `--host-name`).
pub fn is_valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `id`, else `default_id`; either way it must be a valid VM id.
fn id(entry: &Map<String, Value>, default_id: &str, problems: &mut Problems) -> String {
    let id = match member(entry, "id") {
        None => default_id.to_string(),
        Some(Value::String(id)) => id.clone(),
        Some(_) => {
            problems.push("id", "expected a string");
            default_id.to_string()
        }
    };
    if !is_valid_id(&id) {
        problems.push(
            "id",
            format!("{id:?} is not a valid VM id (1-64 of A-Z a-z 0-9 . _ -, not starting with .)"),
        );
    }
    id
}

/// `callers`: distinct IP addresses, IPv4-mapped IPv6 taken as IPv4.
fn callers(entry: &Map<String, Value>, problems: &mut Problems) -> Vec<IpAddr> {
    let list = match member(entry, "callers") {
        None => return Vec::new(),
        Some(Value::Array(list)) => list,
        Some(_) => {
            problems.push("callers", "expected a list of IP addresses");
            return Vec::new();
        }
    };
    let mut callers = Vec::new();
    for (i, caller) in list.iter().enumerate() {
        match caller.as_str().map(str::parse::<IpAddr>) {
            Some(Ok(ip)) if not_unicast(ip.to_canonical()).is_some() => problems.push(
                format!("callers[{i}]"),
                format!(
                    "{ip} is {}, not an address a VM calls from",
                    not_unicast(ip.to_canonical()).unwrap_or_default()
                ),
            ),
            Some(Ok(ip)) if !callers.contains(&ip.to_canonical()) => {
                callers.push(ip.to_canonical())
            }
            Some(Ok(ip)) => problems.push(format!("callers[{i}]"), format!("{ip} is listed twice")),
            _ => problems.push(
                format!("callers[{i}]"),
                format!("expected an IP address string, found {caller}"),
            ),
        }
    }
    callers
}

/// What `ip` is if it cannot be the source of a VM's connection: the unspecified address (a
/// socket not yet bound), the IPv4 limited broadcast or a multicast group (RFC 1122 3.2.1.3,
/// RFC 4291 2.5.2: none is ever a packet's source).
fn not_unicast(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("the broadcast address")
    } else {
        None
    }
}

/// `instance`, checked against the schema; left out, it is every field's default.
fn instance(entry: &Map<String, Value>, problems: &mut Problems) -> Option<InstanceDocument> {
    let no_instance = Value::Object(Map::new());
    let instance = member(entry, "instance").unwrap_or(&no_instance);
    problems.under("instance", InstanceDocument::from_json(instance))
}

/// `identities`, with missing ids derived from the VM's id and `compute` (as written: an
/// invalid `instance` still gives identities their context).
fn identities(entry: &Map<String, Value>, id: &str, problems: &mut Problems) -> Option<Identities> {
    let identities = member(entry, "identities")?;
    let compute = |key: &str| {
        member(entry, "instance")
            .and_then(|instance| instance.get("compute"))
            .and_then(|compute| compute.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let vm = VmContext {
        vm_id: id,
        resource_id: compute("resourceId"),
        subscription_id: compute("subscriptionId"),
        resource_group: compute("resourceGroupName"),
    };
    problems.under("identities", Identities::from_json(identities, vm))
}

/// `loadBalancer`: the response's inner object, checked and rendered now (§8.2), or the name
/// of a §8.4 outage.
fn load_balancer(
    entry: &Map<String, Value>,
    problems: &mut Problems,
) -> Option<loadbalancer::Served> {
    let value = member(entry, "loadBalancer")?;
    match loadbalancer::Served::from_json(value) {
        Ok(served) => Some(served),
        Err(found) => {
            let found = found
                .into_iter()
                .map(|(path, message)| Problem::new(path, message));
            problems.nested("loadBalancer", found);
            None
        }
    }
}

/// `reprovisionData`: an OVF environment document, as the provisioning ISO's `ovf-env.xml`.
/// cloud-init parses it and gives up on anything but XML whose root is `Environment`
/// (`read_azure_ovf`), so that is checked here rather than found in the guest.
fn reprovision_data(entry: &Map<String, Value>, problems: &mut Problems) -> Option<Bytes> {
    let Value::String(text) = member(entry, "reprovisionData")? else {
        problems.push(
            "reprovisionData",
            "expected a string (the OVF environment XML)",
        );
        return None;
    };
    match roxmltree::Document::parse(text) {
        Ok(document) if document.root_element().tag_name().name() == "Environment" => {
            Some(Bytes::copy_from_slice(text.as_bytes()))
        }
        Ok(document) => {
            problems.push(
                "reprovisionData",
                format!(
                    "the root element is <{}>; an OVF environment's is <Environment>",
                    document.root_element().tag_name().name()
                ),
            );
            None
        }
        Err(error) => {
            problems.push("reprovisionData", format!("not well-formed XML: {error}"));
            None
        }
    }
}

/// `scheduledEvents`: kept as written for the events engine to import, but every entry is
/// checked now, so a bad one rejects the VM instead of being skipped at import.
fn scheduled_events(entry: &Map<String, Value>, problems: &mut Problems) -> Option<Value> {
    let Value::Array(events) = member(entry, "scheduledEvents")? else {
        problems.push("scheduledEvents", "expected a list");
        return None;
    };
    for (i, event) in events.iter().enumerate() {
        if let Err(event_problems) = crate::events::parse_defined_event(event) {
            problems.nested(&format!("scheduledEvents[{i}]"), event_problems);
        }
    }
    Some(Value::Array(events.clone()))
}

/// `provisioning`: custom data and a password for the OVF environment (see
/// `definition::provisioning`).
fn provisioning(
    entry: &Map<String, Value>,
    problems: &mut Problems,
) -> Option<ProvisioningDefinition> {
    let provisioning = member(entry, "provisioning")?;
    problems.under(
        "provisioning",
        ProvisioningDefinition::from_json(provisioning),
    )
}
