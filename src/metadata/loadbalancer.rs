//! Load balancer metadata (spec §8): a VM definition's `loadBalancer` member checked into a
//! [`LoadBalancer`], and the `GET /metadata/loadbalancer` body rendered from it, compact, in
//! the docs' key order (§8.3: not alphabetical), ports as JSON integers. Also the §8.4 error
//! messages. Pure: no IO, no HTTP.
//!
//! The definition is the inner object of the response:
//!
//! ```yaml
//! loadBalancer:
//!   publicIpAddresses: [{frontendIpAddress: 51.0.0.1, privateIpAddress: 10.1.0.4}]
//!   inboundRules: [{frontendIpAddress: 50.0.0.1, protocol: tcp, frontendPort: 80,
//!                   backendPort: 443, privateIpAddress: 10.1.0.4}]
//!   outboundRules: [{frontendIpAddress: 50.0.0.1, privateIpAddress: 10.1.0.4}]
//!   tunnelInterfaces: [...]   # gateway load balancer only
//! ```
//!
//! The three lists may be left out (they are served as `[]`, as real responses show, e.g.
//! insights-core's captured sample); `tunnelInterfaces` is served only when given.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value};

/// A checked `loadBalancer` definition. Field order is the response's key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    pub public_ip_addresses: Vec<PublicIpAddress>,
    pub inbound_rules: Vec<InboundRule>,
    pub outbound_rules: Vec<OutboundRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel_interfaces: Option<Vec<TunnelInterface>>,
}

/// An instance-level public IP and the private IP it maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicIpAddress {
    pub frontend_ip_address: String,
    pub private_ip_address: String,
}

/// A load-balancing or inbound NAT rule targeting the VM (port 0: an all-ports rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundRule {
    pub frontend_ip_address: String,
    pub protocol: String,
    pub frontend_port: u16,
    pub backend_port: u16,
    pub private_ip_address: String,
}

/// An outbound SNAT frontend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundRule {
    pub frontend_ip_address: String,
    pub private_ip_address: String,
}

/// A gateway load balancer's tunnel (§8.2; nesting and order as the docs list them,
/// \[UNCERTAIN\]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelInterface {
    pub gateway_ip_address: String,
    pub gateway_port: u16,
    pub identifier: u32,
    /// `internal` or `external`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `vxlan`.
    pub protocol: String,
    pub local_ip_address: String,
    pub local_port: u16,
}

/// Problems as `(path, message)`, the path relative to `loadBalancer`, e.g.
/// `inboundRules[1].frontendPort`.
pub type Problems = Vec<(String, String)>;

impl LoadBalancer {
    /// Checks a definition's `loadBalancer` value, reporting every problem at once.
    pub fn from_json(value: &Value) -> Result<LoadBalancer, Problems> {
        let mut problems = Problems::new();
        let Value::Object(map) = value else {
            return Err(vec![(String::new(), "expected an object".into())]);
        };
        unknown_members(map, "", &SECTIONS, &mut problems);
        let public = list(map, "publicIpAddresses", public_ip_address, &mut problems);
        let inbound = list(map, "inboundRules", inbound_rule, &mut problems);
        let outbound = list(map, "outboundRules", outbound_rule, &mut problems);
        let tunnels = list(map, "tunnelInterfaces", tunnel_interface, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(LoadBalancer {
            public_ip_addresses: public.unwrap_or_default(),
            inbound_rules: inbound.unwrap_or_default(),
            outbound_rules: outbound.unwrap_or_default(),
            tunnel_interfaces: tunnels,
        })
    }

    /// The response body: `{"loadbalancer":{…}}`, compact.
    pub fn response_body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            loadbalancer: &'a LoadBalancer,
        }
        serde_json::to_vec(&Body { loadbalancer: self }).expect("plain structs serialize")
    }
}

