//! A whole definition file: its syntax (JSON or YAML), its top level (`vms`), and the checks
//! that span entries (unique ids, callers claimed once). Each entry is checked by `vm.rs`;
//! every problem comes back located by VM and JSON path from the file's root.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::definition::checkers::{self, EntryCheck};
use crate::definition::strict::{StrictValue, Strictness};
use crate::definition::syntax::{MAX_DEPTH, Syntax};
use crate::definition::vm::VmDefinition;
use crate::definition::{split, yaml_depth};
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
    /// The entry with its `id` filled in, as compact JSON ([`super::written_entry`]): what the store
    /// keeps and the control API returns.
    pub entry: Box<[u8]>,
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
    /// Every problem found, in file order (the first hundred); never empty.
    pub problems: Vec<Located>,
    /// How many more problems were found and not listed.
    pub omitted: usize,
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
        if self.omitted > 0 {
            write!(f, "\n  {}: and {} more", self.source, self.omitted)?;
        }
        Ok(())
    }
}

impl std::error::Error for DefinitionError {}

/// Problems listed in full; a file with more says how many were left out.
const MAX_PROBLEMS: usize = 100;

/// Parses and checks a definition file's text. `source` names it in messages.
///
/// Each entry is checked as soon as it is parsed and only what is kept of it (the checked VM
/// and the entry as compact JSON) stays in memory, so a 100,000-VM file never exists as one
/// JSON tree. A large file's entries are parsed and checked on every core (`split.rs`,
/// `checkers.rs`); a small one, or one whose entries cannot be cut apart, is read as one
/// document, one entry at a time.
pub fn parse(
    text: &str,
    syntax: Option<Syntax>,
    source: &str,
) -> Result<Definitions, DefinitionError> {
    parse_with(text, syntax, source, checkers::workers_for(text.len()))
}

/// [`parse`], parsing and checking entries on `workers` threads (0: as one document, inline).
fn parse_with(
    text: &str,
    syntax: Option<Syntax>,
    source: &str,
    workers: usize,
) -> Result<Definitions, DefinitionError> {
    if workers > 0
        && let Some(checked) = read_entries(text, syntax, workers)
    {
        let mut reader = Reader::new();
        reader.checked = checked;
        reader.finish();
        return conclude(reader, source);
    }
    let read = match syntax {
        Some(Syntax::Json) => read_json(text).map_err(|e| format!("not valid JSON: {e}")),
        Some(Syntax::Yaml) => read_yaml(text).map_err(|e| format!("not valid YAML: {e}")),
        None => match read_json(text) {
            Err(Unreadable::Syntax(_)) => {
                read_yaml(text).map_err(|e| format!("neither valid JSON nor valid YAML: {e}"))
            }
            read => read.map_err(|e| format!("not valid JSON: {e}")),
        },
    };
    let fail = |problems| DefinitionError {
        source: source.to_string(),
        problems,
        omitted: 0,
    };
    match read {
        Ok(reader) => conclude(reader, source),
        Err(message) => Err(fail(vec![Located::new(None, Problem::new("", message))])),
    }
}

/// The entries of a file in the plain shape (`split.rs`), each parsed and checked on one of
/// `workers` threads; `None` if the file must be read as one document.
fn read_entries(text: &str, syntax: Option<Syntax>, workers: usize) -> Option<Vec<EntryCheck>> {
    let yaml = || checkers::check_all(text, &split::yaml_entries(text)?, Syntax::Yaml, workers);
    let json = |entries: Vec<_>| checkers::check_all(text, &entries, Syntax::Json, workers);
    match syntax {
        Some(Syntax::Json) => json(split::json_entries(text)?),
        Some(Syntax::Yaml) => yaml(),
        // As read whole: JSON if it is JSON, YAML otherwise.
        None => match split::json_entries(text) {
            Some(entries) => json(entries),
            None => yaml(),
        },
    }
}

