//! Places smaller than a state: US cities, towns and counties from the built-in list, taken
//! when the context says they are places (`, MA 02139`, after a street address, `live in`,
//! `the Edison office`), or when a multi-word place name is unambiguous.

use super::features::{Feat, class};
use super::tokens::Kind;
use super::validate;
use super::{Candidate, Recognizer, Text};
use crate::lexicon::{PLACE, PLACE_PREFIX};
use crate::{Label, Span};

pub(crate) const STREET_SUFFIXES: &[&str] = &[
    "st",
    "street",
    "ave",
    "avenue",
    "av",
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
    "sq",
    "square",
    "loop",
    "pike",
    "row",
    "box",
];

pub(crate) const PRE_WORDS: &[&str] = &[
    "in", "from", "near", "to", "outside", "around", "visiting", "moved", "past", "en", "leaving",
    "left", "toward", "towards", "via", // French and Portuguese `à Lyon`, `em Recife`.
    "à", "em",
];

/// Words that make the place part of an organisation's name (`Riverbend Family Medicine`).
pub(crate) const ORG_AFTER: &[&str] = &[
    "family",
    "medicine",
    "medical",
    "health",
    "hospital",
    "orthopedics",
    "cardiology",
    "dermatology",
    "pediatrics",
    "radiology",
    "imaging",
    "dental",
    "pharmacy",
    "urgent",
    "clinic",
    "center",
    "centre",
    "associates",
    "partners",
    "physicians",
    "surgery",
    "lab",
    "labs",
    "rehab",
    "wellness",
    "oncology",
    "university",
    "college",
    "school",
    "street",
    "st",
    "avenue",
    "ave",
    "road",
    "rd",
    "drive",
    "dr",
    "lane",
    "ln",
    "court",
    "ct",
    "boulevard",
    "blvd",
    "way",
    "syndrome",
    "disease",
    "palsy",
    "geriatrics",
    "urology",
    "neurology",
    "gastroenterology",
    "pulmonology",
    "nephrology",
    "endocrinology",
    "psychiatry",
    "podiatry",
    "audiology",
    "hospice",
    "homecare",
    "memorial",
    "regional",
];

/// The place recognizer.
pub(crate) struct Places;

impl Recognizer for Places {
    fn name(&self) -> &'static str {
        "places"
    }

    fn find(&self, doc: &Text<'_>, out: &mut Vec<Candidate>) {
        let n = doc.tokens.len();
        // Capitalised words, and lower-case words after `in`, `from`... (no other token
        // can start a place), not inside a place found before.
        let mut next = 0;
        for &i in &doc.lists.places {
            let i = i as usize;
            if i < next {
                continue;
            }
            let Some(&f) = doc.feats.get(i) else {
                break;
            };
            if !f.cap && f.word && !f.stop {
                // `i live in opelousas`: a listed town in lower case after `in`, `from`...
                if let Some(span) = lower_town(doc, i) {
                    out.push(span);
                }
                next = i + 1;
                continue;
            }
            // `New Bedford`: a stop word can open a listed place name.
            if !f.cap || !f.word || (f.stop && f.flags & PLACE_PREFIX == 0) {
                next = i + 1;
                continue;
            }
            // Longest place name starting here (up to three words).
            let mut best: Option<usize> = None;
            if f.flags & PLACE != 0 {
                best = Some(i + 1);
            }
            if f.flags & PLACE_PREFIX != 0 {
                for k in i + 1..(i + 4).min(n) {
                    let g = doc
                        .text
                        .get(doc.tokens[k - 1].end..doc.tokens[k].start)
                        .unwrap_or("");
                    // `Coeur d'Alene`: lower-case parts only count when the whole
                    // name is listed.
                    if g != " " || !doc.feats[k].word {
                        break;
                    }
                    // The words so far with single spaces between them: the lower-cased
                    // text from word `i` to word `k`.
                    let phrase = doc
                        .lower
                        .get(doc.tokens[i].start..doc.tokens[k].end)
                        .unwrap_or("");
                    if doc.lex.flags_lower(phrase) & PLACE != 0 {
                        best = Some(k + 1);
                    }
                }
            }
            // A town missing from the list, placed by the state after it:
            // `Smallville, KS 66002`, `Eagle Pass, TX`.
            if best.is_none() {
                best = unlisted_town(doc, i);
            }
            // `Marathon City`, `Cedar Falls`: a listed word and a place-name word after it.
            let best = best.map(|b| {
                let more = doc.tokens.get(b).is_some_and(|t| {
                    doc.text.get(doc.tokens[b - 1].end..t.start) == Some(" ")
                        && matches!(
                            t.text(doc.text),
                            "City"
                                | "Township"
                                | "Village"
                                | "Falls"
                                | "Springs"
                                | "Heights"
                                | "Junction"
                                | "Beach"
                                | "Lake"
                                | "Creek"
                        )
                });
                if more { b + 1 } else { b }
            });
            let Some(b) = best else {
                next = i + 1;
                continue;
            };
            if let Some(conf) = judge(doc, i, b) {
                let end = doc.tokens[b - 1].end;
                let s = doc.text.get(doc.tokens[i].start..end).unwrap_or("");
                let end = if s.ends_with("'s") { end - 2 } else { end };
                out.push(Span {
                    start: doc.tokens[i].start,
                    end,
                    label: Label::Location,
                    confidence: conf,
                    recognizer: "places",
                });
                next = b;
            } else {
                next = i + 1;
            }
        }
        form_places(doc, out);
        state_towns(doc, out);
        address_towns(doc, out);
        propagate(doc, out);
    }
}

