//! Per-token features shared by the name and place recognizers: list membership (one hash
//! lookup per token), capitalisation, stop words and sentence position.

use super::tokens::{Kind, Token};
use crate::lexicon::{self, Lexicon};

/// What the name and place recognizers know about one token.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
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
    /// The token's [`class`] bits.
    pub class: u16,
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
    pub(crate) fn is(&self, c: u16) -> bool {
        self.class & c != 0
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
    /// Capitalised, not a stop word, not all capitals, not a common word unless also a name.
    pub(crate) fn namey(&self) -> bool {
        self.word
            && self.cap
            && !self.stop
            && !self.all_caps
            && (!self.common() || self.listed_name())
    }
}

/// The tokens each pass of the name recognizer looks at, collected while the features are
/// computed: most tokens are lower-case words that no pass needs, and each pass only visits
/// its list.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct TokenLists {
    /// Capitalised name-like words and initials (not a final initial): runs of names.
    pub runs: Vec<u32>,
    /// First tokens of a sentence or line.
    pub lines: Vec<u32>,
    /// Four-byte tokens (`here`) and capitalised name-like words (`Last, First`).
    pub shapes: Vec<u32>,
    /// Tokens after a dash (`-`, `~`, `—`) and spaces: signatures.
    pub dashes: Vec<u32>,
    /// Words that may be another mention of a found name.
    pub mentions: Vec<u32>,
    /// Words that may start a place: capitalised, or after `in`, `from`... (not stop words).
    pub places: Vec<u32>,
    /// State names in lower case (`oregon`, `carolina`): a lower-case town may precede them.
    pub states: Vec<u32>,
}

impl TokenLists {
    fn clear(&mut self) {
        self.runs.clear();
        self.lines.clear();
        self.shapes.clear();
        self.dashes.clear();
        self.mentions.clear();
        self.places.clear();
        self.states.clear();
    }

