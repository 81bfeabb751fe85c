//! Property tests: the engine never panics and always returns sorted, disjoint spans on char
//! boundaries, whatever the input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use perimeter_phi::{Engine, EngineConfig};
use proptest::prelude::*;

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| Engine::new(EngineConfig::default()).unwrap())
}

/// Fragments that exercise every recognizer, glued together at random.
const FRAGMENTS: &[&str] = &[
    "Dr. ",
    "this is ",
    "my daughter ",
    "Name: ",
    "O'Brien, ",
    "Karl-Josef ",
    "Ünek ",
    "i̇nönü ",
    "DOB ",
    "03/02/1981",
    "2026-02-30",
    "Feb 29, 2024",
    "12th of May ",
    "MRN ",
    "00123456",
    "SSN 123-45-6789",
    "(555) 123-4567 ext. 12",
    "+1 794 943 8879",
    "five five five one two three four ",
    "PO Box 12",
    "123 Main St Apt 4B",
    "Springfield, IL 62704-1234",
    "1EG4-TE5-MK73",
    "1M8GDM9AXKP042788",
    "192.168.0.1",
    "2001:db8::1",
    "::",
    "https://x.example/a?b=c",
    "a@b.co",
    "PID|1||123^^^MR||DOE^JOHN||19800101|",
    "\"dob\": \"",
    "\"mrn\": 123",
    "{\"name\":\"",
    // XML, X12, key=value logs and FHIR references (the structured readers' own syntax).
    "<family>",
    "</family>",
    "</",
    "<",
    ">",
    "~NM1*IL*1*",
    "N4*",
    "*",
    "~",
    "user_id=",
    "=",
    "{\"reference\":\"Patient/1\",\"display\":\"",
    "\"name\":[{\"text\":\"",
    "12:00:01 -",
    "|",
    "^",
    "\n",
    ", ",
    ". ",
    "- ",
    "’s ",
    "— ",
    "\u{0307}",
    "é",
    "👍",
    "\u{200d}",
    "she is 93 ",
    "BP 130/85 ",
    "4111 1111 1111 1111",
    "#",
    "@",
    "'",
    "-",
    "Hope ",
    "will ",
    "Thanks,\n",
    "   ",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,400}") {
        check(&s);
    }

    #[test]
    fn fragment_soup_never_panics(parts in proptest::collection::vec(0..FRAGMENTS.len(), 0..40)) {
        let s: String = parts.iter().map(|&i| FRAGMENTS[i]).collect();
        check(&s);
    }

    #[test]
    fn bytes_as_lossy_text_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        check(&String::from_utf8_lossy(&b));
    }
}

fn check(s: &str) {
    let spans = engine().detect(s).unwrap();
    for w in spans.windows(2) {
        assert!(w[0].end <= w[1].start, "overlap in {s:?}");
    }
    for sp in &spans {
        assert!(sp.start < sp.end && sp.end <= s.len());
        assert!(s.is_char_boundary(sp.start) && s.is_char_boundary(sp.end));
        let (a, b) = sp.char_range(s);
        assert_eq!(
            s.chars().skip(a).take(b - a).collect::<String>(),
            sp.text(s)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Inputs up to the size limit (256 KiB) are handled; one byte more is refused with the
    /// size error, never a panic or a cut.
    #[test]
    fn huge_inputs_up_to_the_limit(parts in proptest::collection::vec(0..FRAGMENTS.len(), 1..60)) {
        let unit: String = parts.iter().map(|&i| FRAGMENTS[i]).collect();
        let max = perimeter_phi::DEFAULT_MAX_MESSAGE_BYTES;
        let mut s = String::with_capacity(max);
        while s.len() + unit.len() <= max {
            s.push_str(&unit);
        }
        // Fill to exactly the limit with ASCII.
        while s.len() < max {
            s.push(' ');
        }
        prop_assert_eq!(s.len(), max);
        check(&s);
        s.push('x');
        let err = engine().detect(&s).unwrap_err();
        prop_assert_eq!(
            err,
            perimeter_phi::PhiError::MessageTooLarge { size: max + 1, max }
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The streaming re-identifier, cut anywhere, gives what whole-text re-identification
    /// gives, and never emits a partial token.
    #[test]
    fn stream_reidentifier_matches_whole_text(
        noise in "\\PC{0,60}",
        cuts in proptest::collection::vec(1usize..9, 1..40),
    ) {
        use perimeter_phi::deid::{DeidOptions, Mode, deidentify};
        use perimeter_phi::{StreamReidentifier, Vault};
        let vault = Vault::with_seed(3);
        let seed_text = "Maria Gonzalez, DOB 03/02/1981, call (312) 555-8841.";
        let spans = engine().detect(seed_text).unwrap();
        let opts = DeidOptions { mode: Mode::Pseudonymize, reference_year: 2026 };
        let d = deidentify(seed_text, &spans, &opts, &vault).unwrap();
        let answer = format!("{noise}{}{noise}[NAME_9] [NAME_", d.text);
        let expected = vault.reidentify(&answer);
        let mut stream = StreamReidentifier::new(&vault);
        let mut got = String::new();
        let mut at = 0;
        let mut k = 0;
        while at < answer.len() {
            let mut end = (at + cuts[k % cuts.len()]).min(answer.len());
            while !answer.is_char_boundary(end) {
                end += 1;
            }
            let piece = stream.push(&answer[at..end]);
            // Never half of an issued token.
            prop_assert!(!piece.ends_with("[NAME") && !piece.ends_with("[DATE_"));
            got.push_str(&piece);
            at = end;
            k += 1;
        }
        got.push_str(&stream.finish());
        prop_assert_eq!(got, expected);
    }
}

/// Runs that one pattern could keep extending without ever matching (an e-mail's local part
/// without its `@`, a host name without its top-level domain, a street word without a
/// space): each search used to read to the end of the text, so a 128 KiB message of
/// `192.168.0.1192.168.0.1...` took seconds (quadratic). The patterns' repetitions are
/// bounded now; these messages at the size limit finish like any other (a regression shows
/// as a suite that suddenly takes minutes, not as a timing assertion).
#[test]
fn runs_a_pattern_cannot_finish_stay_linear() {
    let max = perimeter_phi::DEFAULT_MAX_MESSAGE_BYTES;
    for unit in [
        "192.168.0.1",
        "00123456'",
        "a.b-c.",
        "x'y%z+",
        "12 abcdefgh.",
        "::",
        "Springfield, IL 62704-1234\n",
        "City: X ",
        "a: b ",
        "name,dob,zip\n",
    ] {
        let mut s = String::with_capacity(max);
        while s.len() + unit.len() <= max {
            s.push_str(unit);
        }
        check(&s);
    }
}