/// The postal codes of states that are no English word, in lower case (`boone nc`); `in`,
/// `me`, `ok`, `or`, `hi`, `oh`, `pa`, `de`, `co`, `al`, `ga`, `la`, `ma`, `md`, `mo`, `mt`,
/// `wa`, `va`, `id` and `ne` are left out.
pub(crate) const STATE_CODES_LOWER: &[&str] = &[
    "ak", "az", "ar", "ct", "fl", "ia", "il", "ks", "ky", "mn", "ms", "nc", "nd", "nh", "nj", "nm",
    "nv", "ny", "ri", "sc", "sd", "tn", "tx", "ut", "vt", "wi", "wv", "wy",
];

/// `beaverton oregon`, `greer south carolina`, `boone nc`: a listed town in lower case right
/// before a state's name or code (a voicemail transcript's or a text's address), one to three
/// words. After a code, the text must end or go on with punctuation or a ZIP code.
fn state_towns(doc: &Text<'_>, out: &mut Vec<Candidate>) {
    for &k in &doc.lists.states {
        let mut k = k as usize;
        if doc.tokens.get(k).is_some_and(|t| t.end - t.start == 2) {
            let next = doc
                .tokens
                .get(k)
                .and_then(|t| doc.text.get(t.end..))
                .unwrap_or("");
            let next = next.trim_start_matches(' ');
            if !(next.is_empty()
                || next.starts_with(|c: char| c.is_ascii_digit() || ",.;!?)\n".contains(c)))
            {
                continue;
            }
        }
        // The state's first word when it has two (`south carolina`, `new york`).
        if k >= 1
            && matches!(
                (doc.lower_tok(k - 1), doc.lower_tok(k)),
                ("north" | "south", "carolina" | "dakota")
                    | ("new", "york" | "jersey" | "mexico" | "hampshire")
                    | ("west", "virginia")
                    | ("rhode", "island")
            )
        {
            k -= 1;
        }
        let Some(state) = doc.tokens.get(k) else {
            continue;
        };
        // The longest listed place of up to three words ending right before the state.
        let mut best = None;
        for words in 1..=3usize {
            let Some(first) = k.checked_sub(words) else {
                break;
            };
            let (a, b) = (&doc.tokens[first], &doc.tokens[k - 1]);
            if doc.text.get(b.end..state.start) != Some(" ")
                || doc.feats.get(first).is_some_and(|f| f.cap || f.stop)
            {
                break;
            }
            if !single_spaced(doc, first, k - 1) {
                break;
            }
            let phrase = doc.lower.get(a.start..b.end).unwrap_or("");
            if doc.lex.flags_lower(phrase) & PLACE != 0 {
                best = Some(first);
            }
        }
        if let Some(first) = best {
            push_town(doc, first, k - 1, out);
        }
    }
}

