//! JSON values read strictly, from JSON or YAML text: a key given twice in one object is an
//! error naming its JSON path. serde_json and serde_yaml_ng both keep the last of two equal
//! keys without a word, so `{"callers": ["10.0.0.4"], "callers": ["10.0.0.5"]}` would mean
//! whatever the parser's author chose; here it means nothing, and the user is told where.
//!
//! [`StrictValue`] is a serde seed, so the same code reads a control-API body, one entry of a
//! streamed definitions file, and a YAML document. Depth is bounded by the parsers themselves
//! (both stop at 128 levels) and, for YAML, before parsing (`yaml_depth.rs`).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::problem::join;

/// A key given twice: where (the path of the second occurrence, from the value being read).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Duplicate {
    /// JSON path of the key, e.g. `instance.compute.name`.
    pub(super) path: String,
}

impl Duplicate {
    /// What to tell the user (the path is said separately).
    pub(super) fn message(&self) -> String {
        "this key is given twice in one object; give each key once".to_string()
    }
}

/// Where a strict read records a duplicate key while the parser's error unwinds.
#[derive(Debug, Default)]
pub(super) struct Strictness {
    duplicate: Option<Duplicate>,
}

impl Strictness {
    pub(super) fn new() -> Strictness {
        Strictness::default()
    }

    /// The duplicate key that stopped the read, if that is what stopped it.
    pub(super) fn take_duplicate(&mut self) -> Option<Duplicate> {
        self.duplicate.take()
    }

    /// Records `key` as given twice at this level; the error to return.
    pub(super) fn duplicate_at<E: de::Error>(&mut self, key: &str) -> E {
        self.duplicate = Some(Duplicate {
            path: key.to_string(),
        });
        E::custom(format!("duplicate key {key:?}"))
    }

    /// Called by each enclosing level as the error passes through it.
    pub(super) fn prefix(&mut self, segment: &str) {
        if let Some(duplicate) = &mut self.duplicate {
            duplicate.path = join(segment, &duplicate.path);
        }
    }
}

/// Deserializes one JSON value, refusing duplicate keys (see the module docs).
pub(super) struct StrictValue<'a>(pub(super) &'a mut Strictness);

/// Reads `bytes` as one JSON value, strictly. `Err` is the message for the user: the duplicate
/// key's path, or serde_json's syntax error (which says where).
pub fn json_from_slice(bytes: &[u8]) -> Result<Value, String> {
    let mut strictness = Strictness::new();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue(&mut strictness)
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    value.map_err(|error| match strictness.take_duplicate() {
        Some(duplicate) => format!(
            "{}: {} (line {} column {})",
            duplicate.path,
            duplicate.message(),
            error.line(),
            error.column()
        ),
        None => error.to_string(),
    })
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // Like serde_json's own Value: a float JSON cannot hold (NaN, infinity, from YAML) is null.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let strictness = self.0;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        loop {
            match seq.next_element_seed(StrictValue(strictness)) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return Ok(Value::Array(items)),
                Err(error) => {
                    strictness.prefix(&format!("[{}]", items.len()));
                    return Err(error);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let strictness = self.0;
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                return Err(strictness.duplicate_at(&key));
            }
            match map.next_value_seed(StrictValue(strictness)) {
                Ok(value) => {
                    members.insert(key, value);
                }
                Err(error) => {
                    strictness.prefix(&key);
                    return Err(error);
                }
            }
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_serde_json_reads() {
        let text = r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"\u00e9"}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(json_from_slice(text.as_bytes()).unwrap(), expected);
    }

    /// Found by the control_vm_entry fuzz target (RELIABILITY.md): a number past u64::MAX is
    /// kept as a float, and without serde_json's `float_roundtrip` the float read back from
    /// the written entry was a different one, so a stored VM did not check to itself.
    #[test]
    fn numbers_past_u64_and_long_floats_survive_being_written_and_read_again() {
        for text in [
            "92000000000249148829",
            "1.7976931348623157e308",
            "0.30000000000000004",
            "2.2250738585072014e-308",
            "123456789012345678901234567890.123456789",
        ] {
            let first = json_from_slice(text.as_bytes()).unwrap();
            let written = serde_json::to_vec(&first).unwrap();
            let again = json_from_slice(&written).unwrap();
            assert_eq!(
                again,
                first,
                "{text} became {}",
                String::from_utf8_lossy(&written)
            );
        }
    }

    #[test]
    fn a_duplicate_key_is_refused_with_its_path() {
        let text = br#"{"instance": {"compute": {"name": "a", "zone": "1", "name": "b"}}}"#;
        let error = json_from_slice(text).unwrap_err();
        assert!(
            error.starts_with("instance.compute.name: this key is given twice"),
            "{error}"
        );
        let error = json_from_slice(br#"{"callers": ["10.0.0.4"], "callers": []}"#).unwrap_err();
        assert!(
            error.starts_with("callers: this key is given twice"),
            "{error}"
        );
        let error = json_from_slice(br#"{"a": [{}, {"x": 1, "x": 1}]}"#).unwrap_err();
        assert!(error.starts_with("a[1].x: "), "{error}");
    }

    #[test]
    fn other_errors_are_the_parsers_own() {
        let error = json_from_slice(br#"{"a": }"#).unwrap_err();
        assert!(error.contains("line 1 column 7"), "{error}");
        let error = json_from_slice(br#"{"a": 1} x"#).unwrap_err();
        assert!(error.contains("trailing characters"), "{error}");
    }
}
