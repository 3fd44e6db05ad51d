//! What a capture leaves out unless asked (`--no-scrub`): secrets and personal values. Each is
//! replaced by an empty string, keeping the member (Azure serves `""` for unset values, so the
//! result is still a valid, servable response): `compute.userData`, `compute.customData`,
//! every `compute.publicKeys[].keyData`, the attested document's `signature` and a token's
//! `access_token` / `refresh_token`. A body that had none of them keeps its exact bytes.

use bytes::Bytes;

use crate::capture::json::Json;
use crate::capture::plan::Kind;

/// The body with secrets and personal values emptied, and the paths that were.
pub fn scrub(kind: Kind, body: &Bytes) -> (Bytes, Vec<String>) {
    let Some(mut json) = Json::parse(body) else {
        return (body.clone(), Vec::new());
    };
    let mut scrubbed = Vec::new();
    match kind {
        Kind::Instance { .. } => scrub_instance(&mut json, &mut scrubbed),
        Kind::Attested => empty(&mut json, &["signature"], "signature", &mut scrubbed),
        Kind::Token => {
            for member in ["access_token", "refresh_token"] {
                empty(&mut json, &[member], member, &mut scrubbed);
            }
        }
        _ => {}
    }
    if scrubbed.is_empty() {
        (body.clone(), scrubbed)
    } else {
        (Bytes::from(json.to_bytes()), scrubbed)
    }
}

/// Scrubs an instance document (the whole document; `compute` itself is also accepted).
pub fn scrub_instance(document: &mut Json, scrubbed: &mut Vec<String>) {
    let (compute, prefix) = match document.get("compute") {
        Some(_) => (document.get_mut("compute"), "compute."),
        None => (Some(document), ""),
    };
    let Some(compute) = compute else { return };
    for member in ["userData", "customData"] {
        empty(compute, &[member], &format!("{prefix}{member}"), scrubbed);
    }
    if let Some(keys) = compute.get_mut("publicKeys") {
        for (index, key) in keys.items_mut().iter_mut().enumerate() {
            empty(
                key,
                &["keyData"],
                &format!("{prefix}publicKeys[{index}].keyData"),
                scrubbed,
            );
        }
    }
}

/// Empties the string at `path` if it is a non-empty string; notes `label`.
fn empty(json: &mut Json, path: &[&str], label: &str, scrubbed: &mut Vec<String>) {
    let mut node = json;
    for key in path {
        match node.get_mut(key) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Json::String(text) = node
        && !text.is_empty()
    {
        text.clear();
        scrubbed.push(label.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_values_are_emptied_and_the_rest_keeps_its_bytes() {
        let body = Bytes::from_static(
            br#"{"compute":{"name":"vm","publicKeys":[{"keyData":"ssh-rsa AAA","path":"/home/a"}],"userData":"I2Nsb3Vk","customData":""},"network":{}}"#,
        );
        let (scrubbed, paths) = scrub(Kind::Instance { extended: false }, &body);
        assert_eq!(
            &scrubbed[..],
            br#"{"compute":{"name":"vm","publicKeys":[{"keyData":"","path":"/home/a"}],"userData":"","customData":""},"network":{}}"#
        );
        assert_eq!(paths, ["compute.userData", "compute.publicKeys[0].keyData"]);

        let clean = Bytes::from_static(br#"{"compute":{"name":"vm" }}"#);
        assert_eq!(scrub(Kind::Instance { extended: true }, &clean).0, clean);

        let token = Bytes::from_static(br#"{"access_token":"eyJ0","expires_in":"86399"}"#);
        let (scrubbed, paths) = scrub(Kind::Token, &token);
        assert_eq!(
            &scrubbed[..],
            br#"{"access_token":"","expires_in":"86399"}"#
        );
        assert_eq!(paths, ["access_token"]);
    }
}
