//! Person names: context cues (`Dr.`, `this is`, `my daughter`, `Name:`, sign-offs), runs of
//! capitalised words checked against the Census/SSA name lists and the common-word list,
//! signature lines, lower-case names after cues, and propagation of a found name to its
//! other mentions in the same message.

use super::context::Cue;
use super::features::{Feat, TokenLists, class};
use super::{Candidate, Recognizer, Text};
use crate::{Label, Span};

/// Diseases and signs named after people: `Parkinson's`, `Bell's palsy` are not names.
pub(crate) const EPONYMS: &[&str] = &[
    "parkinson",
    "alzheimer",
    "crohn",
    "bell",
    "cushing",
    "sjogren",
    "sjögren",
    "raynaud",
    "down",
    "graves",
    "hashimoto",
    "addison",
    "huntington",
    "tourette",
    "asperger",
    "hodgkin",
    "gehrig",
    "kaposi",
    "wilson",
    "guillain",
    "barre",
    "barré",
    "meniere",
    "ménière",
    "paget",
    "marfan",
    "ehlers",
    "danlos",
    "epstein",
    "barr",
    "baker",
    "osgood",
    "schlatter",
    "tay",
    "sachs",
    "creutzfeldt",
    "jakob",
    "dupuytren",
    "peyronie",
    "behcet",
    "kawasaki",
    "lyme",
    "stevens",
    "bright",
    "grave",
    "reiter",
    "wernicke",
    "korsakoff",
    "lou",
    "munchausen",
    "achilles",
    "apgar",
    "heimlich",
    "pap",
    "holter",
    "foley",
    "epley",
    "valsalva",
    "tinel",
    "phalen",
    "babinski",
    "romberg",
    "murphy",
    "mcburney",
    "kernig",
    "brudzinski",
    "homan",
    "trendelenburg",
];

/// Words after a capitalised run that make it an organisation or place, not a person.
pub(crate) const ORG_WORDS: &[&str] = &[
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
    "place",
    "pl",
    "county",
    "parish",
    "city",
    "hospital",
    "clinic",
    "center",
    "centre",
    "medical",
    "health",
    "pharmacy",
    "university",
    "college",
    "school",
    "church",
    "office",
    "labs",
    "lab",
    "group",
    "associates",
    "practice",
    "institute",
    "foundation",
    "inc",
    "llc",
    "corp",
    "bank",
    "insurance",
    "syndrome",
    "disease",
    "dept",
    "department",
    "desk",
    "palsy",
    "disorder",
    "test",
    "sign",
    "maneuver",
    "score",
    "scale",
    "park",
    "lake",
    "river",
    "mall",
    "plaza",
    "square",
    "heights",
    "hills",
    "valley",
    "beach",
    "springs",
    "falls",
    "village",
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
    "partners",
    "specialists",
    "physicians",
    "surgery",
    "medicaid",
    "medicare",
    "lymphoma",
    "cancer",
    "tablets",
    "pharmaceuticals",
    "pen",
    "inhaler",
    "xr",
    "er",
    "sr",
    "hcl",
];

/// A lower-case particle (`de`, `van`) between two capitalised name parts.
fn is_particle(doc: &Text<'_>, k: usize) -> bool {
    let next_ok = |i: usize| doc.feats.get(i).is_some_and(|n| n.cap && n.word);
    is_particle_tok(doc, k)
        && gap(doc, k, k + 1) == " "
        && (next_ok(k + 1)
            || (is_particle_tok(doc, k + 1) && next_ok(k + 2) && gap(doc, k + 1, k + 2) == " "))
}

/// A name particle written in lower case (`de`, `van`; `De` is not one).
fn is_particle_tok(doc: &Text<'_>, k: usize) -> bool {
    doc.feats.get(k).is_some_and(|f| f.is(class::PARTICLE))
        && doc
            .tokens
            .get(k)
            .is_some_and(|t| doc.text.get(t.start..t.end) == doc.lower.get(t.start..t.end))
}

/// Words that, inside a capitalised run, make it a product or an organisation (street words
/// such as `Lane` or `Church` are also surnames, so they are not here).
pub(crate) const PRODUCT_OR_ORG: &[&str] = &[
    "pen",
    "inhaler",
    "tablets",
    "xr",
    "er",
    "sr",
    "hcl",
    "clinic",
    "hospital",
    "center",
    "centre",
    "medical",
    "health",
    "pharmacy",
    "university",
    "college",
    "school",
    "labs",
    "lab",
    "group",
    "associates",
    "partners",
    "foundation",
    "inc",
    "llc",
    "corp",
    "bank",
    "insurance",
    "syndrome",
    "disease",
    "dept",
    "department",
    "desk",
    "palsy",
    "medicine",
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
    "specialists",
    "physicians",
    "surgery",
    "association",
    "institute",
    "society",
];

/// Token `k` is a disease or sign named after a person (`Parkinson's`, `Bell`).
fn eponym(doc: &Text<'_>, k: usize) -> bool {
    doc.feats.get(k).is_some_and(|f| f.is(class::EPONYM))
}

/// The person-name recognizer.
pub(crate) struct Names;

impl Recognizer for Names {
    fn name(&self) -> &'static str {
        "names"
    }

    fn find(&self, doc: &Text<'_>, out: &mut Vec<Candidate>) {
        let n = doc.tokens.len();
        if n == 0 {
            return;
        }
        // The buffers are kept per thread (a recognizer that calls the engine again from
        // inside finds the slot empty and gets fresh ones).
        let mut sc = SCRATCH.with(|s| s.take()).unwrap_or_default();
        let lists = &doc.lists;
        let Scratch {
            found,
            covered,
            known_at,
        } = &mut *sc;
        found.clear();
        by_cues(doc, lists, found);
        by_runs(doc, lists, found);
        by_lines(doc, lists, found);
        by_shapes(doc, lists, found);
        table_last_first(doc, lists, found);
        spelled(doc, found);
        speakers(doc, found);
        chat_stamps(doc, found);
        nicknames(doc, found);
        propagate(doc, lists, found, covered, known_at);
        for &(a, b, conf) in found.iter() {
            let (Some(first), Some(last)) = (doc.tokens.get(a), doc.tokens.get(b.wrapping_sub(1)))
            else {
                continue;
            };
            // `Opelousas, LA 70570`, `plate NY KLM 2290`: a state's two-letter code alone is
            // not a name.
            if a + 1 == b
                && first.all_caps
                && (first.end - first.start == 2 && super::validate::is_state(first.text(doc.text))
                    || region_code(doc, a))
            {
                continue;
            }
            // `Primary language: English`, `speaks French`: a language, not the surname.
            if a + 1 == b && {
                let before = doc.lower.get(..first.start).unwrap_or("").trim_end();
                before.ends_with("language:")
                    || before.ends_with("speaks")
                    || before.ends_with("language is")
            } {
                continue;
            }
            // `add jardiance 10mg`, `Ozempic 0.5 mg`: a product and its dose.
            if a + 1 == b && dose_after(doc.text, last.end) {
                continue;
            }
            // In an HL7 segment, a whole field or component (`|FAM^12`, `^^^DR|`) is a
            // code: the structured recognizer reads the segments' name fields.
            if doc.seen & super::tokens::SEEN_PIPE != 0
                && hl7_component(doc.text, first.start, last.end)
            {
                continue;
            }
            let mut end = last.end;
            // Possessive `'s` is not part of the name.
            let s = doc.text.get(first.start..end).unwrap_or("");
            if s.ends_with("'s") {
                end -= 2;
            } else if s.ends_with("’s") {
                end -= 4;
            }
            out.push(Span {
                start: first.start,
                end,
                label: Label::Name,
                confidence: conf,
                recognizer: "names",
            });
            // `Michiko Nakagawa (中川 美智子)`: the name in its own script after it.
            if let Some(script) = script_name_after(doc.text, end) {
                out.push(Span {
                    start: script.0,
                    end: script.1,
                    label: Label::Name,
                    confidence: conf,
                    recognizer: "names",
                });
            }
        }
        // Very large messages do not keep their buffers (bounded memory per thread).
        if n <= 16 * 1024 {
            SCRATCH.with(|s| s.set(Some(sc)));
        }
    }
}

/// A name in Chinese, Japanese or Korean script in parentheses right after `end`
/// (` (中川 美智子)`, ` (김민준,`): its byte range.
fn script_name_after(text: &str, end: usize) -> Option<(usize, usize)> {
    let rest = text.get(end..)?.strip_prefix(" (")?;
    let cjk = |c: char| matches!(c, '\u{3040}'..='\u{30FF}' | '\u{3400}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7AF}');
    let len: usize = rest
        .chars()
        .take_while(|&c| cjk(c) || c == ' ')
        .map(char::len_utf8)
        .sum();
    let name = rest.get(..len)?.trim_end();
    let start = end + 2;
    (name.chars().filter(|&c| cjk(c)).count() >= 2).then_some((start, start + name.len()))
}

