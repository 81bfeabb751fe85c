//! The built-in intent and urgency classifier (issue 7, intake and triage).
//!
//! Runs locally, needs no vendor: [`Classifier::builtin`] loads the model embedded in the binary
//! (`model/intent.bin`, trained by `perimeter triage train` from the dev corpus and
//! `data/extra.jsonl`), and [`Classifier::classify`] gives an [`Intent`], an [`Urgency`], the
//! model's confidence and, when the emergency rules fire, the [`EmergencySign`].
//!
//! Two layers:
//! 1. a multinomial logistic regression over hashed word, word-pair and character n-gram
//!    features ([`features`], [`model`], [`train`]); identifiers are folded away before
//!    featurising (digits, e-mail and web addresses) and rare strings such as names get no
//!    weight;
//! 2. the emergency rules ([`emergency`]): linear-time automata for emergency signs with
//!    negation and history handling. A sign that fires makes the message an emergency whatever
//!    the model says; so does an emergency probability of at least
//!    [`EMERGENCY_THRESHOLD`]. When emergency is the model's most likely intent but below the
//!    threshold, the next intent is given with urgency at least `urgent` (looked at today).
//!
//! Pure logic: no I/O, no async, no clock. Never panics on any input, and puts no text in an
//! error.

pub mod data;
pub mod emergency;
pub mod eval;
pub mod features;
pub mod model;
pub mod train;
mod urgency;

pub use data::{DataError, LabelledRecord, is_held_out, parse_labelled_jsonl, training_examples};
pub use emergency::{EmergencySign, Rules};
pub use eval::Evaluation;
pub use model::{Model, ModelError};
pub use perimeter_workflows::{Intent, Urgency};
pub use train::{Example, TrainConfig, TrainError, train};

/// The model shipped in the binary.
pub const BUILTIN_MODEL: &[u8] = include_bytes!("../model/intent.bin");

/// Emergency probability from which the model alone makes a message an emergency.
pub const EMERGENCY_THRESHOLD: f32 = 0.5;

