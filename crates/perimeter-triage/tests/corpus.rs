//! The targets, measured on data the model was not trained on, and the reproducibility
//! of the shipped model.
//!
//! Needs the dev corpus (`../shared/corpus/phi-dev.jsonl`, found by walking up from this crate).
//! Without it the tests fail, unless PERIMETER_TEST_SKIP_CORPUS=1 says to skip them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use perimeter_triage::{
    BUILTIN_MODEL, Classifier, Evaluation, Intent, LabelledRecord, TrainConfig, is_held_out,
    parse_labelled_jsonl, train, training_examples,
};

fn corpus_path() -> Option<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/corpus/phi-dev.jsonl"))
        .find(|p| p.is_file())
}

fn corpus() -> Option<Vec<LabelledRecord>> {
    match corpus_path() {
        Some(p) => Some(parse_labelled_jsonl(&std::fs::read_to_string(p).unwrap()).unwrap()),
        None if std::env::var("PERIMETER_TEST_SKIP_CORPUS").as_deref() == Ok("1") => {
            eprintln!("corpus missing and PERIMETER_TEST_SKIP_CORPUS=1: skipped");
            None
        }
        None => panic!(
            "the dev corpus (../shared/corpus/phi-dev.jsonl) is missing; set PERIMETER_TEST_SKIP_CORPUS=1 to skip"
        ),
    }
}