/// What `GET /metadata/loadbalancer` answers for a VM whose definition has a `loadBalancer`:
/// the response body, rendered once when the definition is checked, or one of §8.4's
/// outages, which an operator sets to see how a client copes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// `{"loadbalancer":{…}}`.
    Body(bytes::Bytes),
    Outage(Outage),
}

/// The §8.4 answers that say "not now" rather than "no load balancer", by the name a
/// definition gives them (`loadBalancer: notAvailableRightNow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// 404 [`messages::NOT_AVAILABLE_RIGHT_NOW`]: the data lags the load balancer (§8.3).
    NotAvailableRightNow,
    /// 404 [`messages::NOT_CURRENTLY_AVAILABLE`].
    NotCurrentlyAvailable,
    /// 503 [`messages::SERVICE_UNAVAILABLE`].
    ServiceUnavailable,
}

impl Outage {
    /// Every outage and its name in a definition.
    pub const NAMES: [(&'static str, Outage); 3] = [
        ("notAvailableRightNow", Outage::NotAvailableRightNow),
        ("notCurrentlyAvailable", Outage::NotCurrentlyAvailable),
        ("serviceUnavailable", Outage::ServiceUnavailable),
    ];

    fn from_name(name: &str) -> Option<Outage> {
        Outage::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, outage)| *outage)
    }
}

impl Served {
    /// Checks a definition's `loadBalancer`: an object (the response's inner object) or the
    /// name of an [`Outage`].
    pub fn from_json(value: &Value) -> Result<Served, Problems> {
        match value {
            Value::String(name) => Outage::from_name(name).map(Served::Outage).ok_or_else(|| {
                let names: Vec<&str> = Outage::NAMES.iter().map(|(n, _)| *n).collect();
                vec![(
                    String::new(),
                    format!(
                        "{name:?} is not an outage; expected an object or one of {}",
                        names.join(", ")
                    ),
                )]
            }),
            _ => LoadBalancer::from_json(value).map(|lb| Served::Body(lb.response_body().into())),
        }
    }
}

/// [`LoadBalancer::from_json`]'s problems alone (none for a valid definition).
pub fn validate(value: &Value) -> Problems {
    LoadBalancer::from_json(value).err().unwrap_or_default()
}

/// The error messages of §8.4, exactly as the troubleshooting page prints them (in the older,
/// uncontracted form the service most likely returns). Placeholders are filled by the
/// functions; the limits of the four length messages are unknown, so only their prefixes are
/// given. The body wrapping (`{"error":"…"}` by analogy) is the guest plane's.
pub mod messages {
    /// 400.
    pub fn missing_parameter(name: &str) -> String {
        format!("Missing required parameter \"{name}\". Please fix the request and retry.")
    }
    /// 400.
    pub fn parameter_value_not_allowed(name: &str, value: &str) -> String {
        format!(
            "Parameter value is not allowed, or parameter value \"{value}\" is not allowed for parameter \"{name}\". Please fix the request and retry."
        )
    }
    /// 400.
    pub const UNEXPECTED_REQUEST: &str =
        "Unexpected request. Please check the query parameters and retry.";
    /// 404: the VM has no (Standard SKU) load balancer.
    pub const NO_LOAD_BALANCER: &str = "No load balancer metadata is found. Please check if your VM is using any nonbasic SKU load balancer and retry later.";
    /// 404.
    pub fn api_not_found(path: &str, method: &str) -> String {
        format!("API is not found: Path = \"{path}\", Method = \"{method}\"")
    }
    /// 405.
    pub fn method_not_allowed(path: &str, method: &str) -> String {
        format!("Http method is not allowed: Path = \"{path}\", Method = \"{method}\"")
    }
    /// 429.
    pub const TOO_MANY_REQUESTS: &str = "Too many requests";
    /// 400, followed by the limit (unknown).
    pub const BODY_TOO_LONG_PREFIX: &str = "Request body is larger than MaxBodyLength: ";
    /// 400, followed by the limit (unknown).
    pub const PARAMETER_KEY_TOO_LONG_PREFIX: &str =
        "Parameter key length is larger than MaxParameterKeyLength: ";
    /// 400, followed by the limit (unknown).
    pub const PARAMETER_VALUE_TOO_LONG_PREFIX: &str =
        "Parameter value length is larger than MaxParameterValueLength: ";
    /// 400, followed by the limit (unknown).
    pub const HEADER_VALUE_TOO_LONG_PREFIX: &str =
        "Parameter header value length is larger than MaxHeaderValueLength: ";
    /// 404: the data lags the load balancer's configuration (§8.3).
    pub const NOT_AVAILABLE_RIGHT_NOW: &str =
        "Load Balancer metadata API is not available right now. Please retry later";
    /// 404.
    pub const NOT_CURRENTLY_AVAILABLE: &str = "/metadata/loadbalancer is not currently available";
    /// 503.
    pub const SERVICE_UNAVAILABLE: &str = "Internal service unavailable. Please retry later.";
}

