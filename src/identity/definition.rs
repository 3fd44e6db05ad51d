//! The `identities` member of a VM definition: which managed identities a VM has, checked and
//! completed into [`Identities`]. Pure: no IO, no clock.
//!
//! ```yaml
//! identities:
//!   tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47     # default: derived from the subscription
//!   systemAssigned: {clientId: …, objectId: …}          # omitted or null: no system identity
//!   userAssigned:
//!     - {clientId: …, objectId: …, resourceId: /subscriptions/…/userAssignedIdentities/name}
//! ```
//!
//! Every id left out is derived, not drawn at random: a GUID made from a SHA-256 of the VM's id
//! and the identity's role (see [`derived_guid`]). The same definition therefore gives the same
//! ids on every start, without any storage, and two VMs never share a derived id.

use serde_json::{Map, Value};

use crate::problem::{Problem, Problems, join};

/// A VM's managed identities, every id filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identities {
    /// Entra tenant of the identities (the `tid` claim and `/metadata/identity/info`).
    pub tenant_id: String,
    /// The system-assigned identity, when enabled.
    pub system: Option<Identity>,
    /// User-assigned identities, in definition order.
    pub user: Vec<Identity>,
}

/// One managed identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub kind: Kind,
    /// Application (client) id, lower-case GUID: `appid`, and `client_id` in responses.
    pub client_id: String,
    /// Object (principal) id, lower-case GUID: `oid` and `sub`.
    pub object_id: String,
    /// ARM resource id: the VM's for the system identity, the identity's own for a
    /// user-assigned one (`xms_mirid`, and what `msi_res_id` selects).
    pub resource_id: String,
}

/// System- or user-assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    System,
    User,
}

/// What the parser needs to know about the VM an `identities` member belongs to.
#[derive(Clone, Copy, Debug)]
pub struct VmContext<'a> {
    /// The VM's unique id (seed of derived ids).
    pub vm_id: &'a str,
    /// `compute.resourceId`; may be empty.
    pub resource_id: &'a str,
    /// `compute.subscriptionId`; may be empty.
    pub subscription_id: &'a str,
    /// `compute.resourceGroupName`; may be empty.
    pub resource_group: &'a str,
}

const MEMBERS: [&str; 3] = ["tenantId", "systemAssigned", "userAssigned"];
const SYSTEM_MEMBERS: [&str; 2] = ["clientId", "objectId"];
const USER_MEMBERS: [&str; 3] = ["clientId", "objectId", "resourceId"];

impl Identities {
    /// Checks an `identities` member. Problem paths are relative to it (`userAssigned[0].clientId`);
    /// the caller nests them under `identities`.
    pub fn from_json(value: &Value, vm: VmContext<'_>) -> Result<Identities, Vec<Problem>> {
        let Value::Object(map) = value else {
            return Err(vec![Problem::new("", "expected an object")]);
        };
        let mut problems = Problems::new();
        problems.unknown_members("", map, &MEMBERS, &unknown_member(&MEMBERS));
        let tenant_id = tenant_id(map, &vm, &mut problems);
        let system = system_assigned(map, &vm, &mut problems);
        let user = user_assigned(map, &vm, &mut problems);
        check_unique(system.as_ref(), &user, &mut problems);
        problems.into_result(Identities {
            tenant_id,
            system,
            user,
        })
    }

    /// Every identity, system-assigned first.
    pub fn all(&self) -> impl Iterator<Item = &Identity> {
        self.system.iter().chain(&self.user)
    }
}

