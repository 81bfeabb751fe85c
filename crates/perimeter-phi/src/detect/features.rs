//! Per-token features shared by the name and place recognizers: list membership (one hash
//! lookup per token), capitalisation, stop words and sentence position.

use rustc_hash::FxHashSet;

use super::tokens::{Kind, Token};
use crate::lexicon::{self, Lexicon};

/// What the name and place recognizers know about one token.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Feat {
    /// Lexicon flags of the token (possessive `'s` removed).
    pub flags: u8,
    /// Starts with an upper-case letter.
    pub cap: bool,
    /// Every letter upper case (two or more letters).
    pub all_caps: bool,
    /// A word that is never part of a name (pronoun, article, title, form label, month...).
    pub stop: bool,
    /// Ends in `'s`.
    pub possessive: bool,
    /// First token of a sentence or line.
    pub sent_start: bool,
    /// A single upper-case letter followed by `.` (an initial).
    pub initial: bool,
    /// Letters only.
    pub word: bool,
}

impl Feat {
    pub(crate) fn first(&self) -> bool {
        self.flags & lexicon::FIRST != 0
    }
    pub(crate) fn last(&self) -> bool {
        self.flags & lexicon::LAST != 0
    }
    pub(crate) fn listed_name(&self) -> bool {
        self.flags & (lexicon::FIRST | lexicon::LAST) != 0
    }
    pub(crate) fn common(&self) -> bool {
        self.flags & lexicon::WORD != 0
    }
    pub(crate) fn place(&self) -> bool {
        self.flags & lexicon::PLACE != 0
    }
    /// Could be part of a capitalised name: a word that is not a stop word and is either not
    /// a common word or is also a listed name (`Hope`, `Young`).
    pub(crate) fn cap_nameish(&self) -> bool {
        (self.word && self.cap && !self.stop && (!self.common() || self.listed_name()))
            || self.initial
    }
}

