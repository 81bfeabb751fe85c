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
    /// Which of `|` and `"` the text has ([`tokens::SEEN_PIPE`], [`tokens::SEEN_QUOTE`]).
    pub(crate) seen: u8,
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
        let (spans, reread) = self.run_once(text, true);
        let Some(fixed) = reread else {
            return spans;
        };
        // A scanned form's digits read as letters, a file name's parts joined by `_`: what
        // the text says read the other way counts too (same byte offsets: ASCII for ASCII).
        let (more, _) = self.run_once(&fixed, false);
        let mut all = spans;
        all.extend(more);
        resolve(text, &mut all)
    }

    /// One pass of the recognizers over `text`; with `reread`, also the text to be read a
    /// second time, when it needs one: OCR's letters for digits read as digits
    /// ([`ocr_digits`]), file names' underscores read as spaces ([`file_name_parts`]).
    fn run_once(&self, text: &str, reread: bool) -> (Vec<Span>, Option<String>) {
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
        let seen = tokens::tokenize_into(text, &mut tokens);
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
            seen,
            lists,
        };
        out.clear();
        for r in &self.recognizers {
            r.find(&doc, &mut out);
        }
        // An XML element's name (`<NewRx>`, `</MedicationPrescribed>`) is no person's.
        if doc.seen & tokens::SEEN_LT != 0 {
            out.retain(|c| {
                c.label != crate::Label::Name
                    || !text
                        .get(..c.start)
                        .is_some_and(|b| b.ends_with('<') || b.ends_with("</"))
            });
        }
        let spans = resolve(text, &mut out);
        let mut fixed = None;
        if reread && doc.seen & tokens::SEEN_MIXED != 0 {
            fixed = ocr_digits(text, &doc.tokens);
        }
        // An attachment's file name (`Scan_Okafor_Chidi_03142026.pdf`): its parts read as
        // words too (on top of OCR's mends, which leave underscores alone).
        if reread && doc.seen & tokens::SEEN_UNDERSCORE != 0 {
            let base = fixed.as_deref().unwrap_or(text);
            if let Some(parts) = file_name_parts(base) {
                fixed = Some(parts);
            }
        }
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
        (spans, fixed)
    }
}

/// Extensions of the files patients attach (photos, scans, documents, recordings).
const FILE_EXTENSIONS: [&str; 17] = [
    "pdf", "jpg", "jpeg", "png", "heic", "gif", "tif", "tiff", "doc", "docx", "xls", "xlsx", "csv",
    "txt", "mp4", "mov", "m4a",
];

