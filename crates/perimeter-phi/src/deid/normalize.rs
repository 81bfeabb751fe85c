//! When two spellings are the same identifier: the key under which the vault files a value,
//! so that `(555) 123-4567` and `555.123.4567`, or `Maria Gonzalez` and `GONZALEZ, maria`, get
//! the same pseudonym.

use crate::Label;
use crate::surrogate::date;

/// The spoken digit words.
const DIGIT_WORDS: [(&str, char); 11] = [
    ("zero", '0'),
    ("oh", '0'),
    ("one", '1'),
    ("two", '2'),
    ("three", '3'),
    ("four", '4'),
    ("five", '5'),
    ("six", '6'),
    ("seven", '7'),
    ("eight", '8'),
    ("nine", '9'),
];

/// The comparison key for `value` labelled `label`.
pub(crate) fn normalize(label: Label, value: &str) -> String {
    match label {
        Label::Phone | Label::Fax => {
            let digits = spoken_digits(value);
            if digits.is_empty() {
                return words(value);
            }
            match digits.strip_prefix('1') {
                Some(rest) if digits.len() == 11 => rest.to_string(),
                _ => digits,
            }
        }
        Label::Ssn
        | Label::Mrn
        | Label::HealthPlan
        | Label::Account
        | Label::License
        | Label::Vehicle
        | Label::Device
        | Label::Id => value
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_uppercase)
            .collect(),
        Label::Name => name(value),
        Label::Date => match date::parse(value) {
            Some(d) => d.key(),
            None => words(value),
        },
        Label::Email | Label::Url | Label::Ip => value.trim().to_lowercase(),
        Label::Address | Label::Location | Label::Age => words(value),
    }
}

/// The key of one word of a name: lower case, letters only.
pub(crate) fn name_part(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Lower case, words of letters and digits separated by single spaces.
fn words(value: &str) -> String {
    value
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A name as `given... family`: `Gonzalez, Maria` and `maria gonzalez` agree.
fn name(value: &str) -> String {
    let ordered = match value.split_once(',') {
        Some((family, given)) if !given.contains(',') => format!("{given} {family}"),
        _ => value.to_string(),
    };
    ordered
        .split(|c: char| !(c.is_alphabetic() || c == '\'' || c == '-'))
        .map(name_part)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The digits of `value`, with spoken digit words (`five five five`) read as digits.
fn spoken_digits(value: &str) -> String {
    let mut out = String::new();
    for word in value.split(|c: char| !c.is_alphanumeric()) {
        if word.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(word);
        } else if let Some((_, d)) = DIGIT_WORDS
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(word))
        {
            out.push(*d);
        } else {
            out.extend(word.chars().filter(char::is_ascii_digit));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_spellings_agree() {
        let n = |l, s| normalize(l, s);
        assert_eq!(
            n(Label::Phone, "(555) 123-4567"),
            n(Label::Phone, "1-555-123-4567")
        );
        assert_eq!(
            n(
                Label::Phone,
                "five five five, one two three, four five six seven"
            ),
            "5551234567"
        );
        assert_eq!(
            n(Label::Name, "Maria  Gonzalez"),
            n(Label::Name, "GONZALEZ, maria")
        );
        assert_eq!(n(Label::Name, "O'Brien, Asu"), "asu obrien");
        assert_eq!(n(Label::Ssn, "123-45-6789"), n(Label::Ssn, "123 45 6789"));
        assert_eq!(n(Label::Email, " A@B.org"), "a@b.org");
        assert_eq!(
            n(Label::Date, "03/02/1981"),
            n(Label::Date, "March 2, 1981")
        );
        assert_ne!(n(Label::Date, "03/02/1981"), n(Label::Date, "03/02/1982"));
        assert_eq!(n(Label::Location, "Cook  County"), "cook county");
    }
}
