//! The token endpoint's query (§4.2): `resource`, the identity selectors (`client_id`,
//! `object_id`, `msi_res_id`, `mi_res_id`, `msi-res-id`), `bypass_cache`, the api-version and
//! duplicate rules, and the identity selection, as `/metadata/identity/oauth2/token` checks
//! them before signing (`azimds::fuzzing::token_query`). The first byte picks the VM's
//! identities: none, system-assigned only, one user-assigned, or system plus two user-assigned.
//!
//! Asserted, beyond not panicking: a request either selects one of the VM's identities for a
//! non-empty resource, or is refused with a 4xx and a JSON `error` body (§5.3, §5.4); a
//! selector that selects names that identity (ids compare without case); with no selector,
//! the system identity wins, else the only user-assigned one.
#![no_main]

use std::sync::LazyLock;

use azimds::definition::{self, VmDefinition};
use azimds::fuzzing::token_query;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const USER: &str = "/subscriptions/8d3c2a51-7f0e-4b2c-9a61-3e5f4c7d2b10/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/";

static VMS: LazyLock<Vec<VmDefinition>> = LazyLock::new(|| {
    let instance = json!({"compute": {"name": "fuzz-vm", "subscriptionId": "8d3c2a51-7f0e-4b2c-9a61-3e5f4c7d2b10"}});
    [
        json!({"instance": instance}),
        json!({"instance": instance, "identities": {"systemAssigned": {}}}),
        json!({"instance": instance, "identities": {"userAssigned": [{"resourceId": format!("{USER}one")}]}}),
        json!({"instance": instance, "identities": {"systemAssigned": {}, "userAssigned": [
            {"resourceId": format!("{USER}one"), "clientId": "11111111-1111-4111-8111-111111111111"},
            {"resourceId": format!("{USER}two"), "objectId": "22222222-2222-4222-8222-222222222222"},
        ]}}),
    ]
    .iter()
    .map(|entry| definition::vm_from_json(entry, "fuzz-vm").expect("a valid VM"))
    .collect()
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, query)) = data.split_first() else {
        return;
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let identities = VMS[usize::from(selector) % VMS.len()].identities.as_ref();
    let Some(checked) = token_query(query, identities) else {
        return;
    };
    match checked {
        Ok(choice) => {
            assert!(!choice.resource.is_empty());
            let identities = identities.expect("an identity was selected, so the VM has one");
            let chosen = choice.identity;
            assert!(identities.system.as_ref() == Some(chosen) || identities.user.contains(chosen));
            // A name may be percent-encoded; only a query that names none for sure is checked.
            let named = query.contains('%')
                || [
                    "client_id",
                    "object_id",
                    "msi_res_id",
                    "mi_res_id",
                    "msi-res-id",
                ]
                .iter()
                .any(|name| query.contains(name));
            if !named {
                let expected = identities.system.as_ref().or(identities.user.first());
                assert_eq!(Some(chosen), expected, "no selector in {query:?}");
            }
        }
        Err(error) => {
            assert!(
                error.status().is_client_error(),
                "{error:?} answers {}",
                error.status()
            );
            let body: serde_json::Value =
                serde_json::from_slice(&error.body()).expect("error bodies are JSON");
            assert!(body["error"].is_string(), "{body}");
        }
    }
});
