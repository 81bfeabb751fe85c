//! Regression gate on the development corpus (`../shared/corpus/phi-dev.jsonl`): entity recall,
//! per-label recall and character precision must stay at or above the targets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use perimeter_phi::eval::{Evaluation, GoldRecord, to_char_spans};
use perimeter_phi::{Engine, EngineConfig};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/corpus/phi-dev.jsonl"
);

#[test]
fn corpus_meets_recall_and_precision_targets() {
    let Ok(data) = std::fs::read_to_string(CORPUS) else {
        println!("note: {CORPUS} not found; corpus regression test skipped");
        return;
    };
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
