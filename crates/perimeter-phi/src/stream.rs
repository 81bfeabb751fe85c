//! Re-identification of a streamed model answer, chunk by chunk.
//!
//! The re-identifier never emits half a token, nor an original split across chunks: it holds
//! back only a tail that could still become a token (`[` followed by a prefix of
//! `LABEL_digits]`, at most 23 bytes) and emits everything else at once. The concatenated output
//! equals [`Vault::reidentify`] of the concatenated input, however the input is cut.

use std::borrow::Borrow;

use crate::Vault;
use crate::deid::token::MAX_TOKEN_LEN;

/// Re-identifies a stream of chunks against a vault (`&Vault` or `Arc<Vault>`).
pub struct StreamReidentifier<V: Borrow<Vault>> {
    vault: V,
    pending: String,
    unknown: Vec<String>,
}

impl<V: Borrow<Vault>> std::fmt::Debug for StreamReidentifier<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReidentifier")
            .field("pending_bytes", &self.pending.len())
            .field("unknown_tokens", &self.unknown.len())
            .finish()
    }
}

impl<V: Borrow<Vault>> StreamReidentifier<V> {
    /// A re-identifier for one answer.
    pub fn new(vault: V) -> Self {
        StreamReidentifier {
            vault,
            pending: String::with_capacity(MAX_TOKEN_LEN),
            unknown: Vec::new(),
        }
    }

