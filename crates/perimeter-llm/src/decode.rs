//! From sampled tokens to text deltas.
//!
//! Two things are held back from a stream: bytes that do not yet make a whole UTF-8 character
//! (a character can span several byte-level tokens; a delta never splits one), and text that
//! could be the beginning of a stop sequence (released once it cannot be, dropped with the rest
//! when the stop sequence completes). The deltas therefore concatenate to exactly the final
//! text.

use crate::error::LlmError;
use crate::tokenizer::TextTokenizer;

/// The longest run of tokens held back waiting for a character to complete. A UTF-8 character
/// is at most 4 bytes, so after this many tokens a trailing U+FFFD is a real replacement
/// character.
const MAX_PENDING: usize = 4;

/// Finds stop sequences in text that arrives in pieces.
#[derive(Debug, Clone, Default)]
pub struct StopScanner {
    stops: Vec<String>,
    text: String,
    emitted: usize,
    stopped: bool,
}

/// What one piece of text released.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Released {
    /// Text that can go to the caller now.
    pub delta: String,
    /// A stop sequence was found: the text ends before it and nothing more is accepted.
    pub stopped: bool,
}

impl StopScanner {
    /// A scanner for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> StopScanner {
        StopScanner {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..StopScanner::default()
        }
    }

    /// The text so far (without any stop sequence).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether a stop sequence was found.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds a piece of text; returns what can be released.
    pub fn push(&mut self, piece: &str) -> Released {
        if self.stopped {
            return Released {
                delta: String::new(),
                stopped: true,
            };
        }
        self.text.push_str(piece);
        // Where the longest possible beginning of a stop sequence starts (the text's end if
        // none): nothing from there on may be released yet.
        let hold = self
            .stops
            .iter()
            .map(|s| partial_suffix(&self.text[self.emitted..], s))
            .max()
            .unwrap_or(0);
        let open = self.text.len() - hold;
        match self.first_stop() {
            // A complete stop sequence, and none that starts before it could still complete.
            Some(at) if at <= open => Released {
                delta: self.stop_at(at),
                stopped: true,
            },
            // Up to the earlier of the two: a complete stop sequence that a longer one
            // starting before it may still replace, or the beginning of one.
            found => {
                let end = found.map_or(open, |at| at.min(open));
                let delta = self.text[self.emitted..end].to_string();
                self.emitted = end;
                Released {
                    delta,
                    stopped: false,
                }
            }
        }
    }

    /// The end of the text: everything held back is released, up to the first stop sequence
    /// if one is complete.
    pub fn finish(&mut self) -> String {
        if let Some(at) = self.first_stop() {
            return self.stop_at(at);
        }
        let delta = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        delta
    }

    /// Where the first complete stop sequence in the unreleased text starts.
    fn first_stop(&self) -> Option<usize> {
        let tail = &self.text[self.emitted..];
        self.stops
            .iter()
            .filter_map(|s| tail.find(s.as_str()))
            .min()
            .map(|p| self.emitted + p)
    }

    /// Ends the text before the stop sequence at `at`; returns the text released with it.
    fn stop_at(&mut self, at: usize) -> String {
        let delta = self.text[self.emitted..at].to_string();
        self.text.truncate(at);
        self.emitted = at;
        self.stopped = true;
        delta
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `stop`.
fn partial_suffix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&k| {
            text.is_char_boundary(text.len() - k)
                && stop.is_char_boundary(k)
                && text.ends_with(&stop[..k])
        })
        .unwrap_or(0)
}

/// Turns sampled tokens into deltas.
#[derive(Debug)]
pub(crate) struct DeltaDecoder<'t> {
    tokenizer: &'t TextTokenizer,
    pending: Vec<u32>,
    scanner: StopScanner,
}

