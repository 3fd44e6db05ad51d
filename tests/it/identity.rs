//! Managed identity over HTTP: `/metadata/identity/oauth2/token` and `/metadata/identity/info`
//! (spec §4, §5, §9.1, §9.3, §12.1). Error bodies are typed out from the spec, byte for byte;
//! tokens are verified the way a relying party would, with `jsonwebtoken` and nothing but the
//! published JWKS.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use azimds::clock::{Clock, ManualClock};
use azimds::definition;
use azimds::identity::Issuer;
use azimds::identity::keys::{FileKeyStore, KeyStore};
use azimds::identity::limits::IdentityLimits;

use crate::support::{TempDir, TestConfig, TestImds, TestServer, Vms};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const SYSTEM_CLIENT: &str = "5a1e8c3b-6f2d-4b7a-9e0c-1d2f3a4b5c6d";
const SYSTEM_OBJECT: &str = "6b2f9d4c-7a3e-4c8b-8f1d-2e3a4b5c6d7e";
const USER_CLIENT: &str = "7c3a0e5d-8b4f-4d9c-9a2e-3f4b5c6d7e8f";
const USER_OBJECT: &str = "8d4b1f6e-9c5a-4e0d-8b3f-4a5b6c7d8e9f";
const USER_RESOURCE: &str = "/subscriptions/6b1f6c3e-2f0a-4d8e-9c4b-7a1e5d3f9b20/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app-identity";
const VM_RESOURCE: &str = "/subscriptions/6b1f6c3e-2f0a-4d8e-9c4b-7a1e5d3f9b20/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web-1";

const TOKEN_PATH: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01";

// Spec §5.4 / §12.1, typed out.
const HEADER_MISSING: &str =
    r#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#;
const NOT_FOUND: &str = r#"{"error":"invalid_request","error_description":"Identity not found"}"#;
const MULTIPLE: &str = r#"{"error":"invalid_request","error_description":"Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"}"#;
const NO_RESOURCE: &str = r#"{"error":"invalid_request","error_description":"Required query variable 'resource' is missing"}"#;
const API_VERSION: &str = r#"{"error":"Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds","newest-versions":["2025-04-07","2024-07-17","2024-03-15"]}"#;

fn vm_yaml(identities: &str) -> String {
    format!(
        "vms:\n  - id: web-1\n    instance:\n      compute:\n        name: web-1\n        resourceId: {VM_RESOURCE}\n        subscriptionId: 6b1f6c3e-2f0a-4d8e-9c4b-7a1e5d3f9b20\n        resourceGroupName: rg\n    identities: {identities}\n"
    )
}

fn both() -> String {
    vm_yaml(&format!(
        "{{tenantId: {TENANT}, systemAssigned: {{clientId: {SYSTEM_CLIENT}, objectId: {SYSTEM_OBJECT}}}, userAssigned: [{{clientId: {USER_CLIENT}, objectId: {USER_OBJECT}, resourceId: {USER_RESOURCE}}}, {{}}]}}"
    ))
}

struct Server {
    imds: TestImds,
    clock: Arc<ManualClock>,
    issuer: Arc<Issuer>,
    server: TestServer,
}

async fn start(definitions: &str, limits: IdentityLimits, general_rate: u32) -> Server {
    let server = TestServer::start(TestConfig {
        vms: Vms::Text(definitions.to_string()),
        rate_limit: general_rate,
        identity_limits: limits,
        ..TestConfig::default()
    })
    .await;
    Server {
        imds: server.guest.clone(),
        clock: Arc::clone(&server.clock),
        issuer: Arc::clone(server.shared().issuer()),
        server,
    }
}

const UNLIMITED: IdentityLimits = IdentityLimits {
    per_second: 0,
    concurrent: 0,
};

