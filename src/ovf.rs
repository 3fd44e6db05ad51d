//! The provisioning media's document: a VM's `ovf-env.xml` (wireserver.md §2.2), written from its
//! definition. Host name, admin user, password policy and SSH keys come from the instance
//! document's `compute.osProfile` and `compute.publicKeys` (so IMDS and the OVF environment
//! never disagree); custom data, the password and `ProvisionGuestAgent` from the entry's
//! `provisioning` member.
//!
//! The layout is the one every client parses (§2.2 "Prefix trap"): `wa:`-prefixed sections and
//! `Version`s, the configuration set and `PlatformSettings` unprefixed in the default
//! namespace. Pure: no IO.

use std::fmt::Write;

use base64::Engine;

use crate::definition::VmDefinition;
use crate::xml::element;

/// Where an SSH key goes when the definition names no path: the admin user's own file, as
/// Azure's default.
fn default_key_path(user: &str) -> String {
    format!("/home/{user}/.ssh/authorized_keys")
}

/// The VM's `ovf-env.xml`.
pub fn ovf_env(vm: &VmDefinition) -> String {
    let compute = |key: &str| vm.instance.string_at(&["compute", key]).unwrap_or_default();
    let profile = |key: &str| {
        vm.instance
            .string_at(&["compute", "osProfile", key])
            .unwrap_or_default()
    };
    let host_name = match profile("computerName") {
        name if name.is_empty() => compute("name"),
        name => name,
    };
    let user = profile("adminUsername");
    // Azure's default is to disable password logins; only an explicit "false" enables them.
    let disable_password = profile("disablePasswordAuthentication") != "false";
    let provisioning = vm.provisioning.as_ref();
    let password = provisioning
        .and_then(|p| p.admin_password.as_ref())
        .map(|p| p.expose())
        .unwrap_or("");
    let custom_data = provisioning.and_then(|p| p.custom_data.as_deref());
    let provision_agent = provisioning.is_none_or(|p| p.provision_guest_agent);

    let mut out = String::with_capacity(2048);
    out.push_str(concat!(
        r#"<?xml version="1.0" encoding="utf-8"?>"#,
        "\n",
        r#"<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
        "\n <wa:ProvisioningSection><wa:Version>1.0</wa:Version>\n",
        r#"  <LinuxProvisioningConfigurationSet xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">"#,
        "\n   <ConfigurationSetType>LinuxProvisioningConfiguration</ConfigurationSetType>\n   ",
    ));
    element(&mut out, "HostName", &host_name);
    element(&mut out, "UserName", &user);
    // Empty (not absent) without a password: azure-init requires the element and rejects a
    // value; cloud-init and waagent read an empty one as "no password".
    element(&mut out, "UserPassword", password);
    out.push_str("\n   ");
    element(
        &mut out,
        "DisableSshPasswordAuthentication",
        if disable_password { "true" } else { "false" },
    );
    out.push_str("\n   <SSH><PublicKeys>");
    for key in public_keys(vm) {
        let path = if key.path.is_empty() {
            default_key_path(&user)
        } else {
            key.path
        };
        out.push_str("<PublicKey>");
        element(&mut out, "Fingerprint", &fingerprint(&key.data));
        element(&mut out, "Path", &path);
        element(&mut out, "Value", &key.data);
        out.push_str("</PublicKey>");
    }
    out.push_str("</PublicKeys></SSH>\n");
    if let Some(custom_data) = custom_data {
        out.push_str("   ");
        element(&mut out, "CustomData", custom_data);
        out.push('\n');
    }
    out.push_str(concat!(
        "  </LinuxProvisioningConfigurationSet></wa:ProvisioningSection>\n",
        " <wa:PlatformSettingsSection><wa:Version>1.0</wa:Version>\n",
        r#"  <PlatformSettings xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">"#,
        "\n   <KmsServerHostname>kms.core.windows.net</KmsServerHostname>\n   ",
    ));
    let _ = write!(
        out,
        "<ProvisionGuestAgent>{}</ProvisionGuestAgent>",
        if provision_agent { "true" } else { "false" }
    );
    out.push_str(concat!(
        r#"<GuestAgentPackageName i:nil="true"/>"#,
        "\n   <PreprovisionedVm>false</PreprovisionedVm><PreprovisionedVMType>None</PreprovisionedVMType>\n",
        "  </PlatformSettings></wa:PlatformSettingsSection>\n",
        "</Environment>\n",
    ));
    out
}

