//! Something wrong at a JSON path: what every validator reports (definition files, instance
//! documents, identities, scheduled events), so a problem found deep in a VM entry travels up
//! to the file loader, the control API's 422 body or the CLI as one type.
//!
//! Paths read the way a user writes them: members joined by `.`, indices in brackets
//! (`vms[0].identities.userAssigned[1].clientId`). The empty path is the checked value itself.
//! A validator reports paths relative to what it checks; its caller re-roots them with
//! [`Problem::nest`] (or [`Problems::nested`]), so no validator knows where it is called from.

use serde_json::{Map, Value};

/// One thing wrong with a checked value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Where, relative to the checked value; empty for the value itself.
    pub path: String,
    /// What is wrong, for a user to read (e.g. `expected a string, found a number`).
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same problem seen from the parent of `prefix` (a member name or an index such as
    /// `[2]`, or a path of them): `userAssigned[0].clientId` nested under `identities` is
    /// `identities.userAssigned[0].clientId`.
    pub fn nest(self, prefix: &str) -> Problem {
        Problem {
            path: join(prefix, &self.path),
            message: self.message,
        }
    }
}

/// `path` below `prefix`: joined by `.`, except that an index (`[0]…`) follows directly; an
/// empty side leaves the other as it is.
pub fn join(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        path.to_string()
    } else if path.is_empty() {
        prefix.to_string()
    } else if path.starts_with('[') {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}.{path}")
    }
}

/// The problems found while checking one value, in the order found (users fix files top to
/// bottom, and tests compare the order).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// No problems yet.
    pub fn new() -> Problems {
        Problems(Vec::new())
    }

    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(path, message));
    }

    /// Records a nested check's problems, each re-rooted under `prefix`.
    pub fn nested(&mut self, prefix: &str, problems: impl IntoIterator<Item = Problem>) {
        self.0
            .extend(problems.into_iter().map(|problem| problem.nest(prefix)));
    }

    /// A nested check's value, or `None` with its problems recorded under `prefix`.
    pub fn under<T>(&mut self, prefix: &str, checked: Result<T, Vec<Problem>>) -> Option<T> {
        match checked {
            Ok(value) => Some(value),
            Err(problems) => {
                self.nested(prefix, problems);
                None
            }
        }
    }

    /// Runs a nested check with its own collector and records what it found under `prefix`:
    /// the check writes paths relative to the value it checks.
    pub fn within<T>(&mut self, prefix: &str, check: impl FnOnce(&mut Problems) -> T) -> T {
        let mut nested = Problems::new();
        let value = check(&mut nested);
        self.nested(prefix, nested.0);
        value
    }

    /// Records `message` at `prefix.key` for every key of `object` not in `known`.
    pub fn unknown_members(
        &mut self,
        prefix: &str,
        object: &Map<String, Value>,
        known: &[&str],
        message: &str,
    ) {
        for key in object.keys().filter(|key| !known.contains(&key.as_str())) {
            self.push(join(prefix, key), message);
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was found, else every problem.
    pub fn into_result<T>(self, value: T) -> Result<T, Vec<Problem>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }

    /// Every problem, in the order found.
    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_joins_members_with_dots_and_indices_directly() {
        let nest = |path: &str, prefix: &str| Problem::new(path, "m").nest(prefix).path;
        assert_eq!(nest("", "identities"), "identities");
        assert_eq!(
            nest("userAssigned[0].clientId", "identities"),
            "identities.userAssigned[0].clientId"
        );
        assert_eq!(nest("[1]", "callers"), "callers[1]");
        assert_eq!(
            nest("[1].name", "vms[0].tagsList"),
            "vms[0].tagsList[1].name"
        );
        assert_eq!(nest("compute.name", ""), "compute.name");
        assert_eq!(nest("", ""), "");
    }

    #[test]
    fn problems_keep_their_order_and_nest_under_a_prefix() {
        let mut problems = Problems::new();
        assert!(problems.is_empty());
        problems.push("id", "bad id");
        let value: Option<u8> = problems.under(
            "instance",
            Err(vec![Problem::new("", "a"), Problem::new("compute", "b")]),
        );
        assert_eq!(value, None);
        assert_eq!(problems.under("x", Ok::<u8, _>(7)), Some(7));
        let seven = problems.within("user[0]", |nested| {
            nested.push("", "c");
            nested.push("clientId", "d");
            7
        });
        assert_eq!(seven, 7);
        let paths: Vec<String> = problems.into_vec().into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "id",
                "instance",
                "instance.compute",
                "user[0]",
                "user[0].clientId"
            ]
        );
    }

    #[test]
    fn unknown_members_are_reported_under_their_prefix() {
        let object = serde_json::json!({"a": 1, "b": 2, "c": 3});
        let mut problems = Problems::new();
        problems.unknown_members("x", object.as_object().unwrap(), &["b"], "unknown");
        assert_eq!(
            problems.into_result(()),
            Err(vec![
                Problem::new("x.a", "unknown"),
                Problem::new("x.c", "unknown")
            ])
        );
    }
}