fn data(name: &str) -> Vec<LabelledRecord> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name);
    parse_labelled_jsonl(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn evaluate(c: &Classifier, records: &[&LabelledRecord]) -> Evaluation {
    Evaluation::new(
        records
            .iter()
            .map(|r| (r.intent, c.classify(&r.text).intent)),
    )
}

#[test]
fn held_out_split_meets_the_targets() {
    let Some(gold) = corpus() else { return };
    let extra = data("extra.jsonl");
    let config = TrainConfig::default();
    let examples = training_examples(&gold, &extra, true, config.extra_weight);
    let model = train(&examples, &config).unwrap();
    let c = Classifier::new(model).unwrap();
    let held: Vec<&LabelledRecord> = gold.iter().filter(|r| is_held_out(&r.text)).collect();
    assert!(held.len() > 600, "held-out split too small: {}", held.len());
    // None of the held-out texts was a training example.
    let trained: std::collections::HashSet<&str> =
        examples.iter().map(|e| e.text.as_str()).collect();
    let overlap = held
        .iter()
        .filter(|r| trained.contains(r.text.as_str()))
        .count();
    assert_eq!(overlap, 0, "held-out texts also in training");
    let e = evaluate(&c, &held);
    eprintln!("corpus held-out split:\n{}", e.report());
    assert_eq!(e.emergency_recall(), 1.0, "emergency recall");
    assert!(
        e.emergency_precision() >= 0.9,
        "emergency precision {}",
        e.emergency_precision()
    );
    assert!(e.macro_f1 >= 0.9, "macro-F1 {}", e.macro_f1);
}

#[test]
fn own_held_out_file_in_other_styles() {
    // Never trained on: the shipped model saw the corpus and extra.jsonl only.
    let held = data("heldout.jsonl");
    let extra = data("extra.jsonl");
    for h in &held {
        assert!(
            extra.iter().all(|x| x.text != h.text),
            "{} is also in extra.jsonl",
            h.id
        );
    }
    let c = Classifier::builtin().unwrap();
    let refs: Vec<&LabelledRecord> = held.iter().collect();
    let e = evaluate(&c, &refs);
    eprintln!("data/heldout.jsonl:\n{}", e.report());
    assert_eq!(e.emergency_recall(), 1.0, "emergency recall");
    assert!(
        e.emergency_precision() >= 0.9,
        "emergency precision {}",
        e.emergency_precision()
    );
    assert!(e.macro_f1 >= 0.8, "macro-F1 {}", e.macro_f1);
}

#[test]
fn the_built_in_model_on_the_whole_corpus() {
    let Some(gold) = corpus() else { return };
    let c = Classifier::builtin().unwrap();
    let refs: Vec<&LabelledRecord> = gold.iter().collect();
    let e = evaluate(&c, &refs);
    eprintln!(
        "built-in model, whole corpus (trained on it):\n{}",
        e.report()
    );
    assert_eq!(e.emergency_recall(), 1.0);
    assert!(e.emergency_precision() >= 0.9);
    assert!(e.macro_f1 >= 0.9);
}

#[test]
fn the_committed_model_is_a_fresh_train_byte_for_byte() {
    let Some(gold) = corpus() else { return };
    let extra = data("extra.jsonl");
    let config = TrainConfig::default();
    let examples = training_examples(&gold, &extra, false, config.extra_weight);
    let a = train(&examples, &config).unwrap().to_bytes();
    let b = train(&examples, &config).unwrap().to_bytes();
    assert_eq!(a, b, "training twice gave different bytes");
    assert!(
        a == BUILTIN_MODEL,
        "model/intent.bin is not what training gives; regenerate it with: perimeter triage train --gold ../shared/corpus/phi-dev.jsonl --extra crates/perimeter-triage/data/extra.jsonl --out crates/perimeter-triage/model/intent.bin"
    );
    assert!(
        BUILTIN_MODEL.len() < 1024 * 1024,
        "model {} bytes",
        BUILTIN_MODEL.len()
    );
}

#[test]
fn every_corpus_emergency_is_found_by_the_rules_alone() {
    // The rule layer is the safety net: it must not depend on the model.
    let Some(gold) = corpus() else { return };
    let rules = perimeter_triage::Rules::new().unwrap();
    let mut missed = Vec::new();
    let mut false_alarms = 0;
    for r in &gold {
        let fired = rules.detect(&r.text).is_some();
        if r.intent == Intent::Emergency && !fired {
            missed.push(r.id.clone());
        }
        if r.intent != Intent::Emergency && fired {
            false_alarms += 1;
        }
    }
    assert!(missed.is_empty(), "rules missed {missed:?}");
    let emergencies = gold
        .iter()
        .filter(|r| r.intent == Intent::Emergency)
        .count();
    let precision = emergencies as f64 / (emergencies + false_alarms) as f64;
    assert!(precision >= 0.95, "rule precision {precision}");
}

#[test]
fn identifiers_do_not_decide_the_intent() {
    // The same message with other names, numbers, dates and addresses gets the same answer.
    let c = Classifier::builtin().unwrap();
    let templates = [
        (
            "Hi, this is {N}, DOB {D}. I need to reschedule my appointment, call {P}.",
            Intent::Scheduling,
        ),
        (
            "refill pls - lisinopril 10 mg for {N} dob {D}, pharmacy {P}",
            Intent::Refill,
        ),
        (
            "{N} here, I got a bill for $240 for my visit on {D} but insurance paid, account {A}",
            Intent::Billing,
        ),
        (
            "Please send my records from {D} to Dr. {N}'s office, fax {P}",
            Intent::Records,
        ),
        (
            "Are my lab results from {D} back yet? I'm {N}, MRN {A}.",
            Intent::Results,
        ),
        (
            "{N} here, my throat is swelling and I can't breathe, I'm at {P}",
            Intent::Emergency,
        ),
        (
            "I changed my email to {E}, new cell {P}. {N}",
            Intent::General,
        ),
    ];
    let names = [
        "Maria Gonzalez",
        "Oluwaseun Adeyemi",
        "Zhang Wei",
        "Hope Grace",
        "Ünek Çelik",
    ];
    let phones = [
        "(312) 555-8841",
        "212.999.0000",
        "+1 415 555 0199",
        "five five five one two",
    ];
    let dates = ["03/02/1981", "July 19, 1951", "2026-03-14", "Jan 18"];
    let emails = ["maria.g@gmail.com", "z.wei88@proton.me"];
    let accounts = ["MRN1457047", "00123456", "CLM-00123456"];
    for (t, want) in templates {
        let mut seen = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let text = t
                .replace("{N}", n)
                .replace("{P}", phones[i % phones.len()])
                .replace("{D}", dates[i % dates.len()])
                .replace("{E}", emails[i % emails.len()])
                .replace("{A}", accounts[i % accounts.len()]);
            seen.push(c.classify(&text).intent);
        }
        assert!(seen.iter().all(|i| *i == want), "{t}: {seen:?}");
    }
}