/// Whether a dose follows `end`: a number and a unit (`10mg`, ` 0.5 mg`, ` 25 mcg`).
fn dose_after(text: &str, end: usize) -> bool {
    let rest = text.get(end..).unwrap_or("");
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let digits = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    if digits == 0 || !rest.as_bytes()[0].is_ascii_digit() {
        return false;
    }
    const UNITS: [&str; 11] = [
        "mg", "mcg", "ml", "g", "units", "unit", "iu", "mgs", "tab", "tabs", "caps",
    ];
    let unit = rest[digits..].trim_start_matches(' ');
    let len = unit.bytes().take_while(u8::is_ascii_alphabetic).count();
    let word = &unit[..len];
    UNITS.iter().any(|u| word.eq_ignore_ascii_case(u))
}

/// Token `k` is a province's or an Australian state's code with a postcode after it
/// (`QLD 4066`, `ON L5G 1E2`), not a name or a name's part (`MB, RN` is someone's initials).
fn region_code(doc: &Text<'_>, k: usize) -> bool {
    doc.tokens
        .get(k)
        .is_some_and(|t| super::validate::is_foreign_region(t.text(doc.text)))
        && doc
            .tokens
            .get(k + 1)
            .is_some_and(|t| t.kind != super::tokens::Kind::Word)
}

/// A clinician's credential after a name (`C. Ibarra RN`, `Ana Ruiz, PA-C`): it ends the name
/// and is no part of it.
fn credential(doc: &Text<'_>, k: usize) -> bool {
    const CREDENTIALS: [&str; 32] = [
        "rn", "md", "np", "pa", "do", "lpn", "lvn", "cna", "cma", "rph", "pharmd", "dds", "lcsw",
        "fnp", "aprn", "crna", "dnp", "phd", "bsn", "msn", "rt", "mbbs", "pt", "dpt", "ot", "otr",
        "slp", "lmft", "lpc", "psyd", "dmd", "cnm",
    ];
    doc.feats.get(k).is_some_and(|f| f.cap) && CREDENTIALS.contains(&lower_tok(doc, k))
}

/// Whether `start..end` is a whole HL7 field or component: a delimiter (`|`, `^`, `~`, `&`)
/// right before it and a delimiter or the line's end right after.
fn hl7_component(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let delim = |c: u8| matches!(c, b'|' | b'^' | b'~' | b'&');
    start > 0
        && b.get(start - 1).copied().is_some_and(delim)
        && b.get(end)
            .is_none_or(|&c| delim(c) || c == b'\n' || c == b'\r')
}

/// Per-thread buffers of the name recognizer.
#[derive(Default)]
struct Scratch {
    found: Vec<(usize, usize, f32)>,
    covered: Vec<bool>,
    known_at: Vec<(usize, usize)>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Option<Box<Scratch>>> = const { std::cell::Cell::new(None) };
}

/// Text between two tokens.
fn gap<'t>(doc: &Text<'t>, a: usize, b: usize) -> &'t str {
    match (doc.tokens.get(a), doc.tokens.get(b)) {
        (Some(x), Some(y)) if x.end <= y.start => doc.text.get(x.end..y.start).unwrap_or(""),
        _ => "",
    }
}

fn lower_tok<'d>(doc: &'d Text<'_>, i: usize) -> &'d str {
    doc.lower_tok(i)
}

fn is_org_word(doc: &Text<'_>, i: usize) -> bool {
    doc.feats.get(i).is_some_and(|f| f.is(class::ORG))
}

/// Whether token `k` is the first given name after `Last, ` in a name taken from token `j`.
fn last_first_given(doc: &Text<'_>, j: usize, k: usize) -> bool {
    k == j + 1
        && (matches!(gap(doc, j, k), ", " | " , ")
            || (gap(doc, j, k) == "," && doc.feats.get(k).is_some_and(|f| f.all_caps)))
}

/// Whether the gap between two name parts keeps them in one name.
fn joins(g: &str, prev_initial: bool) -> bool {
    // `MELE 'ANA`, `Keʻala`: an apostrophe or ʻokina opening the next part.
    g == " " || g == "  " || g == " '" || g == " ʻ" || (prev_initial && (g == ". " || g == "."))
}

/// Whether the relative's word before token `j` is owned (`my mother`, `our son`, `his
/// wife`) or followed by `of` (`the son of`): a relative's name can then follow in lower case.
fn relation_owned(doc: &Text<'_>, j: usize) -> bool {
    j >= 2
        && (matches!(lower_tok(doc, j - 2), "my" | "our" | "his" | "her" | "your")
            || lower_tok(doc, j - 1) == "of")
}

/// `my mom małgorzata zielińska cant`, `the son of inti yupanqui he's`: two lower-case words
/// after an owned relative's word, neither a stop word nor a dictionary word, are the
/// relative's name; so are a listed first name that is also a word and such a word when the
/// phrase closes after them (`my grandmother ruby ellsworth she`).
fn relation_pair(doc: &Text<'_>, j: usize) -> bool {
    let lower_word = |k: usize| {
        doc.feats
            .get(k)
            .is_some_and(|f| f.word && !f.cap && !f.stop)
            && lower_tok(doc, k).chars().count() >= 3
    };
    let plain = |k: usize| lower_word(k) && flags_of(doc, k) & crate::lexicon::WORD == 0;
    let first_name = |k: usize| lower_word(k) && flags_of(doc, k) & crate::lexicon::FIRST != 0;
    relation_owned(doc, j)
        && gap(doc, j, j + 1) == " "
        && plain(j + 1)
        && (plain(j) || (first_name(j) && closes_after(doc, j + 1)))
}

/// `my mother yevgenia she's 94`, `our son tadeo, he`: after `my`/`our`/`his`/`her`/`your`
/// and a word for a relative, a lower-case word that is no dictionary word is the relative's
/// name when the phrase closes right after it (punctuation, the end, or a pronoun or verb).
fn relation_name(doc: &Text<'_>, j: usize) -> bool {
    relation_owned(doc, j) && closes_after(doc, j)
}

/// Whether the phrase closes after token `j`: punctuation, the end, or a pronoun or verb.
fn closes_after(doc: &Text<'_>, j: usize) -> bool {
    match doc.tokens.get(j + 1) {
        None => true,
        Some(_) => {
            let g = gap(doc, j, j + 1);
            g.contains([',', '.', '!', '?', '\n', '(', ';'])
                || (g == " " && {
                    let w = lower_tok(doc, j + 1);
                    is_subject_verb(w)
                        || matches!(
                            w,
                            "she"
                                | "he"
                                | "she's"
                                | "he's"
                                | "shes"
                                | "hes"
                                | "and"
                                | "who"
                                | "can"
                                | "her"
                                | "his"
                        )
                })
        }
    }
}

/// The capitalised words (one to four, one space apart, on one line) that fill a name
/// label's value.
fn label_value(doc: &Text<'_>, j: usize) -> Option<(usize, usize)> {
    let mut k = j;
    while k < doc.tokens.len() && k - j < 4 {
        let f = doc.feats.get(k)?;
        let ok = (f.word && f.cap && !f.stop && !is_org_word(doc, k)) || f.initial;
        if !ok || (k > j && !joins(gap(doc, k - 1, k), doc.feats[k - 1].initial)) {
            break;
        }
        k += 1;
    }
    (k > j && !doc.feats[j].initial).then_some((j, k))
}

