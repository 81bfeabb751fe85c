//! Structured identifiers, found by one multi-pattern automaton (`regex-automata`'s meta
//! engine: lazy DFA, linear time) and then validated and labelled from their shape and the
//! context cues before them.

use std::sync::Arc;

use regex_automata::hybrid;
use regex_automata::meta::Regex;
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, PatternID};

use super::context::{Cue, CueHit, cue_before, ident_label_before};
use super::validate;
use super::{Candidate, Recognizer, Text};
use crate::engine::PhiError;
use crate::{Label, Span};

/// The pattern families, in priority order (earlier wins when two start at the same place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P {
    Url,
    BareUrl,
    Email,
    Ipv4,
    Ipv6,
    Udi,
    DateIso,
    DateNum,
    DateMonthFirst,
    DateDayFirst,
    DateSpelled,
    Card,
    Ssn,
    Phone,
    PhoneIntl,
    PhoneTrunk,
    PostcodeUk,
    PostcodeCa,
    PostcodeAu,
    DayOrdinal,
    Spelled,
    SpelledHomophone,
    AgeSpelled,
    PoBox,
    Address,
    AddressSpoken,
    AddressAbroad,
    Unit,
    DateSpoken,
    DateEs,
    DateIntl,
    SpelledEs,
    AgeEs,
    TheDay,
    MonthYear,
    MonthAlone,
    PhoneMixed,
    SpokenMixed,
    EmailSpoken,
    SpelledCode,
    PhoneFiller,
    DigitsSpaced,
    County,
    Code,
}

const MONTH: &str = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)";
const ORDINAL_WORD: &str = r"(?:(?:twenty|thirty)[\s-]?)?(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|thirtieth)";
const NUMBER_WORD: &str = r"(?:oh|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand)";
/// A spoken digit as callers say them: `five`, `niner`, `double four`, `triple five`.
const SPOKEN_DIGIT: &str =
    r"(?:(?:double|triple)[\s-]+)?(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|niner)";
/// Words speech-to-text writes for spoken digits (`for` 4, `to`/`too` 2, `ate` 8, `won` 1).
const HOMOPHONES: [&str; 6] = ["for", "fore", "to", "too", "ate", "won"];

/// Whether `w` is one of [`HOMOPHONES`], in any case.
fn is_homophone(w: &str) -> bool {
    HOMOPHONES.iter().any(|h| h.eq_ignore_ascii_case(w))
}
/// A spoken pair of digits (`twenty two`, `seventy`, `forty-four`, `twelve`), as callers read
/// the last four digits of a phone number.
const SPOKEN_PAIR: &str = r"(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[\s-]+(?:one|two|three|four|five|six|seven|eight|nine)\b)?|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen)";
/// The decade words of a two-word year (`thirty five` in `the tenth of april thirty five`).
const DECADE_YEAR: &str = r"(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[\s-]+(?:one|two|three|four|five|six|seven|eight|nine))?";
const STREET_SUFFIX: &str = r"(?:st|street|ave|avenue|av|rd|road|blvd|boulevard|dr|drive|ln|lane|ct|court|way|pl|place|ter|terrace|cir|circle|pkwy|parkway|hwy|highway|trl|trail|sq|square|loop|pike|row|crescent|cres|walk|path|plaza|xing|crossing|alley|aly|expy|expressway|fwy|freeway|tpke|turnpike|hollow|ridge)";

