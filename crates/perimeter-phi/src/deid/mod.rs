//! De-identification: rewriting a message given the spans the detector found.
//!
//! Four [`Mode`]s:
//! - `redact`: every identifier becomes `[LABEL]`.
//! - `pseudonymize`: every identifier becomes a token `[LABEL_N]`, the same value (compared
//!   after normalising case, spacing, phone digits, name order, date format) always the same
//!   token within one [`Vault`], so a model can still follow who is who; the vault turns the
//!   tokens in the model's answer back into the originals.
//! - `surrogate`: realistic fake values of the same shape, consistent within the vault; dates
//!   moved by the vault's offset so intervals survive; names replaced word by word.
//! - `safe-harbor`: the generalisations of 164.514(b)(2): dates to the year, ages over 89 to
//!   "90 or older", ZIP codes to three digits (`000` for the 17 restricted prefixes), every
//!   other identifier removed as in `redact`.
//!
//! Text in the input that already looks like a token (`[NAME_1]` typed by a person) is itself
//! replaced by a vault token in `pseudonymize` mode, so the output holds no token the vault
//! did not issue and re-identification restores the input exactly.

pub(crate) mod normalize;
mod safe_harbor;
pub(crate) mod token;

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use safe_harbor::RESTRICTED_ZIP3;

use crate::surrogate::{self, NameRole};
use crate::vault::EntryKind;
use crate::{Label, Span, Vault};

/// How identifiers are replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `[LABEL]`.
    Redact,
    /// `[LABEL_N]`, reversible through the vault.
    Pseudonymize,
    /// Realistic fake values of the same shape.
    Surrogate,
    /// The Safe Harbor generalisations, other identifiers removed.
    SafeHarbor,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 4] = [
        Mode::Redact,
        Mode::Pseudonymize,
        Mode::Surrogate,
        Mode::SafeHarbor,
    ];

    /// The mode's name: `redact`, `pseudonymize`, `surrogate`, `safe-harbor`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Redact => "redact",
            Mode::Pseudonymize => "pseudonymize",
            Mode::Surrogate => "surrogate",
            Mode::SafeHarbor => "safe-harbor",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = DeidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or(DeidError::UnknownMode)
    }
}

/// Errors from de-identification. They never contain the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeidError {
    /// A span does not lie within the text on character boundaries.
    #[error(
        "span {index}: start and end must be byte offsets on character boundaries with start <= end <= text length"
    )]
    InvalidSpan {
        /// Position of the span in the given slice.
        index: usize,
    },
    /// A mode name that is not one of the four.
    #[error(
        "unknown de-identification mode; expected redact, pseudonymize, surrogate or safe-harbor"
    )]
    UnknownMode,
}

/// Settings for [`deidentify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeidOptions {
    /// How identifiers are replaced.
    pub mode: Mode,
    /// The current year (from the caller's clock): reads two-digit years, places dates without
    /// a year for shifting, and decides which years show an age over 89 in `safe-harbor` mode.
    pub reference_year: i32,
}

/// One identifier that was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replacement {
    /// Byte range in the input.
    pub input: Range<usize>,
    /// Byte range of the replacement in the output.
    pub output: Range<usize>,
    /// The identifier's label.
    pub label: Label,
}

/// A de-identified message.
#[derive(Clone, PartialEq, Eq)]
pub struct Deidentified {
    /// The rewritten text.
    pub text: String,
    /// The identifiers replaced, in order (overlapping input spans merged into one).
    pub replacements: Vec<Replacement>,
}

impl fmt::Debug for Deidentified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The output is meant to be PHI-free, but surrogate mode output looks like PHI to a
        // reader and redaction misses happen: keep it out of Debug.
        f.debug_struct("Deidentified")
            .field("text_bytes", &self.text.len())
            .field("replacements", &self.replacements)
            .finish()
    }
}

