//! `perimeter channels bench`: SMS intake throughput and latency on this machine.
//!
//! Starts the real server (the production route table, the channel routes, authentication)
//! on loopback over a fresh SQLite database in a scratch directory (WAL, `synchronous = FULL`:
//! every commit is fsync'd before the webhook is answered), creates a practice with patients,
//! then offers signed Twilio webhooks at a fixed rate (open loop: latency is measured from
//! each request's scheduled time, so a stalled server cannot hide its queueing) with a bound
//! on requests in flight. Prints the achieved rate, latency percentiles, failures, the
//! machine's load average, and checks that every acknowledged message is in the database.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use perimeter_crypto::KeyRing;
use perimeter_domain::{SharedClock, SystemClock};
use perimeter_server::channels::twilio::{Form, signature};
use perimeter_server::channels::{ChannelSettings, Channels, TwilioConfig};
use perimeter_server::{
    AppParts, AuthSettings, AuthSlot, BoxFuture, HttpLimits, Metrics, PoolStats, Readiness,
    ReadyCheck, ReadyReport, ServerSettings,
};
use perimeter_store::{AccessContext, DatabaseUrl, PatientData, Store, StoreOptions};

/// `perimeter channels ...`.
#[derive(Debug, Args)]
pub struct ChannelsArgs {
    #[command(subcommand)]
    command: ChannelsCommand,
}

#[derive(Debug, Subcommand)]
enum ChannelsCommand {
    /// Benchmark SMS webhook intake: signed webhooks at a fixed rate against a loopback
    /// server on a scratch SQLite database; prints throughput and latency percentiles.
    #[command(after_help = "\
Example:
  perimeter channels bench --rate 1000 --seconds 10
The target is 1,000 webhooks per second with p99 <= 50 ms, each durable before its 200.
The configured database is never touched: a scratch database is created in --dir.")]
    Bench(BenchArgs),
}

/// Options of `perimeter channels bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scratch directory (default: a new temporary directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Offered rate, webhooks per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Length of the measured run, seconds (after one second of warm-up at the same rate).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Most requests in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Patients in the practice (senders are drawn from their numbers, one in ten unknown).
    #[arg(long, default_value_t = 500)]
    patients: usize,
    /// Database pool size.
    #[arg(long, default_value_t = 8)]
    pool: u32,
}

/// Runs `perimeter channels ...`.
pub async fn run(args: ChannelsArgs) -> anyhow::Result<()> {
    match args.command {
        ChannelsCommand::Bench(b) => bench(b).await,
    }
}

struct Up;

impl Readiness for Up {
    fn check(&self) -> BoxFuture<'_, ReadyReport> {
        Box::pin(async {
            ReadyReport {
                checks: vec![ReadyCheck::pass("database")],
            }
        })
    }
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
}