/// Takes the name that starts at token `j` after a cue of kind `cue`.
fn take_after_cue(doc: &Text<'_>, j: usize, cue: Cue) -> Option<(usize, usize)> {
    let feats = &doc.feats;
    let first = feats.get(j)?;
    let lower_ok = |f: &Feat, i: usize| -> bool {
        if !f.word || f.stop || f.cap {
            return false;
        }
        let s = doc.tokens.get(i).map_or("", |t| t.text(doc.text));
        let verbish = ["ing", "ed", "ly", "tion", "ment", "ness"]
            .iter()
            .any(|x| s.ends_with(x));
        // Lower-case words far from the cue may not have been looked up yet.
        let looked_up = Feat {
            flags: flags_of(doc, i),
            ..*f
        };
        let f = &looked_up;
        match cue {
            // `dr tuiasosopo said`: after the first word, no dictionary word (`said`,
            // `see` are also listed surnames).
            // (`the doc said`: a verb after the title is no name, though `Said` is one.)
            Cue::Title => {
                (f.listed_name() && (i == j || !f.common()) && !is_subject_verb(s))
                    || (!f.common() && s.len() >= 2 && !verbish)
            }
            Cue::NameIntro => {
                (f.listed_name() && !f.common()) || (!f.common() && s.len() >= 3 && !verbish)
            }
            Cue::SignOff => f.listed_name() && !f.common(),
            Cue::Relation => {
                (f.listed_name() && !f.common())
                    || (i == j && !f.common() && s.len() >= 4 && !verbish && relation_name(doc, j))
                    || ((i == j || i == j + 1) && relation_pair(doc, j))
                    // `my daughter faith can`: a first name that is also a word, closed.
                    || (i == j && f.first() && !verbish && relation_name(doc, j))
            }
            _ => false,
        }
    };
    let cap_mode = first.cap || first.initial;
    let mut k = j;
    // Lower case: a listed name that is also a word (`holly`) starts a name only when a
    // clear name part follows (`holly thomson`).
    let month_name = matches!(
        doc.tokens[j].text(doc.text),
        "april" | "june" | "august" | "may" | "jan"
    );
    if !cap_mode
        && first.word
        && (!first.stop || month_name)
        && first.listed_name()
        && (first.common() || month_name)
        && !matches!(cue, Cue::Relation)
        && feats.get(j + 1).is_some_and(|n| lower_ok(n, j + 1))
        && joins(gap(doc, j, j + 1), false)
    {
        k = j + 1;
    }
    // Lower case after `this is`: a first name and a surname even if both are words
    // (`mark snow calling`, `faith knight`).
    if !cap_mode
        && k == j
        && matches!(cue, Cue::NameIntro)
        && first.word
        && !first.stop
        && first.first()
        && feats
            .get(j + 1)
            .is_some_and(|n| n.word && !n.stop && !n.cap && n.last())
        && joins(gap(doc, j, j + 1), false)
    {
        k = j + 2;
    }
    // `this is grace from 3b`, `this is dawn bringing`: a first name that is also a word,
    // closed by a stop word, punctuation or a verb in -ing right after an introduction.
    if !cap_mode
        && k == j
        && matches!(cue, Cue::NameIntro)
        && first.word
        && !first.stop
        && first.first()
    {
        // (`pauline de la cruz`: particles and a surname go on.)
        let particles = (j + 1..j + 3)
            .take_while(|&m| is_particle_tok(doc, m) && gap(doc, m - 1, m) == " ")
            .count();
        let surname_after_particles = particles > 0
            && feats
                .get(j + 1 + particles)
                .is_some_and(|n| lower_ok(n, j + 1 + particles))
            && gap(doc, j + particles, j + 1 + particles) == " ";
        if surname_after_particles {
            return Some((j, j + 2 + particles));
        }
        let closed = match doc.tokens.get(j + 1) {
            None => true,
            Some(_) => {
                let g = gap(doc, j, j + 1);
                g.contains([',', '.', '!', '?', '\n', '-'])
                    || (g == " " && feats.get(j + 1).is_some_and(|n| n.stop))
                    || (g == " " && lower_tok(doc, j + 1).ends_with("ing"))
            }
        };
        if closed {
            return Some((j, j + 1));
        }
    }
    // `dr da Conceição`: a particle may open a surname after a title.
    if k == j && matches!(cue, Cue::Title) && is_particle(doc, j) {
        k = j + 1;
        let mut m = k;
        while m < doc.tokens.len()
            && m - j < 4
            && (feats[m].cap_nameish() || is_particle(doc, m))
            && joins(gap(doc, m - 1, m), false)
        {
            m += 1;
        }
        return (m > k).then_some((j, m));
    }
    while k < doc.tokens.len() && k - j < 4 {
        let f = feats.get(k)?;
        if k > j {
            let g = gap(doc, k - 1, k);
            let prev_initial = feats.get(k - 1).is_some_and(|p| p.initial);
            // `Phạm, Thu Trang`, `Ahn , Ji-woo`: the given names after the surname.
            // A stop word (`Thu`) counts when a name-like word follows it.
            let last_first = (g == ", " || g == " , " || (g == "," && f.all_caps))
                && k - j == 1
                && cap_mode
                && matches!(cue, Cue::NameIntro)
                && f.cap
                && f.word
                && (!f.stop
                    || (feats.get(k + 1).is_some_and(Feat::cap_nameish)
                        && gap(doc, k, k + 1) == " "))
                && !is_org_word(doc, k);
            if !joins(g, prev_initial) && !last_first {
                break;
            }
            if feats.get(k - 1).is_some_and(|p| p.possessive) {
                break;
            }
        }
        let ok = if cap_mode {
            // `Parkinson's` is a disease, but `my daughter Iryna's place` a person's.
            (f.cap_nameish() && !(f.possessive && eponym(doc, k) && cue != Cue::Relation))
                || (last_first_given(doc, j, k) && f.cap && f.word)
                || (k > j && is_particle(doc, k))
                || (k > j && f.word && f.cap && !f.stop && !f.all_caps && !is_org_word(doc, k))
        } else {
            lower_ok(f, k)
                || (k == j + 1
                    && matches!(cue, Cue::NameIntro)
                    && f.word
                    && !f.stop
                    && !f.cap
                    && f.last())
                // `jörg-peter dos santos`, `pauline de la cruz`: one or two particles
                // between two lower-case name parts.
                || (k > j
                    && is_particle_tok(doc, k)
                    && (feats.get(k + 1).is_some_and(|n| lower_ok(n, k + 1))
                        || (is_particle_tok(doc, k + 1)
                            && gap(doc, k, k + 1) == " "
                            && feats.get(k + 2).is_some_and(|n| lower_ok(n, k + 2))))
                    && joins(gap(doc, k, k + 1), false))
        };
        if !ok {
            break;
        }
        k += 1;
    }
    while k > j + 1 && is_particle_tok(doc, k - 1) {
        k -= 1;
    }
    // Do not end on an initial alone unless it is the whole name (`J.` after `Dr.` is odd),
    // or a middle initial after `Last, First` (`BRANDT, JUNE A.`).
    let last_first_name = k > j + 2 && last_first_given(doc, j, j + 1);
    while !last_first_name && k > j && feats.get(k - 1).is_some_and(|f| f.initial) && k - j > 1 {
        k -= 1;
    }
    if k == j {
        return None;
    }
    // A single initial is not a name.
    if k - j == 1 && first.initial {
        return None;
    }
    // `Lakeview Clinic` is an organisation, but in `Iryna's place` the word after a
    // possessive is the person's.
    // Nor across punctuation: in `Patient: Anna Whitcomb; Dr. French` the `Dr` is a title.
    if k < doc.tokens.len()
        && is_org_word(doc, k)
        && cap_mode
        && !matches!(cue, Cue::Title)
        && !feats.get(k - 1).is_some_and(|f| f.possessive)
        && gap(doc, k - 1, k) == " "
    {
        return None;
    }
    // `- Ozempic 0.5 mg`: a product and its dose, not a signature.
    if matches!(cue, Cue::SignOff)
        && doc
            .tokens
            .get(k)
            .is_some_and(|t| t.kind != super::tokens::Kind::Word && gap(doc, k - 1, k) == " ")
        && !feats[j..k].iter().any(|f| f.listed_name() && !f.common())
    {
        return None;
    }
    Some((j, k))
}

