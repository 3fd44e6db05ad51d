//! VM definition files: the user-facing format that says which VMs exist, who calls as each,
//! and what each one's metadata is. JSON or YAML (README, "VM definition file").
//!
//! Pure: parses and checks text; reading the file is the caller's job. Every problem is
//! reported with the file, the VM and the JSON path, all at once, so a user fixes a file in
//! one pass.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::identity::definition::{Identities, VmContext};
use crate::metadata::document::InstanceDocument;
use crate::problem::Problems;

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
    /// The inner object of `/metadata/loadbalancer`.
    pub load_balancer: Option<Value>,
    /// Scheduled events pending at start, kept as written until the events endpoint consumes them.
    pub scheduled_events: Option<Value>,
    /// The entry as written (with `id` filled in): what the control API returns and patches.
    pub raw: Value,
}

impl VmDefinition {
    /// A short human label: the VM's `compute.name`, or its position.
    pub fn label(&self) -> &str {
        match self.instance.name() {
            "" => "(unnamed)",
            name => name,
        }
    }
}

/// A parsed definition file.
#[derive(Clone, Debug, PartialEq)]
pub struct Definitions {
    pub vms: Vec<VmDefinition>,
}

impl Definitions {
    /// Paths of instance fields the schema does not know, for a one-time warning at start.
    pub fn unknown_fields(&self) -> Vec<String> {
        self.vms
            .iter()
            .enumerate()
            .flat_map(|(i, vm)| {
                vm.instance
                    .unknown_fields()
                    .iter()
                    .map(move |p| format!("vms[{i}].instance.{p}"))
            })
            .collect()
    }
}

/// Why a definition file was rejected: every problem, each with its location.
#[derive(Debug)]
pub struct DefinitionError {
    pub source: String,
    pub problems: Vec<Located>,
}

/// One problem in a definition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Index and label of the VM, when the problem is inside one.
    pub vm: Option<(usize, String)>,
    /// JSON path from the file's root, e.g. `vms[0].instance.compute.name`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{} in the VM definitions",
            self.source,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}: ", self.source)?;
            if let Some((index, label)) = &p.vm {
                write!(f, "VM {index} ({label}): ")?;
            }
            if p.path.is_empty() {
                write!(f, "{}", p.message)?;
            } else {
                write!(f, "{}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for DefinitionError {}

/// The syntax of a definition file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    Json,
    Yaml,
}

impl Syntax {
    /// `.json` is JSON; `.yaml`/`.yml` is YAML; anything else is tried as JSON, then YAML.
    pub fn from_file_name(name: &str) -> Option<Syntax> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".json") {
            Some(Syntax::Json)
        } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Some(Syntax::Yaml)
        } else {
            None
        }
    }
}

