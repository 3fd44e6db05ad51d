//! Writing XML text: the one escaping rule every document azimds writes (ovf-env.xml, the
//! WireServer's goal state and its linked documents) goes through. Reading XML is roxmltree's.

use std::fmt::Write;

/// `text` escaped for an element's text or a double-quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all are dropped rather than written broken.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `<name>text</name>`, the text escaped.
pub fn element(out: &mut String, name: &str, text: &str) {
    let _ = write!(out, "<{name}>{}</{name}>", escape(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_drops_what_xml_cannot_carry() {
        assert_eq!(escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(escape("tab\tnl\nbell\u{7}"), "tab\tnl\nbell");
        let mut out = String::new();
        element(&mut out, "HostName", "vm&1");
        assert_eq!(out, "<HostName>vm&amp;1</HostName>");
    }
}
