//! Intake rules: carrier keywords, the classifier seam, per-practice routing rules and the
//! decision for each inbound message (queue, priority, service-level due time, emergency fast
//! path), failing closed to a human queue when classification fails.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{Intent, Queue, ServiceLevels, Urgency};

/// A carrier keyword: a message that is exactly one of these words (case, surrounding blanks
/// and trailing punctuation ignored) is handled as carriers require, not routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CarrierKeyword {
    /// STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT.
    Stop,
    /// START, UNSTOP, YES.
    Start,
    /// HELP, INFO.
    Help,
}

const STOP_WORDS: [&str; 6] = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];
const START_WORDS: [&str; 3] = ["START", "UNSTOP", "YES"];
const HELP_WORDS: [&str; 2] = ["HELP", "INFO"];

/// The carrier keyword `body` is, if it is one.
pub fn carrier_keyword(body: &str) -> Option<CarrierKeyword> {
    let word = body.trim().trim_end_matches(['.', '!', '?']).trim();
    if word.len() > 11 || word.is_empty() {
        return None;
    }
    let upper = word.to_ascii_uppercase();
    if STOP_WORDS.contains(&upper.as_str()) {
        Some(CarrierKeyword::Stop)
    } else if START_WORDS.contains(&upper.as_str()) {
        Some(CarrierKeyword::Start)
    } else if HELP_WORDS.contains(&upper.as_str()) {
        Some(CarrierKeyword::Help)
    } else {
        None
    }
}

/// What a classifier says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeClass {
    /// The intent.
    pub intent: Intent,
    /// The urgency.
    pub urgency: Urgency,
    /// An emergency sign was found (chest pain, stroke signs, suicidal thoughts, ...).
    pub emergency: bool,
}

/// Classification failed (the message then goes to a human queue).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// No classifier is configured.
    #[error("no intake classifier is configured")]
    NotConfigured,
    /// The classifier failed (a fixed reason, never the text).
    #[error("the intake classifier failed: {0}")]
    Failed(&'static str),
}

impl ClassifyError {
    /// A stable code for records and metrics.
    pub const fn code(&self) -> &'static str {
        match self {
            ClassifyError::NotConfigured => "classifier_not_configured",
            ClassifyError::Failed(_) => "classifier_failed",
        }
    }
}

/// The seam between intake and the built-in classifier (`perimeter-triage`).
pub trait IntakeClassifier: Send + Sync {
    /// Classifies one message.
    fn classify(&self, text: &str) -> Result<IntakeClass, ClassifyError>;
}

/// The classifier used when none is configured: every message fails classification and so
/// goes to the fallback human queue with the failure recorded (fail closed).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoClassifier;

impl IntakeClassifier for NoClassifier {
    fn classify(&self, _text: &str) -> Result<IntakeClass, ClassifyError> {
        Err(ClassifyError::NotConfigured)
    }
}

/// The snake_case name of a queue.
pub const fn queue_name(q: Queue) -> &'static str {
    match q {
        Queue::FrontDesk => "front_desk",
        Queue::Scheduling => "scheduling",
        Queue::Refills => "refills",
        Queue::Billing => "billing",
        Queue::Records => "records",
        Queue::NurseTriage => "nurse_triage",
        Queue::Clinician => "clinician",
    }
}

/// The queue named `s` (snake_case).
pub fn parse_queue(s: &str) -> Option<Queue> {
    Queue::ALL.into_iter().find(|q| queue_name(*q) == s.trim())
}

/// The snake_case name of an urgency.
pub const fn urgency_name(u: Urgency) -> &'static str {
    match u {
        Urgency::Routine => "routine",
        Urgency::Urgent => "urgent",
        Urgency::Emergency => "emergency",
    }
}

/// A practice's routing rules: intent to queue, where failures go, and the service levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingRules {
    /// Intent to queue; intents not listed use [`RoutingRules::default_queue`].
    pub queues: BTreeMap<Intent, Queue>,
    /// Where a message goes when classification fails (a human queue with clinical training
    /// by default: nurse triage).
    pub fallback_queue: Queue,
    /// The service levels.
    pub levels: ServiceLevels,
}

impl Default for RoutingRules {
    fn default() -> Self {
        Self {
            queues: BTreeMap::new(),
            fallback_queue: Queue::NurseTriage,
            levels: ServiceLevels::default(),
        }
    }
}

