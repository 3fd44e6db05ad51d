//! What a definitions file is written in, and how deep it may nest: shared by the reader of
//! whole files (`file.rs`) and the checkers of their entries (`checkers.rs`).

/// The syntax of a definition file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    Json,
    Yaml,
}

impl Syntax {
    /// `.json` is JSON; `.yaml`/`.yml` is YAML; `None` for anything else, which
    /// [`parse`](super::parse) tries as JSON, then as YAML.
    pub fn from_file_name(name: &str) -> Option<Syntax> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".json") {
            Some(Syntax::Json)
        } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Some(Syntax::Yaml)
        } else {
            None
        }
    }
}

/// Deepest nesting accepted in a definitions file (serde_json's own recursion limit, and
/// serde_yaml_ng's): a VM entry needs about ten levels.
pub const MAX_DEPTH: usize = 128;
