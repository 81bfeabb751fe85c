//! The held-out set (`tests/data/heldout.jsonl`, written by `tests/data/make_heldout.py`):
//! texts in styles the development corpus lacks (SMS shorthand, lower case, chat logs,
//! voicemail with spelled-out digits, e-mail headers and signatures, forwarded mail, HL7 v2,
//! JSON, forms, fax covers, caregivers, names that are words), annotated to the corpus
//! guidelines. It measures how the engine generalises; it is not tuned to line by line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use perimeter_phi::eval::{Evaluation, GoldRecord, to_char_spans};
use perimeter_phi::{Engine, EngineConfig};

const HELDOUT: &str = include_str!("data/heldout.jsonl");

/// Floors on the held-out set, at the targets (0.995 overall, 0.98 per label, 0.97
/// character precision). When the set was written the engine measured recall 0.951 (NAME
/// 0.874, LOCATION 0.930); the miss families it showed (lower-case names without a cue, `St.`
/// surnames, names that are words in name slots, initials, `Last, First` opening a line,
/// lower-case towns) were then fixed with general rules, tested on other names and phrasing
/// in `tests/styles.rs` (`generalised_*`), measuring recall 1.000 and precision 0.993.
const MIN_RECALL: f64 = 0.995;
const MIN_LABEL_RECALL: f64 = 0.98;
const MIN_PRECISION: f64 = 0.98;

/// The second set (`tests/data/styles_b.jsonl`, from `styles_b.txt` by `make_styles_b.py`):
/// 40 messages written by hand without templates, in other styles and with other names and
/// towns again. When it was written the engine measured recall 0.917 and character precision
/// 0.976 on it: ages over 89 on a form line, spelled out or after `Name, `, a day after a
/// weekday, a rural route, an ISO date-time, a relative's lower-case name and a birth date in
/// spoken digits were missed. Those
/// were fixed with general rules tried on other words in `tests/styles.rs`
/// (`generalised_ages*`, `generalised_days_*`, `generalised_relatives_*`); it now measures
/// recall 0.972 and precision 0.979, so it is a regression set more than a held-out one. The
/// misses left: a name that is a word opening a question (`Can Penny grab`), a lower-case
/// name run ending in a word (`marguerite okonkwo bell`), a spelled-out surname
/// (`L-E-F-E-V-R-E`), a lower-case name after `she is`.
const STYLES_B: &str = include_str!("data/styles_b.jsonl");

/// The third set (`tests/data/styles_c.jsonl`, from `styles_c1.txt` and `styles_c2.txt` by
/// `make_styles_c.py`): 90 messages written blind, by writers who had seen neither the
/// engine nor its other test data. Measured before any rule was changed for it: entity
/// recall 0.888, character precision 0.919 (NAME 0.833, ADDRESS 0.658). The miss families
/// were then fixed with general rules tried on other words in `tests/styles.rs`
/// (`generalised_third_set_*`); it measures recall 0.976 and precision 0.963 now, so it too
/// is a regression set. Left: lower-case names without a cue (`remind jumoke adewale`),
/// spoken letters and digits mixed (`h w eight eight ...`), a town after `out past`, HL7
/// message timestamps and control ids taken as a date and an id (kept: a message's time is
/// often the visit's).
const STYLES_C: &str = include_str!("data/styles_c.jsonl");

/// The fourth set (`tests/data/styles_d.jsonl`, from `styles_d1.txt`, `styles_d2.txt` and
/// `styles_d3.txt` by `make_styles_d.py`): 150 messages by three more blind writers, each
/// third measured before any rule was fitted to it. The first third measured recall 0.894,
/// precision 0.911; the second, after the tuning on the third set and the first third,
/// 0.932 and 0.920; the last, after the tuning on the second, 0.933 and 0.937 (00d5b54, before
/// this stop's rules: 0.876, 0.909 and 0.895 recall). Those untouched figures, about 0.93, are
/// the engine's recall on text it has never seen; the 0.995 target is not met there. All three
/// were then used to tune; the whole set measures recall 0.959, precision 0.933. Left: numbers
/// said in pieces with fillers and corrections, lower-case names without a cue in
/// teenagers' texts, non-English words opening sentences taken for names, clinics' and
/// insurers' contact details (the writers marked them; the engine finds most), FHIR
/// `display` names, licence numbers without a cue.
const STYLES_D: &str = include_str!("data/styles_d.jsonl");

/// The fifth hand-annotated set (`data/styles_e{1,2,3}.txt`, by `data/make_styles_e.py`):
/// three more blind writers (texting and chat with corrections and casual addresses;
/// machine payloads: HL7, FHIR, CDA/NCPDP XML, X12, logs, device reports; lower-case ASR
/// voicemail and clinical operations). Measured untouched first: e1 0.859 / 0.991, e2
/// 0.877 / 0.815, e3 0.872 / 0.969; after this stop's rules, 0.966 / 0.954 whole.
const STYLES_E: &str = include_str!("data/styles_e.jsonl");

/// The sixth hand-annotated set (`data/styles_f{1,2,3}.txt`, by `data/make_styles_f.py`):
/// long-form letters and prose, staff and system text, noisy channels (ASR, OCR, IVR).
/// Measured untouched first: f1 0.899 / 0.968, f2 0.808 / 0.903, f3 0.717 / 0.918; after
/// this stop's rules, 0.934 / 0.934 whole.
const STYLES_F: &str = include_str!("data/styles_f.jsonl");