/// `text` with the underscores of each file name (a run of letters, digits, `_`, `-` and `.`
/// that ends in a listed extension) made spaces, so that `Scan_Okafor_Chidi_03142026.pdf`
/// is read as `Scan Okafor Chidi 03142026.pdf` (same byte offsets); `None` when no file name
/// has one.
fn file_name_parts(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let part = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.');
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < b.len() {
        if !part(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && part(b[i]) {
            i += 1;
        }
        let run = b.get(start..i).unwrap_or(&[]);
        let trimmed = run.strip_suffix(b".").unwrap_or(run);
        let named = trimmed.iter().rposition(|&c| c == b'.').is_some_and(|dot| {
            let ext = trimmed.get(dot + 1..).unwrap_or(&[]);
            FILE_EXTENSIONS
                .iter()
                .any(|e| ext.eq_ignore_ascii_case(e.as_bytes()))
        });
        if named && run.contains(&b'_') {
            let o = out.get_or_insert_with(|| b.to_vec());
            for c in o.iter_mut().take(i).skip(start) {
                if *c == b'_' {
                    *c = b' ';
                }
            }
        }
    }
    // Only ASCII underscores became ASCII spaces: still UTF-8.
    out.and_then(|o| String::from_utf8(o).ok())
}

/// A scanned form's OCR confusions read back (`(86O) 2l9-44O7`, `O7 / 2l / l958`, `Member
/// lD`, `ZHAO, MlNGYU`, `Grzeg0rz`, `cIearly`): `text` with each token that mixes them
/// mended by [`ocr_token`]; `None` when no token needs it.
fn ocr_digits(text: &str, tokens: &[Token]) -> Option<String> {
    let mut fixed: Option<Vec<u8>> = None;
    for t in tokens {
        // Most tokens: a word with no capital after its first letter, or a number.
        if !t.mixed || !t.ascii {
            continue;
        }
        let Some(w) = text.as_bytes().get(t.start..t.end) else {
            continue;
        };
        if t.kind == tokens::Kind::Alnum {
            let digits = w.iter().filter(|b| b.is_ascii_digit()).count();
            if digits != 1 && !w.iter().all(|b| b.is_ascii_digit() || b"OolI".contains(b)) {
                continue;
            }
        }
        let mut buf = [0u8; 64];
        let Some(mended) = buf.get_mut(..w.len()) else {
            continue;
        };
        if ocr_token(w, mended) {
            let f = fixed.get_or_insert_with(|| text.as_bytes().to_vec());
            if let Some(dst) = f.get_mut(t.start..t.end) {
                dst.copy_from_slice(mended);
            }
        }
    }
    fixed.and_then(|f| String::from_utf8(f).ok())
}

/// One ASCII token `w` with OCR's confusions mended into `out` (same length); whether any
/// byte changed. Digits with letters that look like digits (`O`, `o`, `l`, `I`) and no
/// other letter are a number; a word of capitals with an `l` among them has an `I`
/// (`MlNGYU`, `lD`); a lower-case word's `I` after its first letter is an `l` (`cIearly`,
/// `ceII`); a `0` or `1` between letters is an `o` or an `l` (`Grzeg0rz`, `Mi1ler`), in
/// capitals an `O` or an `I` (`CR0SS`).
fn ocr_token(w: &[u8], out: &mut [u8]) -> bool {
    out.copy_from_slice(w);
    let digits = w.iter().filter(|b| b.is_ascii_digit()).count();
    let looks = |b: &u8| matches!(b, b'O' | b'o' | b'l' | b'I');
    // `I10`, `O1175344`: a code's capital before two digits or more is a letter.
    let code_prefix = matches!(w.first(), Some(b'O' | b'I'))
        && w.len() >= 3
        && w.iter().skip(1).all(u8::is_ascii_digit);
    if digits > 0
        && w.len() >= 2
        && !code_prefix
        && w.iter().all(|b| b.is_ascii_digit() || looks(b))
    {
        for b in out.iter_mut() {
            *b = match *b {
                b'O' | b'o' => b'0',
                b'l' | b'I' => b'1',
                other => other,
            };
        }
        return out != w;
    }
    let upper = w.iter().filter(|b| b.is_ascii_uppercase()).count();
    let lower = w.iter().filter(|b| b.is_ascii_lowercase()).count();
    let ells = w.iter().filter(|&&b| b == b'l').count();
    // `Mc`, `Mac`: `McIntyre`'s capital I is a capital.
    let mac = w.starts_with(b"Mc") || w.starts_with(b"Mac");
    if (upper >= 2 || w.len() == 2 && w.first() == Some(&b'l'))
        && lower == ells
        && ells > 0
        && upper + ells + digits == w.len()
    {
        // Capitals and `l`s (`MlNGYU`, `lD`, `SHlELD`; not `Al`).
        for b in out.iter_mut() {
            if *b == b'l' {
                *b = b'I';
            }
        }
    } else if (lower >= 2 || upper >= 3 && digits == 1) && !mac {
        for i in 1..out.len() {
            let prev = out.get(i - 1).copied().unwrap_or(b' ');
            let next = w.get(i + 1).copied().unwrap_or(b' ');
            if let Some(b) = out.get_mut(i) {
                if *b == b'I' && prev.is_ascii_lowercase() {
                    *b = b'l';
                } else if matches!(*b, b'0' | b'1')
                    && prev.is_ascii_alphabetic()
                    && (next.is_ascii_alphabetic() || next == b' ')
                    && digits == 1
                {
                    let caps = prev.is_ascii_uppercase() && !next.is_ascii_lowercase();
                    *b = match (*b, caps) {
                        (b'0', false) => b'o',
                        (b'0', true) => b'O',
                        (_, false) => b'l',
                        (_, true) => b'I',
                    };
                }
            }
        }
    }
    out != w
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
    prepare(text, cands);
    // Thousands of candidates (an adversarial or machine-made message): the tree.
    if cands.len() > 512 {
        return resolve_with_tree(text, cands);
    }
    resolve_with_vec(text, cands)
}

/// Drops malformed candidates and sorts the rest by priority (confidence, then length, then
/// start).
fn prepare(text: &str, cands: &mut Vec<Span>) {
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
}

/// [`resolve`] with the accepted spans in a vector (for the usual few candidates).
fn resolve_with_vec(text: &str, cands: &mut Vec<Span>) -> Vec<Span> {
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
                c = merged(&a, &c);
                continue;
            }
            // Another label keeps its span; the candidate keeps its larger uncovered part
            // if that part still has letters or digits.
            let Some((start, end)) = uncovered_part(text, &c, &a) else {
                continue 'next;
            };
            c.start = start;
            c.end = end;
        }
    }
    accepted
}