/// `City: Mondovi`, `County: Buffalo`, `Place of birth: Gyumri`: the value of a form's place
/// label (found from the colons, with `memchr`), up to two spaces, a comma or the line's end.
fn form_places(doc: &Text<'_>, out: &mut Vec<Candidate>) {
    const LABELS: [&str; 8] = [
        "city",
        "town",
        "county",
        "city/town",
        "birthplace",
        "place of birth",
        "city / zip",
        "city/zip",
    ];
    for (p, _) in doc.lower.match_indices(':') {
        let before = doc
            .lower
            .get(p.saturating_sub(16)..p)
            .unwrap_or("")
            .trim_end();
        let Some(label) = LABELS.iter().find(|l| before.ends_with(*l)) else {
            continue;
        };
        let ls = before.len() - label.len();
        if before[..ls].ends_with(|c: char| c.is_ascii_alphanumeric()) {
            continue;
        }
        let rest = doc.text.get(p + 1..).unwrap_or("");
        let value_at = p + 1 + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
        // A value is short: look at most 64 bytes ahead (linear time with many colons).
        let tail_all = doc.text.get(value_at..).unwrap_or("");
        let mut cut = tail_all.len().min(64);
        while !tail_all.is_char_boundary(cut) {
            cut -= 1;
        }
        let tail = &tail_all[..cut];
        let mut len = tail
            .find(['\n', '\r', ',', ';', '|', '(', '\t'])
            .unwrap_or(tail.len())
            .min(40);
        if let Some(two) = tail.get(..len).and_then(|t| t.find("  ")) {
            len = two;
        }
        let value = tail.get(..len).unwrap_or("").trim_end();
        let starts_upper = value.starts_with(|c: char| c.is_uppercase());
        if value.is_empty() || !starts_upper || validate::is_state(value) {
            continue;
        }
        out.push(Span {
            start: value_at,
            end: value_at + value.len(),
            label: Label::Location,
            confidence: 0.8,
            recognizer: "places",
        });
    }
}

/// `... Chinle AZ 86503 ... at the Chinle unit`: a capitalised place found once in the
/// message is a place at its other mentions too (not inside an organisation's name or a
/// possessive).
fn propagate(doc: &Text<'_>, out: &mut Vec<Candidate>) {
    let text = doc.text;
    let mut found: Vec<(usize, usize)> = out
        .iter()
        .filter(|s| s.recognizer == "places" && s.label == Label::Location)
        .map(|s| (s.start, s.end))
        .collect();
    if found.is_empty() {
        return;
    }
    found.sort_unstable();
    // The capitalised names found, and which tokens they cover: then one walk over the
    // tokens, trying the names (of up to four words) that start at each (linear time).
    let mut names: Vec<&str> = found
        .iter()
        .filter_map(|&(s, e)| text.get(s..e))
        .filter(|n| n.starts_with(|c: char| c.is_uppercase()))
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return;
    }
    // The names' first bytes: most tokens start with none of them (no lookup at all).
    let mut firsts = [false; 256];
    for n in &names {
        if let Some(&b) = n.as_bytes().first() {
            firsts[usize::from(b)] = true;
        }
    }
    let n = doc.tokens.len();
    let mut covered = vec![false; n];
    for &(s, e) in &found {
        let from = doc.tokens.partition_point(|t| t.end <= s);
        let to = doc.tokens.partition_point(|t| t.start < e).max(from);
        if let Some(c) = covered.get_mut(from..to) {
            c.fill(true);
        }
    }
    let mut extra = Vec::new();
    let mut i = 0;
    while i < n {
        let first = text
            .as_bytes()
            .get(doc.tokens[i].start)
            .copied()
            .unwrap_or(0);
        if covered[i] || !doc.feats[i].cap || !firsts[usize::from(first)] {
            i += 1;
            continue;
        }
        let mut taken = 0;
        for len in 1..=4 {
            let j = i + len - 1;
            if j >= n || covered[j] {
                break;
            }
            let (s, e) = (doc.tokens[i].start, doc.tokens[j].end);
            if text
                .get(s..e)
                .is_none_or(|w| names.binary_search(&w).is_err())
            {
                continue;
            }
            // `Ganado Clinic` names an organisation; `the Ganado clinic` a place's.
            let org = doc
                .feats
                .get(j + 1)
                .is_some_and(|f| f.cap && f.is(class::ORG_AFTER) && !f.is(class::STREET))
                && text.get(e..e + 1) == Some(" ");
            if !org {
                extra.push(Span {
                    start: s,
                    end: e,
                    label: Label::Location,
                    confidence: 0.7,
                    recognizer: "places",
                });
                taken = len;
            }
            break;
        }
        i += taken.max(1);
    }
    out.extend(extra);
}