fn by_cues(doc: &Text<'_>, lists: &TokenLists, found: &mut Vec<(usize, usize, f32)>) {
    for c in &doc.cues {
        let strength = match c.cue {
            Cue::NameIntro | Cue::Title => 0.9,
            Cue::SignOff => 0.85,
            Cue::Relation => 0.85,
            _ => continue,
        };
        let mut j = doc.tokens.partition_point(|t| t.start < c.end);
        let Some(t) = doc.tokens.get(j) else { continue };
        let g = doc.text.get(c.end..t.start).unwrap_or("");
        // `the son of inti yupanqui`, `daughter of Trần Văn Bảo`: the name after `of`.
        if c.cue == Cue::Relation && g == " " && lower_tok(doc, j) == "of" {
            if gap(doc, j, j + 1) != " " {
                continue;
            }
            j += 1;
        }
        let ok_gap = match c.cue {
            Cue::SignOff => {
                g.len() <= 4 && g.chars().all(|ch| " ,!.\n\r-:".contains(ch)) && !g.is_empty()
            }
            Cue::Title => g.len() <= 2 && g.chars().all(|ch| " .".contains(ch)),
            Cue::Relation => {
                g.len() <= 3 && g.chars().all(|ch| " ,:".contains(ch)) && !g.is_empty()
            }
            // `PATIENT :  TUPOU, SIOSAIA` (a fax's spacing) as well as `Patient: ...`.
            _ => {
                g.len() <= 6
                    && g.chars().all(|ch| " ,:-(\t".contains(ch))
                    && g.matches(':').count() <= 1
            }
        };
        if !ok_gap {
            continue;
        }
        // `this is uh marty kowalczyk`, `my wife, um, Dolores`: a caller's fillers first.
        while matches!(
            lower_tok(doc, j),
            "uh" | "uhh" | "um" | "umm" | "er" | "erm"
        ) && matches!(gap(doc, j, j + 1), " " | ", ")
        {
            j += 1;
        }
        if let Some((a, b)) = take_after_cue(doc, j, c.cue) {
            found.push((a, b, strength));
        } else if c.cue == Cue::NameIntro
            && doc
                .lower
                .get(c.start..c.end)
                .is_some_and(|w| w.contains("name"))
            && (g.contains(':') || doc.text.as_bytes().get(c.end - 1) == Some(&b':'))
            && let Some((a, b)) = label_value(doc, j)
        {
            // `Name (Last): Yellow Hawk`: after a name label, capitalised words are the
            // name even when they are dictionary words.
            found.push((a, b, 0.8));
        }
    }
    // A dash before a closing name: `- Dominic`, `— Ana Ruiz` at a line end.
    // The tokens whose last byte before them other than a space is `-`, `~` or the end
    // of `—`.
    for &j in &lists.dashes {
        let j = j as usize;
        let before = if j == 0 {
            doc.text.get(..doc.tokens[0].start).unwrap_or("")
        } else {
            gap(doc, j - 1, j)
        };
        let t = before.trim_end_matches(' ');
        let dash_alone = {
            let d = t.trim_end_matches(['-', '—', '~']);
            d.len() < t.len() && (d.is_empty() || d.ends_with([' ', '\n', '.', '!', '?']))
        };
        // `... sorry!! -priya`: a lower-case listed first name closing the message.
        let lower_signature = !doc.feats[j].cap
            && j + 1 == doc.tokens.len()
            && doc.feats[j].word
            && !doc.feats[j].stop
            && {
                let fl = flags_of(doc, j);
                fl & (crate::lexicon::FIRST | crate::lexicon::LAST) != 0
                    && fl & crate::lexicon::WORD == 0
            };
        // `... 0126 - hunter reyes`: a listed first name (a word too, perhaps) and a listed
        // surname that is no word, in lower case, closing the message.
        if dash_alone
            && j + 2 == doc.tokens.len()
            && [j, j + 1]
                .iter()
                .all(|&k| doc.feats[k].word && !doc.feats[k].cap && !doc.feats[k].stop)
            && gap(doc, j, j + 1) == " "
            && flags_of(doc, j) & crate::lexicon::FIRST != 0
            && {
                let fl = flags_of(doc, j + 1);
                fl & crate::lexicon::LAST != 0 && fl & crate::lexicon::WORD == 0
            }
        {
            found.push((j, j + 2, 0.75));
            continue;
        }
        // `... tomorrow? -K` at a line's end: an initial signing the message.
        let t = &doc.tokens[j];
        if dash_alone
            && t.end - t.start == 1
            && t.upper
            && doc
                .text
                .get(t.end..)
                .is_some_and(|r| r.is_empty() || r.starts_with(['\n', '\r']))
        {
            found.push((j, j + 1, 0.6));
            continue;
        }
        if dash_alone
            && (doc.feats[j].cap || lower_signature)
            && !matches!(
                lower_tok(doc, j),
                "love" | "thanks" | "thank" | "regards" | "best" | "cheers" | "sincerely" | "xoxo"
            )
            && let Some((a, b)) = take_after_cue(doc, j, Cue::SignOff)
        {
            // A signature ends the line or the message, or is followed by a comma.
            let closes = match doc.tokens.get(b) {
                None => true,
                Some(_) => {
                    let g = gap(doc, b - 1, b);
                    g.contains([',', '\n', '.', '!', '('])
                }
            };
            if closes {
                found.push((a, b, 0.8));
            }
        }
    }
}

/// Runs of capitalised name-like words without a cue.
fn by_runs(doc: &Text<'_>, lists: &TokenLists, found: &mut Vec<(usize, usize, f32)>) {
    let feats = &doc.feats;
    let n = doc.tokens.len();
    // Every capitalised name-like word (not a final initial) not inside an earlier run.
    let mut next = 0;
    for &i in &lists.runs {
        let i = i as usize;
        if i < next {
            continue;
        }
        let a = i;
        let mut b = i + 1;
        while b < n
            && b - a < 5
            && (feats[b].cap_nameish() || is_particle(doc, b))
            && !credential(doc, b)
        {
            let prev_initial = feats[b - 1].initial;
            if !joins(gap(doc, b - 1, b), prev_initial) || feats[b - 1].possessive {
                break;
            }
            b += 1;
        }
        // A capitalised common word right after a name part, ending the clause, is a
        // surname that happens to be a word (`Veli Bigot`, `Mariola Warmer.`).
        if b < n
            && b - a == 1
            && !feats[a].common()
            && (!feats[a].sent_start || b + 1 == n)
            && feats[b].word
            && feats[b].cap
            && !feats[b].stop
            && !feats[b].all_caps
            && joins(gap(doc, a, b), false)
            && !is_org_word(doc, b)
        {
            let tail = match doc.tokens.get(b + 1) {
                Some(t) => doc.text.get(doc.tokens[b].end..t.start).unwrap_or(""),
                None => "",
            };
            if b + 1 == n || tail.contains([',', '.', '!', '?', '\n', '(']) {
                b += 1;
            }
        }
        next = b;
        judge_run(doc, a, b, found);
    }
}

/// A slot where a capitalised word that is also a common word is still a name:
/// `..., Holly doesnt live here`, `for Maria?`.
fn ambiguous_name_slot(doc: &Text<'_>, a: usize, b: usize) -> bool {
    let prev_gap = if a > 0 { gap(doc, a - 1, a) } else { "" };
    let prev = if a > 0 { lower_tok(doc, a - 1) } else { "" };
    // `Maria called`, `Will said`: a first name opening a sentence as the subject.
    if doc.feats.get(a).is_some_and(|f| f.sent_start) {
        let next_word = lower_tok(doc, b);
        return gap(doc, a, b) == " "
            && (matches!(
                next_word,
                "called"
                    | "calls"
                    | "said"
                    | "says"
                    | "asked"
                    | "asks"
                    | "came"
                    | "went"
                    | "needs"
                    | "wants"
                    | "has"
                    | "had"
                    | "was"
                    | "is"
                    | "will"
                    | "can't"
                    | "cannot"
                    | "won't"
                    | "didn't"
                    | "doesn't"
                    | "doesnt"
                    | "fell"
                    | "left"
                    | "stopped"
                    | "started"
                    | "took"
                    | "got"
                    | "missed"
                    | "felt"
                    | "feels"
                    | "reports"
                    | "reported"
                    | "denies"
                    | "states"
                    | "stated"
            ) || (next_word.ends_with("ed") && next_word.len() > 4));
    }
    let next = doc.feats.get(b);
    let next_gap = match doc.tokens.get(b) {
        Some(_) => gap(doc, b - 1, b),
        None => "",
    };
    let next_lower_word = next.is_some_and(|n| n.word && !n.cap && !n.stop) && next_gap == " ";
    // `tell Faith (my aide)`: a parenthesis after the name closes it too.
    let closes = next.is_none() || next_gap.starts_with(['?', '.', '!', ',']) || next_gap == " (";
    let next_any_lower = next.is_some_and(|n| n.word && !n.cap) && next_gap == " ";
    // `can Faith pick up my rx`: capitalised in the middle of a lower-case clause, between
    // two lower-case words, a word that is also a first name is written as a name.
    // Not after a determiner or preposition (`the Will of God`), not before `of`.
    let prev_lower_word = a > 0
        && doc.feats.get(a - 1).is_some_and(|p| p.word && !p.cap)
        && prev_gap == " "
        && !matches!(
            prev,
            "the"
                | "a"
                | "an"
                | "this"
                | "that"
                | "these"
                | "those"
                | "my"
                | "your"
                | "his"
                | "her"
                | "our"
                | "their"
                | "its"
                | "of"
                | "in"
                | "on"
                | "at"
                | "some"
                | "any"
                | "every"
                | "no"
        );
    if prev_lower_word
        && next_any_lower
        && lower_tok(doc, b) != "of"
        && doc.feats.get(a).is_some_and(|f| !f.all_caps)
    {
        return true;
    }
    (prev_gap == ", " && next_lower_word)
        || (matches!(prev, "for" | "with" | "and" | "to") && prev_gap == " " && closes)
        // `She said Dawn would`, `ask for Hope at the desk`, `tell Rose to call`.
        || (matches!(
            prev,
            "said" | "told" | "tell" | "ask" | "asked" | "call" | "called" | "saw" | "met"
                | "for" | "with" | "from" | "by" | "thank" | "thanks"
        ) && prev_gap == " "
            && (closes || next_any_lower))
}

