//! Reading a date written the usual ways (`03/02/1981`, `2026-03-14`, `March 2, 1981`,
//! `Tue, Jan 18th`, `2 March 1981`, `03/2024`) into its parts plus a template of how it was
//! written, so that a shifted date can be written back the same way.

use time::{Date, Duration, Month, Weekday};

/// The months' names, January first (the detector reads them too).
pub(crate) const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Title,
    Upper,
    Lower,
}

impl Case {
    fn of(word: &str) -> Case {
        if word.chars().all(|c| !c.is_lowercase()) && word.chars().count() > 1 {
            Case::Upper
        } else if word.chars().all(|c| !c.is_uppercase()) {
            Case::Lower
        } else {
            Case::Title
        }
    }

    fn apply(self, lower: &str) -> String {
        match self {
            Case::Upper => lower.to_uppercase(),
            Case::Lower => lower.to_string(),
            Case::Title => {
                let mut c = lower.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            }
        }
    }
}

/// How one piece of the original was written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Day { width: usize },
    Ordinal { case: Case },
    MonthNum { width: usize },
    MonthName { abbrev: bool, case: Case },
    Year { two_digit: bool },
    Weekday { abbrev: bool, case: Case },
}

/// A date read from text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedDate {
    parts: Vec<Part>,
    year: Option<i32>,
    two_digit_year: bool,
    month: u8,
    day: Option<u8>,
}

