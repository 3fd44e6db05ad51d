//! Guest endpoints by name, from the request path alone: the labels of metrics, journal
//! entries and access-log lines, and what a fault rule's `endpoint` names. A leaf: it knows
//! paths, not the guest plane's router, so a request to a path that does not exist (a 404)
//! is named too (`other`), and endpoints added later need one line here.

/// A guest endpoint, as metrics and fault rules name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestEndpoint {
    Versions,
    Instance,
    ScheduledEvents,
    Token,
    IdentityInfo,
    Attested,
    LoadBalancer,
    ReprovisionData,
    /// Any other path (answered 404).
    Other,
}

impl GuestEndpoint {
    /// Every endpoint, in label-index order.
    pub const ALL: [GuestEndpoint; 9] = [
        GuestEndpoint::Versions,
        GuestEndpoint::Instance,
        GuestEndpoint::ScheduledEvents,
        GuestEndpoint::Token,
        GuestEndpoint::IdentityInfo,
        GuestEndpoint::Attested,
        GuestEndpoint::LoadBalancer,
        GuestEndpoint::ReprovisionData,
        GuestEndpoint::Other,
    ];
    pub const COUNT: usize = GuestEndpoint::ALL.len();

    /// The endpoint a path belongs to. Sub-paths belong to their root
    /// (`/metadata/instance/compute/vmId` is `instance`); one trailing slash is ignored.
    pub fn from_path(path: &str) -> GuestEndpoint {
        let Some(rest) = path.strip_prefix("/metadata/") else {
            return GuestEndpoint::Other;
        };
        let (first, tail) = match rest.bytes().position(|b| b == b'/') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, ""),
        };
        let exact = tail.is_empty();
        match first {
            "instance" => GuestEndpoint::Instance,
            "versions" if exact => GuestEndpoint::Versions,
            "scheduledevents" if exact => GuestEndpoint::ScheduledEvents,
            "identity" => match tail.strip_suffix('/').unwrap_or(tail) {
                "oauth2/token" => GuestEndpoint::Token,
                "info" => GuestEndpoint::IdentityInfo,
                _ => GuestEndpoint::Other,
            },
            "attested" => GuestEndpoint::Attested,
            "loadbalancer" => GuestEndpoint::LoadBalancer,
            "reprovisiondata" if exact => GuestEndpoint::ReprovisionData,
            _ => GuestEndpoint::Other,
        }
    }

    /// The label value (`instance`, `token`, `identity_info`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            GuestEndpoint::Versions => "versions",
            GuestEndpoint::Instance => "instance",
            GuestEndpoint::ScheduledEvents => "scheduledevents",
            GuestEndpoint::Token => "token",
            GuestEndpoint::IdentityInfo => "identity_info",
            GuestEndpoint::Attested => "attested",
            GuestEndpoint::LoadBalancer => "loadbalancer",
            GuestEndpoint::ReprovisionData => "reprovisiondata",
            GuestEndpoint::Other => "other",
        }
    }

    /// Position in [`GuestEndpoint::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether this is one of the managed-identity endpoints (answered in the OAuth style).
    pub fn is_identity(self) -> bool {
        matches!(self, GuestEndpoint::Token | GuestEndpoint::IdentityInfo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_endpoint() {
        for (path, endpoint) in [
            ("/metadata/instance", GuestEndpoint::Instance),
            ("/metadata/instance/compute/vmId", GuestEndpoint::Instance),
            ("/metadata/instancex", GuestEndpoint::Other),
            ("/metadata/versions", GuestEndpoint::Versions),
            ("/metadata/versions/", GuestEndpoint::Versions),
            ("/metadata/scheduledevents", GuestEndpoint::ScheduledEvents),
            ("/metadata/identity/oauth2/token", GuestEndpoint::Token),
            ("/metadata/identity/oauth2/token/", GuestEndpoint::Token),
            ("/metadata/identity/info", GuestEndpoint::IdentityInfo),
            ("/metadata/identity/issuecredential", GuestEndpoint::Other),
            ("/metadata/attested/document", GuestEndpoint::Attested),
            ("/metadata/loadbalancer", GuestEndpoint::LoadBalancer),
            ("/metadata/reprovisiondata", GuestEndpoint::ReprovisionData),
            ("/", GuestEndpoint::Other),
            ("/latest/meta-data", GuestEndpoint::Other),
        ] {
            assert_eq!(GuestEndpoint::from_path(path), endpoint, "{path}");
        }
        for (i, e) in GuestEndpoint::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
    }
}
