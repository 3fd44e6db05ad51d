//! Supported `api-version`s of the instance-style endpoints (spec §2.1–§2.3).
//!
//! Pure data: every other module asks this one whether a version exists and in what order.

use std::fmt;

/// A supported `api-version`. Only [`ApiVersion::parse`] creates one from request input, so
/// holding one proves support. The inner index orders versions by time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion(u8);

/// The general version list (instance, attested, identity, load balancer), oldest first.
/// ISO dates, so this order is also string order (§2.3: `/metadata/versions` is ascending).
const INSTANCE_VERSIONS: [&str; 35] = [
    "2017-03-01",
    "2017-04-02",
    "2017-08-01",
    "2017-10-01",
    "2017-12-01",
    "2018-02-01",
    "2018-04-02",
    "2018-10-01",
    "2019-02-01",
    "2019-03-11",
    "2019-04-30",
    "2019-06-01",
    "2019-06-04",
    "2019-08-01",
    "2019-08-15",
    "2019-11-01",
    "2020-06-01",
    "2020-07-15",
    "2020-09-01",
    "2020-10-01",
    "2020-12-01",
    "2021-01-01",
    "2021-02-01",
    "2021-03-01",
    "2021-05-01",
    "2021-08-01",
    "2021-10-01",
    "2021-11-01",
    "2021-11-15",
    "2021-12-13",
    "2023-07-01",
    "2023-11-15",
    "2024-03-15",
    "2024-07-17",
    "2025-04-07",
];

/// Declares a named constant for a version in the table, checked at compile time.
macro_rules! versions {
    ($($name:ident = $text:literal;)*) => {
        impl ApiVersion {
            $(
                #[doc = concat!("`", $text, "`")]
                pub const $name: ApiVersion = ApiVersion(index_of($text));
            )*
        }
    };
}

versions! {
    V2017_03_01 = "2017-03-01";
    V2017_04_02 = "2017-04-02";
    V2017_08_01 = "2017-08-01";
    V2017_12_01 = "2017-12-01";
    V2018_02_01 = "2018-02-01";
    V2018_04_02 = "2018-04-02";
    V2018_10_01 = "2018-10-01";
    V2019_02_01 = "2019-02-01";
    V2019_03_11 = "2019-03-11";
    V2019_04_30 = "2019-04-30";
    V2019_06_01 = "2019-06-01";
    V2019_06_04 = "2019-06-04";
    V2019_11_01 = "2019-11-01";
    V2020_06_01 = "2020-06-01";
    V2020_07_15 = "2020-07-15";
    V2020_09_01 = "2020-09-01";
    V2020_10_01 = "2020-10-01";
    V2020_12_01 = "2020-12-01";
    V2021_01_01 = "2021-01-01";
    V2021_02_01 = "2021-02-01";
    V2021_03_01 = "2021-03-01";
    V2021_05_01 = "2021-05-01";
    V2021_10_01 = "2021-10-01";
    V2021_11_01 = "2021-11-01";
    V2021_11_15 = "2021-11-15";
    V2021_12_13 = "2021-12-13";
    V2023_07_01 = "2023-07-01";
    V2023_11_15 = "2023-11-15";
    V2024_03_15 = "2024-03-15";
    V2025_04_07 = "2025-04-07";
}

/// `YYYY-MM-DD` as the number YYYYMMDD; `None` for any other text (so `2021-2-01` or
/// `+021-02-01`, which are not exactly a listed version, are not versions).
pub const fn date_number(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let mut n = 0u32;
    let mut i = 0;
    while i < b.len() {
        if i != 4 && i != 7 {
            if !b[i].is_ascii_digit() {
                return None;
            }
            n = n * 10 + (b[i] - b'0') as u32;
        }
        i += 1;
    }
    Some(n)
}

/// [`INSTANCE_VERSIONS`] as date numbers: ascending, as the list is oldest first (checked
/// when this is built).
const VERSION_DATES: [u32; INSTANCE_VERSIONS.len()] = {
    let mut dates = [0u32; INSTANCE_VERSIONS.len()];
    let mut i = 0;
    while i < dates.len() {
        dates[i] = match date_number(INSTANCE_VERSIONS[i]) {
            Some(date) => date,
            None => panic!("a version that is not a date"),
        };
        assert!(i == 0 || dates[i - 1] < dates[i], "versions out of order");
        i += 1;
    }
    dates
};

const fn index_of(text: &str) -> u8 {
    let mut i = 0;
    while i < INSTANCE_VERSIONS.len() {
        if const_eq(INSTANCE_VERSIONS[i], text) {
            return i as u8;
        }
        i += 1;
    }
    panic!("version constant not in INSTANCE_VERSIONS");
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl ApiVersion {
    /// The newest supported version.
    pub const NEWEST: ApiVersion = ApiVersion(INSTANCE_VERSIONS.len() as u8 - 1);

    /// Exact-string match against the supported list (§1.4: no `latest` alias, no case folding).
    /// Every request parses one, so it is a binary search over the dates as numbers rather
    /// than up to 35 string comparisons.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let date = date_number(text)?;
        VERSION_DATES
            .binary_search(&date)
            .ok()
            .map(|i| ApiVersion(i as u8))
    }

    /// Every supported version, oldest first.
    pub fn all() -> impl DoubleEndedIterator<Item = ApiVersion> + ExactSizeIterator {
        (0..INSTANCE_VERSIONS.len() as u8).map(ApiVersion)
    }

    /// Number of supported versions; also the bound of [`ApiVersion::index`].
    pub const COUNT: usize = INSTANCE_VERSIONS.len();

    /// Position in the supported list, oldest first (for per-version caches).
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The `YYYY-MM-DD` text.
    pub fn as_str(self) -> &'static str {
        INSTANCE_VERSIONS[self.0 as usize]
    }

    /// The three newest versions, newest first: the `newest-versions` member of the
    /// api-version error (§1.4).
    pub fn newest_three() -> [ApiVersion; 3] {
        let n = ApiVersion::NEWEST.0;
        [ApiVersion(n), ApiVersion(n - 1), ApiVersion(n - 2)]
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_strictly_ascending_and_has_35_versions() {
        assert_eq!(INSTANCE_VERSIONS.len(), 35);
        assert!(INSTANCE_VERSIONS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn newest_three_match_the_spec_error_example() {
        let newest: Vec<&str> = ApiVersion::newest_three()
            .iter()
            .map(|v| v.as_str())
            .collect();
        assert_eq!(newest, ["2025-04-07", "2024-07-17", "2024-03-15"]);
    }

    #[test]
    fn parse_is_exact() {
        assert_eq!(
            ApiVersion::parse("2021-02-01"),
            Some(ApiVersion::V2021_02_01)
        );
        assert_eq!(ApiVersion::parse("2017-07-01"), None, "withdrawn version");
        assert_eq!(ApiVersion::parse("latest"), None);
        assert_eq!(ApiVersion::parse(" 2021-02-01"), None);
        assert_eq!(ApiVersion::parse("2020-04-02"), None, "MSAL fixture only");
        assert_eq!(ApiVersion::parse("2021-02-01 "), None);
        assert_eq!(ApiVersion::parse("2021/02/01"), None);
        assert_eq!(ApiVersion::parse("２０２１-02-01"), None);
        for version in ApiVersion::all() {
            assert_eq!(ApiVersion::parse(version.as_str()), Some(version));
        }
    }
}
