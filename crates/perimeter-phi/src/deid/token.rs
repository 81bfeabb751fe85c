//! The pseudonym token grammar, `[LABEL_N]`, and the scanner shared by one-shot and streaming
//! re-identification.
//!
//! A token is `[`, one of the [`Label`] names, `_`, a number of 1 to [`MAX_DIGITS`] digits
//! without a leading zero, and `]`: `[NAME_1]`, `[HEALTH_PLAN_12]`. Nothing else is a token, so
//! a redaction marker like `[NAME]` never is.
//!
//! The scanner decides at each `[` by looking only forward and only as far as the token could
//! reach, so cutting the text anywhere and scanning the pieces with the unfinished tail carried
//! over gives the same result as scanning it whole: that is what makes the streaming
//! re-identifier agree with the one-shot one.

use crate::Label;

/// Most digits a token number may have (vault counters never get near this).
pub(crate) const MAX_DIGITS: usize = 9;

/// The longest a token can be, in bytes: `[HEALTH_PLAN_123456789]`.
pub(crate) const MAX_TOKEN_LEN: usize = 1 + 11 + 1 + MAX_DIGITS + 1;

/// Formats the token for `label` and `n`.
pub(crate) fn format_token(label: Label, n: u32) -> String {
    // By hand rather than with `write!`: a vault issues one per identifier, and the
    // formatting machinery was a tenth of pseudonymization's cost.
    let mut out = String::with_capacity(MAX_TOKEN_LEN);
    out.push('[');
    out.push_str(label.as_str());
    out.push('_');
    push_decimal(&mut out, u64::from(n));
    out.push(']');
    out
}

/// Appends `v` in decimal, as `Display` writes it (without the formatting machinery).
pub(crate) fn push_decimal(out: &mut String, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut k = digits.len();
    // A `u64` has at most twenty digits, so `k` stays in range.
    while k > 0 {
        k -= 1;
        digits[k] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend(digits[k..].iter().map(|&d| char::from(d)));
}

/// The label and number of `s` when the whole of it is one token.
pub(crate) fn parse_token(s: &str) -> Option<(Label, u32)> {
    if !s.starts_with('[') || shape(s.as_bytes()) != Shape::Token(s.len()) {
        return None;
    }
    let (name, n) = s.get(1..s.len() - 1)?.rsplit_once('_')?;
    let label = Label::ALL.iter().copied().find(|l| l.as_str() == name)?;
    Some((label, n.parse().ok()?))
}

/// What the text starting at a `[` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A whole token of this many bytes.
    Token(usize),
    /// The text ends before it could be decided; it may still become a token.
    Unfinished,
    /// Not a token.
    No,
}

/// Classifies `s`, which starts with `[`.
fn shape(s: &[u8]) -> Shape {
    debug_assert_eq!(s.first(), Some(&b'['));
    // The run of capitals and underscores after the bracket names the label plus its `_`.
    let mut i = 1;
    while i < s.len() && (s[i].is_ascii_uppercase() || s[i] == b'_') {
        i += 1;
    }
    let run = &s[1..i];
    if i == s.len() {
        let could_be = Label::ALL.iter().any(|l| {
            let name = l.as_str().as_bytes();
            // run is a prefix of "LABEL_"
            run.len() <= name.len() + 1
                && run
                    .iter()
                    .zip(name.iter().chain(b"_".iter()))
                    .all(|(a, b)| a == b)
        });
        return if could_be {
            Shape::Unfinished
        } else {
            Shape::No
        };
    }
    let Some((&b'_', name)) = run.split_last() else {
        return Shape::No;
    };
    if !Label::ALL.iter().any(|l| l.as_str().as_bytes() == name) {
        return Shape::No;
    }
    let digits_start = i;
    while i < s.len() && s[i].is_ascii_digit() && i - digits_start < MAX_DIGITS {
        i += 1;
    }
    let digits = i - digits_start;
    if digits > 0 && s[digits_start] == b'0' {
        return Shape::No;
    }
    if i == s.len() {
        return Shape::Unfinished;
    }
    if digits == 0 || s[i] != b']' {
        return Shape::No;
    }
    Shape::Token(i + 1)
}

