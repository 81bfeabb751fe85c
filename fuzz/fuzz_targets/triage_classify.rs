//! Fuzz target: `scripts/fuzz` (or `cargo fuzz run triage_classify` from the repository root).
//! Any text must classify without a panic, with a confidence in 0..=1, and an emergency intent
//! exactly when the urgency is emergency.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use perimeter_triage::{Classifier, Intent, Urgency};

fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| Classifier::builtin().expect("built-in model loads"))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let c = classifier().classify(&text);
    assert!((0.0..=1.0).contains(&c.confidence));
    assert_eq!(
        c.intent == Intent::Emergency,
        c.urgency == Urgency::Emergency
    );
});