struct PublicKey {
    data: String,
    path: String,
}

/// `compute.publicKeys`, in order.
fn public_keys(vm: &VmDefinition) -> Vec<PublicKey> {
    (0..)
        .map_while(|i| {
            let index = i.to_string();
            let at = |key: &str| {
                vm.instance
                    .string_at(&["compute", "publicKeys", &index, key])
            };
            let data = at("keyData")?;
            Some(PublicKey {
                data,
                path: at("path").unwrap_or_default(),
            })
        })
        .filter(|key| !key.data.is_empty())
        .collect()
}

/// Upper-case hex SHA-1 of the key's blob (the base64 field of `type blob comment`), in the
/// shape of the certificate thumbprints real environments carry. Clients use `Value` when it
/// is there and read `Fingerprint` only to look up certificates, which azimds never serves
/// (§6.5), so this only has to be stable and well-formed.
fn fingerprint(key: &str) -> String {
    let blob = key.split_whitespace().nth(1).unwrap_or(key);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .unwrap_or_else(|_| key.as_bytes().to_vec());
    openssl::sha::sha1(&bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::definition::vm_from_json;

    fn vm(entry: serde_json::Value) -> VmDefinition {
        vm_from_json(&entry, "vm-1").unwrap()
    }

    #[test]
    fn the_document_carries_the_os_profile_keys_and_custom_data() {
        let vm = vm(json!({
            "instance": {"compute": {
                "name": "web_1",
                "osProfile": {"adminUsername": "ops", "computerName": "web-1",
                              "disablePasswordAuthentication": "true"},
                "publicKeys": [{"keyData": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx ops@x",
                                "path": "/home/ops/.ssh/authorized_keys"}],
            }},
            "provisioning": {"customData": "I2Nsb3VkLWNvbmZpZwo="},
        }));
        let xml = ovf_env(&vm);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let text = |name: &str| {
            doc.descendants()
                .find(|n| n.tag_name().name() == name)
                .and_then(|n| n.text())
                .map(str::to_string)
        };
        assert_eq!(text("HostName").as_deref(), Some("web-1"));
        assert_eq!(text("UserName").as_deref(), Some("ops"));
        assert_eq!(text("UserPassword"), None, "no password: an empty element");
        assert_eq!(
            text("DisableSshPasswordAuthentication").as_deref(),
            Some("true")
        );
        assert_eq!(
            text("Value").as_deref(),
            Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx ops@x")
        );
        assert_eq!(
            text("Path").as_deref(),
            Some("/home/ops/.ssh/authorized_keys")
        );
        assert_eq!(text("CustomData").as_deref(), Some("I2Nsb3VkLWNvbmZpZwo="));
        assert_eq!(text("ProvisionGuestAgent").as_deref(), Some("true"));
        // §2.2's prefix layout: sections and Versions prefixed, the set unprefixed.
        assert!(xml.contains("<wa:ProvisioningSection><wa:Version>1.0</wa:Version>"));
        assert!(xml.contains("<LinuxProvisioningConfigurationSet xmlns="));
        assert!(xml.contains("<PlatformSettings xmlns="));
        let wa = "http://schemas.microsoft.com/windowsazure";
        assert!(
            doc.descendants()
                .filter(|n| n.tag_name().name() == "HostName")
                .all(|n| n.tag_name().namespace() == Some(wa))
        );
    }

    #[test]
    fn text_is_escaped_and_host_name_falls_back_to_the_vm_name() {
        let vm = vm(json!({
            "instance": {"compute": {"name": "a<b", "osProfile": {"adminUsername": "u&v"}}},
            "provisioning": {"adminPassword": "p<w>&\"d", "provisionGuestAgent": false},
        }));
        let xml = ovf_env(&vm);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let text = |name: &str| {
            doc.descendants()
                .find(|n| n.tag_name().name() == name)
                .and_then(|n| n.text())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(text("HostName"), "a<b");
        assert_eq!(text("UserName"), "u&v");
        assert_eq!(text("UserPassword"), "p<w>&\"d");
        assert_eq!(text("ProvisionGuestAgent"), "false");
        assert_eq!(text("DisableSshPasswordAuthentication"), "true");
        assert!(!xml.contains("<CustomData>"));
    }
}