/// The definitions a read found, or every problem in them.
fn conclude(reader: Reader, source: &str) -> Result<Definitions, DefinitionError> {
    let fail = |problems| DefinitionError {
        source: source.to_string(),
        problems,
        omitted: 0,
    };
    let Reader {
        vms,
        mut problems,
        top,
        omitted,
        ..
    } = reader;
    if problems.is_empty() && top.is_empty() {
        return Ok(Definitions { vms: vms.vms });
    }
    let top = top.into_vec().into_iter().map(|p| Located::new(None, p));
    problems.splice(0..0, top);
    Err(DefinitionError {
        omitted,
        ..fail(problems)
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

/// Why a file could not be read at all (as opposed to read and found wrong).
#[derive(Debug)]
enum Unreadable {
    /// Not this syntax (for JSON: the reason to try YAML when the syntax was not given).
    Syntax(String),
    /// A key given twice, or too deep.
    Meaning(String),
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreadable::Syntax(message) | Unreadable::Meaning(message) => f.write_str(message),
        }
    }
}

fn read_json(text: &str) -> Result<Reader, Unreadable> {
    let mut reader = Reader::new();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let read = Root(&mut reader)
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    json_result(reader, read)
}

fn json_result(mut reader: Reader, read: serde_json::Result<()>) -> Result<Reader, Unreadable> {
    match read {
        Ok(()) => {
            reader.finish();
            Ok(reader)
        }
        Err(error) => match reader.strictness.take_duplicate() {
            Some(duplicate) => Err(Unreadable::Meaning(format!(
                "{}: {} (line {} column {})",
                duplicate.path,
                duplicate.message(),
                error.line(),
                error.column()
            ))),
            None if error.is_syntax() || error.is_eof() => {
                Err(Unreadable::Syntax(error.to_string()))
            }
            None => Err(Unreadable::Meaning(error.to_string())),
        },
    }
}

fn read_yaml(text: &str) -> Result<Reader, Unreadable> {
    if let Err(deep) = yaml_depth::check(text, MAX_DEPTH) {
        return Err(Unreadable::Meaning(format!(
            "collections are nested more than {MAX_DEPTH} levels deep (line {} column {})",
            deep.line, deep.column
        )));
    }
    let mut reader = Reader::new();
    let read = Root(&mut reader).deserialize(serde_yaml_ng::Deserializer::from_str(text));
    yaml_result(reader, read)
}

fn yaml_result(
    mut reader: Reader,
    read: Result<(), serde_yaml_ng::Error>,
) -> Result<Reader, Unreadable> {
    match read {
        Ok(()) => {
            reader.finish();
            Ok(reader)
        }
        Err(error) => Err(match reader.strictness.take_duplicate() {
            Some(duplicate) => {
                let at = error
                    .location()
                    .map(|l| format!(" (line {} column {})", l.line(), l.column()))
                    .unwrap_or_default();
                Unreadable::Meaning(format!("{}: {}{at}", duplicate.path, duplicate.message()))
            }
            None => Unreadable::Syntax(error.to_string()),
        }),
    }
}

/// What reading a file has found so far.
struct Reader {
    vms: VmList,
    /// Problems of the file's top level, reported first.
    top: Problems,
    /// Problems inside entries, in file order (at most [`MAX_PROBLEMS`]).
    problems: Vec<Located>,
    omitted: usize,
    strictness: Strictness,
    /// Every entry's check, in file order; taken by [`Reader::finish`].
    checked: Vec<EntryCheck>,
    /// Ids held by the entries read so far: an entry without `id` defaults to its name only
    /// when no earlier entry holds it.
    claimed: HashSet<String>,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            vms: VmList::new(),
            top: Problems::new(),
            problems: Vec::new(),
            omitted: 0,
            strictness: Strictness::new(),
            checked: Vec::new(),
            claimed: HashSet::new(),
        }
    }

    /// Checks entry `index` as soon as it is read, with its default id.
    fn entry(&mut self, index: usize, entry: Value) {
        let default_id = checkers::default_id(&entry, index, &self.claimed);
        self.claimed
            .insert(checkers::claimed_id(&entry, &default_id));
        self.checked.push(checkers::check(entry, &default_id));
    }

    /// Takes every entry's check in file order and applies the checks across entries; once
    /// the file is known to be rejected, entries are still checked (every problem is
    /// reported) but no longer kept.
    fn finish(&mut self) {
        for (index, checked) in std::mem::take(&mut self.checked).into_iter().enumerate() {
            let keep = self.problems.is_empty();
            for problem in self.vms.add(index, checked.result, keep) {
                if self.problems.len() < MAX_PROBLEMS {
                    let problem = problem.nest(&format!("vms[{index}]"));
                    self.problems
                        .push(Located::new(Some((index, checked.label.clone())), problem));
                } else {
                    self.omitted += 1;
                }
            }
        }
    }
}