/// Verifies `token` as a relying party does: signature against the JWKS, `aud`, `iss`, `exp`, `nbf`.
fn verify(jwks: &Value, token: &str, audience: &str) -> Value {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let set: JwkSet = serde_json::from_value(jwks.clone()).expect("a JWK set");
    let header = decode_header(token).expect("a JWT header");
    assert_eq!(header.alg, Algorithm::RS256);
    let kid = header.kid.expect("a kid header");
    let jwk = set.find(&kid).expect("the kid is published");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[format!("https://sts.windows.net/{TENANT}/")]);
    validation.validate_nbf = true;
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the token verifies")
        .claims
}

#[tokio::test]
async fn system_token_is_azure_shaped_and_verifies_with_the_jwks_alone() {
    let s = start(&both(), UNLIMITED, 5).await;
    let reply = s
        .imds
        .get(&format!(
            "{TOKEN_PATH}&resource=https%3A%2F%2Fmanagement.azure.com%2F"
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = reply.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "access_token",
            "client_id",
            "expires_in",
            "expires_on",
            "ext_expires_in",
            "not_before",
            "resource",
            "token_type"
        ]
    );
    // Compact, in exactly that order, every value a string.
    let text = reply.text();
    assert!(text.starts_with(r#"{"access_token":"eyJ"#), "{text}");
    assert!(body.as_object().unwrap().values().all(Value::is_string));
    assert_eq!(body["client_id"], SYSTEM_CLIENT);
    assert_eq!(body["resource"], "https://management.azure.com/");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], "86400");
    assert_eq!(body["ext_expires_in"], "86400");
    let now = azimds::identity::unix_seconds(s.clock.now());
    assert_eq!(body["expires_on"], (now + 86_400).to_string());
    assert_eq!(body["not_before"], (now - 300).to_string());

    let claims = verify(
        &s.issuer.jwks(),
        body["access_token"].as_str().unwrap(),
        "https://management.azure.com/",
    );
    assert_eq!(claims["oid"], SYSTEM_OBJECT);
    assert_eq!(claims["sub"], SYSTEM_OBJECT);
    assert_eq!(claims["appid"], SYSTEM_CLIENT);
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["xms_mirid"], VM_RESOURCE);
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(claims["ver"], "1.0");
    assert_eq!(claims["exp"].as_u64(), Some(now + 86_400));

    // The resource may also come unencoded (docs samples), and is echoed as given.
    let raw = s
        .imds
        .get(&format!("{TOKEN_PATH}&resource=https://vault.azure.net"))
        .await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.json()["resource"], "https://vault.azure.net");
}

#[tokio::test]
async fn selectors_pick_user_assigned_identities() {
    let s = start(&both(), UNLIMITED, 0).await;
    let encoded_res = USER_RESOURCE.replace('/', "%2F");
    for selector in [
        format!("client_id={USER_CLIENT}"),
        format!("object_id={}", USER_OBJECT.to_uppercase()),
        format!("msi_res_id={encoded_res}"),
        format!("mi_res_id={USER_RESOURCE}"),
    ] {
        let reply = s
            .imds
            .get(&format!(
                "{TOKEN_PATH}&resource=https://storage.azure.com/&{selector}"
            ))
            .await;
        assert_eq!(reply.status, 200, "{selector}: {}", reply.text());
        let body = reply.json();
        assert_eq!(body["client_id"], USER_CLIENT, "{selector}");
        let claims = verify(
            &s.issuer.jwks(),
            body["access_token"].as_str().unwrap(),
            "https://storage.azure.com/",
        );
        assert_eq!(claims["oid"], USER_OBJECT);
        assert_eq!(claims["xms_mirid"], USER_RESOURCE);
    }
    let unknown = s
        .imds
        .get(&format!(
            "{TOKEN_PATH}&resource=r&client_id=00000000-0000-4000-8000-000000000000"
        ))
        .await;
    assert_eq!((unknown.status, unknown.text()), (400, NOT_FOUND));
    assert_eq!(unknown.body.len(), 68);
    let two = s
        .imds
        .get(&format!(
            "{TOKEN_PATH}&resource=r&client_id={USER_CLIENT}&object_id={USER_OBJECT}"
        ))
        .await;
    assert_eq!(two.status, 400);
    assert_eq!(two.json()["error"], "invalid_request");
}