/// A version-4-shaped GUID derived from SHA-256 of the `parts` (NUL-separated, so `["ab","c"]`
/// and `["a","bc"]` differ). Stable across restarts and machines; not a secret.
pub fn derived_guid(parts: &[&str]) -> String {
    let mut input = b"azimds identity".to_vec();
    for part in parts {
        input.push(0);
        input.extend_from_slice(part.as_bytes());
    }
    let digest = openssl::sha::sha256(&input);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Whether `id` looks like an ARM id of a user-assigned identity (segment names compared
/// without case, as ARM does).
fn is_user_identity_resource_id(id: &str) -> bool {
    let segments: Vec<&str> = id.split('/').collect();
    segments.len() == 9
        && segments[0].is_empty()
        && segments[1].eq_ignore_ascii_case("subscriptions")
        && segments[3].eq_ignore_ascii_case("resourceGroups")
        && segments[5].eq_ignore_ascii_case("providers")
        && segments[6].eq_ignore_ascii_case("Microsoft.ManagedIdentity")
        && segments[7].eq_ignore_ascii_case("userAssignedIdentities")
        && [2, 4, 8].iter().all(|&i| !segments[i].is_empty())
}

fn subscription<'a>(vm: &VmContext<'a>) -> &'a str {
    if vm.subscription_id.is_empty() {
        "00000000-0000-0000-0000-000000000000"
    } else {
        vm.subscription_id
    }
}

fn resource_group<'a>(vm: &VmContext<'a>) -> &'a str {
    if vm.resource_group.is_empty() {
        "azimds"
    } else {
        vm.resource_group
    }
}

fn vm_resource_id(vm: &VmContext<'_>) -> String {
    if vm.resource_id.is_empty() {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
            subscription(vm),
            resource_group(vm),
            vm.vm_id
        )
    } else {
        vm.resource_id.to_string()
    }
}

fn default_user_resource_id(vm: &VmContext<'_>, index: usize) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}-identity-{index}",
        subscription(vm),
        resource_group(vm),
        vm.vm_id
    )
}

/// `tenantId`, else derived from the subscription (one tenant per subscription, as on Azure).
fn tenant_id(map: &Map<String, Value>, vm: &VmContext<'_>, problems: &mut Problems) -> String {
    match map.get("tenantId") {
        None | Some(Value::Null) => derived_guid(&["tenant", subscription(vm)]),
        Some(value) => guid(value, "tenantId", problems).unwrap_or_default(),
    }
}

/// `systemAssigned`: an object (ids optional), or absent or `null` for none.
fn system_assigned(
    map: &Map<String, Value>,
    vm: &VmContext<'_>,
    problems: &mut Problems,
) -> Option<Identity> {
    match map.get("systemAssigned") {
        None | Some(Value::Null) => None,
        Some(Value::Object(system)) => Some(problems.within("systemAssigned", |problems| {
            system_identity(system, vm, problems)
        })),
        Some(_) => {
            problems.push(
                "systemAssigned",
                "expected an object (or null for no system-assigned identity)",
            );
            None
        }
    }
}

fn system_identity(
    system: &Map<String, Value>,
    vm: &VmContext<'_>,
    problems: &mut Problems,
) -> Identity {
    problems.unknown_members(
        "",
        system,
        &SYSTEM_MEMBERS,
        &unknown_member(&SYSTEM_MEMBERS),
    );
    Identity {
        kind: Kind::System,
        client_id: id_or_derived(system, "clientId", problems, || {
            derived_guid(&[vm.vm_id, "system", "clientId"])
        }),
        object_id: id_or_derived(system, "objectId", problems, || {
            derived_guid(&[vm.vm_id, "system", "objectId"])
        }),
        resource_id: vm_resource_id(vm),
    }
}

/// `userAssigned`: a list of objects (every member optional), in definition order.
fn user_assigned(
    map: &Map<String, Value>,
    vm: &VmContext<'_>,
    problems: &mut Problems,
) -> Vec<Identity> {
    let items = match map.get("userAssigned") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            problems.push("userAssigned", "expected a list");
            return Vec::new();
        }
    };
    let mut user = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("userAssigned[{i}]");
        let Value::Object(entry) = item else {
            problems.push(prefix, "expected an object");
            continue;
        };
        user.push(problems.within(&prefix, |problems| user_identity(entry, i, vm, problems)));
    }
    user
}

