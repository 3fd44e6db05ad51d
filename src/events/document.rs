//! The scheduled-events document as a VM sees it (spec §6.2): fixed key order, integer
//! `DocumentIncarnation` and `DurationInSeconds`, RFC 1123 `NotBefore` (`""` once Started),
//! fields and event types gated by api-version (§6.1).

use std::time::SystemTime;

use serde_json::Value;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::events::{Event, EventType, EventsVersion, Status};

/// Compact JSON for one VM's document.
pub fn render(incarnation: u64, events: &[&Event], version: EventsVersion) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 400 * events.len());
    out.extend_from_slice(b"{\"DocumentIncarnation\":");
    out.extend_from_slice(incarnation.to_string().as_bytes());
    out.extend_from_slice(b",\"Events\":[");
    let visible = events.iter().filter(|e| visible_at(e.event_type, version));
    for (i, event) in visible.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_event(&mut out, event, version);
    }
    out.extend_from_slice(b"]}");
    out
}

/// One entry of `Events`, with the fields `version` has, in Azure's order.
fn write_event(out: &mut Vec<u8>, event: &Event, version: EventsVersion) {
    let (status, not_before) = match event.status {
        Status::Scheduled => ("Scheduled", rfc1123(event.not_before)),
        Status::Started => ("Started", String::new()),
    };
    let mut fields: Vec<(&str, Value)> = vec![
        ("EventId", event.id.clone().into()),
        ("EventStatus", status.into()),
        ("EventType", event.event_type.as_str().into()),
        ("ResourceType", "VirtualMachine".into()),
        ("Resources", resources(event, version)),
        ("NotBefore", not_before.into()),
    ];
    if version >= EventsVersion::V2019_04_01 {
        fields.push(("Description", event.description.clone().into()));
    }
    if version >= EventsVersion::V2019_08_01 {
        fields.push(("EventSource", event.source.as_str().into()));
    }
    if version >= EventsVersion::V2020_07_01 {
        fields.push(("DurationInSeconds", event.duration_seconds.into()));
    }
    // serde_json's Map keeps insertion order only with preserve_order, so write by hand.
    out.push(b'{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(format!("\"{key}\":").as_bytes());
        serde_json::to_writer(&mut *out, value).expect("writing to a Vec cannot fail");
    }
    out.push(b'}');
}

/// The preview prefixed IaaS VM names with `_` (§6.1: "Resource names prefixed with `_` for
/// IaaS VMs"); 2017-08-01 removed it.
fn resources(event: &Event, version: EventsVersion) -> Value {
    if version == EventsVersion::V2017_03_01 {
        event.resources.iter().map(|r| format!("_{r}")).collect()
    } else {
        event.resources.clone().into()
    }
}

/// Event types newer than the requested version are hidden (§6.1, [UNCERTAIN]: the spec
/// recommends hiding over showing).
fn visible_at(event_type: EventType, version: EventsVersion) -> bool {
    match event_type {
        EventType::Preempt => version >= EventsVersion::V2017_11_01,
        EventType::Terminate => version >= EventsVersion::V2019_01_01,
        EventType::Freeze | EventType::Reboot | EventType::Redeploy => true,
    }
}

/// `Wed, 24 Jan 2018 21:20:44 GMT`.
pub fn rfc1123(at: SystemTime) -> String {
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    OffsetDateTime::from(at)
        .format(&format)
        .expect("every SystemTime after 1970 formats")
}

