//! Patient conversation workflows.
//!
//! The rules that keep judgement with people: which intents an AI may draft a reply for (only
//! administrative ones), how conversations move between statuses, and when a queue's service
//! level is missed. Everything here takes time from the injected clock's values, never reads it.

mod conversation;
mod intake;
mod intent;
mod queue;

pub use conversation::{ConversationStatus, TransitionError};
pub use intake::{
    CarrierKeyword, ChannelTexts, ClassifyError, IntakeClass, IntakeClassifier, IntakeDecision,
    NoClassifier, RoutingRules, carrier_keyword, is_clinical, parse_queue, priority, queue_name,
    urgency_name,
};
pub use intent::{Intent, Urgency};
pub use queue::{Queue, ServiceLevels, SlaState};