/// [`resolve`] with the accepted spans in a `BTreeMap`: O(n log n) however many candidates
/// there are (the vector's inserts are quadratic on a message with thousands of spans).
fn resolve_with_tree(text: &str, cands: &mut Vec<Span>) -> Vec<Span> {
    let mut accepted: std::collections::BTreeMap<usize, Span> = std::collections::BTreeMap::new();
    'next: for mut c in cands.drain(..) {
        let mut guard = accepted.len() + 2;
        while guard > 0 {
            guard -= 1;
            let hit = accepted
                .range(..c.end)
                .next_back()
                .filter(|(_, a)| a.end > c.start)
                .map(|(k, _)| *k);
            let Some(k) = hit else {
                accepted.insert(c.start, c);
                continue 'next;
            };
            let Some(a) = accepted.remove(&k) else {
                continue 'next;
            };
            if c.label == a.label {
                c = merged(&a, &c);
                continue;
            }
            let part = uncovered_part(text, &c, &a);
            accepted.insert(k, a);
            let Some((start, end)) = part else {
                continue 'next;
            };
            c.start = start;
            c.end = end;
        }
    }
    accepted.into_values().collect()
}

/// Two overlapping spans of one label as one, with the higher confidence (and the accepted
/// span's recognizer).
fn merged(a: &Span, c: &Span) -> Span {
    Span {
        start: a.start.min(c.start),
        end: a.end.max(c.end),
        confidence: a.confidence.max(c.confidence),
        ..a.clone()
    }
}

/// The larger part of candidate `c` outside accepted span `a`, trimmed to its letters and
/// digits; `None` when it has none.
fn uncovered_part(text: &str, c: &Span, a: &Span) -> Option<(usize, usize)> {
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
        return None;
    }
    let lead = piece.len()
        - piece
            .trim_start_matches(|ch: char| !ch.is_alphanumeric())
            .len();
    Some((keep.0 + lead, keep.0 + lead + trimmed.len()))
}

/// The fast paths (plain ASCII tokens in the tokenizer, the features and the cue search;
/// the vector in `resolve`) give exactly what the general code gives.
#[cfg(test)]
mod fast_paths {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::tokens::{CLASS, Token, token_at, tokenize_into};
    use super::*;
    use crate::Label;