/// The file's root: an object whose only member is a non-empty `vms` list.
struct Root<'a>(&'a mut Reader);

impl<'de> DeserializeSeed<'de> for Root<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Root<'_> {
    fn not_an_object<E>(self) -> Result<(), E> {
        self.0.top.push("", "expected an object with a `vms` list");
        Ok(())
    }
}

impl<'de> Visitor<'de> for Root<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a `vms` list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let reader = self.0;
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(reader.strictness.duplicate_at(&key));
            }
            if key == "vms" {
                map.next_value_seed(Vms(reader))?;
            } else {
                reader
                    .top
                    .push(key.as_str(), "unknown member (the file holds only `vms`)");
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !seen.contains("vms") {
            reader
                .top
                .push("vms", "missing: the file must list its VMs under `vms`");
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.not_an_object()
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.not_an_object()
    }
}

/// The `vms` member: each entry read strictly, then checked and kept or dropped at once.
struct Vms<'a>(&'a mut Reader);

impl<'de> DeserializeSeed<'de> for Vms<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Vms<'_> {
    fn not_a_list<E>(self) -> Result<(), E> {
        self.0.top.push("vms", "expected a list of VMs");
        Ok(())
    }
}

impl<'de> Visitor<'de> for Vms<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of VMs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let reader = self.0;
        let mut index = 0;
        loop {
            match seq.next_element_seed(StrictValue(&mut reader.strictness)) {
                Ok(Some(entry)) => reader.entry(index, entry),
                Ok(None) => break,
                Err(error) => {
                    reader.strictness.prefix(&format!("vms[{index}]"));
                    return Err(error);
                }
            }
            index += 1;
        }
        if index == 0 {
            reader.top.push("vms", "defines no VMs");
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.not_a_list()
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.not_a_list()
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.not_a_list()
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.not_a_list()
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.not_a_list()
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.not_a_list()
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.not_a_list()
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.not_a_list()
    }
}

/// The VMs accepted so far, and which of them holds each id and caller address: a file's
/// entries must not share either.
struct VmList {
    vms: Vec<DefinedVm>,
    ids: HashMap<String, usize>,
    first_claim: HashMap<IpAddr, usize>,
}

impl VmList {
    fn new() -> VmList {
        VmList {
            vms: Vec::new(),
            ids: HashMap::new(),
            first_claim: HashMap::new(),
        }
    }

