//! Gateway overhead, excluding the vendor: a 2 KB prompt with PHI, pseudonymised, streamed
//! back by a loopback fake vendor that echoes it (so the answer is full of placeholders to
//! restore and identifiers to check), with 200 streams at once.
//!
//! `cargo bench -p perimeter-gateway --bench overhead [-- ROUNDS [STREAMS]]`
//!
//! The overhead of one call is [`CallRecord::overhead_us`]: the time the gateway spends in its
//! own code (de-identifying the request, parsing events, re-identifying, the output guardrail)
//! summed over the call, with the waits for the vendor excluded. Wall-clock times with and
//! without the gateway are printed for context; on a shared 2-core machine they include
//! queueing behind the other 199 streams and the fake vendor itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/upstream.rs"]
mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use perimeter_domain::{Clock, ManualClock};
use perimeter_gateway::{
    AiPurpose, Caller, ChatCompletionRequest, DataClass, Decision, Gateway, GatewayConfig,
    HttpProvider, HttpSettings, Reply, VendorConnection, VendorTerms, decide,
};
use perimeter_phi::{Engine, EngineConfig, Vault};
use serde_json::json;
use upstream::{Behaviour, FakeUpstream, Style};

const PROMPT_BYTES: usize = 2048;

fn prompt() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/phi-dev.jsonl"
    );
    let mut out = String::new();
    if let Ok(s) = std::fs::read_to_string(path) {
        for line in s.lines().skip(100) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let t = v["text"].as_str().unwrap();
            if out.len() + t.len() + 1 > PROMPT_BYTES {
                break;
            }
            out.push_str(t);
            out.push('\n');
        }
    }
    let filler = "Hi, this is Maria Gonzalez, DOB 03/02/1981, please call me back at (312) 555-8841 about my appointment. ";
    while out.len() < PROMPT_BYTES {
        out.push_str(filler);
    }
    let mut end = PROMPT_BYTES;
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, unit: &str, mut v: Vec<u64>) {
    v.sort_unstable();
    println!(
        "{name:<44} n={:<5} p50={:>8} {unit}  p90={:>8} {unit}  p99={:>8} {unit}  max={:>8} {unit}",
        v.len(),
        percentile(&v, 0.50),
        percentile(&v, 0.90),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(0)
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let streams: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    // For the direct client below; the gateway builds its own TLS configuration.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(rounds, streams));
}

async fn run(rounds: usize, streams: usize) {
    let fake = FakeUpstream::start(Behaviour::Echo(Style {
        chars_per_event: 8,
        ..Style::default()
    }))
    .await;
    let clock = Arc::new(ManualClock::at_epoch_2026());
    let engine = Arc::new(Engine::new(EngineConfig::default()).unwrap());
    let gw = Arc::new(Gateway::new(
        engine,
        clock.clone(),
        GatewayConfig::default(),
    ));
    let provider = Arc::new(
        HttpProvider::new(
            VendorConnection {
                name: "acme".into(),
                base_url: fake.base_url(),
                models: vec!["m".into()],
                api_key: None,
                inside_perimeter: false,
                ca_pem: None,
            },
            HttpSettings::default(),
        )
        .unwrap(),
    );
    let terms = VendorTerms {
        name: "acme".into(),
        configured_class: DataClass::Deidentified,
        baa: None,
        inside_perimeter: false,
    };
    let text = prompt();
    println!(
        "prompt {} bytes, answer streamed 8 characters per event, {streams} concurrent streams, {rounds} rounds",
        text.len()
    );
    let body = json!({"model": "m", "stream": true,
        "messages": [{"role": "system", "content": "Summarise for the coordinator."},
                     {"role": "user", "content": text}]});

    // Warm up (lazy automata, connections).
    for _ in 0..3 {
        one(&gw, &provider, &terms, &clock, &body).await;
    }

    let mut overhead = Vec::new();
    let mut prepare = Vec::new();
    let mut relay = Vec::new();
    let mut per_event = Vec::new();
    let mut wall = Vec::new();
    let mut replaced = 0;
    let cpu0 = cpu_ns();
    for _ in 0..rounds {
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let (gw, provider, terms, clock, body) = (
                Arc::clone(&gw),
                Arc::clone(&provider),
                terms.clone(),
                Arc::clone(&clock),
                body.clone(),
            );
            tasks.push(tokio::spawn(async move {
                one(&gw, &provider, &terms, &clock, &body).await
            }));
        }
        for t in tasks {
            let s = t.await.unwrap();
            overhead.push(s.overhead_us);
            prepare.push(s.prepare_us);
            let r = s.overhead_us.saturating_sub(s.prepare_us);
            relay.push(r);
            per_event.push(r * 1000 / s.events.max(1));
            wall.push(s.wall_us);
            replaced = s.replaced;
        }
    }
    let cpu_gateway = cpu_ns() - cpu0;

    // The same streams read straight from the fake vendor, for context.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut direct = Vec::new();
    let url = format!("{}/chat/completions", fake.base_url());
    let direct_body = serde_json::to_vec(&json!({"model": "m", "stream": true,
        "messages": [{"role": "user", "content": prompt()}]}))
    .unwrap();
    let cpu1 = cpu_ns();
    for _ in 0..rounds {
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let (client, url, body) = (client.clone(), url.clone(), direct_body.clone());
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let mut resp = client.post(url).body(body).send().await.unwrap();
                while resp.chunk().await.unwrap().is_some() {}
                t.elapsed()
            }));
        }
        for t in tasks {
            direct.push(micros(t.await.unwrap()));
        }
    }

    let cpu_direct = cpu_ns() - cpu1;
    let n = (rounds * streams) as u64;
    println!("identifiers replaced per request: {replaced}");
    report("prepare: de-identify the 2 KB request", "us", prepare);
    report("relay: restore + guard, whole stream", "us", relay);
    report("relay: per caller event", "ns", per_event);
    report("gateway overhead per stream (excl. vendor)", "us", overhead);
    println!(
        "process CPU per stream (fake vendor included): {} us through the gateway, {} us vendor direct, {} us added",
        cpu_gateway / n / 1000,
        cpu_direct / n / 1000,
        cpu_gateway.saturating_sub(cpu_direct) / n / 1000
    );
    report("wall time per stream through the gateway", "us", wall);
    report("wall time per stream, vendor direct", "us", direct);
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

