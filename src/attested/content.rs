//! The JSON an attested document signs (spec §7.3): compact, keys in alphabetical order, the
//! fields of the requested api-version only; and the `nonce` query parameter's rules (§7.1).
//!
//! Pure: the caller passes the VM's facts and the time.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::metadata::version::ApiVersion;

/// Real captures always have `expiresOn` = `createdOn` + 6 hours (§7.3).
pub const DOCUMENT_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// The oldest api-version the attested endpoint accepts (§2.2); older ones get the api-version
/// error.
pub const OLDEST_VERSION: ApiVersion = ApiVersion::V2018_10_01;

/// Whether `/metadata/attested/document` serves `version` (§2.2).
pub fn accepts(version: ApiVersion) -> bool {
    version >= OLDEST_VERSION
}

/// What a VM's attested document says about it: values of its compute document, borrowed.
/// `location` and `az_environment` pick the signing certificate (§7.5), they are not signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttestedVm<'a> {
    /// `compute.vmId`.
    pub vm_id: &'a str,
    /// `compute.subscriptionId`.
    pub subscription_id: &'a str,
    /// `compute.sku`.
    pub sku: &'a str,
    /// `compute.plan.name`, `.product`, `.publisher` (`""` for non-marketplace images).
    pub plan_name: &'a str,
    pub plan_product: &'a str,
    pub plan_publisher: &'a str,
    /// `compute.licenseType` (`""` without Azure Hybrid Benefit).
    pub license_type: &'a str,
    /// `compute.location`, e.g. `eastus`.
    pub location: &'a str,
    /// `compute.azEnvironment`, e.g. `AzurePublicCloud`.
    pub az_environment: &'a str,
}

/// The facts an attested document signs, as a VM's instance document holds them (compact
/// JSON, newest schema): read in one pass that skips every other member without building a
/// tree, since it runs once per document (a whole parse cost a tenth of the signature).
#[derive(Debug, Default, serde::Deserialize)]
pub struct InstanceFacts<'a> {
    #[serde(borrow, default)]
    compute: ComputeFacts<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ComputeFacts<'a> {
    #[serde(borrow, default)]
    vm_id: Cow<'a, str>,
    #[serde(borrow, default)]
    subscription_id: Cow<'a, str>,
    #[serde(borrow, default)]
    sku: Cow<'a, str>,
    #[serde(borrow, default)]
    plan: PlanFacts<'a>,
    #[serde(borrow, default)]
    license_type: Cow<'a, str>,
    #[serde(borrow, default)]
    location: Cow<'a, str>,
    #[serde(borrow, default)]
    az_environment: Cow<'a, str>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct PlanFacts<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    product: Cow<'a, str>,
    #[serde(borrow, default)]
    publisher: Cow<'a, str>,
}

impl<'a> InstanceFacts<'a> {
    /// Reads `instance_json`, an instance document (members left out read as `""`).
    pub fn parse(instance_json: &'a [u8]) -> Result<InstanceFacts<'a>, serde_json::Error> {
        serde_json::from_slice(instance_json)
    }

    /// The facts, borrowed.
    pub fn attested(&self) -> AttestedVm<'_> {
        let c = &self.compute;
        AttestedVm {
            vm_id: &c.vm_id,
            subscription_id: &c.subscription_id,
            sku: &c.sku,
            plan_name: &c.plan.name,
            plan_product: &c.plan.product,
            plan_publisher: &c.plan.publisher,
            license_type: &c.license_type,
            location: &c.location,
            az_environment: &c.az_environment,
        }
    }
}

/// A `nonce` query parameter that passed §7.1's recommended check: 1 to 32 ASCII letters and
/// digits. Only [`Nonce::parse`] makes one, so the JSON writer never has to escape it.
#[derive(Clone, PartialEq, Eq)]
pub struct Nonce(String);

