//! Rendering a shaped document once into bytes, and indexing it so any sub-path is answered by
//! slicing those bytes (spec §1.7, §1.8).
//!
//! Compact JSON is self-similar: the bytes of a sub-tree are a contiguous slice of the whole
//! document, and so are most keys and string values (between their quotes, when JSON needs no
//! escapes for them). The index therefore stores ranges into the one buffer, not copies; only
//! escaped strings are kept apart. A node's `format=text` listing is built when asked for.

use std::ops::Range;

use bytes::Bytes;

use crate::metadata::node::Node;

/// One shaped document, rendered: compact JSON and an index over it.
#[derive(Debug)]
pub struct Rendered {
    json: Bytes,
    root: Indexed,
}

/// A node of the rendered document: where its JSON lies, and what it holds.
#[derive(Debug)]
pub struct Indexed {
    json: Range<u32>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A string, number, boolean or null; its `format=text` form.
    Leaf(Text),
    Object(Box<[(Text, Indexed)]>),
    Array(Box<[Indexed]>),
}

/// Text that is usually a slice of the JSON buffer (a key or string value needing no escapes),
/// else kept on its own.
#[derive(Debug)]
enum Text {
    InJson(Range<u32>),
    Owned(Box<str>),
}

impl Rendered {
    /// Renders `node` (compact JSON, members in the order given).
    pub fn new(node: &Node) -> Rendered {
        let mut json = Vec::with_capacity(4096);
        let root = index(&mut json, node);
        // Exactly the document's size: `Bytes::from` keeps a `Vec`'s whole capacity, and the
        // whole-document bytes of every fetched VM are kept (BENCHMARKS.md "Memory per VM").
        json.shrink_to_fit();
        Rendered {
            json: Bytes::from(json),
            root,
        }
    }

    /// The whole document.
    pub fn root(&self) -> &Indexed {
        &self.root
    }

    /// The whole document's bytes.
    pub fn bytes(&self) -> Bytes {
        self.json.clone()
    }

    /// Walks object keys and array indices (§1.7). Indices are canonical decimals (`0`, `12`;
    /// not `01` or `+1`); anything that does not name an existing element is `None`.
    pub fn find<S: AsRef<str>>(&self, segments: impl IntoIterator<Item = S>) -> Option<&Indexed> {
        let mut node = &self.root;
        for segment in segments {
            let segment = segment.as_ref();
            node = match &node.kind {
                Kind::Leaf(_) => return None,
                Kind::Object(members) => {
                    &members
                        .iter()
                        .find(|(key, _)| self.text_bytes(key) == segment.as_bytes())?
                        .1
                }
                Kind::Array(items) => items.get(array_index(segment)?)?,
            };
        }
        Some(node)
    }

    /// The node's compact JSON.
    pub fn json(&self, node: &Indexed) -> Bytes {
        self.json
            .slice(node.json.start as usize..node.json.end as usize)
    }

    /// The node's `format=text` rendering: a leaf's raw value (no quotes, no newline; `null` is
    /// empty), or a node's listing: its children one per line, nodes marked with a trailing
    /// `/`, no final newline. The listing form is \[UNCERTAIN\] in the spec; this function is the
    /// one place that decides it.
    pub fn text(&self, node: &Indexed) -> Bytes {
        let name = |child: &Indexed| if child.is_leaf() { "" } else { "/" };
        match &node.kind {
            Kind::Leaf(Text::InJson(range)) => {
                self.json.slice(range.start as usize..range.end as usize)
            }
            Kind::Leaf(Text::Owned(text)) => Bytes::copy_from_slice(text.as_bytes()),
            Kind::Object(members) => {
                let mut listing = Vec::new();
                for (i, (key, child)) in members.iter().enumerate() {
                    if i > 0 {
                        listing.push(b'\n');
                    }
                    listing.extend_from_slice(self.text_bytes(key));
                    listing.extend_from_slice(name(child).as_bytes());
                }
                Bytes::from(listing)
            }
            Kind::Array(items) => {
                let lines: Vec<String> = items
                    .iter()
                    .enumerate()
                    .map(|(i, child)| format!("{i}{}", name(child)))
                    .collect();
                Bytes::from(lines.join("\n"))
            }
        }
    }

    /// Bytes held by the JSON buffer (for memory accounting).
    pub fn size(&self) -> usize {
        self.json.len()
    }

