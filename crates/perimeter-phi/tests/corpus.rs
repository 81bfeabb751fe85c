//! Regression gate on the development corpus (`../shared/corpus/phi-dev.jsonl`): entity recall,
//! per-label recall and character precision must stay at or above the targets.
//!
//! The corpus is found by walking up from this crate's directory to a `shared/corpus` (next to
//! the repository, as on the build machines). When it is missing the test FAILS, so that a
//! misplaced corpus cannot turn the gate off silently; set `PERIMETER_TEST_SKIP_CORPUS=1` to
//! skip it on purpose (e.g. on a machine that has no corpus).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use perimeter_phi::eval::{Evaluation, GoldRecord, to_char_spans};
use perimeter_phi::{Engine, EngineConfig};

/// `shared/corpus/phi-dev.jsonl` in the nearest ancestor of this crate that has one.
fn find_corpus() -> Option<PathBuf> {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("shared/corpus/phi-dev.jsonl");
        if candidate.is_file() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

fn skip_requested() -> bool {
    std::env::var("PERIMETER_TEST_SKIP_CORPUS").is_ok_and(|v| v == "1")
}

#[test]
fn corpus_meets_recall_and_precision_targets() {
    let Some(path) = find_corpus() else {
        if skip_requested() {
            println!("note: corpus not found; skipped because PERIMETER_TEST_SKIP_CORPUS=1");
            return;
        }
        panic!(
            "the development corpus (shared/corpus/phi-dev.jsonl above {}) was not found; \
             set PERIMETER_TEST_SKIP_CORPUS=1 to skip this gate on purpose",
            env!("CARGO_MANIFEST_DIR")
        );
    };
    let data = std::fs::read_to_string(&path).unwrap();
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let mut ev = Evaluation::new();
    for line in data.lines().filter(|l| !l.trim().is_empty()) {
        let r: GoldRecord = serde_json::from_str(line).unwrap();
        let spans = engine.detect(&r.text).unwrap();
        ev.add(&r.id, &r.text, &r.spans, &to_char_spans(&r.text, &spans));
    }
    let rep = ev.report();
    println!(
        "messages={} recall={:.4} precision={:.4} label_match={:.4}",
        rep.messages, rep.entity_recall, rep.char_precision, rep.label_match_recall
    );
    for (label, c) in &rep.per_label {
        println!("  {label:<12} recall={:.4}", c.recall());
    }
    assert!(rep.messages >= 1000, "corpus unexpectedly small");
    assert!(
        rep.entity_recall >= 0.995,
        "entity recall {:.4} < 0.995",
        rep.entity_recall
    );
    assert!(
        rep.char_precision >= 0.97,
        "char precision {:.4} < 0.97",
        rep.char_precision
    );
    for (label, c) in &rep.per_label {
        assert!(
            c.recall() >= 0.98,
            "{label} recall {:.4} < 0.98",
            c.recall()
        );
    }
}
