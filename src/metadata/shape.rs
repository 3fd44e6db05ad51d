//! Version shaping: the instance document as one api-version serves it (spec §2.4, §3.11).
//!
//! The rule is data (each member's `since`); the exceptions are code, here: the 2017-03-01
//! preview network names, and `extended` only on request.

use crate::metadata::document::InstanceDocument;
use crate::metadata::node::{Member, Node};
use crate::metadata::schema::EXTENDED;
use crate::metadata::version::ApiVersion;

/// The document for `version`, with the top-level `extended` object iff `extended` is asked
/// for (and the version has it).
pub fn instance(doc: &InstanceDocument, version: ApiVersion, extended: bool) -> Node {
    let Node::Object(members) = doc.tree() else {
        unreachable!("the instance root is an object by construction")
    };
    let members = members
        .iter()
        .filter(|m| m.since <= version && (extended || &*m.key != EXTENDED))
        .map(|m| Member {
            key: m.key.clone(),
            since: m.since,
            value: filter(&m.value, version),
        });
    let mut root: Vec<Member> = members.collect();
    if version == ApiVersion::V2017_03_01
        && let Some(network) = root.iter_mut().find(|m| &*m.key == "network")
    {
        network.value = legacy_network(&network.value);
    }
    Node::Object(root)
}

fn filter(node: &Node, version: ApiVersion) -> Node {
    match node {
        Node::Object(members) => Node::Object(
            members
                .iter()
                .filter(|m| m.since <= version)
                .map(|m| Member {
                    key: m.key.clone(),
                    since: m.since,
                    value: filter(&m.value, version),
                })
                .collect(),
        ),
        Node::Array(items) => Node::Array(items.iter().map(|item| filter(item, version)).collect()),
        leaf => leaf.clone(),
    }
}

/// The 2017-03-01 preview spelled the network section differently (§3.11): `ipaddress` /
/// `publicip` for addresses, `mac`, and subnets with `dnsservers`. Our definitions carry no DNS
/// servers, so that list is empty.
fn legacy_network(network: &Node) -> Node {
    map_object(network, |key, value| match key {
        "interface" => Some(("interface", map_array(value, legacy_interface))),
        _ => None,
    })
}

fn legacy_interface(interface: &Node) -> Node {
    map_object(interface, |key, value| match key {
        "macAddress" => Some(("mac", value.clone())),
        "ipv4" => Some(("ipv4", legacy_ip_family(value))),
        "ipv6" => Some(("ipv6", legacy_ip_family(value))),
        _ => None,
    })
}

fn legacy_ip_family(family: &Node) -> Node {
    map_object(family, |key, value| match key {
        "ipAddress" => Some(("ipaddress", map_array(value, legacy_address))),
        "subnet" => Some(("subnet", map_array(value, legacy_subnet))),
        _ => None,
    })
}

fn legacy_address(address: &Node) -> Node {
    map_object(address, |key, value| match key {
        "privateIpAddress" => Some(("ipaddress", value.clone())),
        "publicIpAddress" => Some(("publicip", value.clone())),
        _ => None,
    })
}

fn legacy_subnet(subnet: &Node) -> Node {
    let Node::Object(members) = subnet else {
        return subnet.clone();
    };
    let mut members = members.clone();
    members.push(Member {
        key: "dnsservers".into(),
        since: ApiVersion::V2017_03_01,
        value: Node::Array(Vec::new()),
    });
    members.sort_by(|a, b| a.key.cmp(&b.key));
    Node::Object(members)
}

/// Rebuilds an object, renaming/replacing the members `rename` answers for, keeping the rest,
/// and restoring alphabetical order.
fn map_object(node: &Node, rename: impl Fn(&str, &Node) -> Option<(&'static str, Node)>) -> Node {
    let Node::Object(members) = node else {
        return node.clone();
    };
    let mut members: Vec<Member> = members
        .iter()
        .map(|m| match rename(&m.key, &m.value) {
            Some((key, value)) => Member {
                key: key.into(),
                since: m.since,
                value,
            },
            None => m.clone(),
        })
        .collect();
    members.sort_by(|a, b| a.key.cmp(&b.key));
    Node::Object(members)
}

fn map_array(node: &Node, item: impl Fn(&Node) -> Node) -> Node {
    match node {
        Node::Array(items) => Node::Array(items.iter().map(item).collect()),
        other => other.clone(),
    }
}