#[derive(Debug)]
enum Tok<'a> {
    Num(&'a str),
    Word(&'a str),
    Sep(&'a str),
}

fn tokenize(s: &str) -> Vec<Tok<'_>> {
    fn kind(c: char) -> u8 {
        if c.is_ascii_digit() {
            0
        } else if c.is_alphabetic() {
            1
        } else {
            2
        }
    }
    fn tok(t: &str, k: u8) -> Tok<'_> {
        match k {
            0 => Tok::Num(t),
            1 => Tok::Word(t),
            _ => Tok::Sep(t),
        }
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev = None;
    for (i, c) in s.char_indices() {
        let k = kind(c);
        if let Some(p) = prev
            && p != k
        {
            out.push(tok(&s[start..i], p));
            start = i;
        }
        prev = Some(k);
    }
    if let Some(p) = prev {
        out.push(tok(&s[start..], p));
    }
    out
}

/// `word` in ASCII lower case when it is ASCII and at most nine bytes long (the longest
/// month or weekday name); `None` otherwise, since no other word can be one. (No non-ASCII
/// character lower-cases to a letter of a month's or weekday's name.)
fn lower_short(word: &str, buf: &mut [u8; 9]) -> Option<usize> {
    let b = word.as_bytes();
    if !word.is_ascii() || b.len() > buf.len() {
        return None;
    }
    for (o, c) in buf.iter_mut().zip(b) {
        *o = c.to_ascii_lowercase();
    }
    Some(b.len())
}

fn month_of(word: &str) -> Option<(u8, bool)> {
    let mut buf = [0u8; 9];
    let len = lower_short(word, &mut buf)?;
    let w = std::str::from_utf8(buf.get(..len)?).ok()?;
    for (i, m) in MONTHS.iter().enumerate() {
        let n = u8::try_from(i + 1).ok()?;
        if w == *m {
            return Some((n, false));
        }
        if w.len() >= 3 && m.starts_with(w) && (w.len() == 3 || w == "sept") {
            return Some((n, true));
        }
    }
    None
}

fn weekday_of(word: &str) -> Option<bool> {
    let mut buf = [0u8; 9];
    let len = lower_short(word, &mut buf)?;
    let w = std::str::from_utf8(buf.get(..len)?).ok()?;
    WEEKDAYS.iter().find_map(|d| {
        if w == *d {
            Some(false)
        } else if (w.len() == 3 || w.len() == 4) && d.starts_with(w) {
            Some(true)
        } else {
            None
        }
    })
}

fn is_ordinal(word: &str) -> bool {
    // ASCII comparison: no non-ASCII character lower-cases to one of these letters.
    ["st", "nd", "rd", "th"]
        .iter()
        .any(|o| word.eq_ignore_ascii_case(o))
}

fn days_in(month: u8, year: Option<i32>) -> u8 {
    let m = Month::try_from(month).unwrap_or(Month::January);
    m.length(year.unwrap_or(2000))
}

/// Reads `s` as a date, or `None` if it is not one of the recognised shapes.
pub(crate) fn parse(s: &str) -> Option<ParsedDate> {
    parse_with(s, true)
}

/// The [`ParsedDate::key`] of `s`, when it reads as a date (without keeping its written
/// shape, which only a surrogate needs).
pub(crate) fn key_of(s: &str) -> Option<String> {
    parse_with(s, false).map(|d| d.key())
}

/// [`parse`]; without `keep_text`, the literal pieces of the written shape are left empty.
fn parse_with(s: &str, keep_text: bool) -> Option<ParsedDate> {
    let lit = |x: &str| {
        Part::Lit(if keep_text {
            x.to_string()
        } else {
            String::new()
        })
    };
    let toks = tokenize(s.trim());
    // Content tokens with the index of their part; separators become literals.
    let mut parts: Vec<Part> = Vec::new();
    let mut content: Vec<(usize, bool, &str)> = Vec::new(); // (part index, is_num, text)
    let mut weekday_seen = false;
    for t in &toks {
        match *t {
            Tok::Sep(x) => parts.push(lit(x)),
            Tok::Num(x) => {
                content.push((parts.len(), true, x));
                parts.push(lit(x));
            }
            Tok::Word(x) => {
                if is_ordinal(x)
                    && content
                        .last()
                        .is_some_and(|c| c.1 && c.0 + 1 == parts.len())
                {
                    parts.push(Part::Ordinal { case: Case::of(x) });
                } else if content.is_empty() && !weekday_seen && month_of(x).is_none() {
                    let abbrev = weekday_of(x)?;
                    weekday_seen = true;
                    parts.push(Part::Weekday {
                        abbrev,
                        case: Case::of(x),
                    });
                } else {
                    content.push((parts.len(), false, x));
                    parts.push(lit(x));
                }
            }
        }
    }
    let num = |x: &str| x.parse::<u32>().ok();
    let shape: Vec<bool> = content.iter().map(|c| c.1).collect();
    // Assign roles: which content token is day, month, year.
    let (d_i, m_i, y_i): (Option<usize>, usize, Option<usize>) = match shape.as_slice() {
        [true, true, true] => {
            let a = num(content[0].2)?;
            let b = num(content[1].2)?;
            if content[0].2.len() == 4 {
                (Some(2), 1, Some(0))
            } else if a <= 12 {
                (Some(1), 0, Some(2))
            } else if b <= 12 {
                (Some(0), 1, Some(2))
            } else {
                return None;
            }
        }
        [true, true] => {
            let a = num(content[0].2)?;
            if content[1].2.len() == 4 {
                (None, 0, Some(1))
            } else if content[0].2.len() == 4 {
                (None, 1, Some(0))
            } else if a <= 12 {
                (Some(1), 0, None)
            } else {
                (Some(0), 1, None)
            }
        }
        [false, true] => {
            if content[1].2.len() == 4 {
                (None, 0, Some(1))
            } else {
                (Some(1), 0, None)
            }
        }
        [false, true, true] => (Some(1), 0, Some(2)),
        [true, false] => (Some(0), 1, None),
        [true, false, true] => (Some(0), 1, Some(2)),
        _ => return None,
    };
    // Zero padding: kept where the original shows it (a leading zero, or a numeric date
    // whose day and month are both written with two digits).
    let numeric_dm: Vec<&str> = [Some(m_i), d_i]
        .into_iter()
        .flatten()
        .filter(|&i| content[i].1)
        .map(|i| content[i].2)
        .collect();
    let pad = numeric_dm.iter().any(|t| t.starts_with('0'))
        || (numeric_dm.len() == 2 && numeric_dm.iter().all(|t| t.len() == 2));
    let width = if pad { 2 } else { 1 };
    let (m_part, _, m_text) = content[m_i];
    let month = if content[m_i].1 {
        let m = u8::try_from(num(m_text)?).ok()?;
        parts[m_part] = Part::MonthNum { width };
        m
    } else {
        let (m, abbrev) = month_of(m_text)?;
        parts[m_part] = Part::MonthName {
            abbrev,
            case: Case::of(m_text),
        };
        m
    };
    if !(1..=12).contains(&month) {
        return None;
    }
    let (year, two_digit_year) = match y_i {
        Some(i) => {
            let (p, _, t) = content[i];
            if !content[i].1 || !(t.len() == 2 || t.len() == 4) {
                return None;
            }
            let y = i32::try_from(num(t)?).ok()?;
            if t.len() == 4 && !(1800..=2200).contains(&y) {
                return None;
            }
            parts[p] = Part::Year {
                two_digit: t.len() == 2,
            };
            (Some(y), t.len() == 2)
        }
        None => (None, false),
    };
    let day = match d_i {
        Some(i) => {
            let (p, _, t) = content[i];
            if !content[i].1 || t.len() > 2 {
                return None;
            }
            let d = u8::try_from(num(t)?).ok()?;
            let full_year = if two_digit_year { None } else { year };
            if d == 0 || d > days_in(month, full_year) {
                return None;
            }
            parts[p] = Part::Day { width };
            Some(d)
        }
        None => None,
    };
    Some(ParsedDate {
        parts,
        year,
        two_digit_year,
        month,
        day,
    })
}

/// Appends `v` in decimal, as `Display` writes it.
fn push_int(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    crate::deid::token::push_decimal(out, v.unsigned_abs());
}

impl ParsedDate {
    /// The comparison key: `year-month-day` with `?` for what is not written.
    pub(crate) fn key(&self) -> String {
        // By hand: every date pseudonymized is keyed, and `format!` with its temporaries
        // cost more than parsing the date.
        let mut out = String::with_capacity(12);
        match self.year {
            Some(y) => push_int(&mut out, i64::from(y)),
            None => out.push('?'),
        }
        out.push('-');
        push_int(&mut out, i64::from(self.month));
        out.push('-');
        match self.day {
            Some(d) => push_int(&mut out, i64::from(d)),
            None => out.push('?'),
        }
        out
    }

    /// The four-digit year, if the date has one (two-digit years read relative to
    /// `reference_year`: not after it).
    pub(crate) fn full_year(&self, reference_year: i32) -> Option<i32> {
        let y = self.year?;
        if !self.two_digit_year {
            return Some(y);
        }
        let century = reference_year - reference_year.rem_euclid(100);
        let candidate = century + y;
        Some(if candidate > reference_year {
            candidate - 100
        } else {
            candidate
        })
    }

    /// The date moved by `days`, written the way the original was. Dates without a year are
    /// placed in `reference_year` to do the arithmetic.
    pub(crate) fn shifted(&self, days: i32, reference_year: i32) -> Option<String> {
        let year = self.full_year(reference_year).unwrap_or(reference_year);
        let month = Month::try_from(self.month).ok()?;
        let day = self.day.unwrap_or(15);
        let date = Date::from_calendar_date(year, month, day)
            .or_else(|_| Date::from_calendar_date(year, month, 28))
            .ok()?;
        let moved = if self.day.is_some() {
            date.checked_add(Duration::days(i64::from(days)))?
        } else {
            // Month precision: move by whole months, roughly as many as the shift.
            date.checked_add(Duration::days(i64::from(
                days / 30 * 30 + days.signum() * 30,
            )))?
        };
        Some(self.render(moved))
    }

    fn render(&self, d: Date) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match *p {
                Part::Lit(ref s) => out.push_str(s),
                Part::Day { width } => out.push_str(&format!("{:0width$}", d.day())),
                Part::Ordinal { case } => out.push_str(&case.apply(ordinal_suffix(d.day()))),
                Part::MonthNum { width } => {
                    out.push_str(&format!("{:0width$}", u8::from(d.month())));
                }
                Part::MonthName { abbrev, case } => {
                    let name = MONTHS[usize::from(u8::from(d.month()) - 1)];
                    let name = if abbrev { &name[..3] } else { name };
                    out.push_str(&case.apply(name));
                }
                Part::Year { two_digit } => {
                    if two_digit {
                        out.push_str(&format!("{:02}", d.year().rem_euclid(100)));
                    } else {
                        out.push_str(&d.year().to_string());
                    }
                }
                Part::Weekday { abbrev, case } => {
                    let name = WEEKDAYS[usize::from(weekday_index(d.weekday()))];
                    let name = if abbrev { &name[..3] } else { name };
                    out.push_str(&case.apply(name));
                }
            }
        }
        out
    }
}

