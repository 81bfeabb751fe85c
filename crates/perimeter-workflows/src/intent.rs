use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a patient's message is about (the corpus's `intent` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Booking, moving or cancelling appointments.
    Scheduling,
    /// Prescription refills and their status.
    Refill,
    /// Bills, payments, insurance.
    Billing,
    /// Medical records requests and forms.
    Records,
    /// Test results.
    Results,
    /// Symptoms, medications, care questions.
    Clinical,
    /// A possible emergency.
    Emergency,
    /// Anything else.
    General,
}

impl Intent {
    /// Every intent.
    pub const ALL: [Intent; 8] = [
        Intent::Scheduling,
        Intent::Refill,
        Intent::Billing,
        Intent::Records,
        Intent::Results,
        Intent::Clinical,
        Intent::Emergency,
        Intent::General,
    ];

    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Intent::Scheduling => "scheduling",
            Intent::Refill => "refill",
            Intent::Billing => "billing",
            Intent::Records => "records",
            Intent::Results => "results",
            Intent::Clinical => "clinical",
            Intent::Emergency => "emergency",
            Intent::General => "general",
        }
    }

    /// Whether an AI may draft a reply (for a person to approve). Never for clinical content,
    /// results or emergencies; refills only as a status reply.
    pub const fn allows_ai_draft(self) -> bool {
        matches!(
            self,
            Intent::Scheduling
                | Intent::Billing
                | Intent::Records
                | Intent::General
                | Intent::Refill
        )
    }

    /// The queue a conversation with this intent goes to when no practice rule says otherwise.
    pub const fn default_queue(self) -> crate::Queue {
        use crate::Queue;
        match self {
            Intent::Scheduling => Queue::Scheduling,
            Intent::Refill => Queue::Refills,
            Intent::Billing => Queue::Billing,
            Intent::Records => Queue::Records,
            Intent::Results => Queue::Clinician,
            Intent::Clinical | Intent::Emergency => Queue::NurseTriage,
            Intent::General => Queue::FrontDesk,
        }
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an intent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown intent; expected one of scheduling, refill, billing, records, results, clinical, emergency, general"
)]
pub struct UnknownIntent;

impl FromStr for Intent {
    type Err = UnknownIntent;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Intent::ALL
            .into_iter()
            .find(|i| i.as_str() == s.trim())
            .ok_or(UnknownIntent)
    }
}

/// How soon a person must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Within the queue's normal service level.
    Routine,
    /// Today.
    Urgent,
    /// Now: the conversation jumps every queue.
    Emergency,
}
