//! The documents the WireServer serves, byte for byte: the versions list (§3), the goal state
//! (§4.2) and the documents it links (§4.4), for one VM. Its ids are derived from the VM's id,
//! so they are stable across restarts and edits and differ between VMs; the incarnation is
//! constant (§4.5: keep it unless a new goal state is intended).

use std::fmt::Write;

use crate::definition::VmDefinition;
use crate::xml::escape;

/// The goal state's incarnation. waagent refetches the linked documents only when it changes.
pub(super) const INCARNATION: &str = "1";

/// §3, the realistic list (afterburn's capture): `2012-11-30` Supported, which waagent and
/// afterburn both accept.
pub(super) const VERSIONS: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n",
    "<Versions><Preferred><Version>2015-04-05</Version></Preferred>",
    "<Supported><Version>2015-04-05</Version><Version>2012-11-30</Version>",
    "<Version>2012-09-15</Version><Version>2012-05-15</Version><Version>2011-12-31</Version>",
    "<Version>2011-10-15</Version><Version>2011-08-31</Version><Version>2011-04-07</Version>",
    "<Version>2010-12-15</Version><Version>2010-28-10</Version></Supported></Versions>",
);

/// §4.4's Certificates document without `Data`: waagent reads it as "no certificates".
pub(super) const CERTIFICATES: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n",
    "<CertificateFile><Version>2012-11-30</Version><Incarnation>1</Incarnation>",
    "<Format>Pkcs7BlobWithPfxContents</Format></CertificateFile>",
);

/// The Host GA Plugin's `/versions` (§6.1: waagent looks for `2015-09-01`).
pub(super) const HOST_PLUGIN_VERSIONS: &str = r#"["2015-09-01"]"#;

/// What a path segment must encode: everything but RFC 3986's unreserved characters.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One VM's goal-state identity and the base URL its documents are linked under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct GoalState {
    pub(super) container_id: String,
    /// `<guid>._<role>` (the real form, §4.2).
    pub(super) instance_id: String,
    /// `_<vm name>`.
    pub(super) role: String,
    pub(super) deployment: String,
    /// The VM's first private IPv4 address (SharedConfig `Instance@address`), may be empty.
    pub(super) address: String,
    /// `http://<address the guest called>:<port>`, so links work behind any address.
    pub(super) base: String,
}

impl GoalState {
    pub(super) fn new(vm: &VmDefinition, base: String) -> GoalState {
        let name = match vm.instance.name() {
            "" => vm.id.as_str(),
            name => name,
        };
        let role = format!("_{name}");
        let instance_id = format!("{}.{role}", derived_guid("instance", &vm.id));
        let address = vm
            .instance
            .string_at(&[
                "network",
                "interface",
                "0",
                "ipv4",
                "ipAddress",
                "0",
                "privateIpAddress",
            ])
            .unwrap_or_default();
        GoalState {
            container_id: derived_guid("container", &vm.id),
            instance_id,
            role,
            deployment: derived_guid("deployment", &vm.id).replace('-', ""),
            address,
            base,
        }
    }

    /// `<base>/machine/<container>/<instance, URL-encoded>`: where the linked documents live.
    fn machine_url(&self) -> String {
        let instance = percent_encoding::utf8_percent_encode(&self.instance_id, PATH_SEGMENT);
        format!("{}/machine/{}/{instance}", self.base, self.container_id)
    }

    fn config_url(&self, kind: &str) -> String {
        format!(
            "{}?comp=config&amp;type={kind}&amp;incarnation={INCARNATION}",
            self.machine_url()
        )
    }

    /// The status blob waagent uploads to directly when the Host GA Plugin fails (§6.2).
    pub(super) fn status_blob_url(&self) -> String {
        format!(
            "{}/status/{}?sv=2014-02-14&amp;sr=b&amp;sp=rw&amp;sig=azimds",
            self.base, self.container_id
        )
    }

