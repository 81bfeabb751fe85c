//! The extractive summary: built locally from the messages a reader may see, always available
//! (no AI vendor needed), and made only of sentences that are in those messages.
//!
//! Sentences are scored by how many of the conversation's frequent content words they carry
//! (patients' own messages count double, the latest message gets a bonus, questions too) and
//! the best few are returned in the order they were written.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// One message given to the summariser.
#[derive(Debug, Clone, Copy)]
pub struct SummaryInput<'a> {
    /// Whether the patient wrote it (staff replies and notes weigh less).
    pub from_patient: bool,
    /// Its text.
    pub text: &'a str,
}

/// An extractive summary.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ExtractiveSummary {
    /// The chosen sentences, in conversation order.
    pub sentences: Vec<String>,
    /// How many messages it was built from.
    pub messages: usize,
}

impl std::fmt::Debug for ExtractiveSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractiveSummary")
            .field("sentences", &self.sentences.len())
            .field("messages", &self.messages)
            .finish()
    }
}

/// The longest sentence kept whole, in characters; longer ones are cut at a word.
pub const MAX_SENTENCE_CHARS: usize = 240;

const STOP: &[&str] = &[
    "a", "about", "after", "again", "all", "am", "an", "and", "any", "are", "as", "at", "be",
    "been", "but", "by", "can", "could", "did", "do", "does", "for", "from", "get", "got", "had",
    "has", "have", "hi", "hello", "how", "i", "if", "im", "in", "is", "it", "its", "just", "me",
    "my", "no", "not", "of", "on", "or", "our", "please", "so", "thanks", "thank", "that", "the",
    "then", "there", "this", "to", "up", "us", "was", "we", "were", "what", "when", "will", "with",
    "would", "you", "your", "yes",
];

fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() > 2)
        .map(str::to_lowercase)
        .filter(|w| !STOP.contains(&w.as_str()))
}

fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '!' | '?' | '\n') {
            let end = i + c.len_utf8();
            let s = text[start..end].trim();
            if s.chars().any(char::is_alphanumeric) {
                out.push(s);
            }
            start = end;
        }
    }
    let s = text[start..].trim();
    if s.chars().any(char::is_alphanumeric) {
        out.push(s);
    }
    out
}

fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_SENTENCE_CHARS {
        return s.to_owned();
    }
    let head: String = s.chars().take(MAX_SENTENCE_CHARS).collect();
    let at = head.rfind(' ').unwrap_or(head.len());
    format!("{}…", head[..at].trim_end())
}

/// Picks at most `max_sentences` sentences of `messages` (oldest first).
pub fn extractive_summary(
    messages: &[SummaryInput<'_>],
    max_sentences: usize,
) -> ExtractiveSummary {
    let mut freq: BTreeMap<String, f64> = BTreeMap::new();
    for m in messages {
        let w = if m.from_patient { 2.0 } else { 1.0 };
        for word in words(m.text) {
            *freq.entry(word).or_default() += w;
        }
    }
    let last_patient = messages.iter().rposition(|m| m.from_patient);
    let mut scored: Vec<(f64, usize, &str)> = Vec::new();
    let mut seen = BTreeSet::new();
    for (mi, m) in messages.iter().enumerate() {
        for s in sentences(m.text) {
            if !seen.insert(s.to_lowercase()) {
                continue;
            }
            let distinct: BTreeSet<String> = words(s).collect();
            if distinct.is_empty() {
                continue;
            }
            let mut score: f64 = distinct.iter().filter_map(|w| freq.get(w)).sum::<f64>()
                / (distinct.len() as f64).sqrt();
            if m.from_patient {
                score *= 1.5;
            }
            if Some(mi) == last_patient {
                score *= 1.3;
            }
            if s.ends_with('?') {
                score *= 1.2;
            }
            scored.push((score, scored.len(), s));
        }
    }
    let mut best: Vec<(f64, usize, &str)> = scored.clone();
    best.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    best.truncate(max_sentences);
    best.sort_by_key(|b| b.1);
    ExtractiveSummary {
        sentences: best.into_iter().map(|(_, _, s)| cut(s)).collect(),
        messages: messages.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn picks_the_patients_point_in_order() {
        let msgs = [
            SummaryInput {
                from_patient: true,
                text: "Hello. I need to move my appointment on Tuesday. The Tuesday appointment clashes with work.",
            },
            SummaryInput {
                from_patient: false,
                text: "Thanks, we can help with that.",
            },
            SummaryInput {
                from_patient: true,
                text: "Can the appointment be Thursday morning instead?",
            },
        ];
        let s = extractive_summary(&msgs, 2);
        assert_eq!(s.messages, 3);
        assert_eq!(s.sentences.len(), 2);
        assert!(
            s.sentences.iter().any(|x| x.contains("Thursday")),
            "{:?}",
            s.sentences
        );
        // Every sentence comes from the messages, in order.
        let all: String = msgs.iter().map(|m| m.text).collect::<Vec<_>>().join(" ");
        let mut pos = 0;
        for x in &s.sentences {
            let at = all[pos..]
                .find(x.as_str())
                .expect("from the messages, in order");
            pos += at;
        }
    }

    #[test]
    fn empty_and_long() {
        assert!(extractive_summary(&[], 3).sentences.is_empty());
        let long = "word ".repeat(200);
        let s = extractive_summary(
            &[SummaryInput {
                from_patient: true,
                text: &long,
            }],
            3,
        );
        assert!(s.sentences[0].chars().count() <= MAX_SENTENCE_CHARS + 1);
    }

    proptest! {
        #[test]
        fn never_panics_and_never_invents(texts in proptest::collection::vec("\\PC{0,120}", 0..6), n in 0usize..5) {
            let inputs: Vec<SummaryInput<'_>> = texts.iter().enumerate().map(|(i, t)| SummaryInput { from_patient: i % 2 == 0, text: t }).collect();
            let s = extractive_summary(&inputs, n);
            prop_assert!(s.sentences.len() <= n);
            for x in &s.sentences {
                let stem = x.trim_end_matches('…');
                prop_assert!(texts.iter().any(|t| t.contains(stem)));
            }
        }
    }
}
