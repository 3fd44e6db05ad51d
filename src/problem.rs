//! Placeholder until the shared `Problem` type lands (issue 8): re-exports the definition one.

pub use crate::definition::Problem;

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}