    /// Texts with every kind of token: the held-out set, escapes, joiners, possessives,
    /// accents, curly apostrophes, codes, cues and places.
    fn texts() -> Vec<String> {
        let mut v: Vec<String> = include_str!("../../tests/data/heldout.jsonl")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|r| r.get("text")?.as_str().map(str::to_string))
            .collect();
        v.extend(
            [
                "Thanks,\\nMaria\\tRuiz O'Brien's Karl-Josef 4B MRN123 ünek's -x",
                "this is Dr. St. Clair; my ex-wife Ana María da Conceição (Cook County, IL 60601)",
                "I’m José, it’s 3/4 — call (555) 123-4567 x12, e-mail j.doe@example.org",
                "Re: DOE, JANE  DOB 1950-02-03 | PID|1||MRN123^^^H||Doe^Jane \"dob\": \"x\"",
                "hi i am rashida subramaniam here - new # is 555.123.4567 ~ mother-in-law",
                "İstanbul Ǆemal ǅ x\u{301}y naïve café-au-lait d'Alene 92-year-old A1c",
                "",
                "a",
                "\\",
                "--'-'",
            ]
            .map(str::to_string),
        );
        v
    }

    /// The tokenizer before its fast path: the general step at every token start.
    fn tokenize_general(text: &str) -> Vec<Token> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x80 && CLASS[usize::from(b)] == 0 {
                i += if b == b'\\' && matches!(bytes.get(i + 1), Some(b'n' | b't' | b'r')) {
                    2
                } else {
                    1
                };
                continue;
            }
            match token_at(text, i) {
                Ok(t) => {
                    i = t.end;
                    out.push(t);
                }
                Err(next) => i = next,
            }
        }
        out
    }

    /// Tokens, features, lists and cues with the fast paths, and with the general paths
    /// (no word keys: every word takes the general path of the features, and every word
    /// start is tried by the cue search).
    fn check(p: &Pipeline, text: &str) {
        let mut tokens = Vec::new();
        let seen = tokenize_into(text, &mut tokens);
        assert_eq!(tokens, tokenize_general(text), "tokens of {text:?}");
        assert_eq!(
            seen & tokens::SEEN_PIPE != 0,
            text.contains('|'),
            "| in {text:?}"
        );
        assert_eq!(
            seen & tokens::SEEN_QUOTE != 0,
            text.contains('"'),
            "\" in {text:?}"
        );
        for (bit, byte) in [
            (tokens::SEEN_LT, '<'),
            (tokens::SEEN_EQ, '='),
            (tokens::SEEN_TILDE, '~'),
        ] {
            assert_eq!(seen & bit != 0, text.contains(byte), "{byte} in {text:?}");
        }
        let lower = text.to_ascii_lowercase();
        let mut keys = Vec::new();
        features::word_keys(&lower, &tokens, &p.vocab, &mut keys);
        let (mut fast, mut general) = (Vec::new(), Vec::new());
        p.cues.find(&lower, &tokens, &keys, &mut fast);
        p.cues.find(&lower, &tokens, &[], &mut general);
        assert_eq!(fast, general, "cues of {text:?}");
        let near = vec![true; tokens.len()];
        let (mut f1, mut f2) = (Vec::new(), Vec::new());
        let (mut l1, mut l2) = (
            features::TokenLists::default(),
            features::TokenLists::default(),
        );
        let args = (text, lower.as_str(), tokens.as_slice());
        features::compute(
            args.0, args.1, args.2, &keys, &p.lex, &p.vocab, &near, &mut f1, &mut l1,
        );
        features::compute(
            args.0,
            args.1,
            args.2,
            &[],
            &p.lex,
            &p.vocab,
            &near,
            &mut f2,
            &mut l2,
        );
        assert_eq!(f1, f2, "features of {text:?}");
        assert_eq!(l1, l2, "lists of {text:?}");
    }

    fn pipeline() -> Pipeline {
        Pipeline::new(Arc::new(Lexicon::load()), Vec::new()).unwrap()
    }

    #[test]
    fn ocr_confusions_are_mended_and_words_are_not() {
        let mend = |w: &str| {
            let mut out = vec![0u8; w.len()];
            let changed = ocr_token(w.as_bytes(), &mut out);
            (changed, String::from_utf8(out).unwrap_or_default())
        };
        assert_eq!(mend("2l9"), (true, "219".into()));
        assert_eq!(mend("O6O53"), (true, "06053".into()));
        assert_eq!(mend("lD"), (true, "ID".into()));
        assert_eq!(mend("MlNGYU"), (true, "MINGYU".into()));
        assert_eq!(mend("cIearly"), (true, "clearly".into()));
        assert_eq!(mend("Grzeg0rz"), (true, "Grzegorz".into()));
        assert_eq!(mend("CR0SS"), (true, "CROSS".into()));
        for same in [
            "I10", "O1175344", "Al", "El", "McIntyre", "MyChart", "2nd", "5pm",
        ] {
            assert_eq!(mend(same), (false, same.into()), "{same}");
        }
    }

    #[test]
    fn fast_paths_match_the_general_code() {
        let p = pipeline();
        for t in texts() {
            check(&p, &t);
        }
    }

    const FRAGMENTS: &[&str] = &[
        "Ana", " ", "o'", "-", "’s", "\\n", "é", "x\u{301}", "12", "MRN", "Dr.", ", ", "\n",
        "this is ", "County", "call ", "4B", "—", "'", "ü", "ß", "İ", "_", "@", ".", "::", "|",
        "\"", "\\\"", "\\n|",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn fast_paths_match_on_fragment_soup(
            parts in proptest::collection::vec(0..FRAGMENTS.len(), 0..30)
        ) {
            let text: String = parts.iter().map(|&i| FRAGMENTS[i]).collect();
            check(pipeline_once(), &text);
        }

        #[test]
        fn resolve_matches_the_tree_version(
            spans in proptest::collection::vec((0usize..40, 1usize..12, 0usize..3, 0u8..4), 0..12)
        ) {
            let text = "Ana Ruiz, MRN 12345 — 555-123-4567 é; Cook County 60601 x";
            let labels = [Label::Name, Label::Mrn, Label::Phone];
            let cands: Vec<Span> = spans
                .iter()
                .map(|&(s, len, l, c)| Span {
                    start: s,
                    end: s + len,
                    label: labels[l],
                    confidence: f32::from(c) / 4.0,
                    recognizer: "test",
                })
                .collect();
            let mut a = cands.clone();
            let mut b = cands;
            prepare(text, &mut b);
            prop_assert_eq!(resolve(text, &mut a), resolve_with_tree(text, &mut b));
        }
    }

    /// One pipeline for all proptest cases (building it loads the lists).
    fn pipeline_once() -> &'static Pipeline {
        static P: std::sync::OnceLock<Pipeline> = std::sync::OnceLock::new();
        P.get_or_init(pipeline)
    }
}
