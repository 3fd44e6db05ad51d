//! A checked VM in bytes: what the store keeps beside each entry as written, so a restart
//! serves 100,000 VMs without checking 100,000 documents again.
//!
//! Checking is deterministic, so the checked form is a cache of `vm_from_json(entry)`. It is
//! only as good as the checker that made it: each form is stored with the [`fingerprint`] of
//! this build's checker (the crate version, [`FORM_VERSION`], and the instance field table),
//! and a form made by another checker is ignored and the entry checked again.
//!
//! The encoding is private to this file: a version byte, then each member in order, strings
//! and byte strings as a `u32` length and the bytes, little-endian throughout.

use std::net::IpAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::Value;

use crate::definition::VmDefinition;
use crate::definition::provisioning::{Password, ProvisioningDefinition};
use crate::identity::definition::{Identities, Identity, Kind};
use crate::metadata::document::InstanceDocument;
use crate::metadata::loadbalancer::{Outage, Served};
use crate::metadata::schema;

/// Bump whenever checking a VM may give a different result for the same entry (a new rule, a
/// new default, a changed derivation), so forms checked by the old rules are not reused.
pub const FORM_VERSION: u32 = 4;

const ENCODING: u8 = 1;

/// Identifies this build's checker: a form stored with another fingerprint is checked again.
pub fn fingerprint() -> u64 {
    static FINGERPRINT: OnceLock<u64> = OnceLock::new();
    *FINGERPRINT.get_or_init(|| {
        let text = format!(
            "{} {FORM_VERSION} {}",
            env!("CARGO_PKG_VERSION"),
            schema::table_text()
        );
        // FNV-1a: stable across builds and machines (std's hasher is randomly keyed).
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        hash.max(1) // 0 means "not checked" in the store
    })
}

/// `vm` as bytes for [`decode`].
pub fn encode(vm: &VmDefinition) -> Vec<u8> {
    // Every member, named: adding one to VmDefinition fails to compile here until it is kept.
    let VmDefinition {
        id: _,
        callers,
        instance,
        identities,
        load_balancer,
        reprovision_data,
        provisioning,
        scheduled_events,
        host,
    } = vm;
    let mut out = Writer(Vec::with_capacity(instance.compact().len() + 512));
    out.u8(ENCODING);
    out.u32(callers.len());
    for caller in callers {
        match caller {
            IpAddr::V4(v4) => {
                out.u8(4);
                out.0.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.u8(6);
                out.0.extend_from_slice(&v6.octets());
            }
        }
    }
    out.bytes(instance.compact());
    out.bytes(instance.name().as_bytes());
    out.u32(instance.unknown_fields().len());
    for field in instance.unknown_fields() {
        out.bytes(field.as_bytes());
    }
    match identities {
        None => out.u8(0),
        Some(Identities {
            tenant_id,
            system,
            user,
        }) => {
            out.u8(1);
            out.bytes(tenant_id.as_bytes());
            match system {
                None => out.u8(0),
                Some(identity) => {
                    out.u8(1);
                    out.identity(identity);
                }
            }
            out.u32(user.len());
            user.iter().for_each(|identity| out.identity(identity));
        }
    }
    match load_balancer {
        None => out.u8(0),
        Some(Served::Body(body)) => {
            out.u8(1);
            out.bytes(body);
        }
        Some(Served::Outage(outage)) => {
            out.u8(2);
            let index = Outage::NAMES.iter().position(|(_, o)| o == outage);
            out.u8(u8::try_from(index.expect("every outage is named")).expect("few outages"));
        }
    }
    match reprovision_data {
        None => out.u8(0),
        Some(xml) => {
            out.u8(1);
            out.bytes(xml);
        }
    }
    match provisioning {
        None => out.u8(0),
        Some(ProvisioningDefinition {
            custom_data,
            admin_password,
            provision_guest_agent,
        }) => {
            out.u8(1);
            out.optional(custom_data.as_deref());
            out.optional(admin_password.as_ref().map(Password::expose));
            out.u8(u8::from(*provision_guest_agent));
        }
    }
    match scheduled_events {
        None => out.u8(0),
        Some(value) => {
            out.u8(1);
            out.bytes(&serde_json::to_vec(value).expect("a JSON value serializes"));
        }
    }
    out.optional(host.as_deref());
    out.0
}

