//! The lifecycle of one scheduled event (spec §6.5): its states, the inputs that move it, and
//! `next`, the whole state machine as one match. Knows nothing of event contents or VMs.

use serde::{Deserialize, Serialize};

/// Where an event is in its life. Finished events are removed, not kept in a third state (§6.2:
/// there is no `Completed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Scheduled,
    Started,
}

/// What can happen to an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A guest POSTed a StartRequest for it.
    Approve,
    /// Its NotBefore time has come.
    NotBeforeReached,
    /// The operator started it now.
    Start,
    /// Its completion time (after starting) has come.
    CompletionReached,
    /// The operator completed it now.
    Complete,
    /// The platform (operator) canceled it.
    Cancel,
}

/// What an input does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Scheduled → Started.
    Start,
    /// Removed from every document.
    Remove(Removal),
    /// No visible change (e.g. approving an event that already started).
    Nothing,
}

/// Why an event left the documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Removal {
    Completed,
    Canceled,
}

/// The lifecycle of §6.5 as one match.
pub fn next(status: Status, input: Input) -> Option<Step> {
    match (status, input) {
        (Status::Scheduled, Input::Approve | Input::NotBeforeReached | Input::Start) => {
            Some(Step::Start)
        }
        // Approving again is a 200 with no change (§6.4); a late NotBefore is moot.
        (Status::Started, Input::Approve | Input::NotBeforeReached | Input::Start) => {
            Some(Step::Nothing)
        }
        (Status::Started, Input::CompletionReached | Input::Complete) => {
            Some(Step::Remove(Removal::Completed))
        }
        (Status::Scheduled | Status::Started, Input::Cancel) => {
            Some(Step::Remove(Removal::Canceled))
        }
        // An event that never started cannot complete.
        (Status::Scheduled, Input::CompletionReached | Input::Complete) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUSES: [Status; 2] = [Status::Scheduled, Status::Started];
    const INPUTS: [Input; 6] = [
        Input::Approve,
        Input::NotBeforeReached,
        Input::Start,
        Input::CompletionReached,
        Input::Complete,
        Input::Cancel,
    ];

    /// Every state × input, against a table written from §6.5.
    #[test]
    fn state_machine_exhaustively() {
        use Step::*;
        let expected = |status, input| match (status, input) {
            (Status::Scheduled, Input::Approve) => Some(Start),
            (Status::Scheduled, Input::NotBeforeReached) => Some(Start),
            (Status::Scheduled, Input::Start) => Some(Start),
            (Status::Scheduled, Input::CompletionReached) => None,
            (Status::Scheduled, Input::Complete) => None,
            (Status::Scheduled, Input::Cancel) => Some(Remove(Removal::Canceled)),
            (Status::Started, Input::Approve) => Some(Nothing),
            (Status::Started, Input::NotBeforeReached) => Some(Nothing),
            (Status::Started, Input::Start) => Some(Nothing),
            (Status::Started, Input::CompletionReached) => Some(Remove(Removal::Completed)),
            (Status::Started, Input::Complete) => Some(Remove(Removal::Completed)),
            (Status::Started, Input::Cancel) => Some(Remove(Removal::Canceled)),
        };
        for status in STATUSES {
            for input in INPUTS {
                assert_eq!(
                    next(status, input),
                    expected(status, input),
                    "{status:?} × {input:?}"
                );
            }
        }
    }
}