/// Entry `index` of `userAssigned`.
fn user_identity(
    entry: &Map<String, Value>,
    index: usize,
    vm: &VmContext<'_>,
    problems: &mut Problems,
) -> Identity {
    problems.unknown_members("", entry, &USER_MEMBERS, &unknown_member(&USER_MEMBERS));
    let resource_id = match entry.get("resourceId") {
        None | Some(Value::Null) => default_user_resource_id(vm, index),
        Some(Value::String(id)) if is_user_identity_resource_id(id) => id.clone(),
        Some(other) => {
            problems.push(
                "resourceId",
                format!(
                    "expected a user-assigned identity resource id like /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>, found {other}"
                ),
            );
            String::new()
        }
    };
    // Seeded by the resource id, not the position: reordering the list keeps ids.
    let seed = resource_id.to_ascii_lowercase();
    Identity {
        kind: Kind::User,
        client_id: id_or_derived(entry, "clientId", problems, || {
            derived_guid(&[vm.vm_id, "user", &seed, "clientId"])
        }),
        object_id: id_or_derived(entry, "objectId", problems, || {
            derived_guid(&[vm.vm_id, "user", &seed, "objectId"])
        }),
        resource_id,
    }
}

fn unknown_member(known: &[&str]) -> String {
    format!("unknown member; expected {}", known.join(", "))
}

/// A GUID-valued member, lower-cased; a problem when it is not a GUID string.
fn guid(value: &Value, path: &str, problems: &mut Problems) -> Option<String> {
    match value.as_str().map(uuid::Uuid::try_parse) {
        Some(Ok(id)) => Some(id.hyphenated().to_string()),
        _ => {
            problems.push(
                path,
                format!("expected a GUID string like 72f988bf-86f1-41af-91ab-2d7cd011db47, found {value}"),
            );
            None
        }
    }
}

/// The GUID at `key`, else `derive()` when it is left out.
fn id_or_derived(
    map: &Map<String, Value>,
    key: &str,
    problems: &mut Problems,
    derive: impl FnOnce() -> String,
) -> String {
    match map.get(key) {
        None | Some(Value::Null) => derive(),
        Some(value) => guid(value, key, problems).unwrap_or_default(),
    }
}

