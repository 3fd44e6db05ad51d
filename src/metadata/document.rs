//! The instance document of one VM: a JSON tree whose object members remember the api-version
//! that introduced them, built by checking a VM definition's `instance` against the schema.
//!
//! Pure: no IO. Problems are returned with the JSON path that caused them; the caller (the
//! definition loader) adds the file and VM to the message.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::metadata::node::{Member, Node};
use crate::metadata::schema::{EXTENDED, SchemaField, SchemaNode, instance_schema};
use crate::metadata::version::ApiVersion;
use crate::problem::{Problem, Problems, join};

/// The checked instance document: every schema field present (defaults filled in), unknown
/// fields kept and marked as served from the newest api-version only.
///
/// Held as compact JSON rather than as a tree: a host may serve 100k VMs, and the tree (one
/// allocation per member) costs several times the bytes. The tree is rebuilt, deterministically,
/// only when a version of the document is rendered for the first time.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceDocument {
    /// The normalized newest document, `extended` included, compact.
    compact: Bytes,
    /// `compute.name`, for labels in logs and messages.
    name: Box<str>,
    unknown_fields: Vec<String>,
}

impl InstanceDocument {
    /// Checks `instance` (a pasted IMDS response of any api-version, or a partial one) against
    /// the newest schema. `Err` lists every problem found, not just the first.
    pub fn from_json(instance: &Value) -> Result<InstanceDocument, Vec<Problem>> {
        let (root, unknown_fields) = build(&with_tags_filled_in(instance))?;
        let compact = Bytes::from(serde_json::to_vec(&root).expect("a document tree serializes"));
        let name = match &root {
            Node::Object(members) => members
                .iter()
                .find(|m| &*m.key == "compute")
                .and_then(|compute| match &compute.value {
                    Node::Object(fields) => fields.iter().find(|f| &*f.key == "name"),
                    _ => None,
                })
                .and_then(|name| match &name.value {
                    Node::String(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default(),
            _ => Box::from(""),
        };
        Ok(InstanceDocument {
            compact,
            name,
            unknown_fields,
        })
    }

    /// The normalized document as [`InstanceDocument::compact`] gave it, with its name and
    /// unknown fields: a document checked earlier and kept (the store keeps each VM's checked
    /// form, so a restart does not check 100,000 documents again).
    pub(crate) fn from_checked(
        compact: Bytes,
        name: Box<str>,
        unknown_fields: Vec<String>,
    ) -> InstanceDocument {
        InstanceDocument {
            compact,
            name,
            unknown_fields,
        }
    }

    /// The normalized newest document, `extended` included, as compact JSON.
    pub fn compact(&self) -> &Bytes {
        &self.compact
    }

    /// The whole document at the newest schema, `extended` included, as a tree.
    pub fn tree(&self) -> Node {
        let value: Value =
            serde_json::from_slice(&self.compact).expect("our own compact JSON parses");
        // A normalized document normalizes to itself: nothing can be missing or ill-typed.
        build(&value).expect("a normalized document is valid").0
    }

    /// `compute.name` (empty if unset).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Paths of fields the schema does not know (kept, served from the newest version on).
    pub fn unknown_fields(&self) -> &[String] {
        &self.unknown_fields
    }

    /// The whole document at the newest schema, `extended` included, as compact JSON.
    pub fn compact_json(&self) -> &[u8] {
        &self.compact
    }

    /// A string leaf by path of keys (array elements by index), read without a tree.
    pub fn string_at(&self, keys: &[&str]) -> Option<String> {
        crate::metadata::json_path::string_at(&self.compact, keys)
    }
}

fn build(instance: &Value) -> Result<(Node, Vec<String>), Vec<Problem>> {
    let mut builder = Builder {
        problems: Problems::new(),
        unknown_fields: Vec::new(),
        path: String::new(),
    };
    let root = builder.node(instance_schema(), Some(instance));
    builder.problems.into_result((root, builder.unknown_fields))
}

struct Builder {
    problems: Problems,
    unknown_fields: Vec<String>,
    /// The path of the value being checked, grown and cut back as the walk goes (one buffer:
    /// a path is made into a `String` only for a problem or an unknown field).
    path: String,
}

impl Builder {
    /// Checks `value` against `schema`; a value left out takes the schema's default.
    fn node(&mut self, schema: &SchemaNode, value: Option<&Value>) -> Node {
        // A pasted document never holds null, but a hand-written YAML `key:` does: treat
        // it as "left out".
        let value = value.filter(|v| !v.is_null());
        match schema {
            SchemaNode::Object(fields) => self.object(fields, value),
            SchemaNode::Array(element) => self.array(element, value),
            SchemaNode::Str(default) => self.string(default, value),
            SchemaNode::Bool(default) => match value {
                None => Node::Bool(*default),
                Some(Value::Bool(b)) => Node::Bool(*b),
                Some(other) => self.wrong_type("a boolean", other),
            },
        }
    }

    /// Runs `check` one level down: at member `key`, or at index `index` when `key` is `None`.
    fn below(
        &mut self,
        key: Option<&str>,
        index: usize,
        check: impl FnOnce(&mut Builder) -> Node,
    ) -> Node {
        use std::fmt::Write;
        let len = self.path.len();
        match key {
            Some(key) => {
                if len > 0 {
                    self.path.push('.');
                }
                self.path.push_str(key);
            }
            None => write!(self.path, "[{index}]").expect("writing to a String"),
        }
        let node = check(self);
        self.path.truncate(len);
        node
    }

    /// Every field of the schema (checked or defaulted), then the members it does not know,
    /// kept as written and served from the newest version only.
    fn object(&mut self, fields: &[SchemaField], value: Option<&Value>) -> Node {
        let empty = Map::new();
        let map = match value {
            None => &empty,
            Some(Value::Object(map)) => map,
            Some(other) => return self.wrong_type("an object", other),
        };
        let mut known = 0;
        let mut members: Vec<Member> = Vec::with_capacity(fields.len());
        for field in fields {
            let given = map.get(field.name);
            known += usize::from(given.is_some());
            let value = self.below(Some(field.name), 0, |b| b.node(&field.node, given));
            members.push(Member {
                key: field.name.into(),
                since: field.since,
                value,
            });
        }
        // Most objects hold only known fields: the scan for others is skipped then.
        if known < map.len() {
            for (key, value) in map
                .iter()
                .filter(|(key, _)| fields.iter().all(|field| field.name != key.as_str()))
            {
                self.unknown_fields.push(join(&self.path, key));
                members.push(Member {
                    key: key.as_str().into(),
                    since: ApiVersion::NEWEST,
                    value: from_json(value),
                });
            }
        }
        sort_members(&mut members, self.path.is_empty());
        Node::Object(members)
    }

    fn array(&mut self, element: &SchemaNode, value: Option<&Value>) -> Node {
        match value {
            None => Node::Array(Vec::new()),
            Some(Value::Array(items)) => Node::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.below(None, i, |b| b.node(element, Some(item))))
                    .collect(),
            ),
            Some(other) => self.wrong_type("an array", other),
        }
    }

    fn string(&mut self, default: &str, value: Option<&Value>) -> Node {
        match value {
            None => Node::String(default.into()),
            Some(Value::String(s)) => Node::String(s.as_str().into()),
            Some(other @ (Value::Number(_) | Value::Bool(_))) => {
                self.problems.push(
                    self.path.clone(),
                    format!(
                        "expected a string, found {}; IMDS serves every value as a string, \
                         so quote it (in YAML: \"{}\")",
                        type_name(other),
                        other
                    ),
                );
                Node::Null
            }
            Some(other) => self.wrong_type("a string", other),
        }
    }

    fn wrong_type(&mut self, expected: &str, found: &Value) -> Node {
        self.problems.push(
            self.path.clone(),
            format!("expected {expected}, found {}", type_name(found)),
        );
        Node::Null
    }
}

/// Alphabetical (ASCII) member order, as real IMDS serves it (§1.8); at the root, `extended`
/// comes after everything else.
fn sort_members(members: &mut [Member], is_root: bool) {
    members.sort_by(|a, b| {
        let a_last = is_root && &*a.key == EXTENDED;
        let b_last = is_root && &*b.key == EXTENDED;
        a_last.cmp(&b_last).then_with(|| a.key.cmp(&b.key))
    });
}

/// `tags` and `tagsList` carry the same content (§3.10). A definition that gives only one of
/// them gets the other derived, so the two never disagree by omission.
fn with_tags_filled_in(instance: &Value) -> Cow<'_, Value> {
    let Some(Value::Object(compute)) = instance.get("compute") else {
        return Cow::Borrowed(instance);
    };
    let has_tags = compute.get("tags").is_some_and(|t| !t.is_null());
    let has_list = compute.get("tagsList").is_some_and(|t| !t.is_null());
    if has_tags == has_list {
        // The usual case (a pasted document has both): no copy.
        return Cow::Borrowed(instance);
    }
    let mut instance = instance.clone();
    let Some(Value::Object(compute)) = instance.get_mut("compute") else {
        return Cow::Owned(instance);
    };
    match (has_tags, has_list) {
        (true, false) => {
            if let Some(Value::String(tags)) = compute.get("tags") {
                let list = tags_list_from_string(tags);
                compute.insert("tagsList".into(), list);
            }
        }
        (false, true) => {
            if let Some(Value::Array(list)) = compute.get("tagsList")
                && let Some(tags) = tags_string_from_list(list)
            {
                compute.insert("tags".into(), Value::String(tags));
            }
        }
        _ => {}
    }
    Cow::Owned(instance)
}

