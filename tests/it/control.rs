use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use azimds::snapshot::CallerMode;

use azimds::control;

use crate::support::{Reply, TestConfig, TestServer, Vms};

/// A whole server in-process; `call` is authenticated, `call_raw` sends no token.
struct TestHost {
    server: TestServer,
}

async fn start_host(mode: CallerMode) -> TestHost {
    let server = TestServer::start(TestConfig {
        callers: mode,
        vms: Vms::Empty,
        ..TestConfig::default()
    })
    .await;
    TestHost { server }
}

impl TestHost {
    fn guest(&self) -> &crate::support::TestImds {
        &self.server.guest
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.server.control.call(method, path, body, headers).await
    }

    fn token(&self) -> &str {
        self.server.control.token.as_deref().unwrap()
    }

    async fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.server
            .control
            .anonymous()
            .call_raw(method, path, body, headers)
            .await
    }
}

fn vm(name: &str, callers: &[&str]) -> Value {
    json!({"callers": callers, "instance": {"compute": {"name": name, "vmSize": "Standard_B2s"}}})
}

#[tokio::test]
async fn vm_lifecycle_through_every_route() {
    let host = start_host(CallerMode::SourceAddress).await;
    let created = host
        .call(
            "PUT",
            "/v1/vms/web-1",
            Some(&vm("web-1", &["10.1.0.4"])),
            &[],
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let etag1 = created.header("etag").unwrap().to_string();
    assert_eq!(
        created.json()["id"],
        "web-1",
        "the stored entry carries its id"
    );

    let got = host.call("GET", "/v1/vms/web-1", None, &[]).await;
    assert_eq!(
        (got.status, got.header("etag")),
        (200, Some(etag1.as_str()))
    );
    assert_eq!(got.json()["instance"]["compute"]["vmSize"], "Standard_B2s");

    let replaced = host
        .call(
            "PUT",
            "/v1/vms/web-1",
            Some(&vm("web-1b", &["10.1.0.4"])),
            &[],
        )
        .await;
    assert_eq!(replaced.status, 200);
    let etag2 = replaced.header("etag").unwrap().to_string();
    assert_ne!(etag1, etag2);

    let patched = host
        .call(
            "PATCH",
            "/v1/vms/web-1",
            Some(&json!({"instance": {"compute": {"vmSize": null, "zone": "2"}}})),
            &[("If-Match", &etag2)],
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    let compute = &patched.json()["instance"]["compute"];
    assert_eq!(
        (compute["zone"].as_str(), compute.get("vmSize")),
        (Some("2"), None),
        "RFC 7396: null removes"
    );

    host.call("PUT", "/v1/vms/db-1", Some(&vm("db-1", &["10.1.0.5"])), &[])
        .await;
    let list = host.call("GET", "/v1/vms", None, &[]).await.json();
    let ids: Vec<&str> = list["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["db-1", "web-1"]);
    assert_eq!(list["vms"][1]["callers"], json!(["10.1.0.4"]));
    assert_eq!(list["vms"][1]["origin"], "api");

    let status = host.call("GET", "/v1/status", None, &[]).await.json();
    assert_eq!(
        (status["vms"].as_u64(), status["callers"].as_str()),
        (Some(2), Some("source-address"))
    );

    assert_eq!(
        host.call("DELETE", "/v1/vms/db-1", None, &[]).await.status,
        204
    );
    assert_eq!(
        host.call("GET", "/v1/vms/db-1", None, &[]).await.status,
        404
    );
    assert_eq!(
        host.call("DELETE", "/v1/vms/db-1", None, &[]).await.status,
        404
    );
}

#[tokio::test]
async fn writes_are_visible_to_the_guest_plane_at_once() {
    let host = start_host(CallerMode::SourceAddress).await;
    let target = "/metadata/instance/compute/name?api-version=2021-02-01&format=text";
    host.call(
        "PUT",
        "/v1/vms/local",
        Some(&vm("first", &["127.0.0.1"])),
        &[],
    )
    .await;
    assert_eq!(host.guest().get(target).await.text(), "first");
    host.call(
        "PATCH",
        "/v1/vms/local",
        Some(&json!({"instance": {"compute": {"name": "second"}}})),
        &[],
    )
    .await;
    assert_eq!(host.guest().get(target).await.text(), "second");
    // Moving the VM to another address leaves 127.0.0.1 unknown: its connection is closed.
    host.call(
        "PATCH",
        "/v1/vms/local",
        Some(&json!({"callers": ["10.9.9.9"]})),
        &[],
    )
    .await;
    let refused = tokio::net::TcpStream::connect(host.guest().addr)
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::io::AsyncReadExt::read(&mut { refused }, &mut buf).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "no answer for an unknown caller"
    );
    assert_eq!(host.server.shared().unknown_callers(), 1);
}

#[tokio::test]
async fn authentication() {
    let host = start_host(CallerMode::Single).await;
    for path in ["/v1/vms", "/v1/status", "/v1/vms/x"] {
        let none = host.call_raw("GET", path, None, &[]).await;
        assert_eq!(none.status, 401, "{path}");
        assert_eq!(none.header("www-authenticate"), Some("Bearer"));
        assert_eq!(none.json()["error"]["code"], "unauthorized");
        let wrong = host
            .call_raw("GET", path, None, &[("Authorization", "Bearer nope")])
            .await;
        assert_eq!(wrong.status, 401, "{path}");
        let basic = host
            .call_raw(
                "GET",
                path,
                None,
                &[("Authorization", &format!("Basic {}", host.token()))],
            )
            .await;
        assert_eq!(basic.status, 401, "{path}");
    }
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(
            host.call_raw("GET", path, None, &[]).await.status,
            200,
            "{path} is public"
        );
    }
    host.server
        .running
        .control_state()
        .ready
        .store(false, Ordering::Release);
    assert_eq!(host.call_raw("GET", "/readyz", None, &[]).await.status, 503);
}

#[tokio::test]
async fn validation_errors_name_every_problem() {
    let host = start_host(CallerMode::SourceAddress).await;
    let bad = json!({"callers": ["not-an-ip"], "colour": "red",
                     "instance": {"compute": {"name": 7, "publicKeys": {}}}});
    let reply = host.call("PUT", "/v1/vms/bad", Some(&bad), &[]).await;
    assert_eq!(reply.status, 422);
    let body = reply.json();
    assert_eq!(body["error"]["code"], "invalid");
    let paths: Vec<&str> = body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "colour",
            "callers[0]",
            "instance.compute.name",
            "instance.compute.publicKeys"
        ]
    );

    let mismatch = host
        .call("PUT", "/v1/vms/a", Some(&json!({"id": "b"})), &[])
        .await;
    assert_eq!(
        (
            mismatch.status,
            mismatch.json()["error"]["problems"][0]["path"].as_str()
        ),
        (422, Some("id"))
    );
    let bad_id = host
        .call("PUT", "/v1/vms/.hidden", Some(&json!({})), &[])
        .await;
    assert_eq!(bad_id.status, 422);
    let malformed = host
        .call_raw(
            "PUT",
            "/v1/vms/a",
            Some("{nope".into()),
            &[("Authorization", &format!("Bearer {}", host.token()))],
        )
        .await;
    assert_eq!(
        (malformed.status, malformed.json()["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let huge = json!({"instance": {"compute": {"userData": "A".repeat(300_000)}}});
    let too_large = host.call("PUT", "/v1/vms/a", Some(&huge), &[]).await;
    assert_eq!(too_large.status, 413);
    assert_eq!(
        host.call("GET", "/v1/vms", None, &[]).await.json()["vms"],
        json!([]),
        "nothing was written"
    );
}

#[tokio::test]
async fn conditional_writes_and_conflicts() {
    let host = start_host(CallerMode::SourceAddress).await;
    let created = host
        .call(
            "PUT",
            "/v1/vms/a",
            Some(&vm("a", &["10.2.0.1"])),
            &[("If-None-Match", "*")],
        )
        .await;
    assert_eq!(created.status, 201);
    let etag = created.header("etag").unwrap().to_string();
    let again = host
        .call(
            "PUT",
            "/v1/vms/a",
            Some(&vm("a", &["10.2.0.1"])),
            &[("If-None-Match", "*")],
        )
        .await;
    assert_eq!(again.status, 412, "create-only on an existing VM");
    assert_eq!(
        again.header("etag"),
        Some(etag.as_str()),
        "412 tells the current ETag"
    );

    let first = host
        .call(
            "PATCH",
            "/v1/vms/a",
            Some(&json!({"instance": {"compute": {"zone": "1"}}})),
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(first.status, 200);
    let stale = host
        .call(
            "PATCH",
            "/v1/vms/a",
            Some(&json!({"instance": {"compute": {"zone": "3"}}})),
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(
        stale.status, 412,
        "a second operator with the old ETag cannot overwrite"
    );
    assert_eq!(
        host.call("GET", "/v1/vms/a", None, &[]).await.json()["instance"]["compute"]["zone"],
        "1"
    );
    let stale_delete = host
        .call("DELETE", "/v1/vms/a", None, &[("If-Match", &etag)])
        .await;
    assert_eq!(stale_delete.status, 412);
    let bad_header = host
        .call("DELETE", "/v1/vms/a", None, &[("If-Match", "W/\"1\"")])
        .await;
    assert_eq!(bad_header.status, 400);

    let taken = host
        .call("PUT", "/v1/vms/b", Some(&vm("b", &["10.2.0.1"])), &[])
        .await;
    assert_eq!(
        (taken.status, taken.json()["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    assert!(taken.text().contains("10.2.0.1 is already a caller of VM"));
    let missing = host
        .call("PATCH", "/v1/vms/zzz", Some(&json!({})), &[])
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn single_mode_refuses_a_second_vm() {
    let host = start_host(CallerMode::Single).await;
    assert_eq!(
        host.call("PUT", "/v1/vms/a", Some(&vm("a", &[])), &[])
            .await
            .status,
        201
    );
    let second = host
        .call("PUT", "/v1/vms/b", Some(&vm("b", &[])), &[])
        .await;
    assert_eq!(second.status, 409);
    assert!(second.text().contains("--callers source-address"));
}

/// The guest listener mounts no control route: every control path is a guest 404.
#[tokio::test]
async fn guest_listener_answers_404_for_every_control_path() {
    let host = start_host(CallerMode::Single).await;
    host.call("PUT", "/v1/vms/a", Some(&vm("a", &[])), &[])
        .await;
    let openapi: Value = serde_json::from_str(control::OPENAPI).unwrap();
    for path in openapi["paths"].as_object().unwrap().keys() {
        let path = path.replace("{id}", "a");
        for method in ["GET", "PUT", "PATCH", "DELETE"] {
            let reply = host
                .guest()
                .request(
                    method,
                    &path,
                    &[
                        ("Metadata", "true"),
                        ("Authorization", &format!("Bearer {}", host.token())),
                    ],
                )
                .await;
            assert_eq!(reply.status, 404, "{method} {path} on the guest listener");
            assert_eq!(reply.text(), r#"{"error":"Not found"}"#);
        }
    }
}

/// The checked-in OpenAPI document describes exactly the routes the router serves.
#[tokio::test]
async fn openapi_document_matches_the_router() {
    let host = start_host(CallerMode::Single).await;
    let served = host.call_raw("GET", "/openapi.json", None, &[]).await;
    assert_eq!(served.text(), control::OPENAPI);
    let doc = served.json();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    let documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    for (method, path) in &documented {
        let mut concrete = path
            .replace("{id}", "doc-check")
            .replace("{tenant}", "doc-check")
            .replace("{action}", "cancel");
        if concrete.ends_with("/wait") {
            concrete.push_str("?incarnation=0&timeout=1");
        }
        let reply = host.call(method, &concrete, Some(&json!({})), &[]).await;
        // Every answer but a document (ovf-env is XML, the attested certificates, /metrics) is JSON; a route's miss is JSON too.
        if reply.header("content-type") == Some("application/json") {
            assert_ne!(
                reply.json()["error"]["message"],
                "no such route",
                "{method} {path} is documented but not routed"
            );
        }
        assert_ne!(reply.status, 405, "{method} {path}");
    }
    assert_eq!(documented.len(), 39, "{documented:?}");
    let undocumented = host.call("POST", "/v1/vms", Some(&json!({})), &[]).await;
    assert_eq!(undocumented.status, 405);
}

/// Rotation: new tokens are signed by a new key; the old key stays published for the tokens
/// it already signed.
#[tokio::test]
async fn signing_keys_rotate_and_old_keys_stay_published() {
    let host = start_host(CallerMode::Single).await;
    let kids = |keys: &Value| -> Vec<String> {
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    let before = kids(
        &host
            .call("GET", "/common/discovery/keys", None, &[])
            .await
            .json(),
    );
    assert_eq!(before.len(), 1, "{before:?}");
    let rotated = host
        .call("POST", "/v1/identity/keys/rotate", None, &[])
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let new_kid = rotated.json()["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, before[0]);
    let after = kids(
        &host
            .call("GET", "/common/discovery/keys", None, &[])
            .await
            .json(),
    );
    assert!(
        after.contains(&before[0]) && after.contains(&new_kid),
        "{after:?}"
    );
    let unauthenticated = host
        .call_raw("POST", "/v1/identity/keys/rotate", None, &[])
        .await;
    assert_eq!(unauthenticated.status, 401);
}

/// `host` names the fleet host that serves a VM (docs/fleet.md); on the embedded store one
/// host serves every VM, so a VM assigned elsewhere is still served, and the member is kept
/// as written. A `host` that cannot be a host name is refused like any invalid entry (422),
/// naming the member.
#[tokio::test]
async fn a_vm_assigned_to_a_host_is_served_by_a_single_host_and_bad_names_are_refused() {
    let host = start_host(CallerMode::Single).await;
    let entry = json!({"host": "hv-07", "instance": {"compute": {"name": "assigned"}}});
    let put = host.call("PUT", "/v1/vms/a", Some(&entry), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(put.json()["host"], "hv-07");
    let name = host
        .guest()
        .get("/metadata/instance/compute/name?api-version=2021-02-01&format=text")
        .await;
    assert_eq!((name.status, name.text()), (200, "assigned"));
    for bad in [json!(""), json!("hv 07"), json!(7), json!("a/b")] {
        let entry = json!({"host": bad, "instance": {}});
        let refused = host.call("PUT", "/v1/vms/b", Some(&entry), &[]).await;
        assert_eq!(refused.status, 422, "{bad}: {}", refused.text());
        assert_eq!(refused.json()["error"]["problems"][0]["path"], "host");
    }
}
