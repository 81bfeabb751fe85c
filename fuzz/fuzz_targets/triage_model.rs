//! Fuzz target: `scripts/fuzz` (or `cargo fuzz run triage_model` from the repository root).
//! Any bytes must give a model or a clear error, never a panic; a model that loads must
//! serialise back to the same bytes. The input is tried as is and with its SHA-256 appended:
//! a mutated model never matches its checksum, so without the second form the fuzzer would
//! never get past the checksum to the loaded model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perimeter_triage::Model;
use sha2::{Digest, Sha256};

fn round_trips(bytes: &[u8]) {
    if let Ok(model) = Model::from_bytes(bytes) {
        assert_eq!(model.to_bytes(), bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trips(data);
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&Sha256::digest(data));
    round_trips(&sealed);
});
