//! The recognizer pipeline.
//!
//! Every recognizer implements [`Recognizer`] and adds candidate spans for one document; the
//! [`Pipeline`] runs them all and resolves overlaps into sorted, disjoint spans. Recognizers
//! share a [`Doc`], which holds the text, its word tokens and the context cues found by one
//! Aho-Corasick pass, so no recognizer re-scans for keywords.

pub(crate) mod context;
pub(crate) mod patterns;
pub(crate) mod tokens;
pub(crate) mod validate;

use crate::Span;
use crate::engine::PhiError;
use context::{CueHit, Cues};
use tokens::Token;

/// One analysed message, shared by the recognizers.
pub(crate) struct Doc<'t> {
    /// The message.
    pub text: &'t str,
    /// Word and number tokens, in order.
    pub tokens: Vec<Token>,
    /// Context cue hits (keywords such as "DOB", "MRN", "call me at"), sorted by end.
    pub cues: Vec<CueHit>,
}

/// A detector for one family of identifiers.
pub(crate) trait Recognizer: Send + Sync {
    /// Static name, recorded on the spans it finds.
    fn name(&self) -> &'static str;
    /// Adds the spans found in `doc` to `out`. Overlaps are allowed; the pipeline resolves them.
    fn recognize(&self, doc: &Doc<'_>, out: &mut Vec<Span>);
}

/// All recognizers, run in order over one shared [`Doc`].
pub(crate) struct Pipeline {
    cues: Cues,
    recognizers: Vec<Box<dyn Recognizer>>,
}

impl Pipeline {
    pub(crate) fn new() -> Result<Pipeline, PhiError> {
        let cues = Cues::new()?;
        let recognizers: Vec<Box<dyn Recognizer>> = vec![Box::new(patterns::Patterns::new()?)];
        Ok(Pipeline { cues, recognizers })
    }

    pub(crate) fn run(&self, text: &str) -> Vec<Span> {
        let doc = Doc {
            text,
            tokens: tokens::tokenize(text),
            cues: self.cues.find(text),
        };
        let mut out = Vec::new();
        for r in &self.recognizers {
            r.recognize(&doc, &mut out);
        }
        resolve(text, out)
    }
}

/// Turns overlapping candidates into sorted, disjoint spans on char boundaries.
///
/// Candidates are taken in order of priority (confidence, then length); a candidate that
/// overlaps an already accepted span is merged into it when both have the same label and
/// dropped otherwise.
pub(crate) fn resolve(text: &str, mut cands: Vec<Span>) -> Vec<Span> {
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
    let mut accepted: Vec<Span> = Vec::with_capacity(cands.len());
    for c in cands {
        let mut clash = false;
        for a in accepted.iter_mut() {
            if c.start < a.end && a.start < c.end {
                if c.label == a.label {
                    a.start = a.start.min(c.start);
                    a.end = a.end.max(c.end);
                }
                clash = true;
                break;
            }
        }
        if !clash {
            accepted.push(c);
        }
    }
    accepted.sort_by_key(|s| s.start);
    // Merging may have made neighbours overlap: fold them.
    let mut out: Vec<Span> = Vec::with_capacity(accepted.len());
    for s in accepted {
        match out.last_mut() {
            Some(last) if s.start < last.end => {
                last.end = last.end.max(s.end);
            }
            _ => out.push(s),
        }
    }
    out
}
