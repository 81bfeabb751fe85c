//! Normalisation of lookup values before blind indexing, so that the same person typed two ways
//! gives the same index. Each function returns `None` when the input cannot be a value of its
//! kind (the caller then neither indexes nor searches).

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// E.164-style phone number: `+` and digits only.
///
/// Separators are dropped; a leading `00` is an international prefix; a number without a country
/// code gets `default_country_code` (digits, such as `"1"`) when it has 10 digits (the NANP
/// length, the default region) or when it starts with a trunk `0`, which is dropped. Fewer than
/// 7 or more than 15 digits is not a phone number.
pub fn phone(input: &str, default_country_code: &str) -> Option<String> {
    let trimmed = input.trim();
    let international = trimmed.starts_with('+');
    // Stop at an extension marker ("x123", "ext. 12").
    let main = trimmed
        .split(|c: char| c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    if main.chars().any(|c| {
        !(c.is_ascii_digit() || c.is_whitespace() || matches!(c, '+' | '-' | '.' | '(' | ')' | '/'))
    }) {
        return None;
    }
    let digits: String = main.chars().filter(char::is_ascii_digit).collect();
    let full = if international {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_owned()
    } else if let Some(rest) = digits.strip_prefix('0') {
        format!("{default_country_code}{rest}")
    } else if digits.len() == 10 {
        format!("{default_country_code}{digits}")
    } else {
        digits
    };
    if !(7..=15).contains(&full.len()) || full.starts_with('0') {
        return None;
    }
    Some(format!("+{full}"))
}

/// E-mail address: trimmed and lower-cased; must have one `@` with text on both sides.
pub fn email(input: &str) -> Option<String> {
    let lowered = input.trim().to_lowercase();
    let (local, domain) = lowered.split_once('@')?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || lowered.chars().any(char::is_whitespace)
    {
        return None;
    }
    Some(lowered)
}

/// Medical record number: upper-cased, without whitespace.
pub fn mrn(input: &str) -> Option<String> {
    let out: String = input
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_uppercase)
        .collect();
    if out.is_empty() { None } else { Some(out) }
}

/// Insurance member id, group number or billing account number: ASCII letters and digits,
/// upper-cased, with spaces and hyphens dropped (`" abc-123 456 "` → `"ABC123456"`); at most 40
/// characters remain. Anything else (other punctuation, non-ASCII letters) is not such a number.
pub fn account_id(input: &str) -> Option<String> {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        if c.is_whitespace() || c == '-' {
            continue;
        }
        if !c.is_ascii_alphanumeric() {
            return None;
        }
        out.push(c.to_ascii_uppercase());
    }
    if out.is_empty() || out.len() > 40 {
        None
    } else {
        Some(out)
    }
}

/// Personal name: case- and diacritic-folded, punctuation dropped, words separated by single
/// spaces (`"  José  O'Brien-Smith "` → `"jose obrien smith"`).
pub fn name(input: &str) -> Option<String> {
    let mut folded = String::with_capacity(input.len());
    for c in input.nfkd().filter(|c| !is_combining_mark(*c)) {
        for lower in c.to_lowercase() {
            match lower {
                'ß' => folded.push_str("ss"),
                'æ' => folded.push_str("ae"),
                'œ' => folded.push_str("oe"),
                'ø' => folded.push('o'),
                'ł' => folded.push('l'),
                'đ' | 'ð' => folded.push('d'),
                'þ' => folded.push_str("th"),
                'ı' => folded.push('i'),
                '\'' | '’' | '`' | '.' => {}
                c if c.is_alphanumeric() => folded.push(c),
                _ => folded.push(' '),
            }
        }
    }
    let out = folded.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.is_empty() { None } else { Some(out) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        assert_eq!(
            phone("(555) 010-1234", "1").as_deref(),
            Some("+15550101234")
        );
        assert_eq!(
            phone("+1 555.010.1234", "1").as_deref(),
            Some("+15550101234")
        );
        assert_eq!(
            phone("001 555 010 1234", "1").as_deref(),
            Some("+15550101234")
        );
        assert_eq!(
            phone("1-555-010-1234", "1").as_deref(),
            Some("+15550101234")
        );
        assert_eq!(phone("030 1234567", "49").as_deref(), Some("+49301234567"));
        assert_eq!(
            phone("555-010-1234 x12", "1").as_deref(),
            Some("+15550101234")
        );
        assert_eq!(phone("12", "1"), None);
        assert_eq!(phone("call me", "1"), None);
        assert_eq!(phone("555#0101234", "1"), None);
    }

    #[test]
    fn emails() {
        assert_eq!(
            email("  Jane.Doe@Example.ORG ").as_deref(),
            Some("jane.doe@example.org")
        );
        assert_eq!(email("no-at-sign"), None);
        assert_eq!(email("a@b@c"), None);
        assert_eq!(email("@x"), None);
    }

    #[test]
    fn mrns() {
        assert_eq!(mrn(" ab 12-34 ").as_deref(), Some("AB12-34"));
        assert_eq!(mrn("  "), None);
    }

    #[test]
    fn account_ids() {
        assert_eq!(account_id(" abc-123 456 ").as_deref(), Some("ABC123456"));
        assert_eq!(account_id("W1234 5678-01").as_deref(), Some("W1234567801"));
        assert_eq!(account_id(" - "), None);
        assert_eq!(account_id("AB/12"), None);
        assert_eq!(account_id("ＡＢ12"), None);
        assert_eq!(account_id(&"9".repeat(41)), None);
        assert_eq!(account_id(&"9".repeat(40)).map(|s| s.len()), Some(40));
    }

    #[test]
    fn names() {
        assert_eq!(
            name("  José  O'Brien-Smith ").as_deref(),
            Some("jose obrien smith")
        );
        assert_eq!(name("MÜLLER, Jürgen").as_deref(), Some("muller jurgen"));
        assert_eq!(name("Straße").as_deref(), Some("strasse"));
        assert_eq!(name("Søren Łukasz").as_deref(), Some("soren lukasz"));
        assert_eq!(name("Ａｎｎａ"), Some("anna".to_owned()));
        assert_eq!(name(" - "), None);
    }

    proptest::proptest! {
        #[test]
        fn normalisers_never_panic_and_are_idempotent(s in "\\PC{0,40}") {
            if let Some(p) = phone(&s, "1") {
                proptest::prop_assert_eq!(phone(&p, "1"), Some(p.clone()));
            }
            if let Some(a) = account_id(&s) {
                proptest::prop_assert_eq!(account_id(&a), Some(a.clone()));
            }
            if let Some(e) = email(&s) {
                proptest::prop_assert_eq!(email(&e), Some(e.clone()));
            }
            if let Some(m) = mrn(&s) {
                proptest::prop_assert_eq!(mrn(&m), Some(m.clone()));
            }
            if let Some(n) = name(&s) {
                proptest::prop_assert_eq!(name(&n), Some(n.clone()));
            }
        }
    }
}