    fn text_bytes<'a>(&'a self, text: &'a Text) -> &'a [u8] {
        match text {
            Text::InJson(range) => &self.json[range.start as usize..range.end as usize],
            Text::Owned(text) => text.as_bytes(),
        }
    }
}

impl Indexed {
    /// A leaf is a string, number, boolean or null: it has only a text form (§1.7).
    pub fn is_leaf(&self) -> bool {
        matches!(self.kind, Kind::Leaf(_))
    }
}

fn array_index(segment: &str) -> Option<usize> {
    let canonical = segment == "0" || (!segment.starts_with('0') && !segment.is_empty());
    if !canonical || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

/// Writes `node` as compact JSON into `json` and returns its index.
fn index(json: &mut Vec<u8>, node: &Node) -> Indexed {
    let start = json.len();
    let kind = match node {
        Node::Null => {
            json.extend_from_slice(b"null");
            Kind::Leaf(Text::Owned(Box::from("")))
        }
        Node::Bool(b) => {
            json.extend_from_slice(if *b { b"true" } else { b"false" });
            Kind::Leaf(Text::InJson(range(start, json.len())))
        }
        Node::Number(n) => {
            json.extend_from_slice(n.to_string().as_bytes());
            Kind::Leaf(Text::InJson(range(start, json.len())))
        }
        Node::String(s) => Kind::Leaf(string(json, s)),
        Node::Array(items) => {
            json.push(b'[');
            let mut indexed = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    json.push(b',');
                }
                indexed.push(index(json, item));
            }
            json.push(b']');
            Kind::Array(indexed.into_boxed_slice())
        }
        Node::Object(members) => {
            json.push(b'{');
            let mut indexed = Vec::with_capacity(members.len());
            for (i, member) in members.iter().enumerate() {
                if i > 0 {
                    json.push(b',');
                }
                let key = string(json, &member.key);
                json.push(b':');
                indexed.push((key, index(json, &member.value)));
            }
            json.push(b'}');
            Kind::Object(indexed.into_boxed_slice())
        }
    };
    Indexed {
        json: range(start, json.len()),
        kind,
    }
}

/// Writes a JSON string; its text is the bytes between the quotes when nothing was escaped.
fn string(json: &mut Vec<u8>, text: &str) -> Text {
    let start = json.len();
    serde_json::to_writer(&mut *json, text).expect("writing to a Vec cannot fail");
    if json.len() - start == text.len() + 2 {
        Text::InJson(range(start + 1, json.len() - 1))
    } else {
        Text::Owned(Box::from(text))
    }
}

fn range(start: usize, end: usize) -> Range<u32> {
    let start = u32::try_from(start).expect("documents are far below 4 GiB");
    let end = u32::try_from(end).expect("documents are far below 4 GiB");
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::node::Member;
    use crate::metadata::version::ApiVersion;

    fn obj(members: Vec<(&str, Node)>) -> Node {
        Node::Object(
            members
                .into_iter()
                .map(|(k, value)| Member {
                    key: k.into(),
                    since: ApiVersion::NEWEST,
                    value,
                })
                .collect(),
        )
    }

    fn s(v: &str) -> Node {
        Node::String(v.into())
    }

    #[test]
    fn sub_paths_slice_the_compact_document() {
        let doc = obj(vec![
            (
                "a",
                obj(vec![
                    ("b", s("x/y\"z")),
                    ("c", Node::Array(vec![s("1"), obj(vec![])])),
                ]),
            ),
            ("d", Node::Bool(false)),
        ]);
        let r = Rendered::new(&doc);
        assert_eq!(
            &r.json(r.root())[..],
            br#"{"a":{"b":"x/y\"z","c":["1",{}]},"d":false}"#
        );
        assert_eq!(&r.json(r.find(["a", "c"]).unwrap())[..], br#"["1",{}]"#);
        assert_eq!(&r.text(r.find(["a", "b"]).unwrap())[..], b"x/y\"z");
        assert_eq!(&r.text(r.find(["a"]).unwrap())[..], b"b\nc/");
        assert_eq!(&r.text(r.find(["a", "c"]).unwrap())[..], b"0\n1/");
        assert_eq!(&r.text(r.find(["d"]).unwrap())[..], b"false");
        assert!(r.find(["a", "c", "01"]).is_none());
        assert!(r.find(["a", "c", "2"]).is_none());
        assert!(r.find(["a", "c", "99999999999999999999999"]).is_none());
        assert!(r.find(["a", "b", "x"]).is_none());
        assert!(r.find(["A"]).is_none(), "keys match case-sensitively");
    }
}
