use serde::{Deserialize, Serialize};

/// Where a conversation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// Waiting for staff.
    Open,
    /// Staff replied and wait for the patient.
    WaitingOnPatient,
    /// Done.
    Closed,
}

/// A status change that is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a conversation cannot go from {from:?} to {to:?}")]
pub struct TransitionError {
    /// The current status.
    pub from: ConversationStatus,
    /// The requested status.
    pub to: ConversationStatus,
}

impl ConversationStatus {
    /// The status after staff ask for `to`. Any status may be reopened; a closed conversation
    /// cannot wait on the patient without first being reopened.
    pub fn transition(self, to: ConversationStatus) -> Result<ConversationStatus, TransitionError> {
        use ConversationStatus::*;
        match (self, to) {
            (Closed, WaitingOnPatient) => Err(TransitionError { from: self, to }),
            (from, to) if from == to => Err(TransitionError { from, to }),
            (_, to) => Ok(to),
        }
    }

    /// The status after a new message arrives from the patient: always back to staff.
    pub fn on_patient_message(self) -> ConversationStatus {
        ConversationStatus::Open
    }
}

#[cfg(test)]
mod tests {
    use super::ConversationStatus::*;
    use crate::Intent;

    #[test]
    fn transitions() {
        assert_eq!(Open.transition(WaitingOnPatient), Ok(WaitingOnPatient));
        assert_eq!(WaitingOnPatient.transition(Closed), Ok(Closed));
        assert_eq!(Closed.transition(Open), Ok(Open));
        assert!(Closed.transition(WaitingOnPatient).is_err());
        assert!(Open.transition(Open).is_err());
        assert_eq!(Closed.on_patient_message(), Open);
    }

    #[test]
    fn ai_never_drafts_for_clinical_results_or_emergency() {
        for i in Intent::ALL {
            let expected = !matches!(i, Intent::Clinical | Intent::Results | Intent::Emergency);
            assert_eq!(i.allows_ai_draft(), expected, "{i}");
            assert_eq!(i.as_str().parse::<Intent>().unwrap(), i);
        }
    }
}