async fn one(
    gw: &Gateway,
    provider: &HttpProvider,
    terms: &VendorTerms,
    clock: &ManualClock,
    body: &serde_json::Value,
) -> Sample {
    let t = Instant::now();
    let caller = Caller::Service {
        purposes: vec![AiPurpose::DeveloperGateway],
    };
    let Decision::Send(permit) = decide(
        AiPurpose::DeveloperGateway,
        terms,
        DataClass::Phi,
        &caller,
        clock.now().date(),
    ) else {
        panic!("refused")
    };
    let request: ChatCompletionRequest = serde_json::from_value(body.clone()).unwrap();
    let tp = Instant::now();
    let ready = gw.prepare(permit, request, Arc::new(Vault::new())).unwrap();
    let prepare_us = micros(tp.elapsed());
    let Reply::Stream(pending) = gw.send(ready, provider).await.unwrap() else {
        panic!("not a stream")
    };
    let mut live = pending.begin(true).unwrap();
    let mut bytes = 0;
    let mut events = 0u64;
    while let Some(b) = live.next().await {
        bytes += b.len();
        events += b.windows(6).filter(|w| w == b"data: ").count() as u64;
    }
    assert!(bytes > 1000);
    let record = live.record().unwrap().clone();
    let done = live.finish(true);
    assert_eq!(&done[..], b"data: [DONE]\n\n");
    Sample {
        overhead_us: record.overhead_us,
        prepare_us,
        wall_us: micros(t.elapsed()),
        events,
        replaced: record.identifiers_replaced,
    }
}

struct Sample {
    overhead_us: u64,
    prepare_us: u64,
    wall_us: u64,
    events: u64,
    replaced: u32,
}

/// Nanoseconds all threads of this process have spent on a CPU (user + system, from
/// `/proc/self/stat`, in clock ticks of 10 ms).
fn cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10_000_000
}
