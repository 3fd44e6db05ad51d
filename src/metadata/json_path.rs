//! One string out of a JSON document by its path of keys (array elements by index), read
//! without building a tree: everything off the path is skipped, nothing is allocated but the
//! answer. Applying a 100k-VM file asks each document for its region and cloud; parsing each
//! into a `serde_json::Value` for that was a tenth of the import.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The string at `keys` in `json`; `None` if the path is absent, not a string, or `json` is
/// not JSON.
pub fn string_at(json: &[u8], keys: &[&str]) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    PathSeed { keys }.deserialize(&mut deserializer).ok()?
}

/// The scalar `visit_*` methods of a visitor whose value is `Option<String>`: a number,
/// a boolean or null is not the string the path asks for.
macro_rules! scalars_are_not_strings {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    };
}

/// Follows `keys` from the value being read.
struct PathSeed<'k> {
    keys: &'k [&'k str],
}

impl<'de> DeserializeSeed<'de> for PathSeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        if self.keys.is_empty() {
            deserializer.deserialize_any(Leaf)
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for PathSeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (first, rest) = (self.keys[0], &self.keys[1..]);
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs(first))? {
            if matches && found.is_none() {
                found = map.next_value_seed(PathSeed { keys: rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let wanted: Option<usize> = self.keys[0].parse().ok();
        let rest = &self.keys[1..];
        let mut found = None;
        let mut index = 0;
        loop {
            let element = if Some(index) == wanted {
                seq.next_element_seed(PathSeed { keys: rest })?
                    .map(|f| found = f)
            } else {
                seq.next_element::<IgnoredAny>()?.map(drop)
            };
            if element.is_none() {
                return Ok(found);
            }
            index += 1;
        }
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    scalars_are_not_strings!();
}

/// The end of the path: a string, or nothing.
struct Leaf;

impl<'de> Visitor<'de> for Leaf {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Some(value.to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map).map(|_| None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| None)
    }
    scalars_are_not_strings!();
}

/// Reads a map key and says whether it is `.0`, without keeping it.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_strings_by_key_and_index_and_nothing_else() {
        let json = br#"{"a":{"x":[1,{"y":"no"}],"b":"one","c":"t\u00e9"},"list":[{"k":"zero"},{"k":"first"}],"n":3}"#;
        assert_eq!(string_at(json, &["a", "b"]).as_deref(), Some("one"));
        assert_eq!(
            string_at(json, &["a", "c"]).as_deref(),
            Some("té"),
            "escapes decoded"
        );
        assert_eq!(
            string_at(json, &["list", "1", "k"]).as_deref(),
            Some("first")
        );
        assert_eq!(
            string_at(json, &["list", "0", "k"]).as_deref(),
            Some("zero")
        );
        assert_eq!(string_at(json, &["list", "2", "k"]), None, "past the end");
        assert_eq!(string_at(json, &["n"]), None, "a number is not a string");
        assert_eq!(string_at(json, &["a"]), None, "an object is not a string");
        assert_eq!(string_at(json, &["a", "missing"]), None);
        assert_eq!(
            string_at(json, &["a", "x", "1", "y"]).as_deref(),
            Some("no")
        );
        assert_eq!(string_at(b"{\"a\":", &["a"]), None, "not JSON");
    }

    #[test]
    fn agrees_with_a_pointer_into_a_parsed_tree() {
        let json = include_bytes!("../definition/demo.json");
        let tree: serde_json::Value = serde_json::from_slice(json).unwrap();
        let vm = &tree["vms"][0];
        let bytes = serde_json::to_vec(vm).unwrap();
        for path in [
            &["instance", "compute", "location"][..],
            &["instance", "compute", "azEnvironment"],
            &["instance", "compute", "osProfile", "adminUsername"],
            &["instance", "network", "interface", "0", "macAddress"],
        ] {
            let pointer: String = path.iter().map(|k| format!("/{k}")).collect();
            let expected = vm
                .pointer(&pointer)
                .and_then(|v| v.as_str())
                .map(String::from);
            assert!(expected.is_some(), "{pointer} is in the demo VM");
            assert_eq!(string_at(&bytes, path), expected, "{pointer}");
        }
    }
}
