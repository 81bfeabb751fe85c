//! The recognizer pipeline.
//!
//! Every recognizer implements [`Recognizer`] and adds candidate spans for one document; the
//! [`Pipeline`] runs them all and resolves overlaps into sorted, disjoint spans. Recognizers
//! share a [`Text`], which holds the text, its word tokens and the context cues found by one
//! Aho-Corasick pass, so no recognizer re-scans for keywords.

pub(crate) mod context;
pub(crate) mod features;
pub(crate) mod names;
pub(crate) mod patterns;
pub(crate) mod places;
pub(crate) mod structured;
pub(crate) mod tokens;
pub(crate) mod validate;

use std::sync::Arc;

use crate::Span;
use crate::engine::PhiError;
use crate::lexicon::Lexicon;
use context::{CueHit, Cues};
use features::Feat;
use tokens::Token;

/// One message being analysed, as every [`Recognizer`] sees it: the text, its word and number
/// tokens, the context cues found by one Aho-Corasick pass and per-token list features, all
/// computed once per message so that no recognizer re-scans for them.
pub struct Text<'t> {
    /// The message.
    pub(crate) text: &'t str,
    /// Word and number tokens, in order.
    pub(crate) tokens: Vec<Token>,
    /// Context cue hits (keywords such as "DOB", "MRN", "call me at"), sorted by end.
    pub(crate) cues: Vec<CueHit>,
    /// Per-token features, parallel to `tokens`.
    pub(crate) feats: Vec<Feat>,
    /// The built-in lists.
    pub(crate) lex: &'t Lexicon,
    /// The text with ASCII letters lower-cased (same byte offsets as `text`).
    pub(crate) lower: String,
    /// The tokens each pass of the name recognizer looks at.
    pub(crate) lists: features::TokenLists,
}

impl<'t> Text<'t> {
    /// The message.
    pub fn as_str(&self) -> &'t str {
        self.text
    }

    /// The message with ASCII letters lower-cased; byte offsets are those of [`Text::as_str`].
    pub fn lowercase(&self) -> &str {
        &self.lower
    }

    /// Byte ranges of the message's words and numbers (letters with inner `'`/`-`, digit
    /// runs, mixed runs such as `MRN1457047`), in order, on char boundaries.
    pub fn words(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        self.tokens.iter().map(|t| t.start..t.end)
    }

    /// Token `i` with ASCII letters lower-cased ("" when out of range).
    pub(crate) fn lower_tok(&self, i: usize) -> &str {
        self.tokens
            .get(i)
            .and_then(|t| self.lower.get(t.start..t.end))
            .unwrap_or("")
    }
}

/// A span proposed by a recognizer: byte offsets, label, confidence and the recognizer's name.
/// Candidates may overlap; the pipeline resolves them into the engine's disjoint [`Span`]s and
/// drops any that are empty, out of range or not on char boundaries.
pub type Candidate = Span;

/// A detector for one family of identifiers, composed with the others into the engine's
/// pipeline (in the manner of ripgrep's `Matcher`).
///
/// The built-in recognizers are `patterns` (every structured identifier in one multi-pattern
/// `regex-automata` automaton, then validated), `names`, `places` and `structured` (HL7 v2,
/// JSON, e-mail headers, `Label: value` forms). A practice can add its own with
/// [`crate::Engine::with_recognizers`], e.g. for a local chart-number format.
///
/// Implementations must not panic and must run in time linear in the text (use the
/// `regex-automata` or `aho-corasick` engines, never a backtracking one).
pub trait Recognizer: Send + Sync {
    /// Static name, recorded on the candidates it finds (never derived from the text).
    fn name(&self) -> &'static str;
    /// Adds the candidates found in `text` to `out`.
    fn find(&self, text: &Text<'_>, out: &mut Vec<Candidate>);
}

/// All recognizers, run in order over one shared [`Text`].
pub(crate) struct Pipeline {
    cues: Cues,
    lex: Arc<Lexicon>,
    vocab: features::Vocab,
    recognizers: Vec<Box<dyn Recognizer>>,
}

impl Pipeline {
    /// The built-in recognizers followed by `extra`.
    pub(crate) fn new(
        lex: Arc<Lexicon>,
        extra: Vec<Box<dyn Recognizer>>,
    ) -> Result<Pipeline, PhiError> {
        let cues = Cues::new()?;
        let mut recognizers: Vec<Box<dyn Recognizer>> = vec![
            Box::new(patterns::Patterns::new()?),
            Box::new(names::Names),
            Box::new(places::Places),
            Box::new(structured::Structured),
        ];
        recognizers.extend(extra);
        Ok(Pipeline {
            cues,
            lex,
            vocab: features::Vocab::new(),
            recognizers,
        })
    }

    /// The recognizers' names, in the order they run.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.recognizers.iter().map(|r| r.name()).collect()
    }

