//! Profiling driver: one warm corpus pass, then `PROF_PASSES` (default 1) timed passes in
//! `passes`, a function of its own so that callgrind can count only it:
//!
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='prof::passes' \
//!  target/release/examples/prof`
//!
//! With `PROF_DUMP=FILE`, every span found in the given JSONL files (default: the corpus) is
//! written to FILE, one line per span, so that a change meant to be a pure speed-up can be
//! checked to find exactly the same spans: `prof A.jsonl B.jsonl`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use perimeter_phi::deid::{DeidOptions, Mode, deidentify};
use perimeter_phi::eval::GoldRecord;
use perimeter_phi::{Engine, EngineConfig, Vault};

#[inline(never)]
fn passes(engine: &Engine, texts: &[String], n: u32) -> usize {
    // With `PROF_DEID=1`, each message is also pseudonymized in a vault of its own, as
    // `perimeter deid bench` does.
    let deid = std::env::var_os("PROF_DEID").is_some();
    let options = DeidOptions {
        mode: Mode::Pseudonymize,
        reference_year: 2026,
    };
    let mut spans = 0;
    for _ in 0..n {
        for t in texts {
            let found = engine.detect(t).expect("detect");
            if deid {
                let vault = Vault::with_seed(1);
                std::hint::black_box(deidentify(t, &found, &options, &vault).expect("deid"));
            }
            spans += std::hint::black_box(found).len();
        }
    }
    spans
}

/// On-CPU time of this (single-threaded) process, from `/proc/self/schedstat` (Linux;
/// zero elsewhere). Not the vDSO clock: valgrind cannot run that.
fn thread_cpu() -> std::time::Duration {
    let ns = std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    std::time::Duration::from_nanos(ns)
}

fn main() {
    let mut paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        paths.push(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/corpus/phi-dev.jsonl"
            )
            .to_string(),
        );
    }
    let n: u32 = std::env::var("PROF_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut texts: Vec<String> = Vec::new();
    for path in &paths {
        let data = std::fs::read_to_string(path).expect("corpus file");
        texts.extend(
            data.lines()
                .filter_map(|l| serde_json::from_str::<GoldRecord>(l).ok())
                .map(|r| r.text),
        );
    }
    let bytes: usize = texts.iter().map(String::len).sum();
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    if let Ok(out) = std::env::var("PROF_DUMP") {
        use std::fmt::Write as _;
        let mut s = String::new();
        for (i, t) in texts.iter().enumerate() {
            for sp in engine.detect(t).expect("detect") {
                let _ = writeln!(
                    s,
                    "{i} {} {} {} {} {}",
                    sp.start, sp.end, sp.label, sp.confidence, sp.recognizer
                );
            }
        }
        std::fs::write(out, s).expect("dump");
        return;
    }
    // Warm the lazy DFA caches and the per-thread buffers.
    let warm = passes(&engine, &texts, 1);
    let t = std::time::Instant::now();
    let c0 = thread_cpu();
    let spans = passes(&engine, &texts, n);
    let cpu = thread_cpu().saturating_sub(c0) / n.max(1);
    let dt = t.elapsed() / n.max(1);
    println!(
        "{} messages, {bytes} bytes, {warm} spans; {dt:?} per pass ({:.1} MB/s wall), \
         {cpu:?} on-CPU ({:.1} MB/s per core busy)",
        texts.len(),
        bytes as f64 / dt.as_secs_f64() / 1e6,
        bytes as f64 / cpu.as_secs_f64() / 1e6
    );
    assert_eq!(spans, warm * n as usize);
}
