//! A large definitions file cut into its entries' texts, so each entry can be parsed on the
//! thread that checks it (`checkers.rs`). Only the plain shape is cut: an object whose only
//! member is a non-empty `vms` list. Anything else — another member, a syntax error, a key
//! given twice, a YAML file in another layout — gives `None`, and the file is read as one
//! document, which reports every problem with its position as it always has.
//!
//! JSON: serde_json's `RawValue` finds each entry's bounds (the scan checks the syntax of the
//! whole file). YAML: the file must be `vms:` on its first line (after comments, blank lines
//! and an optional `---`), then a block sequence, each item starting on a line with `-` at the
//! sequence's indentation; every other line is blank, a comment, or indented deeper than that.
//! An entry is then the text from one item's `-` to the next. Cut there, an item means what it
//! means in the whole file — except where it refers to another (an alias to an anchor in an
//! earlier entry) or its text runs across a cut (a quoted or flow scalar over lines); then it
//! does not read as exactly one item on its own, and `checkers.rs` gives up for the whole file.

use std::fmt;
use std::ops::Range;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Where a JSON file's entries are in `text`, if it is `{"vms": [...]}` with at least one.
pub(super) fn json_entries(text: &str) -> Option<Vec<Range<usize>>> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let entries = (&mut deserializer).deserialize_map(OnlyVms).ok()?;
    deserializer.end().ok()?;
    // Each entry's text is a slice of `text`: its place is its address's distance from the start.
    let base = text.as_ptr() as usize;
    let ranges: Vec<Range<usize>> = entries
        .into_iter()
        .map(|entry| {
            let start = entry.as_ptr() as usize - base;
            start..start + entry.len()
        })
        .collect();
    (!ranges.is_empty()).then_some(ranges)
}

/// An object whose only member is `vms`, a list: each entry's text.
struct OnlyVms;

impl<'de> Visitor<'de> for OnlyVms {
    type Value = Vec<&'de str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object whose only member is `vms`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut vms: Option<Vec<&'de RawValue>> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "vms" || vms.is_some() {
                return Err(serde::de::Error::custom("not the plain shape"));
            }
            vms = Some(map.next_value()?);
        }
        let vms = vms.ok_or_else(|| serde::de::Error::custom("no `vms`"))?;
        Ok(vms.into_iter().map(RawValue::get).collect())
    }
}

/// Where a YAML file's entries are in `text`, if it has the layout in the module docs; each
/// runs to where the next starts, so consecutive entries are one text too.
pub(super) fn yaml_entries(text: &str) -> Option<Vec<Range<usize>>> {
    // libyaml also breaks lines at a lone CR, NEL, LS and PS, which the cut below does not see.
    let bytes = text.as_bytes();
    if text
        .match_indices('\r')
        .any(|(at, _)| bytes.get(at + 1) != Some(&b'\n'))
        || text.contains(['\u{85}', '\u{2028}', '\u{2029}'])
    {
        return None;
    }
    let mut header = Header::Start;
    let mut item_indent = None;
    let mut starts = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let start = at;
        at += line.len();
        let content = line.trim_end_matches(['\n', '\r']);
        let rest = content.trim_start_matches(' ');
        let indent = content.len() - rest.len();
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        let item = rest == "-" || rest.starts_with("- ");
        match header {
            Header::Start if content.trim_end() == "---" => header = Header::Marker,
            Header::Start | Header::Marker if is_vms_key(content) => header = Header::Vms,
            Header::Start | Header::Marker => return None,
            Header::Vms => match item_indent {
                None if item => {
                    item_indent = Some(indent);
                    starts.push(start);
                }
                Some(k) if indent == k && item => starts.push(start),
                Some(k) if indent > k => {}
                _ => return None,
            },
        }
    }
    starts.push(text.len());
    let entries: Vec<Range<usize>> = starts.windows(2).map(|w| w[0]..w[1]).collect();
    (!entries.is_empty()).then_some(entries)
}

/// Where the cut is in the lines before the first item.
#[derive(Clone, Copy)]
enum Header {
    Start,
    /// After a `---` document start.
    Marker,
    /// After `vms:`.
    Vms,
}

/// `vms:` alone, or with a comment after it.
fn is_vms_key(line: &str) -> bool {
    line.strip_prefix("vms:").is_some_and(|after| {
        let rest = after.trim_start_matches(' ');
        // A comment needs a blank before its `#`: `vms:#x` is one plain scalar.
        rest.is_empty() || (rest.starts_with('#') && rest.len() < after.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str, ranges: Option<Vec<Range<usize>>>) -> Option<Vec<&str>> {
        ranges.map(|ranges| ranges.into_iter().map(|r| &text[r]).collect())
    }

    #[test]
    fn json_entries_are_the_items_of_vms() {
        let text = r#" {"vms": [ {"id": "a"} , {"callers": ["10.0.0.4"]}]} "#;
        assert_eq!(
            texts(text, json_entries(text)),
            Some(vec![r#"{"id": "a"}"#, r#"{"callers": ["10.0.0.4"]}"#])
        );
        for other in [
            r#"{"vms": []}"#,
            r#"{"vms": [{}], "x": 1}"#,
            r#"{"vms": [{}], "vms": [{}]}"#,
            r#"[[{}]]"#,
            r#"{"vms": [{}"#,
            r#"{"vms": {}}"#,
        ] {
            assert_eq!(json_entries(other), None, "{other}");
        }
    }

    #[test]
    fn yaml_entries_start_at_each_item() {
        let text = "# VMs\nvms:\n  - id: a\n    callers: [10.0.0.4]\n\n# the second\n  - id: b\n    x: |\n      - not an item\n  -\n";
        assert_eq!(
            texts(text, yaml_entries(text)),
            Some(vec![
                "  - id: a\n    callers: [10.0.0.4]\n\n# the second\n",
                "  - id: b\n    x: |\n      - not an item\n",
                "  -\n",
            ])
        );
        let text = "---\nvms: # all\n- a\n- b";
        assert_eq!(
            texts(text, yaml_entries(text)).unwrap(),
            vec!["- a\n", "- b"]
        );
        assert_eq!(yaml_entries("vms:\r\n- a\r\n- b\r\n").unwrap().len(), 2);
        for other in [
            "vms: [a, b]\n",
            "vms:\n- a\nother: 1\n",
            "vms:\n  - a\n - b\n",
            "vms:\n  - a\n  b: 1\n",
            "vms:\n- a\n---\nvms:\n- b\n",
            "%YAML 1.1\n---\nvms:\n- a\n",
            "x: 1\nvms:\n- a\n",
            "vms:\n- a\r- b\n",
            "vms:\n",
            "vms:#x\n- a\n",
        ] {
            assert_eq!(yaml_entries(other), None, "{other:?}");
        }
    }
}
