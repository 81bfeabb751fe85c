//! Stable text names for the workflow vocabularies (API, database, configuration).

use std::fmt;
use std::str::FromStr;

use crate::{ConversationStatus, Intent, Queue, Urgency};

/// A name that is not one of a vocabulary's values. Carries only the vocabulary's own names,
/// never the text given (which may be anything a client sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind}; expected one of {expected}")]
pub struct UnknownName {
    /// Which vocabulary.
    pub kind: &'static str,
    /// The accepted names, comma separated.
    pub expected: &'static str,
}

macro_rules! names {
    ($ty:ident, $kind:literal, $expected:literal { $($v:ident => $t:literal),+ $(,)? }) => {
        impl $ty {
            /// The stable snake_case name.
            pub const fn name(self) -> &'static str {
                match self { $($ty::$v => $t),+ }
            }
        }
        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.trim() {
                    $($t => Ok($ty::$v),)+
                    _ => Err(UnknownName { kind: $kind, expected: $expected }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

names!(Queue, "queue", "front_desk, scheduling, refills, billing, records, nurse_triage, clinician" {
    FrontDesk => "front_desk",
    Scheduling => "scheduling",
    Refills => "refills",
    Billing => "billing",
    Records => "records",
    NurseTriage => "nurse_triage",
    Clinician => "clinician",
});

names!(Urgency, "urgency", "routine, urgent, emergency" {
    Routine => "routine",
    Urgent => "urgent",
    Emergency => "emergency",
});

names!(ConversationStatus, "status", "open, waiting_on_patient, closed" {
    Open => "open",
    WaitingOnPatient => "waiting_on_patient",
    Closed => "closed",
});

impl Intent {
    /// The stable snake_case name (same as [`Intent::as_str`]).
    pub const fn name(self) -> &'static str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for q in Queue::ALL {
            assert_eq!(q.name().parse::<Queue>().unwrap(), q);
        }
        for u in [Urgency::Routine, Urgency::Urgent, Urgency::Emergency] {
            assert_eq!(u.name().parse::<Urgency>().unwrap(), u);
        }
        for s in [
            ConversationStatus::Open,
            ConversationStatus::WaitingOnPatient,
            ConversationStatus::Closed,
        ] {
            assert_eq!(s.name().parse::<ConversationStatus>().unwrap(), s);
        }
        let e = "nope".parse::<Queue>().unwrap_err();
        assert!(!e.to_string().contains("nope"));
    }
}
