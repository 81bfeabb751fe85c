//! The clinical-advice check for answers that may reach a patient.
//!
//! People make every clinical judgement; an AI-drafted answer for a patient-facing purpose
//! ([`crate::PurposeRule::patient_facing`]) that diagnoses, recommends a treatment, gives a
//! dose or judges urgency is blocked and routed to a person. The check is rule-based and works
//! sentence by sentence, so an administrative sentence next to a clinical one does not hide
//! it. One kind of sentence is exempt: the conditional safety net practices put in every
//! message ("If this is a medical emergency, call 911").
//!
//! The rules lean towards blocking: a false block costs a person a minute, a missed one can
//! cost a patient. Administrative replies (appointments, refills sent, results available,
//! billing, records) pass.

use std::sync::OnceLock;

use regex::{Regex, RegexSet};
use serde::Serialize;

/// What kind of clinical judgement an answer makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClinicalAdvice {
    /// Names or suggests a condition, or interprets results.
    Diagnosis,
    /// Recommends taking, stopping or doing something for the patient's health.
    Treatment,
    /// Gives a dose, a frequency or a dose change.
    Dosing,
    /// Judges how urgent or serious something is.
    Urgency,
}

impl ClinicalAdvice {
    /// The stable name used in records and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            ClinicalAdvice::Diagnosis => "diagnosis",
            ClinicalAdvice::Treatment => "treatment",
            ClinicalAdvice::Dosing => "dosing",
            ClinicalAdvice::Urgency => "urgency",
        }
    }
}

const CONDITIONS: &str = r"(?:infection|virus|viral|flu|influenza|strep|pneumonia|bronchitis|sinusitis|migraine|allerg(?:y|ic reaction)|fracture|sprain|concussion|stroke|heart attack|uti|diabetes|depression|anxiety|cancer|tumou?r|covid(?:-19)?|cold|rash|eczema|shingles|appendicitis|gout|arthritis|hypertension|asthma|reflux|gerd|ulcer|anemia|dehydration|panic attack)";

const DRUGS: &str = r"(?:ibuprofen|acetaminophen|paracetamol|tylenol|advil|motrin|aspirin|naproxen|aleve|benadryl|diphenhydramine|loratadine|claritin|zyrtec|cetirizine|amoxicillin|azithromycin|penicillin|prednisone|metformin|insulin|lisinopril|atorvastatin|omeprazole|antibiotics?|antihistamines?|steroids?|painkillers?|pain relievers?|medications?|medicines?|meds|pills?|tablets?|capsules?|drops|cream|ointment|inhaler)";

