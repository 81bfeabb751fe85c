//! A single-pass tokenizer: words (letters with inner apostrophes and hyphens) and numbers.

/// What a token is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Letters, possibly with inner `'`, `’` or `-` (`O'Brien`, `Karl-Josef`).
    Word,
    /// ASCII digits only.
    Number,
    /// Letters and digits mixed (`MRN1457047`, `4B`).
    Alnum,
}

/// One token: byte offsets into the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
    /// First character is upper case.
    pub upper: bool,
    /// Every letter is upper case (and there are at least two letters).
    pub all_caps: bool,
    /// Every character is ASCII.
    pub ascii: bool,
    /// Has an inner `'`, `’` or `-`.
    pub joined: bool,
    /// Letters and digits mixed, or a capital after the first letter (`2l9`, `MlNGYU`,
    /// `McIntyre`): where OCR's confusions can hide.
    pub mixed: bool,
}

impl Token {
    pub(crate) fn text<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.start..self.end).unwrap_or("")
    }
}

/// Combining diacritical marks (`i̇` is `i` + U+0307): part of the word they follow.
fn is_combining(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}')
}

fn is_joiner(c: char) -> bool {
    matches!(c, '\'' | '’' | '-')
}

/// The char at byte `i` of `text` and its length (ASCII without decoding).
#[inline]
fn char_at(text: &str, i: usize) -> Option<(char, usize)> {
    let b = *text.as_bytes().get(i)?;
    if b < 0x80 {
        return Some((char::from(b), 1));
    }
    let c = text.get(i..)?.chars().next()?;
    Some((c, c.len_utf8()))
}

const ALNUM: u8 = 1;
const DIGIT: u8 = 2;
const LOWER: u8 = 4;
const UPPER: u8 = 8;

/// ASCII byte classes (non-ASCII bytes have none).
pub(crate) static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() {
            ALNUM | DIGIT
        } else if c.is_ascii_lowercase() {
            ALNUM | LOWER
        } else if c.is_ascii_uppercase() {
            ALNUM | UPPER
        } else {
            0
        };
        b += 1;
    }
    t
};

/// Splits `text` into tokens. Never panics; offsets are on char boundaries.
///
/// One pass over the bytes: ASCII is classified without decoding (most of the text), other
/// characters are decoded where they occur.
#[cfg(test)]
pub(crate) fn tokenize(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    tokenize_into(text, &mut out);
    out
}

/// [`tokenize_into`]'s answer: the text has a `|` (HL7 v2 segments).
pub(crate) const SEEN_PIPE: u8 = 1;
/// [`tokenize_into`]'s answer: the text has a `"` (JSON).
pub(crate) const SEEN_QUOTE: u8 = 2;
/// [`tokenize_into`]'s answer: the text has a `<` (XML).
pub(crate) const SEEN_LT: u8 = 4;
/// [`tokenize_into`]'s answer: the text has a `=` (`key=value` logs).
pub(crate) const SEEN_EQ: u8 = 8;
/// [`tokenize_into`]'s answer: the text has a `~` (X12 segments).
pub(crate) const SEEN_TILDE: u8 = 16;

/// [`tokenize_into`]'s answer: the text has a token of letters and digits mixed, or a word
/// with a capital after its first letter (where OCR's confusions hide: `2l9`, `MlNGYU`).
pub(crate) const SEEN_MIXED: u8 = 32;
/// [`tokenize_into`]'s answer: the text has a `_` (file names, identifiers of code).
pub(crate) const SEEN_UNDERSCORE: u8 = 64;

/// The `SEEN_*` bits of each byte.
static SEEN: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'|' as usize] = SEEN_PIPE;
    t[b'"' as usize] = SEEN_QUOTE;
    t[b'<' as usize] = SEEN_LT;
    t[b'=' as usize] = SEEN_EQ;
    t[b'~' as usize] = SEEN_TILDE;
    t[b'_' as usize] = SEEN_UNDERSCORE;
    t
};

/// [`tokenize`] into `out` (cleared first), so a caller can reuse its buffer. Returns
/// which of `|`, `"`, `<`, `=`, `~` and `_` the text has ([`SEEN_PIPE`] and the others): every byte outside a
/// token passes here anyway, and the structured recognizer need not search for them.
///
/// Most tokens are runs of ASCII letters and digits ended by an ASCII byte other than `'`
/// and `-`: they are read with one table lookup per byte. Anything else (a non-ASCII
/// character, an apostrophe or hyphen that may join two words) goes through [`token_at`].
pub(crate) fn tokenize_into(text: &str, out: &mut Vec<Token>) -> u8 {
    out.clear();
    out.reserve(text.len() / 5 + 1);
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut seen = 0;
    let mut i = 0;
    while i < n {
        let b = bytes[i];
        let cb = CLASS[usize::from(b)];
        if cb == 0 {
            if b < 0x80 {
                seen |= SEEN[usize::from(b)];
                // JSON and log escapes (`\n`, `\t`, `\r`) are white space, not the start
                // of a word: `"Thanks,\nMaria"` has the token `Maria`.
                i += if b == b'\\' && matches!(bytes.get(i + 1), Some(b'n' | b't' | b'r')) {
                    2
                } else {
                    1
                };
                continue;
            }
            i = general_step(text, i, out, &mut seen);
            continue;
        }
        let mut end = i + 1;
        // The classes of the bytes after the first.
        let mut rest = 0;
        while end < n {
            let c = CLASS[usize::from(bytes[end])];
            if c == 0 {
                break;
            }
            rest |= c;
            end += 1;
        }
        let acc = cb | rest;
        if end < n && matches!(bytes[end], b'\'' | b'-' | 0x80..) {
            // A joiner or a non-ASCII character next: the general path.
            i = general_step(text, i, out, &mut seen);
            continue;
        }
        let kind = if acc & DIGIT == 0 {
            Kind::Word
        } else if acc & (LOWER | UPPER) == 0 {
            Kind::Number
        } else {
            Kind::Alnum
        };
        let mixed = kind == Kind::Alnum || rest & UPPER != 0;
        if mixed {
            seen |= SEEN_MIXED;
        }
        // Two or more letters, none lower case.
        let all_caps = acc & (LOWER | UPPER) == UPPER
            && (kind == Kind::Word && end - i >= 2
                || bytes.get(i..end).is_some_and(|w| {
                    w.iter()
                        .filter(|&&c| CLASS[usize::from(c)] & UPPER != 0)
                        .count()
                        >= 2
                }));
        out.push(Token {
            start: i,
            end,
            kind,
            upper: cb & UPPER != 0,
            all_caps,
            ascii: true,
            joined: false,
            mixed,
        });
        // Most words are followed by one space: step over it here.
        i = if end < n && bytes[end] == b' ' {
            end + 1
        } else {
            end
        };
    }
    seen
}

