//! Validators: real calendar dates, SSN area/group/serial rules, Medicare MBI format, VIN
//! check digit, Luhn, ZIP shapes, US states.

/// Days in a month (1-based); February allows 29 unless the year says otherwise.
fn days_in_month(month: u32, year: Option<u32>) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => match year {
            Some(y) if !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) => 28,
            _ => 29,
        },
        _ => 0,
    }
}

fn real_date(year: Option<u32>, month: u32, day: u32) -> bool {
    (1..=12).contains(&month) && day >= 1 && day <= days_in_month(month, year)
}

fn nums(s: &str) -> impl Iterator<Item = u32> + '_ {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(u32::MAX))
}

/// `2026-03-14`: a real calendar date.
pub(crate) fn iso_date(s: &str) -> bool {
    let mut it = nums(s);
    match (it.next(), it.next(), it.next()) {
        (Some(y), Some(m), Some(d)) => real_date(Some(y), m, d),
        _ => false,
    }
}

/// `3/2/1981`, `03-02-81`, `3/26` (month first, or day first when the first part exceeds 12).
pub(crate) fn numeric_date(s: &str) -> bool {
    let v: Vec<u32> = nums(s).collect();
    let year = v.get(2).map(|&y| if y < 100 { 2000 + y } else { y });
    if year.is_some_and(|y| !(1850..=2100).contains(&y)) {
        return false;
    }
    match (v.first(), v.get(1)) {
        (Some(&a), Some(&b)) => real_date(year, a, b) || real_date(year, b, a),
        _ => false,
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// `October 12, 2004`, `12 Oct`, `Jan 18`, `March 2024`: a real day of a real month.
pub(crate) fn month_date(s: &str) -> bool {
    // The earliest month (in calendar order) that a word starts with; no allocation.
    let month = s
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter_map(|w| {
            let p = w.as_bytes().get(..3)?;
            MONTHS
                .iter()
                .position(|m| p.eq_ignore_ascii_case(m.as_bytes()))
        })
        .min();
    let Some(month) = month else {
        return false;
    };
    let mut v = [0u32; 2];
    let mut n = 0;
    for x in nums(s) {
        if let Some(slot) = v.get_mut(n) {
            *slot = x;
        }
        n += 1;
    }
    match (n, v) {
        (1, [y, _]) if y >= 1800 => true,
        (1, [d, _]) => real_date(None, month as u32 + 1, d),
        (2, [d, y]) => real_date(Some(y), month as u32 + 1, d),
        _ => false,
    }
}

/// `123-45-6789`: area not 000/666/9xx, group not 00, serial not 0000.
pub(crate) fn ssn(s: &str) -> bool {
    let v: Vec<u32> = nums(s).collect();
    match v.as_slice() {
        [a, g, n] => *a != 0 && *a != 666 && *a < 900 && *g != 0 && *n != 0,
        _ => false,
    }
}

/// Medicare Beneficiary Identifier: `1EG4-TE5-MK73` (11 characters, dashes optional).
pub(crate) fn mbi(s: &str) -> bool {
    if s.bytes().filter(|b| *b != b'-').count() != 11 {
        return false;
    }
    let c: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
    if c.len() != 11 {
        return false;
    }
    if s.contains('-') {
        let parts: Vec<usize> = s.split('-').map(str::len).collect();
        if parts != [4, 3, 4] {
            return false;
        }
    }
    let alpha =
        |b: u8| b.is_ascii_uppercase() && !matches!(b, b'S' | b'L' | b'O' | b'I' | b'B' | b'Z');
    let alnum = |b: u8| alpha(b) || b.is_ascii_digit();
    let digit = |b: u8| b.is_ascii_digit();
    (b'1'..=b'9').contains(&c[0])
        && alpha(c[1])
        && alnum(c[2])
        && digit(c[3])
        && alpha(c[4])
        && alnum(c[5])
        && digit(c[6])
        && alpha(c[7])
        && alpha(c[8])
        && digit(c[9])
        && digit(c[10])
}

/// A 17-character VIN whose check digit (position 9) is right.
pub(crate) fn vin(s: &str) -> bool {
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let b = s.as_bytes();
    if b.len() != 17 {
        return false;
    }
    let mut sum = 0;
    for (i, &c) in b.iter().enumerate() {
        let v = match c.to_ascii_uppercase() {
            d @ b'0'..=b'9' => u32::from(d - b'0'),
            b'A' | b'J' => 1,
            b'B' | b'K' | b'S' => 2,
            b'C' | b'L' | b'T' => 3,
            b'D' | b'M' | b'U' => 4,
            b'E' | b'N' | b'V' => 5,
            b'F' | b'W' => 6,
            b'G' | b'P' | b'X' => 7,
            b'H' | b'Y' => 8,
            b'R' | b'Z' => 9,
            _ => return false,
        };
        sum += v * WEIGHTS[i];
    }
    let check = match sum % 11 {
        10 => b'X',
        r => b'0' + r as u8,
    };
    b[8].to_ascii_uppercase() == check
}

/// Luhn check for payment card numbers (digits only, 12 to 19 of them).
pub(crate) fn luhn(s: &str) -> bool {
    // Counted first, so most candidates (too short or too long) cost one pass.
    let n = s.bytes().filter(u8::is_ascii_digit).count();
    if !(12..=19).contains(&n) {
        return false;
    }
    let sum: u32 = s
        .bytes()
        .rev()
        .filter(u8::is_ascii_digit)
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `62704` or `62704-1234`.
pub(crate) fn zip(s: &str) -> bool {
    let b = s.as_bytes();
    let five = |x: &[u8]| x.len() == 5 && x.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => five(b),
        10 => five(&b[..5]) && b[5] == b'-' && b[6..].iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// `Some(true)` for a whole number from 90 to 125, `Some(false)` for other small numbers.
pub(crate) fn age_over_89(s: &str) -> Option<bool> {
    if s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = s.parse().ok()?;
    Some((90..=125).contains(&n))
}

const STATES: [&str; 59] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP", "UM", "FM", "MH",
];

pub(crate) const STATE_NAMES: [&str; 51] = [
    "alabama",
    "alaska",
    "arizona",
    "arkansas",
    "california",
    "colorado",
    "connecticut",
    "delaware",
    "florida",
    "georgia",
    "hawaii",
    "idaho",
    "illinois",
    "indiana",
    "iowa",
    "kansas",
    "kentucky",
    "louisiana",
    "maine",
    "maryland",
    "massachusetts",
    "michigan",
    "minnesota",
    "mississippi",
    "missouri",
    "montana",
    "nebraska",
    "nevada",
    "hampshire",
    "jersey",
    "mexico",
    "york",
    "carolina",
    "dakota",
    "ohio",
    "oklahoma",
    "oregon",
    "pennsylvania",
    "island",
    "tennessee",
    "texas",
    "utah",
    "vermont",
    "virginia",
    "washington",
    "wisconsin",
    "wyoming",
    "columbia",
    "rico",
    "guam",
    "samoa",
];

/// A US state: postal code (`MA`, upper case) or (last word of) a state name.
pub(crate) fn is_state(word: &str) -> bool {
    if word.len() == 2 {
        return STATES.contains(&word);
    }
    // The longest state name has 13 bytes (`massachusetts`): most words are compared
    // with none; no lower-cased copy.
    let w = word.trim_end_matches('.');
    w.len() <= 13 && STATE_NAMES.iter().any(|n| n.eq_ignore_ascii_case(w))
}

/// A Canadian province's or an Australian state's postal code (`ON`, `BC`, `QLD`, `NSW`):
/// after a town and before a postcode, as a US state's code is.
pub(crate) fn is_foreign_region(word: &str) -> bool {
    const REGIONS: [&str; 21] = [
        "AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT", "NSW", "VIC",
        "QLD", "TAS", "ACT", "SA", "WA", "NT",
    ];
    REGIONS.contains(&word)
}

/// `500mg`, `10ml`, `5units`: a dose or lab value glued to its unit.
pub(crate) fn is_measurement(s: &str) -> bool {
    let unit_len = s.bytes().skip_while(u8::is_ascii_digit).count();
    if unit_len == 0 || unit_len > 5 {
        return false;
    }
    // The unit after the leading digits, lower-cased on the stack (at most five bytes).
    let digits = s.len() - unit_len;
    let mut buf = [0u8; 5];
    let Some(dst) = buf.get_mut(..unit_len) else {
        return false;
    };
    dst.copy_from_slice(s.as_bytes().get(digits..).unwrap_or(&[]));
    dst.make_ascii_lowercase();
    let Ok(unit) = std::str::from_utf8(dst) else {
        return false;
    };
    digits > 0
        && matches!(
            unit,
            "mg" | "mcg"
                | "ml"
                | "g"
                | "kg"
                | "lb"
                | "lbs"
                | "u"
                | "iu"
                | "units"
                | "mmhg"
                | "x"
                | "am"
                | "pm"
                | "h"
                | "hr"
                | "hrs"
                | "min"
                | "mins"
                | "st"
                | "nd"
                | "rd"
                | "th"
                | "yo"
                | "s"
                | "k"
                | "cc"
                | "oz"
                | "mm"
                | "cm"
                | "in"
                | "ft"
                | "f"
                | "c"
                | "bpm"
        )
}

/// Rejects "addresses" whose words are ordinary prose (`2 miles down the road`).
pub(crate) fn address_words_ok(s: &str) -> bool {
    const STOP: [&str; 41] = [
        "the", "a", "an", "of", "to", "in", "on", "at", "for", "and", "or", "my", "your", "his",
        "her", "mg", "mcg", "ml", "tablets", "tablet", "pills", "pill", "times", "days", "weeks",
        "months", "years", "hours", "minutes", "miles", "blocks", "steps", "units", "doses", "am",
        "pm", "is", "was", "down", "up", "dear",
    ];
    let mut words = s.split_whitespace();
    words.next();
    !words.any(|w| {
        let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        STOP.iter().any(|s| s.eq_ignore_ascii_case(w))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_real() {
        assert!(iso_date("2026-03-14"));
        assert!(!iso_date("2026-02-30"));
        assert!(numeric_date("5/2/38"));
        assert!(numeric_date("3/26"));
        assert!(!numeric_date("13/32"));
        assert!(!numeric_date("2/29/2023"));
        assert!(numeric_date("2/29/2024"));
        assert!(month_date("October 12, 2004"));
        assert!(month_date("Jan 18"));
        assert!(!month_date("Feb 30"));
        assert!(month_date("March 2024"));
    }

    #[test]
    fn id_validators() {
        assert!(ssn("123-45-6789"));
        assert!(!ssn("666-45-6789"));
        assert!(!ssn("123-00-6789"));
        assert!(mbi("1EG4-TE5-MK73"));
        assert!(mbi("1EG4TE5MK73"));
        assert!(!mbi("1EG4-TE5-MK7"));
        assert!(vin("1M8GDM9AXKP042788"));
        assert!(!vin("1M8GDM9A1KP042788"));
        assert!(luhn("4111111111111111"));
        assert!(!luhn("4111111111111112"));
        assert!(zip("62704-1234"));
        assert!(!zip("6270"));
        assert_eq!(age_over_89("93"), Some(true));
        assert_eq!(age_over_89("45"), Some(false));
        assert!(is_state("MA"));
        assert!(is_state("Ohio"));
        assert!(!is_state("Ma"));
    }
}
