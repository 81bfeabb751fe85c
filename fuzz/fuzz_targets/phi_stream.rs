//! Fuzz target: `scripts/fuzz` (or `cargo fuzz run phi_stream` from the repository root).
//! The streaming re-identifier, fed any text cut at any points, must never panic and must emit
//! exactly what `Vault::reidentify` gives for the whole text (so it never emits half a token or
//! an original split across chunks).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use perimeter_phi::deid::{DeidOptions, Mode, deidentify};
use perimeter_phi::{Engine, EngineConfig, StreamReidentifier, Vault};

const SEED_TEXT: &str = "Maria Gonzalez, DOB 03/02/1981, call (312) 555-8841, MRN 00123456.";

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| Engine::new(EngineConfig::default()).expect("engine builds"))
}

fuzz_target!(|data: &[u8]| {
    // A vault that has issued a few tokens ([NAME_1], [DATE_1], ...).
    let vault = Vault::with_seed(7);
    let options = DeidOptions {
        mode: Mode::Pseudonymize,
        reference_year: 2026,
    };
    let spans = engine().detect(SEED_TEXT).expect("seed text is small");
    let tokens = deidentify(SEED_TEXT, &spans, &options, &vault).expect("valid spans");
    // The fuzz input: the first byte picks a chunk size pattern, the rest is the model's text,
    // with the issued tokens mixed in so that real tokens get split.
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let mut answer = String::from_utf8_lossy(rest).into_owned();
    if cut & 1 == 1 {
        let mut mid = answer.len() / 2;
        while !answer.is_char_boundary(mid) {
            mid -= 1;
        }
        answer.insert_str(mid, &tokens.text);
    }
    let expected = vault.reidentify(&answer);
    let step = usize::from(cut >> 1).max(1);
    let mut stream = StreamReidentifier::new(&vault);
    let mut got = String::new();
    let mut at = 0;
    while at < answer.len() {
        let mut end = (at + step).min(answer.len());
        while !answer.is_char_boundary(end) {
            end += 1;
        }
        got.push_str(&stream.push(&answer[at..end]));
        at = end;
    }
    got.push_str(&stream.finish());
    assert_eq!(got, expected);
});