/// A selector must name one identity: client ids, object ids and resource ids are unique on a VM.
fn check_unique(system: Option<&Identity>, user: &[Identity], problems: &mut Problems) {
    let named: Vec<(String, &Identity)> = system
        .map(|system| ("systemAssigned".to_string(), system))
        .into_iter()
        .chain(
            user.iter()
                .enumerate()
                .map(|(i, identity)| (format!("userAssigned[{i}]"), identity)),
        )
        .collect();
    for (n, (name, identity)) in named.iter().enumerate() {
        for (earlier_name, earlier) in &named[..n] {
            for (key, mine, theirs) in [
                ("clientId", &identity.client_id, &earlier.client_id),
                ("objectId", &identity.object_id, &earlier.object_id),
            ] {
                if !mine.is_empty() && mine == theirs {
                    problems.push(
                        join(name, key),
                        format!("{mine} is already the {key} of {earlier_name}"),
                    );
                }
            }
            if identity.kind == Kind::User
                && earlier.kind == Kind::User
                && !identity.resource_id.is_empty()
                && identity
                    .resource_id
                    .eq_ignore_ascii_case(&earlier.resource_id)
            {
                problems.push(
                    join(name, "resourceId"),
                    format!("already the resourceId of {earlier_name}"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const VM: VmContext<'static> = VmContext {
        vm_id: "web-1",
        resource_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web-1",
        subscription_id: "6b1f6c3e-2f0a-4d8e-9c4b-7a1e5d3f9b20",
        resource_group: "rg",
    };
    const UAMI: &str = "/subscriptions/6b1f6c3e-2f0a-4d8e-9c4b-7a1e5d3f9b20/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app";

    #[test]
    fn explicit_ids_are_kept_and_lower_cased() {
        let ids = Identities::from_json(
            &json!({
                "tenantId": "72F988BF-86F1-41AF-91AB-2D7CD011DB47",
                "systemAssigned": {"clientId": "11111111-1111-4111-8111-111111111111", "objectId": "22222222-2222-4222-8222-222222222222"},
                "userAssigned": [{"clientId": "33333333-3333-4333-8333-333333333333", "objectId": "44444444-4444-4444-8444-444444444444", "resourceId": UAMI}]
            }),
            VM,
        )
        .unwrap();
        assert_eq!(ids.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
        let system = ids.system.as_ref().unwrap();
        assert_eq!(system.client_id, "11111111-1111-4111-8111-111111111111");
        assert_eq!(system.resource_id, VM.resource_id);
        assert_eq!(
            ids.user[0].object_id,
            "44444444-4444-4444-8444-444444444444"
        );
        assert_eq!(ids.user[0].resource_id, UAMI);
    }

    #[test]
    fn missing_ids_are_derived_stably_and_distinctly() {
        let def = json!({"systemAssigned": {}, "userAssigned": [{"resourceId": UAMI}, {}]});
        let a = Identities::from_json(&def, VM).unwrap();
        let b = Identities::from_json(&def, VM).unwrap();
        assert_eq!(a, b, "same definition, same ids");
        let other_vm = Identities::from_json(
            &def,
            VmContext {
                vm_id: "web-2",
                ..VM
            },
        )
        .unwrap();
        assert_ne!(a.system, other_vm.system);
        let mut ids: Vec<&str> = a
            .all()
            .flat_map(|i| [i.client_id.as_str(), i.object_id.as_str()])
            .collect();
        ids.push(&a.tenant_id);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 7, "all derived ids differ");
        assert!(ids.iter().all(|id| uuid::Uuid::try_parse(id).is_ok()));
        assert!(
            a.user[1]
                .resource_id
                .ends_with("/userAssignedIdentities/web-1-identity-1")
        );
        // Reordering user-assigned identities keeps each one's ids (seeded by resource id).
        let swapped =
            Identities::from_json(&json!({"userAssigned": [{}, {"resourceId": UAMI}]}), VM)
                .unwrap();
        assert_eq!(swapped.user[1].client_id, a.user[0].client_id);
        // The derivation itself is fixed: a change here would change every user's ids.
        assert_eq!(derived_guid(&["a"]), derived_guid(&["a"]));
        assert_ne!(derived_guid(&["ab", "c"]), derived_guid(&["a", "bc"]));
    }

    #[test]
    fn null_and_empty_mean_no_identity() {
        let ids = Identities::from_json(&json!({"systemAssigned": null}), VM).unwrap();
        assert!(ids.system.is_none() && ids.user.is_empty());
        assert!(
            Identities::from_json(&json!({}), VM)
                .unwrap()
                .all()
                .next()
                .is_none()
        );
    }

    #[test]
    fn problems_carry_json_paths() {
        let err = Identities::from_json(
            &json!({
                "tenantId": 5,
                "systemAssigned": {"clientId": "not-a-guid", "extra": 1},
                "userAssigned": [
                    {"clientId": "33333333-3333-4333-8333-333333333333", "resourceId": "/subscriptions/x"},
                    {"clientId": "33333333-3333-4333-8333-333333333333"},
                    "x"
                ],
                "other": true
            }),
            VM,
        )
        .unwrap_err();
        let paths: Vec<&str> = err.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "other",
                "tenantId",
                "systemAssigned.extra",
                "systemAssigned.clientId",
                "userAssigned[0].resourceId",
                "userAssigned[2]",
                "userAssigned[1].clientId",
            ],
            "{err:?}"
        );
        assert!(
            err[6]
                .message
                .contains("already the clientId of userAssigned[0]"),
            "{err:?}"
        );
        assert_eq!(
            Identities::from_json(&json!([]), VM).unwrap_err()[0].message,
            "expected an object"
        );
    }
}
