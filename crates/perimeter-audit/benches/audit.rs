//! Audit trail micro-benchmarks (CPU only, in memory). The targets — durable appends
//! into SQLite, verification reading from the database, proofs from a 10-million-record SQLite
//! trail — are measured by `perimeter audit bench` (crates/perimeter-cli/src/cmd/audit/bench.rs).
//!
//! - `verify/records`: the streaming verifier (chain, leaf hash, event parse, frontier,
//!   checkpoint roots) over in-memory records — the CPU cost per record of `audit verify`.
//! - `prove/10M`: proof generation and RFC 9162 verification in a tree of 10,000,000 leaves
//!   held in memory (the hashing cost, without the database reads).
//! - `append/sqlite`: appends through `Store::append_audit` (group commit, `synchronous=FULL`)
//!   with 64 concurrent writers; prints the p50/p99 latency the writers saw.
//!
//! Run: `cargo bench -p perimeter-audit --bench audit`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use perimeter_audit::checkpoint::{Checkpoint, CheckpointKey};
use perimeter_audit::merkle::root_of;
use perimeter_audit::proof::{MemoryTree, inclusion_proof, verify_inclusion};
use perimeter_audit::verify::{CheckpointSet, TrailVerifier};
use perimeter_audit::{Action, Actor, AuditEvent, AuditRecord, Hash32, ObjectRef, Outcome};
use perimeter_domain::{DataCategory, PatientId, PurposeOfUse, RequestId, Role, StaffId};

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        at_millis: 1_767_225_600_000 + i as i64,
        actor: Actor::User {
            user: StaffId::new(),
            roles: vec![Role::Clinician],
            session: Some("sess-ref".into()),
        },
        action: Action::Read,
        object: ObjectRef {
            kind: "conversation".into(),
            id: Some(format!("{i}")),
        },
        patient: Some(PatientId::new()),
        categories: vec![DataCategory::ClinicalMessage, DataCategory::Contact],
        purpose: Some(PurposeOfUse::Treatment),
        outcome: Outcome::Success,
        detail: None,
        client_addr: Some("10.0.0.12".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        request_id: Some(RequestId::new()),
    }
}

fn bench_verify(c: &mut Criterion) {
    const N: u64 = 100_000;
    let mut records: Vec<AuditRecord> = Vec::with_capacity(N as usize);
    for i in 0..N {
        let prev = records.last().map(|r| (r.seq, r.leaf_hash));
        let e = event(i);
        records.push(AuditRecord::next(prev, e.at_millis, e.canonical_bytes()));
    }
    let sk = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let key = CheckpointKey::new("bench/audit", sk.verifying_key()).unwrap();
    let leaves: Vec<Hash32> = records.iter().map(|r| r.leaf_hash).collect();
    let notes: Vec<_> = [N / 2, N]
        .iter()
        .map(|&s| {
            Checkpoint {
                origin: "bench/audit".into(),
                size: s,
                root: root_of(&leaves[..s as usize]),
                at_millis: 0,
            }
            .sign("bench/audit", &sk)
            .unwrap()
        })
        .collect();
    let set = CheckpointSet::collect(&key, "bench/audit", &notes, &[]).unwrap();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("records", |b| {
        b.iter(|| {
            let mut v = TrailVerifier::new(&set).unwrap();
            for r in &records {
                std::hint::black_box(v.push(r).unwrap());
            }
            v.finish(None).unwrap()
        })
    });
    g.finish();
}

fn bench_prove(c: &mut Criterion) {
    const N: u64 = 10_000_000;
    let started = Instant::now();
    let mut tree = MemoryTree::new();
    for i in 0..N {
        tree.push(perimeter_audit::leaf_hash(i, &[0; 32], 0, &i.to_be_bytes()));
    }
    eprintln!("built a {N}-leaf node table in {:?}", started.elapsed());
    let root = tree.root();
    let mut g = c.benchmark_group("prove");
    g.sample_size(50);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    g.bench_function(
        BenchmarkId::new("inclusion_generate_and_verify", "10M"),
        |b| {
            b.iter(|| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let index = x % N;
                let leaf = perimeter_audit::leaf_hash(index, &[0; 32], 0, &index.to_be_bytes());
                let p = inclusion_proof(&tree, index, N).unwrap();
                verify_inclusion(index, N, &leaf, &p, &root).unwrap();
                p
            })
        },
    );
    g.finish();
}

fn bench_append(c: &mut Criterion) {
    use perimeter_store::{DatabaseUrl, Store, StoreOptions};
    const WRITERS: usize = 64;
    const PER_WRITER: usize = 100;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(async {
        sqlx::any::install_default_drivers();
        let keys = perimeter_crypto::KeyRing::generate().unwrap();
        let clock: perimeter_domain::SharedClock = Arc::new(perimeter_domain::SystemClock);
        let opts = StoreOptions::new(DatabaseUrl::Sqlite(dir.path().join("bench.db")));
        let store = Store::connect(&opts, keys, clock).await.unwrap();
        store.migrate().await.unwrap();
        store.verify_keys().await.unwrap();
        store
    });
    let mut latencies: Vec<Duration> = Vec::new();
    let mut g = c.benchmark_group("append");
    g.sample_size(10);
    g.throughput(Throughput::Elements((WRITERS * PER_WRITER) as u64));
    g.bench_function(BenchmarkId::new("sqlite_group_commit", WRITERS), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let lats = rt.block_on(async {
                    let mut hs = Vec::new();
                    for w in 0..WRITERS {
                        let store = store.clone();
                        hs.push(tokio::spawn(async move {
                            let mut l = Vec::with_capacity(PER_WRITER);
                            for i in 0..PER_WRITER {
                                let e = event((w * PER_WRITER + i) as u64);
                                let t = Instant::now();
                                store.append_audit(&[e]).await.unwrap();
                                l.push(t.elapsed());
                            }
                            l
                        }));
                    }
                    let mut all = Vec::new();
                    for h in hs {
                        all.extend(h.await.unwrap());
                    }
                    all
                });
                total += start.elapsed();
                latencies.extend(lats);
            }
            total
        })
    });
    g.finish();
    latencies.sort();
    if !latencies.is_empty() {
        let pct =
            |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        eprintln!(
            "append latency over {} appends: p50 {:?}, p99 {:?}, max {:?}",
            latencies.len(),
            pct(0.50),
            pct(0.99),
            latencies[latencies.len() - 1]
        );
    }
    rt.block_on(store.close());
}

criterion_group!(benches, bench_verify, bench_prove, bench_append);
criterion_main!(benches);