    /// Adds token `i` of `n` (`gap`: the bytes before it; `prev`: the token before it) to the
    /// lists it belongs in.
    #[inline(always)]
    fn add(&mut self, i: usize, n: usize, t: &Token, gap: &[u8], f: &Feat, prev: Option<&Feat>) {
        let Ok(k) = u32::try_from(i) else {
            return;
        };
        // The last byte before the token other than a space is `-`, `~` or the end of `—`.
        let dash = match gap {
            [] | [b' '] => false,
            _ => gap
                .iter()
                .rev()
                .find(|&&b| b != b' ')
                .is_some_and(|b| matches!(b, b'-' | b'~' | 0x94)),
        };
        if dash {
            self.dashes.push(k);
        }
        if f.cap_nameish() && !(f.initial && i + 1 >= n) {
            self.runs.push(k);
        }
        if f.sent_start {
            self.lines.push(k);
        }
        if t.end - t.start == 4 || f.namey() {
            self.shapes.push(k);
        }
        if f.word && !f.stop && (f.cap || !f.common()) {
            self.mentions.push(k);
        }
        // `New Britain`: a capitalised stop word that opens a listed place name too.
        if f.word
            && (!f.stop || (f.cap && f.flags & lexicon::PLACE_PREFIX != 0))
            && (f.cap || prev.is_some_and(|p| p.is(class::PRE)))
        {
            self.places.push(k);
        }
        if !f.cap && f.is(class::STATE) {
            self.states.push(k);
        }
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
    "mondays",
    "tuesdays",
    "wednesdays",
    "thursdays",
    "fridays",
    "saturdays",
    "sundays",
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
    // Roman numerals of a type or stage (`Type II DM`, `stage III`).
    "ii",
    "iii",
    "er",
    "ed",
    "icu",
    "lol",
    "omg",
    "btw",
    "fyi",
    "asap",
    "tmrw",
    "tmrrw",
    "tmw",
    "tmr",
    "tonite",
    "tomoro",
    "rly",
    "rlly",
    "thnx",
    "plz",
    "bday",
    "ppl",
    "idk",
    "tho",
    "wanna",
    "gonna",
    "gotta",
    "yall",
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
    // Roles, form labels, relatives, languages, thanks and specialties (stop 14).
    "agent",
    "portal",
    "assistant",
    "support",
    "school",
    "billing",
    "triage",
    "desk",
    "prescriber",
    "guarantor",
    "subscriber",
    "claimant",
    "requester",
    "requestor",
    "addr",
    "tel",
    "reason",
    "insured",
    "policyholder",
    "beneficiary",
    "applicant",
    "interpreter",
    "authorization",
    "auth",
    "dme",
    "dnr",
    "lvm",
    "hha",
    "fam",
    "med",
    "mri",
    "client",
    "niece",
    "nephew",
    "aunt",
    "uncle",
    "grandma",
    "grandpa",
    "cousin",
    "spanish",
    "vietnamese",
    "tagalog",
    "somali",
    "arabic",
    "mandarin",
    "cantonese",
    "korean",
    "russian",
    "portuguese",
    "haitian",
    "creole",
    "obrigada",
    "obrigado",
    "gracias",
    "merci",
    "salamat",
    "mahalo",
    "danke",
    "grazie",
    "spasibo",
    "urology",
    "neurology",
    "podiatry",
    "gastroenterology",
    "nephrology",
    "pulmonology",
    "endocrinology",
    "rheumatology",
    "hematology",
    "psychiatry",
    "audiology",
    "optometry",
    "ophthalmology",
    "geriatrics",
    // Kin words and honorifics of other languages before a name (`Manmi Roselène`, `Doña
    // Ximena`), and a Creole pronoun that opens sentences. Not `lola`, `tito`, `po`, `yung`:
    // they are names too (Lola, Tito, Po, Yung), as `english` and `french` are surnames.
    "kuya",
    "manmi",
    "tonton",
    "matant",
    "abuela",
    "abuelo",
    "abuelito",
    "abuelita",
    "doña",
    "dra",
    "sra",
    "srta",
    "señora",
    "señor",
    "mwen",
    "doc",
    // vCard and iCalendar components and properties (`BEGIN:VCARD`, `TRIGGER:-PT24H`).
    "vcard",
    "vcalendar",
    "vevent",
    "valarm",
    "vtodo",
    "vtimezone",
    "vjournal",
    "trigger",
    "prodid",
    "dtstamp",
    "dtstart",
    "dtend",
    "rrule",
    "exdate",
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
    // The curly apostrophe written straight (no copy when there is none).
    let l: std::borrow::Cow<'_, str> = if lower.contains('’') {
        lower.replace('’', "'").into()
    } else {
        lower.into()
    };
    l == "i"
        || ["'m", "'re", "'ve", "'ll", "'d", "n't"]
            .iter()
            .any(|s| l.ends_with(s))
        || matches!(
            &*l,
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

/// Classes of the small closed word lists the recognizers test tokens against, looked up
/// once per token (instead of scanning each list wherever a recognizer asks).
pub(crate) mod class {
    /// A stop word ([`super::STOP_WORDS`]; of the token without a possessive `'s`).
    pub const STOP: u16 = 1;
    /// A word that makes a capitalised run an organisation or place (names).
    pub const ORG: u16 = 2;
    /// A product or organisation word inside a capitalised run (names).
    pub const PRODUCT: u16 = 4;
    /// A name particle (`de`, `van`), when written in lower case.
    pub const PARTICLE: u16 = 8;
    /// A disease or sign named after a person (of the token without `'s`).
    pub const EPONYM: u16 = 16;
    /// A street suffix or `box` (places).
    pub const STREET: u16 = 32;
    /// A word that makes a place part of an organisation's name (places).
    pub const ORG_AFTER: u16 = 64;
    /// A word that puts a place after it (`in`, `from`, `near`).
    pub const PRE: u16 = 128;
    /// The first run of letters and digits of a context cue (`this` of `this is`, `dr` of
    /// `dr.`).
    pub const CUE_START: u16 = 256;
    /// A state's name or its last word (`oregon`, `carolina`; places).
    pub const STATE: u16 = 512;
    /// A word that names a login (`username`, `user`, `login`; structured).
    pub const LOGIN: u16 = 1024;
}

/// The closed word lists in one small open-addressing table keyed by the lexicon's 64-bit
/// word hash (a few KB, so it stays in cache; the hash is computed once per token and also
/// serves the lexicon lookup). A false match needs a 64-bit collision among ~600 words.
pub(crate) struct Vocab {
    table: Vec<(u64, u16)>,
    mask: usize,
}

impl Vocab {
    pub(crate) fn new() -> Vocab {
        let mut v = Vocab {
            table: vec![(0, 0); 4096],
            mask: 4095,
        };
        for (list, c) in [
            (STOP_WORDS, class::STOP),
            (PARTICLES, class::PARTICLE),
            (super::names::ORG_WORDS, class::ORG),
            (super::names::PRODUCT_OR_ORG, class::PRODUCT),
            (super::names::EPONYMS, class::EPONYM),
            (super::places::STREET_SUFFIXES, class::STREET),
            (super::places::ORG_AFTER, class::ORG_AFTER),
            (super::places::PRE_WORDS, class::PRE),
            (&super::validate::STATE_NAMES[..], class::STATE),
            (super::places::STATE_CODES_LOWER, class::STATE),
            (super::structured::LOGIN_WORDS, class::LOGIN),
        ] {
            for w in list {
                v.insert(lexicon::hash(w.as_bytes()), c);
            }
        }
        for w in super::context::cue_words() {
            let run = w.bytes().take_while(u8::is_ascii_alphanumeric).count();
            if let Some(head) = w.as_bytes().get(..run).filter(|h| !h.is_empty()) {
                v.insert(lexicon::hash(head), class::CUE_START);
            }
        }
        v
    }

    fn insert(&mut self, h: u64, c: u16) {
        let key = h | 1;
        let mut i = (h as usize) & self.mask;
        for _ in 0..=self.mask {
            let Some(slot) = self.table.get_mut(i) else {
                return;
            };
            if slot.0 == 0 || slot.0 == key {
                *slot = (key, slot.1 | c);
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The class bits of the word whose lexicon hash is `h` (0 when in no list).
    #[inline]
    pub(crate) fn get_hashed(&self, h: u64) -> u16 {
        let key = h | 1;
        let mut i = (h as usize) & self.mask;
        for _ in 0..=self.mask {
            match self.table.get(i) {
                Some(&(k, c)) if k == key => return c,
                Some(&(0, _)) | None => return 0,
                Some(_) => i = (i + 1) & self.mask,
            }
        }
        0
    }
}

/// `Oluwaseun St. Clair`, `Dr. St. Clair`: `St.` inside a name (after a capitalised word,
/// before another, not after a house number as in `12 Elm St. Salem`) joins like an initial.
fn saint(text: &str, tokens: &[Token], i: usize) -> bool {
    let bytes = text.as_bytes();
    let (Some(t), Some(next)) = (tokens.get(i), tokens.get(i + 1)) else {
        return false;
    };
    if text.get(t.start..t.end) != Some("St")
        || bytes.get(t.end..next.start) != Some(b". ")
        || !next.upper
        || next.kind != Kind::Word
        || i == 0
    {
        return false;
    }
    let prev = tokens[i - 1];
    let after_house_number = i >= 2 && tokens[i - 2].kind == Kind::Number;
    prev.upper && prev.kind == Kind::Word && !after_house_number && prev.end < t.start
}

/// A plain word: ASCII letters only, no inner apostrophe or hyphen (most words).
fn plain_word(t: &Token) -> bool {
    t.kind == Kind::Word && t.ascii && !t.joined
}

/// For each token, the [`lexicon::hash`] of its lower-cased text and its [`Vocab`] classes
/// when it is a plain word (ASCII letters only, no inner apostrophe or hyphen), `(0, 0)`
/// otherwise, into `out` (cleared first): computed once, used by the cue search and the
/// features.
pub(crate) fn word_keys(lower: &str, tokens: &[Token], vocab: &Vocab, out: &mut Vec<(u64, u16)>) {
    let lower_bytes = lower.as_bytes();
    out.clear();
    out.extend(tokens.iter().map(|t| {
        if plain_word(t) {
            let h = lexicon::hash(lower_bytes.get(t.start..t.end).unwrap_or(&[]));
            (h, vocab.get_hashed(h))
        } else {
            (0, 0)
        }
    }));
}

/// Computes the features of every token into `out` (cleared first) and the name passes'
/// token lists into `lists`; `keys` are the tokens' [`word_keys`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn compute(
    text: &str,
    lower: &str,
    tokens: &[Token],
    keys: &[(u64, u16)],
    lex: &Lexicon,
    vocab: &Vocab,
    near_cue: &[bool],
    out: &mut Vec<Feat>,
    lists: &mut TokenLists,
) {
    lists.clear();
    let n = tokens.len();
    let bytes = text.as_bytes();
    let lower_bytes = lower.as_bytes();
    let mut buf = String::new();
    out.clear();
    out.reserve(tokens.len());
    let mut prev_end = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        let gap = bytes.get(prev_end..t.start).unwrap_or(&[]);
        prev_end = t.end;
        let sent_start = i == 0
            || (gap != b" "
                && (gap.iter().any(|b| {
                    matches!(
                        b,
                        b'.' | b'!' | b'?' | b'\n' | b':' | b'-' | b'|' | b'>' | b'*' | b'\\'
                    )
                })
                // em dash (U+2014) and bullet (U+2022)
                || gap.windows(3).any(|w| w == [0xE2, 0x80, 0x94] || w == [0xE2, 0x80, 0xA2])))
            // `J. Paredes`: the full stop after an initial does not end a sentence.
            && !(i > 0
                && gap == b". "
                && tokens.get(i - 1).is_some_and(|p| {
                    p.end - p.start == 1 && p.upper && bytes.get(p.end) == Some(&b'.')
                }));
        if t.kind != Kind::Word {
            // Numbers and codes: no list flags, never stop words, possessives or initials.
            let f = Feat {
                cap: t.upper,
                all_caps: t.all_caps,
                sent_start,
                ..Feat::default()
            };
            lists.add(i, n, t, gap, &f, out.last());
            out.push(f);
            continue;
        }
        if let Some(&(h, class)) = keys.get(i).filter(|_| t.ascii && !t.joined) {
            // Most words: ASCII without an inner apostrophe or hyphen, so no possessive and
            // no parts; the same features as the general path below, with the hash and
            // classes of `word_keys`.
            let len = t.end - t.start;
            let lw = lower_bytes.get(t.start..t.end).unwrap_or(&[]);
            let stop_listed = class & class::STOP != 0;
            let flags = if (!t.upper
                && stop_listed
                && !matches!(lw, b"april" | b"june" | b"august" | b"may" | b"jan"))
                || (!t.upper && !near_cue.get(i).copied().unwrap_or(true))
            {
                0
            } else {
                lex.flags_hashed(h)
            };
            let cased_name = t.upper
                && matches!(
                    lw,
                    b"will" | b"may" | b"jan" | b"jun" | b"june" | b"april" | b"august"
                );
            // `I` is the one contraction without an apostrophe.
            let stop = !cased_name && (stop_listed || lw == b"i");
            let initial = t.upper
                && len <= 4
                && ((len == 1 && bytes.get(t.end) == Some(&b'.')) || saint(text, tokens, i));
            let f = Feat {
                flags,
                cap: t.upper,
                all_caps: t.all_caps,
                stop,
                possessive: false,
                sent_start,
                initial,
                word: true,
                class,
            };
            lists.add(i, n, t, gap, &f, out.last());
            out.push(f);
            continue;
        }
        let sb = bytes.get(t.start..t.end).unwrap_or(&[]);
        // A possessive has an inner apostrophe, so only joined tokens are tested.
        let curly = t.joined && sb.ends_with("\u{2019}s".as_bytes());
        let possessive = curly || (t.joined && sb.ends_with(b"'s"));
        let len = t.end - t.start;
        let base_len = if !possessive {
            len
        } else if curly {
            len - 4
        } else {
            len - 2
        };
        // The ASCII-lower-cased copy of the text has the same offsets: no copy needed.
        let lower_full = lower_bytes.get(t.start..t.end).unwrap_or(&[]);
        let lower_base = lower_full.get(..base_len).unwrap_or(lower_full);
        let h_full = lexicon::hash(lower_full);
        let h_base = if possessive {
            lexicon::hash(lower_base)
        } else {
            h_full
        };
        let mut class = vocab.get_hashed(h_full);
        if possessive {
            let base_class = vocab.get_hashed(h_base);
            class = (class & !(class::STOP | class::EPONYM))
                | (base_class & (class::STOP | class::EPONYM));
        }
        let ascii_word = t.ascii || (curly && sb.get(..base_len).is_some_and(<[u8]>::is_ascii));
        let s = || text.get(t.start..t.end).unwrap_or("");
        let base = || text.get(t.start..t.start + base_len).unwrap_or("");
        let mut flags = if ascii_word {
            // Lower-case stop words need no lexicon lookup (most tokens of prose).
            let quick_stop = !t.upper && class & class::STOP != 0;
            if quick_stop && !matches!(lower_base, b"april" | b"june" | b"august" | b"may" | b"jan")
            {
                0
            } else if !t.upper && !near_cue.get(i).copied().unwrap_or(true) {
                // Lower-case words far from a name cue are never read as names, so their
                // list flags are not needed (most tokens of prose): skip the lookup.
                0
            } else {
                lex.flags_hashed(h_base)
            }
        } else {
            lex.flags(base(), &mut buf)
        };
        if flags == 0 && t.joined && lower_base.contains(&b'-') {
            let mut part_buf = String::new();
            let mut all = true;
            let mut acc = 0u8;
            for p in base().split('-') {
                let f = lex.flags(p, &mut part_buf) & (lexicon::FIRST | lexicon::LAST);
                all &= f != 0;
                acc |= f;
            }
            if all {
                flags = acc;
            }
        }
        // The lower-cased base of the word, for the checks below (`lex.flags` left it in
        // `buf` for non-ASCII words).
        let lb: &[u8] = if ascii_word {
            lower_base
        } else {
            buf.as_bytes()
        };
        // `will`/`may` are stop words in lower case only: `Will Hallissey`, `May Chen`.
        let cased_name = t.upper
            && matches!(
                lb,
                b"will" | b"may" | b"jan" | b"jun" | b"june" | b"april" | b"august"
            );
        let stop_listed = if ascii_word {
            class & class::STOP != 0
        } else {
            vocab.get_hashed(lexicon::hash(lb)) & class::STOP != 0
        };
        // Contractions have an inner apostrophe (`I` is the one without).
        let stop = !cased_name
            && (stop_listed
                || ((t.joined || lb == b"i")
                    && is_contraction(std::str::from_utf8(lb).unwrap_or(""))));
        // One character (ASCII: one byte) followed by a full stop.
        let one_char = || {
            if t.ascii {
                len == 1
            } else {
                s().chars().count() == 1
            }
        };
        let initial = t.upper
            && len <= 4
            && ((bytes.get(t.end) == Some(&b'.') && one_char()) || saint(text, tokens, i));
        let f = Feat {
            flags,
            cap: t.upper,
            all_caps: t.all_caps,
            stop,
            possessive,
            sent_start,
            initial,
            word: true,
            class,
        };
        lists.add(i, n, t, gap, &f, out.last());
        out.push(f);
    }
}