    /// The goal state (§4.2; what §4.4 calls mandatory, plus ExtensionsConfig and no
    /// Certificates, §6.5).
    pub(super) fn goal_state(&self) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str(concat!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n",
            "<GoalState xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" ",
            "xsi:noNamespaceSchemaLocation=\"goalstate10.xsd\">\n",
            "  <Version>2012-11-30</Version>\n",
        ));
        let _ = write!(
            out,
            concat!(
                "  <Incarnation>{inc}</Incarnation>\n",
                "  <Machine><ExpectedState>Started</ExpectedState>",
                "<StopRolesDeadlineHint>300000</StopRolesDeadlineHint>",
                "<LBProbePorts><Port>16001</Port></LBProbePorts>",
                "<ExpectHealthReport>FALSE</ExpectHealthReport></Machine>\n",
                "  <Container>\n",
                "    <ContainerId>{container}</ContainerId>\n",
                "    <RoleInstanceList><RoleInstance>\n",
                "      <InstanceId>{instance}</InstanceId>\n",
                "      <State>Started</State>\n",
                "      <Configuration>\n",
                "        <HostingEnvironmentConfig>{hosting}</HostingEnvironmentConfig>\n",
                "        <SharedConfig>{shared}</SharedConfig>\n",
                "        <ExtensionsConfig>{extensions}</ExtensionsConfig>\n",
                "        <FullConfig>{full}</FullConfig>\n",
                "        <ConfigName>{dep}.0.{dep}.0.{role}.1.xml</ConfigName>\n",
                "      </Configuration>\n",
                "    </RoleInstance></RoleInstanceList>\n",
                "  </Container>\n",
                "</GoalState>\n",
            ),
            inc = INCARNATION,
            container = self.container_id,
            instance = escape(&self.instance_id),
            hosting = self.config_url("hostingEnvironmentConfig"),
            shared = self.config_url("sharedConfig"),
            extensions = self.config_url("extensionsConfig"),
            full = self.config_url("fullConfig"),
            dep = self.deployment,
            role = escape(&self.role),
        );
        out
    }

    /// `<Deployment/><Incarnation/><Role/>`, shared by HostingEnvironmentConfig and
    /// SharedConfig (§4.4: waagent reads `Incarnation@instance`, `Role@name`, `Deployment@name`).
    fn deployment_elements(&self) -> String {
        let guid = |what: &str| derived_guid(what, &self.container_id);
        format!(
            concat!(
                "<Deployment name=\"{dep}\" guid=\"{{{dguid}}}\" incarnation=\"0\" />",
                "<Incarnation number=\"{inc}\" instance=\"{role}\" guid=\"{{{iguid}}}\" />",
                "<Role guid=\"{{{rguid}}}\" name=\"{role}\" settleTimeSeconds=\"0\" />",
            ),
            dep = self.deployment,
            dguid = guid("deployment-guid"),
            inc = INCARNATION,
            role = escape(&self.role),
            iguid = guid("incarnation-guid"),
            rguid = guid("role-guid"),
        )
    }

    pub(super) fn hosting_environment_config(&self) -> String {
        format!(
            concat!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n",
                "<HostingEnvironmentConfig version=\"1.0.0.0\" goalStateIncarnation=\"{inc}\">",
                "{deployment}</HostingEnvironmentConfig>\n",
            ),
            inc = INCARNATION,
            deployment = self.deployment_elements(),
        )
    }

    pub(super) fn shared_config(&self) -> String {
        format!(
            concat!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n",
                "<SharedConfig version=\"1.0.0.0\" goalStateIncarnation=\"{inc}\">",
                "{deployment}<Instances><Instance id=\"{role}\" address=\"{address}\" />",
                "</Instances></SharedConfig>\n",
            ),
            inc = INCARNATION,
            deployment = self.deployment_elements(),
            role = escape(&self.role),
            address = escape(&self.address),
        )
    }

    /// No extensions, a block-blob status upload URL (WA fixture
    /// `ext_conf_no_extensions-block_blob.xml`, §4.4).
    pub(super) fn extensions_config(&self) -> String {
        format!(
            concat!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n",
                "<Extensions version=\"1.0.0.0\" goalStateIncarnation=\"{inc}\">",
                "<GuestAgentExtension xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">",
                "<GAFamilies /></GuestAgentExtension><Plugins /><PluginSettings />",
                "<StatusUploadBlob statusBlobType=\"BlockBlob\">{blob}</StatusUploadBlob>",
                "<InVMGoalStateMetaData inSvdSeqNo=\"1\" createdOnTicks=\"{ticks}\" ",
                "activityId=\"{activity}\" correlationId=\"{correlation}\" />",
                "</Extensions>\n",
            ),
            inc = INCARNATION,
            blob = self.status_blob_url(),
            // 2020-01-01T00:00:00Z in .NET ticks: a fixed creation time for a fixed goal state.
            ticks = 637_134_336_000_000_000u64,
            activity = derived_guid("activity", &self.container_id),
            correlation = derived_guid("correlation", &self.container_id),
        )
    }

    /// FullConfig is linked but read by no client (§4.3); a well-formed minimal document.
    pub(super) fn full_config(&self) -> String {
        format!(
            concat!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n",
                "<HostingEnvironmentConfig version=\"1.0.0.0\" goalStateIncarnation=\"{inc}\">",
                "{deployment}</HostingEnvironmentConfig>\n",
            ),
            inc = INCARNATION,
            deployment = self.deployment_elements(),
        )
    }
}