fn weekday_index(w: Weekday) -> u8 {
    w.number_days_from_monday()
}

fn ordinal_suffix(day: u8) -> &'static str {
    match (day % 10, day % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shift(s: &str, days: i32) -> String {
        parse(s).unwrap().shifted(days, 2026).unwrap()
    }

    #[test]
    fn keeps_the_written_shape() {
        assert_eq!(shift("03/02/1981", 10), "03/12/1981");
        assert_eq!(shift("3/2/81", -3), "2/27/81");
        assert_eq!(shift("2026-03-14", 30), "2026-04-13");
        assert_eq!(shift("March 2, 1981", 1), "March 3, 1981");
        assert_eq!(shift("Jan 18", 14), "Feb 1");
        assert_eq!(shift("Jan 08", 1), "Jan 09");
        assert_eq!(shift("12/25/2020", 10), "01/04/2021");
        assert_eq!(shift("3/12/2020", 1), "3/13/2020");
        assert_eq!(shift("JAN 30TH", 2), "FEB 1ST");
        assert_eq!(shift("2 March 1981", 365), "2 March 1982");
        assert_eq!(
            shift("Wednesday, March 18, 2026", 1),
            "Thursday, March 19, 2026"
        );
        assert_eq!(shift("03/2024", 40), "05/2024");
        assert_eq!(shift("July 19, 1951", -19), "June 30, 1951");
    }

    #[test]
    fn keys_show_what_is_written() {
        for (s, key) in [
            ("03/02/1981", "1981-3-2"),
            ("March 2, 1981", "1981-3-2"),
            ("March 1981", "1981-3-?"),
            ("December 19th", "?-12-19"),
            ("12/25", "?-12-25"),
            ("3/2/81", "81-3-2"),
        ] {
            assert_eq!(parse(s).map(|d| d.key()).as_deref(), Some(key), "{s}");
            assert_eq!(key_of(s).as_deref(), Some(key), "{s}");
        }
        let mut out = String::new();
        for v in [0, 7, 10, 99, 2026, -5, i64::MAX, i64::MIN] {
            out.clear();
            push_int(&mut out, v);
            assert_eq!(out, v.to_string());
        }
    }

    /// The allocating spellings the month, weekday and ordinal readers replaced.
    fn month_reference(word: &str) -> Option<(u8, bool)> {
        let w = word.to_lowercase();
        MONTHS.iter().zip(1u8..).find_map(|(m, n)| {
            if w == *m {
                Some((n, false))
            } else if w.len() >= 3 && m.starts_with(w.as_str()) && (w.len() == 3 || w == "sept") {
                Some((n, true))
            } else {
                None
            }
        })
    }

    fn weekday_reference(word: &str) -> Option<bool> {
        let w = word.to_lowercase();
        WEEKDAYS.iter().find_map(|d| {
            if w == *d {
                Some(false)
            } else if (w.len() == 3 || w.len() == 4) && d.starts_with(w.as_str()) {
                Some(true)
            } else {
                None
            }
        })
    }

    proptest::proptest! {
        #[test]
        fn word_readers_match_the_reference(word in "(?i)(jan|sept|september|mon|tues|wednesday|st|th|[a-zK\u{212A}İßſ]{1,10})") {
            proptest::prop_assert_eq!(month_of(&word), month_reference(&word));
            proptest::prop_assert_eq!(weekday_of(&word), weekday_reference(&word));
            proptest::prop_assert_eq!(
                is_ordinal(&word),
                matches!(word.to_lowercase().as_str(), "st" | "nd" | "rd" | "th")
            );
        }

        #[test]
        fn keys_need_no_written_shape(s in "[0-9A-Za-z /.,-]{0,24}") {
            proptest::prop_assert_eq!(key_of(&s), parse(&s).map(|d| d.key()));
        }
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for s in [
            "13/45/2020",
            "02/30/2021",
            "hello",
            "10 mg",
            "Feb 31",
            "1/2/3/4",
            "",
        ] {
            assert!(parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn reads_two_digit_years_relative_to_the_reference() {
        assert_eq!(parse("3/2/81").unwrap().full_year(2026), Some(1981));
        assert_eq!(parse("3/2/24").unwrap().full_year(2026), Some(2024));
        assert_eq!(parse("Jan 18").unwrap().full_year(2026), None);
    }
}
