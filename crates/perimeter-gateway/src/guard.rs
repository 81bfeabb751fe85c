//! The output guardrail for identifiers: what the model emits that the caller did not send is
//! redacted.
//!
//! The PHI engine is run on the (re-identified) output. Each identifier it finds is compared
//! with what the request carried ([`Originals`]): if every word of it occurs as a word of the
//! request, or its letters and digits run together occur in the request's letters and digits
//! run together (so `(312) 555-8841` matches `312.555.8841`), the caller sent it and it stays.
//! Anything else is replaced by `[LABEL]`. Whitespace-delimited runs that are percent-encoded,
//! base64 or JSON-escaped are decoded and checked the same way; a run hiding an identifier the
//! caller did not send is replaced whole.
//!
//! ## Streaming: what is held back, and what it costs
//! [`StreamGuard`] releases text only up to a cut that (a) follows whitespace, (b) lies at least
//! [`HOLD_BYTES`] before the end of what has arrived, and (c) is not inside anything the engine
//! found. Detection runs over the released tail ([`CONTEXT_BYTES`]) plus the pending text, so
//! cues before the cut still count. An identifier therefore reaches the caller only after the
//! engine has seen it whole with at least 64 bytes of right context, and an encoded run (no
//! whitespace inside) is always checked whole. The cost: the caller's text runs about 64
//! bytes plus one word (roughly 15 tokens, a third of a second at 50 tokens/s) behind the
//! model (at most `HOLD_BYTES + BATCH_BYTES`, 128 bytes, before a check releases text), the
//! rest arriving with the last chunk; the total time to the last byte does not change. Detection runs once per [`BATCH_BYTES`] of new text over at most
//! `CONTEXT_BYTES + SEGMENT_BYTES` bytes, so the work stays linear in the answer's length.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::ops::Range;

use base64::Engine as _;
use perimeter_phi::{Engine, Label, PhiError};
use serde::Serialize;
use zeroize::Zeroizing;

/// Bytes held back at the end of a streamed text.
pub const HOLD_BYTES: usize = 64;
/// Bytes of already released text the engine sees again as context.
pub const CONTEXT_BYTES: usize = 96;
/// New bytes that trigger another check.
pub const BATCH_BYTES: usize = 64;
/// Most pending bytes examined in one check; a longer run without whitespace is cut here.
pub const SEGMENT_BYTES: usize = 4096;

/// What the request carried, reduced to what the comparison needs. Holds PHI: wiped on drop
/// (the word hashes are keyed per call and reveal nothing on their own).
pub(crate) struct Originals {
    hasher: RandomState,
    words: HashSet<u64>,
    compact: Zeroizing<String>,
}

impl std::fmt::Debug for Originals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Originals")
            .field("words", &self.words.len())
            .finish_non_exhaustive()
    }
}

impl Default for Originals {
    fn default() -> Self {
        Originals {
            hasher: RandomState::new(),
            words: HashSet::new(),
            compact: Zeroizing::new(String::new()),
        }
    }
}

fn for_each_word(s: &str, mut f: impl FnMut(&str)) {
    for w in s.split(|c: char| !c.is_alphanumeric()) {
        if !w.is_empty() {
            f(w);
        }
    }
}

fn compact_into(s: &str, out: &mut String) {
    for c in s.chars().filter(|c| c.is_alphanumeric()) {
        out.extend(c.to_lowercase());
    }
}

impl Originals {
    /// Adds one string the request carried.
    pub(crate) fn add(&mut self, s: &str) {
        for_each_word(s, |w| {
            let lower = Zeroizing::new(w.to_lowercase());
            self.words.insert(self.hasher.hash_one(lower.as_str()));
        });
        compact_into(s, &mut self.compact);
        self.compact.push('\u{0}');
    }

