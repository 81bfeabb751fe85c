//! Rewriting the string literals of a JSON text (tool-call arguments) without reordering or
//! reformatting anything else.
//!
//! Outbound, [`rewrite_strings`] de-identifies every string (keys and values) of a complete,
//! valid JSON text. Inbound, [`StringsTranscoder`] works on fragments as they stream: it
//! decodes each literal's escapes, hands the decoded text to a [`TextSink`] (re-identification
//! and the output guardrail) and re-encodes whatever the sink releases, so a restored value
//! with a quote or a backslash in it is escaped correctly. Text outside literals passes
//! through untouched.

use std::fmt::Write as _;

/// Where the decoded content of string literals goes.
pub(crate) trait TextSink {
    /// The error the sink fails with.
    type Error;
    /// A literal starts.
    fn begin(&mut self);
    /// Decoded text of the current literal; returns what can be released now.
    fn push(&mut self, text: &str) -> Result<String, Self::Error>;
    /// The literal ends; returns the rest.
    fn end(&mut self) -> Result<String, Self::Error>;
}

/// Appends `s` escaped as the content of a JSON string (no surrounding quotes).
pub(crate) fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Why a JSON text could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError<E> {
    /// The text is not valid JSON.
    #[error("not valid JSON")]
    NotJson,
    /// The rewriting function failed.
    #[error("rewriting a string failed")]
    Inner(E),
}

/// Calls `f` on the decoded value of every string literal (keys included) of the valid JSON
/// text `text` and puts its result, JSON-encoded, in place of the literal.
pub(crate) fn rewrite_strings<E>(
    text: &str,
    mut f: impl FnMut(&str) -> Result<String, E>,
) -> Result<String, RewriteError<E>> {
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
        return Err(RewriteError::NotJson);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut pos = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        // Valid JSON: every quote outside a literal opens one. Find its end.
        let start = i;
        let mut j = i + 1;
        while j < bytes.len() {
            match bytes[j] {
                b'\\' => j += 2,
                b'"' => break,
                _ => j += 1,
            }
        }
        let end = (j + 1).min(bytes.len());
        let literal = &text[start..end];
        let decoded: String = serde_json::from_str(literal).map_err(|_| RewriteError::NotJson)?;
        let replaced = f(&decoded).map_err(RewriteError::Inner)?;
        out.push_str(&text[pos..start]);
        out.push('"');
        escape_into(&replaced, &mut out);
        out.push('"');
        pos = end;
        i = end;
    }
    out.push_str(&text[pos..]);
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After a backslash.
    Backslash,
    /// After `\u` and this many hex digits, with their value so far.
    Unicode {
        digits: u8,
        value: u32,
    },
}

/// Re-encodes the string literals of a JSON text arriving in fragments (see the module docs).
#[derive(Debug)]
pub(crate) struct StringsTranscoder {
    in_string: bool,
    escape: Escape,
    /// A high surrogate waiting for its low half.
    high: Option<u32>,
    /// Raw text of an escape being read, re-emitted as text when it turns out invalid.
    raw_escape: String,
}

impl Default for StringsTranscoder {
    fn default() -> Self {
        StringsTranscoder {
            in_string: false,
            escape: Escape::None,
            high: None,
            raw_escape: String::new(),
        }
    }
}

impl StringsTranscoder {
    /// Feeds the next fragment; returns the text that can be released.
    pub(crate) fn push<S: TextSink>(
        &mut self,
        fragment: &str,
        sink: &mut S,
    ) -> Result<String, S::Error> {
        let mut out = String::with_capacity(fragment.len() + 8);
        let mut decoded = String::new();
        for c in fragment.chars() {
            if !self.in_string {
                out.push(c);
                if c == '"' {
                    self.in_string = true;
                    self.escape = Escape::None;
                    self.high = None;
                    sink.begin();
                }
                continue;
            }
            match self.escape {
                Escape::None => match c {
                    '\\' => {
                        self.escape = Escape::Backslash;
                        self.raw_escape.clear();
                        self.raw_escape.push(c);
                    }
                    '"' => {
                        self.flush_high(&mut decoded);
                        let released = sink.push(&decoded)?;
                        decoded.clear();
                        escape_into(&released, &mut out);
                        let rest = sink.end()?;
                        escape_into(&rest, &mut out);
                        out.push('"');
                        self.in_string = false;
                    }
                    c => {
                        self.flush_high(&mut decoded);
                        decoded.push(c);
                    }
                },
                Escape::Backslash => {
                    self.raw_escape.push(c);
                    let simple = match c {
                        '"' => Some('"'),
                        '\\' => Some('\\'),
                        '/' => Some('/'),
                        'b' => Some('\u{08}'),
                        'f' => Some('\u{0c}'),
                        'n' => Some('\n'),
                        'r' => Some('\r'),
                        't' => Some('\t'),
                        _ => None,
                    };
                    if let Some(s) = simple {
                        self.flush_high(&mut decoded);
                        decoded.push(s);
                        self.escape = Escape::None;
                    } else if c == 'u' {
                        self.escape = Escape::Unicode {
                            digits: 0,
                            value: 0,
                        };
                    } else {
                        // Not a JSON escape: keep the characters as text.
                        self.flush_high(&mut decoded);
                        decoded.push_str(&self.raw_escape);
                        self.escape = Escape::None;
                    }
                }
                Escape::Unicode { digits, value } => {
                    self.raw_escape.push(c);
                    match c.to_digit(16) {
                        Some(d) => {
                            let value = value * 16 + d;
                            if digits + 1 < 4 {
                                self.escape = Escape::Unicode {
                                    digits: digits + 1,
                                    value,
                                };
                            } else {
                                self.escape = Escape::None;
                                self.code_unit(value, &mut decoded);
                            }
                        }
                        None => {
                            self.flush_high(&mut decoded);
                            decoded.push_str(&self.raw_escape);
                            self.escape = Escape::None;
                        }
                    }
                }
            }
        }
        if self.in_string && !decoded.is_empty() {
            let released = sink.push(&decoded)?;
            escape_into(&released, &mut out);
        }
        Ok(out)
    }

