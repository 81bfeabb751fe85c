//! Verification and proofs over an asynchronous store (feature `runtime`): the store implements
//! [`TrailStore`] through a thin adapter (the CLI's `cmd/audit.rs` has the one for
//! `perimeter_store::Store`), and these functions drive the I/O-free machinery of
//! [`crate::verify`] and [`crate::proof`] over it.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;

use crate::bundle::InclusionBundle;
use crate::checkpoint::{CheckpointKey, SignedCheckpoint, parse_log};
use crate::merkle::Node;
use crate::proof::{NodeId, NodeSource, Subtree, inclusion_plan};
use crate::record::{AuditRecord, Hash32};
use crate::verify::{
    CheckpointOrigin, CheckpointSet, DriftRule, HeadView, StoredRecord, Summary, TrailVerifier,
    VerifyError, check_checkpoint_consistency, check_drift, check_stored_node,
};

/// What verification and proofs read from the store.
pub trait TrailStore: Send + Sync {
    /// The store's error.
    type Error: Display + Send;
    /// Up to `limit` records from `from_seq`, ascending, with their query columns.
    fn records(
        &self,
        from_seq: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredRecord>, Self::Error>> + Send;
    /// One node (level 0: a record's leaf hash).
    fn node(
        &self,
        level: u32,
        index: u64,
    ) -> impl Future<Output = Result<Option<Hash32>, Self::Error>> + Send;
    /// Nodes `from..to` of one level, ascending; missing ones are left out. The default reads
    /// them one by one; stores with a range query should override it.
    fn nodes(
        &self,
        level: u32,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<Vec<(u64, Hash32)>, Self::Error>> + Send {
        async move {
            let mut out = Vec::new();
            for i in from..to {
                if let Some(h) = self.node(level, i).await? {
                    out.push((i, h));
                }
            }
            Ok(out)
        }
    }
    /// The given nodes (missing ones left out). The default reads them one by one; stores
    /// should read them in one round trip (a proof needs O(log n) of them).
    fn nodes_by_id(
        &self,
        ids: &[NodeId],
    ) -> impl Future<Output = Result<Vec<(NodeId, Hash32)>, Self::Error>> + Send {
        async move {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(h) = self.node(id.level, id.index).await? {
                    out.push((*id, h));
                }
            }
            Ok(out)
        }
    }
    /// The stored head, `None` while the trail is empty.
    fn head(&self) -> impl Future<Output = Result<Option<HeadView>, Self::Error>> + Send;
    /// Every stored checkpoint note, by size.
    fn checkpoints(&self) -> impl Future<Output = Result<Vec<Vec<u8>>, Self::Error>> + Send;
}

fn src<E: Display>(e: E) -> VerifyError {
    VerifyError::Source(e.to_string())
}

/// Parses the database's checkpoint notes.
pub async fn database_checkpoints<S: TrailStore>(
    store: &S,
) -> Result<Vec<SignedCheckpoint>, VerifyError> {
    store
        .checkpoints()
        .await
        .map_err(src)?
        .iter()
        .enumerate()
        .map(|(position, bytes)| {
            let text = std::str::from_utf8(bytes).map_err(|_| VerifyError::Checkpoint {
                origin: CheckpointOrigin::Database,
                position,
                error: crate::checkpoint::CheckpointError::Malformed("not UTF-8"),
            })?;
            SignedCheckpoint::parse(text).map_err(|error| VerifyError::Checkpoint {
                origin: CheckpointOrigin::Database,
                position,
                error,
            })
        })
        .collect()
}

/// Parses a checkpoint log file's text.
pub fn file_checkpoints(text: &str) -> Result<Vec<SignedCheckpoint>, VerifyError> {
    parse_log(text).map_err(|error| VerifyError::Checkpoint {
        origin: CheckpointOrigin::File,
        position: 0,
        error,
    })
}

/// The checkpoints outside the database to verify against.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutsideCheckpoints<'a> {
    /// The text of the checkpointer's own `checkpoints.log`, when there is one: it is compared
    /// with the database's checkpoints ([`check_drift`]). `None` verifies against the
    /// database's checkpoints (and `copies`) alone.
    pub log: Option<&'a str>,
    /// Other checkpoint notes or logs (copies shipped elsewhere, published checkpoints): each
    /// must match the trail and be in the database.
    pub copies: &'a str,
}