/// Capitalised words starting at `i` and followed by `, ST` (a state postal code), where the
/// words start a line or follow a street address or a comma.
fn unlisted_town(doc: &Text<'_>, i: usize) -> Option<usize> {
    let text = doc.text;
    let n = doc.tokens.len();
    let mut b = i;
    while b < n && b - i < 3 {
        let f = &doc.feats[b];
        if !f.word || !f.cap || f.stop || f.all_caps {
            break;
        }
        b += 1;
        let after = doc
            .tokens
            .get(b)
            .map(|t| text.get(doc.tokens[b - 1].end..t.start).unwrap_or(""));
        let foreign = doc
            .tokens
            .get(b)
            .is_some_and(|t| validate::is_foreign_region(t.text(text)));
        let state_next = foreign
            || doc.tokens.get(b).is_some_and(|t| {
                let w = t.text(text);
                w.len() == 2 && validate::is_state(w)
            });
        // `Talkeetna AK 99676`: a state code and then a ZIP code; `Toowong QLD 4066`,
        // `Mississauga ON L5G 1E2`: a region's code and its postcode.
        let state_zip = after == Some(" ")
            && state_next
            && doc.tokens.get(b + 1).is_some_and(|z| {
                let code = z.text(text);
                text.get(doc.tokens[b].end..z.start) == Some(" ")
                    && (validate::zip(code)
                        || foreign
                            && (code.len() == 4 && code.bytes().all(|c| c.is_ascii_digit())
                                || code.len() == 3 && z.kind != super::tokens::Kind::Word))
            });
        // `(Frankfurt, Germany)`: a city before a country.
        if after == Some(", ")
            && doc
                .tokens
                .get(b)
                .is_some_and(|t| COUNTRIES.contains(&t.text(text)))
            && b - i == 1
        {
            return Some(b);
        }
        if (after == Some(", ") && state_next) || state_zip {
            let before = if i == 0 {
                "\n"
            } else {
                text.get(doc.tokens[i - 1].end..doc.tokens[i].start)
                    .unwrap_or("")
            };
            let after_address = (i > 0 && doc.feats[i - 1].is(class::STREET))
                || (i >= 2 && matches!(lower(doc, i - 2), "apt" | "unit" | "suite" | "box"));
            if before.contains('\n') || before.contains(',') || after_address || i == 0 {
                return Some(b);
            }
            return None;
        }
        if after != Some(" ") {
            break;
        }
    }
    None
}

/// Countries after which a capitalised word and a comma is a city (`Frankfurt, Germany`).
const COUNTRIES: &[&str] = &[
    "Mexico",
    "Canada",
    "Germany",
    "India",
    "China",
    "Philippines",
    "Vietnam",
    "Nigeria",
    "Ghana",
    "Kenya",
    "Ireland",
    "England",
    "Scotland",
    "France",
    "Italy",
    "Spain",
    "Poland",
    "Ukraine",
    "Brazil",
    "Japan",
    "Korea",
    "Pakistan",
    "Haiti",
    "Jamaica",
    "Cuba",
    "Guatemala",
    "Honduras",
    "Colombia",
    "Peru",
    "Ecuador",
    "Australia",
    "Samoa",
    "Tonga",
    "Portugal",
    "Greece",
    "Turkey",
    "Israel",
    "Egypt",
    "Ethiopia",
    "Somalia",
    "Russia",
    "Iran",
    "Iraq",
];