fn judge_run(doc: &Text<'_>, a: usize, b: usize, found: &mut Vec<(usize, usize, f32)>) {
    let feats = &doc.feats;
    let mut a = a;
    // `Humira Pen`, `Lakeview Clinic`: a product or organisation word ends the run and
    // makes the rest not a person.
    if doc.feats[a + 1..b].iter().any(|f| f.is(class::PRODUCT)) {
        return;
    }
    // Leading initials only make sense before a name.
    let run = &feats[a..b];
    if run.iter().all(|f| f.initial) {
        return;
    }
    if b < doc.tokens.len() && is_org_word(doc, b) {
        return;
    }
    if run.iter().all(|f| f.all_caps) && run.len() < 2 {
        return;
    }
    if let Some(last) = run.last()
        && last.possessive
        && eponym(doc, b - 1)
    {
        return;
    }
    // `Said EOB shows`, `Prescriber DEA: ...`: a word and a short acronym are a phrase or a
    // form label, not a person.
    let short_acronym = |k: usize| {
        feats[k].all_caps && doc.tokens[k].end - doc.tokens[k].start <= 4 && feats[k].word
    };
    if b - a == 2 && short_acronym(b - 1) && !feats[a].all_caps {
        let label_colon = doc
            .tokens
            .get(b)
            .map_or(doc.text.get(doc.tokens[b - 1].end..).unwrap_or(""), |t| {
                doc.text.get(doc.tokens[b - 1].end..t.start).unwrap_or("")
            })
            .starts_with(':');
        // `Oshkosh LA 28955`: a place and its state code.
        let code = doc.tokens[b - 1].text(doc.text);
        let place_state =
            feats[a].place() && super::validate::is_state(code) || region_code(doc, b - 1);
        if label_colon || place_state || (feats[a].sent_start && feats[a].common()) {
            return;
        }
    }
    // A sentence-initial common word (`Will`, `Grace`) is not evidence of a name.
    let followed_by_comma = doc.tokens.get(b).is_some_and(|t| {
        doc.text
            .get(doc.tokens[b - 1].end..t.start)
            .unwrap_or("")
            .starts_with(',')
    });
    if b - a >= 2
        && feats[a].sent_start
        && feats[a].common()
        && !feats[a].first()
        // `C. Ibarra RN`: an initial is no sentence-opening word (`c` is in the dictionary).
        && !feats[a].initial
        && !(b - a == 2 && followed_by_comma)
    {
        a += 1;
    }
    let run = &feats[a..b];
    let toks = &doc.tokens[a..b];
    let non_ascii = |i: usize| !toks[i].text(doc.text).is_ascii();
    let strong = run
        .iter()
        .filter(|f| f.listed_name() && !f.common())
        .count();
    let unknown = run
        .iter()
        .filter(|f| !f.listed_name() && !f.common() && !f.initial)
        .count();
    let listed = run.iter().filter(|f| f.listed_name()).count();
    let places = run.iter().filter(|f| f.place()).count();
    let len = run.iter().filter(|f| !f.initial).count();
    let name_slot_after = match doc.tokens.get(b) {
        None => true,
        Some(t) => {
            let g = doc.text.get(doc.tokens[b - 1].end..t.start).unwrap_or("");
            g.starts_with(',') || g.starts_with(" (") || g.contains('\n')
        }
    };
    let first_then_last = len == 2
        && run.len() == 2
        && run[0].first()
        && run[1].last()
        && (!run[0].sent_start || !run[0].common() || name_slot_after);
    let conf = if len >= 2 && strong + unknown >= 1 && listed >= 1 {
        0.75
    } else if (len >= 2 && unknown >= 2) || first_then_last {
        0.65
    } else if len == 1 && run.len() == 1 && eponym(doc, a) {
        return;
    } else if len == 1 && run.len() == 1 && unknown == 1 && !run[0].all_caps {
        // A lone unknown capitalised word: a foreign-script name, or a name in a slot
        // where names go (`..., Sedat doesnt`, `for Swetlana?`, `and Bolatito`).
        let prev_gap = if a > 0 { gap(doc, a - 1, a) } else { "" };
        let prev = if a > 0 { lower_tok(doc, a - 1) } else { "" };
        let next_is_digit = doc
            .tokens
            .get(b)
            .is_some_and(|t| t.kind != super::tokens::Kind::Word);
        // After a comma only as the subject of a clause (`..., Sedat doesnt live here`), not
        // in a list (`Eliquis, Januvia, Humira`).
        let next_lower_word = doc
            .feats
            .get(b)
            .is_some_and(|n| n.word && !n.cap && !n.stop)
            && doc.tokens.get(b).is_some_and(|_| gap(doc, b - 1, b) == " ");
        let slot = (prev_gap == ", " && next_lower_word)
            || matches!(
                prev,
                "for"
                    | "and"
                    | "to"
                    | "tell"
                    | "ask"
                    | "from"
                    | "saw"
                    | "see"
                    | "called"
                    | "asked"
                    | "by"
            );
        if run[0].sent_start || next_is_digit {
            if non_ascii(0) && !next_is_digit && toks[0].text(doc.text).chars().count() >= 3 {
                0.55
            } else {
                return;
            }
        } else if non_ascii(0) || slot {
            0.55
        } else {
            return;
        }
    } else if len == 1
        && run.len() == 1
        && run[0].first()
        && run[0].common()
        && ambiguous_name_slot(doc, a, b)
    {
        0.6
    } else if run.len() == 2
        && run[0].initial
        && !run[1].initial
        && run[1].word
        && !run[1].all_caps
        && !run[1].stop
        && (!run[1].common() || run[1].last())
    {
        // `for D. O'Driscoll.`, `(L. Zavala)`: an initial and a surname.
        0.65
    } else if len == 1 && strong == 1 {
        let f = run.iter().find(|f| !f.initial).copied().unwrap_or_default();
        if f.first() && places == 0 {
            0.7
        } else if (f.first() && !f.sent_start) || (!f.sent_start && !f.all_caps && places == 0) {
            0.6
        } else {
            return;
        }
    } else {
        return;
    };
    if len >= 2
        && run
            .iter()
            .all(|f| f.place() || f.flags & crate::lexicon::PLACE_PREFIX != 0)
    {
        // `Fort Wayne`, `Santa Fe`: leave to the place recognizer.
        let phrase = doc
            .lower
            .get(doc.tokens[a].start..doc.tokens[b - 1].end)
            .unwrap_or("");
        if doc.lex.flags_lower(phrase) & crate::lexicon::PLACE != 0 {
            return;
        }
    }
    found.push((a, b, conf));
}

/// A line (or the message's tail after the last sentence end) that is only a name:
/// letter headers and signatures.
fn by_lines(doc: &Text<'_>, lists: &TokenLists, found: &mut Vec<(usize, usize, f32)>) {
    let feats = &doc.feats;
    let n = doc.tokens.len();
    // Every start of a line or sentence not inside an earlier run.
    let mut next = 0;
    for &i in &lists.lines {
        let i = i as usize;
        if i < next {
            continue;
        }
        let mut b = i;
        while b < n && b - i < 4 {
            let f = &feats[b];
            let month_name = f.word && f.cap && f.first() && !f.stop;
            let ok = f.initial
                || (f.word && f.cap && !f.stop && (!f.common() || f.listed_name()))
                || month_name;
            if !ok || (b > i && !joins(gap(doc, b - 1, b), feats[b - 1].initial)) {
                break;
            }
            b += 1;
        }
        if b > i {
            // The run must end the line, the message, or be followed by `,` and more text.
            let tail = match doc.tokens.get(b) {
                Some(t) => doc.text.get(doc.tokens[b - 1].end..t.start).unwrap_or(""),
                None => doc.text.get(doc.tokens[b - 1].end..).unwrap_or(""),
            };
            // A speaker label in a chat or transcript (`Xiomara: hi`) counts too.
            // Not a form label ending in an acronym (`Prescriber DEA:`, `Patient MRN:`).
            let label_acronym = b - i >= 2
                && feats[b - 1].all_caps
                && doc.tokens[b - 1].end - doc.tokens[b - 1].start <= 4;
            // A one-word label (`Callback:`, `CB:`, `Stairs:`) is a form's unless the word is
            // a listed name (`Xiomara:`); the speakers pass reads chat labels more closely.
            let one_word_label =
                b - i == 1 && (feats[i].all_caps || feats[i].flags & crate::lexicon::FIRST == 0);
            let speaker =
                tail.starts_with(':') && feats[i].sent_start && !label_acronym && !one_word_label;
            let ends_line = b == n && tail.trim().chars().all(|c| ".!?)".contains(c))
                || tail.contains('\n')
                || speaker;
            let run = &feats[i..b];
            let non_common = run.iter().any(|f| !f.common() && !f.initial)
                || (b == n && run.iter().all(|f| f.listed_name() || f.initial))
                // A first name alone closing a line (`... later. Mark`) signs it.
                || (tail.contains('\n') && run.iter().all(|f| f.first()));
            if ends_line && non_common && !(b < n && is_org_word(doc, b)) {
                found.push((i, b, 0.7));
            }
        }
        next = b.max(i + 1);
    }
}

