//! Fuzz target: `scripts/fuzz` (or `cargo fuzz run phi_detect` from the repository root).
//! Any input must give sorted, disjoint spans on char boundaries, and never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use perimeter_phi::{Engine, EngineConfig};

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| Engine::new(EngineConfig::default()).expect("engine builds"))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(spans) = engine().detect(&text) {
        let mut prev_end = 0;
        for s in &spans {
            assert!(s.start >= prev_end && s.start < s.end && s.end <= text.len());
            assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
            prev_end = s.end;
        }
    }
});
