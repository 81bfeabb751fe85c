//! Fuzz target: `cargo +nightly fuzz run triage_model` (from the repository root).
//! Any bytes must give a model or a clear error, never a panic; a model that loads must
//! serialise back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_triage::Model;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = Model::from_bytes(data) {
        assert_eq!(model.to_bytes(), data);
    }
});