fn patterns() -> Vec<(P, String)> {
    // One token of a number read out in pieces: a spoken digit, a spoken pair or a group of
    // digits as a transcriber wrote them (`seven seven three 482 oh nine one six`).
    let piece = format!(r"(?:{SPOKEN_DIGIT}|{SPOKEN_PAIR}|\d{{1,4}})");
    let homophone = format!("(?:{})", HOMOPHONES.join("|"));
    vec![
        (P::Url, r#"(?i)\b(?:https?://|www\.)[^\s<>()\[\]{}"\\]+"#.into()),
        (
            P::BareUrl,
            r#"(?i)\b(?:[a-z0-9-]{1,63}\.){1,8}(?:com|org|net|edu|gov|io|us|me|info|health|co)/[^\s<>()\[\]{}"\\]+"#.into(),
        ),
        (
            P::Email,
            r"(?i)\b[a-z0-9][a-z0-9._%+'-]{0,63}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?){0,8}\.[a-z]{2,24}\b".into(),
        ),
        (P::Ipv4, r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b".into()),
        (P::Ipv6, r"(?i)(?:\b[0-9a-f]{1,4}|::?)(?::{1,2}[0-9a-f]{0,4}){2,8}".into()),
        // A device's GS1 UDI in its human-readable form: the GTIN `(01)` and the production
        // identifiers after it (expiry `(17)`, lot `(10)`, serial `(21)`...).
        (
            P::Udi,
            r"\(01\)\s?\d{14}(?:\s?\((?:1[0-7]|2[0-9]|30)\)\s?[A-Za-z0-9-]{1,20})*".into(),
        ),
        // The date of an ISO 8601 date-time too (`2025-06-01T14:03:00Z`: the time is cut off).
        (P::DateIso, r"\b(?:1[89]|20)\d\d(?:[-/.]| [-/] )(?:0?[1-9]|1[0-2])(?:[-/.]| [-/] )(?:0?[1-9]|[12]\d|3[01])(?:\b|T\d)".into()),
        (
            P::DateNum,
            r"\b(?:\d{1,2}/\d{1,2}(?:/(?:\d{4}|\d{2}))?|\d{1,2}-\d{1,2}-(?:\d{4}|\d{2})|\d{1,2}\.\d{1,2}\.(?:\d{4}|\d{2})|\d{1,2} [/-] \d{1,2} [/-] \d{4})\b".into(),
        ),
        (
            P::DateMonthFirst,
            format!(
                r"(?i)\b{MONTH}\.?(?:\s+|-)(?:(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?\b(?:(?:,?\s*|-)(?:1[89]|20)\d\d\b|,?\s*'\d\d\b)?|(?:of\s+)?(?:1[89]|20)\d\d\b)"
            ),
        ),
        (
            P::DateDayFirst,
            format!(
                r"(?i)\b(?:0?[1-9]|[12]\d|3[01])(?:(?:st|nd|rd|th)?(?:\s+of)?[\s-]+{MONTH}\b\.?(?:(?:,?\s*|-)(?:(?:1[89]|20)\d\d|\d\d)\b)?|/{MONTH}/(?:1[89]|20)\d\d\b)"
            ),
        ),
        (
            P::Card,
            r"\b(?:\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{1,7}|\d{4}[ -]\d{6}[ -]\d{5}|\d{13,19})\b".into(),
        ),
        (
            P::DateSpelled,
            format!(
                r"(?i)\b(?:{MONTH}\s+(?:the\s+)?{ORDINAL_WORD}|(?:the\s+)?{ORDINAL_WORD}\s+of\s+{MONTH}|on\s+the\s+{ORDINAL_WORD}(?:\s+of\s+{MONTH})?)\b(?:,?\s+(?:(?:nineteen|twenty|two\s+thousand)(?:[\s-]+(?:and\s+)?{NUMBER_WORD}){{0,2}}|{DECADE_YEAR}|(?:1[89]|20)\d\d)\b)?"
            ),
        ),
        (P::Ssn, r"\b\d{3}(?:-\d{2}-|\s\d{2}\s|\.\d{2}\.)\d{4}\b".into()),
        (
            P::Phone,
            r"(?i)(?:\+?\b1[\s.-]?)?(?:(?:\(\d{3}\)\s?|\b\d{3}(?: [.-] |\.{2,3} ?|[\s.-])?)\d{3}(?: [.-] |\.{2,3} ?|[\s.-])?\d{4}|\b\d(?: \d){2}(?: [.-] |[ .-])\d(?: \d){2}(?: [.-] |[ .-])\d(?: \d){3})\b(?:,?\s*(?:ext\.?|x\.?|extension)\s*\d{1,6}\b| #\d{1,6}\b)?".into(),
        ),
        (
            P::PhoneIntl,
            // `+49 171 5530284`, and dialled from abroad with `00`: `0049 171 5530284`.
            r"(?:\+|\b00)\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}\b".into(),
        ),
        // `01423 567 890`, `0412 558 903`, `(07) 3870 5521`, `0809 555 2271`: a national
        // number with its trunk `0` (UK, Australia, India, Nigeria...), in groups.
        (
            P::PhoneTrunk,
            r"(?:\(0\d{1,4}\)\s?|\b0\d{2,4}[\s-])\d{3,4}[\s-]?\d{3,4}\b".into(),
        ),
        // Postcodes: UK (`HG1 4RF`, `CB22 5EJ`; the inward code's letters are never C, I, K,
        // M, O or V, so `3 PM` is none), Canadian (`L5H 2X9`), and Australian after the
        // state (`QLD 4066`).
        (
            P::PostcodeUk,
            r"\b[A-Z]{1,2}\d[A-Z\d]? \d[ABD-HJLNP-UW-Z]{2}\b".into(),
        ),
        (
            P::PostcodeCa,
            r"\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z] ?\d[ABCEGHJ-NPRSTV-Z]\d\b".into(),
        ),
        (
            P::PostcodeAu,
            r"\b(?:NSW|VIC|QLD|TAS|ACT|NT|SA|WA)\s+\d{4}\b".into(),
        ),
        (
            P::DayOrdinal,
            r"(?i)\b(?:on|by|until|before|after|since|monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tues?|wed|thu(?:rs?)?|fri|sat|sun)\s+the\s+(?:[12]?\d|3[01])(?:st|nd|rd|th)\b(?:\s+of\s+MONTH\b(?:,?\s+(?:1[89]|20)\d\d\b)?)?".replace("MONTH", MONTH),
        ),
        (
            P::Spelled,
            format!(
                // A caller's fillers between the digits too (`nine five six, uh, three ...`).
                r"(?i)\b{SPOKEN_DIGIT}(?:(?:\s*[,.-]\s*|\s+dash\s+|,?\s+(?:uh|um|er)[,.]*\s+|\s+){SPOKEN_DIGIT}){{3,}}\b"
            ),
        ),
        // `five five five for too one oh oh eight`: speech-to-text writes the digits that
        // sound like words as the words (checked in `judge`).
        (
            P::SpelledHomophone,
            format!(
                r"(?i)\b(?:{SPOKEN_DIGIT}|{homophone})(?:(?:\s*[,.-]\s*|\s+)(?:{SPOKEN_DIGIT}|{homophone})){{6,14}}\b"
            ),
        ),
        // `ninety four`, `ninety-one`, `a hundred and two`: an age when the context says so.
        (
            P::AgeSpelled,
            r"(?i)\b(?:ninety(?:[\s-]+(?:one|two|three|four|five|six|seven|eight|nine))?|(?:a|one)\s+hundred(?:\s+(?:and\s+)?(?:one|two|three|four|five|six|seven|eight|nine|ten))?|one\s+oh\s+(?:one|two|three|four|five|six|seven|eight|nine))\b".into(),
        ),
        // `PO Box 3008`; rural delivery (`Rural Route 2 Box 15`, `RR 3, Box 41`, `HC 1 Box 23`).
        (
            P::PoBox,
            format!(r"(?i)\b(?:(?:p\.?\s?o\.?\s*box|post\s+office\s+box)\s*#?\s*\d+|(?:rural\s+route|r\.?r\.?|hc|(?-i:[A-Z][a-z]+\s+)?(?:route|rte|rt)\.?)\s*\d+\s*,?\s*box\s*#?\s*\d+(?:-?[a-z]\b|\s(?-i:[A-Z])\b)?|(?:rural\s+)?route\s+{NUMBER_WORD}(?:[\s-]+{NUMBER_WORD}){{0,2}}\s+box\s+{NUMBER_WORD}(?:[\s-]+{NUMBER_WORD}){{0,3}}|(?:p\s+o|p\.\s?o\.|po|post\s+office)\s+box\s+(?:number\s+)?{NUMBER_WORD}(?:[\s-]+{NUMBER_WORD}){{0,4}})\b"),
        ),
        (
            P::Address,
            format!(
                r"(?i)\b(?:(?:flat|unit|plot|apartment|apt)\.?\s*#?\s*\d{{1,5}}[a-z]?(?:,\s*|\s*/\s*|\s+))?(?:[nsew]?\d{{1,6}}\s+(?:county|state|co\.?|us|fm|farm\s+to\s+market)\s+(?:road|rd|route|rte|highway|hwy)\s+(?:\d{{1,4}}[a-z]?|[a-z]{{1,2}})\b|\d{{1,6}}\s+(?:[nsew]\.?\s+)?broadway\b|[nsew]?\d{{1,6}}(?:-\d{{1,4}})?\s+(?:[nsew]\.?\s+)?(?:[a-z0-9][a-z0-9'.-]{{0,30}}\s+){{1,3}}{STREET_SUFFIX}\b\.?(?:\s+(?:[nsew]|ne|nw|se|sw|north|south|east|west)\b\.?)?|\d{{1,6}}\s+[nsew]\.?\s+\d{{1,6}}\s+[nsew]\b\.?)(?:\s?\\?,?\s*(?:(?:apt|apartment|unit|suite|ste|lot|bldg|building|fl|floor|rm|room|trlr|space|spc|#|no\.?)\.?\s*#?\s*[a-z0-9-]+\b|\d{{1,2}}(?:st|nd|rd|th)\s+(?:fl|floor)\b))?"
            ),
        ),
        // `four twelve birch hollow road apartment three` (a voicemail): after `at`, `on` or a
        // living word, checked in `judge`.
        (
            P::AddressSpoken,
            format!(
                r"(?i)\b{NUMBER_WORD}(?:[\s-]+{NUMBER_WORD}){{0,4}}\s+(?:[a-z]+\s+){{1,3}}(?:street|road|avenue|drive|lane|court|boulevard|place|circle|trail|highway|parkway|way)\b(?:\s+(?:apartment|apt|unit|suite|number)\s+{NUMBER_WORD}(?:[\s-]+{NUMBER_WORD}){{0,2}}\b(?:\s+[a-h]\b)?)?"
            ),
        ),
        // Street addresses in the forms of other languages: `Rua Doutor Arnaldo, 455 - apto
        // 12`, `Calle Libertad 1842`, `4580 rue Saint-Denis, app. 7` (checked in `judge`).
        (
            P::AddressAbroad,
            r"(?i)\b(?:(?:rua|avenida|av\.|calle|carrera|cra\.|viale|piazza|corso|chemin|travessa|alameda|estrada|paseo|camino|ulica|ul\.)\s+(?:[^\s,;()]+\s+){0,4}?[^\s,;()]+,?\s+(?:n(?:o|°|º)\.?\s*)?\d{1,5}[a-z]?|\d{1,5}[a-z]?,?\s+(?:rue|chemin|impasse|calle|rua)\s+(?:[^\s,;()]+\s+){0,3}?[^\s,;()]+)(?:\s*,?\s*-?\s*(?:apto|apt|app|appt|dpto|depto|piso|bloco|casa|m)\.?\s*\d{1,4}[a-z]?\b)?".into(),
        ),
        // An apartment on its own (`Address line 2: Apt 12C`); not a suite, which is more
        // often a clinic's than a patient's.
        (
            P::Unit,
            r"(?i)\b(?:apt|apartment)\.?\s*#?\s*\d{1,5}[a-z]?\b".into(),
        ),
        // A date in number words after a birth cue (`born eleven oh six nineteen sixty four`).
        (
            P::DateSpoken,
            format!(r"(?i)\b{NUMBER_WORD}(?:,?[\s-]+{NUMBER_WORD}){{2,6}}\b"),
        ),
        // Spanish, the second language of many practices' patients: `13 de noviembre`,
        // `3 de mayo de 1925`; a phone number in Spanish digit words; `cien años`.
        (
            P::DateEs,
            r"(?i)\b(?:0?[1-9]|[12]\d|3[01])\s+de\s+(?:enero|febrero|marzo|abril|mayo|junio|julio|agosto|sep?tiembre|octubre|noviembre|diciembre)(?:\s+(?:de|del)\s+(?:1[89]|20)\d\d)?\b".into(),
        ),
        // The same in the other languages patients write in: `5 mai 1961`, `5. Mai 1961`,
        // `12 de março de 1950`, `14 lutego`, `3 мая 1941 г.`, `23 tháng 9 năm 1988`,
        // `1972年3月8日`, `1985년 3월 5일`. (Month words that are also English words, such as
        // Creole `me` and `out`, are left out.)
        (
            P::DateIntl,
            r"(?i)(?:\b(?:0?[1-9]|[12]\d|3[01])\.?\s+(?:de\s+)?(?:janvier|f(?:e|é)vrier|mars|avril|mai|juin|juillet|ao(?:u|û)t|septembre|octobre|novembre|d(?:e|é)cembre|janeiro|fevereiro|mar(?:c|ç)o|maio|junho|julho|setembro|outubro|dezembro|gennaio|febbraio|marzo|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre|januar|februar|m(?:a|ä)rz|maerz|juni|juli|oktober|dezember|stycznia|lutego|marca|kwietnia|maja|czerwca|lipca|sierpnia|wrze(?:s|ś)nia|pa(?:z|ź)dziernika|listopada|grudnia|janvye|fevriye|jiy(?:e|è)|septanm|okt(?:o|ò)b|novanm|desanm)(?:\s+(?:de\s+)?(?:1[89]|20)\d\d(?:\s*r\.)?)?\b|\b(?:0?[1-9]|[12]\d|3[01])\s+(?:января|февраля|марта|апреля|мая|июня|июля|августа|сентября|октября|ноября|декабря)(?:\s+(?:1[89]|20)\d\d\b(?:\s*г\.)?)?|\b(?:0?[1-9]|[12]\d|3[01])\s+tháng\s+(?:0?[1-9]|1[0-2])\b(?:(?:\s+năm|,)\s+(?:1[89]|20)\d\d\b)?|(?:(?:1[89]|20)\d\d\s?年\s?)?(?:0?[1-9]|1[0-2])\s?月\s?(?:0?[1-9]|[12]\d|3[01])\s?日|(?:(?:1[89]|20)\d\d\s?년\s?)?(?:0?[1-9]|1[0-2])\s?월\s?(?:0?[1-9]|[12]\d|3[01])\s?일)".into(),
        ),
        (
            P::SpelledEs,
            r"(?i)\b(?:cero|uno|dos|tres|cuatro|cinco|seis|siete|ocho|nueve)(?:(?:\s*[,.-]\s*|\s+)(?:cero|uno|dos|tres|cuatro|cinco|seis|siete|ocho|nueve)){6,}\b".into(),
        ),
        (
            P::AgeEs,
            r"(?i)\b(?:noventa(?:\s+y\s+(?:uno|dos|tres|cuatro|cinco|seis|siete|ocho|nueve))?|cien(?:to\s+(?:uno|dos|tres|cuatro|cinco|seis|siete|ocho|nueve))?|\d{2,3})\s+años\b".into(),
        ),
        // `can u move me to the 19th?`, `the 26th works`: a day of the month after `the`,
        // unless a noun follows (`the 3rd floor`, checked in `judge`).
        (
            P::TheDay,
            r"(?i)\bthe\s+(?:uh\s+|um\s+)?(?:(?:[12]?\d|3[01])(?:st|nd|rd|th)|(?:(?:twenty|thirty)[\s-]?)?(?:fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|thirtieth|first|second|third))\b".into(),
        ),
        // `04/2025`: a month and a year, more specific than a year.
        (
            P::MonthYear,
            r"\b(?:0?[1-9]|1[0-2])/(?:19|20)\d\d\b".into(),
        ),
        // `since January`, `in Jan`, `last replaced ~Nov`: a month on its own is a date
        // element more specific than a year (written with a capital; checked in `judge`).
        (
            P::MonthAlone,
            r"(?:\b(?i:since|until|till|through|thru|in|by|last|next|early|mid|late|before|after|from)\s+|~)(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sept?(?:ember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b".into(),
        ),
        // `540 four three three nine oh one six`: an area code in digits, the rest spoken.
        (
            P::PhoneMixed,
            format!(r"(?i)\b\d{{3}}(?:\s*[,.-]\s*|\s+){SPOKEN_DIGIT}(?:(?:\s*[,.-]\s*|\s+){SPOKEN_DIGIT}){{3,6}}\b"),
        ),
        // `four one five 3 9 2 zero seven seven one`, `7 7 3 nine oh five twenty two seventy
        // four`: spoken digits and written digits mixed (checked in `judge`).
        (
            P::SpokenMixed,
            format!(
                r"(?i)\b{piece}(?:(?:\s*[,.-]\s*|\s+dash\s+|,?\s+(?:uh|um|er)[,.]*\s+|\s+){piece}){{3,15}}\b"
            ),
        ),
        // `k dot zebari at gmail dot com`: an address read out.
        (
            P::EmailSpoken,
            format!(r"(?i)\b(?:[a-z]\s+)?[a-z0-9]+(?:\s+(?:dot|underscore)\s+[a-z0-9]+|\s+{NUMBER_WORD}){{0,3}}\s+at\s+[a-z0-9]+(?:\s+dot\s+[a-z0-9]+){{0,3}}\s+dot\s+(?:com|org|net|edu|gov|us)\b"),
        ),
        // `medicare number is two r w five q eight ...`: letters and digits read out, after
        // an identifier cue (checked in `judge`).
        (
            P::SpelledCode,
            // `m as in mary`, `g like golf`; a transcript's pauses (`...`) between groups.
            format!(r"(?i)\b(?:[a-z]\s+(?:as\s+in|like)\s+[a-z]+|[a-z]|{SPOKEN_DIGIT}|\d{{1,4}})(?:(?:[\s,-]|\.\.\.?|…)+(?:[a-z]\s+(?:as\s+in|like)\s+[a-z]+|[a-z]|{SPOKEN_DIGIT}|\d{{1,4}})){{4,15}}\b"),
        ),
        // `704 uhh 918 2265`: a caller's filler inside a number typed or transcribed.
        (
            P::PhoneFiller,
            r"(?i)\b\d{3}[,.]?\s+(?:u+h+|u+m+|er|like|hmm)[,.]*\s+\d{3}[\s.-]?\d{4}\b".into(),
        ),
        // `Rx number? 6 0 4 4 8 1 2`, `DOB? 3 3 1977`: digits one by one, or a date's parts,
        // after a cue (checked in `judge`).
        (
            P::DigitsSpaced,
            // A transcript's pauses as `...` between groups too (`9 1 7 ... 4 4 2 ... 0 6 6 3`).
            r"\b(?:\d(?:(?: | ?(?:\.{2,3}|…) ?)\d){3,11}|\d{1,2} \d{1,2} (?:19|20)\d\d)\b".into(),
        ),
        (
            P::County,
            r"\b(?:[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?\s+(?:County|Parish|Borough)|[A-Z]{3,}(?:\s+[A-Z]{3,})?\s+(?:COUNTY|PARISH|BOROUGH))\b".into(),
        ),
        (
            P::Code,
            r"#?\b(?:[A-Za-z0-9]+-)*[A-Za-z0-9]*\d[A-Za-z0-9]*(?:-[A-Za-z0-9]+)*\b".into(),
        ),
    ]
}

/// Makes a per-thread cache for [`Patterns::fast`].
type CacheFn = Box<
    dyn Fn() -> hybrid::regex::Cache
        + Send
        + Sync
        + std::panic::RefUnwindSafe
        + std::panic::UnwindSafe,
>;

/// The structured-identifier recognizer.
pub(crate) struct Patterns {
    /// All patterns in one automaton: one leftmost-first pass over the text.
    re: Regex,
    /// The same patterns as a lazy DFA used directly (the meta engine's per-search set-up
    /// was a tenth of the search time; a search is a short run over a few words). When it
    /// gives up (its cache thrashing on an unusual text), `re` answers instead: both find the
    /// same leftmost-first matches.
    fast: Arc<hybrid::regex::Regex>,
    caches: Pool<hybrid::regex::Cache, CacheFn>,
    kinds: Vec<P>,
}

impl Patterns {
    pub(crate) fn new() -> Result<Patterns, PhiError> {
        let pats = patterns();
        let kinds = pats.iter().map(|(k, _)| *k).collect();
        let srcs: Vec<&str> = pats.iter().map(|(_, s)| s.as_str()).collect();
        let build = |srcs: &[&str]| {
            Regex::builder()
                .configure(
                    Regex::config()
                        .which_captures(regex_automata::nfa::thompson::WhichCaptures::Implicit)
                        .hybrid_cache_capacity(8 * 1024 * 1024),
                )
                .syntax(
                    regex_automata::util::syntax::Config::new()
                        .unicode(false)
                        .utf8(false),
                )
                .build_many(srcs)
                .map_err(|_| PhiError::Build {
                    recognizer: "patterns",
                })
        };
        let re = build(&srcs)?;
        let fast = hybrid::regex::Builder::new()
            .syntax(
                regex_automata::util::syntax::Config::new()
                    .unicode(false)
                    .utf8(false),
            )
            .thompson(
                regex_automata::nfa::thompson::Config::new()
                    .which_captures(regex_automata::nfa::thompson::WhichCaptures::None),
            )
            .dfa(
                hybrid::dfa::Config::new()
                    .cache_capacity(8 * 1024 * 1024)
                    // Give up (and let the meta engine search) rather than thrash.
                    .minimum_cache_clear_count(Some(3))
                    .minimum_bytes_per_state(Some(10))
                    // Anchored searches for one pattern: the retry when the preferred match
                    // fails validation (one automaton, rather than one regex per pattern
                    // built at start-up).
                    .starts_for_each_pattern(true),
            )
            .build_many(&srcs)
            .map_err(|_| PhiError::Build {
                recognizer: "patterns",
            })?;
        let fast = Arc::new(fast);
        let for_cache = Arc::clone(&fast);
        let make: CacheFn = Box::new(move || for_cache.create_cache());
        let caches = Pool::new(make);
        Ok(Patterns {
            re,
            fast,
            caches,
            kinds,
        })
    }
}

/// A labelled candidate produced by a validator.
struct Found {
    start: usize,
    end: usize,
    label: Label,
    confidence: f32,
}

impl Recognizer for Patterns {
    fn name(&self) -> &'static str {
        "patterns"
    }

    fn find(&self, doc: &Text<'_>, out: &mut Vec<Candidate>) {
        let text = doc.text;
        let mut cache = self.caches.get();
        let mut pos = 0;
        while pos < text.len() {
            let input = Input::new(text).range(pos..);
            let m = match self.fast.try_search(&mut cache, &input) {
                Ok(m) => m,
                Err(_) => self.re.search(&input),
            };
            let Some(m) = m else {
                break;
            };
            let mut found = self.judge(doc, m.pattern(), m.start(), m.end());
            let mut end = m.end();
            if found.is_none() {
                // The preferred pattern failed validation: try the later ones anchored here.
                let first = m.pattern().as_usize() + 1;
                for pid in first..self.kinds.len() {
                    let Ok(p) = PatternID::new(pid) else {
                        break;
                    };
                    let input = Input::new(text)
                        .range(m.start()..)
                        .anchored(Anchored::Pattern(p));
                    let m2 = match self.fast.try_search(&mut cache, &input) {
                        Ok(m2) => m2,
                        Err(_) => self.re.search(&input),
                    };
                    if let Some(m2) = m2
                        && let Some(f) = self.judge(doc, p, m2.start(), m2.end())
                    {
                        {
                            end = m2.end();
                            found = Some(f);
                            break;
                        }
                    }
                }
                if found.is_none() {
                    // Skip past the token start so the rest of the match is searched again.
                    end = next_boundary(text, m.start());
                }
            }
            if let Some(f) = found {
                out.push(Span {
                    start: f.start,
                    end: f.end,
                    label: f.label,
                    confidence: f.confidence,
                    recognizer: self.name(),
                });
            }
            pos = end.max(next_boundary(text, m.start()));
        }
        grouped_after_cues(doc, out);
    }
}

/// `plate CV 48213`, `plate VT HRM 442`, `driver's licence is 11 223 458`: after a plate or
/// licence cue, a number written in groups (capitals and digits, a space or hyphen apart, a
/// digit somewhere), which the one-token patterns see only in pieces. A state code opening
/// a plate is not part of it.
fn grouped_after_cues(doc: &Text<'_>, out: &mut Vec<Candidate>) {
    let text = doc.text;
    for c in &doc.cues {
        let label = match c.cue {
            Cue::Ident(
                l @ (Label::Vehicle
                | Label::License
                | Label::HealthPlan
                | Label::Mrn
                | Label::Account
                | Label::Id),
            ) => l,
            // `ucare id UC 0093 4471 02`: the label of the cue just before a bare `ID`, if
            // any.
            Cue::GenericId => ident_label_before(&doc.cues, c.end, 0).unwrap_or(Label::Id),
            _ => continue,
        };
        // `medicaid # its WQ 88 ...`, `card, number was 9182 ...`, `Medicaid ID ...`: words
        // between the cue and the number (compared in lower case: the lower-cased text has
        // the same offsets).
        let rest_lower = doc.lower.get(c.end..).unwrap_or("");
        let mut r = rest_lower.trim_start_matches([' ', ':', '#', '.', ',']);
        for w in [
            "id", "card", "number", "no.", "is", "its", "it's", "was", "#",
        ] {
            if let Some(x) = r.strip_prefix(w).filter(|x| x.starts_with([' ', ','])) {
                r = x.trim_start_matches([' ', ':', '#', ',']);
            }
        }
        let lead = rest_lower.len() - r.len();
        let start = c.end + lead;
        let b = text.as_bytes();
        let mut at = start;
        let mut groups: Vec<(usize, usize)> = Vec::new();
        while groups.len() < 6 {
            let len = b.get(at..).map_or(0, |r| {
                r.iter()
                    .take_while(|x| x.is_ascii_uppercase() || x.is_ascii_digit())
                    .count()
            });
            if len == 0 || len > 8 || b.get(at + len).is_some_and(u8::is_ascii_alphabetic) {
                break;
            }
            groups.push((at, at + len));
            match (b.get(at + len), b.get(at + len + 1)) {
                (Some(b' ' | b'-'), Some(n)) if n.is_ascii_uppercase() || n.is_ascii_digit() => {
                    at += len + 1;
                }
                _ => break,
            }
        }
        // A state code first: `VT HRM 442` is plate `HRM 442`.
        if label == Label::Vehicle
            && groups.len() >= 2
            && groups
                .first()
                .and_then(|&(s, e)| text.get(s..e))
                .is_some_and(|g| g.len() == 2 && validate::is_state(g))
        {
            groups.remove(0);
        }
        // Other numbers (`MOH 8837 2201 A`, `CIH 0114 782`): a letter prefix, then groups
        // with digits, perhaps a final letter; a label after the number (`H4418 DOB`) is
        // not part of it.
        if !matches!(label, Label::Vehicle | Label::License) {
            let has_digit = |&(s, e): &(usize, usize)| b[s..e].iter().any(u8::is_ascii_digit);
            let mut keep = 0;
            for (i, g) in groups.iter().enumerate() {
                let len = g.1 - g.0;
                let ok = has_digit(g)
                    || (i == 0 && len <= 4)
                    || (i > 0 && len == 1 && i + 1 == groups.len());
                if !ok {
                    break;
                }
                keep = i + 1;
            }
            groups.truncate(keep);
            if groups.len() == 1 && !groups.first().is_some_and(has_digit) {
                continue;
            }
        }
        let (Some(&(s, _)), Some(&(_, e))) = (groups.first(), groups.last()) else {
            continue;
        };
        let piece = text.get(s..e).unwrap_or("");
        let alnum = piece.bytes().filter(u8::is_ascii_alphanumeric).count();
        // Plates and licences are short; member, account and tracking numbers can be long
        // (`MXR 4408 1172 09`, `9400 1118 9922 3817 4420 17`).
        let most = if matches!(label, Label::Vehicle | Label::License) {
            12
        } else {
            24
        };
        if groups.len() >= 2
            && (4..=most).contains(&alnum)
            && piece.bytes().any(|x| x.is_ascii_digit())
        {
            out.push(Span {
                start: s,
                end: e,
                label,
                confidence: 0.85,
                recognizer: "patterns",
            });
        }
    }
}

/// The next char boundary after `i`, skipping to the end of the current alphanumeric run.
fn next_boundary(text: &str, i: usize) -> usize {
    let bytes = text.as_bytes();
    let mut j = i + 1;
    while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || !text.is_char_boundary(j)) {
        j += 1;
    }
    j.min(text.len())
}