const VM_MEMBERS: [&str; 6] = [
    "id",
    "callers",
    "instance",
    "identities",
    "loadBalancer",
    "scheduledEvents",
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

/// Something wrong in one VM entry, at `path` relative to the entry (e.g. `instance.compute.name`).
pub use crate::problem::Problem;

/// Parses and checks a definition file's text. `source` names it in messages.
pub fn parse(
    text: &str,
    syntax: Option<Syntax>,
    source: &str,
) -> Result<Definitions, DefinitionError> {
    let fail = |message: String| DefinitionError {
        source: source.to_string(),
        problems: vec![Located {
            vm: None,
            path: String::new(),
            message,
        }],
    };
    let value: Value = match syntax {
        Some(Syntax::Json) => {
            serde_json::from_str(text).map_err(|e| fail(format!("not valid JSON: {e}")))?
        }
        Some(Syntax::Yaml) => {
            serde_yaml_ng::from_str(text).map_err(|e| fail(format!("not valid YAML: {e}")))?
        }
        None => match serde_json::from_str(text) {
            Ok(value) => value,
            Err(_) => serde_yaml_ng::from_str(text)
                .map_err(|e| fail(format!("neither valid JSON nor valid YAML: {e}")))?,
        },
    };
    from_value(value).map_err(|problems| DefinitionError {
        source: source.to_string(),
        problems,
    })
}

/// The built-in demo VM served when no `--vms` file is given: every field of the newest
/// schema filled in with plausible, fixed values (so it is the same on every start).
pub fn demo() -> Definitions {
    parse(
        include_str!("demo.json"),
        Some(Syntax::Json),
        "built-in demo VM",
    )
    .expect("the embedded demo definition is valid (checked by a unit test)")
}

/// Checks one VM entry (the shape of an item of `vms`). `id` is the id to use when the entry
/// has none (the control API passes the URL's; files pass `compute.name` or `vm-<index>`); an
/// `id` member in the entry must agree with it when both are given by the caller.
pub fn vm_from_json(entry: &Value, default_id: &str) -> Result<VmDefinition, Vec<Problem>> {
    vm_from_owned(entry.clone(), default_id)
}

/// [`vm_from_json`] taking the entry by value: it becomes `raw` without a copy.
pub fn vm_from_owned(entry: Value, default_id: &str) -> Result<VmDefinition, Vec<Problem>> {
    let mut vm = vm_for_serving(&entry, default_id)?;
    let mut raw = match entry {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    raw.insert("id".into(), Value::String(vm.id.clone()));
    vm.raw = Value::Object(raw);
    Ok(vm)
}

/// Like [`vm_from_json`] without keeping the entry as written (`raw` is `Null`): for loading a
/// store into the guest plane, which never needs it, without copying every entry.
pub fn vm_for_serving(entry: &Value, default_id: &str) -> Result<VmDefinition, Vec<Problem>> {
    let mut problems = Problems::new();
    let empty = Map::new();
    let entry_map = match entry {
        Value::Object(map) => map,
        _ => {
            problems.push("", "expected an object");
            &empty
        }
    };
    problems.unknown_members(
        "",
        entry_map,
        &VM_MEMBERS,
        &format!("unknown member; a VM has only {}", VM_MEMBERS.join(", ")),
    );

    let id = match entry_map.get("id") {
        None | Some(Value::Null) => default_id.to_string(),
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

    let mut callers = Vec::new();
    match entry_map.get("callers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, caller) in list.iter().enumerate() {
                match caller.as_str().map(str::parse::<IpAddr>) {
                    Some(Ok(ip)) if !callers.contains(&ip.to_canonical()) => {
                        callers.push(ip.to_canonical())
                    }
                    Some(Ok(ip)) => {
                        problems.push(format!("callers[{i}]"), format!("{ip} is listed twice"))
                    }
                    _ => problems.push(
                        format!("callers[{i}]"),
                        format!("expected an IP address string, found {caller}"),
                    ),
                }
            }
        }
        Some(_) => problems.push("callers", "expected a list of IP addresses"),
    }

    let no_instance = Value::Object(Map::new());
    let instance = match entry_map.get("instance") {
        None | Some(Value::Null) => &no_instance,
        Some(instance) => instance,
    };
    let instance = problems.under("instance", InstanceDocument::from_json(instance));

    let identities = match entry_map.get("identities") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let compute = |key: &str| {
                entry_map
                    .get("instance")
                    .and_then(|i| i.get("compute"))
                    .and_then(|c| c.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or("")
            };
            let vm = VmContext {
                vm_id: &id,
                resource_id: compute("resourceId"),
                subscription_id: compute("subscriptionId"),
                resource_group: compute("resourceGroupName"),
            };
            problems.under("identities", Identities::from_json(value, vm))
        }
    };

    let mut optional = |key: &str, want_array: bool| -> Option<Value> {
        match entry_map.get(key) {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) if !want_array => Some(v.clone()),
            Some(v @ Value::Array(_)) if want_array => Some(v.clone()),
            Some(_) => {
                let expected = if want_array { "a list" } else { "an object" };
                problems.push(key, format!("expected {expected}"));
                None
            }
        }
    };
    let load_balancer = optional("loadBalancer", false);
    let scheduled_events = optional("scheduledEvents", true);
    for (i, event) in scheduled_events
        .iter()
        .flat_map(|v| v.as_array())
        .flatten()
        .enumerate()
    {
        if let Err(event_problems) = crate::events::parse_defined_event(event) {
            problems.nested(&format!("scheduledEvents[{i}]"), event_problems);
        }
    }

    match instance {
        Some(instance) => problems.into_result(VmDefinition {
            id,
            callers,
            instance,
            identities,
            load_balancer,
            scheduled_events,
            raw: Value::Null,
        }),
        None => Err(problems.into_vec()),
    }
}