/// A lower-case word right after a place preposition (`in`, `from`, `near`) that is a listed
/// town and not a common English word (`in keokuk`, not `in bed`).
fn lower_town(doc: &Text<'_>, i: usize) -> Option<Span> {
    let t = doc.tokens.get(i)?;
    if i == 0 || !doc.feats[i - 1].is(class::PRE) || t.end - t.start < 4 {
        return None;
    }
    let before = doc.text.get(doc.tokens[i - 1].end..t.start)?;
    if before != " " {
        return None;
    }
    // `in rosebud county`: a listed county in lower case, with its word.
    if matches!(doc.lower_tok(i + 1), "county" | "parish" | "borough")
        && doc.text.get(t.end..doc.tokens.get(i + 1)?.start) == Some(" ")
    {
        let phrase = doc.lower.get(t.start..doc.tokens[i + 1].end)?;
        if doc.lex.flags_lower(phrase) & PLACE != 0 {
            return Some(Span {
                start: t.start,
                end: doc.tokens[i + 1].end,
                label: Label::Location,
                confidence: 0.7,
                recognizer: "places",
            });
        }
    }
    // `in mount vernon`, `from grand rapids`: a listed place of two or three words (its
    // words may be dictionary words).
    for words in [3usize, 2] {
        let Some(last) = doc.tokens.get(i + words - 1) else {
            continue;
        };
        let phrase = doc.lower.get(t.start..last.end).unwrap_or("");
        // Not a facility named after the place (`to cedar ridge rehab`).
        let org_after = doc
            .feats
            .get(i + words)
            .is_some_and(|f| f.is(class::ORG_AFTER));
        if single_spaced(doc, i, i + words - 1)
            && !org_after
            && !doc.feats[i + 1].stop
            && doc.lex.flags_lower(phrase) & PLACE != 0
            && phrase.bytes().all(|b| b == b' ' || b.is_ascii_lowercase())
        {
            return Some(Span {
                start: t.start,
                end: last.end,
                label: Label::Location,
                confidence: 0.6,
                recognizer: "places",
            });
        }
    }
    let flags = doc.lex.flags_lower(doc.lower_tok(i));
    if flags & PLACE == 0 {
        return None;
    }
    // A listed town that is also a word (`jasper`, `greer`) after an address (`oak lane in
    // jasper`) or before a state (`in greer south carolina`).
    if flags & crate::lexicon::WORD != 0 {
        let after_street = i >= 2 && doc.feats[i - 2].is(class::STREET);
        let state_after = doc.feats.get(i + 1).is_some_and(|f| f.is(class::STATE))
            && doc.text.get(t.end..doc.tokens[i + 1].start) == Some(" ");
        if !after_street && !state_after {
            return None;
        }
    }
    Some(Span {
        start: t.start,
        end: t.end,
        label: Label::Location,
        confidence: 0.6,
        recognizer: "places",
    })
}

/// `55 ocean pkwy apt 6f brooklyn 11218`, `3412 s othello st unit 204 seattle`,
/// `yes minneapolis 55454`: a listed town in lower case (one to three words) right after a
/// street address (a space or `, ` between), or right before a ZIP code. After an address a
/// town that is also a word counts too (`88 hope st apt 3r providence`).
fn address_towns(doc: &Text<'_>, out: &mut Vec<Candidate>) {
    // The first token after each street address.
    let mut starts: Vec<usize> = Vec::new();
    for c in out.iter().filter(|c| c.label == Label::Address) {
        let k = doc.tokens.partition_point(|t| t.start < c.end);
        if let Some(t) = doc.tokens.get(k)
            && matches!(doc.text.get(c.end..t.start), Some(" " | ", "))
        {
            starts.push(k);
        }
    }
    for (k, t) in doc.tokens.iter().enumerate() {
        if t.kind == Kind::Number
            && t.end - t.start == 5
            && k > 0
            && matches!(
                doc.text.get(doc.tokens[k - 1].end..t.start),
                Some(" " | ", ")
            )
        {
            // The town's words: up to three back, the longest listed one.
            for words in (1..=3usize).rev() {
                if let Some(first) = k.checked_sub(words)
                    && single_spaced(doc, first, k - 1)
                {
                    let phrase = doc
                        .lower
                        .get(doc.tokens[first].start..doc.tokens[k - 1].end)
                        .unwrap_or("");
                    let flags = doc.lex.flags_lower(phrase);
                    if flags & PLACE != 0
                        && (words > 1 || flags & crate::lexicon::WORD == 0)
                        && !doc.feats[first].cap
                    {
                        push_town(doc, first, k - 1, out);
                        break;
                    }
                }
            }
        }
    }
    for k in starts {
        for words in (1..=3usize).rev() {
            let last = k + words - 1;
            if last >= doc.tokens.len() || !single_spaced(doc, k, last) {
                continue;
            }
            let f = &doc.feats[k];
            if f.cap || f.stop || !f.word {
                break;
            }
            let phrase = doc
                .lower
                .get(doc.tokens[k].start..doc.tokens[last].end)
                .unwrap_or("");
            if doc.lex.flags_lower(phrase) & PLACE != 0 {
                push_town(doc, k, last, out);
                break;
            }
        }
    }
}

fn push_town(doc: &Text<'_>, first: usize, last: usize, out: &mut Vec<Candidate>) {
    out.push(Span {
        start: doc.tokens[first].start,
        end: doc.tokens[last].end,
        label: Label::Location,
        confidence: 0.65,
        recognizer: "places",
    });
}