/// How to verify.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// Records per read.
    pub page: u32,
    /// The verifier's time (for the drift rule).
    pub now_millis: i64,
    /// How long the newest database checkpoint may be missing from the file (one checkpoint
    /// period).
    pub grace_millis: i64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            page: 4096,
            now_millis: 0,
            grace_millis: 0,
        }
    }
}

/// What a store verification covered.
#[derive(Debug, Clone)]
pub struct Report {
    /// The trail summary.
    pub summary: Summary,
    /// Checkpoint pairs whose consistency proof (from stored nodes) verified.
    pub consistency_checked: usize,
    /// Interior nodes compared with the stored ones.
    pub nodes_checked: u64,
    /// The merged checkpoints (with the sizes present in only one place).
    pub checkpoints: CheckpointSet,
    /// Whether a checkpoint file was compared with the database.
    pub file_compared: bool,
    /// The newest database checkpoint, not yet in the file but within its grace period.
    pub pending_in_file: Option<u64>,
}

/// Verifies the whole trail in `store`: every record (chain, leaf hash, event, query
/// columns), every stored interior node, the head, every signed checkpoint of the database and
/// of `outside` (roots recomputed, consistency between successive ones proved from stored
/// nodes), and that the database and the checkpoint file agree on which checkpoints exist.
/// Reads the next page while checking the current one.
pub async fn verify_store<S: TrailStore>(
    store: &S,
    key: &CheckpointKey,
    outside: OutsideCheckpoints<'_>,
    options: VerifyOptions,
) -> Result<Report, VerifyError> {
    let db = database_checkpoints(store).await?;
    let log = file_checkpoints(outside.log.unwrap_or(""))?;
    let copies = file_checkpoints(outside.copies)?;
    let mut file = log.clone();
    file.extend(copies.iter().cloned());
    let set = CheckpointSet::collect(key, key.name(), &db, &file)?;
    let mut v = TrailVerifier::new(&set)?;
    let mut nodes_checked = 0u64;
    let page = options.page.max(1);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    // A three-stage pipeline: while one page's records are checked (on a blocking thread, so
    // that this task keeps reading), the next page is read and the previous page's interior
    // nodes are compared with the stored ones. Problems are still reported in stream order:
    // a page's node problems before the next page's record problems.
    let mut recs = store.records(0, page).await.map_err(src)?;
    let mut pending: Vec<Node> = Vec::new();
    while !recs.is_empty() {
        let next_from = v.records().saturating_add(recs.len() as u64);
        let work = tokio::task::spawn_blocking(move || {
            let completed = v.push_stored_page(&recs, threads);
            (v, completed)
        });
        let (next, worked, checked) = tokio::join!(
            store.records(next_from, page),
            work,
            check_page_nodes(store, &pending)
        );
        nodes_checked += checked?;
        let (back, completed) =
            worked.map_err(|_| VerifyError::Source("the verification thread failed".into()))?;
        v = back;
        pending = completed?;
        recs = next.map_err(src)?;
    }
    nodes_checked += check_page_nodes(store, &pending).await?;
    let head = store.head().await.map_err(src)?;
    let summary = v.finish(Some(&head.unwrap_or(HeadView {
        size: 0,
        last_leaf_hash: crate::record::GENESIS_HASH,
        frontier: crate::merkle::Frontier::new().to_bytes(),
    })))?;
    let fetched = fetch_for_consistency(store, &set).await?;
    let consistency_checked = check_checkpoint_consistency(&fetched, &set)?;
    let rule = outside.log.map(|_| DriftRule {
        now_millis: options.now_millis,
        grace_millis: options.grace_millis,
    });
    let pending_in_file = check_drift(&db, &log, &copies, rule)?;
    Ok(Report {
        summary,
        consistency_checked,
        nodes_checked,
        checkpoints: set,
        file_compared: outside.log.is_some(),
        pending_in_file,
    })
}

/// Compares one page's completed interior nodes with the stored ones, with one range read per
/// level.
async fn check_page_nodes<S: TrailStore>(
    store: &S,
    completed: &[Node],
) -> Result<u64, VerifyError> {
    if completed.is_empty() {
        return Ok(0);
    }
    let mut by_level: HashMap<u32, (u64, u64)> = HashMap::new();
    for n in completed {
        let e = by_level.entry(n.level).or_insert((n.index, n.index));
        e.0 = e.0.min(n.index);
        e.1 = e.1.max(n.index);
    }
    let mut stored: HashMap<(u32, u64), Hash32> = HashMap::new();
    for (level, (lo, hi)) in by_level {
        for (i, h) in store
            .nodes(level, lo, hi.saturating_add(1))
            .await
            .map_err(src)?
        {
            stored.insert((level, i), h);
        }
    }
    for n in completed {
        check_stored_node(n, stored.get(&(n.level, n.index)).copied())?;
    }
    Ok(completed.len() as u64)
}

