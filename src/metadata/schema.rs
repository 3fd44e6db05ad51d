//! The instance document's field registry: every field of the newest schema, the api-version
//! that introduced it, and the value a VM definition gets when it leaves the field out
//! (spec §2.4, §3.3–§3.5, §3.9).
//!
//! This table is the single source of truth for version shaping: a field is served for an
//! api-version iff `requested >= introduced`. To move a field (e.g. `physicalZone`, whose real
//! introduction is [UNCERTAIN] in §2.4), change its line here; golden fixtures will show the diff.

use std::sync::LazyLock;

use crate::metadata::version::ApiVersion;

/// What a field holds, with its default for definitions that leave it out.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Object,
    /// Array of the element described by the `…/*` line that follows.
    Array,
    /// JSON string (every instance primitive is a string, §1.8).
    Str(&'static str),
    /// JSON boolean; only `extended.compute.hasCustomData` (§3.9).
    Bool(bool),
}

use ApiVersion as V;
use Kind::{Array, Bool, Object, Str};

/// JSON pointers into the newest instance document. `*` stands for every array element.
/// Keys need not be sorted here; rendering sorts them.
#[rustfmt::skip]
const FIELDS: &[(&str, ApiVersion, Kind)] = &[
    ("/compute", V::V2017_03_01, Object),
    ("/compute/additionalCapabilities", V::V2021_11_01, Object),
    ("/compute/additionalCapabilities/hibernationEnabled", V::V2021_11_01, Str("false")),
    ("/compute/azEnvironment", V::V2018_10_01, Str("AzurePublicCloud")),
    // IMDS never serves custom data (§3.8): the key exists and is always empty.
    ("/compute/customData", V::V2019_02_01, Str("")),
    ("/compute/evictionPolicy", V::V2020_12_01, Str("")),
    ("/compute/extendedLocation", V::V2021_03_01, Object),
    ("/compute/extendedLocation/name", V::V2021_03_01, Str("")),
    ("/compute/extendedLocation/type", V::V2021_03_01, Str("")),
    ("/compute/host", V::V2021_11_15, Object),
    ("/compute/host/id", V::V2021_11_15, Str("")),
    ("/compute/hostGroup", V::V2021_11_15, Object),
    ("/compute/hostGroup/id", V::V2021_11_15, Str("")),
    ("/compute/isHostCompatibilityLayerVm", V::V2020_06_01, Str("false")),
    // Undocumented; present in a real 2023-11-15 capture (§2.4).
    ("/compute/isVmInStandbyPool", V::V2023_11_15, Str("")),
    ("/compute/licenseType", V::V2020_09_01, Str("")),
    ("/compute/location", V::V2017_03_01, Str("")),
    ("/compute/name", V::V2017_03_01, Str("")),
    ("/compute/offer", V::V2017_03_01, Str("")),
    ("/compute/osProfile", V::V2020_07_15, Object),
    ("/compute/osProfile/adminUsername", V::V2020_07_15, Str("")),
    ("/compute/osProfile/computerName", V::V2020_07_15, Str("")),
    ("/compute/osProfile/disablePasswordAuthentication", V::V2020_10_01, Str("")),
    ("/compute/osType", V::V2017_03_01, Str("")),
    // Docs say 2023-11-15, but a real 2023-11-15 response lacks it (§2.4): the spec's
    // recommended default is the first version after that capture.
    ("/compute/physicalZone", V::V2024_03_15, Str("")),
    ("/compute/placementGroupId", V::V2017_08_01, Str("")),
    ("/compute/plan", V::V2018_04_02, Object),
    ("/compute/plan/name", V::V2018_04_02, Str("")),
    ("/compute/plan/product", V::V2018_04_02, Str("")),
    ("/compute/plan/publisher", V::V2018_04_02, Str("")),
    ("/compute/platformFaultDomain", V::V2017_03_01, Str("0")),
    ("/compute/platformSubFaultDomain", V::V2021_10_01, Str("")),
    ("/compute/platformUpdateDomain", V::V2017_03_01, Str("0")),
    ("/compute/priority", V::V2020_12_01, Str("")),
    ("/compute/provider", V::V2018_10_01, Str("Microsoft.Compute")),
    ("/compute/publicKeys", V::V2018_04_02, Array),
    ("/compute/publicKeys/*", V::V2018_04_02, Object),
    ("/compute/publicKeys/*/keyData", V::V2018_04_02, Str("")),
    ("/compute/publicKeys/*/path", V::V2018_04_02, Str("")),
    ("/compute/publisher", V::V2017_03_01, Str("")),
    ("/compute/resourceGroupName", V::V2017_08_01, Str("")),
    ("/compute/resourceId", V::V2019_03_11, Str("")),
    ("/compute/securityProfile", V::V2020_06_01, Object),
    ("/compute/securityProfile/encryptionAtHost", V::V2021_11_01, Str("false")),
    ("/compute/securityProfile/secureBootEnabled", V::V2020_06_01, Str("false")),
    ("/compute/securityProfile/securityType", V::V2021_12_13, Str("")),
    ("/compute/securityProfile/virtualTpmEnabled", V::V2020_06_01, Str("false")),
    ("/compute/sku", V::V2017_03_01, Str("")),
    ("/compute/storageProfile", V::V2019_06_01, Object),
    ("/compute/storageProfile/dataDisks", V::V2019_06_01, Array),
    ("/compute/storageProfile/dataDisks/*", V::V2019_06_01, Object),
    ("/compute/storageProfile/dataDisks/*/bytesPerSecondThrottle", V::V2021_05_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/caching", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/createOption", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/diskCapacityBytes", V::V2021_05_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/diskSizeGB", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/image", V::V2019_06_01, Object),
    ("/compute/storageProfile/dataDisks/*/image/uri", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/isSharedDisk", V::V2021_05_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/isUltraDisk", V::V2021_05_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/lun", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/managedDisk", V::V2019_06_01, Object),
    ("/compute/storageProfile/dataDisks/*/managedDisk/id", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/managedDisk/storageAccountType", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/name", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/opsPerSecondThrottle", V::V2021_05_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/vhd", V::V2019_06_01, Object),
    ("/compute/storageProfile/dataDisks/*/vhd/uri", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/dataDisks/*/writeAcceleratorEnabled", V::V2019_06_01, Str("false")),
    ("/compute/storageProfile/imageReference", V::V2019_06_01, Object),
    ("/compute/storageProfile/imageReference/communityGalleryImageId", V::V2023_07_01, Str("")),
    ("/compute/storageProfile/imageReference/exactVersion", V::V2023_07_01, Str("")),
    ("/compute/storageProfile/imageReference/id", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/imageReference/offer", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/imageReference/publisher", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/imageReference/sharedGalleryImageId", V::V2023_07_01, Str("")),
    ("/compute/storageProfile/imageReference/sku", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/imageReference/version", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/osDisk", V::V2019_06_01, Object),
    ("/compute/storageProfile/osDisk/caching", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/osDisk/createOption", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/osDisk/diffDiskSettings", V::V2019_06_01, Object),
    ("/compute/storageProfile/osDisk/diffDiskSettings/option", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/osDisk/diskSizeGB", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/osDisk/encryptionSettings", V::V2019_06_01, Object),
    ("/compute/storageProfile/osDisk/encryptionSettings/diskEncryptionKey", V::V2021_11_01, Object),
    ("/compute/storageProfile/osDisk/encryptionSettings/diskEncryptionKey/secretUrl", V::V2021_11_01, Str("")),
    ("/compute/storageProfile/osDisk/encryptionSettings/diskEncryptionKey/sourceVault", V::V2021_11_01, Object),
    ("/compute/storageProfile/osDisk/encryptionSettings/diskEncryptionKey/sourceVault/id", V::V2021_11_01, Str("")),
    ("/compute/storageProfile/osDisk/encryptionSettings/enabled", V::V2019_06_01, Str("false")),
    ("/compute/storageProfile/osDisk/encryptionSettings/keyEncryptionKey", V::V2021_11_01, Object),
    ("/compute/storageProfile/osDisk/encryptionSettings/keyEncryptionKey/keyUrl", V::V2021_11_01, Str("")),
    ("/compute/storageProfile/osDisk/encryptionSettings/keyEncryptionKey/sourceVault", V::V2021_11_01, Object),
    ("/compute/storageProfile/osDisk/encryptionSettings/keyEncryptionKey/sourceVault/id", V::V2021_11_01, Str("")),
    ("/compute/storageProfile/osDisk/image", V::V2019_06_01, Object),
    ("/compute/storageProfile/osDisk/image/uri", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/osDisk/managedDisk", V::V2019_06_01, Object),
    ("/compute/storageProfile/osDisk/managedDisk/id", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/osDisk/managedDisk/storageAccountType", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/osDisk/name", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/osDisk/osType", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/osDisk/vhd", V::V2019_06_01, Object),
    ("/compute/storageProfile/osDisk/vhd/uri", V::V2019_06_01, Str("")),
    ("/compute/storageProfile/osDisk/writeAcceleratorEnabled", V::V2019_06_01, Str("false")),
    ("/compute/storageProfile/resourceDisk", V::V2021_02_01, Object),
    ("/compute/storageProfile/resourceDisk/size", V::V2021_02_01, Str("")),
    ("/compute/subscriptionId", V::V2017_08_01, Str("")),
    ("/compute/tags", V::V2017_08_01, Str("")),
    ("/compute/tagsList", V::V2019_06_04, Array),
    ("/compute/tagsList/*", V::V2019_06_04, Object),
    ("/compute/tagsList/*/name", V::V2019_06_04, Str("")),
    ("/compute/tagsList/*/value", V::V2019_06_04, Str("")),
    ("/compute/userData", V::V2021_01_01, Str("")),
    ("/compute/version", V::V2017_03_01, Str("")),
    ("/compute/virtualMachineScaleSet", V::V2021_03_01, Object),
    ("/compute/virtualMachineScaleSet/id", V::V2021_03_01, Str("")),
    ("/compute/vmId", V::V2017_03_01, Str("")),
    ("/compute/vmScaleSetName", V::V2017_12_01, Str("")),
    ("/compute/vmSize", V::V2017_03_01, Str("")),
    ("/compute/zone", V::V2017_12_01, Str("")),
    // The network section in its ≥2017-04-02 names; `shape` derives the 2017-03-01 names.
    ("/network", V::V2017_03_01, Object),
    ("/network/interface", V::V2017_03_01, Array),
    ("/network/interface/*", V::V2017_03_01, Object),
    ("/network/interface/*/ipv4", V::V2017_03_01, Object),
    ("/network/interface/*/ipv4/ipAddress", V::V2017_03_01, Array),
    ("/network/interface/*/ipv4/ipAddress/*", V::V2017_03_01, Object),
    ("/network/interface/*/ipv4/ipAddress/*/privateIpAddress", V::V2017_03_01, Str("")),
    ("/network/interface/*/ipv4/ipAddress/*/publicIpAddress", V::V2017_03_01, Str("")),
    ("/network/interface/*/ipv4/subnet", V::V2017_03_01, Array),
    ("/network/interface/*/ipv4/subnet/*", V::V2017_03_01, Object),
    ("/network/interface/*/ipv4/subnet/*/address", V::V2017_03_01, Str("")),
    ("/network/interface/*/ipv4/subnet/*/prefix", V::V2017_03_01, Str("")),
    ("/network/interface/*/ipv6", V::V2017_03_01, Object),
    ("/network/interface/*/ipv6/ipAddress", V::V2017_03_01, Array),
    ("/network/interface/*/ipv6/ipAddress/*", V::V2017_03_01, Object),
    ("/network/interface/*/ipv6/ipAddress/*/privateIpAddress", V::V2017_03_01, Str("")),
    ("/network/interface/*/macAddress", V::V2017_03_01, Str("")),
    // Only with `extended=true` (§3.9); the minimum version is [UNCERTAIN], 2021-03-01 per spec.
    ("/extended", V::V2021_03_01, Object),
    ("/extended/compute", V::V2021_03_01, Object),
    ("/extended/compute/hasCustomData", V::V2021_03_01, Bool(false)),
    ("/extended/compute/ppsType", V::V2021_03_01, Str("None")),
];

/// The top-level member that only `extended=true` requests see.
pub(crate) const EXTENDED: &str = "extended";

/// One node of the schema tree built from [`FIELDS`].
#[derive(Debug)]
pub(crate) enum SchemaNode {
    /// Members in name order.
    Object(Vec<SchemaField>),
    Array(Box<SchemaNode>),
    Str(&'static str),
    Bool(bool),
}

/// A named member of an object node.
#[derive(Debug)]
pub(crate) struct SchemaField {
    pub(crate) name: &'static str,
    pub(crate) since: ApiVersion,
    pub(crate) node: SchemaNode,
}

impl SchemaNode {
    /// The member `name` of an object node (tests walk the schema with it).
    #[cfg(test)]
    pub(crate) fn field(&self, name: &str) -> Option<&SchemaField> {
        match self {
            SchemaNode::Object(fields) => fields.iter().find(|f| f.name == name),
            _ => None,
        }
    }
}

/// The schema tree of the newest instance document (root object: compute, network, extended).
/// The whole field table as text: what a document checked against this table depends on (a
/// stored checked document is reused only while this is unchanged).
pub(crate) fn table_text() -> String {
    format!("{FIELDS:?}")
}

pub(crate) fn instance_schema() -> &'static SchemaNode {
    static SCHEMA: LazyLock<SchemaNode> = LazyLock::new(build);
    &SCHEMA
}

fn build() -> SchemaNode {
    let mut root = SchemaNode::Object(Vec::new());
    for &(pointer, since, kind) in FIELDS {
        let segments: Vec<&'static str> = pointer[1..].split('/').collect();
        let (last, parents) = segments.split_last().expect("pointers are non-empty");
        let parent = descend(&mut root, parents, pointer);
        let node = match kind {
            Object => SchemaNode::Object(Vec::new()),
            // Placeholder element, replaced by the `…/*` line that must follow.
            Array => SchemaNode::Array(Box::new(SchemaNode::Str(""))),
            Str(default) => SchemaNode::Str(default),
            Bool(default) => SchemaNode::Bool(default),
        };
        match parent {
            SchemaNode::Object(fields) => fields.push(SchemaField {
                name: last,
                since,
                node,
            }),
            SchemaNode::Array(element) if *last == "*" => **element = node,
            _ => panic!("schema line {pointer} has no object or array parent"),
        }
    }
    root
}

fn descend<'a>(mut node: &'a mut SchemaNode, path: &[&str], pointer: &str) -> &'a mut SchemaNode {
    for segment in path {
        node = match node {
            SchemaNode::Object(fields) => {
                &mut fields
                    .iter_mut()
                    .find(|f| f.name == *segment)
                    .unwrap_or_else(|| panic!("schema line {pointer} comes before its parent"))
                    .node
            }
            SchemaNode::Array(element) if *segment == "*" => element,
            _ => panic!("schema line {pointer} walks through a leaf"),
        };
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_compute_keys(version: ApiVersion) -> usize {
        let compute = instance_schema().field("compute").unwrap();
        match &compute.node {
            SchemaNode::Object(fields) => fields.iter().filter(|f| f.since <= version).count(),
            _ => unreachable!(),
        }
    }

    /// The cumulative key counts of spec §3.6 (✓ rows are checked against real captures).
    #[test]
    fn compute_key_counts_match_spec_table() {
        let table = [
            (V::V2017_04_02, 11),
            (V::V2017_08_01, 15),
            (V::V2017_12_01, 17),
            (V::V2018_02_01, 17),
            (V::V2018_04_02, 19),
            (V::V2018_10_01, 21),
            (V::V2019_02_01, 22),
            (V::V2019_03_11, 23),
            (V::V2019_06_01, 24),
            (V::V2019_06_04, 25),
            (V::V2020_06_01, 27),
            (V::V2020_07_15, 28),
            (V::V2020_09_01, 29),
            (V::V2020_12_01, 31),
            (V::V2021_01_01, 32),
            (V::V2021_03_01, 34),
            (V::V2021_10_01, 35),
            (V::V2021_11_01, 36),
            (V::V2021_11_15, 38),
            (V::V2023_11_15, 39),
            (V::V2024_03_15, 40),
            (V::V2025_04_07, 40),
        ];
        for (version, expected) in table {
            assert_eq!(
                count_compute_keys(version),
                expected,
                "compute keys at {version}"
            );
        }
    }

    #[test]
    fn every_array_has_an_element_schema() {
        fn check(node: &SchemaNode, path: &str) {
            match node {
                SchemaNode::Object(fields) => {
                    for f in fields {
                        check(&f.node, &format!("{path}/{}", f.name));
                    }
                }
                SchemaNode::Array(element) => {
                    assert!(
                        matches!(**element, SchemaNode::Object(_)),
                        "{path}/* is not declared"
                    );
                    check(element, &format!("{path}/*"));
                }
                SchemaNode::Str(_) | SchemaNode::Bool(_) => {}
            }
        }
        check(instance_schema(), "");
    }

    #[test]
    fn children_never_predate_their_parent() {
        fn check(node: &SchemaNode, parent_since: ApiVersion) {
            if let SchemaNode::Object(fields) = node {
                for f in fields {
                    assert!(f.since >= parent_since, "{} predates its parent", f.name);
                    check(&f.node, f.since);
                }
            } else if let SchemaNode::Array(element) = node {
                check(element, parent_since);
            }
        }
        check(instance_schema(), ApiVersion::V2017_03_01);
    }
}