fn rules() -> &'static [(ClinicalAdvice, &'static str)] {
    use ClinicalAdvice::*;
    static RULES: OnceLock<Vec<(ClinicalAdvice, &'static str)>> = OnceLock::new();
    RULES.get_or_init(|| {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        vec![
            // Diagnosis.
            (
                Diagnosis,
                r"\b(?:you|he|she|they|your (?:child|son|daughter|baby|husband|wife|partner))\s+(?:probably|likely|most likely|may|might|could|must|definitely|clearly|seem to|appear to)\s+(?:have|has|be (?:suffering from|having|experiencing))\b",
            ),
            (
                Diagnosis,
                r"\b(?:sounds|looks|seems)\s+like\s+(?:you\s+(?:have|are having|might have)|it'?s|it\s+is|an?\s)",
            ),
            (
                Diagnosis,
                leak(format!(
                    r"\b(?:this|it|that)\s+(?:is|'s|could be|might be|may be|is probably|is likely|sounds like|looks like)\s+(?:probably\s+|likely\s+|just\s+)?(?:an?\s+|the\s+)?(?:\w+\s+){{0,2}}{CONDITIONS}\b"
                )),
            ),
            (
                Diagnosis,
                r"\b(?:diagnos(?:is|ed|e)\s+(?:is|of|with|you|as)|(?:your|the|these|those)\s+symptoms\s+(?:suggest|indicate|point to|are consistent with|are typical of|mean|sound like))\b",
            ),
            (
                Diagnosis,
                r"\b(?:your|the)\s+(?:lab\s+|test\s+|blood\s+|imaging\s+)?(?:results?|labs?|lab work|tests?|blood work|x-?rays?|scans?|mri|ct|ecg|ekg|biopsy|levels?|numbers?)\s+(?:show|shows|showed|indicate|indicates|suggest|suggests|confirm|confirms|mean|means|look|looks|are|is|were|was)\s+(?:normal|abnormal|fine|good|bad|high|low|elevated|positive|negative|concerning|nothing|that)\b",
            ),
            (
                Diagnosis,
                r"\b(?:you(?:'re| are)\s+(?:suffering from|having an? (?:\w+\s+)?(?:attack|reaction|episode|flare))|consistent with an?\s+\w+)",
            ),
            // Treatment.
            (
                Treatment,
                r"\b(?:you\s+(?:should|need to|must|ought to)|i\s+(?:would\s+)?(?:recommend|suggest|advise)|we\s+(?:recommend|suggest|advise)|it'?s\s+best\s+to|try)\s+(?:taking|to take|take|using|to use|starting|start|stopping|stop|discontinu\w*|applying|apply|increas\w*|decreas\w*|doubl\w*|skip(?:ping)?|resting|rest|icing|ice|elevat\w*|drink(?:ing)?|gargl\w*|avoid(?:ing)? (?:food|eating|drinking|alcohol|dairy|exercise|lifting|weight))\b",
            ),
            (
                Treatment,
                r"\b(?:stop|start|keep|continue|resume|quit)\s+(?:taking|using)\b",
            ),
            (
                Treatment,
                leak(format!(
                    r"\b(?:take|taking|use|using|apply|applying|try|trying|give|giving)\s+(?:an?\s+|some\s+|two\s+|one\s+|\d+\s+|your\s+|more\s+|extra\s+|over-the-counter\s+|otc\s+)?(?:\w+\s+)?{DRUGS}\b"
                )),
            ),
            (
                Treatment,
                r"\b(?:apply|use)\s+(?:an?\s+)?(?:cold|warm|hot|ice)\s+(?:compress|pack)|\bhome\s+remed(?:y|ies)\b|\bover-the-counter\s+(?:medication|medicine|pain)",
            ),
            // Dosing.
            (
                Dosing,
                r"\b\d+(?:\.\d+)?\s*(?:mg|mcg|µg|g|ml|cc|units?|iu|tablets?|tabs?|pills?|capsules?|puffs?|drops?|teaspoons?|tsp|tablespoons?|tbsp)\b.{0,40}?\b(?:every\s+\d+|once|twice|three times|four times|\d+\s+times|daily|a day|per day|at bedtime|as needed|prn|bid|tid|qid|in the morning|at night|hourly|with food|with meals)\b",
            ),
            (
                Dosing,
                r"\b(?:every\s+\d+\s*(?:-|to)?\s*\d*\s*hours|(?:up to|no more than|maximum of|max(?:imum)?)\s+\d+\s*(?:mg|mcg|ml|tablets?|pills?|capsules?|doses?))\b",
            ),
            (
                Dosing,
                r"\b(?:increase|decrease|lower|raise|double|halve|adjust|change|reduce|cut|split)\s+(?:your|the|his|her)\s+(?:dose|dosage|medication|insulin|pills?|tablets?)\b",
            ),
            (
                Dosing,
                r"\b(?:take|give|use)\s+(?:an?\s+)?(?:extra|another|second|double|half(?:\s+a)?)\s+(?:dose|pill|tablet|capsule|puff)\b",
            ),
            (
                Dosing,
                r"\b(?:the|your|a)\s+(?:recommended|usual|normal|safe|correct|right)\s+(?:dose|dosage)\b",
            ),
            // Urgency.
            (
                Urgency,
                r"\b(?:it'?s|this\s+is|that'?s|that\s+is|it\s+is|sounds|seems|looks)\s+(?:probably\s+|likely\s+|most likely\s+)?(?:not\s+(?:serious|urgent|an?\s+emergency|dangerous|a\s+concern|concerning|worrying|worrisome|a\s+problem)|nothing\s+(?:serious|to\s+worry\s+about|urgent)|harmless|minor|normal|benign|serious|urgent|an?\s+emergency|life-threatening|dangerous)\b",
            ),
            (
                Urgency,
                r"\b(?:no\s+need|don'?t\s+need|do\s+not\s+need|there'?s\s+no\s+need|shouldn'?t\s+need)\s+to\s+(?:worry|see\s+(?:a|the|your)\s+(?:doctor|physician|provider|specialist)|go\s+to\s+(?:the\s+)?(?:er|emergency|hospital|urgent\s+care)|seek|call\s+911|be\s+seen|come\s+in\s+(?:for|about)\s+(?:this|it|that))\b",
            ),
            (
                Urgency,
                r"\b(?:you\s+should|you\s+need\s+to|you\s+must|please|i\s+(?:would\s+)?(?:recommend|suggest|advise))\s+(?:go|going|head|get)\s+(?:straight\s+|immediately\s+|right away\s+)?(?:to\s+)?(?:the\s+)?(?:er|emergency\s+room|emergency\s+department|urgent\s+care|hospital)\b",
            ),
            (
                Urgency,
                r"\b(?:call\s+911|call\s+an\s+ambulance|seek\s+(?:immediate|emergency|urgent)\s+(?:medical\s+)?(?:care|attention|help|treatment))\b",
            ),
            (
                Urgency,
                r"\b(?:(?:can|could)\s+(?:safely\s+)?wait\s+(?:until|till|for|a\s+few)|wait\s+and\s+see|(?:should|will|usually)\s+(?:go\s+away|resolve|clear\s+up|get\s+better|heal)\s+(?:on\s+its\s+own|by\s+itself|without|in\s+a\s+few|within))\b",
            ),
        ]
    })
}

struct Compiled {
    set: RegexSet,
    kinds: Vec<ClinicalAdvice>,
    safety_net: Regex,
}

fn compiled() -> Option<&'static Compiled> {
    static C: OnceLock<Option<Compiled>> = OnceLock::new();
    C.get_or_init(|| {
        let rules = rules();
        let set = regex::RegexSetBuilder::new(rules.iter().map(|r| r.1))
            .case_insensitive(true)
            .build()
            .ok()?;
        let safety_net = regex::RegexBuilder::new(
            r"^\W*(?:if|in case of|should)\b[^.!?]*\b(?:emergenc|911|life-threatening|(?:get|gets|getting)\s+worse|worsen)",
        )
        .case_insensitive(true)
        .build()
        .ok()?;
        Some(Compiled {
            set,
            kinds: rules.iter().map(|r| r.0).collect(),
            safety_net,
        })
    })
    .as_ref()
}

