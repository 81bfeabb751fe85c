//! Staff usernames: NFKC-normalised, lower-cased, and restricted to a small ASCII alphabet so
//! that look-alike (confusable) characters, invisible characters and mixed scripts cannot
//! produce two accounts that look the same or let one name pass for another.

use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// Fewest characters in a username.
pub const MIN_USERNAME_CHARS: usize = 3;
/// Most characters in a username.
pub const MAX_USERNAME_CHARS: usize = 64;

/// Why a username was refused. Never repeats the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// Too short or too long after normalisation.
    #[error("username: expected 3 to 64 characters")]
    Length,
    /// A character outside `a-z 0-9 . _ -` remained after NFKC normalisation and lower-casing
    /// (for example a Cyrillic look-alike letter, a zero-width space or an emoji).
    #[error("username: expected only letters a-z, digits 0-9, '.', '_' and '-'")]
    Character,
    /// Starts or ends with `.`, `_` or `-`, or has two of them in a row.
    #[error("username: must start and end with a letter or digit, without repeated punctuation")]
    Punctuation,
}

/// A valid, normalised username.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    /// Normalises and validates: NFKC (so full-width `ＡＬＩＣＥ` becomes `ALICE`), lower-case,
    /// then only `a-z 0-9 . _ -`, 3 to 64 characters, starting and ending with a letter or digit.
    /// Anything that is not ASCII after NFKC (confusables such as Cyrillic `а`, zero-width
    /// characters, other scripts) is refused rather than guessed at.
    pub fn parse(input: &str) -> Result<Self, UsernameError> {
        // Bound the work before normalising attacker-sized input.
        if input.len() > MAX_USERNAME_CHARS * 8 {
            return Err(UsernameError::Length);
        }
        let normalized: String = input.trim().nfkc().collect::<String>().to_lowercase();
        let count = normalized.chars().count();
        if !(MIN_USERNAME_CHARS..=MAX_USERNAME_CHARS).contains(&count) {
            return Err(UsernameError::Length);
        }
        if !normalized
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        {
            return Err(UsernameError::Character);
        }
        let bytes = normalized.as_bytes();
        let is_punct = |b: u8| matches!(b, b'.' | b'_' | b'-');
        let first_last_ok = bytes.first().is_some_and(|b| !is_punct(*b))
            && bytes.last().is_some_and(|b| !is_punct(*b));
        let no_runs = bytes
            .windows(2)
            .all(|w| !(is_punct(w[0]) && is_punct(w[1])));
        if !first_last_ok || !no_runs {
            return Err(UsernameError::Punctuation);
        }
        Ok(Self(normalized))
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Username {
    type Error = UsernameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Username> for String {
    fn from(value: Username) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_names_are_lower_cased() {
        assert_eq!(Username::parse("Dr.Smith").unwrap().as_str(), "dr.smith");
        assert_eq!(Username::parse("  nurse_01 ").unwrap().as_str(), "nurse_01");
    }

    #[test]
    fn full_width_and_compatibility_forms_normalise() {
        assert_eq!(Username::parse("ＡＤＭＩＮ").unwrap().as_str(), "admin");
        // The "ﬁ" ligature decomposes under NFKC.
        assert_eq!(Username::parse("ﬁona").unwrap().as_str(), "fiona");
    }

    #[test]
    fn confusables_invisibles_and_other_scripts_are_refused() {
        // Cyrillic "а" (U+0430) looks like Latin "a".
        assert_eq!(
            Username::parse("\u{430}dmin"),
            Err(UsernameError::Character)
        );
        assert_eq!(
            Username::parse("ad\u{200b}min"),
            Err(UsernameError::Character)
        );
        assert_eq!(
            Username::parse("admin\u{202e}"),
            Err(UsernameError::Character)
        );
        assert_eq!(Username::parse("ädmin"), Err(UsernameError::Character));
        assert_eq!(Username::parse("ad min"), Err(UsernameError::Character));
    }

    #[test]
    fn length_and_punctuation_rules() {
        assert_eq!(Username::parse("ab"), Err(UsernameError::Length));
        assert_eq!(Username::parse(&"a".repeat(65)), Err(UsernameError::Length));
        assert_eq!(
            Username::parse(&"a".repeat(10_000)),
            Err(UsernameError::Length)
        );
        assert_eq!(Username::parse(".admin"), Err(UsernameError::Punctuation));
        assert_eq!(Username::parse("admin-"), Err(UsernameError::Punctuation));
        assert_eq!(Username::parse("ad..min"), Err(UsernameError::Punctuation));
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<Username>("\"\u{430}dmin\"").is_err());
        let u: Username = serde_json::from_str("\"Admin\"").unwrap();
        assert_eq!(u.as_str(), "admin");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_output_is_a_fixed_point(s in "\\PC{0,80}") {
            if let Ok(u) = Username::parse(&s) {
                proptest::prop_assert!(u.as_str().is_ascii());
                proptest::prop_assert_eq!(Username::parse(u.as_str()).unwrap(), u.clone());
            }
        }
    }
}