const TOKEN: &str = "bench-auth-token-0123456789abcdef";
const PUBLIC: &str = "https://perimeter.bench.invalid";
const TEXTS: [&str; 6] = [
    "Hi, can I move my appointment on Tuesday to later in the week?",
    "I need a refill of my lisinopril please, the pharmacy is on Main St",
    "Got a bill I don't understand, can someone call me back",
    "are my blood test results back yet",
    "my cough is worse and I have a fever since yesterday",
    "thanks see you then",
];

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unavailable".to_owned())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0, "--rate must be at least 1");
    anyhow::ensure!(args.seconds > 0, "--seconds must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir().context("cannot create a scratch directory")?;
            tmp.path().to_path_buf()
        }
    };
    let db = dir.join(format!("channels-bench-{}.db", std::process::id()));
    let clock: SharedClock = Arc::new(SystemClock);
    let mut opts = StoreOptions::new(DatabaseUrl::Sqlite(db.clone()));
    opts.max_connections = args.pool;
    let store = Store::connect(&opts, KeyRing::generate()?, clock.clone())
        .await
        .context("cannot open the scratch database")?;
    store.migrate().await?;
    let sys = AccessContext::system("channels-bench");
    let practice = store.create_practice(&sys, "Bench Practice").await?;
    let mut phones = Vec::with_capacity(args.patients);
    for i in 0..args.patients {
        let phone = format!("+1202{:07}", 1_000_000 + i);
        store
            .create_patient(
                &sys,
                practice,
                &PatientData {
                    given_name: format!("Bench{i}"),
                    family_name: "Patient".into(),
                    phone: Some(phone.clone()),
                    ..PatientData::default()
                },
            )
            .await?;
        phones.push(phone);
    }
    let channels = Channels::new(
        ChannelSettings {
            practice: Some(practice),
            twilio: Some(TwilioConfig {
                account_sid: "AC00000000000000000000000000000000".into(),
                auth_token: zeroize::Zeroizing::new(TOKEN.into()),
                public_base_url: PUBLIC.into(),
                api_base_url: "http://127.0.0.1:9".into(),
                from_number: "+15550000000".into(),
                ca_pem: None,
                timeout: Duration::from_secs(5),
            }),
            ..ChannelSettings::default()
        },
        crate::cmd::serve::intake_classifier(),
    );
    let app = perimeter_server::build_app(AppParts {
        readiness: Arc::new(Up),
        clock: clock.clone(),
        metrics: Metrics::new(),
        limits: HttpLimits::default(),
        auth: AuthSlot::ready(perimeter_server::AuthState::new(
            store.clone(),
            clock.clone(),
            AuthSettings::default(),
        )),
        audit: Default::default(),
        extra_routes: Vec::new(),
    })?
    .with_channels(channels);
    let bound = perimeter_server::bind(&ServerSettings {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: None,
        insecure_http: false,
        shutdown_grace: Duration::from_secs(5),
    })?;
    let url = format!("http://{}/webhooks/twilio/sms", bound.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.run(app, async move {
        let _ = stop_rx.await;
    }));

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let signed_url = format!("{PUBLIC}/webhooks/twilio/sms");
    let total = args.rate * (args.seconds + 1);
    let warmup = args.rate;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let limit = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    println!(
        "channels bench: {} webhooks/s for {} s (+1 s warm-up), at most {} in flight, {} patients, SQLite WAL synchronous=FULL at {}",
        args.rate,
        args.seconds,
        args.concurrency,
        args.patients,
        db.display()
    );
    println!(
        "cores: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("loadavg before: {}", loadavg());
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(tokio::time::Instant::from_std(scheduled)).await;
        let permit = limit.clone().acquire_owned().await?;
        let from = if i % 10 == 9 {
            format!("+1303{:07}", 1_000_000 + (i % 1000))
        } else {
            phones
                .get(usize::try_from(i).unwrap_or(0) % phones.len().max(1))
                .cloned()
                .unwrap_or_default()
        };
        let sid = format!("SM{i:032x}");
        let body = TEXTS
            .get(usize::try_from(i).unwrap_or(0) % TEXTS.len())
            .copied()
            .unwrap_or_default();
        let form = Form::from_pairs([
            ("MessageSid", sid.as_str()),
            ("SmsMessageSid", sid.as_str()),
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("From", from.as_str()),
            ("To", "+15550000000"),
            ("Body", body),
            ("NumMedia", "0"),
        ]);
        let sig = signature(TOKEN.as_bytes(), &signed_url, &form);
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-twilio-signature", sig)
                .body(form.encode())
                .send()
                .await;
            let ok = matches!(&r, Ok(resp) if resp.status().is_success());
            let done = Instant::now();
            drop(permit);
            (i, ok, done.saturating_duration_since(scheduled), done)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failures = 0u64;
    let mut ok_total = 0i64;
    let mut last_done = start;
    let measured_start = start + interval.mul_f64(warmup as f64);
    for t in tasks {
        let (i, ok, latency, done) = t.await?;
        if ok {
            ok_total += 1;
        }
        if i < warmup {
            continue;
        }
        if ok {
            latencies.push(latency);
        } else {
            failures += 1;
        }
        last_done = last_done.max(done);
    }
    let elapsed = last_done.saturating_duration_since(measured_start);
    println!("loadavg after:  {}", loadavg());
    latencies.sort();
    let n = latencies.len();
    let achieved = n as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "measured: {n} acknowledged (200) in {:.2} s = {achieved:.0} webhooks/s; {failures} failed",
        elapsed.as_secs_f64()
    );
    println!(
        "latency from scheduled send: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 99.9)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    let stored = store.count_inbound(practice).await?;
    println!(
        "durability: {stored} receipts in the database for {ok_total} acknowledged webhooks (warm-up included){}",
        if stored >= ok_total {
            ""
        } else {
            "  <-- MISSING"
        }
    );
    let p99 = percentile(&latencies, 99.0);
    let met =
        achieved >= 0.98 * args.rate as f64 && p99 <= Duration::from_millis(50) && failures == 0;
    println!(
        "target (1000/s offered, p99 <= 50 ms, no failures): {}",
        if met && args.rate >= 1000 {
            "met"
        } else {
            "NOT met"
        }
    );
    let _ = stop_tx.send(());
    let _ = server.await;
    store.close().await;
    if args.dir.is_some() {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    }
    anyhow::ensure!(
        stored >= ok_total,
        "acknowledged webhooks are missing from the database"
    );
    Ok(())
}