/// Parses `Wed, 24 Jan 2018 21:20:44 GMT` (definition files paste it from real documents), from
/// 1970 on: events are kept as times since the epoch.
pub fn parse_rfc1123(text: &str) -> Option<SystemTime> {
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(text, &format)
        .ok()
        .map(|t| t.assume_utc().into())
        .filter(|t| *t >= SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::events::EventSource;

    fn reboot(id: &str, resource: &str) -> Event {
        Event {
            id: id.into(),
            event_type: EventType::Reboot,
            targets: vec!["vm".into()],
            resources: vec![resource.into()],
            status: Status::Scheduled,
            not_before: parse_rfc1123("Wed, 24 Jan 2018 21:20:44 GMT").unwrap(),
            description: String::new(),
            source: EventSource::Platform,
            duration_seconds: -1,
            complete_after: Duration::from_secs(60),
            started_at: None,
        }
    }

    /// The real documents quoted in spec §6.2, byte for byte.
    #[test]
    fn real_documents_are_reproduced() {
        let a = reboot("28512AF7-C957-4500-9BC4-842D6FB531E4", "sample_4");
        let b = reboot("A626E37F-793E-44E1-89B5-99AE0B96044C", "sample_1");
        let expected = r#"{"DocumentIncarnation":192,"Events":[{"EventId":"28512AF7-C957-4500-9BC4-842D6FB531E4","EventStatus":"Scheduled","EventType":"Reboot","ResourceType":"VirtualMachine","Resources":["sample_4"],"NotBefore":"Wed, 24 Jan 2018 21:20:44 GMT"},{"EventId":"A626E37F-793E-44E1-89B5-99AE0B96044C","EventStatus":"Scheduled","EventType":"Reboot","ResourceType":"VirtualMachine","Resources":["sample_1"],"NotBefore":"Wed, 24 Jan 2018 21:20:44 GMT"}]}"#;
        for version in ["2017-08-01", "2019-01-01"] {
            let doc = render(192, &[&a, &b], EventsVersion::parse(version).unwrap());
            assert_eq!(String::from_utf8(doc).unwrap(), expected, "{version}");
        }
        let empty = render(190, &[], EventsVersion::V2020_07_01);
        assert_eq!(empty, br#"{"DocumentIncarnation":190,"Events":[]}"#);
    }

    #[test]
    fn newest_version_has_every_field_in_order() {
        let mut freeze = reboot("C7061BAC-AFDC-4513-B24B-AA5F13A16123", "WestNO_0");
        freeze.event_type = EventType::Freeze;
        freeze.resources.push("WestNO_1".into());
        freeze.not_before = parse_rfc1123("Mon, 11 Apr 2022 22:26:58 GMT").unwrap();
        freeze.description = "Virtual machine is being paused because of a memory-preserving Live Migration operation.".into();
        freeze.duration_seconds = 5;
        let doc = String::from_utf8(render(2, &[&freeze], EventsVersion::V2020_07_01)).unwrap();
        assert_eq!(
            doc,
            r#"{"DocumentIncarnation":2,"Events":[{"EventId":"C7061BAC-AFDC-4513-B24B-AA5F13A16123","EventStatus":"Scheduled","EventType":"Freeze","ResourceType":"VirtualMachine","Resources":["WestNO_0","WestNO_1"],"NotBefore":"Mon, 11 Apr 2022 22:26:58 GMT","Description":"Virtual machine is being paused because of a memory-preserving Live Migration operation.","EventSource":"Platform","DurationInSeconds":5}]}"#,
            "the spec's §6.2 example"
        );
        freeze.status = Status::Started;
        let started = String::from_utf8(render(3, &[&freeze], EventsVersion::V2019_08_01)).unwrap();
        assert!(
            started.contains(r#""NotBefore":"","Description":"#),
            "{started}"
        );
        assert!(!started.contains("DurationInSeconds"));
    }

    #[test]
    fn the_preview_prefixes_resource_names_with_an_underscore() {
        let event = reboot("28512AF7-C957-4500-9BC4-842D6FB531E4", "sample_4");
        let doc = render(192, &[&event], EventsVersion::V2017_03_01);
        assert_eq!(
            String::from_utf8(doc).unwrap(),
            r#"{"DocumentIncarnation":192,"Events":[{"EventId":"28512AF7-C957-4500-9BC4-842D6FB531E4","EventStatus":"Scheduled","EventType":"Reboot","ResourceType":"VirtualMachine","Resources":["_sample_4"],"NotBefore":"Wed, 24 Jan 2018 21:20:44 GMT"}]}"#
        );
        let mut preempt = reboot("P", "vm");
        preempt.event_type = EventType::Preempt;
        let doc = render(1, &[&preempt], EventsVersion::V2017_03_01);
        assert_eq!(
            doc, br#"{"DocumentIncarnation":1,"Events":[]}"#,
            "no Preempt yet"
        );
    }

    #[test]
    fn newer_event_types_are_hidden_from_older_versions() {
        let mut preempt = reboot("P", "vm");
        preempt.event_type = EventType::Preempt;
        let mut terminate = reboot("T", "vm");
        terminate.event_type = EventType::Terminate;
        let ids = |version| {
            let doc: serde_json::Value =
                serde_json::from_slice(&render(1, &[&preempt, &terminate], version)).unwrap();
            doc["Events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["EventId"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert!(ids(EventsVersion::V2017_08_01).is_empty());
        assert_eq!(ids(EventsVersion::V2017_11_01), ["P"]);
        assert_eq!(ids(EventsVersion::V2019_01_01), ["P", "T"]);
    }
}