const SECTIONS: [&str; 4] = [
    "publicIpAddresses",
    "inboundRules",
    "outboundRules",
    "tunnelInterfaces",
];

/// The list at `key` (absent or `null`: `None`), each entry checked by `entry`.
fn list<T>(
    map: &Map<String, Value>,
    key: &str,
    entry: fn(&mut Entry<'_>) -> Option<T>,
    problems: &mut Problems,
) -> Option<Vec<T>> {
    let values = match map.get(key) {
        None | Some(Value::Null) => return None,
        Some(Value::Array(values)) => values,
        Some(_) => {
            problems.push((key.into(), "expected a list".into()));
            return None;
        }
    };
    let mut items = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let path = format!("{key}[{i}]");
        let Value::Object(fields) = value else {
            problems.push((path, "expected an object".into()));
            continue;
        };
        let mut checked = Entry {
            fields,
            path,
            problems,
        };
        if let Some(item) = entry(&mut checked) {
            items.push(item);
        }
    }
    Some(items)
}

/// One list entry being checked: its members, its path and where problems go.
struct Entry<'a> {
    fields: &'a Map<String, Value>,
    path: String,
    problems: &'a mut Problems,
}

impl Entry<'_> {
    fn problem(&mut self, key: &str, message: String) {
        self.problems
            .push((format!("{}.{key}", self.path), message));
    }

    /// Reports members other than `known`; call once per entry.
    fn only(&mut self, known: &[&str]) {
        unknown_members(self.fields, &self.path, known, self.problems);
    }

    fn ip(&mut self, key: &str) -> Option<String> {
        let text = self.string(key)?;
        if text.parse::<IpAddr>().is_err() {
            self.problem(key, format!("{text:?} is not an IPv4 or IPv6 address"));
            return None;
        }
        Some(text)
    }

    fn port(&mut self, key: &str) -> Option<u16> {
        match self.fields.get(key) {
            None => self.missing(key),
            Some(value) => match value.as_u64().and_then(|n| u16::try_from(n).ok()) {
                Some(port) => Some(port),
                None => {
                    self.problem(key, "expected an integer port, 0 to 65535".into());
                    None
                }
            },
        }
    }

    fn identifier(&mut self, key: &str) -> Option<u32> {
        match self.fields.get(key) {
            None => self.missing(key),
            Some(value) => match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(id) => Some(id),
                None => {
                    self.problem(key, "expected a non-negative integer".into());
                    None
                }
            },
        }
    }

    fn one_of(&mut self, key: &str, allowed: &[&str]) -> Option<String> {
        let text = self.string(key)?;
        if !allowed.contains(&text.as_str()) {
            self.problem(
                key,
                format!("{text:?} is not one of {}", allowed.join(", ")),
            );
            return None;
        }
        Some(text)
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.fields.get(key) {
            None => self.missing(key),
            Some(Value::String(text)) => Some(text.clone()),
            Some(_) => {
                self.problem(key, "expected a string".into());
                None
            }
        }
    }

    fn missing<T>(&mut self, key: &str) -> Option<T> {
        self.problem(key, "missing".into());
        None
    }
}