/// A piece of scanned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Plain text, to pass through.
    Text(&'a str),
    /// A whole token.
    Token(&'a str),
}

/// Scans `s` into pieces, calling `emit` for each in order, and returns how many bytes were
/// consumed. With `last` false, an unfinished token at the end is left unconsumed (it is at most
/// [`MAX_TOKEN_LEN`] bytes); with `last` true everything is consumed.
pub(crate) fn scan<'a>(s: &'a str, last: bool, mut emit: impl FnMut(Piece<'a>)) -> usize {
    let bytes = s.as_bytes();
    let mut text_start = 0;
    let mut pos = 0;
    while let Some(off) = bytes[pos..].iter().position(|&b| b == b'[') {
        let at = pos + off;
        match shape(&bytes[at..]) {
            Shape::Token(len) => {
                if text_start < at {
                    emit(Piece::Text(&s[text_start..at]));
                }
                emit(Piece::Token(&s[at..at + len]));
                pos = at + len;
                text_start = pos;
            }
            Shape::Unfinished if !last => {
                if text_start < at {
                    emit(Piece::Text(&s[text_start..at]));
                }
                return at;
            }
            Shape::Unfinished | Shape::No => pos = at + 1,
        }
    }
    if text_start < s.len() {
        emit(Piece::Text(&s[text_start..]));
    }
    s.len()
}

/// The byte ranges of the tokens in `s`.
pub(crate) fn find_tokens(s: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    scan(s, true, |p| match p {
        Piece::Text(t) => at += t.len(),
        Piece::Token(t) => {
            out.push(at..at + t.len());
            at += t.len();
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Vec<&str> {
        find_tokens(s).into_iter().map(|r| &s[r]).collect()
    }

    #[test]
    fn recognises_only_the_grammar() {
        assert_eq!(
            tokens("a [NAME_1] b [HEALTH_PLAN_12] [NAME] [NAME_0] [NAME_01] [name_1] [FOO_1]"),
            vec!["[NAME_1]", "[HEALTH_PLAN_12]"]
        );
        assert_eq!(tokens("[[NAME_2]]"), vec!["[NAME_2]"]);
        assert_eq!(tokens("[NAME_1234567890]"), Vec::<&str>::new());
        assert_eq!(tokens("[NAME_123456789]"), vec!["[NAME_123456789]"]);
        assert_eq!(format_token(Label::HealthPlan, 3), "[HEALTH_PLAN_3]");
        assert_eq!(format_token(Label::Name, 0), "[NAME_0]");
        assert_eq!(format_token(Label::Ip, u32::MAX), "[IP_4294967295]");
        for n in (0..2000).chain([99_999, 100_000, 4_000_000_000]) {
            assert_eq!(format_token(Label::Mrn, n), format!("[MRN_{n}]"));
        }
    }

    #[test]
    fn parses_exactly_the_tokens() {
        for l in Label::ALL {
            for n in [1, 9, 10, 12, 999_999_999] {
                assert_eq!(parse_token(&format_token(l, n)), Some((l, n)));
            }
        }
        for s in [
            "",
            "[",
            "[NAME]",
            "[NAME_]",
            "[NAME_0]",
            "[NAME_01]",
            "[name_1]",
            "[FOO_1]",
            "[NAME_1] ",
            " [NAME_1]",
            "[NAME_1]]",
            "[NAME_1234567890]",
            "NAME_1",
            "[NAME_1",
            "[HEALTH_1]",
            "[NAME_PLAN_1]",
        ] {
            assert_eq!(parse_token(s), None, "{s:?}");
        }
    }

    #[test]
    fn holds_back_only_what_could_become_a_token() {
        for (s, consumed) in [
            ("abc [NA", 4),
            ("abc [NAME_", 4),
            ("abc [NAME_12", 4),
            ("abc [", 4),
            ("abc [X", 6),
            ("abc [NAME]", 10),
            ("abc [NAME_1] x", 14),
            ("abc [HEALTH_P", 4),
            ("abc [NAME_0", 11),
        ] {
            assert_eq!(scan(s, false, |_| {}), consumed, "{s}");
            assert_eq!(scan(s, true, |_| {}), s.len(), "{s}");
        }
        assert!(MAX_TOKEN_LEN >= "[HEALTH_PLAN_123456789]".len());
    }
}