/// A name spelled out letter by letter (`k o w a l s k i`, `L-E-F-E-V-R-E`), as callers do in
/// voicemail: four or more single letters apart by spaces or hyphens, with the first name
/// said just before it when that is a listed first name (`joy o y e w o l e`).
fn spelled(doc: &Text<'_>, found: &mut Vec<(usize, usize, f32)>) {
    let toks = &doc.tokens;
    // A letter, or `apostrophe` said between letters (`o, apostrophe, r, o, u, r, k, e`).
    let one_letter = |k: usize| {
        toks.get(k).is_some_and(|t| {
            (t.end - t.start == 1 && doc.text.as_bytes()[t.start].is_ascii_alphabetic())
                || (t.end - t.start == 10 && doc.lower.get(t.start..t.end) == Some("apostrophe"))
        })
    };
    // `m as in mary, c, k, ...`: a letter, `as in` and a word stand for the letter.
    let as_in = |k: usize| {
        k + 3 < toks.len() && lower_tok(doc, k + 1) == "as" && lower_tok(doc, k + 2) == "in"
    };
    // `L-E-F-E-V-R-E`: one joined token of single letters.
    let hyphened = |k: usize| {
        toks.get(k).is_some_and(|t| {
            t.joined && t.end - t.start >= 7 && {
                let w = t.text(doc.text).as_bytes();
                w.iter().enumerate().all(|(i, &b)| {
                    if i % 2 == 0 {
                        b.is_ascii_alphabetic()
                    } else {
                        b == b'-'
                    }
                })
            }
        })
    };
    let mut k = 0;
    while k < toks.len() {
        // Most tokens are longer words: one length test each.
        if toks[k].end - toks[k].start != 1 && !toks[k].joined && !one_letter(k) {
            k += 1;
            continue;
        }
        let (a, mut b) = (k, k);
        if hyphened(k) {
            b = k + 1;
        } else {
            let mut letters = 0;
            while one_letter(b)
                && (b == a || matches!(gap(doc, b - 1, b), " " | "-" | " - " | ", " | ","))
            {
                letters += 1;
                b += if as_in(b) { 4 } else { 1 };
            }
            if letters < 4 {
                k += 1;
                continue;
            }
        }
        let first = a > 0
            && gap(doc, a - 1, a) == " "
            && doc.feats.get(a - 1).is_some_and(|f| f.word && !f.stop)
            && flags_of(doc, a - 1) & crate::lexicon::FIRST != 0;
        found.push((if first { a - 1 } else { a }, b, 0.8));
        k = b;
    }
}

/// Role words that open a chat's speaker label before the person's name (`Agent Dale:`,
/// `Nurse Hope K.:`, `Front Desk (Bridget):`, `Support · Jun · 10:03 AM`).
const ROLE_WORDS: [&str; 16] = [
    "agent",
    "nurse",
    "support",
    "front",
    "desk",
    "staff",
    "tech",
    "pharmacist",
    "rep",
    "coordinator",
    "scheduler",
    "receptionist",
    "billing",
    "triage",
    "team",
    "office",
];

/// Chat transcripts' speaker labels: at a line's start, after an optional `[time]`, a name
/// (after role words) closed by `:`, ` (role):`, ` [time]:` or ` ·`; or role words and then
/// the name in parentheses or between `·`. Every word of the name must look like one.
fn speakers(doc: &Text<'_>, found: &mut Vec<(usize, usize, f32)>) {
    let text = doc.text;
    let b = text.as_bytes();
    // Colons are found with `memchr`; the rarer `·` labels walk every line.
    if !b.contains(&b':') && !text.contains('·') {
        return;
    }
    let mut labels: Vec<(usize, usize, bool)> = Vec::new();
    if text.contains('·') {
        let mut base = 0;
        for line in text.split_inclusive('\n') {
            speaker_line(doc, line, base, &mut labels);
            base += line.len();
        }
    } else {
        speaker_lines_at_colons(doc, &mut labels);
    }
    // A lone unlisted word counts when it labels two lines or more.
    let word = |a: usize| doc.tokens.get(a).map_or("", |t| t.text(text));
    let mut lone: Vec<&str> = labels.iter().filter(|l| l.2).map(|l| word(l.0)).collect();
    lone.sort_unstable();
    for &(a, end, is_lone) in &labels {
        let w = word(a);
        let repeated = is_lone && {
            let i = lone.partition_point(|x| *x < w);
            lone.get(i + 1) == Some(&w)
        };
        if !is_lone || repeated {
            found.push((a, end, 0.75));
        }
    }
}

/// The lines of [`speakers`] that have a colon near their start.
fn speaker_lines_at_colons(doc: &Text<'_>, labels: &mut Vec<(usize, usize, bool)>) {
    let text = doc.text;
    let b = text.as_bytes();
    // Only the lines with a colon near their start can hold a label: found from the colons
    // (a few per message), not by walking every line.
    // The colons come in order: the line start is carried from one to the next, and each
    // line is read once (linear time however many colons a line has).
    let mut last_line = usize::MAX;
    let mut ls = 0;
    let mut scanned = 0;
    for (p, _) in text.match_indices(':') {
        if let Some(nl) = b[scanned..p].iter().rposition(|&c| c == b'\n') {
            ls = scanned + nl + 1;
        }
        scanned = p;
        if ls == last_line || p - ls > 70 {
            continue;
        }
        last_line = ls;
        let le = b[p..]
            .iter()
            .take(256)
            .position(|&c| c == b'\n')
            .map_or((p + 256).min(b.len()), |i| p + i + 1);
        if let Some(line) = text.get(ls..le) {
            speaker_line(doc, line, ls, labels);
        }
    }
}

