use serde_json::{Value, json};

use azimds::metadata::version::ApiVersion;

use crate::support::{demo_instance, fixture, start_demo, start_instance};

/// Real responses quoted in spec §3.6, pasted as VM definitions, come back byte for byte at
/// their own api-version: key set, key order, compactness and escaping all match Azure.
#[tokio::test]
async fn real_captures_are_reproduced_byte_for_byte() {
    let cases = [
        ("spec/instance-2017-04-02.json", "2017-04-02", false),
        ("spec/instance-2018-02-01.json", "2018-02-01", false), // WALinuxAgent's real fixture
        ("spec/instance-2019-02-01.json", "2019-02-01", false), // 2019 simulator capture
        ("spec/instance-2023-11-15-extended.json", "2023-11-15", true), // azure-init capture
    ];
    for (file, version, extended) in cases {
        let captured = fixture(file);
        let imds = start_instance(&serde_json::from_str(&captured).unwrap()).await;
        let query = if extended { "&extended=true" } else { "" };
        let reply = imds
            .get(&format!("/metadata/instance?api-version={version}{query}"))
            .await;
        assert_eq!(reply.status, 200, "{file}");
        assert_eq!(reply.text(), captured, "{file} at {version}");
    }
}

/// The 2017-03-01 preview schema (§3.11) renames the network section. Our definitions carry
/// no DNS servers, so the spec's example is compared with an empty `dnsservers`.
#[tokio::test]
async fn legacy_2017_03_01_network_names() {
    let mut expected: Value =
        serde_json::from_str(&fixture("spec/instance-2017-03-01.json")).unwrap();
    expected["network"]["interface"][0]["ipv4"]["subnet"][0]["dnsservers"] = json!([]);
    let definition = json!({
        "compute": expected["compute"].clone(),
        "network": {"interface": [{
            "ipv4": {"ipAddress": [{"privateIpAddress": "10.0.0.4", "publicIpAddress": "X.X.X.X"}],
                     "subnet": [{"address": "10.0.0.0", "prefix": "24"}]},
            "ipv6": {"ipAddress": []},
            "macAddress": "000D3A00FA89"}]}
    });
    let imds = start_instance(&definition).await;
    let reply = imds.get("/metadata/instance?api-version=2017-03-01").await;
    // The fixture's keys are alphabetical, so serde_json's sorted map reproduces its bytes.
    assert_eq!(reply.text(), serde_json::to_string(&expected).unwrap());
    let leaf = imds.get("/metadata/instance/network/interface/0/ipv4/ipaddress/0/publicip?api-version=2017-03-01&format=text").await;
    assert_eq!((leaf.status, leaf.text()), (200, "X.X.X.X"));
    let new_name = imds
        .get("/metadata/instance/network/interface/0/macAddress?api-version=2017-03-01&format=text")
        .await;
    assert_eq!(new_name.status, 404);
}

/// Spec §3.6's cumulative compute key counts, restated here independently of the schema table.
const COMPUTE_KEY_COUNTS: [(&str, usize); 21] = [
    ("2017-03-01", 11),
    ("2017-04-02", 11),
    ("2017-08-01", 15),
    ("2017-12-01", 17),
    ("2018-02-01", 17),
    ("2018-04-02", 19),
    ("2018-10-01", 21),
    ("2019-02-01", 22),
    ("2019-03-11", 23),
    ("2019-06-01", 24),
    ("2019-06-04", 25),
    ("2020-06-01", 27),
    ("2020-07-15", 28),
    ("2020-09-01", 29),
    ("2020-12-01", 31),
    ("2021-01-01", 32),
    ("2021-03-01", 34),
    ("2021-10-01", 35),
    ("2021-11-15", 38),
    ("2023-11-15", 39),
    ("2025-04-07", 40),
];

/// Every api-version of the demo VM against its golden file (tests/fixtures/instance/demo).
/// Bless deliberate changes with `UPDATE_GOLDEN=1 cargo test`; a diff in an old version's
/// golden is a compatibility break to explain, not to bless.
#[tokio::test]
async fn demo_vm_golden_per_api_version() {
    let imds = start_demo().await;
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut checked_counts = 0;
    for version in ApiVersion::all() {
        let reply = imds
            .get(&format!("/metadata/instance?api-version={version}"))
            .await;
        assert_eq!(reply.status, 200, "{version}");
        let path = format!(
            "{}/tests/fixtures/instance/demo/{version}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        if update {
            std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
            std::fs::write(&path, &reply.body).unwrap();
        }
        let golden = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (UPDATE_GOLDEN=1 creates it)"));
        assert_eq!(
            reply.text(),
            String::from_utf8(golden).unwrap(),
            "golden {version}"
        );

        let doc = reply.json();
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["compute", "network"], "{version}: top level");
        if let Some((_, count)) = COMPUTE_KEY_COUNTS
            .iter()
            .find(|(v, _)| *v == version.as_str())
        {
            assert_eq!(
                doc["compute"].as_object().unwrap().len(),
                *count,
                "{version}: compute key count"
            );
            checked_counts += 1;
        }
        assert_all_primitives_are_strings(&doc, version.as_str());
    }
    assert_eq!(checked_counts, COMPUTE_KEY_COUNTS.len());
}

