use std::collections::BTreeSet;
use std::net::SocketAddr;

use proptest::prelude::*;
use serde_json::Value;

use azimds::guest;
use azimds::metadata::document::InstanceDocument;
use azimds::metadata::render::Rendered;
use azimds::metadata::shape;
use azimds::metadata::version::ApiVersion;

use crate::support::{TestServer, demo_instance, start_demo};

fn leaves(value: &Value, at: String, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| leaves(v, format!("{at}/{k}"), out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| leaves(v, format!("{at}/{i}"), out)),
        _ => {
            out.insert(at);
        }
    }
}

fn leaf_set(doc: &InstanceDocument, version: ApiVersion, extended: bool) -> BTreeSet<String> {
    let rendered = Rendered::new(&shape::instance(doc, version, extended));
    let value: Value = serde_json::from_slice(&rendered.json(rendered.root())).unwrap();
    let mut out = BTreeSet::new();
    leaves(&value, String::new(), &mut out);
    out
}

fn arb_version() -> impl Strategy<Value = ApiVersion> {
    // 2017-03-01 is excluded: it renames the network section (§3.11) rather than adding to it.
    (1..ApiVersion::COUNT).prop_map(|i| ApiVersion::all().nth(i).unwrap())
}

/// A VM: the demo with some compute fields dropped and some values replaced.
fn arb_instance() -> impl Strategy<Value = Value> {
    let keys: Vec<String> = demo_instance()["compute"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    (
        proptest::sample::subsequence(keys, 0..10),
        "[a-zA-Z0-9 :;/_-]{0,12}",
    )
        .prop_map(|(drop, value)| {
            let mut instance = demo_instance();
            let compute = instance["compute"].as_object_mut().unwrap();
            for key in drop {
                compute.remove(&key);
            }
            compute.insert("name".into(), Value::String(value));
            instance
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Newer versions only add fields: every leaf of an older document is in a newer one.
    #[test]
    fn newer_versions_only_add_fields(instance in arb_instance(), a in arb_version(), b in arb_version(), extended: bool) {
        let doc = InstanceDocument::from_json(&instance).unwrap();
        let (old, new) = (a.min(b), a.max(b));
        let old_leaves = leaf_set(&doc, old, extended);
        let new_leaves = leaf_set(&doc, new, extended);
        prop_assert!(old_leaves.is_subset(&new_leaves), "{old} has leaves {new} lacks: {:?}", old_leaves.difference(&new_leaves).collect::<Vec<_>>());
    }

    /// No path, query or header value makes the guest plane panic or answer 5xx.
    #[test]
    fn arbitrary_requests_get_a_considered_answer(
        segments in proptest::collection::vec("[^/?#]{0,12}", 0..8),
        query in "[a-z=&%0-9A-F+-]{0,40}",
        version in proptest::option::of(0..ApiVersion::COUNT),
        metadata in proptest::option::of("[ -~]{0,6}"),
    ) {
        let (runtime, server) = demo_server();
        let path: String = segments
            .iter()
            .map(|s| format!("/{}", percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)))
            .collect();
        let version = version.map(|i| format!("api-version={}&", ApiVersion::all().nth(i).unwrap())).unwrap_or_default();
        let uri = format!("/metadata/instance{path}?{version}{query}");
        let Ok(mut request) = http::Request::get(&uri).body(http_body_util::Empty::<bytes::Bytes>::new()) else { return Ok(()) };
        if let Some(value) = metadata.and_then(|m| http::HeaderValue::from_str(&m).ok()) {
            request.headers_mut().insert("metadata", value);
        }
        let response = runtime.block_on(guest::respond(server.shared(), SocketAddr::from(([127, 0, 0, 1], 1)), request));
        prop_assert!([200u16, 400, 404].contains(&response.status().as_u16()), "{uri}: {}", response.status());
    }
}

/// One demo server for every case, started once on its own runtime: each case drives its
/// guest plane in-process through [`guest::respond`] (no sockets, so thousands of cases stay
/// fast).
fn demo_server() -> &'static (tokio::runtime::Runtime, TestServer) {
    static SERVER: std::sync::OnceLock<(tokio::runtime::Runtime, TestServer)> =
        std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(start_demo());
        (runtime, server)
    })
}
