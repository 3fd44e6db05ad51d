//! Scheduled events' own api-version list (spec §6.1), separate from the instance list.

/// A supported scheduled-events api-version; only [`EventsVersion::parse`] makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventsVersion(u8);

/// Oldest first. 2017-03-01 is the preview (§6.1): still served, because scripts written for
/// it (the Azure-Samples non-VNET discovery sample) call it and give up when it is refused.
const VERSIONS: [&str; 7] = [
    "2017-03-01",
    "2017-08-01",
    "2017-11-01",
    "2019-01-01",
    "2019-04-01",
    "2019-08-01",
    "2020-07-01",
];

impl EventsVersion {
    /// The preview: resource names prefixed with `_`, `Metadata` header not enforced (§6.1).
    pub const V2017_03_01: EventsVersion = EventsVersion(0);
    /// GA: plain resource names, `Metadata: true` required.
    pub const V2017_08_01: EventsVersion = EventsVersion(1);
    /// `Preempt` events.
    pub const V2017_11_01: EventsVersion = EventsVersion(2);
    /// `Terminate` events.
    pub const V2019_01_01: EventsVersion = EventsVersion(3);
    /// `Description`.
    pub const V2019_04_01: EventsVersion = EventsVersion(4);
    /// `EventSource`.
    pub const V2019_08_01: EventsVersion = EventsVersion(5);
    /// `DurationInSeconds`.
    pub const V2020_07_01: EventsVersion = EventsVersion(6);

    pub fn parse(text: &str) -> Option<EventsVersion> {
        VERSIONS
            .iter()
            .position(|v| *v == text)
            .map(|i| EventsVersion(i as u8))
    }

    /// Whether requests at this version need `Metadata: true` (every version but the preview).
    pub fn requires_metadata_header(self) -> bool {
        self > EventsVersion::V2017_03_01
    }

    /// The three newest, newest first, for the api-version error (§1.4).
    pub fn newest_three() -> [&'static str; 3] {
        let n = VERSIONS.len();
        [VERSIONS[n - 1], VERSIONS[n - 2], VERSIONS[n - 3]]
    }

    pub fn all() -> impl Iterator<Item = EventsVersion> {
        (0..VERSIONS.len() as u8).map(EventsVersion)
    }

    pub fn as_str(self) -> &'static str {
        VERSIONS[self.0 as usize]
    }
}