#[tokio::test]
async fn default_selection_rules() {
    let only_user = start(
        &vm_yaml(&format!("{{userAssigned: [{{clientId: {USER_CLIENT}}}]}}")),
        UNLIMITED,
        0,
    )
    .await;
    let reply = only_user
        .imds
        .get(&format!("{TOKEN_PATH}&resource=r"))
        .await;
    assert_eq!(
        reply.json()["client_id"],
        USER_CLIENT,
        "the single user-assigned identity"
    );

    let two_users = start(&vm_yaml("{userAssigned: [{}, {}]}"), UNLIMITED, 0).await;
    let reply = two_users
        .imds
        .get(&format!("{TOKEN_PATH}&resource=r"))
        .await;
    assert_eq!((reply.status, reply.text()), (400, MULTIPLE));
    assert_eq!(reply.body.len(), 168);

    for none in ["{}", "{systemAssigned: null}"] {
        let s = start(&vm_yaml(none), UNLIMITED, 0).await;
        let reply = s.imds.get(&format!("{TOKEN_PATH}&resource=r")).await;
        assert_eq!((reply.status, reply.text()), (400, NOT_FOUND), "{none}");
        let info = s
            .imds
            .get("/metadata/identity/info?api-version=2018-02-01")
            .await;
        assert_eq!((info.status, info.text()), (400, NOT_FOUND));
    }
}