impl Patterns {
    fn judge(&self, doc: &Text<'_>, pid: PatternID, start: usize, end: usize) -> Option<Found> {
        let kind = *self.kinds.get(pid.as_usize())?;
        let text = doc.text;
        let s = text.get(start..end)?;
        let cues = &doc.cues;
        let found = |label, confidence| {
            Some(Found {
                start,
                end,
                label,
                confidence,
            })
        };
        match kind {
            P::Url if standards_url(s) => None,
            P::Url => {
                let trimmed = s.trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '"']);
                Some(Found {
                    start,
                    end: start + trimmed.len(),
                    label: Label::Url,
                    confidence: 0.95,
                })
            }
            P::BareUrl if standards_url(s) => None,
            P::BareUrl => {
                let trimmed = s.trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '"']);
                Some(Found {
                    start,
                    end: start + trimmed.len(),
                    label: Label::Url,
                    confidence: 0.85,
                })
            }
            // `Message-ID: <CAF8x2@mail.gmail.com>`: a message's id, not a mailbox.
            P::Email if before_window(&doc.lower, start, 14).ends_with("message-id: <") => None,
            P::Email => found(Label::Email, 0.97),
            P::Ipv4 => {
                if s.parse::<std::net::Ipv4Addr>().is_ok() && !is_version_like(&doc.lower, start) {
                    found(Label::Ip, 0.9)
                } else {
                    None
                }
            }
            P::Ipv6 => {
                let t = s.trim_end_matches(':');
                if t.matches(':').count() >= 2 && t.parse::<std::net::Ipv6Addr>().is_ok() {
                    Some(Found {
                        start,
                        end: start + t.len(),
                        label: Label::Ip,
                        confidence: 0.9,
                    })
                } else {
                    None
                }
            }
            P::DateIso => {
                let date = s
                    .strip_suffix(|c: char| c.is_ascii_digit())
                    .and_then(|d| d.strip_suffix('T'))
                    .unwrap_or(s);
                // `1983 - 10 - 07` (spaced, as OCR leaves it) is checked without the spaces.
                let ok = if date.contains(' ') {
                    validate::iso_date(&date.replace(' ', ""))
                } else {
                    validate::iso_date(date)
                };
                if ok {
                    Some(Found {
                        start,
                        end: start + date.len(),
                        label: Label::Date,
                        confidence: 0.95,
                    })
                } else {
                    None
                }
            }
            P::DateNum => {
                if !validate::numeric_date(s) {
                    return None;
                }
                if has_year(s) {
                    found(Label::Date, 0.92)
                } else if fraction_context(&doc.lower, start, end)
                    || cue_before(cues, start, 2).is_some_and(|c| c.cue == Cue::NotPhi)
                {
                    None
                } else {
                    found(Label::Date, 0.8)
                }
            }
            P::DateMonthFirst | P::DateDayFirst => {
                // `K 5.9 may be`: a decimal and the verb, not a day and a month.
                let decimal = start >= 2
                    && text.as_bytes().get(start - 1) == Some(&b'.')
                    && text
                        .as_bytes()
                        .get(start - 2)
                        .is_some_and(u8::is_ascii_digit);
                if decimal || (kind == P::DateDayFirst && s.ends_with(" may")) {
                    return None;
                }
                if validate::month_date(s) {
                    // `3rd of March.`: the sentence's full stop is not part of the date.
                    let last_word = s.trim_end_matches('.').rsplit(' ').next().unwrap_or("");
                    let end = if s.ends_with('.') && last_word.len() > 4 {
                        end - 1
                    } else {
                        end
                    };
                    Some(Found {
                        start,
                        end,
                        label: Label::Date,
                        confidence: 0.9,
                    })
                } else {
                    None
                }
            }
            P::Ssn => {
                let label = ident_label_before(cues, start, 40);
                match label {
                    Some(Label::Phone | Label::Fax) => None,
                    Some(l @ (Label::Ssn | Label::Account | Label::Id | Label::HealthPlan)) => {
                        found(l, 0.95)
                    }
                    _ if validate::ssn(s) => found(Label::Ssn, 0.9),
                    _ => found(Label::Id, 0.6),
                }
            }
            P::Phone => {
                let digits = s.bytes().filter(u8::is_ascii_digit).count();
                if digits < 10 {
                    return None;
                }
                // `npi is 1234567893`, `MRN 5551234567`: a number shaped like a phone but
                // announced as something else.
                let label = match ident_label_before(cues, start, 16) {
                    Some(l)
                        if !matches!(
                            l,
                            Label::Phone | Label::Fax | Label::Location | Label::Ip
                        ) =>
                    {
                        l
                    }
                    _ => phone_label(cues, start),
                };
                found(label, 0.9)
            }
            P::Spelled => {
                // `date of birth is oh three oh nine seventy six`: digits spoken after a birth
                // cue are the date, with the number words that finish it.
                if cue_before(cues, start, 12).is_some_and(|c| c.cue == Cue::Birth) {
                    return Some(Found {
                        start,
                        end: spoken_number_end(&doc.lower, end),
                        label: Label::Date,
                        confidence: 0.85,
                    });
                }
                // Seven or more digits make a phone number; four to six need a cue
                // (`MRN one two three four five`), five or nine after a state are a ZIP code
                // (`oregon nine seven zero zero six`).
                let words = spoken_digit_count(s);
                // `five five five three for too one ...`: speech-to-text wrote some digits as
                // words that sound like them; `SpelledHomophone` reads the whole number.
                if words < 10 && homophone_then_digit(&doc.lower, end) {
                    return None;
                }
                // `nine one seven three three oh 2 6 4 8`: written digits go on where the
                // words stop, and `SpokenMixed` reads the whole number.
                if words < 10
                    && after_window(&doc.lower, end, 3)
                        .strip_prefix(' ')
                        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                {
                    return None;
                }
                let cue = ident_label_before(cues, start, 30);
                if matches!(words, 5 | 9) && zip_context(doc, start) {
                    return found(Label::Location, 0.85);
                }
                if words < 7 && cue.is_none() {
                    return None;
                }
                let label = match ident_label_before(cues, start, 60) {
                    Some(Label::Fax) => Label::Fax,
                    Some(
                        l @ (Label::Ssn
                        | Label::Mrn
                        | Label::Account
                        | Label::HealthPlan
                        | Label::Id
                        | Label::License
                        | Label::Location),
                    ) => l,
                    _ => Label::Phone,
                };
                spoken_found(doc, start, end, label, 0.85)
            }
            P::SpelledHomophone => self.judge_homophones(doc, start, end),
            P::AgeSpelled => {
                if age_context(&doc.lower, start, end) || age_after_person(doc, start, end) {
                    found(Label::Age, 0.85)
                } else {
                    None
                }
            }
            P::PhoneIntl => {
                let mut digits = s.bytes().filter(u8::is_ascii_digit).count();
                // `0049 171 ...`: the `00` is the dialling prefix, written in groups of
                // spaces; a bare `00123456` is a record number's zeros, `00378-7185-01` a
                // drug's NDC.
                if let Some(rest) = s.strip_prefix("00") {
                    if rest.starts_with('0') || !rest.contains(' ') || rest.contains(['-', '.']) {
                        return None;
                    }
                    digits -= 2;
                }
                if !(8..=15).contains(&digits) {
                    return None;
                }
                found(phone_label(cues, start), 0.85)
            }
            P::PhoneTrunk => {
                let digits = s.bytes().filter(u8::is_ascii_digit).count();
                let second = s.bytes().filter(u8::is_ascii_digit).nth(1);
                if !(10..=11).contains(&digits) || second == Some(b'0') {
                    return None;
                }
                found(phone_label(cues, start), 0.8)
            }
            P::PostcodeUk | P::PostcodeCa => found(Label::Location, 0.8),
            P::PostcodeAu => {
                let code = s.len() - 4;
                Some(Found {
                    start: start + code,
                    end,
                    label: Label::Location,
                    confidence: 0.8,
                })
            }
            P::DayOrdinal if ordinal_noun_after(&doc.lower, end) => None,
            P::DayOrdinal => {
                // `on the 3rd`, `Friday the 13th`, `on the 26th of November`: the day (and
                // month), without the words before it.
                let day = s
                    .find(|c: char| c.is_ascii_digit())
                    .map_or(start, |i| start + i);
                Some(Found {
                    start: day,
                    end,
                    label: Label::Date,
                    confidence: 0.8,
                })
            }
            P::Card => {
                // `20250603143055`: an HL7 date-time, not a card number.
                if compact_datetime(s) {
                    return None;
                }
                let cue = ident_label_before(cues, start, 40);
                if validate::luhn(s) && cue.is_none_or(|l| l == Label::Account) {
                    found(Label::Account, 0.9)
                } else if let Some(l) = cue {
                    found(l, 0.85)
                } else {
                    None
                }
            }
            P::DateSpelled => {
                // `on the twelfth`: the date is the ordinal, not the words before it.
                let lower = s.to_ascii_lowercase();
                let skip = if lower.starts_with("on the ") {
                    7
                } else if lower.starts_with("the ") {
                    4
                } else {
                    0
                };
                Some(Found {
                    start: start + skip,
                    end,
                    label: Label::Date,
                    confidence: 0.85,
                })
            }
            P::PoBox => found(Label::Address, 0.95),
            P::Udi => found(Label::Device, 0.95),
            P::Address => {
                if validate::address_words_ok(s) {
                    found(Label::Address, 0.85)
                } else {
                    None
                }
            }
            P::AddressSpoken => {
                let before = before_window(&doc.lower, start, 24);
                let last = before.trim_end().rsplit(' ').next().unwrap_or("");
                let cue = [
                    "at", "on", "is", "its", "it's", "to", "address", "live", "lives", "living",
                ]
                .contains(&last)
                    && before.ends_with(' ');
                (cue && validate::address_words_ok(s)).then_some(Found {
                    start,
                    end,
                    label: Label::Address,
                    confidence: 0.8,
                })
            }
            P::AddressAbroad => {
                // The street's name after its type is written with a capital (or a letter
                // beyond ASCII): `calle de la amargura 5` in a sentence is taken too, but
                // `corso di 3 ore` is not an address.
                let first_word_start = s
                    .find(char::is_whitespace)
                    .map(|i| s[i..].trim_start())
                    .unwrap_or("");
                let number_first = s.starts_with(|c: char| c.is_ascii_digit());
                let named = first_word_start
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_uppercase() || !c.is_ascii());
                let name_has_letters = first_word_start
                    .split_whitespace()
                    .next()
                    .is_some_and(|w| w.chars().all(|c| !c.is_ascii_digit()));
                if (named || number_first) && name_has_letters {
                    found(Label::Address, 0.8)
                } else {
                    None
                }
            }
            P::Unit => found(Label::Address, 0.75),
            P::DateSpoken => {
                // `born in nineteen ninety four` is a year alone: not PHI.
                let words = s.split_whitespace().count();
                let lower = s.to_ascii_lowercase();
                let year_only = words <= 3
                    && (lower.starts_with("nineteen ")
                        || lower.starts_with("twenty ")
                        || lower.starts_with("two thousand"));
                if !year_only && cue_before(cues, start, 12).is_some_and(|c| c.cue == Cue::Birth) {
                    found(Label::Date, 0.85)
                } else {
                    None
                }
            }
            P::DateEs | P::DateIntl => found(Label::Date, 0.85),
            P::SpelledEs => found(phone_label(cues, start), 0.8),
            P::AgeEs => {
                let number = s.trim_end_matches("años").trim_end();
                let over = match number.parse::<u32>() {
                    Ok(n) => n >= 90,
                    Err(_) => true,
                };
                over.then_some(Found {
                    start,
                    end: start + number.len(),
                    label: Label::Age,
                    confidence: 0.85,
                })
            }
            P::TheDay => {
                // `the 18th of this month`, `the 22nd of January 2025`: a day, and the month
                // and year that follow.
                let of_month = month_after_of(&doc.lower, end);
                // Not `the 3rd floor`, `the first time`, `the 2nd dose`.
                let noun = of_month.is_none() && ordinal_noun_after(&doc.lower, end);
                let end = of_month.unwrap_or(end);
                let lower = s.to_ascii_lowercase();
                // `first`, `second`, `third` alone are too common a word: only with a cue.
                let common = ["first", "second", "third"]
                    .iter()
                    .any(|w| lower.ends_with(w))
                    && !lower.contains("twenty")
                    && !lower.contains("thirty");
                if noun || (common && cue_before(cues, start, 20).is_none()) {
                    return None;
                }
                let day = s
                    .rfind(|c: char| c.is_ascii_whitespace())
                    .map_or(start, |i| start + i + 1);
                // `the twenty second`: both words.
                let day = if lower.contains("twenty ") || lower.contains("thirty ") {
                    start
                        + lower
                            .find("twenty ")
                            .or_else(|| lower.find("thirty "))
                            .unwrap_or(0)
                } else {
                    day
                };
                Some(Found {
                    start: day,
                    end,
                    label: Label::Date,
                    confidence: 0.7,
                })
            }
            P::MonthYear => {
                if fraction_context(&doc.lower, start, end) {
                    None
                } else {
                    found(Label::Date, 0.8)
                }
            }
            P::MonthAlone => {
                let at = s.rfind([' ', '~', '\t', '\n']).map_or(0, |i| i + 1);
                // `since January 5` and `in March 2019` are other patterns' dates; `since
                // April Nguyen` is a name.
                let after = after_window(doc.text, end, 8);
                let digit_after = |p: &str| {
                    after
                        .strip_prefix(p)
                        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                };
                if after.starts_with(" of ")
                    || digit_after(" ")
                    || digit_after(". ")
                    || after
                        .strip_prefix(' ')
                        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_uppercase()))
                {
                    return None;
                }
                Some(Found {
                    start: start + at,
                    end,
                    label: Label::Date,
                    confidence: 0.7,
                })
            }
            P::PhoneMixed if spoken_digit_count(s) != 10 => None,
            P::PhoneMixed => Some(Found {
                start,
                end: spoken_extension_end(&doc.lower, end),
                label: phone_label(cues, start),
                confidence: 0.8,
            }),
            P::SpokenMixed => {
                // Both kinds of piece: digits alone are `Phone`'s and `DigitsSpaced`'s, words
                // alone `Spelled`'s, which judge them with their own rules.
                let mut written = false;
                let mut spoken = false;
                for w in s.split(|c: char| !c.is_ascii_alphanumeric()) {
                    if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) {
                        written = true;
                    } else if SPOKEN_NUMBERS[..30]
                        .iter()
                        .any(|d| d.eq_ignore_ascii_case(w))
                    {
                        spoken = true;
                    }
                }
                if !(written && spoken) {
                    return None;
                }
                let digits = spoken_digit_count(s);
                if cue_before(cues, start, 12).is_some_and(|c| c.cue == Cue::Birth) {
                    return found(Label::Date, 0.8);
                }
                let cue = ident_label_before(cues, start, 60);
                let label = match cue {
                    Some(l) if number_cue(l) => l,
                    Some(Label::Location) if matches!(digits, 5 | 9) => Label::Location,
                    _ if (7..=11).contains(&digits) => phone_label(cues, start),
                    _ => return None,
                };
                spoken_found(doc, start, end, label, 0.8)
            }
            P::EmailSpoken => found(Label::Email, 0.8),
            P::PhoneFiller => found(phone_label(cues, start), 0.8),
            P::DigitsSpaced => {
                let date_shaped = s.len() >= 8
                    && s.get(s.len() - 4..)
                        .is_some_and(|y| y.starts_with("19") || y.starts_with("20"))
                    && s.split(' ').count() == 3;
                if date_shaped && cue_before(cues, start, 16).is_some_and(|c| c.cue == Cue::Birth) {
                    return found(Label::Date, 0.85);
                }
                let cue = ident_label_before(cues, start, 30)?;
                if matches!(cue, Label::Location | Label::Ip) {
                    return None;
                }
                found(cue, 0.8)
            }
            P::SpelledCode => {
                // Letters and digits read out after an identifier cue, with two digits or
                // more and a letter (digits alone are `Spelled`'s).
                let cue = ident_label_before(cues, start, 30)?;
                let letters = s
                    .split(|c: char| !c.is_ascii_alphabetic())
                    .filter(|w| w.len() == 1)
                    .count();
                if letters == 0
                    || spoken_digit_count(s) < 2
                    || matches!(cue, Label::Phone | Label::Fax | Label::Location | Label::Ip)
                {
                    return None;
                }
                // `... nine two i had a visit`: a last `i` or `a` before more words is the
                // caller's next word.
                let tail = after_window(&doc.lower, end, 2);
                let end = if (s.ends_with(" i") || s.ends_with(" a"))
                    && tail.starts_with(' ')
                    && tail
                        .get(1..)
                        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_alphabetic()))
                {
                    end - 2
                } else {
                    end
                };
                Some(Found {
                    start,
                    end,
                    label: cue,
                    confidence: 0.8,
                })
            }
            P::County => found(Label::Location, 0.85),
            P::Code => self.judge_code(doc, start, end),
        }
    }

    /// A run of spoken digits with some written as the words they sound like (`five five
    /// five for too one oh oh eight`): a phone number, or the number a cue before it names,
    /// when most of it is real digit words. A word at either end that only sounds like a
    /// digit (`to`, `for`) is left out unless it makes the run a phone number's length.
    fn judge_homophones(&self, doc: &Text<'_>, start: usize, end: usize) -> Option<Found> {
        let text = doc.text;
        let mut pieces: Vec<(usize, usize, bool)> = Vec::new();
        let mut at = start;
        let b = text.as_bytes();
        while at < end {
            let len = b
                .get(at..end)?
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
            if len == 0 {
                at += 1;
                continue;
            }
            let w = text.get(at..at + len)?;
            let homophone = is_homophone(w);
            // `double`/`triple` join the digit after them.
            if !(w.eq_ignore_ascii_case("double") || w.eq_ignore_ascii_case("triple")) {
                pieces.push((at, at + len, homophone));
            }
            at += len;
        }
        // An end word is needed when the run is a phone number's length with it and not
        // without it.
        let phone_len = |n: usize| matches!(n, 7 | 10 | 11);
        let needed = |n: usize| phone_len(n) && !phone_len(n - 1);
        let (mut a, mut z) = (0, pieces.len());
        while a < z && pieces.get(a).is_some_and(|p| p.2) && !needed(z - a) {
            a += 1;
        }
        while a < z && pieces.get(z - 1).is_some_and(|p| p.2) && !needed(z - a) {
            z -= 1;
        }
        let kept = pieces.get(a..z)?;
        let homophones = kept.iter().filter(|p| p.2).count();
        let digits = kept.len() - homophones;
        if homophones == 0 || digits < 5 || homophones * 2 > kept.len() {
            return None;
        }
        let (s, e) = (kept.first()?.0, kept.last()?.1);
        let cue = ident_label_before(&doc.cues, s, 60);
        if kept.len() < 7 && cue.is_none() {
            return None;
        }
        let label = cue.filter(|&l| number_cue(l)).unwrap_or(Label::Phone);
        spoken_found(doc, s, e, label, 0.8)
    }

    fn judge_code(&self, doc: &Text<'_>, start: usize, end: usize) -> Option<Found> {
        let text = doc.text;
        // A leading '#' belongs to the cue, not the number.
        let start = if text.as_bytes().get(start) == Some(&b'#') {
            start + 1
        } else {
            start
        };
        // `ref 0.45-4.50`: the rest of a decimal number, not a code.
        if start >= 2
            && text.as_bytes().get(start - 1) == Some(&b'.')
            && text
                .as_bytes()
                .get(start - 2)
                .is_some_and(u8::is_ascii_digit)
        {
            return None;
        }
        // A masked SSN (`xxx-xx-4471`, `***-**-4471`): the mask is no identifier, the
        // digits are.
        let start = match text.get(start..end) {
            Some(m)
                if m.len() > 7
                    && (m[..7].eq_ignore_ascii_case("xxx-xx-") || m.starts_with("***-**-")) =>
            {
                start + 7
            }
            _ => start,
        };
        let s = text.get(start..end)?;
        // `From=%2B15035550123`: a number in E.164 form, URL-encoded (a form-encoded SMS
        // webhook's body); `%2B` is the `+`, covered with the number as a `+` would be
        // (annotators differ on it, and a partly covered number is a miss).
        if start >= 1
            && text.as_bytes().get(start - 1) == Some(&b'%')
            && s.len() >= 10
            && s.len() <= 17
            && s.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("2b"))
            && s.bytes().skip(2).all(|b| b.is_ascii_digit())
        {
            return Some(Found {
                start: start - 1,
                end,
                label: Label::Phone,
                confidence: 0.9,
            });
        }
        // `202507080930`, `20250603143055`: a compact date-time (HL7's DTM), covered whole:
        // annotators differ on whether its time belongs to the date, and a span that covers
        // both leaves no digit of the date out under either reading.
        if compact_datetime(s) {
            return Some(Found {
                start,
                end,
                label: Label::Date,
                confidence: 0.9,
            });
        }
        // `DTSTART:20260311T094000`, `REV:20260105T143000Z`: an iCalendar or vCard date-time;
        // the date is the identifier, the time of day is not.
        if ics_datetime(s) {
            return Some(Found {
                start,
                end: start + 8,
                label: Label::Date,
                confidence: 0.9,
            });
        }
        // Codes of a standard, not of a person: HL7 table numbers (`HL70063`), X12
        // implementation guides (`005010X279A1`). (Message control ids stay: annotators
        // differ on them, and a missed identifier costs more than a marked one.)
        // `08:14:55 -0500`: a time zone's offset after a time of day.
        let zone = s.len() == 4
            && s.bytes().all(|b| b.is_ascii_digit())
            && text.get(..start).is_some_and(|b| {
                let b = b.as_bytes();
                b.len() >= 5
                    && matches!(b[b.len() - 1], b'-' | b'+')
                    && b[b.len() - 2] == b' '
                    && b[b.len() - 3].is_ascii_digit()
                    && b[b.len() - 5] == b':'
            });
        if zone || hl7_table_or_guide(s) {
            return None;
        }
        let digits = s.bytes().filter(u8::is_ascii_digit).count();
        let letters = s.bytes().filter(u8::is_ascii_alphabetic).count();
        let alnum = digits + letters;
        // Every rule below needs two digits or more (an age over 89, a code with a cue, an
        // ID) or eleven characters or more (MBI, VIN, card): most short codes stop here.
        if digits < 2 && s.len() < 11 {
            return None;
        }
        // `92-year-old`, `95yo`, `101 y/o`: the number is an age when it is over 89.
        let lead = s.bytes().take_while(u8::is_ascii_digit).count();
        if lead > 0 && lead < s.len() {
            let rest = s.get(lead..).unwrap_or("").to_ascii_lowercase();
            let rest = rest.trim_start_matches('-');
            if (rest.starts_with("year") || rest.starts_with("yo") || rest.starts_with("yr"))
                && validate::age_over_89(s.get(..lead).unwrap_or("")) == Some(true)
            {
                return Some(Found {
                    start,
                    end: start + lead,
                    label: Label::Age,
                    confidence: 0.85,
                });
            }
        }
        if validate::is_measurement(s) {
            return None;
        }
        let cues = &doc.cues;
        let cue = ident_label_before(cues, start, 40);
        // A drug's NDC in a pharmacy label or export (`NDC 00093-1048-01`).
        if ndc(s) && (cue.is_none() || before_window(&doc.lower, start, 8).contains("ndc")) {
            return None;
        }
        let found = |label, confidence| {
            Some(Found {
                start,
                end,
                label,
                confidence,
            })
        };
        // `DOB: 19800115`: a compact date right after a birth or date cue.
        if s.len() == 8
            && digits == 8
            && validate::iso_date(&format!(
                "{}-{}-{}",
                s.get(0..4).unwrap_or(""),
                s.get(4..6).unwrap_or(""),
                s.get(6..8).unwrap_or("")
            ))
            && cue_before(cues, start, 12).is_some_and(|c| c.cue == Cue::Birth)
        {
            return found(Label::Date, 0.9);
        }
        if validate::mbi(s) {
            return found(Label::HealthPlan, 0.95);
        }
        if alnum == 17
            && letters > 0
            && digits > 0
            && !s.contains('-')
            && (cue == Some(Label::Vehicle) || validate::vin(s))
        {
            return found(Label::Vehicle, 0.9);
        }
        if letters == 0 && validate::luhn(s) && cue.is_none_or(|l| l == Label::Account) {
            return found(Label::Account, 0.9);
        }
        if validate::zip(s) {
            if zip_context(doc, start) || cue == Some(Label::Location) {
                return found(Label::Location, 0.9);
            }
            if s.len() == 10 {
                return found(Label::Location, 0.75);
            }
        }
        // `Koregaon Park, Pune 411001`, `Almaty 050008`: a six-digit postcode (India,
        // Russia, Kazakhstan, China...) right after a listed town.
        if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) && after_listed_town(doc, start) {
            return found(Label::Location, 0.8);
        }
        // `Amex ending 5109`, `card ending in 9451`: a payment card's last four.
        if letters == 0 && s.len() == 4 && card_last_four(&doc.lower, start) {
            return found(Label::Account, 0.85);
        }
        if validate::age_over_89(s) == Some(true)
            && (age_context(&doc.lower, start, end) || age_after_person(doc, start, end))
        {
            return found(Label::Age, 0.85);
        }
        // `licence D123-456-789, vehicle 2019 Subaru`: a bare year is not an identifier
        // (except the last four of an SSN, which may look like one).
        let year_like = letters == 0
            && s.len() == 4
            && s.parse::<u16>().is_ok_and(|y| (1900..=2099).contains(&y));
        // `Deductible $2,500`, `sertraline 100 mg`: an amount or a dose after a cue's words.
        let tb = text.as_bytes();
        let amount = start
            .checked_sub(1)
            .and_then(|i| tb.get(i))
            .is_some_and(|&b| {
                b == b'$' || (b == b',' && start >= 2 && tb[start - 2].is_ascii_digit())
            })
            || (letters == 0 && names_dose(after_window(&doc.lower, end, 8)));
        if let Some(label) = cue.filter(|l| (!year_like || *l == Label::Ssn) && !amount) {
            let near_not_phi = not_phi_before(cues, start);
            // `booking reference K7QX2M`: letters and digits mixed need fewer digits.
            // (Not a piece of a longer machine string: `<CAF8x2+Qm0Lw@mail.gmail.com>`.)
            let in_string = tb
                .get(end)
                .is_some_and(|b| matches!(b, b'+' | b'@' | b'.' | b'=' | b'%' | b'/'))
                || start.checked_sub(1).and_then(|i| tb.get(i)) == Some(&b'<');
            let mixed_code = digits >= 2 && letters >= 2 && alnum >= 5 && !in_string;
            if !near_not_phi && (digits >= 3 || mixed_code) {
                let label = match label {
                    Label::Ip | Label::Location | Label::Phone | Label::Fax if digits < 7 => {
                        return None;
                    }
                    Label::Ip => Label::Id,
                    Label::Location => Label::Id,
                    // `transmitter ID SN242744525`: a serial number's own prefix says what
                    // a generic `ID` does not.
                    Label::Id if serial_shaped(s) => Label::Device,
                    l => l,
                };
                if label == Label::License {
                    let (start, end) = dotted_licence(tb, start, end);
                    return Some(Found {
                        start,
                        end,
                        label,
                        confidence: 0.85,
                    });
                }
                return found(label, 0.85);
            }
        }
        if not_phi_before(cues, start) {
            return None;
        }
        if digits >= 7
            || (digits >= 5 && letters >= 1)
            || (digits >= 4 && letters >= 2 && alnum >= 7)
        {
            return found(Label::Id, 0.6);
        }
        None
    }
}