/// Why a `nonce` was refused. Real IMDS's wording is unknown (§7.1, \[UNCERTAIN\]); the guest
/// plane picks the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// `nonce=` with no value. The caller may prefer to treat it as absent.
    #[error("the nonce is empty")]
    Empty,
    #[error("the nonce is {length} characters long; at most 32 are allowed")]
    TooLong { length: usize },
    #[error("the nonce may contain only ASCII letters and digits")]
    NotAlphanumeric,
}

/// Longest nonce the Swagger allows ("up to 32 random alphanumeric characters", §7.1).
pub const NONCE_MAX_LEN: usize = 32;

impl Nonce {
    pub fn parse(text: &str) -> Result<Nonce, NonceError> {
        if text.is_empty() {
            return Err(NonceError::Empty);
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(NonceError::NotAlphanumeric);
        }
        if text.len() > NONCE_MAX_LEN {
            return Err(NonceError::TooLong { length: text.len() });
        }
        Ok(Nonce(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// A nonce is not a secret, but the style guide keeps nonces out of logs: show only the length.
impl std::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nonce({} chars)", self.0.len())
    }
}

/// The signed fields, alphabetical (which is also the order they are written in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    LicenseType,
    Nonce,
    Plan,
    Sku,
    SubscriptionId,
    TimeStamp,
    VmId,
}

/// Each field and the api-version that introduced it (§7.3). The one table that shapes
/// versions.
const FIELDS: [(Field, ApiVersion); 7] = [
    (Field::LicenseType, ApiVersion::V2020_09_01),
    (Field::Nonce, ApiVersion::V2018_10_01),
    (Field::Plan, ApiVersion::V2018_10_01),
    (Field::Sku, ApiVersion::V2019_11_01),
    (Field::SubscriptionId, ApiVersion::V2019_04_30),
    (Field::TimeStamp, ApiVersion::V2018_10_01),
    (Field::VmId, ApiVersion::V2018_10_01),
];

/// `MM/dd/yy HH:mm:ss -0000`, always UTC (§7.3).
const TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[month]/[day]/[year repr:last_two] [hour]:[minute]:[second] -0000");
/// `yyyyMMdd-HHmmss`: the nonce IMDS makes up when the request has none (§7.3).
const DEFAULT_NONCE: &[BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]-[hour][minute][second]");

/// The compact JSON for `vm` at `version`, created at `now` (whole seconds, UTC). Without a
/// `nonce`, the nonce is `createdOn` as `yyyyMMdd-HHmmss` (the spec's recommendation, §7.3).
pub fn signed_content(
    vm: &AttestedVm<'_>,
    version: ApiVersion,
    nonce: Option<&Nonce>,
    now: SystemTime,
) -> Vec<u8> {
    let created = utc_seconds(now);
    let expires = created + DOCUMENT_LIFETIME;
    let mut members: Vec<(&str, String)> = Vec::with_capacity(FIELDS.len());
    for &(field, since) in FIELDS.iter() {
        if version < since {
            continue;
        }
        let member = match field {
            Field::LicenseType => ("licenseType", string(vm.license_type)),
            Field::Nonce => {
                let value = match nonce {
                    // Letters and digits only: no escaping needed.
                    Some(nonce) => format!("\"{}\"", nonce.as_str()),
                    None => format!("\"{}\"", format(created, DEFAULT_NONCE)),
                };
                ("nonce", value)
            }
            Field::Plan => (
                "plan",
                format!(
                    r#"{{"name":{},"product":{},"publisher":{}}}"#,
                    string(vm.plan_name),
                    string(vm.plan_product),
                    string(vm.plan_publisher)
                ),
            ),
            Field::Sku => ("sku", string(vm.sku)),
            Field::SubscriptionId => ("subscriptionId", string(vm.subscription_id)),
            Field::TimeStamp => (
                "timeStamp",
                format!(
                    r#"{{"createdOn":"{}","expiresOn":"{}"}}"#,
                    format(created, TIMESTAMP),
                    format(expires, TIMESTAMP)
                ),
            ),
            Field::VmId => ("vmId", string(vm.vm_id)),
        };
        members.push(member);
    }
    let mut out = Vec::with_capacity(320);
    out.push(b'{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'}');
    out
}

/// A JSON string literal, escaped as serde_json escapes (the instance document's writer too).
fn string(value: &str) -> String {
    serde_json::to_string(value).expect("a string serializes")
}

fn utc_seconds(now: SystemTime) -> OffsetDateTime {
    let seconds = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).unwrap_or(0))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn format(time: OffsetDateTime, description: &[BorrowedFormatItem<'static>]) -> String {
    time.format(description)
        .expect("a UTC date between 1970 and 9999 formats")
}

#[cfg(test)]
mod tests {
    #[test]
    fn instance_facts_read_the_compute_members_and_nothing_else() {
        let json = br#"{"compute":{"azEnvironment":"AzureUSGovernmentCloud","licenseType":"","location":"usgovvirginia","name":"n","plan":{"name":"p","product":"q\"r","publisher":"s"},"sku":"k","subscriptionId":"sub","tagsList":[{"name":"a","value":"b"}],"vmId":"id"},"network":{"interface":[]}}"#;
        let facts = super::InstanceFacts::parse(json).unwrap();
        let vm = facts.attested();
        assert_eq!(
            (
                vm.vm_id,
                vm.subscription_id,
                vm.sku,
                vm.location,
                vm.az_environment
            ),
            ("id", "sub", "k", "usgovvirginia", "AzureUSGovernmentCloud")
        );
        assert_eq!(
            (vm.plan_name, vm.plan_product, vm.plan_publisher),
            ("p", "q\"r", "s")
        );
        let empty = super::InstanceFacts::parse(b"{}").unwrap();
        assert_eq!(empty.attested(), super::AttestedVm::default());
    }

    use super::*;
    use time::macros::datetime;

    fn at(time: OffsetDateTime) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(time.unix_timestamp() as u64)
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    const VM: AttestedVm<'static> = AttestedVm {
        vm_id: "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
        subscription_id: "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e",
        sku: "22_04-lts-gen2",
        plan_name: "",
        plan_product: "",
        plan_publisher: "",
        license_type: "",
        location: "eastus",
        az_environment: "AzurePublicCloud",
    };

    #[test]
    fn newest_version_matches_the_spec_compact_example() {
        // §7.3's example: no nonce requested, so the nonce is createdOn.
        let doc = signed_content(
            &VM,
            ApiVersion::NEWEST,
            None,
            at(datetime!(2024-03-01 06:00:00 UTC)),
        );
        assert_eq!(
            text(doc),
            r#"{"licenseType":"","nonce":"20240301-060000","plan":{"name":"","product":"","publisher":""},"sku":"22_04-lts-gen2","subscriptionId":"aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e","timeStamp":{"createdOn":"03/01/24 06:00:00 -0000","expiresOn":"03/01/24 12:00:00 -0000"},"vmId":"02aab8a4-74ef-476e-8182-f6d2ba4166a6"}"#
        );
    }

    #[test]
    fn oldest_version_matches_the_docs_2018_decode() {
        // The docs' 2018-10-01 sample, except `expiresOn`: the docs' 45-second gap is test
        // data, real captures (and we) use 6 hours (§7.3).
        let vm = AttestedVm { vm_id: "", ..VM };
        let nonce = Nonce::parse("1234566766").unwrap();
        let doc = signed_content(
            &vm,
            ApiVersion::V2018_10_01,
            Some(&nonce),
            at(datetime!(2018-11-20 22:07:39 UTC)),
        );
        assert_eq!(
            text(doc),
            r#"{"nonce":"1234566766","plan":{"name":"","product":"","publisher":""},"timeStamp":{"createdOn":"11/20/18 22:07:39 -0000","expiresOn":"11/21/18 04:07:39 -0000"},"vmId":""}"#
        );
    }

    #[test]
    fn fields_appear_at_their_versions() {
        let keys_at = |version: &str| {
            let doc = signed_content(
                &VM,
                ApiVersion::parse(version).unwrap(),
                None,
                at(datetime!(2024-03-01 06:00:00 UTC)),
            );
            let value: serde_json::Value = serde_json::from_slice(&doc).unwrap();
            value
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        };
        let base = ["nonce", "plan", "timeStamp", "vmId"];
        assert_eq!(keys_at("2018-10-01"), base);
        assert_eq!(keys_at("2019-03-11"), base);
        assert_eq!(
            keys_at("2019-04-30"),
            ["nonce", "plan", "subscriptionId", "timeStamp", "vmId"]
        );
        assert_eq!(
            keys_at("2019-11-01"),
            [
                "nonce",
                "plan",
                "sku",
                "subscriptionId",
                "timeStamp",
                "vmId"
            ]
        );
        assert_eq!(
            keys_at("2020-07-15"),
            [
                "nonce",
                "plan",
                "sku",
                "subscriptionId",
                "timeStamp",
                "vmId"
            ]
        );
        assert_eq!(
            keys_at("2020-09-01"),
            [
                "licenseType",
                "nonce",
                "plan",
                "sku",
                "subscriptionId",
                "timeStamp",
                "vmId"
            ]
        );
    }

    #[test]
    fn accepts_2018_10_01_and_later_only() {
        assert!(!accepts(ApiVersion::V2018_04_02));
        assert!(accepts(ApiVersion::V2018_10_01));
        assert!(accepts(ApiVersion::NEWEST));
        assert_eq!(ApiVersion::all().filter(|v| accepts(*v)).count(), 28);
    }

    #[test]
    fn timestamps_are_utc_two_digit_years_and_six_hours_apart() {
        let doc = signed_content(
            &VM,
            ApiVersion::NEWEST,
            None,
            // Sub-second parts are dropped; the 6 hours cross midnight and the year.
            at(datetime!(2029-12-31 21:05:09 UTC)) + Duration::from_millis(999),
        );
        let value: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(value["timeStamp"]["createdOn"], "12/31/29 21:05:09 -0000");
        assert_eq!(value["timeStamp"]["expiresOn"], "01/01/30 03:05:09 -0000");
        assert_eq!(value["nonce"], "20291231-210509");
    }

    #[test]
    fn values_are_json_escaped() {
        let vm = AttestedVm {
            plan_name: "a\"b\\c\u{1}",
            sku: "é",
            ..VM
        };
        let doc = signed_content(&vm, ApiVersion::NEWEST, None, SystemTime::UNIX_EPOCH);
        let value: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(value["plan"]["name"], "a\"b\\c\u{1}");
        assert_eq!(value["sku"], "é");
        assert!(text(doc).contains(r#""name":"a\"b\\c\u0001""#));
    }

    #[test]
    fn nonce_is_one_to_32_ascii_alphanumerics() {
        assert_eq!(Nonce::parse("1234567890").unwrap().as_str(), "1234567890");
        let longest = "aZ09".repeat(8);
        assert_eq!(Nonce::parse(&longest).unwrap().as_str(), longest);
        assert_eq!(Nonce::parse(""), Err(NonceError::Empty));
        assert_eq!(
            Nonce::parse(&"a".repeat(33)),
            Err(NonceError::TooLong { length: 33 })
        );
        for bad in ["12-34", "a b", "\"", "ü", "abc\n", "%41"] {
            assert_eq!(
                Nonce::parse(bad),
                Err(NonceError::NotAlphanumeric),
                "{bad:?}"
            );
        }
        assert!(!format!("{:?}", Nonce::parse("secret").unwrap()).contains("secret"));
    }
}