fn assert_all_primitives_are_strings(value: &Value, at: &str) {
    match value {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| assert_all_primitives_are_strings(v, &format!("{at}/{k}"))),
        Value::Array(items) => items
            .iter()
            .for_each(|v| assert_all_primitives_are_strings(v, at)),
        Value::String(_) => {}
        other => panic!("{at} is {other}, not a string (§1.8)"),
    }
}

/// Keys in ASCII order at every level; `extended` last at the top (§1.8).
#[tokio::test]
async fn keys_are_alphabetical_with_extended_last() {
    let imds = start_demo().await;
    let reply = imds
        .get("/metadata/instance?api-version=2025-04-07&extended=true")
        .await;
    let text = reply.text();
    assert!(
        text.ends_with(r#"},"extended":{"compute":{"hasCustomData":false,"ppsType":"None"}}}"#),
        "{text}"
    );
    // serde_json without preserve_order sorts keys; equal bytes mean every object was sorted.
    let mut sorted: Value = reply.json();
    let extended = sorted.as_object_mut().unwrap().remove("extended").unwrap();
    let expected = format!(
        "{},\"extended\":{}}}",
        {
            let s = serde_json::to_string(&sorted).unwrap();
            s[..s.len() - 1].to_string()
        },
        serde_json::to_string(&extended).unwrap()
    );
    assert_eq!(text, expected);
}

#[tokio::test]
async fn extended_is_served_only_when_asked_and_from_2021_03_01() {
    let imds = start_demo().await;
    let plain = imds
        .get("/metadata/instance?api-version=2025-04-07")
        .await
        .json();
    assert!(plain.get("extended").is_none());
    let old = imds
        .get("/metadata/instance?api-version=2019-06-01&extended=true")
        .await
        .json();
    assert!(
        old.get("extended").is_none(),
        "below 2021-03-01 the parameter is ignored"
    );
    let off = imds
        .get("/metadata/instance?api-version=2021-08-01&extended=false")
        .await
        .json();
    assert!(off.get("extended").is_none());
    let on = imds.get("/metadata/instance/extended/compute/ppsType?api-version=2021-08-01&extended=true&format=text").await;
    assert_eq!((on.status, on.text()), (200, "None"));
    let bad = imds
        .get("/metadata/instance?api-version=2021-08-01&extended=yes")
        .await;
    assert_eq!(bad.status, 400);
}

/// Spec §3.7's sub-path examples, with values from the demo definition.
#[tokio::test]
async fn sub_path_examples() {
    let imds = start_demo().await;
    let demo = demo_instance();
    let compute = &demo["compute"];
    for (path, expected) in [
        (
            "compute/vmId?api-version=2021-02-01&format=text",
            compute["vmId"].as_str().unwrap(),
        ),
        (
            "compute/location?api-version=2021-01-01&format=text",
            compute["location"].as_str().unwrap(),
        ),
        (
            "compute/tags?api-version=2021-02-01&format=text",
            compute["tags"].as_str().unwrap(),
        ),
        (
            "compute/osProfile/adminUsername?api-version=2021-02-01&format=text",
            "azureuser",
        ),
        (
            "compute/userData?api-version=2021-01-01&format=text",
            compute["userData"].as_str().unwrap(),
        ),
        (
            "compute/platformFaultDomain?api-version=2021-02-01&format=text",
            "0",
        ),
        (
            "compute/azEnvironment?api-version=2021-02-01&format=text",
            "AzurePublicCloud",
        ),
        (
            "network/interface/0/ipv4/ipAddress/0/publicIpAddress?api-version=2021-02-01&format=text",
            "20.61.15.187",
        ),
        (
            "compute/publicKeys/0/keyData?api-version=2021-02-01&format=text",
            compute["publicKeys"][0]["keyData"].as_str().unwrap(),
        ),
        (
            "compute/physicalZone?api-version=2025-04-07&format=text",
            "westeurope-AZ01",
        ),
    ] {
        let reply = imds.get(&format!("/metadata/instance/{path}")).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{path}"
        );
        assert_eq!(
            reply.text(),
            expected,
            "{path}: raw value, no quotes, no newline"
        );
    }
    for (path, expected) in [
        (
            "compute/tagsList?api-version=2021-02-01",
            &compute["tagsList"],
        ),
        (
            "compute/publicKeys?api-version=2021-02-01",
            &compute["publicKeys"],
        ),
        (
            "network/interface/0?api-version=2021-02-01",
            &demo["network"]["interface"][0],
        ),
        (
            "compute/osProfile?api-version=2021-02-01&format=json",
            &compute["osProfile"],
        ),
    ] {
        let reply = imds.get(&format!("/metadata/instance/{path}")).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(&reply.json(), expected, "{path}");
    }
    // systemd-imdsd probes an IPv6 public address that never exists (§3.5).
    let ipv6 = imds.get("/metadata/instance/network/interface/0/ipv6/ipAddress/0/publicIpAddress?api-version=2025-04-07&format=text").await;
    assert_eq!(ipv6.status, 404);
}

