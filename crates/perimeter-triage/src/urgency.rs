//! Urgency from the intent plus cues in the text.
//!
//! * `emergency` intent (or an emergency sign): [`Urgency::Emergency`].
//! * otherwise [`Urgency::Urgent`] (today) when the text carries a cue for its intent:
//!   - clinical: symptoms that should be seen today (fever, worsening, bleeding, vomiting,
//!     shortness of breath, chest tightness, fainting, severe pain, a device alarm, pregnancy
//!     concerns, "really scared"), or an explicit `urgent`/`asap`/`today`;
//!   - refill: the patient is out of medication or about to be (`ran out`, `last pill`, `out of`);
//!   - results: an abnormal or critical result;
//!   - scheduling: something happening today (`running late`, `today`, `this morning`);
//!   - any intent: `urgent`, `asap`, `as soon as possible`, `immediately`, `right away`.
//! * else [`Urgency::Routine`].
//!
//! Cues match the same normalised text as the emergency rules; negation is not applied (a
//! false "urgent" costs a faster look, nothing more).

use perimeter_workflows::{Intent, Urgency};
use regex_automata::meta::Regex;

const ANY: &str = r"urgent|urgently|asap|as soon as possible|immediately|right away|emergency";
const CLINICAL: &str = r"fever|temp of|temperature|worse|worsening|getting worse|severe|really bad|very bad|unbearable|bleeding|blood|vomit|vomiting|throwing up|cant keep|short of breath|shortness of breath|wheez|chest tight|chest tightness|chest|faint|fainting|dizzy|dizziness|passed out|blurry vision|vision|numb|numbness|swelling|swollen|rash|hives|infection|infected|pus|red streak|alarm|beeping|occlusion|pregnant|pregnancy|scared|terrified|panic|today|tonight|this morning|cant sleep|cant walk|cant eat|dehydrat|high blood pressure|bp (?:is |was )?(?:1[6-9][0-9]|2[0-9][0-9])";
const REFILL: &str = r"ran out|run out|running out|out of|(?:im|i am|were|we are|hes|shes|all) out|out since|last pill|last dose|last one|none left|no pills|no more|missed (?:a |my )?dose|today|tonight|tomorrow|by friday|before the weekend|leaving town|travel";
const RESULTS: &str =
    r"abnormal|critical|flag|flagged|high|low|positive|elevated|concerning|worried|scared|red";
const SCHEDULING: &str = r"today|tonight|this morning|this afternoon|running late|late for|in an hour|in (?:[0-9]+|ten|fifteen|twenty|thirty) (?:min|mins|minutes)|right now|same day|sooner";

/// Compiled urgency cues.
pub struct UrgencyCues {
    any: Regex,
    clinical: Regex,
    refill: Regex,
    results: Regex,
    scheduling: Regex,
}

impl std::fmt::Debug for UrgencyCues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrgencyCues")
    }
}

/// A built-in cue list failed to compile (a bug in this crate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("built-in urgency cues do not compile")]
pub struct CueError;

fn build(p: &str) -> Result<Regex, CueError> {
    Regex::new(&format!(r"(?-u:\b)(?:{p})")).map_err(|_| CueError)
}

impl UrgencyCues {
    /// Compiles the cues.
    pub fn new() -> Result<UrgencyCues, CueError> {
        Ok(UrgencyCues {
            any: build(ANY)?,
            clinical: build(CLINICAL)?,
            refill: build(REFILL)?,
            results: build(RESULTS)?,
            scheduling: build(SCHEDULING)?,
        })
    }

    /// The urgency of a message of `intent` whose normalised text is `norm`.
    pub(crate) fn assess(&self, intent: Intent, norm: &str) -> Urgency {
        let specific = match intent {
            Intent::Emergency => return Urgency::Emergency,
            Intent::Clinical => Some(&self.clinical),
            Intent::Refill => Some(&self.refill),
            Intent::Results => Some(&self.results),
            Intent::Scheduling => Some(&self.scheduling),
            Intent::Billing | Intent::Records | Intent::General => None,
        };
        if self.any.is_match(norm) || specific.is_some_and(|re| re.is_match(norm)) {
            Urgency::Urgent
        } else {
            Urgency::Routine
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emergency::normalize;

    fn u(intent: Intent, text: &str) -> Urgency {
        UrgencyCues::new().unwrap().assess(intent, &normalize(text))
    }

    #[test]
    fn urgency_follows_intent_and_cues() {
        assert_eq!(u(Intent::Emergency, "anything"), Urgency::Emergency);
        assert_eq!(
            u(Intent::Clinical, "I've had a fever of 101.5 since Monday"),
            Urgency::Urgent
        );
        assert_eq!(
            u(Intent::Clinical, "can I take Tylenol with my statin?"),
            Urgency::Routine
        );
        assert_eq!(
            u(Intent::Refill, "I ran out of my lisinopril yesterday"),
            Urgency::Urgent
        );
        assert_eq!(
            u(Intent::Refill, "please renew my prescription next month"),
            Urgency::Routine
        );
        assert_eq!(
            u(Intent::Results, "I saw an abnormal flag on my labs"),
            Urgency::Urgent
        );
        assert_eq!(
            u(Intent::Results, "are my lab results back?"),
            Urgency::Routine
        );
        assert_eq!(
            u(Intent::Scheduling, "running 15 min late for my 2pm"),
            Urgency::Urgent
        );
        assert_eq!(
            u(Intent::Scheduling, "can I move my appointment to May?"),
            Urgency::Routine
        );
        assert_eq!(
            u(Intent::Billing, "URGENT: my account is in collections"),
            Urgency::Urgent
        );
        assert_eq!(
            u(Intent::General, "what time do you open?"),
            Urgency::Routine
        );
    }
}