impl<'t> DeltaDecoder<'t> {
    pub(crate) fn new(tokenizer: &'t TextTokenizer, stops: &[String]) -> DeltaDecoder<'t> {
        DeltaDecoder {
            tokenizer,
            pending: Vec::new(),
            scanner: StopScanner::new(stops),
        }
    }

    /// Adds one token.
    pub(crate) fn push(&mut self, id: u32) -> Result<Released, LlmError> {
        self.pending.push(id);
        let piece = self.tokenizer.decode(&self.pending)?;
        if piece.ends_with('\u{FFFD}') && self.pending.len() < MAX_PENDING {
            return Ok(Released::default());
        }
        self.pending.clear();
        Ok(self.scanner.push(&piece))
    }

    /// The end: flushes what is held back.
    pub(crate) fn finish(&mut self) -> Result<Released, LlmError> {
        let mut out = Released::default();
        if !self.pending.is_empty() && !self.scanner.stopped() {
            let piece = self.tokenizer.decode(&self.pending)?;
            self.pending.clear();
            out = self.scanner.push(&piece);
        }
        if !out.stopped {
            out.delta.push_str(&self.scanner.finish());
        }
        out.stopped = self.scanner.stopped();
        Ok(out)
    }

    pub(crate) fn text(&self) -> &str {
        self.scanner.text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(text: &str, stops: &[String]) -> (String, bool) {
        match stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            Some(at) => (text[..at].to_string(), true),
            None => (text.to_string(), false),
        }
    }

    fn run(pieces: &[&str], stops: &[String]) -> (String, bool, String) {
        let mut s = StopScanner::new(stops);
        let mut out = String::new();
        let mut stopped = false;
        for p in pieces {
            let r = s.push(p);
            out.push_str(&r.delta);
            if r.stopped {
                stopped = true;
                break;
            }
        }
        if !stopped {
            out.push_str(&s.finish());
            stopped = s.stopped();
        }
        (out, stopped, s.text().to_string())
    }

    /// A complete stop sequence waits while a longer one that starts before it may still
    /// complete: the earliest stop sequence in the whole text wins, however it was cut.
    #[test]
    fn an_earlier_longer_stop_wins_over_a_complete_later_one() {
        let stops = vec!["é".to_string(), " éb".to_string()];
        let mut s = StopScanner::new(&stops);
        let r = s.push("x é");
        assert_eq!((r.delta.as_str(), r.stopped), ("x", false));
        let r = s.push("b é");
        assert_eq!((r.delta.as_str(), r.stopped), ("", true));
        assert_eq!(s.text(), "x");
        // The longer one does not complete: the shorter one stops the text.
        let mut s = StopScanner::new(&stops);
        assert_eq!(s.push("x é").delta, "x");
        let r = s.push("c");
        assert_eq!((r.delta.as_str(), r.stopped), (" ", true));
        assert_eq!(s.text(), "x ");
        // The text ends while the longer one is still possible.
        let mut s = StopScanner::new(&stops);
        assert_eq!(s.push("x é").delta, "x");
        assert_eq!(s.finish(), " ");
        assert!(s.stopped());
        assert_eq!(s.text(), "x ");
    }

    #[test]
    fn a_stop_split_across_pieces_is_held_back_and_dropped() {
        let stops = vec!["END".to_string()];
        let mut s = StopScanner::new(&stops);
        assert_eq!(s.push("hello E").delta, "hello ");
        assert_eq!(s.push("N").delta, "");
        let r = s.push("D and more");
        assert_eq!(r.delta, "");
        assert!(r.stopped);
        assert_eq!(s.text(), "hello ");
        let mut s = StopScanner::new(&stops);
        assert_eq!(s.push("hello E").delta, "hello ");
        assert_eq!(s.push("x").delta, "Ex");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn a_multibyte_stop_is_matched_on_character_boundaries() {
        let stops = vec!["é!".to_string()];
        let (out, stopped, _) = run(&["caf", "é", "!"], &stops);
        assert_eq!(out, "caf");
        assert!(stopped);
    }

    proptest! {
        #[test]
        fn deltas_concatenate_to_the_text_before_the_first_stop(
            text in "[abc é]{0,40}",
            stops in proptest::collection::vec("[abc é]{0,4}", 0..4),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(text.len() + 1)).collect();
            points.push(0);
            points.push(text.len());
            points.retain(|&p| text.is_char_boundary(p));
            points.sort_unstable();
            points.dedup();
            let pieces: Vec<&str> = points.windows(2).map(|w| &text[w[0]..w[1]]).collect();
            let (out, stopped, final_text) = run(&pieces, &stops);
            let (want, want_stopped) = reference(&text, &stops);
            prop_assert_eq!(&out, &want);
            prop_assert_eq!(&final_text, &want);
            prop_assert_eq!(stopped, want_stopped);
        }
    }
}