/// Words that are never (part of) a person's name in these texts.
pub(crate) const STOP_WORDS: &[&str] = &[
    "i",
    "me",
    "my",
    "mine",
    "you",
    "your",
    "yours",
    "he",
    "him",
    "his",
    "she",
    "her",
    "hers",
    "it",
    "its",
    "we",
    "us",
    "our",
    "they",
    "them",
    "their",
    "the",
    "a",
    "an",
    "and",
    "or",
    "but",
    "of",
    "to",
    "in",
    "on",
    "at",
    "for",
    "with",
    "from",
    "by",
    "as",
    "into",
    "about",
    "is",
    "am",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "this",
    "that",
    "these",
    "those",
    "there",
    "here",
    "hi",
    "hello",
    "hey",
    "dear",
    "thanks",
    "thank",
    "thx",
    "regards",
    "sincerely",
    "best",
    "cheers",
    "yes",
    "no",
    "ok",
    "okay",
    "please",
    "pls",
    "re",
    "fw",
    "fwd",
    "subject",
    "date",
    "name",
    "dr",
    "doctor",
    "mr",
    "mrs",
    "ms",
    "miss",
    "mx",
    "prof",
    "nurse",
    "np",
    "pa",
    "rn",
    "md",
    "do",
    "dds",
    "phd",
    "patient",
    "pt",
    "mrn",
    "dob",
    "ssn",
    "id",
    "rx",
    "dx",
    "hx",
    "january",
    "feb",
    "february",
    "mar",
    "march",
    "apr",
    "jun",
    "jul",
    "july",
    "aug",
    "sep",
    "sept",
    "september",
    "oct",
    "october",
    "nov",
    "november",
    "dec",
    "december",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "mon",
    "tue",
    "tues",
    "wed",
    "thu",
    "thur",
    "thurs",
    "fri",
    "sat",
    "sun",
    "today",
    "tomorrow",
    "yesterday",
    "tonight",
    "morning",
    "afternoon",
    "evening",
    "noon",
    "am",
    "pm",
    "can",
    "will",
    "may",
    "june",
    "april",
    "august",
    "jan",
    "could",
    "would",
    "should",
    "shall",
    "might",
    "must",
    "not",
    "also",
    "just",
    "so",
    "if",
    "then",
    "than",
    "when",
    "what",
    "who",
    "why",
    "how",
    "where",
    "which",
    "calling",
    "called",
    "call",
    "here",
    "sure",
    "sorry",
    "need",
    "needs",
    "office",
    "clinic",
    "hospital",
    "pharmacy",
    "center",
    "centre",
    "medical",
    "health",
    "street",
    "st",
    "ave",
    "avenue",
    "road",
    "rd",
    "ln",
    "drive",
    "dr",
    "court",
    "ct",
    "blvd",
    "boulevard",
    "apt",
    "unit",
    "suite",
    "box",
    "po",
    "county",
    "city",
    "state",
    "phone",
    "fax",
    "email",
    "e-mail",
    "address",
    "insurance",
    "medicare",
    "medicaid",
    "account",
    "acct",
    "member",
    "policy",
    "claim",
    "license",
    "vin",
    "plate",
    "serial",
    "device",
    "ip",
    "url",
    "user",
    "username",
    "zip",
    "cell",
    "mobile",
    "home",
    "work",
    "husband",
    "wife",
    "daughter",
    "son",
    "mom",
    "mother",
    "dad",
    "father",
    "sister",
    "brother",
    "partner",
    "caregiver",
    "grandson",
    "granddaughter",
    "friend",
    "neighbor",
    "neighbour",
    "sir",
    "madam",
    "team",
    "staff",
    "all",
    "everyone",
    "anyone",
    "someone",
    "nobody",
    "mg",
    "mcg",
    "ml",
    "tab",
    "tabs",
    "bid",
    "tid",
    "qd",
    "prn",
    "po",
    "iv",
    "er",
    "ed",
    "icu",
    "lol",
    "omg",
    "btw",
    "fyi",
    "asap",
    "um",
    "uh",
    "hmm",
    "oh",
    "ah",
    "er",
    "via",
    "per",
    "attn",
    "attention",
    "cc",
    "bcc",
    "to",
    "from",
    "sent",
    "via",
    "ref",
    "re",
    "n/a",
    "na",
    "none",
    "unknown",
    "male",
    "female",
    "other",
    "sex",
    "gender",
    "age",
    "dob",
    "years",
    "old",
    "y/o",
    "yo",
    "year",
    "new",
    "old",
    "dept",
    "department",
    "room",
    "bed",
    "floor",
    "wing",
    "bye",
    "goodbye",
    "again",
    "much",
    "advance",
    "soon",
    "later",
    "everything",
    "anything",
    "alabama",
    "alaska",
    "arizona",
    "arkansas",
    "california",
    "colorado",
    "connecticut",
    "delaware",
    "florida",
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
    "ohio",
    "oklahoma",
    "oregon",
    "pennsylvania",
    "tennessee",
    "texas",
    "utah",
    "vermont",
    "wisconsin",
    "wyoming",
    "usa",
    "america",
    "canada",
    "mexico",
    "england",
    "france",
    "germany",
    "italy",
    "spain",
    "china",
    "india",
    "japan",
    "brazil",
    "turkey",
    "ireland",
    "portugal",
    "russia",
    "poland",
    "nigeria",
    "medicine",
    "family",
    "urgent",
    "care",
    "orthopedics",
    "cardiology",
    "dermatology",
    "pediatrics",
    "radiology",
    "imaging",
    "dental",
    "therapy",
    "rehab",
    "wellness",
    "oncology",
    "associates",
    "partners",
    "specialists",
    "physicians",
    "surgery",
    "lab",
    "labs",
    "walgreens",
    "cvs",
    "walmart",
    "costco",
    "kroger",
    "publix",
    "safeway",
    "target",
    "amazon",
    "google",
    "facebook",
    "instagram",
    "zoom",
    "teams",
    "mychart",
    "uber",
    "lyft",
    "fedex",
    "ups",
];

/// Lower-case particles inside names: `Semat de la Fuente`, `Ludwig van Beethoven`.
pub(crate) const PARTICLES: &[&str] = &[
    "de", "la", "del", "della", "da", "di", "do", "dos", "das", "du", "van", "von", "der", "den",
    "ten", "ter", "le", "bin", "ibn", "al", "el", "y", "st.",
];