    /// Ends the text; a literal left open is closed (the sink's rest is released).
    pub(crate) fn finish<S: TextSink>(&mut self, sink: &mut S) -> Result<String, S::Error> {
        let mut out = String::new();
        if self.in_string {
            let mut decoded = String::new();
            if self.escape != Escape::None {
                decoded.push_str(&self.raw_escape);
            }
            self.flush_high(&mut decoded);
            let released = sink.push(&decoded)?;
            escape_into(&released, &mut out);
            let rest = sink.end()?;
            escape_into(&rest, &mut out);
            self.in_string = false;
            self.escape = Escape::None;
        }
        Ok(out)
    }

    fn code_unit(&mut self, unit: u32, decoded: &mut String) {
        if (0xD800..0xDC00).contains(&unit) {
            self.flush_high(decoded);
            self.high = Some(unit);
            return;
        }
        if (0xDC00..0xE000).contains(&unit) {
            match self.high.take() {
                Some(h) => {
                    let c = 0x10000 + ((h - 0xD800) << 10) + (unit - 0xDC00);
                    decoded.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                }
                None => decoded.push('\u{FFFD}'),
            }
            return;
        }
        self.flush_high(decoded);
        decoded.push(char::from_u32(unit).unwrap_or('\u{FFFD}'));
    }

    fn flush_high(&mut self, decoded: &mut String) {
        if self.high.take().is_some() {
            decoded.push('\u{FFFD}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Upper-cases every literal and holds back everything until the literal ends, like a
    /// guard that needs the whole value.
    #[derive(Default)]
    struct Upper {
        held: String,
        literals: usize,
    }

    impl TextSink for Upper {
        type Error = ();
        fn begin(&mut self) {
            self.literals += 1;
        }
        fn push(&mut self, text: &str) -> Result<String, ()> {
            self.held.push_str(text);
            Ok(String::new())
        }
        fn end(&mut self) -> Result<String, ()> {
            Ok(std::mem::take(&mut self.held).to_uppercase())
        }
    }

    #[test]
    fn rewrite_keeps_order_and_layout() {
        let text = r#"{ "b": "x\"y", "a" : [1, "é\u00e9\n", {"k":"v"}] }"#;
        let out = rewrite_strings::<()>(text, |s| Ok(s.to_uppercase())).unwrap();
        assert_eq!(out, r#"{ "B": "X\"Y", "A" : [1, "ÉÉ\n", {"K":"V"}] }"#);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["A"][1], "ÉÉ\n");
        assert_eq!(
            rewrite_strings::<()>("{\"a\": ", |s| Ok(s.into())),
            Err(RewriteError::NotJson)
        );
        assert_eq!(
            rewrite_strings::<&str>(r#"{"a":"b"}"#, |_| Err("no")),
            Err(RewriteError::Inner("no"))
        );
        // A replacement with quotes and backslashes stays valid JSON.
        let out =
            rewrite_strings::<()>(r#"{"a":"[X]"}"#, |s| Ok(s.replace("[X]", "\"q\\"))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["a"], "\"q\\");
    }

    fn transcode(fragments: &[&str]) -> String {
        let mut t = StringsTranscoder::default();
        let mut sink = Upper::default();
        let mut out = String::new();
        for f in fragments {
            out.push_str(&t.push(f, &mut sink).unwrap());
        }
        out.push_str(&t.finish(&mut sink).unwrap());
        out
    }

    #[test]
    fn transcoder_decodes_escapes_split_anywhere() {
        let text = r#"{"name": "a\"b\\c\u00e9\ud83d\ude00", "n": 1, "x\/y": "\t"}"#;
        let whole = transcode(&[text]);
        let v: serde_json::Value = serde_json::from_str(&whole).unwrap();
        assert_eq!(v["NAME"], "A\"B\\CÉ😀");
        assert_eq!(v["X/Y"], "\t");
        for cut in 1..text.len() {
            if text.is_char_boundary(cut) {
                assert_eq!(transcode(&[&text[..cut], &text[cut..]]), whole, "cut {cut}");
            }
        }
        // An unterminated literal is closed by finish; invalid escapes stay as text.
        assert_eq!(transcode(&[r#"{"a": "b"#]), r#"{"A": "B"#);
        assert_eq!(transcode(&[r#"["\q\u12x"]"#]), r#"["\\Q\\U12X"]"#);
        assert_eq!(transcode(&[r#"["\ud800x"]"#]), "[\"\u{FFFD}X\"]");
    }

    proptest! {
        #[test]
        fn transcoder_equals_decode_map_encode(
            v in proptest::collection::btree_map("\\PC{0,6}", "\\PC{0,8}", 0..5),
            cuts in proptest::collection::vec(0usize..200, 0..6),
        ) {
            let text = serde_json::to_string(&v).unwrap();
            let expected: std::collections::BTreeMap<String, String> = v
                .iter()
                .map(|(k, v)| (k.to_uppercase(), v.to_uppercase()))
                .collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (text.len() + 1))
                .filter(|&c| text.is_char_boundary(c)).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut prev = 0;
            for c in cuts { pieces.push(&text[prev..c]); prev = c; }
            pieces.push(&text[prev..]);
            let out = transcode(&pieces);
            let got: std::collections::BTreeMap<String, String> = serde_json::from_str(&out).unwrap();
            // Upper-casing may merge keys; compare through a map built the same way.
            prop_assert_eq!(got, expected);
        }
    }
}
