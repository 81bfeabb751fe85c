//! Local model throughput: load time, prompt tokens/s, generation tokens/s, peak RSS.
//!
//! ```text
//! cargo bench -p perimeter-llm --bench generate -- [--model FILE] [--threads N] [--tokens N]
//! ```
//! The model defaults to `PERIMETER_TEST_GGUF`. Prints one line per figure, and the load
//! average (the machine is shared: figures under load are lower).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Instant;

use perimeter_llm::{ChatMessage, GenerationParams, LocalModel, ModelConfig, StreamEvent};

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let mut model = std::env::var_os("PERIMETER_TEST_GGUF").map(PathBuf::from);
    let mut threads = None;
    let mut tokens = 64u32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--model" => model = args.next().map(PathBuf::from),
            "--threads" => threads = args.next().and_then(|t| t.parse().ok()),
            "--tokens" => tokens = args.next().and_then(|t| t.parse().ok()).unwrap_or(64),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    let Some(model) = model else {
        eprintln!("no model: pass --model FILE or set PERIMETER_TEST_GGUF");
        std::process::exit(2);
    };
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", loadavg.trim());
    let mut config = ModelConfig::new(&model, "bench");
    config.threads = threads;
    config.max_tokens = tokens;
    let t = Instant::now();
    let m = LocalModel::load(&config).unwrap();
    let load = t.elapsed();
    let rss_loaded = status_kib("VmRSS:").unwrap_or(0);
    println!(
        "model: {} ({} tensors re-quantized Q4_1->Q8_0, {} threads, context {})",
        model.display(),
        m.info().requantized_tensors,
        m.info().threads,
        m.info().context
    );
    println!("load time: {:.3} s", load.as_secs_f64());
    println!("RSS after load: {:.1} MiB", rss_loaded as f64 / 1024.0);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Prompt processing: a ~500-token prompt, one completion token.
        let text = "The patient called to ask whether the clinic could move the follow-up visit to a later date, and whether the new date would still be covered. ".repeat(17);
        let messages = vec![ChatMessage::new("user", text)];
        let prompt_len = m.prompt_tokens(&messages).unwrap().len();
        // Warm-up (first-touch page faults, thread pool start).
        m.complete(&messages, &GenerationParams { max_tokens: Some(1), ..Default::default() })
            .await
            .unwrap();
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            m.complete(&messages, &GenerationParams { max_tokens: Some(1), ..Default::default() })
                .await
                .unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "prompt: {prompt_len} tokens in {:.3} s = {:.1} tokens/s (best of 3)",
            best,
            prompt_len as f64 / best
        );

        // Generation: tokens after the first, at temperature 0.
        let messages = vec![ChatMessage::new("user", "Write a long story about a lighthouse keeper.")];
        let params = GenerationParams {
            max_tokens: Some(tokens),
            ..Default::default()
        };
        let mut stream = m.generate(&messages, &params).unwrap();
        let mut first = None;
        let done = loop {
            match stream.next().await.unwrap().unwrap() {
                StreamEvent::Delta(_) => {
                    first.get_or_insert_with(Instant::now);
                }
                StreamEvent::Done(c) => break c,
            }
        };
        let end = Instant::now();
        let first = first.unwrap_or(end);
        let n = done.usage.completion_tokens.saturating_sub(1).max(1);
        let secs = (end - first).as_secs_f64();
        println!(
            "generation: {n} tokens in {secs:.3} s = {:.1} tokens/s ({} tokens, finish {})",
            n as f64 / secs,
            done.usage.completion_tokens,
            done.finish_reason.as_str()
        );
    });
    println!(
        "peak RSS: {:.1} MiB",
        status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0
    );
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", loadavg.trim());
}