fn from_value(root: Value) -> Result<Definitions, Vec<Located>> {
    let mut problems = Vec::new();
    let top_problem = |path: &str, message: &str| Located {
        vm: None,
        path: path.to_string(),
        message: message.to_string(),
    };
    let Value::Object(mut top) = root else {
        return Err(vec![top_problem(
            "",
            "expected an object with a `vms` list",
        )]);
    };
    for key in top.keys().filter(|k| *k != "vms") {
        problems.push(top_problem(
            key,
            "unknown member (the file holds only `vms`)",
        ));
    }
    // Taken by value: each entry is dropped once checked, so a large file is not held twice.
    let items = match top.remove("vms") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => {
            problems.push(top_problem("vms", "defines no VMs"));
            Vec::new()
        }
        Some(_) => {
            problems.push(top_problem("vms", "expected a list of VMs"));
            Vec::new()
        }
        None => {
            problems.push(top_problem(
                "vms",
                "missing: the file must list its VMs under `vms`",
            ));
            Vec::new()
        }
    };

    let mut vms: Vec<VmDefinition> = Vec::with_capacity(items.len());
    let mut first_claim: HashMap<IpAddr, usize> = HashMap::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let name = item
            .pointer("/instance/compute/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        let label = name.unwrap_or("unnamed").to_string();
        let default_id = match name {
            Some(name) if is_valid_id(name) && !ids.contains_key(name) => name.to_string(),
            _ => format!("vm-{index}"),
        };
        let locate = |path: String, message: String| Located {
            vm: Some((index, label.clone())),
            path,
            message,
        };
        match vm_from_owned(item, &default_id) {
            Ok(vm) => {
                if let Some(&other) = ids.get(&vm.id) {
                    problems.push(locate(
                        format!("vms[{index}].id"),
                        format!("{:?} is already the id of vms[{other}]", vm.id),
                    ));
                }
                ids.insert(vm.id.clone(), index);
                for (i, ip) in vm.callers.iter().enumerate() {
                    match first_claim.get(ip) {
                        Some(&other) => problems.push(locate(
                            format!("vms[{index}].callers[{i}]"),
                            format!("{ip} is already a caller of vms[{other}]"),
                        )),
                        None => {
                            first_claim.insert(*ip, index);
                        }
                    }
                }
                vms.push(vm);
            }
            Err(vm_problems) => {
                let prefix = format!("vms[{index}]");
                for problem in vm_problems {
                    let problem = problem.nest(&prefix);
                    problems.push(locate(problem.path, problem.message));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(Definitions { vms })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_definition_is_valid_and_complete() {
        let demo = demo();
        assert_eq!(demo.vms.len(), 1);
        assert!(
            demo.unknown_fields().is_empty(),
            "demo uses only known fields"
        );
        assert_eq!(demo.vms[0].label(), "azimds-demo");
        assert_eq!(
            demo.vms[0].id, "azimds-demo",
            "the id defaults to compute.name"
        );
    }

    #[test]
    fn yaml_and_json_give_the_same_definitions() {
        let yaml = "vms:\n  - callers: [\"10.0.0.4\"]\n    instance:\n      compute: {name: web, vmSize: Standard_B1s}\n";
        let json = r#"{"vms":[{"callers":["10.0.0.4"],"instance":{"compute":{"name":"web","vmSize":"Standard_B1s"}}}]}"#;
        let from_yaml = parse(yaml, Some(Syntax::Yaml), "a.yaml").unwrap();
        let from_json = parse(json, Some(Syntax::Json), "a.json").unwrap();
        assert_eq!(from_yaml, from_json);
        assert_eq!(parse(yaml, None, "a").unwrap(), from_json, "syntax sniffed");
    }

    #[test]
    fn every_problem_is_reported_with_file_vm_and_path() {
        let yaml = "vms:\n  - instance: {compute: {name: web, zone: 1}}\n    color: blue\n  - callers: [nope]\n";
        let err = parse(yaml, Some(Syntax::Yaml), "vms.yaml").unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 3, "{text}");
        assert!(
            text.contains("vms.yaml: VM 0 (web): vms[0].color: unknown member"),
            "{text}"
        );
        assert!(
            text.contains("vms.yaml: VM 0 (web): vms[0].instance.compute.zone: expected a string, found a number"),
            "{text}"
        );
        assert!(
            text.contains("VM 1 (unnamed): vms[1].callers[0]: expected an IP address"),
            "{text}"
        );
    }

    #[test]
    fn malformed_files_and_shared_callers_are_rejected() {
        let err = parse("{\"vms\": [", Some(Syntax::Json), "x.json").unwrap_err();
        assert!(err.to_string().contains("x.json: not valid JSON"), "{err}");
        let err = parse(
            r#"{"vms":[{"callers":["10.0.0.4"]},{"callers":["10.0.0.4"]}]}"#,
            None,
            "x",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("vms[1].callers[0]: 10.0.0.4 is already a caller of vms[0]"),
            "{err}"
        );
        let err = parse(r#"{"vms":[{"id":"a"},{"id":"a"}]}"#, None, "x").unwrap_err();
        assert!(
            err.to_string()
                .contains(r#"vms[1].id: "a" is already the id of vms[0]"#),
            "{err}"
        );
        let err = parse(r#"{"vms":[{"id":"no/slash"}]}"#, None, "x").unwrap_err();
        assert!(
            err.to_string()
                .contains("vms[0].id: \"no/slash\" is not a valid VM id"),
            "{err}"
        );
        let err = parse(r#"{"vms":[]}"#, None, "x").unwrap_err();
        assert!(err.to_string().contains("vms: defines no VMs"), "{err}");
    }
}