#[tokio::test]
async fn request_errors_are_byte_exact() {
    let s = start(&both(), UNLIMITED, 0).await;
    // Header-less probes (§5.6), with and without a query string: a 400, 88 bytes.
    for target in [
        "/metadata/identity/oauth2/token",
        &format!("{TOKEN_PATH}&resource=r"),
    ] {
        let reply = s.imds.request("GET", target, &[]).await;
        assert_eq!(
            (reply.status, reply.text()),
            (400, HEADER_MISSING),
            "{target}"
        );
        assert_eq!(reply.header("content-length"), Some("88"));
        assert!(reply.header("server").unwrap().contains("IMDS"));
        let wrong = s
            .imds
            .request("GET", target, &[("Metadata", "false")])
            .await;
        assert_eq!(wrong.text(), HEADER_MISSING);
    }
    let reply = s.imds.get(TOKEN_PATH).await;
    assert_eq!((reply.status, reply.text()), (400, NO_RESOURCE));
    for version in ["", "&api-version=2017-12-01", "&api-version=latest"] {
        let reply = s
            .imds
            .get(&format!(
                "/metadata/identity/oauth2/token?resource=r{version}"
            ))
            .await;
        assert_eq!(
            (reply.status, reply.text()),
            (400, API_VERSION),
            "{version:?}"
        );
    }
    for newer in ["2019-08-01", "2021-02-01", "2025-04-07"] {
        let reply = s
            .imds
            .get(&format!(
                "/metadata/identity/oauth2/token?api-version={newer}&resource=r"
            ))
            .await;
        assert_eq!(reply.status, 200, "{newer}");
    }
    let bad_bypass = s
        .imds
        .get(&format!("{TOKEN_PATH}&resource=r&bypass_cache=yes"))
        .await;
    assert_eq!(bad_bypass.status, 400);
    let forwarded = s
        .imds
        .request(
            "GET",
            &format!("{TOKEN_PATH}&resource=r"),
            &[("Metadata", "true"), ("X-Forwarded-For", "1.2.3.4")],
        )
        .await;
    assert_eq!(
        (forwarded.status, forwarded.json()["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let post = s
        .imds
        .request(
            "POST",
            &format!("{TOKEN_PATH}&resource=r"),
            &[("Metadata", "true")],
        )
        .await;
    assert_eq!(post.status, 405);
}

#[tokio::test]
async fn info_and_msi_v2_paths() {
    let s = start(&both(), UNLIMITED, 0).await;
    let info = s
        .imds
        .get("/metadata/identity/info?api-version=2018-02-01")
        .await;
    assert_eq!(
        (info.status, info.text()),
        (200, format!(r#"{{"tenantId":"{TENANT}"}}"#).as_str())
    );
    let no_header = s
        .imds
        .request("GET", "/metadata/identity/info?api-version=2018-02-01", &[])
        .await;
    assert_eq!(no_header.text(), HEADER_MISSING);
    // §9.3: a v1-only host answers 404 on the MSI v2 credential paths.
    let v2 = s
        .imds
        .get("/metadata/identity/getplatformmetadata?cred-api-version=2.0")
        .await;
    assert_eq!(v2.status, 404);
    let issue = s
        .imds
        .request(
            "POST",
            "/metadata/identity/issuecredential?cred-api-version=2.0",
            &[("Metadata", "true")],
        )
        .await;
    assert_eq!(issue.status, 404);
}

#[tokio::test]
async fn cached_tokens_count_down_and_bypass_cache_signs_anew() {
    let s = start(&both(), UNLIMITED, 0).await;
    let target = format!("{TOKEN_PATH}&resource=https%3A%2F%2Fmanagement.azure.com%2F");
    let first = s.imds.get(&target).await.json();
    s.clock.advance(Duration::from_secs(83));
    let second = s.imds.get(&target).await.json();
    assert_eq!(
        second["access_token"], first["access_token"],
        "served from cache"
    );
    assert_eq!(
        second["expires_in"], "86317",
        "counts down (spec §4.3's real capture)"
    );
    assert_eq!(second["ext_expires_in"], "86400");
    assert_eq!(second["expires_on"], first["expires_on"]);

    let bypassed = s
        .imds
        .get(&format!("{target}&bypass_cache=true"))
        .await
        .json();
    assert_ne!(bypassed["access_token"], first["access_token"]);
    assert_eq!(bypassed["expires_in"], "86400");
    let after = s.imds.get(&target).await.json();
    assert_eq!(
        after["access_token"], bypassed["access_token"],
        "the new token is cached"
    );

    // Within five minutes of expiry the cache refreshes.
    s.clock.advance(Duration::from_secs(86_400 - 299));
    let refreshed = s.imds.get(&target).await.json();
    assert_ne!(refreshed["access_token"], bypassed["access_token"]);
    assert_eq!(refreshed["expires_in"], "86400");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_signature() {
    let s = start(
        &both(),
        IdentityLimits {
            per_second: 0,
            concurrent: 5,
        },
        0,
    )
    .await;
    let target = format!("{TOKEN_PATH}&resource=https://single-flight.example/");
    let replies = futures_join(&s.imds, &target, 5).await;
    let tokens: Vec<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["access_token"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "one token for all five"
    );
}

async fn futures_join(imds: &TestImds, target: &str, n: usize) -> Vec<crate::support::Reply> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let imds = imds.clone();
        let target = target.to_string();
        set.spawn(async move { imds.get(&target).await });
    }
    set.join_all().await
}

#[tokio::test]
async fn identity_requests_have_their_own_limit() {
    // General limit 5/s; identity 20/s: identity requests are not counted against the former.
    let s = start(&both(), IdentityLimits::default(), 5).await;
    let target = format!("{TOKEN_PATH}&resource=r");
    let mut statuses = Vec::new();
    for _ in 0..21 {
        statuses.push(s.imds.get(&target).await.status);
    }
    assert_eq!(statuses[..20], [200; 20]);
    let throttled = s.imds.get(&target).await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.json()["error"], "too_many_requests");
    let instance = s
        .imds
        .get("/metadata/instance/compute/name?api-version=2021-02-01&format=text")
        .await;
    assert_eq!(
        (instance.status, instance.text()),
        (200, "web-1"),
        "the general budget is untouched"
    );
}

#[tokio::test]
async fn keys_persist_across_restarts_and_rotation_keeps_old_tokens_verifiable() {
    let temp = TempDir::new("keys");
    let dir = temp.path();
    let now = SystemTime::now();
    let open = || {
        Issuer::open(
            Arc::new(FileKeyStore::open(dir.join("keys")).unwrap()),
            86_400,
            now,
        )
        .unwrap()
    };
    let first = open();
    let s = start(&both(), UNLIMITED, 0).await;
    let ids = s.server.shared().snapshot();
    let identities = ids
        .vm("web-1")
        .unwrap()
        .definition()
        .identities
        .clone()
        .unwrap();
    let system = identities.system.as_ref().unwrap();
    let token = first
        .token("web-1", TENANT, system, "api://app", now, false)
        .await
        .unwrap();
    drop(first);

    let restarted = open();
    let claims = verify(&restarted.jwks(), &token.access_token, "api://app");
    assert_eq!(claims["appid"], SYSTEM_CLIENT);
    let old_kid = restarted.current_kid();
    let new_kid = restarted.rotate(now).unwrap();
    assert_ne!(old_kid, new_kid);
    verify(&restarted.jwks(), &token.access_token, "api://app");
    let fresh = restarted
        .token("web-1", TENANT, system, "api://other", now, false)
        .await
        .unwrap();
    verify(&open().jwks(), &fresh.access_token, "api://other");
    let store = FileKeyStore::open(dir.join("keys")).unwrap();
    assert_eq!(store.load().unwrap().len(), 2);
}

#[test]
fn definition_problems_name_the_identity_path() {
    let yaml = "vms:\n  - instance: {compute: {name: web}}\n    identities:\n      userAssigned:\n        - {clientId: nope}\n      systemAssigned: 3\n";
    let text = definition::parse(yaml, None, "vms.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains(
            "vms.yaml: VM 0 (web): vms[0].identities.userAssigned[0].clientId: expected a GUID"
        ),
        "{text}"
    );
    assert!(
        text.contains("vms[0].identities.systemAssigned: expected an object"),
        "{text}"
    );
}

/// A relying party's whole path: discovery document and keys from the control listener
/// (unauthenticated), a token from the guest listener, verification with those keys only.
#[tokio::test]
async fn relying_party_discovers_keys_on_the_control_listener() {
    let s = start(&both(), UNLIMITED, 0).await;
    // The raw client on the control listener, without a token.
    let control = TestImds {
        addr: s.server.control.addr,
    };
    let discovery = control
        .request(
            "GET",
            &format!("/{TENANT}/.well-known/openid-configuration"),
            &[],
        )
        .await;
    assert_eq!(discovery.status, 200, "{}", discovery.text());
    let discovery = discovery.json();
    assert_eq!(
        discovery["issuer"],
        format!("https://sts.windows.net/{TENANT}/")
    );
    // The test client sends `Host: 169.254.169.254`; the document uses the Host it was asked on.
    assert_eq!(
        discovery["jwks_uri"],
        "http://169.254.169.254/common/discovery/keys"
    );
    let keys = control.request("GET", "/common/discovery/keys", &[]).await;
    assert_eq!(keys.status, 200);
    let jwks = keys.json();
    for key in jwks["keys"].as_array().unwrap() {
        let members: Vec<&String> = key.as_object().unwrap().keys().collect();
        assert_eq!(
            members,
            ["e", "kid", "kty", "n", "use", "x5c", "x5t"],
            "public members only"
        );
    }

    let token = s
        .imds
        .get(&format!("{TOKEN_PATH}&resource=api://my-service"))
        .await
        .json();
    let claims = verify(
        &jwks,
        token["access_token"].as_str().unwrap(),
        "api://my-service",
    );
    assert_eq!(claims["oid"], SYSTEM_OBJECT);
}