/// `licence MD.0412263`, `lic 036.118204`: a licence number whose board writes its prefix
/// and number a dot apart; `start..end` (one part, found after a licence cue) grows over a
/// short prefix (one to four letters or digits) and a dotted number of three digits or more.
fn dotted_licence(tb: &[u8], start: usize, end: usize) -> (usize, usize) {
    let mut s = start;
    if s >= 2 && tb[s - 1] == b'.' {
        let run = tb[..s - 1]
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let prefix = tb.get(s - 1 - run..s - 1).unwrap_or(&[]);
        // Not the cue's own abbreviation (`Lic. No.123456`, `licence nr.4471023`).
        let cue_word = [&b"no"[..], b"nr", b"num", b"lic", b"nos"]
            .iter()
            .any(|w| prefix.eq_ignore_ascii_case(w));
        if (1..=4).contains(&run) && !cue_word {
            s = s - 1 - run;
        }
    }
    let mut e = end;
    if tb.get(e) == Some(&b'.') {
        let run = tb
            .get(e + 1..)
            .unwrap_or(&[])
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let next = tb.get(e + 1 + run);
        if run >= 3 && !next.is_some_and(|b| b.is_ascii_alphanumeric()) {
            e = e + 1 + run;
        }
    }
    (s, e)
}