    /// Feeds the next chunk; returns the text that can be emitted now.
    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        self.drain(false)
    }

    /// Ends the stream; returns whatever was held back (re-identified if complete).
    pub fn finish(&mut self) -> String {
        self.drain(true)
    }

    /// Tokens of the `[LABEL_N]` form seen so far that the vault did not issue (left as they
    /// were). Tokens carry no PHI.
    pub fn unknown_tokens(&self) -> &[String] {
        &self.unknown
    }

    fn drain(&mut self, last: bool) -> String {
        let mut out = String::with_capacity(self.pending.len() + 16);
        let consumed =
            self.vault
                .borrow()
                .restore_into(&self.pending, last, &mut out, &mut self.unknown);
        self.pending.drain(..consumed);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::deid::{DeidOptions, Mode, deidentify};
    use crate::{Label, Span};

    fn vault() -> Vault {
        let v = Vault::with_seed(9);
        let text = "Ann Lee, Bo Li, ☃ Zoë Ünal, 555-123-4567, MRN 12";
        let mut spans = Vec::new();
        for (needle, label) in [
            ("Ann Lee", Label::Name),
            ("Bo Li", Label::Name),
            ("Zoë Ünal", Label::Name),
            ("555-123-4567", Label::Phone),
            ("MRN 12", Label::Mrn),
        ] {
            let start = text.find(needle).unwrap();
            spans.push(Span {
                start,
                end: start + needle.len(),
                label,
                confidence: 1.0,
                recognizer: "test",
            });
        }
        let opts = DeidOptions {
            mode: Mode::Pseudonymize,
            reference_year: 2026,
        };
        deidentify(text, &spans, &opts, &v).unwrap();
        v
    }

    fn run(v: &Vault, chunks: &[&str]) -> String {
        let mut s = StreamReidentifier::new(v);
        let mut out = String::new();
        for c in chunks {
            out.push_str(&s.push(c));
        }
        out.push_str(&s.finish());
        out
    }

    #[test]
    fn holds_back_only_possible_tokens() {
        let v = vault();
        let mut s = StreamReidentifier::new(&v);
        assert_eq!(s.push("Dear [NA"), "Dear ");
        assert_eq!(s.push("ME_"), "");
        assert_eq!(s.push("3], your [PH"), "Zoë Ünal, your ");
        assert_eq!(s.push("ONE_1] or [X"), "555-123-4567 or [X");
        assert_eq!(s.push(" [NAME_9] [MRN_1"), " [NAME_9] ");
        assert_eq!(s.finish(), "[MRN_1");
        assert_eq!(s.unknown_tokens(), ["[NAME_9]".to_string()]);
        let arc = Arc::new(vault());
        let mut s = StreamReidentifier::new(Arc::clone(&arc));
        assert_eq!(s.push("[NAME_1]"), "Ann Lee");
    }

    #[test]
    fn reidentifies_like_one_shot() {
        let v = vault();
        let text = "[NAME_1] and [NAME_2], [[NAME_3]] call [PHONE_1]; [MRN_1].";
        let expected = v.reidentify(text);
        assert_eq!(
            expected,
            "Ann Lee and Bo Li, [Zoë Ünal] call 555-123-4567; MRN 12."
        );
        for cut in 0..=text.len() {
            assert_eq!(
                run(&v, &[&text[..cut], &text[cut..]]),
                expected,
                "cut {cut}"
            );
        }
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("[NAME_1]".to_string()),
            Just("[NAME_2]".to_string()),
            Just("[NAME_3]".to_string()),
            Just("[PHONE_1]".to_string()),
            Just("[MRN_1]".to_string()),
            Just("[NAME_77]".to_string()),
            Just("[NAME]".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("_".to_string()),
            Just("NAME".to_string()),
            Just("[HEALTH_PLAN_1".to_string()),
            "[A-Z_0-9\\[\\]]{0,6}",
            "\\PC{0,6}",
            "[ é☃😀a-z]{0,4}",
        ]
    }

    fn text_and_cuts() -> impl Strategy<Value = (String, Vec<usize>)> {
        proptest::collection::vec(piece(), 0..24).prop_flat_map(|parts| {
            let text: String = parts.concat();
            let n = text.len();
            (Just(text), proptest::collection::vec(0..=n, 0..12))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_chunking_equals_one_shot((text, cuts) in text_and_cuts()) {
            let v = vault();
            // Cuts at char boundaries only (chunks are &str), anywhere inside tokens.
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| text.is_char_boundary(c)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for c in cuts {
                chunks.push(&text[prev..c]);
                prev = c;
            }
            chunks.push(&text[prev..]);
            let one_shot = v.reidentify_report(&text);
            let mut s = StreamReidentifier::new(&v);
            let mut streamed = String::new();
            for c in &chunks {
                let emitted = s.push(c);
                streamed.push_str(&emitted);
            }
            streamed.push_str(&s.finish());
            prop_assert_eq!(&streamed, &one_shot.text);
            prop_assert_eq!(s.unknown_tokens(), one_shot.unknown_tokens.as_slice());
        }

        #[test]
        fn never_panics_and_holds_back_little(chunks in proptest::collection::vec("\\PC{0,40}", 0..10)) {
            let v = vault();
            let mut s = StreamReidentifier::new(&v);
            for c in &chunks {
                let _ = s.push(c);
                prop_assert!(s.pending.len() <= MAX_TOKEN_LEN);
            }
            let _ = s.finish();
            prop_assert!(s.pending.is_empty());
        }

        #[test]
        fn pseudonymize_round_trips(
            words in proptest::collection::vec(prop_oneof![
                Just("Ann Lee"), Just("Bo Li"), Just("[NAME_1]"), Just("[NAME_2]"),
                Just(" and "), Just(", "), Just("é☃"), Just("[NAME"), Just("[PHONE_"),
            ], 0..20),
        ) {
            let text: String = words.concat();
            let mut spans = Vec::new();
            let mut at = 0;
            for w in &words {
                if *w == "Ann Lee" || *w == "Bo Li" {
                    spans.push(Span { start: at, end: at + w.len(), label: Label::Name, confidence: 1.0, recognizer: "t" });
                }
                at += w.len();
            }
            let v = Vault::with_seed(1);
            let opts = DeidOptions { mode: Mode::Pseudonymize, reference_year: 2026 };
            let d = deidentify(&text, &spans, &opts, &v).unwrap();
            prop_assert!(!d.text.contains("Ann") && !d.text.contains("Bo Li"));
            prop_assert_eq!(v.reidentify(&d.text), text);
        }
    }
}