/// `k1:v1;k2:v2` → `[{"name":"k1","value":"v1"},…]`; a value may itself contain `:`.
fn tags_list_from_string(tags: &str) -> Value {
    let list = tags
        .split(';')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once(':').unwrap_or((pair, ""));
            serde_json::json!({ "name": name, "value": value })
        })
        .collect();
    Value::Array(list)
}

fn tags_string_from_list(list: &[Value]) -> Option<String> {
    let mut pairs = Vec::with_capacity(list.len());
    for tag in list {
        let name = tag.get("name")?.as_str()?;
        let value = tag.get("value")?.as_str()?;
        pairs.push(format!("{name}:{value}"));
    }
    Some(pairs.join(";"))
}

fn from_json(value: &Value) -> Node {
    match value {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(*b),
        Value::Number(n) => Node::Number(n.clone()),
        Value::String(s) => Node::String(s.as_str().into()),
        Value::Array(items) => Node::Array(items.iter().map(from_json).collect()),
        Value::Object(map) => {
            let mut members: Vec<Member> = map
                .iter()
                .map(|(key, value)| Member {
                    key: key.as_str().into(),
                    since: ApiVersion::NEWEST,
                    value: from_json(value),
                })
                .collect();
            sort_members(&mut members, false);
            Node::Object(members)
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn missing_fields_take_defaults_and_unknown_fields_are_kept() {
        let doc = InstanceDocument::from_json(&json!({
            "compute": {"name": "vm1", "futureField": "x"},
        }))
        .unwrap();
        assert_eq!(doc.string_at(&["compute", "name"]).as_deref(), Some("vm1"));
        assert_eq!(doc.name(), "vm1");
        assert_eq!(
            doc.string_at(&["compute", "provider"]).as_deref(),
            Some("Microsoft.Compute")
        );
        assert_eq!(doc.string_at(&["compute", "vmSize"]).as_deref(), Some(""));
        assert_eq!(
            doc.string_at(&["compute", "futureField"]).as_deref(),
            Some("x")
        );
        assert_eq!(doc.unknown_fields(), ["compute.futureField"]);
    }

    #[test]
    fn ill_typed_values_are_reported_with_their_paths() {
        let problems = InstanceDocument::from_json(&json!({
            "compute": {"platformFaultDomain": 0, "publicKeys": {"keyData": "x"},
                        "tagsList": [{"name": ["a"]}]},
            "network": "eth0",
        }))
        .unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "compute.platformFaultDomain",
                "compute.publicKeys",
                "compute.tagsList[0].name",
                "network"
            ]
        );
        assert!(
            problems[0]
                .message
                .contains("expected a string, found a number")
        );
    }

    #[test]
    fn tags_and_tags_list_are_derived_from_each_other() {
        let from_string =
            InstanceDocument::from_json(&json!({"compute": {"tags": "a:1;b:c:d"}})).unwrap();
        let from_list = InstanceDocument::from_json(&json!({"compute": {"tagsList": [
            {"name": "a", "value": "1"}, {"name": "b", "value": "c:d"}]}}))
        .unwrap();
        assert_eq!(from_string, from_list);
        assert_eq!(
            from_list.string_at(&["compute", "tags"]).as_deref(),
            Some("a:1;b:c:d")
        );
    }

    #[test]
    fn root_members_are_alphabetical_with_extended_last() {
        let doc = InstanceDocument::from_json(&json!({"zzz": "1", "aaa": "2"})).unwrap();
        let Node::Object(members) = doc.tree() else {
            panic!()
        };
        let keys: Vec<&str> = members.iter().map(|m| &*m.key).collect();
        assert_eq!(keys, ["aaa", "compute", "network", "zzz", "extended"]);
    }
}
