use serde::{Deserialize, Serialize};

use crate::Label;

/// One detected identifier.
///
/// `start`/`end` are UTF-8 **byte** offsets into the text (end exclusive), always on `char`
/// boundaries. Character offsets (the corpus's convention) are derived with
/// [`Span::char_range`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// What kind of identifier.
    pub label: Label,
    /// How sure the recognizer is, from 0.0 to 1.0.
    pub confidence: f32,
    /// The name of the recognizer that found it (static, never derived from the text).
    pub recognizer: &'static str,
}

impl Span {
    /// The covered text.
    pub fn text<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.start..self.end).unwrap_or("")
    }

    /// The span as Unicode character (code point) offsets.
    pub fn char_range(&self, text: &str) -> (usize, usize) {
        let start = text.get(..self.start).map_or(0, |p| p.chars().count());
        let len = self.text(text).chars().count();
        (start, start + len)
    }
}
