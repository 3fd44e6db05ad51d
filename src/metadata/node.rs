//! The document tree: a JSON value whose object members keep their serving order and remember
//! the api-version that introduced them. `document` builds it, `shape` filters it per version,
//! `render` indexes it; it depends on none of them.

use serde::ser::{Serialize, Serializer};

use crate::metadata::version::ApiVersion;

/// A JSON value whose objects keep their members in serving order.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Box<str>),
    Array(Vec<Node>),
    Object(Vec<Member>),
}

/// An object member. `since` is the first api-version that serves it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub key: Box<str>,
    /// Older api-versions do not serve this member (nor anything below it).
    pub since: ApiVersion,
    pub value: Node,
}

/// As JSON with members in their order (`serde_json::to_vec` gives the compact form).
impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => serializer.serialize_unit(),
            Node::Bool(b) => serializer.serialize_bool(*b),
            Node::Number(n) => n.serialize(serializer),
            Node::String(s) => serializer.serialize_str(s),
            Node::Array(items) => serializer.collect_seq(items),
            Node::Object(members) => {
                serializer.collect_map(members.iter().map(|m| (&*m.key, &m.value)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_members_in_their_order() {
        let member = |key: &str, value| Member {
            key: key.into(),
            since: ApiVersion::NEWEST,
            value,
        };
        let node = Node::Object(vec![
            member("z", Node::Array(vec![Node::Null, Node::Bool(true)])),
            member("a", Node::String("x\"y".into())),
            member("n", Node::Number(7.into())),
        ]);
        assert_eq!(
            serde_json::to_string(&node).unwrap(),
            r#"{"z":[null,true],"a":"x\"y","n":7}"#
        );
    }
}
