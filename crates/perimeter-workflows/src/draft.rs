//! The line AI assistance stays inside: which conversations may get a drafted reply, and
//! when a practice-approved template may go out without a person's approval.

use serde::Serialize;

use crate::{Intent, Urgency};

/// Why no draft may be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum DraftRefusal {
    /// The conversation was never classified: without an intent nothing is drafted.
    #[error(
        "the conversation has no intent yet; a person must triage it before a reply is drafted"
    )]
    NotTriaged,
    /// Clinical, results or emergency: a person answers.
    #[error(
        "drafts are only made for administrative conversations (scheduling, billing, records, general, refill status); a person answers clinical, results and emergency conversations"
    )]
    NotAdministrative,
    /// An emergency, whatever the intent says.
    #[error("the conversation is marked as an emergency; a person answers it")]
    Emergency,
}

impl DraftRefusal {
    /// The stable code (API errors, audit details).
    pub const fn code(self) -> &'static str {
        match self {
            DraftRefusal::NotTriaged => "draft_refused_not_triaged",
            DraftRefusal::NotAdministrative => "draft_refused_not_administrative",
            DraftRefusal::Emergency => "draft_refused_emergency",
        }
    }
}

/// Whether a reply may be drafted (by an AI or from a template) for a conversation with this
/// intent and urgency. Fails closed: no intent, no draft.
pub fn may_draft(intent: Option<Intent>, urgency: Urgency) -> Result<Intent, DraftRefusal> {
    let intent = intent.ok_or(DraftRefusal::NotTriaged)?;
    if urgency == Urgency::Emergency || intent == Intent::Emergency {
        return Err(DraftRefusal::Emergency);
    }
    if !intent.allows_ai_draft() {
        return Err(DraftRefusal::NotAdministrative);
    }
    Ok(intent)
}

/// A template's standing, as far as sending without approval goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateStanding<'a> {
    /// An administrator approved this version.
    pub approved: bool,
    /// This version is the active one.
    pub active: bool,
    /// The intents the administrator let it go out for automatically.
    pub auto_send_intents: &'a [Intent],
}

/// Whether a draft from this template may be sent without a person approving it: only an
/// approved, active template, for an intent the administrator listed, and only where a draft is
/// allowed at all. Everything else waits for a person.
pub fn auto_send_allowed(
    intent: Intent,
    urgency: Urgency,
    template: &TemplateStanding<'_>,
) -> bool {
    may_draft(Some(intent), urgency).is_ok()
        && template.approved
        && template.active
        && template.auto_send_intents.contains(&intent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_only_for_administrative_intents() {
        for i in Intent::ALL {
            let r = may_draft(Some(i), Urgency::Routine);
            match i {
                Intent::Clinical | Intent::Results => {
                    assert_eq!(r, Err(DraftRefusal::NotAdministrative))
                }
                Intent::Emergency => assert_eq!(r, Err(DraftRefusal::Emergency)),
                _ => assert_eq!(r, Ok(i)),
            }
            assert!(may_draft(Some(i), Urgency::Emergency).is_err());
        }
        assert_eq!(
            may_draft(None, Urgency::Routine),
            Err(DraftRefusal::NotTriaged)
        );
    }

    #[test]
    fn auto_send_needs_every_condition() {
        let intents = [Intent::Scheduling];
        let ok = TemplateStanding {
            approved: true,
            active: true,
            auto_send_intents: &intents,
        };
        assert!(auto_send_allowed(Intent::Scheduling, Urgency::Routine, &ok));
        assert!(!auto_send_allowed(Intent::Billing, Urgency::Routine, &ok));
        assert!(!auto_send_allowed(
            Intent::Scheduling,
            Urgency::Emergency,
            &ok
        ));
        assert!(!auto_send_allowed(
            Intent::Scheduling,
            Urgency::Routine,
            &TemplateStanding {
                approved: false,
                ..ok
            }
        ));
        assert!(!auto_send_allowed(
            Intent::Scheduling,
            Urgency::Routine,
            &TemplateStanding {
                active: false,
                ..ok
            }
        ));
        let clinical = [Intent::Clinical];
        assert!(!auto_send_allowed(
            Intent::Clinical,
            Urgency::Routine,
            &TemplateStanding {
                auto_send_intents: &clinical,
                ..ok
            }
        ));
    }
}