fn unknown_members(map: &Map<String, Value>, path: &str, known: &[&str], problems: &mut Problems) {
    for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
        let at = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        problems.push((at, format!("unknown member; expected {}", known.join(", "))));
    }
}

fn public_ip_address(entry: &mut Entry<'_>) -> Option<PublicIpAddress> {
    entry.only(&["frontendIpAddress", "privateIpAddress"]);
    let frontend_ip_address = entry.ip("frontendIpAddress");
    let private_ip_address = entry.ip("privateIpAddress");
    Some(PublicIpAddress {
        frontend_ip_address: frontend_ip_address?,
        private_ip_address: private_ip_address?,
    })
}

fn inbound_rule(entry: &mut Entry<'_>) -> Option<InboundRule> {
    entry.only(&[
        "frontendIpAddress",
        "protocol",
        "frontendPort",
        "backendPort",
        "privateIpAddress",
    ]);
    let frontend_ip_address = entry.ip("frontendIpAddress");
    // `all`: HA-ports and gateway load balancer rules (§8.2).
    let protocol = entry.one_of("protocol", &["tcp", "udp", "all"]);
    let frontend_port = entry.port("frontendPort");
    let backend_port = entry.port("backendPort");
    let private_ip_address = entry.ip("privateIpAddress");
    Some(InboundRule {
        frontend_ip_address: frontend_ip_address?,
        protocol: protocol?,
        frontend_port: frontend_port?,
        backend_port: backend_port?,
        private_ip_address: private_ip_address?,
    })
}

fn outbound_rule(entry: &mut Entry<'_>) -> Option<OutboundRule> {
    entry.only(&["frontendIpAddress", "privateIpAddress"]);
    let frontend_ip_address = entry.ip("frontendIpAddress");
    let private_ip_address = entry.ip("privateIpAddress");
    Some(OutboundRule {
        frontend_ip_address: frontend_ip_address?,
        private_ip_address: private_ip_address?,
    })
}

