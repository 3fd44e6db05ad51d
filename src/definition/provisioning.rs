//! A VM entry's `provisioning` member: what the provisioning media (ovf-env.xml, wireserver.md
//! §2.2) carries beyond the instance document. Host name, admin user, password policy and SSH
//! keys come from `instance.compute.osProfile` and `instance.compute.publicKeys`, as on Azure,
//! where both are views of the same VM model.

use base64::Engine;
use serde_json::{Map, Value};

use crate::problem::{Problem, Problems};

/// The `provisioning` member, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisioningDefinition {
    /// Base64 custom data (ARM's `osProfile.customData`): cloud-init's user data, waagent's
    /// `/var/lib/waagent/CustomData`.
    pub custom_data: Option<String>,
    /// The admin user's password, if the VM has one (ARM's `osProfile.adminPassword`).
    pub admin_password: Option<Password>,
    /// `PlatformSettings/ProvisionGuestAgent`: `false` makes waagent stop after reporting
    /// Ready (§2.2). Defaults to `true`.
    pub provision_guest_agent: bool,
}

/// A password: compared and cloned, never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// A password already checked (the store's checked form keeps them).
    pub(crate) fn checked(text: String) -> Password {
        Password(text)
    }

    /// The password itself, for the one place that writes it (the OVF document).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

const MEMBERS: [&str; 3] = ["customData", "adminPassword", "provisionGuestAgent"];
/// Azure's limit on custom data: 64 KiB once decoded.
const MAX_CUSTOM_DATA: usize = 64 * 1024;
/// Longest password cloud-init accepts from an OVF environment (§2.2), and Azure's for Linux.
const MAX_PASSWORD: usize = 72;

impl ProvisioningDefinition {
    /// Checks the member's value; paths are relative to it.
    pub fn from_json(value: &Value) -> Result<ProvisioningDefinition, Vec<Problem>> {
        let mut problems = Problems::new();
        let empty = Map::new();
        let object = match value {
            Value::Object(object) => object,
            _ => {
                problems.push("", "expected an object");
                &empty
            }
        };
        problems.unknown_members(
            "",
            object,
            &MEMBERS,
            &format!(
                "unknown member; provisioning has only {}",
                MEMBERS.join(", ")
            ),
        );
        let definition = ProvisioningDefinition {
            custom_data: custom_data(object, &mut problems),
            admin_password: admin_password(object, &mut problems),
            provision_guest_agent: provision_guest_agent(object, &mut problems),
        };
        problems.into_result(definition)
    }
}

fn member<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

/// `customData`: standard base64 of at most 64 KiB.
fn custom_data(object: &Map<String, Value>, problems: &mut Problems) -> Option<String> {
    let value = member(object, "customData")?;
    let Some(text) = value.as_str() else {
        problems.push("customData", "expected a base64 string");
        return None;
    };
    match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(bytes) if bytes.len() <= MAX_CUSTOM_DATA => Some(text.to_string()),
        Ok(bytes) => {
            problems.push(
                "customData",
                format!(
                    "{} bytes once decoded; Azure allows at most {MAX_CUSTOM_DATA}",
                    bytes.len()
                ),
            );
            None
        }
        Err(error) => {
            problems.push("customData", format!("not valid base64: {error}"));
            None
        }
    }
}

/// `adminPassword`: 1 to 72 characters.
fn admin_password(object: &Map<String, Value>, problems: &mut Problems) -> Option<Password> {
    let value = member(object, "adminPassword")?;
    match value.as_str() {
        Some(text) if !text.is_empty() && text.chars().count() <= MAX_PASSWORD => {
            Some(Password(text.to_string()))
        }
        Some(_) => {
            problems.push(
                "adminPassword",
                format!("expected 1 to {MAX_PASSWORD} characters"),
            );
            None
        }
        None => {
            problems.push("adminPassword", "expected a string");
            None
        }
    }
}

fn provision_guest_agent(object: &Map<String, Value>, problems: &mut Problems) -> bool {
    match member(object, "provisionGuestAgent") {
        None => true,
        Some(Value::Bool(value)) => *value,
        Some(_) => {
            problems.push("provisionGuestAgent", "expected true or false");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn members_are_checked_and_defaults_apply() {
        let checked = ProvisioningDefinition::from_json(&json!({})).unwrap();
        assert_eq!(checked.custom_data, None);
        assert!(checked.provision_guest_agent);
        let checked = ProvisioningDefinition::from_json(&json!({
            "customData": "I2Nsb3VkLWNvbmZpZwo=",
            "adminPassword": "s3cret!",
            "provisionGuestAgent": false,
        }))
        .unwrap();
        assert_eq!(checked.custom_data.as_deref(), Some("I2Nsb3VkLWNvbmZpZwo="));
        assert_eq!(checked.admin_password.unwrap().expose(), "s3cret!");
        assert!(!checked.provision_guest_agent);
    }

    #[test]
    fn every_problem_is_reported_at_its_member() {
        let problems = ProvisioningDefinition::from_json(&json!({
            "customData": "not base64!",
            "adminPassword": "x".repeat(73),
            "provisionGuestAgent": "yes",
            "hostName": "vm1",
        }))
        .unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "hostName",
                "customData",
                "adminPassword",
                "provisionGuestAgent"
            ]
        );
    }

    #[test]
    fn a_password_is_never_printed() {
        let checked =
            ProvisioningDefinition::from_json(&json!({"adminPassword": "hunter22"})).unwrap();
        assert!(!format!("{checked:?}").contains("hunter22"));
    }
}
