//! Realistic fake values of the same shape as the identifiers they replace.
//!
//! Every generator takes the original (to copy its shape: separators, letter case, length) and
//! a random generator; the vault keeps the choice consistent within a conversation and unique.
//! Fake values come from small shipped lists (`data/surrogate/`) or from ranges reserved for
//! fiction and documentation: telephone numbers 555-0100..555-0199, IP addresses from
//! RFC 5737 / RFC 3849, `example.com`-style domains (RFC 2606), SSNs with an area number of
//! 900-999 (never issued).

pub(crate) mod date;

use rand::RngExt;
use rand::rngs::StdRng;

const GIVEN: &str = include_str!("../../data/surrogate/given_names.txt");
const FAMILY: &str = include_str!("../../data/surrogate/family_names.txt");
const STREETS: &str = include_str!("../../data/surrogate/streets.txt");
const CITIES: &str = include_str!("../../data/surrogate/cities.txt");

fn pool(list: &'static str) -> impl Iterator<Item = &'static str> {
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn pick(list: &'static str, rng: &mut StdRng) -> &'static str {
    let n = pool(list).count();
    if n == 0 {
        return "";
    }
    pool(list).nth(rng.random_range(0..n)).unwrap_or("")
}

/// Which list a word of a name is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRole {
    /// First or middle name.
    Given,
    /// Surname.
    Family,
}

/// A fake name word (title case) for `role`.
pub(crate) fn name_word(role: NameRole, rng: &mut StdRng) -> String {
    match role {
        NameRole::Given => pick(GIVEN, rng).to_string(),
        NameRole::Family => pick(FAMILY, rng).to_string(),
    }
}

/// A fake initial.
pub(crate) fn initial(rng: &mut StdRng) -> String {
    random_upper(rng).to_string()
}

fn random_upper(rng: &mut StdRng) -> char {
    char::from(b'A' + rng.random_range(0..26u8))
}

fn random_lower(rng: &mut StdRng) -> char {
    char::from(b'a' + rng.random_range(0..26u8))
}

fn random_digit(rng: &mut StdRng) -> char {
    char::from(b'0' + rng.random_range(0..10u8))
}

/// Writes `lower` in the letter case of `like` (all capitals, all small, or capitalised).
pub(crate) fn in_case_of(like: &str, word: &str) -> String {
    let letters = || like.chars().filter(|c| c.is_alphabetic());
    if letters().count() > 1 && letters().all(char::is_uppercase) {
        word.to_uppercase()
    } else if letters().count() > 0 && letters().all(char::is_lowercase) {
        word.to_lowercase()
    } else {
        word.to_string()
    }
}

/// Puts `digits` into the digit positions of `shape`, keeping everything else.
fn fill_digits(shape: &str, digits: &[char], rng: &mut StdRng) -> String {
    let mut it = digits.iter();
    shape
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                it.next().copied().unwrap_or_else(|| random_digit(rng))
            } else {
                c
            }
        })
        .collect()
}

