//! A whole definition file: its syntax (JSON or YAML), its top level (`vms`), and the checks
//! that span entries (unique ids, callers claimed once). Each entry is checked by `vm.rs`;
//! every problem comes back located by VM and JSON path from the file's root.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde_json::Value;

use crate::definition::vm::{VmDefinition, is_valid_id, vm_from_json, written_entry};
use crate::problem::{Problem, Problems};

/// A parsed definition file.
#[derive(Clone, Debug, PartialEq)]
pub struct Definitions {
    /// In file order; ids and caller addresses are unique among them.
    pub vms: Vec<DefinedVm>,
}

/// One VM of a file: what was checked, and the entry as written for the store.
#[derive(Clone, Debug, PartialEq)]
pub struct DefinedVm {
    pub vm: VmDefinition,
    /// The entry with its `id` filled in ([`written_entry`]).
    pub entry: Value,
}

impl Definitions {
    /// Paths of instance fields the schema does not know, for a one-time warning at start.
    pub fn unknown_fields(&self) -> Vec<String> {
        self.vms
            .iter()
            .enumerate()
            .flat_map(|(i, defined)| {
                defined
                    .vm
                    .instance
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
    /// What the file was called when parsed (a path, or e.g. `built-in demo VM`).
    pub source: String,
    /// Every problem found, in file order; never empty.
    pub problems: Vec<Located>,
}

/// One problem in a definition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Index and label of the VM, when the problem is inside one.
    pub vm: Option<(usize, String)>,
    /// JSON path from the file's root, e.g. `vms[0].instance.compute.name`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl Located {
    fn new(vm: Option<(usize, String)>, problem: Problem) -> Located {
        Located {
            vm,
            path: problem.path,
            message: problem.message,
        }
    }
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
    /// `.json` is JSON; `.yaml`/`.yml` is YAML; `None` for anything else, which [`parse`]
    /// tries as JSON, then as YAML.
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

/// Parses and checks a definition file's text. `source` names it in messages.
pub fn parse(
    text: &str,
    syntax: Option<Syntax>,
    source: &str,
) -> Result<Definitions, DefinitionError> {
    let fail = |message: String| DefinitionError {
        source: source.to_string(),
        problems: vec![Located::new(None, Problem::new("", message))],
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

fn from_value(root: Value) -> Result<Definitions, Vec<Located>> {
    let mut top = Problems::new();
    let entries = vm_entries(root, &mut top);
    let mut problems: Vec<Located> = top
        .into_vec()
        .into_iter()
        .map(|problem| Located::new(None, problem))
        .collect();
    let mut vms = VmList::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let label = entry
            .pointer("/instance/compute/name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .unwrap_or("unnamed")
            .to_string();
        let prefix = format!("vms[{index}]");
        problems.extend(
            vms.add(index, entry)
                .into_iter()
                .map(|problem| Located::new(Some((index, label.clone())), problem.nest(&prefix))),
        );
    }
    if problems.is_empty() {
        Ok(Definitions { vms: vms.vms })
    } else {
        Err(problems)
    }
}

/// The file's top level: an object whose only member is a non-empty `vms` list.
fn vm_entries(root: Value, problems: &mut Problems) -> Vec<Value> {
    let Value::Object(mut top) = root else {
        problems.push("", "expected an object with a `vms` list");
        return Vec::new();
    };
    problems.unknown_members(
        "",
        &top,
        &["vms"],
        "unknown member (the file holds only `vms`)",
    );
    // Taken by value: each entry is dropped once checked, so a large file is not held twice.
    match top.remove("vms") {
        Some(Value::Array(entries)) if !entries.is_empty() => return entries,
        Some(Value::Array(_)) => problems.push("vms", "defines no VMs"),
        Some(_) => problems.push("vms", "expected a list of VMs"),
        None => problems.push("vms", "missing: the file must list its VMs under `vms`"),
    }
    Vec::new()
}

/// The VMs accepted so far, and which of them holds each id and caller address: a file's
/// entries must not share either.
struct VmList {
    vms: Vec<DefinedVm>,
    ids: HashMap<String, usize>,
    first_claim: HashMap<IpAddr, usize>,
}

impl VmList {
    fn with_capacity(n_vms: usize) -> VmList {
        VmList {
            vms: Vec::with_capacity(n_vms),
            ids: HashMap::new(),
            first_claim: HashMap::new(),
        }
    }

    /// Checks entry `index` and, if valid, keeps it; problems are relative to the entry.
    fn add(&mut self, index: usize, entry: Value) -> Vec<Problem> {
        let default_id = match entry
            .pointer("/instance/compute/name")
            .and_then(Value::as_str)
        {
            Some(name) if is_valid_id(name) && !self.ids.contains_key(name) => name.to_string(),
            _ => format!("vm-{index}"),
        };
        let vm = match vm_from_json(&entry, &default_id) {
            Ok(vm) => vm,
            Err(problems) => return problems,
        };
        let mut problems = Problems::new();
        if let Some(&other) = self.ids.get(&vm.id) {
            problems.push(
                "id",
                format!("{:?} is already the id of vms[{other}]", vm.id),
            );
        }
        self.ids.insert(vm.id.clone(), index);
        for (i, ip) in vm.callers.iter().enumerate() {
            match self.first_claim.get(ip) {
                Some(&other) => problems.push(
                    format!("callers[{i}]"),
                    format!("{ip} is already a caller of vms[{other}]"),
                ),
                None => {
                    self.first_claim.insert(*ip, index);
                }
            }
        }
        // Moved, not copied: a 100k-VM file must not be held twice.
        let entry = written_entry(entry, &vm.id);
        self.vms.push(DefinedVm { vm, entry });
        problems.into_vec()
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
        assert_eq!(demo.vms[0].vm.label(), "azimds-demo");
        assert_eq!(
            demo.vms[0].vm.id, "azimds-demo",
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
