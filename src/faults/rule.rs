//! A fault rule: what it matches, what it does, and its limits, checked from the form users
//! write (the control API's JSON, the config file's TOML, the CLI's flags) into a [`Rule`].

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use crate::faults::preset;
pub use crate::faults::spec::{DurationText, FaultSpec};
use crate::problem::{Problem, Problems};
use crate::telemetry::metrics::FAULT_ACTIONS;

/// Statuses a rule may answer with: the ones Azure answers transiently or for bad requests
/// (spec §1.10, §1.11, §5.4), each with Azure's body.
pub const STATUSES: [u16; 6] = [400, 404, 410, 429, 500, 503];

/// What a rule does to a request it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answers this status with Azure's body for it (one of [`STATUSES`]).
    Status(u16),
    /// Waits, then answers as usual.
    Delay(Duration),
    /// Never answers: the client gives up, or the idle timeout closes the connection.
    Stall,
    /// Closes the connection with a TCP reset, unanswered.
    Reset,
    /// Answers as usual, but the connection closes after half the body (the Content-Length
    /// promises all of it).
    Truncate,
}

impl Action {
    /// The `action` metric label and journal value.
    pub fn name(self) -> &'static str {
        FAULT_ACTIONS[self.label_index()]
    }

    /// Index into `telemetry::metrics::FAULT_ACTIONS`.
    pub fn label_index(self) -> usize {
        match self {
            Action::Status(_) => 0,
            Action::Delay(_) => 1,
            Action::Stall => 2,
            Action::Reset => 3,
            Action::Truncate => 4,
        }
    }
}

/// Which paths a rule covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Everything,
    /// An endpoint's root: the path itself or anything below it.
    Under(&'static str),
    /// A raw prefix.
    Prefix(String),
}

/// An endpoint name and the root path it covers.
const ENDPOINTS: [(&str, &str); 8] = [
    ("instance", "/metadata/instance"),
    ("versions", "/metadata/versions"),
    ("scheduledevents", "/metadata/scheduledevents"),
    ("token", "/metadata/identity/oauth2/token"),
    ("identity", "/metadata/identity"),
    ("attested", "/metadata/attested"),
    ("loadbalancer", "/metadata/loadbalancer"),
    ("reprovisiondata", "/metadata/reprovisiondata"),
];

/// Token requests a rule covers, by the identity they name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityMatch {
    /// No client_id, object_id or msi_res_id.
    Unnamed,
    Named(String),
}

/// A checked rule, with its per-rule count of answers.
#[derive(Debug)]
pub struct Rule {
    pub id: Arc<str>,
    /// As the user wrote it (preset name included).
    pub spec: FaultSpec,
    pub vm: Option<String>,
    pub scope: Scope,
    pub method: Option<http::Method>,
    pub identity: Option<IdentityMatch>,
    pub resource: Option<String>,
    pub action: Action,
    /// Answers per VM.
    pub count: Option<u64>,
    pub created: SystemTime,
    /// End of the active window.
    pub until: Option<SystemTime>,
    pub probability: Option<f64>,
    pub seed: u64,
    /// Answers given, all VMs together.
    pub injected: AtomicU64,
}

impl Rule {
    /// Checks `spec` (a preset expanded first) into a rule named `id`, created at `now`.
    pub fn check(id: &str, spec: FaultSpec, now: SystemTime) -> Result<Rule, Vec<Problem>> {
        let mut problems = Problems::new();
        let effective = match &spec.preset {
            Some(name) => match preset::expand(name, &spec) {
                Ok(expanded) => expanded,
                Err(message) => return Err(vec![Problem::new("preset", message)]),
            },
            None => spec.clone(),
        };
        let scope = scope(&effective, &mut problems);
        let method = effective.method.as_deref().and_then(|m| {
            let upper = m.to_ascii_uppercase();
            http::Method::from_bytes(upper.as_bytes())
                .map_err(|_| problems.push("method", format!("{m:?} is not an HTTP method")))
                .ok()
        });
        let action = action(&effective, &mut problems);
        let until = duration(&effective.duration, "duration", &mut problems).map(|d| now + d);
        if effective.count == Some(0) {
            problems.push("count", "expected at least 1");
        }
        if let Some(p) = effective.probability
            && !(p > 0.0 && p <= 1.0)
        {
            problems.push("probability", "expected more than 0 and at most 1");
        }
        if effective.vm.as_deref() == Some("") {
            problems.push("vm", "expected a VM id (leave it out for every VM)");
        }
        if effective.resource.as_deref() == Some("") {
            problems.push("resource", "expected a resource (leave it out for any)");
        }
        let identity = match effective.identity.as_deref() {
            None => None,
            Some("") => {
                problems.push("identity", "expected an identity (leave it out for any)");
                None
            }
            Some(s) if s.eq_ignore_ascii_case("system") => Some(IdentityMatch::Unnamed),
            Some(s) => Some(IdentityMatch::Named(s.to_string())),
        };
        let problems = problems.into_vec();
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Rule {
            id: Arc::from(id),
            vm: effective.vm.clone(),
            scope,
            method,
            identity,
            resource: effective.resource.clone(),
            action: action.expect("checked above"),
            count: effective.count,
            created: now,
            until,
            probability: effective.probability,
            seed: effective.seed.unwrap_or_else(|| fastrand::u64(..)),
            injected: AtomicU64::new(0),
            spec,
        })
    }

    /// Whether the rule covers a request of this method, path and query, when `now` is in
    /// its window. Limits (count, probability) are the VM's to apply.
    pub fn covers(&self, method: &http::Method, path: &str, query: Option<&str>) -> bool {
        let in_scope = match &self.scope {
            Scope::Everything => true,
            Scope::Under(root) => path
                .strip_prefix(root)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            Scope::Prefix(prefix) => path.starts_with(prefix.as_str()),
        };
        in_scope
            && self.method.as_ref().is_none_or(|m| m == method)
            && self.covers_identity(query)
            && self.resource.as_deref().is_none_or(|wanted| {
                query_value(query, "resource").is_some_and(|r| same_resource(&r, wanted))
            })
    }

    fn covers_identity(&self, query: Option<&str>) -> bool {
        let Some(wanted) = &self.identity else {
            return true;
        };
        let mut named = [
            "client_id",
            "object_id",
            "msi_res_id",
            "mi_res_id",
            "msi-res-id",
        ]
        .iter()
        .filter_map(|name| query_value(query, name))
        .filter(|v| !v.is_empty());
        match wanted {
            IdentityMatch::Unnamed => named.next().is_none(),
            IdentityMatch::Named(id) => named.any(|v| v.eq_ignore_ascii_case(id)),
        }
    }

    /// Whether the window has passed.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.until.is_some_and(|until| now >= until)
    }
}