/// Rewrites `text`, replacing the identifiers at `spans` (byte offsets, as from
/// [`crate::Engine::detect`]; any order, overlaps are merged) according to `options.mode`.
/// `vault` records the pseudonyms and surrogates (it is not touched in `redact` and
/// `safe-harbor` modes); use one vault per conversation.
pub fn deidentify(
    text: &str,
    spans: &[Span],
    options: &DeidOptions,
    vault: &Vault,
) -> Result<Deidentified, DeidError> {
    let merged = merge(text, spans)?;
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut replacements = Vec::with_capacity(merged.len());
    let mut pos = 0;
    for (range, label) in merged {
        copy_gap(&text[pos..range.start], options.mode, vault, &mut out);
        let original = &text[range.clone()];
        let start = out.len();
        match options.mode {
            Mode::Redact => redact(label, &mut out),
            Mode::Pseudonymize => {
                let n = Zeroizing::new(normalize::normalize(label, original));
                vault.token_into(EntryKind::Token, label, original, &n, &mut out);
            }
            Mode::Surrogate => {
                out.push_str(&surrogate_for(
                    label,
                    original,
                    &text[..range.start],
                    options.reference_year,
                    vault,
                ));
            }
            Mode::SafeHarbor => {
                match safe_harbor::generalise(label, original, options.reference_year) {
                    Some(g) => out.push_str(&g),
                    None => redact(label, &mut out),
                }
            }
        }
        replacements.push(Replacement {
            input: range.clone(),
            output: start..out.len(),
            label,
        });
        pos = range.end;
    }
    copy_gap(&text[pos..], options.mode, vault, &mut out);
    Ok(Deidentified {
        text: out,
        replacements,
    })
}

fn redact(label: Label, out: &mut String) {
    out.push('[');
    out.push_str(label.as_str());
    out.push(']');
}

/// Validates, sorts and merges the spans. Overlapping spans become one, with the label of the
/// one that starts first (the longer one on a tie).
fn merge(text: &str, spans: &[Span]) -> Result<Vec<(Range<usize>, Label)>, DeidError> {
    let mut sorted: Vec<(Range<usize>, Label)> = Vec::with_capacity(spans.len());
    for (index, s) in spans.iter().enumerate() {
        if s.start > s.end
            || s.end > text.len()
            || !text.is_char_boundary(s.start)
            || !text.is_char_boundary(s.end)
        {
            return Err(DeidError::InvalidSpan { index });
        }
        if s.start < s.end {
            sorted.push((s.start..s.end, s.label));
        }
    }
    sorted.sort_by(|a, b| a.0.start.cmp(&b.0.start).then(b.0.end.cmp(&a.0.end)));
    let mut merged: Vec<(Range<usize>, Label)> = Vec::with_capacity(sorted.len());
    for (r, l) in sorted {
        match merged.last_mut() {
            Some((last, _)) if r.start < last.end => last.end = last.end.max(r.end),
            _ => merged.push((r, l)),
        }
    }
    Ok(merged)
}

/// Copies text between identifiers. In `pseudonymize` mode, anything in it that looks like a
/// token is replaced by a token of its own, so it cannot collide with a pseudonym.
fn copy_gap(gap: &str, mode: Mode, vault: &Vault, out: &mut String) {
    if mode != Mode::Pseudonymize {
        out.push_str(gap);
        return;
    }
    let mut pos = 0;
    for r in token::find_tokens(gap) {
        out.push_str(&gap[pos..r.start]);
        let literal = &gap[r.clone()];
        let label = literal
            .trim_start_matches('[')
            .trim_end_matches(']')
            .rsplit_once('_')
            .and_then(|(l, _)| l.parse::<Label>().ok())
            .unwrap_or(Label::Id);
        vault.token_into(EntryKind::Escape, label, literal, literal, out);
        pos = r.end;
    }
    out.push_str(&gap[pos..]);
}

/// Titles after which a single capitalised word is a surname.
const TITLES: &[&str] = &[
    "dr",
    "doctor",
    "mr",
    "mrs",
    "ms",
    "miss",
    "mx",
    "prof",
    "professor",
    "nurse",
    "sr",
    "sra",
    "rev",
    "pastor",
    "capt",
    "sgt",
];