/// One line of [`speakers`], starting at byte `at` of the message: the label's tokens, and
/// whether it is a lone unlisted word before a colon (kept only if it labels another line).
fn speaker_line(doc: &Text<'_>, line: &str, at: usize, out: &mut Vec<(usize, usize, bool)>) {
    // `> Sue: is this ...`: a quoted reply's markers first.
    let mut rest = line.trim_start().trim_start_matches(['>', ' ']);
    let mut off = at + (line.len() - rest.len());
    if rest.starts_with('[') {
        let Some(close) = rest.find(']').filter(|&c| c < 40) else {
            return;
        };
        let after = &rest[close + 1..];
        let trimmed = after.trim_start_matches(' ');
        off += close + 1 + (after.len() - trimmed.len());
        rest = trimmed;
    }
    // A name starts with a capital (or a letter beyond ASCII): most lines stop here.
    if !rest
        .as_bytes()
        .first()
        .is_some_and(|&b| b.is_ascii_uppercase() || b >= 0x80)
    {
        return;
    }
    let head = rest.get(..rest.len().min(60)).unwrap_or(rest);
    let hb = head.as_bytes();
    // The first delimiter; punctuation before it (`Hi, this is`, `Dr. ...`) is no
    // label's, except an initial's full stop (`Nurse Hope K.:`, `Tomás R. [10:16]:`).
    let initial_stop = |i: usize| i >= 2 && hb[i - 1].is_ascii_uppercase() && hb[i - 2] == b' ';
    let Some(d) = (0..hb.len()).find(|&i| {
        matches!(hb[i], b':' | b'(' | b'[' | b',' | b'!' | b'?' | b'"')
            || (hb[i] == b'.' && !initial_stop(i))
            || (hb[i] == 0xC2 && hb.get(i + 1) == Some(&0xB7))
    }) else {
        return;
    };
    if !matches!(hb[d], b':' | b'(' | b'[' | 0xC2) {
        return;
    }
    let label = head[..d].trim_end();
    if label.is_empty() || label.bytes().filter(|&b| b == b' ').count() > 4 {
        return;
    }
    let words: Vec<&str> = label.split(' ').filter(|w| !w.is_empty()).collect();
    let roles = words
        .iter()
        .take_while(|w| ROLE_WORDS.iter().any(|r| w.eq_ignore_ascii_case(r)))
        .count();
    let delim = head[d..].chars().next().unwrap_or(':');
    let (s, e) = if roles == words.len() {
        // Only role words: the name is in the parentheses or between the dots.
        let inner = &head[d + delim.len_utf8()..];
        let end = match delim {
            '(' => inner
                .find(')')
                .filter(|&c| inner[c + 1..].trim_start().starts_with(':')),
            '·' => inner.find('·'),
            _ => None,
        };
        let Some(end) = end else { return };
        let name = inner[..end].trim();
        let lead = inner[..end].len() - inner[..end].trim_start().len();
        let s = off + d + delim.len_utf8() + lead;
        (s, s + name.len())
    } else {
        // The name after the role words, closed by `:`, or by ` (role):`, ` [time]:`
        // and ` ·` (a bare `Name (` in prose is no label).
        let closed = match delim {
            ':' => true,
            '(' | '[' => {
                let close = if delim == '(' { ')' } else { ']' };
                head[d..]
                    .find(close)
                    .is_some_and(|c| head[d + c + 1..].trim_start().starts_with(':'))
            }
            _ => true,
        };
        if !closed {
            return;
        }
        let skip: usize = words[..roles].iter().map(|w| w.len() + 1).sum();
        let s = off + skip.min(label.len());
        (s, off + label.len())
    };
    if s >= e {
        return;
    }
    let a = doc.tokens.partition_point(|t| t.start < s);
    let b = doc.tokens.partition_point(|t| t.start < e);
    if b <= a || b - a > 3 || doc.tokens.get(a).is_none_or(|t| t.start != s) {
        return;
    }
    // Each word a name's: an initial, a word no dictionary has, or a listed first name
    // (`Dale`, `Hope`); a form's labels are dictionary words (`Name:`, `Pages:`).
    let namey = (a..b).all(|k| {
        doc.feats.get(k).is_some_and(|f| {
            f.initial || (f.word && f.cap && !f.stop && (!f.common() || f.first()))
        })
    });
    // A label ending in an acronym (`MRN:`, `Prescriber DEA:`) is a form's.
    let acronym = doc
        .tokens
        .get(b - 1)
        .is_some_and(|t| t.all_caps && t.end - t.start <= 4);
    // One word and a colon (`Kasia:` or `Callback:`): a listed first name, or a label that
    // opens another line too (a transcript's speaker speaks more than once; `speakers`
    // counts them).
    let lone = b - a == 1
        && doc.text.as_bytes().get(e) == Some(&b':')
        && doc.feats[a].flags & crate::lexicon::FIRST == 0;
    if namey && !acronym && (a..b).any(|k| !doc.feats[k].initial) {
        out.push((a, b, lone));
    }
}

/// `[2:41 PM] rosa t: did anyone call`, `[04/02 08:15] marcus: yes`: after a chat export's
/// time stamp, one to three words closed by a colon are the speaker, in any case (display
/// names are often typed in lower case); several stamps may share one line, which the
/// line-start labels of [`speakers`] do not see.
fn chat_stamps(doc: &Text<'_>, found: &mut Vec<(usize, usize, f32)>) {
    let text = doc.text;
    if !text.as_bytes().contains(&b']') {
        return;
    }
    for (p, _) in text.match_indices(']') {
        let from = p.saturating_sub(24);
        let Some(open) = text
            .get(from..p)
            .and_then(|w| w.rfind('['))
            .map(|i| from + i)
        else {
            continue;
        };
        let stamp = text.get(open + 1..p).unwrap_or("");
        let time = stamp.contains(':')
            && stamp.bytes().any(|b| b.is_ascii_digit())
            && stamp
                .bytes()
                .all(|b| b.is_ascii_digit() || b" :/-.,APMapm".contains(&b));
        if !time {
            continue;
        }
        let Some(rest) = text.get(p + 1..).and_then(|r| r.strip_prefix(' ')) else {
            continue;
        };
        let head = rest.get(..rest.len().min(40)).unwrap_or(rest);
        let Some(colon) = head.find(':') else {
            continue;
        };
        let s = p + 2;
        let e = s + head[..colon].trim_end().len();
        let a = doc.tokens.partition_point(|t| t.start < s);
        let b = doc.tokens.partition_point(|t| t.start < e);
        if b <= a || b - a > 3 || doc.tokens.get(a).is_none_or(|t| t.start != s) {
            continue;
        }
        // Only words and the spaces between them (`rosa t`), each a name's: not a stop
        // word, not a role (`Agent:`), not a dictionary word unless a listed first name.
        let plain = (a + 1..b).all(|k| gap(doc, k - 1, k) == " ");
        let namey = (a..b).all(|k| {
            doc.feats.get(k).is_some_and(|f| {
                let w = lower_tok(doc, k);
                f.word
                    && !f.stop
                    && (!f.common() || f.first() || w.len() == 1)
                    && !ROLE_WORDS.contains(&w)
                    && !matches!(w, "system" | "bot" | "auto" | "you" | "me" | "patient")
            })
        });
        if plain && namey && (a..b).any(|k| lower_tok(doc, k).len() >= 2) {
            found.push((a, b, 0.75));
        }
    }
}

/// `William "Bill" Ostrowski`, `Oluwaseun (Seun) Balogun`: a nickname in quotes or
/// parentheses between a found given name and a capitalised surname makes one name of the
/// three.
fn nicknames(doc: &Text<'_>, found: &mut Vec<(usize, usize, f32)>) {
    let feats = &doc.feats;
    let opens = [" \"", " (", " “", " '"];
    let closes = ["\" ", ") ", "” ", "' "];
    for i in 0..found.len() {
        let (a, b, conf) = found[i];
        let (Some(nick), Some(last)) = (feats.get(b), feats.get(b + 1)) else {
            continue;
        };
        let (before, after) = (gap(doc, b - 1, b), gap(doc, b, b + 1));
        let pair = opens
            .iter()
            .zip(closes)
            .any(|(o, c)| before == *o && after == c);
        if pair && nick.word && nick.cap && !nick.stop && last.cap_nameish() && !last.initial {
            found.push((a, b + 2, conf));
        }
    }
}

/// A verb that follows a person as the subject of a clause (`Maria called`, `Will said`).
fn is_subject_verb(w: &str) -> bool {
    matches!(
        w,
        "called"
            | "calls"
            | "said"
            | "says"
            | "asked"
            | "asks"
            | "came"
            | "went"
            | "needs"
            | "wants"
            | "has"
            | "had"
            | "was"
            | "is"
            | "will"
            | "can't"
            | "cannot"
            | "won't"
            | "didn't"
            | "doesn't"
            | "doesnt"
            | "fell"
            | "left"
            | "stopped"
            | "started"
            | "took"
            | "got"
            | "missed"
            | "felt"
            | "feels"
            | "reports"
            | "reported"
            | "denies"
            | "states"
            | "stated"
    ) || (w.ends_with("ed") && w.len() > 4)
}

/// The list flags of token `k`, looked up now if the features skipped it (lower-case words
/// far from a name cue are not looked up in advance).
fn flags_of(doc: &Text<'_>, k: usize) -> u8 {
    let f = doc.feats.get(k).map_or(0, |f| f.flags);
    if f != 0 || !doc.feats.get(k).is_some_and(|f| f.word && !f.stop) {
        return f;
    }
    doc.lex.flags_lower(strip_possessive(lower_tok(doc, k)))
}

/// `rashida subramaniam here - new # is ...`: a lower-case self-introduction opening a line.
/// One to three words before `here`, the first a listed first name, none a stop word or a
/// common word that is not also a name, then a break (`-`, `,`, `.`, `!`, end).
fn lower_here(doc: &Text<'_>, i: usize, found: &mut Vec<(usize, usize, f32)>) {
    let closes = match doc.tokens.get(i + 1) {
        None => true,
        Some(_) => gap(doc, i, i + 1).contains(['-', ',', '.', '!', '\n', ':']),
    };
    if !closes {
        return;
    }
    for a in i.saturating_sub(3)..i {
        let f = &doc.feats[a];
        if !(a == 0 || f.sent_start) || f.cap {
            continue;
        }
        let ok = (a..i).all(|k| {
            let fk = &doc.feats[k];
            let fl = flags_of(doc, k);
            fk.word
                && !fk.cap
                && !fk.stop
                && (k == a || joins(gap(doc, k - 1, k), false))
                && (is_particle_tok(doc, k)
                    || fl & crate::lexicon::WORD == 0
                    || fl & (crate::lexicon::FIRST | crate::lexicon::LAST) != 0)
        });
        let first = flags_of(doc, a);
        if ok
            && i - a >= 2
            && first & crate::lexicon::FIRST != 0
            && first & crate::lexicon::WORD == 0
            && !is_particle_tok(doc, i - 1)
        {
            found.push((a, i, 0.7));
            return;
        }
    }
}

