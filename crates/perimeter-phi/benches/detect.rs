//! Criterion benches: detection throughput on the corpus texts, 1 KB message latency, and
//! engine start-up (compiling the automata and loading the lists); also p50/p99 latency of
//! ~1 KB messages and of the corpus messages, timed one by one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perimeter_phi::eval::GoldRecord;
use perimeter_phi::{Engine, EngineConfig};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/corpus/phi-dev.jsonl"
);

fn corpus_texts() -> Vec<String> {
    match std::fs::read_to_string(CORPUS) {
        Ok(s) => s
            .lines()
            .filter_map(|l| serde_json::from_str::<GoldRecord>(l).ok())
            .map(|r| r.text)
            .collect(),
        Err(_) => {
            eprintln!("corpus not found at {CORPUS}; using built-in sample texts");
            vec![
                "Hi, this is Maria Gonzalez, DOB 03/02/1981, call me at (555) 123-4567.".into(),
                "Pt reports BP 130/85 and A1c 7.2 on metformin 500 mg.".into(),
            ]
        }
    }
}

fn bench(c: &mut Criterion) {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let texts = corpus_texts();
    let bytes: usize = texts.iter().map(String::len).sum();

    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(10);
    g.bench_function("corpus", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(engine.detect(black_box(t)).unwrap());
            }
        })
    });
    g.finish();

    // A ~1 KB message made of corpus texts.
    let mut one_kb = String::new();
    for t in &texts {
        if one_kb.len() >= 1024 {
            break;
        }
        one_kb.push_str(t);
        one_kb.push('\n');
    }
    let mut g = c.benchmark_group("latency");
    g.throughput(Throughput::Bytes(one_kb.len() as u64));
    g.bench_function("1kb_message", |b| {
        b.iter(|| black_box(engine.detect(black_box(&one_kb)).unwrap()))
    });
    g.finish();

    latency_percentiles(&engine, &texts);

    let mut g = c.benchmark_group("startup");
    g.sample_size(10);
    g.bench_function("engine_new", |b| {
        b.iter(|| black_box(Engine::new(EngineConfig::default()).unwrap()))
    });
    g.finish();
}

/// The nearest-rank percentile `p` (0..=100) of sorted latencies.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// On-CPU time of the calling thread (excludes time the thread waits for a core).
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Criterion reports means; the target is a p99. Every ~1 KB message made of consecutive
/// corpus texts is timed on its own (after a warm-up pass), several rounds, and the p50, p99
/// and maximum are printed, as are those of the corpus messages themselves: wall time, and
/// the thread's on-CPU time (what the engine costs when other processes share the cores).
fn latency_percentiles(engine: &Engine, texts: &[String]) {
    let mut kb_messages = Vec::new();
    let mut cur = String::new();
    for t in texts {
        cur.push_str(t);
        cur.push('\n');
        if cur.len() >= 1024 {
            kb_messages.push(std::mem::take(&mut cur));
        }
    }
    for (name, set) in [
        ("1kb_message", &kb_messages),
        ("corpus_message", &texts.to_vec()),
    ] {
        for m in set.iter() {
            black_box(engine.detect(m).unwrap());
        }
        let mut wall = Vec::with_capacity(set.len() * 5);
        let mut cpu = Vec::with_capacity(set.len() * 5);
        for _ in 0..5 {
            for m in set.iter() {
                let c0 = thread_cpu();
                let t0 = Instant::now();
                black_box(engine.detect(black_box(m)).unwrap());
                wall.push(t0.elapsed());
                cpu.push(thread_cpu().saturating_sub(c0));
            }
        }
        let mean_bytes = set.iter().map(String::len).sum::<usize>() / set.len().max(1);
        for (kind, lat) in [("wall", &mut wall), ("on-CPU", &mut cpu)] {
            lat.sort_unstable();
            println!(
                "latency/{name} ({kind}): {} timings of {} messages (mean {} bytes): p50 {:.1} us, p99 {:.1} us, max {:.1} us",
                lat.len(),
                set.len(),
                mean_bytes,
                percentile(lat, 50.0).as_secs_f64() * 1e6,
                percentile(lat, 99.0).as_secs_f64() * 1e6,
                lat.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