/// `I'm`, `don't`, `we're`, `it's`: never names.
fn is_contraction(lower: &str) -> bool {
    if lower != "i" && !lower.contains(['\'', '’']) {
        return false;
    }
    let l = lower.replace('’', "'");
    l == "i"
        || ["'m", "'re", "'ve", "'ll", "'d", "n't"]
            .iter()
            .any(|s| l.ends_with(s))
        || matches!(
            l.as_str(),
            "it's"
                | "that's"
                | "what's"
                | "he's"
                | "she's"
                | "let's"
                | "there's"
                | "here's"
                | "who's"
        )
}

/// Builds the stop-word set.
pub(crate) fn stop_set() -> FxHashSet<&'static str> {
    STOP_WORDS.iter().copied().collect()
}

/// Computes the features of every token.
pub(crate) fn compute(
    text: &str,
    lower: &str,
    tokens: &[Token],
    lex: &Lexicon,
    stops: &FxHashSet<&'static str>,
    near_cue: &[bool],
) -> Vec<Feat> {
    let bytes = text.as_bytes();
    let mut buf = String::with_capacity(32);
    let mut out = Vec::with_capacity(tokens.len());
    let mut prev_end = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        let s = t.text(text);
        let possessive = s.ends_with("'s") || s.ends_with("’s");
        let base = if possessive {
            s.get(..s.len() - if s.ends_with("'s") { 2 } else { 4 })
                .unwrap_or(s)
        } else {
            s
        };
        let word = t.kind == Kind::Word;
        let ascii_lower = if word && base.is_ascii() {
            lower.get(t.start..t.start + base.len())
        } else {
            None
        };
        // Lower-case stop words need no lexicon lookup (most tokens of prose).
        let quick_stop = !t.upper && ascii_lower.is_some_and(|w| stops.contains(w));
        let mut flags = if !word {
            0
        } else if let Some(w) = ascii_lower {
            // The ASCII-lower-cased copy of the text has the same offsets: no copy needed.
            buf.clear();
            buf.push_str(w);
            if quick_stop && !matches!(w, "april" | "june" | "august" | "may" | "jan") {
                0
            } else if !t.upper && !near_cue.get(i).copied().unwrap_or(true) {
                // Lower-case words far from a name cue are never read as names, so their
                // list flags are not needed (most tokens of prose): skip the lookup.
                0
            } else {
                lex.flags_lower(w)
            }
        } else {
            lex.flags(base, &mut buf)
        };
        if word && flags == 0 && base.contains('-') {
            let mut part_buf = String::new();
            let parts: Vec<u8> = base
                .split('-')
                .map(|p| lex.flags(p, &mut part_buf))
                .collect();
            if parts
                .iter()
                .all(|f| f & (lexicon::FIRST | lexicon::LAST) != 0)
            {
                flags = parts
                    .iter()
                    .fold(0, |a, f| a | (f & (lexicon::FIRST | lexicon::LAST)));
            }
            // Restore `buf` to the whole token for the stop-word check below.
            lex.flags(base, &mut buf);
        }
        // `buf` now holds the lower-cased base when `word`.
        // `will`/`may` are stop words in lower case only: `Will Hallissey`, `May Chen`.
        let cased_name = t.upper
            && matches!(
                buf.as_str(),
                "will" | "may" | "jan" | "june" | "april" | "august"
            );
        let stop = word
            && !cased_name
            && (quick_stop || stops.contains(buf.as_str()) || is_contraction(&buf));
        let gap = bytes.get(prev_end..t.start).unwrap_or(&[]);
        let sent_start = i == 0
            || gap.iter().any(|b| {
                matches!(
                    b,
                    b'.' | b'!' | b'?' | b'\n' | b':' | b'-' | b'|' | b'>' | b'*' | b'\\'
                )
            })
            // em dash (U+2014) and bullet (U+2022)
            || gap.windows(3).any(|w| w == [0xE2, 0x80, 0x94] || w == [0xE2, 0x80, 0xA2]);
        let initial = word
            && t.upper
            && t.end - t.start <= 4
            && s.chars().count() == 1
            && bytes.get(t.end) == Some(&b'.');
        out.push(Feat {
            flags,
            cap: t.upper,
            all_caps: t.all_caps,
            stop,
            possessive,
            sent_start,
            initial,
            word,
        });
        prev_end = t.end;
    }
    out
}