/// `stored`'s digits in `like`'s layout when both have as many digits (the same number written
/// `(312) 555-0142` once and `312.555.0142` later keeps each spelling's layout); else `stored`.
pub(crate) fn relayout_digits(stored: &str, like: &str) -> String {
    let digits: Vec<char> = stored.chars().filter(char::is_ascii_digit).collect();
    let n = like.chars().filter(char::is_ascii_digit).count();
    if n == 0 || n != digits.len() {
        return stored.to_string();
    }
    let mut it = digits.into_iter();
    like.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                it.next().unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

/// A telephone or fax number in the fictional 555-01xx range, written like the original.
pub(crate) fn phone(original: &str, rng: &mut StdRng) -> String {
    let n = original.chars().filter(char::is_ascii_digit).count();
    let mut area = String::with_capacity(3);
    area.push(char::from(b'2' + rng.random_range(0..8u8)));
    area.push(char::from(b'0' + rng.random_range(0..9u8)));
    area.push(random_digit(rng));
    let line = format!("555-01{:02}", rng.random_range(0..100u8));
    if n == 0 {
        // Spoken or spelled: write it out plainly.
        return format!("({area}) {line}");
    }
    let mut digits: Vec<char> = Vec::new();
    let first = original.chars().find(char::is_ascii_digit);
    if n >= 11 && first == Some('1') {
        digits.push('1');
    }
    if n >= 10 {
        digits.extend(area.chars());
    }
    if n >= 7 {
        digits.extend(line.chars().filter(char::is_ascii_digit));
    }
    fill_digits(original, &digits, rng)
}

/// A social security number that cannot be real (area 900-999), or random last four digits.
pub(crate) fn ssn(original: &str, rng: &mut StdRng) -> String {
    let n = original.chars().filter(char::is_ascii_digit).count();
    let mut digits = Vec::new();
    if n == 9 {
        digits.push('9');
    }
    fill_digits(original, &digits, rng)
}

/// A code of the same shape: a leading word of two or more letters (`MRN`, `CLM-`, `RX`) kept,
/// every other letter and digit replaced by a random one of the same kind and case.
pub(crate) fn code(original: &str, rng: &mut StdRng) -> String {
    let prefix_len = {
        let letters = original
            .char_indices()
            .take_while(|(_, c)| c.is_ascii_alphabetic())
            .count();
        let rest = &original[letters..];
        if letters >= 2
            && rest
                .chars()
                .next()
                .is_some_and(|c| !c.is_ascii_alphabetic())
        {
            letters
        } else {
            0
        }
    };
    let (keep, rest) = original.split_at(prefix_len);
    let mut out = keep.to_string();
    for c in rest.chars() {
        out.push(if c.is_ascii_digit() {
            random_digit(rng)
        } else if c.is_ascii_uppercase() {
            random_upper(rng)
        } else if c.is_ascii_lowercase() {
            random_lower(rng)
        } else if c.is_alphanumeric() {
            random_upper(rng)
        } else {
            c
        });
    }
    out
}

/// A fake e-mail address at a reserved domain.
pub(crate) fn email(original: &str, rng: &mut StdRng) -> String {
    let given = pick(GIVEN, rng).to_lowercase();
    let family = pick(FAMILY, rng).to_lowercase();
    let domain = ["example.com", "example.org", "example.net"][rng.random_range(0..3)];
    in_case_of(original, &format!("{given}.{family}@{domain}"))
}

/// A fake web address at a reserved domain, keeping the scheme and `www.` if present.
pub(crate) fn url(original: &str, rng: &mut StdRng) -> String {
    let lower = original.to_lowercase();
    let scheme = ["https://", "http://"]
        .into_iter()
        .find(|s| lower.starts_with(s))
        .unwrap_or("");
    let www = if lower[scheme.len()..].starts_with("www.") {
        "www."
    } else {
        ""
    };
    let domain = ["example.com", "example.org", "example.net"][rng.random_range(0..3)];
    let has_path = lower[scheme.len()..].contains('/');
    let path: String = if has_path {
        let p: String = (0..8).map(|_| random_lower(rng)).collect();
        format!("/{p}")
    } else {
        String::new()
    };
    format!("{scheme}{www}{domain}{path}")
}

/// An address from the documentation ranges: IPv4 TEST-NET (RFC 5737), IPv6 2001:db8::/32.
pub(crate) fn ip(original: &str, rng: &mut StdRng) -> String {
    if original.contains(':') {
        format!("2001:db8::{:x}", rng.random_range(1..0xffffu32))
    } else {
        let net = ["192.0.2", "198.51.100", "203.0.113"][rng.random_range(0..3)];
        format!("{net}.{}", rng.random_range(1..255u8))
    }
}

/// Words of an address that describe its shape and are kept.
const ADDRESS_KEEP: &[&str] = &[
    "st",
    "street",
    "ave",
    "avenue",
    "rd",
    "road",
    "blvd",
    "boulevard",
    "dr",
    "drive",
    "ln",
    "lane",
    "ct",
    "court",
    "way",
    "pl",
    "place",
    "ter",
    "terrace",
    "cir",
    "circle",
    "pkwy",
    "parkway",
    "hwy",
    "highway",
    "trl",
    "trail",
    "apt",
    "apartment",
    "unit",
    "suite",
    "ste",
    "fl",
    "floor",
    "bldg",
    "building",
    "room",
    "rm",
    "n",
    "s",
    "e",
    "w",
    "ne",
    "nw",
    "se",
    "sw",
    "north",
    "south",
    "east",
    "west",
    "po",
    "p",
    "o",
    "box",
    "pob",
    "rr",
    "route",
];

/// Words of a place that describe its kind and are kept.
const LOCATION_KEEP: &[&str] = &[
    "county", "parish", "city", "township", "borough", "town", "village", "of", "the",
];

/// A fake street address: numbers replaced by numbers of the same length, the street name by
/// one from the list, street type, unit designator and directions kept.
pub(crate) fn address(original: &str, rng: &mut StdRng) -> String {
    replace_words(original, ADDRESS_KEEP, STREETS, rng)
}

/// A fake place: ZIP codes by random digits of the same shape, names by one from the list.
pub(crate) fn location(original: &str, rng: &mut StdRng) -> String {
    replace_words(original, LOCATION_KEEP, CITIES, rng)
}

fn replace_words(original: &str, keep: &[&str], names: &'static str, rng: &mut StdRng) -> String {
    let mut out = String::with_capacity(original.len() + 8);
    let mut in_name_run = false;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String, rng: &mut StdRng, in_run: &mut bool| {
        if word.is_empty() {
            return;
        }
        let lower = word.to_lowercase();
        if word.chars().any(|c| c.is_ascii_digit()) {
            // House number, unit, ZIP: random of the same shape, no leading zero.
            let mut first = true;
            for c in word.chars() {
                out.push(if c.is_ascii_digit() {
                    let d = if first {
                        char::from(b'1' + rng.random_range(0..9u8))
                    } else {
                        random_digit(rng)
                    };
                    first = false;
                    d
                } else if c.is_alphabetic() {
                    if c.is_lowercase() {
                        random_lower(rng)
                    } else {
                        random_upper(rng)
                    }
                } else {
                    c
                });
            }
            *in_run = false;
        } else if keep.contains(&lower.as_str()) {
            out.push_str(word);
            *in_run = false;
        } else if !*in_run {
            out.push_str(&in_case_of(word, pick(names, rng)));
            *in_run = true;
        } else {
            // Later words of a multi-word name are absorbed by the one already written; drop
            // the space before them too.
            while out.ends_with(' ') {
                out.pop();
            }
        }
        word.clear();
    };
    for c in original.chars() {
        if c.is_alphanumeric() || c == '\'' {
            word.push(c);
        } else {
            flush(&mut word, &mut out, rng, &mut in_name_run);
            out.push(c);
        }
    }
    flush(&mut word, &mut out, rng, &mut in_name_run);
    out
}

/// An age of 90 or more, written with digits.
pub(crate) fn age(rng: &mut StdRng) -> String {
    rng.random_range(90..=99u8).to_string()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(42)
    }

    fn shape(s: &str) -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_digit() {
                    '9'
                } else if c.is_alphabetic() {
                    'a'
                } else {
                    c
                }
            })
            .collect()
    }

    #[test]
    fn phones_are_fictional_and_keep_their_format() {
        let mut r = rng();
        for original in [
            "(312) 555-8841",
            "312.555.8841",
            "1-312-555-8841",
            "555-8841",
        ] {
            let p = phone(original, &mut r);
            assert_eq!(shape(&p), shape(original), "{p}");
            let digits: String = p.chars().filter(char::is_ascii_digit).collect();
            assert!(digits[digits.len() - 7..].starts_with("55501"), "{p}");
        }
        assert!(phone("five five five one two one two", &mut r).contains("555-01"));
    }

    #[test]
    fn codes_keep_shape_and_prefix() {
        let mut r = rng();
        let c = code("MRN1457047", &mut r);
        assert!(c.starts_with("MRN") && c.len() == 10 && c != "MRN1457047");
        assert_eq!(
            shape(&code("1EG4-TE5-MK73", &mut r)),
            shape("1EG4-TE5-MK73")
        );
        let s = ssn("123-45-6789", &mut r);
        assert!(s.starts_with('9') && shape(&s) == "999-99-9999");
        assert_eq!(ssn("6789", &mut r).len(), 4);
    }

    #[test]
    fn places_and_addresses_keep_their_kind_words() {
        let mut r = rng();
        let a = address("123 Main St Apt 4B", &mut r);
        assert!(a.contains(" St Apt ") && !a.contains("Main"), "{a}");
        let a = address("PO Box 3008", &mut r);
        assert!(a.starts_with("PO Box ") && a.len() == 11, "{a}");
        let l = location("Cook County", &mut r);
        assert!(l.ends_with(" County") && !l.contains("Cook"), "{l}");
        let z = location("62704-1234", &mut r);
        assert_eq!(shape(&z), "99999-9999");
        let l = location("new york city", &mut r);
        assert!(
            l.ends_with(" city") && l.chars().next().is_some_and(char::is_lowercase),
            "{l}"
        );
    }

    #[test]
    fn reserved_ranges_for_network_identifiers() {
        let mut r = rng();
        assert!(email("Jo.Doe@gmail.com", &mut r).contains("@example."));
        assert!(url("https://www.facebook.com/jdoe", &mut r).starts_with("https://www.example."));
        assert!(ip("2600:1f18::1", &mut r).starts_with("2001:db8::"));
        let v4 = ip("73.12.4.200", &mut r);
        assert!(
            ["192.0.2.", "198.51.100.", "203.0.113."]
                .iter()
                .any(|p| v4.starts_with(p))
        );
        let a: u8 = age(&mut r).parse().unwrap();
        assert!((90..=99).contains(&a));
    }
}