/// Whether a cue's label names a number that can be read out digit by digit (a fax, SSN,
/// record, account, plan, licence or other identifier number; a phone's is the default).
fn number_cue(l: Label) -> bool {
    matches!(
        l,
        Label::Fax
            | Label::Ssn
            | Label::Mrn
            | Label::Account
            | Label::HealthPlan
            | Label::Id
            | Label::License
    )
}

/// Whether `after` (the text after a number) opens with a unit of dose or amount.
fn names_dose(after: &str) -> bool {
    let r = after.trim_start_matches(' ');
    ["mg", "mcg", "ml", "units", "iu", "%", "tabs", "caps"]
        .iter()
        .any(|u| {
            r.strip_prefix(u)
                .is_some_and(|x| !x.starts_with(|c: char| c.is_ascii_alphanumeric()))
        })
}

/// `SN242744525`: `SN` and six digits or more.
fn serial_shaped(s: &str) -> bool {
    s.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("sn"))
        && s.len() >= 8
        && s.bytes().skip(2).all(|b| b.is_ascii_digit())
}

fn has_year(s: &str) -> bool {
    s.bytes()
        .filter(|b| matches!(b, b'/' | b'-' | b'.'))
        .count()
        >= 2
}

/// `1/2 tablet`, `7/10 pain`: a fraction or score, not a date.
fn fraction_context(lower: &str, start: usize, end: usize) -> bool {
    let after = after_window(lower, end, 16).trim_start();
    const UNITS: [&str; 14] = [
        "tab", "pill", "cap", "dose", "cup", "teaspoon", "tsp", "of ", "mg", "ml", "pain",
        "on the", "scale", "units",
    ];
    if UNITS.iter().any(|u| after.starts_with(u)) {
        return true;
    }
    let tail = before_window(lower, start, 16).trim_end();
    tail.ends_with("pain") || tail.ends_with("rated") || tail.ends_with("scale")
}

