//! Patient conversation workflows.
//!
//! The rules that keep judgement with people: which intents an AI may draft a reply for (only
//! administrative ones) and when an approved template may go out alone (`draft`), how
//! conversations move between statuses, how a queue is ordered and when a conversation that
//! missed its service level is escalated (`work`), reminder replies and tiers (`reminder`),
//! templates (`template`) and the local extractive summary (`summary`). Everything here takes
//! time as values from the injected clock, never reads it, and does no I/O.

mod conversation;
mod draft;
mod intake;
mod intent;
mod names;
mod queue;
mod reminder;
mod summary;
mod template;
mod work;

pub use conversation::{ConversationStatus, TransitionError};
pub use draft::{DraftRefusal, TemplateStanding, auto_send_allowed, may_draft};
pub use intake::{
    CarrierKeyword, ChannelTexts, ClassifyError, IntakeClass, IntakeClassifier, IntakeDecision,
    NoClassifier, RoutingRules, carrier_keyword, is_clinical, parse_queue, priority, queue_name,
    urgency_name,
};
pub use intent::{Intent, Urgency};
pub use names::UnknownName;
pub use queue::{Queue, ServiceLevels, SlaState};
pub use reminder::{ReminderReply, ReminderTier, parse_reminder_reply, reminder_send_at};
pub use summary::{ExtractiveSummary, MAX_SENTENCE_CHARS, SummaryInput, extractive_summary};
pub use template::{MAX_TEMPLATE_CHARS, PLACEHOLDERS, Template, TemplateError};
pub use work::{Escalation, EscalationRules, EscalationTarget, QueueKey, WorkState, queue_order};