/// Resources compare in any ASCII case, ignoring one trailing slash (Entra treats
/// `https://management.azure.com` and `…/` alike).
fn same_resource(a: &str, b: &str) -> bool {
    let trim = |s: &str| s.strip_suffix('/').unwrap_or(s).to_string();
    trim(a).eq_ignore_ascii_case(&trim(b))
}

/// The decoded value of parameter `name` (`+` is a space), if present.
fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<Cow<'q, str>> {
    query?.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then(|| {
            let v = if v.contains('+') {
                Cow::Owned(v.replace('+', " "))
            } else {
                Cow::Borrowed(v)
            };
            match percent_encoding::percent_decode_str(&v).decode_utf8_lossy() {
                Cow::Borrowed(_) => v,
                Cow::Owned(decoded) => Cow::Owned(decoded),
            }
        })
    })
}

fn scope(spec: &FaultSpec, problems: &mut Problems) -> Scope {
    match (&spec.endpoint, &spec.path) {
        (Some(_), Some(_)) => {
            problems.push("path", "give an endpoint or a path, not both");
            Scope::Everything
        }
        (Some(name), None) => match ENDPOINTS.iter().find(|(n, _)| n == name) {
            Some((_, root)) => Scope::Under(root),
            None => {
                let names: Vec<&str> = ENDPOINTS.iter().map(|(n, _)| *n).collect();
                problems.push(
                    "endpoint",
                    format!(
                        "unknown endpoint {name:?}; expected one of {}",
                        names.join(", ")
                    ),
                );
                Scope::Everything
            }
        },
        (None, Some(path)) if !path.starts_with('/') => {
            problems.push("path", "expected a path starting with /");
            Scope::Everything
        }
        (None, Some(path)) => Scope::Prefix(path.clone()),
        (None, None) => Scope::Everything,
    }
}

fn action(spec: &FaultSpec, problems: &mut Problems) -> Option<Action> {
    let implied = match (&spec.status, &spec.delay) {
        (Some(_), None) => "status",
        (None, Some(_)) => "delay",
        _ => "",
    };
    let name = spec.action.as_deref().unwrap_or(implied);
    let action = match name {
        "status" => {
            let status = spec.status.filter(|s| STATUSES.contains(s));
            if status.is_none() {
                problems.push(
                    "status",
                    "expected one of 400, 404, 410, 429, 500, 503 (Azure's transient and request errors)",
                );
            }
            status.map(Action::Status)
        }
        "delay" => match duration(&spec.delay, "delay", problems) {
            Some(d) => Some(Action::Delay(d)),
            None => {
                if spec.delay.is_none() {
                    problems.push("delay", "a delay action needs a delay, e.g. 2s");
                }
                None
            }
        },
        "stall" => Some(Action::Stall),
        "reset" => Some(Action::Reset),
        "truncate" => Some(Action::Truncate),
        "" => {
            problems.push(
                "action",
                "say what the rule does: action status (with status), delay (with delay), stall, reset or truncate, or a preset",
            );
            None
        }
        other => {
            problems.push(
                "action",
                format!(
                    "unknown action {other:?}; expected status, delay, stall, reset or truncate"
                ),
            );
            None
        }
    };
    let stray = match action {
        Some(Action::Status(_)) => spec.delay.is_some().then_some("delay"),
        Some(Action::Delay(_)) => spec.status.is_some().then_some("status"),
        Some(_) => spec
            .status
            .map(|_| "status")
            .or(spec.delay.as_ref().map(|_| "delay")),
        None => None,
    };
    if let Some(member) = stray {
        problems.push(member, format!("not used by the {name} action"));
    }
    action
}

