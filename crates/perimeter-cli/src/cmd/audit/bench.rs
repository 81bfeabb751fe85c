//! `perimeter audit bench`: the audit trail's speed targets, measured on this machine.
//!
//! - **Durable appends**: standalone events through `Store::append_audit` (the group
//!   committer; SQLite in WAL mode with `synchronous = FULL`, so every commit fsyncs) into a
//!   fresh database file: a closed loop of N concurrent writers (throughput), then an open loop
//!   offering a fixed rate (latency under that load).
//! - **Verification from the database**: `verify_store` over a read-only `AuditReader` on a
//!   trail built once through the bulk path and cached.
//! - **Inclusion proofs**: `prove` from the stored nodes of a cached SQLite trail (10 million
//!   records by default), each proof generated and checked.
//!
//! Scratch databases live in `--dir` (default: `audit-bench` beside the `perimeter` binary,
//! i.e. under the cargo target directory); the configured database is never touched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use ed25519_dalek::SigningKey;
use perimeter_audit::checkpoint::{Checkpoint, CheckpointKey};
use perimeter_audit::trail::{OutsideCheckpoints, TrailStore, VerifyOptions, prove, verify_store};
use perimeter_audit::{Action, Actor, AuditEvent, ObjectRef, Outcome};
use perimeter_crypto::KeyRing;
use perimeter_domain::{
    DataCategory, PatientId, PurposeOfUse, RequestId, Role, SharedClock, StaffId, SystemClock,
};
use perimeter_store::{AuditReader, DatabaseUrl, Store, StoreOptions, build_sqlite_trail};

const ORIGIN: &str = "perimeter-bench/audit";

/// Which measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Durable appends.
    Append,
    /// Verification from the database.
    Verify,
    /// Inclusion proofs.
    Prove,
}

/// Options of `perimeter audit bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scratch and cache directory (default: audit-bench beside the perimeter binary).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Run only this part (default: all).
    #[arg(long, value_enum)]
    only: Option<Part>,
    /// Concurrent writers in the closed-loop append run.
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Appends in the closed-loop run.
    #[arg(long, default_value_t = 20_000)]
    appends: usize,
    /// Offered rate of the open-loop run, appends per second.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Length of the open-loop run, seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Records of the verification trail.
    #[arg(long, default_value_t = 1_000_000)]
    verify_records: u64,
    /// Records of the proof trail.
    #[arg(long, default_value_t = 10_000_000)]
    proof_records: u64,
    /// Proofs to time.
    #[arg(long, default_value_t = 300)]
    proofs: usize,
}

fn default_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("audit-bench")))
        .unwrap_or_else(|| PathBuf::from("audit-bench"))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "meets" } else { "MISSES" }
}

struct Pools {
    users: Vec<StaffId>,
    patients: Vec<PatientId>,
}

impl Pools {
    fn new() -> Self {
        Self {
            users: (0..50).map(|_| StaffId::new()).collect(),
            patients: (0..1000).map(|_| PatientId::new()).collect(),
        }
    }

    /// A realistic access event (a user reading a conversation, with client details).
    fn event(&self, i: u64) -> AuditEvent {
        let n = i as usize;
        AuditEvent {
            at_millis: 1_767_225_600_000 + i as i64,
            actor: Actor::User {
                user: self.users[n % self.users.len()],
                roles: vec![Role::Clinician],
                session: Some("5f1c0e2a9b7d4c31".into()),
            },
            action: Action::Read,
            object: ObjectRef {
                kind: "conversation".into(),
                id: Some(format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))),
            },
            patient: Some(self.patients[n % self.patients.len()]),
            categories: vec![DataCategory::ClinicalMessage, DataCategory::Contact],
            purpose: Some(PurposeOfUse::Treatment),
            outcome: Outcome::Success,
            detail: None,
            client_addr: Some("10.0.0.12".into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
            request_id: Some(RequestId::new()),
        }
    }
}

fn small_event(i: u64) -> AuditEvent {
    AuditEvent {
        at_millis: 1_767_225_600_000 + i as i64,
        actor: Actor::System {
            component: "bench".into(),
        },
        action: Action::Execute,
        object: ObjectRef {
            kind: "bench".into(),
            id: None,
        },
        patient: None,
        categories: Vec::new(),
        purpose: None,
        outcome: Outcome::Success,
        detail: None,
        client_addr: None,
        user_agent: None,
        request_id: None,
    }
}

/// The fixed key of the bench trails' checkpoints (scratch data only), so cached trails stay
/// verifiable across runs.
fn bench_key() -> anyhow::Result<(SigningKey, CheckpointKey)> {
    let sk = SigningKey::from_bytes(&[0x42; 32]);
    let ck = CheckpointKey::new(ORIGIN, sk.verifying_key())?;
    Ok((sk, ck))
}