/// Why the check could not run (a bug in a built-in rule, never caused by input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the clinical-advice rules failed to build")]
pub struct RulesUnavailable;

/// The kinds of clinical judgement `text` makes, sorted, without duplicates; empty when it
/// makes none.
pub fn check(text: &str) -> Result<Vec<ClinicalAdvice>, RulesUnavailable> {
    let c = compiled().ok_or(RulesUnavailable)?;
    let mut found = Vec::new();
    for sentence in sentences(text) {
        if c.safety_net.is_match(sentence) && !mentions_more_than_safety_net(sentence) {
            continue;
        }
        for i in c.set.matches(sentence).iter() {
            found.push(c.kinds[i]);
        }
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// A conditional sentence that also diagnoses or doses is not a plain safety net.
fn mentions_more_than_safety_net(sentence: &str) -> bool {
    let lower = sentence.to_lowercase();
    ["mg", "dose", "take ", "taking", "you have", "sounds like"]
        .iter()
        .any(|w| lower.contains(w))
}

fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(['.', '!', '?', '\n', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClinicalAdvice::*;

    const CLINICAL: &[(&str, ClinicalAdvice)] = &[
        ("It sounds like you have a sinus infection.", Diagnosis),
        (
            "You probably have the flu, which is going around.",
            Diagnosis,
        ),
        (
            "This could be an allergic reaction to the new soap.",
            Diagnosis,
        ),
        ("That is likely a mild sprain.", Diagnosis),
        (
            "Your symptoms suggest a urinary tract infection.",
            Diagnosis,
        ),
        (
            "Your lab results look normal, so nothing to worry about.",
            Diagnosis,
        ),
        ("The x-ray shows nothing broken.", Diagnosis),
        ("Your child may be having an asthma flare.", Diagnosis),
        ("You should take ibuprofen for the swelling.", Treatment),
        ("I recommend taking an antihistamine before bed.", Treatment),
        ("Try using a warm compress on the eye.", Treatment),
        (
            "Please stop taking the lisinopril until you hear from us.",
            Treatment,
        ),
        ("You can take two Tylenol now.", Treatment),
        (
            "We suggest resting and drinking plenty of fluids.",
            Treatment,
        ),
        ("Take 500 mg twice a day with food.", Dosing),
        ("Give her 5 ml every 6 hours.", Dosing),
        (
            "Do not take more than 4000 mg per day, so no more than 8 tablets.",
            Dosing,
        ),
        ("You can double your dose tonight.", Dosing),
        ("Take an extra dose if the pain comes back.", Dosing),
        ("The usual dose for adults is one tablet.", Dosing),
        ("It's probably nothing serious.", Urgency),
        ("There's no need to go to the ER for this.", Urgency),
        ("You should go to the emergency room right away.", Urgency),
        ("This can wait until your appointment next week.", Urgency),
        ("It should go away on its own in a few days.", Urgency),
        ("Call 911 now.", Urgency),
        ("That is not an emergency.", Urgency),
        ("Seek immediate medical attention.", Urgency),
    ];

    const ADMINISTRATIVE: &[&str] = &[
        "Your appointment is confirmed for Tuesday at 3 pm with Dr. Lee.",
        "We've sent your refill request to the pharmacy; they will text you when it's ready.",
        "Your lab results are available in the patient portal. A nurse will call you to discuss them.",
        "Our office is open Monday to Friday, 8 am to 5 pm.",
        "If this is a medical emergency, please call 911 or go to the nearest emergency room.",
        "If your symptoms get worse, please call the office or go to the nearest emergency room.",
        "Your balance of $45.00 is due by the end of the month.",
        "Please bring your insurance card and a photo ID to your visit.",
        "A nurse will review your message and call you back today.",
        "We have received your records request and will process it within 5 business days.",
        "You can take the elevator to the third floor.",
        "Don't worry, we can reschedule your appointment to next week.",
        "Please arrive 15 minutes early to complete your paperwork.",
        "Your prescription for lisinopril 10 mg was sent to the pharmacy on Main Street.",
        "The doctor will discuss your treatment options at your visit.",
        "Take care and have a nice day!",
        "You should receive a text reminder 24 hours before your visit.",
        "The clinic is closed on Monday for the holiday; the portal stays open.",
        "We need a copy of your new insurance card before the visit.",
        "Thanks for letting us know; I have passed your question to Dr. Patel's nurse.",
        "Your form is ready to pick up at the front desk.",
        "Parking is free in the garage behind the building.",
        "Is this a good number to reach you on?",
        "We can send the records to your new provider once we have the signed release.",
    ];

    #[test]
    fn clinical_answers_are_caught_with_their_kind() {
        for (text, kind) in CLINICAL {
            let found = check(text).unwrap();
            assert!(
                found.contains(kind),
                "{text:?}: expected {kind:?}, got {found:?}"
            );
        }
    }

    #[test]
    fn administrative_answers_pass() {
        for text in ADMINISTRATIVE {
            assert_eq!(check(text).unwrap(), [], "{text:?}");
        }
        let all = ADMINISTRATIVE.join(" ");
        assert_eq!(check(&all).unwrap(), []);
    }

    #[test]
    fn a_clinical_sentence_is_found_among_administrative_ones() {
        let text = format!(
            "{} {} {}",
            ADMINISTRATIVE[0], "Meanwhile you should take ibuprofen.", ADMINISTRATIVE[4]
        );
        assert_eq!(check(&text).unwrap(), [Treatment]);
        // A conditional sentence that doses is not a safety net.
        assert_eq!(
            check("If the pain gets worse, take 400 mg every 6 hours.").unwrap(),
            [Dosing]
        );
        assert_eq!(check("").unwrap(), []);
    }
}