fn duration(value: &Option<DurationText>, path: &str, problems: &mut Problems) -> Option<Duration> {
    match value.as_ref()?.parse() {
        Ok(d) if d.is_zero() => {
            problems.push(path, "expected more than zero");
            None
        }
        Ok(d) => Some(d),
        Err(message) => {
            problems.push(path, message);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> FaultSpec {
        serde_json::from_value(json).unwrap()
    }

    fn check(json: serde_json::Value) -> Result<Rule, Vec<Problem>> {
        Rule::check("f1", spec(json), SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn durations_take_units() {
        let d = |j: serde_json::Value| serde_json::from_value::<DurationText>(j).unwrap().parse();
        assert_eq!(d("500ms".into()), Ok(Duration::from_millis(500)));
        assert_eq!(d("70s".into()), Ok(Duration::from_secs(70)));
        assert_eq!(d("2m".into()), Ok(Duration::from_secs(120)));
        assert_eq!(d(1.5.into()), Ok(Duration::from_millis(1500)));
        assert!(d("1w".into()).is_err());
        assert!(d((-1).into()).is_err());
        assert!(d("200h".into()).is_err());
    }

    #[test]
    fn bad_rules_name_every_problem() {
        let problems = check(serde_json::json!({
            "endpoint": "nope", "status": 418, "count": 0, "probability": 1.5, "method": "G T"
        }))
        .unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["endpoint", "method", "status", "count", "probability"]
        );
        assert_eq!(check(serde_json::json!({})).unwrap_err()[0].path, "action");
        assert_eq!(
            check(serde_json::json!({"action": "reset", "status": 500})).unwrap_err()[0].path,
            "status"
        );
    }

    #[test]
    fn scope_method_identity_and_resource_match() {
        let rule = check(serde_json::json!({
            "endpoint": "instance", "status": 500, "method": "get"
        }))
        .unwrap();
        let get = http::Method::GET;
        assert!(rule.covers(&get, "/metadata/instance", None));
        assert!(rule.covers(&get, "/metadata/instance/compute/vmId", None));
        assert!(!rule.covers(&get, "/metadata/instancefoo", None));
        assert!(!rule.covers(&http::Method::POST, "/metadata/instance", None));

        let token = check(serde_json::json!({
            "endpoint": "token", "status": 500,
            "identity": "AAAA-1", "resource": "https://vault.azure.net"
        }))
        .unwrap();
        let path = "/metadata/identity/oauth2/token";
        let q = "api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net%2F&client_id=aaaa-1";
        assert!(token.covers(&get, path, Some(q)));
        assert!(!token.covers(&get, path, Some("resource=https://vault.azure.net")));
        let other = "resource=https://management.azure.com/&client_id=aaaa-1";
        assert!(!token.covers(&get, path, Some(other)));

        let system =
            check(serde_json::json!({"endpoint": "token", "status": 404, "identity": "system"}))
                .unwrap();
        assert!(system.covers(&get, path, Some("resource=x")));
        assert!(!system.covers(&get, path, Some("resource=x&object_id=o")));
    }

    fn rule(json: serde_json::Value) -> Rule {
        check(json).unwrap()
    }

    #[test]
    fn presets_stand_for_azure_behaviours() {
        let updating = rule(serde_json::json!({"preset": "imds-updating"}));
        assert_eq!(updating.action, Action::Status(410));
        assert_eq!(updating.scope, Scope::Everything);
        assert_eq!(
            updating.until,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(70))
        );
        let throttled =
            rule(serde_json::json!({"preset": "throttled", "endpoint": "token", "duration": "5s"}));
        assert_eq!(throttled.action, Action::Status(429));
        assert_eq!(
            throttled.scope,
            Scope::Under("/metadata/identity/oauth2/token")
        );
        assert_eq!(
            throttled.until,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(5))
        );
        let slow =
            rule(serde_json::json!({"preset": "slow-first-call", "duration": "3s", "vm": "a"}));
        assert_eq!(slow.action, Action::Delay(Duration::from_secs(3)));
        assert_eq!(
            (slow.count, slow.until, slow.vm.as_deref()),
            (Some(1), None, Some("a"))
        );
        assert_eq!(
            rule(serde_json::json!({"preset": "entra-outage"})).action,
            Action::Status(500)
        );
        assert_eq!(
            rule(serde_json::json!({"preset": "identity-not-ready"})).action,
            Action::Status(404)
        );
        let spec: FaultSpec =
            serde_json::from_value(serde_json::json!({"preset": "throttled", "status": 500}))
                .unwrap();
        assert!(Rule::check("f", spec, SystemTime::UNIX_EPOCH).is_err());
    }
}
