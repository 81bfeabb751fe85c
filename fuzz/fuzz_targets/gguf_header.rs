//! The GGUF structural check on arbitrary bytes: it must return an error, never panic,
//! allocate what a lying length claims, or loop.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = perimeter_llm::check_gguf(data, data.len() as u64);
});
