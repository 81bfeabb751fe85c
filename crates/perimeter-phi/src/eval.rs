//! Evaluation metrics, as defined in the corpus README. Pure computation, no I/O.
//!
//! - **Entity recall**: a gold span is caught when every letter and digit in it is covered by
//!   some predicted span, of any label.
//! - **Character precision**: of all letters and digits covered by predicted spans, the share
//!   inside gold spans.
//! - **Label-match recall**: caught, and some predicted span overlapping it has the gold label.
//! - Per-label entity recall.
//!
//! All offsets here are Unicode **character** offsets, as in the corpus.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Label, Span};

/// One annotated span of a corpus line (character offsets, end exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldSpan {
    /// First character.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
    /// The identifier class.
    pub label: Label,
}

/// One line of a corpus JSONL file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldRecord {
    /// Message id, e.g. `A-00002`.
    pub id: String,
    /// Message kind (`sms`, `voicemail`, ...), when given.
    #[serde(default)]
    pub kind: Option<String>,
    /// Routing intent, when given.
    #[serde(default)]
    pub intent: Option<String>,
    /// The message.
    pub text: String,
    /// The annotated identifiers.
    pub spans: Vec<GoldSpan>,
}

/// Converts engine spans (byte offsets) to character-offset spans for `text`.
pub fn to_char_spans(text: &str, spans: &[Span]) -> Vec<GoldSpan> {
    spans
        .iter()
        .map(|s| {
            let (start, end) = s.char_range(text);
            GoldSpan {
                start,
                end,
                label: s.label,
            }
        })
        .collect()
}

/// A gold span that was not (fully) caught.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Miss {
    /// Message id.
    pub id: String,
    /// Character offsets of the gold span.
    pub start: usize,
    /// End, exclusive.
    pub end: usize,
    /// Gold label.
    pub label: Label,
}

/// A predicted span that covers letters or digits outside every gold span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FalsePositive {
    /// Message id.
    pub id: String,
    /// Character offsets of the predicted span.
    pub start: usize,
    /// End, exclusive.
    pub end: usize,
    /// Predicted label.
    pub label: Label,
}

/// Counts for one label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LabelCounts {
    /// Gold spans with this label.
    pub gold: usize,
    /// Of those, caught.
    pub caught: usize,
    /// Of those, caught with the right label.
    pub label_matched: usize,
}

impl LabelCounts {
    /// Entity recall for this label (1.0 when there are no gold spans).
    pub fn recall(&self) -> f64 {
        ratio(self.caught, self.gold)
    }
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 { 1.0 } else { n as f64 / d as f64 }
}

/// Accumulates metrics over many messages.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    per_label: BTreeMap<Label, LabelCounts>,
    predicted_chars: usize,
    predicted_chars_in_gold: usize,
    misses: Vec<Miss>,
    false_positives: Vec<FalsePositive>,
    messages: usize,
}

/// The summary of an [`Evaluation`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Messages evaluated.
    pub messages: usize,
    /// Gold spans.
    pub gold_spans: usize,
    /// Entity recall over all labels.
    pub entity_recall: f64,
    /// Character precision (letters and digits only).
    pub char_precision: f64,
    /// Label-match recall.
    pub label_match_recall: f64,
    /// Per-label counts.
    pub per_label: BTreeMap<Label, LabelCounts>,
}

impl Evaluation {
    /// An empty evaluation.
    pub fn new() -> Evaluation {
        Evaluation::default()
    }