/// The VM `id` whose checked form is `bytes`. `Err` says what is wrong with them (a form this
/// build did not write: the store record is then corrupt).
pub fn decode(id: &str, bytes: &[u8]) -> Result<VmDefinition, String> {
    let mut input = Reader(bytes);
    if input.u8()? != ENCODING {
        return Err("unknown encoding of the checked VM".into());
    }
    let mut callers = Vec::new();
    for _ in 0..input.u32()? {
        callers.push(match input.u8()? {
            4 => IpAddr::from(<[u8; 4]>::try_from(input.take(4)?).expect("4 bytes")),
            6 => IpAddr::from(<[u8; 16]>::try_from(input.take(16)?).expect("16 bytes")),
            _ => return Err("unknown address family".into()),
        });
    }
    let compact = Bytes::copy_from_slice(input.bytes()?);
    let name = input.string()?.into_boxed_str();
    let mut unknown_fields = Vec::new();
    for _ in 0..input.u32()? {
        unknown_fields.push(input.string()?);
    }
    let instance = InstanceDocument::from_checked(compact, name, unknown_fields);
    let identities = match input.u8()? {
        0 => None,
        _ => {
            let tenant_id = input.string()?;
            let system = match input.u8()? {
                0 => None,
                _ => Some(input.identity(Kind::System)?),
            };
            let mut user = Vec::new();
            for _ in 0..input.u32()? {
                user.push(input.identity(Kind::User)?);
            }
            Some(Identities {
                tenant_id,
                system,
                user,
            })
        }
    };
    let load_balancer = match input.u8()? {
        0 => None,
        1 => Some(Served::Body(Bytes::copy_from_slice(input.bytes()?))),
        2 => {
            let index = usize::from(input.u8()?);
            let (_, outage) = Outage::NAMES
                .get(index)
                .ok_or("unknown load balancer outage")?;
            Some(Served::Outage(*outage))
        }
        _ => return Err("unknown load balancer form".into()),
    };
    let reprovision_data = match input.u8()? {
        0 => None,
        _ => Some(Bytes::copy_from_slice(input.bytes()?)),
    };
    let provisioning = match input.u8()? {
        0 => None,
        _ => Some(ProvisioningDefinition {
            custom_data: input.optional()?,
            admin_password: input.optional()?.map(Password::checked),
            provision_guest_agent: input.u8()? != 0,
        }),
    };
    let scheduled_events = input.json()?;
    let host = input.optional()?;
    if !input.0.is_empty() {
        return Err("bytes after the checked VM".into());
    }
    Ok(VmDefinition {
        id: id.to_string(),
        callers,
        instance,
        identities,
        load_balancer,
        reprovision_data,
        provisioning,
        scheduled_events,
        host,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    fn u32(&mut self, value: usize) {
        let value = u32::try_from(value).expect("a VM entry is far below 4 GiB");
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.u32(bytes.len());
        self.0.extend_from_slice(bytes);
    }

    fn optional(&mut self, text: Option<&str>) {
        match text {
            None => self.u8(0),
            Some(text) => {
                self.u8(1);
                self.bytes(text.as_bytes());
            }
        }
    }

    fn identity(&mut self, identity: &Identity) {
        self.bytes(identity.client_id.as_bytes());
        self.bytes(identity.object_id.as_bytes());
        self.bytes(identity.resource_id.as_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the checked VM is cut short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<usize, String> {
        let bytes = self.take(4)?.try_into().expect("4 bytes");
        Ok(u32::from_le_bytes(bytes) as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()?;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "a string is not UTF-8".into())
    }

    fn optional(&mut self) -> Result<Option<String>, String> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.string().map(Some),
        }
    }

    fn identity(&mut self, kind: Kind) -> Result<Identity, String> {
        Ok(Identity {
            kind,
            client_id: self.string()?,
            object_id: self.string()?,
            resource_id: self.string()?,
        })
    }

    fn json(&mut self) -> Result<Option<Value>, String> {
        match self.u8()? {
            0 => Ok(None),
            _ => serde_json::from_slice(self.bytes()?)
                .map(Some)
                .map_err(|e| format!("a JSON member does not parse: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::definition::{demo, vm_from_json};

    #[test]
    fn decoding_gives_back_what_checking_gave() {
        let mut vms: Vec<VmDefinition> = demo().vms.into_iter().map(|d| d.vm).collect();
        vms.push(
            vm_from_json(
                &json!({
                    "callers": ["10.0.0.4", "fd00::4"],
                    "instance": {"compute": {"name": "web", "futureField": {"x": 1}}},
                    "identities": {"userAssigned": [{}, {}]},
                    "scheduledEvents": [{
                        "EventId": "a626e37f-793e-44e1-89b5-99ae0b96044c",
                        "EventType": "Reboot",
                        "NotBefore": "Fri, 01 Jan 2100 00:00:00 GMT",
                    }],
                }),
                "web",
            )
            .unwrap(),
        );
        vms.push(vm_from_json(&json!({}), "bare").unwrap());
        vms.push(
            vm_from_json(
                &json!({
                    "loadBalancer": {"publicIpAddresses": [
                        {"frontendIpAddress": "51.0.0.1", "privateIpAddress": "10.1.0.4"}
                    ]},
                    "reprovisionData": "<Environment/>",
                    "provisioning": {"customData": "I2Nsb3VkLWNvbmZpZwo=", "adminPassword": "s3cret!Pass"},
                }),
                "balanced",
            )
            .unwrap(),
        );
        for (name, _) in Outage::NAMES {
            vms.push(vm_from_json(&json!({"loadBalancer": name}), name).unwrap());
        }
        for vm in vms {
            let bytes = encode(&vm);
            assert_eq!(decode(&vm.id, &bytes).unwrap(), vm);
            for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                assert!(decode(&vm.id, &bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn the_fingerprint_is_stable_and_never_zero() {
        assert_eq!(fingerprint(), fingerprint());
        assert_ne!(fingerprint(), 0);
    }
}
