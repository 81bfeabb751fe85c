//! Evaluation: per-intent precision, recall and F1, macro-F1, the confusion matrix, and the
//! emergency figures the issue sets targets for.

use perimeter_workflows::Intent;
use serde::Serialize;

/// Figures for one intent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IntentScore {
    /// The intent.
    pub intent: Intent,
    /// Gold messages of this intent.
    pub support: usize,
    /// Messages predicted as this intent.
    pub predicted: usize,
    /// Correct predictions.
    pub correct: usize,
    /// correct / predicted (1.0 when nothing was predicted and nothing was gold).
    pub precision: f64,
    /// correct / support.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

/// The evaluation of predictions against gold labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Messages evaluated.
    pub total: usize,
    /// Correct predictions.
    pub correct: usize,
    /// One entry per intent, in [`Intent::ALL`] order.
    pub per_intent: Vec<IntentScore>,
    /// Mean F1 over the intents that occur in the gold data or the predictions.
    pub macro_f1: f64,
    /// `confusion[gold][predicted]`, indices in [`Intent::ALL`] order.
    pub confusion: Vec<Vec<usize>>,
}

fn index(i: Intent) -> usize {
    Intent::ALL.iter().position(|x| *x == i).unwrap_or(0)
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

impl Evaluation {
    /// Evaluates `(gold, predicted)` pairs.
    pub fn new(pairs: impl IntoIterator<Item = (Intent, Intent)>) -> Evaluation {
        let n = Intent::ALL.len();
        let mut confusion = vec![vec![0usize; n]; n];
        let mut total = 0;
        for (g, p) in pairs {
            if let Some(cell) = confusion
                .get_mut(index(g))
                .and_then(|row| row.get_mut(index(p)))
            {
                *cell += 1;
            }
            total += 1;
        }
        let mut per_intent = Vec::with_capacity(n);
        let mut correct = 0;
        for (k, intent) in Intent::ALL.iter().enumerate() {
            let support: usize = confusion.get(k).map_or(0, |r| r.iter().sum());
            let predicted: usize = confusion.iter().filter_map(|r| r.get(k)).sum();
            let ok = confusion
                .get(k)
                .and_then(|r| r.get(k))
                .copied()
                .unwrap_or(0);
            correct += ok;
            let precision = ratio(ok, predicted);
            let recall = ratio(ok, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            per_intent.push(IntentScore {
                intent: *intent,
                support,
                predicted,
                correct: ok,
                precision,
                recall,
                f1,
            });
        }
        let present: Vec<&IntentScore> = per_intent
            .iter()
            .filter(|s| s.support > 0 || s.predicted > 0)
            .collect();
        let macro_f1 = if present.is_empty() {
            0.0
        } else {
            present.iter().map(|s| s.f1).sum::<f64>() / present.len() as f64
        };
        Evaluation {
            total,
            correct,
            per_intent,
            macro_f1,
            confusion,
        }
    }

    /// The figures for one intent.
    pub fn score(&self, intent: Intent) -> Option<&IntentScore> {
        self.per_intent.iter().find(|s| s.intent == intent)
    }

    /// correct / total.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct, self.total)
    }

    /// Recall of the emergency intent.
    pub fn emergency_recall(&self) -> f64 {
        self.score(Intent::Emergency).map_or(1.0, |s| s.recall)
    }

    /// Precision of the emergency intent.
    pub fn emergency_precision(&self) -> f64 {
        self.score(Intent::Emergency).map_or(1.0, |s| s.precision)
    }

    /// A plain-text report: the per-intent table, macro-F1, the emergency figures and the
    /// confusion matrix (rows gold, columns predicted).
    pub fn report(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<11} {:>9} {:>9} {:>9} {:>8}",
            "intent", "precision", "recall", "f1", "support"
        );
        for r in &self.per_intent {
            let _ = writeln!(
                s,
                "{:<11} {:>9.4} {:>9.4} {:>9.4} {:>8}",
                r.intent.as_str(),
                r.precision,
                r.recall,
                r.f1,
                r.support
            );
        }
        let _ = writeln!(
            s,
            "\nmessages {}  accuracy {:.4}  macro-F1 {:.4}\nemergency recall {:.4}  emergency precision {:.4}",
            self.total,
            self.accuracy(),
            self.macro_f1,
            self.emergency_recall(),
            self.emergency_precision()
        );
        let _ = writeln!(s, "\nconfusion matrix (rows: gold, columns: predicted)");
        let _ = write!(s, "{:<11}", "");
        for i in Intent::ALL {
            let _ = write!(s, " {:>6}", abbrev(i));
        }
        let _ = writeln!(s);
        for (g, row) in Intent::ALL.iter().zip(&self.confusion) {
            let _ = write!(s, "{:<11}", g.as_str());
            for c in row {
                let _ = write!(s, " {c:>6}");
            }
            let _ = writeln!(s);
        }
        s
    }
}

fn abbrev(i: Intent) -> &'static str {
    match i {
        Intent::Scheduling => "sched",
        Intent::Refill => "refill",
        Intent::Billing => "bill",
        Intent::Records => "recs",
        Intent::Results => "result",
        Intent::Clinical => "clin",
        Intent::Emergency => "emerg",
        Intent::General => "gen",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Intent::*;

    #[test]
    fn computes_the_textbook_figures() {
        // emergency: 2 gold, predicted 3 times, 2 right -> P 2/3, R 1.
        let e = Evaluation::new([
            (Emergency, Emergency),
            (Emergency, Emergency),
            (Clinical, Emergency),
            (Clinical, Clinical),
            (Refill, Refill),
            (Refill, Billing),
        ]);
        assert_eq!(e.total, 6);
        assert_eq!(e.correct, 4);
        assert!((e.emergency_precision() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(e.emergency_recall(), 1.0);
        let refill = e.score(Refill).unwrap();
        assert_eq!((refill.precision, refill.recall), (1.0, 0.5));
        assert!((refill.f1 - 2.0 / 3.0).abs() < 1e-9);
        let billing = e.score(Billing).unwrap();
        assert_eq!(billing.f1, 0.0);
        // Present intents: emergency, clinical, refill, billing.
        let clinical_f1 = 2.0 * 1.0 * 0.5 / 1.5;
        let expected = (0.8 + clinical_f1 + 2.0 / 3.0 + 0.0) / 4.0;
        assert!((e.macro_f1 - expected).abs() < 1e-9);
        assert_eq!(e.confusion[index(Clinical)][index(Emergency)], 1);
        let report = e.report();
        assert!(report.contains("macro-F1"));
        assert!(report.contains("confusion matrix"));
    }
}
