//! When two spellings are the same identifier: the key under which the vault files a value,
//! so that `(555) 123-4567` and `555.123.4567`, or `Maria Gonzalez` and `GONZALEZ, maria`, get
//! the same pseudonym.

use crate::Label;
use crate::surrogate::date;

/// The spoken digit words.
const DIGIT_WORDS: [(&str, char); 12] = [
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
    ("niner", '9'),
];

/// The spoken pairs (`twenty`, `seventy four`) and their first digit.
const PAIR_WORDS: [(&str, char); 8] = [
    ("twenty", '2'),
    ("thirty", '3'),
    ("forty", '4'),
    ("fifty", '5'),
    ("sixty", '6'),
    ("seventy", '7'),
    ("eighty", '8'),
    ("ninety", '9'),
];

/// The teens, read as two digits (`twelve`).
const TEEN_WORDS: [(&str, &str); 10] = [
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("thirteen", "13"),
    ("fourteen", "14"),
    ("fifteen", "15"),
    ("sixteen", "16"),
    ("seventeen", "17"),
    ("eighteen", "18"),
    ("nineteen", "19"),
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
        | Label::Id => {
            if value.is_ascii() {
                value
                    .bytes()
                    .filter(u8::is_ascii_alphanumeric)
                    .map(|b| char::from(b.to_ascii_uppercase()))
                    .collect()
            } else {
                value
                    .chars()
                    .filter(|c| c.is_alphanumeric())
                    .flat_map(char::to_uppercase)
                    .collect()
            }
        }
        Label::Name => name(value),
        Label::Date => date::key_of(value).unwrap_or_else(|| words(value)),
        Label::Email | Label::Url | Label::Ip => value.trim().to_lowercase(),
        Label::Address | Label::Location | Label::Age => words(value),
    }
}

/// The key of one word of a name: lower case, letters only.
pub(crate) fn name_part(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    push_name_part(word, &mut out);
    out
}

/// Appends [`name_part`] of `word` to `out`.
fn push_name_part(word: &str, out: &mut String) {
    if word.is_ascii() {
        out.extend(
            word.bytes()
                .filter(u8::is_ascii_alphabetic)
                .map(|b| char::from(b.to_ascii_lowercase())),
        );
        return;
    }
    out.extend(
        word.chars()
            .filter(|c| c.is_alphabetic())
            .flat_map(char::to_lowercase),
    );
}

/// Lower case, words of letters and digits separated by single spaces.
fn words(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for w in value
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        if w.is_ascii() {
            out.extend(w.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        } else {
            out.push_str(&w.to_lowercase());
        }
    }
    out
}

/// A name as `given... family`: `Gonzalez, Maria` and `maria gonzalez` agree.
fn name(value: &str) -> String {
    let (first, then) = match value.split_once(',') {
        Some((family, given)) if !given.contains(',') => (given, Some(family)),
        _ => (value, None),
    };
    let mut out = String::with_capacity(value.len());
    for part in std::iter::once(first).chain(then) {
        for w in part.split(|c: char| !(c.is_alphabetic() || c == '\'' || c == '-')) {
            let before = out.len();
            if before > 0 {
                out.push(' ');
            }
            let word_at = out.len();
            push_name_part(w, &mut out);
            if out.len() == word_at {
                out.truncate(before);
            }
        }
    }
    out
}

/// The digits of `value`, with spoken digit words (`five five five`, `niner`, `double four`,
/// `triple five`) and pairs (`seventy four`, `twenty`) read as digits, as the detector reads
/// them.
fn spoken_digits(value: &str) -> String {
    let mut out = String::new();
    let mut times = 1;
    // After a pair word, whether its second digit is still to come (`seventy` `four`).
    let mut pair_open = false;
    for word in value.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        if std::mem::replace(&mut pair_open, false) {
            if let Some((_, d)) = DIGIT_WORDS[2..11]
                .iter()
                .find(|(w, _)| w.eq_ignore_ascii_case(word))
            {
                out.push(*d);
                continue;
            }
            out.push('0');
        }
        if let Some((_, d)) = TEEN_WORDS
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(word))
        {
            out.push_str(d);
            times = 1;
            continue;
        }
        if let Some((_, d)) = PAIR_WORDS
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(word))
        {
            out.push(*d);
            pair_open = true;
            times = 1;
            continue;
        }
        if word.eq_ignore_ascii_case("double") {
            times = 2;
            continue;
        }
        if word.eq_ignore_ascii_case("triple") {
            times = 3;
            continue;
        }
        if word.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(word);
        } else if let Some((_, d)) = DIGIT_WORDS
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(word))
        {
            for _ in 0..times {
                out.push(*d);
            }
        } else {
            out.extend(word.chars().filter(char::is_ascii_digit));
        }
        times = 1;
    }
    if pair_open {
        out.push('0');
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
            n(
                Label::Phone,
                "five oh three two two seven double four one eight"
            ),
            n(Label::Phone, "(503) 227-4418")
        );
        assert_eq!(
            n(Label::Phone, "two oh eight triple five one niner two oh"),
            "2085551920"
        );
        assert_eq!(
            n(Label::Phone, "7 7 3 nine oh five twenty two seventy four"),
            "7739052274"
        );
        assert_eq!(n(Label::Phone, "five five five one two twenty"), "5551220");
        assert_eq!(
            n(Label::Phone, "four four zero 7 1 3 nine eighty one twelve"),
            "44071398112"
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

    /// The allocation-free spellings of `words` and `name` give the keys the straightforward
    /// ones gave (vault keys must not change meaning).
    fn words_reference(value: &str) -> String {
        value
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn name_reference(value: &str) -> String {
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

    proptest::proptest! {
        #[test]
        fn keys_match_the_reference(value in "[ a-zA-Z0-9,.'\\-ÉéΣσßİ\t]{0,40}") {
            proptest::prop_assert_eq!(words(&value), words_reference(&value));
            proptest::prop_assert_eq!(name(&value), name_reference(&value));
            // The ASCII fast paths agree with the Unicode ones.
            let part: String = value
                .chars()
                .filter(|c| c.is_alphabetic())
                .flat_map(char::to_lowercase)
                .collect();
            proptest::prop_assert_eq!(name_part(&value), part);
            let id: String = value
                .chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_uppercase)
                .collect();
            proptest::prop_assert_eq!(normalize(Label::Mrn, &value), id);
        }
    }

    #[test]
    fn keys_match_the_reference_on_edge_cases() {
        for v in [
            "",
            ",",
            "a,",
            ",b",
            "Lee, Ann, Bo",
            "  ",
            "O'Brien-Smith, Mary Ann",
            "ΣΑΣ",
            "İstanbul",
            "--",
            "a - b",
        ] {
            assert_eq!(words(v), words_reference(v), "{v:?}");
            assert_eq!(name(v), name_reference(v), "{v:?}");
        }
    }
}