    /// Whether `identifier` is something the caller sent.
    pub(crate) fn allows(&self, identifier: &str) -> bool {
        let mut any = false;
        let mut all = true;
        for_each_word(identifier, |w| {
            any = true;
            let lower = Zeroizing::new(w.to_lowercase());
            all &= self.words.contains(&self.hasher.hash_one(lower.as_str()));
        });
        if !any || all {
            return true;
        }
        let mut c = Zeroizing::new(String::new());
        compact_into(identifier, &mut c);
        c.len() >= 4 && self.compact.contains(c.as_str())
    }
}

/// How an identifier the caller did not send was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// As text.
    Plain,
    /// Percent-encoded (`Maria%20Gonzalez`).
    PercentEncoded,
    /// Base64 (standard or URL-safe, padded or not).
    Base64,
    /// With JSON escapes (`\u004daria`).
    JsonEscaped,
}

/// Counts of the identifiers redacted from one answer. No text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct IdentifierHits {
    /// Written as text.
    pub plain: u32,
    /// Percent-encoded.
    pub percent_encoded: u32,
    /// Base64.
    pub base64: u32,
    /// JSON-escaped.
    pub json_escaped: u32,
    /// Found only once more text arrived, after part of it had been released (the released part
    /// could not be taken back; the rest was redacted).
    pub late: u32,
}

impl IdentifierHits {
    /// All of them.
    pub fn total(&self) -> u32 {
        self.plain + self.percent_encoded + self.base64 + self.json_escaped
    }

    fn count(&mut self, e: Encoding) {
        match e {
            Encoding::Plain => self.plain += 1,
            Encoding::PercentEncoded => self.percent_encoded += 1,
            Encoding::Base64 => self.base64 += 1,
            Encoding::JsonEscaped => self.json_escaped += 1,
        }
    }
}

/// Something the engine found in the output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    pub range: Range<usize>,
    pub label: Label,
    pub encoding: Encoding,
    pub allowed: bool,
}

/// The engine and what the request carried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputGuard<'a> {
    pub engine: &'a Engine,
    pub originals: &'a Originals,
}

impl OutputGuard<'_> {
    /// Everything found in `text`: identifiers as text (allowed or not), and encoded runs that
    /// hide an identifier the caller did not send.
    pub(crate) fn scan(&self, text: &str) -> Result<Vec<Finding>, PhiError> {
        let mut found = Vec::new();
        for s in self.engine.detect(text)? {
            found.push(Finding {
                range: s.start..s.end,
                label: s.label,
                encoding: Encoding::Plain,
                allowed: self.originals.allows(s.text(text)),
            });
        }
        for run in runs(text) {
            let word = &text[run.clone()];
            for (encoding, decoded) in decodings(word) {
                if let Some(label) = self.first_not_allowed(&decoded)? {
                    found.push(Finding {
                        range: run.clone(),
                        label,
                        encoding,
                        allowed: false,
                    });
                    break;
                }
            }
        }
        found.sort_by_key(|f| (f.range.start, std::cmp::Reverse(f.range.end)));
        Ok(found)
    }

    fn first_not_allowed(&self, decoded: &str) -> Result<Option<Label>, PhiError> {
        Ok(self
            .engine
            .detect(decoded)?
            .into_iter()
            .find(|s| !self.originals.allows(s.text(decoded)))
            .map(|s| s.label))
    }

    /// Redacts a complete text.
    #[cfg(test)]
    pub(crate) fn redact(&self, text: &str, hits: &mut IdentifierHits) -> Result<String, PhiError> {
        let mut g = StreamGuard::default();
        let mut out = g.push(text, self, hits)?;
        out.push_str(&g.finish(self, hits)?);
        Ok(out)
    }
}

/// Whitespace-delimited runs, trimmed of surrounding punctuation.
fn runs(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    let mut push = |s: usize, e: usize| {
        let w = &text[s..e];
        let t = w.trim_start_matches(|c| "\"'([{<".contains(c));
        let lead = w.len() - t.len();
        let t = t.trim_end_matches(|c| "\"')]}>.,;:!?".contains(c));
        if t.len() >= 3 {
            out.push(s + lead..s + lead + t.len());
        }
    };
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                push(s, i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        push(s, text.len());
    }
    out
}