    /// Adds one message: its gold and predicted spans, both in character offsets.
    pub fn add(&mut self, id: &str, text: &str, gold: &[GoldSpan], predicted: &[GoldSpan]) {
        self.messages += 1;
        let chars: Vec<char> = text.chars().collect();
        let n = chars.len();
        let mut covered = vec![false; n];
        for p in predicted {
            for c in covered.iter_mut().take(p.end.min(n)).skip(p.start) {
                *c = true;
            }
        }
        let mut in_gold = vec![false; n];
        for g in gold {
            for c in in_gold.iter_mut().take(g.end.min(n)).skip(g.start) {
                *c = true;
            }
        }
        for g in gold {
            let counts = self.per_label.entry(g.label).or_default();
            counts.gold += 1;
            let caught = (g.start..g.end.min(n))
                .filter(|&i| chars[i].is_alphanumeric())
                .all(|i| covered[i]);
            if caught {
                counts.caught += 1;
                let right = predicted
                    .iter()
                    .any(|p| p.label == g.label && p.start < g.end && g.start < p.end);
                if right {
                    counts.label_matched += 1;
                }
            } else {
                self.misses.push(Miss {
                    id: id.to_string(),
                    start: g.start,
                    end: g.end,
                    label: g.label,
                });
            }
        }
        for p in predicted {
            let mut outside = false;
            for i in p.start..p.end.min(n) {
                if chars[i].is_alphanumeric() {
                    if in_gold[i] {
                        // counted below via the union
                    } else {
                        outside = true;
                    }
                }
            }
            if outside {
                self.false_positives.push(FalsePositive {
                    id: id.to_string(),
                    start: p.start,
                    end: p.end,
                    label: p.label,
                });
            }
        }
        for i in 0..n {
            if covered[i] && chars[i].is_alphanumeric() {
                self.predicted_chars += 1;
                if in_gold[i] {
                    self.predicted_chars_in_gold += 1;
                }
            }
        }
    }

    /// The gold spans not caught, in the order added.
    pub fn misses(&self) -> &[Miss] {
        &self.misses
    }

    /// The predicted spans that reach outside the gold spans, in the order added.
    pub fn false_positives(&self) -> &[FalsePositive] {
        &self.false_positives
    }

    /// The metrics so far.
    pub fn report(&self) -> Report {
        let gold: usize = self.per_label.values().map(|c| c.gold).sum();
        let caught: usize = self.per_label.values().map(|c| c.caught).sum();
        let matched: usize = self.per_label.values().map(|c| c.label_matched).sum();
        Report {
            messages: self.messages,
            gold_spans: gold,
            entity_recall: ratio(caught, gold),
            char_precision: ratio(self.predicted_chars_in_gold, self.predicted_chars),
            label_match_recall: ratio(matched, gold),
            per_label: self.per_label.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(start: usize, end: usize, label: Label) -> GoldSpan {
        GoldSpan { start, end, label }
    }

    #[test]
    fn metrics_follow_the_readme() {
        let text = "call 555-123-4567 now, Ann";
        let gold = [g(5, 17, Label::Phone), g(23, 26, Label::Name)];
        // Phone partly masked (last digit missing) is a miss; name caught with a wrong label.
        let pred = [g(5, 16, Label::Phone), g(18, 26, Label::Id)];
        let mut e = Evaluation::new();
        e.add("x", text, &gold, &pred);
        let r = e.report();
        assert_eq!(r.gold_spans, 2);
        assert!((r.entity_recall - 0.5).abs() < 1e-9);
        assert!((r.label_match_recall - 0.0).abs() < 1e-9);
        // Predicted alnum chars: 9 digits of the phone + "now" + "Ann" = 15, 12 in gold.
        assert!((r.char_precision - 12.0 / 15.0).abs() < 1e-9);
        assert_eq!(e.misses().len(), 1);
        assert_eq!(e.false_positives().len(), 1);
        assert_eq!(r.per_label[&Label::Name].caught, 1);
    }

    #[test]
    fn gold_record_parses_corpus_lines() {
        let line = r#"{"id": "A-1", "kind": "sms", "intent": "general", "text": "Hi Ünek", "spans": [{"start": 3, "end": 7, "label": "NAME", "text": "Ünek"}]}"#;
        let r: GoldRecord = serde_json::from_str(line).unwrap();
        assert_eq!(r.spans[0], g(3, 7, Label::Name));
    }
}