impl RoutingRules {
    /// The default queue of an intent: scheduling, refills, billing, records; results,
    /// clinical and emergency to nurse triage; general to the front desk.
    pub const fn default_queue(intent: Intent) -> Queue {
        match intent {
            Intent::Scheduling => Queue::Scheduling,
            Intent::Refill => Queue::Refills,
            Intent::Billing => Queue::Billing,
            Intent::Records => Queue::Records,
            Intent::Results | Intent::Clinical | Intent::Emergency => Queue::NurseTriage,
            Intent::General => Queue::FrontDesk,
        }
    }

    /// The queue for `intent` under these rules. Emergencies always go to nurse triage (the
    /// on-call person is alerted besides).
    pub fn queue_for(&self, intent: Intent) -> Queue {
        if intent == Intent::Emergency {
            return Queue::NurseTriage;
        }
        self.queues
            .get(&intent)
            .copied()
            .unwrap_or(Self::default_queue(intent))
    }

    /// Decides where a message goes. `received` is when it arrived (the injected clock's
    /// time). A classification failure routes to the fallback queue as urgent, with the
    /// failure's code.
    pub fn decide(
        &self,
        class: Result<IntakeClass, ClassifyError>,
        received: OffsetDateTime,
    ) -> IntakeDecision {
        match class {
            Ok(c) => {
                let emergency = c.emergency || c.intent == Intent::Emergency;
                let intent = if emergency {
                    Intent::Emergency
                } else {
                    c.intent
                };
                let urgency = if emergency {
                    Urgency::Emergency
                } else {
                    c.urgency
                };
                let queue = self.queue_for(intent);
                IntakeDecision {
                    intent: Some(intent),
                    urgency,
                    queue,
                    priority: priority(urgency),
                    due: received + self.levels.allowed_wait(queue, urgency),
                    emergency,
                    clinical: is_clinical(Some(intent)),
                    failure: None,
                }
            }
            Err(e) => {
                let urgency = Urgency::Urgent;
                let queue = self.fallback_queue;
                IntakeDecision {
                    intent: None,
                    urgency,
                    queue,
                    priority: priority(urgency),
                    due: received + self.levels.allowed_wait(queue, urgency),
                    emergency: false,
                    clinical: true,
                    failure: Some(e.code()),
                }
            }
        }
    }
}

/// 0 is the top of every queue.
pub const fn priority(u: Urgency) -> i64 {
    match u {
        Urgency::Emergency => 0,
        Urgency::Urgent => 1,
        Urgency::Routine => 2,
    }
}

/// Whether a message of `intent` is clinical data (symptoms, results, medications; unknown is
/// treated as clinical so that fewer roles see it).
pub const fn is_clinical(intent: Option<Intent>) -> bool {
    !matches!(
        intent,
        Some(Intent::Scheduling | Intent::Billing | Intent::Records | Intent::General)
    )
}

/// Where one inbound message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeDecision {
    /// The intent (none when classification failed).
    pub intent: Option<Intent>,
    /// The urgency.
    pub urgency: Urgency,
    /// The queue.
    pub queue: Queue,
    /// 0 is the top.
    pub priority: i64,
    /// The service-level due time.
    pub due: OffsetDateTime,
    /// The emergency fast path applies.
    pub emergency: bool,
    /// The body is clinical data.
    pub clinical: bool,
    /// The failure code, when classification failed.
    pub failure: Option<&'static str>,
}

/// The practice-approved texts the channels send without a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTexts {
    /// Sent at once to anyone whose message shows an emergency sign. Reveals nothing.
    pub emergency: String,
    /// The reply to STOP (the carrier-required confirmation).
    pub stop: String,
    /// The reply to START.
    pub start: String,
    /// The reply to HELP.
    pub help: String,
}

impl Default for ChannelTexts {
    fn default() -> Self {
        Self {
            emergency: "If this is a medical emergency, call 911 now. If you are thinking about suicide or harming yourself, call or text 988 (Suicide & Crisis Lifeline). This number is not monitored for emergencies; our staff have been alerted to your message.".into(),
            stop: "You have been unsubscribed and will receive no more text messages from this number. Reply START to resubscribe.".into(),
            start: "You have been resubscribed to text messages from this number. Reply HELP for help, STOP to unsubscribe.".into(),
            help: "This is your medical practice's text line. For emergencies call 911. Reply STOP to unsubscribe. Msg & data rates may apply.".into(),
        }
    }
}