/// Up to `n` bytes of `s` after `pos`, cut on a char boundary.
pub(crate) fn after_window(s: &str, pos: usize, n: usize) -> &str {
    let mut end = (pos + n).min(s.len());
    while end > pos && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(pos..end).unwrap_or("")
}

/// Up to `n` bytes of `s` before `pos`, cut on a char boundary.
pub(crate) fn before_window(s: &str, pos: usize, n: usize) -> &str {
    let mut start = pos.saturating_sub(n);
    while start < pos && !s.is_char_boundary(start) {
        start += 1;
    }
    s.get(start..pos).unwrap_or("")
}

fn is_version_like(lower: &str, start: usize) -> bool {
    let before = before_window(lower, start, 12).trim_end();
    before.ends_with("version") || before.ends_with('v')
}

fn not_phi_before(cues: &[CueHit], start: usize) -> bool {
    cue_before(cues, start, 12).is_some_and(|c| c.cue == Cue::NotPhi)
}

fn phone_label(cues: &[CueHit], start: usize) -> Label {
    let idx = cues.partition_point(|c| c.end <= start);
    for c in cues[..idx].iter().rev().take_while(|c| start - c.end <= 80) {
        match c.cue {
            Cue::Ident(Label::Fax) => return Label::Fax,
            Cue::Ident(Label::Phone) => return Label::Phone,
            _ => {}
        }
    }
    Label::Phone
}