#[tokio::test]
async fn fields_newer_than_the_version_are_not_found_through_sub_paths() {
    let imds = start_demo().await;
    for (path, introduced, before) in [
        ("compute/userData", "2021-01-01", "2020-12-01"),
        ("compute/physicalZone", "2024-03-15", "2023-11-15"),
        (
            "compute/storageProfile/resourceDisk/size",
            "2021-02-01",
            "2021-01-01",
        ),
        (
            "compute/storageProfile/imageReference/exactVersion",
            "2023-07-01",
            "2021-12-13",
        ),
        (
            "compute/osProfile/disablePasswordAuthentication",
            "2020-10-01",
            "2020-09-01",
        ),
        (
            "compute/storageProfile/dataDisks/0/isUltraDisk",
            "2021-05-01",
            "2021-03-01",
        ),
        ("compute/tags", "2017-08-01", "2017-04-02"),
    ] {
        let new = imds
            .get(&format!(
                "/metadata/instance/{path}?api-version={introduced}&format=text"
            ))
            .await;
        assert_eq!(new.status, 200, "{path} at {introduced}");
        let old = imds
            .get(&format!(
                "/metadata/instance/{path}?api-version={before}&format=text"
            ))
            .await;
        assert_eq!(old.status, 404, "{path} at {before}");
        assert_eq!(old.text(), r#"{"error":"Not found"}"#);
    }
}

#[tokio::test]
async fn text_format_on_nodes_lists_children() {
    let imds = start_demo().await;
    let os_profile = imds
        .get("/metadata/instance/compute/osProfile?api-version=2021-02-01&format=text")
        .await;
    assert_eq!(
        os_profile.text(),
        "adminUsername\ncomputerName\ndisablePasswordAuthentication"
    );
    let interfaces = imds
        .get("/metadata/instance/network/interface?api-version=2021-02-01&format=text")
        .await;
    assert_eq!(interfaces.text(), "0/");
    let root = imds
        .get("/metadata/instance?api-version=2021-02-01&format=text")
        .await;
    assert_eq!(root.text(), "compute/\nnetwork/");
    let empty = imds
        .get("/metadata/instance/compute/customData?api-version=2021-02-01&format=text")
        .await;
    assert_eq!(
        (empty.status, empty.body.len()),
        (200, 0),
        "empty values give an empty body"
    );
    assert_eq!(empty.header("content-length"), Some("0"));
}

#[tokio::test]
async fn leaves_need_format_text_and_trailing_slash_is_ignored() {
    let imds = start_demo().await;
    for target in [
        "/metadata/instance/compute/vmId?api-version=2021-02-01",
        "/metadata/instance/compute/vmId?api-version=2021-02-01&format=json",
    ] {
        let reply = imds.get(target).await;
        assert_eq!(reply.status, 400, "{target}");
        assert_eq!(
            reply.text(),
            r#"{"error":"Bad request. Querying a leaf node requires format=text"}"#
        );
    }
    let slash = imds
        .get("/metadata/instance/compute/?api-version=2021-02-01")
        .await;
    let plain = imds
        .get("/metadata/instance/compute?api-version=2021-02-01")
        .await;
    assert_eq!((slash.status, slash.body), (200, plain.body));
}

/// A field our table does not know (e.g. pasted from a newer Azure) is kept and served from
/// the newest api-version only.
#[tokio::test]
async fn unknown_definition_fields_are_served_from_the_newest_version_only() {
    let imds =
        start_instance(&json!({"compute": {"name": "vm1", "futureThing": {"a": "1"}}})).await;
    let newest = imds
        .get(&format!(
            "/metadata/instance/compute/futureThing?api-version={}",
            ApiVersion::NEWEST
        ))
        .await;
    assert_eq!((newest.status, newest.json()), (200, json!({"a": "1"})));
    let older = imds
        .get("/metadata/instance/compute/futureThing?api-version=2024-07-17")
        .await;
    assert_eq!(older.status, 404);
    let whole = imds
        .get("/metadata/instance/compute?api-version=2024-07-17")
        .await
        .json();
    assert!(whole.get("futureThing").is_none());
}

/// Definitions may leave fields out; they are served with empty or platform-default values,
/// never omitted (§1.8).
#[tokio::test]
async fn missing_definition_fields_take_defaults() {
    let imds = start_instance(&json!({"compute": {"name": "tiny"}})).await;
    let compute = imds
        .get("/metadata/instance/compute?api-version=2025-04-07")
        .await
        .json();
    assert_eq!(compute.as_object().unwrap().len(), 40);
    assert_eq!(compute["name"], "tiny");
    assert_eq!(compute["provider"], "Microsoft.Compute");
    assert_eq!(compute["vmSize"], "");
    assert_eq!(compute["publicKeys"], json!([]));
    assert_eq!(compute["storageProfile"]["dataDisks"], json!([]));
    let network = imds
        .get("/metadata/instance/network?api-version=2025-04-07")
        .await
        .json();
    assert_eq!(network, json!({"interface": []}));
}