    /// Adds checked entry `index` and, if valid and `keep`, keeps it; problems are relative
    /// to the entry.
    fn add(
        &mut self,
        index: usize,
        checked: Result<(VmDefinition, Box<[u8]>), Vec<Problem>>,
        keep: bool,
    ) -> Vec<Problem> {
        let (vm, entry) = match checked {
            Ok(checked) => checked,
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
        if keep && problems.is_empty() {
            self.vms.push(DefinedVm { vm, entry });
        }
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

    /// A file of `n` small VMs, with `bad` (index, entry) replacing some.
    fn numbered_file(n: usize, bad: &[(usize, &str)]) -> String {
        let entries: Vec<String> = (0..n)
            .map(|i| match bad.iter().find(|(at, _)| *at == i) {
                Some((_, entry)) => entry.to_string(),
                None => format!(
                    r#"{{"callers":["10.{}.{}.{}"],"instance":{{"compute":{{"name":"vm{i}"}}}}}}"#,
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                ),
            })
            .collect();
        format!(r#"{{"vms":[{}]}}"#, entries.join(","))
    }

    #[test]
    fn entries_checked_on_workers_come_back_as_checked_inline() {
        let good = numbered_file(300, &[]);
        let inline = parse_with(&good, Some(Syntax::Json), "f", 0).unwrap();
        for workers in [1, 2, 3] {
            let parallel = parse_with(&good, Some(Syntax::Json), "f", workers).unwrap();
            assert_eq!(parallel, inline, "{workers} workers");
        }
        assert_eq!(inline.vms.len(), 300);
        assert_eq!(inline.vms[299].vm.id, "vm299", "file order kept");
        // Problems inside entries and across them (a caller claimed twice, an id taken, and a
        // name already used as an id) are found and ordered the same way.
        let bad = numbered_file(
            200,
            &[
                (7, r#"{"callers":["10.0.0.3"]}"#),
                (50, r#"{"id":"vm60","instance":{"compute":{"name":"x"}}}"#),
                (80, r#"{"instance":{"compute":{"name":"y","zone":1}}}"#),
                (120, r#"{"id":"vm60"}"#),
                (150, r#"{"color":"blue"}"#),
            ],
        );
        let inline = parse_with(&bad, Some(Syntax::Json), "f", 0).unwrap_err();
        let parallel = parse_with(&bad, Some(Syntax::Json), "f", 2).unwrap_err();
        assert_eq!(parallel.problems, inline.problems);
        let text = parallel.to_string();
        assert_eq!(parallel.problems.len(), 4, "{text}");
        assert!(
            text.contains(
                "VM 7 (unnamed): vms[7].callers[0]: 10.0.0.3 is already a caller of vms[3]"
            ),
            "{text}"
        );
        assert!(
            text.contains("VM 80 (y): vms[80].instance.compute.zone: expected a string"),
            "{text}"
        );
        assert!(
            text.contains(r#"VM 120 (unnamed): vms[120].id: "vm60" is already the id of vms[50]"#),
            "{text}"
        );
        assert!(
            text.contains("VM 150 (unnamed): vms[150].color: unknown member"),
            "{text}"
        );
        // A name an earlier entry holds as its id is not taken as a default id.
        let ok = numbered_file(
            70,
            &[(50, r#"{"id":"vm60","instance":{"compute":{"name":"x"}}}"#)],
        );
        let ok = parse_with(&ok, Some(Syntax::Json), "f", 2).unwrap();
        assert_eq!(
            (ok.vms[50].vm.id.as_str(), ok.vms[60].vm.id.as_str()),
            ("vm60", "vm-60")
        );
        // YAML takes the same path.
        let yaml =
            serde_yaml_ng::to_string(&serde_json::from_str::<Value>(&good).unwrap()).unwrap();
        assert_eq!(
            parse_with(&yaml, Some(Syntax::Yaml), "f", 2).unwrap(),
            parse_with(&good, Some(Syntax::Json), "f", 0).unwrap()
        );
    }

    /// Both ways of reading a file: as one document, and cut into entries on 2 threads.
    fn both_ways(text: &str, syntax: Syntax) -> [Result<Definitions, String>; 2] {
        [0, 2]
            .map(|workers| parse_with(text, Some(syntax), "f", workers).map_err(|e| e.to_string()))
    }

    #[test]
    fn files_cut_into_entries_read_as_whole_files_do() {
        let entry = |i: usize| {
            format!(
                "- callers: [10.0.0.{i}]\n  instance:\n    compute: {{name: vm{i}, zone: '1'}}\n"
            )
        };
        let plain = format!("# VMs\nvms:\n{}{}", entry(1), entry(2));
        // (text, cut into entries): what does not cut is read whole, with the same result.
        let cases = [
            (plain.clone(), true),
            (format!("---\nvms:\n{}", entry(1).replace("- ", "  - ").replace("\n  ", "\n    ")), true),
            // An alias to an anchor of an earlier entry does not read on its own.
            (
                "vms:\n- instance: {compute: &c {name: a}}\n- instance: {compute: *c}\n".into(),
                false,
            ),
            ("vms:\n- &e {callers: [10.0.0.1]}\n- {id: b}\n".into(), true),
            // A quoted scalar over a line that looks like an item.
            (
                "vms:\n- instance: {compute: {name: \"a\n- b\"}}\n- id: c\n".into(),
                false,
            ),
            // A key given twice, an extra member, a flow list: read whole, for the messages.
            ("vms:\n- id: a\n  id: b\n".into(), false),
            (format!("{plain}color: blue\n"), false),
            ("vms: [{id: a}, {id: b}]\n".into(), false),
            // A name an earlier entry holds as its id: checked again with `vm-<index>`.
            (
                "vms:\n- {id: b, instance: {compute: {name: a}}}\n- instance: {compute: {name: b}}\n".into(),
                true,
            ),
            (format!("vms:\n{}{}", entry(1), entry(1)), true),
            // Too deep for libyaml: refused as a whole file is, with the position.
            (format!("vms:\n- x: {}{}\n", "[".repeat(200), "]".repeat(200)), false),
        ];
        for (text, cut) in &cases {
            let [whole, parallel] = both_ways(text, Syntax::Yaml);
            assert_eq!(parallel, whole, "{text}");
            assert_eq!(
                read_entries(text, Some(Syntax::Yaml), 2).is_some(),
                *cut,
                "{text}"
            );
            assert_eq!(
                read_entries(text, None, 2).is_some(),
                *cut,
                "sniffed: {text}"
            );
        }
        let renamed = both_ways(&cases[8].0, Syntax::Yaml)[1].clone().unwrap();
        assert_eq!(renamed.vms[1].vm.id, "vm-1");
        let json_cases = [
            (
                r#"{"vms":[{"id":"b","instance":{"compute":{"name":"a"}}},{"instance":{"compute":{"name":"b"}}}]}"#,
                true,
            ),
            (
                r#"{"vms":[{"id":"a"},{"callers":["10.0.0.4"],"callers":[]}]}"#,
                false,
            ),
            (r#"{"vms":[{"id":"a"}],"x":1}"#, false),
            (r#"{"vms":[{"id":"a"},]}"#, false),
        ];
        for (text, cut) in json_cases {
            let [whole, parallel] = both_ways(text, Syntax::Json);
            assert_eq!(parallel, whole, "{text}");
            assert_eq!(
                read_entries(text, Some(Syntax::Json), 2).is_some(),
                cut,
                "{text}"
            );
        }
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

    #[test]
    fn a_key_given_twice_is_refused_with_its_path() {
        let cases = [
            (
                r#"{"vms":[{"callers":["10.0.0.4"],"callers":["10.0.0.5"]}]}"#,
                "x: not valid JSON: vms[0].callers: this key is given twice",
            ),
            (
                r#"{"vms":[{},{"instance":{"compute":{"name":"a","name":"b"}}}]}"#,
                "x: not valid JSON: vms[1].instance.compute.name: this key is given twice",
            ),
            (
                r#"{"vms":[{}],"vms":[]}"#,
                "x: not valid JSON: vms: this key is given twice",
            ),
            (
                "vms:\n  - callers: [10.0.0.4]\n    callers: [10.0.0.5]\n",
                "x: not valid YAML: vms[0].callers: this key is given twice",
            ),
            (
                "vms:\n  - instance: {compute: {zone: '1', zone: '2'}}\n",
                "x: not valid YAML: vms[0].instance.compute.zone: this key is given twice",
            ),
        ];
        for (text, expected) in cases {
            let syntax = text
                .starts_with('{')
                .then_some(Syntax::Json)
                .or(Some(Syntax::Yaml));
            let error = parse(text, syntax, "x").unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.contains("(line "), "{error}");
        }
    }

    #[test]
    fn many_problems_are_counted_past_the_first_hundred() {
        let entries: Vec<String> = (0..150).map(|_| r#"{"callers":[1]}"#.to_string()).collect();
        let text = format!(r#"{{"vms":[{}]}}"#, entries.join(","));
        let error = parse(&text, Some(Syntax::Json), "x").unwrap_err();
        assert_eq!((error.problems.len(), error.omitted), (100, 50));
        assert!(error.to_string().ends_with("x: and 50 more"), "{error}");
    }
}