/// A ZIP code follows a state (`MA 79359`, `Ohio 44101`) or a city and comma.
fn zip_context(doc: &Text<'_>, start: usize) -> bool {
    let text = doc.text;
    let idx = doc.tokens.partition_point(|t| t.end <= start);
    let Some(prev) = idx.checked_sub(1).and_then(|i| doc.tokens.get(i)) else {
        return false;
    };
    let between = text.get(prev.end..start).unwrap_or("");
    if between.len() > 3 {
        return false;
    }
    let word = prev.text(text);
    let two_word_place = idx >= 2
        && between == " "
        && doc.tokens.get(idx - 2).is_some_and(|p2| {
            let joined = doc.lower.get(p2.start..prev.end).unwrap_or("");
            doc.lex.flags_lower(joined) & crate::lexicon::PLACE != 0
        });
    validate::is_state(word)
        || super::places::STATE_CODES_LOWER.contains(&word)
        || two_word_place
        || (between == " "
            && doc
                .feats
                .get(idx - 1)
                .is_some_and(|f| f.cap && f.flags & crate::lexicon::PLACE != 0))
        // `minneapolis 55454`: a listed town in lower case that is no dictionary word.
        || (matches!(between, " " | ", ")
            && prev.kind == super::tokens::Kind::Word
            && {
                let flags = doc.lex.flags_lower(doc.lower_tok(idx - 1));
                flags & crate::lexicon::PLACE != 0 && flags & crate::lexicon::WORD == 0
            })
}

/// Whether the token before `start` is a capitalised listed town (not a state, not a
/// dictionary word), a space or `, ` before it.
fn after_listed_town(doc: &Text<'_>, start: usize) -> bool {
    let idx = doc.tokens.partition_point(|t| t.end <= start);
    let Some(k) = idx.checked_sub(1) else {
        return false;
    };
    let (Some(prev), Some(f)) = (doc.tokens.get(k), doc.feats.get(k)) else {
        return false;
    };
    let between = doc.text.get(prev.end..start).unwrap_or("");
    matches!(between, " " | ", ")
        && f.word
        && f.cap
        && !f.all_caps
        && f.place()
        && !f.common()
        && !validate::is_state(prev.text(doc.text))
}

/// The number words spoken numbers are made of; the first twelve are the digits.
const SPOKEN_NUMBERS: [&str; 32] = [
    "oh",
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "niner",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
];

/// Where the number words right after `end` stop (`... nine| seventy six`, `nineteen
/// eighty`): at most four more words, each a number word, separated by spaces or hyphens.
fn spoken_number_end(lower: &str, end: usize) -> usize {
    let bytes = lower.as_bytes();
    let mut at = end;
    for _ in 0..4 {
        let gap = bytes.get(at..).map_or(0, |b| {
            b.iter().take_while(|&&c| c == b' ' || c == b'-').count()
        });
        if gap == 0 || gap > 2 {
            break;
        }
        let from = at + gap;
        let len = bytes.get(from..).map_or(0, |b| {
            b.iter().take_while(|c| c.is_ascii_lowercase()).count()
        });
        let word = lower.get(from..from + len).unwrap_or("");
        if !SPOKEN_NUMBERS.contains(&word) {
            break;
        }
        at = from + len;
    }
    at
}

/// Whether a noun follows an ordinal at `end` (`the 3rd floor`, `the 2nd dose`), making it
/// no day of the month.
/// After an ordinal day ending at `end`: ` of this month` (`Some(end)`), ` of January` or ` of
/// January 2025` (`Some` of where the month or year ends); `None` otherwise.
fn month_after_of(lower: &str, end: usize) -> Option<usize> {
    let rest = lower.get(end..)?.strip_prefix(" of ")?;
    let word_at = |w: &str| {
        rest.strip_prefix(w)
            .is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_alphanumeric()))
    };
    if ["this month", "last month", "next month"]
        .iter()
        .any(|w| word_at(w))
    {
        return Some(end);
    }
    let month = crate::surrogate::date::MONTHS.iter().find(|m| word_at(m))?;
    let month_end = end + 4 + month.len();
    let after = lower.get(month_end..).unwrap_or("");
    let year = after
        .strip_prefix(", ")
        .or_else(|| after.strip_prefix(' '))
        .filter(|y| {
            y.as_bytes()
                .get(..4)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
                && (y.starts_with("19") || y.starts_with("20") || y.starts_with("18"))
                && !y.as_bytes().get(4).is_some_and(u8::is_ascii_alphanumeric)
        });
    Some(year.map_or(month_end, |y| lower.len() - y.len() + 4))
}

fn ordinal_noun_after(lower: &str, end: usize) -> bool {
    const NOUNS: [&str; 38] = [
        "floor",
        "time",
        "grade",
        "street",
        "st",
        "ave",
        "avenue",
        "percentile",
        "century",
        "round",
        "dose",
        "shot",
        "visit",
        "week",
        "day",
        "month",
        "year",
        "cycle",
        "place",
        "attempt",
        "one",
        "try",
        "child",
        "kid",
        "baby",
        "trimester",
        "birthday",
        "pill",
        "injection",
        "infusion",
        "session",
        "appointment",
        "of",
        "thing",
        "step",
        "page",
        "line",
        "option",
    ];
    let next = after_window(lower, end, 16).trim_start();
    NOUNS.iter().any(|w| {
        next.strip_prefix(w)
            .is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_alphanumeric()))
    })
}

/// A URL of a standards body's namespace (FHIR code systems and profiles, XML namespaces):
/// it names a vocabulary, never a person.
pub(crate) fn standards_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .unwrap_or(s);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.to_ascii_lowercase();
    const HOSTS: [&str; 8] = [
        "hl7.org",
        "fhir.org",
        "w3.org",
        "snomed.info",
        "loinc.org",
        "unitsofmeasure.org",
        "nucc.org",
        "nlm.nih.gov",
    ];
    HOSTS
        .iter()
        .any(|h| host == *h || host.strip_suffix(h).is_some_and(|p| p.ends_with('.')))
}

/// `HL70063` (an HL7 table) or `005010X279A1` (an X12 implementation guide).
fn hl7_table_or_guide(s: &str) -> bool {
    let b = s.as_bytes();
    let table = b.len() == 7 && s.starts_with("HL7") && b[3..].iter().all(u8::is_ascii_digit);
    let guide = b.len() == 12
        && s.starts_with("00")
        && b[..6].iter().all(u8::is_ascii_digit)
        && b[6] == b'X'
        && b[7..10].iter().all(u8::is_ascii_digit)
        && b[10].is_ascii_uppercase()
        && b[11].is_ascii_digit();
    table || guide
}

/// `00378-0018-01`, `68180-0513-01`: a National Drug Code (5-4-2, 4-4-2, 5-3-2 or 5-4-1
/// digits), a product's code.
fn ndc(s: &str) -> bool {
    let mut lens = [0usize; 3];
    let mut parts = s.split('-');
    for len in &mut lens {
        match parts.next() {
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => *len = p.len(),
            _ => return false,
        }
    }
    parts.next().is_none() && matches!(lens, [5, 4, 2] | [4, 4, 2] | [5, 3, 2] | [5, 4, 1])
}