/// Nodes fetched ahead for synchronous proof code.
#[derive(Debug, Clone, Default)]
pub struct FetchedNodes(pub HashMap<NodeId, Hash32>);

impl NodeSource for FetchedNodes {
    type Error = std::convert::Infallible;
    fn node(&self, id: NodeId) -> Result<Option<Hash32>, Self::Error> {
        Ok(self.0.get(&id).copied())
    }
}

async fn fetch_subtrees<S: TrailStore>(
    store: &S,
    subtrees: &[Subtree],
    into: &mut FetchedNodes,
) -> Result<(), S::Error> {
    let mut ids: Vec<NodeId> = subtrees
        .iter()
        .flat_map(|st| st.parts())
        .filter(|id| !into.0.contains_key(id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    for (id, h) in store.nodes_by_id(&ids).await? {
        into.0.insert(id, h);
    }
    Ok(())
}

async fn fetch_for_consistency<S: TrailStore>(
    store: &S,
    set: &CheckpointSet,
) -> Result<FetchedNodes, VerifyError> {
    let sizes: Vec<u64> = set.iter().map(|c| c.size).filter(|s| *s > 0).collect();
    let mut fetched = FetchedNodes::default();
    for w in sizes.windows(2) {
        let plan =
            crate::proof::consistency_plan(w[0], w[1]).map_err(|_| VerifyError::Consistency {
                first: w[0],
                second: w[1],
            })?;
        fetch_subtrees(store, &plan, &mut fetched)
            .await
            .map_err(src)?;
    }
    Ok(fetched)
}

/// Proving failed.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// No signed checkpoint covers the record yet.
    #[error("no signed checkpoint covers record {0} yet; wait for the next checkpoint")]
    NotCheckpointed(u64),
    /// The record does not exist.
    #[error("record {0} does not exist")]
    NoRecord(u64),
    /// The given checkpoint does not cover the record or does not verify.
    #[error("the checkpoint does not cover record {seq} or does not verify: {reason}")]
    BadCheckpoint {
        /// The record.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// Reading or checking failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The stored nodes do not make a proof.
    #[error("building the proof from stored nodes failed: {0}")]
    Build(String),
}

/// Builds the offline-checkable inclusion proof of record `seq`, against `checkpoint` or, when
/// `None`, the smallest stored checkpoint covering it. Reads O(log n) nodes.
pub async fn prove<S: TrailStore>(
    store: &S,
    key: &CheckpointKey,
    seq: u64,
    checkpoint: Option<SignedCheckpoint>,
) -> Result<InclusionBundle, ProveError> {
    let cp = match checkpoint {
        Some(c) => c,
        None => {
            let db = database_checkpoints(store).await?;
            db.into_iter()
                .filter(|c| c.checkpoint.size > seq)
                .min_by_key(|c| c.checkpoint.size)
                .ok_or(ProveError::NotCheckpointed(seq))?
        }
    };
    let bad = |reason: String| ProveError::BadCheckpoint { seq, reason };
    cp.verify(key).map_err(|e| bad(e.to_string()))?;
    if cp.checkpoint.size <= seq {
        return Err(bad("size does not exceed the record's seq".into()));
    }
    let record: AuditRecord = store
        .records(seq, 1)
        .await
        .map_err(src)?
        .into_iter()
        .map(|r| r.record)
        .find(|r| r.seq == seq)
        .ok_or(ProveError::NoRecord(seq))?;
    let plan =
        inclusion_plan(seq, cp.checkpoint.size).map_err(|e| ProveError::Build(e.to_string()))?;
    let mut fetched = FetchedNodes::default();
    fetch_subtrees(store, &plan, &mut fetched)
        .await
        .map_err(src)?;
    let path = crate::proof::inclusion_proof(&fetched, seq, cp.checkpoint.size)
        .map_err(|e| ProveError::Build(e.to_string()))?;
    let bundle = InclusionBundle::new(&record, &path, &cp, key);
    // Never hand out a proof that does not check.
    bundle
        .check(Some(key))
        .map_err(|e| ProveError::Build(e.to_string()))?;
    Ok(bundle)
}