/// `Brunhild here,` and `O'Donovan, Noman MRN ...` (last name, comma, first name).
fn by_shapes(doc: &Text<'_>, lists: &TokenLists, found: &mut Vec<(usize, usize, f32)>) {
    let feats = &doc.feats;
    let n = doc.tokens.len();
    // Four-byte tokens (`here`) and name-like words (`Last, First`).
    for &i in &lists.shapes {
        let i = i as usize;
        // `<Name> here`
        if i > 0
            && doc.tokens[i].end - doc.tokens[i].start == 4
            && lower_tok(doc, i) == "here"
            && gap(doc, i - 1, i) == " "
        {
            let mut a = i;
            while a > 0 && i - a < 3 && feats[a - 1].namey() {
                a -= 1;
                if feats[a].sent_start || a == 0 || !joins(gap(doc, a - 1, a), false) {
                    break;
                }
            }
            if a < i && (a == 0 || feats[a].sent_start || gap(doc, a - 1, a).contains(',')) {
                found.push((a, i, 0.75));
            } else if a == i {
                lower_here(doc, i, found);
            }
        }
        // `Last, First`
        if i + 1 < n
            && feats[i].namey()
            && feats[i + 1].namey()
            && gap(doc, i, i + 1) == ", "
            && ((feats[i].listed_name() && feats[i + 1].listed_name())
                || (feats[i].listed_name() && !feats[i + 1].common())
                || (!feats[i].common() && (feats[i + 1].listed_name() || !feats[i + 1].common())))
        {
            let after = doc.tokens.get(i + 2);
            let next_ok = match after {
                None => true,
                Some(t) => {
                    let g = gap(doc, i + 1, i + 2);
                    let w = t.text(doc.text).to_ascii_lowercase();
                    g.trim() != ""
                        || feats[i + 2].all_caps
                        // A column break (`PETRAKIS, HARLAN        0.00`): a table's cell.
                        || g.len() >= 2 && g.bytes().all(|b| b == b' ')
                        || matches!(w.as_str(), "mrn" | "dob" | "md" | "do" | "rn" | "np")
                        // `Subramaniam, Bogdan called re: ...`: a line that opens with the
                        // name, followed by what the person did.
                        || (feats[i].sent_start
                            && g == " "
                            && feats[i + 2].word
                            && !feats[i + 2].cap
                            && is_subject_verb(&w))
                }
            };
            if next_ok {
                found.push((i, i + 2, 0.7));
            }
        }
    }
}

/// `PETRAKIS, HARLAN`, `VU, THANH HUONG`, `RASMUSSEN^INGRID`, `Mahlangu, M`: the `LAST,
/// FIRST` of a report's or an export's cell, in capitals or with a bare initial, which the
/// prose passes leave alone. A listed surname (or a word no dictionary has) and a listed
/// given name, or an initial, then up to two more given names; the cell must close after it
/// (two spaces, a delimiter, a quote, the line's end, or a number in the next column).
fn table_last_first(doc: &Text<'_>, lists: &TokenLists, found: &mut Vec<(usize, usize, f32)>) {
    let feats = &doc.feats;
    let toks = &doc.tokens;
    let n = toks.len();
    let len = |k: usize| toks.get(k).map_or(0, |t| t.end - t.start);
    for &i in &lists.runs {
        let i = i as usize;
        let (Some(f), Some(g)) = (feats.get(i), feats.get(i + 1)) else {
            continue;
        };
        let sep = gap(doc, i, i + 1);
        let caret = sep == "^";
        // `PETRAKIS        HARLAN  19560830`: a fixed-width export's surname and given-name
        // columns, both in capitals and both listed.
        let columns = sep.len() >= 2 && sep.bytes().all(|c| c == b' ');
        if columns {
            if f.all_caps && g.all_caps && f.last() && g.first() && !f.stop && !g.stop && g.word {
                found.push((i, i + 2, 0.7));
            }
            continue;
        }
        if !matches!(sep, ", " | "," | "^")
            || !f.word
            || f.stop
            || len(i) < 2
            || (!f.last() && f.common())
            || !g.word
            || !g.cap
            || g.stop
        {
            continue;
        }
        let initial = len(i + 1) == 1;
        // In capitals the words carry no case to read: both must be names, or the given
        // name an initial. Mixed case with a full given name is `by_shapes`'s.
        let ok = if caret {
            g.first() && len(i + 1) >= 2
        } else if f.all_caps {
            (g.all_caps && g.first()) || initial
        } else {
            f.cap && initial && sep == ", "
        };
        if !ok {
            continue;
        }
        let mut b = i + 2;
        if !initial {
            while b < n
                && b < i + 4
                && gap(doc, b - 1, b) == " "
                && feats[b].word
                && (feats[b].all_caps == g.all_caps || len(b) == 1)
                && feats[b].cap
                && !feats[b].stop
                && (feats[b].first() || !feats[b].common() || len(b) == 1)
            {
                b += 1;
            }
        }
        let closes = match toks.get(b) {
            None => true,
            Some(next) => {
                let tail = doc.text.get(toks[b - 1].end..next.start).unwrap_or("");
                tail.starts_with("  ")
                    || tail.starts_with(['|', '^', '"', '\n', '\t', ',', ';', ')'])
                    || tail.starts_with(" |")
                    // `GRIEVE, ANNIKA (00781146)`: a number or note in parentheses.
                    || tail == " ("
                    || (tail == " " && next.kind != super::tokens::Kind::Word)
            }
        };
        if closes {
            found.push((i, b, 0.7));
        }
    }
}

/// `w` without trailing `'s` (a suffix test: `trim_end_matches` with a `&str` builds a
/// substring searcher per call).
fn strip_possessive(mut w: &str) -> &str {
    while let Some(x) = w.strip_suffix("'s") {
        w = x;
    }
    w
}

/// Other mentions of a found name in the same message.
#[allow(clippy::needless_range_loop)] // `k` indexes tokens, feats and `covered` together.
fn propagate(
    doc: &Text<'_>,
    lists: &TokenLists,
    found: &mut Vec<(usize, usize, f32)>,
    covered: &mut Vec<bool>,
    known_at: &mut Vec<(usize, usize)>,
) {
    if found.is_empty() {
        return;
    }
    // The words of the found names (few per message: a short list, compared by length
    // first, is cheaper than a hash set), as byte ranges of the lower-cased text.
    known_at.clear();
    let lower = doc.lower.as_str();
    let word = |&(s, e): &(usize, usize)| lower.get(s..e).unwrap_or("");
    covered.clear();
    covered.resize(doc.tokens.len(), false);
    for &(a, b, _) in found.iter() {
        for k in a..b.min(doc.tokens.len()) {
            covered[k] = true;
            let f = &doc.feats[k];
            if f.initial || f.stop {
                continue;
            }
            let w = strip_possessive(lower_tok(doc, k));
            // Three characters or more.
            if w.chars().nth(2).is_some() && !known_at.iter().any(|r| word(r) == w) {
                let s = doc.tokens[k].start;
                known_at.push((s, s + w.len()));
            }
        }
    }
    // Byte lengths of the known words, to skip most tokens without comparing text.
    let (min_len, max_len) = known_at.iter().fold((usize::MAX, 0), |(lo, hi), &(s, e)| {
        (lo.min(e - s), hi.max(e - s))
    });
    // Words that are not stop words, and capitalised or not common words.
    for &k in &lists.mentions {
        let k = k as usize;
        if covered[k] {
            continue;
        }
        let f = &doc.feats[k];
        let t = &doc.tokens[k];
        if t.end - t.start < min_len || (t.end - t.start > max_len && !f.possessive) {
            continue;
        }
        let w = strip_possessive(lower_tok(doc, k));
        if !known_at.iter().any(|r| word(r) == w) {
            continue;
        }
        // Lower-case words may not have been looked up: a common word (`will`) is not a
        // mention of the name `Will`.
        if f.cap || doc.lex.flags_lower(w) & crate::lexicon::WORD == 0 {
            found.push((k, k + 1, 0.7));
        }
    }
}