/// The seventh hand-annotated set (`data/styles_g{1,2,3}.txt`, by `data/make_styles_g.py`):
/// paperwork as text (vCards, iCalendar, FHIR, CDA, signature blocks), messy multilingual
/// patient writing, the scheduling and call-centre side. Measured untouched first: g1 0.972
/// / 0.902, g2 0.852 / 0.892, g3 0.928 / 0.943 (0.928 / 0.911 whole); after this stop's
/// rules, 0.964 / 0.929 whole.
const STYLES_G: &str = include_str!("data/styles_g.jsonl");

/// The eighth set (`tests/data/styles_h.jsonl`, from `styles_h{1,2,3}.txt` by
/// `make_styles_h.py`): 150 messages written blind for stop 19 (specialty practices'
/// messaging; machine text; spoken language as text). Each part measured once, untouched,
/// before any rule was changed for it: h1 0.894 / 0.963, h3 0.924 / 0.954, then (after
/// this stop's rules, none fitted to it) h2 0.939 / 0.809; the whole set then measured
/// 0.926 / 0.896, and 0.930 / 0.896 once a URL-encoded number's `%2B` was covered (AGE 19/25
/// its lowest label).
const STYLES_H: &str = include_str!("data/styles_h.jsonl");

#[test]
fn heldout_set_meets_generalisation_floors() {
    evaluate(
        "held-out",
        HELDOUT,
        150,
        MIN_RECALL,
        MIN_LABEL_RECALL,
        MIN_PRECISION,
    );
}

#[test]
fn second_set_keeps_its_measured_floors() {
    // Floors just under what it measured (NAME 0.930 is its lowest label).
    evaluate("second set", STYLES_B, 40, 0.96, 0.9, 0.97);
}

#[test]
fn third_set_keeps_its_measured_floors() {
    // Floors just under what it measured (HEALTH_PLAN 15/16 and LOCATION 0.93 are its
    // lowest labels).
    evaluate("third set", STYLES_C, 90, 0.965, 0.9, 0.95);
}

#[test]
fn fourth_set_keeps_its_measured_floors() {
    // Floors just under what it measured (LICENSE 8/12 and VEHICLE 6/8 are its lowest labels).
    // Precision 0.933 -> 0.927 when compact HL7 date-times came to be covered whole: this
    // set's writers marked the date only, the fifth set's writer the whole date-time.
    evaluate("fourth set", STYLES_D, 150, 0.96, 0.6, 0.92);
}

#[test]
fn fifth_set_keeps_its_measured_floors() {
    // Floors just under what it measured (ACCOUNT 8/9 and HEALTH_PLAN 26/29 are its lowest
    // labels).
    evaluate("fifth set", STYLES_E, 150, 0.96, 0.85, 0.95);
}

#[test]
fn sixth_set_keeps_its_measured_floors() {
    // Floors just under what it measured (DEVICE 8/10 and HEALTH_PLAN 22/27 are its lowest
    // labels).
    evaluate("sixth set", STYLES_F, 150, 0.93, 0.78, 0.93);
}

#[test]
fn seventh_set_keeps_its_measured_floors() {
    // Floors just under what it measured (VEHICLE 1/2 and LICENSE 9/11 are its lowest
    // labels).
    evaluate("seventh set", STYLES_G, 150, 0.955, 0.45, 0.925);
}

#[test]
fn eighth_set_keeps_its_measured_floors() {
    // Floors just under what it measures (AGE 19/25 is its lowest label).
    evaluate("eighth set", STYLES_H, 150, 0.92, 0.7, 0.89);
}

fn evaluate(
    set: &str,
    data: &str,
    min_records: usize,
    min_recall: f64,
    min_label_recall: f64,
    min_precision: f64,
) {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let records: Vec<GoldRecord> = data
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records.len() >= min_records, "{set}: too small");
    let mut ev = Evaluation::new();
    for r in &records {
        // The gold spans are where they say they are (character offsets).
        for s in &r.spans {
            assert!(
                s.start < s.end && s.end <= r.text.chars().count(),
                "{}",
                r.id
            );
        }
        let spans = engine.detect(&r.text).unwrap();
        ev.add(&r.id, &r.text, &r.spans, &to_char_spans(&r.text, &spans));
    }
    let rep = ev.report();
    println!(
        "{set}: messages={} gold={} recall={:.4} precision={:.4} label_match={:.4}",
        rep.messages, rep.gold_spans, rep.entity_recall, rep.char_precision, rep.label_match_recall
    );
    for (label, c) in &rep.per_label {
        println!(
            "  {label:<12} recall={:.4} ({}/{})",
            c.recall(),
            c.caught,
            c.gold
        );
    }
    let text_of = |id: &str| {
        records
            .iter()
            .find(|r| r.id == id)
            .map_or("", |r| r.text.as_str())
    };
    let quote = |id: &str, a: usize, b: usize| -> String {
        text_of(id).chars().skip(a).take(b - a).collect()
    };
    for m in ev.misses() {
        println!(
            "  miss {} {} {:?}",
            m.id,
            m.label,
            quote(&m.id, m.start, m.end)
        );
    }
    for f in ev.false_positives() {
        println!(
            "  fp   {} {} {:?}",
            f.id,
            f.label,
            quote(&f.id, f.start, f.end)
        );
    }
    assert!(
        rep.entity_recall >= min_recall,
        "{set}: entity recall {:.4} < {min_recall}",
        rep.entity_recall
    );
    assert!(
        rep.char_precision >= min_precision,
        "{set}: char precision {:.4} < {min_precision}",
        rep.char_precision
    );
    for (label, c) in &rep.per_label {
        assert!(
            c.recall() >= min_label_recall,
            "{set}: {label} recall {:.4} < {min_label_recall}",
            c.recall()
        );
    }
}
