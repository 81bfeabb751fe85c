//! The Safe Harbor generalisations of 45 CFR 164.514(b)(2)(i): dates to the year, ages over 89
//! to "90 or older", ZIP codes to their first three digits (or `000` where those three digits
//! cover 20,000 people or fewer), everything else removed.

use crate::Label;
use crate::surrogate::date;

/// The three-digit ZIP prefixes whose areas held 20,000 people or fewer in the 2000 census
/// (HHS, "Guidance Regarding Methods for De-identification of PHI", section 2.4). Safe Harbor
/// requires these to be written as `000`.
pub const RESTRICTED_ZIP3: [&str; 17] = [
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
    "879", "884", "890", "893",
];

/// What an age over 89 becomes.
pub(crate) const AGE_90_PLUS: &str = "90 or older";

/// The generalised form of `original`, or `None` when it is simply removed (`[LABEL]`).
pub(crate) fn generalise(label: Label, original: &str, reference_year: i32) -> Option<String> {
    match label {
        Label::Age => Some(AGE_90_PLUS.to_string()),
        Label::Date => date_year(original, reference_year),
        Label::Location => zip3(original),
        _ => None,
    }
}

/// The year of a date. A year that shows the person could be over 89 (90 or more years before
/// `reference_year`) is aggregated, as 164.514(b)(2)(i)(C) requires for birth dates.
fn date_year(original: &str, reference_year: i32) -> Option<String> {
    let year = match date::parse(original) {
        Some(d) => d.full_year(reference_year),
        None => lone_year(original),
    }?;
    let oldest = reference_year - 90;
    Some(if year <= oldest {
        format!("{oldest} or earlier")
    } else {
        year.to_string()
    })
}

/// A four-digit year standing on its own somewhere in `s` (for dates in unusual formats).
fn lone_year(s: &str) -> Option<i32> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|w| w.len() == 4)
        .filter_map(|w| w.parse::<i32>().ok())
        .find(|y| (1800..=2200).contains(y))
}

/// The first three digits of a ZIP or ZIP+4 code, `000` for the restricted prefixes; `None`
/// for anything that is not a ZIP code (city, county: removed).
fn zip3(original: &str) -> Option<String> {
    let t = original.trim();
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    let shaped = t
        .chars()
        .all(|c| c.is_ascii_digit() || c == '-' || c == ' ');
    if !shaped || !(digits.len() == 5 || digits.len() == 9) {
        return None;
    }
    let prefix = &digits[..3];
    Some(if RESTRICTED_ZIP3.contains(&prefix) {
        "000".to_string()
    } else {
        prefix.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalises_per_the_rule() {
        let g = |l, s| generalise(l, s, 2026);
        assert_eq!(g(Label::Date, "03/02/1981").as_deref(), Some("1981"));
        assert_eq!(g(Label::Date, "March 2, 1981").as_deref(), Some("1981"));
        assert_eq!(g(Label::Date, "3/2/81").as_deref(), Some("1981"));
        assert_eq!(g(Label::Date, "Jan 18"), None);
        assert_eq!(
            g(Label::Date, "the 3rd of May, 2020").as_deref(),
            Some("2020")
        );
        assert_eq!(
            g(Label::Date, "July 19, 1931").as_deref(),
            Some("1936 or earlier")
        );
        assert_eq!(g(Label::Age, "93").as_deref(), Some("90 or older"));
        assert_eq!(g(Label::Location, "62704-1234").as_deref(), Some("627"));
        assert_eq!(g(Label::Location, "03601").as_deref(), Some("000"));
        assert_eq!(g(Label::Location, "89301").as_deref(), Some("000"));
        assert_eq!(g(Label::Location, "Tallahassee"), None);
        assert_eq!(g(Label::Name, "Maria"), None);
        assert_eq!(RESTRICTED_ZIP3.len(), 17);
    }
}
