//! Rendering a shaped document once into bytes, and indexing it so any sub-path is answered by
//! slicing those bytes (spec §1.7, §1.8).
//!
//! Compact JSON is self-similar: the bytes of a sub-tree are a contiguous slice of the whole
//! document. So one buffer serves the full document and every sub-path, and a second buffer
//! holds every `format=text` rendering. Requests only walk the index and slice.

use std::ops::Range;

use bytes::Bytes;

use crate::metadata::document::Node;

/// One shaped document, rendered: JSON bytes, text bytes, and an index over both.
#[derive(Debug)]
pub struct Rendered {
    json: Bytes,
    text: Bytes,
    root: Indexed,
}

/// A node of the rendered document: where its JSON and its text rendering lie.
#[derive(Debug)]
pub struct Indexed {
    json: Range<u32>,
    text: Range<u32>,
    children: Children,
}

#[derive(Debug)]
enum Children {
    Leaf,
    Object(Box<[(Box<str>, Indexed)]>),
    Array(Box<[Indexed]>),
}

impl Rendered {
    /// Renders `node` (compact JSON, members in the order given).
    pub fn new(node: &Node) -> Rendered {
        let mut writer = Writer {
            json: Vec::with_capacity(4096),
            text: Vec::with_capacity(2048),
        };
        let root = writer.node(node);
        Rendered {
            json: Bytes::from(writer.json),
            text: Bytes::from(writer.text),
            root,
        }
    }

    /// The whole document.
    pub fn root(&self) -> &Indexed {
        &self.root
    }

    /// Walks object keys and array indices (§1.7). Indices are canonical decimals (`0`, `12`;
    /// not `01` or `+1`); anything that does not name an existing element is `None`.
    pub fn find<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Option<&Indexed> {
        let mut node = &self.root;
        for segment in segments {
            node = match &node.children {
                Children::Leaf => return None,
                Children::Object(members) => &members.iter().find(|(k, _)| **k == *segment)?.1,
                Children::Array(items) => items.get(array_index(segment)?)?,
            };
        }
        Some(node)
    }

    /// The node's compact JSON.
    pub fn json(&self, node: &Indexed) -> Bytes {
        self.json
            .slice(node.json.start as usize..node.json.end as usize)
    }

    /// The node's `format=text` rendering: a leaf's raw value, or a node's listing.
    pub fn text(&self, node: &Indexed) -> Bytes {
        self.text
            .slice(node.text.start as usize..node.text.end as usize)
    }

    /// Bytes held by this rendering (for memory accounting).
    pub fn size(&self) -> usize {
        self.json.len() + self.text.len()
    }
}

impl Indexed {
    /// A leaf is a string, number, boolean or null: it has only a text form (§1.7).
    pub fn is_leaf(&self) -> bool {
        matches!(self.children, Children::Leaf)
    }
}

fn array_index(segment: &str) -> Option<usize> {
    let canonical = segment == "0" || (!segment.starts_with('0') && !segment.is_empty());
    if !canonical || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

struct Writer {
    json: Vec<u8>,
    text: Vec<u8>,
}

impl Writer {
    fn node(&mut self, node: &Node) -> Indexed {
        let json_start = self.json.len();
        let children = match node {
            Node::Null => {
                self.json.extend_from_slice(b"null");
                Children::Leaf
            }
            Node::Bool(b) => {
                self.json
                    .extend_from_slice(if *b { b"true" } else { b"false" });
                Children::Leaf
            }
            Node::Number(n) => {
                self.json.extend_from_slice(n.to_string().as_bytes());
                Children::Leaf
            }
            Node::String(s) => {
                serde_json::to_writer(&mut self.json, &**s).expect("writing to a Vec cannot fail");
                Children::Leaf
            }
            Node::Array(items) => {
                self.json.push(b'[');
                let mut indexed = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.json.push(b',');
                    }
                    indexed.push(self.node(item));
                }
                self.json.push(b']');
                Children::Array(indexed.into_boxed_slice())
            }
            Node::Object(members) => {
                self.json.push(b'{');
                let mut indexed = Vec::with_capacity(members.len());
                for (i, member) in members.iter().enumerate() {
                    if i > 0 {
                        self.json.push(b',');
                    }
                    serde_json::to_writer(&mut self.json, &*member.key)
                        .expect("writing to a Vec cannot fail");
                    self.json.push(b':');
                    indexed.push((member.key.clone(), self.node(&member.value)));
                }
                self.json.push(b'}');
                Children::Object(indexed.into_boxed_slice())
            }
        };
        let json = range(json_start, self.json.len());
        let text_start = self.text.len();
        self.text_of(node, &children, json.clone());
        let text = range(text_start, self.text.len());
        Indexed {
            json,
            text,
            children,
        }
    }

    /// `format=text` (§1.7): a leaf's raw value (no quotes, no newline; `null` is empty); a
    /// node lists its children one per line, nodes marked with a trailing `/`, with no final
    /// newline. The listing form is [UNCERTAIN] in the spec; this function is the one place
    /// that decides it.
    fn text_of(&mut self, node: &Node, children: &Children, json: Range<u32>) {
        let mut lines: Vec<String> = Vec::new();
        match (node, children) {
            (Node::String(s), _) => self.text.extend_from_slice(s.as_bytes()),
            (Node::Null, _) => {}
            (Node::Bool(_) | Node::Number(_), _) => {
                let json = self.json[json.start as usize..json.end as usize].to_vec();
                self.text.extend_from_slice(&json);
            }
            (Node::Object(members), _) => {
                for m in members {
                    let suffix = if is_node(&m.value) { "/" } else { "" };
                    lines.push(format!("{}{suffix}", m.key));
                }
            }
            (Node::Array(items), _) => {
                for (i, item) in items.iter().enumerate() {
                    let suffix = if is_node(item) { "/" } else { "" };
                    lines.push(format!("{i}{suffix}"));
                }
            }
        }
        self.text.extend_from_slice(lines.join("\n").as_bytes());
    }
}

fn is_node(node: &Node) -> bool {
    matches!(node, Node::Object(_) | Node::Array(_))
}

fn range(start: usize, end: usize) -> Range<u32> {
    let start = u32::try_from(start).expect("documents are far below 4 GiB");
    let end = u32::try_from(end).expect("documents are far below 4 GiB");
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::document::Member;
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
