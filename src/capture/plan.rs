//! What `azimds capture` asks for: every endpoint at every api-version the service lists
//! (spec §2.2), instance documents with and without `extended=true`, scheduled events at their
//! own versions (§6.1), one managed-identity token, and Azure's answers to the common client
//! mistakes (so a replay answers them as Azure does).
//!
//! Nothing here changes the VM: every request is a GET (no scheduled-event approval), and
//! `/metadata/reprovisiondata` is left out (on a pre-provisioned VM it is a signal, not a
//! read).

use crate::events::version::EventsVersion;

/// The resource the captured token is for: the one every SDK sample uses.
pub const TOKEN_RESOURCE: &str = "https://management.azure.com/";
/// The api-version every managed-identity client sends (spec §2.2).
pub const TOKEN_VERSION: &str = "2018-02-01";

/// One request of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The recorded response's name (also its body file's stem).
    pub name: String,
    /// Path and query.
    pub target: String,
    /// Whether to send `Metadata: true`.
    pub metadata: bool,
    pub kind: Kind,
}

/// What a planned request reads; decides scrubbing and what feeds the VM definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Versions,
    Instance {
        extended: bool,
    },
    Attested,
    LoadBalancer,
    IdentityInfo,
    Token,
    ScheduledEvents,
    /// Recorded as answered; nothing is derived from it (refused requests, a leaf).
    Other,
}

impl Kind {
    /// Whether the same request gets the same bytes every time from an unchanged VM (a token,
    /// an attested document and the request-id header do not).
    pub fn is_deterministic(self) -> bool {
        !matches!(self, Kind::Attested | Kind::Token)
    }
}

/// The requests that depend on nothing: the versions list comes first, the rest follow it.
pub fn versions_request() -> Planned {
    Planned {
        name: "versions".into(),
        target: "/metadata/versions".into(),
        metadata: true,
        kind: Kind::Versions,
    }
}

/// Every request after `/metadata/versions`, for the `versions` it listed (newest last).
pub fn requests(versions: &[String]) -> Vec<Planned> {
    let mut plan = Vec::new();
    let mut add = |name: String, target: String, metadata: bool, kind: Kind| {
        plan.push(Planned {
            name,
            target,
            metadata,
            kind,
        });
    };
    for version in versions {
        add(
            format!("instance/{version}"),
            format!("/metadata/instance?api-version={version}"),
            true,
            Kind::Instance { extended: false },
        );
        add(
            format!("instance/{version}-extended"),
            format!("/metadata/instance?api-version={version}&extended=true"),
            true,
            Kind::Instance { extended: true },
        );
        add(
            format!("attested/document/{version}"),
            format!("/metadata/attested/document?api-version={version}"),
            true,
            Kind::Attested,
        );
        add(
            format!("loadbalancer/{version}"),
            format!("/metadata/loadbalancer?api-version={version}"),
            true,
            Kind::LoadBalancer,
        );
        add(
            format!("identity/info/{version}"),
            format!("/metadata/identity/info?api-version={version}"),
            true,
            Kind::IdentityInfo,
        );
    }
    for version in EventsVersion::all() {
        let version = version.as_str();
        add(
            format!("scheduledevents/{version}"),
            format!("/metadata/scheduledevents?api-version={version}"),
            true,
            Kind::ScheduledEvents,
        );
    }
    let resource =
        percent_encoding::utf8_percent_encode(TOKEN_RESOURCE, percent_encoding::NON_ALPHANUMERIC);
    add(
        format!("identity/oauth2/token/{TOKEN_VERSION}"),
        format!("/metadata/identity/oauth2/token?api-version={TOKEN_VERSION}&resource={resource}"),
        true,
        Kind::Token,
    );
    let newest = versions.last().map_or("2021-02-01", String::as_str);
    for (name, target, metadata) in [
        (
            "errors/no-metadata-header",
            format!("/metadata/instance?api-version={newest}"),
            false,
        ),
        (
            "errors/identity-no-metadata-header",
            format!(
                "/metadata/identity/oauth2/token?api-version={TOKEN_VERSION}&resource={resource}"
            ),
            false,
        ),
        (
            "errors/no-api-version",
            "/metadata/instance".to_string(),
            true,
        ),
        (
            "errors/unknown-api-version",
            "/metadata/instance?api-version=latest".to_string(),
            true,
        ),
        (
            "errors/not-found",
            format!("/metadata/instance/compute/azimdsNoSuchField?api-version={newest}"),
            true,
        ),
        (
            "errors/leaf-without-format",
            format!("/metadata/instance/compute/vmId?api-version={newest}"),
            true,
        ),
        (
            "instance/compute-vmId-text",
            format!("/metadata/instance/compute/vmId?api-version={newest}&format=text"),
            true,
        ),
    ] {
        add(name.to_string(), target, metadata, Kind::Other);
    }
    plan
}