/// Raw fsync latency of the scratch directory's file system, for context.
fn fsync_latency(dir: &Path) -> anyhow::Result<(Duration, Duration)> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let mut lat = Vec::new();
    for _ in 0..100 {
        f.write_all(&[7u8; 4096])?;
        let t = Instant::now();
        f.sync_data()?;
        lat.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path)?;
    lat.sort();
    Ok((pct(&lat, 0.5), pct(&lat, 0.99)))
}

/// Runs the benchmarks and prints the figures.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let dir = args.dir.clone().unwrap_or_else(default_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    println!("audit benchmarks in {}", dir.display());
    let parts = match args.only {
        Some(p) => vec![p],
        None => vec![Part::Append, Part::Verify, Part::Prove],
    };
    for part in parts {
        match part {
            Part::Append => appends(&args, &dir).await?,
            Part::Verify => verification(&args, &dir).await?,
            Part::Prove => proofs(&args, &dir).await?,
        }
    }
    Ok(())
}

async fn appends(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let (f50, f99) = fsync_latency(dir)?;
    println!(
        "\n[append] raw fsync of this file system: p50 {}, p99 {} (a durable commit costs at least one)",
        ms(f50),
        ms(f99)
    );
    let path = dir.join("append.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let clock: SharedClock = Arc::new(SystemClock);
    let store = Store::connect(
        &StoreOptions::new(DatabaseUrl::Sqlite(path.clone())),
        KeyRing::generate()?,
        clock,
    )
    .await?;
    store.migrate().await?;
    println!("[append] SQLite {}", store.durability().await?);
    let pools = Arc::new(Pools::new());

    // Closed loop: W writers, each appending as fast as its previous append returns.
    let per = args.appends.div_ceil(args.writers.max(1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.writers.max(1) {
        let (store, pools) = (store.clone(), pools.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let e = pools.event((w * per + i) as u64);
                let t = Instant::now();
                store.append_audit(&[e]).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, perimeter_store::StoreError>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = started.elapsed();
    lat.sort();
    let rate = lat.len() as f64 / elapsed.as_secs_f64();
    println!(
        "[append] closed loop, {} writers: {} appends in {:.2} s = {:.0} appends/s ({} 5,000/s); latency p50 {}, p99 {}, max {}",
        args.writers,
        lat.len(),
        elapsed.as_secs_f64(),
        rate,
        verdict(rate >= 5000.0),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
    );

    // Open loop: a fixed offered rate, latency measured from each append's scheduled time.
    // Arrivals are evenly spaced (1/rate apart) and paced by a thread of their own with the
    // operating system's sleep (~0.1 ms precise), not by a Tokio interval: Tokio's timer has
    // millisecond granularity and rounds deadlines up, which made arrivals come in bursts and
    // added up to a millisecond of the generator's own lateness to every figure. An arrival
    // that is due is issued at once, however late; its latency still counts from when it was
    // due (no coordinated omission).
    let total = args.seconds.max(1) * args.rate.max(1);
    let gap = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let runtime = tokio::runtime::Handle::current();
    let (started, tasks) = {
        let (store, pools) = (store.clone(), pools.clone());
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
            for i in 0..total {
                let scheduled = started + gap.mul_f64(i as f64);
                let now = Instant::now();
                if scheduled > now {
                    std::thread::sleep(scheduled - now);
                }
                let (store, pools) = (store.clone(), pools.clone());
                tasks.push(runtime.spawn(async move {
                    store
                        .append_audit(&[pools.event(i)])
                        .await
                        .map(|_| (scheduled.elapsed(), Instant::now()))
                }));
            }
            (started, tasks)
        })
        .await?
    };
    let mut lat = Vec::with_capacity(tasks.len());
    let mut last_done = started;
    for t in tasks {
        let (l, done) = t.await??;
        lat.push(l);
        last_done = last_done.max(done);
    }
    lat.sort();
    let achieved = lat.len() as f64 / (last_done - started).as_secs_f64();
    let p99 = pct(&lat, 0.99);
    println!(
        "[append] open loop at {} appends/s offered for {} s: {:.0} appends/s completed; latency p50 {}, p99 {} ({} 5 ms), max {}",
        args.rate,
        args.seconds,
        achieved,
        ms(pct(&lat, 0.5)),
        ms(p99),
        verdict(p99 <= Duration::from_millis(5)),
        ms(lat.last().copied().unwrap_or_default()),
    );
    let head = store.audit_head().await?.map(|h| h.size).unwrap_or(0);
    println!("[append] trail holds {head} records, every one acknowledged only after its commit");
    store.close().await;
    Ok(())
}

/// Opens a cached bench trail with `records` records and signed checkpoints at `sizes`, or
/// builds it through the bulk path.
async fn cached_trail(
    path: &Path,
    records: u64,
    sizes: &[u64],
    event: impl FnMut(u64) -> AuditEvent,
) -> anyhow::Result<AuditReader> {
    let url = DatabaseUrl::Sqlite(path.to_owned());
    if path.exists() {
        if let Ok(reader) = AuditReader::connect_url(&url).await {
            let complete = reader.head().await?.is_some_and(|h| h.size == records)
                && reader.checkpoints_from(0).await?.len() == sizes.len();
            if complete {
                println!("  using the cached trail {}", path.display());
                return Ok(reader);
            }
            reader.close().await;
        }
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    println!(
        "  building a {records}-record trail in {} (once; cached for later runs)",
        path.display()
    );
    let started = Instant::now();
    let step = (records / 10).max(1);
    let (_, roots) = build_sqlite_trail(
        path,
        records,
        event,
        |i| 1_767_225_600_000 + i as i64,
        sizes,
        |done| {
            if done % step == 0 || done == records {
                eprintln!("  {done} records");
            }
        },
    )
    .await?;
    let (sk, _) = bench_key()?;
    let store = Store::connect(
        &StoreOptions::new(url.clone()),
        KeyRing::generate()?,
        Arc::new(SystemClock),
    )
    .await?;
    for (size, root) in roots {
        let note = Checkpoint {
            origin: ORIGIN.to_owned(),
            size,
            root,
            at_millis: 1_767_225_600_000 + size as i64,
        }
        .sign(ORIGIN, &sk)?;
        store
            .insert_checkpoint(size, note.checkpoint.at_millis, note.text().as_bytes())
            .await?;
    }
    store.close().await;
    println!("  built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(AuditReader::connect_url(&url).await?)
}

async fn verification(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let n = args.verify_records;
    println!("\n[verify] trail of {n} realistic access records");
    let pools = Pools::new();
    let sizes: Vec<u64> = (1..=10).map(|k| n * k / 10).filter(|s| *s > 0).collect();
    let reader = cached_trail(&dir.join(format!("verify-{n}.db")), n, &sizes, |i| {
        pools.event(i)
    })
    .await?;
    let (_, key) = bench_key()?;
    // The reading alone (the ceiling the store sets), then full verification.
    let started = Instant::now();
    let mut read = 0u64;
    loop {
        let page = TrailStore::records(&reader, read, VerifyOptions::default().page).await?;
        if page.is_empty() {
            break;
        }
        read += page.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "[verify] reading the records alone: {read} in {secs:.2} s = {:.0} records/s",
        read as f64 / secs
    );
    let mut rates = Vec::new();
    for run in 1..=3 {
        let started = Instant::now();
        let report = verify_store(
            &reader,
            &key,
            OutsideCheckpoints::default(),
            VerifyOptions::default(),
        )
        .await?;
        let secs = started.elapsed().as_secs_f64();
        let rate = report.summary.records as f64 / secs;
        rates.push(rate);
        println!(
            "[verify] run {run}: {} records, {} checkpoints, {} consistency proofs, {} stored nodes compared in {:.2} s = {:.0} records/s",
            report.summary.records,
            report.summary.checkpoints,
            report.consistency_checked,
            report.nodes_checked,
            secs,
            rate
        );
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "[verify] median {:.0} records/s reading from SQLite ({} 200,000/s)",
        median,
        verdict(median >= 200_000.0)
    );
    reader.close().await;
    Ok(())
}

async fn proofs(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let n = args.proof_records;
    println!("\n[prove] inclusion proofs in a SQLite trail of {n} records");
    let reader = cached_trail(&dir.join(format!("proof-{n}.db")), n, &[n], small_event).await?;
    let (_, key) = bench_key()?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut lat = Vec::with_capacity(args.proofs);
    let mut path_len = 0;
    for _ in 0..args.proofs.max(1) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let seq = x % n.max(1);
        let t = Instant::now();
        // Reads the covering checkpoint, the record and the O(log n) stored nodes, builds the
        // proof and checks it against the signed root before returning it.
        let bundle = prove(&reader, &key, seq, None).await?;
        lat.push(t.elapsed());
        path_len = bundle.audit_path.len();
    }
    lat.sort();
    let p99 = pct(&lat, 0.99);
    println!(
        "[prove] {} proofs ({} hashes each): p50 {}, p99 {} ({} 10 ms), max {}",
        lat.len(),
        path_len,
        ms(pct(&lat, 0.5)),
        ms(p99),
        verdict(p99 <= Duration::from_millis(10)),
        ms(lat.last().copied().unwrap_or_default())
    );
    reader.close().await;
    Ok(())
}