/// The decoded forms of an encoded-looking run.
fn decodings(word: &str) -> Vec<(Encoding, String)> {
    let mut out = Vec::new();
    let b = word.as_bytes();
    if b.windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
    {
        let plus = word.replace('+', " ");
        if let Ok(d) = percent_encoding::percent_decode_str(&plus).decode_utf8()
            && d != word
        {
            out.push((Encoding::PercentEncoded, d.into_owned()));
        }
    }
    if word.contains('\\')
        && let Some(d) = decode_json_escapes(word)
    {
        out.push((Encoding::JsonEscaped, d));
    }
    if let Some(d) = decode_base64(word) {
        out.push((Encoding::Base64, d));
    }
    out
}

fn decode_json_escapes(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    let mut changed = false;
    let mut high: Option<u32> = None;
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some('u') => {
                chars.next();
                let hex: String = chars.by_ref().take(4).collect();
                let Ok(unit) = u32::from_str_radix(&hex, 16) else {
                    out.push_str("\\u");
                    out.push_str(&hex);
                    continue;
                };
                if hex.len() != 4 {
                    out.push_str("\\u");
                    out.push_str(&hex);
                    continue;
                }
                changed = true;
                if (0xD800..0xDC00).contains(&unit) {
                    high = Some(unit);
                    continue;
                }
                if (0xDC00..0xE000).contains(&unit)
                    && let Some(h) = high.take()
                {
                    let cp = 0x10000 + ((h - 0xD800) << 10) + (unit - 0xDC00);
                    out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                    continue;
                }
                out.push(char::from_u32(unit).unwrap_or('\u{FFFD}'));
            }
            Some(e @ ('n' | 't' | 'r' | '"' | '\\' | '/')) => {
                chars.next();
                changed = true;
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => other,
                });
            }
            _ => out.push(c),
        }
    }
    changed.then_some(out)
}