/// The general path at byte `i`: pushes the token that starts there, if any; returns where to
/// go on from.
#[inline]
fn general_step(text: &str, i: usize, out: &mut Vec<Token>, seen: &mut u8) -> usize {
    match token_at(text, i) {
        Ok(t) => {
            let end = t.end;
            if t.mixed {
                *seen |= SEEN_MIXED;
            }
            out.push(t);
            end
        }
        Err(next) => next,
    }
}

/// The token that starts at byte `i` (`Ok`), or where to go on from when no token starts
/// there (`Err`). Handles every character, ASCII or not.
pub(crate) fn token_at(text: &str, i: usize) -> Result<Token, usize> {
    let bytes = text.as_bytes();
    let Some(&b) = bytes.get(i) else {
        return Err(i + 1);
    };
    let cb = CLASS[usize::from(b)];
    if b < 0x80 && cb == 0 {
        return Err(i + 1);
    }
    let start = i;
    let (mut letters, mut digits, mut other_digit, mut lower, upper, clen);
    if b < 0x80 {
        // An ASCII letter or digit (the test above).
        let d = cb & DIGIT != 0;
        letters = usize::from(!d);
        digits = usize::from(d);
        other_digit = false;
        lower = usize::from(cb & LOWER != 0);
        upper = cb & UPPER != 0;
        clen = 1;
    } else {
        let Some((c, n)) = char_at(text, i) else {
            return Err(bytes.len());
        };
        if !c.is_alphanumeric() {
            return Err(i + n);
        }
        letters = usize::from(c.is_alphabetic());
        digits = 0;
        other_digit = c.is_numeric();
        lower = usize::from(c.is_lowercase());
        upper = c.is_uppercase();
        clen = n;
    }
    let mut end = start + clen;
    let mut ascii = clen == 1;
    let mut joined = false;
    // ASCII letters and digits are the common case.
    while let Some(&nb) = bytes.get(end) {
        let c = CLASS[usize::from(nb)];
        if c != 0 {
            let d = usize::from(c & DIGIT != 0);
            digits += d;
            letters += 1 - d;
            lower += usize::from(c & LOWER != 0);
            end += 1;
            continue;
        }
        if nb < 0x80 && nb != b'\'' && nb != b'-' {
            break;
        }
        let Some((n, nlen)) = char_at(text, end) else {
            break;
        };
        if n.is_alphanumeric() || is_combining(n) {
            letters += usize::from(n.is_alphabetic());
            other_digit |= n.is_numeric();
            lower += usize::from(n.is_lowercase());
            ascii = false;
            end += nlen;
        } else if is_joiner(n) && letters > 0 && digits == 0 {
            // Keep an apostrophe or hyphen only between two letters.
            match char_at(text, end + nlen) {
                Some((a, _)) if a.is_alphabetic() => {
                    ascii &= nlen == 1;
                    joined = true;
                    end += nlen;
                }
                _ => break,
            }
        } else {
            break;
        }
    }
    let kind = if digits == 0 && !other_digit {
        Kind::Word
    } else if letters == 0 && !other_digit {
        Kind::Number
    } else {
        Kind::Alnum
    };
    let mixed = kind == Kind::Alnum
        || bytes
            .get(start..end)
            .is_some_and(|w| w.iter().skip(1).any(u8::is_ascii_uppercase));
    Ok(Token {
        start,
        end,
        kind,
        upper,
        all_caps: letters >= 2 && lower == 0,
        ascii,
        joined,
        mixed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_inner_joiners() {
        let esc = "Thanks,\\nMaria\\tRuiz";
        let toks: Vec<&str> = tokenize(esc).iter().map(|k| k.text(esc)).collect();
        assert_eq!(toks, ["Thanks", "Maria", "Ruiz"]);
        let t = "O'Brien, Karl-Josef 4B MRN123 ünek's -x";
        let toks: Vec<&str> = tokenize(t).iter().map(|k| k.text(t)).collect();
        assert_eq!(
            toks,
            ["O'Brien", "Karl-Josef", "4B", "MRN123", "ünek's", "x"]
        );
        let kinds: Vec<Kind> = tokenize(t).iter().map(|k| k.kind).collect();
        assert_eq!(kinds[2], Kind::Alnum);
        assert_eq!(kinds[0], Kind::Word);
    }
}
