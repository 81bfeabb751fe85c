//! Criterion benches: detection throughput on the corpus texts, 1 KB message latency, and
//! engine start-up (compiling the automata and loading the lists).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

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

    let mut g = c.benchmark_group("startup");
    g.sample_size(10);
    g.bench_function("engine_new", |b| {
        b.iter(|| black_box(Engine::new(EngineConfig::default()).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