/// A name-based (v5-style) GUID: SHA-1 of an azimds namespace, `what` and `name`.
fn derived_guid(what: &str, name: &str) -> String {
    let hash = openssl::sha::sha1(format!("azimds/wireserver/{what}/{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    uuid::Builder::from_sha1_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::definition::vm_from_json;

    fn goal_state(id: &str, name: &str) -> GoalState {
        let vm = vm_from_json(
            &json!({"instance": {"compute": {"name": name}, "network": {"interface": [
                {"ipv4": {"ipAddress": [{"privateIpAddress": "10.0.0.4"}]}}]}}}),
            id,
        )
        .unwrap();
        GoalState::new(&vm, "http://168.63.129.16:80".into())
    }

    fn text<'a>(doc: &'a roxmltree::Document<'a>, name: &str) -> &'a str {
        doc.descendants()
            .find(|n| n.tag_name().name() == name)
            .and_then(|n| n.text())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn ids_are_stable_per_vm_and_differ_between_vms() {
        let one = goal_state("vm-1", "web");
        assert_eq!(one, goal_state("vm-1", "web"));
        let two = goal_state("vm-2", "web");
        assert_ne!(one.container_id, two.container_id);
        assert_ne!(one.instance_id, two.instance_id);
        assert!(one.instance_id.ends_with("._web"), "{}", one.instance_id);
        assert_eq!(one.container_id.len(), 36);
        assert_eq!(one.deployment.len(), 32);
        assert_eq!(one.address, "10.0.0.4");
    }

    #[test]
    fn the_goal_state_has_what_section_4_4_calls_mandatory() {
        let state = goal_state("vm-1", "web");
        let xml = state.goal_state();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert_eq!(doc.root_element().tag_name().name(), "GoalState");
        assert_eq!(
            doc.root_element().tag_name().namespace(),
            None,
            "no default namespace: cloud-init's paths have none"
        );
        assert_eq!(text(&doc, "Version"), "2012-11-30");
        assert_eq!(text(&doc, "Incarnation"), "1");
        assert_eq!(text(&doc, "ContainerId"), state.container_id);
        assert_eq!(text(&doc, "InstanceId"), state.instance_id);
        let hosting = text(&doc, "HostingEnvironmentConfig");
        assert_eq!(
            hosting,
            format!(
                "http://168.63.129.16:80/machine/{}/{}?comp=config&type=hostingEnvironmentConfig&incarnation=1",
                state.container_id, state.instance_id
            )
        );
        assert!(text(&doc, "SharedConfig").contains("type=sharedConfig"));
        assert!(text(&doc, "ExtensionsConfig").contains("type=extensionsConfig"));
        assert!(text(&doc, "ConfigName").starts_with(&state.deployment));
        assert!(
            doc.descendants()
                .all(|n| n.tag_name().name() != "Certificates"),
            "no Certificates link (§6.5)"
        );
    }

    #[test]
    fn linked_documents_parse_and_carry_the_ids() {
        let state = goal_state("vm-1", "web");
        for xml in [
            state.hosting_environment_config(),
            state.shared_config(),
            state.full_config(),
        ] {
            let doc = roxmltree::Document::parse(&xml).unwrap();
            let incarnation = doc
                .descendants()
                .find(|n| n.tag_name().name() == "Incarnation")
                .unwrap();
            assert_eq!(incarnation.attribute("instance"), Some("_web"));
            let deployment = doc
                .descendants()
                .find(|n| n.tag_name().name() == "Deployment")
                .unwrap();
            assert_eq!(
                deployment.attribute("name"),
                Some(state.deployment.as_str())
            );
        }
        let shared = state.shared_config();
        let doc = roxmltree::Document::parse(&shared).unwrap();
        let instance = doc
            .descendants()
            .find(|n| n.tag_name().name() == "Instance")
            .unwrap();
        assert_eq!(instance.attribute("address"), Some("10.0.0.4"));
        let extensions = state.extensions_config();
        let doc = roxmltree::Document::parse(&extensions).unwrap();
        let blob = doc
            .descendants()
            .find(|n| n.tag_name().name() == "StatusUploadBlob")
            .unwrap();
        assert_eq!(blob.attribute("statusBlobType"), Some("BlockBlob"));
        assert_eq!(
            blob.text(),
            Some(
                format!(
                    "http://168.63.129.16:80/status/{}?sv=2014-02-14&sr=b&sp=rw&sig=azimds",
                    state.container_id
                )
                .as_str()
            )
        );
        for xml in [VERSIONS, CERTIFICATES] {
            roxmltree::Document::parse(xml).unwrap();
        }
    }
}