fn surrogate_for(
    label: Label,
    original: &str,
    before: &str,
    reference_year: i32,
    vault: &Vault,
) -> String {
    let n = Zeroizing::new(normalize::normalize(label, original));
    let make = |f: fn(&str, &mut rand::rngs::StdRng) -> String| {
        vault.surrogate(EntryKind::Surrogate, label, original, &n, |rng| {
            f(original, rng)
        })
    };
    match label {
        Label::Name => surrogate_name(original, before, vault),
        Label::Date => match surrogate::date::parse(original)
            .and_then(|d| d.shifted(vault.date_shift_days(), reference_year))
        {
            Some(s) => s,
            // An unreadable date is removed rather than guessed at.
            None => format!("[{}]", label.as_str()),
        },
        Label::Phone | Label::Fax => surrogate::relayout_digits(&make(surrogate::phone), original),
        Label::Ssn => surrogate::relayout_digits(&make(surrogate::ssn), original),
        Label::Email => make(surrogate::email),
        Label::Url => make(surrogate::url),
        Label::Ip => make(surrogate::ip),
        Label::Address => make(surrogate::address),
        Label::Location => make(surrogate::location),
        Label::Age => vault.surrogate(EntryKind::Surrogate, label, original, &n, surrogate::age),
        Label::Mrn
        | Label::HealthPlan
        | Label::Account
        | Label::License
        | Label::Vehicle
        | Label::Device
        | Label::Id => make(surrogate::code),
    }
}