fn tunnel_interface(entry: &mut Entry<'_>) -> Option<TunnelInterface> {
    entry.only(&[
        "gatewayIpAddress",
        "gatewayPort",
        "identifier",
        "type",
        "protocol",
        "localIpAddress",
        "localPort",
    ]);
    let gateway_ip_address = entry.ip("gatewayIpAddress");
    let gateway_port = entry.port("gatewayPort");
    let identifier = entry.identifier("identifier");
    let kind = entry.one_of("type", &["internal", "external"]);
    let protocol = entry.one_of("protocol", &["vxlan"]);
    let local_ip_address = entry.ip("localIpAddress");
    let local_port = entry.port("localPort");
    Some(TunnelInterface {
        gateway_ip_address: gateway_ip_address?,
        gateway_port: gateway_port?,
        identifier: identifier?,
        kind: kind?,
        protocol: protocol?,
        local_ip_address: local_ip_address?,
        local_port: local_port?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// §8.2's example response, as the docs print it (compact here).
    const SPEC_EXAMPLE: &str = r#"{"loadbalancer":{"publicIpAddresses":[{"frontendIpAddress":"51.0.0.1","privateIpAddress":"10.1.0.4"}],"inboundRules":[{"frontendIpAddress":"50.0.0.1","protocol":"tcp","frontendPort":80,"backendPort":443,"privateIpAddress":"10.1.0.4"},{"frontendIpAddress":"2603:10e1:100:2::1:1","protocol":"tcp","frontendPort":80,"backendPort":443,"privateIpAddress":"ace:cab:deca:deed::1"}],"outboundRules":[{"frontendIpAddress":"50.0.0.1","privateIpAddress":"10.1.0.4"},{"frontendIpAddress":"2603:10e1:100:2::1:1","privateIpAddress":"ace:cab:deca:deed::1"}]}}"#;

    fn text(lb: &LoadBalancer) -> String {
        String::from_utf8(lb.response_body()).unwrap()
    }

    #[test]
    fn spec_example_comes_out_byte_for_byte() {
        // Written in YAML with members in another order: the output order is the docs'.
        let definition: Value = serde_yaml_ng::from_str(
            r#"
outboundRules:
  - {privateIpAddress: 10.1.0.4, frontendIpAddress: 50.0.0.1}
  - {privateIpAddress: "ace:cab:deca:deed::1", frontendIpAddress: "2603:10e1:100:2::1:1"}
inboundRules:
  - {privateIpAddress: 10.1.0.4, backendPort: 443, frontendPort: 80, protocol: tcp, frontendIpAddress: 50.0.0.1}
  - {privateIpAddress: "ace:cab:deca:deed::1", backendPort: 443, frontendPort: 80, protocol: tcp, frontendIpAddress: "2603:10e1:100:2::1:1"}
publicIpAddresses:
  - {privateIpAddress: 10.1.0.4, frontendIpAddress: 51.0.0.1}
"#,
        )
        .unwrap();
        let lb = LoadBalancer::from_json(&definition).unwrap();
        assert_eq!(text(&lb), SPEC_EXAMPLE);
        // The spec's own inner object, as JSON, is a valid definition of itself.
        let response: Value = serde_json::from_str(SPEC_EXAMPLE).unwrap();
        let lb = LoadBalancer::from_json(&response["loadbalancer"]).unwrap();
        assert_eq!(text(&lb), SPEC_EXAMPLE);
    }

    #[test]
    fn missing_lists_are_empty_and_tunnels_only_when_given() {
        let lb = LoadBalancer::from_json(&json!({})).unwrap();
        assert_eq!(
            text(&lb),
            r#"{"loadbalancer":{"publicIpAddresses":[],"inboundRules":[],"outboundRules":[]}}"#
        );
        let lb = LoadBalancer::from_json(&json!({
            "inboundRules": [{"frontendIpAddress": "10.0.0.10", "protocol": "all",
                "frontendPort": 0, "backendPort": 0, "privateIpAddress": "10.0.0.4"}],
            "tunnelInterfaces": [{"localPort": 10800, "localIpAddress": "10.0.0.4",
                "protocol": "vxlan", "type": "internal", "identifier": 800,
                "gatewayPort": 10800, "gatewayIpAddress": "10.0.1.4"}]
        }))
        .unwrap();
        assert_eq!(
            text(&lb),
            r#"{"loadbalancer":{"publicIpAddresses":[],"inboundRules":[{"frontendIpAddress":"10.0.0.10","protocol":"all","frontendPort":0,"backendPort":0,"privateIpAddress":"10.0.0.4"}],"outboundRules":[],"tunnelInterfaces":[{"gatewayIpAddress":"10.0.1.4","gatewayPort":10800,"identifier":800,"type":"internal","protocol":"vxlan","localIpAddress":"10.0.0.4","localPort":10800}]}}"#
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let problems = validate(&json!({
            "publicIpAddresses": [{"frontendIpAddress": "51.0.0.1"}],
            "inboundRules": [
                {"frontendIpAddress": "50.0.0.1", "protocol": "tcp", "frontendPort": 80,
                 "backendPort": 443, "privateIpAddress": "10.1.0.4"},
                {"frontendIpAddress": "999.0.0.1", "protocol": "icmp", "frontendPort": 70000,
                 "backendPort": "443", "privateIpAddress": "10.1.0.4", "extra": 1},
                "not an object"
            ],
            "outboundRules": {"frontendIpAddress": "50.0.0.1"},
            "tunnelInterfaces": [{"gatewayIpAddress": "10.0.1.4", "gatewayPort": -1,
                "identifier": 1.5, "type": "sideways", "protocol": "gre",
                "localIpAddress": "10.0.0.4", "localPort": 10800}],
            "inboundRule": []
        }));
        let expected: &[(&str, &str)] = &[
            (
                "inboundRule",
                "unknown member; expected publicIpAddresses, inboundRules, outboundRules, tunnelInterfaces",
            ),
            ("publicIpAddresses[0].privateIpAddress", "missing"),
            (
                "inboundRules[1].extra",
                "unknown member; expected frontendIpAddress, protocol, frontendPort, backendPort, privateIpAddress",
            ),
            (
                "inboundRules[1].frontendIpAddress",
                "\"999.0.0.1\" is not an IPv4 or IPv6 address",
            ),
            (
                "inboundRules[1].protocol",
                "\"icmp\" is not one of tcp, udp, all",
            ),
            (
                "inboundRules[1].frontendPort",
                "expected an integer port, 0 to 65535",
            ),
            (
                "inboundRules[1].backendPort",
                "expected an integer port, 0 to 65535",
            ),
            ("inboundRules[2]", "expected an object"),
            ("outboundRules", "expected a list"),
            (
                "tunnelInterfaces[0].gatewayPort",
                "expected an integer port, 0 to 65535",
            ),
            (
                "tunnelInterfaces[0].identifier",
                "expected a non-negative integer",
            ),
            (
                "tunnelInterfaces[0].type",
                "\"sideways\" is not one of internal, external",
            ),
            (
                "tunnelInterfaces[0].protocol",
                "\"gre\" is not one of vxlan",
            ),
        ];
        let got: Vec<(&str, &str)> = problems
            .iter()
            .map(|(p, m)| (p.as_str(), m.as_str()))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(
            validate(&json!([])),
            [(String::new(), "expected an object".to_string())]
        );
        assert!(validate(&json!({"publicIpAddresses": null})).is_empty());
    }

    #[test]
    fn addresses_must_be_ip_addresses_and_strings() {
        for bad in [
            json!("10.1.0"),
            json!("010.1.0.4"),
            json!("host.example"),
            json!(""),
            json!(10),
        ] {
            let problems = validate(&json!({
                "outboundRules": [{"frontendIpAddress": bad, "privateIpAddress": "::1"}]
            }));
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert_eq!(problems[0].0, "outboundRules[0].frontendIpAddress");
        }
    }

    #[test]
    fn outages_are_named_and_anything_else_is_a_problem() {
        assert_eq!(
            Served::from_json(&json!("serviceUnavailable")),
            Ok(Served::Outage(Outage::ServiceUnavailable))
        );
        assert_eq!(
            Served::from_json(&json!({})),
            Ok(Served::Body(
                br#"{"loadbalancer":{"publicIpAddresses":[],"inboundRules":[],"outboundRules":[]}}"#[..].into()
            ))
        );
        let problems = Served::from_json(&json!("down")).unwrap_err();
        assert_eq!(
            problems,
            [(
                String::new(),
                "\"down\" is not an outage; expected an object or one of notAvailableRightNow, notCurrentlyAvailable, serviceUnavailable".to_string()
            )]
        );
        assert_eq!(
            Served::from_json(&json!(3)).unwrap_err(),
            [(String::new(), "expected an object".to_string())]
        );
    }

    #[test]
    fn messages_are_the_troubleshooting_pages() {
        assert_eq!(
            messages::missing_parameter("api-version"),
            r#"Missing required parameter "api-version". Please fix the request and retry."#
        );
        assert_eq!(
            messages::parameter_value_not_allowed("format", "xml"),
            r#"Parameter value is not allowed, or parameter value "xml" is not allowed for parameter "format". Please fix the request and retry."#
        );
        assert_eq!(
            messages::api_not_found("/metadata/loadbalancer/x", "GET"),
            r#"API is not found: Path = "/metadata/loadbalancer/x", Method = "GET""#
        );
        assert_eq!(
            messages::method_not_allowed("/metadata/loadbalancer", "POST"),
            r#"Http method is not allowed: Path = "/metadata/loadbalancer", Method = "POST""#
        );
        assert_eq!(
            messages::NO_LOAD_BALANCER,
            "No load balancer metadata is found. Please check if your VM is using any nonbasic SKU load balancer and retry later."
        );
    }
}