fn decode_base64(word: &str) -> Option<String> {
    use base64::alphabet;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    if word.len() < 8
        || !word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
    {
        return None;
    }
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let url_safe = word.contains('-') || word.contains('_');
    let engine = if url_safe {
        GeneralPurpose::new(&alphabet::URL_SAFE, config)
    } else {
        GeneralPurpose::new(&alphabet::STANDARD, config)
    };
    let bytes = engine.decode(word).ok()?;
    let s = String::from_utf8(bytes).ok()?;
    let printable = s.chars().all(|c| !c.is_control() || c.is_whitespace());
    (printable && s.chars().any(char::is_alphanumeric)).then_some(s)
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The identifier guardrail over a streamed text (see the module docs).
#[derive(Default)]
pub(crate) struct StreamGuard {
    context: Zeroizing<String>,
    pending: Zeroizing<String>,
}

impl std::fmt::Debug for StreamGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamGuard")
            .field("pending_bytes", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl StreamGuard {
    /// Feeds text; returns what may be released now.
    pub(crate) fn push(
        &mut self,
        text: &str,
        guard: &OutputGuard<'_>,
        hits: &mut IdentifierHits,
    ) -> Result<String, PhiError> {
        self.pending.push_str(text);
        let mut out = String::new();
        while self.pending.len() >= HOLD_BYTES + BATCH_BYTES {
            match self.step(false, guard, hits)? {
                Some(released) => out.push_str(&released),
                None => break,
            }
        }
        Ok(out)
    }

    /// Ends the text; returns the rest, checked.
    pub(crate) fn finish(
        &mut self,
        guard: &OutputGuard<'_>,
        hits: &mut IdentifierHits,
    ) -> Result<String, PhiError> {
        let mut out = String::new();
        while !self.pending.is_empty() {
            match self.step(true, guard, hits)? {
                Some(released) => out.push_str(&released),
                None => break,
            }
        }
        self.context.clear();
        Ok(out)
    }

    /// Bytes not yet released.
    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// One check over the context and up to [`SEGMENT_BYTES`] of pending text.
    fn step(
        &mut self,
        last: bool,
        guard: &OutputGuard<'_>,
        hits: &mut IdentifierHits,
    ) -> Result<Option<String>, PhiError> {
        let seg_end = floor_boundary(&self.pending, SEGMENT_BYTES);
        let whole = seg_end == self.pending.len();
        let offset = self.context.len();
        let mut window = Zeroizing::new(String::with_capacity(offset + seg_end));
        window.push_str(&self.context);
        window.push_str(&self.pending[..seg_end]);
        let found = guard.scan(&window)?;
        let inside = |p: usize| {
            found
                .iter()
                .any(|f| f.range.start < offset + p && offset + p < f.range.end)
        };
        let segment = &self.pending[..seg_end];
        let cut = if last && whole {
            seg_end
        } else {
            let limit = floor_boundary(segment, seg_end.saturating_sub(HOLD_BYTES));
            let after_space = (1..=limit).rev().find(|&p| {
                segment.is_char_boundary(p)
                    && segment.as_bytes()[p - 1].is_ascii_whitespace()
                    && !inside(p)
            });
            match after_space {
                Some(p) => p,
                None if seg_end >= SEGMENT_BYTES.saturating_sub(3) || (last && !whole) => {
                    // A long run without whitespace: cut outside any finding if possible.
                    (1..=limit)
                        .rev()
                        .find(|&p| segment.is_char_boundary(p) && !inside(p))
                        .unwrap_or(limit)
                }
                None => 0,
            }
        };
        if cut == 0 {
            return Ok(None);
        }
        let mut out = String::with_capacity(cut + 16);
        let mut pos = 0; // in pending coordinates
        for f in found.iter().filter(|f| !f.allowed) {
            let (s, e) = (f.range.start, f.range.end);
            if e <= offset || s >= offset + cut {
                continue;
            }
            let start = s.saturating_sub(offset).max(pos);
            let end = (e - offset).min(cut);
            if start >= end {
                continue;
            }
            out.push_str(&segment[pos..start]);
            out.push('[');
            out.push_str(f.label.as_str());
            out.push(']');
            pos = end;
            if s < offset {
                hits.late += 1;
            } else {
                hits.count(f.encoding);
            }
        }
        out.push_str(&segment[pos..cut]);
        self.context.push_str(&segment[..cut]);
        let keep_from = self.context.len().saturating_sub(CONTEXT_BYTES);
        let mut k = keep_from;
        while !self.context.is_char_boundary(k) {
            k += 1;
        }
        self.context.drain(..k);
        self.pending.drain(..cut);
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use perimeter_phi::EngineConfig;
    use std::sync::OnceLock;

    pub(crate) fn engine() -> &'static Engine {
        static E: OnceLock<Engine> = OnceLock::new();
        E.get_or_init(|| Engine::new(EngineConfig::default()).unwrap())
    }

    fn originals(texts: &[&str]) -> Originals {
        let mut o = Originals::default();
        for t in texts {
            o.add(t);
        }
        o
    }

    #[test]
    fn identifiers_the_caller_sent_are_allowed_in_other_spellings() {
        let o = originals(&["Hi, this is Maria Gonzalez, call 312.555.8841", "MRN 12345"]);
        assert!(o.allows("Maria Gonzalez"));
        assert!(o.allows("GONZALEZ, Maria"));
        assert!(o.allows("(312) 555-8841"));
        assert!(o.allows("3125558841"));
        assert!(o.allows("Maria"));
        assert!(!o.allows("Ann Lee"));
        assert!(!o.allows("Maria Lee"));
        assert!(!o.allows("(312) 555-0000"));
        assert!(o.allows("--"));
    }

    #[test]
    fn redacts_what_the_caller_did_not_send_in_any_encoding() {
        let o = originals(&["Please confirm the appointment for Maria Gonzalez."]);
        let g = OutputGuard {
            engine: engine(),
            originals: &o,
        };
        let mut hits = IdentifierHits::default();
        let out = g
            .redact(
                "Sure, Maria Gonzalez is booked. Her SSN is 123-45-6789 and email \
                 ann.lee@example.com.",
                &mut hits,
            )
            .unwrap();
        assert!(out.contains("Maria Gonzalez"), "{out}");
        assert!(!out.contains("6789") && !out.contains("ann.lee"), "{out}");
        assert_eq!(hits.plain, 2, "{out}");

        let secret = "email ann.lee@example.com";
        for (encoded, which) in [
            (
                percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
                Encoding::PercentEncoded,
            ),
            (STANDARD.encode(secret), Encoding::Base64),
            (URL_SAFE_NO_PAD.encode(secret), Encoding::Base64),
            (
                "\\u0061nn.lee\\u0040example.com".to_string(),
                Encoding::JsonEscaped,
            ),
        ] {
            let mut hits = IdentifierHits::default();
            let text = format!("The link is {encoded} for you.");
            let out = g.redact(&text, &mut hits).unwrap();
            assert!(!out.contains(&encoded), "{which:?}: {out}");
            assert!(out.starts_with("The link is [EMAIL] for you."), "{out}");
            let mut expected = IdentifierHits::default();
            expected.count(which);
            assert_eq!(hits, expected, "{which:?}");
        }
        // Encodings of what the caller sent pass.
        let mut hits = IdentifierHits::default();
        let sent = STANDARD.encode("Maria Gonzalez");
        let text = format!("Token {sent} ok and Maria%20Gonzalez too");
        assert_eq!(g.redact(&text, &mut hits).unwrap(), text);
        assert_eq!(hits.total(), 0);
        // Ordinary words are not mistaken for base64.
        let text = "Your appointment information is confirmed, thankyou.";
        assert_eq!(g.redact(text, &mut hits).unwrap(), text);
    }

    #[test]
    fn streaming_releases_early_and_never_an_identifier_not_sent() {
        let o = originals(&["hello"]);
        let g = OutputGuard {
            engine: engine(),
            originals: &o,
        };
        let text = "Thanks for writing in today. We will call the number on file, which is \
                    (312) 555-8841, tomorrow morning; you can also reach the front desk \
                    at frontdesk.team@example.org any time. Have a good day and take care.";
        let mut one_shot_hits = IdentifierHits::default();
        let expected = g.redact(text, &mut one_shot_hits).unwrap();
        assert!(!expected.contains("8841") && !expected.contains("frontdesk.team"));
        for step in [1usize, 3, 7, 40] {
            let mut s = StreamGuard::default();
            let mut hits = IdentifierHits::default();
            let mut out = String::new();
            let mut released_before_end = 0;
            let mut i = 0;
            while i < text.len() {
                let j = floor_boundary(text, i + step).max(i + 1);
                out.push_str(&s.push(&text[i..j], &g, &mut hits).unwrap());
                // Never more than the hold-back plus one check's batch and a word behind.
                assert!(s.pending_len() <= HOLD_BYTES + BATCH_BYTES + 40 || j - i > 1);
                i = j;
                released_before_end = out.len();
            }
            out.push_str(&s.finish(&g, &mut hits).unwrap());
            assert!(released_before_end > 0);
            assert_eq!(out, expected, "step {step}");
            assert_eq!(hits, one_shot_hits, "step {step}");
            assert_eq!(hits.late, 0);
        }
    }

    #[test]
    fn long_runs_without_whitespace_are_cut_and_still_checked() {
        let o = originals(&[]);
        let g = OutputGuard {
            engine: engine(),
            originals: &o,
        };
        let text = "x".repeat(SEGMENT_BYTES * 3);
        let mut s = StreamGuard::default();
        let mut hits = IdentifierHits::default();
        let mut out = s.push(&text, &g, &mut hits).unwrap();
        assert!(out.len() >= SEGMENT_BYTES * 2);
        out.push_str(&s.finish(&g, &mut hits).unwrap());
        assert_eq!(out, text);
    }
}