/// Whether tokens `from..=to` are separated by single spaces.
fn single_spaced(doc: &Text<'_>, from: usize, to: usize) -> bool {
    (from..to).all(|j| match (doc.tokens.get(j), doc.tokens.get(j + 1)) {
        (Some(a), Some(b)) => doc.text.get(a.end..b.start) == Some(" "),
        _ => false,
    })
}

fn lower<'d>(doc: &'d Text<'_>, i: usize) -> &'d str {
    doc.lower_tok(i)
}

fn judge(doc: &Text<'_>, a: usize, b: usize) -> Option<f32> {
    let text = doc.text;
    let feats: &[Feat] = &doc.feats;
    if feats[b - 1].possessive {
        return None;
    }
    // `Springfield Clinic`, `Elm Ct`; but not across a comma (`New Britain, CT`).
    if doc.tokens.get(b).is_some()
        && doc.feats[b].is(class::ORG_AFTER)
        && text.get(doc.tokens[b - 1].end..doc.tokens[b].start) == Some(" ")
    {
        return None;
    }
    let next = doc.tokens.get(b);
    let after = next.map_or("", |t| {
        text.get(doc.tokens[b - 1].end..t.start).unwrap_or("")
    });
    // `Frankfurt, Germany`.
    if let Some(t) = next
        && after == ", "
        && COUNTRIES.contains(&t.text(text))
    {
        return Some(0.8);
    }
    // `Springfield, IL`, `Dover, Delaware`, `Akron OH 44301`.
    if let Some(t) = next
        && (after == ", " || after == " " || after == ",")
        && validate::is_state(t.text(text))
    {
        return Some(0.9);
    }
    // `..., Edison office`, `the Hamilton clinic`.
    if next.is_some() {
        let w = doc.lower_tok(b);
        if after == " "
            && matches!(
                w,
                "office" | "clinic" | "location" | "branch" | "campus" | "site" | "area"
            )
            && a > 0
            && lower(doc, a - 1) == "the"
        {
            return Some(0.85);
        }
    }
    if a > 0 {
        let before = text
            .get(doc.tokens[a - 1].end..doc.tokens[a].start)
            .unwrap_or("");
        // After a street address: `12 Elm St, Bend`, `Apt 4B, Utica`, `PO Box 12\nMacon`.
        // `22 Wainwright St #3, Dorchester`: a unit number after `#`.
        let unit_number = doc.tokens[a - 1].kind != super::tokens::Kind::Word
            && a >= 2
            && text
                .get(doc.tokens[a - 2].end..doc.tokens[a - 1].start)
                .is_some_and(|g| g.ends_with('#'));
        let prev_is_addr_end = feats[a - 1].is(class::STREET)
            || unit_number
            || matches!(lower(doc, a - 1), "floor" | "fl")
            || (a >= 2 && {
                let pp = lower(doc, a - 2);
                matches!(
                    pp,
                    "apt" | "unit" | "suite" | "ste" | "box" | "apartment" | "lot" | "bldg"
                ) || (feats[a - 2].is(class::STREET)
                    && matches!(
                        lower(doc, a - 1),
                        "n" | "s" | "e" | "w" | "ne" | "nw" | "se" | "sw"
                    ))
            });
        if prev_is_addr_end && (before.contains(',') || before.contains('\n') || before == " ") {
            return Some(0.85);
        }
        if prev_is_addr_end && (before == " in " || before.trim() == "in") {
            return Some(0.85);
        }
        // `Basin Pharmacy, Farmington`: a listed town after an organisation's name.
        if feats[a - 1].is(class::ORG_AFTER)
            && !feats[a - 1].is(class::STREET)
            && before == ", "
            && feats[a..b].iter().all(|f| f.place() || !f.common())
            && doc.lex.flags_lower(
                doc.lower
                    .get(doc.tokens[a].start..doc.tokens[b - 1].end)
                    .unwrap_or(""),
            ) & PLACE
                != 0
        {
            return Some(0.75);
        }
        if feats[a - 1].is(class::PRE) && before == " " {
            let common = feats[a..b].iter().all(|f| f.common());
            return Some(if common { 0.6 } else { 0.8 });
        }
    }
    // Unambiguous multi-word names (`Santa Fe`, `Baton Rouge`) anywhere.
    if b - a >= 2 && !feats[a..b].iter().all(|f| f.common() || f.listed_name()) {
        return Some(0.7);
    }
    None
}
