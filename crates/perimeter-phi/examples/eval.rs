//! Runs a corpus through the engine and prints the metrics and the top misses and false
//! positives.
//!
//! `cargo run --release -p perimeter-phi --example eval -- [PATH] [all|even|odd] [N]`
//! (default path: `../shared/corpus/phi-dev.jsonl`, split `all`, 40 examples shown).
//! `even`/`odd` select ids by the parity of their numeric part: tune on even, report odd.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Instant;

use perimeter_phi::eval::{Evaluation, GoldRecord, to_char_spans};
use perimeter_phi::{Engine, EngineConfig, Label};

fn id_number(id: &str) -> u64 {
    id.chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

fn snippet(text: &str, start: usize, end: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    let a = start.saturating_sub(30);
    let b = (end + 20).min(chars.len());
    let pre: String = chars[a..start].iter().collect();
    let mid: String = chars[start..end.min(chars.len())].iter().collect();
    let post: String = chars[end.min(chars.len())..b].iter().collect();
    format!("{pre}[[{mid}]]{post}").replace('\n', " ")
}

/// Nanoseconds this process has spent on a CPU (Linux `/proc/self/schedstat`).
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).cloned().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/corpus/phi-dev.jsonl"
        )
        .to_string()
    });
    let split = args.get(2).cloned().unwrap_or_else(|| "all".into());
    let show: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(40);
    let data = std::fs::read_to_string(&path).expect("corpus file");
    let recs: Vec<GoldRecord> = data
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("corpus line"))
        .filter(|r: &GoldRecord| match split.as_str() {
            "even" => id_number(&r.id).is_multiple_of(2),
            "odd" => !id_number(&r.id).is_multiple_of(2),
            _ => true,
        })
        .collect();
    let t0 = Instant::now();
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    let startup = t0.elapsed();
    let mut ev = Evaluation::new();
    let by_id: HashMap<&str, &GoldRecord> = recs.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut bytes = 0usize;
    let t1 = Instant::now();
    let mut preds = Vec::with_capacity(recs.len());
    for r in &recs {
        bytes += r.text.len();
        preds.push(engine.detect(&r.text).expect("detect"));
    }
    let _ = t1;
    // Time further passes once the lazy DFA caches are warm. Wall time is what a caller
    // sees; on-CPU time (from /proc/self/schedstat, Linux) is what a core costs when the
    // machine is shared.
    let passes: u32 = std::env::var("EVAL_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let cpu0 = cpu_ns();
    let t2 = Instant::now();
    for _ in 0..passes {
        for r in &recs {
            std::hint::black_box(engine.detect(&r.text).expect("detect"));
        }
    }
    let dt = t2.elapsed() / passes.max(1);
    let cpu = cpu0
        .zip(cpu_ns())
        .map(|(a, b)| (b - a) / u64::from(passes.max(1)));
    for (r, p) in recs.iter().zip(&preds) {
        ev.add(&r.id, &r.text, &r.spans, &to_char_spans(&r.text, p));
    }
    let rep = ev.report();
    println!(
        "split={split} messages={} gold={}",
        rep.messages, rep.gold_spans
    );
    println!(
        "entity_recall={:.4} char_precision={:.4} label_match_recall={:.4}",
        rep.entity_recall, rep.char_precision, rep.label_match_recall
    );
    for (l, c) in &rep.per_label {
        println!(
            "  {:<12} {:>5}/{:<5} recall={:.4} label_match={:.4}",
            l.as_str(),
            c.caught,
            c.gold,
            c.recall(),
            c.label_matched as f64 / c.gold.max(1) as f64
        );
    }
    println!(
        "startup={:?} detect={:?} per pass ({:.1} MB/s wall, single thread)",
        startup,
        dt,
        bytes as f64 / dt.as_secs_f64() / 1e6
    );
    if let Some(ns) = cpu {
        println!(
            "on-CPU per pass={:.1} ms ({:.1} MB/s per core busy)",
            ns as f64 / 1e6,
            bytes as f64 / (ns as f64 / 1e9) / 1e6
        );
    }
    let mut by_label: HashMap<Label, usize> = HashMap::new();
    println!("--- misses");
    for m in ev.misses() {
        let n = by_label.entry(m.label).or_default();
        *n += 1;
        if *n <= show {
            let r = by_id[m.id.as_str()];
            println!("{} {} {}", m.id, m.label, snippet(&r.text, m.start, m.end));
        }
    }
    println!("--- false positives ({})", ev.false_positives().len());
    for f in ev.false_positives().iter().take(show * 3) {
        let r = by_id[f.id.as_str()];
        println!("{} {} {}", f.id, f.label, snippet(&r.text, f.start, f.end));
    }
}
