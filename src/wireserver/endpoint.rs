//! Every URL the WireServer (port 80) and the Host GA Plugin (port 32526) answer: the only list
//! of them (wireserver.md §9.1, §6.1). Path and query rules of §9.1: `/machine` and
//! `/machine/` alike, `comp` and `type` values case-insensitively, no header required.

use crate::wireserver::error::WireError;

/// A WireServer URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `GET /?comp=versions` (§3).
    Versions,
    /// `GET /machine/?comp=goalstate` (§4).
    GoalState,
    /// `GET /machine/<container>/<instance>?comp=config&type=…` (§4.4).
    Config { container: String, kind: Config },
    /// `GET /machine/<container>/<instance>?comp=certificates` (§4.4; never linked, §6.5).
    Certificates { container: String },
    /// `POST /machine?comp=health` (§5.1).
    Health,
    /// `POST /machine?comp=telemetrydata` (§6.3).
    Telemetry,
    /// `POST /machine?comp=roleProperties` (waagent, after deploying certificates).
    RoleProperties,
    /// `POST /HealthService` (§6.4).
    HealthService,
    /// `POST /provisioning/health` (§5.2, azure-init).
    ProvisioningHealth,
    /// `PUT /status/<container>` — the goal state's `StatusUploadBlob`, waagent's direct
    /// upload when the Host GA Plugin fails (§6.2).
    StatusBlob { container: String },
}

/// The documents a goal state links (§4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Config {
    HostingEnvironment,
    Shared,
    Extensions,
    Full,
}

impl Endpoint {
    pub(super) fn parse(path: &str, query: Option<&str>) -> Result<Endpoint, WireError> {
        let query = Query::parse(query);
        let comp = query.get("comp");
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            [] => match comp {
                Some(comp) if comp.eq_ignore_ascii_case("versions") => Ok(Endpoint::Versions),
                Some(_) => Err(WireError::UnknownComp),
                None => Err(WireError::NotFound),
            },
            ["machine"] => match comp.map(str::to_ascii_lowercase).as_deref() {
                Some("goalstate") => Ok(Endpoint::GoalState),
                Some("health") => Ok(Endpoint::Health),
                Some("telemetrydata") => Ok(Endpoint::Telemetry),
                Some("roleproperties") => Ok(Endpoint::RoleProperties),
                Some(_) => Err(WireError::UnknownComp),
                None => Err(WireError::NotFound),
            },
            ["machine", container, _instance] => {
                let container = decode(container);
                match comp.map(str::to_ascii_lowercase).as_deref() {
                    Some("config") => {
                        let kind = match query.get("type").map(str::to_ascii_lowercase).as_deref() {
                            Some("hostingenvironmentconfig") => Config::HostingEnvironment,
                            Some("sharedconfig") => Config::Shared,
                            Some("extensionsconfig") => Config::Extensions,
                            Some("fullconfig") => Config::Full,
                            _ => return Err(WireError::UnknownComp),
                        };
                        Ok(Endpoint::Config { container, kind })
                    }
                    Some("certificates") => Ok(Endpoint::Certificates { container }),
                    Some(_) => Err(WireError::UnknownComp),
                    None => Err(WireError::NotFound),
                }
            }
            ["HealthService"] => Ok(Endpoint::HealthService),
            ["provisioning", "health"] => Ok(Endpoint::ProvisioningHealth),
            ["status", container] => Ok(Endpoint::StatusBlob {
                container: decode(container),
            }),
            _ => Err(WireError::NotFound),
        }
    }

    /// The one method each endpoint takes, as an `Allow` value.
    pub(super) fn method(&self) -> &'static str {
        match self {
            Endpoint::Versions
            | Endpoint::GoalState
            | Endpoint::Config { .. }
            | Endpoint::Certificates { .. } => "GET",
            Endpoint::Health
            | Endpoint::Telemetry
            | Endpoint::RoleProperties
            | Endpoint::HealthService
            | Endpoint::ProvisioningHealth => "POST",
            Endpoint::StatusBlob { .. } => "PUT",
        }
    }
}

/// A Host GA Plugin URL (§6.1, `API_VERSION = "2015-09-01"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HostPluginEndpoint {
    /// `GET /vmSettings`: 404, "does not support the vmSettings API".
    VmSettings,
    /// `GET /versions`.
    Versions,
    /// `GET /health`.
    Health,
    /// `PUT /status`: the status blob, relayed.
    Status,
    /// `PUT /vmAgentLog`: a zip of the agent's logs, accepted and discarded.
    VmAgentLog,
    /// `GET /extensionArtifact`: only with extensions, which azimds never offers: 404.
    ExtensionArtifact,
}

