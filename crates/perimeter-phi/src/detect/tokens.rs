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

/// Splits `text` into tokens. Never panics; offsets are on char boundaries.
pub(crate) fn tokenize(text: &str) -> Vec<Token> {
    let mut out = Vec::with_capacity(text.len() / 5 + 1);
    let mut iter = text.char_indices().peekable();
    while let Some((start, c)) = iter.next() {
        if c == '\\' {
            // JSON and log escapes (`\n`, `\t`, `\r`) are white space, not the start of a
            // word: `"Thanks,\nMaria"` has the token `Maria`.
            if matches!(iter.peek(), Some((_, 'n' | 't' | 'r'))) {
                iter.next();
            }
            continue;
        }
        if !c.is_alphanumeric() {
            continue;
        }
        let mut end = start + c.len_utf8();
        let mut letters = usize::from(c.is_alphabetic());
        let mut digits = usize::from(c.is_ascii_digit());
        let mut other_digit = c.is_numeric() && !c.is_ascii_digit();
        let mut lower = usize::from(c.is_lowercase());
        loop {
            match iter.peek().copied() {
                Some((_, n)) if n.is_alphanumeric() || is_combining(n) => {
                    letters += usize::from(n.is_alphabetic());
                    digits += usize::from(n.is_ascii_digit());
                    other_digit |= n.is_numeric() && !n.is_ascii_digit();
                    lower += usize::from(n.is_lowercase());
                    end += n.len_utf8();
                    iter.next();
                }
                Some((j, n)) if is_joiner(n) && letters > 0 && digits == 0 => {
                    // Keep an apostrophe or hyphen only between two letters.
                    let after = text.get(j + n.len_utf8()..).and_then(|r| r.chars().next());
                    match after {
                        Some(a) if a.is_alphabetic() => {
                            end = j + n.len_utf8();
                            iter.next();
                        }
                        _ => break,
                    }
                }
                _ => break,
            }
        }
        let kind = if digits == 0 && !other_digit {
            Kind::Word
        } else if letters == 0 && !other_digit {
            Kind::Number
        } else {
            Kind::Alnum
        };
        out.push(Token {
            start,
            end,
            kind,
            upper: c.is_uppercase(),
            all_caps: letters >= 2 && lower == 0,
        });
    }
    out
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