    pub(crate) fn run(&self, text: &str) -> Vec<Span> {
        // The per-message buffers are kept per thread and reused (a recognizer that calls the
        // engine again finds the slot empty and gets fresh ones).
        let mut sc = SCRATCH.with(|s| s.take()).unwrap_or_default();
        let Scratch {
            mut tokens,
            mut lower,
            mut cues,
            mut near_cue,
            mut feats,
            mut keys,
            mut lists,
            mut out,
        } = *sc;
        tokens::tokenize_into(text, &mut tokens);
        lower.clear();
        lower.push_str(text);
        lower.make_ascii_lowercase();
        features::word_keys(&lower, &tokens, &self.vocab, &mut keys);
        self.cues.find(&lower, &tokens, &keys, &mut cues);
        // Tokens up to five after a name cue need their list flags even in lower case.
        near_cue.clear();
        near_cue.resize(tokens.len(), false);
        for c in &cues {
            if matches!(
                c.cue,
                context::Cue::NameIntro
                    | context::Cue::Title
                    | context::Cue::Relation
                    | context::Cue::SignOff
            ) {
                let j = tokens.partition_point(|t| t.start < c.end);
                for flag in near_cue.iter_mut().skip(j).take(5) {
                    *flag = true;
                }
            }
        }
        features::compute(
            text,
            &lower,
            &tokens,
            &keys,
            &self.lex,
            &self.vocab,
            &near_cue,
            &mut feats,
            &mut lists,
        );
        let doc = Text {
            text,
            tokens,
            cues,
            feats,
            lex: &self.lex,
            lower,
            lists,
        };
        out.clear();
        for r in &self.recognizers {
            r.find(&doc, &mut out);
        }
        let spans = resolve(text, &mut out);
        *sc = Scratch {
            tokens: doc.tokens,
            lower: doc.lower,
            cues: doc.cues,
            near_cue,
            feats: doc.feats,
            keys,
            lists: doc.lists,
            out,
        };
        // Very large messages do not keep their buffers (bounded memory per thread).
        if text.len() <= 64 * 1024 {
            SCRATCH.with(|s| s.set(Some(sc)));
        }
        spans
    }
}

/// Buffers reused from one message to the next on a thread.
#[derive(Default)]
struct Scratch {
    tokens: Vec<Token>,
    lower: String,
    cues: Vec<CueHit>,
    near_cue: Vec<bool>,
    feats: Vec<Feat>,
    keys: Vec<(u64, u16)>,
    lists: features::TokenLists,
    out: Vec<Span>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Option<Box<Scratch>>> = const { std::cell::Cell::new(None) };
}

/// Turns overlapping candidates into sorted, disjoint spans on char boundaries.
///
/// Candidates are taken in order of priority (confidence, then length); a candidate that
/// overlaps an already accepted span is merged into it when both have the same label, and
/// otherwise cut down to its larger uncovered part (dropped if that part has no letters or
/// digits). O(n log n) in the number of candidates.
pub(crate) fn resolve(text: &str, cands: &mut Vec<Span>) -> Vec<Span> {
    cands.retain(|s| {
        s.start < s.end
            && s.end <= text.len()
            && text.is_char_boundary(s.start)
            && text.is_char_boundary(s.end)
    });
    cands.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    // Accepted spans are disjoint and kept sorted by start: the only one that can overlap a
    // candidate is the last one starting before the candidate ends (a binary search; a
    // message has few spans, so inserting into the vector is cheaper than a tree).
    let mut accepted: Vec<Span> = Vec::with_capacity(cands.len());
    'next: for mut c in cands.drain(..) {
        let mut guard = accepted.len() + 2;
        while guard > 0 {
            guard -= 1;
            let hit = accepted
                .partition_point(|a| a.start < c.end)
                .checked_sub(1)
                .filter(|&k| accepted.get(k).is_some_and(|a| a.end > c.start));
            let Some(k) = hit else {
                let at = accepted.partition_point(|a| a.start < c.start);
                accepted.insert(at, c);
                continue 'next;
            };
            let Some(a) = accepted.get(k).cloned() else {
                continue 'next;
            };
            if c.label == a.label {
                accepted.remove(k);
                // Same label: one span covering both (it may now reach further spans).
                let keep_conf = a.confidence.max(c.confidence);
                c = Span {
                    start: a.start.min(c.start),
                    end: a.end.max(c.end),
                    confidence: keep_conf,
                    ..a
                };
                continue;
            }
            // Another label keeps its span; the candidate keeps its larger uncovered part
            // if that part still has letters or digits.
            let left = (c.start, a.start.max(c.start));
            let right = (a.end.min(c.end), c.end);
            let keep = if left.1 - left.0 >= right.1 - right.0 {
                left
            } else {
                right
            };
            let piece = text.get(keep.0..keep.1).unwrap_or("");
            let trimmed = piece.trim_matches(|ch: char| !ch.is_alphanumeric());
            if trimmed.is_empty() {
                continue 'next;
            }
            let lead = piece.len()
                - piece
                    .trim_start_matches(|ch: char| !ch.is_alphanumeric())
                    .len();
            c.start = keep.0 + lead;
            c.end = c.start + trimmed.len();
        }
    }
    accepted
}