/// Why a classifier could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriageError {
    /// The model bytes were refused.
    #[error("triage model: {0}")]
    Model(#[from] ModelError),
    /// The model does not cover every intent.
    #[error("triage model does not cover every intent")]
    Classes,
    /// A built-in rule failed to compile (a bug).
    #[error(transparent)]
    Rules(#[from] emergency::RuleError),
    /// The urgency cues failed to compile (a bug).
    #[error(transparent)]
    Cues(#[from] urgency::CueError),
}

/// The result for one message.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Classification {
    /// What the message is about.
    pub intent: Intent,
    /// How soon a person must look.
    pub urgency: Urgency,
    /// The model's probability of `intent` (0.0 to 1.0). When the emergency rules decided, it
    /// is 1.0; for a text without words (empty, only punctuation) it is 0.0 and the intent is
    /// `general`.
    pub confidence: f32,
    /// The emergency sign the rules found, if any.
    pub emergency: Option<EmergencySign>,
}

/// The classifier: a model, the emergency rules and the urgency cues. Build once and share
/// (`Send + Sync`); `classify` takes `&self`.
#[derive(Debug)]
pub struct Classifier {
    model: Model,
    emergency_threshold: f32,
    emergency_index: usize,
    rules: Rules,
    cues: urgency::UrgencyCues,
}

impl Classifier {
    /// The classifier with the model embedded in the binary.
    pub fn builtin() -> Result<Classifier, TriageError> {
        Classifier::new(Model::from_bytes(BUILTIN_MODEL)?)
    }

    /// A classifier with another model (e.g. one just trained).
    pub fn new(model: Model) -> Result<Classifier, TriageError> {
        if Intent::ALL.iter().any(|i| !model.classes().contains(i)) {
            return Err(TriageError::Classes);
        }
        let emergency_index = model
            .classes()
            .iter()
            .position(|c| *c == Intent::Emergency)
            .ok_or(TriageError::Classes)?;
        Ok(Classifier {
            model,
            emergency_threshold: EMERGENCY_THRESHOLD,
            emergency_index,
            rules: Rules::new()?,
            cues: urgency::UrgencyCues::new()?,
        })
    }

    /// Changes the emergency probability from which the model alone makes a message an
    /// emergency (default [`EMERGENCY_THRESHOLD`]; values outside 0..=1 are clamped). The rules
    /// are not affected.
    pub fn set_emergency_threshold(&mut self, threshold: f32) {
        self.emergency_threshold = if threshold.is_nan() {
            EMERGENCY_THRESHOLD
        } else {
            threshold.clamp(0.0, 1.0)
        };
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model's probability for every intent, in [`Model::classes`] order.
    pub fn scores(&self, text: &str) -> Vec<(Intent, f32)> {
        let f = features::featurize(text, self.model.hash_bits());
        let p = self.model.probabilities(&f);
        self.model.classes().iter().copied().zip(p).collect()
    }

    /// Classifies one message.
    pub fn classify(&self, text: &str) -> Classification {
        let f = features::featurize(text, self.model.hash_bits());
        let p = self.model.probabilities(&f);
        // The best intent other than emergency: an emergency below the threshold is not
        // declared by the model alone, but the message is looked at today (urgent).
        let (best, best_p) = p
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| *i != self.emergency_index)
            .fold((0usize, f32::NEG_INFINITY), |acc, (i, v)| {
                if v > acc.1 { (i, v) } else { acc }
            });
        let norm = emergency::normalize(text);
        let sign = self.rules.findings_normalized(&norm).signs.first().copied();
        let p_emergency = p.get(self.emergency_index).copied().unwrap_or(0.0);
        let mut possible_emergency = false;
        let (intent, confidence) = if sign.is_some() {
            (Intent::Emergency, 1.0)
        } else if f.is_empty() {
            // Nothing to go on (no words): not a guess from the priors.
            (Intent::General, 0.0)
        } else if p_emergency >= self.emergency_threshold {
            (Intent::Emergency, p_emergency)
        } else {
            possible_emergency = p_emergency > best_p;
            let intent = self
                .model
                .classes()
                .get(best)
                .copied()
                .unwrap_or(Intent::General);
            (intent, best_p.max(0.0))
        };
        let mut urgency = self.cues.assess(intent, &norm);
        if possible_emergency {
            urgency = urgency.max(Urgency::Urgent);
        }
        Classification {
            intent,
            urgency,
            confidence,
            emergency: sign,
        }
    }
}

/// The built-in classifier behind intake's seam: an emergency sign or an emergency intent is
/// an emergency.
impl perimeter_workflows::IntakeClassifier for Classifier {
    fn classify(
        &self,
        text: &str,
    ) -> Result<perimeter_workflows::IntakeClass, perimeter_workflows::ClassifyError> {
        let c = Classifier::classify(self, text);
        Ok(perimeter_workflows::IntakeClass {
            intent: c.intent,
            urgency: c.urgency,
            emergency: c.emergency.is_some() || c.intent == Intent::Emergency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn toy_classifier() -> &'static Classifier {
        static C: std::sync::OnceLock<Classifier> = std::sync::OnceLock::new();
        C.get_or_init(build_toy)
    }

    fn build_toy() -> Classifier {
        let mut ex = Vec::new();
        let samples = [
            (Intent::Scheduling, "can i book an appointment next week"),
            (Intent::Refill, "i need a refill of my pills"),
            (Intent::Billing, "question about my bill"),
            (Intent::Records, "please send my records"),
            (Intent::Results, "are my lab results back"),
            (Intent::Clinical, "i have a cough and a sore throat"),
            (Intent::Emergency, "crushing chest pain cant breathe"),
            (Intent::General, "what time do you open"),
        ];
        for i in 0..4 {
            for (intent, t) in samples {
                ex.push(Example::new(format!("{t} {i}"), intent));
            }
        }
        let cfg = TrainConfig {
            hash_bits: 12,
            min_df: 1,
            ..TrainConfig::default()
        };
        Classifier::new(train(&ex, &cfg).unwrap()).unwrap()
    }

    #[test]
    fn rules_override_the_model_and_set_the_urgency() {
        let c = toy_classifier();
        let r = c.classify("can i book an appointment, my husband's face is drooping");
        assert_eq!(r.intent, Intent::Emergency);
        assert_eq!(r.urgency, Urgency::Emergency);
        assert_eq!(r.emergency, Some(EmergencySign::Stroke));
        assert_eq!(r.confidence, 1.0);
        let r = c.classify("can i book an appointment next week");
        assert_eq!(r.intent, Intent::Scheduling);
        assert_eq!(r.emergency, None);
        assert!(r.confidence > 0.0 && r.confidence <= 1.0);
    }

    #[test]
    fn a_weak_model_only_emergency_is_the_next_intent_but_urgent() {
        let mut c = build_toy();
        // With the threshold above 1 the model can never declare an emergency alone.
        c.set_emergency_threshold(1.0);
        c.emergency_threshold = 1.01;
        let r = c.classify("crushing cant 0");
        assert_ne!(r.intent, Intent::Emergency);
        assert_eq!(r.urgency, Urgency::Urgent);
        assert_eq!(r.emergency, None);
        c.set_emergency_threshold(0.0);
        assert_eq!(c.classify("crushing cant 0").intent, Intent::Emergency);
        c.set_emergency_threshold(f32::NAN);
        assert_eq!(c.emergency_threshold, EMERGENCY_THRESHOLD);
    }

    #[test]
    fn empty_text_is_general_and_routine() {
        let c = toy_classifier();
        let r = c.classify("");
        assert_ne!(r.intent, Intent::Emergency);
        assert_eq!(r.urgency, Urgency::Routine);
    }

    #[test]
    fn a_model_missing_an_intent_is_refused() {
        let m = model::Model::from_float(
            8,
            vec![Intent::General, Intent::Emergency],
            vec![0.0; 2],
            &[0.0; 512],
        );
        assert_eq!(Classifier::new(m).unwrap_err(), TriageError::Classes);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn classify_never_panics(text in any::<String>()) {
            let c = toy_classifier();
            let r = c.classify(&text);
            prop_assert!(r.confidence.is_finite() && (0.0..=1.0).contains(&r.confidence));
            prop_assert_eq!(r.intent == Intent::Emergency, r.urgency == Urgency::Emergency);
        }

        #[test]
        fn classify_never_panics_on_wordy_text(words in proptest::collection::vec(
            prop_oneof![
                Just("not"), Just("chest"), Just("pain"), Just("."), Just(","), Just("cant"),
                Just("breathe"), Just("no"), Just("but"), Just("101.5"), Just("stroke"),
                Just("follow up"), Just("'"), Just("é"), Just("\n"), Just("took too many"),
            ], 0..40)) {
            let c = toy_classifier();
            let _ = c.classify(&words.join(" "));
        }

        #[test]
        fn model_bytes_round_trip(bits in 8u8..11, k in 2usize..=8, seed in any::<u64>()) {
            let classes: Vec<Intent> = Intent::ALL[..k].to_vec();
            let n = (1usize << bits) * k;
            let mut x = seed;
            let weights: Vec<f32> = (0..n).map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            }).collect();
            let bias: Vec<f32> = (0..k).map(|i| i as f32 * 0.1).collect();
            let m = model::Model::from_float(bits, classes, bias, &weights);
            let bytes = m.to_bytes();
            let back = Model::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&back, &m);
            prop_assert_eq!(back.to_bytes(), bytes);
        }

        #[test]
        fn from_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Model::from_bytes(&bytes);
        }

        #[test]
        fn from_bytes_refuses_any_single_byte_change(pos in any::<proptest::sample::Index>(), flip in 1u8..=255) {
            let bytes = BUILTIN_MODEL;
            prop_assume!(!bytes.is_empty());
            let mut v = bytes.to_vec();
            let i = pos.index(v.len());
            v[i] ^= flip;
            prop_assert!(Model::from_bytes(&v).is_err());
        }
    }
}