/// `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS` with a real calendar date and a real time of day.
fn compact_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    matches!(b.len(), 12 | 14)
        && b.iter().all(u8::is_ascii_digit)
        && (s.starts_with("19") || s.starts_with("20"))
        && num(8..10).is_some_and(|h| h < 24)
        && num(10..12).is_some_and(|m| m < 60)
        && (b.len() == 12 || num(12..14).is_some_and(|x| x < 60))
        && s.get(..8)
            .is_some_and(|d| validate::iso_date(&format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8])))
}

/// `20260311T094000`, `20260105T143000Z`: an iCalendar (RFC 5545) date-time, with a real
/// date and time of day.
fn ics_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    let body = s.strip_suffix('Z').unwrap_or(s);
    let (Some(date), Some(time)) = (body.get(..8), body.get(9..)) else {
        return false;
    };
    b.get(8) == Some(&b'T')
        && matches!(time.len(), 4 | 6)
        && date.bytes().chain(time.bytes()).all(|c| c.is_ascii_digit())
        && compact_datetime(&format!("{date}{time}"))
}

/// How many digits the spoken digits in `s` stand for: a digit word is one, `double five`
/// two, `triple five` three, a pair (`twenty`, `seventy four`) two; digits written as digits
/// count too; other words none.
fn spoken_digit_count(s: &str) -> usize {
    let digits = &SPOKEN_NUMBERS[..12];
    let pairs = &SPOKEN_NUMBERS[22..30];
    let teens = &SPOKEN_NUMBERS[12..22];
    let mut n = 0;
    let mut times = 1;
    let mut after_pair = false;
    for w in s.split(|c: char| !c.is_ascii_alphanumeric()) {
        if w.is_empty() {
            continue;
        }
        let was_pair = std::mem::replace(&mut after_pair, false);
        if pairs.iter().any(|d| d.eq_ignore_ascii_case(w)) {
            n += 2;
            after_pair = true;
            times = 1;
            continue;
        }
        if teens.iter().any(|d| d.eq_ignore_ascii_case(w)) {
            n += 2;
            times = 1;
            continue;
        }
        // `seventy four`: the four is the pair's second digit.
        if was_pair && digits[2..11].iter().any(|d| d.eq_ignore_ascii_case(w)) {
            continue;
        }
        if w.eq_ignore_ascii_case("double") {
            times = 2;
            continue;
        }
        if w.eq_ignore_ascii_case("triple") {
            times = 3;
            continue;
        }
        if digits.iter().any(|d| d.eq_ignore_ascii_case(w)) {
            n += times;
        } else {
            n += w.bytes().filter(u8::is_ascii_digit).count();
        }
        times = 1;
    }
    n
}

/// Whether the words after `end` are a word that sounds like a digit (`for`, `too`) and a
/// spoken digit or another such word: a transcribed number goes on.
fn homophone_then_digit(lower: &str, end: usize) -> bool {
    let rest = after_window(lower, end, 24);
    let mut words = rest
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty());
    let (Some(a), Some(b)) = (words.next(), words.next()) else {
        return false;
    };
    rest.starts_with([' ', ',', '.', '-'])
        && is_homophone(a)
        && (is_homophone(b) || SPOKEN_NUMBERS[..12].contains(&b))
}

/// A number read out, found at `start..end` with `label`: a phone or fax number with its
/// spoken extension (`... zero one nine one extension two one four`).
fn spoken_found(
    doc: &Text<'_>,
    start: usize,
    end: usize,
    label: Label,
    confidence: f32,
) -> Option<Found> {
    let end = if matches!(label, Label::Phone | Label::Fax) {
        spoken_extension_end(&doc.lower, end)
    } else {
        end
    };
    Some(Found {
        start,
        end,
        label,
        confidence,
    })
}

/// Where a spoken extension after a spoken phone number ends (`... one extension two one
/// four`, `extension two twelve`): `extension` or `ext` and one to six number words; `end`
/// when there is none.
fn spoken_extension_end(lower: &str, end: usize) -> usize {
    let full = lower.get(end..).unwrap_or("");
    let rest = full.strip_prefix(',').unwrap_or(full);
    let Some(after) = rest
        .strip_prefix(" extension ")
        .or_else(|| rest.strip_prefix(" ext "))
    else {
        return end;
    };
    let mut at = end + (full.len() - after.len());
    let mut last = None;
    for _ in 0..6 {
        let word_len = lower
            .get(at..)
            .map_or(0, |r| r.bytes().take_while(u8::is_ascii_lowercase).count());
        let word = lower.get(at..at + word_len).unwrap_or("");
        if !SPOKEN_NUMBERS.contains(&word) {
            break;
        }
        last = Some(at + word_len);
        if lower.as_bytes().get(at + word_len) != Some(&b' ') {
            break;
        }
        at += word_len + 1;
    }
    last.unwrap_or(end)
}

/// `Efua Asante, 91, presents`, `my mother, 94.`: a number set off by a comma right after a
/// word that looks like a name (capitalised, not a dictionary word unless a listed name) or a
/// relation or patient cue, and closing the phrase (a comma, a full stop or the line's end follows,
/// not more digits).
fn age_after_person(doc: &Text<'_>, start: usize, end: usize) -> bool {
    let text = doc.text;
    // `Efua Asante, 91,` or in parentheses: `Lesieli 'Aho (101!)`.
    let paren = text.get(..start).is_some_and(|b| b.ends_with(" ("));
    if !paren && !text.get(..start).is_some_and(|b| b.ends_with(", ")) {
        return false;
    }
    if paren
        && !text.get(end..).is_some_and(|a| {
            a.starts_with(')')
                || a.starts_with("!)")
                || a.starts_with(" y")
                || a.starts_with(" F)")
                || a.starts_with(" M)")
        })
    {
        return false;
    }
    // The word right before the comma or the parenthesis.
    let before = start - 2;
    let Some(k) = doc
        .tokens
        .partition_point(|t| t.end <= before)
        .checked_sub(1)
        .filter(|&k| doc.tokens.get(k).is_some_and(|t| t.end == before))
    else {
        return false;
    };
    // A relative or the patient: the context cues' own words (`my mother, 94`, `pt, 91`).
    let person = doc
        .feats
        .get(k)
        .is_some_and(|f| f.cap_nameish() && !f.initial)
        || cue_before(&doc.cues, start, 2)
            .is_some_and(|c| c.end == before && matches!(c.cue, Cue::Relation | Cue::NameIntro));
    let after = text.get(end..).unwrap_or("");
    let closes = paren
        || match after.as_bytes() {
            [] | [b'\n' | b')' | b';', ..] => true,
            [b',' | b'.', rest @ ..] => !rest.first().is_some_and(u8::is_ascii_digit),
            _ => false,
        };
    person && closes
}

/// Whether the four digits at `start` follow `ending` (or `ending in`) with a payment card's
/// word shortly before (`card`, `visa`, `amex`, `mc`, `debit`...).
fn card_last_four(lower: &str, start: usize) -> bool {
    let before = before_window(lower, start, 48);
    let Some(head) = before
        .strip_suffix("ending in ")
        .or_else(|| before.strip_suffix("ending "))
    else {
        return false;
    };
    const CARDS: [&str; 9] = [
        "card",
        "visa",
        "amex",
        "mastercard",
        "mc",
        "discover",
        "debit",
        "credit",
        "account",
    ];
    head.split(|c: char| !c.is_ascii_alphanumeric())
        .rev()
        .take(4)
        .any(|w| CARDS.contains(&w))
}

/// `93 years old`, `she is 93`, `age 93`, `93 yo`, `93-year-old`.
fn age_context(lower: &str, start: usize, end: usize) -> bool {
    let a = after_window(lower, end, 12).trim_start_matches([' ', '-']);
    if a.starts_with("year")
        || a.starts_with("yr")
        || a.starts_with("yo")
        || a.starts_with("y/o")
        || a.starts_with("y.o")
        || a.starts_with("y ")
    {
        return true;
    }
    let before = before_window(lower, start, 16);
    let b = before.trim_end().trim_end_matches([':', ',']);
    // `b` ends with the word `w` (at the window's start, or after a non-letter).
    let ends = |w: &str| {
        b.strip_suffix(w)
            .is_some_and(|rest| !rest.ends_with(|c: char| c.is_alphanumeric()))
    };
    // `F` alone after the number: degrees Fahrenheit, or the sex after an age.
    let f_after = a.starts_with('f')
        && a.get(1..)
            .is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_alphabetic()));
    // A quantity, not an age: `is 95 kg`, `is ninety dollars`, `is a hundred minutes`.
    let unit_after = a.starts_with("lb")
        || a.starts_with("kg")
        || a.starts_with('%')
        || a.starts_with("mg")
        || a.starts_with("degree")
        || f_after
        || [
            "dollar", "buck", "cent", "percent", "min", "hour", "hr", "day", "week", "wk", "month",
            "mile", "pound", "unit", "time", "page", "pill", "tablet", "dose", "ml", "cc", "mmhg",
        ]
        .iter()
        .any(|u| a.starts_with(u));
    // An age named as one (`Age  94  F`, `aged 103 F`): `F` is the sex there, not degrees.
    // In an export's row the sex's cell before it names it too (`| F | 93 |`, `,M,101,`).
    let sex_cell = [
        "| f |", "| m |", "|f|", "|m|", ",f,", ",m,", "\tf\t", "\tm\t",
    ]
    .iter()
    .any(|c| before.trim_end_matches(' ').ends_with(c));
    let labelled = ends("age") || ends("age of") || ends("aged") || sex_cell;
    if labelled && f_after {
        return true;
    }
    // `how old is he` ... `ninety four`: the answer to the question.
    if before_window(lower, start, 48).contains("how old") {
        return !unit_after;
    }
    !unit_after
        && (labelled
            || ends("is now")
            || ends("will be")
            || b.ends_with("'ll be")
            || b.ends_with("’ll be")
            || ends("is")
            || ends("turned")
            || ends("turning")
            || ends("turns")
            || ends("turn")
            || ends("am")
            || b.ends_with("'m")
            || b.ends_with("’m")
            // `she's 91`, `he’s 93`: a person's contraction, not a possessive.
            || ends("she's")
            || ends("he's")
            || ends("she’s")
            || ends("he’s")
            || ends("shes")
            || ends("hes"))
}