/// Replaces a name word by word, each word consistently across the conversation:
/// `Maria Gonzalez`, `Maria`, `GONZALEZ, Maria` and `Mrs. Gonzalez` stay one person.
fn surrogate_name(original: &str, before: &str, vault: &Vault) -> String {
    // Split into words (letters, apostrophes) and everything else.
    let mut pieces: Vec<(bool, &str)> = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in original.char_indices() {
        let w = c.is_alphabetic() || (c == '\'' && in_word);
        if i > start && w != in_word {
            pieces.push((in_word, &original[start..i]));
            start = i;
        }
        in_word = w;
    }
    if start < original.len() {
        pieces.push((in_word, &original[start..]));
    }
    let words = pieces.iter().filter(|p| p.0).count();
    let comma_at = pieces.iter().position(|p| !p.0 && p.1.contains(','));
    let after_title = {
        let prev = before
            .trim_end()
            .trim_end_matches('.')
            .rsplit(|c: char| !c.is_alphabetic())
            .next()
            .unwrap_or("")
            .to_lowercase();
        TITLES.contains(&prev.as_str())
    };
    let mut out = String::with_capacity(original.len() + 4);
    let mut word_no = 0;
    for (i, &(is_word, piece)) in pieces.iter().enumerate() {
        if !is_word {
            out.push_str(piece);
            continue;
        }
        word_no += 1;
        let role = match comma_at {
            Some(c) if i < c => NameRole::Family,
            Some(_) => NameRole::Given,
            None if words == 1 && after_title => NameRole::Family,
            None if words > 1 && word_no == words => NameRole::Family,
            None => NameRole::Given,
        };
        let key = Zeroizing::new(normalize::name_part(piece));
        let fake = if piece.chars().filter(|c| c.is_alphabetic()).count() == 1 {
            vault.surrogate(
                EntryKind::NamePart,
                Label::Name,
                piece,
                &Zeroizing::new(format!("initial:{}", key.as_str())),
                surrogate::initial,
            )
        } else {
            vault.surrogate(EntryKind::NamePart, Label::Name, piece, &key, |rng| {
                surrogate::name_word(role, rng)
            })
        };
        out.push_str(&surrogate::in_case_of(piece, &fake));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(text: &str, needle: &str, label: Label) -> Span {
        let start = text.find(needle).unwrap();
        Span {
            start,
            end: start + needle.len(),
            label,
            confidence: 1.0,
            recognizer: "test",
        }
    }

    fn opts(mode: Mode) -> DeidOptions {
        DeidOptions {
            mode,
            reference_year: 2026,
        }
    }

    const TEXT: &str = "Hi, this is Maria Gonzalez, DOB 03/02/1981, call (312) 555-8841. \
                        Zip 62704. My son Tom is at 312.555.8841 too. Mrs. Gonzalez, age 93.";

    fn spans() -> Vec<Span> {
        let t = TEXT;
        let second_phone = {
            let s = t.find("312.555").unwrap();
            Span {
                start: s,
                end: s + 12,
                label: Label::Phone,
                confidence: 1.0,
                recognizer: "test",
            }
        };
        vec![
            span(t, "Maria Gonzalez", Label::Name),
            span(t, "03/02/1981", Label::Date),
            span(t, "(312) 555-8841", Label::Phone),
            span(t, "62704", Label::Location),
            span(t, "Tom", Label::Name),
            second_phone,
            span(t, "Gonzalez, age", Label::Name),
            span(t, "93", Label::Age),
        ]
    }

    fn fix_last_name(mut s: Vec<Span>) -> Vec<Span> {
        // "Gonzalez" after "Mrs." (the helper above found the first occurrence).
        let at = TEXT.rfind("Gonzalez").unwrap();
        s[6] = Span {
            start: at,
            end: at + 8,
            label: Label::Name,
            confidence: 1.0,
            recognizer: "test",
        };
        s
    }

    #[test]
    fn redact_mode() {
        let v = Vault::with_seed(1);
        let d = deidentify(TEXT, &fix_last_name(spans()), &opts(Mode::Redact), &v).unwrap();
        assert_eq!(
            d.text,
            "Hi, this is [NAME], DOB [DATE], call [PHONE]. Zip [LOCATION]. My son [NAME] is at \
             [PHONE] too. Mrs. [NAME], age [AGE]."
        );
        assert!(v.is_empty());
        assert_eq!(d.replacements.len(), 8);
        let r = &d.replacements[0];
        assert_eq!(&d.text[r.output.clone()], "[NAME]");
        assert_eq!(&TEXT[r.input.clone()], "Maria Gonzalez");
    }

    #[test]
    fn pseudonymize_mode_is_consistent_and_reversible() {
        let v = Vault::with_seed(1);
        let d = deidentify(TEXT, &fix_last_name(spans()), &opts(Mode::Pseudonymize), &v).unwrap();
        assert_eq!(
            d.text,
            "Hi, this is [NAME_1], DOB [DATE_1], call [PHONE_1]. Zip [LOCATION_1]. My son \
             [NAME_2] is at [PHONE_1] too. Mrs. [NAME_3], age [AGE_1]."
        );
        // The same phone in two formats is one token; it restores to the first spelling.
        assert_eq!(
            v.reidentify("Call [NAME_1] at [PHONE_1]."),
            "Call Maria Gonzalez at (312) 555-8841."
        );
    }

    #[test]
    fn literal_tokens_in_the_input_cannot_collide() {
        let v = Vault::with_seed(1);
        let text = "Note: [NAME_1] is a placeholder; the patient is Ann Lee. [NAME_2]";
        let s = vec![span(text, "Ann Lee", Label::Name)];
        let d = deidentify(text, &s, &opts(Mode::Pseudonymize), &v).unwrap();
        assert_eq!(v.reidentify(&d.text), text);
        assert_eq!(d.replacements.len(), 1);
        let ann = &d.text[d.replacements[0].output.clone()];
        assert_eq!(v.reidentify(ann), "Ann Lee");
        // A second message in the same conversation with a literal of an issued token.
        let text2 = format!("Is {ann} the same as Ann Lee?");
        let s2 = vec![span(&text2, "Ann Lee", Label::Name)];
        let d2 = deidentify(&text2, &s2, &opts(Mode::Pseudonymize), &v).unwrap();
        assert_eq!(v.reidentify(&d2.text), text2);
    }

    #[test]
    fn surrogate_mode_keeps_people_apart_and_together() {
        let v = Vault::with_seed(5);
        let d = deidentify(TEXT, &fix_last_name(spans()), &opts(Mode::Surrogate), &v).unwrap();
        let out = &d.text;
        for original in [
            "Maria",
            "Gonzalez",
            "03/02/1981",
            "555-8841",
            "62704",
            "Tom",
        ] {
            assert!(!out.contains(original), "{original} leaked: {out}");
        }
        let full = &out[d.replacements[0].output.clone()];
        let (given, family) = full.split_once(' ').unwrap();
        let mrs = &out[d.replacements[6].output.clone()];
        assert_eq!(mrs, family, "the surname alone maps like in the full name");
        let tom = &out[d.replacements[4].output.clone()];
        assert_ne!(tom, given);
        // Both spellings of the phone got the same fake number (each in its own format).
        let digits = |i: usize| -> String {
            out[d.replacements[i].output.clone()]
                .chars()
                .filter(char::is_ascii_digit)
                .collect()
        };
        assert!(digits(2).contains("55501"), "{}", digits(2));
        assert_eq!(digits(2), digits(5));
        assert!(out[d.replacements[5].output.clone()].contains('.'));
        // The date moved by the vault's shift.
        let date = &out[d.replacements[1].output.clone()];
        let shifted = crate::surrogate::date::parse("03/02/1981")
            .unwrap()
            .shifted(v.date_shift_days(), 2026)
            .unwrap();
        assert_eq!(date, shifted);
        // Same vault, another message: same people, same fakes.
        let text2 = "GONZALEZ, MARIA called";
        let s2 = vec![span(text2, "GONZALEZ, MARIA", Label::Name)];
        let d2 = deidentify(text2, &s2, &opts(Mode::Surrogate), &v).unwrap();
        assert_eq!(
            d2.text,
            format!("{}, {} called", family.to_uppercase(), given.to_uppercase())
        );
    }

    #[test]
    fn surrogate_dates_shift_per_patient_and_keep_intervals() {
        use time::{Date, Month};
        let key = crate::DateShiftKey::from_bytes([42; 32]);
        let text = "Seen 2026-03-02, follow-up 2026-03-16.";
        let spans = vec![
            span(text, "2026-03-02", Label::Date),
            span(text, "2026-03-16", Label::Date),
        ];
        let run = |patient: &str, seed: u64| {
            let v = Vault::for_patient_with_seed(&key, patient, seed);
            let d = deidentify(text, &spans, &opts(Mode::Surrogate), &v).unwrap();
            d.replacements
                .iter()
                .map(|r| {
                    let s = &d.text[r.output.clone()];
                    let p: Vec<&str> = s.split('-').collect();
                    let (y, m, day): (i32, u8, u8) = (
                        p[0].parse().unwrap(),
                        p[1].parse().unwrap(),
                        p[2].parse().unwrap(),
                    );
                    Date::from_calendar_date(y, Month::try_from(m).unwrap(), day).unwrap()
                })
                .collect::<Vec<Date>>()
        };
        // Two conversations (different vaults, different surrogate seeds) of one patient.
        let a = run("patient-17", 1);
        let b = run("patient-17", 2);
        assert_eq!(
            a, b,
            "the same patient's dates move alike in every conversation"
        );
        assert_eq!((a[1] - a[0]).whole_days(), 14, "the interval survives");
        let original = Date::from_calendar_date(2026, Month::March, 2).unwrap();
        let shift = (a[0] - original).whole_days();
        assert_eq!(shift, i64::from(key.shift_days("patient-17")));
        assert_ne!(shift, 0);
        // Across patients the shift differs (for most of them).
        let differs = (0..20)
            .filter(|i| run(&format!("patient-{i}"), 1)[0] != a[0])
            .count();
        assert!(differs >= 18, "{differs}");
    }

    #[test]
    fn safe_harbor_mode() {
        let v = Vault::with_seed(1);
        let d = deidentify(TEXT, &fix_last_name(spans()), &opts(Mode::SafeHarbor), &v).unwrap();
        assert_eq!(
            d.text,
            "Hi, this is [NAME], DOB 1981, call [PHONE]. Zip 627. My son [NAME] is at [PHONE] \
             too. Mrs. [NAME], age 90 or older."
        );
    }

    #[test]
    fn spans_are_checked_and_merged() {
        let v = Vault::with_seed(1);
        let text = "aé b";
        let bad = Span {
            start: 2,
            end: 3,
            label: Label::Id,
            confidence: 1.0,
            recognizer: "t",
        };
        assert_eq!(
            deidentify(text, &[bad], &opts(Mode::Redact), &v),
            Err(DeidError::InvalidSpan { index: 0 })
        );
        let text = "call 555-123-4567 now";
        let a = span(text, "555-123", Label::Phone);
        let b = span(text, "123-4567", Label::Id);
        let d = deidentify(text, &[b, a], &opts(Mode::Redact), &v).unwrap();
        assert_eq!(d.text, "call [PHONE] now");
        assert_eq!("Safe-Harbor".parse::<Mode>(), Ok(Mode::SafeHarbor));
        assert!("scramble".parse::<Mode>().is_err());
    }

    fn arbitrary_case() -> impl proptest::strategy::Strategy<Value = (String, Vec<Span>)> {
        use proptest::prelude::*;
        let text = prop_oneof![
            "\\PC{0,80}",
            "[a-zA-Z0-9 ,./()\\[\\]_@:-]{0,80}",
            Just("Maria Gonzalez, 03/02/1981, (312) 555-8841, 62704, [NAME_1]".to_string()),
        ];
        text.prop_flat_map(|t| {
            let n = t.len();
            let span = (0..=n, 0..=n, 0..Label::ALL.len());
            (Just(t), proptest::collection::vec(span, 0..8))
        })
        .prop_map(|(t, raw)| {
            let snap = |mut i: usize| {
                while !t.is_char_boundary(i) {
                    i -= 1;
                }
                i
            };
            let spans = raw
                .into_iter()
                .map(|(a, b, l)| {
                    let (a, b) = (snap(a.min(b)), snap(a.max(b)));
                    Span {
                        start: a,
                        end: b,
                        label: Label::ALL[l],
                        confidence: 1.0,
                        recognizer: "prop",
                    }
                })
                .collect();
            (t, spans)
        })
    }

    proptest::proptest! {
        #[test]
        fn any_spans_in_any_mode_never_panic((text, spans) in arbitrary_case()) {
            for mode in Mode::ALL {
                let v = Vault::with_seed(3);
                let d = deidentify(&text, &spans, &opts(mode), &v).unwrap();
                let mut prev_in = 0;
                let mut prev_out = 0;
                for r in &d.replacements {
                    proptest::prop_assert!(r.input.start >= prev_in && r.input.end <= text.len());
                    proptest::prop_assert!(r.output.start >= prev_out && r.output.end <= d.text.len());
                    proptest::prop_assert!(d.text.is_char_boundary(r.output.start));
                    prev_in = r.input.end;
                    prev_out = r.output.end;
                }
                if mode == Mode::Redact {
                    // Outside the identifiers the text is unchanged.
                    let mut rebuilt = String::new();
                    let mut pos = 0;
                    for r in &d.replacements {
                        rebuilt.push_str(&text[pos..r.input.start]);
                        rebuilt.push_str(&d.text[r.output.clone()]);
                        pos = r.input.end;
                    }
                    rebuilt.push_str(&text[pos..]);
                    proptest::prop_assert_eq!(&rebuilt, &d.text);
                }
                if mode == Mode::Pseudonymize {
                    // Every token in the output is one the vault issued.
                    proptest::prop_assert!(v.reidentify_report(&d.text).unknown_tokens.is_empty());
                }
            }
        }
    }
}