impl ChannelTexts {
    /// The reply to a carrier keyword.
    pub fn keyword_reply(&self, k: CarrierKeyword) -> &str {
        match k {
            CarrierKeyword::Stop => &self.stop,
            CarrierKeyword::Start => &self.start,
            CarrierKeyword::Help => &self.help,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::Duration;

    #[test]
    fn keywords_as_carriers_define_them() {
        for w in [
            "STOP",
            "stop",
            " Stop. ",
            "STOPALL",
            "unsubscribe",
            "Cancel",
            "end",
            "QUIT!",
        ] {
            assert_eq!(carrier_keyword(w), Some(CarrierKeyword::Stop), "{w}");
        }
        for w in ["START", "unstop", "Yes"] {
            assert_eq!(carrier_keyword(w), Some(CarrierKeyword::Start), "{w}");
        }
        for w in ["HELP", "info?"] {
            assert_eq!(carrier_keyword(w), Some(CarrierKeyword::Help), "{w}");
        }
        for w in [
            "",
            "please stop the pills",
            "stop it",
            "STOP STOP",
            "helpful",
            "yes please",
            "ſtop",
        ] {
            assert_eq!(carrier_keyword(w), None, "{w}");
        }
    }

    #[test]
    fn default_routes_match_the_issue() {
        let r = RoutingRules::default();
        let expect = [
            (Intent::Scheduling, Queue::Scheduling),
            (Intent::Refill, Queue::Refills),
            (Intent::Billing, Queue::Billing),
            (Intent::Records, Queue::Records),
            (Intent::Results, Queue::NurseTriage),
            (Intent::Clinical, Queue::NurseTriage),
            (Intent::Emergency, Queue::NurseTriage),
            (Intent::General, Queue::FrontDesk),
        ];
        for (i, q) in expect {
            assert_eq!(r.queue_for(i), q, "{i}");
        }
    }

    #[test]
    fn practice_rules_override_but_never_emergencies() {
        let mut r = RoutingRules::default();
        r.queues.insert(Intent::Results, Queue::Clinician);
        r.queues.insert(Intent::Emergency, Queue::FrontDesk);
        assert_eq!(r.queue_for(Intent::Results), Queue::Clinician);
        assert_eq!(r.queue_for(Intent::Emergency), Queue::NurseTriage);
    }

    #[test]
    fn emergencies_jump_and_failures_go_to_people() {
        let r = RoutingRules::default();
        let t = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let d = r.decide(
            Ok(IntakeClass {
                intent: Intent::Clinical,
                urgency: Urgency::Urgent,
                emergency: true,
            }),
            t,
        );
        assert!(d.emergency);
        assert_eq!(d.priority, 0);
        assert_eq!(d.intent, Some(Intent::Emergency));
        assert_eq!(d.due, t + Duration::minutes(5));
        let f = r.decide(Err(ClassifyError::Failed("model")), t);
        assert_eq!(f.queue, Queue::NurseTriage);
        assert_eq!(f.failure, Some("classifier_failed"));
        assert!(f.clinical);
        assert!(!f.emergency);
        let s = r.decide(
            Ok(IntakeClass {
                intent: Intent::Scheduling,
                urgency: Urgency::Routine,
                emergency: false,
            }),
            t,
        );
        assert_eq!(
            (s.queue, s.priority, s.clinical),
            (Queue::Scheduling, 2, false)
        );
        assert_eq!(s.due, t + Duration::minutes(480));
    }

    #[test]
    fn queue_names_round_trip() {
        for q in Queue::ALL {
            assert_eq!(parse_queue(queue_name(q)), Some(q));
        }
        assert_eq!(parse_queue("nowhere"), None);
    }

    proptest! {
        #[test]
        fn keyword_parser_never_panics_and_needs_one_word(s in ".{0,64}") {
            if let Some(_k) = carrier_keyword(&s) {
                let t = s.trim().trim_end_matches(['.', '!', '?']).trim();
                prop_assert!(!t.contains(char::is_whitespace));
            }
        }

        #[test]
        fn keywords_in_any_case(i in 0usize..11, mask in any::<u16>(), pad in "[ \t]{0,3}") {
            let all: Vec<&str> = STOP_WORDS.iter().chain(START_WORDS.iter()).chain(HELP_WORDS.iter()).copied().collect();
            let w = all[i % all.len()];
            let mixed: String = w.chars().enumerate().map(|(n, c)| if mask & (1 << (n % 16)) != 0 { c.to_ascii_lowercase() } else { c }).collect();
            let padded = format!("{pad}{mixed}{pad}");
            prop_assert!(carrier_keyword(&padded).is_some());
        }
    }
}