impl HostPluginEndpoint {
    pub(super) fn parse(path: &str) -> Result<HostPluginEndpoint, WireError> {
        match path.trim_end_matches('/') {
            "/vmSettings" => Ok(HostPluginEndpoint::VmSettings),
            "/versions" => Ok(HostPluginEndpoint::Versions),
            "/health" => Ok(HostPluginEndpoint::Health),
            "/status" => Ok(HostPluginEndpoint::Status),
            "/vmAgentLog" => Ok(HostPluginEndpoint::VmAgentLog),
            "/extensionArtifact" => Ok(HostPluginEndpoint::ExtensionArtifact),
            _ => Err(WireError::NotFound),
        }
    }

    pub(super) fn method(self) -> &'static str {
        match self {
            HostPluginEndpoint::Status | HostPluginEndpoint::VmAgentLog => "PUT",
            _ => "GET",
        }
    }
}

/// A query string's parameters, names matched case-insensitively, the first of a name wins.
struct Query<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Query<'a> {
    fn parse(query: Option<&'a str>) -> Query<'a> {
        Query(
            query
                .unwrap_or("")
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }
}

/// A path segment percent-decoded (instance ids are URL-encoded in the goal state's links).
fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_9_1_paths_and_their_spellings() {
        let parse = |target: &str| {
            let (path, query) = match target.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (target, None),
            };
            Endpoint::parse(path, query)
        };
        assert_eq!(parse("/?comp=versions"), Ok(Endpoint::Versions));
        assert_eq!(parse("/machine/?comp=goalstate"), Ok(Endpoint::GoalState));
        assert_eq!(parse("/machine?comp=goalstate"), Ok(Endpoint::GoalState));
        assert_eq!(parse("/machine?comp=GoalState"), Ok(Endpoint::GoalState));
        assert_eq!(parse("/machine?comp=health"), Ok(Endpoint::Health));
        assert_eq!(parse("/machine/?comp=health"), Ok(Endpoint::Health));
        assert_eq!(
            parse("/machine?comp=telemetrydata"),
            Ok(Endpoint::Telemetry)
        );
        assert_eq!(
            parse("/machine?comp=roleProperties"),
            Ok(Endpoint::RoleProperties)
        );
        assert_eq!(
            parse("/machine/c1/i1._vm?comp=config&type=hostingEnvironmentConfig&incarnation=1"),
            Ok(Endpoint::Config {
                container: "c1".into(),
                kind: Config::HostingEnvironment
            })
        );
        assert_eq!(
            parse("/machine/c1/i1?comp=config&type=SHAREDCONFIG"),
            Ok(Endpoint::Config {
                container: "c1".into(),
                kind: Config::Shared
            })
        );
        assert_eq!(parse("/HealthService"), Ok(Endpoint::HealthService));
        assert_eq!(
            parse("/provisioning/health"),
            Ok(Endpoint::ProvisioningHealth)
        );
        assert_eq!(
            parse("/status/c1?sv=2014-02-14&comp=page"),
            Ok(Endpoint::StatusBlob {
                container: "c1".into()
            })
        );
        assert_eq!(parse("/?comp=bogus"), Err(WireError::UnknownComp));
        assert_eq!(parse("/machine?comp=bogus"), Err(WireError::UnknownComp));
        assert_eq!(
            parse("/machine/c1/i1?comp=config&type=bogus"),
            Err(WireError::UnknownComp)
        );
        assert_eq!(parse("/"), Err(WireError::NotFound));
        assert_eq!(parse("/machine"), Err(WireError::NotFound));
        assert_eq!(parse("/metadata/instance"), Err(WireError::NotFound));
    }

    #[test]
    fn host_plugin_paths() {
        assert_eq!(
            HostPluginEndpoint::parse("/vmSettings"),
            Ok(HostPluginEndpoint::VmSettings)
        );
        assert_eq!(
            HostPluginEndpoint::parse("/status"),
            Ok(HostPluginEndpoint::Status)
        );
        assert_eq!(
            HostPluginEndpoint::parse("/other"),
            Err(WireError::NotFound)
        );
        assert_eq!(HostPluginEndpoint::Status.method(), "PUT");
        assert_eq!(HostPluginEndpoint::Versions.method(), "GET");
    }
}
